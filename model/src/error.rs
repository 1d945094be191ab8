//! The one error type of caq-model. Every variant names what was wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error(
        "{path}: schema version {found} is not supported (this build reads {}); {}",
        versions_read(.oldest, .supported),
        crate::store::REGENERATE
    )]
    Version {
        path: PathBuf,
        found: u32,
        oldest: u32,
        supported: u32,
    },
    #[error(
        "{path}: tensor '{tensor}' failed its checksum (stored crc32 {expected:#010x}, computed {found:#010x}); the file is corrupted"
    )]
    Checksum {
        path: PathBuf,
        tensor: String,
        expected: u32,
        found: u32,
    },
    #[error("layer '{layer}': {what}")]
    Layer { layer: String, what: String },
    #[error("shape mismatch in {context}: expected {expected}, found {found}")]
    Shape {
        context: String,
        expected: String,
        found: String,
    },
    #[error("invalid argument '{name}': {what}")]
    Arg { name: String, what: String },
    #[error("training: {0}")]
    Train(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.into(),
            what: what.into(),
        }
    }
    pub fn arg(name: impl Into<String>, what: impl Into<String>) -> Self {
        ModelError::Arg {
            name: name.into(),
            what: what.into(),
        }
    }
}

/// "version N" or "versions A to B": the schema versions a build reads.
fn versions_read(oldest: &u32, supported: &u32) -> String {
    if oldest == supported {
        format!("version {supported}")
    } else {
        format!("versions {oldest} to {supported}")
    }
}
