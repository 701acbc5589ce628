//! The seam between the UI and whatever shows it: a surface takes the
//! composed frame plus the areas that changed and puts them on a screen (a
//! KMS display on the board) or in memory (tests, `pocket-studio
//! screenshot`). Screens never know which one they draw on.

use tiny_skia::Pixmap;

use super::UiError;
use super::scene::Area;

/// Somewhere a frame can be shown.
pub trait Surface {
    /// Logical size the UI lays out for (after rotation).
    fn size(&self) -> (u32, u32);

    /// Show `frame` (premultiplied, opaque RGBA of [`Surface::size`]);
    /// only `damage` changed since the last call.
    fn present(&mut self, frame: &Pixmap, damage: &[Area]) -> Result<(), UiError>;

    /// One line for the log: which device, which mode.
    fn describe(&self) -> String;
}
