//! Labelled texts: read from the user's CSV/TSV/JSONL (SCOTUS `justice.csv` recognised as
//! downloaded), or generated (the embedded default corpus); split deterministically.

pub mod load;
pub mod split;
pub mod synthetic;
pub mod vocab;

use serde::{Deserialize, Serialize};

/// A labelled text collection. Classes are indices into `label_names`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    pub label_names: Vec<String>,
    /// Where it came from (a path, or "embedded default").
    pub source: String,
    /// Rows skipped because their label was blank.
    pub dropped_blank_labels: usize,
    /// Per text, character spans of the planted rationale and of the shortcut word (embedded
    /// default only; empty otherwise).
    #[serde(default)]
    pub rationale_spans: Vec<Vec<(usize, usize)>>,
    #[serde(default)]
    pub shortcut_spans: Vec<Vec<(usize, usize)>>,
    /// SHA-256 of the file's bytes (a run is bound to its data by it); `None` when generated.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Per text, the `--shift-by` column's value (empty without `--shift-by`).
    #[serde(default)]
    pub shift_values: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// How many texts each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.label_names.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    pub fn has_planted_signal(&self) -> bool {
        !self.rationale_spans.is_empty()
    }
}
