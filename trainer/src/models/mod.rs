//! Which models a run has and where they come from: the suite presets, model references
//! (directories and Hub ids), and the device they run on.

pub mod device;
pub mod hub;
pub mod suite;
