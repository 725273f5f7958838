//! `trainer` used as a careless or hostile user would: every defect of the reliability
//! issue has a test here. Each checks the exit status, that the message names the cause,
//! that nothing panicked, and that files the tool did not create survive byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use astrid_e2e::{fixture, output_dir, trainer, trainer_bin};

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = output_dir("hostile").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "failed:\n{}", stderr(out));
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

/// The command failed with a message holding every needle, and did not panic.
fn refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a refusal, got success:\n{err}");
    assert_eq!(out.status.code(), Some(2), "exit status: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "'{needle}' not in:\n{err}");
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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

fn temporaries(dir: &Path) -> Vec<PathBuf> {
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

fn copy_dir(from: &Path, to: &Path) {
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
fn write_csv(path: &Path, rows: usize, flipped: bool) {
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
fn csv_run_args(out: &Path, csv: &Path, extra: &[&str]) -> Vec<String> {
    let defaults = [
        ("--suite", "test"),
        ("--epochs", "1"),
        ("--explain-n", "2"),
        ("--n-steps", "4"),
        ("--max-length", "24"),
        ("--vocab-size", "200"),
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

fn run(args: &[String]) -> Output {
    trainer(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

const SHARED_RUN: &[&str] = &[
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
fn finished_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("shared-run").join("run");
        let mut args = vec!["run", "--out", dir.to_str().unwrap()];
        args.extend_from_slice(SHARED_RUN);
        ok(&trainer(&args));
        dir
    })
}

fn export(run: &Path, to: &Path) -> Output {
    trainer(&["export", "--run", &s(run), "--to", &s(to)])
}

/// Defect 1: export deleted whatever was at --to.
#[test]
fn export_replaces_only_its_own_bundles() {
    let run = finished_run();
    let base = scratch("export-refuse");
    let run_files = snapshot(run);

    // A directory of the user's.
    let user = base.join("user");
    std::fs::create_dir_all(user.join("sub")).unwrap();
    std::fs::write(user.join("notes.txt"), b"my notes").unwrap();
    std::fs::write(user.join("sub/data.bin"), [0u8, 1, 2]).unwrap();
    let before = snapshot(&user);
    refused(
        &export(run, &user),
        &["not replaced", "notes.txt", "Nothing was written"],
    );
    assert_eq!(snapshot(&user), before);

    // The run itself, its parent, a directory inside it.
    refused(&export(run, run), &["the same as the run directory"]);
    refused(&export(run, run.parent().unwrap()), &["above the run directory"]);
    refused(&export(run, &run.join("bundle")), &["inside the run directory"]);
    assert!(!run.join("bundle").exists());
    assert_eq!(snapshot(run), run_files, "the run is untouched");

    // `.` in a directory of the user's.
    let dot = Command::new(trainer_bin())
        .args(["export", "--run", &s(run), "--to", "."])
        .current_dir(&user)
        .output()
        .unwrap();
    refused(&dot, &["current directory"]);
    assert_eq!(snapshot(&user), before);

    // A file, and a link.
    std::fs::write(base.join("file"), b"keep").unwrap();
    refused(&export(run, &base.join("file")), &["is a file"]);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&user, base.join("link")).unwrap();
        refused(&export(run, &base.join("link")), &["symbolic link"]);
        assert_eq!(snapshot(&user), before);
    }

    // An earlier bundle is replaced; one the user has added a file to is not.
    let bundle = base.join("bundle");
    ok(&export(run, &bundle));
    ok(&export(run, &bundle));
    std::fs::write(bundle.join("mine.txt"), b"mine").unwrap();
    std::fs::write(bundle.join("teacher_bert/extra.bin"), b"mine too").unwrap();
    refused(&export(run, &bundle), &["not part of the bundle", "mine.txt"]);
    assert_eq!(std::fs::read(bundle.join("mine.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(bundle.join("teacher_bert/extra.bin")).unwrap(),
        b"mine too"
    );

    // An empty directory is used.
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(&export(run, &empty));
    assert!(empty.join("manifest.json").exists());
    assert!(temporaries(&base).is_empty(), "{:?}", temporaries(&base));
}

/// Defect 8: a bundle without the teacher.
#[test]
fn export_needs_the_teacher() {
    let base = scratch("export-teacher");
    let run = base.join("run");
    copy_dir(finished_run(), &run);
    std::fs::remove_dir_all(run.join("models/teacher_bert")).unwrap();
    refused(
        &export(&run, &base.join("bundle")),
        &["no teacher model", "teacher_bert"],
    );
    assert!(!base.join("bundle").exists());
}

/// Defect 9 (export): a failure after staging began removes the staging directory, and a
/// staging directory of an export that was killed is removed by the next one.
#[test]
fn export_leaves_no_staging_behind() {
    let base = scratch("export-staging");
    let run = base.join("run");
    copy_dir(finished_run(), &run);
    let explanations = run.join("explanations/teacher_bert.jsonl");
    let saved = std::fs::read(&explanations).unwrap();
    std::fs::remove_file(&explanations).unwrap();
    refused(&export(&run, &base.join("bundle")), &["teacher_bert.jsonl"]);
    assert_eq!(temporaries(&base), Vec::<PathBuf>::new());
    assert!(!base.join("bundle").exists());

    std::fs::write(&explanations, saved).unwrap();
    // No process has pid 4000000000 (above Linux's pid_max): this one was killed.
    let stale = base.join(".bundle.partial-4000000000");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("manifest.json"), b"{").unwrap();
    let user_lookalike = base.join(".other.partial-4000000000");
    std::fs::create_dir_all(&user_lookalike).unwrap();
    ok(&export(&run, &base.join("bundle")));
    assert!(!stale.exists(), "the killed export's staging directory is removed");
    assert!(user_lookalike.exists(), "only the staging of this --to is touched");
}

/// Defects 2 and 3: a run directory is bound to its data and to every setting.
#[test]
fn a_run_resumes_only_with_the_same_data_and_settings() {
    let base = scratch("bound");
    let csv = base.join("cases.csv");
    let out = base.join("run");
    write_csv(&csv, 120, false);
    ok(&run(&csv_run_args(&out, &csv, &[])));
    let after_first = snapshot(&out);

    // Every label flipped in the same file.
    write_csv(&csv, 120, true);
    refused(
        &run(&csv_run_args(&out, &csv, &[])),
        &[
            "other settings",
            "data.sha256",
            "content changed",
            "Nothing was written",
        ],
    );
    // Fewer rows.
    write_csv(&csv, 110, false);
    refused(&run(&csv_run_args(&out, &csv, &[])), &["data.sha256"]);
    assert_eq!(snapshot(&out), after_first, "a refused rerun writes nothing");

    // A hand-edited split.json that does not fit the data: an error, not a panic.
    write_csv(&csv, 120, false);
    let split_path = out.join("split.json");
    let split = std::fs::read(&split_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_slice(&split).unwrap();
    edited["test"].as_array_mut().unwrap().push(serde_json::json!(100_000));
    std::fs::write(&split_path, edited.to_string()).unwrap();
    refused(
        &run(&csv_run_args(&out, &csv, &[])),
        &["split.json", "does not fit the data"],
    );
    std::fs::write(&split_path, split).unwrap();

    // Training settings that were not part of the fingerprint before, each named old → new.
    refused(
        &run(&csv_run_args(
            &out,
            &csv,
            &[
                "--patience",
                "3",
                "--weight-decay",
                "0.1",
                "--warmup",
                "0.2",
                "--clip",
                "0.5",
                "--distill",
            ],
        )),
        &[
            "training.patience: 2 → 3",
            "training.weight_decay: 0.01 → 0.1",
            "training.warmup: 0.1 → 0.2",
            "training.clip: 1.0 → 0.5",
            "training.distill.alpha: (none) → 0.5",
        ],
    );
    // A default given explicitly is the default; decision thresholds may change freely.
    let again = run(&csv_run_args(
        &out,
        &csv,
        &["--lr", "5e-4", "--patience", "2", "--min-similarity", "0.25"],
    ));
    ok(&again);
    assert!(stderr(&again).contains("resuming"), "{}", stderr(&again));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["thresholds"]["min_similarity"], 0.25);
    assert_eq!(results["settings"]["training"]["patience"], 2);
    assert_eq!(results["settings"]["training"]["weight_decay"], 0.01);
    assert_eq!(results["settings"]["data"]["sha256"].as_str().unwrap().len(), 64);
}

/// Defect 5: a rejected command writes nothing, so the corrected one is not refused.
#[test]
fn a_rejected_command_leaves_no_trace() {
    let base = scratch("rejected");
    let csv = base.join("cases.csv");
    write_csv(&csv, 120, false);
    let out = base.join("run");
    let empty = base.join("empty.csv");
    std::fs::write(&empty, b"").unwrap();
    let tabs = base.join("tabs.csv");
    std::fs::write(&tabs, "text\tlabel\na b c\twin\nd e f\tlose\n").unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--suite", "foo"], vec!["invalid value 'foo' for '--suite"]),
        (vec!["--epochs", "0"], vec!["--epochs 0"]),
        (vec!["--batch-size", "0"], vec!["--batch-size 0"]),
        (vec!["--explain-n", "0"], vec!["--explain-n 0"]),
        (vec!["--n-steps", "1000000"], vec!["--n-steps 1000000", "1 to 10000"]),
        (vec!["--min-accuracy", "1.5"], vec!["--min-accuracy 1.5"]),
        (vec!["--lr=-1"], vec!["--lr -1"]),
        (vec!["--sample", "5"], vec!["at least 10", "--sample"]),
        (
            vec!["--init", "teacher_bert=/no/such/checkpoint"],
            vec!["no such checkpoint directory"],
        ),
        (vec!["--init", "nobody=/tmp"], vec!["unknown role 'nobody'"]),
    ];
    for (extra, needles) in cases {
        refused(&run(&csv_run_args(&out, &csv, &extra)), &needles);
        assert!(!out.exists(), "{extra:?} created {}", out.display());
    }
    for (data, needles) in [
        (&empty, vec!["the file is empty"]),
        (&tabs, vec!["is this a TSV file? Rename it to .tsv"]),
        (&base, vec!["is a directory"]),
    ] {
        refused(&run(&csv_run_args(&out, data, &[])), &needles);
        assert!(!out.exists());
    }
    // --out a directory of the user's, or a file.
    let user = base.join("user");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("thesis.tex"), b"chapter one").unwrap();
    refused(
        &run(&csv_run_args(&user, &csv, &[])),
        &["not an Astrid run", "thesis.tex"],
    );
    assert_eq!(list(&user), ["thesis.tex"]);
    refused(&run(&csv_run_args(&user.join("thesis.tex"), &csv, &[])), &["is a file"]);
    // The corrected command runs.
    ok(&run(&csv_run_args(&out, &csv, &[])));
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Defect 6: IG's work is bounded.
#[test]
fn ig_steps_are_bounded_and_memory_is_batched() {
    let model = fixture("tiny_bert");
    let refused_run = trainer(&[
        "explain",
        "--model",
        &s(&model),
        "--text",
        "the court held",
        "--n-steps",
        "1000000",
    ]);
    refused(&refused_run, &["--n-steps 1000000", "1 to 10000"]);
    // Many steps with the default internal batch: it finishes, and converges.
    let out = trainer(&[
        "explain",
        "--model",
        &s(&model),
        "--text",
        "the court held that the search was unlawful",
        "--n-steps",
        "2000",
        "--json",
    ]);
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(e["convergence_delta"].as_f64().unwrap().abs() < 1e-3, "{e}");
}

/// Puts `value` into element 1 of the first F32 tensor (by name) of a safetensors file.
fn poison(weights: &Path, value: f32) -> String {
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

/// Defect 7: NaN weights gave a prediction.
#[test]
fn broken_weights_are_refused_with_the_tensor_named() {
    let base = scratch("nan");
    for (value, shown) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf")] {
        let model = base.join(shown);
        copy_dir(&fixture("tiny_bert"), &model);
        let tensor = poison(&model.join("model.safetensors"), value);
        let out = trainer(&["explain", "--model", &s(&model), "--text", "the court held", "--json"]);
        refused(
            &out,
            &[&format!("tensor '{tensor}' holds {shown}"), "model.safetensors"],
        );
        assert!(out.stdout.is_empty(), "no result is printed");
    }
}

/// Defect 9 (run): what a killed run left is removed by the next one; the user's files stay.
#[test]
fn a_rerun_removes_what_a_killed_run_left() {
    let base = scratch("stale");
    let run_dir = base.join("run");
    copy_dir(finished_run(), &run_dir);
    let planted = [
        run_dir.join(".results.json.tmp-4000000000"),
        run_dir.join("checkpoints/teacher_bert/.state.json.tmp-4000000000"),
        run_dir.join("models/.tinybert.partial-4000000000/model.safetensors"),
    ];
    for path in &planted {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"half").unwrap();
    }
    std::fs::write(run_dir.join("my-notes.md"), b"notes").unwrap();
    let mut args = vec!["run", "--out", run_dir.to_str().unwrap()];
    args.extend_from_slice(SHARED_RUN);
    let out = trainer(&args);
    ok(&out);
    assert!(stderr(&out).contains("removed 3 temporary file(s)"), "{}", stderr(&out));
    assert_eq!(temporaries(&run_dir), Vec::<PathBuf>::new());
    assert_eq!(std::fs::read(run_dir.join("my-notes.md")).unwrap(), b"notes");
}

fn spawn(args: &[String]) -> std::process::Child {
    Command::new(trainer_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path, child: &mut std::process::Child) {
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

/// Defect 4 and the kill tests: one run per directory; a killed run resumes, but not on
/// changed data.
#[test]
fn one_run_per_directory_and_a_killed_run_resumes_only_on_the_same_data() {
    let base = scratch("lock");
    let csv = base.join("cases.csv");
    write_csv(&csv, 300, false);
    let out = base.join("run");
    let args = csv_run_args(&out, &csv, &["--epochs", "3", "--patience", "5"]);
    let mut first = spawn(&args);
    wait_for(&out.join("checkpoints/teacher_bert/state.json"), &mut first);
    let second = run(&args);
    refused(
        &second,
        &[
            "in use by trainer process",
            &first.id().to_string(),
            "wait for that run",
        ],
    );
    first.kill().unwrap(); // SIGKILL: the OS releases the lock.
    first.wait().unwrap();

    write_csv(&csv, 300, true);
    refused(&run(&args), &["data.sha256", "content changed"]);
    write_csv(&csv, 300, false);
    let resumed = run(&args);
    ok(&resumed);
    let err = stderr(&resumed);
    assert!(err.contains("resuming"), "{err}");
    assert!(
        !err.contains("XDG_RUNTIME_DIR"),
        "a CPU run started a GPU driver:\n{err}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoints/distilbert/state.json")).unwrap()).unwrap();
    assert_eq!(state["epochs_done"], 3);
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
}

/// A run killed while it explains resumes and explains every model.
#[test]
fn a_run_killed_while_explaining_resumes() {
    let base = scratch("kill-explain");
    let csv = base.join("cases.csv");
    write_csv(&csv, 200, false);
    let out = base.join("run");
    let args = csv_run_args(&out, &csv, &["--explain-n", "20", "--n-steps", "300"]);
    let mut child = spawn(&args);
    wait_for(&out.join("explanations/teacher_bert.jsonl"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !out.join("results.json").exists(),
        "the run finished before it was killed"
    );
    ok(&run(&args));
    for role in [
        "teacher_bert",
        "distilbert",
        "custom_6x512",
        "tinybert",
        "minilm",
        "custom_2x384",
    ] {
        let text = std::fs::read_to_string(out.join(format!("explanations/{role}.jsonl"))).unwrap();
        assert_eq!(text.lines().count(), 20, "{role}");
    }
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
}

/// Defect 10: long texts from a file or standard input.
#[test]
fn explain_reads_long_texts_from_a_file_or_stdin() {
    let base = scratch("text-file");
    let model = fixture("tiny_bert");
    let long = "the court held that the search was unlawful. ".repeat(25_000);
    assert!(long.len() > 1_000_000);
    let file = base.join("long.txt");
    std::fs::write(&file, &long).unwrap();
    let out = trainer(&[
        "explain",
        "--model",
        &s(&model),
        "--text-file",
        &s(&file),
        "--n-steps",
        "4",
        "--json",
    ]);
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["truncated"], true);

    let mut child = Command::new(trainer_bin())
        .args([
            "explain",
            "--model",
            &s(&model),
            "--text-file",
            "-",
            "--n-steps",
            "4",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"the court held").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(e["tokens"].as_array().unwrap().len() >= 3);

    refused(
        &trainer(&[
            "explain",
            "--model",
            &s(&model),
            "--text",
            "a",
            "--text-file",
            &s(&file),
        ]),
        &["cannot be used with"],
    );
    refused(
        &trainer(&["explain", "--model", &s(&model), "--text-file", &s(&base)]),
        &["is a directory"],
    );
    let latin1 = base.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9").unwrap();
    refused(
        &trainer(&["explain", "--model", &s(&model), "--text-file", &s(&latin1)]),
        &["not UTF-8", "byte 4"],
    );
}
