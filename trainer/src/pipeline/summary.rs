//! The answer in a few lines, before any table: which student to use (or why none), which
//! students reason differently from the teacher, and how far the teacher can be trusted as
//! the reference. The report, the terminal and the bundle open with it.

use astrid::schema::{Calibration, Generalisation, ModelResult, Role, SimilarityMode, Thresholds, Verdict};

/// A student that loses this much accuracy under the shift leans on what the shift breaks.
pub const SHIFT_FAILURE: f64 = 0.10;

/// The most lines a summary has.
pub const MAX_LINES: usize = 8;

/// The summary of a decided run (verdicts marked): the recommendation first.
pub fn summarise(
    models: &[ModelResult],
    thresholds: &Thresholds,
    calibration: Option<&Calibration>,
    generalisation: Option<&Generalisation>,
) -> Vec<String> {
    let mut lines = vec![answer(models, thresholds)];
    lines.extend(reasoning_differently(models, thresholds));
    lines.extend(shifted(models));
    lines.extend(generalisation.map(|g| g.finding.clone()));
    lines.push(reference(calibration));
    lines.truncate(MAX_LINES);
    lines
}

/// "Use NAME …", or "No student to use: REASON."
fn answer(models: &[ModelResult], thresholds: &Thresholds) -> String {
    let teacher_params = models.iter().find(|m| m.role == Role::Teacher).map_or(0, |t| t.params);
    if let Some(m) = models.iter().find(|m| m.verdict == Verdict::Recommended) {
        let calibrated = m
            .calibrated_mean
            .map_or(String::new(), |c| format!(", calibrated {c:.2}"));
        return format!(
            "Use {}: the smallest student that passes the rule ({} parameters, {:.1}% of the teacher's; accuracy {:.3}, \
             similarity to the teacher {:.3}{calibrated}).",
            m.name,
            m.params,
            100.0 * m.params as f64 / teacher_params.max(1) as f64,
            m.accuracy,
            m.similarity_mean.unwrap_or(f64::NAN)
        );
    }
    format!("No student to use: {}; keep the teacher.", why_none(models, thresholds))
}

/// The one reason no student passes: the test every student fails, or the one most fail.
fn why_none(models: &[ModelResult], thresholds: &Thresholds) -> String {
    let students: Vec<&ModelResult> = models.iter().filter(|m| m.role == Role::Student).collect();
    if students.is_empty() {
        return "the run has no students".to_string();
    }
    let fails = |test: &str| {
        students
            .iter()
            .filter(|m| matches!(&m.verdict, Verdict::Drop(reasons) if reasons.iter().any(|r| r.starts_with(test))))
            .count()
    };
    let accuracy = fails("accuracy");
    let similarity = match thresholds.similarity_mode {
        SimilarityMode::Absolute => fails("similarity"),
        SimilarityMode::Calibrated => fails("calibrated") + fails("no calibrated"),
    };
    let n = students.len();
    if similarity >= accuracy && similarity > 0 {
        format!(
            "{} of {n} students miss {} (the teacher's reasons)",
            if similarity == n {
                "all".to_string()
            } else {
                similarity.to_string()
            },
            thresholds.similarity_rule()
        )
    } else if accuracy > 0 {
        format!(
            "{} of {n} students miss accuracy ≥ {}",
            if accuracy == n {
                "all".to_string()
            } else {
                accuracy.to_string()
            },
            thresholds.min_accuracy
        )
    } else {
        "every student misses a test of the rule (see the verdicts)".to_string()
    }
}

/// The students accurate enough whose reasons are not the teacher's: the case the measure
/// exists for.
fn reasoning_differently(models: &[ModelResult], thresholds: &Thresholds) -> Option<String> {
    let names: Vec<String> = models
        .iter()
        .filter(|m| m.role == Role::Student && m.accuracy >= thresholds.min_accuracy)
        .filter(|m| matches!(&m.verdict, Verdict::Drop(reasons) if reasons.iter().any(|r| is_similarity_reason(r))))
        .map(|m| {
            let shift = m
                .shifted_drop
                .map_or(String::new(), |d| format!(", shifted test {:+.3}", -d));
            format!("{} ({:.3}{shift})", m.name, m.similarity_mean.unwrap_or(f64::NAN))
        })
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "Accurate enough but reasoning differently from the teacher (similarity): {}.",
            names.join(", ")
        )
    })
}

/// A reason to drop that is about the student's reasons, not its accuracy.
fn is_similarity_reason(reason: &str) -> bool {
    ["similarity", "calibrated", "no calibrated"]
        .iter()
        .any(|p| reason.starts_with(p))
}

/// What the shifted test showed: the students that lose ten points or more there.
fn shifted(models: &[ModelResult]) -> Option<String> {
    let teacher = models.iter().find(|m| m.role == Role::Teacher)?;
    let teacher_drop = teacher.shifted_drop?;
    let failing: Vec<String> = models
        .iter()
        .filter(|m| m.role == Role::Student && m.shifted_drop.is_some_and(|d| d >= SHIFT_FAILURE))
        .map(|m| format!("{} ({:+.3})", m.name, -m.shifted_drop.unwrap_or(0.0)))
        .collect();
    Some(if failing.is_empty() {
        format!(
            "On the shifted test no student loses ten points of accuracy or more (the teacher {:+.3}).",
            -teacher_drop
        )
    } else {
        format!(
            "On the shifted test {} lose ten points of accuracy or more: they lean on what the shift breaks (the teacher {:+.3}).",
            failing.join(", "),
            -teacher_drop
        )
    })
}

/// How far to trust the teacher as the reference.
fn reference(calibration: Option<&Calibration>) -> String {
    let Some(c) = calibration else {
        return "Reference: not checked (no calibration).".to_string();
    };
    if let Some(first) = c.teacher_warnings.first() {
        let more = c.teacher_warnings.len() - 1;
        let more = if more > 0 {
            format!(" (and {more} more warning{})", if more > 1 { "s" } else { "" })
        } else {
            String::new()
        };
        return format!("Reference: unreliable: {first}{more}. Read every similarity with that in mind.");
    }
    match &c.ceiling {
        Some(ceiling) => format!(
            "Reference: nothing says the teacher is unreliable; retrained, it agrees with itself at {:.3} (the ceiling; chance {:.3}).",
            ceiling.cosine.mean, c.floor
        ),
        None => "Reference: nothing says the teacher is unreliable, but without retrained copies there is no ceiling."
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use astrid::schema::Agreements;

    use super::*;

    fn model(name: &str, role: Role, params: usize, accuracy: f64, similarity: f64, verdict: Verdict) -> ModelResult {
        ModelResult {
            name: name.into(),
            role,
            params,
            accuracy,
            similarity_mean: Some(similarity),
            verdict,
            ..ModelResult::default()
        }
    }

    fn run() -> Vec<ModelResult> {
        vec![
            model("teacher_bert", Role::Teacher, 1000, 0.95, 1.0, Verdict::Teacher),
            model("distilbert", Role::Student, 500, 0.94, 0.9, Verdict::Keep),
            model("tinybert", Role::Student, 100, 0.93, 0.85, Verdict::Recommended),
            model(
                "minilm",
                Role::Student,
                200,
                0.94,
                0.3,
                Verdict::Drop(vec!["similarity 0.300 < 0.8".into()]),
            ),
            model(
                "tiny",
                Role::Student,
                50,
                0.94,
                0.9,
                Verdict::Drop(vec![
                    "shifted accuracy 0.600: 0.330 more lost under the shift than the teacher (> 0.1)".into(),
                ]),
            ),
        ]
    }

    #[test]
    fn the_first_line_names_the_recommendation() {
        let lines = summarise(&run(), &Thresholds::default(), None, None);
        assert!(
            lines[0].starts_with("Use tinybert: the smallest student that passes"),
            "{lines:?}"
        );
        assert!(lines[0].contains("10.0% of the teacher's"), "{lines:?}");
        assert!(lines[1].contains("minilm (0.300)"), "{lines:?}");
        // Dropped for the shift alone: not one that reasons differently by the measure.
        assert!(!lines[1].contains("tiny ("), "{lines:?}");
        assert!(lines.len() <= MAX_LINES);
    }

    #[test]
    fn without_a_recommendation_the_one_reason_and_the_reference_are_said() {
        let mut models = run();
        models.pop();
        for m in &mut models[1..] {
            m.verdict = Verdict::Drop(vec![format!("similarity {:.3} < 0.8", m.similarity_mean.unwrap())]);
        }
        let calibration = Calibration {
            teacher_warnings: vec!["the teacher is no better than the majority class".into()],
            ceiling: Some(Agreements::default()),
            ..Calibration::default()
        };
        let lines = summarise(&models, &Thresholds::default(), Some(&calibration), None);
        assert_eq!(
            lines[0],
            "No student to use: all of 3 students miss similarity ≥ 0.8 (the teacher's reasons); keep the teacher."
        );
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("Reference: unreliable: the teacher is no better"),
            "{lines:?}"
        );
    }
}
