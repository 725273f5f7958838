//! The decision rule: which students to keep, and which one to recommend.

use astrid::schema::{ModelResult, Role, Thresholds};

/// The decision framework's outcome.
pub struct Decision {
    pub recommended: Option<String>,
    pub explanation: String,
}

/// Keeps students with accuracy ≥ `min_accuracy` and similarity ≥ `min_similarity`,
/// recommends the smallest (fewest parameters); marks each model's verdict.
pub fn decide(results: &mut [ModelResult], thresholds: &Thresholds) -> Decision {
    let (min_accuracy, min_similarity) = (thresholds.min_accuracy, thresholds.min_similarity);
    let mut best: Option<(usize, usize)> = None;
    for (i, r) in results.iter_mut().enumerate() {
        if r.role == Role::Teacher {
            r.verdict = "teacher (reference)".into();
            continue;
        }
        let similarity = r.similarity_mean.unwrap_or(f64::NAN);
        let mut reasons = Vec::new();
        if r.accuracy.is_nan() || r.accuracy < min_accuracy {
            reasons.push(format!("accuracy {:.3} < {min_accuracy}", r.accuracy));
        }
        if similarity.is_nan() || similarity < min_similarity {
            reasons.push(format!("similarity {similarity:.3} < {min_similarity}"));
        }
        if reasons.is_empty() {
            r.verdict = "keep".into();
            if best.is_none_or(|(_, p)| r.params < p) {
                best = Some((i, r.params));
            }
        } else {
            r.verdict = format!("drop: {}", reasons.join(", "));
        }
    }
    let teacher_params = results
        .iter()
        .find(|r| r.role == Role::Teacher)
        .map_or(0, |t| t.params)
        .max(1);
    match best {
        Some((i, _)) => {
            results[i].verdict = "keep (recommended: smallest that passes)".into();
            let r = &results[i];
            Decision {
                recommended: Some(r.name.clone()),
                explanation: format!(
                    "Recommended: {} ({} parameters, {:.1}% of the teacher's): accuracy {:.3}, similarity to the teacher {:.3}.",
                    r.name,
                    r.params,
                    100.0 * r.params as f64 / teacher_params as f64,
                    r.accuracy,
                    r.similarity_mean.unwrap_or(f64::NAN)
                ),
            }
        }
        None => Decision {
            recommended: None,
            explanation: format!(
                "No student passes both thresholds (accuracy ≥ {min_accuracy}, similarity ≥ {min_similarity}); see each verdict. Keep the teacher, or train the students longer / with --distill."
            ),
        },
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
    fn decision_keeps_passing_students_and_recommends_the_smallest() {
        let mut results = vec![
            result("teacher", 100, 0.9, None),
            result("big", 50, 0.85, Some(0.9)),
            result("small", 10, 0.75, Some(0.81)),
            result("tiny_but_wrong", 5, 0.6, Some(0.95)),
            result("tiny_but_different", 4, 0.9, Some(0.5)),
        ];
        let d = decide(&mut results, &Thresholds::default());
        assert_eq!(d.recommended.as_deref(), Some("small"));
        assert!(results[1].verdict.starts_with("keep") && results[2].verdict.contains("recommended"));
        assert!(
            results[3].verdict.contains("accuracy 0.600 < 0.7"),
            "{}",
            results[3].verdict
        );
        assert!(
            results[4].verdict.contains("similarity 0.500 < 0.8"),
            "{}",
            results[4].verdict
        );
        let d = decide(
            &mut results,
            &Thresholds {
                min_accuracy: 0.95,
                ..Thresholds::default()
            },
        );
        assert_eq!(d.recommended, None);
        assert!(d.explanation.contains("No student passes"));
        assert_eq!(results[0].verdict, "teacher (reference)");
    }
}
