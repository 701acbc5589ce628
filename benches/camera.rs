//! Camera frame conversion times (not a test): capture buffer to RGB8 per
//! frame at 640x480 and 1920x1080 for every format we negotiate (MJPEG,
//! YUYV, NV12, RGB3), plus the viewfinder's resample of a frame to a
//! 720x720 box. With `--device /dev/videoN` it also times real captures
//! (dequeue + convert) from that camera. Run with
//! `cargo bench --bench camera [-- --device /dev/video0]`.

use std::time::{Duration, Instant};

use pocket_studio::camera::convert::{self, PixelFormat, RawFrame};
use pocket_studio::pipeline::Image;
use pocket_studio::pipeline::output::resample_exact;

mod common;
use common::scene;

const ROUNDS: usize = 40;

/// BT.601 limited-range Y, U, V of one pixel (for making raw frames).
fn yuv(rgb: &[u8]) -> (u8, u8, u8) {
    let (r, g, b) = (f32::from(rgb[0]), f32::from(rgb[1]), f32::from(rgb[2]));
    let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
    let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
    let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
    (y.round() as u8, u.round() as u8, v.round() as u8)
}

fn encode(image: &Image, format: PixelFormat) -> Vec<u8> {
    let (w, h) = (image.width as usize, image.height as usize);
    let px = |x: usize, y: usize| &image.rgb[(y * w + x) * 3..][..3];
    match format {
        PixelFormat::Rgb24 => image.rgb.clone(),
        PixelFormat::Yuyv => (0..h)
            .flat_map(|y| (0..w / 2).map(move |x| (x * 2, y)))
            .flat_map(|(x, y)| {
                let (y0, u, v) = yuv(px(x, y));
                let (y1, ..) = yuv(px(x + 1, y));
                [y0, u, y1, v]
            })
            .collect(),
        PixelFormat::Nv12 => {
            let mut out: Vec<u8> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| yuv(px(x, y)).0)
                .collect();
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    let (_, u, v) = yuv(px(x, y));
                    out.extend([u, v]);
                }
            }
            out
        }
        PixelFormat::Mjpeg => {
            let view = turbojpeg::Image {
                pixels: &image.rgb[..],
                width: w,
                pitch: w * 3,
                height: h,
                format: turbojpeg::PixelFormat::RGB,
            };
            turbojpeg::compress(view, 85, turbojpeg::Subsamp::Sub2x1)
                .expect("JPEG encode")
                .to_vec()
        }
    }
}

fn stats(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    format!(
        "median {:6.2} ms  p95 {:6.2} ms  ({:5.0} fps)",
        ms(times[times.len() / 2]),
        ms(p95),
        1e3 / ms(times[times.len() / 2]).max(1e-6)
    )
}

fn main() {
    let device = std::env::args().skip_while(|a| a != "--device").nth(1);
    println!("camera: frame to RGB8, {ROUNDS} rounds each");
    for (width, height) in [(640u32, 480u32), (1920, 1080)] {
        let image = scene(width, height);
        for format in PixelFormat::PREFERRED {
            let data = encode(&image, format);
            let frame = RawFrame {
                format,
                width,
                height,
                stride: format.min_stride(width),
                data: &data,
            };
            let times: Vec<Duration> = (0..ROUNDS)
                .map(|_| {
                    let started = Instant::now();
                    let rgb = convert::to_rgb(&frame).expect("converts");
                    std::hint::black_box(rgb);
                    started.elapsed()
                })
                .collect();
            println!(
                "  {width}x{height} {:4} ({:7} bytes): {}",
                format.name(),
                data.len(),
                stats(times)
            );
        }
        let times: Vec<Duration> = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(resample_exact(&image, 720, 720).expect("resample"));
                started.elapsed()
            })
            .collect();
        println!(
            "  {width}x{height} viewfinder resample to 720x720: {}",
            stats(times)
        );
    }
    if let Some(device) = device {
        let config = pocket_studio::config::CameraConfig {
            device,
            ..Default::default()
        };
        for target in [(640, 480), (1920, 1080)] {
            match pocket_studio::camera::Camera::open(&config, target) {
                Ok(camera) => {
                    let mut times = Vec::new();
                    let mut last = Instant::now();
                    let _ = camera.stream(&mut |_| {
                        times.push(last.elapsed());
                        last = Instant::now();
                        times.len() <= ROUNDS
                    });
                    times.remove(0);
                    let (format, w, h) = camera.format();
                    println!(
                        "  capture {} {w}x{h} (dequeue + convert): {}",
                        format.name(),
                        stats(times)
                    );
                }
                Err(e) => println!("  capture near {target:?}: {e}"),
            }
        }
    }
}
