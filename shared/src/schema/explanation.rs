//! One text explained by one model, as `trainer explain --json` prints it and the browser
//! engine returns it.

use serde::{Deserialize, Serialize};

use crate::bundle::TextExplanation;
use crate::explain::ExplainOptions;

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
    /// One score per token.
    pub attributions: Vec<f32>,
    pub target: usize,
    /// The explained class's name, when the model's labels are known.
    pub label: Option<String>,
    /// Every class name, in class order.
    pub labels: Vec<String>,
    pub probs: Vec<f32>,
    /// IG only: sum(attributions) − (F(input) − F(baseline)).
    pub convergence_delta: Option<f32>,
    pub f_input: Option<f32>,
    pub f_baseline: Option<f32>,
    /// Gradients computed (adaptive IG: as many as it needed).
    #[serde(default)]
    pub gradient_evaluations: usize,
    pub options: ExplainOptions,
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
            attributions: ex.attributions.clone(),
            target: ex.target,
            label: labels.get(ex.target).cloned(),
            labels: labels.to_vec(),
            probs: ex.probs.clone(),
            convergence_delta: ex.convergence_delta,
            f_input: ex.f_input,
            f_baseline: ex.f_baseline,
            gradient_evaluations: ex.gradient_evaluations,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips() {
        let record = ExplanationRecord {
            model: "teacher_bert".into(),
            tokens: vec!["[CLS]".into(), "a".into(), "[SEP]".into()],
            input_ids: vec![2, 7, 3],
            special: vec![true, false, true],
            truncated: false,
            attributions: vec![0.0, 0.5, 0.0],
            target: 1,
            label: Some("win".into()),
            labels: vec!["lose".into(), "win".into()],
            probs: vec![0.25, 0.75],
            convergence_delta: Some(1e-4),
            f_input: Some(0.75),
            f_baseline: Some(0.25),
            gradient_evaluations: 50,
            options: ExplainOptions::default(),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<ExplanationRecord>(&text).unwrap(), record);
        assert_eq!(record.probability(), 0.75);
        assert_eq!(record.label_or_index(), "win");
    }
}
