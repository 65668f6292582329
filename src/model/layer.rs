//! The model description: a [`Model`] is a sequence of [`Layer`]s (with residual
//! blocks), nothing more. Shapes, the flat parameter layout and the engine's op list
//! are all derived from it ([`super::plan`]).

use crate::backend::{Act, PoolKind};

/// A normalisation layer (affine, eps [`super::NORM_EPS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// GroupNorm with one group per channel (the reference's `instancenorm`).
    Instance,
    /// BatchNorm2d (batch statistics in train mode, running statistics in eval mode).
    Batch,
    /// LayerNorm over `[C, H, W]` with per-element affine.
    Layer,
    /// GroupNorm with [`super::GROUPNORM_GROUPS`] groups.
    Group,
    /// No normalisation layer (a ConvNet option; as a [`Layer`] it is the identity).
    None,
}

/// One node of a model description.
///
/// `name` is the PyTorch module path of a layer with parameters (its tensors are
/// `<name>.weight` and `<name>.bias`, as in the reference's `state_dict`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    /// 2-D convolution, square kernel `k`, `stride`, zero padding `pad` on every side.
    Conv {
        /// Module path (`features.0`, `layer1.0.conv1`).
        name: String,
        /// Output channels.
        out: usize,
        /// Kernel size.
        k: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        pad: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// Fully connected layer on a flat `[N, F]` input.
    Linear {
        /// Module path.
        name: String,
        /// Output features.
        out: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// Normalisation of a `[N, C, H, W]` map.
    Norm {
        /// Module path.
        name: String,
        /// Which normalisation.
        kind: Norm,
    },
    /// Element-wise activation.
    Act(Act),
    /// Square pooling window `k` with `stride`, no padding, floor.
    Pool {
        /// Average or max.
        kind: PoolKind,
        /// Window size.
        k: usize,
        /// Stride.
        stride: usize,
    },
    /// `[N, C, H, W]` viewed as `[N, C*H*W]` (no data movement).
    Flatten,
    /// `body(x) + shortcut(x)`; an empty shortcut is the identity.
    Residual {
        /// The main branch.
        body: Vec<Layer>,
        /// The shortcut branch (registered after the body, as in the reference).
        shortcut: Vec<Layer>,
    },
}

impl Layer {
    /// A convolution.
    pub fn conv(name: impl Into<String>, out: usize, k: usize, stride: usize, pad: usize) -> Self {
        Layer::Conv {
            name: name.into(),
            out,
            k,
            stride,
            pad,
            bias: true,
        }
    }
    /// A convolution without bias (ResNet).
    pub fn conv_nobias(
        name: impl Into<String>,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        Layer::Conv {
            name: name.into(),
            out,
            k,
            stride,
            pad,
            bias: false,
        }
    }
    /// A linear layer with bias.
    pub fn linear(name: impl Into<String>, out: usize) -> Self {
        Layer::Linear {
            name: name.into(),
            out,
            bias: true,
        }
    }
    /// A normalisation layer.
    pub fn norm(name: impl Into<String>, kind: Norm) -> Self {
        Layer::Norm {
            name: name.into(),
            kind,
        }
    }
    /// Max pooling.
    pub fn max_pool(k: usize, stride: usize) -> Self {
        Layer::Pool {
            kind: PoolKind::Max,
            k,
            stride,
        }
    }
    /// Average pooling.
    pub fn avg_pool(k: usize, stride: usize) -> Self {
        Layer::Pool {
            kind: PoolKind::Avg,
            k,
            stride,
        }
    }

    /// True when this layer or a layer inside it is a BatchNorm.
    pub fn has_batchnorm(&self) -> bool {
        match self {
            Layer::Norm { kind, .. } => *kind == Norm::Batch,
            Layer::Residual { body, shortcut } => {
                body.iter().chain(shortcut).any(Layer::has_batchnorm)
            }
            _ => false,
        }
    }
}

/// A network: input shape, class count and the layers, in the reference's module
/// registration order (which is also the order of the flat parameter buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Architecture name (`ConvNet`, `ResNet18BN_AP`, ... or a caller's own).
    pub name: String,
    /// Input channels C.
    pub in_channels: usize,
    /// Input height H.
    pub image_h: usize,
    /// Input width W.
    pub image_w: usize,
    /// Classes K (the output width of the last layer).
    pub num_classes: usize,
    /// The layers.
    pub layers: Vec<Layer>,
    /// The flattened feature count the reference's classifier was built for, when it
    /// is fixed by the architecture rather than inferred (LeNet's 16*5*5, ...), with
    /// the input sizes that give it; checked by [`super::plan::compile`].
    pub fixed_features: Option<(usize, &'static str)>,
}

impl Model {
    /// Elements of one input image `C*H*W`.
    pub fn image_len(&self) -> usize {
        self.in_channels * self.image_h * self.image_w
    }
    /// True when the network has BatchNorm layers (running statistics; the matching
    /// step then runs them in eval mode).
    pub fn has_batchnorm(&self) -> bool {
        self.layers.iter().any(Layer::has_batchnorm)
    }
}
