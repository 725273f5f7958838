//! IG over a list of texts with one model: the loop the explanation stage and the teacher's
//! attributions for evidence views share.

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::explain::{ExplainInput, ExplainOptions, Explanation, explain};

/// Texts to explain: token ids and special-token flags, one entry per text, and the ids the
/// `[PAD]`/`[MASK]` baselines need.
#[derive(Clone, Copy)]
pub struct Texts<'a> {
    pub ids: &'a [Vec<u32>],
    pub special: &'a [Vec<bool>],
    pub special_ids: (Option<u32>, Option<u32>),
}

/// How the loop reports itself: the progress bar's label (hidden when `quiet`), and what an
/// error says text `i` (0-based) is.
pub struct Progress<'a> {
    pub label: &'a str,
    pub quiet: bool,
    pub describe: &'a dyn Fn(usize) -> String,
}

/// `model`'s explanation of every text, in order, with `options` and text `i`'s class
/// `target(i)` (`None`: the model's prediction).
pub fn explain_texts(
    model: &EncoderClassifier,
    texts: Texts,
    options: &ExplainOptions,
    target: impl Fn(usize) -> Option<usize>,
    progress: Progress,
) -> anyhow::Result<Vec<Explanation>> {
    let (pad_id, mask_id) = texts.special_ids;
    let bar = crate::util::progress::bar(texts.ids.len(), progress.label, "IG", progress.quiet);
    let mut explanations = Vec::with_capacity(texts.ids.len());
    for (i, (ids, special)) in texts.ids.iter().zip(texts.special).enumerate() {
        let input = ExplainInput {
            ids,
            special,
            pad_id,
            mask_id,
        };
        let options = ExplainOptions {
            target: target(i),
            ..options.clone()
        };
        let e = pollster::block_on(explain(model, &input, &options)).with_context(|| (progress.describe)(i))?;
        explanations.push(e);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(explanations)
}
