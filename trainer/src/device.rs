//! Choosing where tensors live: burn's CPU backend (flex) or a GPU through wgpu.

use std::fmt;

use burn::tensor::Device;

/// The `--backend` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// burn's CPU backend (flex).
    #[default]
    #[value(alias = "flex")]
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12; Mesa's lavapipe without one).
    #[value(alias = "gpu")]
    Wgpu,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(value) => f.write_str(value.get_name()),
            None => f.write_str("?"),
        }
    }
}

/// A device, a line that says what it is (for logs and reports), and how many independent
/// chains of work IG runs on it at once.
pub struct Selected {
    pub device: Device,
    pub description: String,
    pub workers: usize,
}

/// Chains of work on the CPU (IG's, and training's model replicas): burn-flex runs
/// element-wise operations on one thread, so two chains fill a 2-core machine (more gave
/// nothing here). `ASTRID_THREADS` overrides.
pub fn cpu_workers() -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::env::var("ASTRID_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(available.min(2))
        .max(1)
}

/// Initialises the backend. For wgpu, the adapter is reported, because when no Vulkan driver
/// is found wgpu quietly falls back to OpenGL on a software rasteriser.
pub fn select(backend: Backend) -> anyhow::Result<Selected> {
    match backend {
        Backend::Cpu => Ok(Selected {
            device: Device::flex(),
            description: format!(
                "cpu (burn flex, {} threads)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            workers: cpu_workers(),
        }),
        Backend::Wgpu => {
            let (device, setup) = Device::wgpu_options().init_with_setup().map_err(|e| {
                anyhow::anyhow!(
                    "could not start wgpu: {e:?}. Without a GPU, install Mesa's Vulkan drivers (Debian: mesa-vulkan-drivers) or use --backend cpu"
                )
            })?;
            let info = setup.adapter.get_info();
            let mut description = format!(
                "wgpu: {} ({:?}, {:?}, driver {})",
                info.name, info.backend, info.device_type, info.driver
            );
            if info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu {
                description.push_str(" [software rendering: figures are not GPU figures]");
            }
            Ok(Selected {
                device,
                description,
                workers: 1,
            })
        }
    }
}
