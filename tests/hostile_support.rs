//! Helpers of the hostile-input tests (`hostile_export.rs`, `hostile_run.rs`): scratch
//! directories, refusals that must name their cause, snapshots that prove files survived,
//! small CSVs and one finished run to export. Each test binary uses part of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use astrid_e2e::{output_dir, trainer, trainer_bin};

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = output_dir("hostile").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn s(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn ok(out: &Output) {
    assert!(out.status.success(), "failed:\n{}", stderr(out));
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

/// The command failed with a message holding every needle, and did not panic.
pub fn refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a refusal, got success:\n{err}");
    assert_eq!(out.status.code(), Some(2), "exit status: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "'{needle}' not in:\n{err}");
    }
}

/// Every file under `dir` with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

pub fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.contains(".tmp-") || name.contains(".partial-") || name.contains(".old-") {
                found.push(path.clone());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A labelled CSV whose label follows one word, so tiny models learn it in an epoch.
pub fn write_csv(path: &Path, rows: usize, flipped: bool) {
    let mut text = String::from("text,label\n");
    for i in 0..rows {
        let wins = i % 2 == 0;
        let who = ["officer", "agency", "state", "company"][i % 4];
        let what = if wins { "violated" } else { "followed" };
        let label = if wins != flipped { "win" } else { "lose" };
        text.push_str(&format!("case {i} held that the {who} {what} the rule,{label}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// `trainer run` on a CSV at test size; an option in `extra` replaces its default here.
pub fn csv_run_args(out: &Path, csv: &Path, extra: &[&str]) -> Vec<String> {
    let defaults = [
        ("--suite", "test"),
        ("--epochs", "1"),
        ("--explain-n", "2"),
        ("--n-steps", "4"),
        ("--max-length", "24"),
        ("--vocab-size", "200"),
        // Tiny models' validation scores scatter: every retrained copy counts.
        ("--copy-tolerance", "1"),
    ];
    let mut args: Vec<String> = [
        "run",
        "--out",
        &s(out),
        "--data",
        &s(csv),
        "--text-col",
        "text",
        "--label-col",
        "label",
        "--quiet",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for (flag, value) in defaults {
        if !extra.iter().any(|e| *e == flag || e.starts_with(&format!("{flag}="))) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

pub fn run(args: &[String]) -> Output {
    trainer(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub const SHARED_RUN: &[&str] = &[
    "--suite",
    "test",
    "--corpus-size",
    "200",
    "--epochs",
    "1",
    "--explain-n",
    "3",
    "--n-steps",
    "4",
    "--max-length",
    "32",
    "--quiet",
];

/// One finished run on the embedded corpus, shared by the tests that need one (read only:
/// a test that changes it works on a copy).
pub fn finished_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("shared-run").join("run");
        let mut args = vec!["run", "--out", dir.to_str().unwrap()];
        args.extend_from_slice(SHARED_RUN);
        ok(&trainer(&args));
        dir
    })
}

pub fn export(run: &Path, to: &Path) -> Output {
    trainer(&["export", "--run", &s(run), "--to", &s(to)])
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Puts `value` into element 1 of the first F32 tensor (by name) of a safetensors file.
pub fn poison(weights: &Path, value: f32) -> String {
    let mut bytes = std::fs::read(weights).unwrap();
    let header_len = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..header_len]).unwrap();
    let (name, info) = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| *k != "__metadata__" && v["dtype"] == "F32")
        .min_by_key(|(k, _)| k.to_string())
        .unwrap();
    let start = header_len + info["data_offsets"][0].as_u64().unwrap() as usize + 4;
    bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(weights, bytes).unwrap();
    name.clone()
}

pub fn spawn(args: &[String]) -> std::process::Child {
    Command::new(trainer_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn wait_for(path: &Path, child: &mut std::process::Child) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{} never appeared",
            path.display()
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before {} appeared", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
