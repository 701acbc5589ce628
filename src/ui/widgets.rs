//! The widget vocabulary screens are written in: buttons, chips, labels,
//! progress bars, pictures. Each call appends drawing nodes and, for
//! anything tappable, a hit area bound to an [`Action`], so what is drawn
//! and what a finger hits come from the same rectangle.

use super::app::Action;
use super::scene::{Area, Icon, Node, Picture};
use super::text::Font;
use super::theme::{self, Metrics, Rgb, TextStep};

/// How a button looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The one main action on a screen (accent fill).
    Primary,
    /// Everything else (surface fill).
    Plain,
    /// Selected chip or segment (accent outline, accent text).
    Selected,
    /// Destructive (danger fill).
    Danger,
}

/// Horizontal text alignment inside an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Flush left.
    Left,
    /// Centred.
    Centre,
    /// Flush right.
    Right,
}

/// Collects nodes and hit areas for one frame.
pub struct Builder<'a> {
    /// Lengths for this screen size.
    pub metrics: Metrics,
    /// Logical screen width.
    pub width: f32,
    /// Logical screen height.
    pub height: f32,
    /// The UI font.
    pub font: &'a Font,
    /// The action under a finger right now (drawn pressed).
    pub pressed: Option<&'a Action>,
    nodes: Vec<Node>,
    hits: Vec<(Area, Action)>,
}

impl<'a> Builder<'a> {
    /// An empty frame description.
    pub fn new(width: u32, height: u32, font: &'a Font, pressed: Option<&'a Action>) -> Self {
        Builder {
            metrics: Metrics::for_size(width, height),
            width: width as f32,
            height: height as f32,
            font,
            pressed,
            nodes: Vec::new(),
            hits: Vec::new(),
        }
    }

    /// The nodes and hit areas built.
    pub fn finish(self) -> (Vec<Node>, Vec<(Area, Action)>) {
        (self.nodes, self.hits)
    }

    /// The whole screen.
    pub fn screen(&self) -> Area {
        Area::new(0.0, 0.0, self.width, self.height)
    }

    /// A filled rectangle.
    pub fn fill(&mut self, area: Area, colour: Rgb, radius: f32) {
        self.fill_alpha(area, colour, 255, radius);
    }

    /// A translucent filled rectangle (modal scrims).
    pub fn fill_alpha(&mut self, area: Area, colour: Rgb, alpha: u8, radius: f32) {
        self.nodes.push(Node::Fill {
            area,
            colour,
            alpha,
            radius: radius.round() as u16,
        });
    }

    /// A rounded outline.
    pub fn outline(&mut self, area: Area, colour: Rgb, radius: f32, width: f32) {
        self.nodes.push(Node::Outline {
            area,
            colour,
            radius: radius.round() as u16,
            width: width.round().max(1.0) as u16,
        });
    }

    /// Text size for a type step, in whole pixels.
    pub fn size(&self, step: TextStep) -> f32 {
        self.metrics.text(step)
    }

    /// One line of text, vertically centred in `area`, ellipsized to fit.
    pub fn label(&mut self, area: Area, text: &str, step: TextStep, colour: Rgb, align: Align) {
        let size = self.size(step);
        let text = self.font.ellipsize(text, size, area.w as f32);
        let width = self.font.measure(&text, size);
        let (ascent, descent) = self.font.ascent_descent(size);
        let x = match align {
            Align::Left => area.x as f32,
            Align::Centre => area.x as f32 + (area.w as f32 - width) / 2.0,
            Align::Right => area.right() as f32 - width,
        };
        let baseline = area.y as f32 + (area.h as f32 + ascent - descent) / 2.0;
        self.text_at(x, baseline, &text, size, colour);
    }

    /// Text with its baseline at (`x`, `baseline`).
    pub fn text_at(&mut self, x: f32, baseline: f32, text: &str, size: f32, colour: Rgb) {
        if text.is_empty() {
            return;
        }
        let width = self.font.measure(text, size);
        let (ascent, descent) = self.font.ascent_descent(size);
        // A little slack for glyphs that overhang their advance.
        let slack = (size * 0.25).ceil();
        self.nodes.push(Node::Text {
            area: Area::new(
                x - slack,
                baseline - ascent - slack,
                width + 2.0 * slack,
                ascent + descent + 2.0 * slack,
            ),
            x: x.round() as i32,
            baseline: baseline.round() as i32,
            size: size.round() as u16,
            colour,
            text: text.to_string(),
        });
    }

    /// Wrapped text from the top of `area`; returns the lines drawn.
    pub fn paragraph(&mut self, area: Area, text: &str, step: TextStep, colour: Rgb) -> usize {
        let size = self.size(step);
        let line_height = (size * 1.35).round();
        let max_lines = ((area.h as f32 / line_height).floor() as usize).max(1);
        let lines = self.font.wrap(text, size, area.w as f32, max_lines);
        let (ascent, _) = self.font.ascent_descent(size);
        for (i, line) in lines.iter().enumerate() {
            let baseline = area.y as f32 + ascent + i as f32 * line_height;
            self.text_at(area.x as f32, baseline, line, size, colour);
        }
        lines.len()
    }

    /// A tappable area with no drawing of its own.
    pub fn hit(&mut self, area: Area, action: Action) {
        self.hits.push((area, action));
    }

    /// Whether `action` is under a finger.
    pub fn is_pressed(&self, action: &Action) -> bool {
        self.pressed == Some(action)
    }

    /// A labelled button.
    pub fn button(&mut self, area: Area, label: &str, kind: Kind, step: TextStep, action: Action) {
        let colour = self.button_frame(area, kind, action);
        let pad = self.metrics.space(1);
        self.label(area.inset(pad), label, step, colour, Align::Centre);
    }

    /// A button showing an icon the size of `step`'s text.
    pub fn icon_button(
        &mut self,
        area: Area,
        icon: Icon,
        kind: Kind,
        step: TextStep,
        action: Action,
    ) {
        let colour = self.button_frame(area, kind, action);
        let side = self.size(step).min(area.w as f32).min(area.h as f32);
        let (x, y) = (
            area.x as f32 + (area.w as f32 - side) / 2.0,
            area.y as f32 + (area.h as f32 - side) / 2.0,
        );
        self.nodes.push(Node::Icon {
            area: Area::new(x, y, side, side),
            icon,
            colour,
        });
    }

    /// A button's background, selection outline and hit area; returns the
    /// colour its label or icon is drawn in.
    fn button_frame(&mut self, area: Area, kind: Kind, action: Action) -> Rgb {
        let pressed = self.is_pressed(&action);
        let radius = self.metrics.radius();
        let (fill, text) = match (kind, pressed) {
            (Kind::Primary, false) => (theme::ACCENT, theme::ON_ACCENT),
            (Kind::Primary, true) => (theme::TEXT, theme::ON_ACCENT),
            (Kind::Danger, false) => (theme::DANGER, theme::ON_ACCENT),
            (Kind::Danger, true) => (theme::TEXT, theme::ON_ACCENT),
            (Kind::Plain | Kind::Selected, false) => (theme::SURFACE, theme::TEXT),
            (Kind::Plain | Kind::Selected, true) => (theme::SURFACE_PRESSED, theme::TEXT),
        };
        self.fill(area, fill, radius);
        self.hit(area, action);
        if kind == Kind::Selected {
            self.outline(
                area,
                theme::ACCENT,
                radius,
                2.0 * self.metrics.scale.max(1.0),
            );
            theme::ACCENT
        } else {
            text
        }
    }

    /// A horizontal progress bar, `fraction` in 0..=1.
    pub fn progress_bar(&mut self, area: Area, fraction: f64) {
        let radius = area.h as f32 / 2.0;
        self.fill(area, theme::SURFACE, radius);
        let done = (area.w as f64 * fraction.clamp(0.0, 1.0)).round() as i32;
        if done > 0 {
            let bar = Area {
                w: done.max(area.h),
                ..area
            };
            self.fill(bar, theme::ACCENT, radius);
        }
    }

    /// A horizontal slider at `fraction` (0..=1) of its track. The whole
    /// area is the hit target (at least a finger tall); the app sets the
    /// value from where the finger is, so taps and drags both work.
    pub fn slider(&mut self, area: Area, fraction: f32, action: Action) {
        let m = self.metrics;
        let knob = m.touch(28.0).min(area.h as f32);
        let track_h = (6.0 * m.scale).max(4.0);
        let (x, w) = (area.x as f32 + knob / 2.0, area.w as f32 - knob);
        let centre_y = area.y as f32 + area.h as f32 / 2.0;
        let track = Area::new(x, centre_y - track_h / 2.0, w, track_h);
        self.fill(track, theme::SURFACE_PRESSED, track_h / 2.0);
        let at = x + w * fraction.clamp(0.0, 1.0);
        self.fill(
            Area::new(x, track.y as f32, at - x, track_h),
            theme::ACCENT,
            track_h / 2.0,
        );
        let colour = if self.is_pressed(&action) {
            theme::TEXT
        } else {
            theme::ACCENT
        };
        self.fill(
            Area::new(at - knob / 2.0, centre_y - knob / 2.0, knob, knob),
            colour,
            knob / 2.0,
        );
        // The value is read against the track the knob's centre travels.
        self.hit(Area::new(x, area.y as f32, w, area.h as f32), action);
    }

    /// An image filling `area`.
    pub fn picture(&mut self, area: Area, picture: &Picture) {
        self.nodes.push(Node::Image {
            area,
            picture: picture.clone(),
        });
    }

    /// A placeholder where an image is still loading.
    pub fn placeholder(&mut self, area: Area) {
        self.fill(area, theme::SURFACE, self.metrics.radius());
    }
}

/// The largest `w` x `h` area of the source's aspect centred in `inside`.
pub fn fit(inside: Area, source_w: u32, source_h: u32) -> Area {
    if source_w == 0 || source_h == 0 {
        return inside;
    }
    let scale = (inside.w as f32 / source_w as f32).min(inside.h as f32 / source_h as f32);
    let (w, h) = (source_w as f32 * scale, source_h as f32 * scale);
    Area::new(
        inside.x as f32 + (inside.w as f32 - w) / 2.0,
        inside.y as f32 + (inside.h as f32 - h) / 2.0,
        w,
        h,
    )
}
