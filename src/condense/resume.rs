//! What a checkpoint carries besides the synthetic set: the configuration it must
//! match to be resumed, and the progress (losses, evaluations, finished experiments).

use std::path::Path;

use super::config::CondenseConfig;
use super::run::{ExperimentResult, RunResult};
use crate::backend::Precision;
use crate::data::{Dataset, DatasetKind};
use crate::error::{Error, Result};

/// The configuration a checkpoint must match to be resumed: everything that
/// changes what is computed, and the identity of the data (name, sizes and a
/// digest of its content). Not where the output goes or the data was found (a path
/// spelled another way is the same data), threads, backend or verbosity. The
/// precision of the products counts (a run is not resumed in another arithmetic);
/// FP32 is left out of the record, so checkpoints written before `--precision`
/// existed (all FP32) still resume.
pub(super) fn resumable_config(cfg: &CondenseConfig, ds: &Dataset) -> String {
    let mut v = cfg.to_json();
    if let Some(m) = v.as_object_mut() {
        if cfg.precision == Precision::Fp32 {
            m.remove("precision");
        }
        for k in [
            "out",
            "resume",
            "threads",
            "device",
            "backend",
            "quiet",
            "checkpoint_every",
            "data_dir",
            "download",
        ] {
            m.remove(k);
        }
        // an image folder's name is its path: it is identified by its content
        let name = match cfg.dataset {
            DatasetKind::ImageFolder(_) => "folder".to_string(),
            _ => ds.name.clone(),
        };
        m.insert("dataset".into(), name.clone().into());
        m.insert(
            "data".into(),
            serde_json::json!({
                "name": name,
                "shape": [ds.channels, ds.height, ds.width],
                "classes": ds.num_classes,
                "train": ds.train.n,
                "test": ds.test.n,
                "sha256": ds.digest(),
            }),
        );
    }
    v.to_string()
}

/// The top-level entries in which two [`resumable_config`] records differ.
pub(super) fn config_differences(a: &str, b: &str) -> Vec<String> {
    let parse = |s: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s);
    let (Ok(a), Ok(b)) = (parse(a), parse(b)) else {
        return vec!["(unreadable configuration record)".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("-".into(), |v| v.to_string());
            format!(
                "{k}: {} (checkpoint) vs {} (now)",
                show(b.get(k)),
                show(a.get(k))
            )
        })
        .collect()
}

/// Losses, evaluations and finished experiments so far, for a checkpoint. No
/// wall-clock times: a checkpoint is a function of the seed and the configuration
/// (byte-identical between runs); a resumed run's timings count its own process.
pub(super) fn progress_json(r: &RunResult) -> String {
    serde_json::json!({
        "losses": r.losses,
        "evaluations": r.evaluations,
        "experiments": r.experiments.iter().map(|e| serde_json::json!({"images": e.images, "labels": e.labels})).collect::<Vec<_>>(),
    })
    .to_string()
}

pub(super) fn restore_progress(json: &str, path: &Path, r: &mut RunResult) -> Result<()> {
    let bad = |e: serde_json::Error| Error::data(path, format!("invalid progress record: {e}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(bad)?;
    r.losses = serde_json::from_value(v["losses"].clone()).map_err(bad)?;
    r.evaluations = serde_json::from_value(v["evaluations"].clone()).map_err(bad)?;
    for e in v["experiments"].as_array().into_iter().flatten() {
        r.experiments.push(ExperimentResult {
            images: serde_json::from_value(e["images"].clone()).map_err(bad)?,
            labels: serde_json::from_value(e["labels"].clone()).map_err(bad)?,
        });
    }
    Ok(())
}
