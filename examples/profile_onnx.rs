//! Per-operator time of one ONNX graph through tract, to find the hot spots
//! the speed work targets: `cargo run --release --example profile_onnx --
//! MODEL.onnx 1,3,128,128 [more input shapes] [--runs N] [--threads N]
//! [--nodes N]`.
//!
//! Models are parsed and optimized as the engine does (our operators, its
//! tract settings). Inputs are zeros (float, or int64 for token ids); times are summed per op
//! type over the runs after one warm-up and printed, largest first; `--nodes N`
//! also prints the N slowest nodes with their multiply-adds and GFLOP/s, to
//! tell a slow kernel from a big one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{SimpleState, eval};
use tract_onnx::tract_hir::infer::Factoid;

fn main() -> TractResult<()> {
    pocket_studio::engine::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 2usize;
    let mut nodes = 0usize;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--threads" {
            let n = it.next().and_then(|s| s.parse().ok()).unwrap_or(1);
            tract_linalg::multithread::set_default_executor(
                tract_linalg::multithread::Executor::multithread(n),
            );
        } else if a == "--nodes" {
            nodes = it.next().and_then(|s| s.parse().ok()).unwrap_or(20);
        } else if a == "--runs" {
            runs = it.next().and_then(|s| s.parse().ok()).unwrap_or(runs);
        } else {
            positional.push(a.clone());
        }
    }
    let Some((path, shapes)) = positional.split_first() else {
        eprintln!("usage: profile_onnx MODEL.onnx SHAPE[,..] ... [--runs N]");
        std::process::exit(2);
    };
    let mut model = pocket_studio::engine::onnx_parser().model_for_path(path)?;
    let mut inputs = TVec::new();
    for (ix, shape) in shapes.iter().enumerate() {
        let shape: Vec<usize> = shape.split(',').map(|d| d.parse().unwrap_or(1)).collect();
        let dt = model
            .input_fact(ix)?
            .datum_type
            .concretize()
            .unwrap_or(f32::datum_type());
        model = model.with_input_fact(ix, InferenceFact::dt_shape(dt, shape.clone()))?;
        inputs.push(Tensor::zero_dt(dt, &shape)?.into_tvalue());
    }
    let started = Instant::now();
    let typed = pocket_studio::engine::optimize(model, "profile")?;
    eprintln!(
        "optimized in {:?} ({} nodes)",
        started.elapsed(),
        typed.nodes.len()
    );
    let plan = typed.into_runnable()?;
    let mut state = SimpleState::new(&plan)?;
    state.run(inputs.clone())?;
    let mut per_op: HashMap<String, (Duration, usize)> = HashMap::new();
    let mut per_node: HashMap<usize, Duration> = HashMap::new();
    let started = Instant::now();
    for _ in 0..runs {
        state.run_plan_with_eval(inputs.clone(), |ctx, st, node, input| {
            let tick = Instant::now();
            let out = eval(ctx, st, node, input);
            let entry = per_op.entry(node.op().name().to_string()).or_default();
            entry.0 += tick.elapsed();
            entry.1 += 1;
            *per_node.entry(node.id).or_default() += tick.elapsed();
            out
        })?;
    }
    let total = started.elapsed() / runs as u32;
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.0));
    println!(
        "{path}: {:.1} ms per run ({runs} runs)",
        total.as_secs_f64() * 1e3
    );
    for (op, (time, count)) in rows.iter().take(25) {
        let ms = time.as_secs_f64() * 1e3 / runs as f64;
        println!(
            "{op:<32} {ms:>10.2} ms {:>5.1}%  x{}",
            100.0 * ms / (total.as_secs_f64() * 1e3),
            count / runs
        );
    }
    let mut slowest: Vec<_> = per_node.into_iter().collect();
    slowest.sort_by_key(|row| std::cmp::Reverse(row.1));
    for (id, time) in slowest.into_iter().take(nodes) {
        let node = plan.model().node(id);
        let ms = time.as_secs_f64() * 1e3 / runs as f64;
        let fmas = pocket_studio::engine::node_multiply_adds(plan.model(), node).unwrap_or(0);
        let shapes: Vec<String> = node
            .inputs
            .iter()
            .map(|o| {
                plan.model()
                    .outlet_fact(*o)
                    .map(|f| format!("{:?}", f.shape))
            })
            .collect::<TractResult<_>>()?;
        println!(
            "{ms:>9.2} ms {:>8.2} GMAC {:>6.1} GFLOP/s  {} {} {:?}",
            fmas as f64 / 1e9,
            2.0 * fmas as f64 / (ms * 1e6),
            node.op().name(),
            node.name,
            shapes
        );
    }
    Ok(())
}
