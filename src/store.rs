//! The gallery: images on disk that are never half-written and never lost.
//!
//! Every PNG is encoded into a temporary file in the gallery folder, fsynced,
//! renamed into place and the folder fsynced; stale temporary files from a
//! crash are removed when the gallery opens. The index (newest first) is a
//! cache: when it is missing, corrupt or disagrees with the folder it is
//! rebuilt from the PNGs' own text chunks. Before a write, free space must
//! cover the image plus a reserve (`NoSpace`), and the quota must allow it
//! (`QuotaFull`). Nothing here decides *what* to draw.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pipeline::Image;

/// Index file name inside the gallery folder.
pub const INDEX_FILE: &str = ".pocket-studio-index.json";
const TEMP_PREFIX: &str = ".pocket-studio-";
const TEMP_SUFFIX: &str = ".part";

/// Everything written into an image's PNG text chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The prompt as given.
    pub prompt: String,
    /// The negative prompt ("" when none).
    pub negative_prompt: String,
    /// Noise seed.
    pub seed: u64,
    /// Denoising steps.
    pub steps: u32,
    /// Scheduler name.
    pub scheduler: String,
    /// Guidance scale.
    pub guidance: f32,
    /// Size the model generated at.
    pub generated_width: u32,
    /// Size the model generated at.
    pub generated_height: u32,
    /// Bundle name.
    pub model: String,
    /// sha256 of the bundle's UNet ("unverified" for bundles without one).
    pub model_sha256: String,
    /// Upscaler name, when one ran.
    pub upscaler: Option<String>,
    /// sha256 of the upscaler's ONNX, when one ran.
    pub upscaler_sha256: Option<String>,
    /// `4k` or `native`.
    pub output: String,
    /// Image-to-image: where the init image came from.
    pub source: Option<String>,
    /// Image-to-image strength.
    pub strength: Option<f32>,
    /// `pocket-studio <version>`.
    pub software: String,
    /// The invisible watermark: `dwtDct <bits>`, `skipped: <why>` or `off`
    /// ("" for images saved before watermarking existed).
    #[serde(default)]
    pub watermark: String,
    /// The C2PA manifest: `signed` or `off` ("" as above).
    #[serde(default)]
    pub c2pa: String,
}

impl ImageMeta {
    /// The `parameters` chunk in the Automatic1111 layout that civitai and
    /// most SD tools parse.
    pub fn parameters(&self, width: u32, height: u32) -> String {
        let mut text = format!(
            "{}\nNegative prompt: {}\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}, Model hash: {}, Model: {}",
            self.prompt,
            self.negative_prompt,
            self.steps,
            self.scheduler,
            self.guidance,
            self.seed,
            self.generated_width,
            self.generated_height,
            &self.model_sha256[..10.min(self.model_sha256.len())],
            self.model,
        );
        if let Some(upscaler) = &self.upscaler {
            text.push_str(&format!(
                ", Upscaler: {upscaler}, Output size: {width}x{height}"
            ));
        }
        if let Some(strength) = self.strength {
            text.push_str(&format!(", Denoising strength: {strength}"));
        }
        text.push_str(&format!(", Version: {}", self.software));
        text
    }

    /// All text chunks, in a fixed order so equal images give equal bytes.
    pub fn text_chunks(&self, width: u32, height: u32) -> Vec<(&'static str, String)> {
        let mut chunks = vec![
            ("parameters", self.parameters(width, height)),
            ("prompt", self.prompt.clone()),
            ("negative_prompt", self.negative_prompt.clone()),
            ("seed", self.seed.to_string()),
            ("steps", self.steps.to_string()),
            ("scheduler", self.scheduler.clone()),
            ("guidance", self.guidance.to_string()),
            (
                "generated_size",
                format!("{}x{}", self.generated_width, self.generated_height),
            ),
            ("model", self.model.clone()),
            ("model_sha256", self.model_sha256.clone()),
            ("output", self.output.clone()),
            ("Software", self.software.clone()),
        ];
        if let (Some(name), Some(sha)) = (&self.upscaler, &self.upscaler_sha256) {
            chunks.push(("upscaler", name.clone()));
            chunks.push(("upscaler_sha256", sha.clone()));
        }
        if let (Some(source), Some(strength)) = (&self.source, self.strength) {
            chunks.push(("init_image", source.clone()));
            chunks.push(("strength", strength.to_string()));
        }
        if !self.watermark.is_empty() {
            chunks.push(("watermark", self.watermark.clone()));
        }
        if !self.c2pa.is_empty() {
            chunks.push(("c2pa", self.c2pa.clone()));
        }
        chunks
    }

    /// Rebuild from text chunks read back from a PNG.
    pub fn from_chunks(chunks: &BTreeMap<String, String>) -> Option<Self> {
        let get = |k: &str| chunks.get(k).cloned();
        let (gw, gh) = get("generated_size")?
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))?;
        Some(ImageMeta {
            prompt: get("prompt")?,
            negative_prompt: get("negative_prompt").unwrap_or_default(),
            seed: get("seed")?.parse().ok()?,
            steps: get("steps")?.parse().ok()?,
            scheduler: get("scheduler")?,
            guidance: get("guidance")?.parse().ok()?,
            generated_width: gw,
            generated_height: gh,
            model: get("model")?,
            model_sha256: get("model_sha256")?,
            upscaler: get("upscaler"),
            upscaler_sha256: get("upscaler_sha256"),
            output: get("output").unwrap_or_else(|| "native".into()),
            source: get("init_image"),
            strength: get("strength").and_then(|s| s.parse().ok()),
            software: get("Software").unwrap_or_default(),
            watermark: get("watermark").unwrap_or_default(),
            c2pa: get("c2pa").unwrap_or_default(),
        })
    }
}

/// Subfolder of the gallery holding image-to-image sources.
const SOURCES_DIR: &str = "sources";

/// One gallery image as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Stable id (the file name without `.png`).
    pub id: String,
    /// Prompt.
    pub prompt: String,
    /// Seed.
    pub seed: u64,
    /// Saved width.
    pub width: u32,
    /// Saved height.
    pub height: u32,
    /// Seconds since the Unix epoch when the file was written.
    pub created: u64,
    /// File size.
    pub bytes: u64,
}

/// Limits on what the gallery may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most images kept (`None` = no limit).
    pub max_images: Option<usize>,
    /// Most bytes of PNGs kept (`None` = no limit).
    pub max_bytes: Option<u64>,
    /// Free space that must remain after a write.
    pub reserve_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_images: None,
            max_bytes: None,
            reserve_bytes: 64 << 20,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<Entry>,
}

/// A folder of generated images with its index.
#[derive(Debug)]
pub struct Gallery {
    dir: PathBuf,
    limits: Limits,
    /// Newest first.
    entries: Mutex<Vec<Entry>>,
}

impl Gallery {
    /// Open (creating if needed) a gallery folder: clear crash leftovers and
    /// load or rebuild the index.
    pub fn open(dir: impl Into<PathBuf>, limits: Limits) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut pngs = BTreeMap::new();
        for item in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let item = item.map_err(|e| Error::io(&dir, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                log::warn!("removing unfinished write {name}");
                std::fs::remove_file(item.path()).map_err(|e| Error::io(item.path(), e))?;
            } else if let Some(id) = name.strip_suffix(".png") {
                pngs.insert(id.to_string(), item.path());
            }
        }
        let index_path = dir.join(INDEX_FILE);
        let loaded = std::fs::read(&index_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<IndexFile>(&bytes).ok())
            .filter(|index| {
                index.images.len() == pngs.len()
                    && index.images.iter().all(|e| pngs.contains_key(&e.id))
            });
        let gallery = match loaded {
            Some(index) => Gallery {
                dir,
                limits,
                entries: Mutex::new(index.images),
            },
            None => {
                if index_path.exists() || !pngs.is_empty() {
                    log::warn!("rebuilding gallery index of {}", dir.display());
                }
                let mut entries: Vec<Entry> = pngs
                    .iter()
                    .filter_map(|(id, path)| match read_entry(id, path) {
                        Ok(entry) => Some(entry),
                        Err(e) => {
                            log::warn!("skipping {}: {e}", path.display());
                            None
                        }
                    })
                    .collect();
                sort_newest_first(&mut entries);
                let had_index = index_path.exists();
                let gallery = Gallery {
                    dir,
                    limits,
                    entries: Mutex::new(entries),
                };
                // An empty new folder stays empty until the first image.
                if had_index || !pngs.is_empty() {
                    gallery.write_index()?;
                }
                gallery
            }
        };
        Ok(gallery)
    }

    /// The gallery folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the folder holds an image with this id (even one the index
    /// has not caught up with).
    pub fn contains(&self, id: &str) -> bool {
        self.dir.join(format!("{id}.png")).is_file()
    }

    /// Path of an image by id.
    pub fn path_of(&self, id: &str) -> Result<PathBuf> {
        let entries = self.lock();
        entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| self.dir.join(format!("{}.png", e.id)))
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Images newest first, `limit` from `offset`.
    pub fn list(&self, offset: usize, limit: usize) -> Vec<Entry> {
        self.lock()
            .iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the gallery holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes free on the gallery's filesystem for unprivileged writers.
    pub fn bytes_free(&self) -> Result<u64> {
        let stat = rustix::fs::statvfs(&self.dir)
            .map_err(|e| Error::io(&self.dir, std::io::Error::from(e)))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Fail with `NoSpace` or `QuotaFull` unless an image of this size can be
    /// saved. Call before starting a job so no work is wasted.
    pub fn check_room(&self, width: u32, height: u32) -> Result<()> {
        self.check_bytes(png_size_bound(width, height))
    }

    /// Refuse a file of `need` bytes that the disk or the quota cannot take.
    fn check_bytes(&self, need: u64) -> Result<()> {
        let free = self.bytes_free()?;
        if free < need + self.limits.reserve_bytes {
            return Err(Error::NoSpace {
                needed: need + self.limits.reserve_bytes,
                free,
            });
        }
        let entries = self.lock();
        if let Some(max) = self.limits.max_images.filter(|&m| entries.len() >= m) {
            return Err(Error::QuotaFull(format!(
                "the gallery holds its limit of {max} images; delete some first"
            )));
        }
        if let Some(max) = self.limits.max_bytes {
            let used: u64 = entries.iter().map(|e| e.bytes).sum();
            if used + need > max {
                return Err(Error::QuotaFull(format!(
                    "the gallery uses {used} of {max} bytes and this image may need {need}"
                )));
            }
        }
        Ok(())
    }

    /// Save an image with its metadata; returns its entry.
    pub fn save(&self, image: &Image, meta: &ImageMeta) -> Result<Entry> {
        let id = self.new_id(meta, image);
        self.save_as(&id, image, meta)
    }

    /// Save under an id chosen beforehand with [`Gallery::new_id`], so a
    /// caller can record where an image is going before it lands.
    pub fn save_as(&self, id: &str, image: &Image, meta: &ImageMeta) -> Result<Entry> {
        self.check_room(image.width, image.height)?;
        let png = encode_png_bytes(image, &meta.text_chunks(image.width, image.height))?;
        self.save_encoded(id, &png)
    }

    /// Save a PNG encoded (and perhaps signed) by the caller, under an id
    /// from [`Gallery::new_id`]; the bytes land exactly as given.
    pub fn save_encoded(&self, id: &str, png: &[u8]) -> Result<Entry> {
        self.check_bytes(png.len() as u64)?;
        let id = id.to_string();
        let path = self.dir.join(format!("{id}.png"));
        write_file_atomically(&path, png)?;
        let entry = read_entry(&id, &path)?;
        {
            let mut entries = self.lock();
            entries.retain(|e| e.id != id);
            entries.insert(0, entry.clone());
            sort_newest_first(&mut entries);
        }
        self.write_index()?;
        log::info!("saved {}", path.display());
        Ok(entry)
    }

    /// Keep an image-to-image job's source (as the model saw it) beside its
    /// result, under `sources/<id>.png`, so the gallery can show before and
    /// after. Written before the result, so no result lacks its source.
    pub fn save_source(&self, id: &str, source: &Image) -> Result<PathBuf> {
        let dir = self.dir.join(SOURCES_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{id}.png"));
        write_png(&path, source, &[])?;
        Ok(path)
    }

    /// The source of an image-to-image result, if it has one.
    pub fn source_of(&self, id: &str) -> Option<PathBuf> {
        let path = self.dir.join(SOURCES_DIR).join(format!("{id}.png"));
        path.is_file().then_some(path)
    }

    /// Delete an image by id (and its source, if any).
    pub fn delete(&self, id: &str) -> Result<()> {
        let path = self.path_of(id)?;
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        if let Some(source) = self.source_of(id) {
            let _ = std::fs::remove_file(source);
        }
        self.lock().retain(|e| e.id != id);
        self.write_index()
    }

    /// A fresh, unused id for an image: time, seed and a parameter hash.
    pub fn new_id(&self, meta: &ImageMeta, image: &Image) -> String {
        use sha2::{Digest, Sha256};
        let stamp = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let digest = Sha256::digest(meta.parameters(image.width, image.height).as_bytes());
        let base = format!("{stamp}-{}-{}", meta.seed, hex::encode(&digest[..3]));
        let mut id = base.clone();
        let mut n = 1;
        while self.dir.join(format!("{id}.png")).exists() {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_index(&self) -> Result<()> {
        let index = IndexFile {
            version: 1,
            images: self.lock().clone(),
        };
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| Error::io(self.dir.join(INDEX_FILE), std::io::Error::other(e)))?;
        write_file_atomically(&self.dir.join(INDEX_FILE), &bytes)
    }
}

fn sort_newest_first(entries: &mut [Entry]) {
    entries.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
}

/// Upper bound of a PNG's size: raw RGB plus headers and text.
pub fn png_size_bound(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height) * 3 + u64::from(height) + 64 * 1024
}

fn read_entry(id: &str, path: &Path) -> Result<Entry> {
    let (width, height, chunks) = read_png_text(path)?;
    let meta = ImageMeta::from_chunks(&chunks)
        .ok_or_else(|| Error::io(path, std::io::Error::other("no Pocket Studio metadata")))?;
    let stat = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let created = stat
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(Entry {
        id: id.to_string(),
        prompt: meta.prompt,
        seed: meta.seed,
        width,
        height,
        created,
        bytes: stat.len(),
    })
}

/// Decode an 8-bit RGB or RGBA PNG into an RGB image.
pub fn read_png(path: &Path) -> Result<Image> {
    let bad = |e: png::DecodingError| Error::io(path, std::io::Error::other(e));
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(bad)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::io(path, std::io::Error::other("image too large")))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(Error::io(path, std::io::Error::other("unexpanded palette")));
        }
    };
    Ok(Image {
        width: info.width,
        height: info.height,
        rgb,
    })
}

/// Size and text chunks of a PNG, without decoding its pixels.
pub fn read_png_text(path: &Path) -> Result<(u32, u32, BTreeMap<String, String>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder
        .read_info()
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    let info = reader.info();
    let mut chunks = BTreeMap::new();
    for chunk in &info.uncompressed_latin1_text {
        chunks.insert(chunk.keyword.clone(), chunk.text.clone());
    }
    for chunk in &info.utf8_text {
        if let Ok(text) = chunk.get_text() {
            chunks.insert(chunk.keyword.clone(), text);
        }
    }
    Ok((info.width, info.height, chunks))
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename, fsync).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomically_with_mode(path, bytes, 0o644)
}

/// As [`write_file_atomically`], with the file's permission bits (0600 for
/// a private key: the file never exists with wider ones).
pub fn write_file_atomically_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_atomically(path, mode, |out| out.write_all(bytes))
}

/// Encode `image` as a PNG in memory with `iTXt` chunks `(keyword, text)`,
/// the form a signer needs before the file is written.
pub fn encode_png_bytes(image: &Image, text: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(png_size_bound(image.width, image.height) as usize / 2);
    encode_png(&mut out, image, text).map_err(|e| Error::io("(PNG in memory)", e))?;
    Ok(out)
}

/// Write `image` to `path` atomically with `iTXt` chunks `(keyword, text)`.
/// Deterministic: the same image and text give the same bytes.
pub fn write_png(path: &Path, image: &Image, text: &[(&str, String)]) -> Result<()> {
    write_atomically(path, 0o644, |out| encode_png(out, image, text))
}

/// Write through a temporary file in the same folder, fsync, rename, fsync
/// the folder. On any failure the temporary file is removed and the old
/// file (if any) is untouched; a full disk is reported as `NoSpace`.
fn write_atomically(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut BufWriter<NoteDiskFull<&File>>) -> std::io::Result<()>,
) -> Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let no_space = || {
        let free = rustix::fs::statvfs(folder)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        Error::NoSpace { needed: 0, free }
    };
    let fail = |e: std::io::Error| -> Error {
        if is_disk_full(&e) {
            no_space()
        } else {
            Error::io(path, e)
        }
    };
    std::fs::create_dir_all(folder).map_err(fail)?;
    let temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(folder)
        .map_err(fail)?;
    {
        let mut out = BufWriter::with_capacity(
            1 << 20,
            NoteDiskFull {
                inner: temp.as_file(),
                full: false,
            },
        );
        let written = fill(&mut out).and_then(|()| out.flush());
        if let Err(e) = written {
            // Encoders may flatten the OS error into text; the writer saw it.
            return Err(if out.get_ref().full {
                no_space()
            } else {
                fail(e)
            });
        }
    }
    // Gallery files are for every reader of the folder (tempfile makes 0600).
    use std::os::unix::fs::PermissionsExt;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(path).map_err(|e| fail(e.error))?;
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(fail)?;
    Ok(())
}

/// A writer that remembers whether the disk filled up under it.
struct NoteDiskFull<W> {
    inner: W,
    full: bool,
}

impl<W: Write> Write for NoteDiskFull<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write(buf)
            .inspect_err(|e| self.full |= is_disk_full(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|e| self.full |= is_disk_full(e))
    }
}

/// ENOSPC as the OS reports it.
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
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
    let mut writer = encoder.write_header().map_err(to_io)?;
    let mut stream = writer.stream_writer().map_err(to_io)?;
    for row in image.rgb.chunks(1 << 20) {
        stream.write_all(row)?;
    }
    stream.finish().map_err(to_io)?;
    writer.finish().map_err(to_io)
}

/// png reports I/O failures inside its own error; unwrap them so a full
/// disk stays recognisable.
fn to_io(e: png::EncodingError) -> std::io::Error {
    match e {
        png::EncodingError::IoError(io) => io,
        other => std::io::Error::other(other),
    }
}
