//! A text explained by a model, in the two files that hold one: `trainer explain --json`'s
//! record (which the browser engine returns too), and a line of a run's
//! `explanations/<model>.jsonl`. Both carry the one [`Explanation`] the IG engine returns,
//! flattened into the same JSON fields, beside what each needs to know of the text.

use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::bundle::TextExplanation;
use crate::explain::{ExplainOptions, Explanation};

/// One text explained by one model, with its tokens, its labels and the options used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationRecord {
    /// The model's name (its role in a run).
    pub model: String,
    pub tokens: Vec<String>,
    pub input_ids: Vec<u32>,
    /// True for [CLS]/[SEP]: not compared, kept as they are in the [PAD]/[MASK] baselines.
    pub special: Vec<bool>,
    /// The text was cut to the model's maximum length.
    pub truncated: bool,
    /// The explained class's name, when the model's labels are known.
    pub label: Option<String>,
    /// Every class name, in class order.
    pub labels: Vec<String>,
    #[serde(flatten)]
    pub explanation: Explanation,
    pub options: ExplainOptions,
}

impl Deref for ExplanationRecord {
    type Target = Explanation;

    fn deref(&self) -> &Explanation {
        &self.explanation
    }
}

impl ExplanationRecord {
    pub fn new(model: &str, labels: &[String], result: &TextExplanation, options: &ExplainOptions) -> Self {
        let (tok, ex) = (&result.tokenized, &result.explanation);
        Self {
            model: model.to_string(),
            tokens: tok.tokens.clone(),
            input_ids: tok.ids.clone(),
            special: tok.special.clone(),
            truncated: tok.truncated,
            label: labels.get(ex.target).cloned(),
            labels: labels.to_vec(),
            explanation: ex.clone(),
            options: options.clone(),
        }
    }

    /// The explained class's probability.
    pub fn probability(&self) -> f32 {
        self.probs.get(self.target).copied().unwrap_or(f32::NAN)
    }

    /// The explained class's name, or "class N".
    pub fn label_or_index(&self) -> String {
        self.label.clone().unwrap_or_else(|| format!("class {}", self.target))
    }
}

/// One line of `explanations/<model>.jsonl`: a validation text explained by one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextAttribution {
    /// The text's index in the data.
    pub index: usize,
    pub tokens: Vec<String>,
    pub special: Vec<bool>,
    /// The text's true class.
    pub label: usize,
    #[serde(flatten)]
    pub explanation: Explanation,
}

impl Deref for TextAttribution {
    type Target = Explanation;

    fn deref(&self) -> &Explanation {
        &self.explanation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explanation() -> Explanation {
        Explanation {
            attributions: vec![0.0, 0.5, 0.0],
            target: 1,
            probs: vec![0.25, 0.75],
            convergence_delta: Some(1e-4),
            f_input: Some(0.75),
            f_baseline: Some(0.25),
            gradient_evaluations: 50,
        }
    }

    #[test]
    fn a_record_round_trips() {
        let record = ExplanationRecord {
            model: "teacher_bert".into(),
            tokens: vec!["[CLS]".into(), "a".into(), "[SEP]".into()],
            input_ids: vec![2, 7, 3],
            special: vec![true, false, true],
            truncated: false,
            label: Some("win".into()),
            labels: vec!["lose".into(), "win".into()],
            explanation: explanation(),
            options: ExplainOptions::default(),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<ExplanationRecord>(&text).unwrap(), record);
        assert_eq!(record.probability(), 0.75);
        assert_eq!(record.label_or_index(), "win");
        // The explanation's fields sit at the top level, as the page and the tests read them.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["gradient_evaluations"], 50);
        assert_eq!(value["attributions"][1], 0.5);
    }

    #[test]
    fn a_jsonl_row_round_trips_and_reads_files_without_a_count() {
        let row = TextAttribution {
            index: 3,
            tokens: vec!["[CLS]".into(), "a".into(), "[SEP]".into()],
            special: vec![true, false, true],
            label: 1,
            explanation: explanation(),
        };
        assert_eq!(row.signal(), Some(0.5));
        let line = serde_json::to_string(&row).unwrap();
        assert_eq!(serde_json::from_str::<TextAttribution>(&line).unwrap(), row);
        let older = r#"{"index": 0, "tokens": [], "special": [], "attributions": [], "target": 0, "probs": [1.0],
            "convergence_delta": null, "label": 0, "gradient_evaluations": null}"#;
        let older: TextAttribution = serde_json::from_str(older).unwrap();
        assert_eq!((older.gradient_evaluations, older.signal()), (0, None));
    }
}
