//! Astrid's trainer as a library: everything the `trainer` commands do. The folders are the
//! layers, and each imports only those below it:
//!
//! - [`commands`]: one module per command (`run`, `explain`, `export`, `data stats`, `bench`);
//! - [`pipeline`]: the stages of `run`, in order, and the run directory they write;
//! - [`report`]: one report model, rendered as Markdown, HTML and the terminal table;
//! - [`training`], [`models`], [`data`]: one model's training, the model suites and where
//!   models come from, the labelled texts;
//! - [`settings`], [`util`]: the typed settings every stage takes; digests, clock, progress.
//!
//! The command-line parser lives in the binary (`src/main.rs`, `src/cli/`), which turns
//! flags and config files into [`settings`] and calls [`commands`].

pub mod commands;
pub mod data;
pub mod models;
pub mod pipeline;
pub mod report;
pub mod settings;
pub mod training;
pub mod util;
