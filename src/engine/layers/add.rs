//! Residual join `y = a + b`: every pass is the same sum, and each input's adjoint
//! is the output's (copied, or added when the input also feeds another op).

use crate::backend::Backend;
use crate::error::Result;

pub(in crate::engine) fn forward<B: Backend>(
    be: &B,
    y: &mut B::Buf,
    a: &B::Buf,
    b: &B::Buf,
) -> Result<()> {
    be.add(y, a, b)
}

/// `dx (=|+=) dy` for one input (backward and dual reverse alike).
pub(in crate::engine) fn backward<B: Backend>(
    be: &B,
    dx: (&mut B::Buf, bool),
    dy: &B::Buf,
) -> Result<()> {
    let (dx, acc) = dx;
    if acc {
        be.axpy(dx, <B::E as crate::backend::Scalar>::ONE, dy)
    } else {
        let len = be.buf_len(dy);
        be.copy_range(dx, 0, dy, 0, len)
    }
}

/// `ydot = adot + bdot`, a `None` tangent being zero (not both).
pub(in crate::engine) fn tangent<B: Backend>(
    be: &B,
    ydot: &mut B::Buf,
    adot: Option<&B::Buf>,
    bdot: Option<&B::Buf>,
) -> Result<()> {
    match (adot, bdot) {
        (Some(a), Some(b)) => be.add(ydot, a, b),
        (Some(t), None) | (None, Some(t)) => {
            let len = be.buf_len(t);
            be.copy_range(ydot, 0, t, 0, len)
        }
        (None, None) => Err(crate::error::Error::Shape(
            "residual add: both tangents are zero (the plan skips such ops)".into(),
        )),
    }
}
