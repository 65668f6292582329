//! The `cuda` backend: cudarc (dynamic loading) + the hand-written kernels of
//! `kernels/`. `Cuda = Gpu<CudaLauncher>`: all validation and launch code is shared
//! with `emu` (see [`super::gpu`]); this file owns the context, the stream, the
//! module and the raw `cuLaunchKernel`.
//!
//! Kernels come from the fatbin build.rs made with nvcc (SASS sm_80/86/89/90 + PTX
//! compute_80), or, when the crate was built without nvcc, from the embedded source
//! compiled at run time with NVRTC. `DSA_CUDA_SYNC=1` synchronises after every launch
//! so an asynchronous fault is blamed on the right kernel.

use super::gpu::{Gpu, Kernel, Launcher};
use super::launch::Geometry;
use crate::error::{Error, Result};
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
};
use std::collections::HashMap;
use std::ffi::c_void;
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
    desc: String,
}

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
        let desc = format!(
            "cuda ({name}, sm_{major}{minor}, kernels: {how}{})",
            if sync_each { ", DSA_CUDA_SYNC=1" } else { "" }
        );
        Ok(Self {
            ctx,
            stream,
            module,
            funcs: Mutex::new(HashMap::new()),
            sync_each,
            desc,
        })
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
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(KERNEL_SOURCE, opts).map_err(|e| {
        err(format!(
            "NVRTC compilation of the embedded kernels failed: {e:?}"
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
        if host.is_empty() {
            return self.alloc(0);
        }
        self.stream
            .clone_htod(host)
            .map_err(|e| err(format!("upload {} floats: {e}", host.len())))
    }
    fn download(&self, buf: &CudaSlice<f32>) -> Result<Vec<f32>> {
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
        self.stream
            .synchronize()
            .map_err(|e| err(format!("synchronize: {e}")))
    }
    unsafe fn launch(
        &self,
        kernel: &Kernel,
        geo: Geometry,
        args: &mut [*mut c_void],
    ) -> Result<()> {
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
        if self.sync_each {
            self.stream.synchronize().map_err(|e| {
                err(format!(
                    "kernel {} failed (DSA_CUDA_SYNC): {e}",
                    kernel.name
                ))
            })?;
        }
        Ok(())
    }
}
