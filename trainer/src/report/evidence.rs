//! The report's sections on what the similarity is worth: the calibration (ceiling, floor,
//! the check of the teacher), faithfulness, behavioural agreement, and the baselines.

use astrid::schema::results::MIN_DROP;
use astrid::schema::{Agreements, Calibration, Role, RunResults, SimilarityMode};

use super::model::{Block, Table};
use super::{calibrated, est, opt};

/// One pair's agreement by every measure.
fn agreements_row(table: &mut Table, what: &str, a: &Agreements) {
    table.row([
        what.to_string(),
        est(&a.cosine),
        est(&a.spearman),
        est(&a.top_k_overlap),
        est(&a.word_cosine),
    ]);
}

/// Numbers joined by ", ", or `empty` when there are none.
fn listed<T>(values: &[T], empty: &str, show: impl Fn(&T) -> String) -> String {
    if values.is_empty() {
        return empty.to_string();
    }
    values.iter().map(show).collect::<Vec<_>>().join(", ")
}

/// Whether the teacher is a reference worth measuring against.
fn reference_check(c: &Calibration) -> Vec<Block> {
    if c.teacher_warnings.is_empty() {
        let caveat = if c.reference_seeds.len() < 2 {
            " (with fewer than two retrained copies, its agreement with them cannot be held against theirs with each other)"
        } else {
            ""
        };
        return vec![Block::Paragraph(format!(
            "**Reference check**: nothing says the teacher is an unreliable reference{caveat}."
        ))];
    }
    vec![
        Block::Paragraph("**The reference is unreliable**:".into()),
        Block::List(c.teacher_warnings.clone()),
    ]
}

/// The ceiling, the floors, the check of the teacher, and each student's calibrated score.
pub fn calibration(run: &RunResults, c: &Calibration) -> Vec<Block> {
    let mut blocks = vec![Block::Heading("Is this similarity high for this task?".into())];
    blocks.extend(reference_check(c));
    blocks.push(Block::Paragraph(format!(
        "What equally good models of the teacher's kind agree at (the ceiling: the teacher retrained with other seeds, same \
         data, split and settings; seeds {}; their test accuracy {}), and what chance gives (the floor: an untrained model of \
         its shape, and its own attributions shuffled within each text). Means over the explained texts, 95% bootstrap \
         intervals.",
        listed(&c.reference_seeds, "none (--reference-seeds 0)", |s| s.to_string()),
        listed(&c.reference_accuracy, "—", |a| format!("{a:.3}"))
    )));
    let mut pairs = Table::new(["pair", "cosine", "Spearman", "top-k overlap", "word cosine"]);
    if let Some(ceiling) = &c.ceiling {
        agreements_row(&mut pairs, "teacher vs its retrained copies (ceiling)", ceiling);
    }
    if let Some(between) = &c.between_references {
        agreements_row(&mut pairs, "the copies with each other", between);
    }
    agreements_row(&mut pairs, "teacher vs an untrained model (floor)", &c.floor_untrained);
    agreements_row(
        &mut pairs,
        "teacher vs its attributions shuffled (floor)",
        &c.floor_permuted,
    );
    blocks.push(Block::Table(pairs));
    for w in &c.ceiling_warnings {
        blocks.push(Block::Paragraph(format!("**About the ceiling**: {w}.")));
    }
    if c.copies_tried > 0 {
        blocks.push(Block::Paragraph(format!(
            "**Copies**: {} trained, {} kept as equally good (validation score, and shifted accuracy where there is a \
             shifted part, within --copy-tolerance of the teacher's){}",
            c.copies_tried,
            c.reference_seeds.len(),
            if c.copies_left_out.is_empty() {
                "."
            } else {
                "; left out:"
            }
        )));
        if !c.copies_left_out.is_empty() {
            blocks.push(Block::List(c.copies_left_out.clone()));
        }
    }
    blocks.extend(calibrated_scores(run, c));
    blocks
}

/// Each student's similarity placed between the floor and the ceiling.
fn calibrated_scores(run: &RunResults, c: &Calibration) -> Vec<Block> {
    let mut blocks = vec![Block::Paragraph(format!(
        "Calibrated similarity = (similarity − floor) / (ceiling − floor), with floor the higher chance level ({:.3}): 1 is as \
         close to the teacher as a retrained teacher, 0 is chance. Interval: paired bootstrap over the texts.",
        c.floor
    ))];
    if let Some(why) = &c.not_measurable {
        blocks.push(Block::Paragraph(format!("**Not measurable** in this run: {why}.")));
    }
    let mut table = Table::new(["student", "similarity", "ceiling", "calibrated (95% CI)"]);
    for r in run.models.iter().filter(|r| r.role == Role::Student) {
        table.row([
            r.name.clone(),
            opt(r.similarity_mean),
            c.ceiling
                .as_ref()
                .map_or("—".into(), |x| format!("{:.3}", x.cosine.mean)),
            calibrated(r),
        ]);
    }
    blocks.push(Block::Table(table));
    if let Some(ceiling) = &c.ceiling
        && run.thresholds.similarity_mode == SimilarityMode::Absolute
        && ceiling.cosine.mean < run.thresholds.min_similarity
    {
        blocks.push(Block::Paragraph(format!(
            "The similarity threshold {} lies above the ceiling {:.3}: a retrained teacher would be dropped too.",
            run.thresholds.min_similarity, ceiling.cosine.mean
        )));
    }
    blocks
}

/// ERASER faithfulness of every model's own explanations.
pub fn faithfulness(run: &RunResults) -> Vec<Block> {
    let Some(erasure) = run.models.iter().find_map(|r| r.faithfulness.map(|f| f.erasure)) else {
        return Vec::new();
    };
    let intro = format!(
        "Does each model's explanation find what its own prediction rests on? ERASER (DeYoung et al., 2020): \
         comprehensiveness is the drop of the explained class's probability with the top 1, 5, 10, 20 and 50% of the \
         content tokens by attribution removed (averaged: AOPC; higher is more faithful), sufficiency the drop with only them \
         kept (lower is better). Tokens are {}. Beside each, the same with a random order of the tokens.",
        match erasure {
            astrid::erasure::Erasure::Mask => "replaced by [MASK] (--erasure mask)",
            astrid::erasure::Erasure::Delete => "deleted (--erasure delete)",
        }
    );
    let mut table = Table::new([
        "model",
        "comprehensiveness",
        "random order",
        "above random",
        "sufficiency",
        "random order",
    ]);
    for r in &run.models {
        let Some(f) = &r.faithfulness else { continue };
        table.row([
            r.name.clone(),
            est(&f.comprehensiveness),
            est(&f.random_comprehensiveness),
            format!("{:+.3}", f.comprehensiveness_gain()),
            est(&f.sufficiency),
            est(&f.random_sufficiency),
        ]);
    }
    let mut blocks = vec![
        Block::Heading("Faithfulness".into()),
        Block::Paragraph(intro),
        Block::Table(table),
    ];
    blocks.extend(behaviour(run));
    blocks
}

/// Does each student rely on the teacher's evidence? Forward passes only.
fn behaviour(run: &RunResults) -> Vec<Block> {
    let k = run
        .models
        .iter()
        .find_map(|r| r.behaviour.map(|b| b.k))
        .unwrap_or(run.thresholds.top_k);
    let intro = format!(
        "Does the student rely on the teacher's evidence? The teacher's top {k} tokens of each text \
         are removed and each model's probability for its own prediction is measured again (forward passes only; no \
         attribution noise). Agreement is the student's mean drop over the teacher's (1: it loses as much as the teacher \
         does); reverse removes the student's top {k} and divides the teacher's drop by the student's. Random: the student's \
         drop with {k} random tokens removed."
    );
    let mut table = Table::new([
        "student",
        "student's drop",
        "teacher's drop",
        "agreement (95% CI)",
        "reverse (95% CI)",
        "random removal",
    ]);
    for r in run.models.iter().filter(|r| r.role == Role::Student) {
        let Some(b) = &r.behaviour else { continue };
        table.row([
            r.name.clone(),
            est(&b.student_drop),
            format!("{:.3}", b.teacher_drop),
            b.agreement
                .as_ref()
                .map_or(format!("— (teacher's drop < {MIN_DROP})"), est),
            b.reverse
                .as_ref()
                .map_or(format!("— (student's drop < {MIN_DROP})"), est),
            est(&b.random_drop),
        ]);
    }
    vec![
        Block::Heading("Behavioural agreement".into()),
        Block::Paragraph(intro),
        Block::Table(table),
    ]
}

/// Each model's output at each candidate baseline against the class prior.
pub fn baselines(run: &RunResults) -> Vec<Block> {
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
        return Vec::new();
    };
    let total = run.data.class_counts.iter().sum::<usize>().max(1) as f64;
    let prior: Vec<String> = run
        .data
        .class_counts
        .iter()
        .map(|&c| format!("{:.2}", c as f64 / total))
        .collect();
    let intro = format!(
        "IG distributes F(input) − F(baseline): a baseline at which the model already \
         predicts a class leaves little to distribute. Mean class probabilities ({}) at each baseline over the explained \
         texts, and their distance from the class prior ({}; total variation, 0 = neutral). This run explained with the \
         `{}` baseline (`--baseline`).",
        run.data.labels.join(" / "),
        prior.join(" / "),
        run.settings.explanations.baseline,
    );
    let mut table = Table::new(std::iter::once("model".to_string()).chain(names));
    for r in &run.models {
        let cells = r.baseline_outputs.iter().map(|b| {
            let probs: Vec<String> = b.mean_probs.iter().map(|p| format!("{p:.2}")).collect();
            format!("{} (distance {:.2})", probs.join(" / "), b.distance_from_prior)
        });
        table.row(std::iter::once(r.name.clone()).chain(cells));
    }
    vec![
        Block::Heading("Which baseline says nothing?".into()),
        Block::Paragraph(intro),
        Block::Table(table),
    ]
}
