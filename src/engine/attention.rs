//! Attention in query chunks that fit the cache.
//!
//! `softmax(Q K^T) V` over n tokens builds an n x n score matrix per head:
//! at 672x384 the UNet's first block has 4032 tokens, 65 MB per head, twice
//! this machine's L3, and tract then spends more time packing that matrix
//! than multiplying it. Every output row depends on its own query row only,
//! so the graph is rewritten (before tract optimizes it) into chunks of query
//! rows whose scores fit in [`CHUNK_BYTES`], concatenated at the end. The
//! arithmetic per row is unchanged. On CPUs with AVX2 and on aarch64 the
//! fused op (`fused_attention.rs`, which finds attentions through
//! [`find_chain`] too) takes them first; the chunks serve the rest.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Slice, TypedConcat};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// Score bytes per head and chunk the rewrite aims at (a slice of L2/L3).
pub const CHUNK_BYTES: usize = 4 << 20;

/// One attention found in the graph.
struct Site {
    scores: usize,
    softmax: usize,
    mix: usize,
    /// Query-row axis in Q (the first product's input `q_slot`) and in the
    /// second product's output.
    q_slot: usize,
    q_axis: usize,
    out_axis: usize,
    rows: usize,
    chunk: usize,
}

/// Rewrite every `EinSum -> Softmax -> EinSum` attention whose per-head
/// scores exceed `chunk_bytes` into query chunks; returns how many.
pub fn chunk_attention(model: &mut TypedModel, chunk_bytes: usize) -> TractResult<usize> {
    super::rewrite_each(model, |m, id| find(m, id, chunk_bytes), rewrite)
}

/// An attention as tract declutters it: a product of queries and keys
/// (`scores`), a softmax over one of its axes (the keys'), and a product of
/// the probabilities and the values (`mix`). Node ids.
pub(super) struct Chain {
    pub scores: usize,
    pub mix: usize,
    /// The scores' axis the softmax runs over.
    pub keys_axis: usize,
    /// Which input of `mix` the probabilities are.
    pub p_slot: usize,
}

/// The attention whose softmax is node `softmax`, if it is one: a float
/// softmax over one axis, fed by a two-input product and feeding exactly one
/// other, neither quantized.
pub(super) fn find_chain(model: &TypedModel, softmax: usize) -> Option<Chain> {
    let node = &model.nodes[softmax];
    let op = node.op_as::<Softmax>()?;
    if op.axes.len() != 1
        || op.kind != SoftmaxKind::Softmax
        || op.quant_output_dt.is_some()
        || node.inputs.len() != 1
        || node.outputs[0].successors.len() != 1
    {
        return None;
    }
    let scores = &model.nodes[node.inputs[0].node];
    let scores_op = scores.op_as::<EinSum>()?;
    if scores.inputs.len() != 2 || scores_op.q_params.is_some() {
        return None;
    }
    let use_ = node.outputs[0].successors[0];
    let mix = &model.nodes[use_.node];
    let mix_op = mix.op_as::<EinSum>()?;
    if mix.inputs.len() != 2 || mix_op.q_params.is_some() {
        return None;
    }
    Some(Chain {
        scores: scores.id,
        mix: mix.id,
        keys_axis: op.axes[0],
        p_slot: use_.slot,
    })
}

fn find(model: &TypedModel, softmax: usize, chunk_bytes: usize) -> TractResult<Option<Site>> {
    let Some(chain) = find_chain(model, softmax) else {
        return Ok(None);
    };
    let node = &model.nodes[softmax];
    let scores_node = &model.nodes[chain.scores];
    let mix_node = &model.nodes[chain.mix];
    let (Some(scores_op), Some(mix_op)) =
        (scores_node.op_as::<EinSum>(), mix_node.op_as::<EinSum>())
    else {
        return Ok(None);
    };
    let (keys_axis, p_slot) = (chain.keys_axis, chain.p_slot);
    let fact = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = fact.shape.as_concrete() else {
        return Ok(None);
    };
    let rank = shape.len();
    // The query axis: a scores axis other than the keys', coming from
    // exactly one input of the first product, and carried by the second
    // product from the probabilities to its output alone.
    for scores_axis in (0..rank).filter(|&a| a != keys_axis) {
        let axis = scores_op.axes.axis((InOut::Out(0), scores_axis))?;
        let from: Vec<usize> = (0..2).filter(|&i| axis.inputs[i].len() == 1).collect();
        if from.len() != 1 || (0..2).any(|i| axis.inputs[i].len() > 1) {
            continue;
        }
        let q_slot = from[0];
        let q_axis = axis.inputs[q_slot][0];
        let mixed = mix_op.axes.axis((InOut::In(p_slot), scores_axis))?;
        if mixed.outputs[0].len() != 1 || !mixed.inputs[1 - p_slot].is_empty() {
            continue;
        }
        let rows = shape[scores_axis];
        let heads: usize = shape
            .iter()
            .enumerate()
            .filter(|&(a, _)| a != scores_axis && a != keys_axis)
            .map(|(_, d)| d)
            .product();
        let per_head = shape[keys_axis] * rows * fact.datum_type.size_of();
        if per_head <= chunk_bytes || heads == 0 {
            return Ok(None);
        }
        let chunk = (chunk_bytes / (shape[keys_axis] * fact.datum_type.size_of())).max(1);
        return Ok(Some(Site {
            scores: scores_node.id,
            softmax,
            mix: mix_node.id,
            q_slot,
            q_axis,
            out_axis: mixed.outputs[0][0],
            rows,
            chunk,
        }));
    }
    Ok(None)
}

fn rewrite(model: &mut TypedModel, site: &Site) -> TractResult<()> {
    let scores = &model.nodes[site.scores];
    let softmax = &model.nodes[site.softmax];
    let mix = &model.nodes[site.mix];
    let name = &mix.name;
    let mut patch = TypedModelPatch::new(format!("chunk attention {name}"));
    let q = patch.tap_model(model, scores.inputs[site.q_slot])?;
    let k = patch.tap_model(model, scores.inputs[1 - site.q_slot])?;
    let p_slot = mix
        .inputs
        .iter()
        .position(|o| o.node == site.softmax)
        .context("softmax feeds the second product")?;
    let v = patch.tap_model(model, mix.inputs[1 - p_slot])?;
    let mut parts = TVec::new();
    let mut start = 0;
    while start < site.rows {
        let end = (start + site.chunk).min(site.rows);
        let tag = format!("{name}.rows{start}");
        let qc = patch.wire_node(
            format!("{tag}.q"),
            Slice::new(site.q_axis, start, end),
            &[q],
        )?[0];
        let mut pair = [qc, k];
        if site.q_slot == 1 {
            pair.swap(0, 1);
        }
        let s = patch.wire_node(format!("{tag}.scores"), scores.op.clone(), &pair)?[0];
        let p = patch.wire_node(format!("{tag}.softmax"), softmax.op.clone(), &[s])?[0];
        let mut pair = [p, v];
        if p_slot == 1 {
            pair.swap(0, 1);
        }
        parts.push(patch.wire_node(format!("{tag}.mix"), mix.op.clone(), &pair)?[0]);
        start = end;
    }
    let joined = patch.wire_node(
        format!("{name}.rows"),
        TypedConcat {
            axis: site.out_axis,
        },
        &parts,
    )?[0];
    patch.shunt_outside(model, OutletId::new(site.mix, 0), joined)?;
    patch.apply(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support;
    use tract_linalg::multithread::Executor;

    /// diffusers' attention as tract declutters it: Q, K, V `[a, m, b, k]`.
    fn attention_model() -> TypedModel {
        let mut model = TypedModel::default();
        let fact = f32::fact([1, 8, 2, 4]);
        let q = model.add_source("q", fact.clone()).unwrap();
        let k = model.add_source("k", fact.clone()).unwrap();
        let v = model.add_source("v", fact).unwrap();
        let out = test_support::wire_attention(&mut model, [q, k, v]);
        model.select_output_outlets(&[out]).unwrap();
        model
    }

    fn run(model: TypedModel) -> Vec<f32> {
        let input = |seed: f32| {
            let values: Vec<f32> = (0..64).map(|i| ((i as f32 + seed) * 0.37).sin()).collect();
            tensor1(&values)
                .into_shape(&[1, 8, 2, 4])
                .unwrap()
                .into_tvalue()
        };
        let inputs = tvec!(input(0.0), input(1.0), input(2.0));
        test_support::run_plan(model, inputs, Executor::SingleThread)
    }

    #[test]
    fn chunked_attention_gives_the_same_rows() {
        let whole = run(attention_model());
        let mut chunked = attention_model();
        // 3 query rows of 8 keys per chunk: chunks of 3, 3 and 2 rows.
        assert_eq!(chunk_attention(&mut chunked, 3 * 8 * 4).unwrap(), 1);
        let slices = chunked.nodes.iter().filter(|n| n.op_is::<Slice>()).count();
        assert_eq!(slices, 3);
        let chunked = run(chunked);
        assert_eq!(whole.len(), chunked.len());
        for (a, b) in whole.iter().zip(&chunked) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn small_attention_is_left_alone() {
        let mut model = attention_model();
        assert_eq!(chunk_attention(&mut model, CHUNK_BYTES).unwrap(), 0);
    }
}
