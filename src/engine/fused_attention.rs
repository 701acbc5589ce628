//! Attention as one op: scores, softmax and the weighted sum of the values,
//! flash-attention style (x86_64 AVX2, aarch64 NEON).
//!
//! tract runs `softmax(Q K^T) V` as two products and a softmax; at 672x384
//! the UNet's first self-attentions have 4,032 tokens, so each head's scores
//! are 4,032 x 4,032, and even in query chunks that fit the cache
//! (`attention.rs`) one such attention took about a second (`profile_onnx`,
//! two threads; the products at 50-58 GFLOP/s: each chunk packs its
//! probabilities and the keys or values again, and a product over only 40
//! features, the head size, does little work per value packed). onnxruntime
//! takes 0.58 s on the same attention alone. Here the keys (transposed) and
//! the values are packed once a call, in panels of 16. A unit of work is one
//! head's block of query rows; for each chunk of keys (the chunk's keys and
//! values fit L2), each group of six rows gets its scores against the chunk
//! (tiles of six rows by 16 keys, the queries read where they lie, the
//! scores in L1), their exponentials against the row's running maximum (the
//! sums so far rescaled when it grows), and those times the chunk's values
//! added to the rows' sums (tiles of six rows by 16 features). Each output
//! row is its sums over its total. Nothing of size tokens x tokens is ever
//! stored; the same attention takes 0.40-0.48 s.
//!
//! Only float attentions whose queries have their features as the last axis
//! are fused; the rest (and every attention on an x86_64 CPU without AVX2 and
//! FMA) keep tract's ops and the chunking of `attention.rs`.

use std::cell::RefCell;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::attention::{Chain, find_chain};
use super::product_tile::{COLUMNS, ROWS, tile};
use super::units::{self, SharedOutput};

/// Bytes of keys and values one chunk of keys brings: they stay in L2
/// while every row group of a unit goes over them.
const CHUNK_BYTES: usize = 320 << 10;
/// Query rows a unit (its head's keys and values are read once a unit):
/// the level-0 attentions give 672 units, the threads finish together.
const UNIT_ROWS: usize = 96;

/// Whether this CPU runs the fused op.
pub fn available() -> bool {
    super::direct_conv::available()
}

/// Fuse every attention the op handles into one [`FusedAttention`];
/// returns how many. Does nothing on a CPU without the engine's kernels
/// ([`super::direct_conv::available`]).
pub fn fuse_attention(model: &mut TypedModel) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    super::rewrite_each(model, find, rewrite)
}

/// Where one tensor's axes are: the head axes (batch and heads, in the
/// scores' order), the rows (tokens) and the columns (features).
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
struct Layout {
    heads: TVec<usize>,
    rows: usize,
    columns: usize,
}

/// One attention to fuse.
struct Site {
    chain: Chain,
    /// Which input of the scores product the queries are.
    q_slot: usize,
    op: FusedAttention,
}

fn find(model: &TypedModel, softmax: usize) -> TractResult<Option<Site>> {
    let Some(chain) = find_chain(model, softmax) else {
        return Ok(None);
    };
    let scores = &model.nodes[chain.scores];
    let mix = &model.nodes[chain.mix];
    let (Some(scores_op), Some(mix_op)) = (scores.op_as::<EinSum>(), mix.op_as::<EinSum>()) else {
        return Ok(None);
    };
    let Some((q_slot, op)) = layouts(scores_op, mix_op, &chain) else {
        return Ok(None);
    };
    // Float inputs of known, matching sizes, none of them empty.
    let q = model.outlet_fact(scores.inputs[q_slot])?;
    let k = model.outlet_fact(scores.inputs[1 - q_slot])?;
    let v = model.outlet_fact(mix.inputs[1 - chain.p_slot])?;
    let out = model.outlet_fact(OutletId::new(chain.mix, 0))?;
    if [q, k, v, out]
        .iter()
        .any(|f| f.datum_type != f32::datum_type())
    {
        return Ok(None);
    }
    let (Some(qs), Some(ks), Some(vs)) = (
        q.shape.as_concrete(),
        k.shape.as_concrete(),
        v.shape.as_concrete(),
    ) else {
        return Ok(None);
    };
    let same_heads =
        op.q.heads
            .iter()
            .zip(&op.k.heads)
            .zip(&op.v.heads)
            .all(|((&a, &b), &c)| qs[a] == ks[b] && ks[b] == vs[c]);
    if !same_heads
        || op.q.columns + 1 != qs.len()
        || qs[op.q.columns] != ks[op.k.columns]
        || ks[op.k.rows] != vs[op.v.rows]
        || [qs, ks, vs].iter().any(|s| s.contains(&0))
    {
        return Ok(None);
    }
    Ok(Some(Site { chain, q_slot, op }))
}

/// Read the four tensors' layouts off the two products: the scores
/// product's axes are heads (in both inputs and the output), the query
/// rows (queries and output), the keys (keys and output, the softmax axis)
/// and the features (both inputs, summed); the second product carries the
/// heads and query rows to its output, sums the keys against the values'
/// rows and takes the values' columns. Anything else: `None`.
fn layouts(scores: &EinSum, mix: &EinSum, chain: &Chain) -> Option<(usize, FusedAttention)> {
    let mut heads = Vec::new(); // (scores axis, in 0, in 1)
    let (mut query, mut key, mut feature) = (None, None, None);
    for axis in scores.axes.iter_all_axes() {
        let [a, b] = [&axis.inputs[0], &axis.inputs[1]];
        let out = &axis.outputs[0];
        if a.len() > 1 || b.len() > 1 || out.len() > 1 {
            return None;
        }
        match (a.first(), b.first(), out.first()) {
            (Some(&a), Some(&b), Some(&s)) => heads.push((s, a, b)),
            (Some(&a), None, Some(&s)) if s == chain.keys_axis => key = Some((0, a, s)),
            (None, Some(&b), Some(&s)) if s == chain.keys_axis => key = Some((1, b, s)),
            (Some(&a), None, Some(&s)) => query = query.xor(Some((0, a, s))),
            (None, Some(&b), Some(&s)) => query = query.xor(Some((1, b, s))),
            (Some(&a), Some(&b), None) => feature = feature.xor(Some((a, b))),
            _ => return None,
        }
    }
    let ((q_slot, q_row, s_query), (k_slot, k_row, s_key)) = (query?, key?);
    let (f0, f1) = feature?;
    if q_slot == k_slot {
        return None;
    }
    heads.sort_unstable();
    let slot = |pair: (usize, usize), slot: usize| if slot == 0 { pair.0 } else { pair.1 };
    let q = Layout {
        heads: heads
            .iter()
            .map(|&(_, a, b)| slot((a, b), q_slot))
            .collect(),
        rows: q_row,
        columns: slot((f0, f1), q_slot),
    };
    let k = Layout {
        heads: heads
            .iter()
            .map(|&(_, a, b)| slot((a, b), k_slot))
            .collect(),
        rows: k_row,
        columns: slot((f0, f1), k_slot),
    };
    let (p_slot, v_slot) = (chain.p_slot, 1 - chain.p_slot);
    let through = |s: usize| mix.axes.axis((InOut::In(p_slot), s)).ok();
    let single = |list: &TVec<usize>| (list.len() == 1).then(|| list[0]);
    let (mut v, mut out) = (Layout::default(), Layout::default());
    for &(s, _, _) in &heads {
        let axis = through(s)?;
        v.heads.push(single(&axis.inputs[v_slot])?);
        out.heads.push(single(&axis.outputs[0])?);
    }
    let axis = through(s_query)?;
    if !axis.inputs[v_slot].is_empty() {
        return None;
    }
    out.rows = single(&axis.outputs[0])?;
    let axis = through(s_key)?;
    if !axis.outputs[0].is_empty() {
        return None;
    }
    v.rows = single(&axis.inputs[v_slot])?;
    let mut columns = mix
        .axes
        .iter_all_axes()
        .filter(|axis| axis.inputs[p_slot].is_empty());
    let axis = columns.next()?;
    if columns.next().is_some() || axis.inputs[v_slot].len() != 1 {
        return None;
    }
    v.columns = axis.inputs[v_slot][0];
    out.columns = single(&axis.outputs[0])?;
    let rank = heads.len() + 2;
    let ranks = [
        scores.axes.rank(InOut::In(q_slot)),
        scores.axes.rank(InOut::In(k_slot)),
        mix.axes.rank(InOut::In(v_slot)),
        mix.axes.rank(InOut::Out(0)),
    ];
    if ranks.iter().any(|&r| r != rank) {
        return None;
    }
    Some((q_slot, FusedAttention { q, k, v, out }))
}

fn rewrite(model: &mut TypedModel, site: &Site) -> TractResult<()> {
    let scores = &model.nodes[site.chain.scores];
    let mix = &model.nodes[site.chain.mix];
    let mut patch = TypedModelPatch::new(format!("fuse attention {}", mix.name));
    let q = patch.tap_model(model, scores.inputs[site.q_slot])?;
    let k = patch.tap_model(model, scores.inputs[1 - site.q_slot])?;
    let v = patch.tap_model(model, mix.inputs[1 - site.chain.p_slot])?;
    let name = format!("{}.fused", mix.name);
    let y = patch.wire_node(name, site.op.clone(), &[q, k, v])?[0];
    patch.shunt_outside(model, OutletId::new(site.chain.mix, 0), y)?;
    patch.apply(model)
}

/// `softmax(Q K^T) V` per head over inputs `[Q, K, V]`, each tensor's axes
/// where its [`Layout`] says.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedAttention {
    q: Layout,
    k: Layout,
    v: Layout,
    out: Layout,
}

/// One tensor's strides along a layout's axes.
#[derive(Debug, Clone)]
struct Strides {
    heads: TVec<usize>,
    rows: usize,
    columns: usize,
}

impl Strides {
    fn of(layout: &Layout, shape: &[usize]) -> Strides {
        let natural = Tensor::natural_strides(shape);
        let at = |axis: usize| natural[axis] as usize;
        Strides {
            heads: layout.heads.iter().map(|&a| at(a)).collect(),
            rows: at(layout.rows),
            columns: at(layout.columns),
        }
    }

    /// Where head `index` (counted over `sizes`, the last fastest) starts.
    fn head_offset(&self, sizes: &[usize], mut index: usize) -> usize {
        let mut offset = 0;
        for (size, stride) in sizes.iter().zip(&self.heads).rev() {
            offset += (index % size) * stride;
            index /= size;
        }
        offset
    }
}

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Query rows, keys, features of a query or key, features of a value.
    queries: usize,
    keys: usize,
    features: usize,
    values: usize,
}

impl Sizes {
    /// Keys padded to whole tiles (the scores buffer's row).
    fn keys_padded(&self) -> usize {
        self.keys.next_multiple_of(COLUMNS)
    }

    fn values_padded(&self) -> usize {
        self.values.next_multiple_of(COLUMNS)
    }

    /// Keys a chunk: their keys and values [`CHUNK_BYTES`], whole
    /// panels of 32 (the softmax kernel's step).
    fn chunk_keys(&self) -> usize {
        let per_key = (self.features + self.values_padded()) * size_of::<f32>();
        (CHUNK_BYTES / per_key / 32 * 32).max(32)
    }
}

/// One head's query rows `rows`, computed by one thread.
struct Unit {
    head: usize,
    rows: std::ops::Range<usize>,
}

/// One call's inputs as the units read them.
struct Call<'a> {
    sizes: Sizes,
    queries: &'a [f32],
    /// Per head: the keys transposed, in panels of 16 keys
    /// (`[panel][feature][16]`, zero past the last key).
    keys: &'a [f32],
    /// Per head: the values in panels of 16 features (`[panel][key][16]`,
    /// zero past the last feature).
    values: &'a [f32],
    /// Per head: where it starts in the queries and the output.
    q_heads: Vec<usize>,
    out_heads: Vec<usize>,
    q_rows: usize,
    out: &'a Strides,
}

thread_local! {
    /// Each thread's scores of one row group and chunk, and the output sums
    /// of one unit, kept between calls.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl FusedAttention {
    /// Pack each head's keys (transposed) and values into panels of 16
    /// columns: `[heads][keys padded][features]` and `[heads][values
    /// padded][keys]`.
    fn pack(
        &self,
        sizes: &Sizes,
        heads: &[usize],
        inputs: [(&[f32], &[usize]); 2],
    ) -> (Vec<f32>, Vec<f32>) {
        let count: usize = heads.iter().product();
        let [(k, k_shape), (v, v_shape)] = inputs;
        let (ks, vs) = (Strides::of(&self.k, k_shape), Strides::of(&self.v, v_shape));
        let key_block = sizes.keys_padded() * sizes.features;
        let value_block = sizes.values_padded() * sizes.keys;
        let mut keys = vec![0f32; count * key_block];
        let mut values = vec![0f32; count * value_block];
        let mut jobs: Vec<(usize, &mut [f32], &mut [f32])> = keys
            .chunks_mut(key_block)
            .zip(values.chunks_mut(value_block))
            .enumerate()
            .map(|(h, (k, v))| (h, k, v))
            .collect();
        units::for_each_mut(&mut jobs, |(h, keys, values)| {
            let (k0, v0) = (ks.head_offset(heads, *h), vs.head_offset(heads, *h));
            for key in 0..sizes.keys {
                let (panel, lane) = (key / COLUMNS, key % COLUMNS);
                for f in 0..sizes.features {
                    keys[(panel * sizes.features + f) * COLUMNS + lane] =
                        k[k0 + key * ks.rows + f * ks.columns];
                }
                for f in 0..sizes.values {
                    let (panel, lane) = (f / COLUMNS, f % COLUMNS);
                    values[(panel * sizes.keys + key) * COLUMNS + lane] =
                        v[v0 + key * vs.rows + f * vs.columns];
                }
            }
        });
        (keys, values)
    }

    /// One unit as flash attention does it: for each chunk of keys, each
    /// row group's scores against the chunk (in L1), their exponentials
    /// against the row's running maximum (the sums so far rescaled when the
    /// maximum grows), and those times the chunk's values added to the
    /// rows' sums; each output row is its sums over its total.
    fn run_unit(&self, call: &Call, unit: &Unit, output: &SharedOutput) {
        let sizes = call.sizes;
        let rows = unit.rows.len();
        let (chunk, width) = (sizes.chunk_keys(), sizes.values_padded());
        let keys = &call.keys[unit.head * sizes.keys_padded() * sizes.features..]
            [..sizes.keys_padded() * sizes.features];
        let values = &call.values[unit.head * width * sizes.keys..][..width * sizes.keys];
        let queries = &call.queries[call.q_heads[unit.head] + unit.rows.start * call.q_rows..];
        let mut max = [f32::NEG_INFINITY; UNIT_ROWS];
        let mut total = [0f32; UNIT_ROWS];
        BUFFERS.with_borrow_mut(|(scores, sums)| {
            scores.resize(ROWS * chunk, 0.0);
            sums.clear();
            sums.resize(rows * width, 0.0);
            for keys_from in (0..sizes.keys).step_by(chunk) {
                let depth = chunk.min(sizes.keys - keys_from);
                let panels = keys_from / COLUMNS..(keys_from + depth).div_ceil(COLUMNS);
                for first in (0..rows).step_by(ROWS) {
                    let tile_rows = ROWS.min(rows - first);
                    // The rows are the head's, features the last axis.
                    let a = &queries[first * call.q_rows..]
                        [..(tile_rows - 1) * call.q_rows + sizes.features];
                    for (at, panel) in panels.clone().enumerate() {
                        let b =
                            &keys[panel * sizes.features * COLUMNS..][..sizes.features * COLUMNS];
                        let c = &mut scores[at * COLUMNS..];
                        tile(
                            tile_rows,
                            sizes.features,
                            (a, call.q_rows),
                            b,
                            (c, chunk),
                            false,
                        );
                    }
                    for r in 0..tile_rows {
                        let i = first + r;
                        let row = &mut scores[r * chunk..][..depth];
                        let row_max = row_max(row);
                        if row_max > max[i] {
                            let scale = (max[i] - row_max).exp();
                            total[i] *= scale;
                            sums[i * width..][..width]
                                .iter_mut()
                                .for_each(|v| *v *= scale);
                            max[i] = row_max;
                        }
                        total[i] += exp_sum(row, max[i]);
                    }
                    for panel in 0..width / COLUMNS {
                        let b = &values[(panel * sizes.keys + keys_from) * COLUMNS..]
                            [..depth * COLUMNS];
                        let c = &mut sums[first * width + panel * COLUMNS..];
                        tile(tile_rows, depth, (scores, chunk), b, (c, width), true);
                    }
                }
            }
            for r in 0..rows {
                let row = unit.rows.start + r;
                let scale = total[r].recip();
                let at = call.out_heads[unit.head] + row * call.out.rows;
                for (column, value) in sums[r * width..][..sizes.values].iter().enumerate() {
                    // SAFETY: units cover disjoint heads and rows of the
                    // output, each written by one thread.
                    unsafe { output.set(at + column * call.out.columns, value * scale) };
                }
            }
        });
    }
}

/// The largest value of a row (not empty).
fn row_max(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available()` held when the op was made.
    unsafe {
        avx2::row_max(row)
    }
    #[cfg(target_arch = "aarch64")]
    {
        neon::row_max(row)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
    }
}

/// Replace each value `x` of a row by `exp(x - max)`, `max` at least the
/// row's largest; returns their sum.
fn exp_sum(row: &mut [f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available()` held when the op was made.
    unsafe {
        avx2::exp_sum(row, max)
    }
    #[cfg(target_arch = "aarch64")]
    {
        neon::exp_sum(row, max)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        row.iter_mut()
            .map(|v| {
                *v = (*v - max).exp();
                *v
            })
            .sum()
    }
}

/// Cephes' degree-6 polynomial for `2^f`, `|f| <= 1/2` (relative error
/// about 2e-7), highest power first: both twins' `exp2` evaluate it by
/// Horner's rule with fused multiply-adds, so they give the same values.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const EXP2_POLYNOMIAL: [f32; 7] = [
    1.535_336_2e-4,
    1.339_887_4e-3,
    9.618_437e-3,
    5.550_332_5e-2,
    2.402_264_8e-1,
    6.931_472e-1,
    1.0,
];

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::row_max`]: eight lanes, then the tail one by one.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_max(row: &[f32]) -> f32 {
        let mut lanes = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut blocks = row.chunks_exact(8);
        for block in &mut blocks {
            // SAFETY: eight values.
            lanes = _mm256_max_ps(lanes, unsafe { _mm256_loadu_ps(block.as_ptr()) });
        }
        let mut spread = [0f32; 8];
        // SAFETY: eight values.
        unsafe { _mm256_storeu_ps(spread.as_mut_ptr(), lanes) };
        spread
            .iter()
            .chain(blocks.remainder())
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
    }

    /// `2^t` for eight `t <= 0`: `t = k + f` with `k` whole and `|f| <=
    /// 1/2`, `2^f` by Cephes' degree-6 polynomial (relative error about
    /// 2e-7), `2^k` built in the exponent bits; `t` below -126 gives 0.
    #[target_feature(enable = "avx2,fma")]
    fn exp2(t: __m256) -> __m256 {
        let t = _mm256_max_ps(t, _mm256_set1_ps(-127.0));
        let k = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let f = _mm256_sub_ps(t, k);
        let mut p = _mm256_set1_ps(super::EXP2_POLYNOMIAL[0]);
        for c in &super::EXP2_POLYNOMIAL[1..] {
            p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(*c));
        }
        // k = -127 gives a zero exponent field: 0 (and 2^-127 p is below
        // what the sums can tell from 0).
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(k),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }

    /// [`super::exp_sum`]: `exp(x - max) = 2^((x - max) log2 e)`, eight
    /// lanes at a time, the tail through a padded block.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_sum(row: &mut [f32], max: f32) -> f32 {
        let (top, log2e) = (
            _mm256_set1_ps(max),
            _mm256_set1_ps(std::f32::consts::LOG2_E),
        );
        let mut sums = [_mm256_setzero_ps(); 2];
        let mut blocks = row.chunks_exact_mut(8);
        for (ix, block) in (&mut blocks).enumerate() {
            // SAFETY: eight values.
            unsafe {
                let x = _mm256_loadu_ps(block.as_ptr());
                let y = exp2(_mm256_mul_ps(_mm256_sub_ps(x, top), log2e));
                _mm256_storeu_ps(block.as_mut_ptr(), y);
                sums[ix % 2] = _mm256_add_ps(sums[ix % 2], y);
            }
        }
        let tail = blocks.into_remainder();
        let mut spread = [max; 8];
        spread[..tail.len()].copy_from_slice(tail);
        // SAFETY: eight values.
        unsafe {
            let x = _mm256_loadu_ps(spread.as_ptr());
            _mm256_storeu_ps(
                spread.as_mut_ptr(),
                exp2(_mm256_mul_ps(_mm256_sub_ps(x, top), log2e)),
            );
        }
        tail.copy_from_slice(&spread[..tail.len()]);
        let mut lanes = [0f32; 8];
        // SAFETY: eight values.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(sums[0], sums[1])) };
        lanes.iter().chain(&spread[..tail.len()]).sum()
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// [`super::row_max`]: four lanes, then the tail one by one.
    pub(super) fn row_max(row: &[f32]) -> f32 {
        let mut blocks = row.chunks_exact(4);
        // SAFETY: NEON is part of aarch64; each block holds four values.
        let top = unsafe {
            let mut lanes = vdupq_n_f32(f32::NEG_INFINITY);
            for block in &mut blocks {
                lanes = vmaxq_f32(lanes, vld1q_f32(block.as_ptr()));
            }
            vmaxvq_f32(lanes)
        };
        blocks.remainder().iter().fold(top, |m, &v| m.max(v))
    }

    /// `2^t` for four `t <= 0`, the same steps and constants as the AVX2
    /// twin (so the same values): `t = k + f` with `k` whole (nearest,
    /// ties to even) and `|f| <= 1/2`, `2^f` by Cephes' degree-6
    /// polynomial, `2^k` built in the exponent bits; `t` below -126 gives 0.
    fn exp2(t: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is part of aarch64.
        unsafe {
            let t = vmaxq_f32(t, vdupq_n_f32(-127.0));
            let k = vrndnq_f32(t);
            let f = vsubq_f32(t, k);
            let mut p = vdupq_n_f32(super::EXP2_POLYNOMIAL[0]);
            for c in &super::EXP2_POLYNOMIAL[1..] {
                p = vfmaq_f32(vdupq_n_f32(*c), p, f);
            }
            let bits = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)));
            vmulq_f32(p, vreinterpretq_f32_s32(bits))
        }
    }

    /// [`super::exp_sum`]: `exp(x - max) = 2^((x - max) log2 e)`, four
    /// lanes at a time, the tail through a padded block.
    pub(super) fn exp_sum(row: &mut [f32], max: f32) -> f32 {
        // SAFETY: NEON is part of aarch64; each block holds four values.
        unsafe {
            let (top, log2e) = (vdupq_n_f32(max), vdupq_n_f32(std::f32::consts::LOG2_E));
            let exp = |x: float32x4_t| exp2(vmulq_f32(vsubq_f32(x, top), log2e));
            let mut sums = [vdupq_n_f32(0.0); 2];
            let mut blocks = row.chunks_exact_mut(4);
            for (ix, block) in (&mut blocks).enumerate() {
                let y = exp(vld1q_f32(block.as_ptr()));
                vst1q_f32(block.as_mut_ptr(), y);
                sums[ix % 2] = vaddq_f32(sums[ix % 2], y);
            }
            let tail = blocks.into_remainder();
            let mut spread = [max; 4];
            spread[..tail.len()].copy_from_slice(tail);
            vst1q_f32(spread.as_mut_ptr(), exp(vld1q_f32(spread.as_ptr())));
            tail.copy_from_slice(&spread[..tail.len()]);
            vaddvq_f32(vaddq_f32(sums[0], sums[1])) + spread[..tail.len()].iter().sum::<f32>()
        }
    }
}

impl Op for FusedAttention {
    fn name(&self) -> StaticName {
        "FusedAttention".into()
    }
    op_as_typed_op!();
}

impl EvalOp for FusedAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v) = args_3!(inputs);
        ensure!(
            available(),
            "FusedAttention needs AVX2 and FMA, or aarch64 NEON"
        );
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        let heads: TVec<usize> = self.q.heads.iter().map(|&a| qs[a]).collect();
        let sizes = Sizes {
            queries: qs[self.q.rows],
            keys: ks[self.k.rows],
            features: qs[self.q.columns],
            values: vs[self.v.columns],
        };
        ensure!(
            self.k
                .heads
                .iter()
                .map(|&a| ks[a])
                .eq(heads.iter().copied())
                && self
                    .v
                    .heads
                    .iter()
                    .map(|&a| vs[a])
                    .eq(heads.iter().copied())
                && ks[self.k.columns] == sizes.features
                && vs[self.v.rows] == sizes.keys
                && sizes.keys > 0,
            "attention inputs of mismatched sizes: {qs:?}, {ks:?}, {vs:?}"
        );
        let out_shape = self.output_shape(qs, vs);
        let q_strides = Strides::of(&self.q, qs);
        ensure!(
            q_strides.columns == 1,
            "queries must have their features last"
        );
        let out_strides = Strides::of(&self.out, &out_shape);
        let queries = q.try_as_plain_ram()?.as_slice::<f32>()?;
        let (keys, values) = self.pack(
            &sizes,
            &heads,
            [
                (k.try_as_plain_ram()?.as_slice::<f32>()?, ks),
                (v.try_as_plain_ram()?.as_slice::<f32>()?, vs),
            ],
        );
        let count: usize = heads.iter().product();
        let call = Call {
            sizes,
            queries,
            keys: &keys,
            values: &values,
            q_heads: (0..count)
                .map(|h| q_strides.head_offset(&heads, h))
                .collect(),
            out_heads: (0..count)
                .map(|h| out_strides.head_offset(&heads, h))
                .collect(),
            q_rows: q_strides.rows,
            out: &out_strides,
        };
        let units: Vec<Unit> = (0..count)
            .flat_map(|head| {
                (0..sizes.queries)
                    .step_by(UNIT_ROWS)
                    .map(move |first| Unit {
                        head,
                        rows: first..(first + UNIT_ROWS).min(sizes.queries),
                    })
            })
            .collect();
        // SAFETY: the units cover every query row of every head once.
        let y = unsafe {
            units::fill_by_units(&out_shape, &units, |unit, output| {
                self.run_unit(&call, unit, output)
            })?
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl FusedAttention {
    /// The output's shape: the queries' heads and rows, the values' columns.
    fn output_shape<D: Clone>(&self, q: &[D], v: &[D]) -> TVec<D> {
        let mut shape: TVec<D> = tvec![q[self.q.rows].clone(); self.out.heads.len() + 2];
        for (&o, &a) in self.out.heads.iter().zip(&self.q.heads) {
            shape[o] = q[a].clone();
        }
        shape[self.out.rows] = q[self.q.rows].clone();
        shape[self.out.columns] = v[self.v.columns].clone();
        shape
    }
}

impl TypedOp for FusedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let q: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        let v: TVec<TDim> = inputs[2].shape.iter().cloned().collect();
        Ok(tvec!(f32::fact(self.output_shape(&q, &v))))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let (q, k, v) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape);
        let heads: TDim = self.q.heads.iter().map(|&a| q[a].clone()).product();
        let per_pair = q[self.q.columns].clone() + v[self.v.columns].clone();
        let fma = heads * q[self.q.rows].clone() * k[self.k.rows].clone() * per_pair;
        Ok(tvec!((Cost::FMA(f32::datum_type()), fma)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support;
    use tract_linalg::multithread::Executor;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
    }

    /// diffusers' attention as tract declutters it, Q, K, V `[a, m, b, k]`:
    /// `batch` x `heads`, `queries` and `keys` tokens, `features` per head
    /// for queries and keys, `columns` for values.
    fn attention_model(shape: [usize; 6]) -> (TypedModel, TVec<TValue>) {
        let [batch, heads, queries, keys, features, columns] = shape;
        let mut model = TypedModel::default();
        let q_shape = [batch, queries, heads, features];
        let k_shape = [batch, keys, heads, features];
        let v_shape = [batch, keys, heads, columns];
        let mut inputs = TVec::new();
        let mut wires = TVec::new();
        for (ix, (name, shape)) in [("q", q_shape), ("k", k_shape), ("v", v_shape)]
            .into_iter()
            .enumerate()
        {
            wires.push(model.add_source(name, f32::fact(shape)).unwrap());
            let len = shape.iter().product();
            let tensor = tensor1(&values(len, ix as f32)).into_shape(&shape).unwrap();
            inputs.push(tensor.into_tvalue());
        }
        let out = test_support::wire_attention(&mut model, [wires[0], wires[1], wires[2]]);
        model.select_output_outlets(&[out]).unwrap();
        (model, inputs)
    }

    /// The fused op against tract's products and softmax: query rows that
    /// leave a partial tile and a partial unit, keys and value columns that
    /// leave partial panels, several chunks of keys, several heads and
    /// images, feature counts different for keys and values; one thread and
    /// two.
    #[test]
    fn fused_attention_matches_tract() {
        // batch, heads, queries, keys, features, value columns
        let cases = [
            [1, 1, 1, 1, 1, 1],
            [2, 3, 13, 7, 5, 9],
            [1, 2, 203, 77, 40, 40],
            [2, 1, 40, 300, 8, 33],
            // Several chunks of keys (928 and 256 a chunk): the running
            // maximum grows and the sums are rescaled.
            [1, 2, 7, 2000, 40, 40],
            [1, 1, 3, 1000, 160, 160],
        ];
        for shape in cases {
            let (model, inputs) = attention_model(shape);
            let expected =
                test_support::run_plan(model.clone(), inputs.clone(), Executor::SingleThread);
            let mut fused = model;
            let replaced = fuse_attention(&mut fused).unwrap();
            if !available() {
                assert_eq!(replaced, 0, "{shape:?}: no fused op on this CPU");
                continue;
            }
            assert_eq!(replaced, 1, "{shape:?}");
            for threads in [1, 2] {
                let executor = match threads {
                    1 => Executor::SingleThread,
                    n => Executor::multithread(n),
                };
                let got = test_support::run_plan(fused.clone(), inputs.clone(), executor);
                let what = format!("{shape:?}, {threads} threads");
                test_support::assert_close(&what, &expected, &got);
            }
        }
    }

    /// The tiny bundle's UNet gives the same output with its attentions
    /// fused as with tract's ops.
    #[test]
    fn fused_tiny_unet_matches_tract() {
        use crate::engine::Rewrites;
        let (network, shapes) = test_support::NETWORKS[0];
        let fused_nodes =
            |plan: &TypedModel| test_support::count(plan, |n| n.op_is::<FusedAttention>());
        let rewrites = |fuse_attention| Rewrites {
            fuse_attention,
            ..Rewrites::NONE
        };
        let (expected, plan) = test_support::run(network, shapes, rewrites(false));
        assert_eq!(fused_nodes(&plan), 0, "{network}");
        let (got, plan) = test_support::run(network, shapes, rewrites(true));
        assert_eq!(fused_nodes(&plan) > 0, available(), "{network}");
        test_support::assert_close(network, &expected, &got);
    }
}
