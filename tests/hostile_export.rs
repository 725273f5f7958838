//! `trainer export` and `trainer explain` used as a careless or hostile user would: each test covers a defect of
//! the reliability issue, checks the exit status, that the message names the cause, that
//! nothing panicked, and that files the tool did not create survive byte for byte.

#[path = "hostile_support.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use astrid_e2e::{fixture, trainer, trainer_bin};
use support::*;

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

/// A results.json edited to name a model "../x" does not make export write outside its bundle.
#[test]
fn export_refuses_model_names_that_are_not_plain() {
    let base = scratch("export-names");
    let run = base.join("run");
    copy_dir(finished_run(), &run);
    let path = run.join("results.json");
    let mut results: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    results["models"][1]["name"] = "../escaped".into();
    std::fs::write(&path, serde_json::to_vec(&results).unwrap()).unwrap();
    refused(
        &export(&run, &base.join("bundle")),
        &[
            "model name '../escaped' is not a plain directory name",
            "Nothing was written",
        ],
    );
    assert!(!base.join("bundle").exists() && !base.join("escaped").exists());
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
