//! `results.json`'s answer to "does similarity predict generalisation?": with a shifted part,
//! every student and retrained copy as a point (similarity to the teacher against what the
//! shift costs it), and the rank correlations across them.

use serde::{Deserialize, Serialize};

use super::Estimate;

/// One model on the similarity-against-shift plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GeneralisationPoint {
    pub name: String,
    /// A retrained copy of the teacher (not a student).
    pub copy: bool,
    /// Mean cosine similarity of its attributions to the teacher's.
    pub similarity: f64,
    pub calibrated: Option<f64>,
    /// Test (i.i.d.) accuracy.
    pub accuracy: f64,
    /// Test accuracy minus shifted accuracy.
    pub shifted_drop: f64,
}

/// The models' similarities and i.i.d. accuracies against their drops under the shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Generalisation {
    pub points: Vec<GeneralisationPoint>,
    /// Spearman's ρ of similarity and the drop across the models, 95% bootstrap interval over
    /// them: clearly negative when the dissimilar models are the ones that fail. `None` when
    /// either side is the same for every model.
    pub similarity_correlation: Option<Estimate>,
    /// The same for i.i.d. accuracy: what accuracy alone would have told.
    pub accuracy_correlation: Option<Estimate>,
    /// One sentence: whether similarity predicted the failures, against accuracy.
    pub finding: String,
}
