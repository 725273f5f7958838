//! `trainer export`: the web bundle. A manifest (models, configs, sizes, sha256 of every
//! file, sample texts, results) beside each model's Hugging Face files and one tokenizer.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use astrid::bundle::{CONFIG_FILE, META_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use clap::Args;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use crate::suite::ROLES;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run directory written by `trainer run`.
    #[arg(long)]
    pub run: PathBuf,
    /// Where the bundle goes (the web app reads models/ beside its index.html).
    #[arg(long, default_value = "www/models")]
    pub to: PathBuf,
    /// How many validation texts to offer as samples.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Only these models (comma-separated roles; the teacher is always included), for a
    /// lighter demo.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(from).with_context(|| format!("{}: cannot read", from.display()))?;
    write_atomic(to, &bytes)?;
    Ok(json!({"size": bytes.len(), "sha256": sha256_hex(&bytes)}))
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let results_path = args.run.join("results.json");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&results_path)
            .with_context(|| format!("{}: missing; finish `trainer run` first", results_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", results_path.display()))?;
    // Build into a sibling directory and swap it in at the end: no half-written bundle.
    let staging = args.to.with_file_name(format!(
        ".{}.partial-{}",
        args.to
            .file_name()
            .map_or("models".into(), |n| n.to_string_lossy().to_string()),
        std::process::id()
    ));
    if let Some(wanted) = &args.models
        && let Some(unknown) = wanted.iter().find(|w| !ROLES.contains(&w.as_str()))
    {
        bail!(
            "--models: no model called '{unknown}'; the roles are {}",
            ROLES.join(", ")
        );
    }
    let _ = std::fs::remove_dir_all(&staging);
    let mut files = serde_json::Map::new();
    files.insert(
        TOKENIZER_FILE.into(),
        copy_file(&args.run.join(TOKENIZER_FILE), &staging.join(TOKENIZER_FILE))?,
    );
    let mut models = Vec::new();
    for role in ROLES {
        let dir = args.run.join("models").join(role);
        let wanted = role == ROLES[0] || args.models.as_ref().is_none_or(|m| m.iter().any(|w| w == role));
        if !dir.exists() || !wanted {
            continue;
        }
        let mut model_files = serde_json::Map::new();
        for file in [CONFIG_FILE, WEIGHTS_FILE, META_FILE] {
            let entry = copy_file(&dir.join(file), &staging.join(role).join(file))?;
            model_files.insert(file.into(), entry);
        }
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE))?)?;
        let result = results["models"]
            .as_array()
            .and_then(|m| m.iter().find(|r| r["name"] == role))
            .cloned();
        models.push(json!({
            "name": role,
            "role": if role == ROLES[0] { "teacher" } else { "student" },
            "config": config,
            "files": model_files,
            "params": result.as_ref().map(|r| r["params"].clone()),
            "accuracy": result.as_ref().map(|r| r["accuracy"].clone()),
            "similarity": result.as_ref().map(|r| r["similarity_mean"].clone()),
            "verdict": result.as_ref().map(|r| r["verdict"].clone()),
        }));
    }
    if models.is_empty() {
        bail!("{}: no models/ in this run directory", args.run.display());
    }
    let samples = sample_texts(&args.run, args.samples)?;
    let manifest = json!({
        "format": 1,
        "tokenizer": files.get(TOKENIZER_FILE),
        "models": models,
        "samples": samples,
        "labels": results["data"]["labels"],
        "results": results,
    });
    write_atomic(
        &staging.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    if args.to.exists() {
        std::fs::remove_dir_all(&args.to).with_context(|| format!("{}: cannot replace", args.to.display()))?;
    }
    if let Some(parent) = args.to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&staging, &args.to).with_context(|| format!("{}: cannot write", args.to.display()))?;
    println!("wrote {} ({} models, manifest.json)", args.to.display(), models.len());
    Ok(())
}

/// The first validation texts of the run, from the teacher's saved explanations.
fn sample_texts(run: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let path = run.join("explanations").join(format!("{}.jsonl", ROLES[0]));
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut samples = Vec::new();
    for line in text.lines().take(n) {
        let row: serde_json::Value = serde_json::from_str(line)?;
        let tokens: Vec<&str> = row["tokens"]
            .as_array()
            .map(|t| t.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let words = astrid::compare::merge_wordpieces(
            &tokens.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &vec![0.0; tokens.len()],
            &row["special"]
                .as_array()
                .map(|s| s.iter().map(|b| b.as_bool().unwrap_or(false)).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        samples.push(
            words
                .iter()
                .filter(|w| !w.special)
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    Ok(samples)
}
