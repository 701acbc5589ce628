//! `pocket-studio bench --end-to-end`: prompt -> exact 4K PNG through our
//! engine and through onnxruntime (`benches/ort_e2e.py`) on the same ONNX
//! files, threads and tiling, interleaved run by run, with medians per
//! stage, the end-to-end ratio, the UNet's achieved GFLOP/s against this
//! machine's peak, peak RSS against the weights, and startup times.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pocket_studio::pipeline::output::OutputKind;
use pocket_studio::pipeline::upscale::Upscaler;
use pocket_studio::produce::{Produced, Producer};
use pocket_studio::provenance::Provenance;
use pocket_studio::store::{Gallery, Limits};
use pocket_studio::studio::JobSpec;
use pocket_studio::{Bundle, CancelToken, NoProgress, Pipeline};

const MIB: f64 = 1024.0 * 1024.0;
const PROMPT: &str = "a watercolor painting of a lighthouse at dawn";
const NEGATIVE: &str = "blurry";

/// What to measure.
pub struct Options<'a> {
    /// Text-to-image bundle.
    pub model: &'a Path,
    /// Upscaler bundle.
    pub upscaler: &'a Path,
    /// Denoising steps per image.
    pub steps: u32,
    /// Timed runs per engine.
    pub runs: usize,
    /// Also run onnxruntime.
    pub with_ort: bool,
}

/// The rows of the table, in order: (label, our key, onnxruntime key).
const ROWS: [(&str, &str); 9] = [
    ("tokenize", "tokenize"),
    ("text encoder (2 calls)", "text encoder"),
    ("unet (all steps)", "unet"),
    ("  one unet call, batch 2", "unet per call"),
    ("scheduler and glue", "scheduler"),
    ("vae decode", "vae decode"),
    ("upscale + resample", "upscale"),
    ("png encode", "png encode"),
    ("total", "total"),
];

/// Run the end-to-end benchmark and print its table.
pub fn run(options: &Options) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let onnx_files = model_files(options.model, options.upscaler);
    let weights: u64 = onnx_files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    // A board's service starts at boot, with nothing in the page cache: the
    // cold figures evict the files first (posix_fadvise, no root needed); a
    // restarted service sees the warm ones.
    let read_all = |cold: bool| -> Result<Duration> {
        if cold {
            evict_from_page_cache(&onnx_files)?;
        }
        let tick = Instant::now();
        for file in &onnx_files {
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        }
        Ok(tick.elapsed())
    };
    let reads = [read_all(true)?, read_all(false)?];
    let open_all = |cold: bool| -> Result<(Duration, Duration, Pipeline, Upscaler)> {
        if cold {
            evict_from_page_cache(&onnx_files)?;
        }
        let tick = Instant::now();
        let bundle = Bundle::open(options.model)?;
        let opened = tick.elapsed();
        let pipeline = Pipeline::load(bundle)?;
        let upscaler = Upscaler::open(options.upscaler)?;
        Ok((opened, tick.elapsed(), pipeline, upscaler))
    };
    let (_, cold_load, pipeline, upscaler) = open_all(true)?;
    drop((pipeline, upscaler));
    pocket_studio::engine::release_free_memory();
    let (opened, load, pipeline, upscaler) = open_all(false)?;
    let (tile, overlap) = upscaler.tiling();
    let scale = upscaler.scale();
    let scratch = tempfile::tempdir()?;
    let producer = Producer {
        pipeline,
        upscaler: Some(upscaler),
        gallery: Arc::new(Gallery::open(scratch.path(), Limits::default())?),
        default_output: OutputKind::FourK,
        provenance: Arc::new(Provenance::off()),
    };
    let spec = |seed: u64| JobSpec {
        prompt: PROMPT.into(),
        negative_prompt: NEGATIVE.into(),
        seed: Some(seed),
        steps: Some(options.steps),
        scheduler: Some("euler".into()),
        aspect: Some("landscape".into()),
        output: Some("4k".into()),
        ..JobSpec::default()
    };
    let plan = producer.plan(&spec(0), None)?;
    let (width, height) = (plan.settings.width, plan.settings.height);
    let (out_w, out_h) = plan.size;

    let mut ort = if options.with_ort {
        let args = OrtArgs {
            model: options.model,
            upscaler: &options.upscaler.join("model.onnx"),
            size: (width, height),
            out: (out_w, out_h),
            steps: options.steps,
            guidance: plan.settings.guidance,
            tiling: (tile, overlap, scale),
            threads,
            latent: (
                producer.pipeline.info().vae_scale_factor,
                producer.pipeline.info().latent_channels,
            ),
        };
        match OrtPath::start(&args) {
            Ok(o) => Some(o),
            Err(e) => {
                println!("onnxruntime: unavailable: {e:#}");
                None
            }
        }
    } else {
        None
    };

    let tick = Instant::now();
    produce(&producer, &spec(0))?;
    let first = tick.elapsed();
    if let Some(o) = ort.as_mut() {
        o.run()?;
    }
    reset_peak_rss();
    let mut ours: Vec<Stages> = Vec::new();
    let mut theirs: Vec<serde_json::Value> = Vec::new();
    let mut unet_fma = None;
    for run in 0..options.runs {
        let tick = Instant::now();
        let produced = produce(&producer, &spec(run as u64 + 1))?;
        ours.push(Stages::of(&produced, tick.elapsed()));
        unet_fma = producer.pipeline.unet_multiply_adds();
        if let Some(o) = ort.as_mut() {
            theirs.push(o.run()?);
        }
    }
    let peak = peak_rss_bytes().unwrap_or(0);

    println!(
        "end to end: {} -> {}x{} PNG ({} upscaler, tile {tile}, overlap {overlap}); generated {width}x{height}, {} Euler steps, guidance {}, {threads} threads each, {} runs interleaved, medians; provenance off on both",
        producer.pipeline.info().name,
        out_w,
        out_h,
        producer
            .upscaler
            .as_ref()
            .map_or("no", |u| u.manifest().name.as_str()),
        options.steps,
        plan.settings.guidance,
        options.runs,
    );
    println!(
        "{:<26} {:>12} {:>12} {:>7}",
        "stage", "ours ms", "ort ms", "ratio"
    );
    let mut ratio = None;
    for (label, key) in ROWS {
        let mine = median(ours.iter().map(|s| s.get(key)));
        let other = (!theirs.is_empty()).then(|| {
            median(theirs.iter().map(|v| {
                let ms = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                match key {
                    "upscale" => ms("upscale") + ms("resample"),
                    "scheduler" => ms("scheduler"),
                    k => ms(k),
                }
            }))
        });
        match other {
            Some(o) => {
                println!("{label:<26} {mine:>12.1} {o:>12.1} {:>7.2}", mine / o);
                if key == "total" {
                    ratio = Some(mine / o);
                }
            }
            None => println!("{label:<26} {mine:>12.1} {:>12} {:>7}", "-", "-"),
        }
    }
    if let Some(r) = ratio {
        println!("end-to-end ratio: {r:.2}");
    }
    let unet_ms = median(ours.iter().map(|s| s.get("unet per call")));
    if let Some(fma) = unet_fma {
        let gflops = 2.0 * fma as f64 / (unet_ms / 1e3) / 1e9;
        let (peak_gflops, how) = machine_peak_gflops(threads);
        let measured = measured_peak_gflops(threads);
        println!(
            "unet: {:.1} G multiply-adds per call -> {gflops:.1} GFLOP/s achieved; machine peak {peak_gflops:.0} GFLOP/s ({how}): {:.0} %; measured peak {measured:.0} GFLOP/s (independent FMAs on {threads} threads; the clock runs above the nominal one): {:.0} %",
            fma as f64 / 1e9,
            100.0 * gflops / peak_gflops,
            100.0 * gflops / measured
        );
    }
    let ort_peak = theirs
        .last()
        .and_then(|v| v["peak_rss_mib"].as_f64())
        .map_or("-".to_string(), |m| format!("{m:.0} MiB"));
    println!(
        "peak RSS: ours {:.0} MiB = weights {:.0} MiB + {:.0} MiB (target: weights + 300 MiB); onnxruntime {ort_peak}",
        peak as f64 / MIB,
        weights as f64 / MIB,
        (peak as f64 - weights as f64) / MIB
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let times = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "startup (READY: open + parse; the networks are hashed while parsed): cold (out of the page cache) read {:.0} ms, READY {:.0} ms = {:.2}x; warm read {:.0} ms, READY {:.0} ms = {:.2}x (open {:.0} ms); first image incl. plan optimisation {:.0} ms{}",
        ms(reads[0]),
        ms(cold_load),
        times(cold_load, reads[0]),
        ms(reads[1]),
        ms(load),
        times(load, reads[1]),
        ms(opened),
        ms(first),
        ort.as_ref().map_or(String::new(), |o| format!(
            "; onnxruntime sessions {:.0} ms",
            o.load_ms
        ))
    );
    Ok(())
}

/// Drop the files' pages from the page cache, as after a boot.
fn evict_from_page_cache(files: &[PathBuf]) -> Result<()> {
    for file in files {
        let handle =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        rustix::fs::fadvise(&handle, 0, None, rustix::fs::Advice::DontNeed)
            .with_context(|| format!("cannot evict {} from the page cache", file.display()))?;
    }
    Ok(())
}

/// The ONNX files one prompt -> 4K image reads.
fn model_files(model: &Path, upscaler: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["text_encoder", "unet", "vae_decoder"]
        .iter()
        .map(|m| model.join(m).join("model.onnx"))
        .collect();
    files.push(upscaler.join("model.onnx"));
    files
}

fn produce(producer: &Producer, spec: &JobSpec) -> Result<Produced> {
    Ok(producer.produce(
        spec,
        None,
        &mut NoProgress,
        &CancelToken::new(),
        &mut |_| Ok(()),
    )?)
}

/// One run of ours, in milliseconds per stage.
struct Stages(Vec<(&'static str, f64)>);

impl Stages {
    fn of(p: &Produced, total: Duration) -> Self {
        let t = &p.timings;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let unet: Duration = t.unet.iter().sum();
        let mut calls: Vec<Duration> = t.unet.clone();
        calls.sort();
        let per_call = calls.get(calls.len() / 2).copied().unwrap_or_default();
        let known = t.tokenize + t.text_encoder + unet + t.vae_decode + p.upscale_time;
        let png = p.encode_and_sign_time;
        Stages(vec![
            ("tokenize", ms(t.tokenize)),
            ("text encoder", ms(t.text_encoder)),
            ("unet", ms(unet)),
            ("unet per call", ms(per_call)),
            // Everything else: scheduler steps, latents to RGB, gallery write.
            ("scheduler", ms(total.saturating_sub(known + png))),
            ("vae decode", ms(t.vae_decode)),
            ("upscale", ms(p.upscale_time)),
            ("png encode", ms(png)),
            ("total", ms(total)),
        ])
    }

    fn get(&self, key: &str) -> f64 {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(f64::NAN, |(_, v)| *v)
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Peak f32 FLOP/s of this machine: cores x SIMD lanes x FMA units x 2 x clock.
/// Lanes and FMA units are what the ISA the engine uses offers: AVX2 + FMA
/// on x86_64 (8 lanes, 2 FMA pipes on current AMD and Intel cores), NEON on
/// aarch64 (4 lanes, 2 pipes on Cortex-A72/A76); the clock is `cpu MHz` of
/// /proc/cpuinfo (or the cpufreq maximum).
fn machine_peak_gflops(cores: usize) -> (f64, String) {
    let (lanes, units, isa) = if cfg!(target_arch = "x86_64") {
        (8.0, 2.0, "AVX2 FMA")
    } else {
        (4.0, 2.0, "NEON FMA")
    };
    let mhz = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|khz| khz / 1e3)
        .or_else(|| {
            std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("cpu MHz"))
                    .and_then(|l| l.split(':').nth(1))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(f64::NAN);
    let peak = cores as f64 * lanes * units * 2.0 * mhz / 1e3;
    (
        peak,
        format!(
            "{cores} cores x {lanes} f32 lanes x {units} {isa} units x 2 flops x {:.2} GHz",
            mhz / 1e3
        ),
    )
}

/// The f32 FLOP/s `threads` threads reach doing nothing but independent
/// fused multiply-adds for a fraction of a second: the peak the clock actually
/// gives (a guest's reported clock can be the nominal one, below its boost).
fn measured_peak_gflops(threads: usize) -> f64 {
    const ROUNDS: usize = 100_000_000;
    let started = Instant::now();
    let flops: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(|| fma_rounds(std::hint::black_box(ROUNDS))))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    flops as f64 / started.elapsed().as_secs_f64() / 1e9
}

/// `rounds` rounds of twelve independent 8-lane FMAs; returns the flops done.
fn fma_rounds(rounds: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { fma_rounds_avx2(rounds) };
    }
    let mut acc = [[0f32; 8]; 12];
    for _ in 0..rounds {
        for lanes in acc.iter_mut() {
            for v in lanes.iter_mut() {
                *v = v.mul_add(1.000_001, 0.999_999);
            }
        }
    }
    std::hint::black_box(acc);
    rounds * 12 * 8 * 2
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_rounds_avx2(rounds: usize) -> usize {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(1.000_001);
    let b = _mm256_set1_ps(0.999_999);
    let mut acc = [_mm256_setzero_ps(); 12];
    for _ in 0..rounds {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(a, *v, b);
        }
    }
    std::hint::black_box(acc);
    rounds * 12 * 8 * 2
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reset the peak RSS counter so the next reading covers only what follows.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct OrtArgs<'a> {
    model: &'a Path,
    upscaler: &'a Path,
    size: (u32, u32),
    out: (u32, u32),
    steps: u32,
    guidance: f32,
    tiling: (u32, u32, u32),
    threads: usize,
    /// VAE scale factor and latent channels.
    latent: (u32, usize),
}

/// `benches/ort_e2e.py` running as a server: one JSON line per `run`.
struct OrtPath {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    load_ms: f64,
}

impl OrtPath {
    fn start(a: &OrtArgs) -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ort_e2e.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(a.model)
            .arg(a.upscaler)
            .args(["--width", &a.size.0.to_string()])
            .args(["--height", &a.size.1.to_string()])
            .args(["--out-width", &a.out.0.to_string()])
            .args(["--out-height", &a.out.1.to_string()])
            .args(["--steps", &a.steps.to_string()])
            .args(["--guidance", &a.guidance.to_string()])
            .args(["--tile", &a.tiling.0.to_string()])
            .args(["--overlap", &a.tiling.1.to_string()])
            .args(["--scale", &a.tiling.2.to_string()])
            .args(["--threads", &a.threads.to_string()])
            .args(["--factor", &a.latent.0.to_string()])
            .args(["--channels", &a.latent.1.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start python3")?;
        let input = child.stdin.take().context("no stdin")?;
        let output = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut me = OrtPath {
            child,
            input,
            output,
            load_ms: f64::NAN,
        };
        let ready = me.line()?;
        me.load_ms = ready["load_ms"].as_f64().unwrap_or(f64::NAN);
        Ok(me)
    }

    fn run(&mut self) -> Result<serde_json::Value> {
        writeln!(self.input, "run").context("onnxruntime path exited")?;
        self.input.flush()?;
        self.line()
    }

    fn line(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        anyhow::ensure!(
            !line.is_empty(),
            "benches/ort_e2e.py stopped (see its error above)"
        );
        serde_json::from_str(&line).context("bad JSON from benches/ort_e2e.py")
    }
}

impl Drop for OrtPath {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
