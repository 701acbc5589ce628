//! V4L2 capture: find the camera, negotiate a format and size, stream a few
//! frames with mmap buffers, hand back RGB8.
//!
//! Blocking by design (a capture takes a few frame times): front-ends call it
//! from a worker thread (`spawn_blocking` on D-Bus, the UI's camera thread),
//! never from an event loop. Every failure a user can meet is an
//! [`Error::Camera`] that says what to do: no camera, a busy or forbidden
//! device, formats we cannot read (listing what the device offers), no frame
//! in time, an unplugged camera.

pub mod convert;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use v4l::buffer::Type;
use v4l::framesize::FrameSizeEnum;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use crate::config::CameraConfig;
use crate::error::{Error, Result};
use crate::pipeline::Image;
pub use convert::{PixelFormat, RawFrame};

/// How long to wait for one frame before calling the camera stuck.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// mmap buffers requested: enough to keep a camera streaming while one frame
/// is converted.
const BUFFERS: u32 = 4;

/// A captured picture and where it came from.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The frame in RGB8 at the capture size.
    pub image: Image,
    /// The device node.
    pub device: PathBuf,
    /// The format the camera sent.
    pub format: PixelFormat,
}

impl Frame {
    /// One line for logs and image metadata: `camera /dev/video0 YUYV 640x360`.
    pub fn describe(&self) -> String {
        format!(
            "camera {} {} {}x{}",
            self.device.display(),
            self.format.name(),
            self.image.width,
            self.image.height
        )
    }
}

/// An opened camera with a negotiated format, ready to stream.
pub struct Camera {
    device: Device,
    path: PathBuf,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("size", &(self.width, self.height))
            .finish_non_exhaustive()
    }
}

fn camera_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Camera {
        device: path.display().to_string(),
        reason: reason.into(),
    }
}

/// An OS error from the device, in words a user can act on.
fn os_error(path: &Path, doing: &str, e: &io::Error) -> Error {
    let reason = match Errno::from_io_error(e) {
        Some(Errno::BUSY) => "is busy: another program (or the viewfinder) is using it".to_string(),
        Some(Errno::ACCESS) => {
            "permission denied (the service user needs the video group)".to_string()
        }
        Some(Errno::PERM) => "not allowed by the service's device policy (was the camera \
             driver loaded after the service started? restart the service)"
            .to_string(),
        Some(Errno::NODEV | Errno::NXIO | Errno::NOENT) => "was unplugged or is gone".to_string(),
        _ if e.kind() == io::ErrorKind::TimedOut => {
            format!("sent no frame within {} s", FRAME_TIMEOUT.as_secs())
        }
        _ => format!("{doing} failed: {e}"),
    };
    camera_error(path, reason)
}

/// `/dev/video*` nodes in numeric order.
fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("video")?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, path)| path).collect()
}

/// The formats a device offers for video capture, as text and as ours.
fn offered_formats(device: &Device) -> io::Result<(Vec<String>, Vec<PixelFormat>)> {
    let descriptions = device.enum_formats()?;
    let names = descriptions
        .iter()
        .map(|d| d.fourcc.str().unwrap_or("????").to_string())
        .collect();
    let ours = PixelFormat::PREFERRED
        .into_iter()
        .filter(|f| descriptions.iter().any(|d| d.fourcc.repr == f.fourcc()))
        .collect();
    Ok((names, ours))
}

/// Pick the size to capture at: the smallest offered size whose centre crop
/// to the target's aspect still covers the target (so nothing is upsampled),
/// else the largest offered. Stepwise ranges are clamped to the target.
pub fn pick_size(offered: &[(u32, u32)], target: (u32, u32)) -> Option<(u32, u32)> {
    let (tw, th) = (u64::from(target.0.max(1)), u64::from(target.1.max(1)));
    let covers = |&(w, h): &(u32, u32)| {
        let (w, h) = (u64::from(w), u64::from(h));
        // The crop is w x (w*th/tw) or (h*tw/th) x h, whichever fits.
        let (cw, ch) = if w * th <= h * tw {
            (w, w * th / tw)
        } else {
            (h * tw / th, h)
        };
        cw >= tw && ch >= th
    };
    let area = |&(w, h): &(u32, u32)| u64::from(w) * u64::from(h);
    offered
        .iter()
        .copied()
        .filter(covers)
        .min_by_key(area)
        .or_else(|| offered.iter().copied().max_by_key(area))
}

/// Sizes a device offers for one format; a stepwise range contributes its
/// corners and the target clamped into it.
fn offered_sizes(device: &Device, fourcc: FourCC, target: (u32, u32)) -> Vec<(u32, u32)> {
    let Ok(sizes) = device.enum_framesizes(fourcc) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for size in sizes {
        match size.size {
            FrameSizeEnum::Discrete(d) => out.push((d.width, d.height)),
            FrameSizeEnum::Stepwise(s) => {
                let snap = |v: u32, min: u32, max: u32, step: u32| {
                    let v = v.clamp(min, max);
                    min + (v - min) / step.max(1) * step.max(1)
                };
                out.push((s.min_width, s.min_height));
                out.push((s.max_width, s.max_height));
                out.push((
                    snap(target.0, s.min_width, s.max_width, s.step_width),
                    snap(target.1, s.min_height, s.max_height, s.step_height),
                ));
            }
        }
    }
    out
}

impl Camera {
    /// Open the configured camera (or the first one that captures in a format
    /// we read) at a size near `target`.
    pub fn open(config: &CameraConfig, target: (u32, u32)) -> Result<Camera> {
        if config.device != "auto" {
            return Self::open_path(Path::new(&config.device), target);
        }
        let nodes = video_nodes();
        if nodes.is_empty() {
            return Err(Error::Camera {
                device: String::new(),
                reason: "none found: no /dev/video* device (is a camera plugged in?)".into(),
            });
        }
        let mut reasons = Vec::new();
        for path in &nodes {
            match Self::open_path(path, target) {
                Ok(camera) => return Ok(camera),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        Err(Error::Camera {
            device: String::new(),
            reason: format!("none usable: {}", reasons.join("; ")),
        })
    }

    /// Open one device node and negotiate format and size.
    pub fn open_path(path: &Path, target: (u32, u32)) -> Result<Camera> {
        guard(path, || Self::negotiate(path, target))
    }

    fn negotiate(path: &Path, target: (u32, u32)) -> Result<Camera> {
        if !path.exists() {
            return Err(camera_error(
                path,
                "does not exist (check [camera] device, or plug the camera in)",
            ));
        }
        let device = Device::with_path(path).map_err(|e| os_error(path, "open", &e))?;
        let caps = device
            .query_caps()
            .map_err(|e| os_error(path, "query capabilities", &e))?;
        if !caps
            .capabilities
            .contains(v4l::capability::Flags::VIDEO_CAPTURE)
        {
            return Err(camera_error(path, "is not a video capture device"));
        }
        let (names, ours) = offered_formats(&device).unwrap_or_default();
        let Some(&format) = ours.first() else {
            let offered = if names.is_empty() {
                "no capture formats".to_string()
            } else {
                names.join(", ")
            };
            let supported: Vec<_> = PixelFormat::PREFERRED.iter().map(|f| f.name()).collect();
            return Err(camera_error(
                path,
                format!(
                    "offers {offered}; this build reads {}",
                    supported.join(", ")
                ),
            ));
        };
        let fourcc = FourCC::new(&format.fourcc());
        let (width, height) =
            pick_size(&offered_sizes(&device, fourcc, target), target).unwrap_or(target);
        let wanted = Format::new(width, height, fourcc);
        let got = device
            .set_format(&wanted)
            .map_err(|e| os_error(path, "set format", &e))?;
        let format = PixelFormat::from_fourcc(got.fourcc.repr).ok_or_else(|| {
            camera_error(
                path,
                format!(
                    "asked for {}, the driver chose {}",
                    format.name(),
                    got.fourcc.str().unwrap_or("????")
                ),
            )
        })?;
        log::info!(
            "camera {} ({}): {} {}x{}",
            path.display(),
            caps.card,
            format.name(),
            got.width,
            got.height
        );
        Ok(Camera {
            device,
            path: path.to_path_buf(),
            format,
            width: got.width,
            height: got.height,
            stride: got.stride.max(format.min_stride(got.width)),
        })
    }

    /// The device node.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The negotiated format and size.
    pub fn format(&self) -> (PixelFormat, u32, u32) {
        (self.format, self.width, self.height)
    }

    /// Stream, drop `skip` frames while exposure settles, and convert the
    /// next one.
    pub fn capture(&self, skip: u32) -> Result<Frame> {
        let mut frames = 0;
        let mut image = None;
        self.stream(&mut |frame| {
            frames += 1;
            if frames > skip {
                image = Some(frame);
                return false;
            }
            true
        })?;
        let image = image.ok_or_else(|| camera_error(&self.path, "stream ended early"))?;
        Ok(Frame {
            image,
            device: self.path.clone(),
            format: self.format,
        })
    }

    /// Stream frames to `each` until it returns false (a viewfinder keeps
    /// going, a capture stops after one). Frames that fail to convert are
    /// skipped with a warning; device errors end the stream.
    pub fn stream(&self, each: &mut dyn FnMut(Image) -> bool) -> Result<()> {
        guard(&self.path, || {
            let mut stream =
                v4l::io::mmap::Stream::with_buffers(&self.device, Type::VideoCapture, BUFFERS)
                    .map_err(|e| os_error(&self.path, "allocate buffers", &e))?;
            stream.set_timeout(FRAME_TIMEOUT);
            let mut failures = 0;
            loop {
                let (buffer, meta) = stream
                    .next()
                    .map_err(|e| os_error(&self.path, "capture", &e))?;
                let used = (meta.bytesused as usize).min(buffer.len());
                let raw = RawFrame {
                    format: self.format,
                    width: self.width,
                    height: self.height,
                    stride: self.stride,
                    data: &buffer[..used],
                };
                match convert::to_rgb(&raw) {
                    Ok(image) => {
                        failures = 0;
                        if !each(image) {
                            break;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        log::warn!("camera {}: skipping a frame: {e}", self.path.display());
                        if failures >= 10 {
                            return Err(camera_error(
                                &self.path,
                                format!("10 frames in a row did not decode; last: {e}"),
                            ));
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// Run device code, turning a panic inside the v4l crate (it panics on an
/// unknown colorspace and when stopping a stream fails) into an error.
fn guard<T>(path: &Path, work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let what = crate::error::panic_text(&*panic);
        Err(camera_error(path, format!("driver error: {what}")))
    })
}

/// Open the configured camera near `target`, let it settle, take one frame.
/// Logs how long it took.
pub fn capture_one(config: &CameraConfig, target: (u32, u32)) -> Result<Frame> {
    let started = Instant::now();
    let camera = Camera::open(config, target)?;
    let frame = camera.capture(config.warmup_frames)?;
    log::info!(
        "captured {} in {} ms",
        frame.describe(),
        started.elapsed().as_millis()
    );
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::pick_size;

    #[test]
    fn the_smallest_size_that_covers_the_target_is_picked() {
        let webcam = [(320, 180), (640, 360), (1280, 720), (1920, 1080)];
        assert_eq!(pick_size(&webcam, (64, 64)), Some((320, 180)));
        assert_eq!(pick_size(&webcam, (512, 512)), Some((1280, 720)));
        assert_eq!(pick_size(&webcam, (640, 360)), Some((640, 360)));
        assert_eq!(pick_size(&webcam, (4096, 4096)), Some((1920, 1080)));
        assert_eq!(pick_size(&[], (64, 64)), None);
    }
}
