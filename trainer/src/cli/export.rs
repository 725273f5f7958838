//! `trainer export`'s flags.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

#[derive(Args, Debug, Serialize)]
pub struct ExportArgs {
    /// A run directory written by `trainer run`.
    #[arg(long)]
    pub run: PathBuf,
    /// Where the bundle goes (the web app reads models/ beside its index.html): a new or
    /// empty directory, or an earlier bundle to replace. Nothing else is ever replaced.
    #[arg(long, default_value = "www/models")]
    pub to: PathBuf,
    /// How many validation texts to offer as samples.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Only these models (comma-separated names from the run: roles, or ROLE-align and the
    /// like after --training; the teacher is always included), for a
    /// lighter demo.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
}
