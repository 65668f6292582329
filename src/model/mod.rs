//! Models as descriptions: layers ([`Layer`]), the architectures of the paper
//! ([`Model::from_name`], [`ARCHITECTURES`]), the flat parameter layout with its
//! offset table and PyTorch `state_dict` names ([`ParamLayout`]), PyTorch-default
//! initialisation, and the op list the engine runs ([`plan::compile`]).
//!
//! All parameters live in ONE flat buffer; [`ParamLayout`] is its offset table, in
//! the reference's registration order (the order the matching distance walks).

mod arch;
mod convnet;
mod layer;
mod layout;
pub mod plan;

pub use arch::{Sizing, ARCHITECTURES};
pub use convnet::{ConvNetConfig, Pool};
pub use layer::{Layer, Model, Norm};
pub use layout::{ParamInit, ParamLayout, ParamTensor};

/// Variance epsilon of every normalisation layer (PyTorch default).
pub const NORM_EPS: f32 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch default).
pub const BN_MOMENTUM: f32 = 0.1;
/// Groups of the `groupnorm` option.
pub const GROUPNORM_GROUPS: usize = 4;

impl Model {
    /// The parameter layout (validates the model).
    pub fn layout(&self) -> crate::error::Result<ParamLayout> {
        ParamLayout::new(self)
    }
    /// FLOP (conv and linear multiply-adds x 2) of one forward pass over `n` images.
    /// A weight-gradient pass costs the same; an input-gradient pass the same minus
    /// the ops reading the input.
    pub fn forward_flops(&self, n: usize) -> crate::error::Result<f64> {
        Ok(plan::compile(self, n)?.1.forward_flops())
    }
}

#[cfg(test)]
mod tests;
