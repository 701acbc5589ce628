//! What a screen looks like as data: a flat list of pixel-aligned drawing
//! nodes. The [`Renderer`] compares each new list with the last one and
//! repaints only the areas whose nodes changed, so typing a letter redraws
//! a key and the prompt field, not the frame. Screens build lists; they
//! never paint pixels themselves.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tiny_skia::{
    FillRule, FilterQuality, LineCap, LineJoin, Paint, PathBuilder, Pixmap, PixmapPaint, PixmapRef,
    Rect, Stroke, Transform,
};

use super::text::Font;
use super::theme::{self, Rgb};

/// A pixel-aligned rectangle in screen (logical) coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Area {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

impl Area {
    /// A rectangle from floats, rounded to whole pixels.
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        let (x0, y0) = (x.round() as i32, y.round() as i32);
        Area {
            x: x0,
            y: y0,
            w: ((x + w).round() as i32 - x0).max(0),
            h: ((y + h).round() as i32 - y0).max(0),
        }
    }

    /// Right edge (exclusive).
    pub fn right(&self) -> i32 {
        self.x + self.w
    }

    /// Bottom edge (exclusive).
    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }

    /// Centre point, for taps in tests and scripts.
    pub fn centre(&self) -> (f32, f32) {
        (
            self.x as f32 + self.w as f32 / 2.0,
            self.y as f32 + self.h as f32 / 2.0,
        )
    }

    /// Whether a point lies inside.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x as f32
            && y >= self.y as f32
            && x < self.right() as f32
            && y < self.bottom() as f32
    }

    /// Whether two areas overlap.
    pub fn intersects(&self, other: &Area) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }

    /// The smallest area holding both.
    pub fn union(&self, other: &Area) -> Area {
        let (x, y) = (self.x.min(other.x), self.y.min(other.y));
        Area {
            x,
            y,
            w: self.right().max(other.right()) - x,
            h: self.bottom().max(other.bottom()) - y,
        }
    }

    /// This area clipped to `bounds`, or `None` when nothing is left.
    pub fn clip(&self, bounds: &Area) -> Option<Area> {
        let (x, y) = (self.x.max(bounds.x), self.y.max(bounds.y));
        let (r, b) = (
            self.right().min(bounds.right()),
            self.bottom().min(bounds.bottom()),
        );
        (r > x && b > y).then_some(Area {
            x,
            y,
            w: r - x,
            h: b - y,
        })
    }

    /// Shrunk by `by` on every side.
    pub fn inset(&self, by: f32) -> Area {
        let by = by.round() as i32;
        Area {
            x: self.x + by,
            y: self.y + by,
            w: (self.w - 2 * by).max(0),
            h: (self.h - 2 * by).max(0),
        }
    }

    fn pixels(&self) -> i64 {
        self.w as i64 * self.h as i64
    }
}

/// An image a node shows, compared by `key` (cheap) instead of by pixels.
#[derive(Debug, Clone)]
pub struct Picture {
    /// Changes whenever the pixels change.
    pub key: u64,
    /// Premultiplied RGBA pixels.
    pub pixmap: Arc<Pixmap>,
}

/// One drawing operation.
#[derive(Debug, Clone)]
pub enum Node {
    /// A filled (optionally rounded) rectangle.
    Fill {
        /// Where.
        area: Area,
        /// Colour.
        colour: Rgb,
        /// Opacity 0..=255 (255 for everything but overlays).
        alpha: u8,
        /// Corner radius in pixels.
        radius: u16,
    },
    /// A rounded rectangle's outline.
    Outline {
        /// Where.
        area: Area,
        /// Colour.
        colour: Rgb,
        /// Corner radius in pixels.
        radius: u16,
        /// Line width in pixels.
        width: u16,
    },
    /// One line of text.
    Text {
        /// Bounding box (for damage), from the layout.
        area: Area,
        /// Pen start.
        x: i32,
        /// Baseline.
        baseline: i32,
        /// Pixel size (whole pixels keep the glyph cache small).
        size: u16,
        /// Colour.
        colour: Rgb,
        /// The text.
        text: String,
    },
    /// A line icon drawn into the square `area`.
    Icon {
        /// Where (square; the icon's em box).
        area: Area,
        /// Which.
        icon: Icon,
        /// Stroke colour.
        colour: Rgb,
    },
    /// An opaque image scaled to fill `area` (copied 1:1 when it is
    /// already that size).
    Image {
        /// Where.
        area: Area,
        /// What.
        picture: Picture,
    },
}

impl Node {
    /// The pixels this node can touch.
    pub fn area(&self) -> Area {
        match self {
            Node::Fill { area, .. }
            | Node::Outline { area, .. }
            | Node::Text { area, .. }
            | Node::Icon { area, .. }
            | Node::Image { area, .. } => *area,
        }
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        match self {
            Node::Fill {
                area,
                colour,
                alpha,
                radius,
            } => (0u8, area, colour, alpha, radius).hash(&mut h),
            Node::Outline {
                area,
                colour,
                radius,
                width,
            } => (1u8, area, colour, radius, width).hash(&mut h),
            Node::Text {
                area,
                x,
                baseline,
                size,
                colour,
                text,
            } => (2u8, area, x, baseline, size, colour, text).hash(&mut h),
            Node::Image { area, picture } => (3u8, area, picture.key).hash(&mut h),
            Node::Icon { area, icon, colour } => (4u8, area, icon, colour).hash(&mut h),
        }
        h.finish()
    }

    fn draw(&self, target: &mut Pixmap, dx: i32, dy: i32, font: &Font) {
        let shift = Transform::from_translate(-dx as f32, -dy as f32);
        match self {
            Node::Fill {
                area,
                colour,
                alpha,
                radius,
            } => {
                if let Some(path) = rounded(area, *radius as f32, 0.0) {
                    let mut paint = Paint::default();
                    paint.set_color(colour.with_alpha(*alpha));
                    paint.anti_alias = *radius > 0;
                    target.fill_path(&path, &paint, FillRule::Winding, shift, None);
                }
            }
            Node::Outline {
                area,
                colour,
                radius,
                width,
            } => {
                let w = *width as f32;
                let mut paint = Paint::default();
                paint.set_color(colour.with_alpha(255));
                paint.anti_alias = true;
                let mut pb = PathBuilder::new();
                if let (Some(outer), Some(inner)) = (
                    rounded(area, *radius as f32, 0.0),
                    rounded(area, (*radius as f32 - w).max(0.0), w),
                ) {
                    pb.push_path(&outer);
                    pb.push_path(&inner);
                    if let Some(path) = pb.finish() {
                        target.fill_path(&path, &paint, FillRule::EvenOdd, shift, None);
                    }
                }
            }
            Node::Text {
                x,
                baseline,
                size,
                colour,
                text,
                ..
            } => {
                font.draw(
                    &mut target.as_mut(),
                    text,
                    *size as f32,
                    (*x - dx) as f32,
                    (*baseline - dy) as f32,
                    *colour,
                );
            }
            Node::Icon { area, icon, colour } => {
                if let Some(path) = icon.path(area) {
                    let mut paint = Paint::default();
                    paint.set_color(colour.with_alpha(255));
                    paint.anti_alias = true;
                    let stroke = Stroke {
                        width: (area.w as f32 * 0.08).max(1.5),
                        line_cap: LineCap::Round,
                        line_join: LineJoin::Round,
                        ..Stroke::default()
                    };
                    target.stroke_path(&path, &paint, &stroke, shift, None);
                }
            }
            Node::Image { area, picture } => {
                let source: PixmapRef<'_> = Pixmap::as_ref(&picture.pixmap);
                if source.width() as i32 == area.w && source.height() as i32 == area.h {
                    blit(target, source, area.x - dx, area.y - dy);
                    return;
                }
                let (sw, sh) = (source.width() as f32, source.height() as f32);
                let paint = PixmapPaint {
                    quality: FilterQuality::Bilinear,
                    ..PixmapPaint::default()
                };
                let transform = Transform::from_row(
                    area.w as f32 / sw,
                    0.0,
                    0.0,
                    area.h as f32 / sh,
                    (area.x - dx) as f32,
                    (area.y - dy) as f32,
                );
                target.draw_pixmap(0, 0, source, &paint, transform, None);
            }
        }
    }
}

/// Key symbols drawn as vector outlines, so that they look the same with
/// any text font (the shift and backspace symbols, U+21E7 and U+232B, are in
/// DejaVu Sans but not in Liberation Sans, the font a Yocto image has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icon {
    /// An outlined upward arrow.
    Shift,
    /// A left-pointing key cap with a cross in it.
    Backspace,
}

impl Icon {
    /// Polylines in the unit square (x right, y down); each closes or not.
    fn strokes(self) -> &'static [(&'static [(f32, f32)], bool)] {
        match self {
            Icon::Shift => &[(
                &[
                    (0.5, 0.12),
                    (0.88, 0.5),
                    (0.68, 0.5),
                    (0.68, 0.86),
                    (0.32, 0.86),
                    (0.32, 0.5),
                    (0.12, 0.5),
                ],
                true,
            )],
            Icon::Backspace => &[
                (
                    &[
                        (0.06, 0.5),
                        (0.32, 0.22),
                        (0.94, 0.22),
                        (0.94, 0.78),
                        (0.32, 0.78),
                    ],
                    true,
                ),
                (&[(0.5, 0.38), (0.74, 0.62)], false),
                (&[(0.74, 0.38), (0.5, 0.62)], false),
            ],
        }
    }

    /// The icon's outline scaled into `area`.
    fn path(self, area: &Area) -> Option<tiny_skia::Path> {
        let (x, y, w, h) = (area.x as f32, area.y as f32, area.w as f32, area.h as f32);
        let mut pb = PathBuilder::new();
        for (points, closed) in self.strokes() {
            let mut points = points.iter().map(|(u, v)| (x + u * w, y + v * h));
            let (x0, y0) = points.next()?;
            pb.move_to(x0, y0);
            for (px, py) in points {
                pb.line_to(px, py);
            }
            if *closed {
                pb.close();
            }
        }
        pb.finish()
    }
}

/// Copy an opaque picture 1:1 with its top-left at (`x`, `y`), clipped to
/// the target: thumbnails are made at cell size, so this is the common case
/// and far cheaper than a shader pass.
fn blit(target: &mut Pixmap, source: PixmapRef<'_>, x: i32, y: i32) {
    let (tw, th) = (target.width() as i32, target.height() as i32);
    let (sw, sh) = (source.width() as i32, source.height() as i32);
    let (x0, x1) = (x.max(0), (x + sw).min(tw));
    if x1 <= x0 {
        return;
    }
    let bytes = (x1 - x0) as usize * 4;
    let data = source.data();
    let out = target.data_mut();
    for row in y.max(0)..(y + sh).min(th) {
        let s = ((row - y) * sw + (x0 - x)) as usize * 4;
        let t = (row * tw + x0) as usize * 4;
        out[t..t + bytes].copy_from_slice(&data[s..s + bytes]);
    }
}

/// A rounded rectangle path, `inset` pixels inside `area`.
fn rounded(area: &Area, radius: f32, inset: f32) -> Option<tiny_skia::Path> {
    let (x, y) = (area.x as f32 + inset, area.y as f32 + inset);
    let (w, h) = (area.w as f32 - 2.0 * inset, area.h as f32 - 2.0 * inset);
    let rect = Rect::from_xywh(x, y, w, h)?;
    let r = radius.min(w / 2.0).min(h / 2.0);
    if r <= 0.0 {
        return Some(PathBuilder::from_rect(rect));
    }
    // Cubic approximation of a quarter circle.
    let k = r * 0.552_284_8;
    let mut pb = PathBuilder::new();
    pb.move_to(x + r, y);
    pb.line_to(x + w - r, y);
    pb.cubic_to(x + w - r + k, y, x + w, y + r - k, x + w, y + r);
    pb.line_to(x + w, y + h - r);
    pb.cubic_to(x + w, y + h - r + k, x + w - r + k, y + h, x + w - r, y + h);
    pb.line_to(x + r, y + h);
    pb.cubic_to(x + r - k, y + h, x, y + h - r + k, x, y + h - r);
    pb.line_to(x, y + r);
    pb.cubic_to(x, y + r - k, x + r - k, y, x + r, y);
    pb.close();
    pb.finish()
}

/// Keeps the composed frame and the node list it shows; turns a new node
/// list into repainted pixels plus the areas that changed.
pub struct Renderer {
    frame: Pixmap,
    shown: Vec<Node>,
    fresh: bool,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("width", &self.frame.width())
            .field("height", &self.frame.height())
            .finish_non_exhaustive()
    }
}

/// Above this many separate damaged areas, or this share of the frame,
/// one full repaint is cheaper than many small ones.
const MAX_DAMAGE_AREAS: usize = 8;
const FULL_REPAINT_SHARE: f64 = 0.6;

impl Renderer {
    /// A renderer for a `width` x `height` frame.
    pub fn new(width: u32, height: u32) -> Option<Self> {
        Some(Renderer {
            frame: Pixmap::new(width, height)?,
            shown: Vec::new(),
            fresh: true,
        })
    }

    /// The composed frame (premultiplied RGBA; opaque).
    pub fn frame(&self) -> &Pixmap {
        &self.frame
    }

    /// Forget what is shown, so the next render repaints everything (after
    /// a display reappears, say).
    pub fn invalidate(&mut self) {
        self.fresh = true;
    }

    /// Make the frame show `nodes`; returns the areas repainted (empty when
    /// nothing changed).
    pub fn render(&mut self, nodes: Vec<Node>, font: &Font) -> Vec<Area> {
        let bounds = Area {
            x: 0,
            y: 0,
            w: self.frame.width() as i32,
            h: self.frame.height() as i32,
        };
        let damage = if self.fresh {
            vec![bounds]
        } else {
            merge(changed_areas(&self.shown, &nodes), &bounds)
        };
        self.fresh = false;
        for area in &damage {
            self.repaint(area, &nodes, font);
        }
        self.shown = nodes;
        damage
    }

    fn repaint(&mut self, area: &Area, nodes: &[Node], font: &Font) {
        if (area.w as u32, area.h as u32) == (self.frame.width(), self.frame.height()) {
            // The whole frame: draw in place, no scratch copy.
            self.frame.fill(theme::BACKGROUND.with_alpha(255));
            for node in nodes {
                node.draw(&mut self.frame, 0, 0, font);
            }
            return;
        }
        let Some(mut scratch) = Pixmap::new(area.w as u32, area.h as u32) else {
            return;
        };
        scratch.fill(theme::BACKGROUND.with_alpha(255));
        for node in nodes.iter().filter(|n| n.area().intersects(area)) {
            node.draw(&mut scratch, area.x, area.y, font);
        }
        let stride = self.frame.width() as usize * 4;
        let row_bytes = area.w as usize * 4;
        let frame = self.frame.data_mut();
        for (row, source) in scratch.data().chunks_exact(row_bytes).enumerate() {
            let start = (area.y as usize + row) * stride + area.x as usize * 4;
            frame[start..start + row_bytes].copy_from_slice(source);
        }
    }
}

/// Areas of nodes present in only one of the two lists.
fn changed_areas(old: &[Node], new: &[Node]) -> Vec<Area> {
    let mut areas = unmatched(new, old);
    areas.extend(unmatched(old, new));
    areas
}

/// Areas of the nodes of `these` with no equal node left in `others`.
fn unmatched(these: &[Node], others: &[Node]) -> Vec<Area> {
    let mut counts: HashMap<u64, i32> = HashMap::new();
    for n in others {
        *counts.entry(n.fingerprint()).or_default() += 1;
    }
    these
        .iter()
        .filter(|n| match counts.get_mut(&n.fingerprint()) {
            Some(c) if *c > 0 => {
                *c -= 1;
                false
            }
            _ => true,
        })
        .map(Node::area)
        .collect()
}

/// Clip to the frame, merge overlapping areas, and fall back to one full
/// repaint when that is cheaper.
fn merge(areas: Vec<Area>, bounds: &Area) -> Vec<Area> {
    let mut merged: Vec<Area> = Vec::new();
    for area in areas.iter().filter_map(|a| a.clip(bounds)) {
        let mut area = area;
        // Absorb every merged area this one touches, until stable.
        loop {
            let before = merged.len();
            merged.retain(|m| {
                if m.intersects(&area) {
                    area = area.union(m);
                    false
                } else {
                    true
                }
            });
            if merged.len() == before {
                break;
            }
        }
        merged.push(area);
    }
    let total: i64 = merged.iter().map(Area::pixels).sum();
    if merged.len() > MAX_DAMAGE_AREAS || total as f64 > FULL_REPAINT_SHARE * bounds.pixels() as f64
    {
        return vec![*bounds];
    }
    merged
}
