//! Integrated Gradients against closed forms and its own invariants, on burn's CPU backend.

use astrid::ModelConfig;
use astrid::explain::{
    Attribution, Baseline, ExplainInput, ExplainOptions, Method, Quadrature, explain, integrate_path, read_f32,
};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn tensor3(values: &[f32], shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y} (tol {tol})");
    }
}

/// For f(z) = Σ w·z (linear), IG = (x − b) ⊙ w exactly, for every rule whose weights sum to 1.
#[test]
fn linear_function_gives_input_times_gradient_exactly() {
    let device = Device::flex();
    let x = [0.5, -1.0, 2.0, 0.25, 3.0, -0.75];
    let b = [0.1, 0.2, -0.3, 0.0, 1.0, 0.5];
    let w = [1.5, -2.0, 0.5, 4.0, -1.0, 0.25];
    let weight = tensor3(&w, [1, 2, 3], &device);
    let f = |z: Tensor<3>| {
        let [batch, _, _] = z.dims();
        (z * weight.clone()).reshape([batch, 6]).sum_dim(1)
    };
    let expected: Vec<f32> = (0..6).map(|i| (x[i] - b[i]) * w[i]).collect();
    for method in [
        Method::GaussLegendre,
        Method::RiemannLeft,
        Method::RiemannRight,
        Method::RiemannMiddle,
    ] {
        for n in [2, 7, 50] {
            let ig = integrate_path(
                f,
                tensor3(&x, [1, 2, 3], &device),
                tensor3(&b, [1, 2, 3], &device),
                Quadrature {
                    method,
                    n_steps: n,
                    chunk: Some(3),
                    workers: 1,
                },
                None,
            )
            .unwrap();
            assert_close(
                &block_on(read_f32(ig)).unwrap(),
                &expected,
                1e-5,
                &format!("{method} n={n}"),
            );
        }
    }
}

/// For f(z) = Σ w·z², the integrand is linear in α: one Gauss-Legendre node is already exact,
/// IG = w (x² − b²), and completeness holds exactly.
#[test]
fn quadratic_function_is_integrated_exactly_by_gauss_legendre() {
    let device = Device::flex();
    let x = [0.5, -1.0, 2.0, 0.25];
    let b = [0.1, 0.2, -0.3, 0.0];
    let w = [1.5, -2.0, 0.5, 4.0];
    let weight = tensor3(&w, [1, 4, 1], &device);
    let f = |z: Tensor<3>| {
        let [batch, _, _] = z.dims();
        (z.clone() * z * weight.clone()).reshape([batch, 4]).sum_dim(1)
    };
    let expected: Vec<f32> = (0..4).map(|i| w[i] * (x[i] * x[i] - b[i] * b[i])).collect();
    for n in [1, 2, 5] {
        let ig = integrate_path(
            f,
            tensor3(&x, [1, 4, 1], &device),
            tensor3(&b, [1, 4, 1], &device),
            Quadrature {
                method: Method::GaussLegendre,
                n_steps: n,
                chunk: None,
                workers: 2,
            },
            None,
        )
        .unwrap();
        assert_close(&block_on(read_f32(ig)).unwrap(), &expected, 1e-5, &format!("n={n}"));
    }
}

fn tiny_model(device: &Device) -> astrid::EncoderClassifier {
    let mut config = ModelConfig::preset("tiny_bert").unwrap();
    config.hidden_dropout = 0.3; // must not matter: explanations run in validation mode
    config.init(device).valid()
}

const IDS: [u32; 9] = [1, 17, 45, 9, 88, 23, 5, 71, 2];
const SPECIAL: [bool; 9] = [true, false, false, false, false, false, false, false, true];

fn input() -> ExplainInput<'static> {
    ExplainInput {
        ids: &IDS,
        special: &SPECIAL,
        pad_id: Some(0),
        mask_id: Some(3),
    }
}

/// Completeness: Σ attributions → F(input) − F(baseline) as the rule gets finer. Uses the
/// fixture model, whose large random weights make F strongly non-linear along the path.
#[test]
fn convergence_delta_shrinks_with_more_steps() {
    let device = Device::flex();
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../tests/fixtures/tiny_bert");
    let model = astrid::LoadedModel::from_dir(&dir, None, &device).unwrap();
    let tokens = model
        .tokenizer
        .encode("Petitioner argues the search was unreasonable under the Fourth Amendment.")
        .unwrap();
    let delta = |method: Method, n: usize| {
        let options = ExplainOptions {
            n_steps: n,
            method,
            ..ExplainOptions::default()
        };
        block_on(model.explain_ids(&tokens, &options))
            .unwrap()
            .convergence_delta
            .unwrap()
            .abs()
    };
    let gl: Vec<f32> = [1, 2, 4, 50].iter().map(|&n| delta(Method::GaussLegendre, n)).collect();
    assert!(gl[3] < 1e-3, "delta at 50 steps: {gl:?}");
    assert!(
        gl[0] > 10.0 * gl[3] && gl[1] > 10.0 * gl[3],
        "gausslegendre deltas {gl:?}"
    );
    // Float rounding (~1e-7) is the floor once the rule is exact enough.
    assert!(
        gl.windows(2).all(|w| w[1] <= w[0] + 1e-6),
        "gausslegendre deltas {gl:?}"
    );
    let riemann: Vec<f32> = [4, 16, 64].iter().map(|&n| delta(Method::RiemannMiddle, n)).collect();
    assert!(
        riemann[0] > riemann[1] && riemann[1] > riemann[2],
        "riemann_middle deltas {riemann:?}"
    );
}

#[test]
fn internal_batch_size_does_not_change_the_result() {
    let device = Device::flex();
    let model = tiny_model(&device);
    let run = |chunk: Option<usize>| {
        let options = ExplainOptions {
            internal_batch_size: chunk,
            ..ExplainOptions::default()
        };
        block_on(explain(&model, &input(), &options)).unwrap()
    };
    let whole = run(None);
    let largest = whole.attributions.iter().fold(0f32, |m, a| m.max(a.abs()));
    assert!(largest > 0.0);
    for chunk in [1, 7, 50] {
        let r = run(Some(chunk));
        assert_close(
            &r.attributions,
            &whole.attributions,
            1e-5 * largest,
            &format!("chunk {chunk}"),
        );
        assert_eq!(r.target, whole.target);
    }
    // Two workers splitting the points between them: the same sum, in the same order.
    let split = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            workers: 2,
            ..ExplainOptions::default()
        },
    ))
    .unwrap();
    assert_close(&split.attributions, &whole.attributions, 1e-5 * largest, "2 workers");
}

#[test]
fn target_defaults_to_prediction_and_can_be_chosen() {
    let device = Device::flex();
    let model = tiny_model(&device);
    let predicted = block_on(explain(&model, &input(), &ExplainOptions::default())).unwrap();
    let argmax = if predicted.probs[1] > predicted.probs[0] { 1 } else { 0 };
    assert_eq!(predicted.target, argmax);
    assert!((predicted.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let other = 1 - argmax;
    let chosen = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            target: Some(other),
            ..ExplainOptions::default()
        },
    ))
    .unwrap();
    assert_eq!(chosen.target, other);
    // p0 + p1 = 1 along the whole path, so the two classes' attributions are opposite.
    assert_close(
        &chosen.attributions,
        &predicted.attributions.iter().map(|a| -a).collect::<Vec<_>>(),
        1e-5,
        "opposite targets",
    );
    let err = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            target: Some(2),
            ..ExplainOptions::default()
        },
    ))
    .unwrap_err();
    assert!(err.to_string().contains("target"), "{err}");
}

/// With a [PAD], [MASK] or uniform baseline, [CLS] and [SEP] equal their baseline: zero
/// attribution; and the output at every baseline is the F(baseline) IG reports.
#[test]
fn token_baselines_keep_special_tokens() {
    let device = Device::flex();
    let model = tiny_model(&device);
    for baseline in Baseline::ALL {
        let at_baseline = block_on(astrid::explain::baseline_probabilities(&model, &input(), baseline)).unwrap();
        let r = block_on(explain(
            &model,
            &input(),
            &ExplainOptions {
                baseline,
                ..ExplainOptions::default()
            },
        ))
        .unwrap();
        assert!((at_baseline.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(
            (at_baseline[r.target] - r.f_baseline.unwrap()).abs() < 1e-6,
            "{baseline}: {at_baseline:?} vs {:?}",
            r.f_baseline
        );
        if baseline == Baseline::Zero {
            continue;
        }
        assert_eq!(r.attributions[0], 0.0, "{baseline}");
        assert_eq!(r.attributions[8], 0.0, "{baseline}");
        assert!(r.attributions[1..8].iter().any(|a| a.abs() > 0.0));
        assert!(
            r.convergence_delta.unwrap().abs() < 1e-3,
            "{baseline}: {:?}",
            r.convergence_delta
        );
    }
    let mut no_pad = input();
    no_pad.pad_id = None;
    assert!(
        block_on(explain(
            &model,
            &no_pad,
            &ExplainOptions {
                baseline: Baseline::Pad,
                ..ExplainOptions::default()
            }
        ))
        .is_err()
    );
}

/// Saliency is |∇| and gradient × input is x·∇: they share the gradient, so where the input
/// embedding is non-zero, |grad-input| ≤ saliency · max|x| holds token by token.
#[test]
fn saliency_and_gradient_times_input() {
    let device = Device::flex();
    let model = tiny_model(&device);
    let saliency = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            attribution: Attribution::Saliency,
            ..ExplainOptions::default()
        },
    ))
    .unwrap();
    let grad_input = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            attribution: Attribution::GradInput,
            ..ExplainOptions::default()
        },
    ))
    .unwrap();
    assert!(saliency.attributions.iter().all(|&s| s > 0.0));
    assert!(saliency.convergence_delta.is_none());
    let words = model.embeddings.word_embeddings.weight.val();
    let max_abs = block_on(read_f32(words.abs().max())).unwrap()[0];
    for (s, g) in saliency.attributions.iter().zip(&grad_input.attributions) {
        assert!(g.abs() <= s * max_abs * 1.0001, "{g} vs {s}·{max_abs}");
    }
}

#[test]
fn bad_inputs_are_reported() {
    let device = Device::flex();
    let model = tiny_model(&device);
    let too_big = [1u32, 500, 2];
    let special = [true, false, true];
    let err = block_on(explain(
        &model,
        &ExplainInput {
            ids: &too_big,
            special: &special,
            pad_id: None,
            mask_id: None,
        },
        &ExplainOptions::default(),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("500") && err.contains("vocabulary"), "{err}");
    let long: Vec<u32> = vec![5; 65];
    let flags = vec![false; 65];
    let err = block_on(explain(
        &model,
        &ExplainInput {
            ids: &long,
            special: &flags,
            pad_id: None,
            mask_id: None,
        },
        &ExplainOptions::default(),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("65 tokens"), "{err}");
    let err = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            n_steps: 1,
            method: Method::RiemannLeft,
            ..ExplainOptions::default()
        },
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("n-steps"), "{err}");
}

#[test]
fn progress_is_reported_after_each_batch_of_points() {
    let model = tiny_model(&Device::flex());
    let seen = std::cell::RefCell::new(Vec::new());
    let report = |done: usize, total: usize| seen.borrow_mut().push((done, total));
    let options = ExplainOptions {
        n_steps: 10,
        internal_batch_size: Some(4),
        ..ExplainOptions::default()
    };
    let with = block_on(astrid::explain::explain_with_progress(
        &model,
        &input(),
        &options,
        Some(&report),
    ))
    .unwrap();
    let without = block_on(explain(&model, &input(), &options)).unwrap();
    assert_eq!(with, without, "reporting progress changes nothing else");
    let seen = seen.into_inner();
    // Two workers on the CPU report once at the end; one reports 4, 8, 10.
    assert!(seen == [(4, 10), (8, 10), (10, 10)] || seen == [(10, 10)], "{seen:?}");
}

/// Adaptive IG meets its tolerance on the convergence delta, agrees with a fine fixed rule, and
/// reports the gradients it used (whole Gauss-Kronrod panels).
#[test]
fn adaptive_ig_meets_its_tolerance_and_matches_a_fine_fixed_rule() {
    let device = Device::flex();
    let model = tiny_model(&device);
    let fine = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            n_steps: 400,
            ..ExplainOptions::default()
        },
    ))
    .unwrap();
    assert_eq!(fine.gradient_evaluations, 400);
    for tolerance in [1e-3, 1e-6] {
        let adaptive = block_on(explain(
            &model,
            &input(),
            &ExplainOptions {
                method: Method::Adaptive,
                tolerance,
                internal_batch_size: Some(7),
                ..ExplainOptions::default()
            },
        ))
        .unwrap();
        let delta = adaptive.convergence_delta.unwrap().abs() as f64;
        assert!(delta <= tolerance + 1e-6, "{tolerance}: delta {delta}");
        assert_eq!(
            adaptive.gradient_evaluations % astrid::explain::adaptive::PANEL_POINTS,
            0
        );
        assert!(adaptive.gradient_evaluations >= 15);
        assert_close(
            &adaptive.attributions,
            &fine.attributions,
            1e-4,
            "adaptive vs 400 Gauss-Legendre steps",
        );
    }
    let err = block_on(explain(
        &model,
        &input(),
        &ExplainOptions {
            method: Method::Adaptive,
            max_steps: 10,
            ..ExplainOptions::default()
        },
    ))
    .unwrap_err();
    assert!(err.to_string().contains("max-steps"), "{err}");
}
