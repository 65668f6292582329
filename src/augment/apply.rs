//! Running an augmentation op list on a backend: forward in order, adjoint in
//! reverse order (`docs/derivations/augment.md`).

use crate::backend::{AugOp, Backend, ImgShape};
use crate::error::{Error, Result};

/// Errors unless every op carries parameters for exactly `shape.n` images and a
/// cutout's half side is non-negative.
pub fn validate_ops(ops: &[AugOp], shape: &ImgShape) -> Result<()> {
    for (k, op) in ops.iter().enumerate() {
        if op.batch() != shape.n as usize {
            return Err(Error::Shape(format!(
                "augmentation op {k} ({}) has parameters for {} images, batch has {}",
                op_name(op),
                op.batch(),
                shape.n
            )));
        }
        if let AugOp::Cutout { half, .. } = op {
            if *half < 0 {
                return Err(Error::Shape(format!(
                    "augmentation op {k} (cutout): negative half side {half}"
                )));
            }
        }
    }
    Ok(())
}

fn op_name(op: &AugOp) -> &'static str {
    match op {
        AugOp::Affine(_) => "affine",
        AugOp::Flip(_) => "flip",
        AugOp::Brightness(_) => "brightness",
        AugOp::Saturation(_) => "saturation",
        AugOp::Contrast(_) => "contrast",
        AugOp::Crop(_) => "crop",
        AugOp::Cutout { .. } => "cutout",
    }
}

fn check_buf<B: Backend>(b: &B, what: &str, buf: &B::Buf, shape: &ImgShape) -> Result<()> {
    let got = b.buf_len(buf);
    if got != shape.len() {
        return Err(Error::Shape(format!(
            "augmentation {what}: buffer has {got} elements, shape {}x{}x{}x{} needs {}",
            shape.n,
            shape.c,
            shape.h,
            shape.w,
            shape.len()
        )));
    }
    Ok(())
}

/// `ops[last](...ops[0](x))` in a new buffer (a copy of `x` for an empty list).
/// Allocates; see [`Augmenter`] for a version without allocation.
pub fn apply_fwd<B: Backend>(b: &B, ops: &[AugOp], x: &B::Buf, shape: &ImgShape) -> Result<B::Buf> {
    let mut aug = Augmenter::new(b, *shape)?;
    aug.forward(b, ops, x)?;
    aug.take_result(b, x)
}

/// The adjoint of [`apply_fwd`]: `ops[0]^T(...ops[last]^T(dy))` in a new buffer,
/// i.e. the gradient w.r.t. the input given the gradient `dy` w.r.t. the output.
pub fn apply_bwd<B: Backend>(
    b: &B,
    ops: &[AugOp],
    dy: &B::Buf,
    shape: &ImgShape,
) -> Result<B::Buf> {
    let mut aug = Augmenter::new(b, *shape)?;
    aug.backward(b, ops, dy)?;
    aug.take_result(b, dy)
}

/// Where the result of the last run lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Input,
    Ping,
    Pong,
}

/// Applies op lists to batches of one shape with two scratch buffers allocated
/// once, so a hot loop does no allocation. The result of [`forward`](Self::forward)
/// or [`backward`](Self::backward) is borrowed from the augmenter (or is the input
/// itself for an empty op list).
pub struct Augmenter<B: Backend> {
    shape: ImgShape,
    ping: B::Buf,
    pong: B::Buf,
    last: Slot,
}

impl<B: Backend> Augmenter<B> {
    /// Scratch space for batches of `shape`.
    pub fn new(b: &B, shape: ImgShape) -> Result<Self> {
        Ok(Self {
            shape,
            ping: b.alloc(shape.len())?,
            pong: b.alloc(shape.len())?,
            last: Slot::Input,
        })
    }
    /// The batch shape this augmenter serves.
    pub fn shape(&self) -> &ImgShape {
        &self.shape
    }
    /// Reallocates the scratch buffers when `shape` differs from the current one.
    pub fn reshape(&mut self, b: &B, shape: ImgShape) -> Result<()> {
        if shape != self.shape {
            *self = Self::new(b, shape)?;
        }
        Ok(())
    }
    /// `ops[last](...ops[0](x))`; returns `x` itself for an empty list.
    pub fn forward<'a>(&'a mut self, b: &B, ops: &[AugOp], x: &'a B::Buf) -> Result<&'a B::Buf> {
        validate_ops(ops, &self.shape)?;
        self.run(b, ops.iter(), x, false)
    }
    /// `ops[0]^T(...ops[last]^T(dy))`; returns `dy` itself for an empty list.
    pub fn backward<'a>(&'a mut self, b: &B, ops: &[AugOp], dy: &'a B::Buf) -> Result<&'a B::Buf> {
        validate_ops(ops, &self.shape)?;
        self.run(b, ops.iter().rev(), dy, true)
    }

    fn run<'a, 'o>(
        &'a mut self,
        b: &B,
        ops: impl Iterator<Item = &'o AugOp>,
        x: &'a B::Buf,
        adjoint: bool,
    ) -> Result<&'a B::Buf> {
        let shape = self.shape;
        check_buf(b, if adjoint { "dy" } else { "x" }, x, &shape)?;
        self.last = Slot::Input;
        for op in ops {
            let (dst, src, next) = match self.last {
                Slot::Input => (&mut self.ping, x, Slot::Ping),
                Slot::Ping => (&mut self.pong, &self.ping, Slot::Pong),
                Slot::Pong => (&mut self.ping, &self.pong, Slot::Ping),
            };
            if adjoint {
                b.aug_bwd(dst, src, op, &shape)?;
            } else {
                b.aug_fwd(dst, src, op, &shape)?;
            }
            self.last = next;
        }
        Ok(match self.last {
            Slot::Input => x,
            Slot::Ping => &self.ping,
            Slot::Pong => &self.pong,
        })
    }

    /// Moves the last result out (copying `input` when the op list was empty).
    fn take_result(self, b: &B, input: &B::Buf) -> Result<B::Buf> {
        match self.last {
            Slot::Ping => Ok(self.ping),
            Slot::Pong => Ok(self.pong),
            Slot::Input => {
                let mut out = self.ping;
                b.copy_range(&mut out, 0, input, 0, self.shape.len())?;
                Ok(out)
            }
        }
    }
}

/// `x <- ops[last](...ops[0](x))` in place, ping-ponging with `tmp` (same length as
/// `x`, contents overwritten). No allocation: the form the hot loops use.
pub fn apply_fwd_in_place<B: Backend>(
    b: &B,
    ops: &[AugOp],
    x: &mut B::Buf,
    tmp: &mut B::Buf,
    shape: &ImgShape,
) -> Result<()> {
    for op in ops {
        b.aug_fwd(tmp, x, op, shape)?;
        std::mem::swap(x, tmp);
    }
    Ok(())
}

/// `dy <- ops[0]^T(...ops[last]^T(dy))` in place (the adjoint of
/// [`apply_fwd_in_place`]), ping-ponging with `tmp`.
pub fn apply_bwd_in_place<B: Backend>(
    b: &B,
    ops: &[AugOp],
    dy: &mut B::Buf,
    tmp: &mut B::Buf,
    shape: &ImgShape,
) -> Result<()> {
    for op in ops.iter().rev() {
        b.aug_bwd(tmp, dy, op, shape)?;
        std::mem::swap(dy, tmp);
    }
    Ok(())
}
