//! Tiled learned upscaling (Real-ESRGAN and kin) to any output size.
//!
//! The image is cut into equal tiles that overlap; tiles run in parallel (one
//! tract state per worker, one optimized plan for the one tile shape), and
//! their outputs are blended with feathered weights so no seam shows. Tiles
//! are processed one row at a time into a band buffer, so memory grows with
//! the output image only, never with a float copy of it. Cancellation is
//! checked between tiles.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

use super::{CancelToken, Image};
use crate::bundle::read_toml;
use crate::engine::{Model, Tensor};
use crate::error::{Error, ModelFault, Result};

/// Input pixels shared by neighbouring tiles (each side), blended across.
pub const DEFAULT_OVERLAP: u32 = 16;

/// `pocket-studio.toml` of an upscaler bundle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpscalerManifest {
    /// Model name, written into image metadata.
    pub name: String,
    /// Must be `upscaler`.
    pub kind: String,
    /// Licence and attribution.
    pub licence: String,
    /// Where the weights came from.
    pub source: String,
    /// Output pixels per input pixel along each axis.
    pub scale: u32,
    /// Recommended tile side in input pixels.
    pub tile: u32,
    /// sha256 of every file.
    pub sha256: std::collections::BTreeMap<String, String>,
}

/// A loaded upscaler bundle.
pub struct Upscaler {
    manifest: UpscalerManifest,
    model_sha256: String,
    model: Model,
    tile: u32,
    overlap: u32,
    workers: usize,
}

impl std::fmt::Debug for Upscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upscaler")
            .field("name", &self.manifest.name)
            .field("scale", &self.manifest.scale)
            .field("tile", &self.tile)
            .finish_non_exhaustive()
    }
}

impl Upscaler {
    /// Open and verify an upscaler bundle folder.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(crate::bundle::MANIFEST);
        if !manifest_path.is_file() {
            return Err(Error::model(manifest_path, ModelFault::Missing));
        }
        let manifest: UpscalerManifest = read_toml(&manifest_path)?;
        if manifest.kind != "upscaler" {
            return Err(Error::model(
                &manifest_path,
                ModelFault::Invalid(format!("kind is {:?}, not \"upscaler\"", manifest.kind)),
            ));
        }
        if !(1..=8).contains(&manifest.scale) || manifest.tile < 32 {
            return Err(Error::model(
                &manifest_path,
                ModelFault::Invalid("scale must be 1..=8 and tile at least 32".into()),
            ));
        }
        let model_path: PathBuf = dir.join("model.onnx");
        let expected = manifest.sha256.get("model.onnx").ok_or_else(|| {
            Error::model(
                &model_path,
                ModelFault::Invalid("not listed in pocket-studio.toml".into()),
            )
        })?;
        let model = Model::load_checked(&model_path, "upscaler", Some(expected))?;
        let model_sha256 = expected.to_ascii_lowercase();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Upscaler {
            tile: manifest.tile,
            overlap: DEFAULT_OVERLAP,
            manifest,
            model_sha256,
            model,
            workers,
        })
    }

    /// The bundle's manifest (name, licence, scale).
    pub fn manifest(&self) -> &UpscalerManifest {
        &self.manifest
    }

    /// Hex sha256 of the ONNX file, for metadata.
    pub fn sha256(&self) -> &str {
        &self.model_sha256
    }

    /// Output pixels per input pixel.
    pub fn scale(&self) -> u32 {
        self.manifest.scale
    }

    /// Use another tile side (input pixels) and overlap; mainly for tests
    /// and benchmarks comparing tilings.
    pub fn with_tiling(mut self, tile: u32, overlap: u32) -> Self {
        self.tile = tile.max(2 * overlap + 8);
        self.overlap = overlap;
        self
    }

    /// Tile side and overlap in input pixels.
    pub fn tiling(&self) -> (u32, u32) {
        (self.tile, self.overlap)
    }

    /// Parallel workers used per tile row.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Use this many parallel workers (default: all cores).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Upscale by the model's scale. `progress(done, total)` is called after
    /// every tile.
    pub fn upscale(
        &self,
        image: &Image,
        progress: &mut dyn FnMut(usize, usize),
        cancel: &CancelToken,
    ) -> Result<Image> {
        let scale = self.manifest.scale as usize;
        let (w, h) = (image.width as usize, image.height as usize);
        let tile_w = (self.tile as usize).min(w);
        let tile_h = (self.tile as usize).min(h);
        let overlap = self.overlap as usize;
        let xs = tile_origins(w, tile_w, overlap);
        let ys = tile_origins(h, tile_h, overlap);
        let total = xs.len() * ys.len();
        let (out_w, out_h) = (w * scale, h * scale);
        let mut out = vec![0u8; out_w * out_h * 3];
        let band_rows = tile_h * scale;
        let mut band = Band::new(out_w, band_rows);
        let mut done = 0;
        for (row, &y0) in ys.iter().enumerate() {
            cancel.check()?;
            let tiles = self.run_row(image, &xs, y0, tile_w, tile_h, cancel, &mut || {
                done += 1;
                progress(done, total);
            })?;
            let weights_y = feather(y0, tile_h, h, overlap, scale);
            for (&x0, tile) in xs.iter().zip(&tiles) {
                let weights_x = feather(x0, tile_w, w, overlap, scale);
                band.add(
                    tile,
                    x0 * scale,
                    y0 * scale,
                    tile_w * scale,
                    &weights_x,
                    &weights_y,
                );
            }
            let finished_to = ys.get(row + 1).map_or(out_h, |&next| next * scale);
            band.flush(&mut out, finished_to);
        }
        Ok(Image {
            width: out_w as u32,
            height: out_h as u32,
            rgb: out,
        })
    }

    /// Run every tile of one row, spread over the workers; `on_tile` runs
    /// on this thread as each tile finishes, so a cancel it triggers stops
    /// the tiles not yet started.
    #[allow(clippy::too_many_arguments)]
    fn run_row(
        &self,
        image: &Image,
        xs: &[usize],
        y0: usize,
        tile_w: usize,
        tile_h: usize,
        cancel: &CancelToken,
        on_tile: &mut dyn FnMut(),
    ) -> Result<Vec<Vec<f32>>> {
        let next = AtomicUsize::new(0);
        let (sender, receiver) = std::sync::mpsc::channel::<(usize, Result<Vec<f32>>)>();
        let mut tiles: Vec<Option<Vec<f32>>> = (0..xs.len()).map(|_| None).collect();
        let mut first_error = None;
        std::thread::scope(|scope| {
            for _ in 0..self.workers.min(xs.len()) {
                let sender = sender.clone();
                let next = &next;
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= xs.len() {
                            break;
                        }
                        // Tiles already use every core: each runs on its own.
                        let result = cancel.check().and_then(|()| {
                            crate::engine::single_threaded(|| {
                                self.run_tile(image, xs[i], y0, tile_w, tile_h)
                            })
                        });
                        let failed = result.is_err();
                        if sender.send((i, result)).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            for (i, result) in receiver {
                match result {
                    Ok(tile) => {
                        tiles[i] = Some(tile);
                        on_tile();
                    }
                    Err(e) => {
                        // Stop the other workers at their next tile.
                        next.store(xs.len(), Ordering::SeqCst);
                        first_error.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = first_error {
            return Err(e);
        }
        tiles
            .into_iter()
            .map(|t| t.ok_or(Error::Cancelled))
            .collect()
    }

    /// One tile through the network; returns `[3, th*s, tw*s]` floats in 0..1.
    fn run_tile(
        &self,
        image: &Image,
        x0: usize,
        y0: usize,
        tw: usize,
        th: usize,
    ) -> Result<Vec<f32>> {
        let width = image.width as usize;
        let mut input = vec![0.0f32; 3 * tw * th];
        for y in 0..th {
            let row = &image.rgb[((y0 + y) * width + x0) * 3..][..tw * 3];
            for (x, px) in row.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    input[c * tw * th + y * tw + x] = f32::from(px[c]) / 255.0;
                }
            }
        }
        let tensor = Tensor::f32(vec![1, 3, th, tw], input);
        let out = self
            .model
            .run(&[&tensor])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Inference {
                stage: "upscaler",
                reason: "no output".into(),
            })?;
        let scale = self.manifest.scale as usize;
        if out.shape != [1, 3, th * scale, tw * scale] {
            return Err(Error::Inference {
                stage: "upscaler",
                reason: format!(
                    "expected output [1, 3, {}, {}], got {:?}",
                    th * scale,
                    tw * scale,
                    out.shape
                ),
            });
        }
        Ok(out.into_f32())
    }
}

/// Tile start positions along one axis: equal tiles of `tile` pixels that
/// overlap by at least `2 * overlap`, the last one flush with the far edge.
fn tile_origins(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if tile >= len {
        return vec![0];
    }
    let stride = tile.saturating_sub(2 * overlap).max(1);
    let count = (len - tile).div_ceil(stride) + 1;
    // Spread the tiles evenly so every overlap is about the same width.
    (0..count)
        .map(|i| ((len - tile) as u64 * i as u64 / (count - 1) as u64) as usize)
        .collect()
}

/// Blend weights along one axis of one tile, in output pixels: a linear ramp
/// over the overlap on each side that has a neighbour, flat elsewhere.
fn feather(origin: usize, tile: usize, len: usize, overlap: usize, scale: usize) -> Vec<f32> {
    let n = tile * scale;
    let ramp = (2 * overlap * scale).max(1) as f32;
    let has_before = origin > 0;
    let has_after = origin + tile < len;
    (0..n)
        .map(|i| {
            let from_start = if has_before {
                (i as f32 + 0.5) / ramp
            } else {
                1.0
            };
            let from_end = if has_after {
                ((n - i) as f32 - 0.5) / ramp
            } else {
                1.0
            };
            from_start.min(from_end).clamp(1e-3, 1.0)
        })
        .collect()
}

/// Weighted sums of the output rows still open to blending.
struct Band {
    width: usize,
    top: usize,
    sums: Vec<f32>,
    weights: Vec<f32>,
    rows: usize,
}

impl Band {
    fn new(width: usize, rows: usize) -> Self {
        Band {
            width,
            top: 0,
            sums: vec![0.0; width * rows * 3],
            weights: vec![0.0; width * rows],
            rows,
        }
    }

    /// Add a `[3, th, tw]` tile whose top-left output pixel is `(x0, y0)`.
    fn add(&mut self, tile: &[f32], x0: usize, y0: usize, tw: usize, wx: &[f32], wy: &[f32]) {
        let th = wy.len();
        let plane = th * tw;
        for (y, &weight_y) in wy.iter().enumerate() {
            let row = y0 + y - self.top;
            debug_assert!(row < self.rows);
            for (x, &weight_x) in wx.iter().enumerate() {
                let weight = weight_x * weight_y;
                let at = row * self.width + x0 + x;
                self.weights[at] += weight;
                for c in 0..3 {
                    self.sums[at * 3 + c] += weight * tile[c * plane + y * tw + x];
                }
            }
        }
    }

    /// Write rows above `until` to `out` as RGB8 and slide the band down.
    fn flush(&mut self, out: &mut [u8], until: usize) {
        let count = until - self.top;
        for row in 0..count {
            let y = self.top + row;
            for x in 0..self.width {
                let at = row * self.width + x;
                let weight = self.weights[at];
                for c in 0..3 {
                    let v = if weight > 0.0 {
                        self.sums[at * 3 + c] / weight
                    } else {
                        0.0
                    };
                    out[(y * self.width + x) * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
        let keep = self.rows - count;
        self.sums.copy_within(count * self.width * 3.., 0);
        self.weights.copy_within(count * self.width.., 0);
        self.sums[keep * self.width * 3..].fill(0.0);
        self.weights[keep * self.width..].fill(0.0);
        self.top = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_axis_with_equal_size_and_overlap() {
        for (len, tile, overlap) in [
            (960, 256, 16),
            (540, 256, 16),
            (100, 256, 16),
            (257, 256, 16),
        ] {
            let xs = tile_origins(len, tile.min(len), overlap);
            assert_eq!(xs[0], 0);
            assert_eq!(xs.last().copied().unwrap() + tile.min(len), len);
            for pair in xs.windows(2) {
                assert!(pair[1] > pair[0]);
                assert!(pair[0] + tile - pair[1] >= 2 * overlap, "{len} {xs:?}");
            }
        }
    }

    #[test]
    fn feather_ramps_only_towards_neighbours() {
        let w = feather(0, 10, 20, 2, 1);
        assert_eq!(w[0], 1.0);
        assert!(w[9] < 0.2);
        let w = feather(10, 10, 20, 2, 1);
        assert!(w[0] < 0.2);
        assert_eq!(w[9], 1.0);
    }
}
