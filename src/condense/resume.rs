//! What a checkpoint carries besides the synthetic set: the configuration it must
//! match to be resumed, and the progress (losses, evaluations, finished experiments).

use std::path::Path;

use super::config::CondenseConfig;
use super::run::{ExperimentResult, RunResult};
use crate::error::{Error, Result};

/// The configuration a checkpoint must match to be resumed: everything that
/// changes what is computed (not the output place, threads, backend or verbosity).
pub(super) fn resumable_config(cfg: &CondenseConfig) -> String {
    let mut v = cfg.to_json();
    if let Some(m) = v.as_object_mut() {
        for k in [
            "out",
            "resume",
            "threads",
            "backend",
            "quiet",
            "checkpoint_every",
        ] {
            m.remove(k);
        }
    }
    v.to_string()
}

/// Losses, evaluations and finished experiments so far, for a checkpoint.
pub(super) fn progress_json(r: &RunResult) -> String {
    serde_json::json!({
        "losses": r.losses,
        "evaluations": r.evaluations,
        "experiments": r.experiments.iter().map(|e| serde_json::json!({"images": e.images, "labels": e.labels})).collect::<Vec<_>>(),
        "condense_seconds": r.condense_seconds,
        "eval_seconds": r.eval_seconds,
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
    r.condense_seconds = v["condense_seconds"].as_f64().unwrap_or(0.0);
    r.eval_seconds = v["eval_seconds"].as_f64().unwrap_or(0.0);
    Ok(())
}
