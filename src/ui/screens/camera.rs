//! Camera: a live viewfinder cropped exactly as the generation will crop
//! the frame, the prompt it will be restyled with, the strength slider, and
//! the shutter ("Restyle").

use super::super::app::{ASPECTS, Action, App, STRENGTH_RANGE};
use super::super::scene::Area;
use super::super::theme::{self, TextStep};
use super::super::widgets::{Align, Builder, Kind, fit};

/// The viewfinder's aspect for the chosen output aspect.
fn aspect_ratio(aspect: usize) -> (u32, u32) {
    match ASPECTS[aspect.min(ASPECTS.len() - 1)].0 {
        "landscape" => (16, 9),
        "portrait" => (9, 16),
        _ => (1, 1),
    }
}

pub(super) fn build(app: &mut App, b: &mut Builder<'_>, body: Area) {
    let m = b.metrics;
    let pad = m.space(3);
    let gap = m.space(3);
    let panel_w = (360.0 * m.scale).max(240.0).min(body.w as f32 * 0.45);
    let left = body.x as f32 + pad;
    let top = body.y as f32;
    let bottom = body.bottom() as f32 - pad;
    let finder_box = Area::new(
        left,
        top,
        body.w as f32 - 2.0 * pad - gap - panel_w,
        bottom - top,
    );
    let (aw, ah) = aspect_ratio(app.aspect);
    let finder = fit(finder_box, aw, ah);
    match (&app.viewfinder, &app.camera_problem) {
        (Some(frame), _) => {
            let frame = frame.clone();
            b.picture(finder, &frame);
        }
        (None, problem) => {
            b.placeholder(finder);
            let text = problem
                .clone()
                .unwrap_or_else(|| "Starting the camera…".to_string());
            b.paragraph(
                finder.inset(m.space(4)),
                &text,
                TextStep::Body,
                theme::TEXT_MUTED,
            );
        }
    }
    if app.camera_problem.is_none() {
        app.want_camera(finder.w.max(1) as u32, finder.h.max(1) as u32);
    }

    // The side panel: what the photo becomes, how much, and the actions.
    let x = finder_box.right() as f32 + gap;
    let mut y = top;
    let caption_h = b.size(TextStep::Caption) * 1.8;
    b.label(
        Area::new(x, y, panel_w, caption_h),
        "Restyle as",
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );
    y += caption_h;
    let body_h = (b.size(TextStep::Body) * 1.35).round() * 3.0;
    b.paragraph(
        Area::new(x, y, panel_w, body_h),
        app.prompt.trim(),
        TextStep::Body,
        theme::TEXT,
    );
    y += body_h + m.space(3);
    let (low, high, _) = STRENGTH_RANGE;
    b.label(
        Area::new(x, y, panel_w, caption_h),
        &format!("Strength {:.2}", app.strength),
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );
    y += caption_h;
    let slider_h = m.touch(56.0);
    b.slider(
        Area::new(x, y, panel_w, slider_h),
        (app.strength - low) / (high - low),
        Action::Strength,
    );
    y += slider_h;
    b.label(
        Area::new(x, y, panel_w, caption_h),
        "Lower keeps more of the photo",
        TextStep::Caption,
        theme::TEXT_MUTED,
        Align::Left,
    );

    let action_h = m.touch(60.0);
    let back_y = bottom - action_h;
    let shutter_y = back_y - m.space(2) - action_h;
    let ready = app.viewfinder.is_some();
    b.button(
        Area::new(x, shutter_y, panel_w, action_h),
        if ready {
            "Restyle"
        } else {
            "Waiting for camera"
        },
        if ready { Kind::Primary } else { Kind::Plain },
        TextStep::Body,
        Action::Shutter,
    );
    b.button(
        Area::new(x, back_y, panel_w, action_h),
        "Back",
        Kind::Plain,
        TextStep::Body,
        Action::OpenCompose,
    );
}
