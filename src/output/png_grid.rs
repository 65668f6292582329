//! A PNG grid of images: `rows x cols` tiles (one row per class, `ipc` columns),
//! de-normalised per channel (`x * std + mean`, clamped to [0, 1]) as the
//! reference's visualisation does (docs/method.md §4.9), separated by a small padding.

use std::path::Path;

use crate::{Error, Result};

/// Padding between tiles and around the grid, in pixels.
pub const PAD: usize = 2;

/// Writes `rows * cols` images of `C x H x W` (NCHW, normalised, row-major tile
/// order: image `r * cols + col`) as one 8-bit PNG, grey for `C = 1` and RGB for
/// `C = 3`. `mean`/`std` have one entry per channel. Written atomically.
#[allow(clippy::too_many_arguments)]
pub fn write_png_grid(
    path: &Path,
    images: &[f32],
    c: usize,
    h: usize,
    w: usize,
    rows: usize,
    cols: usize,
    mean: &[f32],
    std: &[f32],
) -> Result<()> {
    if c != 1 && c != 3 {
        return Err(Error::Shape(format!(
            "png grid {}: {c} channels, expected 1 or 3",
            path.display()
        )));
    }
    if images.len() != rows * cols * c * h * w || rows * cols == 0 {
        return Err(Error::Shape(format!(
            "png grid {}: {} values for {rows}x{cols} images of {c}x{h}x{w}",
            path.display(),
            images.len()
        )));
    }
    if mean.len() != c || std.len() != c {
        return Err(Error::Shape(format!(
            "png grid {}: {} means / {} stds for {c} channels",
            path.display(),
            mean.len(),
            std.len()
        )));
    }
    let gw = cols * (w + PAD) + PAD;
    let gh = rows * (h + PAD) + PAD;
    // Padding is mid grey.
    let mut buf = vec![128u8; gw * gh * c];
    let plane = h * w;
    for r in 0..rows {
        for col in 0..cols {
            let img = &images[(r * cols + col) * c * plane..][..c * plane];
            let (y0, x0) = (PAD + r * (h + PAD), PAD + col * (w + PAD));
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v = img[ch * plane + y * w + x] * std[ch] + mean[ch];
                        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                        buf[((y0 + y) * gw + x0 + x) * c + ch] = (v * 255.0).round() as u8;
                    }
                }
            }
        }
    }
    let (gw32, gh32) = (
        u32::try_from(gw).map_err(|_| Error::Shape("png grid too wide".into()))?,
        u32::try_from(gh).map_err(|_| Error::Shape("png grid too tall".into()))?,
    );
    super::atomic_write_with(path, |out| {
        let png_err = |e: png::EncodingError| Error::data(path, format!("png encoding: {e}"));
        let mut enc = png::Encoder::new(out, gw32, gh32);
        enc.set_color(if c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(png_err)?;
        wr.write_image_data(&buf).map_err(png_err)?;
        wr.finish().map_err(png_err)
    })
}
