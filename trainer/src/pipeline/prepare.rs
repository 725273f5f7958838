//! The first stage of a run: the data loaded (or generated), split, and tokenized.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use astrid::bundle::{TOKENIZER_FILE, VOCAB_FILE};
use astrid::tokenize::{TextTokenizer, TokenizedText};

use crate::data::Dataset;
use crate::data::load::{Columns, load};
use crate::data::split::{Split, stratified};
use crate::data::synthetic::{CorpusSpec, generate};
use crate::data::vocab::train_wordpiece;
use crate::models::hub::LocalModel;
use crate::settings::{DataConfig, MIN_EVALUATION_TEXTS, WARN_EVALUATION_TEXTS};
use crate::training::batches::Encoded;
use crate::util::digest::sha256_hex;

/// The data a run works on, before tokenization: what the fingerprint needs.
pub struct Loaded {
    pub data: Dataset,
    /// The split made from `--seed` (a resumed run then checks it against its saved one).
    pub split: Split,
    /// Labelled texts before `--sample` cut them.
    pub texts_before_sample: usize,
    /// The tokenizer the run starts from (`--tokenizer`, or an `--init` checkpoint's) and its
    /// SHA-256; `None` when a vocabulary is trained on the data.
    pub source_tokenizer: Option<(String, String)>,
}

/// The data a run works on, tokenized.
pub struct Prepared {
    pub data: Dataset,
    pub split: Split,
    pub tokenizer_json: String,
    pub tokenizer: TextTokenizer,
}

/// Loads (or generates) the data, splits it and reads the tokenizer to start from. Reads
/// nothing of an earlier run.
pub fn load_data(args: &DataConfig, inits: &BTreeMap<String, LocalModel>) -> anyhow::Result<Loaded> {
    let (data, split, texts_before_sample) = match &args.data {
        None => {
            let (data, split) = generate(&CorpusSpec {
                size: args.corpus_size,
                seed: args.seed,
                shortcut_rate: if args.no_shortcut {
                    0.0
                } else {
                    CorpusSpec::default().shortcut_rate
                },
                ..CorpusSpec::default()
            });
            let n = data.len();
            (data, split, n)
        }
        Some(path) => {
            let columns = Columns {
                text: args.text_col.clone(),
                label: args.label_col.clone(),
                label_order: args.labels.clone(),
            };
            let mut data = load(path, &columns)?;
            let before = data.len();
            if let Some(n) = args.sample {
                data.texts.truncate(n);
                data.labels.truncate(n);
            }
            let split = stratified(&data, 0.1, 0.1, args.seed);
            (data, split, before)
        }
    };
    if data.class_counts().iter().filter(|&&c| c > 0).count() < 2 {
        bail!("{}: the texts used hold a single class; use more rows", data.source);
    }
    // `--tokenizer FILE`, or the teacher's checkpoint's, else the first other one's (its
    // tokenizer.json, or one built from its vocab.txt): the run's fingerprint holds the
    // SHA-256 of the JSON used.
    let source_tokenizer = match &args.tokenizer {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the tokenizer", path.display()))?,
        ),
        None => inits
            .get(crate::models::suite::ROLES[0])
            .into_iter()
            .chain(inits.values())
            .map(|c| c.dir.as_path())
            .find(|d| d.join(TOKENIZER_FILE).exists() || d.join(VOCAB_FILE).exists())
            .map(|d| {
                astrid::bundle::read_tokenizer_json(d)
                    .map_err(anyhow::Error::from)
                    .and_then(|bytes| String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("not UTF-8 text")))
                    .with_context(|| format!("{}: cannot read the tokenizer", d.display()))
            })
            .transpose()?,
    }
    .map(|json| {
        let sha = sha256_hex(json.as_bytes());
        (json, sha)
    });
    Ok(Loaded {
        data,
        split,
        texts_before_sample,
        source_tokenizer,
    })
}

/// Decides the split and the tokenizer. `saved` is the directory of the run being resumed:
/// its split (which must fit the data) and tokenizer are reused.
pub fn prepare(loaded: Loaded, args: &DataConfig, saved: Option<&Path>) -> anyhow::Result<Prepared> {
    let Loaded {
        data,
        mut split,
        source_tokenizer,
        ..
    } = loaded;
    if let Some(dir) = saved {
        let path = dir.join("split.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            split = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a split this tool wrote (edited?); give another --out for a new run",
                    path.display()
                )
            })?;
            split.check(data.len()).map_err(|why| {
                anyhow::anyhow!(
                    "{}: does not fit the data ({why}); the run directory was changed since the run started: \
                     give another --out for a new run",
                    path.display()
                )
            })?;
        }
    }
    let saved_tokenizer = saved.map(|d| d.join(TOKENIZER_FILE)).filter(|p| p.exists());
    let tokenizer_json = if let Some(path) = saved_tokenizer {
        std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?
    } else if let Some((json, _)) = source_tokenizer {
        json
    } else {
        train_wordpiece(split.train.iter().map(|&i| &data.texts[i]), args.vocab_size)?
    };
    let tokenizer = TextTokenizer::from_bytes(tokenizer_json.as_bytes(), "tokenizer.json", args.max_length)?;
    Ok(Prepared {
        data,
        split,
        tokenizer_json,
        tokenizer,
    })
}

/// Refuses a split too small to evaluate on; warns when accuracy will be rough.
pub fn check_evaluation_size(prepared: &Loaded, args: &DataConfig) -> anyhow::Result<()> {
    let (validation, test) = (prepared.split.validation.len(), prepared.split.test.len());
    if validation < MIN_EVALUATION_TEXTS || test < MIN_EVALUATION_TEXTS {
        bail!(
            "{}: {} texts give {validation} validation and {test} test texts; a run needs at least \
             {MIN_EVALUATION_TEXTS} of each (about {} labelled texts){}; nothing was written",
            prepared.data.source,
            prepared.data.len(),
            MIN_EVALUATION_TEXTS * 10,
            if args.sample.is_some() {
                ": use a larger --sample"
            } else {
                ": use more data"
            }
        );
    }
    if test < WARN_EVALUATION_TEXTS {
        eprintln!(
            "warning: only {test} test texts: each moves accuracy by {:.1} points, so compare accuracies with care",
            100.0 / test as f64
        );
    }
    Ok(())
}

pub fn encode(prepared: &Prepared, indices: &[usize]) -> anyhow::Result<(Encoded, Vec<TokenizedText>)> {
    let mut encoded = Encoded::default();
    let mut tokenized = Vec::with_capacity(indices.len());
    for &i in indices {
        let t = prepared
            .tokenizer
            .encode(&prepared.data.texts[i])
            .with_context(|| format!("{}: text {}", prepared.data.source, i + 1))?;
        encoded.ids.push(t.ids.clone());
        encoded.special.push(t.special.clone());
        encoded.labels.push(prepared.data.labels[i]);
        tokenized.push(t);
    }
    Ok((encoded, tokenized))
}

/// The three parts as token ids, and the validation texts' tokens (for explanations).
pub struct EncodedSplits {
    pub train: Encoded,
    pub validation: Encoded,
    pub validation_tokens: Vec<TokenizedText>,
    pub test: Encoded,
}

impl Prepared {
    pub fn encode_splits(&self) -> anyhow::Result<EncodedSplits> {
        let (train, _) = encode(self, &self.split.train)?;
        let (validation, validation_tokens) = encode(self, &self.split.validation)?;
        let (test, _) = encode(self, &self.split.test)?;
        Ok(EncodedSplits {
            train,
            validation,
            validation_tokens,
            test,
        })
    }

    /// One line saying what the run works on.
    pub fn describe(&self) -> String {
        let data = &self.data;
        format!(
            "data: {} ({} texts; train {}, validation {}, test {}; classes {:?} = {:?}{})",
            data.source,
            data.len(),
            self.split.train.len(),
            self.split.validation.len(),
            self.split.test.len(),
            data.label_names,
            data.class_counts(),
            if data.dropped_blank_labels > 0 {
                format!("; {} rows with blank labels dropped", data.dropped_blank_labels)
            } else {
                String::new()
            }
        )
    }
}
