//! Host-side sampling of augmentation parameters (docs/method.md §2.3-§2.5).
//!
//! All randomness comes from the caller's RNG (a seeded ChaCha upstream), so the
//! same seed gives the same draws on every backend.

use super::strategy::{AugMode, DsaParams, Group, Strategy};
use crate::backend::{AffineParam, AugOp, IntParam};
use crate::error::{Error, Result};
use rand::Rng;

/// One siamese draw: the group choice and one parameter tuple, meant to be applied
/// identically to the real batch, the synthetic batch and every image of both
/// (docs/method.md §2.4). Turn it into launchable ops with [`AugDraw::ops`].
#[derive(Clone, Debug, PartialEq)]
pub struct AugDraw {
    groups: Vec<Group>,
    /// The functions in application order, each with parameters for one image.
    ops: Vec<AugOp>,
}

impl AugDraw {
    /// A draw from explicit values: the groups it stands for and its functions in
    /// application order, each with the parameters of one image (batch 1), e.g.
    /// `AugOp::Contrast(vec![1.2])`. Errors when an op is not for exactly one image.
    pub fn from_ops(groups: Vec<Group>, ops: Vec<AugOp>) -> Result<Self> {
        if let Some(op) = ops.iter().find(|op| op.batch() != 1) {
            return Err(Error::Shape(format!(
                "an augmentation draw holds one parameter tuple per function, got {op:?}"
            )));
        }
        Ok(AugDraw { groups, ops })
    }

    /// The groups that run, in order (one in mode S, all in mode M, none for the
    /// identity strategy).
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
    /// The functions with their single parameter tuple (batch 1 each).
    pub fn single(&self) -> &[AugOp] {
        &self.ops
    }
    /// True when no function runs.
    pub fn is_identity(&self) -> bool {
        self.ops.is_empty()
    }
    /// The op list for a batch of `n` images, every image with the same parameters.
    pub fn ops(&self, n: usize) -> Vec<AugOp> {
        self.ops.iter().map(|op| replicate(op, n)).collect()
    }
}

/// `op` (batch 1) with its parameters repeated for `n` images.
fn replicate(op: &AugOp, n: usize) -> AugOp {
    fn rep<P: Copy>(p: &[P], n: usize) -> Vec<P> {
        p.first().map(|&v| vec![v; n]).unwrap_or_default()
    }
    match op {
        AugOp::Affine(p) => AugOp::Affine(rep(p, n)),
        AugOp::Flip(p) => AugOp::Flip(rep(p, n)),
        AugOp::Brightness(p) => AugOp::Brightness(rep(p, n)),
        AugOp::Saturation(p) => AugOp::Saturation(rep(p, n)),
        AugOp::Contrast(p) => AugOp::Contrast(rep(p, n)),
        AugOp::Crop(p) => AugOp::Crop(rep(p, n)),
        AugOp::Cutout { centres, half } => AugOp::Cutout {
            centres: rep(centres, n),
            half: *half,
        },
    }
}

/// One siamese draw for images of side `side` (docs/method.md §2.4): in mode S one group
/// chosen uniformly among the listed ones (repetitions count), in mode M every
/// group in order; then one parameter tuple per function.
pub fn sample_siamese<R: Rng + ?Sized>(
    strategy: &Strategy,
    params: &DsaParams,
    mode: AugMode,
    side: usize,
    rng: &mut R,
) -> Result<AugDraw> {
    check(params, side)?;
    let groups = choose_groups(strategy, mode, rng);
    let mut ops = Vec::new();
    for &g in &groups {
        draw_group(g, params, side, 1, rng, &mut ops)?;
    }
    Ok(AugDraw { groups, ops })
}

/// Independent parameters for each of `n` images (the reference's `seed = -1`,
/// used by the inner loop and evaluation training): in mode S one group is chosen
/// for the whole batch, in mode M every group runs in order.
pub fn sample_per_image<R: Rng + ?Sized>(
    strategy: &Strategy,
    params: &DsaParams,
    mode: AugMode,
    side: usize,
    n: usize,
    rng: &mut R,
) -> Result<Vec<AugOp>> {
    check(params, side)?;
    let groups = choose_groups(strategy, mode, rng);
    let mut ops = Vec::new();
    for &g in &groups {
        draw_group(g, params, side, n, rng, &mut ops)?;
    }
    Ok(ops)
}

fn check(params: &DsaParams, side: usize) -> Result<()> {
    params.validate()?;
    if side == 0 || side > i32::MAX as usize / 2 {
        return Err(Error::Shape(format!(
            "augmentation: image side {side} is out of range"
        )));
    }
    Ok(())
}

fn choose_groups<R: Rng + ?Sized>(strategy: &Strategy, mode: AugMode, rng: &mut R) -> Vec<Group> {
    let g = strategy.groups();
    match mode {
        _ if g.is_empty() => Vec::new(),
        AugMode::S => vec![g[rng.random_range(0..g.len())]],
        AugMode::M => g.to_vec(),
    }
}

/// U(0, 1).
fn unif<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.random::<f64>()
}

/// Appends the function(s) of group `g` with `n` independent parameter tuples.
fn draw_group<R: Rng + ?Sized>(
    g: Group,
    p: &DsaParams,
    side: usize,
    n: usize,
    rng: &mut R,
    out: &mut Vec<AugOp>,
) -> Result<()> {
    match g {
        Group::Scale => {
            // sx on the width axis, sy on the height axis, both U(1/r, r).
            let lo = 1.0 / p.ratio_scale;
            let sx: Vec<f64> = (0..n)
                .map(|_| unif(rng) * (p.ratio_scale - lo) + lo)
                .collect();
            let sy: Vec<f64> = (0..n)
                .map(|_| unif(rng) * (p.ratio_scale - lo) + lo)
                .collect();
            let ps = sx
                .iter()
                .zip(&sy)
                .map(|(&sx, &sy)| AffineParam {
                    a00: sx as f32,
                    a01: 0.0,
                    a10: 0.0,
                    a11: sy as f32,
                })
                .collect();
            out.push(AugOp::Affine(ps));
        }
        Group::Rotate => {
            let ps = (0..n)
                .map(|_| {
                    let a = (unif(rng) - 0.5) * 2.0 * p.ratio_rotate.to_radians();
                    let (sin, cos) = a.sin_cos();
                    AffineParam {
                        a00: cos as f32,
                        a01: -sin as f32,
                        a10: sin as f32,
                        a11: cos as f32,
                    }
                })
                .collect();
            out.push(AugOp::Affine(ps));
        }
        Group::Flip => {
            let ps = (0..n)
                .map(|_| IntParam {
                    a: (unif(rng) < p.prob_flip) as i32,
                    b: 0,
                })
                .collect();
            out.push(AugOp::Flip(ps));
        }
        Group::Color => {
            let b = (0..n)
                .map(|_| ((unif(rng) - 0.5) * p.brightness) as f32)
                .collect();
            out.push(AugOp::Brightness(b));
            let s = (0..n).map(|_| (unif(rng) * p.saturation) as f32).collect();
            out.push(AugOp::Saturation(s));
            let c = (0..n).map(|_| (unif(rng) + p.contrast) as f32).collect();
            out.push(AugOp::Contrast(c));
        }
        Group::Crop => {
            // tx (rows) for every image, then ty (columns), as the reference draws.
            let shift = p.crop_shift(side);
            let tx: Vec<i32> = (0..n).map(|_| rng.random_range(-shift..=shift)).collect();
            let ty: Vec<i32> = (0..n).map(|_| rng.random_range(-shift..=shift)).collect();
            let ps = tx
                .iter()
                .zip(&ty)
                .map(|(&a, &b)| IntParam { a, b })
                .collect();
            out.push(AugOp::Crop(ps));
        }
        Group::Cutout => {
            // Centres uniform on {0, ..., S - (L mod 2)}; the zeroed square spans
            // rows [ox - L/2, ox + L/2 - 1] (exactly L rows for even L; for odd L,
            // which no standard dataset side produces, the square is L - 1 wide).
            let l = p.cutout_side(side);
            let hi = side as i32 + 1 - l.rem_euclid(2);
            if hi <= 0 {
                return Err(Error::Shape(format!(
                    "cutout: no valid centre for side {side} and square {l}"
                )));
            }
            let ox: Vec<i32> = (0..n).map(|_| rng.random_range(0..hi)).collect();
            let oy: Vec<i32> = (0..n).map(|_| rng.random_range(0..hi)).collect();
            let centres = ox
                .iter()
                .zip(&oy)
                .map(|(&a, &b)| IntParam { a, b })
                .collect();
            out.push(AugOp::Cutout {
                centres,
                half: l / 2,
            });
        }
    }
    Ok(())
}
