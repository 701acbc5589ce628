//! What f16 costs against f32 for one request and seed: `cargo run --release
//! --example precision_cost -- BUNDLE [--seed N] [--steps N] [--width W
//! --height H] [--guidance G]` generates the same image in f32 and in f16
//! (tract's ops; ours stay f32) and prints the final latents' largest
//! difference, the decoded image's PSNR and each run's time (planning
//! included; on a CPU without f16 arithmetic tract emulates it, slowly): the
//! table in `docs/benchmarks.md` ("f16").

use std::time::Instant;

use pocket_studio::engine::Precision;
use pocket_studio::pipeline::difference::Difference;
use pocket_studio::{Bundle, CancelToken, NoProgress, Pipeline, Request, SeededNoise};

/// Large activations in mappings of their own, recycled (see `LargeBlocks`).
#[global_allocator]
static ALLOCATOR: pocket_studio::engine::LargeBlocks = pocket_studio::engine::LargeBlocks;

fn main() -> anyhow::Result<()> {
    pocket_studio::engine::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bundle) = args.first() else {
        anyhow::bail!(
            "usage: precision_cost BUNDLE [--seed N] [--steps N] [--width W --height H] [--guidance G]"
        );
    };
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let number = |name: &str| -> anyhow::Result<Option<f64>> {
        option(name)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|e| anyhow::anyhow!("{name} {v}: {e}"))
            })
            .transpose()
    };
    let request = Request {
        prompt: "a watercolor lighthouse at dawn".into(),
        negative_prompt: "blurry".into(),
        seed: number("--seed")?.unwrap_or(1.0) as u64,
        steps: Some(number("--steps")?.unwrap_or(4.0) as u32),
        guidance: number("--guidance")?.map(|g| g as f32),
        width: number("--width")?.map(|w| w as u32),
        height: number("--height")?.map(|h| h as u32),
        ..Request::default()
    };
    let mut pipeline = Pipeline::load(Bundle::open(bundle)?)?;
    let mut generated = Vec::new();
    for precision in [Precision::F32, Precision::F16] {
        pipeline.set_precision(precision);
        let started = Instant::now();
        let result = pipeline.run(
            &request,
            &mut SeededNoise::new(request.seed),
            &mut NoProgress,
            &CancelToken::new(),
        )?;
        println!(
            "{}: {:.2} s with planning ({}x{}, {} steps)",
            precision.name(),
            started.elapsed().as_secs_f64(),
            result.image.width,
            result.image.height,
            result.settings.steps
        );
        generated.push(result);
    }
    let difference = Difference::between(&generated[0], &generated[1])
        .ok_or_else(|| anyhow::anyhow!("the two runs differ in size"))?;
    println!("{bundle}, f16 against f32: {difference}");
    Ok(())
}
