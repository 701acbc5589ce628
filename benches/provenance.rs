//! Provenance cost per 4K image (not a test): watermark embedding, PNG
//! encoding, C2PA signing and reading back on a 3840x2160 picture, medians
//! of several rounds; and, when the Real-ESRGAN bundle is there, one
//! 960x540 -> 3840x2160 upscale to compare with (the target: watermark +
//! signing under 10 % of it). Run with
//! `cargo bench --bench provenance [-- --upscaler DIR]`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pocket_studio::config::ProvenanceConfig;
use pocket_studio::pipeline::CancelToken;
use pocket_studio::pipeline::output::to_exact_size;
use pocket_studio::pipeline::upscale::Upscaler;
use pocket_studio::provenance::watermark::{self, Payload};
use pocket_studio::provenance::{Provenance, c2pa};
use pocket_studio::store::{ImageMeta, encode_png_bytes};

mod common;
use common::scene;

const ROUNDS: usize = 7;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time<T>(mut run: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        last = Some(run());
        times.push(started.elapsed());
    }
    (median(times), last.expect("at least one round"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut upscaler_dir = PathBuf::from("models/.cache/upscalers/realesr-animevideov3-x4");
    while let Some(arg) = args.next() {
        if arg == "--upscaler" {
            upscaler_dir = args.next().map(PathBuf::from).expect("--upscaler DIR");
        }
    }
    let state = tempfile::tempdir().expect("temp dir");
    let provenance =
        Provenance::from_config(&ProvenanceConfig::default(), state.path()).expect("identity");
    let payload = Payload::default();
    let original = scene(3840, 2160);
    let meta = ImageMeta {
        prompt: "a lighthouse".into(),
        negative_prompt: String::new(),
        seed: 1,
        steps: 4,
        scheduler: "euler".into(),
        guidance: 4.0,
        generated_width: 960,
        generated_height: 544,
        model: "bench".into(),
        model_sha256: "ab".repeat(32),
        upscaler: None,
        upscaler_sha256: None,
        output: "4k".into(),
        source: None,
        strength: None,
        software: "pocket-studio bench".into(),
        watermark: format!("dwtDct {}", payload.to_bit_string()),
        c2pa: "signed".into(),
    };

    let (embed, marked) = time(|| {
        let mut image = original.clone();
        watermark::embed(&mut image, &payload);
        image
    });
    let (copy, _) = time(|| original.clone());
    let embed = embed.saturating_sub(copy);
    let (decode, _) = time(|| watermark::decode(&marked, 48));
    let text = meta.text_chunks(3840, 2160);
    let (encode, png) = time(|| encode_png_bytes(&marked, &text).expect("png"));
    let (sign, signed) = time(|| {
        provenance
            .seal(png.clone(), "bench.png", &meta)
            .expect("sign")
    });
    let (read, _) =
        time(|| c2pa::read_manifest(&signed, "image/png", provenance.anchor_pem()).expect("read"));
    println!(
        "3840x2160, median of {ROUNDS} ({} threads available):",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  watermark embed     {}", ms(embed));
    println!("  watermark decode    {}", ms(decode));
    println!("  PNG encode          {} ({} bytes)", ms(encode), png.len());
    println!(
        "  C2PA sign           {} (+{} bytes)",
        ms(sign),
        signed.len() - png.len()
    );
    println!("  C2PA read+validate  {}", ms(read));

    if !upscaler_dir.is_dir() {
        println!(
            "  (no upscaler bundle at {}: pass --upscaler DIR for the ratio)",
            upscaler_dir.display()
        );
        return;
    }
    let upscaler = Upscaler::open(&upscaler_dir).expect("upscaler bundle");
    let small = scene(960, 540);
    let started = Instant::now();
    to_exact_size(
        small,
        3840,
        2160,
        &upscaler,
        &mut |_, _| {},
        &CancelToken::new(),
    )
    .expect("upscale");
    let upscale = started.elapsed();
    let share = (embed + sign).as_secs_f64() / upscale.as_secs_f64() * 100.0;
    println!(
        "  upscale 960x540 -> 3840x2160 ({}): {}",
        upscaler.manifest().name,
        ms(upscale)
    );
    println!(
        "  watermark + C2PA sign = {:.1} % of the upscale (target < 10 %)",
        share
    );
}
