//! Cheap previews of latents while denoising runs.
//!
//! A fixed linear map from SD's four latent channels to RGB (the widely used
//! "approximate cheap" decoder) gives a recognisable thumbnail at latent
//! resolution in microseconds; no network runs. Never used for the final
//! image.

use crate::pipeline::Image;

/// Latent channel -> (R, G, B) weights for SD1.x/2.x latents.
const LATENT_RGB: [[f32; 3]; 4] = [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
];

/// A small RGB image of `[channels, height, width]` latents (4 channels).
pub fn latents_to_image(
    latents: &[f32],
    channels: usize,
    height: usize,
    width: usize,
) -> Option<Image> {
    let plane = height * width;
    if channels != 4 || latents.len() < channels * plane || plane == 0 {
        return None;
    }
    let mut rgb = vec![0u8; plane * 3];
    for i in 0..plane {
        for (c, out) in rgb[i * 3..i * 3 + 3].iter_mut().enumerate() {
            let v: f32 = (0..4)
                .map(|k| LATENT_RGB[k][c] * latents[k * plane + i])
                .sum();
            *out = ((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8;
        }
    }
    Some(Image {
        width: width as u32,
        height: height as u32,
        rgb,
    })
}

/// The same, encoded as a PNG (a few KiB) for D-Bus `Preview` signals.
pub fn latents_to_png(
    latents: &[f32],
    channels: usize,
    height: usize,
    width: usize,
) -> Option<Vec<u8>> {
    let image = latents_to_image(latents, channels, height, width)?;
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(&image.rgb).ok()?;
    writer.finish().ok()?;
    Some(bytes)
}
