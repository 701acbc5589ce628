//! 3x3 convolutions by Winograd's minimal filtering, F(2x2, 3x3) (x86_64
//! AVX2, aarch64 NEON: the products run on `product_tile.rs`, the transforms
//! are plain Rust that the compiler vectorizes for either).
//!
//! A 3x3 convolution costs nine multiply-adds per output, input channel and
//! output channel; the direct kernel (`direct_conv.rs`) runs them at about
//! 80 % of this machine's peak and onnxruntime's at about 95 %, so on the
//! VAE decoder's wide layers (128-512 channels over 96x168 to 384x672
//! pixels) no kernel that does those nine can catch it. Winograd's
//! transform computes each 2x2 block of outputs from the block's 4x4 input
//! patch in a transformed space where the convolution is an elementwise
//! product: 16 multiply-adds per block instead of 36, 2.25 times fewer. The
//! kernel is transformed (`U = G g G^T`; when planned if small, else at
//! each call: see `Kernel`); each call transforms the input patches (`V =
//! B^T d B`, additions only), multiplies for each of the 16 positions the
//! `[outputs x inputs]` matrix of `U` by the `[inputs x tiles]` one of `V`
//! (the product tile of `product_tile.rs`), and transforms back (`Y = A^T M
//! A`, additions only).
//! With transforms of additions and halves only, F(2x2, 3x3) rounds about as
//! the direct sum does; the larger F(4x4, 3x3) would save more and round
//! worse.
//!
//! A unit of work is a run of consecutive 2x2 blocks ("tiles", row after
//! row) of one image, all output channels: its transformed input for one
//! position fits L2 while every block of six output channels goes over it.
//! Only convolutions with at least [`MIN_CHANNELS`] channels in and out are
//! taken (few channels leave the transforms as the larger cost); on x86_64
//! CPUs without AVX2 and FMA nothing is replaced.

use std::borrow::Cow;
use std::cell::RefCell;

use super::product_tile::{COLUMNS, ROWS, tile};
use super::same_size::{self, Geometry, SameSizeConv, replace_conv};
use super::units::{self, SharedOutput};
use tract_onnx::tract_core::internal::*;

/// Positions of the transformed 4x4 patch.
const POSITIONS: usize = 16;
/// Bytes of one position's transformed input a unit holds: in L2 while each
/// block of output channels goes over it.
const PANEL_BYTES: usize = 128 << 10;
/// The fewest input and output channels a replaced convolution has.
pub const MIN_CHANNELS: usize = 16;
/// Units of work per thread, so the threads finish close together.
const UNITS_PER_THREAD: usize = 4;

/// Whether this CPU runs the Winograd op.
pub fn available() -> bool {
    super::direct_conv::available()
}

/// Replace every 3x3 convolution with at least [`MIN_CHANNELS`] channels in
/// and out, whatever its image size (on the UNet's 12x21 images too it beat
/// tract's product); returns how many. Does nothing on a CPU without the
/// engine's kernels ([`super::direct_conv::available`]).
pub fn replace_convolutions(model: &mut TypedModel) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    super::rewrite_each(model, find, |m, (conv, op)| {
        replace_conv(m, *conv, op.clone())
    })
}

fn find(model: &TypedModel, id: usize) -> TractResult<Option<(usize, WinogradConv)>> {
    let Some(conv) = SameSizeConv::at(model, id)? else {
        return Ok(None);
    };
    if conv.size != 3 || conv.inputs < MIN_CHANNELS || conv.outputs < MIN_CHANNELS {
        return Ok(None);
    }
    Ok(Some((id, WinogradConv::new(conv.kernel, conv.bias)?)))
}

/// A stride-1, "same"-padded float 3x3 convolution over NCHW input.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct WinogradConv {
    inputs: usize,
    outputs: usize,
    kernel: Kernel,
    /// One per output channel.
    bias: Arc<Tensor>,
}

/// The kernel as the op keeps it. Kept transformed, a kernel takes 16/9 of
/// its size for the whole life of the plan (about 630 MB more for the
/// UNet's and the VAE's); transformed at each call it costs a pass over the
/// weights (about 10 ms of the 50 a 1,280-channel call at 12x21 takes). So
/// small kernels (the upscaler's, run once a tile) are kept transformed and
/// large ones transformed at each call.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
enum Kernel {
    /// `U = G g G^T`: `[position][output][input]`.
    Transformed(Arc<Tensor>),
    /// The kernel tap by tap: `[ky * 3 + kx][output][input]`.
    Taps(Arc<Tensor>),
}

/// The largest transformed kernel kept in the plan: 64 to 256 channels.
const KEPT_BYTES: usize = 4 << 20;

/// Pairs of channels one piece of the kernel's transform takes (its taps and
/// transformed values stay in L1).
const TRANSFORM_PIECE: usize = 256;

impl WinogradConv {
    /// Take an OIHW 3x3 kernel (`[outputs, inputs, 3, 3]`) tap by tap,
    /// transformed if small, and its bias (one value, or one per output
    /// channel).
    fn new(kernel: &Tensor, bias: &Tensor) -> TractResult<WinogradConv> {
        let &[outputs, inputs, 3, 3] = kernel.shape() else {
            bail!("a 3x3 convolution kernel, got {:?}", kernel.shape());
        };
        ensure!(bias.len() == 1 || bias.len() == outputs);
        let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let pairs = outputs * inputs;
        let mut taps = vec![0f32; 9 * pairs];
        for (pair, g) in kernel.chunks_exact(9).enumerate() {
            for (tap, &value) in g.iter().enumerate() {
                taps[tap * pairs + pair] = value;
            }
        }
        let kernel = if POSITIONS * pairs * size_of::<f32>() <= KEPT_BYTES {
            Kernel::Transformed(Arc::new(transform_kernel(&taps, pairs)?))
        } else {
            Kernel::Taps(Arc::new(tensor1(&taps)))
        };
        let biases: Vec<f32> = (0..outputs)
            .map(|o| if bias.len() == 1 { bias[0] } else { bias[o] })
            .collect();
        Ok(WinogradConv {
            inputs,
            outputs,
            kernel,
            bias: Arc::new(tensor1(&biases)),
        })
    }

    /// Split a call into units: runs of tiles of one image whose
    /// transformed input for one position fits [`PANEL_BYTES`], shorter when
    /// that gives the threads too few units.
    fn units(&self, geometry: &Geometry, threads: usize) -> Vec<Unit> {
        let tiles = geometry.tiles();
        let widest = (PANEL_BYTES / (self.inputs * size_of::<f32>()))
            .max(COLUMNS)
            .min(tiles.max(1));
        let wanted = UNITS_PER_THREAD * threads;
        let per_image = tiles
            .div_ceil(widest)
            .max(wanted.div_ceil(geometry.images.max(1)))
            .min(tiles.div_ceil(COLUMNS))
            .max(1);
        let length = tiles.div_ceil(per_image);
        let mut units = Vec::new();
        for image in 0..geometry.images {
            for first in (0..tiles).step_by(length.max(1)) {
                units.push(Unit {
                    image,
                    tiles: first..(first + length).min(tiles),
                });
            }
        }
        units
    }

    /// Compute one unit's outputs (every output channel of its tiles) into
    /// `output`, the whole NCHW output; `packed` is the transformed kernel
    /// and the bias as slices.
    fn run_unit(
        &self,
        input: &[f32],
        packed: (&[f32], &[f32]),
        geometry: &Geometry,
        unit: &Unit,
        output: &SharedOutput,
    ) {
        let (weights, bias) = packed;
        let tiles = unit.tiles.len();
        let padded = tiles.next_multiple_of(COLUMNS);
        let panels = padded / COLUMNS;
        let plane = geometry.height * geometry.width;
        let image = &input[unit.image * self.inputs * plane..][..self.inputs * plane];
        BUFFERS.with_borrow_mut(|buffers| {
            let Buffers {
                transformed,
                products,
                scratch,
            } = buffers;
            // V: `[position][panel][input][16 tiles]`, the product tile's
            // packed operand. The transforms write every tile of the unit;
            // the lanes past its last tile (in its last panel) are only
            // zeroed: their products are never read, and zeros keep stale
            // values (denormals, say) out of the tile's arithmetic.
            let position_stride = panels * self.inputs * COLUMNS;
            transformed.resize(POSITIONS * position_stride, 0.0);
            if tiles < padded {
                let last = (panels - 1) * self.inputs * COLUMNS;
                for position in 0..POSITIONS {
                    let panel = &mut transformed[position * position_stride + last..]
                        [..self.inputs * COLUMNS];
                    for lanes in panel.chunks_exact_mut(COLUMNS) {
                        lanes[tiles % COLUMNS..].fill(0.0);
                    }
                }
            }
            for segment in geometry.segments(&unit.tiles) {
                let count = segment.len();
                for c in 0..self.inputs {
                    transform_input(&image[c * plane..][..plane], geometry, &segment, scratch);
                    for position in 0..POSITIONS {
                        let values = &scratch.patch[position * count..][..count];
                        let mut at = segment.first - unit.tiles.start;
                        let mut rest = values;
                        // In pieces that end where a panel of 16 tiles does.
                        while !rest.is_empty() {
                            let (panel, lane) = (at / COLUMNS, at % COLUMNS);
                            let n = (COLUMNS - lane).min(rest.len());
                            let to = position * position_stride
                                + (panel * self.inputs + c) * COLUMNS
                                + lane;
                            transformed[to..][..n].copy_from_slice(&rest[..n]);
                            rest = &rest[n..];
                            at += n;
                        }
                    }
                }
            }
            // M = U V for each position: `[position][output][tile]`.
            let products_stride = self.outputs * padded;
            products.resize(POSITIONS * products_stride, 0.0);
            for position in 0..POSITIONS {
                let u =
                    &weights[position * self.outputs * self.inputs..][..self.outputs * self.inputs];
                let v = &transformed[position * position_stride..][..position_stride];
                let m = &mut products[position * products_stride..][..products_stride];
                for first in (0..self.outputs).step_by(ROWS) {
                    let rows = ROWS.min(self.outputs - first);
                    let a = &u[first * self.inputs..];
                    for panel in 0..panels {
                        let b = &v[panel * self.inputs * COLUMNS..][..self.inputs * COLUMNS];
                        let c = &mut m[first * padded + panel * COLUMNS..];
                        tile(rows, self.inputs, (a, self.inputs), b, (c, padded), false);
                    }
                }
            }
            for o in 0..self.outputs {
                let out = (unit.image * self.outputs + o) * plane;
                for segment in geometry.segments(&unit.tiles) {
                    let from = segment.first - unit.tiles.start;
                    let m: [&[f32]; POSITIONS] = std::array::from_fn(|p| {
                        &products[p * products_stride + o * padded + from..][..segment.len()]
                    });
                    transform_output(m, bias[o], geometry, &segment, scratch, |at, values| {
                        // SAFETY: units cover disjoint tiles of the output,
                        // each written by one thread.
                        unsafe { output.write(out + at, values) }
                    });
                }
            }
        });
    }
}

/// `out[t] = a[t] + sign * b[t]`: one line of a transform (`sign` is 1 or
/// -1, so exact), in a loop the compiler vectorizes.
fn mix(out: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + sign * b;
    }
}

/// `out[t] = a[t] + sb * b[t] + sc * c[t]` (`sb`, `sc` 1 or -1).
fn mix3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], signs: [f32; 2]) {
    for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = a + signs[0] * b + signs[1] * c;
    }
}

/// `U = G g G^T` for every pair of channels, `[position][output][input]`,
/// pieces of pairs spread over the threads. `G = [1 0 0; 1/2 1/2 1/2;
/// 1/2 -1/2 1/2; 0 0 1]`.
fn transform_kernel(taps: &[f32], pairs: usize) -> TractResult<Tensor> {
    // SAFETY: every value is written below (the pieces cover every pair
    // of every position) before it is read. Not zeroed: up to 210 MB
    // a call on the UNet's deepest convolutions.
    let mut tensor = unsafe { Tensor::uninitialized::<f32>(&[POSITIONS * pairs])? };
    let mut view = tensor.try_as_plain_ram_mut()?;
    let transformed = view.as_slice_mut::<f32>()?;
    let piece = pairs
        .div_ceil(UNITS_PER_THREAD * units::thread_count())
        .max(TRANSFORM_PIECE);
    let mut positions: Vec<_> = transformed
        .chunks_mut(pairs)
        .map(|p| p.chunks_mut(piece))
        .collect();
    let mut jobs: Vec<(usize, Vec<&mut [f32]>)> = (0..pairs.div_ceil(piece))
        .map(|j| {
            (
                j * piece,
                positions.iter_mut().flat_map(|p| p.next()).collect(),
            )
        })
        .collect();
    units::for_each_mut(&mut jobs, |(first, out)| {
        let length = out.first().map_or(0, |o| o.len());
        for start in (0..length).step_by(TRANSFORM_PIECE) {
            let n = TRANSFORM_PIECE.min(length - start);
            let g: [&[f32]; 9] =
                std::array::from_fn(|tap| &taps[tap * pairs + *first + start..][..n]);
            let mut u: [&mut [f32]; POSITIONS] = [(); POSITIONS].map(|_| &mut [][..]);
            for (slot, o) in u.iter_mut().zip(out.iter_mut()) {
                *slot = &mut o[start..][..n];
            }
            transform_taps(g, u);
        }
    });
    Ok(tensor)
}

/// `U = G g G^T` of `n` pairs of channels from their nine taps `g[ky * 3 +
/// kx]`: first `t = G g` (four rows of three), then `U = t G^T`.
fn transform_taps(g: [&[f32]; 9], u: [&mut [f32]; POSITIONS]) {
    let n = g[0].len();
    let mut t = [[0f32; TRANSFORM_PIECE]; 12];
    for x in 0..3 {
        let (g0, g1, g2) = (g[x], g[3 + x], g[6 + x]);
        for e in 0..n {
            let (a, b, c) = (g0[e], g1[e], g2[e]);
            t[x][e] = a;
            t[3 + x][e] = 0.5 * (a + b + c);
            t[6 + x][e] = 0.5 * (a - b + c);
            t[9 + x][e] = c;
        }
    }
    let mut u = u.into_iter();
    for row in t.chunks_exact(3) {
        let (t0, t1, t2) = (&row[0][..n], &row[1][..n], &row[2][..n]);
        let mut next = || u.next().unwrap_or_default();
        let (u0, u1, u2, u3) = (next(), next(), next(), next());
        for e in 0..n {
            let (a, b, c) = (t0[e], t1[e], t2[e]);
            u0[e] = a;
            u1[e] = 0.5 * (a + b + c);
            u2[e] = 0.5 * (a - b + c);
            u3[e] = c;
        }
    }
}

/// The four lines `x B` of a transform `B^T d B` from `even` and `odd`,
/// the values at even and odd offsets of `count + 1` pairs: `x B` of tile
/// `t` is `(x0 - x2, x1 + x2, x2 - x1, x1 - x3)` of `x = pair t, pair t +
/// 1`. `B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`.
fn transform_line(even: &[f32], odd: &[f32], count: usize, out: [&mut [f32]; 4]) {
    let [b0, b1, b2, b3] = out;
    let (x0, x1) = (&even[..count], &odd[..count]);
    let (x2, x3) = (&even[1..=count], &odd[1..=count]);
    mix(b0, x0, x2, -1.0);
    mix(b1, x1, x2, 1.0);
    mix(b2, x2, x1, -1.0);
    mix(b3, x1, x3, -1.0);
}

/// The 16 transformed values `V = B^T d B` of each tile of `segment` in one
/// input channel (`channel`, `height x width`), into `patch[position *
/// count + tile]`; the patch `d` of tile `x` is the 4x4 input from row `2 y
/// - 1`, column `2 x - 1`, zero outside the image.
fn transform_input(channel: &[f32], geometry: &Geometry, segment: &Segment, scratch: &mut Scratch) {
    let Geometry { height, width, .. } = *geometry;
    let count = segment.len();
    let Scratch {
        row,
        even,
        odd,
        lines,
        patch,
    } = scratch;
    // Columns `2 first - 1 ..= 2 last + 2` of a row: `count + 1` pairs.
    let length = 2 * count + 2;
    row.resize(length, 0.0);
    even.resize(count + 1, 0.0);
    odd.resize(count + 1, 0.0);
    lines.resize(16 * count, 0.0);
    patch.resize(16 * count, 0.0);
    let from = 2 * segment.columns.start;
    // Values before column 0 (the first tile's left border).
    let skip = usize::from(from == 0);
    for i in 0..4 {
        match (2 * segment.row + i).checked_sub(1).filter(|&y| y < height) {
            Some(y) => {
                let x = from + skip - 1;
                let n = (width - x).min(length - skip);
                row[..skip].fill(0.0);
                row[skip..skip + n].copy_from_slice(&channel[y * width + x..][..n]);
                row[skip + n..].fill(0.0);
            }
            None => row.fill(0.0),
        }
        for ((pair, e), o) in row.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
            *e = pair[0];
            *o = pair[1];
        }
        let line = &mut lines[4 * i * count..][..4 * count];
        let (b01, b23) = line.split_at_mut(2 * count);
        let (b0, b1) = b01.split_at_mut(count);
        let (b2, b3) = b23.split_at_mut(count);
        transform_line(even, odd, count, [b0, b1, b2, b3]);
    }
    // The column transform: `V[i][j]` from `(d B)[.][j]`.
    let line = |i: usize, j: usize| &lines[(4 * i + j) * count..][..count];
    for j in 0..4 {
        let at = |i: usize| (4 * i + j) * count;
        mix(&mut patch[at(0)..][..count], line(0, j), line(2, j), -1.0);
        mix(&mut patch[at(1)..][..count], line(1, j), line(2, j), 1.0);
        mix(&mut patch[at(2)..][..count], line(2, j), line(1, j), -1.0);
        mix(&mut patch[at(3)..][..count], line(1, j), line(3, j), -1.0);
    }
}

/// The outputs `Y = A^T M A + bias` of each tile of `segment` in one output
/// channel, from `m[position][tile]`, handed as runs of one output row to
/// `write(offset in the channel, values)`, cut at the image's edges.
/// `A^T = [1 1 1 0; 0 1 -1 -1]`.
fn transform_output(
    m: [&[f32]; POSITIONS],
    bias: f32,
    geometry: &Geometry,
    segment: &Segment,
    scratch: &mut Scratch,
    mut write: impl FnMut(usize, &[f32]),
) {
    let Geometry { height, width, .. } = *geometry;
    let count = segment.len();
    let Scratch {
        row, lines, patch, ..
    } = scratch;
    lines.resize(8 * count, 0.0);
    patch.resize(4 * count, 0.0);
    row.resize(4 * count, 0.0);
    // s = A^T M: two rows of four.
    for j in 0..4 {
        let (s0, s1) = lines[2 * j * count..][..2 * count].split_at_mut(count);
        mix3(s0, m[j], m[4 + j], m[8 + j], [1.0, 1.0]);
        mix3(s1, m[4 + j], m[8 + j], m[12 + j], [-1.0, -1.0]);
    }
    // Y = s A, row `i` of `s` at `lines[(2 j + i) count]`.
    let s = |i: usize, j: usize| &lines[(2 * j + i) * count..][..count];
    for i in 0..2 {
        let (y0, y1) = patch[2 * i * count..][..2 * count].split_at_mut(count);
        mix3(y0, s(i, 0), s(i, 1), s(i, 2), [1.0, 1.0]);
        mix3(y1, s(i, 1), s(i, 2), s(i, 3), [-1.0, -1.0]);
    }
    let (top, bottom) = row.split_at_mut(2 * count);
    for (i, out) in [top, bottom].into_iter().enumerate() {
        let (y0, y1) = patch[2 * i * count..][..2 * count].split_at(count);
        for ((pair, &a), &b) in out.chunks_exact_mut(2).zip(y0).zip(y1) {
            pair[0] = a + bias;
            pair[1] = b + bias;
        }
    }
    let x = 2 * segment.columns.start;
    let kept = (2 * count).min(width - x);
    let y = 2 * segment.row;
    write(y * width + x, &row[..kept]);
    if y + 1 < height {
        write((y + 1) * width + x, &row[2 * count..][..kept]);
    }
}

thread_local! {
    /// Each thread's transformed input and products, kept between calls
    /// (megabytes each: fresh ones would cost page faults every unit).
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

#[derive(Default)]
struct Buffers {
    transformed: Vec<f32>,
    products: Vec<f32>,
    scratch: Scratch,
}

/// The transforms' working lines, a few times one segment's tiles.
#[derive(Default)]
struct Scratch {
    row: Vec<f32>,
    even: Vec<f32>,
    odd: Vec<f32>,
    lines: Vec<f32>,
    patch: Vec<f32>,
}

impl Geometry {
    /// Tiles (2x2 output blocks) a row.
    fn columns(&self) -> usize {
        self.width.div_ceil(2)
    }

    /// Tiles an image.
    fn tiles(&self) -> usize {
        self.height.div_ceil(2) * self.columns()
    }

    /// A run of tiles (numbered row after row) cut into the parts that lie
    /// in one row of tiles.
    fn segments(&self, run: &std::ops::Range<usize>) -> impl Iterator<Item = Segment> + use<> {
        let (columns, end) = (self.columns(), run.end);
        let mut next = run.start;
        std::iter::from_fn(move || {
            (next < end).then(|| {
                let (row, column) = (next / columns, next % columns);
                let last = (column + end - next).min(columns);
                let segment = Segment {
                    row,
                    columns: column..last,
                    first: next,
                };
                next += last - column;
                segment
            })
        })
    }
}

/// Consecutive tiles in one row of tiles.
struct Segment {
    /// The row of tiles.
    row: usize,
    /// The tiles' columns in that row.
    columns: std::ops::Range<usize>,
    /// The first tile's number in the image.
    first: usize,
}

impl Segment {
    fn len(&self) -> usize {
        self.columns.len()
    }
}

/// A run of tiles of one image, every output channel, computed by one
/// thread.
#[derive(Debug, Clone)]
struct Unit {
    image: usize,
    tiles: std::ops::Range<usize>,
}

impl Op for WinogradConv {
    fn name(&self) -> StaticName {
        "WinogradConv".into()
    }
    op_as_typed_op!();
}

impl EvalOp for WinogradConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let geometry = Geometry::of(&x, self.inputs, "WinogradConv")?;
        let input = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let transformed = match &self.kernel {
            Kernel::Transformed(kept) => Cow::Borrowed(&**kept),
            Kernel::Taps(taps) => {
                let taps = taps.try_as_plain_ram()?.as_slice::<f32>()?;
                Cow::Owned(transform_kernel(taps, self.outputs * self.inputs)?)
            }
        };
        let weights = transformed.try_as_plain_ram()?.as_slice::<f32>()?;
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

impl TypedOp for WinogradConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        same_size::output_facts(inputs, self.inputs, self.outputs)
    }

    /// The convolution's own count (nine a pixel and pair of channels), so
    /// GFLOP/s figures compare with the other kernels'.
    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        same_size::cost(inputs, self.outputs * self.inputs * 9)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::{ConvCase, check_conv_rewrite, values};

    /// A 3x3 convolution of `inputs` to `outputs` channels over `images`
    /// images of `height` x `width`.
    fn case(inputs: usize, outputs: usize, images: usize, height: usize, width: usize) -> ConvCase {
        ConvCase {
            size: 3,
            inputs,
            outputs,
            images,
            height,
            width,
            one_bias: false,
        }
    }

    /// Every path against tract's convolution: odd heights and widths (the
    /// last tiles cut), runs of tiles across rows of tiles and across
    /// panels, output channels not a multiple of six, a shared bias, images
    /// wide enough for several units a row and narrow ones with several
    /// rows a unit, kernels kept transformed and transformed at each call;
    /// on one thread and two.
    #[test]
    fn winograd_convolution_matches_tract() {
        let cases = [
            case(16, 16, 1, 1, 1),
            case(20, 17, 2, 7, 23),
            case(64, 64, 1, 61, 301),
            case(130, 40, 2, 12, 21),
            // Transformed at each call (more than `KEPT_BYTES`).
            case(260, 260, 2, 5, 7),
            ConvCase {
                one_bias: true,
                ..case(16, 50, 1, 9, 5)
            },
        ];
        check_conv_rewrite(&cases, available(), replace_convolutions);
    }

    /// Too few channels and 1x1 kernels stay tract's.
    #[test]
    fn winograd_takes_only_its_convolutions() {
        use crate::engine::test_support::conv_model;
        let one_by_one = ConvCase {
            size: 1,
            ..case(64, 64, 1, 30, 30)
        };
        for case in [case(8, 64, 1, 30, 30), case(64, 8, 1, 30, 30), one_by_one] {
            let mut model = conv_model(&case);
            assert_eq!(replace_convolutions(&mut model).unwrap(), 0);
        }
    }

    /// The tiny bundle's UNet and VAE decoder give the same outputs with
    /// their 3x3 convolutions run by Winograd's transform as by tract's.
    #[test]
    fn winograd_tiny_networks_match_tract() {
        use crate::engine::{Rewrites, test_support};
        let replaced = |plan: &TypedModel| test_support::count(plan, |n| n.op_is::<WinogradConv>());
        for (network, shapes) in test_support::NETWORKS {
            let (expected, plan) = test_support::run(network, shapes, Rewrites::NONE);
            assert_eq!(replaced(&plan), 0, "{network}");
            let winograd = Rewrites {
                winograd: true,
                ..Rewrites::NONE
            };
            let (got, plan) = test_support::run(network, shapes, winograd);
            assert_eq!(replaced(&plan) > 0, available(), "{network}");
            test_support::assert_close(network, &expected, &got);
        }
    }

    /// Kernels up to 256 channels in and out are kept transformed, larger
    /// ones tap by tap.
    #[test]
    fn only_small_kernels_are_kept_transformed() {
        let op = |channels: usize| {
            let kernel = tensor1(&values(channels * channels * 9, 0.0))
                .into_shape(&[channels, channels, 3, 3])
                .unwrap();
            WinogradConv::new(&kernel, &tensor1(&[0f32])).unwrap()
        };
        assert!(matches!(op(256).kernel, Kernel::Transformed(_)));
        assert!(matches!(op(260).kernel, Kernel::Taps(_)));
    }

    /// The unit split covers every tile of every image exactly once.
    #[test]
    fn units_cover_the_tiles_once() {
        let kernel = tensor1(&values(40 * 130 * 9, 0.0))
            .into_shape(&[40, 130, 3, 3])
            .unwrap();
        let op = WinogradConv::new(&kernel, &tensor1(&[0f32])).unwrap();
        for (images, height, width) in [(1, 7, 5), (2, 384, 672), (1, 1, 1), (2, 12, 21)] {
            let geometry = Geometry {
                images,
                height,
                width,
            };
            let tiles = geometry.tiles();
            let mut seen = vec![0u8; images * tiles];
            for unit in op.units(&geometry, 2) {
                let mut covered = 0;
                for segment in geometry.segments(&unit.tiles) {
                    assert!(segment.columns.end <= geometry.columns());
                    covered += segment.len();
                }
                assert_eq!(covered, unit.tiles.len());
                for tile in unit.tiles {
                    seen[unit.image * tiles + tile] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{images}x{height}x{width}");
        }
    }
}
