//! The two layers that are linear in their input and in their weight, written
//! once: convolution `y = conv(x, W) + b` (any kernel size, stride, padding) and
//! fully connected `y = x W^T + b`. Below, `A(x, W)` is either map and `A^T(dy, W)`
//! its input adjoint (`conv2d_bwd_input`, `linear_bwd_input`).

use crate::backend::{Backend, ConvShape, LinearShape, Seg};
use crate::error::Result;

/// A shape whose op is bilinear in (input, weight): the three backend ops of it.
pub(in crate::engine) trait Bilinear {
    /// `y (=|+=) A(x, W) + b`.
    #[allow(clippy::too_many_arguments)]
    fn fwd<B: Backend>(
        &self,
        be: &B,
        y: &mut B::Buf,
        x: &B::Buf,
        p: &B::Buf,
        w: Seg,
        b: Option<Seg>,
        acc: bool,
    ) -> Result<()>;
    /// `dx (=|+=) A^T(dy, W)`.
    fn bwd_input<B: Backend>(
        &self,
        be: &B,
        dx: &mut B::Buf,
        dy: &B::Buf,
        p: &B::Buf,
        w: Seg,
        acc: bool,
    ) -> Result<()>;
    /// `dW`, `db` (overwritten, in `grads`).
    fn bwd_weight<B: Backend>(
        &self,
        be: &B,
        grads: &mut B::Buf,
        w: Seg,
        b: Option<Seg>,
        dy: &B::Buf,
        x: &B::Buf,
    ) -> Result<()>;
}

impl Bilinear for ConvShape {
    fn fwd<B: Backend>(
        &self,
        be: &B,
        y: &mut B::Buf,
        x: &B::Buf,
        p: &B::Buf,
        w: Seg,
        b: Option<Seg>,
        acc: bool,
    ) -> Result<()> {
        be.conv2d_fwd(y, x, p, w, b, self, acc)
    }
    fn bwd_input<B: Backend>(
        &self,
        be: &B,
        dx: &mut B::Buf,
        dy: &B::Buf,
        p: &B::Buf,
        w: Seg,
        acc: bool,
    ) -> Result<()> {
        be.conv2d_bwd_input(dx, dy, p, w, self, acc)
    }
    fn bwd_weight<B: Backend>(
        &self,
        be: &B,
        grads: &mut B::Buf,
        w: Seg,
        b: Option<Seg>,
        dy: &B::Buf,
        x: &B::Buf,
    ) -> Result<()> {
        be.conv2d_bwd_weight(grads, w, b, dy, x, self)
    }
}

impl Bilinear for LinearShape {
    fn fwd<B: Backend>(
        &self,
        be: &B,
        y: &mut B::Buf,
        x: &B::Buf,
        p: &B::Buf,
        w: Seg,
        b: Option<Seg>,
        acc: bool,
    ) -> Result<()> {
        be.linear_fwd(y, x, p, w, b, self, acc)
    }
    fn bwd_input<B: Backend>(
        &self,
        be: &B,
        dx: &mut B::Buf,
        dy: &B::Buf,
        p: &B::Buf,
        w: Seg,
        acc: bool,
    ) -> Result<()> {
        be.linear_bwd_input(dx, dy, p, w, self, acc)
    }
    fn bwd_weight<B: Backend>(
        &self,
        be: &B,
        grads: &mut B::Buf,
        w: Seg,
        b: Option<Seg>,
        dy: &B::Buf,
        x: &B::Buf,
    ) -> Result<()> {
        be.linear_bwd_weight(grads, w, b, dy, x, self)
    }
}

/// One conv or linear op: its shape, weight and optional bias segments.
pub(in crate::engine) struct Contraction<'a, S: Bilinear> {
    pub s: &'a S,
    pub w: Seg,
    pub b: Option<Seg>,
}

impl<S: Bilinear> Contraction<'_, S> {
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        y: &mut B::Buf,
        x: &B::Buf,
        p: &B::Buf,
    ) -> Result<()> {
        self.s.fwd(be, y, x, p, self.w, self.b, false)
    }

    /// `dW`, `db` into `grads`; `dx (=|+=) A^T(dy, W)` when asked.
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        dx: Option<(&mut B::Buf, bool)>,
        grads: &mut B::Buf,
        dy: &B::Buf,
        x: &B::Buf,
        p: &B::Buf,
    ) -> Result<()> {
        self.s.bwd_weight(be, grads, self.w, self.b, dy, x)?;
        if let Some((dx, acc)) = dx {
            self.s.bwd_input(be, dx, dy, p, self.w, acc)?;
        }
        Ok(())
    }

    /// `ydot = A(x, V) + v_b + A(xdot, W)` (`xdot = None`: zero tangent).
    #[allow(clippy::too_many_arguments)]
    pub fn tangent<B: Backend>(
        &self,
        be: &B,
        ydot: &mut B::Buf,
        x: &B::Buf,
        xdot: Option<&B::Buf>,
        p: &B::Buf,
        t: &B::Buf,
    ) -> Result<()> {
        self.s.fwd(be, ydot, x, t, self.w, self.b, false)?;
        if let Some(xd) = xdot {
            self.s.fwd(be, ydot, xd, p, self.w, None, true)?;
        }
        Ok(())
    }

    /// `dx = A^T(dy, W) + A^T(dydot, V)`, `dxdot = A^T(dydot, W)`.
    #[allow(clippy::too_many_arguments)]
    pub fn dual_reverse<B: Backend>(
        &self,
        be: &B,
        dx: Option<(&mut B::Buf, bool)>,
        dxdot: Option<(&mut B::Buf, bool)>,
        dy: &B::Buf,
        dydot: &B::Buf,
        p: &B::Buf,
        t: &B::Buf,
    ) -> Result<()> {
        if let Some((dx, acc)) = dx {
            self.s.bwd_input(be, dx, dy, p, self.w, acc)?;
            self.s.bwd_input(be, dx, dydot, t, self.w, true)?;
        }
        if let Some((dxd, acc)) = dxdot {
            self.s.bwd_input(be, dxd, dydot, p, self.w, acc)?;
        }
        Ok(())
    }
}
