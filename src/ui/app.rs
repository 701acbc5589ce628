//! The touch UI's state machine: which screen shows, what is typed, which
//! job it follows, what the gallery holds. Input and core events go in,
//! [`Command`]s for the core come out, and [`App::scene`] describes the
//! frame. It never touches the Studio, the display or a file itself, so the
//! same code runs on the board, in golden tests and in `screenshot`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::gesture::{Gesture, Tracker};
use super::keyboard::{Key, Keyboard};
use super::scene::{Area, Node, Picture};
use super::screens;
use super::text::Font;
use super::widgets::Builder;
use crate::Error;
use crate::store::Entry;
use crate::studio::{JobSpec, JobState, JobStatus};

/// Style presets offered as chips: (preset name known to the Studio, label).
pub const STYLES: [(&str, &str); 5] = [
    ("watercolor", "Watercolor"),
    ("3d-portrait", "3D portrait"),
    ("neon-noir", "Neon noir"),
    ("painterly", "Painterly"),
    ("photo", "Photo"),
];

/// Aspect choices: (request value, label).
pub const ASPECTS: [(&str, &str); 3] = [
    ("square", "Square"),
    ("landscape", "Landscape"),
    ("portrait", "Portrait"),
];

/// Something a finger can hit.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A keyboard key.
    Key(Key),
    /// The prompt field (focuses it; the keyboard is always there).
    PromptField,
    /// Toggle style chip `n` of [`STYLES`].
    Style(usize),
    /// Choose aspect `n` of [`ASPECTS`].
    Aspect(usize),
    /// Submit the prompt.
    Generate,
    /// Go to the compose screen.
    OpenCompose,
    /// Open the camera's viewfinder (image to image from a photo).
    OpenCamera,
    /// The strength slider (the value comes from where the finger is).
    Strength,
    /// Take the viewfinder's frame and restyle it with the prompt.
    Shutter,
    /// Go to the gallery.
    OpenGallery,
    /// Go to the progress screen of the followed job.
    OpenProgress,
    /// Cancel the followed job.
    CancelJob,
    /// Open gallery image by id.
    Open(String),
    /// Ask to delete the viewed image.
    AskDelete(String),
    /// Delete confirmed.
    ConfirmDelete(String),
    /// Close the dialog.
    Dismiss,
    /// Behind a dialog: swallows taps.
    Backdrop,
}

/// What the app wants the core to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Queue a job; answer with [`App::submitted`].
    Submit(JobSpec),
    /// Cancel a job.
    Cancel(u64),
    /// Delete a gallery image; answer with [`App::deleted`].
    Delete(String),
    /// Decode gallery image `id` to a `width` x `height` thumbnail (cropped
    /// to fill); answer with [`App::thumbnail_ready`].
    LoadThumbnail {
        /// Gallery id.
        id: String,
        /// Pixels across.
        width: u32,
        /// Pixels down.
        height: u32,
    },
    /// Decode gallery image `id` to fit `width` x `height`; answer with
    /// [`App::full_ready`].
    LoadFull {
        /// Gallery id.
        id: String,
        /// Box width.
        width: u32,
        /// Box height.
        height: u32,
    },
    /// Stream the camera into a `width` x `height` viewfinder (cropped to
    /// fill, as the generation will crop); answer with
    /// [`App::viewfinder_frame`] or [`App::camera_failed`].
    StartCamera {
        /// Viewfinder width.
        width: u32,
        /// Viewfinder height.
        height: u32,
    },
    /// Stop streaming.
    StopCamera,
    /// Queue an image-to-image job from the latest camera frame; answer
    /// with [`App::submitted`].
    SubmitFromCamera(JobSpec),
}

/// Image-to-image strength the camera screen starts at: enough to restyle,
/// little enough to keep the photo's composition.
pub const DEFAULT_CAMERA_STRENGTH: f32 = 0.6;

/// The strength slider's range and step.
pub const STRENGTH_RANGE: (f32, f32, f32) = (0.2, 1.0, 0.05);

/// A key from a physical keyboard (development, kiosks with keyboards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyInput {
    /// A printable character.
    Char(char),
    /// Backspace.
    Backspace,
    /// Enter: Generate on the compose screen.
    Enter,
    /// Escape: back.
    Escape,
}

/// Which screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// Prompt, styles, aspect, keyboard.
    Compose,
    /// The followed job's live progress.
    Progress,
    /// The camera's viewfinder, the strength slider and the shutter.
    Camera,
    /// Thumbnail grid.
    Gallery,
    /// One image full size with its details.
    Viewer(String),
}

/// A modal question or message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    /// "Delete this image?"
    ConfirmDelete(String),
    /// Something failed; `gallery` offers a way to free space.
    Problem {
        /// Headline.
        title: String,
        /// What happened and what to do.
        message: String,
        /// Offer "Open gallery".
        gallery: bool,
    },
}

/// The status line's facts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// Loaded model name, or why none is.
    pub model: String,
    /// Jobs waiting or running.
    pub queued: usize,
    /// Free bytes where images go (`None` when unknown).
    pub bytes_free: Option<u64>,
}

/// The job the UI follows: the one it submitted, else whatever runs.
#[derive(Debug, Clone)]
pub struct FollowedJob {
    /// Latest status.
    pub status: JobStatus,
    /// Its prompt.
    pub prompt: String,
    /// Latest latent preview.
    pub preview: Option<Picture>,
    /// Submitted from this UI (so finishing opens the result).
    pub ours: bool,
}

/// The UI state. See the module doc.
#[derive(Debug)]
pub struct App {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) screen: Screen,
    pub(super) dialog: Option<Dialog>,
    pub(super) prompt: String,
    pub(super) keyboard: Keyboard,
    pub(super) style: Option<usize>,
    pub(super) aspect: usize,
    pub(super) status: Status,
    pub(super) job: Option<FollowedJob>,
    pub(super) gallery: Vec<Entry>,
    pub(super) scroll: f32,
    pub(super) max_scroll: f32,
    pub(super) thumbnails: HashMap<String, Picture>,
    pub(super) full: Option<(String, Picture)>,
    pub(super) strength: f32,
    pub(super) viewfinder: Option<Picture>,
    pub(super) camera_problem: Option<String>,
    /// The viewfinder size the camera streams at, while it streams.
    camera_requested: Option<(u32, u32)>,
    requested: HashSet<String>,
    /// The viewer image last asked for: (id, width, height).
    full_requested: Option<(String, u32, u32)>,
    pressed: Option<Action>,
    tracker: Tracker,
    hits: Vec<(Area, Action)>,
    commands: Vec<Command>,
    dirty: bool,
}

impl App {
    /// A fresh UI on the compose screen for a `width` x `height` screen.
    pub fn new(width: u32, height: u32) -> Self {
        App {
            width,
            height,
            screen: Screen::Compose,
            dialog: None,
            prompt: String::new(),
            keyboard: Keyboard::default(),
            style: None,
            aspect: 0,
            status: Status::default(),
            job: None,
            gallery: Vec::new(),
            scroll: 0.0,
            max_scroll: 0.0,
            thumbnails: HashMap::new(),
            full: None,
            strength: DEFAULT_CAMERA_STRENGTH,
            viewfinder: None,
            camera_problem: None,
            camera_requested: None,
            requested: HashSet::new(),
            full_requested: None,
            pressed: None,
            tracker: Tracker::default(),
            hits: Vec::new(),
            commands: Vec::new(),
            dirty: true,
        }
    }

    /// The screen changed size (another display); lay out again.
    pub fn resize(&mut self, width: u32, height: u32) {
        (self.width, self.height) = (width, height);
        self.thumbnails.clear();
        self.requested.clear();
        self.full_requested = None;
        self.full = None;
        self.scroll = 0.0;
        if self.camera_requested.take().is_some() {
            self.commands.push(Command::StopCamera);
        }
        self.viewfinder = None;
        self.dirty = true;
    }

    /// Draw again on the next scene (the surface lost its pixels).
    pub fn redraw(&mut self) {
        self.dirty = true;
    }

    /// Logical screen size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The screen showing.
    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    /// The dialog showing, if any.
    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }

    /// The prompt typed so far.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The keyboard's page and shift.
    pub fn keyboard(&self) -> Keyboard {
        self.keyboard
    }

    /// The followed job.
    pub fn job(&self) -> Option<&FollowedJob> {
        self.job.as_ref()
    }

    /// Gallery entries as last told, newest first.
    pub fn gallery(&self) -> &[Entry] {
        &self.gallery
    }

    /// The camera screen's strength.
    pub fn strength(&self) -> f32 {
        self.strength
    }

    /// Whether the viewfinder has a frame to show.
    pub fn has_viewfinder_frame(&self) -> bool {
        self.viewfinder.is_some()
    }

    /// Why the camera shows no picture, if it failed.
    pub fn camera_problem(&self) -> Option<&str> {
        self.camera_problem.as_deref()
    }

    /// Gallery scroll offset in pixels.
    pub fn scroll(&self) -> f32 {
        self.scroll
    }

    /// Whether the thumbnail of gallery image `id` has arrived.
    pub fn has_thumbnail(&self, id: &str) -> bool {
        self.thumbnails.contains_key(id)
    }

    /// Where `action` was drawn in the last scene, topmost first (for
    /// scripted taps).
    pub fn area_of(&self, action: &Action) -> Option<Area> {
        self.hits
            .iter()
            .rev()
            .find(|(_, a)| a == action)
            .map(|(r, _)| *r)
    }

    /// Commands produced since the last call.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// Whether something changed since the last scene.
    pub fn needs_redraw(&self) -> bool {
        self.dirty
    }

    /// When the app next needs [`App::tick`] (long press, key repeat).
    pub fn deadline(&self) -> Option<Instant> {
        self.tracker.deadline()
    }

    /// Describe the current frame; also records the hit areas.
    pub fn scene(&mut self, font: &Font) -> Vec<Node> {
        let pressed = self.pressed.clone();
        let mut b = Builder::new(self.width, self.height, font, pressed.as_ref());
        screens::build(self, &mut b);
        let (nodes, hits) = b.finish();
        self.hits = hits;
        self.dirty = false;
        nodes
    }

    fn hit(&self, x: f32, y: f32) -> Option<Action> {
        // Later hits sit on top (dialogs), so search from the end.
        self.hits
            .iter()
            .rev()
            .find(|(area, _)| area.contains(x, y))
            .map(|(_, a)| a.clone())
    }

    /// A finger (or the pointer button) went down.
    pub fn press(&mut self, x: f32, y: f32, now: Instant) {
        let action = self.hit(x, y);
        let repeats = action == Some(Action::Key(Key::Backspace));
        self.tracker.down(x, y, now, repeats);
        if action == Some(Action::Strength) {
            self.slide_to(x);
        }
        if action.is_some() {
            self.pressed = action;
            self.dirty = true;
        }
    }

    /// The finger moved.
    pub fn motion(&mut self, x: f32, y: f32) {
        if self.pressed == Some(Action::Strength) {
            // The slider follows the finger; a drag never scrolls it away.
            let _ = self.tracker.moved(x, y);
            self.slide_to(x);
            return;
        }
        if let Some(Gesture::Drag { dy }) = self.tracker.moved(x, y) {
            if self.pressed.take().is_some() {
                self.dirty = true;
            }
            if self.screen == Screen::Gallery && self.dialog.is_none() {
                self.scroll_by(-dy);
            }
        }
    }

    /// The finger lifted.
    pub fn release(&mut self, now: Instant) {
        let pressed = self.pressed.take();
        if pressed.is_some() {
            self.dirty = true;
        }
        if let Some(Gesture::Tap { x, y }) = self.tracker.up(now) {
            // Only a tap that starts on the action triggers it.
            if let Some(action) = self.hit(x, y).filter(|a| Some(a) == pressed.as_ref()) {
                self.activate(action);
            }
        }
    }

    /// Time passed: long presses and key repeat.
    pub fn tick(&mut self, now: Instant) {
        match self.tracker.tick(now) {
            Some(Gesture::Repeat) => {
                if let Some(Action::Key(key)) = self.pressed.clone() {
                    self.type_key(key);
                }
            }
            Some(Gesture::LongPress { .. }) => {
                if let Some(Action::Open(id)) = self.pressed.take() {
                    self.dialog = Some(Dialog::ConfirmDelete(id));
                    self.dirty = true;
                }
            }
            _ => {}
        }
    }

    /// A physical key.
    pub fn key(&mut self, key: KeyInput) {
        if key == KeyInput::Escape {
            if self.dialog.take().is_none() {
                let back = match self.screen {
                    Screen::Viewer(_) => Screen::Gallery,
                    _ => Screen::Compose,
                };
                self.leave_camera(back);
            }
            self.dirty = true;
            return;
        }
        if self.screen != Screen::Compose || self.dialog.is_some() {
            return;
        }
        match key {
            KeyInput::Char(c) => {
                // A physical key arrives with its case; the on-screen shift
                // does not apply.
                Keyboard::insert(&mut self.prompt, c);
                self.dirty = true;
            }
            KeyInput::Backspace => self.type_key(Key::Backspace),
            KeyInput::Enter => self.type_key(Key::Enter),
            KeyInput::Escape => {}
        }
    }

    fn type_key(&mut self, key: Key) {
        if self.keyboard.press(key, &mut self.prompt) {
            self.generate();
        }
        self.dirty = true;
    }

    /// Set the strength from a finger at `x` on the slider, in steps.
    fn slide_to(&mut self, x: f32) {
        let Some(track) = self.area_of(&Action::Strength) else {
            return;
        };
        let (low, high, step) = STRENGTH_RANGE;
        let fraction = ((x - track.x as f32) / track.w.max(1) as f32).clamp(0.0, 1.0);
        let value = low + ((fraction * (high - low)) / step).round() * step;
        let value = (value * 100.0).round() / 100.0;
        if value != self.strength {
            self.strength = value;
            self.dirty = true;
        }
    }

    /// Leave the camera screen for `screen`, stopping the stream.
    fn leave_camera(&mut self, screen: Screen) {
        if self.camera_requested.take().is_some() {
            self.commands.push(Command::StopCamera);
        }
        self.viewfinder = None;
        self.screen = screen;
    }

    /// Ask the camera to stream into a viewfinder of this size (screens
    /// call this while the camera screen shows).
    pub(super) fn want_camera(&mut self, width: u32, height: u32) {
        if self.camera_requested != Some((width, height)) && self.camera_problem.is_none() {
            if self.camera_requested.is_some() {
                self.commands.push(Command::StopCamera);
            }
            self.camera_requested = Some((width, height));
            self.commands.push(Command::StartCamera { width, height });
        }
    }

    /// A viewfinder frame, already at the viewfinder's size.
    pub fn viewfinder_frame(&mut self, picture: Picture) {
        if self.screen == Screen::Camera {
            self.viewfinder = Some(picture);
            self.camera_problem = None;
            self.dirty = true;
        }
    }

    /// The camera could not stream (none, busy, unplugged).
    pub fn camera_failed(&mut self, why: String) {
        self.camera_requested = None;
        self.viewfinder = None;
        self.camera_problem = Some(why);
        self.dirty = true;
    }

    fn scroll_by(&mut self, dy: f32) {
        let scroll = (self.scroll + dy).clamp(0.0, self.max_scroll.max(0.0));
        if scroll != self.scroll {
            self.scroll = scroll;
            self.dirty = true;
        }
    }

    fn activate(&mut self, action: Action) {
        self.dirty = true;
        match action {
            Action::Key(key) => self.type_key(key),
            Action::PromptField | Action::Backdrop | Action::Strength => {}
            Action::Style(n) => self.style = if self.style == Some(n) { None } else { Some(n) },
            Action::Aspect(n) => self.aspect = n.min(ASPECTS.len() - 1),
            Action::Generate => self.generate(),
            Action::OpenCompose => self.leave_camera(Screen::Compose),
            Action::OpenCamera => {
                if self.prompt.trim().is_empty() {
                    self.dialog = Some(Dialog::Problem {
                        title: "Describe the new look first".into(),
                        message: "Type how the photo should look (\"a watercolour\", \"a 3D figure\"), then tap Camera.".into(),
                        gallery: false,
                    });
                } else {
                    self.camera_problem = None;
                    self.screen = Screen::Camera;
                }
            }
            Action::Shutter => self.shutter(),
            Action::OpenGallery => {
                self.dialog = None;
                self.leave_camera(Screen::Gallery);
            }
            Action::OpenProgress => self.screen = Screen::Progress,
            Action::CancelJob => {
                if let Some(job) = self.job.as_ref().filter(|j| !j.status.state.is_final()) {
                    self.commands.push(Command::Cancel(job.status.id));
                }
            }
            Action::Open(id) => {
                self.full = None;
                self.screen = Screen::Viewer(id);
            }
            Action::AskDelete(id) => self.dialog = Some(Dialog::ConfirmDelete(id)),
            Action::ConfirmDelete(id) => {
                self.dialog = None;
                self.commands.push(Command::Delete(id));
            }
            Action::Dismiss => self.dialog = None,
        }
    }

    /// The job a Generate tap would submit.
    pub fn job_spec(&self) -> Result<JobSpec, Error> {
        let mut spec = JobSpec {
            prompt: self.prompt.trim().to_string(),
            aspect: Some(ASPECTS[self.aspect].0.to_string()),
            ..JobSpec::default()
        };
        if let Some(n) = self.style {
            crate::studio::apply_style(&mut spec, STYLES[n].0)?;
        }
        Ok(spec)
    }

    fn generate(&mut self) {
        if self.prompt.trim().is_empty() {
            self.dialog = Some(Dialog::Problem {
                title: "Describe an image first".into(),
                message: "Type what you would like to see, then tap Generate.".into(),
                gallery: false,
            });
            return;
        }
        match self.job_spec() {
            Ok(spec) => self.commands.push(Command::Submit(spec)),
            Err(e) => self.submitted(Err(e)),
        }
    }

    fn shutter(&mut self) {
        if self.viewfinder.is_none() {
            return;
        }
        match self.job_spec() {
            Ok(spec) => self.commands.push(Command::SubmitFromCamera(JobSpec {
                strength: Some(self.strength),
                ..spec
            })),
            Err(e) => self.submitted(Err(e)),
        }
    }

    /// The core's answer to [`Command::Submit`].
    pub fn submitted(&mut self, result: Result<u64, Error>) {
        self.dirty = true;
        match result {
            Ok(id) => {
                self.job = Some(FollowedJob {
                    status: JobStatus::queued(id, 0),
                    prompt: self.prompt.trim().to_string(),
                    preview: None,
                    ours: true,
                });
                self.leave_camera(Screen::Progress);
            }
            Err(e) => self.dialog = Some(problem(&e)),
        }
    }

    /// A job's status changed (any job: D-Bus ones are followed too when
    /// the UI follows nothing running). `prompt` is the job's prompt.
    pub fn job_changed(&mut self, status: JobStatus, prompt: &str) {
        let follows_it = self.job.as_ref().is_some_and(|j| j.status.id == status.id);
        let free_to_follow = self.job.as_ref().is_none_or(|j| j.status.state.is_final());
        if !follows_it {
            if !(free_to_follow && status.state == JobState::Running) {
                return;
            }
            self.job = Some(FollowedJob {
                status: status.clone(),
                prompt: prompt.to_string(),
                preview: None,
                ours: false,
            });
        }
        self.dirty = true;
        let Some(job) = self.job.as_mut() else { return };
        job.status = status.clone();
        if !status.state.is_final() || self.screen != Screen::Progress {
            return;
        }
        match status.state {
            JobState::Done if job.ours => {
                self.full = None;
                self.screen = Screen::Viewer(status.image_id.clone());
            }
            JobState::Failed => {
                self.dialog = Some(Dialog::Problem {
                    title: "The image could not be made".into(),
                    message: status.error.clone(),
                    gallery: false,
                });
                self.screen = Screen::Compose;
            }
            JobState::Cancelled => self.screen = Screen::Compose,
            _ => {}
        }
    }

    /// A latent preview for job `id`.
    pub fn job_preview(&mut self, id: u64, picture: Picture) {
        if let Some(job) = self.job.as_mut().filter(|j| j.status.id == id) {
            job.preview = Some(picture);
            self.dirty = true;
        }
    }

    /// Fresh status line facts.
    pub fn set_status(&mut self, status: Status) {
        if status != self.status {
            self.status = status;
            self.dirty = true;
        }
    }

    /// The gallery's entries, newest first.
    pub fn set_gallery(&mut self, entries: Vec<Entry>) {
        if entries != self.gallery {
            let ids: HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            self.thumbnails.retain(|id, _| ids.contains(id.as_str()));
            self.requested.retain(|id| ids.contains(id.as_str()));
            self.gallery = entries;
            self.dirty = true;
        }
    }

    /// A thumbnail the core decoded.
    pub fn thumbnail_ready(&mut self, id: String, picture: Picture) {
        self.thumbnails.insert(id, picture);
        self.dirty = true;
    }

    /// A viewer image the core decoded.
    pub fn full_ready(&mut self, id: String, picture: Picture) {
        if self.screen == Screen::Viewer(id.clone()) {
            self.full = Some((id, picture));
            self.dirty = true;
        }
    }

    /// A thumbnail or viewer image could not be decoded.
    pub fn load_failed(&mut self, id: &str, error: &Error) {
        log::warn!("cannot show image {id}: {error}");
    }

    /// The core's answer to [`Command::Delete`].
    pub fn deleted(&mut self, id: &str, result: Result<(), Error>) {
        self.dirty = true;
        match result {
            Ok(()) => {
                self.gallery.retain(|e| e.id != id);
                self.thumbnails.remove(id);
                self.requested.remove(id);
                if matches!(&self.screen, Screen::Viewer(v) if v == id) {
                    self.screen = Screen::Gallery;
                }
                self.full = None;
            }
            Err(e) => self.dialog = Some(problem(&e)),
        }
    }

    /// Ask for a thumbnail once (screens call this for visible cells).
    pub(super) fn want_thumbnail(&mut self, id: &str, width: u32, height: u32) {
        if !self.thumbnails.contains_key(id) && self.requested.insert(id.to_string()) {
            self.commands.push(Command::LoadThumbnail {
                id: id.to_string(),
                width,
                height,
            });
        }
    }

    /// Ask for the viewer image once.
    pub(super) fn want_full(&mut self, id: &str, width: u32, height: u32) {
        let wanted = Some((id.to_string(), width, height));
        if self.full.as_ref().is_none_or(|(f, _)| f != id) && self.full_requested != wanted {
            self.full_requested = wanted;
            self.commands.push(Command::LoadFull {
                id: id.to_string(),
                width,
                height,
            });
        }
    }

    pub(super) fn set_max_scroll(&mut self, max_scroll: f32) {
        self.max_scroll = max_scroll.max(0.0);
        self.scroll = self.scroll.clamp(0.0, self.max_scroll);
    }
}

/// A dialog that says what went wrong in words a user can act on.
fn problem(error: &Error) -> Dialog {
    match error {
        Error::NoSpace { needed, free } => Dialog::Problem {
            title: "Not enough storage".into(),
            message: format!(
                "This image needs about {} but only {} is free. Delete some images in the gallery to make room.",
                human_bytes(*needed),
                human_bytes(*free)
            ),
            gallery: true,
        },
        Error::QuotaFull(why) => Dialog::Problem {
            title: "The gallery is full".into(),
            message: format!("{why}. Delete some images in the gallery to make room."),
            gallery: true,
        },
        Error::QueueFull(n) => Dialog::Problem {
            title: "Too many images waiting".into(),
            message: format!("{n} images are already queued. Try again when one has finished."),
            gallery: false,
        },
        other => Dialog::Problem {
            title: "That did not work".into(),
            message: other.to_string(),
            gallery: false,
        },
    }
}

/// Bytes as a person reads them: "14 kB", "812 MB", "12.4 GB" (a no-break space
/// keeps the number and unit on one line when text wraps).
pub fn human_bytes(bytes: u64) -> String {
    const MB: f64 = 1e6;
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1}\u{a0}GB", b / 1e9)
    } else if b >= 10.0 * MB {
        format!("{:.0}\u{a0}MB", b / MB)
    } else if b >= 0.1 * MB {
        format!("{:.1}\u{a0}MB", b / MB)
    } else {
        format!("{:.0}\u{a0}kB", b / 1e3)
    }
}
