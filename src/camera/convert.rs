//! Camera frames to RGB8: the four pixel formats we negotiate.
//!
//! YUYV and NV12 are converted here (BT.601, limited range: what UVC and
//! most CSI pipelines send; chroma taken from its pair or 2x2 block) in
//! 16-bit fixed point, within 1/255 of the exact formula and of ffmpeg's
//! accurate conversion. Written by hand because `yuvutils-rs` 0.8 converts
//! YUYV with 6 fractional bits and lands up to 2/255 off. MJPEG goes through
//! libjpeg-turbo (`turbojpeg`), the decoder Pillow uses, so a frame decodes
//! to the same pixels here as in Python, after putting back the Huffman
//! tables many webcams leave out. RGB3 is copied row by row. Every path
//! honours the driver's line stride and the buffer's `bytesused`, never the
//! nominal frame size.

use crate::error::{Error, Result};
use crate::pipeline::Image;

/// The capture formats we read, most preferred first: MJPEG keeps USB
/// bandwidth low at large sizes, the raw formats need no decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Motion JPEG: one baseline JPEG per frame.
    Mjpeg,
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// 4:2:0: a Y plane, then one plane of interleaved U V.
    Nv12,
    /// Packed 8-bit R G B.
    Rgb24,
}

impl PixelFormat {
    /// Every supported format, most preferred first.
    pub const PREFERRED: [PixelFormat; 4] = [
        PixelFormat::Mjpeg,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::Rgb24,
    ];

    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Rgb24 => *b"RGB3",
        }
    }

    /// The format with this code, if we read it.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        Self::PREFERRED.into_iter().find(|f| f.fourcc() == code)
    }

    /// The code as text, for logs, errors and metadata.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Mjpeg => "MJPG",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Rgb24 => "RGB3",
        }
    }

    /// Bytes a frame needs at this stride and height (0 for MJPEG, whose
    /// size varies).
    fn needed(self, stride: usize, height: usize) -> usize {
        match self {
            PixelFormat::Mjpeg => 0,
            PixelFormat::Yuyv | PixelFormat::Rgb24 => stride * height,
            PixelFormat::Nv12 => stride * height + stride * height.div_ceil(2),
        }
    }

    /// The smallest stride a row of `width` pixels can have.
    pub fn min_stride(self, width: u32) -> u32 {
        match self {
            PixelFormat::Mjpeg | PixelFormat::Nv12 => width,
            PixelFormat::Yuyv => width.div_ceil(2) * 2 * 2,
            PixelFormat::Rgb24 => width * 3,
        }
    }
}

/// One captured buffer as the driver filled it.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    /// Pixel layout.
    pub format: PixelFormat,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// Bytes per line of the first plane (the driver's `bytesperline`).
    pub stride: u32,
    /// The buffer up to `bytesused`.
    pub data: &'a [u8],
}

/// Frame sides above this are refused before anything is decoded.
const MAX_SIDE: u32 = 8192;

fn bad_frame(reason: impl Into<String>) -> Error {
    Error::Camera {
        device: String::new(),
        reason: reason.into(),
    }
}

/// Convert a frame to RGB8, checking its size against the buffer first.
pub fn to_rgb(frame: &RawFrame) -> Result<Image> {
    let (width, height) = (frame.width, frame.height);
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad_frame(format!(
            "frame size {width}x{height} is out of range"
        )));
    }
    if frame.format == PixelFormat::Mjpeg {
        return decode_mjpeg(frame.data);
    }
    if frame.stride < frame.format.min_stride(width) {
        return Err(bad_frame(format!(
            "{} stride {} is too small for {width} pixels",
            frame.format.name(),
            frame.stride
        )));
    }
    let needed = frame.format.needed(frame.stride as usize, height as usize);
    if frame.data.len() < needed {
        return Err(bad_frame(format!(
            "short {} frame: {} bytes, {width}x{height} needs {needed}",
            frame.format.name(),
            frame.data.len()
        )));
    }
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    let (w, stride) = (width as usize, frame.stride as usize);
    match frame.format {
        PixelFormat::Yuyv => {
            for (out, line) in rgb.chunks_exact_mut(w * 3).zip(frame.data.chunks(stride)) {
                yuyv_row(&line[..w.div_ceil(2) * 4], out);
            }
        }
        PixelFormat::Nv12 => {
            let (luma, chroma) = frame.data[..needed].split_at(stride * height as usize);
            for (row, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
                let y = &luma[row * stride..][..w];
                let uv = &chroma[row / 2 * stride..][..w.div_ceil(2) * 2];
                nv12_row(y, uv, out);
            }
        }
        PixelFormat::Rgb24 => {
            for (out, line) in rgb.chunks_exact_mut(w * 3).zip(frame.data.chunks(stride)) {
                out.copy_from_slice(&line[..w * 3]);
            }
        }
        PixelFormat::Mjpeg => unreachable!("handled above"),
    }
    Ok(Image { width, height, rgb })
}

/// Fractional bits of the YUV to RGB coefficients.
const FRACTION: u32 = 16;

/// `x` in fixed point, rounded.
const fn fixed(x: f64) -> i32 {
    (x * (1u32 << FRACTION) as f64 + 0.5) as i32
}

// BT.601 limited range: Kr = 0.299, Kb = 0.114; luma 16..235, chroma 16..240.
const LUMA: i32 = fixed(255.0 / 219.0);
const V_TO_R: i32 = fixed(2.0 * (1.0 - 0.299) * 255.0 / 224.0);
const U_TO_G: i32 = fixed(2.0 * 0.114 * (1.0 - 0.114) / 0.587 * 255.0 / 224.0);
const V_TO_G: i32 = fixed(2.0 * 0.299 * (1.0 - 0.299) / 0.587 * 255.0 / 224.0);
const U_TO_B: i32 = fixed(2.0 * (1.0 - 0.114) * 255.0 / 224.0);
const HALF: i32 = 1 << (FRACTION - 1);

/// The chroma terms of one `u`, `v` pair, shared by the pixels it covers:
/// what is added to the scaled luma for R, G and B.
#[inline(always)]
fn chroma(u: u8, v: u8) -> [i32; 3] {
    let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
    [V_TO_R * v, -U_TO_G * u - V_TO_G * v, U_TO_B * u]
}

/// One pixel from its luma and its chroma terms, rounded and clamped.
#[inline(always)]
fn pixel(y: u8, terms: [i32; 3], out: &mut [u8]) {
    let y = LUMA * (i32::from(y) - 16) + HALF;
    for (o, t) in out.iter_mut().zip(terms) {
        *o = ((y + t) >> FRACTION).clamp(0, 255) as u8;
    }
}

/// A YUYV row: each 4 bytes `Y0 U Y1 V` give two pixels sharing U and V.
fn yuyv_row(line: &[u8], out: &mut [u8]) {
    let pairs = out.len() / 6;
    for (quad, pixels) in line.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
        let terms = chroma(quad[1], quad[3]);
        pixel(quad[0], terms, &mut pixels[..3]);
        pixel(quad[2], terms, &mut pixels[3..]);
    }
    if !out.len().is_multiple_of(6) {
        let quad = &line[pairs * 4..];
        pixel(quad[0], chroma(quad[1], quad[3]), &mut out[pairs * 6..]);
    }
}

/// An NV12 row: luma per pixel, one `U V` pair per two pixels (and rows).
fn nv12_row(luma: &[u8], chroma_row: &[u8], out: &mut [u8]) {
    let pairs = out.len() / 6;
    for ((ys, uv), pixels) in luma
        .chunks_exact(2)
        .zip(chroma_row.chunks_exact(2))
        .zip(out.chunks_exact_mut(6))
    {
        let terms = chroma(uv[0], uv[1]);
        pixel(ys[0], terms, &mut pixels[..3]);
        pixel(ys[1], terms, &mut pixels[3..]);
    }
    if !out.len().is_multiple_of(6) {
        let uv = &chroma_row[pairs * 2..];
        pixel(luma[pairs * 2], chroma(uv[0], uv[1]), &mut out[pairs * 6..]);
    }
}

/// Decode one MJPEG frame. UVC cameras may omit the Huffman tables (the AVI1
/// convention: every decoder is expected to use the standard ones); they are
/// spliced in before the scan when no DHT segment is present.
pub fn decode_mjpeg(data: &[u8]) -> Result<Image> {
    let with_tables;
    let jpeg = match scan_without_tables(data)? {
        Some(sos) => {
            let mut bytes = Vec::with_capacity(data.len() + STANDARD_DHT.len());
            bytes.extend_from_slice(&data[..sos]);
            bytes.extend_from_slice(&STANDARD_DHT);
            bytes.extend_from_slice(&data[sos..]);
            with_tables = bytes;
            &with_tables[..]
        }
        None => data,
    };
    decode_jpeg(jpeg, MAX_SIDE).map_err(|reason| bad_frame(format!("MJPEG frame: {reason}")))
}

/// Decode a JPEG to RGB8 with libjpeg-turbo, refusing sides above
/// `max_side` from the header alone, before any pixel is decoded.
pub(crate) fn decode_jpeg(data: &[u8], max_side: u32) -> std::result::Result<Image, String> {
    let mut decompressor = turbojpeg::Decompressor::new().map_err(|e| e.to_string())?;
    let header = decompressor.read_header(data).map_err(|e| e.to_string())?;
    let (width, height) = (header.width, header.height);
    if width == 0 || height == 0 || width > max_side as usize || height > max_side as usize {
        return Err(format!(
            "{width}x{height} is not within 1x1..{max_side}x{max_side}"
        ));
    }
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; width * height * 3],
        width,
        pitch: width * 3,
        height,
        format: turbojpeg::PixelFormat::RGB,
    };
    decompressor
        .decompress(data, image.as_deref_mut())
        .map_err(|e| e.to_string())?;
    Ok(Image {
        width: width as u32,
        height: height as u32,
        rgb: image.pixels,
    })
}

/// Where the scan starts when the JPEG has no DHT segment before it;
/// `None` when tables are present. Errors when the data is not a JPEG.
fn scan_without_tables(data: &[u8]) -> Result<Option<usize>> {
    if data.len() < 4 || data[..2] != [0xFF, 0xD8] {
        return Err(bad_frame("MJPEG frame does not start with a JPEG marker"));
    }
    let mut at = 2;
    while at + 4 <= data.len() {
        if data[at] != 0xFF {
            return Err(bad_frame(format!("MJPEG frame: no marker at byte {at}")));
        }
        let marker = data[at + 1];
        match marker {
            0xC4 => return Ok(None),
            0xDA => return Ok(Some(at)),
            // Fill bytes and markers without a length.
            0xFF => at += 1,
            0xD0..=0xD7 | 0x01 => at += 2,
            _ => {
                let length = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
                at += 2 + length;
            }
        }
    }
    Err(bad_frame("MJPEG frame ends before its scan"))
}

/// The Huffman tables of ITU-T T.81 Annex K.3 (luminance and chrominance,
/// DC and AC) as one DHT segment: what the AVI1 MJPEG convention and UVC
/// cameras that omit DHT expect. The bytes are the tables libjpeg writes for
/// a baseline encode without optimised tables.
const STANDARD_DHT: [u8; 420] = [
    0xff, 0xc4, 0x01, 0xa2, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00,
    0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
    0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
    0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47,
    0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
    0xf7, 0xf8, 0xf9, 0xfa, 0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01,
    0x02, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
    0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
    0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19,
    0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85,
    0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3,
    0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
    0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
    0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
    0xf7, 0xf8, 0xf9, 0xfa,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_tables_are_one_well_formed_segment() {
        assert_eq!(STANDARD_DHT[..2], [0xFF, 0xC4]);
        let length = usize::from(u16::from_be_bytes([STANDARD_DHT[2], STANDARD_DHT[3]]));
        assert_eq!(length + 2, STANDARD_DHT.len());
    }

    #[test]
    fn short_or_misfit_frames_are_refused_not_read_past() {
        let data = vec![0u8; 100];
        let frame = RawFrame {
            format: PixelFormat::Yuyv,
            width: 16,
            height: 16,
            stride: 32,
            data: &data,
        };
        assert!(matches!(to_rgb(&frame), Err(Error::Camera { .. })));
        let frame = RawFrame { stride: 8, ..frame };
        assert!(matches!(to_rgb(&frame), Err(Error::Camera { .. })));
        assert!(decode_mjpeg(b"not a jpeg").is_err());
    }
}
