//! Touch UI frame times (not a test): full-frame and typical partial redraws
//! at 1280x800 and 1920x1080, plus the copy into an XRGB8888 scanout buffer
//! that the KMS surface does on the board. Run with `cargo bench --bench ui`.
//! The budget is 16 ms per frame (60 Hz) at 1280x800.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pocket_studio::store::Entry;
use pocket_studio::ui::app::{Action, App, Command, Status};
use pocket_studio::ui::drm::copy_area;
use pocket_studio::ui::keyboard::Key;
use pocket_studio::ui::scene::{Area, Picture, Renderer};
use pocket_studio::ui::text::Font;
use tiny_skia::Pixmap;

const ROUNDS: usize = 60;

fn pattern(width: u32, height: u32, seed: u64) -> Pixmap {
    let mut pixmap = Pixmap::new(width.max(1), height.max(1)).expect("pixmap");
    for (i, px) in pixmap.data_mut().chunks_exact_mut(4).enumerate() {
        let v = ((i as u64 * 31 + seed * 97) % 255) as u8;
        px.copy_from_slice(&[v, 255 - v, (seed * 40 % 255) as u8, 255]);
    }
    pixmap
}

struct Rig {
    font: Font,
    app: App,
    renderer: Renderer,
    key: u64,
}

impl Rig {
    fn new(width: u32, height: u32) -> Self {
        let mut app = App::new(width, height);
        app.set_status(Status {
            model: "sd15-lcm".into(),
            queued: 1,
            bytes_free: Some(21_000_000_000),
        });
        Rig {
            font: Font::load("auto").expect("Liberation Sans (fonts-liberation2)"),
            app,
            renderer: Renderer::new(width, height).expect("renderer"),
            key: 0,
        }
    }

    /// One frame: scene, render the damage, answer picture requests.
    fn frame(&mut self) -> (Duration, Vec<Area>) {
        let started = Instant::now();
        let nodes = self.app.scene(&self.font);
        let damage = self.renderer.render(nodes, &self.font);
        let took = started.elapsed();
        for command in self.app.take_commands() {
            self.key += 1;
            if let Command::LoadThumbnail { id, width, height } = command {
                let picture = Picture {
                    key: self.key,
                    pixmap: Arc::new(pattern(width, height, self.key)),
                };
                self.app.thumbnail_ready(id, picture);
            }
        }
        (took, damage)
    }

    fn tap(&mut self, action: &Action, now: &mut Instant) -> Vec<Duration> {
        let (x, y) = self.app.area_of(action).expect("on screen").centre();
        self.app.press(x, y, *now);
        let down = self.frame().0;
        *now += Duration::from_millis(80);
        self.app.release(*now);
        let up = self.frame().0;
        *now += Duration::from_millis(200);
        vec![down, up]
    }
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<44} median {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms  (n={})",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn main() {
    for (width, height) in [(1280u32, 800u32), (1920, 1080)] {
        println!("== {width}x{height}");
        let mut rig = Rig::new(width, height);
        rig.frame();

        // Full frames: compose screen with text typed.
        let mut now = Instant::now();
        for c in "a lighthouse".chars() {
            let key = if c == ' ' { Key::Space } else { Key::Char(c) };
            rig.tap(&Action::Key(key), &mut now);
        }
        let mut full = Vec::new();
        for _ in 0..ROUNDS {
            rig.renderer.invalidate();
            rig.app.redraw();
            full.push(rig.frame().0);
        }
        summary("full frame, compose", full);

        // Partial: a key tap (pressed highlight, then the letter typed).
        let mut partial = Vec::new();
        let mut areas = 0usize;
        for i in 0..ROUNDS {
            let key = if i % 2 == 0 {
                Key::Char('e')
            } else {
                Key::Backspace
            };
            let (x, y) = rig.app.area_of(&Action::Key(key)).expect("key").centre();
            rig.app.press(x, y, now);
            let (t, d) = rig.frame();
            partial.push(t);
            areas += d.iter().map(|a| (a.w * a.h) as usize).sum::<usize>();
            now += Duration::from_millis(80);
            rig.app.release(now);
            let (t, d) = rig.frame();
            partial.push(t);
            areas += d.iter().map(|a| (a.w * a.h) as usize).sum::<usize>();
            now += Duration::from_millis(200);
        }
        let share = areas as f64 / (2 * ROUNDS) as f64 / (width * height) as f64 * 100.0;
        summary(
            &format!("partial, key tap ({share:.1} % of the frame)"),
            partial,
        );

        // Gallery full frame with thumbnails, and a scroll step (all cells move).
        rig.tap(&Action::OpenGallery, &mut now);
        rig.app.set_gallery((0..40).map(entry).collect());
        rig.frame();
        rig.frame();
        let mut gallery = Vec::new();
        for _ in 0..ROUNDS {
            rig.renderer.invalidate();
            rig.app.redraw();
            gallery.push(rig.frame().0);
        }
        summary("full frame, gallery with thumbnails", gallery);
        let mut scroll = Vec::new();
        let (x, y) = (width as f32 / 2.0, height as f32 * 0.6);
        rig.app.press(x, y, now);
        for i in 0..ROUNDS {
            let dy = if (i / 10) % 2 == 0 {
                -(i as f32 % 10.0) * 8.0
            } else {
                -(10.0 - i as f32 % 10.0) * 8.0
            };
            rig.app.motion(x, y - 20.0 + dy);
            scroll.push(rig.frame().0);
        }
        rig.app.release(now);
        summary("gallery scroll step", scroll);

        // The KMS surface's copy of a whole frame into XRGB8888.
        let frame = rig.renderer.frame().clone();
        let mut scanout = vec![0u8; (width * height * 4) as usize];
        let whole = Area {
            x: 0,
            y: 0,
            w: width as i32,
            h: height as i32,
        };
        let mut copies = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            copy_area(
                &frame,
                &whole,
                &mut scanout,
                width as usize * 4,
                (width, height),
                0,
            );
            copies.push(started.elapsed());
        }
        summary("present: full-frame copy to XRGB8888", copies);
    }
}

fn entry(n: u64) -> Entry {
    Entry {
        id: format!("img-{n}"),
        prompt: format!("bench image {n}"),
        seed: n,
        width: 3840,
        height: 2160,
        created: n,
        bytes: 8_000_000,
    }
}
