//! The one error type of caq-cpu. Every variant names the layer or input that was wrong and what
//! was allowed.

use caq_model::error::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The model itself, or a per-layer bit setting, failed caq-model's own checks.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("node {node} ('{name}'): {what}")]
    Node {
        node: usize,
        name: String,
        what: String,
    },
    #[error("layer '{layer}': {field} has shape {found}, the graph needs {expected}")]
    LayerShape {
        layer: String,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "layer '{layer}': the {bits}-bit codes are not the {full}-bit codes shifted by {shift}: {what}"
    )]
    Codes {
        layer: String,
        bits: u8,
        full: u8,
        shift: u8,
        what: String,
    },
    #[error(
        "layer '{layer}': input codes in [{min}, {max}] do not fit the 16-bit activation operand"
    )]
    ActivationRange { layer: String, min: i64, max: i64 },
    #[error(
        "layer '{layer}': a run of {len} products of {bits}-bit weights and codes up to {max_abs} can overflow a 32-bit lane (at most {limit} fit)"
    )]
    AccumulatorRange {
        layer: String,
        len: usize,
        bits: u8,
        max_abs: i64,
        limit: usize,
    },
    #[error("input: expected {expected} pixels ({what}), found {found}")]
    Input {
        what: String,
        expected: usize,
        found: usize,
    },
}

pub type Result<T> = std::result::Result<T, CpuError>;
