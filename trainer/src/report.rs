//! The run's report: the ranking table, an accuracy-vs-similarity plot sized by parameters,
//! and token heatmaps of a few texts for all models side by side, as Markdown and as one
//! self-contained HTML page.

use std::fmt::Write as _;
use std::path::Path;

use astrid::files::write_atomic;
use astrid::format::{self, optional};
use astrid::heat::{colour, row_scale};
use astrid::schema::results::{MIN_DROP, MIN_SIGNAL};
use astrid::schema::{
    Agreements, Calibration, Estimate, ModelResult, Role, RunResults, SimilarityMode, TextAttribution,
};

use crate::align::Objective;

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
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<14} {:>8} {:>7} {:>10} {:>18} {:>8} {:>9}  verdict",
        "model", "accuracy", "F1", "similarity", "95% CI", "spearman", "params"
    );
    for r in results {
        let ci = r
            .similarity_ci
            .map_or("—".to_string(), |[a, b]| format!("[{a:.3}, {b:.3}]"));
        let _ = writeln!(
            s,
            "{:<14} {:>8.3} {:>7.3} {:>10} {:>18} {:>8} {:>9}  {}",
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

fn escape(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).to_string()
}

/// With more than one training objective (`--training a,b,…`): each role's students side by
/// side, so the effect of the objective is read off one table.
fn objectives_compared_md(run: &RunResults) -> String {
    let objectives: Vec<Objective> =
        serde_json::from_value(run.settings["training"]["objectives"].clone()).unwrap_or_default();
    if objectives.len() < 2 {
        return String::new();
    }
    let mut md = String::from(
        "\n## Training objectives compared\n\nEach role trained once per objective from the same seed and starting point. \
         Shortcut / rationale: attribution mass on the planted shortcut word and on the rationale phrase (embedded default).\n\n\
         | role | trained with | test acc | similarity | calibrated [95% CI] | behavioural agreement | rationale / shortcut mass | training s | verdict |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let teacher = run.teacher();
    for role in crate::suite::ROLES.iter().skip(1) {
        for &objective in &objectives {
            let name = crate::train_suite::student_name(role, objective, &objectives);
            let Some(m) = run.model(&name) else { continue };
            let calibrated = match (m.calibrated_mean, m.calibrated_ci) {
                (Some(x), Some([lo, hi])) => format!("{x:.2} [{lo:.2}, {hi:.2}]"),
                _ => "—".into(),
            };
            let behaviour = m
                .behaviour
                .as_ref()
                .and_then(|b| b.agreement.as_ref())
                .map_or("—".to_string(), |a| format!("{:.2}", a.mean));
            let _ = writeln!(
                md,
                "| {role} | {} | {:.3} | {} | {calibrated} | {behaviour} | {} / {} | {:.0} | {} |",
                objective.name(),
                m.accuracy,
                opt(m.similarity_mean),
                opt(m.rationale_mass),
                opt(m.shortcut_mass),
                m.train_seconds,
                m.verdict
            );
        }
    }
    if let Some(t) = teacher {
        let _ = writeln!(
            md,
            "\nThe teacher: test accuracy {:.3}, rationale / shortcut mass {} / {}, {:.0} s of training.\n",
            t.accuracy,
            opt(t.rationale_mass),
            opt(t.shortcut_mass),
            t.train_seconds
        );
    }
    md
}

/// What each training objective of the run means, with its settings (from the fingerprint).
/// How each model's best epoch was picked, when not by validation accuracy.
fn selection_md(run: &RunResults) -> String {
    match run.settings["training"]["select_by"].as_str() {
        Some("macro-f1") => "Each model's best epoch is the one with the highest validation macro-F1 (`--select-by \
                             macro-f1`, the default with balanced class weights); the table gives that epoch's accuracy.\n\n"
            .to_string(),
        _ => String::new(),
    }
}

fn objectives_md(run: &RunResults) -> String {
    let training = &run.settings["training"];
    let mut used: Vec<&str> = Vec::new();
    for m in run.models.iter().skip(1) {
        if !m.objective.is_empty() && !used.contains(&m.objective.as_str()) {
            used.push(&m.objective);
        }
    }
    let mut md = String::new();
    for objective in used {
        let line = match objective {
            "independent" => "**independent**: on the labels only (cross-entropy).".to_string(),
            "distill" => format!(
                "**distill**: (1 − α)·cross-entropy + α·T²·KL(teacher ‖ student) at temperature T on the full texts (α {}, T {}).",
                training["distill"]["alpha"], training["distill"]["temperature"]
            ),
            "align" => {
                let a = &training["align"];
                let views = match a["views"].as_str() {
                    Some("path") => format!(
                        "points of IG's path to the {} baseline with each token moved by its own amount (σ {})",
                        a["baseline"].as_str().unwrap_or("?"),
                        a["noise"]
                    ),
                    Some("evidence") => format!(
                        "the text without the teacher's top {} tokens and with only them (ranked by the teacher's {}-step IG)",
                        a["evidence"]["top_k"], a["evidence"]["ig_steps"]
                    ),
                    Some("slope") => format!(
                        "the slope of the class probabilities along IG's path in a random ±1 direction over the tokens \
                         (two points {} either side of a point of the path; squared error)",
                        a["step"]
                    ),
                    _ => format!(
                        "in turn, points of IG's path (σ {}) and the text without / with only the teacher's top {} tokens",
                        a["noise"], a["evidence"]["top_k"]
                    ),
                };
                format!(
                    "**align**: distill, plus {} × KL(teacher ‖ student) at temperature 1 on one aligned view of each text per epoch: {views}. The teacher's \
                     outputs on the views are computed once (`align/teacher_views.json`).",
                    a["weight"]
                )
            }
            other => format!("**{other}**"),
        };
        let _ = writeln!(md, "- {line}");
    }
    if !md.is_empty() {
        md = format!("The students were trained with:\n\n{md}\n");
    }
    md
}

/// Accuracy (y) against similarity to the teacher (x), one circle per student, area ∝ params.
/// With a calibration, the ceiling's 95% interval is a shaded band (its mean a line) and the
/// chance floor a dotted line.
fn plot_svg(
    results: &[ModelResult],
    min_accuracy: f64,
    min_similarity: f64,
    calibration: Option<&Calibration>,
) -> String {
    let (w, h, pad) = (560.0, 360.0, 50.0);
    let students: Vec<&ModelResult> = results
        .iter()
        .filter(|r| r.role == Role::Student && r.similarity_mean.is_some())
        .collect();
    let xs: Vec<f64> = students
        .iter()
        .filter_map(|r| r.similarity_mean)
        .chain([min_similarity])
        .chain(calibration.map(|c| c.floor))
        .chain(calibration.and_then(|c| c.ceiling.map(|x| x.cosine.ci[0])))
        .collect();
    let ys: Vec<f64> = results.iter().map(|r| r.accuracy).chain([min_accuracy]).collect();
    let (x0, x1) = (xs.iter().cloned().fold(f64::INFINITY, f64::min).min(0.0) - 0.05, 1.05);
    let (y0, y1) = (
        ys.iter().cloned().fold(f64::INFINITY, f64::min) - 0.05,
        ys.iter().cloned().fold(0.0, f64::max).min(1.0) + 0.05,
    );
    let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
    let max_params = results.iter().map(|r| r.params).max().unwrap_or(1) as f64;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{tx}" text-anchor="middle">mean cosine similarity to the teacher</text>
<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})">test accuracy</text>
"##,
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        tx = h - 12.0,
        cy = h / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{x}" y1="{pad}" x2="{x}" y2="{b}" stroke="#999" stroke-dasharray="4 3"/><line x1="{pad}" y1="{y}" x2="{r}" y2="{y}" stroke="#999" stroke-dasharray="4 3"/>"##,
        x = sx(min_similarity),
        y = sy(min_accuracy),
        b = h - pad,
        r = w - pad
    );
    if let Some(c) = calibration {
        if let Some(ceiling) = &c.ceiling {
            let [lo, hi] = ceiling.cosine.ci;
            let _ = writeln!(
                svg,
                r##"<rect x="{:.1}" y="{pad}" width="{:.1}" height="{}" fill="#457b9d" fill-opacity="0.15"><title>ceiling: the teacher against its retrained copies, 95% CI</title></rect><line x1="{m:.1}" y1="{pad}" x2="{m:.1}" y2="{b}" stroke="#457b9d"/><text x="{m:.1}" y="{t}" text-anchor="middle" fill="#457b9d">ceiling {:.2}</text>"##,
                sx(lo),
                (sx(hi) - sx(lo)).max(1.0),
                h - 2.0 * pad,
                ceiling.cosine.mean,
                m = sx(ceiling.cosine.mean),
                b = h - pad,
                t = pad - 4.0
            );
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{f:.1}" y1="{pad}" x2="{f:.1}" y2="{b}" stroke="#6c757d" stroke-dasharray="1 3"/><text x="{f:.1}" y="{t}" text-anchor="middle" fill="#6c757d">chance {:.2}</text>"##,
            c.floor,
            f = sx(c.floor),
            b = h - pad,
            t = h - pad - 6.0
        );
    }
    for tick in 0..=4 {
        let x = x0 + (x1 - x0) * tick as f64 / 4.0;
        let y = y0 + (y1 - y0) * tick as f64 / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{x:.2}</text>"#,
            sx(x),
            h - pad + 16.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{y:.2}</text>"#,
            pad - 4.0,
            sy(y) + 4.0
        );
    }
    for r in &students {
        let radius = 4.0 + 26.0 * (r.params as f64 / max_params).sqrt();
        let (x, y) = (sx(r.similarity_mean.unwrap_or(0.0)), sy(r.accuracy));
        let colour = if r.verdict.starts_with("keep") {
            "#2a9d8f"
        } else {
            "#e76f51"
        };
        let _ = writeln!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{radius:.1}" fill="{colour}" fill-opacity="0.5" stroke="{colour}"><title>{} — {} params</title></circle><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            escape(&r.name),
            params(r.params),
            y - radius - 3.0,
            escape(&r.name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">teacher accuracy {:.3}; circle area ∝ parameters</text></svg>"##,
        w - pad,
        pad - 10.0,
        results.first().map_or(0.0, |r| r.accuracy)
    );
    svg
}

fn heatmaps_html(
    results: &[ModelResult],
    attributions: &[Vec<TextAttribution>],
    samples: &[usize],
    labels: &[String],
) -> String {
    let mut html = String::new();
    for &j in samples {
        let Some(first) = attributions.first().and_then(|rows| rows.get(j)) else {
            continue;
        };
        let _ = writeln!(
            html,
            "<h3>Validation text {} (true label: {})</h3><table class=\"heat\">",
            first.index + 1,
            escape(labels.get(first.label).map_or("?", String::as_str))
        );
        for (m, rows) in attributions.iter().enumerate() {
            let Some(row) = rows.get(j) else { continue };
            let scale = row_scale(row.attributions.iter().copied().zip(row.special.iter().copied()));
            let predicted = labels.get(row.target).map_or("?".to_string(), |s| s.clone());
            let signal = row
                .signal()
                .map_or(String::new(), |s| format!(", F(input) − F(baseline) = {s:.3}"));
            let _ = write!(
                html,
                "<tr><th>{}<br><small>{} p={:.2}{signal}</small></th><td>",
                escape(&results[m].name),
                escape(&predicted),
                row.probs.get(row.target).copied().unwrap_or(f32::NAN)
            );
            for (token, a) in row.tokens.iter().zip(&row.attributions) {
                let _ = write!(
                    html,
                    "<span style=\"background:{}\" title=\"{a:+.4}\">{}</span> ",
                    colour(*a, scale),
                    escape(token)
                );
            }
            html.push_str("</td></tr>\n");
        }
        html.push_str("</table>\n");
    }
    html
}

fn heatmaps_md(results: &[ModelResult], attributions: &[Vec<TextAttribution>], samples: &[usize]) -> String {
    let mut md = String::new();
    for &j in samples {
        let Some(first) = attributions.first().and_then(|rows| rows.get(j)) else {
            continue;
        };
        let _ = writeln!(
            md,
            "\n**Validation text {}**: top 5 tokens by |attribution| per model\n",
            first.index + 1
        );
        for (m, rows) in attributions.iter().enumerate() {
            let Some(row) = rows.get(j) else { continue };
            let keep: Vec<bool> = row.special.iter().map(|s| !s).collect();
            let top: Vec<String> = astrid::compare::top_k(&row.attributions, &keep, 5)
                .into_iter()
                .map(|i| format!("`{}` {:+.2e}", row.tokens[i], row.attributions[i]))
                .collect();
            let signal = row
                .signal()
                .map_or(String::new(), |x| format!(" (F(input) − F(baseline) = {x:.3})"));
            let _ = writeln!(md, "- {}{signal}: {}", results[m].name, top.join(", "));
        }
    }
    md
}

fn agreements_row(what: &str, a: &Agreements) -> String {
    format!(
        "| {what} | {} | {} | {} | {} |\n",
        est(&a.cosine),
        est(&a.spearman),
        est(&a.top_k_overlap),
        est(&a.word_cosine)
    )
}

/// The ceiling, the floors, the check of the teacher, and each student's calibrated score.
fn calibration_md(run: &RunResults, c: &Calibration) -> String {
    let mut md = String::from("\n## Is this similarity high for this task?\n\n");
    if c.teacher_warnings.is_empty() {
        md.push_str("**Reference check**: nothing says the teacher is an unreliable reference");
        if c.reference_seeds.len() < 2 {
            md.push_str(" (with fewer than two retrained copies, its agreement with them cannot be held against theirs with each other)");
        }
        md.push_str(".\n\n");
    } else {
        let _ = writeln!(md, "**The reference is unreliable**:\n");
        for w in &c.teacher_warnings {
            let _ = writeln!(md, "- {w}");
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "What equally good models of the teacher's kind agree at (the ceiling: the teacher retrained with other seeds, same \
         data, split and settings; seeds {}; their test accuracy {}), and what chance gives (the floor: an untrained model of \
         its shape, and its own attributions shuffled within each text). Means over the explained texts, 95% bootstrap \
         intervals.\n\n| pair | cosine | Spearman | top-k overlap | word cosine |\n|---|---|---|---|---|",
        if c.reference_seeds.is_empty() {
            "none (--reference-seeds 0)".to_string()
        } else {
            c.reference_seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        if c.reference_accuracy.is_empty() {
            "—".to_string()
        } else {
            c.reference_accuracy
                .iter()
                .map(|a| format!("{a:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if let Some(ceiling) = &c.ceiling {
        md.push_str(&agreements_row("teacher vs its retrained copies (ceiling)", ceiling));
    }
    if let Some(between) = &c.between_references {
        md.push_str(&agreements_row("the copies with each other", between));
    }
    md.push_str(&agreements_row(
        "teacher vs an untrained model (floor)",
        &c.floor_untrained,
    ));
    md.push_str(&agreements_row(
        "teacher vs its attributions shuffled (floor)",
        &c.floor_permuted,
    ));
    for w in &c.ceiling_warnings {
        let _ = writeln!(md, "\n**About the ceiling**: {w}.");
    }
    let _ = writeln!(
        md,
        "\nCalibrated similarity = (similarity − floor) / (ceiling − floor), with floor the higher chance level ({:.3}): 1 is as \
         close to the teacher as a retrained teacher, 0 is chance. Interval: paired bootstrap over the texts.\n\n| student | \
         similarity | ceiling | calibrated (95% CI) |\n|---|---|---|---|",
        c.floor
    );
    for r in run.models.iter().filter(|r| r.role == Role::Student) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            r.name,
            opt(r.similarity_mean),
            c.ceiling
                .as_ref()
                .map_or("—".into(), |x| format!("{:.3}", x.cosine.mean)),
            calibrated(r)
        );
    }
    if let Some(ceiling) = &c.ceiling
        && run.thresholds.similarity_mode == SimilarityMode::Absolute
        && ceiling.cosine.mean < run.thresholds.min_similarity
    {
        let _ = writeln!(
            md,
            "\nThe similarity threshold {} lies above the ceiling {:.3}: a retrained teacher would be dropped too.",
            run.thresholds.min_similarity, ceiling.cosine.mean
        );
    }
    md.push('\n');
    md
}

/// ERASER faithfulness of every model and behavioural agreement of every student.
fn faithfulness_md(run: &RunResults) -> String {
    let mut md = String::new();
    let Some(erasure) = run.models.iter().find_map(|r| r.faithfulness.map(|f| f.erasure)) else {
        return md;
    };
    let _ = writeln!(
        md,
        "\n## Faithfulness\n\nDoes each model's explanation find what its own prediction rests on? ERASER (DeYoung et al., 2020): \
         comprehensiveness is the drop of the explained class's probability with the top 1, 5, 10, 20 and 50% of the \
         content tokens by attribution removed (averaged: AOPC; higher is more faithful), sufficiency the drop with only them \
         kept (lower is better). Tokens are {}. Beside each, the same with a random order of the tokens.\n\n| model | \
         comprehensiveness | random order | above random | sufficiency | random order |\n|---|---|---|---|---|---|",
        match erasure {
            astrid::erasure::Erasure::Mask => "replaced by [MASK] (--erasure mask)",
            astrid::erasure::Erasure::Delete => "deleted (--erasure delete)",
        }
    );
    for r in &run.models {
        let Some(f) = &r.faithfulness else { continue };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:+.3} | {} | {} |",
            r.name,
            est(&f.comprehensiveness),
            est(&f.random_comprehensiveness),
            f.comprehensiveness_gain(),
            est(&f.sufficiency),
            est(&f.random_sufficiency)
        );
    }
    let k = run
        .models
        .iter()
        .find_map(|r| r.behaviour.map(|b| b.k))
        .unwrap_or(run.thresholds.top_k);
    let _ = writeln!(
        md,
        "\n## Behavioural agreement\n\nDoes the student rely on the teacher's evidence? The teacher's top {k} tokens of each text \
         are removed and each model's probability for its own prediction is measured again (forward passes only; no \
         attribution noise). Agreement is the student's mean drop over the teacher's (1: it loses as much as the teacher \
         does); reverse removes the student's top {k} and divides the teacher's drop by the student's. Random: the student's \
         drop with {k} random tokens removed.\n\n| student | student's drop | teacher's drop | agreement (95% CI) | reverse \
         (95% CI) | random removal |\n|---|---|---|---|---|---|"
    );
    for r in run.models.iter().filter(|r| r.role == Role::Student) {
        let Some(b) = &r.behaviour else { continue };
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {} | {} | {} |",
            r.name,
            est(&b.student_drop),
            b.teacher_drop,
            b.agreement
                .as_ref()
                .map_or(format!("— (teacher's drop < {MIN_DROP})"), est),
            b.reverse
                .as_ref()
                .map_or(format!("— (student's drop < {MIN_DROP})"), est),
            est(&b.random_drop)
        );
    }
    md
}

/// Each model's output at each candidate baseline against the class prior.
fn baselines_md(run: &RunResults) -> String {
    let mut md = String::new();
    let Some(names) = run
        .models
        .first()
        .map(|r| {
            r.baseline_outputs
                .iter()
                .map(|b| b.baseline.clone())
                .collect::<Vec<_>>()
        })
        .filter(|n| !n.is_empty())
    else {
        return md;
    };
    let total = run.data.class_counts.iter().sum::<usize>().max(1) as f64;
    let prior: Vec<String> = run
        .data
        .class_counts
        .iter()
        .map(|&c| format!("{:.2}", c as f64 / total))
        .collect();
    let _ = writeln!(
        md,
        "\n## Which baseline says nothing?\n\nIG distributes F(input) − F(baseline): a baseline at which the model already \
         predicts a class leaves little to distribute. Mean class probabilities ({}) at each baseline over the explained \
         texts, and their distance from the class prior ({}; total variation, 0 = neutral). This run explained with the \
         `{}` baseline (`--baseline`).\n\n| model | {} |\n|---|{}",
        run.data.labels.join(" / "),
        prior.join(" / "),
        run.settings["explanations"]["baseline"].as_str().unwrap_or("zero"),
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for r in &run.models {
        let cells: Vec<String> = r
            .baseline_outputs
            .iter()
            .map(|b| {
                let probs: Vec<String> = b.mean_probs.iter().map(|p| format!("{p:.2}")).collect();
                format!("{} (distance {:.2})", probs.join(" / "), b.distance_from_prior)
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", r.name, cells.join(" | "));
    }
    md
}

/// Writes report.md and report.html into `out`.
pub fn write(
    out: &Path,
    run: &RunResults,
    attributions: &[Vec<TextAttribution>],
    samples: &[usize],
) -> anyhow::Result<()> {
    let results = &run.models;
    let (min_acc, min_sim) = (run.thresholds.min_accuracy, run.thresholds.min_similarity);
    let labels = &run.data.labels;
    let recommendation = &run.recommendation;
    let planted = run.data.planted_signal;

    let mut md = String::new();
    let _ = writeln!(md, "# Astrid report\n");
    let _ = writeln!(
        md,
        "Data: {} — {} texts (train {}, validation {}, test {}). Backend: {}.\n",
        run.data.source, run.data.texts, run.data.train, run.data.validation, run.data.test, run.backend
    );
    let _ = writeln!(md, "## Ranking\n\n{recommendation}\n");
    let _ = writeln!(
        md,
        "| model | layers×hidden | params | accuracy | macro-F1 | similarity (mean ± sd) | 95% CI | calibrated (95% CI) | Spearman | top-k overlap | word cosine | verdict |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {}×{} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.layers,
            r.hidden,
            params(r.params),
            r.accuracy,
            r.f1,
            r.similarity_mean.map_or("—".into(), |m| format!(
                "{m:.3} ± {:.3}",
                r.similarity_std.unwrap_or(0.0)
            )),
            r.similarity_ci.map_or("—".into(), |[a, b]| format!("[{a:.3}, {b:.3}]")),
            calibrated(r),
            opt(r.spearman_mean),
            opt(r.top_k_overlap_mean),
            opt(r.word_similarity_mean),
            r.verdict
        );
    }
    let _ = writeln!(
        md,
        "\nAccuracy and macro-F1 are on the test split. Similarity is the cosine between a student's and the teacher's \
         per-token IG attributions on the same validation text (special tokens excluded), averaged over the explained \
         texts, with a 95% bootstrap interval of the mean; Spearman is the rank correlation of the same vectors; top-k \
         overlap is the share of the teacher's k most important tokens (by |attribution|) among the student's; word cosine \
         merges WordPiece pieces first. Calibrated places the similarity between chance (0) and a retrained teacher (1): \
         see the next section. A student is kept when accuracy ≥ {min_acc} and {rule}{extra}; the smallest kept one is \
         recommended.\n",
        rule = match run.thresholds.similarity_mode {
            SimilarityMode::Absolute => format!("similarity ≥ {min_sim}"),
            SimilarityMode::Calibrated => format!("calibrated similarity ≥ {}", run.thresholds.min_calibrated),
        },
        extra = [
            run.thresholds
                .min_faithfulness
                .map(|x| format!(", comprehensiveness ≥ {x} above random")),
            run.thresholds
                .min_behavioural
                .map(|x| format!(", behavioural agreement ≥ {x}")),
        ]
        .into_iter()
        .flatten()
        .collect::<String>()
    );
    if let Some(c) = &run.calibration {
        md.push_str(&calibration_md(run, c));
    }
    md.push_str(&objectives_compared_md(run));
    let _ = writeln!(
        md,
        "## Models\n\n{}{}| model | starts from | trained with | peak lr (warm-up) | validation acc (best epoch) | epochs | training s | train seq/s | inference seq/s | mean abs. convergence delta |",
        objectives_md(run),
        selection_md(run)
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0e} ({:.0}%) | {:.3} ({}) | {} | {:.0} | {:.1} | {:.1} | {:.2e} |",
            r.name,
            if r.starts_from.is_empty() {
                "—"
            } else {
                &r.starts_from
            },
            if r.objective.is_empty() { "—" } else { &r.objective },
            r.learning_rate,
            r.warmup * 100.0,
            r.validation_accuracy,
            r.best_epoch,
            r.epochs_run,
            r.train_seconds,
            r.train_seq_per_s,
            r.inference_seq_per_s,
            r.mean_abs_convergence_delta
        );
    }
    let _ = writeln!(
        md,
        "\n## Agreement at the top\n\nOn each text, the teacher's {top_k} most important tokens (by |attribution|) against the \
         student's (Krishna et al., \"The Disagreement Problem in Explainable ML\", 2022): the same tokens (feature), the \
         same token at the same rank (rank), shared tokens with the same sign (sign), and both (signed rank); each a share \
         of k, averaged over the texts.\n\n| model | feature | rank | sign | signed rank |\n|---|---|---|---|---|",
        top_k = run.thresholds.top_k
    );
    for r in results.iter().filter(|r| r.role == Role::Student) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.name,
            opt(r.top_k_overlap_mean),
            opt(r.rank_agreement_mean),
            opt(r.sign_agreement_mean),
            opt(r.signed_rank_agreement_mean)
        );
    }
    let _ = writeln!(
        md,
        "\n## Signal per text\n\nIG distributes F(input) − F(baseline), the change in the explained class's probability \
         from the baseline to the text. Where that is below {MIN_SIGNAL} the attributions are almost all noise and their \
         direction says little; similarity over the informative texts (both models at least {MIN_SIGNAL}) is shown beside \
         the similarity over all texts.\n\n| model | mean abs. signal | texts below {MIN_SIGNAL} | mean F(baseline) per \
         explained class | similarity, all texts | similarity, informative texts (95% CI) | informative texts |\n\
         |---|---|---|---|---|---|---|"
    );
    for r in results {
        let per_class: Vec<String> = r
            .mean_f_baseline_per_class
            .iter()
            .zip(labels)
            .map(|(f, label)| format!("{label}: {}", opt(*f)))
            .collect();
        let informative = r
            .similarity_informative_ci
            .map_or(String::new(), |[lo, hi]| format!(" [{lo:.3}, {hi:.3}]"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {}{informative} | {} |",
            r.name,
            opt(r.mean_abs_signal),
            r.weak_signal_texts.map_or("—".into(), |n| n.to_string()),
            per_class.join(", "),
            opt(r.similarity_mean),
            opt(r.similarity_informative_mean),
            r.informative_texts.map_or("—".into(), |n| n.to_string()),
        );
    }
    md.push_str(&faithfulness_md(run));
    md.push_str(&baselines_md(run));
    if planted {
        let _ = writeln!(
            md,
            "\n## Real signal or shortcut?\n\nThe embedded corpus plants one label-deciding phrase per text, and (in training only) a \
             harmless word correlated with the label. Share of each model's attribution mass (|attribution|, special tokens \
             excluded) on each:\n\n| model | on the rationale phrase | on the shortcut word (texts that have it) |\n|---|---|---|"
        );
        for r in results {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                r.name,
                opt(r.rationale_mass),
                opt(r.shortcut_mass)
            );
        }
    }
    if !run.stage_seconds.is_empty() {
        let _ = writeln!(
            md,
            "\n## Time\n\nSeconds per stage in the invocation that wrote this report (a resumed run skips what was done).\n\n| stage | seconds |\n|---|---|"
        );
        for (stage, seconds) in &run.stage_seconds {
            let _ = writeln!(md, "| {stage} | {seconds:.1} |");
        }
    }
    let _ = writeln!(md, "\n## Examples\n{}", heatmaps_md(results, attributions, samples));
    let _ = writeln!(md, "\nThe plot and the coloured token heatmaps are in report.html.");
    write_atomic(&out.join("report.md"), md.as_bytes())?;

    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Astrid report</title><style>\
         body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
         table.heat td{line-height:1.9}table.heat span{padding:1px 2px;border-radius:3px}\
         .legend span{padding:2px 8px;margin-right:6px;border-radius:3px}</style></head><body>",
    );
    let _ = write!(html, "<h1>Astrid report</h1>");
    // The Markdown tables, rendered simply: each table row becomes an HTML row.
    let mut in_table = false;
    for line in md.lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            if !in_table {
                html.push_str("<table>");
                in_table = true;
            }
            html.push_str("<tr>");
            for cell in line.trim_matches('|').split(" | ") {
                let _ = write!(html, "<td>{}</td>", escape(cell.trim()));
            }
            html.push_str("</tr>");
            continue;
        }
        if in_table {
            html.push_str("</table>");
            in_table = false;
        }
        if line.starts_with("# ")
            || line.starts_with("## Examples")
            || line.starts_with("The plot")
            || line.starts_with("- ")
            || line.starts_with("**")
        {
            continue;
        } else if let Some(h) = line.strip_prefix("## ") {
            let _ = write!(html, "<h2>{}</h2>", escape(h));
        } else if !line.trim().is_empty() {
            let _ = write!(html, "<p>{}</p>", escape(line));
        }
    }
    if in_table {
        html.push_str("</table>");
    }
    let _ = write!(
        html,
        "<h2>Accuracy against similarity</h2>{}",
        plot_svg(results, min_acc, min_sim, run.calibration.as_ref())
    );
    let _ = write!(
        html,
        "<h2>Token attributions</h2><p class=\"legend\"><span style=\"background:{}\">towards the predicted class</span>\
         <span style=\"background:{}\">against it</span> (each row scaled to its own largest attribution)</p>{}",
        colour(1.0, 1.0),
        colour(-1.0, 1.0),
        heatmaps_html(results, attributions, samples, labels)
    );
    html.push_str("</body></html>\n");
    write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(())
}
