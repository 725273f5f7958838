//! The report's figures: accuracy against similarity (SVG), and the token attributions of a
//! few texts for every model side by side (coloured on the page, top tokens in Markdown).

use std::fmt::Write as _;

use astrid::heat::{colour, row_scale};
use astrid::schema::{Calibration, ModelResult, Role, TextAttribution};

use super::model::{Block, escape};
use super::params;

/// The plot's size and margin, in pixels.
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 360.0;
const PAD: f64 = 50.0;

/// Data coordinates to pixels.
struct Axes {
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn sx(&self, x: f64) -> f64 {
        PAD + (x - self.x.0) / (self.x.1 - self.x.0) * (WIDTH - 2.0 * PAD)
    }

    fn sy(&self, y: f64) -> f64 {
        HEIGHT - PAD - (y - self.y.0) / (self.y.1 - self.y.0) * (HEIGHT - 2.0 * PAD)
    }
}

/// Accuracy (y) against similarity to the teacher (x), one circle per student, area ∝ params.
/// With a calibration, the ceiling's 95% interval is a shaded band (its mean a line) and the
/// chance floor a dotted line.
pub fn plot_svg(
    results: &[ModelResult],
    min_accuracy: f64,
    min_similarity: f64,
    calibration: Option<&Calibration>,
) -> String {
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
    let axes = Axes {
        x: (xs.iter().cloned().fold(f64::INFINITY, f64::min).min(0.0) - 0.05, 1.05),
        y: (
            ys.iter().cloned().fold(f64::INFINITY, f64::min) - 0.05,
            ys.iter().cloned().fold(0.0, f64::max).min(1.0) + 0.05,
        ),
    };
    let mut svg = frame();
    thresholds(&mut svg, &axes, min_accuracy, min_similarity);
    if let Some(c) = calibration {
        calibration_marks(&mut svg, &axes, c);
    }
    ticks(&mut svg, &axes);
    circles(&mut svg, &axes, &students, results);
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">teacher accuracy {:.3}; circle area ∝ parameters</text></svg>"##,
        WIDTH - PAD,
        PAD - 10.0,
        results.first().map_or(0.0, |r| r.accuracy)
    );
    svg
}

/// The SVG's opening, background, axes and their labels.
fn frame() -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{tx}" text-anchor="middle">mean cosine similarity to the teacher</text>
<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})">test accuracy</text>
"##,
        w = WIDTH,
        h = HEIGHT,
        pad = PAD,
        b = HEIGHT - PAD,
        r = WIDTH - PAD,
        cx = WIDTH / 2.0,
        tx = HEIGHT - 12.0,
        cy = HEIGHT / 2.0
    )
}

/// The rule's two thresholds as dashed lines.
fn thresholds(svg: &mut String, axes: &Axes, min_accuracy: f64, min_similarity: f64) {
    let _ = writeln!(
        svg,
        r##"<line x1="{x}" y1="{pad}" x2="{x}" y2="{b}" stroke="#999" stroke-dasharray="4 3"/><line x1="{pad}" y1="{y}" x2="{r}" y2="{y}" stroke="#999" stroke-dasharray="4 3"/>"##,
        x = axes.sx(min_similarity),
        y = axes.sy(min_accuracy),
        pad = PAD,
        b = HEIGHT - PAD,
        r = WIDTH - PAD
    );
}

/// The ceiling's band and line, and the chance floor.
fn calibration_marks(svg: &mut String, axes: &Axes, c: &Calibration) {
    if let Some(ceiling) = &c.ceiling {
        let [lo, hi] = ceiling.cosine.ci;
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{pad}" width="{:.1}" height="{}" fill="#457b9d" fill-opacity="0.15"><title>ceiling: the teacher against its retrained copies, 95% CI</title></rect><line x1="{m:.1}" y1="{pad}" x2="{m:.1}" y2="{b}" stroke="#457b9d"/><text x="{m:.1}" y="{t}" text-anchor="middle" fill="#457b9d">ceiling {:.2}</text>"##,
            axes.sx(lo),
            (axes.sx(hi) - axes.sx(lo)).max(1.0),
            HEIGHT - 2.0 * PAD,
            ceiling.cosine.mean,
            m = axes.sx(ceiling.cosine.mean),
            pad = PAD,
            b = HEIGHT - PAD,
            t = PAD - 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{f:.1}" y1="{pad}" x2="{f:.1}" y2="{b}" stroke="#6c757d" stroke-dasharray="1 3"/><text x="{f:.1}" y="{t}" text-anchor="middle" fill="#6c757d">chance {:.2}</text>"##,
        c.floor,
        f = axes.sx(c.floor),
        pad = PAD,
        b = HEIGHT - PAD,
        t = HEIGHT - PAD - 6.0
    );
}

/// Five labelled ticks on each axis.
fn ticks(svg: &mut String, axes: &Axes) {
    for tick in 0..=4 {
        let x = axes.x.0 + (axes.x.1 - axes.x.0) * tick as f64 / 4.0;
        let y = axes.y.0 + (axes.y.1 - axes.y.0) * tick as f64 / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{x:.2}</text>"#,
            axes.sx(x),
            HEIGHT - PAD + 16.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{y:.2}</text>"#,
            PAD - 4.0,
            axes.sy(y) + 4.0
        );
    }
}

/// One circle per student, green when kept, sized by parameters.
fn circles(svg: &mut String, axes: &Axes, students: &[&ModelResult], results: &[ModelResult]) {
    let max_params = results.iter().map(|r| r.params).max().unwrap_or(1) as f64;
    for r in students {
        let radius = 4.0 + 26.0 * (r.params as f64 / max_params).sqrt();
        let (x, y) = (axes.sx(r.similarity_mean.unwrap_or(0.0)), axes.sy(r.accuracy));
        let colour = if r.verdict.keeps() { "#2a9d8f" } else { "#e76f51" };
        let _ = writeln!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{radius:.1}" fill="{colour}" fill-opacity="0.5" stroke="{colour}"><title>{} — {} params</title></circle><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            escape(&r.name),
            params(r.params),
            y - radius - 3.0,
            escape(&r.name)
        );
    }
}

/// The sample texts with every model's attributions: coloured tokens on the page.
pub fn heatmaps_html(
    results: &[ModelResult],
    attributions: &[Vec<TextAttribution>],
    samples: &[usize],
    labels: &[String],
) -> String {
    let mut html = format!(
        "<p class=\"legend\"><span style=\"background:{}\">towards the predicted class</span>\
         <span style=\"background:{}\">against it</span> (each row scaled to its own largest attribution)</p>",
        colour(1.0, 1.0),
        colour(-1.0, 1.0)
    );
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
            heat_row(&mut html, &results[m].name, row, labels);
        }
        html.push_str("</table>\n");
    }
    html
}

/// One model's row of a heatmap: its prediction, then the tokens coloured by attribution.
fn heat_row(html: &mut String, name: &str, row: &TextAttribution, labels: &[String]) {
    let scale = row_scale(row.attributions.iter().copied().zip(row.special.iter().copied()));
    let predicted = labels.get(row.target).map_or("?".to_string(), |s| s.clone());
    let signal = row
        .signal()
        .map_or(String::new(), |s| format!(", F(input) − F(baseline) = {s:.3}"));
    let _ = write!(
        html,
        "<tr><th>{}<br><small>{} p={:.2}{signal}</small></th><td>",
        escape(name),
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

/// The sample texts in Markdown: each model's five tokens of largest |attribution|.
pub fn heatmaps_md(results: &[ModelResult], attributions: &[Vec<TextAttribution>], samples: &[usize]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for &j in samples {
        let Some(first) = attributions.first().and_then(|rows| rows.get(j)) else {
            continue;
        };
        blocks.push(Block::Paragraph(format!(
            "**Validation text {}**: top 5 tokens by |attribution| per model",
            first.index + 1
        )));
        let mut items = Vec::new();
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
            items.push(format!("{}{signal}: {}", results[m].name, top.join(", ")));
        }
        blocks.push(Block::List(items));
    }
    blocks
}
