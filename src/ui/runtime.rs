//! Runs the touch UI against the Studio core: feeds input and core events
//! into the [`App`], carries out its commands (submit, cancel, delete,
//! decode thumbnails on a loader thread), and renders changed areas to the
//! surface. Used by the service with the KMS surface and by tests and
//! `screenshot` with the headless one; no decoding of gallery PNGs ever
//! happens on this thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_skia::Pixmap;
use tokio::sync::broadcast;

use super::UiError;
use super::app::{App, Command, Status};
use super::headless::Headless;
use super::input::UiEvent;
use super::scene::{Area, Picture, Renderer};
use super::surface::Surface;
use super::text::Font;
use crate::camera::Frame;
use crate::pipeline::Image;
use crate::pipeline::output::resample_exact;
use crate::store::{read_png, write_png};
use crate::studio::{Event, Studio};
use crate::{Error, Result as CoreResult};

/// How often the status line re-reads free space and the queue.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// A decode request for the loader thread.
struct Load {
    id: String,
    source: PathBuf,
    width: u32,
    height: u32,
    thumbnail: bool,
}

/// A decoded picture, ready to draw (or why not).
struct Loaded {
    id: String,
    thumbnail: bool,
    result: CoreResult<Pixmap>,
}

/// What the viewfinder thread sends the UI.
enum FromCamera {
    /// A frame resampled to the viewfinder's size.
    Frame(Pixmap),
    /// The camera stopped or never started; why, in a user's words.
    Failed(String),
}

/// The camera streaming into the viewfinder on its own thread. Dropping it
/// stops the stream (the thread notices within one frame).
struct Viewfinder {
    stop: Arc<AtomicBool>,
    /// The newest full-size frame: what the shutter takes, at once.
    latest: Arc<Mutex<Option<Frame>>>,
    /// The UI took the last viewfinder picture: the camera thread resamples
    /// the next frame only then, so a slow UI costs no wasted resamples.
    wanted: Arc<AtomicBool>,
    frames: mpsc::Receiver<FromCamera>,
}

impl Drop for Viewfinder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Viewfinder {
    /// Open the configured camera at the size a capture for `spec` would use
    /// and stream it, each frame cropped to fill `width` x `height`.
    fn start(studio: &Studio, spec: &crate::studio::JobSpec, width: u32, height: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(Mutex::new(None));
        let wanted = Arc::new(AtomicBool::new(true));
        // One frame in flight: a slow UI drops frames instead of queueing them.
        let (send, frames) = mpsc::sync_channel(1);
        let config = studio.camera_config().clone();
        let target = studio.generation_size(spec);
        let thread = std::thread::Builder::new().name("ui-camera".into()).spawn({
            let (stop, latest, wanted) = (stop.clone(), latest.clone(), wanted.clone());
            move || {
                let outcome = target.and_then(|target| {
                    let camera = crate::camera::Camera::open(&config, target)?;
                    let (format, ..) = camera.format();
                    let device = camera.path().to_path_buf();
                    camera.stream(&mut |image| {
                        if wanted.swap(false, Ordering::AcqRel) {
                            match resample_exact(&image, width, height)
                                .and_then(|small| opaque_pixmap(&small))
                            {
                                Ok(small) => {
                                    let _ = send.try_send(FromCamera::Frame(small));
                                }
                                Err(_) => wanted.store(true, Ordering::Release),
                            }
                        }
                        *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(Frame {
                            image,
                            device: device.clone(),
                            format,
                        });
                        !stop.load(Ordering::Relaxed)
                    })
                });
                if let Err(e) = outcome {
                    log::warn!("ui: viewfinder: {e}");
                    let _ = send.send(FromCamera::Failed(camera_words(&e)));
                }
            }
        });
        if let Err(e) = thread {
            log::warn!("ui: cannot start the camera thread: {e}");
        }
        Viewfinder {
            stop,
            latest,
            wanted,
            frames,
        }
    }
}

/// A camera error as the viewfinder says it.
fn camera_words(error: &Error) -> String {
    match error {
        Error::Camera { reason, device } if device.is_empty() => format!("No camera: {reason}"),
        Error::Camera { reason, device } => format!("The camera {device} {reason}"),
        other => other.to_string(),
    }
}

/// See the module doc.
pub struct Runtime {
    studio: Arc<Studio>,
    app: App,
    font: Font,
    renderer: Renderer,
    surface: Box<dyn Surface>,
    events: broadcast::Receiver<Event>,
    loads: mpsc::Sender<Load>,
    loaded: mpsc::Receiver<Loaded>,
    status_read: Option<Instant>,
    next_key: u64,
    cache_dir: PathBuf,
    mirror: Option<Headless>,
    viewfinder: Option<Viewfinder>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("surface", &self.surface.describe())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A UI on `surface` for `studio`; thumbnails are cached under
    /// `cache_dir`.
    pub fn new(
        studio: Arc<Studio>,
        surface: Box<dyn Surface>,
        font: Font,
        cache_dir: PathBuf,
    ) -> Result<Self, UiError> {
        let (width, height) = surface.size();
        let renderer = Renderer::new(width, height)
            .ok_or_else(|| UiError::Display(format!("bad frame size {width}x{height}")))?;
        let (loads, requests) = mpsc::channel::<Load>();
        let (done, loaded) = mpsc::channel::<Loaded>();
        std::thread::Builder::new()
            .name("ui-loader".into())
            .spawn({
                let cache_dir = cache_dir.clone();
                move || loader(requests, done, cache_dir)
            })
            .map_err(|e| UiError::Display(format!("cannot start the image loader: {e}")))?;
        let events = studio.subscribe();
        let mut runtime = Runtime {
            app: App::new(width, height),
            studio,
            font,
            renderer,
            surface,
            events,
            loads,
            loaded,
            status_read: None,
            next_key: 1,
            cache_dir,
            mirror: None,
            viewfinder: None,
        };
        runtime.refresh_gallery();
        runtime.follow_running_job();
        Ok(runtime)
    }

    /// Show the UI on another surface (a display appeared or went away),
    /// copying every frame into `mirror` too when given (the headless frame
    /// D-Bus `Screenshot` reads, while a display is the surface).
    pub fn set_surface(
        &mut self,
        surface: Box<dyn Surface>,
        mirror: Option<Headless>,
    ) -> Result<(), UiError> {
        let (w, h) = surface.size();
        if (w, h) != self.surface.size() {
            self.renderer = Renderer::new(w, h)
                .ok_or_else(|| UiError::Display(format!("bad frame size {w}x{h}")))?;
            self.app.resize(w, h);
        }
        if let Some(mirror) = &mirror {
            mirror.resize(w, h)?;
        }
        self.surface = surface;
        self.mirror = mirror;
        self.invalidate();
        Ok(())
    }

    /// The UI state (tests read screens, areas and the prompt from it).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// One input event.
    pub fn feed(&mut self, event: UiEvent, now: Instant) {
        match event {
            UiEvent::Press { x, y } => self.app.press(x, y, now),
            UiEvent::Move { x, y } => self.app.motion(x, y),
            UiEvent::Release => self.app.release(now),
            UiEvent::Key(key) => self.app.key(key),
        }
    }

    /// When the loop should wake at the latest (long press, key repeat).
    pub fn deadline(&self) -> Option<Instant> {
        self.app.deadline()
    }

    /// Take in core events and decoded pictures, let time pass, run
    /// commands, and draw what changed.
    pub fn pump(&mut self, now: Instant) -> Result<(), UiError> {
        self.app.tick(now);
        self.drain_events();
        while let Ok(loaded) = self.loaded.try_recv() {
            match loaded.result {
                Ok(pixmap) => {
                    let picture = self.wrap(pixmap);
                    if loaded.thumbnail {
                        self.app.thumbnail_ready(loaded.id, picture);
                    } else {
                        self.app.full_ready(loaded.id, picture);
                    }
                }
                Err(e) => self.app.load_failed(&loaded.id, &e),
            }
        }
        if let Some(viewfinder) = &self.viewfinder {
            let mut newest = None;
            while let Ok(update) = viewfinder.frames.try_recv() {
                newest = Some(update);
            }
            match newest {
                Some(FromCamera::Frame(pixmap)) => {
                    viewfinder.wanted.store(true, Ordering::Release);
                    let picture = self.wrap(pixmap);
                    self.app.viewfinder_frame(picture);
                }
                Some(FromCamera::Failed(why)) => {
                    self.viewfinder = None;
                    self.app.camera_failed(why);
                }
                None => {}
            }
        }
        if self
            .status_read
            .is_none_or(|t| now.duration_since(t) >= STATUS_EVERY)
        {
            self.status_read = Some(now);
            self.app.set_status(self.read_status());
        }
        self.run_commands();
        self.draw()?;
        // Drawing can ask for thumbnails of newly visible cells.
        self.run_commands();
        Ok(())
    }

    fn read_status(&self) -> Status {
        Status {
            model: match self.studio.model() {
                Ok(info) => info.name.clone(),
                Err(_) => "no model".into(),
            },
            queued: self.studio.queue_length(),
            bytes_free: self.studio.gallery().bytes_free().ok(),
        }
    }

    fn drain_events(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(Event::Changed(status)) => {
                    // Only a new job changes the queue length (Finished
                    // covers the end); steps and tiles leave it alone.
                    if status.state == crate::studio::JobState::Queued {
                        self.status_read = None;
                    }
                    let prompt = self.studio.prompt(status.id).unwrap_or_default();
                    self.app.job_changed(status, &prompt);
                }
                Ok(Event::Preview { id, png }) => {
                    if let Ok(pixmap) = Pixmap::decode_png(&png) {
                        let picture = self.wrap(pixmap);
                        self.app.job_preview(id, picture);
                    }
                }
                Ok(Event::Finished { .. }) => self.status_read = None,
                Ok(Event::ImageSaved { .. }) => {
                    self.refresh_gallery();
                    self.status_read = None;
                }
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    log::debug!("ui: skipped {missed} core events");
                    self.refresh_gallery();
                    self.follow_running_job();
                }
                Err(_) => break,
            }
        }
    }

    fn refresh_gallery(&mut self) {
        let gallery = self.studio.gallery();
        self.app.set_gallery(gallery.list(0, gallery.len()));
    }

    fn follow_running_job(&mut self) {
        for id in self.studio.jobs() {
            if let Some(status) = self.studio.status(id)
                && !status.state.is_final()
            {
                let prompt = self.studio.prompt(id).unwrap_or_default();
                self.app.job_changed(status, &prompt);
            }
        }
    }

    fn run_commands(&mut self) {
        for command in self.app.take_commands() {
            match command {
                Command::Submit(spec) => {
                    let result = self.studio.submit(spec);
                    if let Ok(id) = result {
                        log::info!("ui: submitted job {id}");
                    }
                    self.app.submitted(result);
                    self.status_read = None;
                }
                Command::Cancel(id) => {
                    if let Err(e) = self.studio.cancel(id) {
                        log::warn!("ui: cancel job {id}: {e}");
                    }
                }
                Command::Delete(id) => {
                    let result = self.studio.gallery().delete(&id);
                    if result.is_ok() {
                        log::info!("ui: deleted image {id}");
                        self.forget_thumbnails(&id);
                    }
                    self.app.deleted(&id, result);
                    self.refresh_gallery();
                    self.status_read = None;
                }
                Command::StartCamera { width, height } => {
                    let spec = self.app.job_spec().unwrap_or_default();
                    self.viewfinder = Some(Viewfinder::start(&self.studio, &spec, width, height));
                }
                Command::StopCamera => self.viewfinder = None,
                Command::SubmitFromCamera(mut spec) => {
                    let frame = self
                        .viewfinder
                        .as_ref()
                        .and_then(|v| v.latest.lock().unwrap_or_else(|p| p.into_inner()).clone());
                    let result = match frame {
                        Some(frame) => {
                            spec.source = Some(frame.describe());
                            spec.init_image = Some(Arc::new(frame.image));
                            self.studio.submit(spec)
                        }
                        None => Err(Error::Camera {
                            device: String::new(),
                            reason: "has not sent a frame yet".into(),
                        }),
                    };
                    if let Ok(id) = result {
                        log::info!("ui: submitted camera job {id}");
                    }
                    self.app.submitted(result);
                    self.status_read = None;
                }
                Command::LoadThumbnail { id, width, height } => self.load(id, width, height, true),
                Command::LoadFull { id, width, height } => self.load(id, width, height, false),
            }
        }
    }

    fn forget_thumbnails(&self, id: &str) {
        let dir = self.cache_dir.join("thumbnails");
        let prefix = format!("{id}-");
        for item in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if item.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(item.path());
            }
        }
    }

    fn load(&mut self, id: String, width: u32, height: u32, thumbnail: bool) {
        match self.studio.gallery().path_of(&id) {
            Ok(source) => {
                let _ = self.loads.send(Load {
                    id,
                    source,
                    width,
                    height,
                    thumbnail,
                });
            }
            Err(e) => self.app.load_failed(&id, &e),
        }
    }

    fn wrap(&mut self, pixmap: Pixmap) -> Picture {
        self.next_key += 1;
        Picture {
            key: self.next_key,
            pixmap: Arc::new(pixmap),
        }
    }

    /// Render and present if anything changed; returns the damaged areas.
    pub fn draw(&mut self) -> Result<Vec<Area>, UiError> {
        if !self.app.needs_redraw() {
            return Ok(Vec::new());
        }
        let nodes = self.app.scene(&self.font);
        let damage = self.renderer.render(nodes, &self.font);
        self.surface.present(self.renderer.frame(), &damage)?;
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.present(self.renderer.frame(), &damage)?;
        }
        Ok(damage)
    }

    /// Repaint everything on the next draw (a display came back).
    pub fn invalidate(&mut self) {
        self.renderer.invalidate();
        self.app.redraw();
    }
}

/// The loader thread: decode (or read the cached thumbnail), resample,
/// send back. Ends when the runtime drops its sender.
fn loader(requests: mpsc::Receiver<Load>, done: mpsc::Sender<Loaded>, cache_dir: PathBuf) {
    let thumbs = cache_dir.join("thumbnails");
    while let Ok(load) = requests.recv() {
        let cache = thumbs.join(format!("{}-{}x{}.png", load.id, load.width, load.height));
        let result = if load.thumbnail && cache.is_file() {
            read_png(&cache)
        } else {
            let made = read_png(&load.source)
                .and_then(|image| resample_exact(&image, load.width, load.height));
            if let (true, Ok(image)) = (load.thumbnail, &made) {
                let saved = std::fs::create_dir_all(&thumbs)
                    .map_err(|e| Error::io(&thumbs, e))
                    .and_then(|()| write_png(&cache, image, &[]));
                if let Err(e) = saved {
                    log::debug!("ui: thumbnail cache: {e}");
                }
            }
            made
        };
        let result = result.and_then(|image| opaque_pixmap(&image));
        if done
            .send(Loaded {
                id: load.id,
                thumbnail: load.thumbnail,
                result,
            })
            .is_err()
        {
            break;
        }
    }
}

/// An RGB image as an opaque premultiplied pixmap (done on the loader
/// thread, so the UI thread only wraps it).
fn opaque_pixmap(image: &Image) -> CoreResult<Pixmap> {
    let rgba = image
        .rgb
        .chunks_exact(3)
        .flat_map(|rgb| [rgb[0], rgb[1], rgb[2], 255])
        .collect();
    tiny_skia::IntSize::from_wh(image.width, image.height)
        .and_then(|size| Pixmap::from_vec(rgba, size))
        .ok_or_else(|| {
            Error::invalid(
                "image",
                format!("bad size {}x{}", image.width, image.height),
            )
        })
}
