//! The invisible watermark: the `dwtDct` scheme of the Python package
//! `invisible-watermark` 0.2.0 (what the SDXL reference code stamps on its
//! images), so marks made here decode there and theirs decode here.
//!
//! The scheme, as the package's code runs it (its name promises a DCT, its
//! `infer_dct_matrix` never calls one): convert to YUV as OpenCV does for
//! 8-bit pixels, take a one-level Haar DWT of the U plane (of the largest
//! top-left area whose sides are multiples of 4), cut the approximation
//! band into 4x4 blocks, and in each block quantise the largest value
//! (the first one skipped) so that `value mod 36` lands on 9 (bit 0) or
//! 27 (bit 1). Block `n` (row-major) carries payload bit `n % len`;
//! decoding averages each bit's votes over every block that carries it,
//! which is what lets a 4K image's mark survive JPEG.
//!
//! Three differences from the package, none visible to its decoder:
//! - we shift the whole 8x8-pixel block's U rather than one 2x2 spot, so
//!   marks survive JPEG (see `mark_block`);
//! - we move to the *nearest* value with the wanted residue (the package
//!   rounds down, moving by up to 27 instead of 18);
//! - only the change is applied, to the original RGB pixels (the package
//!   writes the whole image back through a truncating YUV round trip and
//!   swaps the U plane's horizontal and vertical detail bands, which
//!   transposes chroma in every 2x2 block).

use crate::pipeline::Image;

/// Quantisation step of the package's default `scales=[0, 36, 36]` (only
/// the U plane is marked; its loop never reaches V).
const SCALE: f64 = 36.0;
/// Block side in the approximation band.
const BLOCK: usize = 4;
/// The package refuses images with fewer pixels than this.
pub const MIN_PIXELS: u64 = 256 * 256;
/// The 48-bit message the SDXL reference code embeds; our default payload,
/// so tools that look for SDXL's mark find ours.
pub const SDXL_BITS: &str = "101100111110110010010000011110111011000110011110";
/// Below this separation an image is reported as unmarked (see
/// [`Decoded::separation`]).
pub const DETECTION_THRESHOLD: f32 = 0.35;

/// A watermark payload: a string of bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(Vec<bool>);

impl Payload {
    /// Parse a string of `0` and `1` (2 to 256 bits, both values present):
    /// the config's form, and the package's `'bits'` type.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bits = text
            .chars()
            .map(|c| match c {
                '0' => Ok(false),
                '1' => Ok(true),
                other => Err(format!("'{other}' is not a bit (use only 0 and 1)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if bits.len() < 2 || bits.len() > 256 {
            return Err(format!("{} bits; use 2 to 256", bits.len()));
        }
        if bits.iter().all(|&b| b == bits[0]) {
            // A mark is told from its absence by its bits disagreeing.
            return Err("use both 0 and 1 (a payload of one bit value cannot be detected)".into());
        }
        Ok(Payload(bits))
    }

    /// The bits, first to last.
    pub fn bits(&self) -> &[bool] {
        &self.0
    }

    /// The bits as a `0`/`1` string.
    pub fn to_bit_string(&self) -> String {
        self.0.iter().map(|&b| if b { '1' } else { '0' }).collect()
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::parse(SDXL_BITS).unwrap_or(Payload(vec![false]))
    }
}

/// What embedding did to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embedded {
    /// Every block now carries its bit.
    Marked,
    /// Too small for the scheme (the package's own limit); left untouched.
    TooSmall,
}

/// What decoding read from an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The majority bit of each payload position (the package's answer).
    pub bits: Vec<bool>,
    /// Per bit, the share of its blocks that voted 1.
    pub votes: Vec<f32>,
    /// Mean vote of the bits read as 1 minus that of the bits read as 0.
    /// Every bit position samples the same picture (blocks are dealt out in
    /// turn), so without a mark all votes are alike and this is near 0;
    /// a marked picture reads near 1. This, not the bits, tells whether a
    /// mark is present.
    pub separation: f32,
    /// Blocks read.
    pub blocks: usize,
}

impl Decoded {
    /// Whether the image carries a mark of this scheme.
    pub fn detected(&self) -> bool {
        self.separation >= DETECTION_THRESHOLD
    }

    /// The bits as a `0`/`1` string.
    pub fn bit_string(&self) -> String {
        self.bits
            .iter()
            .map(|&b| if b { '1' } else { '0' })
            .collect()
    }

    /// Share of bits equal to `payload`'s (0 when the lengths differ).
    pub fn accuracy(&self, payload: &Payload) -> f32 {
        if payload.bits().len() != self.bits.len() || self.bits.is_empty() {
            return 0.0;
        }
        let same = self
            .bits
            .iter()
            .zip(payload.bits())
            .filter(|(a, b)| a == b)
            .count();
        same as f32 / self.bits.len() as f32
    }
}

/// Mark `image` in place with `payload`.
pub fn embed(image: &mut Image, payload: &Payload) -> Embedded {
    let grid = match Grid::of(image) {
        Some(grid) => grid,
        None => return Embedded::TooSmall,
    };
    let bits = payload.bits();
    let stride = image.width as usize * 3;
    // Each band of 8 pixel rows holds one row of blocks and nothing else
    // touches it, so bands are marked on all cores at once.
    let bands: Vec<(usize, &mut [u8])> = image
        .rgb
        .chunks_exact_mut(8 * stride)
        .take(grid.rows)
        .enumerate()
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let per_worker = bands.len().div_ceil(workers).max(1);
    let mut bands = bands;
    std::thread::scope(|scope| {
        while !bands.is_empty() {
            let mine: Vec<(usize, &mut [u8])> =
                bands.drain(..per_worker.min(bands.len())).collect();
            let cols = grid.cols;
            scope.spawn(move || {
                let mut u = vec![0i32; 8 * cols * 8];
                for (block_row, rows) in mine {
                    read_u_band(rows, stride, cols * 8, &mut u);
                    for block_col in 0..cols {
                        let bit = bits[(block_row * cols + block_col) % bits.len()];
                        let approx = approximation_block(&u, cols * 8, block_col);
                        mark_block(rows, stride, block_col * 8, &approx, bit);
                    }
                }
            });
        }
    });
    Embedded::Marked
}

/// Read a mark of `len` bits from `image`; `None` when the image is too
/// small for the scheme.
pub fn decode(image: &Image, len: usize) -> Option<Decoded> {
    let grid = Grid::of(image)?;
    let len = len.max(1);
    let mut ones = vec![0u32; len];
    let mut counts = vec![0u32; len];
    let mut band = vec![0i32; 8 * grid.cols * 8];
    for block_row in 0..grid.rows {
        let stride = image.width as usize * 3;
        let rows = &image.rgb[block_row * 8 * stride..][..8 * stride];
        read_u_band(rows, stride, grid.cols * 8, &mut band);
        for block_col in 0..grid.cols {
            let approx = approximation_block(&band, grid.cols * 8, block_col);
            let (_, value) = largest_after_first(&approx);
            let residue = value.abs() % SCALE;
            let slot = (block_row * grid.cols + block_col) % len;
            counts[slot] += 1;
            if residue > 0.5 * SCALE {
                ones[slot] += 1;
            }
        }
    }
    let votes: Vec<f32> = ones
        .iter()
        .zip(&counts)
        .map(|(&o, &n)| if n == 0 { 0.0 } else { o as f32 / n as f32 })
        .collect();
    Some(Decoded {
        bits: votes.iter().map(|&v| as_bit(v)).collect(),
        separation: separation(&votes),
        votes,
        blocks: grid.rows * grid.cols,
    })
}

/// The package's rule: a bit is 1 when its mean vote * 255 > 127.
fn as_bit(vote: f32) -> bool {
    vote * 255.0 > 127.0
}

/// See [`Decoded::separation`]; 0 when every bit reads the same.
fn separation(votes: &[f32]) -> f32 {
    let mean = |want: bool| {
        let picked: Vec<f32> = votes
            .iter()
            .copied()
            .filter(|&v| as_bit(v) == want)
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<f32>() / picked.len() as f32)
    };
    match (mean(true), mean(false)) {
        (Some(ones), Some(zeros)) => ones - zeros,
        _ => 0.0,
    }
}

/// The blocks an image holds: each covers 8x8 pixels (4x4 in the half-size
/// approximation band), starting at the top-left corner.
struct Grid {
    rows: usize,
    cols: usize,
}

impl Grid {
    fn of(image: &Image) -> Option<Grid> {
        if u64::from(image.width) * u64::from(image.height) < MIN_PIXELS {
            return None;
        }
        // The package transforms the top-left (h/4*4) x (w/4*4) area; its
        // half-size band then holds floor(h/4*2 / 4) block rows.
        let rows = (image.height as usize / 4 * 2) / BLOCK;
        let cols = (image.width as usize / 4 * 2) / BLOCK;
        (rows > 0 && cols > 0).then_some(Grid { rows, cols })
    }
}

/// OpenCV's 8-bit `COLOR_RGB2YUV` U value (BT.601, 14-bit fixed point),
/// bit-exact, so both decoders see the same plane.
fn opencv_u(r: i32, g: i32, b: i32) -> i32 {
    let y = (r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14;
    (((b - y) * 8061 + (128 << 14) + (1 << 13)) >> 14).clamp(0, 255)
}

/// The U plane of a band of 8 pixel rows, columns `0..width`.
fn read_u_band(rows: &[u8], stride: usize, width: usize, band: &mut [i32]) {
    for dy in 0..8 {
        let row = &rows[dy * stride..][..width * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            band[dy * width + x] = opencv_u(i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        }
    }
}

/// The Haar approximation (`pywt.dwt2(..., 'haar')[0]`) of one block: the
/// 2x2 pixel sum / 2, computed as PyWavelets does (columns first, each
/// pair as `h*a + h*b` with h = 1/sqrt 2 in f64), because its rounding
/// decides residues that sit exactly on 18 (mod 36) and ties for the
/// largest value; checked bit for bit against `pywt.dwt2`.
fn approximation_block(band: &[i32], width: usize, block_col: usize) -> [[f64; 4]; 4] {
    const H: f64 = std::f64::consts::FRAC_1_SQRT_2;
    let mut out = [[0.0; 4]; 4];
    for (r, row) in out.iter_mut().enumerate() {
        for (c, value) in row.iter_mut().enumerate() {
            let x = block_col * 8 + 2 * c;
            let top = (2 * r) * width + x;
            let column = |i: usize| H * f64::from(band[i]) + H * f64::from(band[i + width]);
            *value = H * column(top) + H * column(top + 1);
        }
    }
    out
}

/// The largest value of a block but its first (the package's
/// `argmax(abs(block.flatten()[1:])) + 1`; the first one on ties): its
/// row-major index and value.
fn largest_after_first(block: &[[f64; 4]; 4]) -> (usize, f64) {
    let flat = block.as_flattened();
    let mut best = 1;
    for (i, v) in flat.iter().enumerate().skip(2) {
        if v.abs() > flat[best].abs() {
            best = i;
        }
    }
    (best, flat[best])
}

/// How close to its lattice point a marked value must land, read back
/// exactly as a decoder reads it (after RGB rounding and clipping).
const AIM: f64 = 2.0;

/// Mark one block by shifting the U of all its 8x8 pixels alike, so that
/// its largest value (the first skipped) lands on a value with `bit`'s
/// residue, nearest first. A uniform shift keeps the block's order, and it
/// is a low frequency that JPEG's chroma quantisation and subsampling keep,
/// where the package's change of one 2x2 spot is smoothed away (its own
/// marks do not survive JPEG 90). Each try is checked by reading the pixels
/// back as a decoder does; a block whose colours clip every way is left as
/// it was.
fn mark_block(rows: &mut [u8], stride: usize, x0: usize, approx: &[[f64; 4]; 4], bit: bool) {
    let (_, value) = largest_after_first(approx);
    let mut original = [0u8; 8 * 8 * 3];
    for dy in 0..8 {
        let row = dy * stride + x0 * 3;
        original[dy * 24..][..24].copy_from_slice(&rows[row..row + 24]);
    }
    let offset = if bit { 0.75 } else { 0.25 };
    let k0 = (value / SCALE - offset).round();
    let mut targets = [k0 - 1.0, k0, k0 + 1.0].map(|k| (k + offset) * SCALE);
    targets.sort_by(|a, b| (a - value).abs().total_cmp(&(b - value).abs()));
    let mut u = [0i32; 64];
    for target in targets {
        if target < 0.0 {
            continue;
        }
        // Aim, then correct once for what rounding and clipping did.
        let mut du = (target - value) * 0.5;
        for _ in 0..2 {
            for dy in 0..8 {
                let row = dy * stride + x0 * 3;
                let pixels = &mut rows[row..row + 24];
                pixels.copy_from_slice(&original[dy * 24..][..24]);
                for (dx, px) in pixels.chunks_exact_mut(3).enumerate() {
                    shift_u(px, du);
                    u[dy * 8 + dx] = opencv_u(i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
                }
            }
            let (_, got) = largest_after_first(&approximation_block(&u, 8, 0));
            if (target - got).abs() <= AIM {
                return;
            }
            du += (target - got) * 0.5;
        }
    }
    for dy in 0..8 {
        let row = dy * stride + x0 * 3;
        rows[row..row + 24].copy_from_slice(&original[dy * 24..][..24]);
    }
}

/// Change a pixel's U by `du`, keeping its Y and V: the inverse of OpenCV's
/// YUV to RGB moves blue by 2.032 dU and green by -0.395 dU.
fn shift_u(px: &mut [u8], du: f64) {
    let g = f64::from(px[1]) - 0.395 * du;
    let b = f64::from(px[2]) + 2.032 * du;
    px[1] = g.round().clamp(0.0, 255.0) as u8;
    px[2] = b.round().clamp(0.0, 255.0) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(width: u32, height: u32) -> Image {
        let mut rgb = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                let v = (x * 7 + y * 13) ^ (x * y / 5);
                rgb.extend([
                    (v % 200 + 20) as u8,
                    ((v / 3) % 180 + 30) as u8,
                    ((x + 2 * y) % 160 + 40) as u8,
                ]);
            }
        }
        Image { width, height, rgb }
    }

    #[test]
    fn payloads_parse_only_bits() {
        assert_eq!(
            Payload::parse("101").map(|p| p.to_bit_string()),
            Ok("101".into())
        );
        assert!(Payload::parse("1111").is_err());
        assert!(Payload::parse("10a").is_err());
        assert!(Payload::parse("").is_err());
        assert!(Payload::parse(&"1".repeat(257)).is_err());
        assert_eq!(Payload::default().bits().len(), 48);
    }

    #[test]
    fn a_marked_image_reads_back_and_an_unmarked_one_does_not() {
        let payload = Payload::default();
        let mut image = textured(300, 260);
        let before = decode(&image, 48).expect("big enough");
        assert!(!before.detected(), "separation {}", before.separation);
        assert_eq!(embed(&mut image, &payload), Embedded::Marked);
        let after = decode(&image, 48).expect("big enough");
        assert_eq!(after.bit_string(), payload.to_bit_string());
        assert!(after.detected(), "separation {}", after.separation);
    }

    #[test]
    fn small_images_are_left_alone() {
        let mut image = textured(255, 256);
        let copy = image.clone();
        assert_eq!(embed(&mut image, &Payload::default()), Embedded::TooSmall);
        assert_eq!(image, copy);
        assert!(decode(&image, 48).is_none());
    }
}
