//! Pooling `y = pool(x)` (average or max, any square window and stride). Given the
//! arg-max pattern of `x` (piecewise constant), pooling is linear, so its tangent is
//! the pooled tangent and the dual reverse is two ordinary backward passes.

use crate::backend::{Backend, PoolKind, PoolShape};
use crate::error::Result;

pub(in crate::engine) fn forward<B: Backend>(
    be: &B,
    y: &mut B::Buf,
    x: &B::Buf,
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    be.pool_fwd(y, x, s, kind)
}

/// `dx = pool^T(dy)` (no parameters).
pub(in crate::engine) fn backward<B: Backend>(
    be: &B,
    dx: &mut B::Buf,
    dy: &B::Buf,
    x: &B::Buf,
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    be.pool_bwd(dx, dy, x, s, kind)
}

/// `ydot = pool'(x) xdot`.
pub(in crate::engine) fn tangent<B: Backend>(
    be: &B,
    ydot: &mut B::Buf,
    x: &B::Buf,
    xdot: &B::Buf,
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    be.pool_jvp(ydot, x, xdot, s, kind)
}

/// `dx = pool^T(dy)`, `dxdot = pool^T(dydot)`.
#[allow(clippy::too_many_arguments)]
pub(in crate::engine) fn dual_reverse<B: Backend>(
    be: &B,
    dx: &mut B::Buf,
    dxdot: &mut B::Buf,
    dy: &B::Buf,
    dydot: &B::Buf,
    x: &B::Buf,
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    be.pool_bwd(dx, dy, x, s, kind)?;
    be.pool_bwd(dxdot, dydot, x, s, kind)
}
