//! DSA augmentation functions, forward and adjoint (docs/method.md §2.5, §2.6).
//!
//! Every function maps `[N, C, H, W]` to `[N, C, H, W]` with per-image parameters
//! (`op.batch() == N`, checked by the caller). For fixed parameters each one is an
//! affine map of the pixels, so the backward pass is the exact adjoint of its linear
//! part; derivations in `docs/derivations/augment.md`.
//!
//! Work is split over independent outputs (one plane `(n, c)` or one image `n` per
//! task) and every sum runs in a fixed order, so results do not depend on the
//! number of threads. Outputs are always overwritten.

use crate::backend::*;
use rayon::prelude::*;
use rayon::ThreadPool;

/// `y = op(x)` for a batch `[N, C, H, W]` (see [`AugOp`] for each function).
pub fn aug_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], op: &AugOp, s: &ImgShape) {
    if s.is_empty() {
        return;
    }
    pool.install(|| match op {
        AugOp::Affine(p) => planes(y, x, s, |n, yp, xp| affine_fwd_plane(yp, xp, &p[n], s)),
        AugOp::Flip(p) => planes(y, x, s, |n, yp, xp| flip_plane(yp, xp, p[n].a != 0, s)),
        AugOp::Brightness(p) => planes(y, x, s, |n, yp, xp| {
            let shift = T::from_f32(p[n]);
            yp.iter_mut().zip(xp).for_each(|(o, &v)| *o = v + shift);
        }),
        AugOp::Saturation(p) => images(y, x, s, |n, yi, xi| {
            saturation_image(yi, xi, T::from_f32(p[n]), s)
        }),
        AugOp::Contrast(p) => images(y, x, s, |n, yi, xi| {
            contrast_image(yi, xi, T::from_f32(p[n]))
        }),
        AugOp::Crop(p) => planes(y, x, s, |n, yp, xp| shift_plane(yp, xp, p[n].a, p[n].b, s)),
        AugOp::Cutout { centres, half } => planes(y, x, s, |n, yp, xp| {
            cutout_plane(yp, xp, centres[n], *half, s)
        }),
    })
}

/// `dx = op^T(dy)`: the adjoint of the op's linear part (brightness passes `dy`
/// through unchanged).
pub fn aug_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dy: &[T], op: &AugOp, s: &ImgShape) {
    if s.is_empty() {
        return;
    }
    pool.install(|| match op {
        AugOp::Affine(p) => planes(dx, dy, s, |n, dxp, dyp| {
            affine_bwd_plane(dxp, dyp, &p[n], s)
        }),
        // A mirror is its own inverse and a permutation: adjoint = itself.
        AugOp::Flip(p) => planes(dx, dy, s, |n, dxp, dyp| {
            flip_plane(dxp, dyp, p[n].a != 0, s)
        }),
        AugOp::Brightness(_) => planes(dx, dy, s, |_, dxp, dyp| dxp.copy_from_slice(dyp)),
        // Saturation and contrast are self-adjoint (symmetric linear parts).
        AugOp::Saturation(p) => images(dx, dy, s, |n, dxi, dyi| {
            saturation_image(dxi, dyi, T::from_f32(p[n]), s)
        }),
        AugOp::Contrast(p) => images(dx, dy, s, |n, dxi, dyi| {
            contrast_image(dxi, dyi, T::from_f32(p[n]))
        }),
        // The adjoint of the gather out(i,j) = x(i+a, j+b) is the gather by (-a, -b).
        AugOp::Crop(p) => planes(dx, dy, s, |n, dxp, dyp| {
            shift_plane(
                dxp,
                dyp,
                p[n].a.saturating_neg(),
                p[n].b.saturating_neg(),
                s,
            )
        }),
        // A 0/1 mask is diagonal: adjoint = itself.
        AugOp::Cutout { centres, half } => planes(dx, dy, s, |n, dxp, dyp| {
            cutout_plane(dxp, dyp, centres[n], *half, s)
        }),
    })
}

/// Runs `f(n, out_plane, in_plane)` over all `(n, c)` planes in parallel.
fn planes<T: Scalar>(
    out: &mut [T],
    inp: &[T],
    s: &ImgShape,
    f: impl Fn(usize, &mut [T], &[T]) + Sync + Send,
) {
    let plane = (s.h * s.w) as usize;
    let c = s.c as usize;
    out.par_chunks_mut(plane)
        .zip(inp.par_chunks(plane))
        .enumerate()
        .for_each(|(k, (o, i))| f(k / c, o, i));
}

/// Runs `f(n, out_image, in_image)` over all images `[C, H, W]` in parallel.
fn images<T: Scalar>(
    out: &mut [T],
    inp: &[T],
    s: &ImgShape,
    f: impl Fn(usize, &mut [T], &[T]) + Sync + Send,
) {
    let img = (s.c * s.h * s.w) as usize;
    out.par_chunks_mut(img)
        .zip(inp.par_chunks(img))
        .enumerate()
        .for_each(|(n, (o, i))| f(n, o, i));
}

/// The source point `(r, q)` (row, column) that output pixel `(i, j)` samples,
/// docs/method.md §2.5: `q = cx + a00 (j - cx) + a01 (i - cy)`, `r = cy + a10 (j - cx) + a11 (i - cy)`.
#[inline]
fn affine_source<T: Scalar>(p: &AffineParam, i: usize, j: usize, cx: T, cy: T) -> (T, T) {
    let dj = T::from_f64(j as f64) - cx;
    let di = T::from_f64(i as f64) - cy;
    let q = cx + T::from_f32(p.a00) * dj + T::from_f32(p.a01) * di;
    let r = cy + T::from_f32(p.a10) * dj + T::from_f32(p.a11) * di;
    (r, q)
}

/// The four bilinear taps of source point `(r, q)`: `(flat index, weight)` for each
/// neighbour `(r0+u, q0+v)` inside the plane with a non-zero weight; `None` for
/// the others (zero padding).
#[inline]
fn bilinear_taps<T: Scalar>(r: T, q: T, h: usize, w: usize) -> [Option<(usize, T)>; 4] {
    let (rf, qf) = (r.to_f64().floor(), q.to_f64().floor());
    let fr = r - T::from_f64(rf);
    let fq = q - T::from_f64(qf);
    // NaN casts to 0 and huge values saturate; the bounds test below then decides.
    let (r0, q0) = (rf as i64, qf as i64);
    let mut taps = [None; 4];
    for (k, tap) in taps.iter_mut().enumerate() {
        let (u, v) = (k / 2, k % 2);
        let rr = r0.saturating_add(u as i64);
        let qq = q0.saturating_add(v as i64);
        if rr < 0 || qq < 0 || rr >= h as i64 || qq >= w as i64 {
            continue;
        }
        let wr = if u == 1 { fr } else { T::ONE - fr };
        let wq = if v == 1 { fq } else { T::ONE - fq };
        let wt = wr * wq;
        if wt != T::ZERO {
            *tap = Some((rr as usize * w + qq as usize, wt));
        }
    }
    taps
}

/// Centres `(cx, cy) = ((W-1)/2, (H-1)/2)` of a plane.
fn centres<T: Scalar>(s: &ImgShape) -> (T, T) {
    (
        T::from_f64((s.w as f64 - 1.0) / 2.0),
        T::from_f64((s.h as f64 - 1.0) / 2.0),
    )
}

/// Bilinear resampling of one plane with zero padding (gather).
fn affine_fwd_plane<T: Scalar>(y: &mut [T], x: &[T], p: &AffineParam, s: &ImgShape) {
    let (h, w) = (s.h as usize, s.w as usize);
    let (cx, cy) = centres::<T>(s);
    for i in 0..h {
        for j in 0..w {
            let (r, q) = affine_source(p, i, j, cx, cy);
            let mut acc = T::ZERO;
            for (idx, wt) in bilinear_taps(r, q, h, w).into_iter().flatten() {
                acc += wt * x[idx];
            }
            y[i * w + j] = acc;
        }
    }
}

/// Adjoint of [`affine_fwd_plane`]: every output gradient is scattered into the
/// in-range neighbours of its source point with the same weights.
fn affine_bwd_plane<T: Scalar>(dx: &mut [T], dy: &[T], p: &AffineParam, s: &ImgShape) {
    let (h, w) = (s.h as usize, s.w as usize);
    let (cx, cy) = centres::<T>(s);
    dx.fill(T::ZERO);
    for i in 0..h {
        for j in 0..w {
            let g = dy[i * w + j];
            let (r, q) = affine_source(p, i, j, cx, cy);
            for (idx, wt) in bilinear_taps(r, q, h, w).into_iter().flatten() {
                dx[idx] += wt * g;
            }
        }
    }
}

/// `y = x` mirrored along the width axis (column j -> W-1-j) when `on`, else a copy.
fn flip_plane<T: Scalar>(y: &mut [T], x: &[T], on: bool, s: &ImgShape) {
    if !on {
        y.copy_from_slice(x);
        return;
    }
    let w = s.w as usize;
    for (yr, xr) in y.chunks_exact_mut(w).zip(x.chunks_exact(w)) {
        for (o, &v) in yr.iter_mut().zip(xr.iter().rev()) {
            *o = v;
        }
    }
}

/// `y(i, j) = x(i + a, j + b)` where the source is inside the plane, else 0.
fn shift_plane<T: Scalar>(y: &mut [T], x: &[T], a: i32, b: i32, s: &ImgShape) {
    let (h, w) = (s.h as i64, s.w as i64);
    let (a, b) = (a as i64, b as i64);
    for i in 0..h {
        let si = i + a;
        let row = &mut y[(i * w) as usize..((i + 1) * w) as usize];
        if si < 0 || si >= h {
            row.fill(T::ZERO);
            continue;
        }
        for (j, o) in row.iter_mut().enumerate() {
            let sj = j as i64 + b;
            *o = if sj < 0 || sj >= w {
                T::ZERO
            } else {
                x[(si * w + sj) as usize]
            };
        }
    }
}

/// `y = x` with rows `[a - half, a + half - 1]` x columns `[b - half, b + half - 1]`
/// (clipped to the plane) set to zero.
fn cutout_plane<T: Scalar>(y: &mut [T], x: &[T], c: IntParam, half: i32, s: &ImgShape) {
    y.copy_from_slice(x);
    let (h, w) = (s.h as i64, s.w as i64);
    let (half, a, b) = (half as i64, c.a as i64, c.b as i64);
    let (r0, r1) = ((a - half).max(0), (a + half).min(h));
    let (c0, c1) = ((b - half).max(0), (b + half).min(w));
    for i in r0..r1 {
        for j in c0..c1 {
            y[(i * w + j) as usize] = T::ZERO;
        }
    }
}

/// One image `[C, H, W]`: `y = (x - m) k + m` with `m` the per-pixel channel mean,
/// evaluated as `k x + (1 - k) m` so that `k = 1` reproduces `x` exactly.
/// The map is symmetric, so it is also its own adjoint.
fn saturation_image<T: Scalar>(y: &mut [T], x: &[T], k: T, s: &ImgShape) {
    let (c, hw) = (s.c as usize, (s.h * s.w) as usize);
    let inv_c = T::ONE / T::from_f64(c as f64);
    for p in 0..hw {
        let mut sum = T::ZERO;
        for ch in 0..c {
            sum += x[ch * hw + p];
        }
        let bias = (T::ONE - k) * (sum * inv_c);
        for ch in 0..c {
            y[ch * hw + p] = k * x[ch * hw + p] + bias;
        }
    }
}

/// One image `[C, H, W]`: `y = (x - M) k + M` with `M` the mean over the image,
/// evaluated as `k x + (1 - k) M` so that `k = 1` reproduces `x` exactly.
/// The map is symmetric, so it is also its own adjoint.
fn contrast_image<T: Scalar>(y: &mut [T], x: &[T], k: T) {
    let sum: T = x.iter().copied().sum();
    let bias = (T::ONE - k) * (sum / T::from_f64(x.len() as f64));
    for (o, &v) in y.iter_mut().zip(x) {
        *o = k * v + bias;
    }
}
