//! The flat parameter buffer's offset table ([`ParamLayout`]), in the reference's
//! registration order with its `state_dict` names, and PyTorch-default
//! initialisation.

use crate::backend::{MatchTensor, Scalar, Seg};
use rand::Rng;

/// How a parameter tensor is initialised (PyTorch defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamInit {
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: conv and linear weights and biases
    /// (Kaiming-uniform with `a = sqrt(5)` reduces to this bound).
    Uniform {
        /// Inputs per output: `C*K*K` (conv), `F` (linear).
        fan_in: usize,
    },
    /// 1: normalisation scales.
    Ones,
    /// 0: normalisation shifts.
    Zeros,
}

/// One parameter tensor of the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTensor {
    /// The reference's `state_dict` key (`features.0.weight`, `layer1.0.bn1.bias`,
    /// `classifier.weight`).
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Where it lives in the flat buffer.
    pub seg: Seg,
    /// Its initialisation.
    pub init: ParamInit,
}

/// The offset table of the flat parameter buffer, plus the BatchNorm running-state
/// layout. Built by [`super::plan::compile`] from a model description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// Every tensor, in registration order.
    pub tensors: Vec<ParamTensor>,
    /// Total number of parameters.
    pub total: usize,
    /// BatchNorm running state per BatchNorm layer (in layer order): `[mean (C),
    /// var (C)]` at this segment of a flat running buffer of
    /// [`ParamLayout::running_total`] elements (empty without BatchNorm).
    pub running: Vec<Seg>,
    /// Length of the flat running-state buffer.
    pub running_total: usize,
    /// Module path of each BatchNorm layer of [`ParamLayout::running`] (its
    /// `state_dict` buffers are `<name>.running_mean` and `<name>.running_var`).
    pub running_names: Vec<String>,
}

impl ParamLayout {
    /// The layout of a model (validates it; see [`super::plan::compile`]).
    pub fn new(model: &super::Model) -> crate::error::Result<Self> {
        super::plan::compile(model, 1).map(|(l, _)| l)
    }

    /// The tensor named `name` (a `state_dict` key).
    pub fn tensor(&self, name: &str) -> Option<&ParamTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensors as the matching distance sees them: 4-D conv weights as
    /// `out x (in*kh*kw)`, 3-D layer-norm tensors as `C x (H*W)`, 2-D as is, 1-D as
    /// one row with `is_vector = 1`.
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

    /// PyTorch-default initialisation drawn from `rng` in registration order (only
    /// [`ParamInit::Uniform`] tensors draw). Values are drawn as f32, so f32 and f64
    /// networks from the same seed agree.
    pub fn init_params<T: Scalar, R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<T> {
        let mut p = vec![T::ZERO; self.total];
        for t in &self.tensors {
            let dst = &mut p[t.seg.range()];
            match t.init {
                ParamInit::Uniform { fan_in } => {
                    let b = 1.0 / (fan_in as f32).sqrt();
                    for v in dst {
                        *v = T::from_f32(rng.random_range(-b..b));
                    }
                }
                ParamInit::Ones => dst.fill(T::ONE),
                ParamInit::Zeros => {}
            }
        }
        p
    }

    /// Initial BatchNorm running state (mean 0, var 1 per layer).
    pub fn init_running<T: Scalar>(&self) -> Vec<T> {
        let mut r = vec![T::ZERO; self.running_total];
        for seg in &self.running {
            let c = seg.len as usize / 2;
            r[seg.off as usize + c..seg.off as usize + 2 * c].fill(T::ONE);
        }
        r
    }
}
