//! The report's sections about the models: the ranking, how each was trained, the training
//! objectives side by side, agreement at the top, the signal per text, the planted signal,
//! and the time each stage took.

use astrid::schema::results::MIN_SIGNAL;
use astrid::schema::settings::TrainingSettings;
use astrid::schema::{AlignViews, Objective, Role, RunResults, SelectBy};

use super::model::{Block, Table};
use super::{calibrated, opt, params};

/// The title, the data, the recommendation and the ranking table, and how to read it.
pub fn ranking(run: &RunResults) -> Vec<Block> {
    let mut table = Table::new([
        "model",
        "layers×hidden",
        "params",
        "accuracy",
        "macro-F1",
        "similarity (mean ± sd)",
        "95% CI",
        "calibrated (95% CI)",
        "Spearman",
        "top-k overlap",
        "word cosine",
        "verdict",
    ]);
    for r in &run.models {
        table.row([
            r.name.clone(),
            format!("{}×{}", r.layers, r.hidden),
            params(r.params),
            format!("{:.3}", r.accuracy),
            format!("{:.3}", r.f1),
            r.similarity_mean.map_or("—".into(), |m| {
                format!("{m:.3} ± {:.3}", r.similarity_std.unwrap_or(0.0))
            }),
            r.similarity_ci.map_or("—".into(), |[a, b]| format!("[{a:.3}, {b:.3}]")),
            calibrated(r),
            opt(r.spearman_mean),
            opt(r.top_k_overlap_mean),
            opt(r.word_similarity_mean),
            r.verdict.to_string(),
        ]);
    }
    if run.data.shifted > 0 {
        table.header.insert(5, "shifted accuracy (drop)".into());
        for (row, r) in table.rows.iter_mut().zip(&run.models) {
            let cell = match (r.shifted_accuracy, r.shifted_drop) {
                (Some(a), Some(d)) => format!("{a:.3} ({:+.3})", -d),
                _ => "—".into(),
            };
            row.insert(5, cell);
        }
    }
    vec![
        Block::Title("Astrid report".into()),
        Block::List(run.summary.clone()),
        Block::Paragraph(format!(
            "Data: {} — {} texts (train {}, validation {}, test {}). Backend: {}.",
            run.data.source, run.data.texts, run.data.train, run.data.validation, run.data.test, run.backend
        )),
        Block::Heading("Ranking".into()),
        Block::Paragraph(run.recommendation.clone()),
        Block::Table(table),
        Block::Paragraph(format!(
            "Accuracy and macro-F1 are on the test split. Similarity is the cosine between a student's and the teacher's \
             per-token IG attributions on the same validation text (special tokens excluded), averaged over the explained \
             texts, with a 95% bootstrap interval of the mean; Spearman is the rank correlation of the same vectors; top-k \
             overlap is the share of the teacher's k most important tokens (by |attribution|) among the student's; word cosine \
             merges WordPiece pieces first. Calibrated places the similarity between chance (0) and a retrained teacher (1): \
             see the next section. A student is kept when {}; the smallest kept one is recommended.",
            run.thresholds.rule()
        )),
    ]
}

/// With more than one training objective (`--training a,b,…`): each role's students side by
/// side, so the effect of the objective is read off one table.
pub fn objectives_compared(run: &RunResults) -> Vec<Block> {
    let objectives: Vec<Objective> = run.settings.training.objectives.clone().unwrap_or_default();
    if objectives.len() < 2 {
        return Vec::new();
    }
    let mut table = Table::new([
        "role",
        "trained with",
        "test acc",
        "similarity",
        "calibrated [95% CI]",
        "behavioural agreement",
        "rationale / shortcut mass",
        "training s",
        "verdict",
    ]);
    for role in crate::models::suite::ROLES.iter().skip(1) {
        for &objective in &objectives {
            let name = crate::models::suite::student_name(role, objective, &objectives);
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
            table.row([
                role.to_string(),
                objective.name().to_string(),
                format!("{:.3}", m.accuracy),
                opt(m.similarity_mean),
                calibrated,
                behaviour,
                format!("{} / {}", opt(m.rationale_mass), opt(m.shortcut_mass)),
                format!("{:.0}", m.train_seconds),
                m.verdict.to_string(),
            ]);
        }
    }
    let mut blocks = vec![
        Block::Heading("Training objectives compared".into()),
        Block::Paragraph(
            "Each role trained once per objective from the same seed and starting point. Shortcut / rationale: attribution \
             mass on the planted shortcut word and on the rationale phrase (embedded default)."
                .into(),
        ),
        Block::Table(table),
    ];
    if let Some(t) = run.teacher() {
        blocks.push(Block::Paragraph(format!(
            "The teacher: test accuracy {:.3}, rationale / shortcut mass {} / {}, {:.0} s of training.",
            t.accuracy,
            opt(t.rationale_mass),
            opt(t.shortcut_mass),
            t.train_seconds
        )));
    }
    blocks
}

/// How each model was trained: objectives, starting points, learning rates, epochs, speed.
pub fn models(run: &RunResults) -> Vec<Block> {
    let mut blocks = vec![Block::Heading("Models".into())];
    let lines = objective_lines(run);
    if !lines.is_empty() {
        blocks.push(Block::Paragraph("The students were trained with:".into()));
        blocks.push(Block::List(lines));
    }
    if run.settings.training.select_by == Some(SelectBy::MacroF1) {
        blocks.push(Block::Paragraph(
            "Each model's best epoch is the one with the highest validation macro-F1 (`--select-by macro-f1`, the default \
             with balanced class weights); the table gives that epoch's accuracy."
                .into(),
        ));
    }
    let mut table = Table::new([
        "model",
        "starts from",
        "trained with",
        "peak lr (warm-up)",
        "validation acc (best epoch)",
        "epochs",
        "training s",
        "train seq/s",
        "inference seq/s",
        "mean abs. convergence delta",
    ]);
    for r in &run.models {
        table.row([
            r.name.clone(),
            if r.starts_from.is_empty() {
                "—".to_string()
            } else {
                r.starts_from.clone()
            },
            r.objective.map_or("—", Objective::name).to_string(),
            format!("{:.0e} ({:.0}%)", r.learning_rate, r.warmup * 100.0),
            format!("{:.3} ({})", r.validation_accuracy, r.best_epoch),
            r.epochs_run.to_string(),
            format!("{:.0}", r.train_seconds),
            format!("{:.1}", r.train_seq_per_s),
            format!("{:.1}", r.inference_seq_per_s),
            format!("{:.2e}", r.mean_abs_convergence_delta),
        ]);
    }
    blocks.push(Block::Table(table));
    blocks
}

/// What each training objective the students used means, with this run's settings for it.
fn objective_lines(run: &RunResults) -> Vec<String> {
    let mut used: Vec<Objective> = Vec::new();
    for m in run.models.iter().skip(1) {
        if let Some(o) = m.objective
            && !used.contains(&o)
        {
            used.push(o);
        }
    }
    used.into_iter()
        .map(|o| objective_line(o, &run.settings.training))
        .collect()
}

/// On each text, the teacher's top k tokens against the student's, four ways.
pub fn agreement_at_the_top(run: &RunResults) -> Vec<Block> {
    let mut table = Table::new(["model", "feature", "rank", "sign", "signed rank"]);
    for r in run.models.iter().filter(|r| r.role == Role::Student) {
        table.row([
            r.name.clone(),
            opt(r.top_k_overlap_mean),
            opt(r.rank_agreement_mean),
            opt(r.sign_agreement_mean),
            opt(r.signed_rank_agreement_mean),
        ]);
    }
    vec![
        Block::Heading("Agreement at the top".into()),
        Block::Paragraph(format!(
            "On each text, the teacher's {} most important tokens (by |attribution|) against the \
             student's (Krishna et al., \"The Disagreement Problem in Explainable ML\", 2022): the same tokens (feature), the \
             same token at the same rank (rank), shared tokens with the same sign (sign), and both (signed rank); each a share \
             of k, averaged over the texts.",
            run.thresholds.top_k
        )),
        Block::Table(table),
    ]
}

/// How much IG had to distribute per text, and the similarity over the informative texts.
pub fn signal_per_text(run: &RunResults) -> Vec<Block> {
    let mut table = Table::new([
        "model".to_string(),
        "mean abs. signal".to_string(),
        format!("texts below {MIN_SIGNAL}"),
        "mean F(baseline) per explained class".to_string(),
        "similarity, all texts".to_string(),
        "similarity, informative texts (95% CI)".to_string(),
        "informative texts".to_string(),
    ]);
    for r in &run.models {
        let per_class: Vec<String> = r
            .mean_f_baseline_per_class
            .iter()
            .zip(&run.data.labels)
            .map(|(f, label)| format!("{label}: {}", opt(*f)))
            .collect();
        let informative = r
            .similarity_informative_ci
            .map_or(String::new(), |[lo, hi]| format!(" [{lo:.3}, {hi:.3}]"));
        table.row([
            r.name.clone(),
            opt(r.mean_abs_signal),
            r.weak_signal_texts.map_or("—".into(), |n| n.to_string()),
            per_class.join(", "),
            opt(r.similarity_mean),
            format!("{}{informative}", opt(r.similarity_informative_mean)),
            r.informative_texts.map_or("—".into(), |n| n.to_string()),
        ]);
    }
    vec![
        Block::Heading("Signal per text".into()),
        Block::Paragraph(format!(
            "IG distributes F(input) − F(baseline), the change in the explained class's probability \
             from the baseline to the text. Where that is below {MIN_SIGNAL} the attributions are almost all noise and their \
             direction says little; similarity over the informative texts (both models at least {MIN_SIGNAL}) is shown beside \
             the similarity over all texts."
        )),
        Block::Table(table),
    ]
}

/// On the embedded corpus: each model's attribution mass on the rationale and the shortcut.
pub fn planted_signal(run: &RunResults) -> Vec<Block> {
    if !run.data.planted_signal {
        return Vec::new();
    }
    let mut table = Table::new([
        "model",
        "on the rationale phrase",
        "on the shortcut word (texts that have it)",
    ]);
    for r in &run.models {
        table.row([r.name.clone(), opt(r.rationale_mass), opt(r.shortcut_mass)]);
    }
    vec![
        Block::Heading("Real signal or shortcut?".into()),
        Block::Paragraph(
            "The embedded corpus plants one label-deciding phrase per text, and (in training only) a harmless word \
             correlated with the label. Share of each model's attribution mass (|attribution|, special tokens excluded) on \
             each:"
                .into(),
        ),
        Block::Table(table),
    ]
}

/// Seconds per stage of the invocation that wrote the report.
pub fn time(run: &RunResults) -> Vec<Block> {
    if run.stage_seconds.is_empty() {
        return Vec::new();
    }
    let mut table = Table::new(["stage", "seconds"]);
    for (stage, seconds) in &run.stage_seconds {
        table.row([stage.clone(), format!("{seconds:.1}")]);
    }
    vec![
        Block::Heading("Time".into()),
        Block::Paragraph(
            "Seconds per stage in the invocation that wrote this report (a resumed run skips what was done).".into(),
        ),
        Block::Table(table),
    ]
}

/// "null" for a setting the run does not use, as the fingerprint shows it.
fn setting<T: std::fmt::Debug>(value: Option<T>) -> String {
    value.map_or("null".to_string(), |v| format!("{v:?}"))
}

/// What one training objective means, with the run's settings for it.
pub fn objective_line(objective: Objective, training: &TrainingSettings) -> String {
    match objective {
        Objective::Independent => "**independent**: on the labels only (cross-entropy).".to_string(),
        Objective::Distill => format!(
            "**distill**: (1 − α)·cross-entropy + α·T²·KL(teacher ‖ student) at temperature T on the full texts (α {}, T {}).",
            setting(training.distill.map(|d| d.alpha)),
            setting(training.distill.map(|d| d.temperature))
        ),
        Objective::Align => {
            let Some(a) = training.align else {
                return "**align**".to_string();
            };
            let top_k = setting(a.evidence.map(|e| e.top_k));
            let views = match a.views {
                AlignViews::Path => format!(
                    "points of IG's path to the {} baseline with each token moved by its own amount (σ {})",
                    a.baseline,
                    setting(a.noise)
                ),
                AlignViews::Evidence => format!(
                    "the text without the teacher's top {top_k} tokens and with only them (ranked by the teacher's {}-step IG)",
                    setting(a.evidence.map(|e| e.ig_steps))
                ),
                AlignViews::Slope => format!(
                    "the slope of the class probabilities along IG's path in a random ±1 direction over the tokens \
                     (two points {} either side of a point of the path; squared error)",
                    setting(a.step)
                ),
                AlignViews::Both => format!(
                    "in turn, points of IG's path (σ {}) and the text without / with only the teacher's top {top_k} tokens",
                    setting(a.noise)
                ),
            };
            format!(
                "**align**: distill, plus {:?} × KL(teacher ‖ student) at temperature 1 on one aligned view of each text per epoch: {views}. The teacher's \
                 outputs on the views are computed once (`align/teacher_views.json`).",
                a.weight
            )
        }
    }
}
