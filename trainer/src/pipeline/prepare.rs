//! The first stage of a run: the data loaded (or generated), split, and tokenized.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use astrid::bundle::{TOKENIZER_FILE, VOCAB_FILE};
use astrid::tokenize::{TextTokenizer, TokenizedText};

use crate::data::Dataset;
use crate::data::load::{Columns, load};
use crate::data::split::{Split, stratified_except};
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
    /// SHA-256 of `--shift-data`'s bytes.
    pub shift_sha256: Option<String>,
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
                shift_by: args.shift_by.clone(),
            };
            let mut data = load(path, &columns)?;
            let before = data.len();
            if let Some(n) = args.sample {
                data.texts.truncate(n);
                data.labels.truncate(n);
                data.shift_values.truncate(n);
            }
            let shifted = match (&args.shift_by, &args.shift_from) {
                (Some(by), Some(from)) => shifted_rows(&data, by, from)?,
                _ => Vec::new(),
            };
            let split = stratified_except(&data, 0.1, 0.1, args.seed, shifted);
            (data, split, before)
        }
    };
    let (mut data, mut split) = (data, split);
    let shift_sha256 = match &args.shift_data {
        Some(path) => Some(append_shift_data(&mut data, &mut split, path, args)?),
        None => None,
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
        shift_sha256,
        source_tokenizer,
    })
}

/// The rows whose `--shift-by` value is at or above `from`: numbers compared numerically when
/// both are numbers, else text by its order.
fn shifted_rows(data: &Dataset, by: &str, from: &str) -> anyhow::Result<Vec<usize>> {
    let at_or_above = |value: &str| match (value.parse::<f64>(), from.parse::<f64>()) {
        (Ok(v), Ok(f)) => v >= f,
        _ => value >= from,
    };
    let shifted: Vec<usize> = (0..data.len())
        .filter(|&i| at_or_above(&data.shift_values[i]))
        .collect();
    let (lowest, highest) = value_range(&data.shift_values);
    if shifted.is_empty() || shifted.len() == data.len() {
        bail!(
            "--shift-by {by} --shift-from {from}: {} of the {} rows are at or above it (the values run from {lowest} to {highest}); \
             choose a value inside that range",
            if shifted.is_empty() { "none" } else { "all" },
            data.len()
        );
    }
    if shifted.len() < MIN_EVALUATION_TEXTS {
        bail!(
            "--shift-by {by} --shift-from {from}: only {} rows are at or above it; the shifted part needs at least \
             {MIN_EVALUATION_TEXTS} (the values run from {lowest} to {highest})",
            shifted.len()
        );
    }
    Ok(shifted)
}

/// The lowest and highest of some values, numerically when they are all numbers.
fn value_range(values: &[String]) -> (String, String) {
    let mut sorted: Vec<&String> = values.iter().collect();
    if values.iter().all(|v| v.parse::<f64>().is_ok()) {
        sorted.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
    } else {
        sorted.sort();
    }
    let first = sorted.first().map_or(String::new(), |v| v.to_string());
    let last = sorted.last().map_or(String::new(), |v| v.to_string());
    (first, last)
}

/// `--shift-data`: its rows (same columns, the data's labels) appended to the data as the
/// shifted part; returns the file's SHA-256.
fn append_shift_data(data: &mut Dataset, split: &mut Split, path: &Path, args: &DataConfig) -> anyhow::Result<String> {
    let columns = Columns {
        text: args.text_col.clone(),
        label: args.label_col.clone(),
        label_order: Some(data.label_names.clone()),
        shift_by: None,
    };
    let shifted = load(path, &columns).with_context(|| format!("--shift-data {}", path.display()))?;
    if shifted.len() < MIN_EVALUATION_TEXTS {
        bail!(
            "--shift-data {}: {} labelled rows; the shifted part needs at least {MIN_EVALUATION_TEXTS}",
            path.display(),
            shifted.len()
        );
    }
    let start = data.len();
    data.texts.extend(shifted.texts);
    data.labels.extend(shifted.labels);
    split.shifted = (start..data.len()).collect();
    Ok(shifted.sha256.unwrap_or_default())
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
    /// The shifted part (generalisation beyond the i.i.d. split), when the run has one.
    pub shifted: Option<Encoded>,
}

impl Prepared {
    pub fn encode_splits(&self) -> anyhow::Result<EncodedSplits> {
        let (train, _) = encode(self, &self.split.train)?;
        let (validation, validation_tokens) = encode(self, &self.split.validation)?;
        let (test, _) = encode(self, &self.split.test)?;
        let shifted = if self.split.shifted.is_empty() {
            None
        } else {
            Some(encode(self, &self.split.shifted)?.0)
        };
        Ok(EncodedSplits {
            train,
            validation,
            validation_tokens,
            test,
            shifted,
        })
    }

    /// One line saying what the run works on.
    pub fn describe(&self) -> String {
        let data = &self.data;
        format!(
            "data: {} ({} texts; train {}, validation {}, test {}{}; classes {:?} = {:?}{})",
            data.source,
            data.len(),
            self.split.train.len(),
            self.split.validation.len(),
            self.split.test.len(),
            match self.split.shifted.len() {
                0 => String::new(),
                n => format!(", shifted {n}"),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A CSV of `n` rows: a text that carries its label, the label, and a term per row.
    fn fixture(name: &str, n: usize, first_term: usize) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("astrid-prepare-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("cases.csv");
        let mut csv = String::from("text,label,term\n");
        for i in 0..n {
            let label = if i % 2 == 0 { "won" } else { "lost" };
            csv.push_str(&format!(
                "case {i} was {label} on appeal,{label},{}\n",
                first_term + i % 30
            ));
        }
        std::fs::write(&path, csv).expect("the fixture");
        path
    }

    fn config(path: &Path) -> DataConfig {
        DataConfig {
            data: Some(path.to_path_buf()),
            text_col: Some("text".into()),
            label_col: Some("label".into()),
            ..DataConfig::default()
        }
    }

    #[test]
    fn shift_by_holds_out_the_rows_at_or_above_the_value() {
        let path = fixture("by", 300, 1990);
        let args = DataConfig {
            shift_by: Some("term".into()),
            shift_from: Some("2015".into()),
            ..config(&path)
        };
        let loaded = load_data(&args, &BTreeMap::new()).unwrap();
        let (data, split) = (&loaded.data, &loaded.split);
        let late: Vec<usize> = (0..300).filter(|i| 1990 + i % 30 >= 2015).collect();
        assert_eq!(split.shifted, late);
        for part in [&split.train, &split.validation, &split.test] {
            assert!(
                part.iter().all(|i| !late.contains(i)),
                "a shifted row in an i.i.d. part"
            );
        }
        assert_eq!(
            split.train.len() + split.validation.len() + split.test.len() + late.len(),
            data.len()
        );
        split.check(data.len()).unwrap();
        // Numbers compare as numbers: "900" is below "2015" though it sorts after it as text.
        let err = load_data(
            &DataConfig {
                shift_from: Some("2100".into()),
                ..args.clone()
            },
            &BTreeMap::new(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("none of the 300 rows") && err.contains("from 1990 to 2019"),
            "{err}"
        );
        let err = load_data(
            &DataConfig {
                shift_by: Some("year".into()),
                ..args
            },
            &BTreeMap::new(),
        )
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(
            err.contains("no column 'year' for the shifted part (--shift-by)"),
            "{err}"
        );
        std::fs::remove_dir_all(path.parent().expect("the fixture's directory")).expect("cleanup");
    }

    #[test]
    fn shift_data_is_appended_as_the_shifted_part_with_the_datas_labels() {
        let (main, other) = (fixture("main", 200, 2000), fixture("other", 40, 2000));
        let args = DataConfig {
            shift_data: Some(other.clone()),
            ..config(&main)
        };
        let loaded = load_data(&args, &BTreeMap::new()).unwrap();
        assert_eq!(loaded.split.shifted, (200..240).collect::<Vec<_>>());
        assert_eq!(loaded.data.label_names, ["lost", "won"]);
        assert!(loaded.shift_sha256.as_deref().is_some_and(|s| s.len() == 64));
        // A label the data does not have is named with its row.
        std::fs::write(&other, "text,label,term\na,won,1\nb,drawn,2\n").unwrap();
        let err = format!("{:#}", load_data(&args, &BTreeMap::new()).err().expect("refused"));
        assert!(err.contains("--shift-data") && err.contains("\"drawn\""), "{err}");
        for path in [&main, &other] {
            std::fs::remove_dir_all(path.parent().expect("the fixture's directory")).expect("cleanup");
        }
    }
}
