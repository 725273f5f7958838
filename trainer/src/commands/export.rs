//! `trainer export`: the web bundle. A manifest (models, configs, sizes, sha256 of every
//! file, sample texts, results) beside each model's Hugging Face files and one tokenizer.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use astrid::bundle::TOKENIZER_FILE;
use astrid::files::{StagingDir, is_empty_dir, write_atomic};
use astrid::schema::bundle::{FORMAT, MANIFEST_FILE, MODEL_FILES, recognise_bundle};
use astrid::schema::results::RESULTS_FILE;
use astrid::schema::{FileEntry, Manifest, ManifestModel, Role, RunResults, TextAttribution};
use serde::Deserialize;

use crate::models::suite::ROLES;
use crate::pipeline::rundir;
use crate::util::digest::sha256_hex;

#[derive(Debug, Clone, Deserialize)]
pub struct ExportRequest {
    /// A run directory written by `trainer run`.
    pub run: PathBuf,
    /// Where the bundle goes (the web app reads models/ beside its index.html): a new or
    /// empty directory, or an earlier bundle to replace. Nothing else is ever replaced.
    pub to: PathBuf,
    /// How many validation texts to offer as samples.
    pub samples: usize,
    /// Only these models (comma-separated names from the run: roles, or ROLE-align and the
    /// like after --training; the teacher is always included), for a
    /// lighter demo.
    pub models: Option<Vec<String>>,
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<FileEntry> {
    let bytes = std::fs::read(from).with_context(|| format!("{}: cannot read", from.display()))?;
    write_atomic(to, &bytes)?;
    Ok(FileEntry {
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

/// `path` made absolute with symbolic links resolved, also when its last components do not
/// exist yet: the place it names, for comparing it with other places.
fn resolved(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(path).with_context(|| format!("{}: not a usable path", path.display()))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut place = existing
        .canonicalize()
        .with_context(|| format!("{}: cannot be resolved", existing.display()))?;
    for name in rest.into_iter().rev() {
        match Path::new(&name).components().next() {
            Some(Component::ParentDir) => {
                place.pop();
            }
            Some(Component::CurDir) | None => {}
            Some(_) => place.push(name),
        }
    }
    Ok(place)
}

/// Checks `--to` against the run and the current directory, and what is there now.
fn check_destination(to: &Path, run: &Path) -> anyhow::Result<()> {
    let shown = to.display();
    if std::fs::symlink_metadata(to).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("--to {shown}: is a symbolic link; give the directory itself. Nothing was written");
    }
    let place = resolved(to)?;
    let run_place = resolved(run)?;
    if place == run_place || place.starts_with(&run_place) || run_place.starts_with(&place) {
        bail!(
            "--to {shown}: is {} the run directory {}; the bundle must go elsewhere (e.g. --to www/models). \
             Nothing was written",
            if place == run_place {
                "the same as"
            } else if place.starts_with(&run_place) {
                "inside"
            } else {
                "above"
            },
            run.display()
        );
    }
    let cwd = std::env::current_dir().ok().and_then(|d| d.canonicalize().ok());
    if cwd.is_some_and(|cwd| cwd.starts_with(&place)) {
        bail!(
            "--to {shown}: is the current directory or holds it; give a new or empty directory (e.g. --to www/models). \
             Nothing was written"
        );
    }
    match std::fs::metadata(to) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => bail!("--to {shown}: is a file; give a directory. Nothing was written"),
        Ok(_) if is_empty_dir(to) => Ok(()),
        Ok(_) => recognise_bundle(to).map_err(|why| {
            anyhow::anyhow!(
                "--to {shown}: not replaced: {why}. Export writes into a new or empty directory, or replaces an \
                 earlier bundle; give another --to, or move those files away yourself. Nothing was written"
            )
        }),
    }
}

/// Writes the bundle of `args.run` into `args.to`, after every check that can refuse it has
/// passed: nothing is written for a run or a destination that is not right.
pub fn run(args: ExportRequest) -> anyhow::Result<()> {
    let (results_path, results) = read_results(&args.run)?;
    // Every model of the run, teacher first: the suite's roles, or with `--training a,b,…`
    // each role once per objective (ROLE-align, …).
    let names: Vec<&str> = results.models.iter().map(|m| m.name.as_str()).collect();
    check_model_names(&names, &results_path)?;
    let teacher = results.teacher().map_or(ROLES[0], |t| t.name.as_str());
    check_wanted(args.models.as_deref(), &names)?;
    // Keeps a run from writing into the directory while it is read.
    let _reading = rundir::lock_shared(&args.run)?;
    let teacher_dir = args.run.join("models").join(teacher);
    if !teacher_dir.is_dir() {
        bail!(
            "{}: the run has no teacher model; the page compares every student with it. Finish `trainer run` first",
            teacher_dir.display()
        );
    }
    check_destination(&args.to, &args.run)?;
    // Built in a sibling directory and swapped in at the end: no half-written bundle; the
    // staging directory is removed on every error, and one a killed export left goes first.
    let staging = StagingDir::new(&args.to)?;
    let tokenizer = copy_file(&args.run.join(TOKENIZER_FILE), &staging.path().join(TOKENIZER_FILE))?;
    let mut models = Vec::new();
    for &name in std::iter::once(&teacher).chain(names.iter().filter(|&&n| n != teacher)) {
        let dir = args.run.join("models").join(name);
        let wanted = name == teacher || args.models.as_ref().is_none_or(|m| m.iter().any(|w| w == name));
        if !dir.exists() || !wanted {
            continue;
        }
        let role = if name == teacher { Role::Teacher } else { Role::Student };
        models.push(export_model(&dir, name, role, &results, staging.path())?);
    }
    let manifest = Manifest {
        format: FORMAT,
        tokenizer,
        models,
        samples: sample_texts(&args.run, teacher, args.samples)?,
        labels: Some(results.data.labels.clone()),
        results,
    };
    write_atomic(
        &staging.path().join(MANIFEST_FILE),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    staging.commit(recognise_bundle)?;
    println!(
        "wrote {} ({} models, {MANIFEST_FILE})",
        args.to.display(),
        manifest.models.len()
    );
    Ok(())
}

/// The run's results, with the path they were read from for messages.
fn read_results(run: &Path) -> anyhow::Result<(PathBuf, RunResults)> {
    if !run.is_dir() {
        bail!("--run {}: no such run directory", run.display());
    }
    let results_path = run.join(RESULTS_FILE);
    let results: RunResults = serde_json::from_str(
        &std::fs::read_to_string(&results_path)
            .with_context(|| format!("{}: missing; finish `trainer run` first", results_path.display()))?,
    )
    .with_context(|| format!("{}: not the results of a run", results_path.display()))?;
    Ok((results_path, results))
}

/// Names become directories of the bundle: plain names only (results.json may be edited).
fn check_model_names(names: &[&str], results_path: &Path) -> anyhow::Result<()> {
    if let Some(bad) = names.iter().find(|n| {
        n.is_empty() || n.starts_with('.') || !n.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    }) {
        bail!(
            "{}: model name '{bad}' is not a plain directory name (letters, digits, _ - .); \
             this is not a results.json that trainer run wrote. Nothing was written",
            results_path.display()
        );
    }
    Ok(())
}

/// `--models` may name only models of the run: a typo is said, not silently exported as less.
fn check_wanted(wanted: Option<&[String]>, names: &[&str]) -> anyhow::Result<()> {
    if let Some(wanted) = wanted
        && let Some(unknown) = wanted.iter().find(|w| !names.contains(&w.as_str()))
    {
        bail!(
            "--models: no model called '{unknown}' in this run; its models are {}",
            names.join(", ")
        );
    }
    Ok(())
}

/// Copies one model's files from its directory `dir` of the run into the bundle, and
/// describes it for the manifest (with its figures from the run's results).
fn export_model(
    dir: &Path,
    name: &str,
    role: Role,
    results: &RunResults,
    bundle: &Path,
) -> anyhow::Result<ManifestModel> {
    let mut files = BTreeMap::new();
    for file in MODEL_FILES {
        files.insert(
            file.to_string(),
            copy_file(&dir.join(file), &bundle.join(name).join(file))?,
        );
    }
    let config_path = dir.join(astrid::bundle::CONFIG_FILE);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path).with_context(|| format!("{}: cannot read", config_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let result = results.model(name);
    Ok(ManifestModel {
        name: name.to_string(),
        role,
        config,
        files,
        params: result.map(|r| r.params as u64),
        accuracy: result.map(|r| r.accuracy),
        similarity: result.and_then(|r| r.similarity_mean),
        verdict: result.map(|r| r.verdict.to_string()),
    })
}

/// The first validation texts of the run, from the teacher's saved explanations.
fn sample_texts(run: &Path, teacher: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let path = run.join("explanations").join(format!("{teacher}.jsonl"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().take(n).enumerate() {
        let row: TextAttribution =
            serde_json::from_str(line).with_context(|| format!("{}: line {}", path.display(), i + 1))?;
        let words = astrid::compare::merge_wordpieces(&row.tokens, &vec![0.0; row.tokens.len()], &row.special);
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
