//! The look of the touch UI in one place: palette, spacing and type scales,
//! touch-target sizes. Screens take every colour and length from here and
//! never hard-code one, so the product keeps one calm, coherent design.

use tiny_skia::Color;

/// An opaque sRGB colour as the screens use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// The tiny-skia colour with `alpha` (0..=255).
    pub fn with_alpha(self, alpha: u8) -> Color {
        Color::from_rgba8(self.0, self.1, self.2, alpha)
    }
}

/// Near-black ink blue: the canvas behind everything.
pub const BACKGROUND: Rgb = Rgb(0x14, 0x17, 0x1d);
/// Raised surfaces: fields, keys, cards.
pub const SURFACE: Rgb = Rgb(0x22, 0x27, 0x30);
/// Surfaces while a finger is on them.
pub const SURFACE_PRESSED: Rgb = Rgb(0x33, 0x3a, 0x46);
/// Main text.
pub const TEXT: Rgb = Rgb(0xec, 0xee, 0xf2);
/// Secondary text and hints.
pub const TEXT_MUTED: Rgb = Rgb(0x95, 0x9e, 0xad);
/// The one accent: primary actions, selection, progress.
pub const ACCENT: Rgb = Rgb(0xe8, 0xa2, 0x5c);
/// Text on the accent.
pub const ON_ACCENT: Rgb = Rgb(0x1a, 0x14, 0x0e);
/// Destructive actions (delete) and errors.
pub const DANGER: Rgb = Rgb(0xe0, 0x6c, 0x5f);

/// Smallest side of anything a finger must hit, in pixels, at any scale.
pub const MIN_TOUCH: f32 = 48.0;

/// Lengths for one screen size: everything scales with the shorter
/// dimension relative to the 1280x800 reference, text a bit less.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Layout scale (1.0 at 1280x800).
    pub scale: f32,
    /// Text scale (shrinks less than layout so small panels stay legible).
    pub text_scale: f32,
}

impl Metrics {
    /// Metrics for a `width` x `height` screen.
    pub fn for_size(width: u32, height: u32) -> Self {
        let scale = (width as f32 / 1280.0)
            .min(height as f32 / 800.0)
            .clamp(0.55, 2.0);
        Metrics {
            scale,
            text_scale: scale.clamp(0.8, 2.0),
        }
    }

    /// Spacing step `n` of the scale 4, 8, 12, 16, 24, 32, 48 (reference px).
    pub fn space(&self, n: usize) -> f32 {
        const STEPS: [f32; 7] = [4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0];
        (STEPS[n.min(STEPS.len() - 1)] * self.scale).round()
    }

    /// A touch target's side: `reference` px scaled, never under [`MIN_TOUCH`].
    pub fn touch(&self, reference: f32) -> f32 {
        (reference * self.scale).round().max(MIN_TOUCH)
    }

    /// Corner radius of keys, chips, fields and cards.
    pub fn radius(&self) -> f32 {
        (10.0 * self.scale).round().max(6.0)
    }

    /// Text size for a type-scale step.
    pub fn text(&self, step: TextStep) -> f32 {
        let reference = match step {
            TextStep::Caption => 15.0,
            TextStep::Body => 19.0,
            TextStep::Key => 24.0,
            TextStep::Title => 28.0,
        };
        (reference * self.text_scale).round()
    }
}

/// The type scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStep {
    /// Status line, metadata labels.
    Caption,
    /// Buttons, prompt text, body copy.
    Body,
    /// Keyboard key labels.
    Key,
    /// Screen and dialog titles.
    Title,
}
