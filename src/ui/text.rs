//! Text for the touch UI: a TrueType font rasterised with fontdue, glyphs
//! cached per size, simple left-to-right layout with kerning, ellipsis and
//! word wrap. It never shapes complex scripts (prompts are typed on our own
//! Latin keyboard); missing glyphs draw as the font's notdef box.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tiny_skia::PixmapMut;

use super::UiError;
use super::theme::Rgb;

/// Where the font is looked for when the config says `auto`: Liberation Sans
/// 2.1.5 as Debian's fonts-liberation2 and OpenEmbedded-Core's
/// liberation-fonts install it (the same release in both, so a Yocto image
/// draws what the golden screenshots show), then DejaVu Sans for other
/// systems.
pub const FONT_SEARCH_PATH: &[&str] = &[
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/ttf/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/ttf/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

struct Glyph {
    metrics: fontdue::Metrics,
    coverage: Vec<u8>,
}

/// A loaded font with its glyph cache. Not `Sync`: it lives on the UI thread.
pub struct Font {
    font: fontdue::Font,
    path: PathBuf,
    cache: RefCell<HashMap<(char, u32), Glyph>>,
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Font").field("path", &self.path).finish()
    }
}

impl Font {
    /// Load the font named by the config: `auto` searches
    /// [`FONT_SEARCH_PATH`], anything else is a file path.
    pub fn load(setting: &str) -> Result<Self, UiError> {
        if setting != "auto" {
            return Self::from_file(Path::new(setting));
        }
        let found = FONT_SEARCH_PATH
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                UiError::Font(format!(
                    "no font found (looked for {}); install fonts-liberation2 or set [ui] font",
                    FONT_SEARCH_PATH.join(", ")
                ))
            })?;
        Self::from_file(found)
    }

    /// Load a TrueType file.
    pub fn from_file(path: &Path) -> Result<Self, UiError> {
        let bytes =
            std::fs::read(path).map_err(|e| UiError::Font(format!("{}: {e}", path.display())))?;
        let font = fontdue::Font::from_bytes(bytes, fontdue::FontSettings::default())
            .map_err(|e| UiError::Font(format!("{}: {e}", path.display())))?;
        Ok(Font {
            font,
            path: path.to_path_buf(),
            cache: RefCell::new(HashMap::new()),
        })
    }

    /// The file the font came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_glyph<T>(&self, c: char, size: f32, f: impl FnOnce(&Glyph) -> T) -> T {
        let key = (c, size.to_bits());
        let mut cache = self.cache.borrow_mut();
        let glyph = cache.entry(key).or_insert_with(|| {
            let (metrics, coverage) = self.font.rasterize(c, size);
            Glyph { metrics, coverage }
        });
        f(glyph)
    }

    /// Distance from the baseline to the top of capitals and to the bottom
    /// of descenders, for vertical centring.
    pub fn ascent_descent(&self, size: f32) -> (f32, f32) {
        match self.font.horizontal_line_metrics(size) {
            Some(m) => (m.ascent, -m.descent),
            None => (size * 0.8, size * 0.2),
        }
    }

    /// Width of `text` laid out on one line.
    pub fn measure(&self, text: &str, size: f32) -> f32 {
        let mut width = 0.0;
        let mut previous = None;
        for c in text.chars() {
            if let Some(p) = previous {
                width += self.font.horizontal_kern(p, c, size).unwrap_or(0.0);
            }
            width += self.with_glyph(c, size, |g| g.metrics.advance_width);
            previous = Some(c);
        }
        width
    }

    /// `text` cut to fit `max_width`, ending in an ellipsis when cut. One
    /// pass over the text: it runs for labels on every frame.
    pub fn ellipsize(&self, text: &str, size: f32, max_width: f32) -> String {
        if self.measure(text, size) <= max_width {
            return text.to_string();
        }
        let room = max_width - self.measure("…", size);
        let mut width = 0.0;
        let mut previous = None;
        let mut end = 0;
        for (i, c) in text.char_indices() {
            if let Some(p) = previous {
                width += self.font.horizontal_kern(p, c, size).unwrap_or(0.0);
            }
            width += self.with_glyph(c, size, |g| g.metrics.advance_width);
            if width > room {
                break;
            }
            previous = Some(c);
            end = i + c.len_utf8();
        }
        format!("{}…", text[..end].trim_end())
    }

    /// Greedy word wrap into lines no wider than `max_width`; words longer
    /// than a line are broken by character. At most `max_lines`, the last
    /// one ellipsized when text remains.
    pub fn wrap(&self, text: &str, size: f32, max_width: f32, max_lines: usize) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut current = String::new();
        for word in text.split(' ') {
            let candidate = if current.is_empty() {
                word.to_string()
            } else {
                format!("{current} {word}")
            };
            if self.measure(&candidate, size) <= max_width {
                current = candidate;
                continue;
            }
            if !current.is_empty() {
                lines.push(std::mem::take(&mut current));
            }
            // A word wider than the line: break it by character.
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if self.measure(&piece, size) > max_width && piece.chars().count() > 1 {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            current = piece;
        }
        lines.push(current);
        if lines.len() > max_lines {
            let rest = lines[max_lines - 1..].join(" ");
            lines.truncate(max_lines - 1);
            lines.push(self.ellipsize(&rest, size, max_width));
        }
        lines
    }

    /// Draw `text` with its baseline starting at (`x`, `baseline`) in
    /// `pixmap` coordinates, blending `colour` by glyph coverage. Pixels
    /// outside the pixmap are skipped, so callers may draw into a clip.
    pub fn draw(
        &self,
        pixmap: &mut PixmapMut<'_>,
        text: &str,
        size: f32,
        x: f32,
        baseline: f32,
        colour: Rgb,
    ) {
        let (width, height) = (pixmap.width() as i32, pixmap.height() as i32);
        let data = pixmap.data_mut();
        let mut pen = x;
        let mut previous = None;
        for c in text.chars() {
            if let Some(p) = previous {
                pen += self.font.horizontal_kern(p, c, size).unwrap_or(0.0);
            }
            previous = Some(c);
            pen += self.with_glyph(c, size, |glyph| {
                let m = &glyph.metrics;
                let left = pen.round() as i32 + m.xmin;
                let top = baseline.round() as i32 - m.height as i32 - m.ymin;
                for row in 0..m.height as i32 {
                    let y = top + row;
                    if y < 0 || y >= height {
                        continue;
                    }
                    for col in 0..m.width as i32 {
                        let x = left + col;
                        if x < 0 || x >= width {
                            continue;
                        }
                        let cov = glyph.coverage[(row * m.width as i32 + col) as usize] as u32;
                        if cov == 0 {
                            continue;
                        }
                        let i = ((y * width + x) * 4) as usize;
                        let px = &mut data[i..i + 4];
                        for (channel, value) in
                            px.iter_mut().zip([colour.0, colour.1, colour.2, 255])
                        {
                            *channel = ((value as u32 * cov + *channel as u32 * (255 - cov) + 127)
                                / 255) as u8;
                        }
                    }
                }
                m.advance_width
            });
        }
    }
}
