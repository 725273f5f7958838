//! The FLOP counts the GFLOP/s columns divide by: the reference's formulas, so that both
//! sides' figures count the same work.

use astrid::ModelConfig;

/// Multiply-add FLOPs (2 per MAC) of one forward pass of one sequence, as the reference
/// counts them (`anchor_models.forward_flops`): projections, FFN, attention and head.
pub fn forward_flops(config: &ModelConfig, seq: usize) -> (f64, f64, f64) {
    let (n, h, i, l) = (
        config.num_layers as f64,
        config.hidden_size as f64,
        config.intermediate_size as f64,
        seq as f64,
    );
    let linear = n * 2.0 * l * (4.0 * h * h + 2.0 * h * i);
    let attention = n * 2.0 * (2.0 * l * l * h);
    let head = 2.0 * h * h + 2.0 * h * config.num_labels as f64;
    (linear, attention, head)
}

/// The share of [`forward_flops`] that the model's last layer skips by computing `[CLS]`'s row
/// alone (every position's keys and values, one query, one row of attention output, feed-
/// forward and norms): the reference computes every row, and its FLOP counts, which the
/// GFLOP/s columns use, include them.
pub fn cls_only_skipped(config: &ModelConfig, seq: usize) -> f64 {
    if config.num_layers == 0 {
        return 0.0;
    }
    let (linear, attention, head) = forward_flops(config, seq);
    let (h, i, l) = (config.hidden_size as f64, config.intermediate_size as f64, seq as f64);
    let every_row = 2.0 * l * (4.0 * h * h + 2.0 * h * i) + 2.0 * (2.0 * l * l * h);
    let cls_only = 2.0 * (l * 2.0 * h * h + 2.0 * h * h + 2.0 * h * i) + 2.0 * (2.0 * l * h);
    (every_row - cls_only) / (linear + attention + head)
}

/// FLOPs of one IG explanation: per step a forward and an input-gradient backward
/// (`2·linear + 3·attention + 2·head`), as the reference's `ig_flops`.
pub fn ig_flops(config: &ModelConfig, seq: usize, n_steps: usize) -> f64 {
    let (linear, attention, head) = forward_flops(config, seq);
    n_steps as f64 * (2.0 * linear + 3.0 * attention + 2.0 * head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With one position there is nothing to skip; otherwise the last layer's share, less its
    /// keys and values, which every position still needs.
    #[test]
    fn the_cls_only_share_is_the_last_layers_work_but_keys_and_values() {
        let config = ModelConfig::preset("custom_2x384").expect("a preset");
        assert!(cls_only_skipped(&config, 1).abs() < 1e-12);
        let skipped = cls_only_skipped(&config, 128);
        let (linear, attention, head) = forward_flops(&config, 128);
        let layer = (linear + attention) / config.num_layers as f64;
        let total = linear + attention + head;
        let (h, i) = (config.hidden_size as f64, config.intermediate_size as f64);
        let keys_and_values = 2.0 * 128.0 * 2.0 * h * h;
        let rest_of_cls = 2.0 * (2.0 * h * h + 2.0 * h * i) + 2.0 * 2.0 * 128.0 * h;
        assert!((skipped * total - (layer - keys_and_values - rest_of_cls)).abs() < 1e-6 * total);
        assert!(skipped > 0.4 && skipped < 0.5, "{skipped}");
    }
}
