//! Camera frames to RGB: every pixel format we negotiate, checked against
//! frames and conversions made by ffmpeg and Pillow (see
//! `models/export/make_camera_fixtures.py`).

use std::path::PathBuf;

use pocket_studio::camera::convert::{self, PixelFormat, RawFrame};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/camera")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn reference(name: &str) -> pocket_studio::Image {
    pocket_studio::store::read_png(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const W: u32 = 96;
const H: u32 = 64;

/// Largest channel difference, and how many values differ at all.
fn compare(ours: &pocket_studio::Image, theirs: &pocket_studio::Image) -> (u8, usize) {
    assert_eq!((ours.width, ours.height), (theirs.width, theirs.height));
    let worst = ours
        .rgb
        .iter()
        .zip(&theirs.rgb)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let differing = ours
        .rgb
        .iter()
        .zip(&theirs.rgb)
        .filter(|(a, b)| a != b)
        .count();
    (worst, differing)
}

fn convert(format: PixelFormat, data: &[u8], stride: u32) -> pocket_studio::Image {
    let frame = RawFrame {
        format,
        width: W,
        height: H,
        stride,
        data,
    };
    convert::to_rgb(&frame).unwrap_or_else(|e| panic!("{}: {e}", format.name()))
}

/// The same frame with `pad` junk bytes after each line of every plane, as
/// drivers that align lines send it.
fn padded(data: &[u8], line: usize, pad: usize) -> Vec<u8> {
    data.chunks(line)
        .flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0xA5, pad)))
        .collect()
}

fn within_one_of_the_references(format: PixelFormat, raw: &str, stem: &str) {
    let data = read(raw);
    let ours = convert(format, &data, format.min_stride(W));
    for reference_name in [format!("{stem}.ref.png"), format!("{stem}.exact.png")] {
        let (worst, differing) = compare(&ours, &reference(&reference_name));
        println!("{raw} vs {reference_name}: max diff {worst}, {differing} values differ");
        assert!(worst <= 1, "{raw} vs {reference_name}: off by {worst}/255");
    }
    let stride = format.min_stride(W) as usize;
    let with_padding = convert(format, &padded(&data, stride, 32), (stride + 32) as u32);
    assert_eq!(with_padding, ours, "{raw}: the line stride is honoured");
}

#[test]
fn yuyv_matches_ffmpeg_and_the_exact_formula_within_one() {
    within_one_of_the_references(PixelFormat::Yuyv, "yuyv422.raw", "yuyv422");
}

#[test]
fn nv12_matches_ffmpeg_and_the_exact_formula_within_one() {
    within_one_of_the_references(PixelFormat::Nv12, "nv12.raw", "nv12");
}

/// Drop every DHT segment, as webcams that follow the AVI1 convention send
/// their frames.
fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while at + 4 <= jpeg.len() {
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[at..]);
            break;
        }
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[at..at + 2 + length]);
        }
        at += 2 + length;
    }
    out
}

#[test]
fn mjpeg_decodes_exactly_as_pillow_with_or_without_huffman_tables() {
    let jpeg = read("mjpeg.jpg");
    let expected = reference("mjpeg.ref.png");
    let ours = convert(PixelFormat::Mjpeg, &jpeg, 0);
    assert_eq!(compare(&ours, &expected), (0, 0), "same pixels as Pillow");
    let bare = without_huffman_tables(&jpeg);
    assert!(bare.len() < jpeg.len(), "the fixture has tables to drop");
    assert_eq!(convert(PixelFormat::Mjpeg, &bare, 0), ours);
    // A frame cut short (an unplugged camera, a dropped USB packet) is an
    // error, not a half-grey picture.
    let cut = &jpeg[..jpeg.len() / 2];
    let frame = RawFrame {
        format: PixelFormat::Mjpeg,
        width: W,
        height: H,
        stride: 0,
        data: cut,
    };
    assert!(convert::to_rgb(&frame).is_err());
}

#[test]
fn rgb3_is_copied_line_by_line() {
    let source = reference("source.png");
    let line = (W * 3) as usize;
    let ours = convert(
        PixelFormat::Rgb24,
        &padded(&source.rgb, line, 12),
        W * 3 + 12,
    );
    assert_eq!(ours, source);
}

// Init images from outside (CLI files, D-Bus fds): the caps and the errors.

fn refused_reason(bytes: &[u8]) -> String {
    match pocket_studio::source::decode(bytes) {
        Err(pocket_studio::Error::InvalidArgument { key, reason }) => {
            assert_eq!(key, "init_image");
            reason
        }
        other => panic!("expected InvalidArgs on init_image, got {other:?}"),
    }
}

/// CRC-32 (IEEE) of a PNG chunk's type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG whose header claims `side` x `side` pixels, with a few bytes
/// of image data: decoding it for real would need gigabytes.
fn png_claiming(side: u32) -> Vec<u8> {
    let mut png = read_fixture_png_bytes();
    let ihdr = &mut png[12..29];
    ihdr[4..8].copy_from_slice(&side.to_be_bytes());
    ihdr[8..12].copy_from_slice(&side.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn read_fixture_png_bytes() -> Vec<u8> {
    let png = read("source.png");
    assert_eq!(&png[12..16], b"IHDR");
    png
}

#[test]
fn init_images_decode_upright_and_bad_ones_are_refused_naming_init_image() {
    let png = read_fixture_png_bytes();
    let decoded = pocket_studio::source::decode(&png).expect("a PNG decodes");
    assert_eq!(decoded, reference("source.png"));
    let jpeg = read("mjpeg.jpg");
    let decoded = pocket_studio::source::decode(&jpeg).expect("a JPEG decodes");
    assert_eq!(
        decoded,
        reference("mjpeg.ref.png"),
        "JPEG pixels as Pillow's"
    );

    let reason = refused_reason(b"this is a text file, not a picture");
    assert!(reason.contains("not a PNG or JPEG"), "{reason}");
    let reason = refused_reason(&png_claiming(20_000));
    assert!(reason.contains("20000x20000"), "{reason}");
    let reason = refused_reason(&png[..png.len() / 2]);
    assert!(!reason.is_empty());
    let reason = refused_reason(&jpeg[..jpeg.len() / 2]);
    assert!(reason.contains("decode"), "{reason}");
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[1, 0, 1, 0, 0, 0, 0, 0x3B]);
    let reason = refused_reason(&gif);
    assert!(reason.contains("Gif"), "{reason}");
}

#[test]
fn init_image_reads_stop_at_the_size_cap() {
    let endless = std::io::repeat(0u8);
    let reason = match pocket_studio::source::read_capped(endless) {
        Err(pocket_studio::Error::InvalidArgument { key, reason }) => {
            assert_eq!(key, "init_image");
            reason
        }
        other => panic!("expected a refusal, got {:?}", other.map(|b| b.len())),
    };
    assert!(reason.contains("MiB"), "{reason}");
}
