//! Progress: the followed job's stage, step, bar and live preview, with
//! Cancel. The preview sharpens as the latents denoise.

use super::super::app::{Action, App};
use super::super::scene::Area;
use super::super::theme::{self, TextStep};
use super::super::widgets::{Align, Builder, Kind};
use crate::studio::JobState;

pub(super) fn build(app: &mut App, b: &mut Builder<'_>, body: Area) {
    let m = b.metrics;
    let pad = m.space(4);
    let inner = body.inset(pad);
    let Some(job) = app.job.clone() else {
        nothing_running(b, inner);
        return;
    };
    let preview_side = (inner.h as f32).min(inner.w as f32 * 0.5);
    let preview = Area::new(inner.x as f32, inner.y as f32, preview_side, preview_side);
    match &job.preview {
        Some(picture) => b.picture(preview, picture),
        None => {
            b.placeholder(preview);
            b.label(
                preview,
                "Preview appears after the first step",
                TextStep::Caption,
                theme::TEXT_MUTED,
                Align::Centre,
            );
        }
    }

    let x = preview.right() as f32 + m.space(5);
    let width = inner.right() as f32 - x;
    let mut y = inner.y as f32;
    let title = match job.status.state {
        JobState::Queued => "Waiting to start",
        JobState::Running => "Generating",
        JobState::Done => "Done",
        JobState::Failed => "Failed",
        JobState::Cancelled => "Cancelled",
    };
    let title_h = b.size(TextStep::Title) * 1.5;
    b.label(
        Area::new(x, y, width, title_h),
        title,
        TextStep::Title,
        theme::TEXT,
        Align::Left,
    );
    y += title_h + m.space(1);
    let prompt_h = (b.size(TextStep::Body) * 1.35).round() * 3.0;
    b.paragraph(
        Area::new(x, y, width, prompt_h),
        &job.prompt,
        TextStep::Body,
        theme::TEXT_MUTED,
    );
    y += prompt_h + m.space(4);

    let line_h = b.size(TextStep::Body) * 1.6;
    let stage = match job.status.stage {
        "" => "Queued".to_string(),
        s => capitalise(s),
    };
    b.label(
        Area::new(x, y, width, line_h),
        &stage,
        TextStep::Body,
        theme::TEXT,
        Align::Left,
    );
    if job.status.steps > 0 {
        b.label(
            Area::new(x, y, width, line_h),
            &format!("Step {} of {}", job.status.step, job.status.steps),
            TextStep::Body,
            theme::TEXT_MUTED,
            Align::Right,
        );
    }
    y += line_h + m.space(1);
    b.progress_bar(
        Area::new(x, y, width, (12.0 * m.scale).max(8.0)),
        job.status.progress,
    );
    y += (12.0 * m.scale).max(8.0) + m.space(1);
    b.label(
        Area::new(x, y, width, line_h),
        &format!("{}%", (job.status.progress * 100.0).floor()),
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Right,
    );

    let button_h = m.touch(64.0);
    let button_w = ((width - m.space(2)) / 2.0).min(240.0 * m.scale.max(0.8));
    let by = inner.bottom() as f32 - button_h;
    b.button(
        Area::new(x, by, button_w, button_h),
        "Back",
        Kind::Plain,
        TextStep::Body,
        Action::OpenCompose,
    );
    if !job.status.state.is_final() {
        b.button(
            Area::new(x + button_w + m.space(2), by, button_w, button_h),
            "Cancel",
            Kind::Danger,
            TextStep::Body,
            Action::CancelJob,
        );
    }
}

fn nothing_running(b: &mut Builder<'_>, inner: Area) {
    let m = b.metrics;
    let line_h = b.size(TextStep::Title) * 1.6;
    let y = inner.y as f32 + inner.h as f32 / 3.0;
    b.label(
        Area::new(inner.x as f32, y, inner.w as f32, line_h),
        "Nothing is generating",
        TextStep::Title,
        theme::TEXT,
        Align::Centre,
    );
    let w = (240.0 * m.scale).max(160.0);
    let h = m.touch(64.0);
    b.button(
        Area::new(
            inner.x as f32 + (inner.w as f32 - w) / 2.0,
            y + line_h + m.space(4),
            w,
            h,
        ),
        "New image",
        Kind::Primary,
        TextStep::Body,
        Action::OpenCompose,
    );
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}
