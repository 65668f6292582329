//! The library's error type: every failure names what it is about (kernel, file,
//! option), and library code returns it instead of panicking.

use std::path::PathBuf;

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tensor shapes that do not fit together (or a model that cannot take an input).
    #[error("shape error: {0}")]
    Shape(String),
    /// An impossible option or configuration value.
    #[error("invalid option --{name}: {msg}")]
    Option {
        /// The option's name as the CLI spells it.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A file that could not be read or written.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error. Not an error `source`: the message already holds
        /// it, and a source would print it a second time in an error chain.
        err: std::io::Error,
    },
    /// A data file whose content is invalid (wrong magic, truncated, mismatched counts).
    #[error("{path}: {msg}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// NaN or infinity where finite numbers are required.
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// A backend failure (CUDA driver, NVRTC, emulator), naming the kernel.
    #[error("backend {backend}: {msg}")]
    Backend {
        /// Backend name.
        backend: String,
        /// What failed.
        msg: String,
    },
    /// A run stopped on request before it finished (its last checkpoint is kept).
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A feature that this build or machine does not offer.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// Shortcut for [`Error::Option`].
    pub fn option(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Option {
            name: name.into(),
            msg: msg.into(),
        }
    }
    /// Shortcut for [`Error::Data`].
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }
    /// Shortcut for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }
}
