//! What can go wrong reading a context trace or a context policy. The probe has no errors: what
//! it cannot read becomes `None` and a warning (see [`super::ContextProbe::warnings`]).

use std::path::PathBuf;

use caq_spec::ConfigProblem;

/// An error loading or saving a context trace or policy; every variant names the file, and where
/// it can the record or field and what was expected there.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A trace file whose name ends in neither `.json` nor `.csv`.
    #[error("{path}: unknown trace format: expected a file name ending in .json or .csv")]
    TraceFormat { path: PathBuf },

    /// A trace that is not well-formed JSON or CSV, or holds no points.
    #[error("{path}: {what}")]
    TraceFile { path: PathBuf, what: String },

    /// A field of one trace record that is missing, unknown or out of range.
    #[error("{path}: {at}: {field} = {value}: expected {expected}")]
    TraceField {
        path: PathBuf,
        /// `record 3` (JSON) or `record 3 (line 5)` (CSV); records count from 1.
        at: String,
        field: String,
        /// The value as written in the file, or `(missing)`.
        value: String,
        expected: String,
    },

    /// A policy that is not well-formed TOML, has an unknown field or a value of the wrong type.
    #[error("{location}: {message}")]
    Toml { location: String, message: String },

    /// A policy whose `schema_version` is missing or not the one this build reads.
    #[error(
        "{origin}: schema_version = {found}: this build of caq reads context policies of schema_version {supported} only"
    )]
    SchemaVersion {
        origin: String,
        found: String,
        supported: u32,
    },

    /// A policy that parsed but breaks one or more rules; every problem is listed.
    #[error("{origin}: invalid context policy:{}", render_problems(.problems))]
    InvalidPolicy {
        origin: String,
        problems: Vec<ConfigProblem>,
    },

    /// Writing a trace failed.
    #[error(transparent)]
    Save(#[from] caq_model::ModelError),
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}
