//! The decision rule: which students to keep, and which one to recommend.

use astrid::schema::{Calibration, ModelResult, Objective, Role, SimilarityMode, Thresholds, Verdict};

/// The decision framework's outcome.
pub struct Decision {
    pub recommended: Option<String>,
    pub explanation: String,
}

/// Keeps students with accuracy ≥ `min_accuracy` and similarity ≥ `min_similarity` (or, in
/// calibrated mode, a calibrated score ≥ `min_calibrated`), and the optional minimums on
/// faithfulness and behavioural agreement; recommends the smallest (fewest parameters); marks
/// each model's verdict. The explanation says first when the teacher is not a reliable
/// reference, and when the absolute threshold lies above what a retrained teacher reaches.
pub fn decide(results: &mut [ModelResult], thresholds: &Thresholds, calibration: Option<&Calibration>) -> Decision {
    let best = mark_verdicts(results, thresholds);
    let preamble = calibration.map_or_else(String::new, |c| preamble(thresholds, c));
    match best {
        Some(i) => recommend(results, i, &preamble),
        None => recommend_none(results, thresholds, &preamble),
    }
}

/// Marks every model's verdict (keep, or drop with its reasons) and returns the index of the
/// smallest kept student: the one to recommend, since every kept one is good enough.
fn mark_verdicts(results: &mut [ModelResult], thresholds: &Thresholds) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    let teacher_drop = results
        .iter()
        .find(|r| r.role == Role::Teacher)
        .and_then(|t| t.shifted_drop);
    for (i, r) in results.iter_mut().enumerate() {
        if r.role == Role::Teacher {
            r.verdict = Verdict::Teacher;
            continue;
        }
        let reasons = reasons_to_drop(r, thresholds, teacher_drop);
        if reasons.is_empty() {
            r.verdict = Verdict::Keep;
            if best.is_none_or(|(_, p)| r.params < p) {
                best = Some((i, r.params));
            }
        } else {
            r.verdict = Verdict::Drop(reasons);
        }
    }
    best.map(|(i, _)| i)
}

/// Every minimum of the rule that a student misses, in the rule's order, so that its verdict
/// names all of them at once.
fn reasons_to_drop(r: &ModelResult, thresholds: &Thresholds, teacher_drop: Option<f64>) -> Vec<String> {
    let min_accuracy = thresholds.min_accuracy;
    let accuracy = (r.accuracy.is_nan() || r.accuracy < min_accuracy)
        .then(|| format!("accuracy {:.3} < {min_accuracy}", r.accuracy));
    [
        accuracy,
        similarity_reason(r, thresholds),
        faithfulness_reason(r, thresholds),
        behaviour_reason(r, thresholds),
        shift_reason(r, thresholds, teacher_drop),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Similarity below the minimum: the raw cosine in absolute mode, the calibrated score in
/// calibrated mode (which has none when the ceiling is not above chance).
fn similarity_reason(r: &ModelResult, thresholds: &Thresholds) -> Option<String> {
    let min_similarity = thresholds.min_similarity;
    match thresholds.similarity_mode {
        SimilarityMode::Absolute => {
            let similarity = r.similarity_mean.unwrap_or(f64::NAN);
            (similarity.is_nan() || similarity < min_similarity)
                .then(|| format!("similarity {similarity:.3} < {min_similarity}"))
        }
        SimilarityMode::Calibrated => match r.calibrated_mean {
            Some(c) if c >= thresholds.min_calibrated => None,
            Some(c) => Some(format!("calibrated similarity {c:.2} < {}", thresholds.min_calibrated)),
            None => Some("no calibrated similarity (the ceiling is not above chance)".into()),
        },
    }
}

/// Comprehensiveness above random below `--min-faithfulness`, when that minimum is asked for;
/// a student not measured cannot be said to meet it.
fn faithfulness_reason(r: &ModelResult, thresholds: &Thresholds) -> Option<String> {
    let min = thresholds.min_faithfulness?;
    match r.faithfulness.map(|f| f.comprehensiveness_gain()) {
        Some(gain) if gain >= min => None,
        Some(gain) => Some(format!("comprehensiveness {gain:.3} above random < {min}")),
        None => Some("faithfulness not measured".into()),
    }
}

/// Behavioural agreement below `--min-behavioural`, when that minimum is asked for; a student
/// not measured, or without an agreement to measure, cannot be said to meet it.
fn behaviour_reason(r: &ModelResult, thresholds: &Thresholds) -> Option<String> {
    let min = thresholds.min_behavioural?;
    match r.behaviour.map(|b| b.agreement.map(|a| a.mean)) {
        Some(Some(a)) if a >= min => None,
        Some(Some(a)) => Some(format!("behavioural agreement {a:.2} < {min}")),
        Some(None) => Some("no behavioural agreement (the teacher's top tokens barely matter to it)".into()),
        None => Some("behavioural agreement not measured".into()),
    }
}

/// A student that loses more accuracy under the shift than the teacher does, by more than
/// `--max-shift-drop`: it fails where the teacher holds.
fn shift_reason(r: &ModelResult, thresholds: &Thresholds, teacher_drop: Option<f64>) -> Option<String> {
    let (max, drop, teacher_drop) = (thresholds.max_shift_drop?, r.shifted_drop?, teacher_drop?);
    (drop - teacher_drop > max).then(|| {
        format!(
            "shifted accuracy {:.3}: {:.3} more lost under the shift than the teacher (> {max})",
            r.shifted_accuracy.unwrap_or(f64::NAN),
            drop - teacher_drop
        )
    })
}

/// What the reader must know before any verdict: that the teacher is an unreliable reference,
/// or that the absolute threshold would drop a retrained teacher too.
fn preamble(thresholds: &Thresholds, c: &Calibration) -> String {
    let min_similarity = thresholds.min_similarity;
    let mut preamble = String::new();
    if !c.teacher_warnings.is_empty() {
        preamble.push_str(&format!(
            "The reference is unreliable: {}. Read every similarity below with that in mind. ",
            c.teacher_warnings.join("; ")
        ));
    }
    if thresholds.similarity_mode == SimilarityMode::Absolute
        && c.ceiling.is_some()
        && let Some(why) = &c.not_measurable
    {
        preamble.push_str(&format!(
            "Calibrated similarity is not measurable ({why}), so the rule holds the raw similarity against {min_similarity}. "
        ));
    }
    if thresholds.similarity_mode == SimilarityMode::Absolute
        && let Some(ceiling) = &c.ceiling
        && ceiling.cosine.mean < min_similarity
    {
        preamble.push_str(&format!(
            "The similarity threshold {min_similarity} lies above the measured ceiling: the teacher retrained with another seed agrees with it at {:.3}, so a retrained teacher would be dropped too{}. ",
            ceiling.cosine.mean,
            if c.not_measurable.is_none() {
                " (--similarity-mode calibrated measures students against that ceiling)"
            } else {
                ""
            }
        ));
    }
    preamble
}

/// Marks `results[i]` recommended and says why, with its size relative to the teacher's.
fn recommend(results: &mut [ModelResult], i: usize, preamble: &str) -> Decision {
    let teacher_params = results
        .iter()
        .find(|r| r.role == Role::Teacher)
        .map_or(0, |t| t.params)
        .max(1);
    results[i].verdict = Verdict::Recommended;
    let r = &results[i];
    let calibrated = r
        .calibrated_mean
        .map(|c| format!(", calibrated {c:.2}"))
        .unwrap_or_default();
    Decision {
        recommended: Some(r.name.clone()),
        explanation: format!(
            "{preamble}Recommended: {} ({} parameters, {:.1}% of the teacher's): accuracy {:.3}, similarity to the teacher {:.3}{calibrated}.",
            r.name,
            r.params,
            100.0 * r.params as f64 / teacher_params as f64,
            r.accuracy,
            r.similarity_mean.unwrap_or(f64::NAN)
        ),
    }
}

/// No student passes: says the rule, and what to try next, which depends on what this run
/// already tried.
fn recommend_none(results: &[ModelResult], thresholds: &Thresholds, preamble: &str) -> Decision {
    let advice = if results.iter().any(|r| r.objective == Some(Objective::Align)) {
        "Keep the teacher, or train the students longer"
    } else {
        "Keep the teacher, or train the students with --align (distillation plus the teacher's outputs on views of \
         its evidence) or longer"
    };
    Decision {
        recommended: None,
        explanation: format!(
            "{preamble}No student passes the rule ({}); see each verdict. {advice}.",
            thresholds.rule()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, params: usize, accuracy: f64, similarity: Option<f64>) -> ModelResult {
        ModelResult {
            name: name.into(),
            role: if name == "teacher" {
                Role::Teacher
            } else {
                Role::Student
            },
            architecture: "bert".into(),
            layers: 1,
            hidden: 8,
            params,
            accuracy,
            f1: accuracy,
            confusion: vec![],
            inference_seq_per_s: 1.0,
            train_seq_per_s: 1.0,
            best_epoch: 1,
            epochs_run: 1,
            validation_accuracy: accuracy,
            similarity_mean: similarity,
            ..ModelResult::default()
        }
    }

    #[test]
    fn a_student_that_fails_the_shift_where_the_teacher_holds_is_dropped() {
        let shifted = |name: &str, params: usize, drop: f64| ModelResult {
            shifted_accuracy: Some(0.95 - drop),
            shifted_drop: Some(drop),
            ..result(name, params, 0.95, Some(0.9))
        };
        let mut results = vec![
            shifted("teacher", 1000, 0.01),
            shifted("big", 500, 0.05),
            shifted("small", 100, 0.34),
        ];
        let thresholds = Thresholds {
            max_shift_drop: Some(0.10),
            ..Thresholds::default()
        };
        let d = decide(&mut results, &thresholds, None);
        assert_eq!(d.recommended.as_deref(), Some("big"));
        let verdict = results[2].verdict.to_string();
        assert!(
            verdict.contains("shifted accuracy 0.610: 0.330 more lost under the shift than the teacher (> 0.1)"),
            "{verdict}"
        );
        // Without a shifted part the test does not apply.
        let d = decide(&mut results, &Thresholds::default(), None);
        assert_eq!(d.recommended.as_deref(), Some("small"));
    }
    #[test]
    fn decision_keeps_passing_students_and_recommends_the_smallest() {
        let mut results = vec![
            result("teacher", 100, 0.9, None),
            result("big", 50, 0.85, Some(0.9)),
            result("small", 10, 0.75, Some(0.81)),
            result("tiny_but_wrong", 5, 0.6, Some(0.95)),
            result("tiny_but_different", 4, 0.9, Some(0.5)),
        ];
        let d = decide(&mut results, &Thresholds::default(), None);
        assert_eq!(d.recommended.as_deref(), Some("small"));
        assert!(
            results[1].verdict.to_string().starts_with("keep")
                && results[2].verdict.to_string().contains("recommended")
        );
        assert!(
            results[3].verdict.to_string().contains("accuracy 0.600 < 0.7"),
            "{}",
            results[3].verdict
        );
        assert!(
            results[4].verdict.to_string().contains("similarity 0.500 < 0.8"),
            "{}",
            results[4].verdict
        );
        let d = decide(
            &mut results,
            &Thresholds {
                min_accuracy: 0.95,
                ..Thresholds::default()
            },
            None,
        );
        assert_eq!(d.recommended, None);
        // Nobody was aligned: the advice names --align; once a student was, it does not.
        assert!(d.explanation.contains("--align"), "{}", d.explanation);
        results[2].objective = Some(Objective::Align);
        let strict = Thresholds {
            min_accuracy: 0.95,
            ..Thresholds::default()
        };
        let again = decide(&mut results, &strict, None);
        assert!(!again.explanation.contains("--align"), "{}", again.explanation);
        assert!(d.explanation.contains("No student passes"));
        assert_eq!(results[0].verdict, Verdict::Teacher);
    }

    #[test]
    fn calibrated_mode_and_the_ceiling_are_said() {
        let mut results = vec![
            result("teacher", 100, 0.9, None),
            result("big", 50, 0.85, Some(0.5)),
            result("small", 10, 0.85, Some(0.45)),
        ];
        results[1].calibrated_mean = Some(0.95);
        results[2].calibrated_mean = Some(0.7);
        let ceiling = astrid::schema::Agreements {
            cosine: astrid::schema::Estimate {
                mean: 0.52,
                ci: [0.45, 0.6],
            },
            ..Default::default()
        };
        let calibration = Calibration {
            ceiling: Some(ceiling),
            floor: 0.1,
            ..Calibration::default()
        };
        let d = decide(&mut results, &Thresholds::default(), Some(&calibration));
        assert_eq!(d.recommended, None);
        assert!(
            d.explanation.contains("a retrained teacher would be dropped too"),
            "{}",
            d.explanation
        );
        let calibrated = Thresholds {
            similarity_mode: SimilarityMode::Calibrated,
            ..Thresholds::default()
        };
        let d = decide(&mut results, &calibrated, Some(&calibration));
        assert_eq!(d.recommended.as_deref(), Some("big"));
        assert!(
            results[2]
                .verdict
                .to_string()
                .contains("calibrated similarity 0.70 < 0.8"),
            "{}",
            results[2].verdict
        );
        assert!(!d.explanation.contains("dropped too"));
        let warned = Calibration {
            teacher_warnings: vec!["it took the shortcut".into()],
            ..calibration
        };
        let d = decide(
            &mut results,
            &Thresholds {
                min_behavioural: Some(0.5),
                ..calibrated
            },
            Some(&warned),
        );
        assert!(
            d.explanation
                .starts_with("The reference is unreliable: it took the shortcut"),
            "{}",
            d.explanation
        );
        assert_eq!(d.recommended, None);
        assert!(
            results[1]
                .verdict
                .to_string()
                .contains("behavioural agreement not measured")
        );
    }
}
