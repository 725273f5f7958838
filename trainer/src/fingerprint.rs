//! What a run's results depend on, written to `run.json` when it starts: the data (by
//! content hash, or the generator's spec), the tokenizer and starting checkpoints (by hash),
//! and every setting, normalised so an explicitly given default equals the default. A rerun
//! in the same directory resumes only when its fingerprint is equal; otherwise it is refused
//! with the list of differences.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use astrid::bundle::{CONFIG_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VOCAB_FILE, WEIGHTS_FILE};
use astrid::{Baseline, Method};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::align::{AlignSettings, Objective};
use crate::run_args::{SelectBy, Suite, TargetChoice};

/// The version of the `run.json` layout; a run written with another one cannot resume.
pub const RUN_FORMAT: u32 = 2;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A digest as lower-case hexadecimal.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One hash over a checkpoint directory's files (config, weights; the tokenizer's files when
/// present).
pub fn checkpoint_digest(dir: &Path) -> anyhow::Result<String> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: no such checkpoint directory (it needs {CONFIG_FILE} and {WEIGHTS_FILE})",
            dir.display()
        );
    }
    let mut hasher = Sha256::new();
    for name in [
        CONFIG_FILE,
        WEIGHTS_FILE,
        TOKENIZER_FILE,
        VOCAB_FILE,
        TOKENIZER_CONFIG_FILE,
    ] {
        let path = dir.join(name);
        let bytes = match name {
            // One file or shards: the weights as loaded.
            WEIGHTS_FILE => astrid::bundle::read_weights(dir)?,
            // The tokenizer's files are optional.
            _ if name != CONFIG_FILE && !path.exists() => continue,
            _ => std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?,
        };
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex(&hasher.finalize()))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub format: u32,
    pub data: DataSettings,
    pub tokenizer: TokenizerSettings,
    pub models: ModelSettings,
    pub training: TrainingSettings,
    pub explanations: ExplanationSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSettings {
    /// Where the data came from: shown, not compared (the same content elsewhere resumes).
    pub source: String,
    /// SHA-256 of the data file's bytes; `None` for the embedded corpus.
    pub sha256: Option<String>,
    /// The embedded corpus's generator settings; `None` for a file.
    pub corpus: Option<CorpusSettings>,
    pub text_col: Option<String>,
    pub label_col: Option<String>,
    /// Class names in class order, as used.
    pub labels: Vec<String>,
    /// Labelled rows used, when fewer than the file has.
    pub sample: Option<usize>,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusSettings {
    pub size: usize,
    pub shortcut: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerSettings {
    /// SHA-256 of the tokenizer.json the run started from (given, or an --init checkpoint's);
    /// `None` when a WordPiece vocabulary is trained.
    pub sha256: Option<String>,
    /// The trained vocabulary's size; `None` when a tokenizer is given.
    pub vocab_size: Option<usize>,
    pub max_length: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    pub suite: Suite,
    /// Role → hash of its starting checkpoint ([`checkpoint_digest`]).
    pub init: BTreeMap<String, String>,
    pub init_from_teacher: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSettings {
    pub backend: String,
    pub epochs: usize,
    pub batch_size: usize,
    /// The peak learning rate of every role not in `role_learning_rates`.
    pub learning_rate: f64,
    /// Roles with another rate (started from a checkpoint: 5e-5; `--role-lr`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_learning_rates: BTreeMap<String, f64>,
    pub weight_decay: f64,
    pub warmup: f64,
    /// Roles with another warm-up share (`--role-warmup`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_warmups: BTreeMap<String, f64>,
    pub clip: f64,
    pub patience: usize,
    /// `None` when no student distils (temperature and alpha then change nothing).
    pub distill: Option<DistillSettings>,
    /// The students' objectives, when they are not just what `distill` says (one objective,
    /// independent or distill: the format of runs made before `--training`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Vec<Objective>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<AlignSettings>,
    /// `--class-weight balanced`: the cross-entropy's weight per class, from the training part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f64>>,
    /// The figure that picks each model's best epoch; absent: validation accuracy (runs made
    /// before `--select-by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_by: Option<SelectBy>,
    /// Model replicas per batch (`--workers`) when above 1; absent: 1 (runs made before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistillSettings {
    pub temperature: f64,
    pub alpha: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationSettings {
    /// Validation texts explained (the option, capped at the validation part's size).
    pub texts: usize,
    pub n_steps: usize,
    pub method: Method,
    pub baseline: Baseline,
    pub target: TargetChoice,
    /// Adaptive IG only: its tolerance and budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
}

/// Keys compared by [`differences`] are every leaf but these (shown for information).
const NOT_COMPARED: [&str; 1] = ["data.source"];

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        // An unset option is the same as an absent one.
        serde_json::Value::Null => {}
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn hint(key: &str) -> &'static str {
    if key == "data.sha256" {
        " (the data file's content changed)"
    } else if key.starts_with("models.init") {
        " (a starting checkpoint changed)"
    } else if key == "tokenizer.sha256" {
        " (the tokenizer changed)"
    } else if key == "training.workers" {
        " (training threads: give --workers with the run's count, 1 where it shows (none))"
    } else {
        ""
    }
}

fn show(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "(none)".into(),
        Some(serde_json::Value::String(s)) if s.len() == 64 => format!("{}…", &s[..12]),
        Some(v) => v.to_string(),
    }
}

/// The settings that differ between a saved `run.json` and this command, as
/// `key: old → new` lines; empty when the run can resume.
pub fn differences(saved: &serde_json::Value, now: &RunSettings) -> anyhow::Result<Vec<String>> {
    let format = saved.get("format").and_then(|f| f.as_u64());
    if format != Some(RUN_FORMAT as u64) {
        anyhow::bail!(
            "it was started by {} version of trainer (run.json format {}, this one writes {RUN_FORMAT}), \
             so it cannot be resumed; give another --out for a new run",
            if format.is_some_and(|f| f > RUN_FORMAT as u64) {
                "a newer"
            } else {
                "an earlier"
            },
            format.map_or("none".to_string(), |f| f.to_string())
        );
    }
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    flatten("", saved, &mut old);
    flatten("", &serde_json::to_value(now)?, &mut new);
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| !NOT_COMPARED.contains(&k.as_str()))
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{k}: {} → {}{}", show(old.get(k)), show(new.get(k)), hint(k)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RunSettings {
        RunSettings {
            format: RUN_FORMAT,
            data: DataSettings {
                source: "a.csv".into(),
                sha256: Some("a".repeat(64)),
                corpus: None,
                text_col: Some("t".into()),
                label_col: Some("l".into()),
                labels: vec!["neg".into(), "pos".into()],
                sample: None,
                seed: 7,
            },
            tokenizer: TokenizerSettings {
                sha256: None,
                vocab_size: Some(8000),
                max_length: 128,
            },
            models: ModelSettings {
                suite: Suite::Quick,
                init: BTreeMap::new(),
                init_from_teacher: false,
            },
            training: TrainingSettings {
                backend: "cpu".into(),
                epochs: 5,
                batch_size: 16,
                learning_rate: 5e-4,
                role_learning_rates: BTreeMap::new(),
                role_warmups: BTreeMap::new(),
                weight_decay: 0.01,
                warmup: 0.1,
                clip: 1.0,
                patience: 2,
                distill: None,
                objectives: None,
                align: None,
                class_weights: None,
                select_by: None,
                workers: None,
            },
            explanations: ExplanationSettings {
                texts: 50,
                n_steps: 50,
                method: Method::GaussLegendre,
                baseline: Baseline::Zero,
                target: TargetChoice::Model,
                tolerance: None,
                max_steps: None,
            },
        }
    }

    #[test]
    fn equal_settings_resume_and_a_moved_file_is_not_a_difference() {
        let saved = serde_json::to_value(settings()).unwrap();
        let mut moved = settings();
        moved.data.source = "elsewhere/a.csv".into();
        assert!(differences(&saved, &moved).unwrap().is_empty());
    }

    #[test]
    fn every_difference_is_listed_old_to_new() {
        let saved = serde_json::to_value(settings()).unwrap();
        let mut now = settings();
        now.data.sha256 = Some("b".repeat(64));
        now.training.patience = 3;
        now.training.distill = Some(DistillSettings {
            temperature: 2.0,
            alpha: 0.5,
        });
        let lines = differences(&saved, &now).unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("data.sha256: aaaaaaaaaaaa… → bbbbbbbbbbbb…") && l.contains("content changed")),
            "{lines:?}"
        );
        assert!(lines.contains(&"training.patience: 2 → 3".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"training.distill.alpha: (none) → 0.5".to_string()),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 4, "{lines:?}");
    }

    /// A run made with one training thread (before `--workers`: no key) and resumed on a
    /// machine whose default is 2 is refused with what to pass.
    #[test]
    fn another_training_worker_count_is_named_with_the_option_to_give() {
        let saved = serde_json::to_value(settings()).unwrap();
        let mut now = settings();
        now.training.workers = Some(2);
        let lines = differences(&saved, &now).unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("training.workers: (none) → 2") && lines[0].contains("give --workers"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_run_of_another_format_is_not_resumed() {
        let old = serde_json::json!({"suite": "quick", "epochs": 3});
        let err = differences(&old, &settings()).unwrap_err().to_string();
        assert!(
            err.contains("an earlier version") && err.contains("another --out"),
            "{err}"
        );
    }
}
