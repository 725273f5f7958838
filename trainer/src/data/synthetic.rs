//! The embedded default corpus: short legal case summaries generated from a seed, with a
//! planted signal whose tokens are known.
//!
//! How it is made:
//! - Each summary has two to four neutral sentences (parties, courts, years, procedural
//!   history) drawn from templates that carry no information about the outcome.
//! - One **rationale phrase** is inserted at a random position: phrases of the "first party
//!   wins" class (e.g. "the officers searched the home without a warrant") or of the "first
//!   party loses" class (e.g. "the petitioner failed to raise the claim in the trial court").
//!   The phrase decides the label, except for `label_noise` of the texts, whose label is
//!   flipped so that no model can be perfect.
//! - Optionally a **shortcut**: the harmless word "notably" opens a sentence in
//!   `shortcut_rate` of the winning texts and in few losing ones, in the training, validation
//!   and test parts alike: a model that leans on it loses no i.i.d. accuracy, so accuracy alone
//!   cannot tell it from one that reads the rationale.
//! - A **shifted** part beside them (as many texts as the test part), in which the shortcut is
//!   set against the label (it opens the losing texts instead) while the rationale still
//!   decides: a model that leans on the shortcut fails there, one that reads the rationale
//!   does not.
//!
//! Character spans of the rationale and shortcut are recorded, so the report can measure how
//! much attribution each model puts on the real signal and how much on the shortcut.

use super::Dataset;
use super::split::{Split, SplitMix64};

/// Settings of the generated corpus.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    pub size: usize,
    pub seed: u64,
    pub label_noise: f64,
    /// Share of winning training texts carrying the shortcut word (0 disables it).
    pub shortcut_rate: f64,
    pub validation: f64,
    pub test: f64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        Self {
            size: 1600,
            seed: 7,
            label_noise: 0.05,
            shortcut_rate: 0.8,
            validation: 0.15,
            test: 0.15,
        }
    }
}

pub const SHORTCUT_WORD: &str = "notably";

/// The generator's version, in the fingerprint: a run made with another cannot resume.
pub const CORPUS_VERSION: u32 = 2;

const WIN: &[&str] = &[
    "the officers searched the home without a warrant",
    "the statute was applied retroactively to punish past conduct",
    "the agency exceeded the authority granted by congress",
    "the trial judge excluded evidence of innocence without explanation",
    "the state denied counsel at a critical stage of the trial",
    "the regulation discriminated against interstate commerce",
    "the contract clause was impaired by the new law",
    "the jury instructions misstated the burden of proof",
    "the confession was obtained after the suspect requested a lawyer",
    "the ordinance restricted speech based on its content",
];

const LOSE: &[&str] = &[
    "the petitioner failed to raise the claim in the trial court",
    "the appeal was filed after the statutory deadline",
    "the evidence amply supported the verdict of the jury",
    "the plaintiff lacked standing because no injury was shown",
    "the claim was barred by sovereign immunity",
    "the search fell within the consent exception",
    "the agency reasonably interpreted an ambiguous statute",
    "the petitioner waived the objection by pleading guilty",
    "the dispute was moot because the policy had expired",
    "the state court rested its decision on an independent state ground",
];

const NAMES: &[&str] = &[
    "Alvarez", "Baker", "Chen", "Dawson", "Ellis", "Fischer", "Garcia", "Hughes", "Iverson", "Jensen", "Kowalski",
    "Lambert", "Morales", "Nakamura", "Olsen", "Patel", "Quinn", "Reyes", "Sullivan", "Thompson",
];
const PARTIES: &[&str] = &[
    "the city of Springfield",
    "the state of Ohio",
    "the department of labor",
    "a county school board",
    "a railroad company",
    "a mining cooperative",
    "the federal communications commission",
    "a hospital district",
];
const COURTS: &[&str] = &[
    "the district court",
    "the court of appeals",
    "the state supreme court",
    "a federal magistrate",
];
const FILLER: &[&str] = &[
    "{name} brought suit against {party} in {year}.",
    "The case was first heard by {court}, which ruled in {year}.",
    "{name} sought review after {court} entered judgment.",
    "The parties filed briefs and the case was argued in {year}.",
    "{party} was represented by counsel throughout the proceedings.",
    "Several amici submitted briefs on behalf of {party}.",
    "The record includes testimony from witnesses called by {name}.",
    "{court} consolidated the matter with a related case from {year}.",
];

fn fill(template: &str, rng: &mut SplitMix64) -> String {
    template
        .replace("{name}", rng.pick(NAMES))
        .replace("{party}", rng.pick(PARTIES))
        .replace("{court}", rng.pick(COURTS))
        .replace("{year}", &(1960 + rng.below(56)).to_string())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// Which part of the split a text belongs to (the shortcut is planted by part).
const TRAIN: u8 = 0;
const VALIDATION: u8 = 1;
const TEST: u8 = 2;
const SHIFTED: u8 = 3;

/// Generates the corpus and its split (the generator decides the split, because the
/// shortcut is planted differently in the shifted part); the shifted texts follow the others.
pub fn generate(spec: &CorpusSpec) -> (Dataset, Split) {
    let mut rng = SplitMix64::new(spec.seed);
    let n = spec.size.max(20);
    let mut part = assign_parts(spec, n, &mut rng);
    if spec.shortcut_rate > 0.0 {
        let n_test = part.iter().filter(|&&p| p == TEST).count();
        part.extend(std::iter::repeat_n(SHIFTED, n_test));
    }
    let mut data = empty_corpus(spec, n);
    for &which in &part {
        let summary = summary(spec, which, &mut rng);
        let flipped = rng.unit() < spec.label_noise;
        data.texts.push(summary.text);
        data.labels.push(usize::from(summary.wins != flipped));
        data.rationale_spans.push(summary.rationale);
        data.shortcut_spans.push(summary.shortcut);
    }
    let pick = |k: u8| (0..part.len()).filter(|&i| part[i] == k).collect::<Vec<_>>();
    let split = Split {
        seed: spec.seed,
        train: pick(TRAIN),
        validation: pick(VALIDATION),
        test: pick(TEST),
        shifted: pick(SHIFTED),
    };
    (data, split)
}

/// Each text's part of the split, drawn before any text: a shuffled order whose first
/// texts are validation, then test, the rest training.
fn assign_parts(spec: &CorpusSpec, n: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let n_val = (n as f64 * spec.validation).round() as usize;
    let n_test = (n as f64 * spec.test).round() as usize;
    let mut part = vec![TRAIN; n];
    for &i in &order[..n_val] {
        part[i] = VALIDATION;
    }
    for &i in &order[n_val..n_val + n_test] {
        part[i] = TEST;
    }
    part
}

/// The corpus with its labels and no texts yet.
fn empty_corpus(spec: &CorpusSpec, n: usize) -> Dataset {
    Dataset {
        texts: Vec::with_capacity(2 * n),
        labels: Vec::with_capacity(2 * n),
        label_names: vec!["first party loses".into(), "first party wins".into()],
        source: format!("embedded default v2 (generated, seed {}, {} texts)", spec.seed, n),
        dropped_blank_labels: 0,
        rationale_spans: Vec::with_capacity(n),
        shortcut_spans: Vec::with_capacity(n),
        sha256: None,
        shift_values: Vec::new(),
    }
}

/// Character spans (start, end) of a text.
type Spans = Vec<(usize, usize)>;

/// One generated summary before label noise: its text, the class its rationale decides, and
/// the character spans of the rationale and of the shortcut word.
struct Summary {
    text: String,
    wins: bool,
    rationale: Spans,
    shortcut: Spans,
}

/// Draws one summary of part `which`: filler sentences with the rationale sentence among
/// them, and perhaps the shortcut word opening one of them.
fn summary(spec: &CorpusSpec, which: u8, rng: &mut SplitMix64) -> Summary {
    let wins = rng.below(2) == 1;
    let phrase: &str = if wins { rng.pick(WIN) } else { rng.pick(LOSE) };
    let count = 2 + rng.below(3);
    let mut sentences: Vec<String> = (0..count)
        .map(|_| {
            let template = rng.pick(FILLER);
            fill(template, rng)
        })
        .collect();
    let signal_at = rng.below(sentences.len() + 1);
    sentences.insert(signal_at, format!("The court found that {phrase}."));
    let shortcut_at = draws_shortcut(spec, which, wins, rng).then(|| rng.below(sentences.len()));
    let (text, rationale, shortcut) = join_sentences(&sentences, (signal_at, phrase), shortcut_at);
    Summary {
        text,
        wins,
        rationale,
        shortcut,
    }
}

/// Whether a text carries the shortcut: mostly winning ones in the training, validation and
/// test parts, so that it predicts the label there; mostly losing ones in the shifted part,
/// so that it misleads there.
fn draws_shortcut(spec: &CorpusSpec, which: u8, wins: bool, rng: &mut SplitMix64) -> bool {
    if spec.shortcut_rate > 0.0 {
        let (usual, rare) = (spec.shortcut_rate, (1.0 - spec.shortcut_rate) / 4.0);
        let p = match (which == SHIFTED, wins) {
            (false, true) | (true, false) => usual,
            (false, false) | (true, true) => rare,
        };
        rng.unit() < p
    } else {
        false
    }
}

/// The sentences joined into one text, the shortcut word opening sentence `shortcut_at`;
/// returns the text and the spans of the rationale `phrase` (in sentence `signal_at`) and of
/// the shortcut word.
fn join_sentences(
    sentences: &[String],
    (signal_at, phrase): (usize, &str),
    shortcut_at: Option<usize>,
) -> (String, Spans, Spans) {
    let mut text = String::new();
    let (mut rationale, mut shortcut_span) = (Vec::new(), Vec::new());
    for (i, sentence) in sentences.iter().enumerate() {
        if !text.is_empty() {
            text.push(' ');
        }
        let sentence = if shortcut_at == Some(i) {
            shortcut_span.push((text.len(), text.len() + SHORTCUT_WORD.len()));
            text.push_str(&capitalise(SHORTCUT_WORD));
            text.push_str(", ");
            let mut lower = sentence.clone();
            if let Some(first) = lower.get(..1) {
                lower.replace_range(..1, &first.to_lowercase());
            }
            lower
        } else {
            sentence.clone()
        };
        if i == signal_at {
            let start = text.len() + sentence.find(phrase).unwrap_or(0);
            rationale.push((start, start + phrase.len()));
        }
        text.push_str(&sentence);
    }
    (text, rationale, shortcut_span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_spans_point_at_the_signal() {
        let spec = CorpusSpec {
            size: 400,
            ..CorpusSpec::default()
        };
        let (a, split) = generate(&spec);
        let (b, _) = generate(&spec);
        assert_eq!(a.texts, b.texts);
        assert_eq!(split.train.len() + split.validation.len() + split.test.len(), 400);
        assert_eq!(split.shifted.len(), split.test.len());
        assert_eq!(split.shifted, (400..400 + split.test.len()).collect::<Vec<_>>());
        for (i, text) in a.texts.iter().enumerate() {
            let (s, e) = a.rationale_spans[i][0];
            let phrase = &text[s..e];
            assert!(
                WIN.contains(&phrase) || LOSE.contains(&phrase),
                "{phrase:?} in {text:?}"
            );
            for &(s, e) in &a.shortcut_spans[i] {
                assert_eq!(text[s..e].to_lowercase(), SHORTCUT_WORD);
            }
        }
    }

    #[test]
    fn the_shortcut_predicts_the_label_in_every_part_but_the_shifted_one() {
        let spec = CorpusSpec {
            size: 2000,
            ..CorpusSpec::default()
        };
        let (data, split) = generate(&spec);
        let agrees = (0..data.len())
            .filter(|&i| {
                let (s, e) = data.rationale_spans[i][0];
                WIN.contains(&&data.texts[i][s..e]) == (data.labels[i] == 1)
            })
            .count() as f64
            / data.len() as f64;
        assert!((0.92..0.98).contains(&agrees), "{agrees}");
        let rate = |part: &[usize], label: usize| {
            let members: Vec<_> = part.iter().filter(|&&i| data.labels[i] == label).collect();
            members.iter().filter(|&&&i| !data.shortcut_spans[i].is_empty()).count() as f64 / members.len() as f64
        };
        for part in [&split.train, &split.validation, &split.test] {
            assert!(
                rate(part, 1) > 0.6 && rate(part, 0) < 0.2,
                "{} {}",
                rate(part, 1),
                rate(part, 0)
            );
        }
        // Counted in the shifted part: the shortcut opens the losing texts, not the winning ones.
        assert!(rate(&split.shifted, 0) > 0.6 && rate(&split.shifted, 1) < 0.2);
        // Without the shortcut there is nothing to shift.
        let (_, plain) = generate(&CorpusSpec {
            shortcut_rate: 0.0,
            ..spec
        });
        assert!(plain.shifted.is_empty());
    }
}
