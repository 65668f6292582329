//! The `emu` backend: the same `kernels/*.cu` sources compiled for the host against
//! `kernels/emu/cuda_emu.h` (by build.rs, always), run on CPU fibers, one block at a
//! time. Slow, for tests: it lets machines without a GPU execute every kernel and
//! compare it with `cpu`. `Emu = Gpu<EmuLauncher>` shares all backend logic with
//! `cuda`; only buffers (host `Vec`s) and the launch differ.

use super::gpu::{Gpu, Kernel, Launcher};
use super::launch::Geometry;
use crate::error::{Error, Result};
use std::ffi::{c_char, c_void, CStr};

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
        Gpu::from_launcher(EmuLauncher { _p: () })
    }
}

impl Default for Emu {
    fn default() -> Self {
        Self::new()
    }
}

/// Host-memory buffers and the emulator's `emu_launch`.
pub struct EmuLauncher {
    _p: (),
}

impl Launcher for EmuLauncher {
    type Buf = Vec<f32>;
    type Labels = Vec<u32>;

    fn name(&self) -> String {
        "emu (CUDA kernels on the host, one block at a time)".into()
    }
    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn upload_u32(&self, host: &[u32]) -> Result<Vec<u32>> {
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
        Ok(())
    }
    unsafe fn launch(&self, kernel: &Kernel, geo: Geometry, args: &mut [*mut c_void]) -> Result<()> {
        let grid = [geo.grid.0, geo.grid.1, geo.grid.2];
        let block = [geo.block.0, geo.block.1, geo.block.2];
        let mut err = [0 as c_char; 256];
        // SAFETY: the caller guarantees args match the kernel's signature and address
        // valid host memory; emu_launch runs synchronously and writes at most
        // err.len() bytes (NUL-terminated) into err.
        let rc = unsafe {
            emu_launch(
                kernel.emu,
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
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            return Err(Error::Backend {
                backend: "emu".into(),
                msg: format!("kernel {}: {msg}", kernel.name),
            });
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
