//! Augmentation. Mainly Differentiable Siamese Augmentation (docs/method.md §2): strategies,
//! parameter sampling on the host, application through a
//! [`Backend`](crate::backend::Backend).
//!
//! - [`Strategy`] parses strings such as `color_crop_cutout_flip_scale_rotate`;
//!   [`DsaParams`] holds the ranges (`ParamDiffAug` defaults); [`AugMode`] picks
//!   one group per call (`S`) or all groups in order (`M`).
//! - Sampling draws from a caller-provided, seeded RNG: [`sample_siamese`] gives
//!   one parameter tuple ([`AugDraw`]) shared by the real batch, the synthetic
//!   batch and every image of both; [`sample_per_image`] gives independent
//!   parameters per image (the reference's `seed = -1`).
//! - [`apply_fwd`] / [`apply_bwd`] run an op list (and its adjoint, in reverse
//!   order) on any backend; [`Augmenter`] does the same with two reusable scratch
//!   buffers for hot loops.
//!
//! [`legacy`] is the other, older augmentation: DC's non-differentiable
//! per-image crop/scale/rotate/noise of docs/method.md §5.5, applied on the host while
//! evaluation networks of a DC run train ([`dc_augment`]).
//!
//! The ops themselves ([`AugOp`](crate::backend::AugOp)) are defined in
//! `backend::shapes` and implemented per backend; derivations in
//! `docs/derivations/augment.md`.

mod apply;
pub mod legacy;
mod sample;
mod strategy;

pub use apply::{
    apply_bwd, apply_bwd_in_place, apply_fwd, apply_fwd_in_place, validate_ops, Augmenter,
};
pub use legacy::{dc_augment, DcOp, DcParams, DcStrategy};
pub use sample::{sample_per_image, sample_siamese, AugDraw};
pub use strategy::{AugMode, DsaParams, Group, Strategy};
