//! One error type for the library: each variant says what was wrong, where, and (in its
//! message) what to do about it.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value given by the caller (option, argument) that cannot be used.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },

    /// A field of a configuration file that is missing or wrong.
    #[error("{file}: field \"{field}\": {message}")]
    Config {
        file: String,
        field: String,
        message: String,
    },

    /// A file that is not valid JSON.
    #[error("{file}: line {line}, column {column}: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// A file that cannot be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },

    /// Weights that do not fit the model described by the config.
    #[error("{file}: {message}")]
    Weights { file: String, message: String },

    /// A tokenizer that cannot be loaded or used.
    #[error("tokenizer {source_name}: {message}")]
    Tokenizer { source_name: String, message: String },

    /// A model produced NaN or infinite values.
    #[error("{0}")]
    NotFinite(String),

    /// The backend failed (device lost, readback failed).
    #[error("backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub fn config(file: impl Into<String>, field: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Config {
            file: file.into(),
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub fn io(path: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::Io {
            path: path.to_string(),
            message: err.to_string(),
        }
    }

    pub fn weights(file: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Weights {
            file: file.into(),
            message: message.to_string(),
        }
    }

    /// Re-labels a validation error as a field of `file`.
    pub fn in_file(self, file: &str) -> Self {
        match self {
            Error::Invalid { field, message } => Error::config(file, field, message),
            other => other,
        }
    }
}
