//! The attention softmax and the fused attention against burn's operations.

use super::*;
use crate::kernels::flex::FUSED_ATTENTION_CALLS;
use crate::kernels::routing::attention_written_out;

/// The attention's row softmax and its input gradient against burn's softmax on flex
/// through autodiff: rows of 37 (not a whole number of the 16 lanes) and of 128 (the
/// attention's), a padded key and a row of padded keys only (f32::MIN, as the written-out
/// mask writes, against the kernel's own masking); a NaN makes its row NaN and leaves the
/// others.
#[test]
fn the_attention_softmax_and_its_gradient_match_burns() {
    for (rows, len) in [(5, 37), (600, 128)] {
        let n = rows * len;
        let mut rng = crate::rng::SplitMix64::new(len as u64);
        let xs: Vec<f32> = (0..n).map(|_| (rng.unit() as f32 - 0.5) * 20.0).collect();
        let upstream: Vec<f32> = (0..n).map(|_| rng.unit() as f32 - 0.5).collect();
        // Key 3 is padding in every row; the kernel masks it, burn gets f32::MIN.
        let mut real = vec![1.0f32; len];
        real[3] = 0.0;
        let mut masked = xs.clone();
        masked.iter_mut().skip(3).step_by(len).for_each(|x| *x = f32::MIN);
        let (burns, burn_grad) = value_and_gradient(&masked, [rows, len], &upstream, |x| {
            burn::tensor::activation::softmax(x, 1)
        });
        let mut ours = xs.clone();
        attention::softmax_rows_widest(&mut ours, len, &real);
        let mut our_grad = upstream.clone();
        attention::softmax_gradient_rows_widest(&ours, &mut our_grad, len, &real);
        assert_close(&ours, &burns, 1e-6, &format!("{rows}×{len} probabilities"));
        assert_close(&our_grad, &burn_grad, 1e-6, &format!("{rows}×{len} gradient"));
        assert!(
            ours.iter().skip(3).step_by(len).all(|&p| p == 0.0),
            "a padded key gets nothing"
        );
        assert!(
            our_grad.iter().skip(3).step_by(len).all(|&g| g == 0.0),
            "nor a gradient"
        );
    }
    let mut uniform = vec![0.5f32, -3.0, 2.0];
    attention::softmax_rows_widest(&mut uniform, 3, &[0.0; 3]);
    assert!(
        uniform.iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-7),
        "all keys padded: uniform, {uniform:?}"
    );
    let mut rows = vec![1.0f32, f32::NAN, 2.0, 0.0, 1.0, 2.0];
    attention::softmax_rows_widest(&mut rows, 3, &[1.0; 3]);
    assert!(rows[..3].iter().all(|v| v.is_nan()), "{rows:?}");
    assert!(rows[3..].iter().all(|v| v.is_finite()) && (rows[3..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
}

/// The fused attention against the same attention in burn's operations, on flex: the
/// context, and the gradients of q, k and v, with texts fully real, partly padded and
/// entirely padded (uniform probabilities, no gradient through the scores), with and
/// without a dropout mask, with autodiff and without, for every position's queries and for
/// the first ones only; and enough (text, head) units for several threads.
#[test]
fn the_fused_attention_and_its_gradients_match_burns_operations() {
    let close = |a: &[f32], b: &[f32], what: &str| assert_close(a, b, 2e-5, what);
    let calls = || FUSED_ATTENTION_CALLS.with(|calls| calls.get());
    for (batch, queries, seq, heads, head) in [
        (3, 7, 7, 3, 4),
        (4, 33, 33, 4, 8),
        (2, 5, 5, 1, 6),
        (4, 1, 33, 4, 8),
        (3, 2, 7, 3, 4),
    ] {
        let hidden = heads * head;
        let device = Device::flex().autodiff();
        let lengths: Vec<usize> = (0..batch).map(|i| [seq, seq - 3, 0, 1][i % 4]).collect();
        let real: Vec<bool> = lengths.iter().flat_map(|&n| (0..seq).map(move |j| j < n)).collect();
        let real = Tensor::<2, Bool>::from_data(TensorData::new(real, [batch, seq]), &device);
        let mut rng = crate::rng::SplitMix64::new(7);
        let mask: Vec<f32> = (0..batch * heads * queries * seq)
            .map(|_| if rng.unit() < 0.8 { 1.25 } else { 0.0 })
            .collect();
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [batch, heads, queries, seq]), &device);
        let upstream = random([batch, queries, hidden], 4, &device);
        let shapes = [queries, seq, seq].map(|rows| [batch, rows, hidden]);
        let mut written_out_context = Vec::new();
        for dropout in [None, Some(mask)] {
            let inputs = [1, 2, 3].map(|seed| random(shapes[seed - 1], seed as u64, &device).require_grad());
            let run = |fused: bool| {
                let [q, k, v] = inputs.clone();
                let op = if fused { attention } else { attention_written_out };
                let context = op(q, k, v, heads, Some(&real), dropout.clone());
                let grads = (context.clone() * upstream.clone()).sum().backward();
                let grads = inputs.clone().map(|x| values(x.grad(&grads).expect("a gradient")));
                (values(context.inner()), grads)
            };
            let before = calls();
            let (ours, burns) = (run(true), run(false));
            assert_eq!(calls(), before + 1, "the fused attention did not run");
            let what = format!("{batch}×{queries}×{seq}, {heads} heads, dropout {}", dropout.is_some());
            if dropout.is_none() {
                written_out_context = burns.0.clone();
            }
            close(&ours.0, &burns.0, &format!("context, {what}"));
            for (name, (a, b)) in ["q", "k", "v"].iter().zip(ours.1.iter().zip(&burns.1)) {
                close(a, b, &format!("{name}'s gradient, {what}"));
            }
            if lengths[..].contains(&0) {
                // An entirely padded text attends uniformly: its context rows are v's mean.
                let text = lengths.iter().position(|&n| n == 0).expect("a padded text");
                let v = values(inputs[2].clone().inner());
                for (i, &c) in ours.0[text * queries * hidden..][..hidden].iter().enumerate() {
                    let mean = (0..seq).map(|j| v[(text * seq + j) * hidden + i]).sum::<f32>() / seq as f32;
                    if dropout.is_none() {
                        assert!((c - mean).abs() < 1e-5, "uniform attention: {c} against {mean}");
                    }
                }
            }
        }
        // Without autodiff (evaluation and the forward benchmark), against the written-out
        // form with autodiff: burn's own fused attention, which the written-out form uses
        // without autodiff, gives an entirely padded text zeros instead of v's mean.
        let [q, k, v] = [1, 2, 3].map(|seed| random(shapes[seed - 1], seed as u64, &device).inner());
        let before = calls();
        let ours = attention(q, k, v, heads, Some(&real.clone().inner()), None);
        assert_eq!(calls(), before + 1, "the fused attention did not run");
        close(&values(ours), &written_out_context, "context without autodiff");
    }
}
