//! Per-operator time of one ONNX graph through tract, to find the hot spots
//! the speed work targets: `cargo run --release --example profile_onnx --
//! MODEL.onnx 1,3,128,128 [more input shapes] [--runs N] [--threads N]
//! [--nodes N]`.
//!
//! Models are parsed and optimized as the engine does (our operators, its
//! tract settings). Inputs are zeros (float, or int64 for token ids); times are summed per op
//! type over the runs after one warm-up and printed, largest first; `--nodes N`
//! also prints the N slowest nodes with their multiply-adds and GFLOP/s, to
//! tell a slow kernel from a big one; `--memory N` prints the N nodes after
//! which most memory was in use (allocated and not freed, and the resident
//! set), to find what makes a network's peak memory, and the page faults.
//! `--costs` prints, instead of running, one JSON object a node of the
//! optimized plan (op, multiply-adds, bytes of its inputs and outputs): the
//! work and traffic the board projection (`benches/board_projection.py`)
//! prices.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{SimpleState, eval};
use tract_onnx::tract_hir::infer::Factoid;

/// Large activations in mappings of their own, recycled (see `LargeBlocks`).
#[global_allocator]
static ALLOCATOR: pocket_studio::engine::LargeBlocks = pocket_studio::engine::LargeBlocks;

fn main() -> TractResult<()> {
    pocket_studio::engine::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 2usize;
    let mut nodes = 0usize;
    let mut memory = 0usize;
    let mut costs = false;
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
        } else if a == "--memory" {
            memory = it.next().and_then(|s| s.parse().ok()).unwrap_or(20);
        } else if a == "--costs" {
            costs = true;
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
    let mut model = pocket_studio::engine::parse_unchecked(std::path::Path::new(path))?;
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
    if costs {
        return print_costs(&typed);
    }
    let plan = typed.into_runnable()?;
    let mut state = SimpleState::new(&plan)?;
    state.run(inputs.clone())?;
    let mut per_op: HashMap<String, (Duration, usize)> = HashMap::new();
    let mut per_node: HashMap<usize, Duration> = HashMap::new();
    let mut heap_after: HashMap<usize, (u64, u64)> = HashMap::new();
    let heap_before = heap_in_use();
    let faults_before = minor_faults();
    let started = Instant::now();
    for _ in 0..runs {
        state.run_plan_with_eval(inputs.clone(), |ctx, st, node, input| {
            let tick = Instant::now();
            let out = eval(ctx, st, node, input);
            let entry = per_op.entry(node.op().name().to_string()).or_default();
            entry.0 += tick.elapsed();
            entry.1 += 1;
            *per_node.entry(node.id).or_default() += tick.elapsed();
            if memory > 0 {
                let held = heap_after.entry(node.id).or_default();
                *held = (held.0.max(heap_in_use()), held.1.max(resident()));
            }
            out
        })?;
    }
    let total = started.elapsed() / runs as u32;
    let faults = minor_faults() - faults_before;
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
    if memory > 0 {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "in use before the runs (weights, plan, inputs): {:.0} MiB; {faults} page faults in the runs",
            mib(heap_before)
        );
        let mut fullest: Vec<_> = heap_after.into_iter().collect();
        fullest.sort_by_key(|row| std::cmp::Reverse(row.1.0));
        for (id, (heap, rss)) in fullest.into_iter().take(memory) {
            let node = plan.model().node(id);
            println!(
                "{:>8.0} MiB in use above that, {:>8.0} MiB resident after {} {} -> {:?}",
                mib(heap.saturating_sub(heap_before)),
                mib(rss),
                node.op().name(),
                node.name,
                node.outputs.first().map(|o| &o.fact.shape)
            );
        }
    }
    Ok(())
}

/// One JSON line a node: its op's name, the multiply-adds tract's cost
/// model gives it, and the bytes of its inputs (weights included) and
/// outputs: what it must read and write when nothing stays in cache.
fn print_costs(model: &TypedModel) -> TractResult<()> {
    let bytes = |fact: &TypedFact| {
        fact.shape.as_concrete().map_or(0, |s| {
            s.iter().product::<usize>() * fact.datum_type.size_of()
        })
    };
    for node in &model.nodes {
        if node.op_is::<tract_onnx::tract_core::ops::konst::Const>()
            || node.op_is::<tract_onnx::tract_core::ops::source::TypedSource>()
        {
            continue;
        }
        let read: usize = node
            .inputs
            .iter()
            .map(|o| model.outlet_fact(*o).map(bytes))
            .sum::<TractResult<usize>>()?;
        let written: usize = node.outputs.iter().map(|o| bytes(&o.fact)).sum();
        let fmas = pocket_studio::engine::node_multiply_adds(model, node).unwrap_or(0);
        println!(
            "{}",
            serde_json::json!({
                "op": node.op().name(),
                "name": node.name,
                "multiply_adds": fmas,
                "bytes": read + written,
            })
        );
    }
    Ok(())
}

/// Bytes handed out and not had back: glibc's, over all arenas, and the
/// large blocks' (`LargeBlocks`).
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd + pocket_studio::engine::large_blocks_in_use()) as u64
}

/// Page faults this process has taken (no disk involved).
fn minor_faults() -> i64 {
    // SAFETY: getrusage only fills the struct given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage.ru_minflt
    }
}

/// This process's resident set in bytes (`/proc/self/statm`, second field).
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        // SAFETY: sysconf only reads a constant of the process.
        .map_or(0, |pages| {
            pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
        })
}
