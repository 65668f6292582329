//! The JSON report of a run (`report.json`): configuration, seed, backend,
//! per-iteration loss, evaluation settings and accuracies, final statistics,
//! timings.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Mean loss of one iteration (total matching loss / (K * outer_loop), docs/method.md §4.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossRecord {
    /// Experiment index.
    pub experiment: usize,
    /// Iteration index.
    pub iteration: usize,
    /// Mean matching loss.
    pub loss: f64,
}

/// The test accuracies of one evaluation point for one evaluation model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Experiment index.
    pub experiment: usize,
    /// Iteration at which the synthetic set was evaluated.
    pub iteration: usize,
    /// Evaluation model name.
    pub model: String,
    /// Test accuracy of each trained network, as a fraction in [0, 1].
    pub accuracies: Vec<f64>,
    /// Their mean and population std.
    pub summary: Summary,
}

/// How the networks of one evaluation model were trained (docs/method.md §5.2-§5.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Training epochs E (the loop runs E + 1 epochs).
    pub epochs: usize,
    /// DSA strategy while training (`None` for a DC run).
    pub dsa_strategy: Option<String>,
    /// DC's legacy augmentation strategy while training (`crop_scale_rotate`,
    /// `crop_noise` or `none`; `None` for a DSA run).
    pub dc_augmentation: Option<String>,
}

/// Mean and population standard deviation (ddof 0, docs/method.md §5.7) of accuracies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl Summary {
    /// Summary of `v` (mean 0, std 0 for an empty slice).
    pub fn of(v: &[f64]) -> Summary {
        if v.is_empty() {
            return Summary {
                mean: 0.0,
                std: 0.0,
                n: 0,
            };
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Summary {
            mean,
            std: var.sqrt(),
            n: v.len(),
        }
    }
}

/// One row of a run's result table: an evaluation model's final accuracy
/// beside how its networks were trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Evaluation model name.
    pub model: String,
    /// Mean and population std of the final test accuracies (fractions).
    pub accuracy: Summary,
    /// Training epochs of each network.
    pub epochs: usize,
    /// The augmentation the networks trained with: `dsa:<strategy>`,
    /// `dc:<strategy>`, or `none`.
    pub augmentation: String,
}

impl ResultRow {
    /// The augmentation column of [`EvalSettings`].
    pub fn augmentation_of(s: &EvalSettings) -> String {
        match (&s.dsa_strategy, &s.dc_augmentation) {
            (Some(d), _) => format!("dsa:{d}"),
            (None, Some(d)) if d != "none" => format!("dc:{d}"),
            _ => "none".into(),
        }
    }
}

/// A data file a run read: where, how large, and its SHA-256 (taken when the report
/// is made; `error` says why a digest is missing, e.g. a file removed since).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path as the run found it.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, 64 hex digits (empty with `error`).
    pub sha256: String,
    /// Why the file could not be digested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DataFile {
    /// `path` with its size and digest.
    pub fn of(path: &std::path::Path) -> DataFile {
        let (bytes, sha256, error) = match crate::digest::sha256_file(path) {
            Ok((n, d)) => (n, d, None),
            Err(e) => (0, String::new(), Some(e.to_string())),
        };
        DataFile {
            path: path.display().to_string(),
            bytes,
            sha256,
            error,
        }
    }
}

/// A run's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `dsa-condense <version>`.
    pub tool: String,
    /// Subcommand (`condense`, `evaluate`, `baseline`).
    pub command: String,
    /// `complete`, or `interrupted` / `failed` for a run that stopped early (its
    /// report then holds what was done before it stopped).
    #[serde(default)]
    pub status: String,
    /// Why the run stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resolved configuration.
    pub config: serde_json::Value,
    /// Dataset name.
    pub dataset: String,
    /// The data files read (as found: which copy, raw or `.gz`, and where), with
    /// their sizes and SHA-256.
    #[serde(default)]
    pub data_files: Vec<DataFile>,
    /// What the data looked like: sizes, shape, class names, normalisation.
    #[serde(default)]
    pub data: serde_json::Value,
    /// How the run was started: command line, crate version, git commit.
    #[serde(default)]
    pub run: serde_json::Value,
    /// For `evaluate`: the synthetic set evaluated (path and SHA-256 of the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_set: Option<serde_json::Value>,
    /// Backend used.
    pub backend: String,
    /// Seed of the run.
    pub seed: u64,
    /// Per-iteration mean loss.
    pub losses: Vec<LossRecord>,
    /// Every evaluation point.
    pub evaluations: Vec<EvalRecord>,
    /// Per evaluation model, how its networks were trained.
    #[serde(default)]
    pub eval_options: BTreeMap<String, EvalSettings>,
    /// Per evaluation model, the statistics over all final accuracies.
    pub final_accuracy: BTreeMap<String, Summary>,
    /// The result table: one row per evaluation model, in the evaluation
    /// mode's order ([`Report::fill_results`]).
    #[serde(default)]
    pub results: Vec<ResultRow>,
    /// Named wall-clock timings in seconds.
    pub timings: BTreeMap<String, f64>,
    /// Files written (relative to the output directory; a file written outside it,
    /// such as a network of `evaluate --save-nets`, by its path).
    pub outputs: Vec<String>,
}

impl Report {
    /// A report with the tool's name and version filled in.
    pub fn new(command: &str) -> Report {
        Report {
            tool: format!("dsa-condense {}", env!("CARGO_PKG_VERSION")),
            command: command.into(),
            status: "complete".into(),
            ..Default::default()
        }
    }

    /// Records the dataset: its name, the files it was read from, its sizes, shape,
    /// class names and normalisation.
    pub fn set_dataset(&mut self, ds: &crate::data::Dataset) {
        self.dataset = ds.name.clone();
        self.data_files = ds.files.iter().map(|p| DataFile::of(p)).collect();
        self.data = serde_json::json!({
            "train_images": ds.train.n,
            "test_images": ds.test.n,
            "shape": [ds.channels, ds.height, ds.width],
            "classes": ds.num_classes,
            "class_names": ds.class_names,
            "mean": ds.mean,
            "std": ds.std,
        });
    }

    /// Records how the run was started: `args` (the command line), the preset it
    /// names (`--preset`), the crate version and the git commit it was built from
    /// (when known at build time). The wall-clock start goes to `timings`
    /// (`started_unix_s`).
    pub fn set_run(&mut self, args: &[String], started: std::time::SystemTime) {
        let preset = args.iter().enumerate().find_map(|(i, a)| match a.as_str() {
            "--preset" => args.get(i + 1).cloned(),
            _ => a.strip_prefix("--preset=").map(str::to_string),
        });
        self.run = serde_json::json!({
            "command_line": args,
            "preset": preset,
            "version": env!("CARGO_PKG_VERSION"),
            "git_commit": option_env!("DSA_GIT_COMMIT"),
        });
        if let Ok(d) = started.duration_since(std::time::UNIX_EPOCH) {
            self.timings
                .insert("started_unix_s".into(), d.as_secs_f64());
        }
    }

    /// Fills [`Report::results`] from `final_accuracy` and `eval_options`, one row
    /// per model of `models` (in that order) that has both.
    pub fn fill_results(&mut self, models: &[String]) {
        self.results = models
            .iter()
            .filter_map(|m| {
                let accuracy = *self.final_accuracy.get(m)?;
                let s = self.eval_options.get(m)?;
                Some(ResultRow {
                    model: m.clone(),
                    accuracy,
                    epochs: s.epochs,
                    augmentation: ResultRow::augmentation_of(s),
                })
            })
            .collect();
    }

    /// The result table as aligned text lines (header first): model, test
    /// accuracy mean +- std in percent, networks, epochs, augmentation.
    pub fn results_table(&self) -> Vec<String> {
        let w = self
            .results
            .iter()
            .map(|r| r.model.len())
            .chain(["model".len()])
            .max()
            .unwrap_or(5);
        let mut lines = vec![format!(
            "{:<w$}  {:>15}  {:>4}  {:>6}  augmentation",
            "model", "test acc. (%)", "nets", "epochs"
        )];
        for r in &self.results {
            let acc = format!(
                "{:.2} +- {:.2}",
                100.0 * r.accuracy.mean,
                100.0 * r.accuracy.std
            );
            lines.push(format!(
                "{:<w$}  {:>15}  {:>4}  {:>6}  {}",
                r.model, acc, r.accuracy.n, r.epochs, r.augmentation
            ));
        }
        lines
    }

    /// Records the wall-clock end of the run in `timings` (`finished_unix_s`).
    pub fn finish(&mut self) {
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            self.timings
                .insert("finished_unix_s".into(), d.as_secs_f64());
        }
    }

    /// Writes the report as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::data(path, format!("cannot serialise report: {e}")))?;
        super::atomic_write(path, &json)
    }

    /// Reads a report written by [`Report::write`].
    pub fn read(path: &Path) -> Result<Report> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::data(path, format!("invalid report JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_records_the_preset_in_either_spelling() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = std::time::SystemTime::now();
        let mut r = Report::new("condense");
        r.set_run(&args(&["dsa-condense", "condense", "--preset", "quick"]), t);
        assert_eq!(r.run["preset"], "quick");
        r.set_run(&args(&["dsa-condense", "condense", "--preset=paper"]), t);
        assert_eq!(r.run["preset"], "paper");
        r.set_run(&args(&["dsa-condense", "condense", "--ipc", "10"]), t);
        assert!(r.run["preset"].is_null());
    }

    #[test]
    fn a_data_file_carries_its_size_and_digest_or_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, b"abc").unwrap();
        let f = DataFile::of(&p);
        assert_eq!((f.bytes, f.error.is_none()), (3, true));
        // SHA-256("abc")
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let gone = DataFile::of(&dir.path().join("missing"));
        assert!(gone.sha256.is_empty() && gone.error.is_some());
    }
}
