//! The device backend logic, written once: [`Gpu<L>`] implements [`Backend`] over a
//! [`Launcher`], the small interface that allocates, copies and launches a kernel
//! the way `cuLaunchKernel` does (an array of pointers to the argument values).
//! Two launchers exist: [`crate::backend::cuda::CudaLauncher`] (cudarc, a real GPU)
//! and [`crate::backend::emu::EmuLauncher`] (the same `kernels/*.cu` compiled for
//! the host, see `kernels/README.md`), so `Cuda = Gpu<CudaLauncher>` and
//! `Emu = Gpu<EmuLauncher>` share every line of validation and launch code.
//!
//! Layout: this file validates shapes and maps each trait op to the typed launch
//! wrappers of [`kernels`] (one per kernel, holding all the `unsafe`); grids and
//! block sizes come from [`crate::backend::launch`].

pub(crate) mod kernels;

use super::*;
use crate::error::{Error, Result};
use std::ffi::c_void;

pub use kernels::{Kernel, KERNEL_NAMES};

/// What a device backend needs from its runtime: buffers of `f32` and `u32`, and a
/// `cuLaunchKernel`-style launch.
pub trait Launcher: Send + Sync + 'static {
    /// A device buffer of f32.
    type Buf: Send;
    /// A device buffer of u32 (labels, row indices).
    type Labels: Send;
    /// Short name with details (device, build).
    fn name(&self) -> String;
    /// Zero-filled buffer.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// Buffer holding `host`.
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    /// Contents on the host (waits for queued work).
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Elements of a buffer.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// u32 buffer holding `host`.
    fn upload_u32(&self, host: &[u32]) -> Result<Self::Labels>;
    /// Elements of a u32 buffer.
    fn len_u32(&self, buf: &Self::Labels) -> usize;
    /// Device address of the first element (read access).
    fn ptr(&self, buf: &Self::Buf) -> u64;
    /// Device address of the first element (write access).
    fn ptr_mut(&self, buf: &mut Self::Buf) -> u64;
    /// Device address of a u32 buffer.
    fn ptr_u32(&self, buf: &Self::Labels) -> u64;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<()>;
    /// Launches `kernel`.
    ///
    /// # Safety
    /// `args[i]` must point to a value of exactly the type of the kernel's i-th
    /// parameter (device pointers as `u64` from [`Launcher::ptr`]), every pointer
    /// must address enough elements for the launch, and outputs must not alias
    /// inputs unless the kernel allows it.
    unsafe fn launch(&self, kernel: &Kernel, geo: launch::Geometry, args: &mut [*mut c_void])
        -> Result<()>;
}

/// The device backend over launcher `L` (E = f32).
pub struct Gpu<L: Launcher> {
    l: L,
}

impl<L: Launcher> Gpu<L> {
    /// A backend over an initialised launcher.
    pub fn from_launcher(l: L) -> Self {
        Self { l }
    }
    /// The launcher (for benchmarks and diagnostics).
    pub fn launcher(&self) -> &L {
        &self.l
    }
}

fn check_len(op: &str, what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!(
            "{op}: {what} has {got} elements, shape needs {want}"
        )));
    }
    Ok(())
}

fn check_seg(op: &str, what: &str, seg: Seg, buf_len: usize) -> Result<()> {
    if seg.off as usize + seg.len as usize > buf_len {
        return Err(Error::Shape(format!(
            "{op}: segment {what} [{}..{}) outside a buffer of {buf_len}",
            seg.off,
            seg.off as usize + seg.len as usize
        )));
    }
    Ok(())
}

fn check_seg_len(op: &str, what: &str, seg: Seg, buf_len: usize, want: usize) -> Result<()> {
    check_seg(op, what, seg, buf_len)?;
    check_len(op, what, seg.len as usize, want)
}

/// Lengths the kernels index with 32-bit integers.
fn check_u32(op: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Shape(format!("{op}: {n} elements exceed 2^32-1")))
}

fn todo_kernel(op: &str) -> Error {
    Error::Unsupported(format!("{op}: kernel not yet written"))
}

impl<L: Launcher> Backend for Gpu<L> {
    type E = f32;
    type Buf = L::Buf;
    type Labels = L::Labels;

    fn name(&self) -> String {
        self.l.name()
    }

    // ---- memory ----------------------------------------------------------------
    fn alloc(&self, len: usize) -> Result<L::Buf> {
        self.l.alloc(len)
    }
    fn upload(&self, host: &[f32]) -> Result<L::Buf> {
        self.l.upload(host)
    }
    fn download(&self, buf: &L::Buf) -> Result<Vec<f32>> {
        self.l.download(buf)
    }
    fn buf_len(&self, buf: &L::Buf) -> usize {
        self.l.len(buf)
    }
    fn upload_labels(&self, labels: &[u32]) -> Result<L::Labels> {
        self.l.upload_u32(labels)
    }
    fn copy_range(
        &self,
        dst: &mut L::Buf,
        dst_off: usize,
        src: &L::Buf,
        src_off: usize,
        len: usize,
    ) -> Result<()> {
        let (dl, sl) = (self.l.len(dst), self.l.len(src));
        if dst_off + len > dl || src_off + len > sl {
            return Err(Error::Shape(format!(
                "copy_range: [{dst_off}..+{len}) of {dl} <- [{src_off}..+{len}) of {sl}"
            )));
        }
        if len == 0 {
            return Ok(());
        }
        kernels::copy_range(&self.l, dst, dst_off, src, src_off, check_u32("copy_range", len)?)
    }
    fn fill(&self, buf: &mut L::Buf, value: f32) -> Result<()> {
        let n = check_u32("fill", self.l.len(buf))?;
        if n == 0 {
            return Ok(());
        }
        kernels::fill(&self.l, buf, value, n)
    }
    fn axpy(&self, y: &mut L::Buf, a: f32, x: &L::Buf) -> Result<()> {
        check_len("axpy", "x", self.l.len(x), self.l.len(y))?;
        let n = check_u32("axpy", self.l.len(y))?;
        if n == 0 {
            return Ok(());
        }
        kernels::axpy(&self.l, y, a, x, n)
    }
    fn gather_rows(&self, dst: &mut L::Buf, src: &L::Buf, rows: &[u32], row_len: usize) -> Result<()> {
        check_len("gather_rows", "dst", self.l.len(dst), rows.len() * row_len)?;
        let src_rows = if row_len == 0 { 0 } else { self.l.len(src) / row_len };
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= src_rows) {
            return Err(Error::Shape(format!(
                "gather_rows: row {r} outside a source of {src_rows} rows"
            )));
        }
        if rows.is_empty() || row_len == 0 {
            return Ok(());
        }
        check_u32("gather_rows", self.l.len(dst))?;
        let idx = self.l.upload_u32(rows)?;
        kernels::gather_rows(&self.l, dst, src, &idx, rows.len() as u32, row_len as u32)
    }
    fn synchronize(&self) -> Result<()> {
        self.l.synchronize()
    }

    // ---- convolution -----------------------------------------------------------
    fn conv2d_fwd(
        &self,
        y: &mut L::Buf,
        x: &L::Buf,
        params: &L::Buf,
        w: Seg,
        b: Option<Seg>,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()> {
        let op = "conv2d_fwd";
        check_len(op, "x", self.l.len(x), s.x_len())?;
        check_len(op, "y", self.l.len(y), s.y_len())?;
        check_seg_len(op, "w", w, self.l.len(params), s.w_len())?;
        if let Some(b) = b {
            check_seg_len(op, "b", b, self.l.len(params), s.o as usize)?;
        }
        check_u32(op, s.x_len().max(s.y_len()))?;
        kernels::conv2d_fwd(&self.l, y, x, params, w, b, s, acc)
    }
    fn conv2d_bwd_input(
        &self,
        dx: &mut L::Buf,
        dy: &L::Buf,
        params: &L::Buf,
        w: Seg,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()> {
        let op = "conv2d_bwd_input";
        check_len(op, "dx", self.l.len(dx), s.x_len())?;
        check_len(op, "dy", self.l.len(dy), s.y_len())?;
        check_seg_len(op, "w", w, self.l.len(params), s.w_len())?;
        check_u32(op, s.x_len().max(s.y_len()))?;
        kernels::conv2d_bwd_input(&self.l, dx, dy, params, w, s, acc)
    }
    fn conv2d_bwd_weight(
        &self,
        grads: &mut L::Buf,
        dw: Seg,
        db: Option<Seg>,
        dy: &L::Buf,
        x: &L::Buf,
        s: &ConvShape,
    ) -> Result<()> {
        let op = "conv2d_bwd_weight";
        check_len(op, "x", self.l.len(x), s.x_len())?;
        check_len(op, "dy", self.l.len(dy), s.y_len())?;
        check_seg_len(op, "dw", dw, self.l.len(grads), s.w_len())?;
        if let Some(db) = db {
            check_seg_len(op, "db", db, self.l.len(grads), s.o as usize)?;
        }
        check_u32(op, s.x_len().max(s.y_len()))?;
        kernels::conv2d_bwd_weight(&self.l, grads, dw, db, dy, x, s)
    }

    // ---- fully connected -------------------------------------------------------
    fn linear_fwd(
        &self,
        y: &mut L::Buf,
        x: &L::Buf,
        params: &L::Buf,
        w: Seg,
        b: Option<Seg>,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()> {
        let op = "linear_fwd";
        let (n, f, k) = (s.n as usize, s.f as usize, s.k as usize);
        check_len(op, "x", self.l.len(x), n * f)?;
        check_len(op, "y", self.l.len(y), n * k)?;
        check_seg_len(op, "w", w, self.l.len(params), k * f)?;
        if let Some(b) = b {
            check_seg_len(op, "b", b, self.l.len(params), k)?;
        }
        kernels::linear_fwd(&self.l, y, x, params, w, b, s, acc)
    }
    fn linear_bwd_input(
        &self,
        dx: &mut L::Buf,
        dy: &L::Buf,
        params: &L::Buf,
        w: Seg,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()> {
        let op = "linear_bwd_input";
        let (n, f, k) = (s.n as usize, s.f as usize, s.k as usize);
        check_len(op, "dx", self.l.len(dx), n * f)?;
        check_len(op, "dy", self.l.len(dy), n * k)?;
        check_seg_len(op, "w", w, self.l.len(params), k * f)?;
        kernels::linear_bwd_input(&self.l, dx, dy, params, w, s, acc)
    }
    fn linear_bwd_weight(
        &self,
        grads: &mut L::Buf,
        dw: Seg,
        db: Option<Seg>,
        dy: &L::Buf,
        x: &L::Buf,
        s: &LinearShape,
    ) -> Result<()> {
        let op = "linear_bwd_weight";
        let (n, f, k) = (s.n as usize, s.f as usize, s.k as usize);
        check_len(op, "x", self.l.len(x), n * f)?;
        check_len(op, "dy", self.l.len(dy), n * k)?;
        check_seg_len(op, "dw", dw, self.l.len(grads), k * f)?;
        if let Some(db) = db {
            check_seg_len(op, "db", db, self.l.len(grads), k)?;
        }
        kernels::linear_bwd_weight(&self.l, grads, dw, db, dy, x, s)
    }

    // ---- activations -----------------------------------------------------------
    fn act_fwd(&self, y: &mut L::Buf, x: &L::Buf, act: Act) -> Result<()> {
        let n = self.l.len(x);
        check_len("act_fwd", "y", self.l.len(y), n)?;
        if n == 0 {
            return Ok(());
        }
        kernels::act_fwd(&self.l, y, x, check_u32("act_fwd", n)?, act)
    }
    fn act_bwd(&self, dx: &mut L::Buf, dy: &L::Buf, x: &L::Buf, act: Act) -> Result<()> {
        let n = self.l.len(x);
        check_len("act_bwd", "dx", self.l.len(dx), n)?;
        check_len("act_bwd", "dy", self.l.len(dy), n)?;
        if n == 0 {
            return Ok(());
        }
        kernels::act_bwd(&self.l, dx, dy, x, check_u32("act_bwd", n)?, act)
    }
    fn act_dual_bwd(
        &self,
        dx: &mut L::Buf,
        dxdot: &mut L::Buf,
        dy: &L::Buf,
        dydot: &L::Buf,
        x: &L::Buf,
        xdot: &L::Buf,
        act: Act,
    ) -> Result<()> {
        let op = "act_dual_bwd";
        let n = self.l.len(x);
        for (what, len) in [
            ("dx", self.l.len(dx)),
            ("dxdot", self.l.len(dxdot)),
            ("dy", self.l.len(dy)),
            ("dydot", self.l.len(dydot)),
            ("xdot", self.l.len(xdot)),
        ] {
            check_len(op, what, len, n)?;
        }
        if n == 0 {
            return Ok(());
        }
        let n = check_u32(op, n)?;
        kernels::act_dual_bwd(&self.l, dx, dxdot, dy, dydot, x, xdot, n, act)
    }

    // ---- pooling ---------------------------------------------------------------
    fn pool_fwd(&self, y: &mut L::Buf, x: &L::Buf, s: &PoolShape, kind: PoolKind) -> Result<()> {
        let (xl, yl) = pool_lens(s);
        check_len("pool_fwd", "x", self.l.len(x), xl)?;
        check_len("pool_fwd", "y", self.l.len(y), yl)?;
        check_u32("pool_fwd", xl)?;
        if yl == 0 {
            return Ok(());
        }
        kernels::pool_fwd(&self.l, y, x, s, kind)
    }
    fn pool_bwd(
        &self,
        dx: &mut L::Buf,
        dy: &L::Buf,
        x: &L::Buf,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()> {
        let (xl, yl) = pool_lens(s);
        check_len("pool_bwd", "x", self.l.len(x), xl)?;
        check_len("pool_bwd", "dx", self.l.len(dx), xl)?;
        check_len("pool_bwd", "dy", self.l.len(dy), yl)?;
        check_u32("pool_bwd", xl)?;
        if xl == 0 {
            return Ok(());
        }
        kernels::pool_bwd(&self.l, dx, dy, x, s, kind)
    }
    fn pool_jvp(
        &self,
        ydot: &mut L::Buf,
        x: &L::Buf,
        xdot: &L::Buf,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()> {
        let (xl, yl) = pool_lens(s);
        check_len("pool_jvp", "x", self.l.len(x), xl)?;
        check_len("pool_jvp", "xdot", self.l.len(xdot), xl)?;
        check_len("pool_jvp", "ydot", self.l.len(ydot), yl)?;
        check_u32("pool_jvp", xl)?;
        if yl == 0 {
            return Ok(());
        }
        kernels::pool_jvp(&self.l, ydot, x, xdot, s, kind)
    }

    // ---- norms (kernels not yet written) ----------------------------------------
    fn norm_fwd(
        &self,
        _y: &mut L::Buf,
        _stats: &mut L::Buf,
        _x: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _beta: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("norm_fwd"))
    }
    fn norm_bwd(
        &self,
        _dx: &mut L::Buf,
        _dparams: Option<(&mut L::Buf, Seg, Seg)>,
        _dy: &L::Buf,
        _x: &L::Buf,
        _stats: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("norm_bwd"))
    }
    fn norm_jvp(
        &self,
        _ydot: &mut L::Buf,
        _x: &L::Buf,
        _xdot: &L::Buf,
        _stats: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _tangent: &L::Buf,
        _t_gamma: Seg,
        _t_beta: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("norm_jvp"))
    }
    fn norm_dual_bwd(
        &self,
        _dx: &mut L::Buf,
        _dxdot: &mut L::Buf,
        _dy: &L::Buf,
        _dydot: &L::Buf,
        _x: &L::Buf,
        _xdot: &L::Buf,
        _stats: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _tangent: &L::Buf,
        _t_gamma: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("norm_dual_bwd"))
    }
    fn bn_fwd_train(
        &self,
        _y: &mut L::Buf,
        _stats: &mut L::Buf,
        _running: &mut L::Buf,
        _x: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _beta: Seg,
        _s: &NormShape,
        _momentum: f32,
    ) -> Result<()> {
        Err(todo_kernel("bn_fwd_train"))
    }
    fn bn_bwd_train(
        &self,
        _dx: &mut L::Buf,
        _dparams: Option<(&mut L::Buf, Seg, Seg)>,
        _dy: &L::Buf,
        _x: &L::Buf,
        _stats: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("bn_bwd_train"))
    }
    fn bn_fwd_eval(
        &self,
        _y: &mut L::Buf,
        _x: &L::Buf,
        _running: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _beta: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("bn_fwd_eval"))
    }
    fn bn_bwd_eval(
        &self,
        _dx: &mut L::Buf,
        _dparams: Option<(&mut L::Buf, Seg, Seg)>,
        _dy: &L::Buf,
        _x: &L::Buf,
        _running: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("bn_bwd_eval"))
    }
    fn bn_eval_jvp(
        &self,
        _ydot: &mut L::Buf,
        _x: &L::Buf,
        _xdot: &L::Buf,
        _running: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _tangent: &L::Buf,
        _t_gamma: Seg,
        _t_beta: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("bn_eval_jvp"))
    }
    fn bn_eval_dual_bwd(
        &self,
        _dx: &mut L::Buf,
        _dxdot: &mut L::Buf,
        _dy: &L::Buf,
        _dydot: &L::Buf,
        _running: &L::Buf,
        _params: &L::Buf,
        _gamma: Seg,
        _tangent: &L::Buf,
        _t_gamma: Seg,
        _s: &NormShape,
    ) -> Result<()> {
        Err(todo_kernel("bn_eval_dual_bwd"))
    }

    // ---- loss (kernels not yet written) ----------------------------------------
    fn ce_fwd_bwd(
        &self,
        _dlogits: &mut L::Buf,
        _logits: &L::Buf,
        _labels: &L::Labels,
        _s: &LinearShape,
    ) -> Result<CeOut> {
        Err(todo_kernel("ce_fwd_bwd"))
    }
    fn ce_dual(
        &self,
        _dlogits: &mut L::Buf,
        _dldot: &mut L::Buf,
        _logits: &L::Buf,
        _ldot: &L::Buf,
        _labels: &L::Labels,
        _s: &LinearShape,
    ) -> Result<f64> {
        Err(todo_kernel("ce_dual"))
    }

    // ---- matching, optimiser ---------------------------------------------------
    fn match_distance(
        &self,
        _dsyn: &mut L::Buf,
        _g_syn: &L::Buf,
        _g_real: &L::Buf,
        _tensors: &[MatchTensor],
        _metric: Metric,
    ) -> Result<f64> {
        Err(todo_kernel("match_distance"))
    }
    fn sgd_step(&self, p: &mut L::Buf, g: &L::Buf, m: &mut L::Buf, hp: SgdParams) -> Result<()> {
        let n = self.l.len(p);
        check_len("sgd_step", "g", self.l.len(g), n)?;
        check_len("sgd_step", "momentum_buf", self.l.len(m), n)?;
        if n == 0 {
            return Ok(());
        }
        kernels::sgd_step(&self.l, p, m, g, check_u32("sgd_step", n)?, hp)
    }

    // ---- augmentation (kernels not yet written) --------------------------------
    fn aug_fwd(&self, _y: &mut L::Buf, _x: &L::Buf, _op: &AugOp, _s: &ImgShape) -> Result<()> {
        Err(todo_kernel("aug_fwd"))
    }
    fn aug_bwd(&self, _dx: &mut L::Buf, _dy: &L::Buf, _op: &AugOp, _s: &ImgShape) -> Result<()> {
        Err(todo_kernel("aug_bwd"))
    }
}

fn pool_lens(s: &PoolShape) -> (usize, usize) {
    let p = s.planes as usize;
    (
        p * s.h as usize * s.w as usize,
        p * s.oh() as usize * s.ow() as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// kernels/params.cuh mirrors shapes.rs: these sizes and offsets are the C
    /// layout of the header's structs (all fields 4 bytes, no padding).
    #[test]
    fn params_layout() {
        assert_eq!(size_of::<Seg>(), 8);
        assert_eq!(offset_of!(Seg, len), 4);
        assert_eq!(size_of::<ConvShape>(), 44);
        assert_eq!(offset_of!(ConvShape, o), 16);
        assert_eq!(offset_of!(ConvShape, stride), 28);
        assert_eq!(offset_of!(ConvShape, ow), 40);
        assert_eq!(size_of::<LinearShape>(), 12);
        assert_eq!(offset_of!(LinearShape, k), 8);
        assert_eq!(size_of::<NormShape>(), 24);
        assert_eq!(offset_of!(NormShape, affine), 16);
        assert_eq!(offset_of!(NormShape, eps), 20);
        assert_eq!(size_of::<PoolShape>(), 12);
        assert_eq!(offset_of!(PoolShape, w), 8);
        assert_eq!(size_of::<ImgShape>(), 16);
        assert_eq!(offset_of!(ImgShape, w), 12);
        assert_eq!(size_of::<AffineParam>(), 16);
        assert_eq!(offset_of!(AffineParam, a11), 12);
        assert_eq!(size_of::<IntParam>(), 8);
        assert_eq!(offset_of!(IntParam, b), 4);
        assert_eq!(size_of::<MatchTensor>(), 20);
        assert_eq!(offset_of!(MatchTensor, rows), 8);
        assert_eq!(offset_of!(MatchTensor, is_vector), 16);
        assert_eq!(size_of::<SgdParams>(), 12);
        assert_eq!(offset_of!(SgdParams, weight_decay), 8);
    }

    /// The same layout measured on the C++ side: the emulator library exports
    /// `emu_params_layout`, filled with sizeof/offsetof of params.cuh's structs.
    #[test]
    fn params_layout_matches_header() {
        let c = crate::backend::emu::params_layout_from_header();
        let rust: Vec<u32> = vec![
            size_of::<Seg>() as u32,
            offset_of!(Seg, len) as u32,
            size_of::<ConvShape>() as u32,
            offset_of!(ConvShape, o) as u32,
            offset_of!(ConvShape, ow) as u32,
            size_of::<LinearShape>() as u32,
            offset_of!(LinearShape, k) as u32,
            size_of::<NormShape>() as u32,
            offset_of!(NormShape, eps) as u32,
            size_of::<PoolShape>() as u32,
            offset_of!(PoolShape, w) as u32,
            size_of::<ImgShape>() as u32,
            offset_of!(ImgShape, w) as u32,
            size_of::<AffineParam>() as u32,
            offset_of!(AffineParam, a11) as u32,
            size_of::<IntParam>() as u32,
            offset_of!(IntParam, b) as u32,
            size_of::<MatchTensor>() as u32,
            offset_of!(MatchTensor, rows) as u32,
            offset_of!(MatchTensor, is_vector) as u32,
            size_of::<SgdParams>() as u32,
            offset_of!(SgdParams, weight_decay) as u32,
        ];
        assert_eq!(c, rust);
    }
}
