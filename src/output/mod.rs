//! Outputs people use elsewhere: the synthetic set as safetensors (loads with
//! `safetensors.torch.load_file`), a PNG grid of its images, trained evaluation
//! networks as PyTorch `state_dict`s in safetensors ([`network`]), the JSON report,
//! and checkpoints. Every file is written atomically: a temporary file in the same
//! directory, fsync, then rename, so a failure never leaves a half-written output.

pub mod checkpoint;
pub mod network;
pub mod png_grid;
pub mod report;
pub mod synset;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub use checkpoint::Checkpoint;
pub use network::{read_network_safetensors, write_network_safetensors, SavedNetwork};
pub use png_grid::write_png_grid;
pub use report::{EvalRecord, LossRecord, Report, Summary};
pub use synset::{read_synset, write_synset_safetensors, SynSet};

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    path.with_file_name(format!(".{name}.tmp-{}-{nonce}", std::process::id()))
}

/// Writes a file atomically: `fill` writes the content into a temporary file in
/// the same directory, which is then fsynced and renamed over `path`. If `fill`
/// (or any step) fails, the temporary file is removed and an existing `path` is
/// left untouched.
pub fn atomic_write_with<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io(path, e))?;
        let mut w = BufWriter::new(file);
        fill(&mut w)?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        // Make the rename durable; failure to sync a directory is not fatal.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`atomic_write_with`]).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Creates the output directory if needed and checks that a file can be created
/// in it, so an unwritable `--out` fails before any work is done.
pub fn ensure_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probe = temp_path(&dir.join("write-probe"));
    File::create(&probe).map_err(|e| Error::io(dir, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// File stem used for a run's outputs, as the reference names them:
/// `<method>_<dataset>_<model>_<ipc>ipc` (docs/method.md §4.9).
pub fn run_stem(method: &str, dataset: &str, model: &str, ipc: usize) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!(
        "{}_{}_{}_{ipc}ipc",
        clean(method),
        clean(dataset),
        clean(model)
    )
}
