//! The `cuda` backend: cudarc (dynamic loading) + the hand-written kernels of
//! `kernels/`. `Cuda = Gpu<CudaLauncher>`: all validation and launch code is shared
//! with `emu` (see [`super::gpu`]); this file owns the context, the stream, the
//! module and the raw `cuLaunchKernel`.
//!
//! Kernels come from the fatbin build.rs made with nvcc (SASS sm_80/86/89/90 + PTX
//! compute_80), or, when the crate was built without nvcc, from the embedded source
//! compiled at run time with NVRTC. `DSA_CUDA_SYNC=1` synchronises after every launch
//! so an asynchronous fault is blamed on the right kernel.

use super::gpu::{Arg, Gpu, Kernel, Launcher};
use super::launch::Geometry;
use crate::error::{Error, Result};
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream, DevicePtr,
    DevicePtrMut,
};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The amalgamated kernel source (all `kernels/*.cu` with their headers inlined).
pub const KERNEL_SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels_all.cu"));
/// nvcc's `-Xptxas -v` report (registers, shared memory, spills per kernel), or a
/// note that the build had no nvcc.
pub const PTXAS_REPORT: &str = include_str!(concat!(env!("OUT_DIR"), "/ptxas.txt"));
#[cfg(dsa_fatbin)]
const FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));
/// True when the kernels were compiled by nvcc at build time (else NVRTC at run time).
pub const HAS_FATBIN: bool = cfg!(dsa_fatbin);

/// The CUDA backend.
pub type Cuda = Gpu<CudaLauncher>;

fn err(msg: impl Into<String>) -> Error {
    Error::Backend {
        backend: "cuda".into(),
        msg: msg.into(),
    }
}

impl Cuda {
    /// The backend on device `ordinal`, or a clear error when this machine cannot
    /// run it (no driver, no device, no kernels for it).
    pub fn new(ordinal: usize) -> Result<Self> {
        Ok(Gpu::from_launcher(CudaLauncher::new(ordinal)?))
    }
}

/// cudarc context + one stream + the kernel module.
pub struct CudaLauncher {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
    sync_each: bool,
    graphs: bool,
    capturing: AtomicBool,
    desc: String,
}

/// An instantiated CUDA graph (captured on the launcher's stream).
pub struct CudaGraphExec(CudaGraph);

// SAFETY: CUDA graph objects are not internally synchronised and must not be used
// from two threads at once. `CudaGraphExec` is not `Sync` and is only used through
// `&self` of its owner (replay takes `&CudaGraphExec` from one thread at a time), so
// moving it to another thread is sound; the driver handles themselves are plain
// pointers valid in any thread of the process (the launcher binds its context).
unsafe impl Send for CudaGraphExec {}

impl CudaLauncher {
    /// Probes the driver, opens device `ordinal`, loads the kernels.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only tries to dlopen libcuda; cudarc panics on first use without it.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::Unsupported(
                "cuda: the NVIDIA driver library (libcuda.so) is not present on this machine"
                    .into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| err(format!("device {ordinal}: {e}")))?;
        // One stream only: cudarc's cross-stream event tracking is not needed, and
        // the raw launches below take device pointers without its guards.
        // SAFETY: all work of this backend goes to `stream`.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| err(format!("new stream: {e}")))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| err(format!("compute capability: {e}")))?;
        let name = ctx.name().unwrap_or_else(|_| "?".into());
        let (module, how) = load_module(&ctx, major, minor)?;
        let sync_each = std::env::var("DSA_CUDA_SYNC")
            .map(|v| v == "1")
            .unwrap_or(false);
        let graphs = std::env::var("DSA_CUDA_GRAPHS")
            .map(|v| v != "0")
            .unwrap_or(true);
        let desc = format!(
            "cuda ({name}, sm_{major}{minor}, kernels: {how}{}{})",
            if sync_each { ", DSA_CUDA_SYNC=1" } else { "" },
            if graphs { "" } else { ", DSA_CUDA_GRAPHS=0" }
        );
        Ok(Self {
            ctx,
            stream,
            module,
            funcs: Mutex::new(HashMap::new()),
            sync_each,
            graphs,
            capturing: AtomicBool::new(false),
            desc,
        })
    }

    /// Fails while capturing: `what` cannot be part of a graph (it would invalidate
    /// the capture with a less helpful error).
    fn not_capturing(&self, what: &str) -> Result<()> {
        if self.capturing.load(Ordering::Acquire) {
            return Err(err(format!("{what} while capturing a graph")));
        }
        Ok(())
    }

    fn function(&self, k: &Kernel) -> Result<CudaFunction> {
        let mut m = self
            .funcs
            .lock()
            .map_err(|_| err("function cache poisoned"))?;
        if let Some(f) = m.get(k.name) {
            return Ok(f.clone());
        }
        let f = self
            .module
            .load_function(k.name)
            .map_err(|e| err(format!("kernel {} not in module: {e}", k.name)))?;
        m.insert(k.name, f.clone());
        Ok(f)
    }
}

#[cfg(dsa_fatbin)]
fn load_module(
    ctx: &Arc<CudaContext>,
    major: i32,
    minor: i32,
) -> Result<(Arc<CudaModule>, String)> {
    let m = ctx
        .load_module(cudarc::nvrtc::Ptx::from_binary(FATBIN.to_vec()))
        .map_err(|e| {
            err(format!(
                "loading the nvcc fatbin on sm_{major}{minor}: {e} (SASS sm_80/86/89/90, PTX \
                 compute_80 from CUDA 13.0: needs driver >= 580)"
            ))
        })?;
    Ok((m, "nvcc fatbin".into()))
}

/// The CUDA toolkit's include folders (`$CUDA_HOME`, `$CUDA_PATH`,
/// `/usr/local/cuda`) that hold `mma.h`: the matrix-unit kernels include it and
/// `cuda_bf16.h`, which NVRTC finds only through an include path.
#[cfg(not(dsa_fatbin))]
fn toolkit_includes() -> Vec<String> {
    let roots = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .chain(std::iter::once("/usr/local/cuda".to_string()));
    roots
        .map(|r| std::path::Path::new(&r).join("include"))
        .filter(|d| d.join("mma.h").is_file())
        .map(|d| d.display().to_string())
        .collect()
}

#[cfg(not(dsa_fatbin))]
fn load_module(
    ctx: &Arc<CudaContext>,
    major: i32,
    minor: i32,
) -> Result<(Arc<CudaModule>, String)> {
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::Unsupported(
            "cuda: this build has no precompiled kernels (no nvcc at build time) and NVRTC \
             (libnvrtc.so) is not present: install the CUDA toolkit's NVRTC or rebuild with \
             nvcc (scripts/install-nvcc.sh)"
                .into(),
        ));
    }
    let arch: Option<&'static str> = match (major, minor) {
        (8, 0) => Some("sm_80"),
        (8, 6) => Some("sm_86"),
        (8, 9) => Some("sm_89"),
        (9, 0) => Some("sm_90"),
        _ => None,
    };
    let opts = cudarc::nvrtc::CompileOptions {
        arch,
        options: vec!["-std=c++17".into()],
        name: Some("kernels_all.cu".into()),
        include_paths: toolkit_includes(),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(KERNEL_SOURCE, opts).map_err(|e| {
        err(format!(
            "NVRTC compilation of the embedded kernels failed (the matrix-unit kernels \
             include mma.h and cuda_bf16.h: set CUDA_HOME to the toolkit): {e:?}"
        ))
    })?;
    let m = ctx
        .load_module(ptx)
        .map_err(|e| err(format!("loading NVRTC PTX: {e}")))?;
    Ok((m, "NVRTC".into()))
}

impl Launcher for CudaLauncher {
    type Buf = CudaSlice<f32>;
    type Labels = CudaSlice<u32>;

    fn name(&self) -> String {
        self.desc.clone()
    }
    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.not_capturing("alloc")?;
        if len == 0 {
            return self
                .stream
                .null()
                .map_err(|e| err(format!("alloc 0 floats: {e}")));
        }
        self.stream
            .alloc_zeros::<f32>(len)
            .map_err(|e| err(format!("alloc {len} floats: {e}")))
    }
    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>> {
        self.not_capturing("upload")?;
        if host.is_empty() {
            return self.alloc(0);
        }
        self.stream
            .clone_htod(host)
            .map_err(|e| err(format!("upload {} floats: {e}", host.len())))
    }
    fn upload_into(&self, dst: &mut CudaSlice<f32>, host: &[f32]) -> Result<()> {
        self.not_capturing("upload")?;
        self.stream
            .memcpy_htod(host, dst)
            .map_err(|e| err(format!("upload {} floats into a buffer: {e}", host.len())))
    }
    fn download(&self, buf: &CudaSlice<f32>) -> Result<Vec<f32>> {
        self.not_capturing("download")?;
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        self.stream
            .clone_dtoh(buf)
            .map_err(|e| err(format!("download {} floats: {e}", buf.len())))
    }
    fn len(&self, buf: &CudaSlice<f32>) -> usize {
        buf.len()
    }
    fn upload_u32(&self, host: &[u32]) -> Result<CudaSlice<u32>> {
        self.not_capturing("upload")?;
        if host.is_empty() {
            return self
                .stream
                .null()
                .map_err(|e| err(format!("alloc 0 u32: {e}")));
        }
        self.stream
            .clone_htod(host)
            .map_err(|e| err(format!("upload {} u32: {e}", host.len())))
    }
    fn len_u32(&self, buf: &CudaSlice<u32>) -> usize {
        buf.len()
    }
    fn ptr(&self, buf: &CudaSlice<f32>) -> u64 {
        buf.device_ptr(&self.stream).0
    }
    fn ptr_mut(&self, buf: &mut CudaSlice<f32>) -> u64 {
        buf.device_ptr_mut(&self.stream).0
    }
    fn ptr_u32(&self, buf: &CudaSlice<u32>) -> u64 {
        buf.device_ptr(&self.stream).0
    }
    fn synchronize(&self) -> Result<()> {
        self.not_capturing("synchronize")?;
        self.stream
            .synchronize()
            .map_err(|e| err(format!("synchronize: {e}")))
    }
    unsafe fn launch(&self, kernel: &Kernel, geo: Geometry, args: &mut [Arg]) -> Result<()> {
        let mut ptrs = [std::ptr::null_mut::<c_void>(); MAX_ARGS];
        if args.len() > MAX_ARGS {
            return Err(err(format!(
                "launch {}: {} arguments (at most {MAX_ARGS})",
                kernel.name,
                args.len()
            )));
        }
        for (p, a) in ptrs.iter_mut().zip(args.iter()) {
            *p = a.ptr;
        }
        let args = &mut ptrs[..args.len()];
        let f = self.function(kernel)?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| err(format!("bind context: {e}")))?;
        // SAFETY: the caller guarantees that args match the kernel's parameters and
        // address live device memory of this context; the stream belongs to it.
        unsafe {
            cudarc::driver::result::launch_kernel(
                f.cu_function(),
                geo.grid,
                geo.block,
                geo.shared_bytes,
                self.stream.cu_stream(),
                args,
            )
        }
        .map_err(|e| {
            err(format!(
                "launch {} grid {:?} block {:?}: {e}",
                kernel.name, geo.grid, geo.block
            ))
        })?;
        if self.sync_each && !self.capturing() {
            self.stream.synchronize().map_err(|e| {
                err(format!(
                    "kernel {} failed (DSA_CUDA_SYNC): {e}",
                    kernel.name
                ))
            })?;
        }
        Ok(())
    }

    type Graph = CudaGraphExec;

    fn graphs_by_default(&self) -> bool {
        self.graphs
    }
    fn begin_capture(&self) -> Result<()> {
        if self.capturing.swap(true, Ordering::AcqRel) {
            return Err(err("begin_capture while already capturing"));
        }
        // Thread-local mode: this thread may not call unsafe APIs (allocation,
        // synchronisation) during the capture; the launcher refuses them first anyway.
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| {
                self.capturing.store(false, Ordering::Release);
                err(format!("begin_capture: {e}"))
            })
    }
    fn capturing(&self) -> bool {
        self.capturing.load(Ordering::Acquire)
    }
    fn end_capture(&self) -> Result<CudaGraphExec> {
        if !self.capturing.swap(false, Ordering::AcqRel) {
            return Err(err("end_capture without begin_capture"));
        }
        match self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags_enum(0))
        {
            Ok(Some(g)) => Ok(CudaGraphExec(g)),
            Ok(None) => Err(err("end_capture: nothing was captured")),
            Err(e) => Err(err(format!("end_capture (capture invalidated?): {e}"))),
        }
    }
    unsafe fn replay(&self, graph: &CudaGraphExec) -> Result<()> {
        self.not_capturing("replay")?;
        graph
            .0
            .launch()
            .map_err(|e| err(format!("graph launch: {e}")))?;
        if self.sync_each {
            self.stream
                .synchronize()
                .map_err(|e| err(format!("graph replay failed (DSA_CUDA_SYNC): {e}")))?;
        }
        Ok(())
    }
}

/// Most kernel parameters of any kernel in `kernels/` (norm_act_pool_fwd has 12).
const MAX_ARGS: usize = 16;
