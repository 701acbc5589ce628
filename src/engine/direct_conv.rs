//! 3x3 and 1x1 convolutions computed directly from the input (x86_64 AVX2,
//! aarch64 NEON).
//!
//! tract runs a convolution as a matrix product over an im2col view of the
//! input, packing both operands as it goes; on the VAE decoder's
//! convolutions that reached 100-155 GFLOP/s on this machine's two cores,
//! where onnxruntime's direct (NCHWc) kernels reach 180-188 on the same
//! layers (its profiler, two threads) against a peak of 190 (a loop of
//! independent FMAs). Here the product reads the input where it lies
//! instead. A unit of work (rows of one image, some blocks of output
//! channels) copies its input rows once, with their zero border, into a
//! buffer the width of the padded row; a tile of 16 consecutive outputs of
//! such a flattened row under one kernel tap is then 16 consecutive inputs,
//! shifted by the tap's offset. Each step of the inner loop is 16 inputs
//! loaded (two AVX2 or four NEON vectors), six broadcast weights (six
//! output channels) and 96 fused multiply-adds into registers; the border columns give junk outputs,
//! never copied out. Input channels are taken 16 at a time and four blocks
//! of output channels go over one line of output together, so the line's
//! partial sums stay in L2 and a block's weights in L1; narrow images join
//! rows into one line of tiles to waste less of the last tile.
//!
//! Only float convolutions with a 3x3 ("same" padding) or 1x1 kernel, stride
//! and dilation 1, one group and constant weights, over images of at least
//! [`MIN_PIXELS`], are replaced; the rest stay tract's (and may be split by
//! `conv_split.rs`). The 3x3 ones with 16 channels and more in and out go to
//! Winograd's transform first (`winograd.rs`, fewer multiplies); this kernel
//! keeps the 1x1 ones and those with few channels (the networks' first and
//! last). The rewrite runs on x86_64 CPUs with AVX2 and FMA and on every
//! aarch64 CPU (NEON is part of the architecture), with the same plan-time
//! choices on both; only the innermost loop ([`tile_kernel`]) differs.
//! Other CPUs keep tract's convolutions.

use std::cell::RefCell;

use super::same_size::{self, Geometry, SameSizeConv, replace_conv};
use super::units::{self, SharedOutput};
use tract_onnx::tract_core::internal::*;

/// Output channels one tile computes (six broadcast weights a step).
const CHANNEL_BLOCK: usize = 6;
/// Outputs of one flattened row strip a tile computes (two AVX vectors).
const TILE: usize = 16;
/// Input channels summed in registers before a tile's sums go back to
/// memory: 16 channels of three rows and a block's weights for them (3.4 KB,
/// L1) per step of the loop.
const CHANNEL_CHUNK: usize = 16;
/// Blocks of output channels computed together over one line of output, so
/// their partial sums stay in L2 while the line's input chunks stream past.
const BLOCK_GROUP: usize = 4;
/// The bytes of padded input and partial sums one unit of work may hold,
/// an eighth of this machine's L3 (measured: 2, 4 and 8 MiB within noise).
const UNIT_BYTES: usize = 4 << 20;
/// At most this many outputs in one line (rows flattened together): narrow
/// images join rows so that the last tile of a row wastes less.
const LINE_OUTPUTS: usize = 256;
/// The smallest image (height x width) the direct kernel takes. Below it
/// tract's product is as fast or faster: `profile_onnx` on the UNet (batch
/// 2 at 48x84), two alternating rounds, ms per call: every convolution
/// direct 10,306 / 9,706; those of 1,000 pixels and up 9,196 / 9,392; of
/// 2,000 and up (48x84 only, the 24x42 and 12x21 ones left to tract) 8,857 /
/// 9,262.
pub const MIN_PIXELS: usize = 2048;
/// Units of work per thread, so the threads finish close together.
const UNITS_PER_THREAD: usize = 4;

/// Whether this CPU runs the engine's own kernels (this one, and the
/// Winograd, attention and group-norm ops built on the same vector code):
/// x86_64 with AVX2 and FMA, or any aarch64 CPU (NEON is always there).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Replace every convolution the direct kernel handles over images of at
/// least `min_pixels` ([`MIN_PIXELS`] in the programs); returns how many.
/// Does nothing on a CPU without the engine's kernels ([`available`]).
pub fn replace_convolutions(model: &mut TypedModel, min_pixels: usize) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    super::rewrite_each(model, |m, id| find(m, id, min_pixels), rewrite)
}

/// One convolution to replace, with its replacement.
struct Site {
    conv: usize,
    op: DirectConv,
}

fn find(model: &TypedModel, id: usize, min_pixels: usize) -> TractResult<Option<Site>> {
    let Some(conv) = SameSizeConv::at(model, id)? else {
        return Ok(None);
    };
    if conv.pixels < min_pixels {
        return Ok(None);
    }
    let op = DirectConv::new(conv.kernel, conv.bias)?;
    Ok(Some(Site { conv: id, op }))
}

fn rewrite(model: &mut TypedModel, site: &Site) -> TractResult<()> {
    replace_conv(model, site.conv, site.op.clone())
}

/// Put the direct kernel in place of convolution node `id` if it takes it
/// (an image of at least [`MIN_PIXELS`], a CPU where [`available`]); returns
/// the kernel's output. For `group_norm.rs`, which needs a block's 1x1
/// shortcut to read its input where it lies (tract's turns into a product
/// over a reshaped copy).
pub(super) fn replace_one(model: &mut TypedModel, id: usize) -> TractResult<Option<OutletId>> {
    if !available() {
        return Ok(None);
    }
    let Some(site) = find(model, id, MIN_PIXELS)? else {
        return Ok(None);
    };
    let name = same_size::replacement_name(&model.nodes[id].name, &site.op);
    rewrite(model, &site)?;
    Ok(Some(OutletId::new(model.node_id_by_name(&name)?, 0)))
}

/// A stride-1, "same"-padded float convolution with a square kernel of side
/// 1 or 3 over NCHW input, its weights packed for the tile kernel.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DirectConv {
    size: usize,
    inputs: usize,
    outputs: usize,
    /// `[output block][input channel][ky][kx][6]`, blocks of six output
    /// channels, the last one padded with zero weights.
    weights: Arc<Tensor>,
    /// One per output channel, padded with zeros to whole blocks.
    bias: Arc<Tensor>,
}

impl DirectConv {
    /// Pack an OIHW kernel (`[outputs, inputs, size, size]`) and its bias
    /// (one value, or one per output channel).
    fn new(kernel: &Tensor, bias: &Tensor) -> TractResult<DirectConv> {
        let &[outputs, inputs, size, width] = kernel.shape() else {
            bail!("a 2D convolution kernel, got {:?}", kernel.shape());
        };
        ensure!(size == width && bias.len() <= outputs.max(1));
        let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let area = size * size;
        let blocks = outputs.div_ceil(CHANNEL_BLOCK);
        let mut packed = vec![0f32; blocks * inputs * area * CHANNEL_BLOCK];
        for o in 0..outputs {
            let (block, lane) = (o / CHANNEL_BLOCK, o % CHANNEL_BLOCK);
            for i in 0..inputs {
                for tap in 0..area {
                    let at = ((block * inputs + i) * area + tap) * CHANNEL_BLOCK + lane;
                    packed[at] = kernel[(o * inputs + i) * area + tap];
                }
            }
        }
        let mut biases = vec![0f32; blocks * CHANNEL_BLOCK];
        for (o, b) in biases.iter_mut().take(outputs).enumerate() {
            *b = if bias.len() == 1 { bias[0] } else { bias[o] };
        }
        Ok(DirectConv {
            size,
            inputs,
            outputs,
            weights: Arc::new(tensor1(&packed)),
            bias: Arc::new(tensor1(&biases)),
        })
    }

    fn blocks(&self) -> usize {
        self.outputs.div_ceil(CHANNEL_BLOCK)
    }

    /// Compute one unit's outputs (rows of one image, a range of
    /// output-channel blocks) into `output`, the whole NCHW output;
    /// `packed` is the op's weights and bias as slices.
    fn run_unit(
        &self,
        input: &[f32],
        packed: (&[f32], &[f32]),
        geometry: &Geometry,
        unit: &Unit,
        output: &SharedOutput,
    ) {
        let (weights, bias) = packed;
        let Geometry { height, width, .. } = *geometry;
        let border = self.size / 2;
        let row = width + 2 * border;
        let rows = unit.rows.len();
        let plane = (rows + 2 * border) * row;
        let lines = unit.line_rows;
        let line_tiles = (lines * row).div_ceil(TILE);
        let slot = line_tiles * TILE;
        let line_count = rows.div_ceil(lines);
        let stride = line_count * slot;
        let channel_values = height * width;
        let image =
            &input[unit.image * self.inputs * channel_values..][..self.inputs * channel_values];
        BUFFERS.with_borrow_mut(|(padded, sums)| {
            // The rows' input with its zero border. Every value a kept output
            // reads is written here; the slack is read only by outputs past
            // the last row, never copied out.
            let planes = self.inputs * plane;
            padded.resize(planes + lines * row + TILE + self.size, 0.0);
            padded[planes..].fill(0.0);
            for c in 0..self.inputs {
                for r in 0..rows + 2 * border {
                    let line = &mut padded[c * plane + r * row..][..row];
                    match (unit.rows.start + r)
                        .checked_sub(border)
                        .filter(|&y| y < height)
                    {
                        Some(y) => {
                            line[..border].fill(0.0);
                            line[border..border + width]
                                .copy_from_slice(&image[c * channel_values + y * width..][..width]);
                            line[border + width..].fill(0.0);
                        }
                        None => line.fill(0.0),
                    }
                }
            }
            // Fully written by the first chunk of input channels.
            sums.resize(unit.blocks.len() * CHANNEL_BLOCK * stride, 0.0);
            let area = self.size * self.size;
            for group in unit.blocks.clone().step_by(BLOCK_GROUP) {
                let blocks = group..(group + BLOCK_GROUP).min(unit.blocks.end);
                for line in 0..line_count {
                    for first in (0..self.inputs).step_by(CHANNEL_CHUNK) {
                        let channels = CHANNEL_CHUNK.min(self.inputs - first);
                        for block in blocks.clone() {
                            let w =
                                &weights[(block * self.inputs + first) * area * CHANNEL_BLOCK..];
                            let start = if first == 0 {
                                Start::Bias(&bias[block * CHANNEL_BLOCK..][..CHANNEL_BLOCK])
                            } else {
                                Start::Sums
                            };
                            let sums_at =
                                (block - unit.blocks.start) * CHANNEL_BLOCK * stride + line * slot;
                            for tile in 0..line_tiles {
                                let from = first * plane + line * lines * row + tile * TILE;
                                // SAFETY: `available()` held when the op was
                                // made; the tile reads `channels` planes from
                                // `from`, each up to `(size - 1) * (row + 1)
                                // + TILE` values on, inside `padded` (its
                                // slack covers the last line's last tile);
                                // it reads and writes six rows of `stride`
                                // values at one tile of this line's slot in
                                // `sums`; `w` holds `channels * area` steps
                                // of six weights.
                                unsafe {
                                    tile_kernel(
                                        self.size,
                                        padded[from..].as_ptr(),
                                        plane,
                                        row,
                                        channels,
                                        w.as_ptr(),
                                        sums[sums_at + tile * TILE..].as_mut_ptr(),
                                        stride,
                                        start,
                                    )
                                };
                            }
                        }
                    }
                }
            }
            let first_output = unit.blocks.start * CHANNEL_BLOCK;
            let last_output = (unit.blocks.end * CHANNEL_BLOCK).min(self.outputs);
            for o in first_output..last_output {
                for r in 0..rows {
                    let (line, in_line) = (r / lines, r % lines);
                    let from = (o - first_output) * stride + line * slot + in_line * row;
                    let y = unit.rows.start + r;
                    let at = ((unit.image * self.outputs + o) * height + y) * width;
                    // SAFETY: units cover disjoint rows and channels of the
                    // output, each written by one thread.
                    unsafe { output.write(at, &sums[from..][..width]) };
                }
            }
        });
    }

    /// Split a call into units: strips of rows whose padded input and sums
    /// fit [`UNIT_BYTES`], their output channels split too when that gives
    /// the threads too few units.
    fn units(&self, geometry: &Geometry, threads: usize) -> Vec<Unit> {
        let Geometry {
            images,
            height,
            width,
        } = *geometry;
        let row = width + self.size - 1;
        let blocks = self.blocks();
        let row_bytes = (self.inputs + CHANNEL_BLOCK * blocks) * row * size_of::<f32>();
        let rows = (UNIT_BYTES / row_bytes.max(1)).clamp(1, height.max(1));
        let strips = images * height.div_ceil(rows);
        let wanted = UNITS_PER_THREAD * threads;
        let parts = wanted
            .div_ceil(strips.max(1))
            .min(blocks.div_ceil(BLOCK_GROUP))
            .max(1);
        let per_part = blocks
            .div_ceil(parts)
            .next_multiple_of(BLOCK_GROUP)
            .min(blocks.max(1));
        let line_rows = line_rows(row, width, rows);
        let mut units = Vec::new();
        for image in 0..images {
            for first in (0..height).step_by(rows) {
                for part in (0..blocks).step_by(per_part) {
                    units.push(Unit {
                        image,
                        rows: first..(first + rows).min(height),
                        blocks: part..(part + per_part).min(blocks),
                        line_rows,
                    });
                }
            }
        }
        units
    }
}

/// How many rows to flatten into one line: the count up to
/// [`LINE_OUTPUTS`] outputs (and the strip's rows) that computes the fewest
/// outputs per kept one, counting the border columns and the last tile's
/// overhang.
fn line_rows(row: usize, width: usize, rows: usize) -> usize {
    let most = (LINE_OUTPUTS / row).clamp(1, rows.max(1));
    (1..=most)
        .min_by_key(|&n| (n * row).div_ceil(TILE) * TILE * 1000 / (n * width).max(1))
        .unwrap_or(1)
}

thread_local! {
    /// Each thread's padded input strip and partial sums, kept between calls
    /// (megabytes each: fresh ones would cost page faults every strip).
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Output rows of one image and a range of its output-channel blocks,
/// computed by one thread.
#[derive(Debug, Clone)]
struct Unit {
    image: usize,
    rows: std::ops::Range<usize>,
    blocks: std::ops::Range<usize>,
    /// Rows flattened into one line of tiles.
    line_rows: usize,
}

/// How a tile's sums begin: the bias (first chunk of input channels) or the
/// partial sums left by the previous chunks.
#[derive(Clone, Copy)]
// Read by the vector kernels only; elsewhere the op is never made.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
enum Start<'a> {
    Bias(&'a [f32]),
    Sums,
}

/// Sixteen outputs of six channels: `sums[o * stride + p] (+)= sum over
/// channels c and taps (ky, kx) of weights[((c * size + ky) * size + kx) * 6
/// + o] * input[c * plane + ky * row + kx + p]`.
///
/// # Safety
/// [`available`]; the reads and writes described stay inside their
/// buffers.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel(
    size: usize,
    input: *const f32,
    plane: usize,
    row: usize,
    channels: usize,
    weights: *const f32,
    sums: *mut f32,
    stride: usize,
    start: Start,
) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: forwarded from the caller.
    unsafe {
        match size {
            3 => simd::tile::<3>(input, plane, row, channels, weights, sums, stride, start),
            _ => simd::tile::<1>(input, plane, row, channels, weights, sums, stride, start),
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (
            size, input, plane, row, channels, weights, sums, stride, start,
        );
        unreachable!("the direct convolution runs on x86_64 and aarch64 only");
    }
}

/// This architecture's twin of the innermost loop.
#[cfg(target_arch = "x86_64")]
use avx2 as simd;
#[cfg(target_arch = "aarch64")]
use neon as simd;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{CHANNEL_BLOCK, Start};
    use std::arch::x86_64::*;

    /// [`super::tile_kernel`] for a `SIZE` x `SIZE` kernel: twelve
    /// accumulators, two input vectors, one broadcast weight (15 of the 16
    /// registers).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile<const SIZE: usize>(
        input: *const f32,
        plane: usize,
        row: usize,
        channels: usize,
        mut weights: *const f32,
        sums: *mut f32,
        stride: usize,
        start: Start,
    ) {
        // SAFETY: the caller keeps every pointer below in bounds.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; CHANNEL_BLOCK];
            for (o, lanes) in acc.iter_mut().enumerate() {
                match start {
                    Start::Bias(bias) => {
                        let b = _mm256_set1_ps(bias[o]);
                        *lanes = [b, b];
                    }
                    Start::Sums => {
                        let at = sums.add(o * stride);
                        *lanes = [_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8))];
                    }
                }
            }
            for c in 0..channels {
                let channel = input.add(c * plane);
                for ky in 0..SIZE {
                    let line = channel.add(ky * row);
                    for kx in 0..SIZE {
                        let x0 = _mm256_loadu_ps(line.add(kx));
                        let x1 = _mm256_loadu_ps(line.add(kx + 8));
                        for (o, lanes) in acc.iter_mut().enumerate() {
                            let w = _mm256_broadcast_ss(&*weights.add(o));
                            lanes[0] = _mm256_fmadd_ps(w, x0, lanes[0]);
                            lanes[1] = _mm256_fmadd_ps(w, x1, lanes[1]);
                        }
                        weights = weights.add(CHANNEL_BLOCK);
                    }
                }
            }
            for (o, lanes) in acc.iter().enumerate() {
                let at = sums.add(o * stride);
                _mm256_storeu_ps(at, lanes[0]);
                _mm256_storeu_ps(at.add(8), lanes[1]);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::super::product_tile::neon::{load16, store16};
    use super::{CHANNEL_BLOCK, Start};
    use std::arch::aarch64::*;

    /// [`super::tile_kernel`] for a `SIZE` x `SIZE` kernel: 24 accumulators
    /// (six channels of 16 outputs), four input vectors, one weight
    /// multiplied by element (29 of the 32 registers).
    ///
    /// Never inlined: like the AVX2 twin (a `target_feature` function) it
    /// keeps a symbol of its own, where `benches/inner_loops.py` finds its loop.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile<const SIZE: usize>(
        input: *const f32,
        plane: usize,
        row: usize,
        channels: usize,
        mut weights: *const f32,
        sums: *mut f32,
        stride: usize,
        start: Start,
    ) {
        // SAFETY: the caller keeps every pointer below in bounds.
        unsafe {
            let mut acc = [[vdupq_n_f32(0.0); 4]; CHANNEL_BLOCK];
            for (o, lanes) in acc.iter_mut().enumerate() {
                match start {
                    Start::Bias(bias) => *lanes = [vdupq_n_f32(bias[o]); 4],
                    Start::Sums => *lanes = load16(sums.add(o * stride)),
                }
            }
            for c in 0..channels {
                let channel = input.add(c * plane);
                for ky in 0..SIZE {
                    let line = channel.add(ky * row);
                    for kx in 0..SIZE {
                        let x = load16(line.add(kx));
                        for (o, lanes) in acc.iter_mut().enumerate() {
                            let w = *weights.add(o);
                            for (lane, x) in lanes.iter_mut().zip(x) {
                                *lane = vfmaq_n_f32(*lane, x, w);
                            }
                        }
                        weights = weights.add(CHANNEL_BLOCK);
                    }
                }
            }
            for (o, lanes) in acc.into_iter().enumerate() {
                store16(sums.add(o * stride), lanes);
            }
        }
    }
}

impl Op for DirectConv {
    fn name(&self) -> StaticName {
        "DirectConv".into()
    }
    op_as_typed_op!();
}

impl EvalOp for DirectConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let geometry = Geometry::of(&x, self.inputs, "DirectConv")?;
        let input = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let weights = self.weights.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = self.bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let Geometry {
            images,
            height,
            width,
        } = geometry;
        let units = self.units(&geometry, units::thread_count());
        // SAFETY: the units cover every output channel of every row of
        // every image once.
        let y = unsafe {
            units::fill_by_units(
                &[images, self.outputs, height, width],
                &units,
                |unit, output| self.run_unit(input, (weights, bias), &geometry, unit, output),
            )?
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for DirectConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        same_size::output_facts(inputs, self.inputs, self.outputs)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        same_size::cost(inputs, self.outputs * self.inputs * self.size * self.size)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::{ConvCase as Case, check_conv_rewrite, values};

    /// Every path of the kernel against tract's convolution: 3x3 and 1x1,
    /// channel counts that leave a partial chunk of inputs and a partial
    /// block of outputs, images too wide for one unit (several strips),
    /// narrow ones (rows joined into lines, the last one shorter), output
    /// channels split across units, a shared bias; on one thread and two.
    /// The boards' cores always run the engine's kernels, so the tests
    /// below that compare placement with `available()` assert placement.
    #[test]
    #[cfg(target_arch = "aarch64")]
    fn every_aarch64_cpu_runs_the_engine_kernels() {
        assert!(available());
    }

    #[test]
    fn direct_convolution_matches_tract() {
        let cases = [
            Case {
                size: 3,
                inputs: 20,
                outputs: 13,
                images: 2,
                height: 7,
                width: 23,
                one_bias: false,
            },
            Case {
                size: 3,
                inputs: 64,
                outputs: 64,
                images: 1,
                height: 60,
                width: 300,
                one_bias: false,
            },
            Case {
                size: 3,
                inputs: 5,
                outputs: 50,
                images: 1,
                height: 7,
                width: 5,
                one_bias: true,
            },
            Case {
                size: 1,
                inputs: 9,
                outputs: 7,
                images: 2,
                height: 4,
                width: 37,
                one_bias: true,
            },
        ];
        check_conv_rewrite(&cases, available(), |m| replace_convolutions(m, 1));
    }

    /// The unit split covers every row and output block exactly once.
    #[test]
    fn units_cover_the_output_once() {
        let kernel = tensor1(&values(50 * 5 * 9, 0.0))
            .into_shape(&[50, 5, 3, 3])
            .unwrap();
        let op = DirectConv::new(&kernel, &tensor1(&[0f32])).unwrap();
        for (images, height, width) in [(1, 7, 5), (2, 300, 700), (1, 1, 1)] {
            let geometry = Geometry {
                images,
                height,
                width,
            };
            let units = op.units(&geometry, 2);
            let mut seen = vec![0u8; images * height * op.blocks()];
            for unit in &units {
                assert!(unit.line_rows >= 1);
                for y in unit.rows.clone() {
                    for block in unit.blocks.clone() {
                        seen[(unit.image * height + y) * op.blocks() + block] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{images}x{height}x{width}");
        }
    }

    /// The tiny bundle's UNet and VAE decoder give the same outputs with
    /// their convolutions run by the direct kernel as by tract's.
    #[test]
    fn direct_tiny_networks_match_tract() {
        use crate::engine::{Rewrites, test_support};
        let direct_nodes =
            |plan: &TypedModel| test_support::count(plan, |n| n.op_is::<DirectConv>());
        for (network, shapes) in test_support::NETWORKS {
            let rewrites = |direct_from_pixels| Rewrites {
                direct_from_pixels,
                ..Rewrites::NONE
            };
            let (expected, plan) = test_support::run(network, shapes, rewrites(None));
            assert_eq!(direct_nodes(&plan), 0, "{network}");
            // The tiny networks' images are 8x8 to 64x64: all of them.
            let (got, plan) = test_support::run(network, shapes, rewrites(Some(1)));
            assert_eq!(direct_nodes(&plan) > 0, available(), "{network}");
            test_support::assert_close(network, &expected, &got);
        }
    }
}
