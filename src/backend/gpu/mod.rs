//! The device backend logic, written once: [`Gpu<L>`] implements [`Backend`] over a
//! [`Launcher`], the small interface that allocates, copies and launches a kernel
//! the way `cuLaunchKernel` does (an array of pointers to the argument values).
//! Two launchers exist: [`crate::backend::cuda::CudaLauncher`] (cudarc, a real GPU)
//! and [`crate::backend::emu::EmuLauncher`] (the same `kernels/*.cu` compiled for
//! the host, see `kernels/README.md`), so `Cuda = Gpu<CudaLauncher>` and
//! `Emu = Gpu<EmuLauncher>` share every line of validation and launch code.
//!
//! Layout: this file validates shapes and maps each trait op to the typed launch
//! wrappers of `kernels` (one per kernel, holding all the `unsafe`); grids and
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
    #[track_caller]
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// Buffer holding `host`.
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    /// Contents on the host (waits for queued work).
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Elements of a buffer.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// `dst = host` (same lengths, checked by the caller), no allocation.
    fn upload_into(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()>;
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
    /// Launches `kernel` (while capturing: records it instead, see
    /// [`Launcher::begin_capture`]).
    ///
    /// # Safety
    /// `args[i]` must point to a value of exactly the type (and `size`) of the
    /// kernel's i-th parameter (device pointers as `u64` from [`Launcher::ptr`]),
    /// every pointer must address enough elements for the launch, and outputs must
    /// not alias inputs unless the kernel allows it.
    unsafe fn launch(&self, kernel: &Kernel, geo: launch::Geometry, args: &mut [Arg])
        -> Result<()>;

    // ---- graphs: capture a launch sequence once, replay it many times ------------
    /// A captured launch sequence (a CUDA graph; the emulator's recording).
    type Graph: Send;
    /// Whether the engine should capture and replay by default (`cuda`: yes unless
    /// `DSA_CUDA_GRAPHS=0`; `emu`: no, tests turn it on).
    fn graphs_by_default(&self) -> bool;
    /// Starts capturing: from now until [`Launcher::end_capture`], launches are
    /// recorded, not run, and `alloc`, `upload*`, `download`, `synchronize` fail
    /// (CUDA cannot capture them). One capture at a time; no other thread may use
    /// the launcher meanwhile.
    fn begin_capture(&self) -> Result<()>;
    /// True between `begin_capture` and `end_capture`.
    fn capturing(&self) -> bool;
    /// Ends the capture and returns the recorded sequence (ready to replay).
    fn end_capture(&self) -> Result<Self::Graph>;
    /// Runs a captured sequence again, with the device pointers and scalar arguments
    /// it was captured with.
    ///
    /// # Safety
    /// Every buffer the captured launches address must still be alive, at the same
    /// address, with at least the length it had at capture time.
    unsafe fn replay(&self, graph: &Self::Graph) -> Result<()>;
}

/// One kernel argument as `cuLaunchKernel` takes it (a pointer to the value), with
/// the value's size so a launcher can copy it (the emulator's recording does).
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    /// Address of the argument value.
    pub ptr: *mut c_void,
    /// Size of the value in bytes.
    pub size: usize,
}

impl Arg {
    /// The argument `v` (the launch reads it before returning).
    pub fn of<T>(v: &T) -> Self {
        Self {
            ptr: v as *const T as *mut c_void,
            size: std::mem::size_of::<T>(),
        }
    }
}

/// The device backend over launcher `L` (E = f32).
pub struct Gpu<L: Launcher> {
    l: L,
    cap: std::sync::Mutex<CaptureScratch<L::Buf>>,
    /// Which kernels run the convolution and linear products (FP32 units, or the
    /// matrix units in TF32 / BF16).
    precision: Precision,
}

/// Split-K scratch for captured launches. Outside a capture every weight gradient
/// allocates its scratch (stream-ordered on CUDA); a capture cannot allocate, so
/// `begin_capture` reserves `need` floats (the most a failed capture asked for) and
/// the graph that used it keeps it ([`GpuGraph`]): a replay never sees a freed or
/// reused scratch.
struct CaptureScratch<B> {
    buf: Option<B>,
    need: usize,
    used: bool,
    /// A launch of this capture found the reserved scratch too small (and was left
    /// out): `end_capture` fails and the next capture reserves `need`.
    short: bool,
}

/// A captured launch sequence of [`Gpu`]: the launcher's graph and the scratch
/// buffer its split-K launches address (owned here, so it lives as long as the graph).
pub struct GpuGraph<L: Launcher> {
    graph: L::Graph,
    _scratch: Option<L::Buf>,
}

impl<L: Launcher> Gpu<L> {
    /// A backend over an initialised launcher.
    pub fn from_launcher(l: L) -> Self {
        Self {
            l,
            cap: std::sync::Mutex::new(CaptureScratch {
                buf: None,
                need: 0,
                used: false,
                short: false,
            }),
            precision: Precision::Fp32,
        }
    }
    /// The same backend with the convolution and linear products on the matrix
    /// units in `precision` (the `*_tf32` / `*_bf16` kernels; FP32 accumulation), or
    /// on the FP32 units for [`Precision::Fp32`].
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
    /// The launcher (for benchmarks and diagnostics).
    pub fn launcher(&self) -> &L {
        &self.l
    }

    fn cap_state(&self) -> Result<std::sync::MutexGuard<'_, CaptureScratch<L::Buf>>> {
        self.cap.lock().map_err(|_| Error::Backend {
            backend: self.l.name(),
            msg: "capture state poisoned".into(),
        })
    }

    /// Runs `f` with the address of `need` floats of split-K scratch (0 when `need`
    /// is 0). Outside a capture the scratch is allocated for this call; while
    /// capturing it is the reserved buffer. When that is too small, `f` is skipped and
    /// the capture marked short: it goes on (so the largest need of the whole region
    /// is known), `end_capture` fails, and the next capture reserves enough.
    fn with_scratch(&self, need: usize, f: impl FnOnce(u64) -> Result<()>) -> Result<()> {
        if need == 0 {
            return f(0);
        }
        if !self.l.capturing() {
            let buf = self.l.alloc(need)?;
            return f(self.l.ptr(&buf));
        }
        let ptr = {
            let mut cap = self.cap_state()?;
            match &cap.buf {
                Some(b) if self.l.len(b) >= need => {
                    let p = self.l.ptr(b);
                    cap.used = true;
                    p
                }
                _ => {
                    cap.need = cap.need.max(need);
                    cap.short = true;
                    return Ok(());
                }
            }
        };
        f(ptr)
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

impl<L: Launcher> Backend for Gpu<L> {
    type E = f32;
    type Buf = L::Buf;
    type Labels = L::Labels;
    type Graph = GpuGraph<L>;

    fn name(&self) -> String {
        match self.precision {
            Precision::Fp32 => self.l.name(),
            p => format!("{} ({p} products)", self.l.name()),
        }
    }
    fn precision(&self) -> Precision {
        self.precision
    }
    fn buf_addr(&self, buf: &L::Buf) -> u64 {
        self.l.ptr(buf)
    }

    // ---- graphs ------------------------------------------------------------------
    fn graphs_supported(&self) -> bool {
        true
    }
    fn graphs_by_default(&self) -> bool {
        self.l.graphs_by_default()
    }
    fn begin_capture(&self) -> Result<()> {
        let mut cap = self.cap_state()?;
        cap.buf = match cap.need {
            0 => None,
            n => Some(self.l.alloc(n)?),
        };
        cap.used = false;
        cap.short = false;
        self.l.begin_capture()
    }
    fn end_capture(&self) -> Result<GpuGraph<L>> {
        let graph = self.l.end_capture();
        let mut cap = self.cap_state()?;
        let scratch = cap.buf.take().filter(|_| cap.used);
        if cap.short {
            return Err(Error::Backend {
                backend: self.l.name(),
                msg: format!(
                    "graph capture needed {} floats of split-K scratch (reserved from the \
                     next capture on)",
                    cap.need
                ),
            });
        }
        Ok(GpuGraph {
            graph: graph?,
            _scratch: scratch,
        })
    }
    unsafe fn replay(&self, graph: &GpuGraph<L>) -> Result<()> {
        // SAFETY: the caller keeps every buffer the capture addressed alive; the
        // split-K scratch is owned by the graph.
        unsafe { self.l.replay(&graph.graph) }
    }

    // ---- memory ----------------------------------------------------------------
    #[track_caller]
    fn alloc(&self, len: usize) -> Result<L::Buf> {
        self.l.alloc(len)
    }
    fn upload(&self, host: &[f32]) -> Result<L::Buf> {
        self.l.upload(host)
    }
    fn write(&self, dst: &mut L::Buf, host: &[f32]) -> Result<()> {
        let len = self.l.len(dst);
        if len != host.len() {
            return Err(Error::Shape(format!(
                "write: {} host values into a buffer of {len}",
                host.len()
            )));
        }
        if len == 0 {
            return Ok(());
        }
        self.l.upload_into(dst, host)
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
        kernels::copy_range(
            &self.l,
            dst,
            dst_off,
            src,
            src_off,
            check_u32("copy_range", len)?,
        )
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
    fn add(&self, y: &mut L::Buf, a: &L::Buf, b: &L::Buf) -> Result<()> {
        check_len("add", "a", self.l.len(a), self.l.len(y))?;
        check_len("add", "b", self.l.len(b), self.l.len(y))?;
        let n = check_u32("add", self.l.len(y))?;
        if n == 0 {
            return Ok(());
        }
        kernels::add(&self.l, y, a, b, n)
    }
    fn gather_rows(
        &self,
        dst: &mut L::Buf,
        src: &L::Buf,
        rows: &[u32],
        row_len: usize,
    ) -> Result<()> {
        check_len("gather_rows", "dst", self.l.len(dst), rows.len() * row_len)?;
        let src_rows = self.l.len(src).checked_div(row_len).unwrap_or(0);
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
        kernels::conv2d_fwd(&self.l, self.precision, y, x, params, w, b, s, acc)
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
        kernels::conv2d_bwd_input(&self.l, self.precision, dx, dy, params, w, s, acc)
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
        self.with_scratch(kernels::conv2d_bwd_weight_scratch(s), |scratch| {
            kernels::conv2d_bwd_weight(&self.l, self.precision, scratch, grads, dw, db, dy, x, s)
        })
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
        kernels::linear_fwd(&self.l, self.precision, y, x, params, w, b, s, acc)
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
        kernels::linear_bwd_input(&self.l, self.precision, dx, dy, params, w, s, acc)
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
        self.with_scratch(kernels::linear_bwd_weight_scratch(s), |scratch| {
            kernels::linear_bwd_weight(&self.l, self.precision, scratch, grads, dw, db, dy, x, s)
        })
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
        s.validate("pool_fwd")?;
        let (xl, yl) = (s.x_len(), s.y_len());
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
        s.validate("pool_bwd")?;
        let (xl, yl) = (s.x_len(), s.y_len());
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
        s.validate("pool_jvp")?;
        let (xl, yl) = (s.x_len(), s.y_len());
        check_len("pool_jvp", "x", self.l.len(x), xl)?;
        check_len("pool_jvp", "xdot", self.l.len(xdot), xl)?;
        check_len("pool_jvp", "ydot", self.l.len(ydot), yl)?;
        check_u32("pool_jvp", xl)?;
        if yl == 0 {
            return Ok(());
        }
        kernels::pool_jvp(&self.l, ydot, x, xdot, s, kind)
    }

    // ---- fused block tail (kernels/fused.cu) -------------------------------------------
    fn norm_act_pool_fwd(
        &self,
        norm_out: Option<(&mut L::Buf, &mut L::Buf)>,
        a: &mut L::Buf,
        p: Option<&mut L::Buf>,
        z: &L::Buf,
        params: &L::Buf,
        norm: Option<(Seg, Seg, &NormShape)>,
        act: Act,
        pool: Option<(&PoolShape, PoolKind)>,
    ) -> Result<()> {
        let op = "norm_act_pool_fwd";
        // The slabs: norm groups, or (no norm) the pooled planes. Without either it is
        // one act_fwd, already a single pass.
        let ns = match (&norm, &pool) {
            (Some((_, _, ns)), _) => **ns,
            (None, Some((ps, _))) => NormShape {
                n: ps.planes,
                c: 1,
                hw: ps.h.saturating_mul(ps.w),
                groups: 1,
                affine: 0,
                eps: 0.0,
            },
            (None, None) => {
                return norm_act_pool_composed(self, norm_out, a, p, z, params, norm, act, pool)
            }
        };
        let paired = norm_out.is_some() == norm.is_some() && p.is_some() == pool.is_some();
        let slab = (ns.c / ns.groups.max(1)) as u64 * ns.hw as u64;
        if !paired || ns.n == 0 || slab == 0 || slab > launch::FUSED_MAX_SLAB as u64 {
            return norm_act_pool_composed(self, norm_out, a, p, z, params, norm, act, pool);
        }
        let len = if norm.is_some() {
            check_group_norm(op, &ns)?
        } else {
            check_u32(op, ns.len())?;
            0
        };
        check_len(op, "z", self.l.len(z), ns.len())?;
        check_len(op, "a", self.l.len(a), ns.len())?;
        if let (Some((s, st)), Some((gamma, beta, _))) = (&norm_out, &norm) {
            check_len(op, "s", self.l.len(s), ns.len())?;
            check_len(op, "stats", self.l.len(st), 2 * ns.stats_len())?;
            check_seg_len(op, "gamma", *gamma, self.l.len(params), len)?;
            check_seg_len(op, "beta", *beta, self.l.len(params), len)?;
        }
        let ps = match (&pool, &p) {
            (Some((ps, _)), Some(pb)) => {
                ps.validate(op)?;
                if ps.planes as u64 != ns.n as u64 * ns.c as u64
                    || ps.h as u64 * ps.w as u64 != ns.hw as u64
                {
                    return Err(Error::Shape(format!(
                        "{op}: pool shape {ps:?} does not match the norm shape {ns:?}"
                    )));
                }
                check_len(op, "p", self.l.len(pb), ps.y_len())?;
                **ps
            }
            // no pooling stage: the kernel does not read the shape
            _ => PoolShape {
                planes: ns.n * ns.c,
                h: ns.hw,
                w: 1,
                k: 1,
                stride: 1,
            },
        };
        let out = kernels::FusedOut { s: norm_out, a, p };
        let segs = norm.map(|(g, b, _)| (g, b));
        kernels::norm_act_pool_fwd(
            &self.l,
            out,
            z,
            params,
            segs,
            &ns,
            &ps,
            act,
            pool.map(|(_, k)| k),
        )
    }

    // ---- norms (kernels/norm.cu, kernels/batchnorm.cu) -----------------------------
    fn norm_fwd(
        &self,
        y: &mut L::Buf,
        stats: &mut L::Buf,
        x: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "norm_fwd";
        let aff = check_group_norm(op, s)?;
        check_len(op, "x", self.l.len(x), s.len())?;
        check_len(op, "y", self.l.len(y), s.len())?;
        check_len(op, "stats", self.l.len(stats), 2 * s.stats_len())?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), aff)?;
        check_seg_len(op, "beta", beta, self.l.len(params), aff)?;
        kernels::norm_fwd(&self.l, y, stats, x, params, gamma, beta, s)
    }
    fn norm_bwd(
        &self,
        dx: &mut L::Buf,
        dparams: Option<(&mut L::Buf, Seg, Seg)>,
        dy: &L::Buf,
        x: &L::Buf,
        stats: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "norm_bwd";
        let aff = check_group_norm(op, s)?;
        for (what, len) in [
            ("dx", self.l.len(dx)),
            ("dy", self.l.len(dy)),
            ("x", self.l.len(x)),
        ] {
            check_len(op, what, len, s.len())?;
        }
        check_len(op, "stats", self.l.len(stats), 2 * s.stats_len())?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), aff)?;
        if let Some((g, dg, db)) = &dparams {
            check_dparams(op, self.l.len(g), *dg, *db, aff)?;
        }
        kernels::norm_bwd(&self.l, dx, dy, x, stats, params, gamma, s)?;
        if let Some((g, dg, db)) = dparams {
            kernels::norm_bwd_params(&self.l, g, dg, db, dy, x, stats, s)?;
        }
        Ok(())
    }
    fn norm_jvp(
        &self,
        ydot: &mut L::Buf,
        x: &L::Buf,
        xdot: &L::Buf,
        stats: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        tangent: &L::Buf,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "norm_jvp";
        let aff = check_group_norm(op, s)?;
        for (what, len) in [
            ("ydot", self.l.len(ydot)),
            ("x", self.l.len(x)),
            ("xdot", self.l.len(xdot)),
        ] {
            check_len(op, what, len, s.len())?;
        }
        check_len(op, "stats", self.l.len(stats), 2 * s.stats_len())?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), aff)?;
        check_seg_len(op, "t_gamma", t_gamma, self.l.len(tangent), aff)?;
        check_seg_len(op, "t_beta", t_beta, self.l.len(tangent), aff)?;
        kernels::norm_jvp(
            &self.l, ydot, x, xdot, stats, params, gamma, tangent, t_gamma, t_beta, s,
        )
    }
    fn norm_dual_bwd(
        &self,
        dx: &mut L::Buf,
        dxdot: &mut L::Buf,
        dy: &L::Buf,
        dydot: &L::Buf,
        x: &L::Buf,
        xdot: &L::Buf,
        stats: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        tangent: &L::Buf,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "norm_dual_bwd";
        let aff = check_group_norm(op, s)?;
        for (what, len) in [
            ("dx", self.l.len(dx)),
            ("dxdot", self.l.len(dxdot)),
            ("dy", self.l.len(dy)),
            ("dydot", self.l.len(dydot)),
            ("x", self.l.len(x)),
            ("xdot", self.l.len(xdot)),
        ] {
            check_len(op, what, len, s.len())?;
        }
        check_len(op, "stats", self.l.len(stats), 2 * s.stats_len())?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), aff)?;
        check_seg_len(op, "t_gamma", t_gamma, self.l.len(tangent), aff)?;
        kernels::norm_dual_bwd(
            &self.l, dx, dxdot, dy, dydot, x, xdot, stats, params, gamma, tangent, t_gamma, s,
        )
    }
    fn bn_fwd_train(
        &self,
        y: &mut L::Buf,
        stats: &mut L::Buf,
        running: &mut L::Buf,
        x: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
        momentum: f32,
    ) -> Result<()> {
        let op = "bn_fwd_train";
        let c = check_batch_norm(op, s)?;
        check_len(op, "x", self.l.len(x), s.len())?;
        check_len(op, "y", self.l.len(y), s.len())?;
        check_len(op, "stats", self.l.len(stats), 2 * c)?;
        check_len(op, "running", self.l.len(running), 2 * c)?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), c)?;
        check_seg_len(op, "beta", beta, self.l.len(params), c)?;
        if (s.n as u64) * (s.hw as u64) < 2 {
            return Err(Error::Shape(format!(
                "{op}: train mode needs more than one value per channel (N*H*W >= 2)"
            )));
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::Shape(format!(
                "{op}: momentum {momentum} outside [0, 1]"
            )));
        }
        kernels::bn_fwd_train(
            &self.l, y, stats, running, x, params, gamma, beta, s, momentum,
        )
    }
    fn bn_bwd_train(
        &self,
        dx: &mut L::Buf,
        dparams: Option<(&mut L::Buf, Seg, Seg)>,
        dy: &L::Buf,
        x: &L::Buf,
        stats: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "bn_bwd_train";
        let c = check_batch_norm(op, s)?;
        for (what, len) in [
            ("dx", self.l.len(dx)),
            ("dy", self.l.len(dy)),
            ("x", self.l.len(x)),
        ] {
            check_len(op, what, len, s.len())?;
        }
        check_len(op, "stats", self.l.len(stats), 2 * c)?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), c)?;
        if let Some((g, dg, db)) = &dparams {
            check_dparams(op, self.l.len(g), *dg, *db, c)?;
        }
        kernels::bn_bwd_train(&self.l, dx, dparams, dy, x, stats, params, gamma, s)
    }
    fn bn_fwd_eval(
        &self,
        y: &mut L::Buf,
        x: &L::Buf,
        running: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "bn_fwd_eval";
        let c = check_batch_norm(op, s)?;
        check_len(op, "x", self.l.len(x), s.len())?;
        check_len(op, "y", self.l.len(y), s.len())?;
        check_len(op, "running", self.l.len(running), 2 * c)?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), c)?;
        check_seg_len(op, "beta", beta, self.l.len(params), c)?;
        kernels::bn_fwd_eval(&self.l, y, x, running, params, gamma, beta, s)
    }
    fn bn_bwd_eval(
        &self,
        dx: &mut L::Buf,
        dparams: Option<(&mut L::Buf, Seg, Seg)>,
        dy: &L::Buf,
        x: &L::Buf,
        running: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "bn_bwd_eval";
        let c = check_batch_norm(op, s)?;
        for (what, len) in [
            ("dx", self.l.len(dx)),
            ("dy", self.l.len(dy)),
            ("x", self.l.len(x)),
        ] {
            check_len(op, what, len, s.len())?;
        }
        check_len(op, "running", self.l.len(running), 2 * c)?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), c)?;
        if let Some((g, dg, db)) = &dparams {
            check_dparams(op, self.l.len(g), *dg, *db, c)?;
        }
        kernels::bn_bwd_eval(&self.l, dx, dy, running, params, gamma, s)?;
        if let Some((g, dg, db)) = dparams {
            kernels::bn_bwd_eval_params(&self.l, g, dg, db, dy, x, running, s)?;
        }
        Ok(())
    }
    fn bn_eval_jvp(
        &self,
        ydot: &mut L::Buf,
        x: &L::Buf,
        xdot: &L::Buf,
        running: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        tangent: &L::Buf,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "bn_eval_jvp";
        let c = check_batch_norm(op, s)?;
        for (what, len) in [
            ("ydot", self.l.len(ydot)),
            ("x", self.l.len(x)),
            ("xdot", self.l.len(xdot)),
        ] {
            check_len(op, what, len, s.len())?;
        }
        check_len(op, "running", self.l.len(running), 2 * c)?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), c)?;
        check_seg_len(op, "t_gamma", t_gamma, self.l.len(tangent), c)?;
        check_seg_len(op, "t_beta", t_beta, self.l.len(tangent), c)?;
        kernels::bn_eval_jvp(
            &self.l, ydot, x, xdot, running, params, gamma, tangent, t_gamma, t_beta, s,
        )
    }
    fn bn_eval_dual_bwd(
        &self,
        dx: &mut L::Buf,
        dxdot: &mut L::Buf,
        dy: &L::Buf,
        dydot: &L::Buf,
        running: &L::Buf,
        params: &L::Buf,
        gamma: Seg,
        tangent: &L::Buf,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let op = "bn_eval_dual_bwd";
        let c = check_batch_norm(op, s)?;
        for (what, len) in [
            ("dx", self.l.len(dx)),
            ("dxdot", self.l.len(dxdot)),
            ("dy", self.l.len(dy)),
            ("dydot", self.l.len(dydot)),
        ] {
            check_len(op, what, len, s.len())?;
        }
        check_len(op, "running", self.l.len(running), 2 * c)?;
        check_seg_len(op, "gamma", gamma, self.l.len(params), c)?;
        check_seg_len(op, "t_gamma", t_gamma, self.l.len(tangent), c)?;
        kernels::bn_eval_dual_bwd(
            &self.l, dx, dxdot, dy, dydot, running, params, gamma, tangent, t_gamma, s,
        )
    }

    // ---- loss (kernels/loss.cu) ----------------------------------------------------
    fn ce_fwd_bwd(
        &self,
        dlogits: &mut L::Buf,
        logits: &L::Buf,
        labels: &L::Labels,
        s: &LinearShape,
    ) -> Result<CeOut> {
        let op = "ce_fwd_bwd";
        let n = check_ce(
            op,
            s,
            self.l.len_u32(labels),
            &[self.l.len(dlogits), self.l.len(logits)],
        )?;
        let mut per = self.l.alloc(2 * n)?;
        kernels::ce_fwd_bwd(&self.l, dlogits, &mut per, logits, labels, s)?;
        let per = self.l.download(&per)?;
        let (loss, correct) = (&per[..n], &per[n..]);
        check_labels(op, correct)?;
        let total: f64 = loss.iter().map(|&v| v as f64).sum();
        if !total.is_finite() {
            return Err(Error::NonFinite(format!(
                "{op}: loss {total} (non-finite logits)"
            )));
        }
        Ok(CeOut {
            loss: total / n as f64,
            correct: correct.iter().filter(|&&c| c == 1.0).count(),
        })
    }
    fn ce_dual(
        &self,
        dlogits: &mut L::Buf,
        dldot: &mut L::Buf,
        logits: &L::Buf,
        ldot: &L::Buf,
        labels: &L::Labels,
        s: &LinearShape,
    ) -> Result<f64> {
        let op = "ce_dual";
        let lens = [
            self.l.len(dlogits),
            self.l.len(dldot),
            self.l.len(logits),
            self.l.len(ldot),
        ];
        let n = check_ce(op, s, self.l.len_u32(labels), &lens)?;
        let mut per = self.l.alloc(2 * n)?;
        kernels::ce_dual(&self.l, dlogits, dldot, &mut per, logits, ldot, labels, s)?;
        let per = self.l.download(&per)?;
        check_labels(op, &per[n..])?;
        let h = per[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        if !h.is_finite() {
            return Err(Error::NonFinite(format!(
                "{op}: h = {h} (non-finite logits or tangent)"
            )));
        }
        Ok(h)
    }

    // ---- matching, optimiser ---------------------------------------------------
    fn match_distance(
        &self,
        dsyn: &mut L::Buf,
        g_syn: &L::Buf,
        g_real: &L::Buf,
        tensors: &[MatchTensor],
        metric: Metric,
    ) -> Result<f64> {
        let op = "match_distance";
        let len = self.l.len(g_syn);
        check_len(op, "g_real", self.l.len(g_real), len)?;
        check_len(op, "dsyn", self.l.len(dsyn), len)?;
        check_u32(op, len)?;
        // Rows that count, as (off, len) pairs, in the CPU twin's order.
        let mut rows: Vec<u32> = Vec::new();
        for (i, t) in tensors.iter().enumerate() {
            check_seg(op, &format!("tensor {i}"), t.seg, len)?;
            if t.rows as u64 * t.cols as u64 != t.seg.len as u64 {
                return Err(Error::Shape(format!(
                    "{op}: tensor {i} is {} x {} but its segment has {} elements",
                    t.rows, t.cols, t.seg.len
                )));
            }
            if t.cols == 0 || (metric == Metric::Ours && t.is_vector != 0) {
                continue;
            }
            for r in 0..t.rows {
                rows.extend_from_slice(&[t.seg.off + r * t.cols, t.cols]);
            }
        }
        if len > 0 {
            kernels::fill(&self.l, dsyn, 0.0, len as u32)?;
        }
        let nrows = rows.len() / 2;
        let sums = if nrows > 0 {
            let rows_buf = self.l.upload_u32(&rows)?;
            let mut sums = self.l.alloc(4 * nrows)?;
            kernels::match_sums(
                &self.l,
                &mut sums,
                g_syn,
                g_real,
                &rows_buf,
                check_u32(op, nrows)?,
            )?;
            Some((rows_buf, self.l.download(&sums)?))
        } else {
            None
        };
        let sum4 =
            |i: usize, s: &[f32]| -> [f64; 4] { std::array::from_fn(|k| s[4 * i + k] as f64) };
        let mut coef = vec![0.0f32; 2 * nrows];
        let dist = match (&sums, metric) {
            (_, Metric::Cos) => {
                let mut tot = [0.0f64; 3];
                if let Some((_, s)) = &sums {
                    for i in 0..nrows {
                        let v = sum4(i, s);
                        for k in 0..3 {
                            tot[k] += v[k];
                        }
                    }
                }
                let (d, a, b) = cos_terms(tot[0], tot[1], tot[2]);
                for c in coef.chunks_mut(2) {
                    c.copy_from_slice(&[a as f32, b as f32]);
                }
                d
            }
            (None, _) => 0.0,
            (Some((_, s)), Metric::Mse) => (0..nrows).map(|i| sum4(i, s)[3]).sum(),
            (Some((_, s)), Metric::Ours) => {
                let mut d = 0.0;
                for i in 0..nrows {
                    let v = sum4(i, s);
                    let (di, a, b) = cos_terms(v[0], v[1], v[2]);
                    d += di;
                    coef[2 * i] = a as f32;
                    coef[2 * i + 1] = b as f32;
                }
                d
            }
        };
        if !dist.is_finite() {
            return Err(Error::NonFinite(format!(
                "{op} ({metric:?}): distance {dist}"
            )));
        }
        if let Some((rows_buf, _)) = &sums {
            let coef = self.l.upload(&coef)?;
            kernels::match_grad(
                &self.l,
                dsyn,
                g_syn,
                g_real,
                rows_buf,
                &coef,
                nrows as u32,
                metric,
            )?;
        }
        Ok(dist)
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

    // ---- augmentation (kernels/augment.cu) -------------------------------------------
    fn aug_fwd(&self, y: &mut L::Buf, x: &L::Buf, op: &AugOp, s: &ImgShape) -> Result<()> {
        if !self.check_aug("aug_fwd", self.l.len(y), self.l.len(x), op, s)? {
            return Ok(());
        }
        let l = &self.l;
        match op {
            AugOp::Affine(p) => {
                kernels::aug_affine(l, y, x, &l.upload(bytemuck::cast_slice(p))?, s, false)
            }
            AugOp::Flip(p) => {
                kernels::aug_flip(l, y, x, &l.upload_u32(bytemuck::cast_slice(p))?, s)
            }
            AugOp::Brightness(p) => kernels::aug_brightness_fwd(l, y, x, &l.upload(p)?, s),
            AugOp::Saturation(p) => kernels::aug_saturation(l, y, x, &l.upload(p)?, s),
            AugOp::Contrast(p) => kernels::aug_contrast(l, y, x, &l.upload(p)?, s),
            AugOp::Crop(p) => {
                kernels::aug_crop(l, y, x, &l.upload_u32(bytemuck::cast_slice(p))?, s, false)
            }
            AugOp::Cutout { centres, half } => kernels::aug_cutout(
                l,
                y,
                x,
                &l.upload_u32(bytemuck::cast_slice(centres))?,
                *half,
                s,
            ),
        }
    }
    fn aug_bwd(&self, dx: &mut L::Buf, dy: &L::Buf, op: &AugOp, s: &ImgShape) -> Result<()> {
        if !self.check_aug("aug_bwd", self.l.len(dx), self.l.len(dy), op, s)? {
            return Ok(());
        }
        let l = &self.l;
        match op {
            AugOp::Affine(p) => {
                kernels::aug_affine(l, dx, dy, &l.upload(bytemuck::cast_slice(p))?, s, true)
            }
            // Self-adjoint maps run their forward kernel on dy.
            AugOp::Flip(p) => {
                kernels::aug_flip(l, dx, dy, &l.upload_u32(bytemuck::cast_slice(p))?, s)
            }
            AugOp::Brightness(_) => kernels::copy_range(l, dx, 0, dy, 0, s.len() as u32),
            AugOp::Saturation(p) => kernels::aug_saturation(l, dx, dy, &l.upload(p)?, s),
            AugOp::Contrast(p) => kernels::aug_contrast(l, dx, dy, &l.upload(p)?, s),
            AugOp::Crop(p) => {
                kernels::aug_crop(l, dx, dy, &l.upload_u32(bytemuck::cast_slice(p))?, s, true)
            }
            AugOp::Cutout { centres, half } => kernels::aug_cutout(
                l,
                dx,
                dy,
                &l.upload_u32(bytemuck::cast_slice(centres))?,
                *half,
                s,
            ),
        }
    }
}

impl<L: Launcher> Gpu<L> {
    /// Validates an augmentation launch; `Ok(false)` for an empty batch (nothing to do).
    fn check_aug(
        &self,
        op: &str,
        out_len: usize,
        in_len: usize,
        aug: &AugOp,
        s: &ImgShape,
    ) -> Result<bool> {
        check_len(op, "output", out_len, s.len())?;
        check_len(op, "input", in_len, s.len())?;
        if aug.batch() != s.n as usize {
            return Err(Error::Shape(format!(
                "{op}: {} per-image parameters for a batch of {}",
                aug.batch(),
                s.n
            )));
        }
        check_u32(op, s.len())?;
        Ok(!s.is_empty())
    }
}

/// Group-norm shape checks; returns the length of an affine parameter (C or C*HW).
fn check_group_norm(op: &str, s: &NormShape) -> Result<usize> {
    if s.n == 0 || s.c == 0 || s.hw == 0 || s.groups == 0 || !s.c.is_multiple_of(s.groups) {
        return Err(Error::Shape(format!(
            "{op}: bad shape (n={}, c={}, hw={}, groups={}; groups must divide c)",
            s.n, s.c, s.hw, s.groups
        )));
    }
    check_eps(op, s)?;
    check_u32(op, s.len())?;
    match s.affine {
        0 => Ok(s.c as usize),
        1 => Ok(s.c as usize * s.hw as usize),
        a => Err(Error::Shape(format!(
            "{op}: affine layout {a} is neither 0 nor 1"
        ))),
    }
}

/// Batch-norm shape checks; returns C.
fn check_batch_norm(op: &str, s: &NormShape) -> Result<usize> {
    if s.n == 0 || s.c == 0 || s.hw == 0 {
        return Err(Error::Shape(format!(
            "{op}: zero dimension (n={}, c={}, hw={})",
            s.n, s.c, s.hw
        )));
    }
    check_eps(op, s)?;
    check_u32(op, s.len())?;
    Ok(s.c as usize)
}

fn check_eps(op: &str, s: &NormShape) -> Result<()> {
    if !(s.eps >= 0.0 && s.eps.is_finite()) {
        return Err(Error::Shape(format!(
            "{op}: eps {} is not a finite value >= 0",
            s.eps
        )));
    }
    Ok(())
}

/// dgamma, dbeta: disjoint segments of `want` elements inside a buffer of `len`.
fn check_dparams(op: &str, len: usize, dg: Seg, db: Seg, want: usize) -> Result<()> {
    check_seg_len(op, "dgamma", dg, len, want)?;
    check_seg_len(op, "dbeta", db, len, want)?;
    if dg.range().start < db.range().end && db.range().start < dg.range().end {
        return Err(Error::Shape(format!(
            "{op}: dgamma and dbeta segments overlap"
        )));
    }
    Ok(())
}

/// Softmax-CE shape checks; returns N.
fn check_ce(op: &str, s: &LinearShape, labels: usize, lens: &[usize]) -> Result<usize> {
    let (n, k) = (s.n as usize, s.k as usize);
    if n == 0 || k == 0 {
        return Err(Error::Shape(format!("{op}: zero dimension (n={n}, k={k})")));
    }
    for &len in lens {
        check_len(op, "a [N, K] buffer", len, n * k)?;
    }
    check_len(op, "labels", labels, n)?;
    check_u32(op, n * k)?;
    Ok(n)
}

/// The kernels flag a label >= K with -1 in the per-sample label slot.
fn check_labels(op: &str, flags: &[f32]) -> Result<()> {
    if let Some(i) = flags.iter().position(|&f| f < 0.0) {
        return Err(Error::Shape(format!(
            "{op}: the label of sample {i} is not below the classes"
        )));
    }
    Ok(())
}

/// Epsilon added to the product of the norms (docs/method.md §3.2; as cpu::matching).
const COS_EPS: f64 = 1e-6;

/// `1 - <r,s>/(|r||s| + eps)` from `(<r,s>, |r|^2, |s|^2)`, with the coefficients
/// `(a, b)` of its gradient w.r.t. s, `a r + b s` (the CPU twin's `cos_terms`).
fn cos_terms(dot: f64, rr: f64, ss: f64) -> (f64, f64, f64) {
    let (nr, ns) = (rr.sqrt(), ss.sqrt());
    let den = nr * ns + COS_EPS;
    let d = 1.0 - dot / den;
    let b = if ns > 0.0 {
        dot * nr / (den * den * ns)
    } else {
        0.0
    };
    (d, -1.0 / den, b)
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
        assert_eq!(size_of::<PoolShape>(), 20);
        assert_eq!(offset_of!(PoolShape, w), 8);
        assert_eq!(offset_of!(PoolShape, k), 12);
        assert_eq!(offset_of!(PoolShape, stride), 16);
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
            offset_of!(PoolShape, k) as u32,
            offset_of!(PoolShape, stride) as u32,
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
