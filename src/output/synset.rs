//! The synthetic set as a safetensors file: `images` f32 `[K*ipc, C, H, W]`
//! (normalised space, class-major) and `labels` i64 `[K*ipc]`, plus string
//! metadata (dataset, mean, std, method, ipc, seed, iteration, ...). In Python:
//! `safetensors.torch.load_file(path)` gives both as torch tensors.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{Error, Result};

/// A synthetic set as stored on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SynSet {
    /// `N*C*H*W` values, NCHW, normalised.
    pub images: Vec<f32>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// `N` labels.
    pub labels: Vec<u32>,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn st_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::data(path, format!("safetensors: {e}"))
}

/// Serialises named tensors `(name, dtype, shape, bytes)` with metadata.
pub(crate) fn serialize(
    path: &Path,
    tensors: Vec<(&str, Dtype, Vec<usize>, &[u8])>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut views = Vec::new();
    for (name, dt, shape, bytes) in tensors {
        views.push((
            name,
            TensorView::new(dt, shape, bytes).map_err(|e| st_err(path, e))?,
        ));
    }
    // The crate writes its metadata from a `HashMap` (hash order: different bytes on
    // every run). Serialise the tensors alone, then write the header again with the
    // metadata in key order: the same content gives the same bytes.
    let plain = safetensors::serialize(views, None).map_err(|e| st_err(path, e))?;
    with_sorted_metadata(&plain, metadata).map_err(|e| st_err(path, e))
}

/// `bytes` (a safetensors file without metadata) with `metadata` added to its header,
/// every key of the header in sorted order, padded with spaces to a multiple of 8
/// bytes as the format's writers do (the data offsets are relative to the end of the
/// header, so the data bytes are kept as they are).
fn with_sorted_metadata(
    bytes: &[u8],
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let (len_bytes, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or("file shorter than its header length")?;
    let n = usize::try_from(u64::from_le_bytes(*len_bytes)).map_err(|e| e.to_string())?;
    if n > rest.len() {
        return Err(format!("header of {n} bytes in a file of {}", bytes.len()));
    }
    let (header, data) = rest.split_at(n);
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
    if !metadata.is_empty() {
        entries.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).map_err(|e| e.to_string())?,
        );
    }
    let mut header = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    Ok(out)
}

/// Writes the synthetic set atomically. `shape` is `[N, C, H, W]`; `images` must
/// hold `N*C*H*W` finite values and `labels` `N` entries.
pub fn write_synset_safetensors(
    path: &Path,
    images: &[f32],
    shape: [usize; 4],
    labels: &[u32],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let n: usize = shape.iter().product();
    if images.len() != n || labels.len() != shape[0] {
        return Err(Error::Shape(format!(
            "synthetic set {}: {} values and {} labels for shape {shape:?}",
            path.display(),
            images.len(),
            labels.len()
        )));
    }
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "synthetic set {}: value {} at index {i}",
            path.display(),
            images[i]
        )));
    }
    let img = f32_bytes(images);
    let lab: Vec<u8> = labels
        .iter()
        .flat_map(|&l| (l as i64).to_le_bytes())
        .collect();
    let bytes = serialize(
        path,
        vec![
            ("images", Dtype::F32, shape.to_vec(), &img),
            ("labels", Dtype::I64, vec![shape[0]], &lab),
        ],
        metadata,
    )?;
    super::atomic_write(path, &bytes)
}

/// Parsed safetensors content, owning the file bytes.
pub(crate) struct StFile {
    pub bytes: Vec<u8>,
}

impl StFile {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(StFile {
            bytes: std::fs::read(path).map_err(|e| Error::io(path, e))?,
        })
    }

    pub fn parse<'a>(&'a self, path: &Path) -> Result<(SafeTensors<'a>, BTreeMap<String, String>)> {
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| st_err(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).map_err(|e| st_err(path, e))?;
        let md = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok((st, md))
    }
}

/// Reads one tensor of the expected dtype: its shape and raw bytes.
pub(crate) fn tensor<'a>(
    st: &SafeTensors<'a>,
    name: &str,
    dtype: Dtype,
    path: &Path,
) -> Result<(Vec<usize>, &'a [u8])> {
    let t = st
        .tensor(name)
        .map_err(|_| Error::data(path, format!("no tensor '{name}'")))?;
    if t.dtype() != dtype {
        return Err(Error::data(
            path,
            format!(
                "tensor '{name}' has dtype {:?}, expected {dtype:?}",
                t.dtype()
            ),
        ));
    }
    Ok((t.shape().to_vec(), t.data()))
}

/// Reads labels stored as i64 and checks they are non-negative and fit u32.
pub(crate) fn labels_i64(b: &[u8], path: &Path) -> Result<Vec<u32>> {
    b.chunks_exact(8)
        .map(|c| {
            let v = i64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            u32::try_from(v).map_err(|_| Error::data(path, format!("label {v} out of range")))
        })
        .collect()
}

/// Reads a synthetic set written by [`write_synset_safetensors`] (or any
/// safetensors file with `images` f32 4-D and `labels` i64 1-D of matching length).
pub fn read_synset(path: &Path) -> Result<SynSet> {
    let f = StFile::open(path)?;
    let (st, metadata) = f.parse(path)?;
    let (shape, img) = tensor(&st, "images", Dtype::F32, path)?;
    let (lshape, lab) = tensor(&st, "labels", Dtype::I64, path)?;
    if shape.len() != 4 {
        return Err(Error::data(
            path,
            format!("images has shape {shape:?}, expected [N, C, H, W]"),
        ));
    }
    if lshape != [shape[0]] {
        return Err(Error::data(
            path,
            format!("labels has shape {lshape:?}, expected [{}]", shape[0]),
        ));
    }
    Ok(SynSet {
        images: bytes_f32(img),
        shape: [shape[0], shape[1], shape[2], shape[3]],
        labels: labels_i64(lab, path)?,
        metadata,
    })
}
