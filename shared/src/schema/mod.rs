//! Every file Astrid writes for another part of Astrid to read, defined once: the run's
//! results (`results.json`, `explanations/*.jsonl`), the web bundle's manifest, and an
//! explained text. The trainer writes them, the report, the export, the page and the tests
//! read them through these types; adding a field is one edit the compiler follows.

pub mod bundle;
pub mod explanation;
pub mod generalisation;
pub mod results;
pub mod settings;
pub mod verdict;

pub use bundle::{FileEntry, Manifest, ManifestModel};
pub use explanation::{ExplanationRecord, TextAttribution};
pub use generalisation::{Generalisation, GeneralisationPoint};
pub use results::{
    Agreements, BaselineOutput, Behaviour, Calibration, DataSummary, Estimate, Faithfulness, ModelResult, Positions,
    Role, RunResults, SimilarityMode, Thresholds,
};
pub use settings::{
    AlignSettings, AlignViews, EvidenceSettings, Objective, RUN_FORMAT, RunSettings, SelectBy, Suite, TargetChoice,
};
pub use verdict::Verdict;
