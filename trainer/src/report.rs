//! The run's report: the ranking table, an accuracy-vs-similarity plot sized by parameters,
//! and token heatmaps of a few texts for all models side by side, as Markdown and as one
//! self-contained HTML page.

use std::fmt::Write as _;
use std::path::Path;

use astrid::files::write_atomic;
use astrid::format::{self, optional};
use astrid::heat::{colour, row_scale};
use astrid::schema::results::MIN_SIGNAL;
use astrid::schema::{ModelResult, Role, RunResults, TextAttribution};

fn opt(v: Option<f64>) -> String {
    optional(v, 3)
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

/// Accuracy (y) against similarity to the teacher (x), one circle per student, area ∝ params.
fn plot_svg(results: &[ModelResult], min_accuracy: f64, min_similarity: f64) -> String {
    let (w, h, pad) = (560.0, 360.0, 50.0);
    let students: Vec<&ModelResult> = results
        .iter()
        .filter(|r| r.role == Role::Student && r.similarity_mean.is_some())
        .collect();
    let xs: Vec<f64> = students
        .iter()
        .filter_map(|r| r.similarity_mean)
        .chain([min_similarity])
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
            let _ = writeln!(md, "- {}: {}", results[m].name, top.join(", "));
        }
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
        "| model | layers×hidden | params | accuracy | macro-F1 | similarity (mean ± sd) | 95% CI | Spearman | top-k overlap | word cosine | verdict |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {}×{} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
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
         merges WordPiece pieces first. A student is kept when accuracy ≥ {min_acc} and similarity ≥ {min_sim}; the \
         smallest kept one is recommended.\n"
    );
    let _ = writeln!(
        md,
        "## Models\n\n| model | validation acc (best epoch) | epochs | train seq/s | inference seq/s | mean abs. convergence delta |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            md,
            "| {} | {:.3} ({}) | {} | {:.1} | {:.1} | {:.2e} |",
            r.name,
            r.validation_accuracy,
            r.best_epoch,
            r.epochs_run,
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
        plot_svg(results, min_acc, min_sim)
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
