//! DC's legacy evaluation augmentation (docs/method.md §5.5): the non-differentiable,
//! per-image `augment(images, dc_aug_param)` of the reference, used only while
//! training evaluation networks of a DC run (docs/method.md §5.4), on the host.
//!
//! [`dc_augment`] takes an f32 NCHW minibatch in normalised space and changes it in
//! place: first the per-channel means over the whole minibatch, then for every
//! image one op drawn uniformly from the [`DcStrategy`]:
//!
//! - **crop** ([`crop_shift`]): the image pasted at `(pad, pad)` on a canvas
//!   `(H + 2 pad) x (W + 2 pad)` filled per channel with that channel's minibatch
//!   mean; the `H x W` window cut at `(r, c)`, each uniform on `{0 .. 2 pad - 1}`
//!   (an integer shift in `{-pad .. pad - 1}`, never `+pad`).
//! - **scale** ([`scale_nearest`]): nearest-neighbour resize to
//!   `int(U(1-s, 1+s) H) x int(U(1-s, 1+s) H)` — **both sides from H**, a quirk of
//!   the reference (harmless for square images) — pasted centred on a **zero**
//!   canvas of side `max(h, w, H, W)`, then the centre `H x W` cut.
//! - **rotate** ([`rotate_spline`]): an integer angle uniform on
//!   `{-rotate .. rotate - 1}` (numpy's `randint(-45, 45)`: +45 never occurs),
//!   `scipy.ndimage.rotate` with its defaults (canvas enlarged, cubic B-spline,
//!   constant fill = the mean of the channel means), then the centre crop.
//! - **noise**: `+ noise * N(0, 1)` per pixel.
//!
//! The fixed settings ([`DcParams`]) are the reference's: crop 4, scale 0.2,
//! rotate 45, noise 0.001. The spline is scipy's algorithm, reproduced exactly
//! (prefilter and interpolation in f64, output cast to f32); see
//! `docs/derivations/augment.md`, section "DC legacy rotate". All randomness is
//! drawn from the caller's RNG, so an evaluation stays reproducible; the draws
//! differ from numpy's, as every random stream of this crate does.

use std::fmt;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};

/// One op of the legacy augmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DcOp {
    /// Shift by padding with the channel mean and cutting a window.
    Crop,
    /// Nearest-neighbour rescale about the centre (zero fill).
    Scale,
    /// Cubic-spline rotation about the centre (fill: mean of channel means).
    Rotate,
    /// Small additive Gaussian noise.
    Noise,
}

impl DcOp {
    /// The name as the reference's strategy strings spell it.
    pub fn name(self) -> &'static str {
        match self {
            DcOp::Crop => "crop",
            DcOp::Scale => "scale",
            DcOp::Rotate => "rotate",
            DcOp::Noise => "noise",
        }
    }
}

/// A legacy strategy: the ops one of which each image draws (empty: `none`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DcStrategy {
    ops: Vec<DcOp>,
}

impl DcStrategy {
    /// The strategy of these ops, in the reference's order of the string.
    pub fn new(ops: &[DcOp]) -> Self {
        Self { ops: ops.to_vec() }
    }
    /// `none`: no augmentation.
    pub fn none() -> Self {
        Self::default()
    }
    /// `crop_scale_rotate` (MNIST).
    pub fn crop_scale_rotate() -> Self {
        Self::new(&[DcOp::Crop, DcOp::Scale, DcOp::Rotate])
    }
    /// `crop_noise` (evaluation model ConvNetBN).
    pub fn crop_noise() -> Self {
        Self::new(&[DcOp::Crop, DcOp::Noise])
    }
    /// The ops, in order.
    pub fn ops(&self) -> &[DcOp] {
        &self.ops
    }
    /// True for `none`.
    pub fn is_none(&self) -> bool {
        self.ops.is_empty()
    }
}

impl fmt::Display for DcStrategy {
    /// `crop_scale_rotate`, `crop_noise`, ..., or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ops.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.ops.iter().map(|o| o.name()).collect();
        f.write_str(&names.join("_"))
    }
}

/// The fixed settings of the legacy augmentation (`dc_aug_param`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DcParams {
    /// Crop padding in pixels (window offsets uniform on `0..2*crop`).
    pub crop: usize,
    /// Scale range: factors uniform on `(1 - scale, 1 + scale)`.
    pub scale: f64,
    /// Rotation range: integer degrees uniform on `-rotate..rotate`.
    pub rotate: i32,
    /// Noise standard deviation.
    pub noise: f32,
}

impl Default for DcParams {
    /// The reference's values: crop 4, scale 0.2, rotate 45, noise 0.001.
    fn default() -> Self {
        Self {
            crop: 4,
            scale: 0.2,
            rotate: 45,
            noise: 0.001,
        }
    }
}

impl DcParams {
    /// Checks that every draw is possible: crop at least 1, scale in `[0, 1)`,
    /// rotate at least 1, noise finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::option("dc-params", what));
        if self.crop == 0 {
            return bad("crop = 0: no crop window to draw".into());
        }
        if !(self.scale.is_finite() && (0.0..1.0).contains(&self.scale)) {
            return bad(format!("scale = {} is out of [0, 1)", self.scale));
        }
        if self.rotate < 1 {
            return bad(format!("rotate = {} must be at least 1", self.rotate));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad(format!("noise = {} is out of range", self.noise));
        }
        Ok(())
    }
}

/// Applies the legacy augmentation to the minibatch `x` (`[n, c, h, w]`, f32,
/// normalised) in place, drawing everything from `rng` (docs/method.md §5.5).
///
/// The channel means are taken over the whole minibatch before any image changes;
/// then every image draws its op (uniform over `strategy`'s list) and that op's
/// parameters, in image order.
pub fn dc_augment<R: Rng + ?Sized>(
    x: &mut [f32],
    (n, c, h, w): (usize, usize, usize, usize),
    strategy: &DcStrategy,
    params: &DcParams,
    rng: &mut R,
) -> Result<()> {
    let img = c * h * w;
    if img == 0 || x.len() != n * img {
        return Err(Error::Shape(format!(
            "DC augmentation: {} values for [{n}, {c}, {h}, {w}]",
            x.len()
        )));
    }
    if strategy.is_none() || n == 0 {
        return Ok(());
    }
    params.validate()?;
    let mean = channel_means(x, n, c, h * w);
    let cval = mean.iter().sum::<f64>() / c as f64;
    let fill: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let ops = strategy.ops();
    for image in x.chunks_exact_mut(img) {
        let out = match ops[rng.random_range(0..ops.len())] {
            DcOp::Crop => {
                let r = rng.random_range(0..2 * params.crop);
                let col = rng.random_range(0..2 * params.crop);
                crop_shift(image, c, h, w, params.crop, r, col, &fill)?
            }
            DcOp::Scale => {
                let lo = 1.0 - params.scale;
                let mut side =
                    || ((lo + 2.0 * params.scale * rng.random::<f64>()) * h as f64) as usize;
                let new_h = side();
                let new_w = side();
                scale_nearest(image, c, h, w, new_h, new_w)?
            }
            DcOp::Rotate => {
                let angle = rng.random_range(-params.rotate..params.rotate);
                rotate_spline(image, c, h, w, angle as f64, cval)?
            }
            DcOp::Noise => {
                for v in image.iter_mut() {
                    let z: f32 = StandardNormal.sample(rng);
                    *v += params.noise * z;
                }
                continue;
            }
        };
        image.copy_from_slice(&out);
    }
    Ok(())
}

/// Per-channel mean over all images of `x` (`[n, c, hw]`), accumulated in f64.
fn channel_means(x: &[f32], n: usize, c: usize, hw: usize) -> Vec<f64> {
    let mut sum = vec![0.0f64; c];
    for image in x.chunks_exact(c * hw) {
        for (ch, plane) in image.chunks_exact(hw).enumerate() {
            sum[ch] += plane.iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    sum.iter().map(|s| s / (n * hw) as f64).collect()
}

fn check_image(op: &str, img: &[f32], c: usize, h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 || img.len() != c * h * w {
        return Err(Error::Shape(format!(
            "DC {op}: {} values for an image [{c}, {h}, {w}]",
            img.len()
        )));
    }
    Ok(())
}

/// The legacy crop of one image `[c, h, w]`: pasted at `(pad, pad)` on a canvas
/// of `(h + 2 pad) x (w + 2 pad)` filled with `fill[channel]`, then the `h x w`
/// window at top-left `(r, col)` (`r, col <= 2 pad`) cut out.
#[allow(clippy::too_many_arguments)]
pub fn crop_shift(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    pad: usize,
    r: usize,
    col: usize,
    fill: &[f32],
) -> Result<Vec<f32>> {
    check_image("crop", img, c, h, w)?;
    if fill.len() != c || r > 2 * pad || col > 2 * pad {
        return Err(Error::Shape(format!(
            "DC crop: window at ({r}, {col}) with padding {pad}, {} fill values for {c} channels",
            fill.len()
        )));
    }
    let mut out = Vec::with_capacity(img.len());
    for (plane, &f) in img.chunks_exact(h * w).zip(fill) {
        for i in 0..h {
            // Canvas row r + i holds image row r + i - pad when that is inside.
            let src_row = (r + i).checked_sub(pad).filter(|&y| y < h);
            for j in 0..w {
                let src_col = (col + j).checked_sub(pad).filter(|&x| x < w);
                out.push(match (src_row, src_col) {
                    (Some(y), Some(x)) => plane[y * w + x],
                    _ => f,
                });
            }
        }
    }
    Ok(out)
}

/// The source index of output index `dst` of PyTorch's `F.interpolate(mode='nearest')`
/// from `len_in` to `len_out` samples: `min(floor(dst * scale), len_in - 1)` with
/// `scale = len_in / len_out` in f32, as ATen computes it.
fn nearest_source(dst: usize, len_in: usize, len_out: usize) -> usize {
    let scale = len_in as f32 / len_out as f32;
    ((dst as f32 * scale).floor() as usize).min(len_in - 1)
}

/// The legacy scale of one image `[c, h, w]`: nearest-neighbour resize to
/// `new_h x new_w`, pasted at `(int((m - new_h)/2), int((m - new_w)/2))` on a zero
/// canvas of side `m = max(new_h, new_w, h, w)`, and the `h x w` window at
/// `(int((m - h)/2), int((m - w)/2))` cut out.
pub fn scale_nearest(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    new_h: usize,
    new_w: usize,
) -> Result<Vec<f32>> {
    check_image("scale", img, c, h, w)?;
    if new_h == 0 || new_w == 0 {
        return Err(Error::Shape(format!(
            "DC scale: target size {new_h} x {new_w}"
        )));
    }
    let m = new_h.max(new_w).max(h).max(w);
    // Canvas coordinates: resized image at (ph, pw), window at (wh, ww).
    let (ph, pw) = ((m - new_h) / 2, (m - new_w) / 2);
    let (wh, ww) = ((m - h) / 2, (m - w) / 2);
    let rows: Vec<Option<usize>> = (0..h)
        .map(|i| {
            (wh + i)
                .checked_sub(ph)
                .filter(|&y| y < new_h)
                .map(|y| nearest_source(y, h, new_h))
        })
        .collect();
    let cols: Vec<Option<usize>> = (0..w)
        .map(|j| {
            (ww + j)
                .checked_sub(pw)
                .filter(|&x| x < new_w)
                .map(|x| nearest_source(x, w, new_w))
        })
        .collect();
    let mut out = Vec::with_capacity(img.len());
    for plane in img.chunks_exact(h * w) {
        for row in &rows {
            for col in &cols {
                out.push(match (row, col) {
                    (Some(y), Some(x)) => plane[y * w + x],
                    _ => 0.0,
                });
            }
        }
    }
    Ok(out)
}

/// In-place cubic B-spline prefilter of one line (`scipy.ndimage.spline_filter1d`,
/// order 3, mirror boundary): gain 6, causal then anticausal recursion. A line of
/// one sample is left as it is (as scipy does).
fn prefilter_line(line: &mut [f64]) {
    let n = line.len();
    if n < 2 {
        return;
    }
    // The pole of the cubic B-spline, sqrt(3) - 2, computed as scipy does.
    let z = 3f64.sqrt() - 2.0;
    for v in line.iter_mut() {
        *v *= (1.0 - z) * (1.0 - 1.0 / z);
    }
    // Causal initialisation on the mirror-symmetric extension (period 2n - 2).
    let z_n1 = z.powf((n - 1) as f64);
    let mut c0 = line[0] + z_n1 * line[n - 1];
    let mut zi = z;
    for i in 1..n - 1 {
        c0 += zi * (line[i] + z_n1 * line[n - 1 - i]);
        zi *= z;
    }
    line[0] = c0 / (1.0 - z_n1 * z_n1);
    for i in 1..n {
        line[i] += z * line[i - 1];
    }
    // Anticausal initialisation and recursion.
    line[n - 1] = z / (z * z - 1.0) * (line[n - 1] + z * line[n - 2]);
    for i in (0..n - 1).rev() {
        line[i] = z * (line[i + 1] - line[i]);
    }
}

/// The spline coefficients of one `h x w` plane: the prefilter along the rows
/// axis (every column), then along the columns axis (every row).
fn spline_coefficients(plane: &[f32], h: usize, w: usize) -> Vec<f64> {
    let mut coef: Vec<f64> = plane.iter().map(|&v| v as f64).collect();
    let mut column = vec![0.0; h];
    for x in 0..w {
        for y in 0..h {
            column[y] = coef[y * w + x];
        }
        prefilter_line(&mut column);
        for y in 0..h {
            coef[y * w + x] = column[y];
        }
    }
    for row in coef.chunks_exact_mut(w) {
        prefilter_line(row);
    }
    coef
}

/// The four cubic B-spline weights and the mirrored tap indices at coordinate
/// `cc` (`0 <= cc <= len - 1`).
fn spline_taps(cc: f64, len: usize) -> ([f64; 4], [usize; 4]) {
    let f = cc.floor();
    let t = cc - f;
    let t2 = t * t;
    let t3 = t2 * t;
    let weights = [
        (1.0 - t) * (1.0 - t) * (1.0 - t) / 6.0,
        (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
        t3 / 6.0,
    ];
    // Mirror-symmetric extension, period 2 len - 2 (taps of short lines may
    // reflect more than once).
    let len = len as i64;
    let mirror = |i: i64| -> usize {
        if len == 1 {
            return 0;
        }
        let period = 2 * len - 2;
        let i = i.abs() % period;
        (if i >= len { period - i } else { i }) as usize
    };
    let start = f as i64 - 1;
    let idx = [
        mirror(start),
        mirror(start + 1),
        mirror(start + 2),
        mirror(start + 3),
    ];
    (weights, idx)
}

/// The legacy rotate of one image `[c, h, w]` by `angle_deg` degrees:
/// `scipy.ndimage.rotate(img, angle, axes=(-2, -1), cval=cval)` with its defaults
/// (`reshape=True, order=3, mode='constant', prefilter=True`), then the centre
/// `h x w` window at `(int((OH - h)/2), int((OW - w)/2))` of the enlarged
/// `OH x OW` output. Only that window is computed.
///
/// Per channel plane: rotation matrix `R = [[cos, sin], [-sin, cos]]`; output size
/// `int(ptp(R @ corners) + 0.5)` per axis; output pixel `o` samples the input at
/// `R @ o + (in_centre - R @ out_centre)` (row, column); a coordinate outside
/// `[0, len - 1]` on either axis gives `cval`, otherwise the cubic B-spline
/// (prefiltered, mirror boundary) is evaluated there in f64.
pub fn rotate_spline(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    angle_deg: f64,
    cval: f64,
) -> Result<Vec<f32>> {
    check_image("rotate", img, c, h, w)?;
    let (s, co) = angle_deg.to_radians().sin_cos();
    let r = [[co, s], [-s, co]];
    let (hf, wf) = (h as f64, w as f64);
    let span = |a: f64, b: f64| -> usize {
        let v = [0.0, b * wf, a * hf, a * hf + b * wf];
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        (hi - lo + 0.5) as usize
    };
    let (oh, ow) = (span(r[0][0], r[0][1]), span(r[1][0], r[1][1]));
    if oh < h || ow < w {
        return Err(Error::Shape(format!(
            "DC rotate: a {h} x {w} image rotated by {angle_deg} degrees gives {oh} x {ow}, \
             smaller than the image"
        )));
    }
    let out_c = [(oh as f64 - 1.0) / 2.0, (ow as f64 - 1.0) / 2.0];
    let offset = [
        (hf - 1.0) / 2.0 - (r[0][0] * out_c[0] + r[0][1] * out_c[1]),
        (wf - 1.0) / 2.0 - (r[1][0] * out_c[0] + r[1][1] * out_c[1]),
    ];
    let (r0, c0) = ((oh - h) / 2, (ow - w) / 2);
    let mut out = Vec::with_capacity(img.len());
    for plane in img.chunks_exact(h * w) {
        let coef = spline_coefficients(plane, h, w);
        for i in r0..r0 + h {
            for j in c0..c0 + w {
                let (oi, oj) = (i as f64, j as f64);
                let y = r[0][0] * oi + r[0][1] * oj + offset[0];
                let x = r[1][0] * oi + r[1][1] * oj + offset[1];
                if !(0.0..=hf - 1.0).contains(&y) || !(0.0..=wf - 1.0).contains(&x) {
                    out.push(cval as f32);
                    continue;
                }
                let (wy, iy) = spline_taps(y, h);
                let (wx, ix) = spline_taps(x, w);
                let mut v = 0.0;
                for (a, &ya) in wy.iter().zip(&iy) {
                    let row = &coef[ya * w..(ya + 1) * w];
                    let mut t = 0.0;
                    for (b, &xb) in wx.iter().zip(&ix) {
                        t += b * row[xb];
                    }
                    v += a * t;
                }
                out.push(v as f32);
            }
        }
    }
    Ok(out)
}
