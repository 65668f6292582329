//! Checkpoints of a condensation run, as a safetensors file: tensors `images` f32
//! `[N, C, H, W]`, `labels` i64 `[N]`, `momentum` f32 (the image optimiser's
//! buffer, same shape as `images`, or empty before the first step) and `rng_state`
//! u8; metadata `format` = `dsa-condense-checkpoint`, `version`, `experiment`,
//! `iteration`, `config` (JSON), any extra entries, and `sha256`: a digest of every
//! other entry and tensor, checked on load, so a damaged or hand-edited checkpoint
//! (another iteration, experiment or set) is refused. Written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::Dtype;

use super::synset::{bytes_f32, f32_bytes, labels_i64, serialize, tensor, StFile};
use crate::{Error, Result};

/// Value of the `format` metadata entry.
pub const FORMAT: &str = "dsa-condense-checkpoint";
/// Version of the checkpoint layout.
pub const VERSION: u32 = 2;

/// The state needed to resume a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Experiment index.
    pub experiment: usize,
    /// Next iteration to run.
    pub iteration: usize,
    /// Synthetic images, NCHW.
    pub images: Vec<f32>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Synthetic labels.
    pub labels: Vec<u32>,
    /// Image optimiser momentum (empty, or as many values as `images`).
    pub momentum: Vec<f32>,
    /// Serialised RNG state (see [`chacha_state`]).
    pub rng_state: Vec<u8>,
    /// The run's configuration as JSON (checked on resume).
    pub config_json: String,
    /// Further string entries (e.g. accuracies of finished experiments as JSON).
    pub extra: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Writes the checkpoint atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let n: usize = self.shape.iter().product();
        if self.images.len() != n
            || self.labels.len() != self.shape[0]
            || !(self.momentum.is_empty() || self.momentum.len() == n)
        {
            return Err(Error::Shape(format!(
                "checkpoint {}: {} images, {} labels, {} momentum values for shape {:?}",
                path.display(),
                self.images.len(),
                self.labels.len(),
                self.momentum.len(),
                self.shape
            )));
        }
        let mut meta = self.extra.clone();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("version".into(), VERSION.to_string());
        meta.insert("experiment".into(), self.experiment.to_string());
        meta.insert("iteration".into(), self.iteration.to_string());
        meta.insert("config".into(), self.config_json.clone());
        let img = f32_bytes(&self.images);
        let mom = f32_bytes(&self.momentum);
        let lab: Vec<u8> = self
            .labels
            .iter()
            .flat_map(|&l| (l as i64).to_le_bytes())
            .collect();
        let mom_shape = if self.momentum.is_empty() {
            vec![0]
        } else {
            self.shape.to_vec()
        };
        let tensors = vec![
            ("images", Dtype::F32, self.shape.to_vec(), &img[..]),
            ("labels", Dtype::I64, vec![self.shape[0]], &lab[..]),
            ("momentum", Dtype::F32, mom_shape, &mom[..]),
            (
                "rng_state",
                Dtype::U8,
                vec![self.rng_state.len()],
                &self.rng_state[..],
            ),
        ];
        let sum = digest(&meta, &tensors);
        meta.insert(DIGEST_KEY.into(), sum);
        let bytes = serialize(path, tensors, &meta)?;
        super::atomic_write(path, &bytes)
    }

    /// Loads a checkpoint written by [`Checkpoint::save`], checking its format.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let f = StFile::open(path)?;
        let (st, mut meta) = f.parse(path)?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(Error::data(
                path,
                "not a dsa-condense checkpoint (format metadata missing)",
            ));
        }
        let version = meta.remove("version").unwrap_or_default();
        if version != VERSION.to_string() {
            return Err(Error::data(
                path,
                format!("checkpoint version '{version}', this build reads version {VERSION}"),
            ));
        }
        let stored = meta.remove(DIGEST_KEY).unwrap_or_default();
        let (shape, img) = tensor(&st, "images", Dtype::F32, path)?;
        let (lshape, lab) = tensor(&st, "labels", Dtype::I64, path)?;
        let (mshape, mom) = tensor(&st, "momentum", Dtype::F32, path)?;
        let (rshape, rng) = tensor(&st, "rng_state", Dtype::U8, path)?;
        let all = [
            ("images", Dtype::F32, shape.clone(), img),
            ("labels", Dtype::I64, lshape.clone(), lab),
            ("momentum", Dtype::F32, mshape.clone(), mom),
            ("rng_state", Dtype::U8, rshape, rng),
        ];
        let mut signed = meta.clone();
        signed.insert("version".into(), version.clone());
        if digest(&signed, &all) != stored {
            return Err(Error::data(
                path,
                "checkpoint content does not match its digest (damaged or edited); \
                 resume from an intact checkpoint or start the run again",
            ));
        }
        meta.remove("format");
        let mut num = |k: &str| -> Result<usize> {
            meta.remove(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::data(
                    path,
                    format!("checkpoint metadata '{k}' missing or invalid"),
                )
            })
        };
        let experiment = num("experiment")?;
        let iteration = num("iteration")?;
        let config_json = meta.remove("config").unwrap_or_default();
        if shape.len() != 4 {
            return Err(Error::data(
                path,
                format!("images has shape {shape:?}, expected 4-D"),
            ));
        }
        if lshape != [shape[0]] {
            return Err(Error::data(path, format!("labels has shape {lshape:?}")));
        }
        if !(mshape == [0] || mshape == shape) {
            return Err(Error::data(
                path,
                format!("momentum has shape {mshape:?}, images {shape:?}"),
            ));
        }
        let images = bytes_f32(img);
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(Error::data(
                path,
                format!("checkpoint images hold {} at index {i}", images[i]),
            ));
        }
        Ok(Checkpoint {
            experiment,
            iteration,
            images,
            shape: [shape[0], shape[1], shape[2], shape[3]],
            labels: labels_i64(lab, path)?,
            momentum: bytes_f32(mom),
            rng_state: rng.to_vec(),
            config_json,
            extra: meta,
        })
    }
}

/// Metadata key of the checkpoint's digest.
const DIGEST_KEY: &str = "sha256";

/// SHA-256 (hex) of metadata entries (in key order) and tensors (name, dtype,
/// shape, bytes), each field length-prefixed.
fn digest(meta: &BTreeMap<String, String>, tensors: &[(&str, Dtype, Vec<usize>, &[u8])]) -> String {
    let mut h = crate::digest::Fields::default();
    for (k, v) in meta {
        h.put(k.as_bytes());
        h.put(v.as_bytes());
    }
    for (name, dt, shape, bytes) in tensors {
        h.put(name.as_bytes());
        h.put(format!("{dt:?}").as_bytes());
        for d in shape {
            h.put(&(*d as u64).to_le_bytes());
        }
        h.put(bytes);
    }
    h.hex()
}

/// Serialises a ChaCha RNG's position: seed (32 bytes), stream (u64 LE) and word
/// position (u128 LE), 56 bytes. Restore with [`restore_chacha`].
pub fn chacha_state(rng: &rand_chacha::ChaCha20Rng) -> Vec<u8> {
    let mut v = rng.get_seed().to_vec();
    v.extend(rng.get_stream().to_le_bytes());
    v.extend(rng.get_word_pos().to_le_bytes());
    v
}

/// Rebuilds a ChaCha RNG from [`chacha_state`] bytes; `path` names the checkpoint
/// in the error for a wrong length.
pub fn restore_chacha(bytes: &[u8], path: &Path) -> Result<rand_chacha::ChaCha20Rng> {
    use rand::SeedableRng;
    if bytes.len() != 56 {
        return Err(Error::data(
            path,
            format!("RNG state has {} bytes, expected 56", bytes.len()),
        ));
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[..32]);
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    let mut s = [0u8; 8];
    s.copy_from_slice(&bytes[32..40]);
    rng.set_stream(u64::from_le_bytes(s));
    let mut w = [0u8; 16];
    w.copy_from_slice(&bytes[40..56]);
    rng.set_word_pos(u128::from_le_bytes(w));
    Ok(rng)
}
