//! The faithfulness stage, forward passes only. Per model, ERASER's comprehensiveness and
//! sufficiency of its own explanations (AOPC), beside the same with a random order of the
//! tokens; per student, behavioural agreement: does removing the teacher's top-k tokens cost
//! the student what it costs the teacher (and the reverse)? This does not depend on how noisy
//! either model's attributions are in their details.

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::erasure::{Aopc, Eraser, ranked_content};
use astrid::schema::results::MIN_DROP;
use astrid::schema::{Behaviour, Estimate, Faithfulness, ModelResult, TextAttribution};

use crate::data::split::SplitMix64;
use crate::pipeline::baselines::baseline_outputs;
use crate::pipeline::prepare::{EncodedSplits, Prepared};
use crate::settings::RunConfig;
use crate::training::batches::predict_logits;
use crate::training::metrics::{estimate, mean_at, paired_bootstrap};

/// Faithfulness of every model's explanations, behavioural agreement of every student with
/// the teacher, and every model's output at each candidate baseline.
pub fn measure(
    args: &RunConfig,
    results: &mut [ModelResult],
    models: &[(&str, &EncoderClassifier)],
    attributions: &[Vec<TextAttribution>],
    prepared: &Prepared,
    encoded: &EncodedSplits,
) -> anyhow::Result<()> {
    let n = attributions[0].len();
    let ids: Vec<Vec<u32>> = encoded.validation_tokens[..n].iter().map(|t| t.ids.clone()).collect();
    let pad_id = prepared.tokenizer.token_id("[PAD]");
    let mask_id = prepared.tokenizer.token_id("[MASK]");
    let inputs = ErasureInputs {
        ids: &ids,
        eraser: Eraser::new(args.erasure, mask_id)?,
        seed: args.data.seed,
    };
    let counts = &prepared.data.class_counts();
    let total = counts.iter().sum::<usize>().max(1) as f64;
    let prior: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
    let (t_name, t_model) = models[0];
    for (m, result) in results.iter_mut().enumerate() {
        let (name, model) = models[m];
        result.faithfulness = Some(faithfulness(name, model, &attributions[m], &inputs)?);
        result.baseline_outputs =
            baseline_outputs(name, model, &encoded.validation_tokens[..n], pad_id, mask_id, &prior)?;
        if m > 0 {
            result.behaviour = Some(behaviour(
                (t_name, t_model, &attributions[0]),
                (name, model, &attributions[m]),
                args.top_k,
                &inputs,
            )?);
        }
    }
    Ok(())
}

/// Texts per forward batch.
const BATCH: usize = 64;

/// Softmax probabilities of each sequence.
fn probabilities(name: &str, model: &EncoderClassifier, texts: &[Vec<u32>]) -> anyhow::Result<Vec<Vec<f32>>> {
    let logits =
        predict_logits(model, texts, BATCH).with_context(|| format!("{name}: forward passes on erased texts"))?;
    Ok(logits
        .into_iter()
        .map(|l| {
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = l.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.into_iter().map(|e| e / sum).collect()
        })
        .collect())
}

/// A random order of a text's content tokens, the same for every model (seeded per text).
fn random_ranking(row: &TextAttribution, seed: u64, text: usize) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..row.special.len()).filter(|&i| !row.special[i]).collect();
    SplitMix64::new(seed ^ (text as u64).wrapping_mul(0x9E37_79B9)).shuffle(&mut positions);
    positions
}

/// What every erasure of a run shares: the explained texts' token ids (the rows hold their
/// tokens, special flags and attributions), how tokens are erased, and the seed of the random
/// controls.
pub struct ErasureInputs<'a> {
    pub ids: &'a [Vec<u32>],
    pub eraser: Eraser,
    pub seed: u64,
}

/// AOPC of `model`'s own explanations `rows`, and of a random order of the same tokens.
pub fn faithfulness(
    name: &str,
    model: &EncoderClassifier,
    rows: &[TextAttribution],
    inputs: &ErasureInputs,
) -> anyhow::Result<Faithfulness> {
    let mut texts = Vec::new();
    for (j, row) in rows.iter().enumerate() {
        let ids = &inputs.ids[j];
        let ranking = ranked_content(&row.attributions, &row.special);
        texts.extend(inputs.eraser.aopc_views(ids, &row.special, &ranking));
        let random = random_ranking(row, inputs.seed, j);
        texts.extend(inputs.eraser.aopc_views(ids, &row.special, &random));
    }
    let probs = probabilities(name, model, &texts)?;
    let per_text = probs.len() / rows.len().max(1);
    let (mut comp, mut suff, mut random_comp, mut random_suff) = (vec![], vec![], vec![], vec![]);
    for (j, row) in rows.iter().enumerate() {
        let full = row.probs[row.target];
        let views: Vec<f32> = probs[j * per_text..(j + 1) * per_text]
            .iter()
            .map(|p| p[row.target])
            .collect();
        let (own, random) = views.split_at(per_text / 2);
        let own = Aopc::from_probabilities(full, own)?;
        let random = Aopc::from_probabilities(full, random)?;
        comp.push(own.comprehensiveness);
        suff.push(own.sufficiency);
        random_comp.push(random.comprehensiveness);
        random_suff.push(random.sufficiency);
    }
    Ok(Faithfulness {
        erasure: inputs.eraser.erasure,
        comprehensiveness: estimate(&comp, inputs.seed),
        sufficiency: estimate(&suff, inputs.seed),
        random_comprehensiveness: estimate(&random_comp, inputs.seed),
        random_sufficiency: estimate(&random_suff, inputs.seed),
    })
}

/// The top `k` content positions of a text by attribution (its strongest support).
fn top(row: &TextAttribution, k: usize) -> Vec<usize> {
    let mut ranking = ranked_content(&row.attributions, &row.special);
    ranking.truncate(k);
    ranking
}

/// Each text's drop of `rows[j].target`'s probability from the full text to `texts[j]`.
fn drops(
    name: &str,
    model: &EncoderClassifier,
    rows: &[TextAttribution],
    texts: &[Vec<u32>],
) -> anyhow::Result<Vec<f64>> {
    let probs = probabilities(name, model, texts)?;
    Ok(rows
        .iter()
        .zip(probs)
        .map(|(row, p)| (row.probs[row.target] - p[row.target]) as f64)
        .collect())
}

/// A ratio of two means with its paired bootstrap interval; `None` when the denominator's
/// mean is below [`MIN_DROP`] (nothing to compare with).
fn ratio(numerator: &[f64], denominator: &[f64], seed: u64) -> Option<Estimate> {
    let all: Vec<usize> = (0..denominator.len()).collect();
    if mean_at(denominator, &all) < MIN_DROP {
        return None;
    }
    paired_bootstrap(numerator.len(), seed, |s| {
        let d = mean_at(denominator, s);
        if d.abs() < 1e-12 {
            f64::NAN
        } else {
            mean_at(numerator, s) / d
        }
    })
}

/// Behavioural agreement of a student with the teacher on the explained texts.
pub fn behaviour(
    teacher: (&str, &EncoderClassifier, &[TextAttribution]),
    student: (&str, &EncoderClassifier, &[TextAttribution]),
    k: usize,
    inputs: &ErasureInputs,
) -> anyhow::Result<Behaviour> {
    let ((t_name, t_model, t_rows), (s_name, s_model, s_rows)) = (teacher, student);
    let without = |rows: &[TextAttribution]| -> Vec<Vec<u32>> {
        rows.iter()
            .enumerate()
            .map(|(j, row)| inputs.eraser.without(&inputs.ids[j], &top(row, k)))
            .collect()
    };
    let (teacher_evidence_gone, student_evidence_gone) = (without(t_rows), without(s_rows));
    let random_gone: Vec<Vec<u32>> = s_rows
        .iter()
        .enumerate()
        .map(|(j, row)| {
            let mut random = random_ranking(row, inputs.seed, j);
            random.truncate(k);
            inputs.eraser.without(&inputs.ids[j], &random)
        })
        .collect();
    let teacher_drop = drops(t_name, t_model, t_rows, &teacher_evidence_gone)?;
    let student_drop = drops(s_name, s_model, s_rows, &teacher_evidence_gone)?;
    let teacher_drop_reverse = drops(t_name, t_model, t_rows, &student_evidence_gone)?;
    let student_drop_own = drops(s_name, s_model, s_rows, &student_evidence_gone)?;
    let random_drop = drops(s_name, s_model, s_rows, &random_gone)?;
    Ok(Behaviour {
        k,
        student_drop: estimate(&student_drop, inputs.seed),
        teacher_drop: teacher_drop.iter().sum::<f64>() / teacher_drop.len().max(1) as f64,
        agreement: ratio(&student_drop, &teacher_drop, inputs.seed),
        reverse: ratio(&teacher_drop_reverse, &student_drop_own, inputs.seed),
        random_drop: estimate(&random_drop, inputs.seed),
    })
}
