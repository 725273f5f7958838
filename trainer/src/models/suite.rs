//! The model suites: the teacher and five students, at the paper's sizes or reduced.

use astrid::ModelConfig;
use astrid::config::PRESET_NAMES;

use astrid::schema::{Objective, Suite};

/// The six roles, teacher first, in the order the report lists them.
pub const ROLES: [&str; 6] = PRESET_NAMES;

pub use crate::settings::PRETRAINED;

/// A suite's models: (role name, shape). `vocab_size` and `max_length` come from the
/// tokenizer and the run.
pub fn suite(name: Suite, vocab_size: usize, max_length: usize) -> anyhow::Result<Vec<(String, ModelConfig)>> {
    let shapes: Vec<ModelConfig> = match name {
        // The real shapes (teacher BERT-base, DistilBERT, ...).
        Suite::Paper => ROLES.iter().map(|r| ModelConfig::preset(r)).collect::<Result<_, _>>()?,
        // Same roles, about 1/3 the width and half the depth: trains on 2 CPU cores in minutes.
        Suite::Quick => vec![
            ModelConfig::bert(4, 256, 4, 1024),
            ModelConfig::distilbert(2, 256, 4, 1024),
            ModelConfig::bert(3, 192, 4, 768),
            ModelConfig::bert(2, 128, 4, 512),
            ModelConfig::bert(4, 96, 4, 384),
            ModelConfig::bert(1, 96, 4, 384),
        ],
        // Tiny, for the end-to-end tests.
        Suite::Test => vec![
            ModelConfig::bert(2, 32, 2, 64),
            ModelConfig::distilbert(1, 32, 2, 64),
            ModelConfig::bert(1, 24, 2, 48),
            ModelConfig::bert(1, 16, 2, 32),
            ModelConfig::bert(2, 16, 2, 32),
            ModelConfig::bert(1, 8, 2, 16),
        ],
    };
    Ok(ROLES
        .iter()
        .zip(shapes)
        .map(|(role, mut config)| {
            config.vocab_size = vocab_size;
            if name != Suite::Paper {
                config.max_position_embeddings = max_length.max(8);
            }
            (role.to_string(), config)
        })
        .collect())
}

/// A student's name: its role, with the objective appended when a run trains several
/// (`tinybert-align`); the independent student keeps the role's name.
pub fn student_name(role: &str, objective: Objective, objectives: &[Objective]) -> String {
    if objectives.len() == 1 || objective == Objective::Independent {
        role.to_string()
    } else {
        format!("{role}-{}", objective.name())
    }
}
