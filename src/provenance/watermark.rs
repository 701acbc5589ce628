//! The invisible watermark: the `dwtDct` scheme of the Python package
//! `invisible-watermark` 0.2.0 (what the SDXL reference code stamps on its
//! images), so marks made here decode there and theirs decode here.
//!
//! The scheme, as the package runs it: convert to YUV as OpenCV does for
//! 8-bit pixels, take a one-level Haar DWT of the U plane (of the largest
//! top-left area whose sides are multiples of 4), cut its approximation band
//! into 4x4 blocks, and in each block quantise the largest AC coefficient of
//! the block's orthonormal DCT so that `|c| mod 36` lands on 9 (bit 0) or 27
//! (bit 1). Block `n` (row-major) carries payload bit `n % len`; decoding
//! averages each bit's votes over every block that carries it, which is why a
//! 4K image survives JPEG.
//!
//! Two differences from the package, neither visible to its decoder:
//! - we move a coefficient to the *nearest* value with the wanted residue
//!   (the package rounds down, moving it by up to 27 instead of 18, and so
//!   more often demotes it below another coefficient);
//! - only the change is applied, to the original RGB pixels (the package
//!   writes the whole image back through a truncating YUV round trip and
//!   swaps the U plane's horizontal and vertical detail bands, which
//!   transposes chroma in every 2x2 block).

use crate::pipeline::Image;

/// Quantisation step of the package's default `scales=[0, 36, 36]` (only
/// the U plane is marked; its loop never reaches V).
const SCALE: f32 = 36.0;
/// Block side in the approximation band.
const BLOCK: usize = 4;
/// The package refuses images with fewer pixels than this.
pub const MIN_PIXELS: u64 = 256 * 256;
/// The 48-bit message the SDXL reference code embeds; our default payload,
/// so tools that look for SDXL's mark find ours.
pub const SDXL_BITS: &str = "101100111110110010010000011110111011000110011110";
/// Below this share of blocks sitting on the scheme's lattice an image is
/// reported as unmarked (see [`Decoded::lattice`]).
pub const DETECTION_THRESHOLD: f32 = 0.62;

/// A watermark payload: a string of bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(Vec<bool>);

impl Payload {
    /// Parse a string of `0` and `1` (1 to 256 bits): the config's form,
    /// and the package's `'bits'` type.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bits = text
            .chars()
            .map(|c| match c {
                '0' => Ok(false),
                '1' => Ok(true),
                other => Err(format!("'{other}' is not a bit (use only 0 and 1)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if bits.is_empty() || bits.len() > 256 {
            return Err(format!("{} bits; use 1 to 256", bits.len()));
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
    /// Share of blocks whose coefficient sits within a quarter step of the
    /// lattice the scheme writes (9 or 27 mod 36). Marked images are near
    /// 1.0; unmarked ones near 0.5 (or lower, when flat); this, not the
    /// bits, tells whether a mark is present.
    pub lattice: f32,
    /// How many blocks were read.
    pub blocks: usize,
}

impl Decoded {
    /// Whether the image carries a mark of this scheme.
    pub fn detected(&self) -> bool {
        self.blocks > 0 && self.lattice >= DETECTION_THRESHOLD
    }

    /// The bits as a `0`/`1` string.
    pub fn bit_string(&self) -> String {
        self.bits.iter().map(|&b| if b { '1' } else { '0' }).collect()
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
    let width = image.width as usize;
    // The U plane of one band of blocks at a time: 8 pixel rows.
    let mut band = vec![0i32; 8 * grid.cols * 8];
    for block_row in 0..grid.rows {
        let y0 = block_row * 8;
        read_u_band(image, y0, grid.cols * 8, &mut band);
        for block_col in 0..grid.cols {
            let bit = bits[(block_row * grid.cols + block_col) % bits.len()];
            let approx = approximation_block(&band, grid.cols * 8, block_col);
            let coeffs = dct4x4(&approx);
            let (pos, value) = largest_ac(&coeffs);
            let target = nearest_on_lattice(value, bit);
            let delta = target - value;
            if delta == 0.0 {
                continue;
            }
            let (ki, kj) = (pos / BLOCK, pos % BLOCK);
            // Inverse DCT of a single coefficient, then the Haar synthesis
            // spreads each approximation change over its 2x2 pixels (/2).
            for r in 0..BLOCK {
                for c in 0..BLOCK {
                    let du = delta * BASIS[ki][r] * BASIS[kj][c] * 0.5;
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let y = y0 + 2 * r + dy;
                        let x = block_col * 8 + 2 * c + dx;
                        shift_u(&mut image.rgb[(y * width + x) * 3..][..3], du);
                    }
                }
            }
        }
    }
    Embedded::Marked
}

/// Read a mark of `len` bits from `image`; `None` when the image is too
/// small for the scheme.
pub fn decode(image: &Image, len: usize) -> Option<Decoded> {
    let grid = Grid::of(image)?;
    let len = len.max(1);
    let mut ones = vec![0u32; len];
    let mut counts = vec![0u32; len];
    let mut on_lattice = 0usize;
    let mut band = vec![0i32; 8 * grid.cols * 8];
    for block_row in 0..grid.rows {
        read_u_band(image, block_row * 8, grid.cols * 8, &mut band);
        for block_col in 0..grid.cols {
            let approx = approximation_block(&band, grid.cols * 8, block_col);
            let (_, value) = largest_ac(&dct4x4(&approx));
            let residue = value.abs() % SCALE;
            let slot = (block_row * grid.cols + block_col) % len;
            counts[slot] += 1;
            if residue > 0.5 * SCALE {
                ones[slot] += 1;
            }
            let off = (residue - 0.25 * SCALE).abs().min((residue - 0.75 * SCALE).abs());
            if off < 0.125 * SCALE {
                on_lattice += 1;
            }
        }
    }
    let votes: Vec<f32> = ones
        .iter()
        .zip(&counts)
        .map(|(&o, &n)| if n == 0 { 0.0 } else { o as f32 / n as f32 })
        .collect();
    let blocks = grid.rows * grid.cols;
    Some(Decoded {
        // The package's rule: mean * 255 > 127.
        bits: votes.iter().map(|&v| v * 255.0 > 127.0).collect(),
        votes,
        lattice: on_lattice as f32 / blocks.max(1) as f32,
        blocks,
    })
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

/// The U plane of pixel rows `y0..y0 + 8`, columns `0..width`.
fn read_u_band(image: &Image, y0: usize, width: usize, band: &mut [i32]) {
    let stride = image.width as usize * 3;
    for dy in 0..8 {
        let row = &image.rgb[(y0 + dy) * stride..][..width * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            band[dy * width + x] =
                opencv_u(i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        }
    }
}

/// The Haar approximation (`pywt.dwt2(..., 'haar')[0]`) of one block: each
/// value is the 2x2 pixel sum / 2.
fn approximation_block(band: &[i32], width: usize, block_col: usize) -> [[f32; 4]; 4] {
    let mut out = [[0.0; 4]; 4];
    for (r, row) in out.iter_mut().enumerate() {
        for (c, value) in row.iter_mut().enumerate() {
            let x = block_col * 8 + 2 * c;
            let top = (2 * r) * width + x;
            let bottom = top + width;
            let sum = band[top] + band[top + 1] + band[bottom] + band[bottom + 1];
            *value = sum as f32 * 0.5;
        }
    }
    out
}

/// Orthonormal DCT-II basis for 4 points (`cv2.dct`'s): `BASIS[k][n]`.
const BASIS: [[f32; 4]; 4] = [
    [0.5, 0.5, 0.5, 0.5],
    [0.653_281_5, 0.270_598_05, -0.270_598_05, -0.653_281_5],
    [0.5, -0.5, -0.5, 0.5],
    [0.270_598_05, -0.653_281_5, 0.653_281_5, -0.270_598_05],
];

/// 2-D orthonormal DCT of a 4x4 block.
fn dct4x4(block: &[[f32; 4]; 4]) -> [[f32; 4]; 4] {
    let mut rows = [[0.0f32; 4]; 4];
    for r in 0..4 {
        for k in 0..4 {
            rows[r][k] = (0..4).map(|n| BASIS[k][n] * block[r][n]).sum();
        }
    }
    let mut out = [[0.0f32; 4]; 4];
    for k in 0..4 {
        for c in 0..4 {
            out[k][c] = (0..4).map(|n| BASIS[k][n] * rows[n][c]).sum();
        }
    }
    out
}

/// The largest-magnitude AC coefficient (first one on ties, as numpy's
/// `argmax`): its row-major index and value.
fn largest_ac(coeffs: &[[f32; 4]; 4]) -> (usize, f32) {
    let flat = coeffs.as_flattened();
    let mut best = 1;
    for (i, v) in flat.iter().enumerate().skip(2) {
        if v.abs() > flat[best].abs() {
            best = i;
        }
    }
    (best, flat[best])
}

/// The value nearest `value`, of the same sign, whose magnitude is
/// `(k + 1/4) * 36` (bit 0) or `(k + 3/4) * 36` (bit 1) for some k >= 0.
fn nearest_on_lattice(value: f32, bit: bool) -> f32 {
    let offset = if bit { 0.75 } else { 0.25 };
    let magnitude = value.abs();
    let k = ((magnitude / SCALE) - offset).round().max(0.0);
    let target = (k + offset) * SCALE;
    if value < 0.0 { -target } else { target }
}

/// Change a pixel's U by `du`, keeping its Y and V: the inverse of OpenCV's
/// YUV to RGB moves blue by 2.032 dU and green by -0.395 dU.
fn shift_u(px: &mut [u8], du: f32) {
    let g = f32::from(px[1]) - 0.395 * du;
    let b = f32::from(px[2]) + 2.032 * du;
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
                rgb.extend([(v % 200 + 20) as u8, ((v / 3) % 180 + 30) as u8, ((x + 2 * y) % 160 + 40) as u8]);
            }
        }
        Image { width, height, rgb }
    }

    #[test]
    fn payloads_parse_only_bits() {
        assert_eq!(Payload::parse("101").map(|p| p.to_bit_string()), Ok("101".into()));
        assert!(Payload::parse("10a").is_err());
        assert!(Payload::parse("").is_err());
        assert!(Payload::parse(&"1".repeat(257)).is_err());
        assert_eq!(Payload::default().bits().len(), 48);
    }

    #[test]
    fn dct_basis_is_orthonormal() {
        for a in 0..4 {
            for b in 0..4 {
                let dot: f32 = (0..4).map(|n| BASIS[a][n] * BASIS[b][n]).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-6, "{a} {b} {dot}");
            }
        }
    }

    #[test]
    fn lattice_targets_carry_their_bit() {
        for value in [-300.5f32, -20.0, -1.0, 0.0, 3.0, 17.9, 18.1, 50.0, 1000.0] {
            for bit in [false, true] {
                let t = nearest_on_lattice(value, bit);
                assert_eq!((t.abs() % SCALE) > 0.5 * SCALE, bit, "{value} {bit} -> {t}");
                assert!((t - value).abs() <= 0.75 * SCALE, "{value} {bit} -> {t}");
                assert!(value == 0.0 || t.signum() == value.signum());
            }
        }
        // Away from zero, the move is at most half a step.
        assert!((nearest_on_lattice(100.0, true) - 100.0).abs() <= 18.0);
    }

    #[test]
    fn a_marked_image_reads_back_and_an_unmarked_one_does_not() {
        let payload = Payload::default();
        let mut image = textured(300, 260);
        let before = decode(&image, 48).expect("big enough");
        assert!(!before.detected(), "lattice {}", before.lattice);
        assert_eq!(embed(&mut image, &payload), Embedded::Marked);
        let after = decode(&image, 48).expect("big enough");
        assert_eq!(after.bit_string(), payload.to_bit_string());
        assert!(after.detected(), "lattice {}", after.lattice);
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
