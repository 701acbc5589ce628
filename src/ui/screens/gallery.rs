//! Gallery: a scrolling grid of thumbnails (decoded off the UI thread by the
//! runtime), and the full view of one image with its prompt, seed, size and
//! Delete.

use super::super::app::{Action, App};
use super::super::scene::Area;
use super::super::theme::{self, TextStep};
use super::super::widgets::{Align, Builder, Kind, fit};

pub(super) fn build_grid(app: &mut App, b: &mut Builder<'_>, body: Area) {
    let m = b.metrics;
    let pad = m.space(3);
    let gap = m.space(2);
    let header_h = m.touch(64.0);
    let left = pad;
    let width = b.width - 2.0 * pad;
    let grid_top = body.y as f32 + header_h + gap;

    if app.gallery.is_empty() {
        header(app, b, body, header_h);
        let line_h = b.size(TextStep::Title) * 1.6;
        let y = grid_top + (b.height - grid_top) / 3.0;
        b.label(
            Area::new(left, y, width, line_h),
            "No images yet",
            TextStep::Title,
            theme::TEXT,
            Align::Centre,
        );
        b.label(
            Area::new(left, y + line_h, width, line_h),
            "Everything you generate is kept here.",
            TextStep::Body,
            theme::TEXT_MUTED,
            Align::Centre,
        );
        return;
    }

    let target = (240.0 * m.scale).max(140.0);
    let columns = (((width + gap) / (target + gap)).floor() as usize).max(2);
    let cell = (width - gap * (columns as f32 - 1.0)) / columns as f32;
    let rows = app.gallery.len().div_ceil(columns);
    let content_h = rows as f32 * (cell + gap) - gap;
    let view_h = b.height - grid_top - pad;
    app.set_max_scroll(content_h - view_h);
    let scroll = app.scroll;

    let entries = app.gallery.clone();
    for (i, entry) in entries.iter().enumerate() {
        let (row, col) = (i / columns, i % columns);
        let y = grid_top + row as f32 * (cell + gap) - scroll;
        // Build only what is on screen, and ask for one row beyond it.
        if y > b.height + cell || y + cell < grid_top - cell {
            continue;
        }
        let area = Area::new(left + col as f32 * (cell + gap), y, cell, cell);
        app.want_thumbnail(&entry.id, area.w as u32, area.h as u32);
        match app.thumbnails.get(&entry.id) {
            Some(picture) => b.picture(area, picture),
            None => b.placeholder(area),
        }
        if b.is_pressed(&Action::Open(entry.id.clone())) {
            b.fill_alpha(area, theme::TEXT, 60, 0.0);
        }
        if y + cell > grid_top && y < b.height {
            b.hit(area, Action::Open(entry.id.clone()));
        }
    }
    // The header covers thumbnails scrolled under it.
    header(app, b, body, header_h + gap);
}

fn header(app: &App, b: &mut Builder<'_>, body: Area, height: f32) {
    let m = b.metrics;
    let pad = m.space(3);
    let bar = Area::new(0.0, body.y as f32, b.width, height);
    b.fill(bar, theme::BACKGROUND, 0.0);
    let row_h = m.touch(64.0);
    let title_w = b.font.measure("Gallery", b.size(TextStep::Title)) + m.space(3);
    b.label(
        Area::new(pad, body.y as f32, title_w, row_h),
        "Gallery",
        TextStep::Title,
        theme::TEXT,
        Align::Left,
    );
    let count = match app.gallery.len() {
        1 => "1 image".to_string(),
        n => format!("{n} images"),
    };
    b.label(
        Area::new(pad + title_w, body.y as f32, 300.0 * m.scale, row_h),
        &count,
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );
    let w = (200.0 * m.scale).max(140.0);
    let h = m.touch(56.0);
    b.button(
        Area::new(b.width - pad - w, body.y as f32 + (row_h - h) / 2.0, w, h),
        "New image",
        Kind::Primary,
        TextStep::Body,
        Action::OpenCompose,
    );
}

pub(super) fn build_viewer(app: &mut App, b: &mut Builder<'_>, body: Area, id: &str) {
    let m = b.metrics;
    let pad = m.space(3);
    let inner = body.inset(pad);
    let Some(entry) = app.gallery.iter().find(|e| e.id == id).cloned() else {
        b.label(
            inner,
            "This image is gone",
            TextStep::Title,
            theme::TEXT_MUTED,
            Align::Centre,
        );
        b.button(
            Area::new(
                inner.x as f32,
                inner.bottom() as f32 - m.touch(64.0),
                200.0 * m.scale.max(0.8),
                m.touch(64.0),
            ),
            "Back",
            Kind::Plain,
            TextStep::Body,
            Action::OpenGallery,
        );
        return;
    };
    let panel_w = (inner.w as f32 * 0.34).max(240.0);
    let image_box = Area::new(
        inner.x as f32,
        inner.y as f32,
        inner.w as f32 - panel_w - m.space(4),
        inner.h as f32,
    );
    let shown = fit(image_box, entry.width, entry.height);
    app.want_full(id, shown.w as u32, shown.h as u32);
    match (&app.full, app.thumbnails.get(id)) {
        (Some((full_id, picture)), _) if full_id == id => b.picture(shown, picture),
        (_, Some(thumbnail)) => b.picture(shown, thumbnail),
        _ => b.placeholder(shown),
    }

    let x = image_box.right() as f32 + m.space(4);
    let mut y = inner.y as f32;
    let caption_h = b.size(TextStep::Caption) * 1.6;
    b.label(
        Area::new(x, y, panel_w, caption_h),
        "Prompt",
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );
    y += caption_h;
    let body_h = (b.size(TextStep::Body) * 1.35).round();
    let button_h = m.touch(64.0);
    let facts_h = 2.0 * caption_h + m.space(3);
    let prompt_room = inner.bottom() as f32 - button_h - m.space(4) - facts_h - y;
    let lines = b.paragraph(
        Area::new(x, y, panel_w, prompt_room.max(body_h)),
        &entry.prompt,
        TextStep::Body,
        theme::TEXT,
    );
    y += lines as f32 * body_h + m.space(3);
    b.label(
        Area::new(x, y, panel_w, caption_h),
        &format!("Seed {}", entry.seed),
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );
    y += caption_h;
    b.label(
        Area::new(x, y, panel_w, caption_h),
        &format!(
            "{} × {}  ·  {}",
            entry.width,
            entry.height,
            super::human_bytes(entry.bytes)
        ),
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );

    let by = inner.bottom() as f32 - button_h;
    let bw = (panel_w - m.space(2)) / 2.0;
    b.button(
        Area::new(x, by, bw, button_h),
        "Back",
        Kind::Plain,
        TextStep::Body,
        Action::OpenGallery,
    );
    b.button(
        Area::new(x + bw + m.space(2), by, bw, button_h),
        "Delete",
        Kind::Danger,
        TextStep::Body,
        Action::AskDelete(id.to_string()),
    );
}
