//! Init images from outside (a file on the CLI, an fd over D-Bus): decoded
//! with hard caps, so a hostile or broken file costs little and is refused
//! with a clear `InvalidArgs` on `init_image`.
//!
//! The caps are checked from the header before any pixel is decoded: a
//! 20000x20000 PNG is refused having read a few dozen bytes.

use std::io::{Cursor, Read};

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::error::{Error, Result};
use crate::pipeline::Image;

/// Longest side accepted (an 8K frame or a phone's 48 MP photo fits).
pub const MAX_SIDE: u32 = 8192;

/// Largest encoded file accepted.
pub const MAX_BYTES: u64 = 64 << 20;

/// Most memory the decoder may allocate.
const MAX_ALLOC: u64 = 320 << 20;

fn refuse(reason: impl Into<String>) -> Error {
    Error::invalid("init_image", reason)
}

/// Read at most [`MAX_BYTES`] from `reader` (a file or a passed fd).
pub fn read_capped(reader: impl Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(refuse(format!("is larger than {} MiB", MAX_BYTES >> 20)));
    }
    Ok(bytes)
}

/// Read a passed file descriptor: a regular file whole from its start,
/// without moving its offset (the sender's shared one: it may pass the same
/// file twice), after checking its size; a pipe up to the cap.
pub fn read_passed(file: std::fs::File) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let meta = file
        .metadata()
        .map_err(|e| refuse(format!("cannot be read: {e}")))?;
    if !meta.is_file() {
        return read_capped(file);
    }
    if meta.len() > MAX_BYTES {
        return Err(refuse(format!("is larger than {} MiB", MAX_BYTES >> 20)));
    }
    let mut bytes = vec![0u8; meta.len() as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| refuse(format!("cannot be read: {e}")))?;
    Ok(bytes)
}

/// Decode a PNG or JPEG to RGB8, upright (EXIF orientation applied).
/// JPEG pixels come from libjpeg-turbo, as in Pillow, so a photo starts
/// image-to-image from the same values here as in diffusers.
pub fn decode(bytes: &[u8]) -> Result<Image> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let format = match reader.format() {
        Some(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => f,
        Some(other) => {
            return Err(refuse(format!("is {other:?}; PNG and JPEG are accepted")));
        }
        None => return Err(refuse("is not a PNG or JPEG image")),
    };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut decoder = reader.into_decoder().map_err(|e| refuse(describe(&e)))?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(refuse(format!(
            "is {width}x{height}; at most {MAX_SIDE}x{MAX_SIDE} is accepted"
        )));
    }
    if width < 8 || height < 8 {
        return Err(refuse(format!(
            "is {width}x{height}; at least 8x8 is needed"
        )));
    }
    decoder
        .set_limits(limits)
        .map_err(|e| refuse(describe(&e)))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = if format == image::ImageFormat::Jpeg {
        drop(decoder);
        let decoded = crate::camera::convert::decode_jpeg(bytes, MAX_SIDE)
            .map_err(|e| refuse(format!("does not decode: {e}")))?;
        let rgb = image::RgbImage::from_raw(decoded.width, decoded.height, decoded.rgb)
            .ok_or_else(|| refuse("decoded to the wrong size"))?;
        DynamicImage::ImageRgb8(rgb)
    } else {
        DynamicImage::from_decoder(decoder).map_err(|e| refuse(describe(&e)))?
    };
    picture.apply_orientation(orientation);
    let rgb = picture.into_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(Image {
        width,
        height,
        rgb: rgb.into_raw(),
    })
}

/// The image crate's error in a user's words.
fn describe(e: &image::ImageError) -> String {
    match e {
        image::ImageError::Limits(_) => {
            format!("is too large to decode (at most {MAX_SIDE}x{MAX_SIDE})")
        }
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "is truncated".into()
        }
        other => format!("does not decode: {other}"),
    }
}
