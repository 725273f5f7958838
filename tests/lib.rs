//! Helpers for Astrid's end-to-end tests: finding the `trainer` binary, running it, and
//! the fixtures.

use std::path::PathBuf;
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

/// A directory for a test's outputs (screenshots, generated bundles): `<target>/tmp/<name>`.
pub fn output_dir(name: &str) -> PathBuf {
    let target = profile_dir().parent().expect("<target>/<profile>").to_path_buf();
    let dir = target.join("tmp").join(name);
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
