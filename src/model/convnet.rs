//! The ConvNet family (the paper's default network and its ablation variants) as a
//! parameterised builder of [`Model`] descriptions.
//!
//! A ConvNet is `depth` blocks of conv 3x3 (padding 1; 3 for the first block when
//! the input has 1 channel, which turns 28x28 into 32x32) -> norm -> activation ->
//! 2x2 pooling, then a flatten and one linear `classifier`. Module names follow the
//! reference's `features` sequence: `features.0` is the first conv, `features.1`
//! its norm, and so on.

use super::layer::{Layer, Model, Norm};
use crate::backend::{Act, PoolKind};
use crate::error::{Error, Result};

/// Pooling of a ConvNet block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// 2x2 average, stride 2 (the default).
    Avg,
    /// 2x2 max, stride 2.
    Max,
    /// No pooling.
    None,
}

impl Pool {
    /// The backend pooling kind, `None` when there is no pooling layer.
    pub fn kind(self) -> Option<PoolKind> {
        match self {
            Pool::Avg => Some(PoolKind::Avg),
            Pool::Max => Some(PoolKind::Max),
            Pool::None => None,
        }
    }
}

/// Architecture of a ConvNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvNetConfig {
    /// Input channels C.
    pub in_channels: usize,
    /// Input height.
    pub image_h: usize,
    /// Input width.
    pub image_w: usize,
    /// Classes K.
    pub num_classes: usize,
    /// Channels of every block.
    pub width: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Normalisation layer.
    pub norm: Norm,
    /// Activation.
    pub act: Act,
    /// Pooling.
    pub pool: Pool,
}

impl ConvNetConfig {
    /// The default ConvNet (width 128, depth 3, instance norm, ReLU, average
    /// pooling) for the given input and class count.
    pub fn default_for(
        in_channels: usize,
        image_h: usize,
        image_w: usize,
        num_classes: usize,
    ) -> Self {
        Self {
            in_channels,
            image_h,
            image_w,
            num_classes,
            width: 128,
            depth: 3,
            norm: Norm::Instance,
            act: Act::Relu,
            pool: Pool::Avg,
        }
    }

    /// A ConvNet variant by its factory name: `ConvNet`, `ConvNetD1`..`D4`,
    /// `ConvNetW32`/`W64`/`W128`/`W256`, `ConvNetAS`/`AR`/`AL`/`ASwish`,
    /// `ConvNetASwishBN`, `ConvNetNN`/`BN`/`LN`/`IN`/`GN`, `ConvNetNP`/`MP`/`AP`.
    /// The result is validated ([`ConvNetConfig::validate`]).
    pub fn from_name(
        name: &str,
        in_channels: usize,
        image_h: usize,
        image_w: usize,
        num_classes: usize,
    ) -> Result<Self> {
        let mut c = Self::default_for(in_channels, image_h, image_w, num_classes);
        match name {
            "ConvNet" => {}
            "ConvNetD1" => c.depth = 1,
            "ConvNetD2" => c.depth = 2,
            "ConvNetD3" => c.depth = 3,
            "ConvNetD4" => c.depth = 4,
            "ConvNetW32" => c.width = 32,
            "ConvNetW64" => c.width = 64,
            "ConvNetW128" => c.width = 128,
            "ConvNetW256" => c.width = 256,
            "ConvNetAS" => c.act = Act::Sigmoid,
            "ConvNetAR" => c.act = Act::Relu,
            "ConvNetAL" => c.act = Act::LeakyRelu,
            "ConvNetASwish" => c.act = Act::Swish,
            "ConvNetASwishBN" => {
                c.act = Act::Swish;
                c.norm = Norm::Batch;
            }
            "ConvNetNN" => c.norm = Norm::None,
            "ConvNetBN" => c.norm = Norm::Batch,
            "ConvNetLN" => c.norm = Norm::Layer,
            "ConvNetIN" => c.norm = Norm::Instance,
            "ConvNetGN" => c.norm = Norm::Group,
            "ConvNetNP" => c.pool = Pool::None,
            "ConvNetMP" => c.pool = Pool::Max,
            "ConvNetAP" => c.pool = Pool::Avg,
            other => {
                return Err(Error::option(
                    "model",
                    format!("unknown ConvNet variant '{other}' (expected ConvNet, ConvNetD1..D4, ConvNetW32/W64/W128/W256, ConvNetAS/AR/AL/ASwish, ConvNetASwishBN, ConvNetNN/BN/LN/IN/GN, ConvNetNP/MP/AP)"),
                ))
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the configuration: non-zero sizes, groupnorm divisibility, and an input
    /// large enough for `depth` pooling blocks.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.depth == 0 {
            return Err(Error::option(
                "model",
                "ConvNet width and depth must be positive",
            ));
        }
        super::plan::compile(&self.model(), 1).map(|_| ())
    }

    /// True when the network has BatchNorm layers.
    pub fn has_batchnorm(&self) -> bool {
        self.norm == Norm::Batch
    }

    /// The layers: `depth` blocks, flatten, classifier.
    pub fn layers(&self) -> Vec<Layer> {
        let mut layers = Vec::new();
        let mut idx = 0;
        let mut next = || {
            idx += 1;
            format!("features.{}", idx - 1)
        };
        for d in 0..self.depth {
            let pad = if d == 0 && self.in_channels == 1 {
                3
            } else {
                1
            };
            layers.push(Layer::conv(next(), self.width, 3, 1, pad));
            if self.norm != Norm::None {
                layers.push(Layer::norm(next(), self.norm));
            }
            next();
            layers.push(Layer::Act(self.act));
            if let Some(kind) = self.pool.kind() {
                next();
                layers.push(Layer::Pool {
                    kind,
                    k: 2,
                    stride: 2,
                });
            }
        }
        layers.push(Layer::Flatten);
        layers.push(Layer::linear("classifier", self.num_classes));
        layers
    }

    /// The description (named `ConvNet`; the factory names give the variant's name
    /// through [`Model::from_name`]).
    pub fn model(&self) -> Model {
        Model {
            name: "ConvNet".into(),
            in_channels: self.in_channels,
            image_h: self.image_h,
            image_w: self.image_w,
            num_classes: self.num_classes,
            layers: self.layers(),
            fixed_features: None,
        }
    }
}

impl From<ConvNetConfig> for Model {
    fn from(c: ConvNetConfig) -> Model {
        c.model()
    }
}
