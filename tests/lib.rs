//! Helpers for Astrid's end-to-end tests: finding the `trainer` binary, running it, the
//! fixtures, the data sets that are not in the repository, and reporting a test skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root. Cargo sets CARGO_MANIFEST_DIR when it runs a test; read at run
/// time, since a build cache shared with a checkout elsewhere keeps the compile-time path.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// `<target>/<profile>` of this test executable (`<target>/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(2)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The `trainer` binary of the same build profile as this test (`cargo test --workspace`
/// builds it alongside).
pub fn trainer_bin() -> PathBuf {
    let bin = profile_dir().join(format!("trainer{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace` (same profile as the tests)",
        bin.display()
    );
    bin
}

/// `<target>/tmp`, where the tests write what outlives them.
fn target_tmp() -> PathBuf {
    profile_dir().parent().expect("<target>/<profile>").join("tmp")
}

/// A directory for a test's outputs (screenshots, generated bundles): `<target>/tmp/<name>`.
pub fn output_dir(name: &str) -> PathBuf {
    let dir = target_tmp().join(name);
    std::fs::create_dir_all(&dir).expect("test output dir");
    dir
}

/// Runs `trainer ARGS…` and returns its output.
pub fn trainer(args: &[&str]) -> Output {
    Command::new(trainer_bin()).args(args).output().expect("run trainer")
}

/// Runs `trainer` and parses its stdout as JSON, failing with its stderr if it failed.
pub fn trainer_json(args: &[&str]) -> serde_json::Value {
    let out = trainer(args);
    assert!(
        out.status.success(),
        "trainer {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "trainer {args:?}: stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn floats(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Largest |a − b| relative to the largest |b|.
pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Where [`skip`] records skipped tests: `ASTRID_SKIP_LOG` (which `.ci/run` sets, empties
/// first and prints at its end), else `<target>/tmp/skipped.txt`.
pub fn skip_log() -> PathBuf {
    match std::env::var_os("ASTRID_SKIP_LOG").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => target_tmp().join("skipped.txt"),
    }
}

/// Reports that `test` cannot run on this machine, and why (`reason`) and what would let it
/// run (`enable`); the test then returns without checking anything. Cargo captures a passing
/// test's output, so this writes to the process's stderr directly (it shows in `cargo test`'s
/// output as `SKIPPED test: …`) and appends the line `test: reason (enable)` to [`skip_log`].
pub fn skip(test: &str, reason: &str, enable: &str) {
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = format!("{test}: {} ({})", one_line(reason), one_line(enable));
    // Not eprintln!, which the test harness captures; one write, so that the line stays whole
    // among the harness's own.
    let _ = std::io::stderr().write_all(format!("SKIPPED {line}\n").as_bytes());
    let log = skip_log();
    let appended = log.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        // One write per line, so that tests skipping in parallel do not interleave.
        file.write_all(format!("{line}\n").as_bytes())
    });
    if let Err(e) = appended {
        let _ = writeln!(std::io::stderr(), "could not record the skip in {}: {e}", log.display());
    }
}

/// The SCOTUS data set (`justice.csv`, from Kaggle, CC BY-NC: not in the repository), or
/// `None` after reporting `test` skipped when it is not on this machine. Looked for at
/// `ASTRID_SCOTUS_CSV` when that is set (and only there: pointing it nowhere skips; a
/// relative path is from the repository root), else at `../shared/data/scotus/justice.csv`
/// beside the repository, where this project's CI keeps it.
pub fn scotus_csv(test: &str) -> Option<PathBuf> {
    let (path, from) = match std::env::var_os("ASTRID_SCOTUS_CSV").filter(|p| !p.is_empty()) {
        Some(path) => (root().join(path), "ASTRID_SCOTUS_CSV"),
        None => (root().join("../shared/data/scotus/justice.csv"), "the default path"),
    };
    if path.is_file() {
        return Some(path);
    }
    skip(
        test,
        &format!("no SCOTUS data at {} ({from})", display(&path)),
        "set ASTRID_SCOTUS_CSV to the SCOTUS justice.csv from Kaggle, \
         or put it at ../shared/data/scotus/justice.csv beside the repository",
    );
    None
}

/// A path without the `..` steps that [`root`]`.join` leaves in it, where they resolve.
fn display(path: &Path) -> String {
    let shown = match (path.parent().and_then(|p| p.canonicalize().ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    };
    shown.display().to_string()
}
