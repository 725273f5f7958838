//! What survives a kill of a training run: per model, the weights and optimizer state of
//! the last epoch and the best one, named by epoch, and `state.json` with their hashes.

use std::path::PathBuf;

use anyhow::{Context, bail};
use astrid::files::write_atomic;
use astrid::model::EncoderClassifier;
use burn::optim::ModuleOptimizer;
use burn_store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

/// One epoch's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub validation_accuracy: f64,
    /// The validation macro-F1 (absent in older states).
    #[serde(default)]
    pub validation_macro_f1: Option<f64>,
    pub sequences_per_second: f64,
    /// Wall seconds of the epoch: its steps and the validation pass.
    #[serde(default)]
    pub seconds: f64,
}

/// What survives a kill: written after each epoch, after the files it names, with their
/// hashes, so a resumed run uses exactly the files this state was written with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub epochs_done: usize,
    pub best_accuracy: f64,
    pub best_epoch: usize,
    pub epochs_without_improvement: usize,
    pub finished: bool,
    pub history: Vec<EpochRecord>,
    /// SHA-256 of `epoch-N.bpk`, `epoch-N.optim` (N = epochs_done) and `best-E.safetensors`
    /// (E = best_epoch).
    #[serde(default)]
    pub weights_sha256: String,
    #[serde(default)]
    pub optimizer_sha256: String,
    #[serde(default)]
    pub best_sha256: String,
}

/// Where one model's resumable training state lives (weights and optimizer state per epoch,
/// and `state.json`). Weights are named by epoch, so the state never
/// points at a file a later, interrupted epoch overwrote.
pub struct TrainingStateDir(pub PathBuf);

impl TrainingStateDir {
    pub(crate) fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }
    pub(crate) fn epoch_weights(&self, epoch: usize) -> PathBuf {
        self.0.join(format!("epoch-{epoch}.bpk"))
    }
    pub(crate) fn epoch_optimizer(&self, epoch: usize) -> PathBuf {
        self.0.join(format!("epoch-{epoch}.optim"))
    }
    /// The best model of epoch `epoch`, in Hugging Face layout.
    pub fn best_weights(&self, epoch: usize) -> PathBuf {
        self.0.join(format!("best-{epoch}.safetensors"))
    }

    /// Reads a checkpoint file and checks it is the one `state.json` recorded.
    pub(crate) fn read_checked(&self, path: &std::path::Path, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "{}: missing; delete {} to train this model again",
                path.display(),
                self.0.display()
            )
        })?;
        if crate::util::digest::sha256_hex(&bytes) != sha256 {
            bail!(
                "{}: is not the file state.json recorded (changed or damaged); delete {} to train this model again",
                path.display(),
                self.0.display()
            );
        }
        Ok(bytes)
    }

    /// Removes the files of earlier epochs once `state` (already written) points elsewhere.
    pub(crate) fn prune(&self, state: &TrainState) {
        let keep = [
            self.epoch_weights(state.epochs_done),
            self.epoch_optimizer(state.epochs_done),
            self.best_weights(state.best_epoch),
            self.state(),
        ];
        let is_ours = |name: &str| {
            (name.starts_with("epoch-") && (name.ends_with(".bpk") || name.ends_with(".optim")))
                || (name.starts_with("best-") && name.ends_with(".safetensors"))
        };
        for name in astrid::files::list_dir(&self.0) {
            let path = self.0.join(&name);
            if is_ours(&name) && !keep.contains(&path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    pub fn load_state(&self) -> anyhow::Result<Option<TrainState>> {
        let path = self.state();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let state = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a training state; delete it to start this model again",
                path.display()
            )
        })?;
        Ok(Some(state))
    }
}

/// Writes this epoch's weights and optimizer state under names of their own, then the state
/// (with their hashes) that points at them, then removes the earlier epochs' files: a kill at
/// any point leaves a state whose files are all there.
pub(crate) fn save_training_state(
    dir: &TrainingStateDir,
    model: &EncoderClassifier,
    optimizer: &ModuleOptimizer,
    state: &mut TrainState,
) -> anyhow::Result<()> {
    let mut store = BurnpackStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("saving the checkpoint: {e}"))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("saving the checkpoint: {e}"))?;
    state.weights_sha256 = crate::util::digest::sha256_hex(&bytes);
    write_atomic(&dir.epoch_weights(state.epochs_done), &bytes)?;
    let optim = optimizer
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("saving the optimizer state: {e:?}"))?;
    state.optimizer_sha256 = crate::util::digest::sha256_hex(&optim);
    write_atomic(&dir.epoch_optimizer(state.epochs_done), &optim)?;
    write_atomic(&dir.state(), serde_json::to_string_pretty(state)?.as_bytes())?;
    dir.prune(state);
    Ok(())
}
