//! The stages of `trainer run`, in the order they run: [`prepare`] the data, train the suite
//! and the teacher's retrained copies ([`train_suite`]), [`evaluate`], explain
//! ([`explanations`]), compare ([`comparison`]) and [`calibration`], [`faithfulness`] with
//! [`baselines`], [`decision`]; and what makes a run safe to repeat: its [`fingerprint`] and
//! its directory ([`rundir`]), checked and opened by [`setup`]. [`run`] drives them.

pub mod baselines;
pub mod calibration;
pub mod comparison;
pub mod decision;
pub mod evaluate;
pub mod explanations;
pub mod faithfulness;
pub mod fingerprint;
pub mod generalisation;
pub mod prepare;
pub mod reference_check;
pub mod run;
pub mod rundir;
pub mod setup;
pub mod summary;
pub mod train_suite;
