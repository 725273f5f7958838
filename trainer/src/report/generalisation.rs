//! The report's section on generalisation: with a shifted part, every student and retrained
//! copy's similarity to the teacher against what the shift costs it, as a plot and a table,
//! and whether similarity predicted the failures better than i.i.d. accuracy.

use std::fmt::Write as _;

use astrid::format::optional;
use astrid::schema::{Generalisation, RunResults};

use super::model::{Block, Table, escape};

/// The plot's size and margin, in pixels.
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 320.0;
const PAD: f64 = 50.0;

/// The section, when the run has a shifted part and enough models.
pub fn section(run: &RunResults) -> Vec<Block> {
    let Some(g) = &run.generalisation else {
        return Vec::new();
    };
    let mut table = Table::new([
        "model",
        "similarity",
        "calibrated",
        "test accuracy",
        "shifted accuracy drop",
    ]);
    for p in &g.points {
        table.row([
            if p.copy {
                format!("{} (retrained teacher)", p.name)
            } else {
                p.name.clone()
            },
            format!("{:.3}", p.similarity),
            optional(p.calibrated, 2),
            format!("{:.3}", p.accuracy),
            format!("{:+.3}", p.shifted_drop),
        ]);
    }
    vec![
        Block::Heading("Does similarity predict generalisation?".into()),
        Block::Paragraph(format!(
            "Every model was also evaluated on a shifted part of {} texts held out from the i.i.d. split. Each student \
             and each retrained copy of the teacher is one point: its similarity to the teacher against its drop in \
             accuracy from the test part to the shifted one. The rank correlation is across the models, with a 95% \
             bootstrap interval over them.",
            run.data.shifted
        )),
        Block::Paragraph(format!("**{}**", g.finding)),
        Block::Html(scatter_svg(g)),
        Block::Table(table),
    ]
}

/// Similarity (x) against the shifted drop (y): students as circles, copies as squares.
fn scatter_svg(g: &Generalisation) -> String {
    let xs: Vec<f64> = g.points.iter().map(|p| p.similarity).collect();
    let ys: Vec<f64> = g.points.iter().map(|p| p.shifted_drop).collect();
    let range = |v: &[f64]| {
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min).min(0.0);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max).max(lo + 0.1);
        (lo - 0.05, hi + 0.05)
    };
    let ((x0, x1), (y0, y1)) = (range(&xs), range(&ys));
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * (WIDTH - 2.0 * PAD);
    let sy = |y: f64| HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2.0 * PAD);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="black"/>
<line x1="{PAD}" y1="{zero:.1}" x2="{r}" y2="{zero:.1}" stroke="#999" stroke-dasharray="4 3"/>
<text x="{cx}" y="{tx}" text-anchor="middle">mean cosine similarity to the teacher</text>
<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})">accuracy lost under the shift</text>
"##,
        b = HEIGHT - PAD,
        r = WIDTH - PAD,
        zero = sy(0.0),
        cx = WIDTH / 2.0,
        tx = HEIGHT - 12.0,
        cy = HEIGHT / 2.0
    );
    for p in &g.points {
        let (x, y) = (sx(p.similarity), sy(p.shifted_drop));
        let mark = if p.copy {
            format!(
                r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#457b9d"/>"##,
                x - 5.0,
                y - 5.0
            )
        } else {
            format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="6" fill="#e76f51" fill-opacity="0.7"/>"##)
        };
        let _ = writeln!(
            svg,
            r#"<g><title>{name}: similarity {:.3}, drop {:+.3}</title>{mark}<text x="{x:.1}" y="{:.1}" text-anchor="middle">{name}</text></g>"#,
            p.similarity,
            p.shifted_drop,
            y - 9.0,
            name = escape(&p.name)
        );
    }
    svg.push_str("</svg>");
    svg
}
