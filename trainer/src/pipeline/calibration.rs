//! The calibration stage: what a student's similarity to the teacher is measured against.
//! The ceiling is the teacher's agreement with its own retrained copies (an equally good model
//! of the same kind); the floor is chance (an untrained model of the teacher's shape, and the
//! teacher's attributions shuffled within each text). A student's calibrated score says where
//! its similarity lies between the two. The teacher is checked first: a reference that its own
//! copies disagree with, or that took the planted shortcut, is said to be unreliable.

use astrid::schema::{Agreements, Calibration, ModelResult, Positions, Role, TextAttribution};

use crate::data::split::SplitMix64;
use crate::pipeline::comparison::{TextAgreement, agreements, text_agreement};
use crate::training::metrics::{mean_at, paired_bootstrap};

/// Shuffles per text for the permutation floor: enough that its mean is stable.
const PERMUTATIONS: usize = 20;
/// The explanations the calibration compares, each one row per explained text.
pub struct CalibrationInputs<'a> {
    pub teacher: &'a [TextAttribution],
    /// One set per retrained copy kept, with its seed and test accuracy.
    pub references: Vec<(u64, f64, &'a [TextAttribution])>,
    /// The copies trained but left out (not as good as the teacher), each with why.
    pub left_out: &'a [String],
    pub untrained: &'a [TextAttribution],
    /// The share of the most common class in the data: what always predicting it scores (on
    /// balanced data, chance).
    pub majority_share: f64,
}

/// Per-text cosines the calibrated score needs, kept for its paired bootstrap.
struct PerText {
    ceiling: Option<Vec<f64>>,
    floor_untrained: Vec<f64>,
    floor_permuted: Vec<f64>,
}

/// The teacher's attributions with the real tokens' values shuffled (special tokens stay).
fn permuted(row: &TextAttribution, rng: &mut SplitMix64) -> Vec<f32> {
    let positions: Vec<usize> = (0..row.special.len()).filter(|&i| !row.special[i]).collect();
    let mut values: Vec<f32> = positions.iter().map(|&i| row.attributions[i]).collect();
    rng.shuffle(&mut values);
    let mut out = row.attributions.clone();
    for (&i, v) in positions.iter().zip(values) {
        out[i] = v;
    }
    out
}

/// Measures the ceiling and the floors, fills each student's calibrated score, and checks the
/// teacher (`results` teacher first, `students` their explanations in the same order).
pub fn calibrate(
    results: &mut [ModelResult],
    students: &[&[TextAttribution]],
    inputs: &CalibrationInputs,
    top_k: usize,
    positions: Positions,
    seed: u64,
) -> anyhow::Result<Calibration> {
    let against = AgainstTeacher {
        teacher: inputs.teacher,
        top_k,
        positions,
    };
    let texts = ReferenceTexts::measure(&against, inputs, seed)?;
    let cosines = |texts: &[TextAgreement]| texts.iter().map(|a| a.cosine).collect::<Vec<f64>>();
    let per_text = PerText {
        ceiling: texts.ceiling.as_deref().map(cosines),
        floor_untrained: cosines(&texts.untrained),
        floor_permuted: cosines(&texts.permuted),
    };
    let ceiling = texts.ceiling.as_deref().map(|t| agreements(t, seed));
    let between_references = texts.between.as_deref().map(|t| agreements(t, seed));
    let floor_untrained = agreements(&texts.untrained, seed);
    let floor_permuted = agreements(&texts.permuted, seed);
    let floor = floor_untrained.cosine.mean.max(floor_permuted.cosine.mean);

    let not_measurable = not_measurable(ceiling.as_ref(), inputs.left_out, &floor_untrained, &floor_permuted);
    if not_measurable.is_none() {
        fill_calibrated_scores(results, students, &against, &per_text, seed)?;
    }
    let teacher_warnings = crate::pipeline::reference_check::check_teacher(
        results,
        inputs,
        ceiling.as_ref(),
        between_references.as_ref(),
        floor,
    );
    let ceiling_warnings = crate::pipeline::reference_check::check_copies(results, inputs);
    Ok(Calibration {
        reference_seeds: inputs.references.iter().map(|(s, _, _)| *s).collect(),
        reference_accuracy: inputs.references.iter().map(|(_, a, _)| *a).collect(),
        ceiling,
        between_references,
        floor_untrained,
        floor_permuted,
        floor,
        teacher_warnings,
        ceiling_warnings,
        copies_tried: inputs.references.len() + inputs.left_out.len(),
        copies_left_out: inputs.left_out.to_vec(),
        not_measurable,
    })
}

/// Why calibrated scores cannot be given: without a ceiling (no copies, or none as good as
/// the teacher), or when the ceiling's 95% interval reaches the higher floor's, a score
/// between them would divide by noise.
fn not_measurable(
    ceiling: Option<&Agreements>,
    left_out: &[String],
    untrained: &Agreements,
    permuted: &Agreements,
) -> Option<String> {
    let Some(ceiling) = ceiling else {
        return Some(if left_out.is_empty() {
            "no retrained copies of the teacher, so no ceiling (--reference-seeds 0)".to_string()
        } else {
            format!(
                "none of the {} retrained copies is as good as the teacher (within --copy-tolerance; see the copies left out)",
                left_out.len()
            )
        });
    };
    let floor = if untrained.cosine.mean >= permuted.cosine.mean {
        untrained
    } else {
        permuted
    };
    let ([c_lo, c_hi], [f_lo, f_hi]) = (ceiling.cosine.ci, floor.cosine.ci);
    (c_lo <= f_hi).then(|| {
        format!(
            "the ceiling's 95% interval [{c_lo:.3}, {c_hi:.3}] reaches the floor's [{f_lo:.3}, {f_hi:.3}]: a retrained \
             teacher is not told apart from chance (more texts, --explain-n, or more copies, --reference-seeds, narrow them)"
        )
    })
}

/// How another model's explanations are set against the teacher's: every measure of the
/// calibration compares the same texts by the same settings.
struct AgainstTeacher<'a> {
    teacher: &'a [TextAttribution],
    top_k: usize,
    positions: Positions,
}

impl AgainstTeacher<'_> {
    /// `other`'s agreement with the teacher on each text.
    fn per_text(&self, other: &[TextAttribution]) -> anyhow::Result<Vec<TextAgreement>> {
        self.teacher
            .iter()
            .zip(other)
            .map(|(t, o)| text_agreement(t, &o.attributions, self.top_k, self.positions))
            .collect()
    }
}

/// The references' agreements per text, before they are summarised: the ceiling, the copies
/// with each other, and the two chance levels.
struct ReferenceTexts {
    /// Per text, the mean over the copies; `None` without copies.
    ceiling: Option<Vec<TextAgreement>>,
    /// Per text, the mean over pairs of copies; `None` with fewer than two.
    between: Option<Vec<TextAgreement>>,
    untrained: Vec<TextAgreement>,
    permuted: Vec<TextAgreement>,
}

impl ReferenceTexts {
    fn measure(against: &AgainstTeacher, inputs: &CalibrationInputs, seed: u64) -> anyhow::Result<ReferenceTexts> {
        let ceiling = ceiling_texts(against, inputs)?;
        let between = between_texts(against, inputs)?;
        let untrained = against.per_text(inputs.untrained)?;
        let permuted = permuted_texts(against, seed)?;
        Ok(ReferenceTexts {
            ceiling,
            between,
            untrained,
            permuted,
        })
    }
}

/// The ceiling: per text, the teacher's agreement with its copies, averaged over the copies.
fn ceiling_texts(against: &AgainstTeacher, inputs: &CalibrationInputs) -> anyhow::Result<Option<Vec<TextAgreement>>> {
    let per_copy: Vec<Vec<TextAgreement>> = inputs
        .references
        .iter()
        .map(|(_, _, rows)| against.per_text(rows))
        .collect::<anyhow::Result<_>>()?;
    Ok((!per_copy.is_empty()).then(|| {
        (0..against.teacher.len())
            .map(|j| TextAgreement::mean(&per_copy.iter().map(|c| c[j]).collect::<Vec<_>>()))
            .collect()
    }))
}

/// The copies with each other: per text, the mean over pairs; what the teacher's agreement
/// with them is judged against.
fn between_texts(against: &AgainstTeacher, inputs: &CalibrationInputs) -> anyhow::Result<Option<Vec<TextAgreement>>> {
    if inputs.references.len() < 2 {
        return Ok(None);
    }
    let mut per_text = Vec::with_capacity(against.teacher.len());
    for j in 0..against.teacher.len() {
        let mut pairs = Vec::new();
        for (a, (_, _, ra)) in inputs.references.iter().enumerate() {
            for (_, _, rb) in &inputs.references[a + 1..] {
                pairs.push(text_agreement(
                    &ra[j],
                    &rb[j].attributions,
                    against.top_k,
                    against.positions,
                )?);
            }
        }
        per_text.push(TextAgreement::mean(&pairs));
    }
    Ok(Some(per_text))
}

/// The permutation floor: per text, the teacher against its own attributions shuffled,
/// averaged over [`PERMUTATIONS`] shuffles.
fn permuted_texts(against: &AgainstTeacher, seed: u64) -> anyhow::Result<Vec<TextAgreement>> {
    let mut rng = SplitMix64::new(seed ^ 0x5045_524d);
    against
        .teacher
        .iter()
        .map(|t| {
            let parts = (0..PERMUTATIONS)
                .map(|_| text_agreement(t, &permuted(t, &mut rng), against.top_k, against.positions))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(TextAgreement::mean(&parts))
        })
        .collect()
}

/// Each student's calibrated score (where there is one), from its per-text cosines with the
/// teacher, paired with the references' on the same texts.
fn fill_calibrated_scores(
    results: &mut [ModelResult],
    students: &[&[TextAttribution]],
    against: &AgainstTeacher,
    per_text: &PerText,
    seed: u64,
) -> anyhow::Result<()> {
    for (result, rows) in results.iter_mut().filter(|r| r.role == Role::Student).zip(students) {
        let student: Vec<f64> = against.per_text(rows)?.iter().map(|a| a.cosine).collect();
        if let Some(e) = calibrated_score(&student, per_text, seed) {
            result.calibrated_mean = Some(e.mean);
            result.calibrated_ci = Some(e.ci);
        }
    }
    Ok(())
}

/// (student − floor) / (ceiling − floor) of the means over a sample of texts, the floor being
/// the higher of the two chance levels on that sample; `None` without a ceiling or when the
/// ceiling is not above the floor.
fn calibrated_score(student: &[f64], per_text: &PerText, seed: u64) -> Option<astrid::schema::Estimate> {
    let ceiling = per_text.ceiling.as_ref()?;
    let score = |sample: &[usize]| {
        let floor = mean_at(&per_text.floor_untrained, sample).max(mean_at(&per_text.floor_permuted, sample));
        let span = mean_at(ceiling, sample) - floor;
        if span <= 1e-9 {
            return f64::NAN;
        }
        (mean_at(student, sample) - floor) / span
    };
    paired_bootstrap(student.len(), seed, score)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_text(ceiling: f64, untrained: f64, permuted: f64, n: usize) -> PerText {
        PerText {
            ceiling: Some(vec![ceiling; n]),
            floor_untrained: vec![untrained; n],
            floor_permuted: vec![permuted; n],
        }
    }

    #[test]
    fn calibrated_score_is_one_at_the_ceiling_and_zero_at_the_floor() {
        let p = per_text(0.6, 0.1, 0.2, 12);
        let at = |s: f64| calibrated_score(&[s; 12], &p, 1).unwrap();
        assert!((at(0.6).mean - 1.0).abs() < 1e-12);
        assert!((at(0.2).mean - 0.0).abs() < 1e-12, "the higher floor counts");
        assert!((at(0.4).mean - 0.5).abs() < 1e-12);
        assert!(at(0.9).mean > 1.0);
        assert_eq!(calibrated_score(&[0.5; 12], &per_text(0.2, 0.1, 0.2, 12), 1), None);
        let none = PerText {
            ceiling: None,
            ..per_text(0.6, 0.1, 0.2, 12)
        };
        assert_eq!(calibrated_score(&[0.5; 12], &none, 1), None);
    }

    /// Six texts of five tokens ([CLS] … [SEP]), attributions drawn from `seed`.
    fn rows(seed: u64) -> Vec<TextAttribution> {
        let mut rng = SplitMix64::new(seed);
        (0..6)
            .map(|i| TextAttribution {
                index: i,
                tokens: ["[CLS]", "a", "b", "c", "[SEP]"].map(String::from).to_vec(),
                special: vec![true, false, false, false, true],
                label: 0,
                explanation: astrid::Explanation {
                    attributions: (0..5).map(|_| rng.unit() as f32 - 0.5).collect(),
                    target: 0,
                    probs: vec![1.0],
                    convergence_delta: None,
                    f_input: None,
                    f_baseline: None,
                    gradient_evaluations: 0,
                },
            })
            .collect()
    }

    #[test]
    fn no_calibrated_score_when_the_ceiling_reaches_the_floor() {
        let (teacher, other, student) = (rows(1), rows(2), rows(3));
        let mut results = vec![
            ModelResult {
                role: Role::Teacher,
                accuracy: 0.9,
                validation_accuracy: 0.9,
                ..ModelResult::default()
            },
            ModelResult::default(),
        ];
        // The copy is the untrained model: the ceiling is the floor.
        let inputs = CalibrationInputs {
            teacher: &teacher,
            references: vec![(101, 0.9, &other)],
            untrained: &other,
            left_out: &[],
            majority_share: 0.5,
        };
        let c = calibrate(&mut results, &[&student], &inputs, 2, Positions::Content, 7).unwrap();
        let why = c.not_measurable.expect("not measurable");
        assert!(why.contains("reaches the floor's"), "{why}");
        assert_eq!((results[1].calibrated_mean, results[1].calibrated_ci), (None, None));
        // The copy is the teacher itself: the ceiling is 1, far above the floor.
        let inputs = CalibrationInputs {
            references: vec![(101, 0.9, &teacher)],
            ..inputs
        };
        let c = calibrate(&mut results, &[&student], &inputs, 2, Positions::Content, 7).unwrap();
        assert_eq!(c.not_measurable, None);
        assert!(results[1].calibrated_mean.is_some());
        // Every copy left out as not as good as the teacher: no ceiling, and that is why.
        let left_out = [
            "reference_1 (seed 108): validation score 0.8".to_string(),
            "reference_2".to_string(),
        ];
        let inputs = CalibrationInputs {
            references: vec![],
            left_out: &left_out,
            ..inputs
        };
        let mut results = vec![results[0].clone(), ModelResult::default()];
        let c = calibrate(&mut results, &[&student], &inputs, 2, Positions::Content, 7).unwrap();
        assert_eq!((c.copies_tried, c.copies_left_out.len()), (2, 2));
        let why = c.not_measurable.expect("not measurable");
        assert!(
            why.starts_with("none of the 2 retrained copies is as good as the teacher"),
            "{why}"
        );
        assert_eq!(results[1].calibrated_mean, None);
    }

    #[test]
    fn a_permutation_keeps_special_tokens_and_the_values() {
        let row = TextAttribution {
            index: 0,
            tokens: ["[CLS]", "a", "b", "c", "[SEP]"].map(String::from).to_vec(),
            special: vec![true, false, false, false, true],
            label: 0,
            explanation: astrid::Explanation {
                attributions: vec![9.0, 1.0, 2.0, 3.0, 8.0],
                target: 0,
                probs: vec![1.0],
                convergence_delta: None,
                f_input: None,
                f_baseline: None,
                gradient_evaluations: 0,
            },
        };
        let p = permuted(&row, &mut SplitMix64::new(3));
        assert_eq!((p[0], p[4]), (9.0, 8.0));
        let mut inner = p[1..4].to_vec();
        inner.sort_by(f32::total_cmp);
        assert_eq!(inner, vec![1.0, 2.0, 3.0]);
    }
}
