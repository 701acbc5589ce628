//! One module per screen, plus what every screen shares: the status line
//! and modal dialogs. Screens read the [`App`] and describe themselves
//! through the widget [`Builder`]; they never know which surface shows them.

mod camera;
mod compose;
mod gallery;
mod progress;

use super::app::{Action, App, Dialog, Screen, human_bytes};
use super::scene::Area;
use super::theme::{self, TextStep};
use super::widgets::{Align, Builder, Kind};
use crate::studio::JobState;

/// Build the whole frame for the app's current screen and dialog.
pub(super) fn build(app: &mut App, b: &mut Builder<'_>) {
    let top = status_height(b);
    let body = Area::new(0.0, top, b.width, b.height - top);
    match app.screen.clone() {
        Screen::Compose => compose::build(app, b, body),
        Screen::Camera => camera::build(app, b, body),
        Screen::Progress => progress::build(app, b, body),
        Screen::Gallery => gallery::build_grid(app, b, body),
        Screen::Viewer(id) => gallery::build_viewer(app, b, body, &id),
    }
    // The status line sits above scrolled content.
    status_line(app, b);
    if let Some(dialog) = app.dialog.clone() {
        build_dialog(b, &dialog);
    }
}

fn status_height(b: &Builder<'_>) -> f32 {
    b.metrics.touch(56.0)
}

/// The top line: model, queue, free storage, and the running job as a pill
/// that opens its progress.
fn status_line(app: &App, b: &mut Builder<'_>) {
    let m = b.metrics;
    let height = status_height(b);
    let pad = m.space(3);
    b.fill(Area::new(0.0, 0.0, b.width, height), theme::BACKGROUND, 0.0);
    let mut facts = vec![app.status.model.clone()];
    facts.push(match app.status.queued {
        0 => "queue empty".to_string(),
        n => format!("{n} in queue"),
    });
    if let Some(free) = app.status.bytes_free {
        facts.push(format!("{} free", human_bytes(free)));
    }
    let pill_w = (220.0 * m.scale).max(160.0);
    let text_w = b.width - 3.0 * pad - pill_w;
    b.label(
        Area::new(pad, 0.0, text_w, height),
        &facts.join("  ·  "),
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );
    let running = app
        .job
        .as_ref()
        .filter(|j| !j.status.state.is_final() && app.screen != Screen::Progress);
    if let Some(job) = running {
        let pill = Area::new(
            b.width - pad - pill_w,
            m.space(0),
            pill_w,
            height - 2.0 * m.space(0),
        );
        let label = match job.status.state {
            JobState::Queued => "Waiting…".to_string(),
            _ => format!("Generating {}%", (job.status.progress * 100.0).floor()),
        };
        b.button(
            pill,
            &label,
            Kind::Selected,
            TextStep::Caption,
            Action::OpenProgress,
        );
    }
}

fn build_dialog(b: &mut Builder<'_>, dialog: &Dialog) {
    let m = b.metrics;
    // Dim everything and swallow taps outside the card.
    b.fill_alpha(b.screen(), theme::BACKGROUND, 190, 0.0);
    b.hit(b.screen(), Action::Backdrop);
    let pad = m.space(5);
    let width = (620.0 * m.scale).max(360.0).min(b.width - 2.0 * m.space(3));
    let button_h = m.touch(60.0);
    let (title, message, buttons): (String, String, Vec<(&str, Kind, Action)>) = match dialog {
        Dialog::ConfirmDelete(id) => (
            "Delete this image?".into(),
            "The picture is removed from storage. This cannot be undone.".into(),
            vec![
                ("Keep", Kind::Plain, Action::Dismiss),
                ("Delete", Kind::Danger, Action::ConfirmDelete(id.clone())),
            ],
        ),
        Dialog::Problem {
            title,
            message,
            gallery,
        } => {
            let mut buttons = Vec::new();
            if *gallery {
                buttons.push(("Open gallery", Kind::Plain, Action::OpenGallery));
            }
            buttons.push(("OK", Kind::Primary, Action::Dismiss));
            (title.clone(), message.clone(), buttons)
        }
    };
    let title_h = b.size(TextStep::Title) * 1.6;
    let body_size = b.size(TextStep::Body);
    let lines = b.font.wrap(&message, body_size, width - 2.0 * pad, 4).len() as f32;
    let body_h = lines * (body_size * 1.35).round();
    let height = pad + title_h + m.space(2) + body_h + m.space(5) + button_h + pad;
    let card = Area::new(
        (b.width - width) / 2.0,
        (b.height - height) / 2.0,
        width,
        height,
    );
    b.fill(card, theme::SURFACE, m.radius() * 1.5);
    let inner = card.inset(pad);
    b.label(
        Area::new(inner.x as f32, inner.y as f32, inner.w as f32, title_h),
        &title,
        TextStep::Title,
        theme::TEXT,
        Align::Left,
    );
    b.paragraph(
        Area::new(
            inner.x as f32,
            inner.y as f32 + title_h + m.space(2),
            inner.w as f32,
            body_h,
        ),
        &message,
        TextStep::Body,
        theme::TEXT_MUTED,
    );
    let gap = m.space(2);
    let button_w = ((inner.w as f32 - gap) / 2.0).min(240.0 * m.scale.max(0.8));
    let mut x = inner.right() as f32;
    let y = inner.bottom() as f32 - button_h;
    for (label, kind, action) in buttons.into_iter().rev() {
        x -= button_w;
        // Surface-coloured buttons would vanish on the card: outline them.
        let area = Area::new(x, y, button_w, button_h);
        b.button(area, label, kind, TextStep::Body, action);
        if kind == Kind::Plain {
            b.outline(area, theme::TEXT_MUTED, m.radius(), 1.0);
        }
        x -= gap;
    }
}
