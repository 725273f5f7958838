//! The same explanation on burn's CPU backend and on wgpu. Without a GPU, wgpu runs on
//! Mesa's lavapipe (Vulkan on the CPU), which `.ci/run` installs; on a machine with neither
//! the test fails and says so (it never passes without comparing).

use astrid::ModelConfig;
use astrid::explain::{ExplainInput, ExplainOptions, Explanation, explain};
use burn::module::Module;
use burn::tensor::Device;

fn run(model: &astrid::EncoderClassifier, options: &ExplainOptions) -> Explanation {
    let ids = [1u32, 17, 45, 9, 88, 23, 5, 71, 2];
    let special = [true, false, false, false, false, false, false, false, true];
    let input = ExplainInput {
        ids: &ids,
        special: &special,
        pad_id: Some(0),
        mask_id: Some(3),
    };
    pollster::block_on(explain(model, &input, options)).expect("explain")
}

#[test]
fn cpu_and_wgpu_give_the_same_attributions() {
    let (gpu, setup) = Device::wgpu_options()
        .init_with_setup()
        .expect("wgpu could not start: install a Vulkan driver (Debian: mesa-vulkan-drivers, lavapipe)");
    let info = setup.adapter.get_info();
    eprintln!(
        "wgpu adapter: {} ({:?}, {:?})",
        info.name, info.backend, info.device_type
    );

    let cpu = Device::flex();
    let config = ModelConfig::preset("tiny_bert").unwrap();
    let on_cpu = config.init(&cpu).valid();
    let bytes = astrid::weights::to_safetensors_bytes(&on_cpu).unwrap();
    let (on_gpu, _) = astrid::weights::load_safetensors_bytes(&config, bytes, "memory", false, &gpu).unwrap();
    let on_gpu = on_gpu.valid();
    for options in [
        ExplainOptions::default(),
        ExplainOptions {
            internal_batch_size: Some(7),
            ..ExplainOptions::default()
        },
        ExplainOptions {
            attribution: astrid::Attribution::Saliency,
            ..ExplainOptions::default()
        },
    ] {
        let (a, b) = (run(&on_cpu, &options), run(&on_gpu, &options));
        assert_eq!(a.target, b.target);
        let largest = a.attributions.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (x, y) in a.attributions.iter().zip(&b.attributions) {
            assert!((x - y).abs() <= 1e-4 * largest, "{options:?}: cpu {x} vs wgpu {y}");
        }
        for (p, q) in a.probs.iter().zip(&b.probs) {
            assert!((p - q).abs() < 1e-5);
        }
    }
}
