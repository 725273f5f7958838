//! The web bundle that `trainer export` writes and the page reads: `manifest.json` lists the
//! models, their files (size, sha256), sample texts and the run's results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::results::{Role, RunResults};
use crate::bundle::{CONFIG_FILE, META_FILE, WEIGHTS_FILE};

/// The manifest format written and read.
pub const FORMAT: u32 = 1;
/// The manifest's file name in a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The files every model directory of a bundle has.
pub const MODEL_FILES: [&str; 3] = [CONFIG_FILE, WEIGHTS_FILE, META_FILE];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestModel {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub config: serde_json::Value,
    pub files: BTreeMap<String, FileEntry>,
    #[serde(default)]
    pub params: Option<u64>,
    #[serde(default)]
    pub accuracy: Option<f64>,
    #[serde(default)]
    pub similarity: Option<f64>,
    #[serde(default)]
    pub verdict: Option<String>,
}

impl ManifestModel {
    pub fn is_teacher(&self) -> bool {
        self.role == Role::Teacher
    }

    /// "6x768" from the model's config, when it says.
    pub fn shape(&self) -> Option<String> {
        let layers = self.config["num_hidden_layers"]
            .as_u64()
            .or_else(|| self.config["n_layers"].as_u64())?;
        let hidden = self.config["hidden_size"]
            .as_u64()
            .or_else(|| self.config["dim"].as_u64())?;
        Some(format!("{layers}x{hidden}"))
    }

    /// Total download size of this model's files (the shared tokenizer excluded).
    pub fn download_size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tokenizer: FileEntry,
    pub models: Vec<ManifestModel>,
    #[serde(default)]
    pub samples: Vec<String>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub results: RunResults,
}

impl Manifest {
    /// Parses and checks a manifest; errors say where (`source`, line, column or model)
    /// and what to do.
    pub fn parse(text: &str, source: &str) -> Result<Self, String> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| {
            format!(
                "{source}: not a valid bundle manifest (line {}, column {}: {e}). Write the bundle with `trainer export`.",
                e.line(),
                e.column()
            )
        })?;
        if manifest.format != FORMAT {
            return Err(format!(
                "{source}: manifest format {} but this page reads format {FORMAT}; export the bundle with the trainer of this version",
                manifest.format
            ));
        }
        if manifest.models.is_empty() {
            return Err(format!("{source}: the bundle lists no models; export a finished run"));
        }
        if !manifest.models.iter().any(ManifestModel::is_teacher) {
            return Err(format!(
                "{source}: the bundle has no teacher (role \"teacher\"); students are compared with it"
            ));
        }
        for model in &manifest.models {
            check_name(&model.name, source)?;
            for file in MODEL_FILES {
                let entry = model
                    .files
                    .get(file)
                    .ok_or_else(|| format!("{source}: model '{}' lists no {file}", model.name))?;
                check_sha(&entry.sha256, &format!("{source}: model '{}', {file}", model.name))?;
            }
        }
        check_sha(&manifest.tokenizer.sha256, &format!("{source}: tokenizer"))?;
        Ok(manifest)
    }

    pub fn teacher(&self) -> Option<&ManifestModel> {
        self.models.iter().find(|m| m.is_teacher())
    }

    pub fn model(&self, name: &str) -> Option<&ManifestModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Class names: the manifest's, or "class 0", "class 1", ...
    pub fn label(&self, class: usize) -> String {
        self.labels
            .as_ref()
            .and_then(|l| l.get(class).cloned())
            .unwrap_or_else(|| format!("class {class}"))
    }
}

/// Why `dir` is not a bundle `trainer export` wrote, or `Ok` when it is one: its manifest
/// parses and every file there is one the manifest lists. Only such a directory is replaced.
#[cfg(not(target_arch = "wasm32"))]
pub fn recognise_bundle(dir: &std::path::Path) -> Result<(), String> {
    use crate::bundle::TOKENIZER_FILE;
    use crate::files::{list_dir, show_names, temp_name_pid};
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE))
        .map_err(|_| format!("it holds {} and no {MANIFEST_FILE}", show_names(&list_dir(dir))))?;
    let manifest = Manifest::parse(&text, MANIFEST_FILE).map_err(|e| format!("it is not an Astrid bundle ({e})"))?;
    let mut foreign = Vec::new();
    for name in list_dir(dir) {
        if name == MANIFEST_FILE || name == TOKENIZER_FILE || temp_name_pid(&name).is_some() {
            continue;
        }
        match manifest.model(&name) {
            Some(model) if dir.join(&name).is_dir() => foreign.extend(
                list_dir(&dir.join(&name))
                    .into_iter()
                    .filter(|f| !model.files.contains_key(f) && temp_name_pid(f).is_none())
                    .map(|f| format!("{name}/{f}")),
            ),
            _ => foreign.push(name),
        }
    }
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "it holds files that are not part of the bundle its manifest describes ({})",
            show_names(&foreign)
        ))
    }
}

/// Model names become URL path segments: keep them to safe characters.
fn check_name(name: &str, source: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{source}: model name '{name}' may only use letters, digits, '_', '-' and '.'"
        ))
    }
}

fn check_sha(sha: &str, what: &str) -> Result<(), String> {
    if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{what}: sha256 '{sha}' is not 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aa00000000000000000000000000000000000000000000000000000000000000";

    fn manifest_json(models: &str) -> String {
        format!(
            r#"{{"format": 1, "tokenizer": {{"size": 10, "sha256": "{SHA}"}}, "models": {models},
               "samples": ["a text"], "labels": ["lose", "win"],
               "results": {{"models": [{{"name": "teacher_bert", "params": 5, "accuracy": 0.9, "verdict": "teacher (reference)"}}],
                           "recommended": null, "recommendation": "none passes"}}}}"#
        )
    }

    fn model(name: &str, role: &str) -> String {
        format!(
            r#"{{"name": "{name}", "role": "{role}", "config": {{"num_hidden_layers": 2, "hidden_size": 64}},
                "files": {{"config.json": {{"size": 1, "sha256": "{SHA}"}},
                          "model.safetensors": {{"size": 100, "sha256": "{SHA}"}},
                          "astrid.json": {{"size": 2, "sha256": "{SHA}"}}}},
                "params": 5, "accuracy": 0.9, "similarity": null, "verdict": "teacher (reference)"}}"#
        )
    }

    #[test]
    fn reads_a_bundle_manifest() {
        let text = manifest_json(&format!(
            "[{}, {}]",
            model("teacher_bert", "teacher"),
            model("tiny", "student")
        ));
        let m = Manifest::parse(&text, "models/manifest.json").unwrap();
        assert_eq!(m.teacher().unwrap().name, "teacher_bert");
        assert_eq!(m.model("tiny").unwrap().shape().as_deref(), Some("2x64"));
        assert_eq!(m.model("tiny").unwrap().download_size(), 103);
        assert_eq!(m.label(1), "win");
        assert_eq!(m.label(7), "class 7");
        assert_eq!(m.results.models[0].verdict, super::super::Verdict::Teacher);
        assert_eq!(m.results.recommendation, "none passes");
    }

    #[test]
    fn a_manifest_round_trips() {
        let text = manifest_json(&format!("[{}]", model("teacher_bert", "teacher")));
        let m = Manifest::parse(&text, "m.json").unwrap();
        let written = serde_json::to_string(&m).unwrap();
        assert_eq!(Manifest::parse(&written, "m.json").unwrap(), m);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong_and_where() {
        let err = Manifest::parse("{\"format\": 1,\n  \"models\": [", "m.json").unwrap_err();
        assert!(err.contains("m.json") && err.contains("line 2"), "{err}");
        let only_student = manifest_json(&format!("[{}]", model("tiny", "student")));
        assert!(
            Manifest::parse(&only_student, "m.json")
                .unwrap_err()
                .contains("no teacher")
        );
        let bad_name = manifest_json(&format!("[{}]", model("../evil", "teacher")));
        assert!(Manifest::parse(&bad_name, "m.json").unwrap_err().contains("'../evil'"));
        let no_weights = manifest_json(&format!("[{}]", model("t", "teacher"))).replace("model.safetensors", "x.bin");
        let err = Manifest::parse(&no_weights, "m.json").unwrap_err();
        assert!(err.contains("model 't' lists no model.safetensors"), "{err}");
        let future = manifest_json(&format!("[{}]", model("t", "teacher"))).replace("\"format\": 1", "\"format\": 2");
        assert!(Manifest::parse(&future, "m.json").unwrap_err().contains("format 2"));
        let short_sha = manifest_json(&format!("[{}]", model("t", "teacher"))).replacen(SHA, "abc", 1);
        assert!(
            Manifest::parse(&short_sha, "m.json")
                .unwrap_err()
                .contains("not 64 hex digits")
        );
    }
}
