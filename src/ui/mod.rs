//! The touch UI: a second front-end of the Studio core, in the service's
//! process. Screens describe frames ([`app`], [`screens`]), the
//! [`scene::Renderer`] repaints what changed, a [`surface::Surface`] shows
//! it (KMS on the board, memory in tests), and libinput feeds touches back.
//! It holds no pipeline logic: it submits jobs and follows events like any
//! D-Bus client.

pub mod app;
pub mod drm;
pub mod gesture;
pub mod headless;
pub mod input;
pub mod keyboard;
pub mod runtime;
pub mod scene;
mod screens;
pub mod surface;
pub mod text;
pub mod theme;
pub mod widgets;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::studio::Studio;

/// Why the UI cannot show or read input.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No display to draw on (no card, nothing connected); not a fault.
    #[error("no display: {0}")]
    NoDisplay(String),
    /// The display exists but could not be driven.
    #[error("display: {0}")]
    Display(String),
    /// Input devices could not be opened.
    #[error("input: {0}")]
    Input(String),
    /// The font could not be loaded.
    #[error("font: {0}")]
    Font(String),
}

/// How often the UI thread looks for a display that is not there yet.
const DISPLAY_RETRY: Duration = Duration::from_secs(5);
/// Longest sleep of the UI loop: bounds the delay of core events and of
/// noticing a stop request.
const IDLE_WAKE: Duration = Duration::from_millis(33);

/// The running UI thread; dropping it stops the UI and restores the display.
#[derive(Debug)]
pub struct UiHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for UiHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start the touch UI for `studio` as the config says. `None` when it is
/// disabled or cannot run at all (no font); a missing display is waited for
/// on the UI thread, so the service serves D-Bus either way.
pub fn spawn(studio: Arc<Studio>, config: &Config) -> Option<UiHandle> {
    if !config.ui.enabled {
        log::info!("touch UI disabled in the config");
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("ui".into())
        .spawn({
            let stop = stop.clone();
            let config = config.clone();
            move || run(studio, &config, &stop)
        });
    match thread {
        Ok(thread) => Some(UiHandle {
            stop,
            thread: Some(thread),
        }),
        Err(e) => {
            log::error!("cannot start the UI thread: {e}");
            None
        }
    }
}

fn run(studio: Arc<Studio>, config: &Config, stop: &AtomicBool) {
    let ui = &config.ui;
    let mut said_no_display = false;
    while !stop.load(Ordering::Relaxed) {
        let font = match text::Font::load(&ui.font) {
            Ok(font) => font,
            Err(e) => {
                log::error!("touch UI off: {e}");
                return;
            }
        };
        match drm::DrmSurface::open(&ui.card, &ui.mode, ui.rotation) {
            Ok(surface) => {
                said_no_display = false;
                log::info!("touch UI on {}", surface::Surface::describe(&surface));
                if let Err(e) = run_display(studio.clone(), config, surface, font, stop) {
                    log::warn!("touch UI stopped: {e}; looking for a display again");
                }
            }
            Err(e) => {
                if !said_no_display {
                    log::info!("{e}; serving D-Bus without the touch UI until a display appears");
                    said_no_display = true;
                }
                let until = Instant::now() + DISPLAY_RETRY;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(IDLE_WAKE);
                }
            }
        }
    }
}

fn run_display(
    studio: Arc<Studio>,
    config: &Config,
    surface: drm::DrmSurface,
    font: text::Font,
    stop: &AtomicBool,
) -> Result<(), UiError> {
    let ui = &config.ui;
    let physical = {
        let (w, h) = surface::Surface::size(&surface);
        if ui.rotation % 180 == 90 { (h, w) } else { (w, h) }
    };
    let orientation = input::Orientation {
        physical,
        rotation: ui.rotation % 360,
    };
    let mut input = match input::Input::open(&ui.input, orientation, ui.touch_calibration) {
        Ok(input) => {
            if input.devices() == 0 {
                log::info!("no input devices yet; the UI shows but cannot be touched until one appears");
            }
            Some(input)
        }
        Err(e) => {
            log::warn!("{e}; the UI shows but cannot be touched");
            None
        }
    };
    let mut runtime = runtime::Runtime::new(studio, Box::new(surface), font, config.state_dir.join("cache"))?;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = runtime
            .deadline()
            .map_or(IDLE_WAKE, |d| d.saturating_duration_since(now).min(IDLE_WAKE));
        if let Some(input) = input.as_mut() {
            {
                let fd = input.fd();
                let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
                let timeout = rustix::event::Timespec::try_from(wait).ok();
                let _ = rustix::event::poll(&mut fds, timeout.as_ref());
            }
            for event in input.read() {
                runtime.feed(event, Instant::now());
            }
        } else {
            std::thread::sleep(wait);
        }
        runtime.pump(Instant::now())?;
    }
    Ok(())
}
