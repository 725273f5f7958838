//! Is the teacher a reference worth measuring students against, and are its retrained copies
//! the equally good models the ceiling needs? The warnings the report and the summary open
//! with.

use astrid::schema::{Agreements, ModelResult, Role};

use crate::pipeline::calibration::CalibrationInputs;

/// The teacher's accuracy may lie this far below its copies' mean before it is questioned.
const ACCURACY_TOLERANCE: f64 = 0.05;
/// A teacher within this of the most common class's share has learned nothing to explain.
const CHANCE_MARGIN: f64 = 0.01;

/// Copies clearly less accurate than the teacher are not "equally good models": agreement
/// with them understates what an equally good model reaches.
pub fn check_copies(results: &[ModelResult], inputs: &CalibrationInputs) -> Vec<String> {
    let Some(teacher) = results.iter().find(|r| r.role == Role::Teacher) else {
        return Vec::new();
    };
    inputs
        .references
        .iter()
        .enumerate()
        .filter(|(_, (_, accuracy, _))| *accuracy < teacher.accuracy - ACCURACY_TOLERANCE)
        .map(|(i, (seed, accuracy, _))| {
            format!(
                "copy {} (seed {seed}) reaches test accuracy {accuracy:.3} against the teacher's {:.3}: not an equally good model, \
                 so the ceiling is lower than equally good models would give and calibrated scores above 1 are to be expected",
                i + 1,
                teacher.accuracy
            )
        })
        .collect()
}

/// A teacher no better than always predicting the most common class, on test or validation:
/// its attributions explain nothing, whatever they agree with.
fn at_chance(teacher: &ModelResult, majority_share: f64) -> Option<String> {
    let chance = majority_share + CHANCE_MARGIN;
    (teacher.accuracy <= chance || teacher.validation_accuracy <= chance).then(|| {
        format!(
            "the teacher is no better than always predicting the most common class ({:.1}% of the texts): test \
             accuracy {:.3}, validation accuracy {:.3}; it has learned nothing for its explanations to show",
            100.0 * majority_share,
            teacher.accuracy,
            teacher.validation_accuracy
        )
    })
}

/// Why the teacher is not a reference to measure students against, if anything says so.
pub fn check_teacher(
    results: &[ModelResult],
    inputs: &CalibrationInputs,
    ceiling: Option<&Agreements>,
    between: Option<&Agreements>,
    floor: f64,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(teacher) = results.iter().find(|r| r.role == Role::Teacher) else {
        return warnings;
    };
    if let Some(warning) = at_chance(teacher, inputs.majority_share) {
        warnings.push(warning);
    }
    if let (Some(c), Some(b)) = (ceiling, between)
        && c.cosine.ci[1] < b.cosine.ci[0]
    {
        warnings.push(format!(
            "the teacher agrees with its retrained copies at {:.3} [{:.3}, {:.3}] while they agree with each other at {:.3} [{:.3}, {:.3}]: \
             its reasons are not the ones retraining finds",
            c.cosine.mean, c.cosine.ci[0], c.cosine.ci[1], b.cosine.mean, b.cosine.ci[0], b.cosine.ci[1]
        ));
    }
    if let Some(c) = ceiling
        && c.cosine.mean <= floor
    {
        warnings.push(format!(
            "the teacher's retrained copies agree with it at {:.3}, no better than chance ({floor:.3}): its explanations are noise at this size",
            c.cosine.mean
        ));
    }
    if !inputs.references.is_empty() {
        let mean: f64 = inputs.references.iter().map(|(_, a, _)| a).sum::<f64>() / inputs.references.len() as f64;
        if teacher.accuracy < mean - ACCURACY_TOLERANCE {
            warnings.push(format!(
                "the teacher's test accuracy {:.3} is below its retrained copies' ({}): this training run went wrong",
                teacher.accuracy,
                inputs
                    .references
                    .iter()
                    .map(|(_, a, _)| format!("{a:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(drop) = teacher.shifted_drop
        && drop >= crate::pipeline::summary::SHIFT_FAILURE
    {
        warnings.push(format!(
            "the teacher loses {drop:.3} of its accuracy on the shifted test: it leans on what the shift breaks (on the \
             embedded default, the planted shortcut), and students that share its reasons share its mistake"
        ));
    }
    if let (Some(shortcut), Some(rationale)) = (teacher.shortcut_mass, teacher.rationale_mass)
        && shortcut > rationale
    {
        warnings.push(format!(
            "the teacher puts more of its attribution on the planted shortcut ({shortcut:.3}) than on the rationale ({rationale:.3}): \
             it took the shortcut, and students that share its reasons share its mistake"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_teacher_at_chance_is_an_unreliable_reference_named_first() {
        let teacher = |accuracy: f64, validation_accuracy: f64| ModelResult {
            role: Role::Teacher,
            accuracy,
            validation_accuracy,
            ..ModelResult::default()
        };
        let inputs = |majority_share: f64| CalibrationInputs {
            teacher: &[],
            references: vec![],
            untrained: &[],
            left_out: &[],
            majority_share,
        };
        // Every model at 0.500 on balanced data.
        let warnings = check_teacher(&[teacher(0.5, 0.5)], &inputs(0.5), None, None, 0.0);
        assert!(
            warnings[0].starts_with("the teacher is no better than always predicting the most common class (50.0%"),
            "{warnings:?}"
        );
        // On 65/35 data, 0.66 is the majority class: still nothing learned.
        assert_eq!(
            check_teacher(&[teacher(0.9, 0.66)], &inputs(0.65), None, None, 0.0).len(),
            1
        );
        // A teacher that learned passes this check.
        assert!(check_teacher(&[teacher(0.9, 0.88)], &inputs(0.65), None, None, 0.0).is_empty());
    }

    #[test]
    fn a_copy_clearly_worse_than_the_teacher_is_named() {
        let results = vec![ModelResult {
            role: Role::Teacher,
            accuracy: 0.95,
            ..ModelResult::default()
        }];
        let inputs = CalibrationInputs {
            teacher: &[],
            references: vec![(108, 0.78, &[]), (109, 0.93, &[])],
            untrained: &[],
            left_out: &[],
            majority_share: 0.5,
        };
        let warnings = check_copies(&results, &inputs);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("copy 1 (seed 108) reaches test accuracy 0.780"),
            "{warnings:?}"
        );
    }
}
