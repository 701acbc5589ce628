//! The pipeline issue's "must show" list, against real tract inference on the
//! committed tiny bundle and fixtures recorded from diffusers itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pocket_studio::pipeline::tokenizer::ClipTokenizer;
use pocket_studio::{
    Bundle, CancelToken, Error, Image, InitImage, ModelFault, NoProgress, Pipeline, RecordedNoise,
    Request, SchedulerKind, SeededNoise,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_bundle() -> PathBuf {
    repo().join("models/tiny-sd")
}

fn pipeline() -> &'static Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let bundle = Bundle::open(tiny_bundle()).expect("tiny bundle opens");
        Pipeline::load(bundle).expect("tiny bundle loads")
    })
}

fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().expect("f32 npy"))
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let image =
        pocket_studio::store::read_png(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (image.width, image.height, image.rgb)
}

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    negative_prompt: String,
    steps: u32,
    guidance: f32,
    width: u32,
    height: u32,
    timesteps: Vec<f32>,
}

fn parity(name: &str) {
    let dir = repo().join("tests/fixtures/parity").join(name);
    let case: Case =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case.json"))
            .expect("case.json parses");
    let (_, init) = read_npy(&dir.join("init_latents.npy"));
    let draws = if dir.join("step_noise.npy").exists() {
        read_draws(&dir.join("step_noise.npy"))
    } else {
        Vec::new()
    };
    let mut noise = RecordedNoise::new(draws);
    let request = Request {
        init_latents: Some(init),
        ..fixture_request(
            name,
            case.prompt,
            case.negative_prompt,
            case.steps,
            case.guidance,
            (case.width, case.height),
        )
    };
    let kind = request.scheduler.expect("set above");
    let config =
        pocket_studio::bundle::read_json(&tiny_bundle().join("scheduler/scheduler_config.json"))
            .expect("scheduler config");
    let scheduler = kind.build(&config, case.steps as usize).expect("scheduler");
    assert_eq!(
        scheduler.timesteps(),
        &case.timesteps[..],
        "{name}: timesteps"
    );

    let generated = pipeline()
        .run(&request, &mut noise, &mut NoProgress, &CancelToken::new())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(noise.remaining(), 0, "{name}: every recorded draw is used");
    assert_matches_diffusers(name, &dir, &generated);
}

/// Final latents within 1e-3 and the image within 2/255 on 99.9 % of values.
fn assert_matches_diffusers(name: &str, dir: &Path, generated: &pocket_studio::Generated) {
    let (_, expected) = read_npy(&dir.join("final_latents.npy"));
    assert_eq!(generated.latents.len(), expected.len());
    let worst = generated
        .latents
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = expected.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    println!("{name}: latents max abs diff {worst:e} (values up to {scale})");
    assert!(
        worst <= 1e-3,
        "{name}: final latents differ by {worst} (limit 1e-3)"
    );

    let (w, h, pixels) = read_png(&dir.join("image.png"));
    assert_eq!((w, h), (generated.image.width, generated.image.height));
    let off = pixels
        .iter()
        .zip(&generated.image.rgb)
        .filter(|(a, b)| a.abs_diff(**b) > 2)
        .count();
    let allowed = pixels.len() / 1000;
    println!(
        "{name}: {off} of {} channel values off by more than 2/255",
        pixels.len()
    );
    assert!(
        off <= allowed,
        "{name}: {off} values differ by more than 2/255 (at most {allowed} allowed)"
    );
}

/// A fixture's request on the named scheduler, seed 0, no starting point.
fn fixture_request(
    scheduler: &str,
    prompt: String,
    negative_prompt: String,
    steps: u32,
    guidance: f32,
    (width, height): (u32, u32),
) -> Request {
    Request {
        prompt,
        negative_prompt,
        seed: 0,
        steps: Some(steps),
        guidance: Some(guidance),
        scheduler: Some(SchedulerKind::from_name(scheduler).expect("known scheduler")),
        width: Some(width),
        height: Some(height),
        ..Request::default()
    }
}

fn read_draws(path: &Path) -> Vec<Vec<f32>> {
    let (shape, all) = read_npy(path);
    let per = all.len() / shape[0] as usize;
    all.chunks(per).map(<[f32]>::to_vec).collect()
}

#[derive(serde::Deserialize)]
struct Img2ImgCase {
    prompt: String,
    negative_prompt: String,
    steps: u32,
    guidance: f32,
    strength: f32,
    width: u32,
    height: u32,
    timesteps: Vec<f32>,
}

/// diffusers' StableDiffusionImg2ImgPipeline from `init.png` with every
/// draw (encoder sample, added noise, scheduler noise) replayed.
fn img2img_parity(name: &str) {
    let dir = repo()
        .join("tests/fixtures/parity")
        .join(format!("img2img-{name}"));
    let case: Img2ImgCase =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case.json"))
            .expect("case.json parses");
    let (width, height, rgb) = read_png(&dir.join("init.png"));
    let mut noise = RecordedNoise::new(read_draws(&dir.join("noise.npy")));
    let request = Request {
        init: Some(InitImage {
            image: std::sync::Arc::new(Image { width, height, rgb }),
            strength: case.strength,
        }),
        ..fixture_request(
            name,
            case.prompt,
            case.negative_prompt,
            case.steps,
            case.guidance,
            (case.width, case.height),
        )
    };
    let mut steps = Vec::new();
    struct Steps<'a>(&'a mut Vec<(usize, usize)>);
    impl pocket_studio::Progress for Steps<'_> {
        fn stage(&mut self, _: pocket_studio::Stage) {}
        fn step(&mut self, step: usize, steps: usize) {
            self.0.push((step, steps));
        }
    }
    let generated = pipeline()
        .run(
            &request,
            &mut noise,
            &mut Steps(&mut steps),
            &CancelToken::new(),
        )
        .unwrap_or_else(|e| panic!("img2img {name}: {e}"));
    assert_eq!(
        noise.remaining(),
        0,
        "img2img {name}: every recorded draw is used"
    );
    let ran = case.timesteps.len();
    assert_eq!(
        steps,
        (1..=ran).map(|s| (s, ran)).collect::<Vec<_>>(),
        "img2img {name}: progress counts the {ran} steps that run"
    );
    assert_eq!(generated.settings.strength, Some(case.strength));
    assert_matches_diffusers(&format!("img2img {name}"), &dir, &generated);
}

#[test]
fn img2img_parity_euler() {
    img2img_parity("euler");
}

#[test]
fn img2img_parity_ddim() {
    img2img_parity("ddim");
}

#[test]
fn img2img_parity_dpmpp_2m() {
    img2img_parity("dpmpp-2m");
}

#[test]
fn img2img_parity_lcm_without_guidance() {
    img2img_parity("lcm");
}

#[test]
fn parity_euler() {
    parity("euler");
}

#[test]
fn parity_euler_ancestral() {
    parity("euler-a");
}

#[test]
fn parity_ddim() {
    parity("ddim");
}

#[test]
fn parity_lcm_without_guidance() {
    parity("lcm");
}

#[test]
fn parity_dpmpp_2m() {
    parity("dpmpp-2m");
}

#[derive(serde::Deserialize)]
struct TokenCase {
    prompt: String,
    ids: Vec<i64>,
    truncated: bool,
}

#[test]
fn tokenizer_matches_hugging_face_on_the_corpus() {
    let tokenizer = ClipTokenizer::load(&tiny_bundle().join("tokenizer")).expect("tokenizer");
    let text = std::fs::read_to_string(repo().join("tests/fixtures/tokenizer_corpus.json"))
        .expect("corpus");
    let cases: Vec<TokenCase> = serde_json::from_str(&text).expect("corpus parses");
    assert!(cases.len() >= 200, "corpus has {} prompts", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let tokens = tokenizer.encode(&case.prompt).expect("encode");
        if tokens.ids != case.ids {
            mismatches.push(format!(
                "{:?}\n  expected {:?}\n  got      {:?}",
                case.prompt, case.ids, tokens.ids
            ));
        }
        assert_eq!(
            tokens.dropped_tokens > 0,
            case.truncated,
            "truncation reported for {:?}",
            case.prompt
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} prompts differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn truncation_names_the_dropped_text() {
    let tokenizer = ClipTokenizer::load(&tiny_bundle().join("tokenizer")).expect("tokenizer");
    let prompt = format!("{} tail words here", "red ".repeat(75));
    let tokens = tokenizer.encode(&prompt).expect("encode");
    assert_eq!(tokens.ids.len(), 77);
    assert_eq!(tokens.dropped_tokens, 3);
    assert_eq!(tokens.dropped_text, "tail words here");
}

/// Copy the tiny bundle to a temp folder so a test can break it.
fn bundle_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::copy_tree(&tiny_bundle(), dir.path());
    dir
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

/// Every file the manifest lists is checked before it is used: the small
/// ones when the bundle opens, each network as it is parsed (the pipeline's
/// three at load, the VAE encoder on the first image-to-image job), so a
/// flipped byte anywhere is refused with an error naming that file.
#[test]
fn a_corrupted_byte_in_any_model_file_names_that_file() {
    let files = [
        "text_encoder/model.onnx",
        "unet/model.onnx",
        "vae_decoder/model.onnx",
        "vae_encoder/model.onnx",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "scheduler/scheduler_config.json",
    ];
    let img2img = Request {
        init: Some(InitImage {
            image: std::sync::Arc::new(Image {
                width: 64,
                height: 64,
                rgb: vec![128; 64 * 64 * 3],
            }),
            strength: 0.5,
        }),
        ..fixture_request(
            "euler",
            "a lighthouse".into(),
            String::new(),
            2,
            7.5,
            (64, 64),
        )
    };
    for rel in files {
        let dir = bundle_copy();
        let file = dir.path().join(rel);
        flip_byte(&file);
        let outcome = Bundle::open(dir.path())
            .and_then(Pipeline::load)
            .and_then(|pipeline| {
                pipeline.run(
                    &img2img,
                    &mut SeededNoise::new(1),
                    &mut NoProgress,
                    &CancelToken::new(),
                )
            });
        match outcome {
            Err(Error::ModelUnavailable {
                file: named,
                fault: ModelFault::ChecksumMismatch { .. },
            }) => assert_eq!(named, file, "{rel}"),
            other => panic!("{rel}: expected a checksum error naming the file, got {other:?}"),
        }
    }
}

#[test]
fn a_missing_file_is_named() {
    let dir = bundle_copy();
    let file = dir.path().join("unet/model.onnx");
    std::fs::remove_file(&file).expect("rm");
    match Bundle::open(dir.path()) {
        Err(Error::ModelUnavailable {
            file: named,
            fault: ModelFault::Missing,
        }) => assert_eq!(named, file),
        other => panic!("expected Missing naming the UNet, got {other:?}"),
    }
}

#[test]
fn an_unverified_optimum_folder_loads_and_a_broken_onnx_is_named() {
    let dir = bundle_copy();
    std::fs::remove_file(dir.path().join("pocket-studio.toml")).expect("rm manifest");
    let bundle = Bundle::open(dir.path()).expect("optimum-style folder opens");
    assert!(!bundle.info().verified);
    assert_eq!(bundle.info().native_width, 64, "sample_size x VAE factor");

    // Without a manifest nothing vouches for the bytes: tract's own refusal
    // must still name the file.
    let unet = dir.path().join("unet/model.onnx");
    std::fs::write(&unet, b"this is not an onnx file").expect("write");
    let bundle = Bundle::open(dir.path()).expect("opens (unverified)");
    match Pipeline::load(bundle) {
        Err(Error::ModelUnavailable { file, .. }) => assert_eq!(file, unet),
        other => panic!("expected ModelUnavailable naming the UNet, got {other:?}"),
    }
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pocket-studio"))
}

fn generate(out: &Path, seed: u64, extra: &[&str]) -> std::process::Output {
    cli()
        .args([
            "generate",
            "a lighthouse at dawn",
            "--output",
            "native",
            "--steps",
            "3",
            "--seed",
        ])
        .arg(seed.to_string())
        .arg("--model")
        .arg(tiny_bundle())
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run pocket-studio")
}

fn png_in(out: &Path, output: &std::process::Output) -> PathBuf {
    assert!(
        output.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        path.starts_with(out),
        "{} is inside {}",
        path.display(),
        out.display()
    );
    path
}

/// A PNG's bytes without its C2PA chunk (`caBX`): each manifest carries its
/// own instance id and signature, everything else is reproducible.
fn without_manifest(png: &[u8]) -> Vec<u8> {
    let mut out = png[..8].to_vec();
    let mut pos = 8;
    let mut had_manifest = false;
    while pos + 12 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let chunk = &png[pos..pos + 12 + len];
        if &chunk[4..8] == b"caBX" {
            had_manifest = true;
        } else {
            out.extend_from_slice(chunk);
        }
        pos += 12 + len;
    }
    assert!(had_manifest, "generated PNGs carry a C2PA manifest");
    out
}

#[test]
fn same_seed_gives_identical_png_bytes_and_another_seed_another_image() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let first = png_in(a.path(), &generate(a.path(), 7, &[]));
    let second = png_in(b.path(), &generate(b.path(), 7, &[]));
    let first_bytes = std::fs::read(&first).expect("read");
    assert_eq!(
        without_manifest(&first_bytes),
        without_manifest(&std::fs::read(&second).expect("read"))
    );
    let (w, h, pixels) = read_png(&first);
    assert_eq!((w, h), (64, 64));

    let other = png_in(b.path(), &generate(b.path(), 8, &[]));
    let (_, _, other_pixels) = read_png(&other);
    let differing = pixels
        .iter()
        .zip(&other_pixels)
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        differing > pixels.len() / 2,
        "only {differing} values differ"
    );
}

#[test]
fn initial_latents_from_npy_reproduce_diffusers() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = repo().join("tests/fixtures/parity/euler");
    let case: Case =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case"))
            .expect("parses");
    let output = cli()
        .args([
            "generate",
            &case.prompt,
            "--negative",
            &case.negative_prompt,
        ])
        .args([
            "--steps",
            &case.steps.to_string(),
            "--guidance",
            &case.guidance.to_string(),
        ])
        .args([
            "--scheduler",
            "euler",
            "--output",
            "native",
            "--seed",
            "99",
            "--latents",
        ])
        .arg(dir.join("init_latents.npy"))
        .arg("--model")
        .arg(tiny_bundle())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run");
    let path = png_in(out.path(), &output);
    let (_, _, ours) = read_png(&path);
    let (_, _, theirs) = read_png(&dir.join("image.png"));
    let off = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a.abs_diff(**b) > 2)
        .count();
    assert!(
        off <= ours.len() / 1000,
        "{off} values off by more than 2/255"
    );
}

#[test]
fn bad_input_exits_non_zero_with_one_line_and_writes_nothing() {
    let long_prompt = "x".repeat(pocket_studio::pipeline::MAX_PROMPT_CHARS + 1);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["generate", "", "--steps", "3"], "prompt"),
        (vec!["generate", "   ", "--steps", "3"], "prompt"),
        (vec!["generate", &long_prompt], "prompt"),
        (vec!["generate", "ok", "--steps", "0"], "steps"),
        (vec!["generate", "ok", "--steps", "151"], "steps"),
        (vec!["generate", "ok", "--width", "60"], "width"),
        (vec!["generate", "ok", "--height", "4096"], "height"),
        (vec!["generate", "ok", "--scheduler", "heun"], "scheduler"),
        (vec!["generate", "ok", "--guidance", "-1"], "guidance"),
    ];
    for (args, key) in cases {
        let out = tempfile::tempdir().expect("tempdir");
        let output = cli()
            .args(&args)
            .arg("--model")
            .arg(tiny_bundle())
            .arg("--out")
            .arg(out.path())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(key),
            "{args:?}: {stderr:?} should name {key}"
        );
        let written = std::fs::read_dir(out.path()).expect("read_dir").count();
        assert_eq!(written, 0, "{args:?} wrote files");
    }

    let out = tempfile::tempdir().expect("tempdir");
    let output = cli()
        .args(["generate", "ok", "--model", "/nonexistent/bundle", "--out"])
        .arg(out.path())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/bundle"), "{stderr}");
}

#[test]
fn a_corrupt_model_makes_the_cli_fail_naming_the_file() {
    let dir = bundle_copy();
    let file = dir.path().join("vae_decoder/model.onnx");
    flip_byte(&file);
    let out = tempfile::tempdir().expect("tempdir");
    let output = cli()
        .args(["generate", "ok", "--model"])
        .arg(dir.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("vae_decoder/model.onnx"), "{stderr}");
    assert!(stderr.contains("sha256"), "{stderr}");
}

#[test]
fn tokenize_prints_77_ids_as_json() {
    let output = cli()
        .args(["tokenize", "a photo of a cat", "--model"])
        .arg(tiny_bundle())
        .output()
        .expect("run");
    assert!(output.status.success());
    let ids: Vec<i64> = serde_json::from_slice(&output.stdout).expect("json array");
    assert_eq!(ids.len(), 77);
    assert_eq!(&ids[..6], &[49406, 320, 1125, 539, 320, 2368]);
    assert_eq!(ids[6], 49407);
}

#[test]
fn cancellation_stops_between_steps() {
    struct CancelAfter(usize, CancelToken);
    impl pocket_studio::Progress for CancelAfter {
        fn stage(&mut self, _: pocket_studio::Stage) {}
        fn step(&mut self, step: usize, _: usize) {
            if step == self.0 {
                self.1.cancel();
            }
        }
    }
    let cancel = CancelToken::new();
    let mut progress = CancelAfter(2, cancel.clone());
    let request = Request {
        prompt: "a cat".into(),
        steps: Some(10),
        ..Request::default()
    };
    let result = pipeline().run(&request, &mut SeededNoise::new(1), &mut progress, &cancel);
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
}

/// Seeds whose noise streams are pinned in `fixtures/seeded_noise.json`.
const PINNED_SEEDS: [u64; 4] = [0, 1, 42, u64::MAX];

/// sha256 of the little-endian bytes of one seed's first 4x64x64 draws
/// (the initial latents of a 512 px SD image).
fn noise_digest(seed: u64) -> String {
    use pocket_studio::NoiseSource;
    use sha2::{Digest, Sha256};
    let mut draws = vec![0.0f32; 4 * 64 * 64];
    SeededNoise::new(seed).fill(&mut draws).unwrap();
    let bytes: Vec<u8> = draws.iter().flat_map(|x| x.to_le_bytes()).collect();
    hex::encode(Sha256::digest(&bytes))
}

#[test]
fn seeded_noise_is_bit_identical_to_the_draws_recorded_on_x86_64() {
    let path = repo().join("tests/fixtures/seeded_noise.json");
    let actual: std::collections::BTreeMap<String, String> = PINNED_SEEDS
        .iter()
        .map(|&seed| (seed.to_string(), noise_digest(seed)))
        .collect();
    if std::env::var_os("UPDATE_FIXTURES").is_some() && cfg!(target_arch = "x86_64") {
        let text = serde_json::to_string_pretty(&actual).unwrap();
        std::fs::write(&path, text + "\n").unwrap();
    }
    let recorded: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        actual,
        recorded,
        "seeded noise differs from the x86_64 recording on {}",
        std::env::consts::ARCH
    );
}

/// A model keeps one plan (one copy of its weights): other input shapes
/// replace it by reading the file again, and going back gives the same
/// numbers as the first plan did.
#[test]
fn a_model_asked_for_other_shapes_replans_and_gives_the_same_numbers() {
    use pocket_studio::engine::{Model, Tensor};
    let decoder = Model::load(&tiny_bundle().join("vae_decoder/model.onnx"), "vae decoder")
        .expect("tiny decoder loads");
    let latents = |h: usize, w: usize| {
        let values = (0..4 * h * w).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0);
        Tensor::f32(vec![1, 4, h, w], values.collect())
    };
    let run = |input: &Tensor| {
        decoder
            .run(&[input])
            .expect("decoder runs")
            .into_iter()
            .next()
            .expect("one output")
    };
    let square = run(&latents(8, 8));
    let wide = run(&latents(8, 12));
    let scale = square.shape[2] / 8;
    assert_eq!(square.shape[2..], [8 * scale, 8 * scale]);
    assert_eq!(wide.shape[2..], [8 * scale, 12 * scale]);
    assert_eq!(run(&latents(8, 8)), square, "the re-read plan differs");
    assert!(
        decoder.last_call_multiply_adds().is_some(),
        "the current plan knows its cost"
    );
}

/// Weights read again after the bundle was verified (a plan for new shapes)
/// are checked again: an image never comes from weights other than the ones
/// its metadata names.
#[test]
fn a_model_file_changed_after_opening_is_refused_when_read_again() {
    let dir = bundle_copy();
    let bundle = Bundle::open(dir.path()).expect("tiny bundle opens");
    let pipeline = Pipeline::load(bundle).expect("tiny bundle loads");
    let run = |size: (u32, u32)| {
        let request = fixture_request("euler", "a lighthouse".into(), String::new(), 1, 7.5, size);
        pipeline.run(
            &request,
            &mut SeededNoise::new(1),
            &mut NoProgress,
            &CancelToken::new(),
        )
    };
    run((64, 64)).expect("the first size runs");
    let unet = dir.path().join("unet/model.onnx");
    flip_byte(&unet);
    match run((96, 64)) {
        Err(Error::ModelUnavailable {
            file,
            fault: ModelFault::ChecksumMismatch { .. },
        }) => assert_eq!(file, unet),
        other => panic!("expected a checksum error naming the UNet, got {other:?}"),
    }
}

/// f16 against f32 on the tiny bundle, same request and seed (CFG on, 4
/// steps): tract's ops computed in f16 keep the final latents and the
/// decoded image close to the f32 result; both numbers are printed for
/// `docs/benchmarks.md`. On aarch64 (qemu-user, Cortex-A76) tract's f16
/// kernels run.
#[test]
fn f16_generation_stays_close_to_f32() {
    use pocket_studio::engine::Precision;
    use pocket_studio::pipeline::difference::Difference;
    let bundle = Bundle::open(tiny_bundle()).expect("tiny bundle opens");
    let mut pipeline = Pipeline::load(bundle).expect("tiny bundle loads");
    let request = Request {
        prompt: "a watercolor lighthouse at dawn".into(),
        negative_prompt: "blurry".into(),
        seed: 7,
        steps: Some(4),
        guidance: Some(7.5),
        ..Request::default()
    };
    let generate = |pipeline: &Pipeline| {
        pipeline
            .run(
                &request,
                &mut SeededNoise::new(request.seed),
                &mut NoProgress,
                &CancelToken::new(),
            )
            .expect("generates")
    };
    let single = generate(&pipeline);
    pipeline.set_precision(Precision::F16);
    let half = generate(&pipeline);
    let difference = Difference::between(&single, &half).expect("same sizes");
    println!("tiny-sd, f16 against f32: {difference}");
    assert!(
        difference.latents_max_abs > 0.0,
        "f16 gave the f32 latents bit for bit: the f16 plan did not run"
    );
    assert!(
        difference.latents_max_abs <= 0.05 * difference.latents_scale,
        "f16 latents too far from f32: {difference}"
    );
    assert!(
        difference.psnr_db >= 30.0,
        "f16 image too far from f32: {difference}"
    );
}
