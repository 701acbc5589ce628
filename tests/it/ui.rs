//! The touch UI issue's "must show" list: golden screenshots of every screen
//! in its main states at 1280x800 and 800x480 (through the headless surface,
//! the same code path as the display), and scripted touches against a real
//! Studio running the tiny bundle: typing, Generate, live progress, the
//! gallery, swipe scrolling, long press, delete, the no-storage error.
//!
//! `UPDATE_GOLDENS=1 cargo test --release --test it ui::` rewrites the goldens.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pocket_studio::config::Config;
use pocket_studio::store::{Entry, Gallery, ImageMeta, Limits};
use pocket_studio::studio::{JobSpec, JobState, JobStatus, Studio};
use pocket_studio::ui::app::{Action, App, Command, Dialog, Screen, Status};
use pocket_studio::ui::headless::Headless;
use pocket_studio::ui::input::UiEvent;
use pocket_studio::ui::keyboard::{Key, Page};
use pocket_studio::ui::runtime::Runtime;
use pocket_studio::ui::scene::{Picture, Renderer};
use pocket_studio::ui::surface::Surface;
use pocket_studio::ui::text::Font;
use pocket_studio::{Error, Image};
use tiny_skia::Pixmap;

const SIZES: [(u32, u32); 2] = [(1280, 800), (800, 480)];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The goldens are drawn with Liberation Sans 2.1.5, the font the Yocto
/// image ships; `auto` would fall back to DejaVu Sans, whose different
/// metrics would fail every golden for a reason the diff does not show.
fn font() -> Font {
    let font =
        Font::load("auto").expect("Liberation Sans (Debian fonts-liberation2) must be installed");
    assert!(
        font.path().ends_with("LiberationSans-Regular.ttf"),
        "the goldens need Liberation Sans (Debian fonts-liberation2), found {}",
        font.path().display()
    );
    font
}

/// A deterministic picture: a diagonal two-colour gradient keyed by `seed`.
fn pattern(width: u32, height: u32, seed: u64) -> Pixmap {
    let mut pixmap = Pixmap::new(width.max(1), height.max(1)).expect("pixmap");
    let hue = (seed * 47 % 256) as u8;
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    for (i, px) in pixmap.data_mut().chunks_exact_mut(4).enumerate() {
        let (x, y) = (
            (i as u32 % width.max(1)) as f32 / w,
            (i as u32 / width.max(1)) as f32 / h,
        );
        let t = (x + y) / 2.0;
        let r = (hue as f32 * (1.0 - t) + 230.0 * t) as u8;
        let g = (90.0 + 100.0 * y) as u8;
        let b = (255.0 - hue as f32 * t) as u8;
        px.copy_from_slice(&[r, g, b, 255]);
    }
    pixmap
}

fn picture(key: u64, pixmap: Pixmap) -> Picture {
    Picture {
        key,
        pixmap: Arc::new(pixmap),
    }
}

/// The number `entry` put at the end of an id (the pattern's seed).
fn seed_of(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn entry(n: u64) -> Entry {
    const PROMPTS: [&str; 4] = [
        "a lighthouse on a cliff at dusk, watercolor",
        "portrait of an old fisherman, 3d render",
        "rainy street in a neon city at night",
        "a bowl of lemons on a wooden table, photo",
    ];
    Entry {
        id: format!("20261128-0900{n:02}-{n}"),
        prompt: PROMPTS[n as usize % PROMPTS.len()].to_string(),
        seed: 1000 + n,
        width: 3840,
        height: if n.is_multiple_of(3) { 2160 } else { 3840 },
        created: 1_795_000_000 + n,
        bytes: 7_900_000 + n * 10_000,
    }
}

/// The pure app drawn through a renderer onto a headless surface, with the
/// core's answers (thumbnails, viewer images) given from `pattern`.
struct Harness {
    font: Font,
    app: App,
    renderer: Renderer,
    screen: Headless,
    now: Instant,
    keys: u64,
    submitted: Vec<JobSpec>,
}

impl Harness {
    fn new((w, h): (u32, u32)) -> Self {
        let mut harness = Harness {
            font: font(),
            app: App::new(w, h),
            renderer: Renderer::new(w, h).expect("renderer"),
            screen: Headless::new(w, h).expect("headless"),
            now: Instant::now(),
            keys: 1000,
            submitted: Vec::new(),
        };
        harness.app.set_status(Status {
            model: "tiny-sd".into(),
            queued: 0,
            bytes_free: Some(12_400_000_000),
        });
        harness.draw();
        harness
    }

    /// Draw what changed; answer picture requests; check the partial
    /// redraw left exactly the pixels of a full one.
    fn draw(&mut self) {
        for _ in 0..3 {
            let nodes = self.app.scene(&self.font);
            let damage = self.renderer.render(nodes.clone(), &self.font);
            self.screen
                .present(self.renderer.frame(), &damage)
                .expect("present");
            let mut fresh = Renderer::new(
                self.renderer.frame().width(),
                self.renderer.frame().height(),
            )
            .expect("renderer");
            fresh.render(nodes, &self.font);
            assert!(
                fresh.frame().data() == self.screen.snapshot().data(),
                "a partial redraw differs from a full redraw"
            );
            let commands = self.app.take_commands();
            if commands.is_empty() {
                return;
            }
            for command in commands {
                self.keys += 1;
                match command {
                    Command::LoadThumbnail { id, width, height } => {
                        let image = picture(self.keys, pattern(width, height, seed_of(&id)));
                        self.app.thumbnail_ready(id, image);
                    }
                    Command::LoadFull { id, width, height } => {
                        let image = picture(self.keys, pattern(width, height, seed_of(&id)));
                        self.app.full_ready(id, image);
                    }
                    Command::Submit(spec) => self.submitted.push(spec),
                    // The camera streams a test card into the viewfinder.
                    Command::StartCamera { width, height } => {
                        let frame = picture(self.keys, pattern(width, height, 5));
                        self.app.viewfinder_frame(frame);
                    }
                    Command::StopCamera => {}
                    Command::SubmitFromCamera(spec) => self.submitted.push(spec),
                    other => panic!("unexpected command {other:?}"),
                }
            }
        }
    }

    fn tap(&mut self, action: &Action) {
        let area = self
            .app
            .area_of(action)
            .unwrap_or_else(|| panic!("{action:?} is not on screen {:?}", self.app.screen()));
        let (x, y) = area.centre();
        self.app.press(x, y, self.now);
        self.draw();
        self.now += Duration::from_millis(80);
        self.app.release(self.now);
        self.now += Duration::from_millis(200);
        self.draw();
    }

    fn golden(&mut self, name: &str) {
        self.draw();
        let (w, h) = self.app.size();
        check_golden(&format!("{name}-{w}x{h}"), &self.screen.snapshot());
    }
}

/// Compare with `tests/golden/NAME.png`: at most 0.2 % of pixels may
/// differ, by at most 48 per channel (font rasterisation on another CPU).
fn check_golden(name: &str, actual: &Pixmap) {
    let path = repo().join("tests/golden").join(format!("{name}.png"));
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        actual.save_png(&path).expect("write golden");
        return;
    }
    let expected = Pixmap::load_png(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDENS=1 writes it)", path.display()));
    let failed = repo().join("target/golden-failures");
    let save_actual = || {
        std::fs::create_dir_all(&failed).expect("mkdir");
        actual
            .save_png(failed.join(format!("{name}.png")))
            .expect("save");
    };
    if (expected.width(), expected.height()) != (actual.width(), actual.height()) {
        save_actual();
        panic!(
            "{name}: size {}x{} vs golden {}x{}",
            actual.width(),
            actual.height(),
            expected.width(),
            expected.height()
        );
    }
    let mut off = 0usize;
    let mut worst = 0u8;
    for (a, e) in actual
        .data()
        .chunks_exact(4)
        .zip(expected.data().chunks_exact(4))
    {
        let d = a
            .iter()
            .zip(e)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0);
        worst = worst.max(d);
        if d > 4 {
            off += 1;
        }
    }
    let pixels = (actual.width() * actual.height()) as usize;
    if off * 500 > pixels || worst > 48 && off * 5000 > pixels {
        save_actual();
        panic!(
            "{name}: {off} of {pixels} pixels differ from the golden (worst by {worst}); see target/golden-failures/{name}.png"
        );
    }
}

fn type_on_keyboard(h: &mut Harness, text: &str) {
    for c in text.chars() {
        let key = match c {
            ' ' => Key::Space,
            c if c.is_uppercase() => {
                if !h.app.keyboard().shifted {
                    h.tap(&Action::Key(Key::Shift));
                }
                Key::Char(c.to_ascii_lowercase())
            }
            c => Key::Char(c),
        };
        h.tap(&Action::Key(key));
    }
}

fn running(id: u64, step: u32, steps: u32) -> JobStatus {
    JobStatus {
        id,
        state: JobState::Running,
        stage: "denoising",
        progress: step as f64 / steps as f64,
        step,
        steps,
        image_id: String::new(),
        output_path: String::new(),
        error: String::new(),
    }
}

/// Centres of the compose screen's letter keys and Go, as JSON: the arm64
/// system test taps them on the emulated tablet (tests/qemu/systest.py).
fn key_centres(app: &App) -> String {
    let mut keys: Vec<(String, (f32, f32))> = "abcdefghijklmnopqrstuvwxyz"
        .chars()
        .map(|c| {
            let area = app.area_of(&Action::Key(Key::Char(c))).expect("letter key");
            (c.to_string(), area.centre())
        })
        .collect();
    let go = app.area_of(&Action::Key(Key::Enter)).expect("Go key");
    keys.push(("Go".into(), go.centre()));
    let body: Vec<String> = keys
        .iter()
        .map(|(k, (x, y))| format!("  \"{k}\": [{x}, {y}]"))
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}

#[test]
fn golden_compose_screens() {
    for size in SIZES {
        let mut h = Harness::new(size);
        h.golden("compose-empty");
        let keys = repo().join(format!(
            "tests/golden/compose-keys-{}x{}.json",
            size.0, size.1
        ));
        if std::env::var_os("UPDATE_GOLDENS").is_some() {
            std::fs::write(&keys, key_centres(&h.app)).expect("write key centres");
        }
        assert_eq!(
            std::fs::read_to_string(&keys).expect("key centres (UPDATE_GOLDENS=1 writes them)"),
            key_centres(&h.app),
            "{} is stale",
            keys.display()
        );
        h.tap(&Action::Key(Key::Shift));
        assert!(h.app.keyboard().shifted);
        h.golden("compose-shifted");
        h.tap(&Action::Key(Key::Shift));
        type_on_keyboard(&mut h, "A lighthouse on a cliff at dusk");
        h.tap(&Action::Style(0));
        h.tap(&Action::Aspect(1));
        assert_eq!(h.app.prompt(), "A lighthouse on a cliff at dusk");
        h.golden("compose-typed");
        h.tap(&Action::Key(Key::Page(Page::Symbols)));
        h.golden("compose-symbols");
    }
}

#[test]
fn golden_progress_gallery_viewer_and_dialogs() {
    for size in SIZES {
        let mut h = Harness::new(size);
        type_on_keyboard(&mut h, "a lighthouse on a cliff at dusk");
        h.tap(&Action::Generate);
        let spec = match h.submitted.as_slice() {
            [spec] => spec.clone(),
            other => panic!("Generate should submit one job, got {other:?}"),
        };
        assert_eq!(spec.prompt, "a lighthouse on a cliff at dusk");
        h.app.submitted(Ok(7));
        h.app
            .job_changed(running(7, 10, 20), "a lighthouse on a cliff at dusk");
        h.app.job_preview(7, picture(1, pattern(64, 64, 3)));
        h.app.set_status(Status {
            model: "tiny-sd".into(),
            queued: 1,
            bytes_free: Some(12_400_000_000),
        });
        assert_eq!(h.app.screen(), &Screen::Progress);
        h.golden("progress-half");

        h.app.set_gallery((1..=9).map(entry).collect());
        h.tap(&Action::OpenCompose);
        h.tap(&Action::OpenGallery);
        h.golden("gallery");
        let id = entry(2).id;
        h.tap(&Action::Open(id.clone()));
        h.golden("viewer");
        h.tap(&Action::AskDelete(id.clone()));
        assert_eq!(h.app.dialog(), Some(&Dialog::ConfirmDelete(id.clone())));
        h.golden("delete-confirm");
        h.tap(&Action::Dismiss);

        h.tap(&Action::OpenGallery);
        h.tap(&Action::OpenCompose);
        h.app.submitted(Err(Error::NoSpace {
            needed: 95_000_000,
            free: 12_000_000,
        }));
        h.golden("no-storage");

        let mut empty = Harness::new(size);
        empty.tap(&Action::OpenGallery);
        empty.golden("gallery-empty");
    }
}

#[test]
fn golden_camera_screens_and_the_strength_slider() {
    for size in SIZES {
        let mut h = Harness::new(size);
        // No prompt yet: the camera asks for one first.
        h.tap(&Action::OpenCamera);
        assert!(matches!(h.app.dialog(), Some(Dialog::Problem { .. })));
        assert_eq!(h.app.screen(), &Screen::Compose);
        h.tap(&Action::Dismiss);
        type_on_keyboard(&mut h, "a watercolour");
        h.tap(&Action::OpenCamera);
        assert_eq!(h.app.screen(), &Screen::Camera);
        assert!(h.app.has_viewfinder_frame());
        assert_eq!(h.app.strength(), 0.6);
        h.golden("camera");

        // Drag the knob from the middle of the track to its first quarter.
        let track = h.app.area_of(&Action::Strength).expect("slider");
        let (x0, y) = track.centre();
        h.app.press(x0, y, h.now);
        h.app.motion(track.x as f32 + track.w as f32 * 0.25, y);
        h.draw();
        assert_eq!(h.app.strength(), 0.4, "a quarter of 0.2..1.0");
        h.app.release(h.now);
        h.app.press(track.right() as f32 + 5.0, y, h.now);
        h.app.release(h.now);
        assert_eq!(
            h.app.strength(),
            0.4,
            "a tap past the end is not on the slider"
        );
        h.app.press(track.right() as f32 - 1.0, y, h.now);
        h.app.release(h.now);
        assert_eq!(h.app.strength(), 1.0, "a tap at the end sets the top");
        h.draw();

        h.tap(&Action::Shutter);
        let spec = h.submitted.pop().expect("the shutter submits");
        assert_eq!(spec.prompt, "a watercolour");
        assert_eq!(spec.strength, Some(1.0));

        let mut failed = Harness::new(size);
        type_on_keyboard(&mut failed, "a watercolour");
        failed.tap(&Action::OpenCamera);
        failed.app.camera_failed(
            "No camera: none found: no /dev/video* device (is a camera plugged in?)".into(),
        );
        failed.golden("camera-none");
        assert!(failed.app.area_of(&Action::Shutter).is_some());
        failed.tap(&Action::OpenCompose);
        assert_eq!(failed.app.screen(), &Screen::Compose);
    }
}

/// Where the arm64 system test taps to go from the viewer of its first job
/// to a camera restyle (tests/golden/camera-taps-WxH.json), following the
/// same path: viewer Back, gallery New image, compose Camera, Restyle.
#[test]
fn the_system_tests_camera_taps_are_current() {
    let size = SIZES[0];
    let mut h = Harness::new(size);
    type_on_keyboard(&mut h, "hi");
    h.app.set_gallery((1..=3).map(entry).collect());
    let mut taps = Vec::new();
    for (name, action) in [
        ("viewer-back", Action::OpenGallery),
        ("gallery-new", Action::OpenCompose),
        ("compose-camera", Action::OpenCamera),
        ("camera-restyle", Action::Shutter),
    ] {
        if name == "viewer-back" {
            h.tap(&Action::OpenGallery);
            h.tap(&Action::Open(entry(1).id));
        }
        let area = h
            .app
            .area_of(&action)
            .unwrap_or_else(|| panic!("{name}: {action:?} not on {:?}", h.app.screen()));
        let (x, y) = area.centre();
        taps.push(format!("  \"{name}\": [{x}, {y}]"));
        h.tap(&action);
    }
    assert_eq!(h.submitted.len(), 1, "the path ends in a camera job");
    let json = format!("{{\n{}\n}}\n", taps.join(",\n"));
    let path = repo().join(format!(
        "tests/golden/camera-taps-{}x{}.json",
        size.0, size.1
    ));
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        std::fs::write(&path, &json).expect("write taps");
    }
    assert_eq!(
        std::fs::read_to_string(&path).expect("camera taps (UPDATE_GOLDENS=1 writes them)"),
        json,
        "{} is stale",
        path.display()
    );
}

#[test]
fn glyphs_used_by_the_ui_exist_in_the_font() {
    let font = font();
    for c in "…×·".chars() {
        assert!(
            font.measure(&c.to_string(), 20.0) > 1.0,
            "{c:?} missing in {}",
            font.path().display()
        );
    }
}

// ---------------------------------------------------------------------------
// Scripted touches against a real Studio (tiny bundle, in-process).

struct Live {
    studio: Arc<Studio>,
    runtime: Runtime,
    dir: tempfile::TempDir,
}

/// A Studio on the tiny bundle with `steps` default steps (a copy of the
/// bundle with its manifest edited, so jobs last long enough to watch).
fn live(steps: u32, gallery_extra: &str, prefill: u64) -> Live {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    crate::copy_tree(&repo().join("models/tiny-sd"), &model);
    let manifest = model.join("pocket-studio.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(
        &manifest,
        text.replace("steps = 4", &format!("steps = {steps}")),
    )
    .expect("manifest");
    let images = dir.path().join("images");
    if prefill > 0 {
        let gallery = Gallery::open(&images, Limits::default()).expect("gallery");
        for n in 0..prefill {
            let p = pattern(64, 64, n);
            let rgb = p
                .data()
                .chunks_exact(4)
                .flat_map(|px| [px[0], px[1], px[2]])
                .collect();
            let image = Image {
                width: 64,
                height: 64,
                rgb,
            };
            gallery.save(&image, &meta(n)).expect("save");
        }
    }
    let config = Config::parse(&format!(
        "model = {:?}\nupscaler = {:?}\nimages_dir = {:?}\nstate_dir = {:?}\noutput = \"native\"\n[gallery]\n{gallery_extra}\n",
        model,
        dir.path().join("no-upscaler"),
        images,
        dir.path().join("state"),
    ))
    .expect("config");
    let studio = Arc::new(Studio::start(&config).expect("studio"));
    let screen = Headless::new(1280, 800).expect("headless");
    let runtime = Runtime::new(
        studio.clone(),
        Box::new(screen),
        font(),
        dir.path().join("cache"),
    )
    .expect("runtime");
    let mut live = Live {
        studio,
        runtime,
        dir,
    };
    live.pump();
    live
}

fn meta(n: u64) -> ImageMeta {
    ImageMeta {
        prompt: format!("prefilled image {n}"),
        seed: n,
        ..crate::tiny_meta()
    }
}

impl Live {
    fn app(&self) -> &App {
        self.runtime.app()
    }

    fn pump(&mut self) {
        self.runtime.pump(Instant::now()).expect("pump");
    }

    fn tap(&mut self, action: &Action) {
        self.pump();
        let area = self
            .app()
            .area_of(action)
            .unwrap_or_else(|| panic!("{action:?} is not on screen {:?}", self.app().screen()));
        let (x, y) = area.centre();
        let now = Instant::now();
        self.runtime.feed(UiEvent::Press { x, y }, now);
        self.runtime
            .feed(UiEvent::Release, now + Duration::from_millis(60));
        self.pump();
    }

    fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            let key = if c == ' ' { Key::Space } else { Key::Char(c) };
            self.tap(&Action::Key(key));
        }
    }

    /// Pump until `done` holds, recording what the app showed each time.
    fn wait_for(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&App) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            if done(self.app()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen {:?}, job {:?}",
                self.app().screen(),
                self.app().job().map(|j| &j.status)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn tapping_keys_types_and_generate_runs_a_job_the_ui_follows_to_the_gallery() {
    // Enough steps to watch the job move: a step takes milliseconds natively
    // and about a hundred times longer under qemu-user (tests/qemu/cross-test.sh).
    let steps = if cfg!(target_arch = "aarch64") { 8 } else { 40 };
    let mut live = live(steps, "reserve_mb = 1", 0);
    live.type_text("a red fox");
    assert_eq!(live.app().prompt(), "a red fox");
    live.tap(&Action::Key(Key::Backspace));
    live.type_text("x in snow");
    assert_eq!(live.app().prompt(), "a red fox in snow");
    live.tap(&Action::Style(1));

    live.tap(&Action::Generate);
    assert_eq!(
        live.app().screen(),
        &Screen::Progress,
        "Generate opens the progress screen"
    );
    let id = live.app().job().expect("followed job").status.id;
    let spec_prompt = live.studio.prompt(id).expect("the core has the job");
    assert!(
        spec_prompt.starts_with("a red fox in snow, "),
        "style preset applied: {spec_prompt}"
    );

    // The progress screen follows the job step by step with a preview.
    let mut steps_seen = Vec::new();
    let mut saw_preview_mid_run = false;
    live.wait_for("the job to finish", Duration::from_secs(300), |app| {
        if let Some(job) = app.job()
            && job.status.state == JobState::Running
            && job.status.step > 0
        {
            steps_seen.push(job.status.step);
            if job.preview.is_some()
                && job.status.step < job.status.steps
                && app.screen() == &Screen::Progress
            {
                saw_preview_mid_run = true;
            }
        }
        matches!(app.screen(), Screen::Viewer(_))
    });
    assert!(
        steps_seen.windows(2).all(|w| w[0] <= w[1]),
        "steps never go back: {steps_seen:?}"
    );
    assert!(
        steps_seen.len() >= 3,
        "progress followed over several steps: {steps_seen:?}"
    );
    assert!(
        saw_preview_mid_run,
        "a live preview showed before the last step"
    );

    // Done: the viewer shows the new image, which is in the gallery on disk.
    let Screen::Viewer(image_id) = live.app().screen().clone() else {
        unreachable!()
    };
    let path = live
        .studio
        .gallery()
        .path_of(&image_id)
        .expect("in the gallery");
    assert!(path.is_file());
    live.tap(&Action::OpenGallery);
    assert_eq!(live.app().gallery()[0].id, image_id, "newest first");
    live.wait_for("its thumbnail", Duration::from_secs(30), |app| {
        app.has_thumbnail(&image_id)
    });
    let cached = live.dir.path().join("cache/thumbnails");
    assert!(std::fs::read_dir(&cached).expect("thumbnail cache").count() >= 1);
}

#[test]
fn swiping_scrolls_the_gallery_long_press_and_delete_remove_the_file() {
    let mut live = live(4, "reserve_mb = 1", 30);
    live.tap(&Action::OpenGallery);
    assert_eq!(live.app().gallery().len(), 30);
    let first = live.app().gallery()[0].id.clone();
    let second = live.app().gallery()[1].id.clone();
    live.wait_for("thumbnails", Duration::from_secs(60), |app| {
        app.has_thumbnail(&first)
    });

    // Swipe up: the grid scrolls, nothing opens.
    let start = live
        .app()
        .area_of(&Action::Open(first.clone()))
        .expect("first cell")
        .centre();
    let now = Instant::now();
    live.runtime.feed(
        UiEvent::Press {
            x: start.0,
            y: start.1 + 200.0,
        },
        now,
    );
    for i in 1..=10 {
        live.runtime.feed(
            UiEvent::Move {
                x: start.0,
                y: start.1 + 200.0 - 30.0 * i as f32,
            },
            now,
        );
        live.pump();
    }
    live.runtime
        .feed(UiEvent::Release, now + Duration::from_millis(200));
    live.pump();
    assert_eq!(
        live.app().screen(),
        &Screen::Gallery,
        "a swipe is not a tap"
    );
    assert!(
        (live.app().scroll() - 300.0).abs() < 1.0,
        "scrolled by the finger's travel: {}",
        live.app().scroll()
    );
    // Swiping back down past the top stops at the top.
    let now = Instant::now();
    live.runtime.feed(
        UiEvent::Press {
            x: start.0,
            y: 300.0,
        },
        now,
    );
    live.runtime.feed(
        UiEvent::Move {
            x: start.0,
            y: 700.0,
        },
        now,
    );
    live.runtime.feed(UiEvent::Release, now);
    live.pump();
    assert_eq!(live.app().scroll(), 0.0);

    // Long press on a thumbnail asks to delete it; Keep keeps it.
    let (x, y) = live
        .app()
        .area_of(&Action::Open(second.clone()))
        .expect("cell")
        .centre();
    let now = Instant::now();
    live.runtime.feed(UiEvent::Press { x, y }, now);
    live.runtime
        .pump(now + Duration::from_millis(700))
        .expect("pump");
    assert_eq!(
        live.app().dialog(),
        Some(&Dialog::ConfirmDelete(second.clone()))
    );
    live.runtime
        .feed(UiEvent::Release, now + Duration::from_millis(800));
    live.tap(&Action::Dismiss);
    assert!(live.studio.gallery().path_of(&second).is_ok());

    // Open, Delete, confirm: the file is gone.
    let path = live.studio.gallery().path_of(&first).expect("path");
    live.tap(&Action::Open(first.clone()));
    assert_eq!(live.app().screen(), &Screen::Viewer(first.clone()));
    live.tap(&Action::AskDelete(first.clone()));
    live.tap(&Action::ConfirmDelete(first.clone()));
    assert!(!path.exists(), "{} still exists", path.display());
    assert_eq!(live.app().screen(), &Screen::Gallery);
    assert_eq!(live.studio.gallery().len(), 29);
    assert!(live.app().gallery().iter().all(|e| e.id != first));
}

#[test]
fn holding_backspace_repeats() {
    let mut live = live(4, "reserve_mb = 1", 0);
    live.type_text("abcdef");
    let (x, y) = live
        .app()
        .area_of(&Action::Key(Key::Backspace))
        .expect("backspace")
        .centre();
    let t0 = Instant::now();
    live.runtime.feed(UiEvent::Press { x, y }, t0);
    for ms in [100, 300, 460, 540, 620] {
        live.runtime
            .pump(t0 + Duration::from_millis(ms))
            .expect("pump");
    }
    live.runtime
        .feed(UiEvent::Release, t0 + Duration::from_millis(650));
    live.pump();
    assert_eq!(
        live.app().prompt(),
        "abc",
        "three repeats, no extra tap on release"
    );
}

#[test]
fn jobs_from_other_clients_show_and_cancel_returns_to_compose() {
    let mut live = live(150, "reserve_mb = 1", 0);
    // As D-Bus would: another client submits straight to the core.
    let other = live
        .studio
        .submit(JobSpec {
            prompt: "from another client".into(),
            ..JobSpec::default()
        })
        .expect("submit");
    live.wait_for("the other job to show", Duration::from_secs(60), |app| {
        app.job().is_some_and(|j| j.status.id == other && !j.ours)
            && app.area_of(&Action::OpenProgress).is_some()
    });
    assert_eq!(live.app().job().expect("job").prompt, "from another client");
    live.tap(&Action::OpenProgress);
    assert_eq!(live.app().screen(), &Screen::Progress);
    live.tap(&Action::CancelJob);
    live.wait_for("the cancel to land", Duration::from_secs(60), |app| {
        app.screen() == &Screen::Compose
    });
    assert_eq!(
        live.studio.status(other).expect("status").state,
        JobState::Cancelled
    );
}

#[test]
fn the_camera_screen_says_why_there_is_no_camera_and_queues_nothing() {
    let mut live = live(
        4,
        "reserve_mb = 1\n[camera]\ndevice = \"/nonexistent/video9\"",
        0,
    );
    live.type_text("a watercolour");
    live.tap(&Action::OpenCamera);
    assert_eq!(live.app().screen(), &Screen::Camera);
    live.wait_for("the camera error", Duration::from_secs(10), |app| {
        app.camera_problem().is_some()
    });
    let why = live.app().camera_problem().unwrap_or_default().to_string();
    assert!(
        why.contains("/nonexistent/video9") && why.contains("does not exist"),
        "{why}"
    );
    live.tap(&Action::Shutter);
    assert!(live.studio.jobs().is_empty(), "no frame, no job");
    live.tap(&Action::OpenCompose);
    assert_eq!(live.app().screen(), &Screen::Compose);
    assert_eq!(live.app().prompt(), "a watercolour");
}

#[test]
fn no_storage_shows_an_error_that_leads_to_the_gallery() {
    // A reserve no disk has: every job is refused before it starts.
    let mut live = live(4, "reserve_mb = 1000000000", 2);
    live.type_text("a boat");
    live.tap(&Action::Generate);
    match live.app().dialog() {
        Some(Dialog::Problem { title, gallery, .. }) => {
            assert_eq!(title, "Not enough storage");
            assert!(gallery);
        }
        other => panic!("expected the no-storage dialog, got {other:?}"),
    }
    assert!(live.studio.jobs().is_empty(), "nothing was queued");
    assert_eq!(live.app().screen(), &Screen::Compose, "the prompt is kept");
    assert_eq!(live.app().prompt(), "a boat");
    live.tap(&Action::OpenGallery);
    assert_eq!(live.app().screen(), &Screen::Gallery);
    assert_eq!(live.app().dialog(), None);
}
