//! `pocket-studio`: the command-line front-end.
//!
//! `generate` runs the pipeline in-process and writes a PNG; `tokenize` prints
//! CLIP token ids; `bench` times each stage (and onnxruntime on the same files
//! when Python has it). Errors are one line on stderr and a non-zero exit.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pocket_studio::pipeline::output::OutputKind;
use pocket_studio::pipeline::upscale::Upscaler;
use pocket_studio::produce::Producer;
use pocket_studio::provenance::Provenance;
use pocket_studio::store::{Gallery, Limits};
use pocket_studio::studio::JobSpec;
use pocket_studio::{
    Bundle, CancelToken, Error, NoProgress, Pipeline, Progress, Request, SchedulerKind,
    SeededNoise, Stage,
};
use std::sync::Arc;

/// Where installed boards keep the default bundle.
const DEFAULT_MODEL: &str = "/usr/share/pocket-studio/models/default";
/// Where installed boards keep the default upscaler bundle.
const DEFAULT_UPSCALER: &str = "/usr/share/pocket-studio/models/upscaler";

mod bench_e2e;
mod client;

#[derive(Parser)]
#[command(name = "pocket-studio", version, about = "On-device text-to-image")]
struct Cli {
    /// Talk to the service on this bus: `system`, `session` or an address.
    /// Without it, `generate` runs in-process.
    #[arg(long, global = true)]
    bus: Option<String>,
    /// Config file. In-process `generate` takes its `[provenance]` and
    /// `state_dir` from it (without one: defaults, with the signing key in
    /// `$XDG_STATE_HOME/pocket-studio`); `inspect` its watermark payload and
    /// the device's trust anchor.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an image in-process and print the PNG's path.
    Generate(Box<GenerateArgs>),
    /// Print the 77 CLIP token ids of a prompt as a JSON array.
    Tokenize {
        /// The prompt.
        prompt: String,
        /// Model bundle folder.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
    },
    /// Time each pipeline stage, next to onnxruntime on the same ONNX files.
    Bench(BenchArgs),
    /// Show what runs on this CPU: the engine's kernels (AVX2 or NEON),
    /// half-precision arithmetic, and the matrix kernels tract picked.
    Cpu,
    /// List the service's jobs.
    Jobs,
    /// Cancel a job of the service.
    Cancel {
        /// Job number.
        id: u64,
    },
    /// List the service's gallery, newest first.
    Images {
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show the service's version, queue, storage and models.
    Status,
    /// Print a PNG's or JPEG's watermark, C2PA validation and parameters.
    Inspect {
        /// The image.
        file: PathBuf,
        /// Trust anchors (PEM) for the C2PA signer, besides this device's
        /// (the service's `/var/lib/pocket-studio/provenance/device-ca.pem`
        /// and, for in-process `generate`, this user's).
        #[arg(long)]
        trust: Vec<PathBuf>,
    },
    /// Save what the service's touch UI shows (its display, or its headless
    /// frame when no display is connected) as a PNG.
    Screenshot {
        /// Where to write the PNG.
        out: PathBuf,
    },
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct GenerateArgs {
    /// What to draw.
    prompt: String,
    /// What to steer away from.
    #[arg(long, default_value = "")]
    negative: String,
    /// Noise seed (random when left out; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Denoising steps (bundle default when left out).
    #[arg(long)]
    steps: Option<u32>,
    /// Guidance scale; 1 or less skips the unconditional pass.
    #[arg(long)]
    guidance: Option<f32>,
    /// euler, euler-a, ddim, lcm or dpmpp-2m (bundle default when left out).
    #[arg(long)]
    scheduler: Option<String>,
    /// Width in pixels, a multiple of 8.
    #[arg(long)]
    width: Option<u32>,
    /// Height in pixels, a multiple of 8.
    #[arg(long)]
    height: Option<u32>,
    /// Model bundle folder.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// `4k` (exact 3840x2160, 2160x3840 or 4096x4096) or `native`
    /// [in-process default: 4k; with --bus: the service's config].
    #[arg(long)]
    output: Option<String>,
    /// square, landscape or portrait when --width/--height are not given
    /// [default: square].
    #[arg(long)]
    aspect: Option<String>,
    /// A style preset (service only): watercolor, 3d-portrait, neon-noir,
    /// painterly, photo.
    #[arg(long)]
    style: Option<String>,
    /// Upscaler bundle folder (used for `--output 4k`).
    #[arg(long, default_value = DEFAULT_UPSCALER)]
    upscaler: PathBuf,
    /// Gallery folder for the PNG.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Initial latents, float32 .npy of shape [1, 4, height/f, width/f],
    /// used as diffusers' `latents=`.
    #[arg(long)]
    latents: Option<PathBuf>,
    /// Start from this PNG or JPEG (image to image); it is centre-cropped to
    /// the output's aspect.
    #[arg(long, value_name = "FILE", conflicts_with = "camera")]
    init_image: Option<PathBuf>,
    /// Start from a camera frame: `--camera` takes the first camera (with
    /// --bus: the service's configured one), `--camera /dev/videoN` a given
    /// one (in-process only).
    #[arg(long, value_name = "DEVICE", num_args = 0..=1, default_missing_value = "auto")]
    camera: Option<String>,
    /// How much of the source to repaint, in (0, 1] [default: 0.8].
    #[arg(long)]
    strength: Option<f32>,
    /// auto, f32 or f16 (in-process only) [default: the config's `[engine]
    /// precision`, auto: f16 where the CPU does half-precision arithmetic].
    #[arg(long)]
    precision: Option<pocket_studio::engine::Precision>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Text-to-image bundle folder(s) to measure (the default bundle when
    /// neither --model nor --upscaler is given).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Upscaler bundle folder(s): 960x540 -> 3840x2160, tract vs onnxruntime
    /// with the same tiling, peak RSS, 4K PNG encode time.
    #[arg(long = "upscaler")]
    upscalers: Vec<PathBuf>,
    /// Timed runs per stage (the median is printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip the onnxruntime comparison.
    #[arg(long)]
    no_ort: bool,
    /// Tile side (input pixels) for --upscaler runs, instead of the bundle's.
    #[arg(long)]
    tile: Option<u32>,
    /// Prompt -> 4K PNG through our engine and onnxruntime, interleaved: one
    /// --model (default bundle) and one --upscaler (default upscaler).
    #[arg(long)]
    end_to_end: bool,
    /// Denoising steps per image for --end-to-end.
    #[arg(long, default_value_t = 4)]
    steps: u32,
    /// With --bus: time this many Generate calls while the service's worker
    /// is busy, and read its idle RSS (minus the --model files' size).
    #[arg(long)]
    service: Option<usize>,
    /// auto, f32 or f16: the precision our engine computes in, as the
    /// service's `[engine] precision` (auto: f16 where the CPU does
    /// half-precision arithmetic, else f32).
    #[arg(long, default_value = "auto")]
    precision: pocket_studio::engine::Precision,
}

/// Large activations in mappings of their own, recycled (see `LargeBlocks`).
#[global_allocator]
static ALLOCATOR: pocket_studio::engine::LargeBlocks = pocket_studio::engine::LargeBlocks;

fn main() -> ExitCode {
    pocket_studio::engine::tune_allocator();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let bus = cli.bus.clone().unwrap_or_else(|| "system".into());
    let result = match cli.command {
        Command::Generate(args) if cli.bus.is_some() => {
            on_bus(client::generate(&bus, job_spec(&args), &args))
        }
        Command::Generate(args) => generate(*args, cli.config.as_deref()),
        Command::Inspect { file, trust } => inspect(&file, &trust, cli.config.as_deref()),
        Command::Tokenize { prompt, model } => tokenize(&prompt, &model),
        Command::Bench(args) if args.service.is_some() => {
            let probes = args.service.unwrap_or(200).max(1);
            let model_bytes: u64 = args.models.iter().map(|m| folder_bytes(m)).sum();
            on_bus(client::service_bench(&bus, probes, model_bytes))
        }
        Command::Bench(args) => bench(args),
        Command::Cpu => {
            print!("{}", pocket_studio::engine::cpu::CpuReport::probe());
            Ok(())
        }
        Command::Jobs => on_bus(client::jobs(&bus)),
        Command::Cancel { id } => on_bus(client::cancel(&bus, id)),
        Command::Images { offset, limit } => on_bus(client::images(&bus, offset, limit)),
        Command::Status => on_bus(client::status(&bus)),
        Command::Screenshot { out } => on_bus(client::screenshot(&bus, &out)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let invalid = matches!(
                e.downcast_ref::<Error>(),
                Some(Error::InvalidArgument { .. })
            );
            ExitCode::from(if invalid { 2 } else { 1 })
        }
    }
}

/// Total size of the files below a folder.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => folder_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Run a client call on a small runtime.
fn on_bus(call: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(call)
}

/// The job a `generate` command line describes (defaults left to whoever
/// runs it: the service's config, or `generate`'s own).
fn job_spec(args: &GenerateArgs) -> JobSpec {
    JobSpec {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative.clone(),
        seed: args.seed,
        steps: args.steps,
        guidance: args.guidance,
        scheduler: args.scheduler.clone(),
        width: args.width,
        height: args.height,
        output: args.output.clone(),
        aspect: args.aspect.clone(),
        strength: args.strength,
        ..JobSpec::default()
    }
}

/// Decode `--init-image`, with the same caps the service applies.
fn read_init_image(path: &Path) -> Result<pocket_studio::Image> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes = pocket_studio::source::read_capped(file)
        .with_context(|| format!("--init-image {}", path.display()))?;
    pocket_studio::source::decode(&bytes)
        .with_context(|| format!("--init-image {}", path.display()))
}

fn load(model: &Path) -> Result<Pipeline> {
    let bundle = Bundle::open(model)?;
    Ok(Pipeline::load(bundle)?)
}

fn tokenize(prompt: &str, model: &Path) -> Result<()> {
    let tokenizer =
        pocket_studio::pipeline::tokenizer::ClipTokenizer::load(&model.join("tokenizer"))?;
    let tokens = tokenizer.encode(prompt)?;
    if tokens.dropped_tokens > 0 {
        eprintln!(
            "warning: prompt truncated; {} tokens dropped: {:?}",
            tokens.dropped_tokens, tokens.dropped_text
        );
    }
    println!("{}", serde_json::to_string(&tokens.ids)?);
    Ok(())
}

/// A progress bar with the stage name and step count; hidden when stderr is
/// not a terminal (journald, CI), where one log line per stage is kept.
struct Bar {
    bar: ProgressBar,
    tty: bool,
}

impl Bar {
    fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            ProgressBar::new(1)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bar { bar, tty }
    }
}

impl Progress for Bar {
    fn tile(&mut self, done: usize, total: usize) {
        self.step(done, total);
    }

    fn stage(&mut self, stage: Stage) {
        self.bar.set_message(stage.name());
        if !self.tty {
            log::info!("stage: {}", stage.name());
        }
    }

    fn step(&mut self, step: usize, steps: usize) {
        self.bar.set_length(steps as u64);
        self.bar.set_position(step as u64);
    }
}

/// The config in-process commands use: `--config` when given, else the
/// defaults with a per-user state folder (the service's own is not ours)
/// when there is a home.
fn local_config(path: Option<&Path>) -> Result<pocket_studio::config::Config> {
    if let Some(path) = path {
        return Ok(pocket_studio::config::Config::load(path)?);
    }
    // No home (a system unit): the system's own state folder.
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    let defaults = pocket_studio::config::Config::default();
    Ok(pocket_studio::config::Config {
        state_dir: state.map_or(defaults.state_dir.clone(), |s| s.join("pocket-studio")),
        ..defaults
    })
}

fn inspect(file: &Path, trust: &[PathBuf], config: Option<&Path>) -> Result<()> {
    use pocket_studio::provenance::{identity::Identity, report, watermark::Payload};
    let config = local_config(config)?;
    let payload = Payload::parse(&config.provenance.watermark_bits)
        .map_err(|e| anyhow::anyhow!("watermark_bits: {e}"))?;
    let mut anchors = String::new();
    for path in trust {
        anchors += &std::fs::read_to_string(path)
            .with_context(|| format!("--trust {}", path.display()))?;
    }
    // This user's own key (in-process generate) and the service's.
    let system = pocket_studio::config::Config::default().state_dir;
    for state_dir in [&config.state_dir, &system] {
        let [_, _, device_ca] = Identity::device_files(state_dir);
        if let Ok(pem) = std::fs::read_to_string(&device_ca) {
            anchors += &pem;
        }
    }
    let found = report::inspect(file, &payload, (!anchors.is_empty()).then_some(&anchors))?;
    print!("{found}");
    Ok(())
}

fn generate(args: GenerateArgs, config: Option<&Path>) -> Result<()> {
    anyhow::ensure!(args.style.is_none(), "--style needs the service (--bus)");
    let output = OutputKind::from_name(args.output.as_deref().unwrap_or("4k"))?;
    let mut spec = JobSpec {
        seed: Some(args.seed.unwrap_or_else(random_seed)),
        output: Some(output.name().into()),
        ..job_spec(&args)
    };
    pocket_studio::studio::validate(&spec)?;
    anyhow::ensure!(
        args.strength.is_none() || args.init_image.is_some() || args.camera.is_some(),
        "--strength needs --init-image or --camera"
    );
    if let Some(path) = &args.init_image {
        let image = read_init_image(path)?;
        spec.source = Some(format!("image {}x{}", image.width, image.height));
        spec.init_image = Some(Arc::new(image));
    }
    let init_latents = args.latents.as_deref().map(read_npy_f32).transpose()?;
    let config = local_config(config)?;
    pocket_studio::engine::set_precision(args.precision.unwrap_or(config.engine.precision));
    let mut producer = Producer {
        pipeline: load(&args.model)?,
        upscaler: None,
        gallery: Arc::new(Gallery::open(&args.out, Limits::default())?),
        default_output: output,
        provenance: Arc::new(Provenance::from_config(
            &config.provenance,
            &config.state_dir,
        )?),
    };
    if let Some(device) = &args.camera {
        let info = producer.pipeline.info();
        let target = pocket_studio::produce::Sizes::of(&spec, output, info)?.generated;
        let camera = pocket_studio::config::CameraConfig {
            device: device.clone(),
            ..Default::default()
        };
        let frame = pocket_studio::camera::capture_one(&camera, target)?;
        eprintln!("{}", frame.describe());
        spec.source = Some(frame.describe());
        spec.init_image = Some(Arc::new(frame.image));
    }
    // Refuse bad values before loading the upscaler or touching the disk.
    producer.plan(&spec, init_latents.clone())?;
    if output == OutputKind::FourK {
        producer.upscaler = Some(Upscaler::open(&args.upscaler)?);
    }
    let mut bar = Bar::new();
    let made = producer.produce(
        &spec,
        init_latents,
        &mut bar,
        &CancelToken::new(),
        &mut |_| Ok(()),
    )?;
    bar.bar.finish_and_clear();
    log::info!("generated in {} ms", made.timings.total.as_millis());
    let steps = match made.settings.strength {
        Some(strength) => format!(
            "{} of {} steps at strength {strength}",
            made.timings.unet.len(),
            made.settings.steps
        ),
        None => format!("{} steps", made.settings.steps),
    };
    eprintln!(
        "seed {}, {steps}, {}x{}, {} ms",
        made.seed,
        made.size.0,
        made.size.1,
        made.timings.total.as_millis()
    );
    println!("{}", made.path.display());
    Ok(())
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Read a little-endian float32 `.npy` (any shape; the pipeline checks it).
fn read_npy_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{} is not a .npy file", path.display()))?;
    let dtype = npy.header().dtype();
    let expected = npyz::DType::Plain("<f4".parse().context("dtype")?);
    anyhow::ensure!(
        dtype == expected,
        "{}: expected float32 (<f4) values, found {}",
        path.display(),
        dtype.descr()
    );
    npy.into_vec::<f32>()
        .with_context(|| format!("cannot read values of {}", path.display()))
}

fn bench(mut args: BenchArgs) -> Result<()> {
    pocket_studio::engine::set_precision(args.precision);
    eprintln!(
        "engine precision: {} (--precision {})",
        pocket_studio::engine::precision().name(),
        args.precision.name()
    );
    if args.end_to_end {
        anyhow::ensure!(
            args.models.len() <= 1 && args.upscalers.len() <= 1,
            "--end-to-end takes one --model and one --upscaler"
        );
        let model = args.models.pop().unwrap_or_else(|| DEFAULT_MODEL.into());
        let upscaler = args
            .upscalers
            .pop()
            .unwrap_or_else(|| DEFAULT_UPSCALER.into());
        return bench_e2e::run(&bench_e2e::Options {
            model: &model,
            upscaler: &upscaler,
            steps: args.steps.max(1),
            runs: args.runs.max(1),
            with_ort: !args.no_ort,
        });
    }
    if args.models.is_empty() && args.upscalers.is_empty() {
        args.models.push(PathBuf::from(DEFAULT_MODEL));
    }
    for model in &args.models {
        bench_bundle(model, args.runs.max(1), !args.no_ort)?;
    }
    for upscaler in &args.upscalers {
        bench_upscaler(upscaler, args.tile, !args.no_ort)?;
    }
    Ok(())
}

fn bench_upscaler(dir: &Path, tile: Option<u32>, with_ort: bool) -> Result<()> {
    const MIB: f64 = 1024.0 * 1024.0;
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upscale/input.png");
    let source = pocket_studio::store::read_png(&photo)?;
    let input = pocket_studio::pipeline::output::resample_exact(&source, 960, 540)?;
    let scratch = tempfile::tempdir()?;
    let input_path = scratch.path().join("input-960x540.png");
    pocket_studio::store::write_png(&input_path, &input, &[])?;

    bench_e2e::reset_peak_rss();
    let baseline = bench_e2e::peak_rss_bytes().unwrap_or(0);
    let mut upscaler = Upscaler::open(dir)?;
    if let Some(tile) = tile {
        let overlap = upscaler.tiling().1;
        upscaler = upscaler.with_tiling(tile, overlap);
    }
    let model_bytes = std::fs::metadata(dir.join("model.onnx"))?.len();
    let scale = upscaler.scale();
    let target = (960 * scale, 540 * scale);
    // Warm-up on one tile so plan optimisation is not timed.
    let warm = pocket_studio::pipeline::output::resample_exact(&input, 64, 64)?;
    upscaler.upscale(&warm, &mut |_, _| {}, &CancelToken::new())?;
    let tick = Instant::now();
    let output = upscaler.upscale(&input, &mut |_, _| {}, &CancelToken::new())?;
    let ours = tick.elapsed().as_secs_f64();
    let peak = bench_e2e::peak_rss_bytes().unwrap_or(0);
    anyhow::ensure!(
        (output.width, output.height) == target,
        "unexpected output size"
    );
    let output_bytes = output.rgb.len() as u64;

    let tick = Instant::now();
    pocket_studio::store::write_png(&scratch.path().join("out.png"), &output, &[])?;
    let encode = tick.elapsed().as_secs_f64();
    let png_bytes = std::fs::metadata(scratch.path().join("out.png"))?.len();

    let name = &upscaler.manifest().name;
    let (tile, overlap) = upscaler.tiling();
    println!(
        "upscaler {name}: 960x540 -> {}x{} (tile {tile}, overlap {overlap}, {} workers)",
        target.0,
        target.1,
        upscaler.workers()
    );
    println!("  tract          {ours:>8.2} s");
    if with_ort {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ort_upscale.py");
        let run = std::process::Command::new("python3")
            .arg(script)
            .arg(dir.join("model.onnx"))
            .arg(&input_path)
            .args([
                "--tile",
                &tile.to_string(),
                "--overlap",
                &overlap.to_string(),
            ])
            .args([
                "--scale",
                &scale.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .output()
            .context("cannot start python3")?;
        if run.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&run.stdout)?;
            let theirs = v["seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  onnxruntime    {theirs:>8.2} s  ({threads} threads, peak RSS {:.0} MiB)   tract/ort {:.2}",
                v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
                ours / theirs
            );
        } else {
            println!(
                "  onnxruntime    unavailable: {}",
                String::from_utf8_lossy(&run.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
            );
        }
    }
    println!(
        "  peak RSS       {:.0} MiB over a {:.0} MiB baseline: +{:.0} MiB (model {:.0} MiB + output {:.0} MiB + 150 MiB budget = {:.0} MiB)",
        peak as f64 / MIB,
        baseline as f64 / MIB,
        peak.saturating_sub(baseline) as f64 / MIB,
        model_bytes as f64 / MIB,
        output_bytes as f64 / MIB,
        (model_bytes + output_bytes) as f64 / MIB + 150.0
    );
    println!(
        "  4K PNG encode  {encode:>8.2} s  ({:.1} MiB written)",
        png_bytes as f64 / MIB
    );
    Ok(())
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(f64::NAN)
}

fn bench_bundle(model: &Path, runs: usize, with_ort: bool) -> Result<()> {
    let tick = Instant::now();
    let pipeline = load(model)?;
    let load_ms = tick.elapsed().as_secs_f64() * 1e3;
    let info = pipeline.info().clone();
    let request = Request {
        prompt: "a watercolor painting of a lighthouse at dawn".into(),
        negative_prompt: "blurry".into(),
        seed: 1,
        steps: Some(4),
        guidance: Some(7.5),
        scheduler: Some(SchedulerKind::Euler),
        ..Request::default()
    };
    // Warm-up: builds the optimized plans for these shapes.
    let tick = Instant::now();
    pipeline.run(
        &request,
        &mut SeededNoise::new(1),
        &mut NoProgress,
        &CancelToken::new(),
    )?;
    let warmup_ms = tick.elapsed().as_secs_f64() * 1e3;
    let mut stages: [Vec<Duration>; 5] = Default::default();
    let mut totals = Vec::new();
    let mut engine_share = Vec::new();
    for run in 0..runs {
        let g = pipeline.run(
            &request,
            &mut SeededNoise::new(run as u64),
            &mut NoProgress,
            &CancelToken::new(),
        )?;
        let t = &g.timings;
        stages[0].push(t.tokenize);
        stages[1].push(t.text_encoder / 2);
        stages[2].extend(t.unet.iter().copied());
        stages[3].push(t.vae_decode);
        stages[4].push(t.scheduler + t.to_rgb);
        let engine = t.text_encoder + t.unet.iter().sum::<Duration>() + t.vae_decode;
        engine_share.push(1.0 - engine.as_secs_f64() / t.total.as_secs_f64());
        totals.push(t.total);
    }
    let ours = [
        ("tokenize", median_ms(stages[0].clone())),
        ("text encoder", median_ms(stages[1].clone())),
        ("unet (batch 2)", median_ms(stages[2].clone())),
        ("vae decode", median_ms(stages[3].clone())),
    ];
    let ort = if with_ort {
        run_ort(model, runs, &info)
    } else {
        Err(anyhow::anyhow!("skipped (--no-ort)"))
    };
    println!(
        "bundle {} ({}x{}, {} runs; load {:.0} ms, first run incl. optimize {:.0} ms)",
        info.name, info.native_width, info.native_height, runs, load_ms, warmup_ms
    );
    println!(
        "{:<16} {:>12} {:>12} {:>8}",
        "stage", "tract ms", "ort ms", "ratio"
    );
    for (name, ms) in ours {
        let theirs = ort
            .as_ref()
            .ok()
            .and_then(|o| o.get(name).and_then(|v| v.as_f64()));
        match theirs {
            Some(o) => println!("{name:<16} {ms:>12.2} {o:>12.2} {:>8.2}", ms / o),
            None => println!("{name:<16} {ms:>12.2} {:>12} {:>8}", "-", "-"),
        }
    }
    let overhead = {
        let mut s = engine_share.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2] * 100.0
    };
    println!(
        "total (4 steps)  {:>12.2}   pipeline overhead outside engine calls: {:.2}%",
        median_ms(totals),
        overhead
    );
    if let Err(e) = ort {
        println!("onnxruntime: {e:#}");
    }
    Ok(())
}

/// Time the same stages in onnxruntime through `benches/ort_stages.py`.
fn run_ort(
    model: &Path,
    runs: usize,
    info: &pocket_studio::BundleInfo,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ort_stages.py");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(model)
        .args([
            "--runs",
            &runs.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .args([
            "--width",
            &info.native_width.to_string(),
            "--height",
            &info.native_height.to_string(),
        ])
        .output()
        .context("cannot start python3")?;
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
    );
    let value: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("bad JSON from ort_stages.py")?;
    value
        .as_object()
        .cloned()
        .context("ort_stages.py printed no object")
}
