//! An in-memory surface: the frame a display would show, kept as pixels.
//! Golden tests and `pocket-studio screenshot` read it; it copies only the
//! damaged areas, exactly like the KMS surface, so partial redraws are
//! tested too.

use std::sync::{Arc, Mutex};

use tiny_skia::Pixmap;

use super::UiError;
use super::scene::Area;
use super::surface::Surface;

/// See the module doc. Clones share the same frame.
#[derive(Clone)]
pub struct Headless {
    frame: Arc<Mutex<Pixmap>>,
}

impl std::fmt::Debug for Headless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Headless")
            .field("size", &self.size())
            .finish()
    }
}

impl Headless {
    /// A black `width` x `height` frame.
    pub fn new(width: u32, height: u32) -> Result<Self, UiError> {
        let frame = Pixmap::new(width, height)
            .ok_or_else(|| UiError::Display(format!("bad frame size {width}x{height}")))?;
        Ok(Headless {
            frame: Arc::new(Mutex::new(frame)),
        })
    }

    /// Make the frame `width` x `height` (black); clones see the change.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), UiError> {
        let frame = Pixmap::new(width, height)
            .ok_or_else(|| UiError::Display(format!("bad frame size {width}x{height}")))?;
        *self.lock() = frame;
        Ok(())
    }

    /// The frame as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>, UiError> {
        self.lock()
            .encode_png()
            .map_err(|e| UiError::Display(format!("encode PNG: {e}")))
    }

    /// A copy of what the "screen" shows now.
    pub fn snapshot(&self) -> Pixmap {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pixmap> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Surface for Headless {
    fn size(&self) -> (u32, u32) {
        let frame = self.lock();
        (frame.width(), frame.height())
    }

    fn describe(&self) -> String {
        let (w, h) = self.size();
        format!("headless {w}x{h}")
    }

    fn present(&mut self, frame: &Pixmap, damage: &[Area]) -> Result<(), UiError> {
        let mut shown = self.lock();
        if (shown.width(), shown.height()) != (frame.width(), frame.height()) {
            return Err(UiError::Display(
                "frame size does not match the surface".into(),
            ));
        }
        let stride = frame.width() as usize * 4;
        let target = shown.data_mut();
        for area in damage {
            for y in area.y as usize..area.bottom() as usize {
                let start = y * stride + area.x as usize * 4;
                let end = start + area.w as usize * 4;
                target[start..end].copy_from_slice(&frame.data()[start..end]);
            }
        }
        Ok(())
    }
}
