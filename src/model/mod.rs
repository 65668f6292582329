//! The ConvNet: configuration, flat parameter layout with offset table, PyTorch-default initialisation.
//!
//! A ConvNet (SPEC §1.1) is `depth` blocks of conv 3x3 -> norm -> activation -> 2x2
//! pooling, then one linear classifier. All parameters live in ONE flat buffer; the
//! [`ParamLayout`] is its offset table, in PyTorch's registration order (the order
//! the matching distance walks).

use crate::backend::{
    Act, Affine, ConvShape, LinearShape, MatchTensor, NormShape, PoolKind, PoolShape, Scalar, Seg,
};
use crate::error::{Error, Result};
use rand::Rng;

/// Variance epsilon of every normalisation layer (PyTorch default).
pub const NORM_EPS: f32 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch default).
pub const BN_MOMENTUM: f32 = 0.1;
/// Groups of the `groupnorm` option.
pub const GROUPNORM_GROUPS: usize = 4;

/// Normalisation layer of a block (SPEC §1.1 table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// GroupNorm with one group per channel (the default).
    Instance,
    /// BatchNorm2d (batch statistics in train mode, running statistics in eval mode).
    Batch,
    /// LayerNorm over `[C, H, W]` with per-element affine.
    Layer,
    /// GroupNorm with [`GROUPNORM_GROUPS`] groups.
    Group,
    /// No normalisation layer.
    None,
}

/// Pooling of a block.
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

/// Architecture of a ConvNet (SPEC §1.1, §1.3).
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

/// Spatial geometry of one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGeom {
    /// Input channels of the conv.
    pub cin: usize,
    /// Output channels of the conv (the width).
    pub cout: usize,
    /// Input height / width.
    pub h_in: usize,
    /// Input width.
    pub w_in: usize,
    /// Zero padding of the conv.
    pub pad: usize,
    /// Conv output (= norm, activation) height.
    pub h: usize,
    /// Conv output width.
    pub w: usize,
    /// Block output height (after pooling).
    pub h_out: usize,
    /// Block output width.
    pub w_out: usize,
}

impl ConvNetConfig {
    /// The default ConvNet of SPEC §1.1 (width 128, depth 3, instance norm, ReLU,
    /// average pooling) for the given input and class count.
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

    /// A ConvNet variant by its factory name (SPEC §1.3): `ConvNet`, `ConvNetD1`..`D4`,
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
        self.blocks().map(|_| ())
    }

    /// True when the network has BatchNorm layers.
    pub fn has_batchnorm(&self) -> bool {
        self.norm == Norm::Batch
    }

    /// Per-block geometry (validates the configuration).
    pub fn blocks(&self) -> Result<Vec<BlockGeom>> {
        let zero = [
            ("in_channels", self.in_channels),
            ("image height", self.image_h),
            ("image width", self.image_w),
            ("num_classes", self.num_classes),
            ("width", self.width),
            ("depth", self.depth),
        ];
        for (what, v) in zero {
            if v == 0 {
                return Err(Error::option(
                    "model",
                    format!("ConvNet {what} must be positive"),
                ));
            }
        }
        if self.norm == Norm::Group && !self.width.is_multiple_of(GROUPNORM_GROUPS) {
            return Err(Error::option(
                "model",
                format!(
                    "groupnorm needs a width divisible by {GROUPNORM_GROUPS}, got {}",
                    self.width
                ),
            ));
        }
        let mut out = Vec::with_capacity(self.depth);
        let (mut cin, mut h, mut w) = (self.in_channels, self.image_h, self.image_w);
        for b in 0..self.depth {
            let pad = if b == 0 && self.in_channels == 1 {
                3
            } else {
                1
            };
            if h + 2 * pad < 3 || w + 2 * pad < 3 {
                return Err(Error::Shape(format!(
                    "ConvNet block {}: input {h}x{w} too small for a 3x3 conv",
                    b + 1
                )));
            }
            let (ch, cw) = (h + 2 * pad - 2, w + 2 * pad - 2);
            let (oh, ow) = match self.pool {
                Pool::None => (ch, cw),
                _ => (ch / 2, cw / 2),
            };
            if oh == 0 || ow == 0 {
                return Err(Error::Shape(format!(
                    "input {}x{} is too small for depth {}: block {} would pool a {ch}x{cw} map to nothing",
                    self.image_h,
                    self.image_w,
                    self.depth,
                    b + 1
                )));
            }
            out.push(BlockGeom {
                cin,
                cout: self.width,
                h_in: h,
                w_in: w,
                pad,
                h: ch,
                w: cw,
                h_out: oh,
                w_out: ow,
            });
            cin = self.width;
            h = oh;
            w = ow;
        }
        Ok(out)
    }

    /// Flattened feature count entering the classifier.
    pub fn features(&self) -> Result<usize> {
        let b = self.blocks()?;
        let last = b.last().expect("depth validated positive");
        Ok(last.cout * last.h_out * last.w_out)
    }

    /// Normalisation groups of a block's norm layer (0 when there is no group norm).
    pub fn norm_groups(&self) -> usize {
        match self.norm {
            Norm::Instance => self.width,
            Norm::Group => GROUPNORM_GROUPS,
            Norm::Layer => 1,
            Norm::Batch | Norm::None => 0,
        }
    }

    /// Conv shapes of every block for a batch of `n`.
    pub fn conv_shapes(&self, n: usize) -> Result<Vec<ConvShape>> {
        self.blocks()?
            .iter()
            .map(|g| ConvShape::new(n, g.cin, g.h_in, g.w_in, g.cout, 3, 1, g.pad))
            .collect()
    }

    /// Norm shape of every block for a batch of `n` (None when `norm` is `None`).
    pub fn norm_shapes(&self, n: usize) -> Result<Vec<Option<NormShape>>> {
        let groups = self.norm_groups();
        let affine = if self.norm == Norm::Layer {
            Affine::PerElement
        } else {
            Affine::PerChannel
        } as u32;
        Ok(self
            .blocks()?
            .iter()
            .map(|g| match self.norm {
                Norm::None => None,
                Norm::Batch => Some(NormShape {
                    n: n as u32,
                    c: g.cout as u32,
                    hw: (g.h * g.w) as u32,
                    groups: g.cout as u32,
                    affine,
                    eps: NORM_EPS,
                }),
                _ => Some(NormShape {
                    n: n as u32,
                    c: g.cout as u32,
                    hw: (g.h * g.w) as u32,
                    groups: groups as u32,
                    affine,
                    eps: NORM_EPS,
                }),
            })
            .collect())
    }

    /// Pool shape of every block for a batch of `n` (None without pooling).
    pub fn pool_shapes(&self, n: usize) -> Result<Vec<Option<PoolShape>>> {
        self.blocks()?
            .iter()
            .map(|g| {
                self.pool
                    .kind()
                    .map(|_| PoolShape::new(n * g.cout, g.h, g.w, 2, 2))
                    .transpose()
            })
            .collect()
    }

    /// Classifier shape for a batch of `n`.
    pub fn linear_shape(&self, n: usize) -> Result<LinearShape> {
        Ok(LinearShape {
            n: n as u32,
            f: self.features()? as u32,
            k: self.num_classes as u32,
        })
    }

    /// FLOP of one forward pass over `n` images (conv and linear multiply-adds x 2).
    /// A weight-gradient pass costs the same, an input-gradient pass the same minus
    /// the first conv.
    pub fn forward_flops(&self, n: usize) -> Result<f64> {
        let conv: f64 = self.conv_shapes(n)?.iter().map(|s| s.flops()).sum();
        Ok(conv + 2.0 * (n * self.features()? * self.num_classes) as f64)
    }
}

/// One parameter tensor of the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTensor {
    /// PyTorch-style name (`features.0.conv.weight` style: `conv1.W`, `norm1.gamma`, `fc.W`).
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Where it lives in the flat buffer.
    pub seg: Seg,
}

/// Segments of one block's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockParams {
    /// Conv weight `[O, C, 3, 3]`.
    pub conv_w: Seg,
    /// Conv bias `[O]`.
    pub conv_b: Seg,
    /// Norm scale (`[C]` or `[C, H, W]` for layer norm); None without norm.
    pub gamma: Option<Seg>,
    /// Norm shift; None without norm.
    pub beta: Option<Seg>,
}

/// The offset table of the flat parameter buffer, in registration order
/// (conv.W, conv.b, norm.gamma, norm.beta per block, then fc.W, fc.b), plus the
/// BatchNorm running-state layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// Every tensor, in registration order.
    pub tensors: Vec<ParamTensor>,
    /// Per-block segments.
    pub blocks: Vec<BlockParams>,
    /// Classifier weight `[K, F]`.
    pub fc_w: Seg,
    /// Classifier bias `[K]`.
    pub fc_b: Seg,
    /// Total number of parameters.
    pub total: usize,
    /// BatchNorm running state per block: `[mean (C), var (C)]` at this segment of a
    /// flat running buffer of [`ParamLayout::running_total`] elements (empty without BN).
    pub running: Vec<Seg>,
    /// Length of the flat running-state buffer.
    pub running_total: usize,
}

impl ParamLayout {
    /// The layout of a (validated) configuration.
    pub fn new(cfg: &ConvNetConfig) -> Result<Self> {
        let geom = cfg.blocks()?;
        let mut tensors = Vec::new();
        let mut off = 0usize;
        let mut push = |name: String, shape: Vec<usize>| -> Result<Seg> {
            let len: usize = shape.iter().product();
            if off + len > u32::MAX as usize {
                return Err(Error::option("model", "parameter count exceeds 2^32"));
            }
            let seg = Seg {
                off: off as u32,
                len: len as u32,
            };
            off += len;
            tensors.push(ParamTensor { name, shape, seg });
            Ok(seg)
        };
        let mut blocks = Vec::with_capacity(geom.len());
        for (i, g) in geom.iter().enumerate() {
            let k = i + 1;
            let conv_w = push(format!("conv{k}.W"), vec![g.cout, g.cin, 3, 3])?;
            let conv_b = push(format!("conv{k}.b"), vec![g.cout])?;
            let nshape = match cfg.norm {
                Norm::None => None,
                Norm::Layer => Some(vec![g.cout, g.h, g.w]),
                _ => Some(vec![g.cout]),
            };
            let (gamma, beta) = match nshape {
                None => (None, None),
                Some(s) => (
                    Some(push(format!("norm{k}.gamma"), s.clone())?),
                    Some(push(format!("norm{k}.beta"), s)?),
                ),
            };
            blocks.push(BlockParams {
                conv_w,
                conv_b,
                gamma,
                beta,
            });
        }
        let f = cfg.features()?;
        let fc_w = push("fc.W".into(), vec![cfg.num_classes, f])?;
        let fc_b = push("fc.b".into(), vec![cfg.num_classes])?;
        let total = off;
        let mut running = Vec::new();
        let mut roff = 0u32;
        if cfg.has_batchnorm() {
            for g in &geom {
                let len = 2 * g.cout as u32;
                running.push(Seg { off: roff, len });
                roff += len;
            }
        }
        Ok(Self {
            tensors,
            blocks,
            fc_w,
            fc_b,
            total,
            running,
            running_total: roff as usize,
        })
    }

    /// The tensors as the matching distance sees them (SPEC §3.2): 4-D conv weights
    /// as `out x (in*kh*kw)`, 3-D layer-norm tensors as `C x (H*W)`, 2-D as is, 1-D
    /// as one row with `is_vector = 1`.
    pub fn match_tensors(&self) -> Vec<MatchTensor> {
        self.tensors
            .iter()
            .map(|t| {
                let (rows, cols, vec) = match t.shape.len() {
                    1 => (1, t.shape[0], 1),
                    _ => (t.shape[0], t.shape[1..].iter().product(), 0),
                };
                MatchTensor {
                    seg: t.seg,
                    rows: rows as u32,
                    cols: cols as u32,
                    is_vector: vec,
                }
            })
            .collect()
    }

    /// PyTorch-default initialisation (SPEC §1.2) drawn from `rng` in registration
    /// order: conv and linear weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    /// norm gamma 1, beta 0. Values are drawn as f32, so f32 and f64 networks from the
    /// same seed agree.
    pub fn init_params<T: Scalar, R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<T> {
        let mut p = vec![T::ZERO; self.total];
        let mut fill_uniform = |seg: Seg, fan_in: usize, p: &mut [T]| {
            let b = 1.0 / (fan_in as f32).sqrt();
            for v in &mut p[seg.range()] {
                *v = T::from_f32(rng.random_range(-b..b));
            }
        };
        for blk in &self.blocks {
            // conv.W is [O, C, 3, 3] and conv.b is [O]: fan_in = C*3*3.
            let fan_in = (blk.conv_w.len / blk.conv_b.len) as usize;
            fill_uniform(blk.conv_w, fan_in, &mut p);
            fill_uniform(blk.conv_b, fan_in, &mut p);
            if let Some(g) = blk.gamma {
                p[g.range()].fill(T::ONE);
            }
        }
        let f = self.fc_w.len as usize / self.fc_b.len as usize;
        fill_uniform(self.fc_w, f, &mut p);
        fill_uniform(self.fc_b, f, &mut p);
        p
    }

    /// Initial BatchNorm running state (mean 0, var 1 per block).
    pub fn init_running<T: Scalar>(&self) -> Vec<T> {
        let mut r = vec![T::ZERO; self.running_total];
        for seg in &self.running {
            let c = seg.len as usize / 2;
            r[seg.off as usize + c..seg.off as usize + 2 * c].fill(T::ONE);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn default_counts_match_spec() {
        let c = ConvNetConfig::default_for(3, 32, 32, 10);
        assert_eq!(ParamLayout::new(&c).unwrap().total, 320_010);
        let c = ConvNetConfig::default_for(1, 28, 28, 10);
        assert_eq!(c.features().unwrap(), 2048);
        assert_eq!(ParamLayout::new(&c).unwrap().total, 317_706);
        let c = ConvNetConfig::default_for(3, 32, 32, 100);
        assert_eq!(ParamLayout::new(&c).unwrap().total, 504_420);
        let l = ParamLayout::new(&c).unwrap();
        assert_eq!(l.tensors.len(), 14);
        let mt = l.match_tensors();
        assert_eq!(mt.iter().filter(|m| m.is_vector == 0).count(), 4);
        assert_eq!((mt[0].rows, mt[0].cols), (128, 27));
        assert_eq!((mt[12].rows, mt[12].cols), (100, 2048));
    }

    #[test]
    fn names_and_validation() {
        let c = ConvNetConfig::from_name("ConvNetNP", 1, 28, 28, 10).unwrap();
        assert_eq!(c.features().unwrap(), 128 * 32 * 32);
        let c = ConvNetConfig::from_name("ConvNetD4", 3, 32, 32, 10).unwrap();
        assert_eq!(c.features().unwrap(), 128 * 2 * 2);
        let c = ConvNetConfig::from_name("ConvNetLN", 3, 32, 32, 10).unwrap();
        let l = ParamLayout::new(&c).unwrap();
        assert_eq!(l.tensors[2].shape, vec![128, 32, 32]);
        assert_eq!(
            (l.match_tensors()[2].rows, l.match_tensors()[2].cols),
            (128, 1024)
        );
        assert!(ConvNetConfig::from_name("ConvNetXX", 3, 32, 32, 10).is_err());
        let mut c = ConvNetConfig::default_for(3, 4, 4, 10);
        assert!(c.validate().is_err());
        c.depth = 2;
        assert!(c.validate().is_ok());
        c.width = 6;
        c.norm = Norm::Group;
        assert!(c.validate().is_err());
        c.width = 0;
        c.norm = Norm::Instance;
        assert!(c.validate().is_err());
    }

    #[test]
    fn init_bounds_and_running() {
        let c = ConvNetConfig::from_name("ConvNetBN", 1, 28, 28, 10).unwrap();
        let l = ParamLayout::new(&c).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let p: Vec<f32> = l.init_params(&mut rng);
        let w1 = &p[l.blocks[0].conv_w.range()];
        assert!(w1.iter().all(|v| v.abs() <= 1.0 / 3.0));
        assert!(w1.iter().any(|v| v.abs() > 0.3));
        let w2 = &p[l.blocks[1].conv_w.range()];
        let b2 = 1.0 / (1152f32).sqrt();
        assert!(w2.iter().all(|v| v.abs() <= b2) && w2.iter().any(|v| v.abs() > 0.9 * b2));
        assert!(p[l.blocks[0].gamma.unwrap().range()]
            .iter()
            .all(|&v| v == 1.0));
        assert!(p[l.blocks[0].beta.unwrap().range()]
            .iter()
            .all(|&v| v == 0.0));
        let r: Vec<f32> = l.init_running();
        assert_eq!(r.len(), 3 * 256);
        assert!(r[..128].iter().all(|&v| v == 0.0) && r[128..256].iter().all(|&v| v == 1.0));
    }
}
