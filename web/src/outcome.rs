//! What one run of "Explain" produced: each model's explanation of the text, compared with
//! the teacher's, ready to show and to hand to automation as `window.astridResult`.

use astrid::compare::{merge_wordpieces, similarity_to_teacher};
use astrid::schema::ExplanationRecord;
use serde::Serialize;

/// One model's row of the result; as JSON, one entry of `window.astridResult.models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelOutcome {
    pub name: String,
    pub is_teacher: bool,
    /// The engine's answer (`explain()` in `engine.rs`).
    #[serde(flatten)]
    pub explanation: ExplanationRecord,
    /// Wall time of the explanation in the engine, milliseconds.
    pub ms: f64,
    /// Cosine of this model's token attributions with the teacher's (non-special tokens).
    pub similarity_to_teacher: Option<f64>,
    /// Its probability once the teacher's top tokens are erased, when the visitor asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_teacher_evidence: Option<EvidenceDrop>,
}

/// What a model's prediction loses when the teacher's top-k tokens are erased from the text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceDrop {
    pub k: usize,
    pub erasure: astrid::erasure::Erasure,
    /// The erased tokens, most important first.
    pub removed: Vec<String>,
    /// The model's probability for its explained class, before and after.
    pub before: f32,
    pub after: f32,
}

impl EvidenceDrop {
    pub fn drop(&self) -> f32 {
        self.before - self.after
    }
}

/// The teacher's `k` most supporting content positions, and their tokens.
pub fn teacher_evidence(teacher: &ExplanationRecord, k: usize) -> (Vec<usize>, Vec<String>) {
    let mut positions = astrid::erasure::ranked_content(&teacher.attributions, &teacher.special);
    positions.truncate(k);
    let tokens = positions.iter().map(|&i| teacher.tokens[i].clone()).collect();
    (positions, tokens)
}

/// `window.astridResult`.
#[derive(Debug, Serialize)]
struct PageResult<'a> {
    backend: &'a str,
    models: &'a [ModelOutcome],
}

/// A unit shown in a row: a token, or a word when pieces are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub text: String,
    pub score: f32,
    pub special: bool,
}

impl ModelOutcome {
    pub fn probability(&self) -> f32 {
        self.explanation.probability()
    }

    pub fn label(&self) -> String {
        self.explanation.label_or_index()
    }

    pub fn units(&self, merge_words: bool) -> Vec<Unit> {
        let e = &self.explanation;
        if merge_words {
            merge_wordpieces(&e.tokens, &e.attributions, &e.special)
                .into_iter()
                .map(|w| Unit {
                    text: w.text,
                    score: w.attribution,
                    special: w.special,
                })
                .collect()
        } else {
            e.tokens
                .iter()
                .zip(&e.attributions)
                .zip(&e.special)
                .map(|((t, &a), &s)| Unit {
                    text: t.clone(),
                    score: a,
                    special: s,
                })
                .collect()
        }
    }
}

/// Fills in each student's cosine similarity to the teacher. All models of a bundle share
/// one tokenizer, so token positions line up; a mismatch is an error, not a silent 0.
pub fn compare_with_teacher(outcomes: &mut [ModelOutcome]) -> Result<(), String> {
    let Some(teacher) = outcomes.iter().find(|o| o.is_teacher).cloned() else {
        return Ok(());
    };
    let t = &teacher.explanation;
    for outcome in outcomes.iter_mut().filter(|o| !o.is_teacher) {
        let e = &outcome.explanation;
        if e.tokens != t.tokens {
            return Err(format!(
                "{} tokenized the text differently from the teacher; the bundle's models must share one tokenizer",
                outcome.name
            ));
        }
        outcome.similarity_to_teacher =
            Some(similarity_to_teacher(&e.attributions, &t.attributions, &t.special).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// `window.astridResult`: `{backend, models: [{name, is_teacher, tokens, input_ids, special,
/// attributions, probs, target, label, convergence_delta, options, ..., similarity_to_teacher,
/// ms}]}` (token level whatever the display), the fields of [`ModelOutcome`].
pub fn result_json(backend: &str, outcomes: &[ModelOutcome]) -> serde_json::Value {
    serde_json::to_value(PageResult {
        backend,
        models: outcomes,
    })
    .unwrap_or_else(|e| serde_json::json!({"error": format!("the result could not be written: {e}")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, teacher: bool, attributions: Vec<f32>) -> ModelOutcome {
        ModelOutcome {
            name: name.into(),
            is_teacher: teacher,
            explanation: ExplanationRecord {
                model: name.into(),
                tokens: ["[CLS]", "pet", "##ition", "granted", "[SEP]"]
                    .map(String::from)
                    .to_vec(),
                input_ids: vec![2, 10, 11, 12, 3],
                special: vec![true, false, false, false, true],
                truncated: false,
                label: Some("win".into()),
                labels: vec!["lose".into(), "win".into()],
                explanation: astrid::Explanation {
                    attributions,
                    target: 1,
                    probs: vec![0.25, 0.75],
                    convergence_delta: Some(1e-4),
                    f_input: Some(0.75),
                    f_baseline: Some(0.5),
                    gradient_evaluations: 50,
                },
                options: astrid::ExplainOptions::default(),
            },
            ms: 12.5,
            similarity_to_teacher: None,
            without_teacher_evidence: None,
        }
    }

    #[test]
    fn students_get_their_cosine_to_the_teacher_over_real_tokens() {
        let mut outcomes = vec![
            outcome("teacher", true, vec![9.0, 1.0, 2.0, 3.0, -9.0]),
            // Same direction on real tokens, very different on [CLS]/[SEP]: cosine 1.
            outcome("same", false, vec![-5.0, 2.0, 4.0, 6.0, 5.0]),
            outcome("opposite", false, vec![0.0, -1.0, -2.0, -3.0, 0.0]),
        ];
        compare_with_teacher(&mut outcomes).unwrap();
        assert_eq!(outcomes[0].similarity_to_teacher, None);
        assert!((outcomes[1].similarity_to_teacher.unwrap() - 1.0).abs() < 1e-9);
        assert!((outcomes[2].similarity_to_teacher.unwrap() + 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_teachers_evidence_is_its_most_supporting_real_tokens() {
        let teacher = outcome("teacher", true, vec![9.0, 1.0, -2.0, 3.0, 9.0]);
        let (positions, tokens) = teacher_evidence(&teacher.explanation, 2);
        assert_eq!(positions, vec![3, 1]);
        assert_eq!(tokens, ["granted", "pet"]);
        assert_eq!(teacher_evidence(&teacher.explanation, 10).0, vec![3, 1, 2]);
    }

    #[test]
    fn different_tokens_are_an_error() {
        let mut other = outcome("other", false, vec![0.0; 5]);
        other.explanation.tokens[1] = "x".into();
        let mut outcomes = vec![outcome("teacher", true, vec![1.0; 5]), other];
        assert!(
            compare_with_teacher(&mut outcomes)
                .unwrap_err()
                .contains("other tokenized")
        );
    }

    #[test]
    fn words_sum_their_pieces_and_the_result_json_reads_back_as_the_record() {
        let o = outcome("teacher", true, vec![0.0, 0.5, 0.25, -1.0, 0.0]);
        let words = o.units(true);
        assert_eq!(
            words.iter().map(|u| u.text.as_str()).collect::<Vec<_>>(),
            ["[CLS]", "petition", "granted", "[SEP]"]
        );
        assert_eq!(words[1].score, 0.75);
        assert_eq!(o.units(false).len(), 5);
        assert_eq!(o.label(), "win");
        assert_eq!(o.probability(), 0.75);
        let json = result_json("webgpu", std::slice::from_ref(&o));
        assert_eq!(json["backend"], "webgpu");
        let m = &json["models"][0];
        // The record's fields sit beside the page's own: read back, they are the same.
        let back: ExplanationRecord = serde_json::from_value(m.clone()).unwrap();
        assert_eq!(back, o.explanation);
        assert_eq!(m["name"], "teacher");
        assert_eq!(m["ms"], 12.5);
        assert!(m["similarity_to_teacher"].is_null());
    }
}
