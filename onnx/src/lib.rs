//! caq-onnx: ONNX import (work in progress).
