//! How many chains of work run at once on the CPU.

/// Chains of work on the CPU (IG's, and training's model replicas): burn-flex runs
/// element-wise operations on one thread, so two chains fill a 2-core machine.
/// `ASTRID_THREADS` overrides.
pub fn cpu_workers() -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::env::var("ASTRID_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(available.min(2))
        .max(1)
}
