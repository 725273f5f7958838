//! The random inputs every measurement runs on: ids that fit each preset's vocabulary, framed
//! as real sequences are, so the work is that of real texts of the same length.

/// [CLS], [SEP] and [MASK] of BERT's vocabulary where the model has one that large, else
/// the first ids after [PAD] (the tiny test presets).
pub(super) fn special_ids(vocab: usize) -> (u32, u32, u32) {
    if vocab > 1000 { (101, 102, 103) } else { (1, 2, 3) }
}

/// Random word-piece ids for `batch` sequences of `seq` tokens, framed by [CLS] … [SEP];
/// words come from above BERT's special and unused range when the vocabulary has it.
pub(super) fn random_ids(batch: usize, seq: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let (cls, sep, _) = special_ids(vocab);
    let first_word = if vocab > 2000 {
        1000
    } else {
        4.min(vocab.saturating_sub(1))
    };
    let words = vocab.saturating_sub(first_word).max(1);
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..batch * seq)
        .map(|i| {
            let pos = i % seq;
            if pos == 0 {
                cls
            } else if pos == seq - 1 {
                sep
            } else {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (first_word + (state >> 33) as usize % words) as u32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_every_preset_and_the_tiny_ones() {
        for vocab in [8000, 30522, 600, 64, 8] {
            let ids = random_ids(3, 16, vocab, 5);
            assert!(ids.iter().all(|&id| (id as usize) < vocab), "vocab {vocab}: {ids:?}");
            assert_eq!(ids[0], special_ids(vocab).0);
            assert_eq!(ids[15], special_ids(vocab).1);
        }
    }
}
