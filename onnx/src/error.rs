//! The one error type of caq-onnx. Every variant says where: the file, the ONNX node (its name, or
//! op type and index when unnamed), or the graph-level field.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid ONNX protobuf (truncated or not an ONNX file): {0}")]
    Decode(#[from] prost::DecodeError),
    /// A problem with the model as a whole: opsets, graph inputs and outputs.
    #[error("{what}")]
    Model { what: String },
    /// A problem with one ONNX node; `node` is `'name'` or `#index` when the node is unnamed.
    #[error("node {node} ({op_type}): {what}")]
    Node {
        node: String,
        op_type: String,
        what: String,
    },
    /// The imported graph or the model to export fails caq's own checks.
    #[error("caq model: {0}")]
    Caq(#[from] caq_model::error::ModelError),
}

pub type Result<T> = std::result::Result<T, OnnxError>;

impl OnnxError {
    pub fn model(what: impl Into<String>) -> Self {
        OnnxError::Model { what: what.into() }
    }
}
