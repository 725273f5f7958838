//! What a run's results depend on, written to `run.json` when it starts: the data (by
//! content hash, or the generator's spec), the tokenizer and starting checkpoints (by hash),
//! and every setting, normalised so an explicitly given default equals the default. A rerun
//! in the same directory resumes only when its fingerprint is equal; otherwise it is refused
//! with the list of differences.

use std::collections::BTreeMap;

use serde::Serialize;

pub use astrid::schema::settings::{
    CorpusSettings, DataSettings, DistillSettings, ExplanationSettings, ModelSettings, RUN_FORMAT, RunSettings,
    TokenizerSettings, TrainingSettings,
};

/// Keys compared by [`differences`] are every leaf but these (shown for information).
const NOT_COMPARED: [&str; 1] = ["data.source"];
/// `run.json`'s copy of the run's settings as a config file (`trainer run --config`): how to
/// repeat the run, not what its results depend on (that is the rest of the file).
pub const CONFIG_KEY: &str = "config";

/// `run.json`: the fingerprint, and the settings that repeat the run.
#[derive(Debug, Serialize)]
pub struct RunFile<'a, C: Serialize> {
    #[serde(flatten)]
    pub settings: &'a RunSettings,
    pub config: &'a C,
}

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
        .filter(|k| k.split('.').next() != Some(CONFIG_KEY))
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{k}: {} → {}{}", show(old.get(k)), show(new.get(k)), hint(k)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use astrid::schema::{Suite, TargetChoice};
    use astrid::{Baseline, Method};

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
                shift: None,
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
    fn the_config_beside_the_fingerprint_is_not_compared() {
        let file = RunFile {
            settings: &settings(),
            config: &serde_json::json!({"out": "runs/a", "quiet": true}),
        };
        let saved = serde_json::to_value(&file).unwrap();
        assert_eq!(saved["config"]["out"], "runs/a");
        assert_eq!(saved["training"]["patience"], 2);
        assert!(differences(&saved, &settings()).unwrap().is_empty());
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
