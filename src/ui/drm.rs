//! The board's display through DRM/KMS: the first connected connector, its
//! preferred mode (or the configured one), two XRGB8888 dumb buffers and a
//! page flip on vblank. Takes the previous CRTC setup on open and puts it
//! back on drop, so a console or splash returns when the service stops.
//! Never draws: it only copies the composed frame (rotated if configured).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use drm::buffer::{Buffer, DrmFourcc};
use drm::control::dumbbuffer::DumbBuffer;
use drm::control::{
    ClipRect, Device as ControlDevice, Event, Mode, ModeTypeFlags, PageFlipFlags, connector, crtc,
    framebuffer,
};
use tiny_skia::Pixmap;

use super::UiError;
use super::scene::Area;
use super::surface::Surface;

/// An open DRM card file.
#[derive(Debug)]
struct Card(File);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl drm::Device for Card {}
impl ControlDevice for Card {}

struct Scanout {
    buffer: DumbBuffer,
    framebuffer: framebuffer::Handle,
    /// Areas (logical) changed since this buffer was last written.
    stale: Vec<Area>,
}

/// A display driven through KMS. See the module doc.
pub struct DrmSurface {
    card: Card,
    path: PathBuf,
    crtc: crtc::Handle,
    connector: connector::Handle,
    mode: Mode,
    saved: crtc::Info,
    buffers: Vec<Scanout>,
    front: usize,
    flip_pending: bool,
    rotation: u32,
    /// Physical mode size.
    physical: (u32, u32),
}

impl std::fmt::Debug for DrmSurface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrmSurface")
            .field("path", &self.path)
            .field("mode", &self.physical)
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

/// What to open: `auto` (every `/dev/dri/card*` in order) or one path.
fn candidates(card: &str) -> Vec<PathBuf> {
    if card != "auto" {
        return vec![PathBuf::from(card)];
    }
    let mut cards: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("card"))
                })
                .collect()
        })
        .unwrap_or_default();
    cards.sort();
    cards
}

/// Parse `WxH` (for the `[ui] mode` setting).
pub fn parse_mode(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

impl DrmSurface {
    /// Open the configured card (`auto` tries each) and light the first
    /// connected output. `mode` is `auto` (preferred) or `WxH`; `rotation`
    /// is 0, 90, 180 or 270 degrees clockwise.
    pub fn open(card: &str, mode: &str, rotation: u32) -> Result<Self, UiError> {
        let paths = candidates(card);
        if paths.is_empty() {
            return Err(UiError::NoDisplay("no /dev/dri/card* device".into()));
        }
        let mut reasons = Vec::new();
        for path in paths {
            match Self::open_card(&path, mode, rotation) {
                Ok(surface) => return Ok(surface),
                Err(e) => reasons.push(format!("{}: {e}", path.display())),
            }
        }
        Err(UiError::NoDisplay(reasons.join("; ")))
    }

    fn open_card(path: &Path, wanted: &str, rotation: u32) -> Result<Self, UiError> {
        let io = |what: &str, e: std::io::Error| UiError::Display(format!("{what}: {e}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("open", e))?;
        let card = Card(file);
        let resources = card.resource_handles().map_err(|e| io("resources", e))?;
        let connector = resources
            .connectors()
            .iter()
            .filter_map(|&h| card.get_connector(h, true).ok())
            .find(|c| c.state() == connector::State::Connected && !c.modes().is_empty())
            .ok_or_else(|| UiError::NoDisplay("no connected output".into()))?;
        let mode = pick_mode(connector.modes(), wanted)?;
        let crtc = connector
            .current_encoder()
            .into_iter()
            .chain(connector.encoders().iter().copied())
            .filter_map(|e| card.get_encoder(e).ok())
            .find_map(|encoder| {
                encoder.crtc().or_else(|| {
                    resources
                        .filter_crtcs(encoder.possible_crtcs())
                        .first()
                        .copied()
                })
            })
            .ok_or_else(|| UiError::Display("no CRTC can drive the output".into()))?;
        let saved = card.get_crtc(crtc).map_err(|e| io("read CRTC", e))?;
        let (w, h) = mode.size();
        let physical = (w as u32, h as u32);
        let make = |card: &Card| -> Result<Scanout, UiError> {
            let mut buffer = card
                .create_dumb_buffer(physical, DrmFourcc::Xrgb8888, 32)
                .map_err(|e| io("create buffer", e))?;
            {
                let mut map = card
                    .map_dumb_buffer(&mut buffer)
                    .map_err(|e| io("map buffer", e))?;
                map.as_mut().fill(0);
            }
            let framebuffer = card
                .add_framebuffer(&buffer, 24, 32)
                .map_err(|e| io("add framebuffer", e))?;
            Ok(Scanout {
                buffer,
                framebuffer,
                stale: Vec::new(),
            })
        };
        let buffers = vec![make(&card)?, make(&card)?];
        card.set_crtc(
            crtc,
            Some(buffers[0].framebuffer),
            (0, 0),
            &[connector.handle()],
            Some(mode),
        )
        .map_err(|e| io("set mode (is another program the DRM master?)", e))?;
        Ok(DrmSurface {
            card,
            path: path.to_path_buf(),
            crtc,
            connector: connector.handle(),
            mode,
            saved,
            buffers,
            front: 0,
            flip_pending: false,
            rotation: rotation % 360,
            physical,
        })
    }

    /// The mode's size on the panel (before rotation).
    pub fn physical_size(&self) -> (u32, u32) {
        self.physical
    }

    fn wait_for_flip(&mut self) {
        while self.flip_pending {
            match self.card.receive_events() {
                Ok(events) => {
                    for event in events {
                        if let Event::PageFlip(flip) = event
                            && flip.crtc == self.crtc
                        {
                            self.flip_pending = false;
                        }
                    }
                }
                Err(e) => {
                    log::warn!("display: waiting for page flip: {e}");
                    self.flip_pending = false;
                }
            }
        }
    }
}

fn pick_mode(modes: &[Mode], wanted: &str) -> Result<Mode, UiError> {
    if let Some((w, h)) = parse_mode(wanted) {
        return modes
            .iter()
            .find(|m| m.size() == (w as u16, h as u16))
            .copied()
            .ok_or_else(|| {
                let offered: Vec<String> = modes
                    .iter()
                    .map(|m| format!("{}x{}", m.size().0, m.size().1))
                    .collect();
                UiError::Display(format!(
                    "mode {wanted} not offered (offered: {})",
                    offered.join(", ")
                ))
            });
    }
    modes
        .iter()
        .find(|m| m.mode_type().contains(ModeTypeFlags::PREFERRED))
        .or_else(|| modes.first())
        .copied()
        .ok_or_else(|| UiError::NoDisplay("the output offers no mode".into()))
}

impl Surface for DrmSurface {
    fn size(&self) -> (u32, u32) {
        match self.rotation {
            90 | 270 => (self.physical.1, self.physical.0),
            _ => self.physical,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {}x{}@{} rotation {}",
            self.path.display(),
            self.physical.0,
            self.physical.1,
            self.mode.vrefresh(),
            self.rotation
        )
    }

    fn present(&mut self, frame: &Pixmap, damage: &[Area]) -> Result<(), UiError> {
        if damage.is_empty() {
            return Ok(());
        }
        self.wait_for_flip();
        for buffer in &mut self.buffers {
            buffer.stale.extend_from_slice(damage);
        }
        let back = 1 - self.front;
        let (rotation, physical) = (self.rotation, self.physical);
        let scanout = &mut self.buffers[back];
        let stale = std::mem::take(&mut scanout.stale);
        let pitch = scanout.buffer.pitch() as usize;
        {
            let mut map = self
                .card
                .map_dumb_buffer(&mut scanout.buffer)
                .map_err(|e| UiError::Display(format!("map buffer: {e}")))?;
            for area in &stale {
                copy_area(frame, area, map.as_mut(), pitch, physical, rotation);
            }
        }
        let framebuffer = scanout.framebuffer;
        let clips: Vec<ClipRect> = stale
            .iter()
            .map(|a| physical_area(a, physical, rotation))
            .map(|a| ClipRect::new(a.x as u16, a.y as u16, a.right() as u16, a.bottom() as u16))
            .collect();
        match self
            .card
            .page_flip(self.crtc, framebuffer, PageFlipFlags::EVENT, None)
        {
            Ok(()) => self.flip_pending = true,
            Err(e) => {
                // Some drivers cannot flip; setting the CRTC works everywhere.
                log::debug!("page flip failed ({e}); setting the CRTC instead");
                self.card
                    .set_crtc(
                        self.crtc,
                        Some(framebuffer),
                        (0, 0),
                        &[self.connector],
                        Some(self.mode),
                    )
                    .map_err(|e| UiError::Display(format!("set CRTC: {e}")))?;
            }
        }
        // Virtual GPUs (virtio-gpu) copy to the host only what is marked dirty.
        let _ = self.card.dirty_framebuffer(framebuffer, &clips);
        self.front = back;
        Ok(())
    }
}

impl Drop for DrmSurface {
    fn drop(&mut self) {
        self.wait_for_flip();
        let restore = self.card.set_crtc(
            self.crtc,
            self.saved.framebuffer(),
            self.saved.position(),
            &[self.connector],
            self.saved.mode(),
        );
        if let Err(e) = restore {
            log::debug!("display: restoring the previous mode: {e}");
        }
        for scanout in std::mem::take(&mut self.buffers) {
            let _ = self.card.destroy_framebuffer(scanout.framebuffer);
            let _ = self.card.destroy_dumb_buffer(scanout.buffer);
        }
    }
}

/// Where a logical area lands on the panel.
fn physical_area(area: &Area, physical: (u32, u32), rotation: u32) -> Area {
    let (pw, ph) = (physical.0 as i32, physical.1 as i32);
    match rotation {
        90 => Area {
            x: pw - area.bottom(),
            y: area.x,
            w: area.h,
            h: area.w,
        },
        180 => Area {
            x: pw - area.right(),
            y: ph - area.bottom(),
            w: area.w,
            h: area.h,
        },
        270 => Area {
            x: area.y,
            y: ph - area.right(),
            w: area.h,
            h: area.w,
        },
        _ => *area,
    }
}

/// Copy one logical area of the (opaque, premultiplied RGBA) frame into an
/// XRGB8888 scanout buffer, rotating clockwise by `rotation`.
pub fn copy_area(
    frame: &Pixmap,
    area: &Area,
    target: &mut [u8],
    pitch: usize,
    physical: (u32, u32),
    rotation: u32,
) {
    let stride = frame.width() as usize * 4;
    let source = frame.data();
    let (pw, ph) = (physical.0 as usize, physical.1 as usize);
    if rotation == 0 {
        // Row by row: RGBA -> BGRX, the hot path of every present.
        let (x0, x1) = (area.x as usize, area.right() as usize);
        for y in area.y as usize..area.bottom() as usize {
            let (Some(src), Some(dst)) = (
                source.get(y * stride + x0 * 4..y * stride + x1 * 4),
                target.get_mut(y * pitch + x0 * 4..y * pitch + x1 * 4),
            ) else {
                continue;
            };
            for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                d.copy_from_slice(&[s[2], s[1], s[0], 0xff]);
            }
        }
        return;
    }
    for y in area.y as usize..area.bottom() as usize {
        for x in area.x as usize..area.right() as usize {
            let (px, py) = match rotation {
                90 => (pw - 1 - y, x),
                180 => (pw - 1 - x, ph - 1 - y),
                270 => (y, ph - 1 - x),
                _ => (x, y),
            };
            let s = y * stride + x * 4;
            let t = py * pitch + px * 4;
            if let (Some(src), Some(dst)) = (source.get(s..s + 4), target.get_mut(t..t + 4)) {
                dst.copy_from_slice(&[src[2], src[1], src[0], 0xff]);
            }
        }
    }
}
