//! [`SpecError`]: the one error type of caq-spec.
//!
//! Every variant carries the offending value and, where there is one, what was allowed, and names the
//! file, TOML field, register field or descriptor field it came from. This module owns only the error
//! shapes; the checks that raise them live next to the data they check.

use std::fmt;

use crate::regmap::ErrorCode;

/// One problem found while validating an [`AccelConfig`](crate::AccelConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The TOML path of the field, e.g. `axi.data_width`.
    pub field: String,
    /// The value found, as written in TOML.
    pub value: String,
    /// What the field may hold, and why when it is not obvious.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}: expected {}",
            self.field, self.value, self.expected
        )
    }
}

/// Everything that can go wrong in caq-spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A config file could not be read.
    #[error("{path}: cannot read accelerator config: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A config is not well-formed TOML, has an unknown field, or a value of the wrong type.
    #[error("{location}: {message}")]
    Toml { location: String, message: String },

    /// A config's `schema_version` is missing or not the one this build reads.
    #[error(
        "{origin}: schema_version = {found}: this build of caq reads schema_version {supported} only"
    )]
    SchemaVersion {
        origin: String,
        found: String,
        supported: u32,
    },

    /// A config parsed but breaks one or more rules; every problem is listed.
    #[error("{origin}: invalid accelerator config:{}", render_problems(.problems))]
    InvalidConfig {
        origin: String,
        problems: Vec<ConfigProblem>,
    },

    /// A bit-width outside 1..=8.
    #[error("bit width {value} is outside 1..=8")]
    BitWidth { value: u8 },

    /// A value too wide for the register field it is written to.
    #[error("register field {field} is {width} bits wide; {value:#x} does not fit")]
    FieldOverflow {
        field: &'static str,
        value: u64,
        width: u8,
    },

    /// A CAPS register read from a device holds a value no valid config produces.
    #[error("{register}.{field} = {value}: expected {expected}")]
    Caps {
        register: &'static str,
        field: &'static str,
        value: u64,
        expected: String,
    },

    /// A STATUS.ERR_CODE value that is not an [`ErrorCode`].
    #[error(
        "error code {code} is not defined by register map {}",
        crate::regmap::REGMAP_VERSION_STRING
    )]
    UnknownErrorCode { code: u8 },

    /// A byte buffer that is not exactly one descriptor long.
    #[error("a layer descriptor is exactly {expected} bytes; got {len}")]
    DescriptorLength { len: usize, expected: usize },

    /// A descriptor field that no [`LayerDescriptor`](crate::LayerDescriptor) can hold.
    #[error("descriptor field `{field}` = {value:#x}: expected {expected}")]
    DescriptorField {
        field: &'static str,
        value: u64,
        expected: String,
        /// The STATUS.ERR_CODE a device reports for this descriptor.
        code: ErrorCode,
    },

    /// A register access the register map does not allow: an offset that names no register (the
    /// slave answers SLVERR, which a Cortex-A53 takes as a fatal SError on a store), or a write to
    /// a read-only register or a read of a write-only one.
    #[error("{op} of register offset {offset:#x}: {why} (docs/regmap.md)")]
    RegisterAccess {
        op: &'static str,
        offset: u32,
        why: String,
    },

    /// A plane-group list whose length a descriptor cannot hold.
    #[error("{count} plane groups given; a descriptor holds 1..={max}")]
    PlaneGroupCount { count: usize, max: usize },
}

impl SpecError {
    /// The STATUS.ERR_CODE a device reports when this error stops a descriptor, if it is one.
    pub fn device_error_code(&self) -> Option<ErrorCode> {
        match self {
            SpecError::DescriptorField { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}
