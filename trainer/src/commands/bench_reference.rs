//! The PyTorch + Captum reference (the project's `tests/reference/bench.py`) run from `trainer
//! bench --against`, one preset at a time, and the figures read back from its results file.
//!
//! Why one preset at a time: a shared machine's speed drifts within minutes (other tenants,
//! clocks), so two whole suites run one after the other would compare two machines.
//! Measuring the same preset with both, back to back and in alternating order, over several
//! rounds, and taking the median of the per-round ratios, compares like with like.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

/// What one measurement of one preset gives: IG seconds per explanation, forward and
/// training sequences per second (NaN where not measured).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub ig_seconds: f64,
    pub forward_seqs: f64,
    pub train_seqs: f64,
}

/// The reference's model name for each of Astrid's presets (`anchor_models.CONFIGS`).
pub fn reference_name(preset: &str) -> Option<&'static str> {
    Some(match preset {
        "teacher_bert" => "Teacher_BERT",
        "distilbert" => "Step1_DistilBERT",
        "custom_6x512" => "Step2_Custom6x512",
        "tinybert" => "Step3_TinyBERT",
        "minilm" => "Step4_MiniLM",
        "custom_2x384" => "Step5_Custom2x384",
        _ => return None,
    })
}

/// `bench.py`'s results file, as far as it is read here (its writer is `bench.py`'s `main`;
/// `make_table.py` reads the same fields).
#[derive(Deserialize)]
struct ResultsFile {
    models: Vec<ModelResults>,
}

#[derive(Deserialize)]
struct ModelResults {
    model: String,
    /// IG per internal batch size ("25", or "none" when unset).
    #[serde(default)]
    ig: HashMap<String, Timing>,
    forward_b32: Option<Throughput>,
    train_b16: Option<Throughput>,
}

#[derive(Deserialize)]
struct Timing {
    median_s: f64,
}

#[derive(Deserialize)]
struct Throughput {
    seq_per_s: f64,
}

/// How to run the reference: its interpreter and script, and the settings it must share with
/// Astrid's measurement.
#[derive(Debug)]
pub struct Reference {
    pub python: PathBuf,
    pub script: PathBuf,
    pub n_steps: usize,
    pub internal_batch_size: usize,
    pub reps: usize,
    pub threads: usize,
    pub train: bool,
}

impl Reference {
    /// Checks that the script is there, before anything is measured.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.script.is_file() {
            bail!(
                "--against {}: no such file (give the reference's bench.py, e.g. the project's tests/reference/bench.py, \
                 which --against without a value runs from the repository's root)",
                self.script.display()
            );
        }
        Ok(())
    }

    /// Runs the reference for `preset` (one model, no SGEMM block, no waiting for quiet) and
    /// reads its figures; the results go to a directory of their own, removed afterwards.
    pub fn measure(&self, preset: &str) -> anyhow::Result<Figures> {
        let name = reference_name(preset).with_context(|| format!("the reference has no model for preset {preset}"))?;
        let out = scratch_directory()?;
        let reps = self.reps.max(1).to_string();
        let parts = if self.train { "ig,forward,train" } else { "ig,forward" };
        let mut command = Command::new(&self.python);
        command
            .arg(&self.script)
            .args(["--models", name, "--parts", parts, "--no-gemm"]);
        command.args(["--quiet-wait", "0", "--ibs", &self.internal_batch_size.to_string()]);
        command.args([
            "--n-steps",
            &self.n_steps.to_string(),
            "--threads",
            &self.threads.to_string(),
        ]);
        for flag in ["--reps", "--teacher-reps", "--teacher-ig-reps"] {
            command.args([flag, &reps]);
        }
        command.arg("--out").arg(&out);
        let result = run_and_read(command, &out, name, self.internal_batch_size);
        // The directory is this run's own scratch space; failing to remove it loses nothing.
        let _ = std::fs::remove_dir_all(&out);
        result
    }
}

/// Runs `command` and reads the one results file it wrote into `out`.
fn run_and_read(mut command: Command, out: &Path, name: &str, internal_batch_size: usize) -> anyhow::Result<Figures> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("could not start the reference ({shown}); give its Python with --python"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("the reference failed ({}): {shown}\n{}", output.status, tail.join("\n"));
    }
    let results: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            file.starts_with("bench_") && file.ends_with(".json")
        })
        .collect();
    let [file] = results.as_slice() else {
        bail!(
            "the reference wrote {} results files into {}, not one",
            results.len(),
            out.display()
        );
    };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    figures_from_results(&text, name, internal_batch_size).with_context(|| format!("in {}", file.display()))
}

/// The figures for model `name` in a results file's text.
fn figures_from_results(text: &str, name: &str, internal_batch_size: usize) -> anyhow::Result<Figures> {
    let results: ResultsFile = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "not a bench.py results file: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let model = results
        .models
        .iter()
        .find(|m| m.model == name)
        .with_context(|| format!("no results for model {name}"))?;
    let key = internal_batch_size.to_string();
    let ig = model
        .ig
        .get(&key)
        .with_context(|| format!("{name}: no IG timing for internal batch size {key} (field ig.\"{key}\")"))?;
    Ok(Figures {
        ig_seconds: ig.median_s,
        forward_seqs: model.forward_b32.as_ref().map_or(f64::NAN, |f| f.seq_per_s),
        train_seqs: model.train_b16.as_ref().map_or(f64::NAN, |t| t.seq_per_s),
    })
}

/// A new empty directory under the system's temporary directory, named for this process.
fn scratch_directory() -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    new_directory(&std::env::temp_dir().join(format!("astrid-reference-{}-{stamp}", std::process::id())))
}

/// Creates `path`, which must not exist yet: the directory is then this run's own, and
/// [`Reference::measure`] may remove it whole afterwards. One that exists (anyone's) is an
/// error and is left as it is.
fn new_directory(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir(path).with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    Ok(path.to_path_buf())
}

/// One preset's paired figures over the rounds: Astrid's, the reference's, and the ratios
/// that say how Astrid compares (IG: Astrid's time over Captum's, lower is better;
/// throughputs: Astrid's over PyTorch's, higher is better).
#[derive(Default)]
pub struct Paired {
    pub rounds: Vec<(Figures, Figures)>,
}

impl Paired {
    /// Per round: (IG time ratio, forward speed ratio, training speed ratio).
    pub fn ratios(&self) -> Vec<[f64; 3]> {
        self.rounds
            .iter()
            .map(|(a, r)| {
                [
                    a.ig_seconds / r.ig_seconds,
                    a.forward_seqs / r.forward_seqs,
                    a.train_seqs / r.train_seqs,
                ]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_has_a_reference_model() {
        for preset in astrid::config::PRESET_NAMES {
            assert!(reference_name(preset).is_some(), "{preset}");
        }
        assert_eq!(reference_name("tiny_test"), None);
    }

    const RESULTS: &str = r#"{"started_utc": "x", "models": [{"model": "Step4_MiniLM",
        "ig": {"25": {"median_s": 3.0, "times_s": [3.0]}, "none": {"median_s": 4.0}},
        "forward_b32": {"median_s": 1.0, "seq_per_s": 32.0}, "train_b16": {"seq_per_s": 6.5}}]}"#;

    #[test]
    fn the_figures_are_read_from_the_results_file() {
        let figures = figures_from_results(RESULTS, "Step4_MiniLM", 25).expect("figures");
        assert_eq!(
            figures,
            Figures {
                ig_seconds: 3.0,
                forward_seqs: 32.0,
                train_seqs: 6.5
            }
        );
        let missing = figures_from_results(RESULTS, "Step4_MiniLM", 10).expect_err("no ibs 10");
        assert!(format!("{missing:#}").contains("ig.\"10\""), "{missing:#}");
        let other = figures_from_results(RESULTS, "Teacher_BERT", 25).expect_err("another model");
        assert!(
            format!("{other:#}").contains("no results for model Teacher_BERT"),
            "{other:#}"
        );
        let broken = figures_from_results("{\"models\": [", "Step4_MiniLM", 25).expect_err("broken");
        assert!(format!("{broken:#}").contains("line 1"), "{broken:#}");
    }

    /// The reference is run with Astrid's settings and its results read back: here a stand-in
    /// script (run by sh) that writes the file where `--out` says, with the arguments it got.
    #[test]
    fn the_reference_is_run_with_the_shared_settings_and_its_file_read() {
        let dir = scratch_directory().expect("scratch");
        let script = dir.join("bench.sh");
        std::fs::write(
            &script,
            r#"echo "$*" > "$(dirname "$0")/args.txt"; out=""
while [ $# -gt 0 ]; do [ "$1" = "--out" ] && out="$2"; shift; done
echo '{"models": [{"model": "Step5_Custom2x384", "ig": {"25": {"median_s": 0.5}}, "forward_b32": {"seq_per_s": 200}}]}' > "$out/bench_1.json"
"#,
        )
        .expect("script");
        let reference = Reference {
            python: PathBuf::from("sh"),
            script: script.clone(),
            n_steps: 50,
            internal_batch_size: 25,
            reps: 3,
            threads: 2,
            train: false,
        };
        reference.check().expect("the script is there");
        let figures = reference.measure("custom_2x384").expect("figures");
        assert_eq!(figures.ig_seconds, 0.5);
        assert_eq!(figures.forward_seqs, 200.0);
        assert!(figures.train_seqs.is_nan(), "training not asked for");
        let args = std::fs::read_to_string(dir.join("args.txt")).expect("the arguments");
        for expected in [
            "--models Step5_Custom2x384",
            "--parts ig,forward ",
            "--ibs 25",
            "--n-steps 50",
            "--threads 2",
            "--reps 3",
            "--teacher-ig-reps 3",
            "--no-gemm",
        ] {
            assert!(args.contains(expected), "{expected} not in {args}");
        }

        std::fs::write(&script, "echo 'torch is missing' >&2; exit 3\n").expect("script");
        let failed = reference.measure("custom_2x384").expect_err("a failing reference");
        assert!(format!("{failed:#}").contains("torch is missing"), "{failed:#}");
        std::fs::write(&script, "exit 0\n").expect("script");
        let silent = reference.measure("custom_2x384").expect_err("no results file");
        assert!(format!("{silent:#}").contains("0 results files"), "{silent:#}");

        let no_python = Reference {
            python: dir.join("no-such-python"),
            ..reference
        };
        let unstarted = no_python.measure("custom_2x384").expect_err("no interpreter");
        assert!(format!("{unstarted:#}").contains("--python"), "{unstarted:#}");
        let absent = Reference {
            script: dir.join("absent.py"),
            ..no_python
        };
        assert!(format!("{:#}", absent.check().expect_err("absent")).contains("no such file"));
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    /// Only a directory the run created itself is ever removed: a scratch path that already
    /// exists, with someone's file in it, is refused and left intact.
    #[test]
    fn an_existing_directory_is_never_taken_as_scratch_space() {
        let parent = scratch_directory().expect("scratch");
        let theirs = parent.join("theirs");
        std::fs::create_dir(&theirs).expect("a user's directory");
        std::fs::write(theirs.join("notes.txt"), "keep me").expect("a user's file");
        let refused = new_directory(&theirs).expect_err("an existing directory");
        assert!(format!("{refused:#}").contains("must not exist"), "{refused:#}");
        assert_eq!(
            std::fs::read_to_string(theirs.join("notes.txt")).expect("intact"),
            "keep me"
        );
        let fresh = new_directory(&parent.join("fresh")).expect("a new directory");
        assert!(fresh.is_dir() && std::fs::read_dir(&fresh).expect("listing").next().is_none());
        std::fs::remove_dir_all(parent).expect("cleanup");
    }

    #[test]
    fn ratios_compare_each_round_with_itself() {
        let figures = |ig, forward, train| Figures {
            ig_seconds: ig,
            forward_seqs: forward,
            train_seqs: train,
        };
        let paired = Paired {
            rounds: vec![
                (figures(2.0, 30.0, 8.0), figures(4.0, 20.0, 4.0)),
                (figures(3.0, 20.0, 4.0), figures(3.0, 40.0, 8.0)),
            ],
        };
        assert_eq!(paired.ratios(), vec![[0.5, 1.5, 2.0], [1.0, 0.5, 0.5]]);
    }
}
