use super::*;
use astrid::schema::SelectBy;
use burn::module::ParamId;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;

use crate::training::fixtures::{tiny_data, tiny_model};
use crate::training::train::{TrainOptions, adamw};

/// Every parameter's gradient, flattened, in the model's order.
fn flat_gradients(model: &EncoderClassifier, grads: &GradientsParams) -> Vec<(ParamId, Vec<f32>)> {
    struct Collect<'a>(&'a GradientsParams, Vec<(ParamId, Vec<f32>)>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.0.get::<D>(param.id) {
                let values = pollster::block_on(read_f32(grad.reshape([-1]))).unwrap();
                self.1.push((param.id, values));
            }
        }
    }
    let mut collect = Collect(grads, Vec::new());
    model.visit(&mut collect);
    collect.1
}

/// Every weight of a model, flattened, in the model's order.
fn flat_weights(model: &EncoderClassifier) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = pollster::block_on(read_f32(param.val().reshape([-1]))).unwrap();
            self.0.extend(values);
        }
    }
    let mut collect = Collect(Vec::new());
    model.valid().visit(&mut collect);
    collect.0
}

/// A NaN in one parameter's gradient stops training with that parameter's name (the name
/// comes from the scan's own path: burn's traversal never calls `visit_float_with_path`).
#[test]
fn a_gradient_that_is_not_finite_is_named() {
    let autodiff = Device::flex().autodiff();
    let model = tiny_model(0.0).to_device(&autodiff).train();
    let data = tiny_data();
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
    let texts: Vec<usize> = (0..7).collect();
    let batch = Batch {
        texts: &texts,
        data: &data,
        epoch: 0,
    };
    let mut grads = batch_gradients(&model, &loss_fn, &batch, Guidance::default(), &StepPlan::single(1e-3))
        .unwrap()
        .grads;
    check_gradients(&model, &grads).unwrap();
    let bias = &model.layers[0].output.bias.as_ref().unwrap();
    let poisoned = grads.get::<1>(bias.id).unwrap().mul_scalar(f64::NAN);
    grads.register::<1>(bias.id, poisoned);
    let error = check_gradients(&model, &grads).unwrap_err().to_string();
    assert!(error.contains("layers.0.output.bias"), "{error}");
}

#[test]
fn shards_split_a_batch_evenly_in_order() {
    let texts: Vec<usize> = (10..17).collect();
    let parts = shards(&texts, 3);
    assert_eq!(parts, vec![&texts[0..3], &texts[3..5], &texts[5..7]]);
    assert_eq!(shards(&texts, 1), vec![&texts[..]]);
    assert_eq!(shards(&texts[..2], 4).len(), 2, "no empty shard");
    assert_eq!(shards(&[], 2), vec![&[] as &[usize]]);
}

/// Shards weighted by their share of the class weight and of the texts give the whole
/// batch's loss and gradient: cross-entropy with class weights plus distillation, uneven
/// shards (3, 2, 2 texts) with different class mixes.
#[test]
fn a_batch_split_between_replicas_has_the_whole_batchs_gradient() {
    let autodiff = Device::flex().autodiff();
    let model = tiny_model(0.0).to_device(&autodiff).train();
    let data = tiny_data();
    let weights = [2.5f32, 0.6];
    let loss_fn = CrossEntropyLossConfig::new()
        .with_weights(Some(weights.to_vec()))
        .init(&autodiff);
    let teacher: Vec<Vec<f32>> = (0..7).map(|i| vec![0.3 * i as f32 - 1.0, 0.5]).collect();
    let guidance = Guidance {
        teacher_logits: Some(&teacher),
        align: None,
    };
    let texts: Vec<usize> = (0..7).collect();
    let batch = Batch {
        texts: &texts,
        data: &data,
        epoch: 0,
    };
    let plan = |workers| StepPlan {
        lr: 1e-3,
        distill: Some(Distill {
            temperature: 2.0,
            alpha: 0.3,
        }),
        class_weights: Some(&weights),
        workers,
        dropout_seed: 9,
    };
    let whole = batch_gradients(&model, &loss_fn, &batch, guidance, &plan(1)).unwrap();
    let split = batch_gradients(&model, &loss_fn, &batch, guidance, &plan(3)).unwrap();
    assert!(
        (whole.loss - split.loss).abs() < 1e-6,
        "{} vs {}",
        whole.loss,
        split.loss
    );
    assert_eq!(whole.right, split.right);
    let (a, b) = (
        flat_gradients(&model, &whole.grads),
        flat_gradients(&model, &split.grads),
    );
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 10, "every parameter has a gradient: {} of them", a.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let gap = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            gap <= 1e-5 * scale + 1e-8,
            "{name:?}: gradients differ by {gap} (largest {scale})"
        );
    }
    let largest = a.iter().flat_map(|(_, v)| v).fold(0f32, |m, v| m.max(v.abs()));
    assert!(largest > 1e-3, "the gradient is not flat ({largest})");
}

/// Two workers with dropout: the same seed gives the same weights, bit for bit, after
/// three steps; another dropout seed gives others (the replicas' masks come from their
/// streams, not from the device's shared generator).
#[test]
fn data_parallel_training_is_reproducible_for_a_seed_and_worker_count() {
    let autodiff = Device::flex().autodiff();
    let start = tiny_model(0.3);
    let data = tiny_data();
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
    let train = |seed: u64| {
        let mut model = start.clone().to_device(&autodiff).train();
        let mut optimizer = adamw(&TrainOptions {
            epochs: 1,
            batch_size: 7,
            learning_rate: 1e-2,
            weight_decay: 0.01,
            warmup_ratio: 0.0,
            clip_norm: 1.0,
            patience: 1,
            seed,
            distill: None,
            class_weights: None,
            select_by: SelectBy::Accuracy,
            workers: 2,
        });
        let texts: Vec<usize> = (0..7).collect();
        for step in 0..3 {
            let plan = StepPlan {
                workers: 2,
                dropout_seed: step_seed(seed, 0, step),
                ..StepPlan::single(1e-2)
            };
            let batch = Batch {
                texts: &texts,
                data: &data,
                epoch: 0,
            };
            model = train_batch(model, &mut optimizer, &loss_fn, batch, Guidance::default(), plan)
                .unwrap()
                .model;
        }
        flat_weights(&model)
    };
    let first = train(1);
    assert!(first != flat_weights(&start), "training moved no weight");
    assert!(first == train(1), "the same seed and worker count trained differently");
    assert!(first != train(2), "the dropout seed changed nothing");
}
