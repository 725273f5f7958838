//! The run's report: what was decided and why, the measures behind it, an
//! accuracy-vs-similarity plot sized by parameters, and token attributions of a few texts
//! for all models side by side. One [`model::Report`] is built from the results and
//! rendered as `report.md` and as the self-contained `report.html`; [`table`] is the
//! terminal's short form.

mod evidence;
mod figures;
mod generalisation;
pub mod model;
mod ranking;

use std::fmt::Write as _;
use std::path::Path;

use astrid::files::write_atomic;
use astrid::format::{self, optional};
use astrid::schema::{Estimate, ModelResult, RunResults, TextAttribution};

use model::{Block, Report};

fn opt(v: Option<f64>) -> String {
    optional(v, 3)
}

fn est(e: &Estimate) -> String {
    if e.mean.is_nan() {
        return "—".into();
    }
    format!("{:.3} [{:.3}, {:.3}]", e.mean, e.ci[0], e.ci[1])
}

fn calibrated(r: &ModelResult) -> String {
    match (r.calibrated_mean, r.calibrated_ci) {
        (Some(m), Some([lo, hi])) => format!("{m:.2} [{lo:.2}, {hi:.2}]"),
        _ => "—".into(),
    }
}

fn params(n: usize) -> String {
    format::params(n as u64)
}

/// The decision table as plain text (printed at the end of a run).
pub fn table(run: &RunResults) -> String {
    let (results, recommendation) = (&run.models, &run.recommendation);
    // The model column is as wide as the longest name (`custom_6x512-align`).
    let width = results
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(14);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$} {:>8} {:>7} {:>10} {:>18} {:>8} {:>9}  verdict",
        "model", "accuracy", "F1", "similarity", "95% CI", "spearman", "params"
    );
    for r in results {
        let ci = r
            .similarity_ci
            .map_or("—".to_string(), |[a, b]| format!("[{a:.3}, {b:.3}]"));
        let _ = writeln!(
            s,
            "{:<width$} {:>8.3} {:>7.3} {:>10} {:>18} {:>8} {:>9}  {}",
            r.name,
            r.accuracy,
            r.f1,
            opt(r.similarity_mean),
            ci,
            opt(r.spearman_mean),
            params(r.params),
            r.verdict
        );
    }
    s.push('\n');
    s.push_str(recommendation);
    s
}

/// The whole report: every section in order, figures included.
pub fn build(run: &RunResults, attributions: &[Vec<TextAttribution>], samples: &[usize]) -> Report {
    let mut report = Report::default();
    report.extend(ranking::ranking(run));
    if let Some(c) = &run.calibration {
        report.extend(evidence::calibration(run, c));
    }
    report.extend(generalisation::section(run));
    report.extend(ranking::objectives_compared(run));
    report.extend(ranking::models(run));
    report.extend(ranking::agreement_at_the_top(run));
    report.extend(ranking::signal_per_text(run));
    report.extend(evidence::faithfulness(run));
    report.extend(evidence::baselines(run));
    report.extend(ranking::planted_signal(run));
    report.extend(ranking::time(run));
    report.push(Block::Heading("Accuracy against similarity".into()));
    report.push(Block::Html(figures::plot_svg(
        &run.models,
        run.thresholds.min_accuracy,
        run.thresholds.min_similarity,
        run.calibration.as_ref(),
    )));
    report.push(Block::MarkdownOnly(vec![Block::Paragraph(
        "The plot and the coloured token heatmaps are in report.html.".into(),
    )]));
    report.push(Block::Heading("Examples".into()));
    report.push(Block::MarkdownOnly(figures::heatmaps_md(
        &run.models,
        attributions,
        samples,
    )));
    report.push(Block::Html(figures::heatmaps_html(
        &run.models,
        attributions,
        samples,
        &run.data.labels,
    )));
    report
}

/// Writes report.md and report.html into `out`.
pub fn write(
    out: &Path,
    run: &RunResults,
    attributions: &[Vec<TextAttribution>],
    samples: &[usize],
) -> anyhow::Result<()> {
    let report = build(run, attributions, samples);
    write_atomic(&out.join("report.md"), report.markdown().as_bytes())?;
    write_atomic(&out.join("report.html"), report.html().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use astrid::schema::{Calibration, Objective, Role, Verdict};

    use super::*;

    /// A run whose teacher disagrees with its retrained copies, with aligned students.
    fn unreliable_run() -> RunResults {
        let mut run = RunResults::default();
        run.data.labels = vec!["lose".into(), "win".into()];
        run.data.class_counts = vec![5, 5];
        run.models = vec![
            ModelResult {
                name: "teacher_bert".into(),
                role: Role::Teacher,
                objective: Some(Objective::Independent),
                verdict: Verdict::Teacher,
                ..ModelResult::default()
            },
            ModelResult {
                name: "tinybert-align".into(),
                role: Role::Student,
                objective: Some(Objective::Align),
                similarity_mean: Some(0.4),
                verdict: Verdict::Drop(vec!["similarity 0.400 < 0.8".into()]),
                ..ModelResult::default()
            },
        ];
        run.calibration = Some(Calibration {
            reference_seeds: vec![107, 108],
            teacher_warnings: vec!["its retrained copies agree with each other more than with it".into()],
            ..Calibration::default()
        });
        run.recommendation = "No student passes the rule.".into();
        run
    }

    #[test]
    fn the_html_carries_the_warnings_and_lists_the_markdown_has() {
        let report = build(&unreliable_run(), &[], &[]);
        let (md, html) = (report.markdown(), report.html());
        let warning = "its retrained copies agree with each other more than with it";
        assert!(
            md.contains("**The reference is unreliable**:") && md.contains(&format!("- {warning}")),
            "{md}"
        );
        assert!(html.contains("<strong>The reference is unreliable</strong>"), "{html}");
        assert!(html.contains(&format!("<li>{warning}</li>")), "{html}");
        // The list of training objectives reaches the page too.
        assert!(
            md.contains("- **align**") && html.contains("<li><strong>align</strong>"),
            "{html}"
        );
        // Every heading of the Markdown is a heading of the page, but the Markdown-only note.
        for line in md.lines().filter_map(|l| l.strip_prefix("## ")) {
            assert!(
                html.contains(&format!("<h2>{}</h2>", model::inline(line))),
                "{line} missing"
            );
        }
        assert!(!html.contains("are in report.html") && html.contains("<svg"));
    }

    #[test]
    fn the_terminal_table_stays_aligned_with_long_names() {
        let table = table(&unreliable_run());
        let lines: Vec<&str> = table.lines().take(3).collect();
        let column = |line: &str| line.find(" 0.000").or_else(|| line.find("accuracy"));
        let at = lines[0].find("accuracy").unwrap() + "accuracy".len();
        for line in &lines[1..] {
            let end = column(line).map(|i| i + " 0.000".len()).unwrap();
            assert_eq!(end, at, "{table}");
        }
    }
}
