//! What more than one bench needs.

use pocket_studio::pipeline::Image;

/// A photo-like picture: smooth gradients plus fine detail, so JPEG, PNG
/// and the watermark have work.
pub fn scene(width: u32, height: u32) -> Image {
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let fx = x as f32 / width as f32;
            let fy = y as f32 / height as f32;
            let detail = (((x * 7 + y * 13) % 23) as f32 / 23.0 - 0.5) * 30.0;
            rgb.push((fx * 200.0 + detail).clamp(0.0, 255.0) as u8);
            rgb.push((fy * 180.0 + 40.0 - detail).clamp(0.0, 255.0) as u8);
            rgb.push(((1.0 - fx) * 150.0 + fy * 60.0).clamp(0.0, 255.0) as u8);
        }
    }
    Image { width, height, rgb }
}
