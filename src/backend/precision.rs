//! Arithmetic precision of the matrix products (convolutions and linear layers).
//!
//! [`Precision::Fp32`] multiplies FP32 operands on the FP32 units. [`Precision::Tf32`]
//! and [`Precision::Bf16`] round both operands of every convolution and linear-layer
//! product to TF32 (10 mantissa bits) or BF16 (7 mantissa bits) on the fly and
//! accumulate in FP32: what the GPU's matrix units (tensor cores) compute, and what
//! PyTorch's cuDNN does by default on these GPUs for TF32. Everything else (bias,
//! normalisation, activations, statistics, the loss, the matching distance, the
//! synthetic images and their update) stays in FP32. The second-order pass is the same
//! exact derivation; only the arithmetic of its matrix products changes.
//!
//! The `cpu` backend rounds the operands with [`Precision::round`] before its FP32
//! GEMM; the `cuda` and `emu` backends run the `*_tf32` / `*_bf16` kernels
//! (`kernels/igemm_mma.cuh`), which round with the device's conversions
//! (`cvt.rna.tf32.f32`, `cvt.rn.bf16.f32`): the same functions. The maths and the
//! error model are in `docs/derivations/precision.md`.

use super::Scalar;
use std::borrow::Cow;

/// Arithmetic precision of the convolution and linear-layer products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP32 operands, FP32 accumulation (the default).
    #[default]
    Fp32,
    /// Operands rounded to TF32 (1 + 8 + 10 bits, round to nearest, ties away from
    /// zero), FP32 accumulation.
    Tf32,
    /// Operands rounded to BF16 (1 + 8 + 7 bits, round to nearest even), FP32
    /// accumulation.
    Bf16,
}

impl Precision {
    /// Every precision, in the order of the `--precision` help.
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Tf32, Precision::Bf16];

    /// The option value (`fp32`, `tf32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Unit roundoff `u` of an operand: the largest relative error of [`Self::round`]
    /// (0 for FP32, whose operands are used as they are).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::Fp32 => 0.0,
            Precision::Tf32 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    /// Relative tolerance `‖out − ref‖ / ‖ref‖` of a product in this precision
    /// against the FP32 product, for inputs with random signs: about `0.6 u` is
    /// expected (each rounded operand contributes a relative error of RMS about
    /// `0.42 u`, see `docs/derivations/precision.md`); the tolerance is `2 u` (TF32 about
    /// 1e-3, BF16 about 8e-3) and FP32's is 1e-5.
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::Fp32 => 1e-5,
            p => 2.0 * p.unit_roundoff(),
        }
    }

    /// `v` rounded to this precision's operand format (returned as f32). NaN and
    /// infinities pass through; a finite value whose rounding overflows becomes
    /// infinite, as on the device.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Precision::Fp32 => v,
            Precision::Tf32 => round_tf32(v),
            Precision::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// The operands `v` rounded (a copy), or `v` itself in FP32.
    pub fn round_slice<T: Scalar>(self, v: &[T]) -> Cow<'_, [T]> {
        match self {
            Precision::Fp32 => Cow::Borrowed(v),
            p => Cow::Owned(
                v.iter()
                    .map(|&x| T::from_f32(p.round(x.to_f32())))
                    .collect(),
            ),
        }
    }
}

/// Round to TF32 (10 explicit mantissa bits), to nearest with ties away from zero:
/// PTX `cvt.rna.tf32.f32`, CUDA's `wmma::__float_to_tf32`. The result is an f32 whose
/// 13 low mantissa bits are 0.
fn round_tf32(v: f32) -> f32 {
    if !v.is_finite() {
        return v;
    }
    // The bits are sign-magnitude: adding half an ulp of the TF32 grid to the
    // magnitude and truncating rounds half-way cases away from zero; a carry into
    // the exponent is the correct next binade (or infinity).
    f32::from_bits((v.to_bits() + 0x1000) & !0x1fff)
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision '{s}' (expected fp32, tf32 or bf16)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_rounds_to_nearest_ties_away() {
        let ulp = 2f32.powi(-10); // TF32 spacing in [1, 2)
        assert_eq!(round_tf32(1.0), 1.0);
        assert_eq!(round_tf32(1.0 + 0.49 * ulp), 1.0);
        assert_eq!(round_tf32(1.0 + 0.51 * ulp), 1.0 + ulp);
        // exact halves go away from zero, on both signs
        assert_eq!(round_tf32(1.0 + 0.5 * ulp), 1.0 + ulp);
        assert_eq!(round_tf32(-(1.0 + 0.5 * ulp)), -(1.0 + ulp));
        assert_eq!(round_tf32(1.0 + 1.5 * ulp), 1.0 + 2.0 * ulp);
        // carry into the exponent
        assert_eq!(round_tf32(2.0 - 0.5 * ulp), 2.0);
        assert_eq!(round_tf32(f32::MAX), f32::INFINITY);
        assert!(round_tf32(f32::NAN).is_nan());
        assert_eq!(round_tf32(f32::NEG_INFINITY), f32::NEG_INFINITY);
        // subnormals keep their sign and lose the same low bits
        let tiny = f32::from_bits(0x0000_3fff);
        assert_eq!(round_tf32(tiny).to_bits(), 0x0000_4000);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        let ulp = 2f32.powi(-7);
        assert_eq!(Precision::Bf16.round(1.0 + 0.5 * ulp), 1.0); // tie to even
        assert_eq!(Precision::Bf16.round(1.0 + 1.5 * ulp), 1.0 + 2.0 * ulp);
        assert_eq!(Precision::Bf16.round(1.0 + 0.51 * ulp), 1.0 + ulp);
    }

    #[test]
    fn relative_error_is_within_the_unit_roundoff() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for p in [Precision::Tf32, Precision::Bf16] {
            let u = p.unit_roundoff();
            let mut worst = 0f64;
            for _ in 0..100_000 {
                let v: f32 = rng.random_range(-1e3f32..1e3);
                if v == 0.0 {
                    continue;
                }
                let r = p.round(v);
                worst = worst.max(((r as f64 - v as f64) / v as f64).abs());
            }
            assert!(worst <= u, "{p}: worst relative error {worst} > {u}");
            assert!(
                worst > 0.5 * u,
                "{p}: worst relative error {worst} too small"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
        }
        assert!("fp16".parse::<Precision>().unwrap_err().contains("fp16"));
    }
}
