//! A trained network as a PyTorch `state_dict` in a safetensors file, loadable by
//! the reference implementation's architecture (`utils.get_network` of DC/DSA,
//! mirrored by `scripts/pytorch_arch_step.py`) with
//! `net.load_state_dict(safetensors.torch.load_file(path))` (strict).
//!
//! Tensors, under the reference's `state_dict` keys ([`crate::model::ParamLayout`]
//! names every parameter as the reference's modules do):
//! - every parameter, f32, in its PyTorch shape (`features.0.weight` `[O, C, K, K]`,
//!   `classifier.weight` `[K, F]`, ...);
//! - per BatchNorm layer `<name>.running_mean` and `<name>.running_var` (f32 `[C]`)
//!   and `<name>.num_batches_tracked` (i64, 0-dimensional, as PyTorch keeps it): the
//!   number of train-mode forward passes the network made
//!   ([`Network::num_batches_tracked`]), the count PyTorch would hold after the
//!   same training.
//!
//! Metadata (strings) written by [`write_network_safetensors`]: `format`
//! ([`FORMAT`]), `model` (the architecture's factory name), `channel`, `im_size`
//! (`[H, W]`), `num_classes` (the arguments of the reference's `get_network`), plus
//! whatever the caller adds (the `evaluate` command adds the dataset, its
//! normalisation, the test accuracy, the seed, ...).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::Dtype;

use super::synset::{bytes_f32, f32_bytes, serialize, StFile};
use crate::backend::{Backend, Scalar};
use crate::engine::Network;
use crate::model::{Model, ParamLayout};
use crate::{Error, Result};

/// Value of the `format` metadata entry.
pub const FORMAT: &str = "pytorch-state-dict";

/// Metadata keys [`write_network_safetensors`] writes itself (a caller's metadata
/// may not use them).
pub const RESERVED_KEYS: [&str; 5] = ["format", "model", "channel", "im_size", "num_classes"];

/// Suffixes of the three `state_dict` buffers of a BatchNorm layer.
const RUNNING_MEAN: &str = ".running_mean";
const RUNNING_VAR: &str = ".running_var";
const NUM_BATCHES: &str = ".num_batches_tracked";

/// The architecture of `model` as the reference builds it, or an error: only a
/// reference-sized architecture ([`Model::from_name`]) has the reference's shapes.
fn reference_model(model: &Model, path: &Path) -> Result<(Model, ParamLayout)> {
    let reference = Model::from_name(
        &model.name,
        model.in_channels,
        model.image_h,
        model.image_w,
        model.num_classes,
    )
    .map_err(|e| Error::data(path, format!("not a reference architecture: {e}")))?;
    let layout = reference.layout()?;
    Ok((reference, layout))
}

/// Writes `net` (its current parameters and BatchNorm running state) atomically to
/// `path` as a PyTorch `state_dict` in safetensors format (see the module
/// documentation for the tensors and metadata). `metadata` is added to the header;
/// it may not use the keys in [`RESERVED_KEYS`]. The network must be a
/// reference-sized architecture ([`Model::from_name`]; a miniature is refused).
///
/// ```
/// use std::collections::BTreeMap;
/// use dsa_condense::backend::{cpu::Cpu, Backend};
/// use dsa_condense::engine::Network;
/// use dsa_condense::model::Model;
/// use dsa_condense::output::{read_network_safetensors, write_network_safetensors};
/// use rand::SeedableRng;
///
/// # fn main() -> dsa_condense::Result<()> {
/// let be = Cpu::<f32>::new(1)?;
/// let model = Model::from_name("LeNet", 1, 28, 28, 10)?;
/// let net = Network::new(&be, model, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))?;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("lenet.safetensors");
/// let meta = BTreeMap::from([("note".to_string(), "untrained".to_string())]);
/// write_network_safetensors(&path, &net, &meta)?;
/// // In Python (with scripts/pytorch_arch_step.py on the path):
/// //   net = pytorch_arch_step.build("LeNet", 1, 10, (28, 28))
/// //   net.load_state_dict(safetensors.torch.load_file("lenet.safetensors"))
/// let saved = read_network_safetensors(&path)?;
/// assert_eq!(saved.model.name, "LeNet");
/// assert_eq!(saved.params, be.download(net.params())?);
/// assert_eq!(saved.metadata["note"], "untrained");
/// # Ok(())
/// # }
/// ```
pub fn write_network_safetensors<B: Backend>(
    path: &Path,
    net: &Network<'_, B>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    if let Some(k) = RESERVED_KEYS.iter().find(|k| metadata.contains_key(**k)) {
        return Err(Error::data(
            path,
            format!("metadata key '{k}' is written by the network writer itself"),
        ));
    }
    let model = net.model();
    let (_, layout) = reference_model(model, path)?;
    if &layout != net.layout() {
        return Err(Error::data(
            path,
            format!(
                "{} does not have the reference's layout (a miniature?)",
                model.name
            ),
        ));
    }
    let be = net.backend();
    let params: Vec<f32> = be
        .download(net.params())?
        .into_iter()
        .map(Scalar::to_f32)
        .collect();
    let running: Vec<f32> = net
        .running_host()?
        .into_iter()
        .map(Scalar::to_f32)
        .collect();
    if let Some(i) = params.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "network {}: parameter {i} is {}",
            path.display(),
            params[i]
        )));
    }
    let count = i64::try_from(net.num_batches_tracked()).unwrap_or(i64::MAX);

    // Names and byte buffers first (the serialiser borrows them).
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = layout
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                Dtype::F32,
                t.shape.clone(),
                f32_bytes(&params[t.seg.range()]),
            )
        })
        .collect();
    for (name, seg) in layout.running_names.iter().zip(&layout.running) {
        let r = &running[seg.range()];
        let c = r.len() / 2;
        entries.push((
            format!("{name}{RUNNING_MEAN}"),
            Dtype::F32,
            vec![c],
            f32_bytes(&r[..c]),
        ));
        entries.push((
            format!("{name}{RUNNING_VAR}"),
            Dtype::F32,
            vec![c],
            f32_bytes(&r[c..]),
        ));
        entries.push((
            format!("{name}{NUM_BATCHES}"),
            Dtype::I64,
            vec![],
            count.to_le_bytes().to_vec(),
        ));
    }
    let mut meta = metadata.clone();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("model".into(), model.name.clone());
    meta.insert("channel".into(), model.in_channels.to_string());
    meta.insert(
        "im_size".into(),
        format!("[{}, {}]", model.image_h, model.image_w),
    );
    meta.insert("num_classes".into(), model.num_classes.to_string());
    let views = entries
        .iter()
        .map(|(n, dt, shape, bytes)| (n.as_str(), *dt, shape.clone(), bytes.as_slice()))
        .collect();
    let bytes = serialize(path, views, &meta)?;
    super::atomic_write(path, &bytes)
}

/// A network read back by [`read_network_safetensors`].
#[derive(Debug, Clone, PartialEq)]
pub struct SavedNetwork {
    /// The architecture (from the `model`, `channel`, `im_size` and `num_classes`
    /// metadata).
    pub model: Model,
    /// Flat parameters in the model's layout ([`Model::layout`]).
    pub params: Vec<f32>,
    /// Flat BatchNorm running state in the layout's order (empty without BatchNorm).
    pub running: Vec<f32>,
    /// The BatchNorm layers' `num_batches_tracked` (the largest, should they
    /// differ; 0 without BatchNorm).
    pub num_batches_tracked: u64,
    /// Every metadata entry.
    pub metadata: BTreeMap<String, String>,
}

impl SavedNetwork {
    /// The network on backend `be`, ready to run (eval mode uses the saved running
    /// statistics).
    pub fn network<'b, B: Backend>(&self, be: &'b B) -> Result<Network<'b, B>> {
        let p: Vec<B::E> = self.params.iter().map(|&v| B::E::from_f32(v)).collect();
        let mut net = Network::from_params(be, self.model.clone(), &p)?;
        let r: Vec<B::E> = self.running.iter().map(|&v| B::E::from_f32(v)).collect();
        net.set_running(&r)?;
        net.set_num_batches_tracked(self.num_batches_tracked);
        Ok(net)
    }
}

fn meta_usize(meta: &BTreeMap<String, String>, key: &str, path: &Path) -> Result<usize> {
    let v = meta
        .get(key)
        .ok_or_else(|| Error::data(path, format!("no '{key}' metadata entry")))?;
    v.trim()
        .parse()
        .map_err(|_| Error::data(path, format!("metadata '{key}' = '{v}' is not a count")))
}

/// Reads a network written by [`write_network_safetensors`] (or any safetensors
/// `state_dict` of a reference architecture with the same metadata entries). As
/// PyTorch's strict loading: every tensor of the architecture must be there with its
/// shape, and no other; errors name the file and the tensor.
pub fn read_network_safetensors(path: &Path) -> Result<SavedNetwork> {
    let f = StFile::open(path)?;
    let (st, metadata) = f.parse(path)?;
    let name = metadata
        .get("model")
        .ok_or_else(|| Error::data(path, "no 'model' metadata entry"))?;
    let channel = meta_usize(&metadata, "channel", path)?;
    let classes = meta_usize(&metadata, "num_classes", path)?;
    let im = metadata
        .get("im_size")
        .ok_or_else(|| Error::data(path, "no 'im_size' metadata entry"))?;
    let hw: Vec<usize> = im
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::data(path, format!("metadata 'im_size' = '{im}' is not [H, W]")))?;
    let [h, w] = hw[..] else {
        return Err(Error::data(
            path,
            format!("metadata 'im_size' = '{im}' is not [H, W]"),
        ));
    };
    let model = Model::from_name(name, channel, h, w, classes)
        .map_err(|e| Error::data(path, format!("metadata describe no architecture: {e}")))?;
    let layout = model.layout()?;

    let mut expected: BTreeMap<String, (Dtype, Vec<usize>)> = BTreeMap::new();
    for t in &layout.tensors {
        expected.insert(t.name.clone(), (Dtype::F32, t.shape.clone()));
    }
    for (n, seg) in layout.running_names.iter().zip(&layout.running) {
        let c = seg.len as usize / 2;
        expected.insert(format!("{n}{RUNNING_MEAN}"), (Dtype::F32, vec![c]));
        expected.insert(format!("{n}{RUNNING_VAR}"), (Dtype::F32, vec![c]));
        expected.insert(format!("{n}{NUM_BATCHES}"), (Dtype::I64, vec![]));
    }
    let mut present: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    present.sort();
    if let Some(extra) = present.iter().find(|n| !expected.contains_key(*n)) {
        return Err(Error::data(
            path,
            format!("unexpected tensor '{extra}' for {name}"),
        ));
    }
    let get = |key: &str| -> Result<&[u8]> {
        let (dt, shape) = &expected[key];
        let t = st
            .tensor(key)
            .map_err(|_| Error::data(path, format!("missing tensor '{key}' of {name}")))?;
        if t.dtype() != *dt || t.shape() != shape.as_slice() {
            return Err(Error::data(
                path,
                format!(
                    "tensor '{key}' is {:?} {:?}, {name} has {dt:?} {shape:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(t.data())
    };
    let mut params = vec![0.0f32; layout.total];
    for t in &layout.tensors {
        params[t.seg.range()].copy_from_slice(&bytes_f32(get(&t.name)?));
    }
    let mut running = vec![0.0f32; layout.running_total];
    let mut count: Option<u64> = None;
    for (n, seg) in layout.running_names.iter().zip(&layout.running) {
        let c = seg.len as usize / 2;
        let r = &mut running[seg.range()];
        r[..c].copy_from_slice(&bytes_f32(get(&format!("{n}{RUNNING_MEAN}"))?));
        r[c..].copy_from_slice(&bytes_f32(get(&format!("{n}{RUNNING_VAR}"))?));
        let key = format!("{n}{NUM_BATCHES}");
        let b = get(&key)?;
        let v = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let v = u64::try_from(v)
            .map_err(|_| Error::data(path, format!("tensor '{key}' is negative ({v})")))?;
        // Every BatchNorm layer of a network counts the same passes; should a file
        // disagree, the largest count is kept (it does not change any result: the
        // running averages use a fixed momentum).
        count = Some(count.map_or(v, |c0| c0.max(v)));
    }
    Ok(SavedNetwork {
        model,
        params,
        running,
        num_batches_tracked: count.unwrap_or(0),
        metadata,
    })
}
