//! Seeded initialisation is reproducible: the same seed gives the same weights. One test:
//! burn's CPU backend keeps one random stream per process, which parallel tests would share.

use astrid::EncoderClassifier;
use astrid::config::ModelConfig;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

/// Every parameter's values, in field order.
fn weights(model: &EncoderClassifier) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .push(param.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

#[test]
fn the_same_seed_gives_the_same_initial_weights() {
    let device = Device::flex();
    let config = ModelConfig::preset("tiny_bert").unwrap();
    device.seed(7);
    let a = weights(&config.init(&device));
    device.seed(7);
    let b = weights(&config.init(&device));
    device.seed(8);
    let c = weights(&config.init(&device));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "parameter {i} differs between two inits with seed 7");
    }
    assert_ne!(a, c, "seed 8 gave the same weights as seed 7");
}
