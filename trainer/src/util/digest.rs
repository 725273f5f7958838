//! Digests: SHA-256 of bytes and of a model directory, as lower-case hexadecimal. They bind
//! a run to its data and starting models, and a training state to its weights.

use std::path::Path;

use anyhow::Context;
use astrid::bundle::{CONFIG_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VOCAB_FILE, WEIGHTS_FILE};
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A digest as lower-case hexadecimal.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One hash over a model directory's files (config, weights; the tokenizer's files when
/// present).
pub fn model_dir_digest(dir: &Path) -> anyhow::Result<String> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: no such checkpoint directory (it needs {CONFIG_FILE} and {WEIGHTS_FILE})",
            dir.display()
        );
    }
    let mut hasher = Sha256::new();
    for name in [
        CONFIG_FILE,
        WEIGHTS_FILE,
        TOKENIZER_FILE,
        VOCAB_FILE,
        TOKENIZER_CONFIG_FILE,
    ] {
        let path = dir.join(name);
        let bytes = match name {
            // One file or shards: the weights as loaded.
            WEIGHTS_FILE => astrid::bundle::read_weights(dir)?,
            // The tokenizer's files are optional.
            _ if name != CONFIG_FILE && !path.exists() => continue,
            _ => std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?,
        };
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex(&hasher.finalize()))
}
