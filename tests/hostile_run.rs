//! `trainer run` used as a careless or hostile user would: each test covers a defect of
//! the reliability issue, checks the exit status, that the message names the cause, that
//! nothing panicked, and that files the tool did not create survive byte for byte.

#[path = "hostile_support.rs"]
mod support;

use std::path::PathBuf;

use astrid_e2e::trainer;
use support::*;

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
    let results: astrid::schema::RunResults =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results.thresholds.min_similarity, 0.25);
    assert_eq!(
        serde_json::to_value(&results.settings).unwrap()["training"]["patience"],
        2
    );
    assert_eq!(
        serde_json::to_value(&results.settings).unwrap()["training"]["weight_decay"],
        0.01
    );
    assert_eq!(
        serde_json::to_value(&results.settings).unwrap()["data"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
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
    // The suite, the teacher's retrained copies and the untrained model (the calibration).
    for role in [
        "teacher_bert",
        "distilbert",
        "custom_6x512",
        "tinybert",
        "minilm",
        "custom_2x384",
        "reference_1",
        "reference_2",
        "untrained_teacher",
    ] {
        let text = std::fs::read_to_string(out.join(format!("explanations/{role}.jsonl"))).unwrap();
        assert_eq!(text.lines().count(), 20, "{role}");
    }
    let results: astrid::schema::RunResults =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let calibration = results.calibration.expect("calibrated");
    assert_eq!(calibration.reference_seeds.len(), 2);
    // The copies finished before the kill: the resumed run did not train them again.
    let retrained = results
        .stage_seconds
        .iter()
        .find(|(stage, _)| stage.starts_with("training: the teacher's retrained copies"))
        .unwrap();
    assert!(retrained.1 < 5.0, "{retrained:?}");
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
}
