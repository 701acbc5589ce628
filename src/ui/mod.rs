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

/// Frame size of the headless UI when no display is connected (what
/// `Screenshot` shows then), unless `[ui] mode` names one.
pub const HEADLESS_SIZE: (u32, u32) = (1280, 800);

/// The running UI thread; dropping it stops the UI and restores the display.
#[derive(Debug)]
pub struct UiHandle {
    stop: Arc<AtomicBool>,
    screen: headless::Headless,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UiHandle {
    /// What the UI shows now (on the display, or headless without one).
    pub fn screen(&self) -> headless::Headless {
        self.screen.clone()
    }
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
/// disabled or cannot run at all (no font). Without a display the UI runs
/// headless (for `Screenshot`) and takes the display when one appears; the
/// service serves D-Bus either way.
pub fn spawn(studio: Arc<Studio>, config: &Config) -> Option<UiHandle> {
    if !config.ui.enabled {
        log::info!("touch UI disabled in the config");
        return None;
    }
    let font = match text::Font::load(&config.ui.font) {
        Ok(font) => font,
        Err(e) => {
            log::error!("touch UI off: {e}");
            return None;
        }
    };
    let (w, h) = drm::parse_mode(&config.ui.mode).unwrap_or(HEADLESS_SIZE);
    let screen = match headless::Headless::new(w, h) {
        Ok(screen) => screen,
        Err(e) => {
            log::error!("touch UI off: {e}");
            return None;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new().name("ui".into()).spawn({
        let (stop, screen, config) = (stop.clone(), screen.clone(), config.clone());
        move || {
            if let Err(e) = run(studio, &config, font, screen, &stop) {
                log::error!("touch UI stopped: {e}");
            }
        }
    });
    match thread {
        Ok(thread) => Some(UiHandle {
            stop,
            screen,
            thread: Some(thread),
        }),
        Err(e) => {
            log::error!("cannot start the UI thread: {e}");
            None
        }
    }
}

fn run(
    studio: Arc<Studio>,
    config: &Config,
    font: text::Font,
    screen: headless::Headless,
    stop: &AtomicBool,
) -> Result<(), UiError> {
    let ui = &config.ui;
    let (w, h) = surface::Surface::size(&screen);
    // Without a display the headless frame Screenshot reads is the surface
    // itself; with one, it mirrors the display.
    let mut runtime = runtime::Runtime::new(
        studio,
        Box::new(screen.clone()),
        font,
        config.state_dir.join("cache"),
    )?;
    let mut headless = true;
    let mut said_no_display = false;
    while !stop.load(Ordering::Relaxed) {
        match drm::DrmSurface::open(&ui.card, &ui.mode, ui.rotation) {
            Ok(surface) => {
                said_no_display = false;
                log::info!("touch UI on {}", surface::Surface::describe(&surface));
                let physical = surface.physical_size();
                runtime.set_surface(Box::new(surface), Some(screen.clone()))?;
                headless = false;
                let orientation = input::Orientation {
                    physical,
                    rotation: ui.rotation % 360,
                };
                if let Err(e) = run_display(&mut runtime, config, orientation, stop) {
                    log::warn!("display lost: {e}; running headless until one appears");
                    // A display that fails at once must not spin the loop.
                    std::thread::sleep(DISPLAY_RETRY / 5);
                }
            }
            Err(e) => {
                if !said_no_display {
                    log::info!(
                        "{e}; serving D-Bus with the touch UI headless until a display appears"
                    );
                    said_no_display = true;
                }
                if !headless {
                    screen.resize(w, h)?;
                    runtime.set_surface(Box::new(screen.clone()), None)?;
                    headless = true;
                }
                let until = Instant::now() + DISPLAY_RETRY;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    runtime.pump(Instant::now())?;
                    std::thread::sleep(IDLE_WAKE);
                }
            }
        }
    }
    Ok(())
}

fn run_display(
    runtime: &mut runtime::Runtime,
    config: &Config,
    orientation: input::Orientation,
    stop: &AtomicBool,
) -> Result<(), UiError> {
    let ui = &config.ui;
    let mut input = match input::Input::open(&ui.input, orientation, ui.touch_calibration) {
        Ok(input) => {
            if input.devices() == 0 {
                log::info!(
                    "no input devices yet; the UI shows but cannot be touched until one appears"
                );
            }
            Some(input)
        }
        Err(e) => {
            log::warn!("{e}; the UI shows but cannot be touched");
            None
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = runtime.deadline().map_or(IDLE_WAKE, |d| {
            d.saturating_duration_since(now).min(IDLE_WAKE)
        });
        if let Some(input) = input.as_mut() {
            {
                let fd = input.fd();
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
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
