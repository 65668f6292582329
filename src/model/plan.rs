//! From a [`Model`] description to what the engine runs: shape inference, the flat
//! parameter layout ([`ParamLayout`], in registration order) and, for a batch size,
//! the op list ([`Plan`]) over numbered value slots.
//!
//! Slot 0 is the network input; every op writes one new slot. `Flatten` and a
//! `Norm::None` layer are views (no op, the slot is reused). A residual block walks
//! its body and its shortcut from the same input slot and adds the two results.
//! One walk ([`compile`]) produces both the layout and the ops, so the parameter
//! order and the ops' segments cannot disagree.

use super::layer::{Layer, Model, Norm};
use super::layout::{ParamInit, ParamLayout, ParamTensor};
use super::{GROUPNORM_GROUPS, NORM_EPS};
use crate::backend::{Act, Affine, ConvShape, LinearShape, NormShape, PoolKind, PoolShape, Seg};
use crate::error::{Error, Result};

/// A value slot: 0 is the network input, every op output is a new slot.
pub type Slot = usize;

/// What an op computes, with its shapes (for the plan's batch) and parameter segments.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// `y = conv(x, W) + b`.
    Conv {
        /// Shape.
        shape: ConvShape,
        /// Weight `[O, C, K, K]`.
        w: Seg,
        /// Bias `[O]`.
        b: Option<Seg>,
    },
    /// `y = x W^T + b`.
    Linear {
        /// Shape.
        shape: LinearShape,
        /// Weight `[K, F]`.
        w: Seg,
        /// Bias `[K]`.
        b: Option<Seg>,
    },
    /// Group-norm family (instance, group, layer norm): per-sample statistics.
    GroupNorm {
        /// Shape (groups, affine layout).
        shape: NormShape,
        /// Scale.
        gamma: Seg,
        /// Shift.
        beta: Seg,
    },
    /// BatchNorm: batch statistics in train mode, running statistics in eval mode.
    BatchNorm {
        /// Shape (`groups = C`).
        shape: NormShape,
        /// Scale `[C]`.
        gamma: Seg,
        /// Shift `[C]`.
        beta: Seg,
        /// Index of its running state (`[mean (C), var (C)]`) in [`ParamLayout::running`].
        running: usize,
    },
    /// Element-wise activation.
    Act(Act),
    /// Pooling.
    Pool {
        /// Shape.
        shape: PoolShape,
        /// Average or max.
        kind: PoolKind,
    },
    /// `y = a + b` (residual join).
    Add,
}

impl OpKind {
    /// True when the op has parameters.
    pub fn has_params(&self) -> bool {
        !matches!(self, OpKind::Act(_) | OpKind::Pool { .. } | OpKind::Add)
    }
    /// True when the op's input adjoint can be accumulated into (`acc` of the
    /// backend's input-gradient ops), which an input read by several ops needs.
    pub fn accumulates_input_grad(&self) -> bool {
        matches!(
            self,
            OpKind::Conv { .. } | OpKind::Linear { .. } | OpKind::Add
        )
    }
    /// Conv / linear multiply-adds x 2 of one forward pass (0 for other ops).
    pub fn flops(&self) -> f64 {
        match self {
            OpKind::Conv { shape, .. } => shape.flops(),
            OpKind::Linear { shape, .. } => 2.0 * (shape.n * shape.f) as f64 * shape.k as f64,
            _ => 0.0,
        }
    }
}

/// One op of a [`Plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// The layer it comes from (module path, or the layer kind), for messages.
    pub name: String,
    /// What it computes.
    pub kind: OpKind,
    /// Input slots (two for `Add`).
    pub inputs: Vec<Slot>,
    /// Per input: whether the reverse pass adds to its adjoint (an op later in
    /// forward order, hence earlier in the reverse pass, wrote it first) instead
    /// of overwriting it.
    pub acc: Vec<bool>,
    /// Output slot.
    pub out: Slot,
}

/// The ops of a model for a batch of `n`, in forward order.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Batch size.
    pub n: usize,
    /// The ops.
    pub ops: Vec<Op>,
    /// Elements of every slot (slot 0: the input batch).
    pub slot_len: Vec<usize>,
    /// Per slot: its tangent along a parameter direction is identically zero (the
    /// input, and what is computed from it without parameters).
    pub tangent_zero: Vec<bool>,
    /// The slot of the logits `[N, K]`.
    pub output: Slot,
}

impl Plan {
    /// Conv and linear FLOP of one forward pass.
    pub fn forward_flops(&self) -> f64 {
        self.ops.iter().map(|o| o.kind.flops()).sum()
    }
    /// FLOP of the first-order backward (weight gradients, and input gradients of
    /// every conv / linear op except those reading the network input).
    pub fn backward_flops(&self) -> f64 {
        self.ops
            .iter()
            .map(|o| {
                let f = o.kind.flops();
                if o.inputs[0] == 0 {
                    f
                } else {
                    2.0 * f
                }
            })
            .sum()
    }
    /// FLOP of the first-op convolutions / linears that read the input (the part
    /// of an input-gradient pass that [`Plan::backward_flops`] leaves out).
    pub fn input_op_flops(&self) -> f64 {
        self.ops
            .iter()
            .filter(|o| o.inputs.contains(&0))
            .map(|o| o.kind.flops())
            .sum()
    }
}

/// Activation geometry during the walk: `[C, H, W]`, or flat `[F]` (`flat`, C = F).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    flat: bool,
}

impl Geom {
    fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn describe(&self) -> String {
        if self.flat {
            format!("[{}]", self.c)
        } else {
            format!("[{}, {}, {}]", self.c, self.h, self.w)
        }
    }
}

struct Walker<'m> {
    model: &'m Model,
    n: usize,
    ops: Vec<Op>,
    slot_len: Vec<usize>,
    tensors: Vec<ParamTensor>,
    off: usize,
    running: Vec<Seg>,
    running_names: Vec<String>,
    running_off: usize,
    first_linear_checked: bool,
}

impl Walker<'_> {
    fn err(&self, at: &str, msg: impl std::fmt::Display) -> Error {
        Error::option("model", format!("{} ({at}): {msg}", self.model.name))
    }

    fn param(&mut self, name: String, shape: Vec<usize>, init: ParamInit) -> Result<Seg> {
        let len: usize = shape.iter().product();
        if self.off + len > u32::MAX as usize {
            return Err(self.err(&name, "parameter count exceeds 2^32"));
        }
        let seg = Seg {
            off: self.off as u32,
            len: len as u32,
        };
        self.off += len;
        self.tensors.push(ParamTensor {
            name,
            shape,
            seg,
            init,
        });
        Ok(seg)
    }

    fn push(&mut self, name: String, kind: OpKind, inputs: Vec<Slot>, out_len: usize) -> Slot {
        let out = self.slot_len.len();
        self.slot_len.push(out_len);
        let acc = vec![false; inputs.len()];
        self.ops.push(Op {
            name,
            kind,
            inputs,
            acc,
            out,
        });
        out
    }

    fn walk(&mut self, layers: &[Layer], mut x: Slot, mut g: Geom) -> Result<(Slot, Geom)> {
        let n = self.n;
        for layer in layers {
            match layer {
                Layer::Conv {
                    name,
                    out,
                    k,
                    stride,
                    pad,
                    bias,
                } => {
                    if g.flat {
                        return Err(self.err(name, "a convolution needs a [C, H, W] input"));
                    }
                    let shape =
                        ConvShape::new(n, g.c, g.h, g.w, *out, *k, *stride, *pad).map_err(|e| {
                            self.err(name, format!("cannot take a {} input: {e}", g.describe()))
                        })?;
                    let fan_in = g.c * k * k;
                    let w = self.param(
                        format!("{name}.weight"),
                        vec![*out, g.c, *k, *k],
                        ParamInit::Uniform { fan_in },
                    )?;
                    let b = if *bias {
                        Some(self.param(
                            format!("{name}.bias"),
                            vec![*out],
                            ParamInit::Uniform { fan_in },
                        )?)
                    } else {
                        None
                    };
                    g = Geom {
                        c: *out,
                        h: shape.oh as usize,
                        w: shape.ow as usize,
                        flat: false,
                    };
                    x = self.push(
                        name.clone(),
                        OpKind::Conv { shape, w, b },
                        vec![x],
                        n * g.len(),
                    );
                }
                Layer::Linear { name, out, bias } => {
                    if !g.flat {
                        return Err(self.err(
                            name,
                            format!(
                                "a linear layer needs a flat input (Flatten), got {}",
                                g.describe()
                            ),
                        ));
                    }
                    if !self.first_linear_checked {
                        self.first_linear_checked = true;
                        if let Some((want, sizes)) = self.model.fixed_features {
                            if g.c != want {
                                return Err(self.err(
                                    name,
                                    format!(
                                        "cannot take {}x{}x{} images ({} features reach the first linear layer, the architecture has {want}); it needs {sizes}",
                                        self.model.in_channels,
                                        self.model.image_h,
                                        self.model.image_w,
                                        g.c
                                    ),
                                ));
                            }
                        }
                    }
                    let shape = LinearShape {
                        n: n as u32,
                        f: g.c as u32,
                        k: *out as u32,
                    };
                    let fan_in = g.c;
                    let w = self.param(
                        format!("{name}.weight"),
                        vec![*out, g.c],
                        ParamInit::Uniform { fan_in },
                    )?;
                    let b = if *bias {
                        Some(self.param(
                            format!("{name}.bias"),
                            vec![*out],
                            ParamInit::Uniform { fan_in },
                        )?)
                    } else {
                        None
                    };
                    g = Geom {
                        c: *out,
                        h: 1,
                        w: 1,
                        flat: true,
                    };
                    x = self.push(
                        name.clone(),
                        OpKind::Linear { shape, w, b },
                        vec![x],
                        n * out,
                    );
                }
                Layer::Norm { name, kind } => {
                    if *kind == Norm::None {
                        continue;
                    }
                    if g.flat {
                        return Err(self.err(name, "normalisation needs a [C, H, W] input"));
                    }
                    let (groups, pshape, affine) = match kind {
                        Norm::Instance => (g.c, vec![g.c], Affine::PerChannel),
                        Norm::Group => {
                            if !g.c.is_multiple_of(GROUPNORM_GROUPS) {
                                return Err(self.err(
                                    name,
                                    format!(
                                        "groupnorm needs channels divisible by {GROUPNORM_GROUPS}, got {}",
                                        g.c
                                    ),
                                ));
                            }
                            (GROUPNORM_GROUPS, vec![g.c], Affine::PerChannel)
                        }
                        Norm::Layer => (1, vec![g.c, g.h, g.w], Affine::PerElement),
                        Norm::Batch => (g.c, vec![g.c], Affine::PerChannel),
                        Norm::None => unreachable!("skipped above"),
                    };
                    let shape = NormShape {
                        n: n as u32,
                        c: g.c as u32,
                        hw: (g.h * g.w) as u32,
                        groups: groups as u32,
                        affine: affine as u32,
                        eps: NORM_EPS,
                    };
                    let gamma =
                        self.param(format!("{name}.weight"), pshape.clone(), ParamInit::Ones)?;
                    let beta = self.param(format!("{name}.bias"), pshape, ParamInit::Zeros)?;
                    let op = if *kind == Norm::Batch {
                        let running = self.running.len();
                        let len = 2 * g.c;
                        self.running.push(Seg {
                            off: self.running_off as u32,
                            len: len as u32,
                        });
                        self.running_off += len;
                        self.running_names.push(name.clone());
                        OpKind::BatchNorm {
                            shape,
                            gamma,
                            beta,
                            running,
                        }
                    } else {
                        OpKind::GroupNorm { shape, gamma, beta }
                    };
                    x = self.push(name.clone(), op, vec![x], n * g.len());
                }
                Layer::Act(act) => {
                    x = self.push(format!("{act:?}"), OpKind::Act(*act), vec![x], n * g.len());
                }
                Layer::Pool { kind, k, stride } => {
                    let what = format!("{kind:?} pool {k}x{k}/{stride}");
                    if g.flat {
                        return Err(self.err(&what, "pooling needs a [C, H, W] input"));
                    }
                    let shape = PoolShape::new(n * g.c, g.h, g.w, *k, *stride).map_err(|e| {
                        self.err(&what, format!("cannot take a {} input: {e}", g.describe()))
                    })?;
                    g = Geom {
                        h: shape.oh() as usize,
                        w: shape.ow() as usize,
                        ..g
                    };
                    x = self.push(
                        what,
                        OpKind::Pool { shape, kind: *kind },
                        vec![x],
                        n * g.len(),
                    );
                }
                Layer::Flatten => {
                    g = Geom {
                        c: g.len(),
                        h: 1,
                        w: 1,
                        flat: true,
                    };
                }
                Layer::Residual { body, shortcut } => {
                    let (b, gb) = self.walk(body, x, g)?;
                    let (s, gs) = self.walk(shortcut, x, g)?;
                    if gb != gs {
                        return Err(self.err(
                            "residual",
                            format!(
                                "body gives {} but shortcut gives {}",
                                gb.describe(),
                                gs.describe()
                            ),
                        ));
                    }
                    g = gb;
                    x = self.push("residual add".into(), OpKind::Add, vec![b, s], n * g.len());
                }
            }
        }
        Ok((x, g))
    }
}

/// Walks `model` for a batch of `n`: its parameter layout and its op list.
pub fn compile(model: &Model, n: usize) -> Result<(ParamLayout, Plan)> {
    let zero = [
        ("input channels", model.in_channels),
        ("image height", model.image_h),
        ("image width", model.image_w),
        ("classes", model.num_classes),
        ("batch", n),
    ];
    for (what, v) in zero {
        if v == 0 {
            return Err(Error::option(
                "model",
                format!("{}: {what} must be positive", model.name),
            ));
        }
    }
    let mut w = Walker {
        model,
        n,
        ops: Vec::new(),
        slot_len: vec![n * model.image_len()],
        tensors: Vec::new(),
        off: 0,
        running: Vec::new(),
        running_names: Vec::new(),
        running_off: 0,
        first_linear_checked: false,
    };
    let g0 = Geom {
        c: model.in_channels,
        h: model.image_h,
        w: model.image_w,
        flat: false,
    };
    let (output, g) = w.walk(&model.layers, 0, g0)?;
    if !g.flat || g.c != model.num_classes || output == 0 {
        return Err(Error::option(
            "model",
            format!(
                "{}: the last layer gives {}, expected [{}] logits",
                model.name,
                g.describe(),
                model.num_classes
            ),
        ));
    }
    let mut ops = w.ops;
    // Adjoint accumulation: the reverse pass visits ops last-to-first, so of the
    // ops reading a slot the last one (in forward order) writes its adjoint and
    // every earlier one adds to it.
    let mut seen = vec![false; w.slot_len.len()];
    for op in ops.iter_mut().rev() {
        for (j, &s) in op.inputs.iter().enumerate() {
            op.acc[j] = seen[s];
            seen[s] = true;
        }
        if op.acc.iter().any(|&a| a) && !op.kind.accumulates_input_grad() {
            return Err(Error::option(
                "model",
                format!(
                    "{}: {} reads a value other layers read too, which only convolution, linear and add layers support",
                    model.name, op.name
                ),
            ));
        }
    }
    let mut tangent_zero = vec![false; w.slot_len.len()];
    tangent_zero[0] = true;
    for op in &ops {
        let inputs_zero = op.inputs.iter().all(|&s| tangent_zero[s]);
        if matches!(op.kind, OpKind::GroupNorm { .. } | OpKind::BatchNorm { .. })
            && tangent_zero[op.inputs[0]]
        {
            return Err(Error::option(
                "model",
                format!(
                    "{}: {} normalises the network input directly, which the second-order pass does not support",
                    model.name, op.name
                ),
            ));
        }
        tangent_zero[op.out] = inputs_zero && !op.kind.has_params();
    }
    let layout = ParamLayout {
        tensors: w.tensors,
        total: w.off,
        running: w.running,
        running_total: w.running_off,
        running_names: w.running_names,
    };
    Ok((
        layout,
        Plan {
            n,
            ops,
            slot_len: w.slot_len,
            tangent_zero,
            output,
        },
    ))
}

impl Plan {
    /// The logits' shape as the loss ops take it (`n`, `k`; `f` is the last linear
    /// layer's input, or `k` when the output is not a linear layer's).
    pub fn logits_shape(&self) -> LinearShape {
        let last = self.ops.iter().rev().find(|o| o.out == self.output);
        match last.map(|o| &o.kind) {
            Some(OpKind::Linear { shape, .. }) => *shape,
            _ => {
                let k = (self.slot_len[self.output] / self.n) as u32;
                LinearShape {
                    n: self.n as u32,
                    f: k,
                    k,
                }
            }
        }
    }
}
