//! The commands: each takes its typed options, does its work, and prints what a user reads.

pub mod bench;
pub mod bench_reference;
pub mod explain;
pub mod export;
pub mod run;
pub mod stats;
