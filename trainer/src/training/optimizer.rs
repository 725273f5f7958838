//! The training optimizer: burn's AdamW with clipping by norm per parameter, its step one
//! fused parallel pass on the CPU (`astrid::kernels::adamw_step`: burn runs some twenty
//! single-threaded element-wise passes per parameter, a visible share of a training step for
//! BERT-base's 110 million values), and burn's own `AdamW` on any other device. The state is
//! burn's `AdamWState`, so an optimizer checkpoint reads back into either.

use astrid::kernels::{AdamWStep, adamw_fuses, adamw_step};
use burn::optim::grad_clipping::{GradientClipping, GradientClippingConfig};
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

/// AdamW with `settings` (their `lr` and `time` are each step's own).
#[derive(Clone)]
pub struct FusedAdamW {
    settings: AdamWStep,
    /// The same optimizer in burn's operations, for devices the fused step does not run on.
    burn: AdamW,
    clipping: Option<GradientClipping>,
}

impl FusedAdamW {
    pub fn new(settings: AdamWStep) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(settings.beta_1)
            .with_beta_2(settings.beta_2)
            .with_epsilon(settings.epsilon)
            .with_weight_decay(settings.weight_decay)
            .build();
        let clipping = settings.clip_norm.map(|norm| GradientClippingConfig::Norm(norm).init());
        FusedAdamW {
            settings,
            burn,
            clipping,
        }
    }

    /// As a whole-module optimizer (the clipping is the step's own, per parameter, as burn's
    /// `AdamWConfig::with_grad_clipping` would apply it).
    pub fn into_module_optimizer(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let amsgrad = state.as_ref().is_some_and(|s| s.momentum.max_moment_2.is_some());
        if !adamw_fuses(&tensor, &grad) || amsgrad {
            let grad = match &self.clipping {
                Some(clipping) => clipping.clip_gradient(grad),
                None => grad,
            };
            return self.burn.step(lr, tensor, grad, state);
        }
        let (time, moments) = match state {
            Some(AdamWState { momentum }) => (momentum.time + 1, Some([momentum.moment_1, momentum.moment_2])),
            None => (1, None),
        };
        let step = AdamWStep {
            lr,
            time,
            ..self.settings
        };
        let [tensor, moment_1, moment_2] = adamw_step(step, tensor, grad, moments);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Initializer, Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::TensorData;

    const SETTINGS: AdamWStep = AdamWStep {
        lr: 0.01,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-5,
        weight_decay: 0.01,
        time: 0,
        clip_norm: Some(1.0),
    };

    /// burn's own AdamW with the same settings and clipping.
    fn burns() -> ModuleOptimizer {
        AdamWConfig::new()
            .with_weight_decay(SETTINGS.weight_decay)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
            .init()
    }

    /// Step `step`'s gradients: the weight's far above the clipping norm, the bias's below.
    fn gradients(layer: &Linear, step: usize) -> GradientsParams {
        let device = Device::flex().autodiff();
        let x: Vec<f32> = (0..3 * 8).map(|i| ((i * 7 + step * 3) % 11) as f32 - 5.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [3, 8]), &device);
        let upstream = Tensor::<2>::from_data(TensorData::new(vec![0.1f32; 3 * 4], [3, 4]), &device);
        let grads = (layer.forward(x) * upstream).sum().backward();
        GradientsParams::from_grads(grads, layer)
    }

    /// The same layer every time.
    fn layer() -> Linear {
        LinearConfig::new(8, 4)
            .with_initializer(Initializer::Constant { value: 0.05 })
            .init(&Device::flex().autodiff())
    }

    fn weights(layer: &Linear) -> Vec<f32> {
        let bias = layer.bias.as_ref().map(|b| b.val().into_data()).into_iter();
        [layer.weight.val().into_data()]
            .into_iter()
            .chain(bias)
            .flat_map(|d| d.try_to_vec::<f32>().expect("f32"))
            .collect()
    }

    /// Runs `steps` steps from `optimizer` (switching to `then` after `switch_after` steps,
    /// through its record, as resuming from a checkpoint does).
    fn train(optimizer: ModuleOptimizer, then: ModuleOptimizer, switch_after: usize, steps: usize) -> Vec<f32> {
        let mut layer = layer();
        let mut optimizer = optimizer;
        let mut then = Some(then);
        for step in 0..steps {
            if step == switch_after
                && let Some(next) = then.take()
            {
                optimizer = next.load_record(optimizer.to_record());
            }
            let grads = gradients(&layer, step);
            layer = optimizer.step(SETTINGS.lr, layer, grads);
        }
        weights(&layer)
    }

    /// The fused optimizer steps as burn's AdamW with clipping by norm, step after step, and
    /// either resumes from the other's optimizer record.
    #[test]
    fn fused_adamw_steps_as_burns_adamw_and_shares_its_state() {
        let fused = || FusedAdamW::new(SETTINGS).into_module_optimizer();
        let layer = layer();
        let grads = gradients(&layer, 0);
        let weight_grad = grads.get::<2>(layer.weight.id).expect("the weight's gradient");
        let weight_norm = weight_grad
            .clone()
            .square()
            .sum()
            .sqrt()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")[0];
        assert!(
            weight_norm > 2.0,
            "the weight's gradient must be clipped: {weight_norm}"
        );
        assert!(
            adamw_fuses(&layer.weight.val().inner(), &weight_grad),
            "the fused step would not run"
        );

        let reference = train(burns(), burns(), 0, 5);
        let close = |ours: &[f32], what: &str| {
            assert_eq!(ours.len(), reference.len());
            for (a, b) in ours.iter().zip(&reference) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{what}: {a} against burn's {b}"
                );
            }
        };
        let start = weights(&layer);
        assert!(
            start.iter().zip(&reference).any(|(a, b)| (a - b).abs() > 1e-3),
            "the steps moved nothing"
        );
        close(&train(fused(), fused(), 0, 5), "fused");
        close(&train(burns(), fused(), 2, 5), "burn's, then fused from its record");
        close(&train(fused(), burns(), 3, 5), "fused, then burn's from its record");
    }
}
