//! Compose: the prompt field, style chips, aspect, Generate, and the
//! on-screen keyboard.

use super::super::app::{ASPECTS, Action, App, STYLES};
use super::super::scene::Area;
use super::super::theme::{self, TextStep};
use super::super::widgets::{Align, Builder, Kind};

pub(super) fn build(app: &mut App, b: &mut Builder<'_>, body: Area) {
    let m = b.metrics;
    let pad = m.space(3);
    let gap = m.space(2);
    let chip_h = m.touch(52.0);
    let action_h = m.touch(60.0);
    let left = body.x as f32 + pad;
    let width = body.w as f32 - 2.0 * pad;
    let bottom = body.bottom() as f32 - pad;

    // Keyboard from the bottom up; the prompt field takes what is left.
    let fixed = chip_h + action_h + 3.0 * gap;
    let field_min = m.touch(72.0);
    let keyboard_h =
        (4.0 * m.touch(72.0) + 3.0 * m.space(1)).min(body.h as f32 - pad - fixed - field_min - pad);
    let keyboard = Area::new(left, bottom - keyboard_h, width, keyboard_h);
    let actions_y = keyboard.y as f32 - gap - action_h;
    let chips_y = actions_y - gap - chip_h;
    let field = Area::new(left, body.y as f32, width, chips_y - gap - body.y as f32);

    prompt_field(app, b, field);

    // Style chips, each as wide as its label.
    let mut x = left;
    for (n, (_, label)) in STYLES.iter().enumerate() {
        let w = b.font.measure(label, b.size(TextStep::Body)) + 2.0 * m.space(4);
        let kind = if app.style == Some(n) {
            Kind::Selected
        } else {
            Kind::Plain
        };
        b.button(
            Area::new(x, chips_y, w, chip_h),
            label,
            kind,
            TextStep::Body,
            Action::Style(n),
        );
        x += w + m.space(1);
    }

    // Aspect segments on the left, Gallery and Generate on the right.
    let segment_w = (150.0 * m.scale).max(110.0);
    for (n, (_, label)) in ASPECTS.iter().enumerate() {
        let kind = if app.aspect == n {
            Kind::Selected
        } else {
            Kind::Plain
        };
        b.button(
            Area::new(
                left + n as f32 * (segment_w + m.space(1)),
                actions_y,
                segment_w,
                action_h,
            ),
            label,
            kind,
            TextStep::Body,
            Action::Aspect(n),
        );
    }
    let generate_w = (220.0 * m.scale).max(150.0);
    let gallery_w = (160.0 * m.scale).max(110.0);
    let camera_w = (160.0 * m.scale).max(110.0);
    let right = left + width;
    b.button(
        Area::new(
            right - generate_w - 2.0 * gap - gallery_w - camera_w,
            actions_y,
            camera_w,
            action_h,
        ),
        "Camera",
        Kind::Plain,
        TextStep::Body,
        Action::OpenCamera,
    );
    b.button(
        Area::new(right - generate_w, actions_y, generate_w, action_h),
        "Generate",
        Kind::Primary,
        TextStep::Body,
        Action::Generate,
    );
    b.button(
        Area::new(
            right - generate_w - gap - gallery_w,
            actions_y,
            gallery_w,
            action_h,
        ),
        "Gallery",
        Kind::Plain,
        TextStep::Body,
        Action::OpenGallery,
    );

    app.keyboard.build(b, keyboard);
}

fn prompt_field(app: &App, b: &mut Builder<'_>, field: Area) {
    let m = b.metrics;
    b.fill(field, theme::SURFACE, m.radius());
    b.hit(field, Action::PromptField);
    let inner = field.inset(m.space(3));
    let size = b.size(TextStep::Body);
    let line_h = (size * 1.35).round();
    let (ascent, descent) = b.font.ascent_descent(size);
    if app.prompt.is_empty() {
        b.label(
            Area::new(inner.x as f32, inner.y as f32, inner.w as f32, line_h),
            "Describe the image you want…",
            TextStep::Body,
            theme::TEXT_MUTED,
            Align::Left,
        );
        caret(b, inner.x as f32, inner.y as f32, line_h, ascent, descent);
        return;
    }
    // Show the end of the prompt: it is where the typing happens.
    let max_lines = ((inner.h as f32 / line_h).floor() as usize).max(1);
    let lines = b
        .font
        .wrap(&app.prompt, size, inner.w as f32 - 4.0, usize::MAX);
    let shown = &lines[lines.len().saturating_sub(max_lines)..];
    let mut end = (inner.x as f32, inner.y as f32);
    for (i, line) in shown.iter().enumerate() {
        let top = inner.y as f32 + i as f32 * line_h;
        let baseline = top + (line_h + ascent - descent) / 2.0;
        b.text_at(inner.x as f32, baseline, line, size, theme::TEXT);
        end = (inner.x as f32 + b.font.measure(line, size), top);
    }
    caret(b, end.0 + 2.0, end.1, line_h, ascent, descent);
}

fn caret(b: &mut Builder<'_>, x: f32, top: f32, line_h: f32, ascent: f32, descent: f32) {
    let height = ascent + descent;
    let y = top + (line_h - height) / 2.0;
    b.fill(
        Area::new(x, y, (2.0 * b.metrics.scale).max(2.0), height),
        theme::ACCENT,
        0.0,
    );
}
