//! Small things every layer uses: digests, the clock, progress bars, thread counts.

pub mod clock;
pub mod digest;
pub mod progress;
pub mod threads;
