//! Choosing where tensors live: burn's CPU backend (flex) or a GPU through wgpu.

use burn::tensor::Device;

pub use crate::settings::Backend;
pub use crate::util::threads::cpu_workers;

/// A device, a line that says what it is (for logs and reports), and how many independent
/// chains of work IG runs on it at once.
pub struct Selected {
    pub device: Device,
    pub description: String,
    pub workers: usize,
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
