//! The `emu` backend: the same `kernels/*.cu` sources compiled for the host against
//! `kernels/emu/cuda_emu.h` (by build.rs, always), run on CPU fibers, one block at a
//! time. Slow, for tests: it lets machines without a GPU execute every kernel and
//! compare it with `cpu`. `Emu = Gpu<EmuLauncher>` shares all backend logic with
//! `cuda`; only buffers (host `Vec`s) and the launch differ.

use super::gpu::{Arg, Gpu, Kernel, Launcher};
use super::launch::Geometry;
use crate::error::{Error, Result};
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

extern "C" {
    fn emu_launch(
        invoker: unsafe extern "C" fn(*mut *mut c_void),
        grid: *const u32,
        block: *const u32,
        shared_bytes: u32,
        args: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn emu_params_layout(out: *mut u32, cap: usize) -> usize;
}

/// The emulator backend.
pub type Emu = Gpu<EmuLauncher>;

impl Emu {
    /// A new emulator backend (always available).
    pub fn new() -> Self {
        Gpu::from_launcher(EmuLauncher {
            rec: Mutex::new(None),
        })
    }
}

impl Default for Emu {
    fn default() -> Self {
        Self::new()
    }
}

/// Host-memory buffers and the emulator's `emu_launch`. While capturing, launches are
/// recorded (kernel, geometry, a copy of every argument value) instead of run, and
/// the operations CUDA cannot capture (allocation, copies to or from the host,
/// synchronisation) fail, so the emulator holds the engine to CUDA's capture rules.
pub struct EmuLauncher {
    rec: Mutex<Option<Vec<Recorded>>>,
}

/// One recorded launch.
struct Recorded {
    name: &'static str,
    invoke: unsafe extern "C" fn(*mut *mut c_void),
    geo: Geometry,
    /// Each argument value, copied into 8-byte aligned words.
    args: Vec<Box<[u64]>>,
}

/// The emulator's graph: the recorded launches, re-executed in order by a replay.
pub struct EmuGraph {
    launches: Vec<Recorded>,
}

impl EmuGraph {
    /// Number of recorded launches.
    pub fn len(&self) -> usize {
        self.launches.len()
    }
    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.launches.is_empty()
    }
}

fn emu_err(msg: String) -> Error {
    Error::Backend {
        backend: "emu".into(),
        msg,
    }
}

impl EmuLauncher {
    fn rec(&self) -> Result<std::sync::MutexGuard<'_, Option<Vec<Recorded>>>> {
        self.rec
            .lock()
            .map_err(|_| emu_err("capture state poisoned".into()))
    }
    /// Fails while capturing: `what` cannot be part of a graph.
    fn not_capturing(&self, what: &str) -> Result<()> {
        if self.capturing() {
            return Err(emu_err(format!(
                "{what} while capturing a graph (CUDA cannot capture it)"
            )));
        }
        Ok(())
    }
    /// Runs one launch now.
    ///
    /// # Safety
    /// As [`Launcher::launch`], with `args` the cuLaunchKernel-style pointer array.
    unsafe fn run(
        name: &str,
        invoke: unsafe extern "C" fn(*mut *mut c_void),
        geo: Geometry,
        args: &mut [*mut c_void],
    ) -> Result<()> {
        let grid = [geo.grid.0, geo.grid.1, geo.grid.2];
        let block = [geo.block.0, geo.block.1, geo.block.2];
        let mut err = [0 as c_char; 256];
        // SAFETY: the caller guarantees args match the kernel's signature and address
        // valid host memory; emu_launch runs synchronously and writes at most
        // err.len() bytes (NUL-terminated) into err.
        let rc = unsafe {
            emu_launch(
                invoke,
                grid.as_ptr(),
                block.as_ptr(),
                geo.shared_bytes,
                args.as_mut_ptr(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc != 0 {
            // SAFETY: emu_launch NUL-terminates err (snprintf).
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(emu_err(format!("kernel {name}: {msg}")));
        }
        Ok(())
    }
}

impl Launcher for EmuLauncher {
    type Buf = Vec<f32>;
    type Labels = Vec<u32>;
    type Graph = EmuGraph;

    fn name(&self) -> String {
        "emu (CUDA kernels on the host, one block at a time)".into()
    }
    #[track_caller]
    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        let caller = std::panic::Location::caller();
        self.not_capturing("alloc")?;
        crate::backend::host_zeroed("emu", len, 0.0, caller)
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        self.not_capturing("upload")?;
        Ok(host.to_vec())
    }
    fn upload_into(&self, dst: &mut Vec<f32>, host: &[f32]) -> Result<()> {
        self.not_capturing("upload")?;
        dst.copy_from_slice(host);
        Ok(())
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        self.not_capturing("download")?;
        Ok(buf.clone())
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn upload_u32(&self, host: &[u32]) -> Result<Vec<u32>> {
        self.not_capturing("upload")?;
        Ok(host.to_vec())
    }
    fn len_u32(&self, buf: &Vec<u32>) -> usize {
        buf.len()
    }
    fn ptr(&self, buf: &Vec<f32>) -> u64 {
        buf.as_ptr() as u64
    }
    fn ptr_mut(&self, buf: &mut Vec<f32>) -> u64 {
        buf.as_mut_ptr() as u64
    }
    fn ptr_u32(&self, buf: &Vec<u32>) -> u64 {
        buf.as_ptr() as u64
    }
    fn synchronize(&self) -> Result<()> {
        self.not_capturing("synchronize")
    }
    unsafe fn launch(&self, kernel: &Kernel, geo: Geometry, args: &mut [Arg]) -> Result<()> {
        let mut rec = self.rec()?;
        if let Some(list) = rec.as_mut() {
            let args = args
                .iter()
                .map(|a| {
                    let mut words = vec![0u64; a.size.div_ceil(8)].into_boxed_slice();
                    // SAFETY: the caller guarantees a.ptr points to a.size readable
                    // bytes; words holds at least a.size bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            a.ptr as *const u8,
                            words.as_mut_ptr() as *mut u8,
                            a.size,
                        )
                    };
                    words
                })
                .collect();
            list.push(Recorded {
                name: kernel.name,
                invoke: kernel.emu,
                geo,
                args,
            });
            return Ok(());
        }
        drop(rec);
        let mut ptrs: Vec<*mut c_void> = args.iter().map(|a| a.ptr).collect();
        // SAFETY: forwarded from the caller.
        unsafe { Self::run(kernel.name, kernel.emu, geo, &mut ptrs) }
    }

    fn graphs_by_default(&self) -> bool {
        false
    }
    fn begin_capture(&self) -> Result<()> {
        let mut rec = self.rec()?;
        if rec.is_some() {
            return Err(emu_err("begin_capture while already capturing".into()));
        }
        *rec = Some(Vec::new());
        Ok(())
    }
    fn capturing(&self) -> bool {
        self.rec.lock().map(|r| r.is_some()).unwrap_or(false)
    }
    fn end_capture(&self) -> Result<EmuGraph> {
        let launches = self
            .rec()?
            .take()
            .ok_or_else(|| emu_err("end_capture without begin_capture".into()))?;
        Ok(EmuGraph { launches })
    }
    unsafe fn replay(&self, graph: &EmuGraph) -> Result<()> {
        self.not_capturing("replay")?;
        for r in &graph.launches {
            let mut ptrs: Vec<*mut c_void> =
                r.args.iter().map(|w| w.as_ptr() as *mut c_void).collect();
            // SAFETY: the recorded values are the arguments of a launch whose
            // contract the recording caller upheld; the caller of replay guarantees
            // the buffers they address are still alive. The kernels only read them.
            unsafe { Self::run(r.name, r.invoke, r.geo, &mut ptrs)? };
        }
        Ok(())
    }
}

/// sizeof/offsetof of `kernels/params.cuh`'s structs as the C++ compiler lays them
/// out (see the layout tests in `backend::gpu`).
pub fn params_layout_from_header() -> Vec<u32> {
    let mut v = vec![0u32; 64];
    // SAFETY: emu_params_layout writes at most `cap` values into `out`.
    let n = unsafe { emu_params_layout(v.as_mut_ptr(), v.len()) };
    v.truncate(n.min(64));
    v
}
