//! caq-onnx: ONNX import and export of caq float models ([`caq_model::graph::FloatModel`]).
//!
//! Import maps a float ONNX graph (opsets [`import::MIN_OPSET`]..=[`import::MAX_OPSET`]) onto
//! caq's operators, folding what caq expresses as flags or parameters (BatchNormalization and a
//! bias Add into the weights, Relu into the layer before it) and rejecting, with the node named,
//! what caq cannot express. Export writes the caq graph as a standard opset-13 ONNX model. The
//! wire format is a hand-written prost subset of `onnx.proto` ([`proto`]); no protoc, no ONNX
//! runtime. This crate knows nothing of quantization or hardware.

pub mod error;
pub mod export;
pub mod import;
pub mod proto;

pub use error::{OnnxError, Result};
pub use export::{export, export_file};
pub use import::{
    ImportReport, NodeMapping, import, import_bytes, import_bytes_with_report, import_with_report,
};
