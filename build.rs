//! Build script: compiles `kernels/*.cu` twice.
//!
//! 1. Always: as C++17 with the host compiler against `kernels/emu/cuda_emu.h`
//!    (force-included) into the static library `dsa_kernels_emu`: the `emu` backend.
//! 2. If nvcc is found (`$NVCC`, `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc`, `PATH`):
//!    into ONE fatbin (SASS sm_80/86/89/90 + PTX compute_80) embedded by the `cuda`
//!    backend, with nvcc's `-Xptxas -v` report saved as `ptxas.txt`
//!    (cfg `dsa_fatbin`). Without nvcc the amalgamated source `kernels_all.cu` is
//!    compiled at run time with NVRTC instead. `DSA_NO_NVCC=1` skips nvcc;
//!    `DSA_CUDA_ARCHS=80,90` narrows the SASS list (development only).
//!
//! Writes only to OUT_DIR. Never probes nvidia-smi.
use std::collections::HashSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let kdir = PathBuf::from("kernels");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(dsa_fatbin)");
    for v in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "PATH",
        "DSA_NO_NVCC",
        "DSA_CUDA_ARCHS",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }

    let mut cu: Vec<PathBuf> = list(&kdir, "cu");
    cu.sort();
    for f in cu
        .iter()
        .chain(list(&kdir, "cuh").iter())
        .chain(list(&kdir.join("emu"), "h").iter())
    {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!("cargo:rerun-if-changed=kernels/emu/cuda_emu.cpp");

    // ---- 1. emulator build (host C++) ------------------------------------------
    // `-x c++`: the host compiler reads the .cu files (and the runtime) as C++.
    let mut k = cc::Build::new();
    k.cpp(true)
        .std("c++17")
        .opt_level(2)
        .include(&kdir)
        .flag("-pthread")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unused-function")
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag("-include")
        .flag("kernels/emu/cuda_emu.h")
        .flag("-x")
        .flag("c++")
        .file("kernels/emu/cuda_emu.cpp");
    for f in &cu {
        k.file(f);
    }
    k.compile("dsa_kernels_emu");

    // ---- amalgamated source (NVRTC, and nvcc's single translation unit) --------
    let mut all = String::new();
    let mut seen = HashSet::new();
    for f in &cu {
        amalgamate(f, &kdir, &mut seen, &mut all);
    }
    let all_path = out.join("kernels_all.cu");
    fs::write(&all_path, &all).expect("write kernels_all.cu");

    // ---- 2. nvcc fatbin ----------------------------------------------------------
    let fatbin = out.join("kernels.fatbin");
    let report = out.join("ptxas.txt");
    let nvcc = if env::var("DSA_NO_NVCC").map(|v| v == "1").unwrap_or(false) {
        None
    } else {
        find_nvcc()
    };
    match nvcc {
        Some(nvcc) => {
            let archs = env::var("DSA_CUDA_ARCHS").unwrap_or_else(|_| "80,86,89,90".into());
            let mut cmd = Command::new(&nvcc);
            cmd.arg("-fatbin").arg("-o").arg(&fatbin);
            for a in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                cmd.arg(format!("-gencode=arch=compute_{a},code=sm_{a}"));
            }
            // PTX from this (13.0) toolkit for newer GPUs: loads on driver >= 580.
            cmd.arg("-gencode=arch=compute_80,code=compute_80");
            cmd.args(["-std=c++17", "-O3", "-lineinfo", "-Xptxas", "-v", "-I"])
                .arg(&kdir);
            cmd.arg(&all_path);
            let shown = format!("{cmd:?}");
            let res = cmd.output();
            match res {
                Ok(o) if o.status.success() => {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    fs::write(&report, format!("# {shown}\n{text}")).expect("write ptxas.txt");
                    if env::var("DSA_STRICT_KERNELS")
                        .map(|v| v == "1")
                        .unwrap_or(false)
                    {
                        check_strict(&text, &report);
                    }
                    println!("cargo:rustc-cfg=dsa_fatbin");
                }
                Ok(o) => panic!(
                    "nvcc failed ({}):\n{shown}\n--- stdout ---\n{}\n--- stderr ---\n{}\n\
                     (set DSA_NO_NVCC=1 to build without nvcc; the cuda backend then uses NVRTC)",
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => panic!("cannot run nvcc: {shown}: {e}"),
            }
        }
        None => {
            fs::write(&fatbin, b"").expect("write kernels.fatbin");
            fs::write(
                &report,
                "no nvcc at build time: kernels are compiled at run time with NVRTC\n",
            )
            .expect("write ptxas.txt");
            println!(
                "cargo:warning=nvcc not found ($NVCC, $CUDA_HOME, $CUDA_PATH, PATH): the cuda \
                 backend will compile kernels with NVRTC at run time"
            );
        }
    }
}

fn list(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().map(|e| e == ext).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Appends `file` to `out`, inlining each local `#include "x"` once (from `kdir`),
/// with `#line` markers so compiler messages name the original file and line.
fn amalgamate(file: &Path, kdir: &Path, seen: &mut HashSet<PathBuf>, out: &mut String) {
    if !seen.insert(file.to_path_buf()) {
        return;
    }
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    out.push_str(&format!("#line 1 \"{}\"\n", file.display()));
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("#include \"") {
            let name = rest.trim_end_matches('"');
            amalgamate(&kdir.join(name), kdir, seen, out);
            out.push_str(&format!("#line {} \"{}\"\n", i + 2, file.display()));
        } else if t.starts_with("#pragma once") {
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
}

fn find_nvcc() -> Option<PathBuf> {
    if let Ok(p) = env::var("NVCC") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        println!(
            "cargo:warning=$NVCC={} is not a file; looking elsewhere",
            p.display()
        );
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(h) = env::var(var) {
            let p = Path::new(&h).join("bin").join("nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    env::var_os("PATH").and_then(|path| {
        env::split_paths(&path)
            .map(|d| d.join("nvcc"))
            .find(|p| p.is_file())
    })
}

/// `DSA_STRICT_KERNELS=1` (CI): any nvcc/ptxas warning, or any kernel that spills
/// registers, fails the build, naming the offending lines.
fn check_strict(text: &str, report: &Path) {
    let mut bad = Vec::new();
    for line in text.lines() {
        let l = line.to_ascii_lowercase();
        if l.contains("warning") {
            bad.push(line.to_string());
        }
        // ptxas: "N bytes stack frame, S bytes spill stores, L bytes spill loads"
        if let Some(i) = l.find("bytes spill stores") {
            let stores: u64 = l[..i]
                .rsplit(|c: char| !c.is_ascii_digit())
                .find(|t| !t.is_empty())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let loads: u64 = l[i..]
                .split(|c: char| !c.is_ascii_digit())
                .find(|t| !t.is_empty())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            if stores > 0 || loads > 0 {
                bad.push(line.to_string());
            }
        }
    }
    if !bad.is_empty() {
        panic!(
            "DSA_STRICT_KERNELS=1: nvcc reported warnings or register spills (full report: {}):\n{}",
            report.display(),
            bad.join("\n")
        );
    }
}
