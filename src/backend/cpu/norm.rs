//! Group / instance / layer norm and batch norm: forward, backward, second order.
//!
//! Maths (first and second order, with the derivation of every term):
//! `docs/derivations/norm.md`. Notation used below, per normalisation group of
//! `M` elements: `r = rstd = 1/sqrt(var + eps)`, `xhat = (x - mu) r`, and the
//! Jacobian of `xhat` w.r.t. `x`, which is symmetric:
//! `J v = r (v - mean(v) - xhat mean(xhat v))`.
//!
//! Thread mapping: group norm runs one task per (sample, group), whose elements
//! are contiguous (`(C/G)*H*W` of them); batch norm reduces one task per channel
//! and writes one task per (sample, channel) plane. Every reduction runs in a
//! fixed sequential order inside one task, in f64, so results do not depend on
//! the thread count. Statistics use two passes over the (cache-resident) group:
//! the mean, then the centred sum of squares, which is stable where the
//! one-pass `E[x^2] - E[x]^2` is not.
//!
//! All outputs are overwritten.
#![allow(clippy::too_many_arguments)]
use super::scratch::with_scratch;
use crate::backend::*;
use crate::error::{Error, Result};
use rayon::prelude::*;
use rayon::ThreadPool;

fn shape_err(what: &str, msg: String) -> Error {
    Error::Shape(format!("cpu {what}: {msg}"))
}

fn want_len(what: &str, name: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(shape_err(
            what,
            format!("{name} has {got} elements, shape needs {want}"),
        ));
    }
    Ok(())
}

/// Validated geometry of a group norm (`s.groups` groups) or a batch norm.
#[derive(Clone, Copy)]
struct Geo {
    /// Samples N.
    n: usize,
    /// Channels C.
    c: usize,
    /// H*W.
    hw: usize,
    /// Groups G (group norm only).
    g: usize,
    /// Channels per group C/G.
    cg: usize,
    /// Elements per group (C/G)*H*W.
    m: usize,
    /// Affine parameters per element (`[C, H, W]`) instead of per channel.
    per_elem: bool,
    /// Variance epsilon.
    eps: f64,
}

impl Geo {
    /// Group-norm geometry; checks the shape and the affine parameter lengths.
    fn group(what: &str, s: &NormShape, affine: &[usize]) -> Result<Self> {
        let (n, c, hw, g) = (s.n as usize, s.c as usize, s.hw as usize, s.groups as usize);
        if n == 0 || c == 0 || hw == 0 || g == 0 {
            return Err(shape_err(
                what,
                format!("zero dimension (n={n}, c={c}, hw={hw}, groups={g})"),
            ));
        }
        if c % g != 0 {
            return Err(shape_err(
                what,
                format!("{g} groups do not divide {c} channels"),
            ));
        }
        let per_elem = match s.affine {
            0 => false,
            1 => true,
            a => {
                return Err(shape_err(
                    what,
                    format!("affine layout {a} is neither 0 nor 1"),
                ))
            }
        };
        let geo = Self {
            n,
            c,
            hw,
            g,
            cg: c / g,
            m: (c / g) * hw,
            per_elem,
            eps: Self::eps(what, s)?,
        };
        let want = if per_elem { c * hw } else { c };
        for &len in affine {
            want_len(what, "an affine parameter", len, want)?;
        }
        Ok(geo)
    }

    /// Batch-norm geometry (statistics per channel over N, H, W; `groups` and
    /// `affine` are not used: gamma and beta always have C elements).
    fn batch(what: &str, s: &NormShape, affine: &[usize]) -> Result<Self> {
        let (n, c, hw) = (s.n as usize, s.c as usize, s.hw as usize);
        if n == 0 || c == 0 || hw == 0 {
            return Err(shape_err(
                what,
                format!("zero dimension (n={n}, c={c}, hw={hw})"),
            ));
        }
        for &len in affine {
            want_len(what, "an affine parameter", len, c)?;
        }
        Ok(Self {
            n,
            c,
            hw,
            g: c,
            cg: 1,
            m: n * hw,
            per_elem: false,
            eps: Self::eps(what, s)?,
        })
    }

    fn eps(what: &str, s: &NormShape) -> Result<f64> {
        let eps = s.eps as f64;
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(shape_err(
                what,
                format!("eps {eps} is not a finite value >= 0"),
            ));
        }
        Ok(eps)
    }

    /// Elements of the activation.
    fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// Affine coefficient of channel `c`, spatial position `h` (f64).
    #[inline]
    fn at<T: Scalar>(&self, p: &[T], c: usize, h: usize) -> f64 {
        if self.per_elem {
            p[c * self.hw + h].to_f64()
        } else {
            p[c].to_f64()
        }
    }
}

/// Independent partial sums of the vectorisable reductions: element `i` goes to
/// lane `i % LANES`, and the lanes are added in a fixed order at the end, so the
/// result depends on the data only (not on the machine or the thread count).
const LANES: usize = 8;

/// Adds the lanes in a fixed pairwise order.
#[inline(always)]
fn fold_lanes(l: [f64; LANES]) -> f64 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// `sum_i f(x_i)` in f64, in [`LANES`] partial sums (vectorisable).
#[inline(always)]
fn lane_sum<T: Scalar>(x: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for ch in chunks {
        for l in 0..LANES {
            acc[l] += f(ch[l].to_f64());
        }
    }
    for (l, v) in tail.iter().enumerate() {
        acc[l] += f(v.to_f64());
    }
    fold_lanes(acc)
}

/// `(sum_i a_i, sum_i a_i b_i)` in f64, in [`LANES`] partial sums each, where
/// `b_i = g(x_i)` (vectorisable).
#[inline(always)]
fn lane_sum_pair<T: Scalar>(a: &[T], x: &[T], g: impl Fn(f64) -> f64) -> (f64, f64) {
    let (mut sa, mut sab) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (ca, cx) = (a.chunks_exact(LANES), x.chunks_exact(LANES));
    let (ta, tx) = (ca.remainder(), cx.remainder());
    for (ch_a, ch_x) in ca.zip(cx) {
        for l in 0..LANES {
            let av = ch_a[l].to_f64();
            sa[l] += av;
            sab[l] += av * g(ch_x[l].to_f64());
        }
    }
    for (l, (av, xv)) in ta.iter().zip(tx).enumerate() {
        let av = av.to_f64();
        sa[l] += av;
        sab[l] += av * g(xv.to_f64());
    }
    (fold_lanes(sa), fold_lanes(sab))
}

/// Mean and rstd of a slice (two passes, f64).
fn moments<T: Scalar>(x: &[T], eps: f64) -> (f64, f64) {
    let m = x.len() as f64;
    let mean = lane_sum(x, |v| v) / m;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / m;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Affine coefficients of channel `c` as slices of `hw` (per element) or 1
/// (per channel) values.
#[inline]
fn affine_row<'a, T>(geo: &Geo, p: &'a [T], c: usize) -> &'a [T] {
    if geo.per_elem {
        &p[c * geo.hw..(c + 1) * geo.hw]
    } else {
        &p[c..c + 1]
    }
}

/// `out_k = T(f(x_k, g_k, b_k))` over one channel row, with per-element or
/// per-channel (broadcast) coefficients `g`, `b` (vectorisable either way).
#[inline(always)]
fn map_row<T: Scalar>(out: &mut [T], x: &[T], g: &[T], b: &[T], f: impl Fn(f64, f64, f64) -> f64) {
    if g.len() == 1 {
        let (g, b) = (g[0].to_f64(), b[0].to_f64());
        for (o, v) in out.iter_mut().zip(x) {
            *o = T::from_f64(f(v.to_f64(), g, b));
        }
    } else {
        for (((o, v), gv), bv) in out.iter_mut().zip(x).zip(g).zip(b) {
            *o = T::from_f64(f(v.to_f64(), gv.to_f64(), bv.to_f64()));
        }
    }
}

/// `(mu, rstd)` of group `i` from `stats = [mu (N*G), rstd (N*G)]`.
#[inline]
fn group_stats<T: Scalar>(stats: &[T], ng: usize, i: usize) -> (f64, f64) {
    (stats[i].to_f64(), stats[ng + i].to_f64())
}

/// Checks `stats` for finite values (`rstd` of a constant group with eps = 0 is
/// infinite, which no later op can use).
fn check_stats<T: Scalar>(what: &str, stats: &[T]) -> Result<()> {
    if let Some(i) = stats.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "cpu {what}: statistic {i} of {} is {}",
            stats.len(),
            stats[i]
        )));
    }
    Ok(())
}

/// Group norm forward: `y = gamma * (x - mu) * rstd + beta` per (sample, group);
/// writes `stats = [mu (N*G), rstd (N*G)]`. x, y `[N, C, H*W]`; gamma, beta `[C]`
/// or `[C, H*W]`. One task per (n, g). See `docs/derivations/norm.md` §1.
pub fn norm_fwd<T: Scalar>(
    pool: &ThreadPool,
    y: &mut [T],
    stats: &mut [T],
    x: &[T],
    gamma: &[T],
    beta: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "norm_fwd";
    let geo = Geo::group(WHAT, s, &[gamma.len(), beta.len()])?;
    want_len(WHAT, "x", x.len(), geo.len())?;
    want_len(WHAT, "y", y.len(), geo.len())?;
    let ng = geo.n * geo.g;
    want_len(WHAT, "stats", stats.len(), 2 * ng)?;
    let (mu, rstd) = stats.split_at_mut(ng);
    pool.install(|| {
        y.par_chunks_mut(geo.m)
            .zip(x.par_chunks(geo.m))
            .zip(mu.par_iter_mut().zip(rstd.par_iter_mut()))
            .enumerate()
            .for_each(|(i, ((yc, xc), (mu, rs)))| {
                let (mean, r) = moments(xc, geo.eps);
                *mu = T::from_f64(mean);
                *rs = T::from_f64(r);
                // Normalise with the stored (rounded) statistics, as the backward reads them.
                let (mean, r) = (mu.to_f64(), rs.to_f64());
                let g = i % geo.g;
                for (ci, (yr, xr)) in yc
                    .chunks_exact_mut(geo.hw)
                    .zip(xc.chunks_exact(geo.hw))
                    .enumerate()
                {
                    let c = g * geo.cg + ci;
                    let (gr, br) = (affine_row(&geo, gamma, c), affine_row(&geo, beta, c));
                    if gr.len() == 1 {
                        // y = x * scale + shift in the element type (vectorises at full width).
                        let scale = gr[0].to_f64() * r;
                        let shift = br[0].to_f64() - mean * scale;
                        let (scale, shift) = (T::from_f64(scale), T::from_f64(shift));
                        for (o, &v) in yr.iter_mut().zip(xr) {
                            *o = v * scale + shift;
                        }
                    } else {
                        map_row(yr, xr, gr, br, |v, gv, bv| gv * ((v - mean) * r) + bv);
                    }
                }
            });
    });
    check_stats(WHAT, stats)
}

/// Group norm backward: `dx = J^T (gamma dy)` (overwritten); if `dparams` is given,
/// `dgamma = sum dy xhat`, `dbeta = sum dy` there (overwritten; sums over N and,
/// per channel, H*W). One task per (n, g) for dx; with per-channel parameters the
/// same task also leaves its per-(n, c) parameter sums, added over n in order
/// afterwards (no second pass over dy and x). See `docs/derivations/norm.md` §2.
pub fn norm_bwd<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dparams: Option<(&mut [T], &mut [T])>,
    dy: &[T],
    x: &[T],
    stats: &[T],
    gamma: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "norm_bwd";
    let geo = Geo::group(WHAT, s, &[gamma.len()])?;
    for (name, len) in [("dx", dx.len()), ("dy", dy.len()), ("x", x.len())] {
        want_len(WHAT, name, len, geo.len())?;
    }
    let ng = geo.n * geo.g;
    want_len(WHAT, "stats", stats.len(), 2 * ng)?;
    if let Some((dg, db)) = &dparams {
        want_len(WHAT, "dgamma", dg.len(), gamma.len())?;
        want_len(WHAT, "dbeta", db.len(), gamma.len())?;
    }
    // Per-(n, c) sums [sum dy xhat, sum dy] of per-channel parameters.
    let fused_params = dparams.is_some() && !geo.per_elem;
    // (Scratch kept per thread: sized once, then reused; with per-element
    // parameters the sums are left unused.)
    pool.install(|| {
        with_scratch(2 * geo.n * geo.c, |parts: &mut [f64]| {
            dx.par_chunks_mut(geo.m)
                .zip(dy.par_chunks(geo.m).zip(x.par_chunks(geo.m)))
                .zip(parts.par_chunks_mut(2 * geo.cg))
                .enumerate()
                .for_each(|(i, ((dxc, (dyc, xc)), part))| {
                    let (mean, r) = group_stats(stats, ng, i);
                    let xhat = |v: f64| (v - mean) * r;
                    let g = i % geo.g;
                    let (mut sw, mut swx) = (0.0, 0.0);
                    for (ci, (dyr, xr)) in dyc
                        .chunks_exact(geo.hw)
                        .zip(xc.chunks_exact(geo.hw))
                        .enumerate()
                    {
                        let gr = affine_row(&geo, gamma, g * geo.cg + ci);
                        if gr.len() == 1 {
                            let (sd, sdx) = lane_sum_pair(dyr, xr, xhat);
                            part[2 * ci] = sdx;
                            part[2 * ci + 1] = sd;
                            let gv = gr[0].to_f64();
                            sw += gv * sd;
                            swx += gv * sdx;
                        } else {
                            for ((d, v), gv) in dyr.iter().zip(xr).zip(gr) {
                                let w = gv.to_f64() * d.to_f64();
                                sw += w;
                                swx += w * xhat(v.to_f64());
                            }
                        }
                    }
                    let (wm, wx) = (sw / geo.m as f64, swx / geo.m as f64);
                    for (ci, ((dxr, dyr), xr)) in dxc
                        .chunks_exact_mut(geo.hw)
                        .zip(dyc.chunks_exact(geo.hw))
                        .zip(xc.chunks_exact(geo.hw))
                        .enumerate()
                    {
                        let gr = affine_row(&geo, gamma, g * geo.cg + ci);
                        if gr.len() == 1 {
                            // dx = r (g dy - wm - xhat wx) = a dy + b x + c, in the
                            // element type (vectorises at full width).
                            let a = T::from_f64(r * gr[0].to_f64());
                            let b = T::from_f64(-r * r * wx);
                            let c = T::from_f64(r * (mean * r * wx - wm));
                            for ((o, &d), &v) in dxr.iter_mut().zip(dyr).zip(xr) {
                                *o = a * d + b * v + c;
                            }
                        } else {
                            for (((o, d), v), gv) in dxr.iter_mut().zip(dyr).zip(xr).zip(gr) {
                                let xh = xhat(v.to_f64());
                                *o = T::from_f64(r * (gv.to_f64() * d.to_f64() - wm - xh * wx));
                            }
                        }
                    }
                });
            if let Some((dgamma, dbeta)) = dparams {
                if fused_params {
                    // dgamma[c] = sum_n parts[n, c, 0], dbeta[c] = sum_n parts[n, c, 1].
                    dgamma
                        .par_iter_mut()
                        .zip(dbeta.par_iter_mut())
                        .enumerate()
                        .for_each(|(c, (dg, db))| {
                            let (mut sg, mut sb) = (0.0, 0.0);
                            for n in 0..geo.n {
                                sg += parts[2 * (n * geo.c + c)];
                                sb += parts[2 * (n * geo.c + c) + 1];
                            }
                            *dg = T::from_f64(sg);
                            *db = T::from_f64(sb);
                        });
                } else {
                    group_param_grads(&geo, dgamma, dbeta, dy, x, stats);
                }
            }
        })
    });
    Ok(())
}

/// `dgamma = sum dy xhat`, `dbeta = sum dy` of a group norm, per channel or per
/// element; one task per channel, sums over n (outer) then h in fixed order.
fn group_param_grads<T: Scalar>(
    geo: &Geo,
    dgamma: &mut [T],
    dbeta: &mut [T],
    dy: &[T],
    x: &[T],
    stats: &[T],
) {
    let ng = geo.n * geo.g;
    let width = if geo.per_elem { geo.hw } else { 1 };
    dgamma
        .par_chunks_mut(width)
        .zip(dbeta.par_chunks_mut(width))
        .enumerate()
        .for_each(|(c, (dgc, dbc))| {
            let g = c / geo.cg;
            if geo.per_elem {
                for h in 0..geo.hw {
                    let (mut sg, mut sb) = (0.0, 0.0);
                    for n in 0..geo.n {
                        let (mean, r) = group_stats(stats, ng, n * geo.g + g);
                        let k = (n * geo.c + c) * geo.hw + h;
                        let d = dy[k].to_f64();
                        sg += d * (x[k].to_f64() - mean) * r;
                        sb += d;
                    }
                    dgc[h] = T::from_f64(sg);
                    dbc[h] = T::from_f64(sb);
                }
            } else {
                let (mut sg, mut sb) = (0.0, 0.0);
                for n in 0..geo.n {
                    let (mean, r) = group_stats(stats, ng, n * geo.g + g);
                    let base = (n * geo.c + c) * geo.hw;
                    for k in base..base + geo.hw {
                        let d = dy[k].to_f64();
                        sg += d * (x[k].to_f64() - mean) * r;
                        sb += d;
                    }
                }
                dgc[0] = T::from_f64(sg);
                dbc[0] = T::from_f64(sb);
            }
        });
}

/// Group norm forward tangent: `ydot = gamma J xdot + t_gamma xhat + t_beta`
/// (overwritten). `t_gamma`, `t_beta` have the layout of gamma. One task per
/// (n, g). See `docs/derivations/norm.md` §3.
pub fn norm_jvp<T: Scalar>(
    pool: &ThreadPool,
    ydot: &mut [T],
    x: &[T],
    xdot: &[T],
    stats: &[T],
    gamma: &[T],
    t_gamma: &[T],
    t_beta: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "norm_jvp";
    let geo = Geo::group(WHAT, s, &[gamma.len(), t_gamma.len(), t_beta.len()])?;
    for (name, len) in [("ydot", ydot.len()), ("x", x.len()), ("xdot", xdot.len())] {
        want_len(WHAT, name, len, geo.len())?;
    }
    let ng = geo.n * geo.g;
    want_len(WHAT, "stats", stats.len(), 2 * ng)?;
    pool.install(|| {
        ydot.par_chunks_mut(geo.m)
            .zip(x.par_chunks(geo.m).zip(xdot.par_chunks(geo.m)))
            .enumerate()
            .for_each(|(i, (yc, (xc, vc)))| {
                let (mean, r) = group_stats(stats, ng, i);
                let g = i % geo.g;
                let (mut sv, mut svx) = (0.0, 0.0);
                for k in 0..geo.m {
                    let v = vc[k].to_f64();
                    sv += v;
                    svx += v * (xc[k].to_f64() - mean) * r;
                }
                let (vm, a) = (sv / geo.m as f64, svx / geo.m as f64);
                for ci in 0..geo.cg {
                    let c = g * geo.cg + ci;
                    for h in 0..geo.hw {
                        let k = ci * geo.hw + h;
                        let xh = (xc[k].to_f64() - mean) * r;
                        let jv = r * (vc[k].to_f64() - vm - xh * a);
                        yc[k] = T::from_f64(
                            geo.at(gamma, c, h) * jv
                                + geo.at(t_gamma, c, h) * xh
                                + geo.at(t_beta, c, h),
                        );
                    }
                }
            });
    });
    Ok(())
}

/// Reverse of the dual group norm (primal `y`, tangent `ydot` of [`norm_jvp`]),
/// both outputs overwritten: with `u = gamma dydot`, `v = xdot`,
/// `dxdot = J u` and
/// `dx = J(gamma dy + t_gamma dydot)
///      + r^2 [ -c (v - mean v) - a (u - mean u) + (3ac - q) xhat ]`,
/// `a = mean(xhat v)`, `c = mean(xhat u)`, `q = mean(u v) - mean(u) mean(v)`
/// (the last bracket is `grad_x <u, J(x) v>`). One task per (n, g).
/// See `docs/derivations/norm.md` §4.
pub fn norm_dual_bwd<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dxdot: &mut [T],
    dy: &[T],
    dydot: &[T],
    x: &[T],
    xdot: &[T],
    stats: &[T],
    gamma: &[T],
    t_gamma: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "norm_dual_bwd";
    let geo = Geo::group(WHAT, s, &[gamma.len(), t_gamma.len()])?;
    for (name, len) in [
        ("dx", dx.len()),
        ("dxdot", dxdot.len()),
        ("dy", dy.len()),
        ("dydot", dydot.len()),
        ("x", x.len()),
        ("xdot", xdot.len()),
    ] {
        want_len(WHAT, name, len, geo.len())?;
    }
    let ng = geo.n * geo.g;
    want_len(WHAT, "stats", stats.len(), 2 * ng)?;
    let m = geo.m;
    pool.install(|| {
        dx.par_chunks_mut(m)
            .zip(dxdot.par_chunks_mut(m))
            .zip(
                dy.par_chunks(m)
                    .zip(dydot.par_chunks(m))
                    .zip(x.par_chunks(m).zip(xdot.par_chunks(m))),
            )
            .enumerate()
            .for_each(|(i, ((dxc, dvc), ((dyc, dyd), (xc, vc))))| {
                let (mean, r) = group_stats(stats, ng, i);
                let g = i % geo.g;
                // Sums of w, w xhat, u, u xhat, v, v xhat, u v.
                let mut acc = [0.0f64; 7];
                for ci in 0..geo.cg {
                    let c = g * geo.cg + ci;
                    for h in 0..geo.hw {
                        let k = ci * geo.hw + h;
                        let xh = (xc[k].to_f64() - mean) * r;
                        let dd = dyd[k].to_f64();
                        let w = geo.at(gamma, c, h) * dyc[k].to_f64() + geo.at(t_gamma, c, h) * dd;
                        let u = geo.at(gamma, c, h) * dd;
                        let v = vc[k].to_f64();
                        acc[0] += w;
                        acc[1] += w * xh;
                        acc[2] += u;
                        acc[3] += u * xh;
                        acc[4] += v;
                        acc[5] += v * xh;
                        acc[6] += u * v;
                    }
                }
                let [wm, wx, um, cc, vm, a, uv] = acc.map(|v| v / m as f64);
                let q = uv - um * vm;
                let coef = 3.0 * a * cc - q;
                let r2 = r * r;
                for ci in 0..geo.cg {
                    let c = g * geo.cg + ci;
                    for h in 0..geo.hw {
                        let k = ci * geo.hw + h;
                        let xh = (xc[k].to_f64() - mean) * r;
                        let dd = dyd[k].to_f64();
                        let w = geo.at(gamma, c, h) * dyc[k].to_f64() + geo.at(t_gamma, c, h) * dd;
                        let u = geo.at(gamma, c, h) * dd;
                        let v = vc[k].to_f64();
                        dvc[k] = T::from_f64(r * (u - um - xh * cc));
                        let second = r2 * (-cc * (v - vm) - a * (u - um) + coef * xh);
                        dxc[k] = T::from_f64(r * (w - wm - xh * wx) + second);
                    }
                }
            });
    });
    Ok(())
}

/// Per-channel `(mean, rstd)` of a batch norm in train mode (biased variance),
/// also returning the biased variance. One task per channel; sums over n then hw.
fn bn_channel_moments<T: Scalar>(geo: &Geo, x: &[T], c: usize) -> (f64, f64) {
    let mut sum = 0.0;
    for n in 0..geo.n {
        let base = (n * geo.c + c) * geo.hw;
        sum += x[base..base + geo.hw]
            .iter()
            .map(|v| v.to_f64())
            .sum::<f64>();
    }
    let mean = sum / geo.m as f64;
    let mut ss = 0.0;
    for n in 0..geo.n {
        let base = (n * geo.c + c) * geo.hw;
        ss += x[base..base + geo.hw]
            .iter()
            .map(|v| {
                let d = v.to_f64() - mean;
                d * d
            })
            .sum::<f64>();
    }
    (mean, ss / geo.m as f64)
}

/// `y = gamma (x - mu) r + beta` per channel from per-channel `(mu, r)` pairs in
/// `mr` (f64, `[mu (C), r (C)]`); one task per (n, c) plane.
fn bn_apply<T: Scalar>(geo: &Geo, y: &mut [T], x: &[T], mr: &[f64], gamma: &[T], beta: &[T]) {
    y.par_chunks_mut(geo.hw)
        .zip(x.par_chunks(geo.hw))
        .enumerate()
        .for_each(|(p, (yc, xc))| {
            let c = p % geo.c;
            let (mean, r) = (mr[c], mr[geo.c + c]);
            let (gm, bt) = (gamma[c].to_f64(), beta[c].to_f64());
            for (yv, xv) in yc.iter_mut().zip(xc) {
                *yv = T::from_f64(gm * (xv.to_f64() - mean) * r + bt);
            }
        });
}

/// Batch norm, train mode: statistics per channel over (N, H, W) with the biased
/// variance into `stats = [mu (C), rstd (C)]`; `y = gamma (x - mu) rstd + beta`;
/// `running = [mean (C), var (C)]` moves by `momentum` towards the batch mean and
/// the unbiased batch variance `var * M/(M-1)`, `M = N*H*W` (as PyTorch, which
/// refuses M = 1; so do we). All outputs overwritten (running: updated in place).
/// See `docs/derivations/norm.md` §5.
pub fn bn_fwd_train<T: Scalar>(
    pool: &ThreadPool,
    y: &mut [T],
    stats: &mut [T],
    running: &mut [T],
    x: &[T],
    gamma: &[T],
    beta: &[T],
    s: &NormShape,
    momentum: f32,
) -> Result<()> {
    const WHAT: &str = "bn_fwd_train";
    let geo = Geo::batch(WHAT, s, &[gamma.len(), beta.len()])?;
    want_len(WHAT, "x", x.len(), geo.len())?;
    want_len(WHAT, "y", y.len(), geo.len())?;
    want_len(WHAT, "stats", stats.len(), 2 * geo.c)?;
    want_len(WHAT, "running", running.len(), 2 * geo.c)?;
    if geo.m < 2 {
        return Err(shape_err(
            WHAT,
            "train mode needs more than one value per channel (N*H*W >= 2)".into(),
        ));
    }
    let mom = momentum as f64;
    if !(0.0..=1.0).contains(&mom) {
        return Err(shape_err(WHAT, format!("momentum {mom} outside [0, 1]")));
    }
    let c = geo.c;
    let unbias = geo.m as f64 / (geo.m as f64 - 1.0);
    let mut mr = vec![0.0f64; 2 * c];
    pool.install(|| {
        let (mu, rstd) = stats.split_at_mut(c);
        let (rmean, rvar) = running.split_at_mut(c);
        let (mr_mu, mr_r) = mr.split_at_mut(c);
        mu.par_iter_mut()
            .zip(rstd.par_iter_mut())
            .zip(rmean.par_iter_mut().zip(rvar.par_iter_mut()))
            .zip(mr_mu.par_iter_mut().zip(mr_r.par_iter_mut()))
            .enumerate()
            .for_each(|(ch, (((mu, rs), (rm, rv)), (fm, fr)))| {
                let (mean, var) = bn_channel_moments(&geo, x, ch);
                *mu = T::from_f64(mean);
                *rs = T::from_f64(1.0 / (var + geo.eps).sqrt());
                *fm = mu.to_f64();
                *fr = rs.to_f64();
                *rm = T::from_f64((1.0 - mom) * rm.to_f64() + mom * mean);
                *rv = T::from_f64((1.0 - mom) * rv.to_f64() + mom * var * unbias);
            });
        bn_apply(&geo, y, x, &mr, gamma, beta);
    });
    check_stats(WHAT, stats)
}

/// Batch norm, train-mode backward through the batch statistics:
/// `dx = gamma r (dy - mean(dy) - xhat mean(dy xhat))` per channel (overwritten);
/// if asked, `dgamma = sum dy xhat`, `dbeta = sum dy` (overwritten). Reduction:
/// one task per channel; dx: one task per (n, c) plane.
/// See `docs/derivations/norm.md` §5.
pub fn bn_bwd_train<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dparams: Option<(&mut [T], &mut [T])>,
    dy: &[T],
    x: &[T],
    stats: &[T],
    gamma: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "bn_bwd_train";
    let geo = Geo::batch(WHAT, s, &[gamma.len()])?;
    for (name, len) in [("dx", dx.len()), ("dy", dy.len()), ("x", x.len())] {
        want_len(WHAT, name, len, geo.len())?;
    }
    let c = geo.c;
    want_len(WHAT, "stats", stats.len(), 2 * c)?;
    if let Some((dg, db)) = &dparams {
        want_len(WHAT, "dgamma", dg.len(), c)?;
        want_len(WHAT, "dbeta", db.len(), c)?;
    }
    // Per channel: [sum dy (C), sum dy xhat (C)].
    let mut sums = vec![0.0f64; 2 * c];
    pool.install(|| {
        let (sdy, sdyx) = sums.split_at_mut(c);
        sdy.par_iter_mut()
            .zip(sdyx.par_iter_mut())
            .enumerate()
            .for_each(|(ch, (a, b))| {
                let (mean, r) = (stats[ch].to_f64(), stats[c + ch].to_f64());
                let (mut s0, mut s1) = (0.0, 0.0);
                for n in 0..geo.n {
                    let base = (n * c + ch) * geo.hw;
                    for k in base..base + geo.hw {
                        let d = dy[k].to_f64();
                        s0 += d;
                        s1 += d * (x[k].to_f64() - mean) * r;
                    }
                }
                *a = s0;
                *b = s1;
            });
        let m = geo.m as f64;
        dx.par_chunks_mut(geo.hw)
            .zip(dy.par_chunks(geo.hw).zip(x.par_chunks(geo.hw)))
            .enumerate()
            .for_each(|(p, (dxc, (dyc, xc)))| {
                let ch = p % c;
                let (mean, r) = (stats[ch].to_f64(), stats[c + ch].to_f64());
                let (dm, dxm) = (sums[ch] / m, sums[c + ch] / m);
                let gr = gamma[ch].to_f64() * r;
                for k in 0..geo.hw {
                    let xh = (xc[k].to_f64() - mean) * r;
                    dxc[k] = T::from_f64(gr * (dyc[k].to_f64() - dm - xh * dxm));
                }
            });
    });
    if let Some((dg, db)) = dparams {
        for ch in 0..c {
            db[ch] = T::from_f64(sums[ch]);
            dg[ch] = T::from_f64(sums[c + ch]);
        }
    }
    Ok(())
}

/// Per-channel `[mean (C), rstd (C)]` (f64) from `running = [mean (C), var (C)]`.
fn running_mr<T: Scalar>(what: &str, geo: &Geo, running: &[T]) -> Result<Vec<f64>> {
    want_len(what, "running", running.len(), 2 * geo.c)?;
    let mut mr = vec![0.0f64; 2 * geo.c];
    for ch in 0..geo.c {
        let (mean, var) = (running[ch].to_f64(), running[geo.c + ch].to_f64());
        let r = 1.0 / (var + geo.eps).sqrt();
        if !(mean.is_finite() && r.is_finite()) {
            return Err(Error::NonFinite(format!(
                "cpu {what}: running statistics of channel {ch} (mean {mean}, var {var}) \
                 give no finite normalisation"
            )));
        }
        mr[ch] = mean;
        mr[geo.c + ch] = r;
    }
    Ok(mr)
}

/// Batch norm, eval mode: `y = gamma (x - mean) / sqrt(var + eps) + beta` with
/// `running = [mean (C), var (C)]` (overwritten y). One task per (n, c) plane.
/// See `docs/derivations/norm.md` §6.
pub fn bn_fwd_eval<T: Scalar>(
    pool: &ThreadPool,
    y: &mut [T],
    x: &[T],
    running: &[T],
    gamma: &[T],
    beta: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "bn_fwd_eval";
    let geo = Geo::batch(WHAT, s, &[gamma.len(), beta.len()])?;
    want_len(WHAT, "x", x.len(), geo.len())?;
    want_len(WHAT, "y", y.len(), geo.len())?;
    let mr = running_mr(WHAT, &geo, running)?;
    pool.install(|| bn_apply(&geo, y, x, &mr, gamma, beta));
    Ok(())
}

/// Batch norm, eval-mode backward: `dx = gamma rstd dy` (overwritten); if asked,
/// `dgamma = sum dy (x - mean) rstd`, `dbeta = sum dy` (overwritten). dx: one
/// task per (n, c) plane; parameters: one task per channel.
/// See `docs/derivations/norm.md` §6.
pub fn bn_bwd_eval<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dparams: Option<(&mut [T], &mut [T])>,
    dy: &[T],
    x: &[T],
    running: &[T],
    gamma: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "bn_bwd_eval";
    let geo = Geo::batch(WHAT, s, &[gamma.len()])?;
    for (name, len) in [("dx", dx.len()), ("dy", dy.len()), ("x", x.len())] {
        want_len(WHAT, name, len, geo.len())?;
    }
    let c = geo.c;
    if let Some((dg, db)) = &dparams {
        want_len(WHAT, "dgamma", dg.len(), c)?;
        want_len(WHAT, "dbeta", db.len(), c)?;
    }
    let mr = running_mr(WHAT, &geo, running)?;
    pool.install(|| {
        dx.par_chunks_mut(geo.hw)
            .zip(dy.par_chunks(geo.hw))
            .enumerate()
            .for_each(|(p, (dxc, dyc))| {
                let ch = p % c;
                let gr = gamma[ch].to_f64() * mr[c + ch];
                for (d, g) in dxc.iter_mut().zip(dyc) {
                    *d = T::from_f64(gr * g.to_f64());
                }
            });
        if let Some((dg, db)) = dparams {
            dg.par_iter_mut()
                .zip(db.par_iter_mut())
                .enumerate()
                .for_each(|(ch, (dgv, dbv))| {
                    let (mean, r) = (mr[ch], mr[c + ch]);
                    let (mut sg, mut sb) = (0.0, 0.0);
                    for n in 0..geo.n {
                        let base = (n * c + ch) * geo.hw;
                        for k in base..base + geo.hw {
                            let d = dy[k].to_f64();
                            sg += d * (x[k].to_f64() - mean) * r;
                            sb += d;
                        }
                    }
                    *dgv = T::from_f64(sg);
                    *dbv = T::from_f64(sb);
                });
        }
    });
    Ok(())
}

/// Batch norm, eval-mode tangent:
/// `ydot = gamma rstd xdot + t_gamma (x - mean) rstd + t_beta` (overwritten).
/// One task per (n, c) plane. See `docs/derivations/norm.md` §6.
pub fn bn_eval_jvp<T: Scalar>(
    pool: &ThreadPool,
    ydot: &mut [T],
    x: &[T],
    xdot: &[T],
    running: &[T],
    gamma: &[T],
    t_gamma: &[T],
    t_beta: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "bn_eval_jvp";
    let geo = Geo::batch(WHAT, s, &[gamma.len(), t_gamma.len(), t_beta.len()])?;
    for (name, len) in [("ydot", ydot.len()), ("x", x.len()), ("xdot", xdot.len())] {
        want_len(WHAT, name, len, geo.len())?;
    }
    let c = geo.c;
    let mr = running_mr(WHAT, &geo, running)?;
    pool.install(|| {
        ydot.par_chunks_mut(geo.hw)
            .zip(x.par_chunks(geo.hw).zip(xdot.par_chunks(geo.hw)))
            .enumerate()
            .for_each(|(p, (yc, (xc, vc)))| {
                let ch = p % c;
                let (mean, r) = (mr[ch], mr[c + ch]);
                let (gm, tg, tb) = (
                    gamma[ch].to_f64(),
                    t_gamma[ch].to_f64(),
                    t_beta[ch].to_f64(),
                );
                for k in 0..geo.hw {
                    let xh = (xc[k].to_f64() - mean) * r;
                    yc[k] = T::from_f64(gm * r * vc[k].to_f64() + tg * xh + tb);
                }
            });
    });
    Ok(())
}

/// Reverse of the eval-mode dual batch norm (both outputs overwritten):
/// `dxdot = gamma rstd dydot`, `dx = gamma rstd dy + t_gamma rstd dydot` (the
/// eval-mode map is affine in x, so there is no second-order term). One task
/// per (n, c) plane. See `docs/derivations/norm.md` §6.
pub fn bn_eval_dual_bwd<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dxdot: &mut [T],
    dy: &[T],
    dydot: &[T],
    running: &[T],
    gamma: &[T],
    t_gamma: &[T],
    s: &NormShape,
) -> Result<()> {
    const WHAT: &str = "bn_eval_dual_bwd";
    let geo = Geo::batch(WHAT, s, &[gamma.len(), t_gamma.len()])?;
    for (name, len) in [
        ("dx", dx.len()),
        ("dxdot", dxdot.len()),
        ("dy", dy.len()),
        ("dydot", dydot.len()),
    ] {
        want_len(WHAT, name, len, geo.len())?;
    }
    let c = geo.c;
    let mr = running_mr(WHAT, &geo, running)?;
    pool.install(|| {
        dx.par_chunks_mut(geo.hw)
            .zip(dxdot.par_chunks_mut(geo.hw))
            .zip(dy.par_chunks(geo.hw).zip(dydot.par_chunks(geo.hw)))
            .enumerate()
            .for_each(|(p, ((dxc, dvc), (dyc, ddc)))| {
                let ch = p % c;
                let r = mr[c + ch];
                let (gr, tr) = (gamma[ch].to_f64() * r, t_gamma[ch].to_f64() * r);
                for k in 0..geo.hw {
                    let dd = ddc[k].to_f64();
                    dvc[k] = T::from_f64(gr * dd);
                    dxc[k] = T::from_f64(gr * dyc[k].to_f64() + tr * dd);
                }
            });
    });
    Ok(())
}
