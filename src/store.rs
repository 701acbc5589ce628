//! Writing images to disk so that a crash never leaves a half-written file.
//!
//! Each PNG is encoded into a temporary file in the destination folder,
//! fsynced, renamed over the final name, and the folder fsynced. Metadata goes
//! into PNG text chunks (`parameters` in the format common SD tools read).
//! Nothing here decides *what* to draw.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::pipeline::Image;

/// Write `image` to `path` atomically with `tEXt` chunks `(keyword, text)`.
/// Deterministic: the same image and text give the same bytes.
pub fn write_png(path: &Path, image: &Image, text: &[(&str, String)]) -> Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
    let temp = tempfile::Builder::new()
        .prefix(".pocket-studio-")
        .suffix(".png.part")
        .tempfile_in(folder)
        .map_err(|e| Error::io(folder, e))?;
    {
        let mut out = BufWriter::new(temp.as_file());
        encode_png(&mut out, image, text).map_err(|e| Error::io(path, e))?;
        out.flush().map_err(|e| Error::io(path, e))?;
    }
    temp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(folder, e))?;
    Ok(())
}

fn encode_png(out: impl Write, image: &Image, text: &[(&str, String)]) -> std::io::Result<()> {
    let mut encoder = png::Encoder::new(out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    for (keyword, value) in text {
        encoder
            .add_itxt_chunk((*keyword).to_string(), value.clone())
            .map_err(std::io::Error::other)?;
    }
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(&image.rgb)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}
