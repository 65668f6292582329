//! Element-wise activation `y = f(x)`.

use crate::backend::{Act, Backend};
use crate::error::Result;

pub(in crate::engine) fn forward<B: Backend>(
    be: &B,
    y: &mut B::Buf,
    x: &B::Buf,
    act: Act,
) -> Result<()> {
    be.act_fwd(y, x, act)
}

/// `dx = f'(x) dy` (no parameters).
pub(in crate::engine) fn backward<B: Backend>(
    be: &B,
    dx: &mut B::Buf,
    dy: &B::Buf,
    x: &B::Buf,
    act: Act,
) -> Result<()> {
    be.act_bwd(dx, dy, x, act)
}

/// `ydot = f'(x) xdot`.
pub(in crate::engine) fn tangent<B: Backend>(
    be: &B,
    ydot: &mut B::Buf,
    x: &B::Buf,
    xdot: &B::Buf,
    act: Act,
) -> Result<()> {
    be.act_bwd(ydot, xdot, x, act)
}

/// `dxdot = f'(x) dydot`, `dx = f'(x) dy + f''(x) xdot dydot`.
#[allow(clippy::too_many_arguments)]
pub(in crate::engine) fn dual_reverse<B: Backend>(
    be: &B,
    dx: &mut B::Buf,
    dxdot: &mut B::Buf,
    dy: &B::Buf,
    dydot: &B::Buf,
    x: &B::Buf,
    xdot: &B::Buf,
    act: Act,
) -> Result<()> {
    be.act_dual_bwd(dx, dxdot, dy, dydot, x, xdot, act)
}
