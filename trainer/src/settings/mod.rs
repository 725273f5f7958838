//! The typed settings every stage takes: what `trainer run` was asked to do, checked, with
//! no command-line parser and no I/O. The command line and a config file both become these.

mod ig;
mod problems;
mod roles;
mod run;
mod validate;

pub use ig::IgConfig;
pub use problems::{Problems, finite_in};
pub use roles::{HUB_PREFIX, ModelRef, PRETRAINED, parse_inits, parse_role_lrs, parse_role_warmups};
pub use run::{
    Backend, ClassWeight, DataConfig, MAX_REFERENCE_SEEDS, MAX_SEQUENCE_LENGTH, MIN_EVALUATION_TEXTS, RunConfig,
    WARN_EVALUATION_TEXTS,
};
