//! The on-screen keyboard: two pages (letters; numbers and symbols), a
//! one-shot shift, backspace (repeats while held, see the app), space and
//! enter. Layout and typing rules live here; the app decides when a key is
//! pressed.

use super::app::Action;
use super::scene::{Area, Icon};
use super::theme::TextStep;
use super::widgets::{Builder, Kind};

/// One key's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Types a character (letters follow shift).
    Char(char),
    /// Toggles upper case for the next letter.
    Shift,
    /// Deletes the last character.
    Backspace,
    /// Types a space.
    Space,
    /// Submits (Generate).
    Enter,
    /// Switches page.
    Page(Page),
}

/// Which set of keys shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Page {
    /// a-z.
    #[default]
    Letters,
    /// 0-9 and punctuation.
    Symbols,
}

/// Page and shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keyboard {
    /// Visible page.
    pub page: Page,
    /// Next letter upper case.
    pub shifted: bool,
}

/// Longest prompt the keyboard types (the tokenizer truncates far earlier;
/// this keeps a stuck key from growing a string without bound).
pub const MAX_PROMPT_CHARS: usize = 400;

/// A key's face: a label or an icon.
enum Face {
    Text(String),
    Icon(Icon),
}

impl Keyboard {
    /// Type `c` at the end of `text` while it is under
    /// [`MAX_PROMPT_CHARS`]; also for physical keyboards.
    pub fn insert(text: &mut String, c: char) {
        if text.chars().count() < MAX_PROMPT_CHARS {
            text.push(c);
        }
    }

    /// Apply a key to `text`; true when it was Enter.
    pub fn press(&mut self, key: Key, text: &mut String) -> bool {
        match key {
            Key::Char(c) if self.shifted && c.is_alphabetic() => {
                for upper in c.to_uppercase() {
                    Self::insert(text, upper);
                }
                self.shifted = false;
            }
            Key::Char(c) => Self::insert(text, c),
            Key::Space => Self::insert(text, ' '),
            Key::Backspace => {
                text.pop();
            }
            Key::Shift => self.shifted = !self.shifted,
            Key::Page(page) => {
                self.page = page;
                self.shifted = false;
            }
            Key::Enter => return true,
        }
        false
    }

    /// Rows of (key, width in key units); every row spans 10 units.
    fn rows(&self) -> Vec<Vec<(Key, f32)>> {
        let chars = |s: &str| s.chars().map(|c| (Key::Char(c), 1.0)).collect::<Vec<_>>();
        let (top, middle, left, bottom, other) = match self.page {
            Page::Letters => (
                "qwertyuiop",
                "asdfghjkl",
                Key::Shift,
                "zxcvbnm",
                Page::Symbols,
            ),
            Page::Symbols => (
                "1234567890",
                "-/:;()&@\"",
                Key::Char('%'),
                "_?!'#+=",
                Page::Letters,
            ),
        };
        vec![
            chars(top),
            chars(middle),
            [
                vec![(left, 1.5)],
                chars(bottom),
                vec![(Key::Backspace, 1.5)],
            ]
            .concat(),
            vec![
                (Key::Page(other), 1.5),
                (Key::Char(','), 1.0),
                (Key::Space, 5.0),
                (Key::Char('.'), 1.0),
                (Key::Enter, 1.5),
            ],
        ]
    }

    /// What `key` shows: shift and backspace are drawn, not typeset, so
    /// they need no particular font.
    fn face(&self, key: Key) -> Face {
        let label = match key {
            Key::Shift => return Face::Icon(Icon::Shift),
            Key::Backspace => return Face::Icon(Icon::Backspace),
            Key::Char(c) if self.shifted => c.to_uppercase().collect(),
            Key::Char(c) => c.to_string(),
            Key::Space => "space".into(),
            Key::Enter => "Go".into(),
            Key::Page(Page::Symbols) => "?123".into(),
            Key::Page(Page::Letters) => "ABC".into(),
        };
        Face::Text(label)
    }

    /// Draw the keyboard into `area` and register every key.
    pub fn build(&self, b: &mut Builder<'_>, area: Area) {
        let gap = b.metrics.space(1);
        let rows = self.rows();
        let row_height = (area.h as f32 - gap * (rows.len() as f32 - 1.0)) / rows.len() as f32;
        let unit = (area.w as f32 - gap * 9.0) / 10.0;
        for (r, row) in rows.iter().enumerate() {
            let units: f32 = row.iter().map(|(_, w)| w).sum();
            let row_width =
                units * unit + (row.len() as f32 - 1.0) * gap + (units - row.len() as f32) * gap;
            let mut x = area.x as f32 + (area.w as f32 - row_width) / 2.0;
            let y = area.y as f32 + r as f32 * (row_height + gap);
            for &(key, width) in row {
                let w = width * unit + (width - 1.0) * gap;
                let cell = Area::new(x, y, w, row_height);
                let kind = match key {
                    Key::Enter => Kind::Primary,
                    Key::Shift if self.shifted => Kind::Selected,
                    _ => Kind::Plain,
                };
                let step = match key {
                    Key::Char(_) | Key::Shift | Key::Backspace => TextStep::Key,
                    _ => TextStep::Body,
                };
                match self.face(key) {
                    Face::Text(label) => b.button(cell, &label, kind, step, Action::Key(key)),
                    Face::Icon(icon) => b.icon_button(cell, icon, kind, step, Action::Key(key)),
                }
                x += w + gap;
            }
        }
    }
}
