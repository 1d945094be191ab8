//! [`SimError`]: the one error type of caq-sim. Every variant names the port or the register involved
//! and what was expected.

use std::path::PathBuf;

use crate::axi::{AxiOp, RegAddr, Resp};
#[cfg(feature = "verilator")]
use crate::axi_mem::{Channel, Rule};

/// Everything that can go wrong while driving a simulation model.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A job could not be laid out or did not complete.
    #[error("job: {0}")]
    Job(String),

    /// A value does not fit the port it was written to.
    #[error("port `{port}` ({width} bits{}): value {value} does not fit", if *.signed { ", signed" } else { "" })]
    PortValue {
        port: &'static str,
        width: u32,
        signed: bool,
        value: i128,
    },

    /// A wide port was given the wrong number of 32-bit words.
    #[error("port `{port}` ({width} bits) takes {expected} 32-bit words, got {got}")]
    PortWords {
        port: &'static str,
        width: u32,
        expected: usize,
        got: usize,
    },

    /// A register address does not fit the AXI4-Lite address port.
    #[error("AXI4-Lite {op} of {addr}: the address does not fit the {width}-bit address port")]
    Address {
        op: AxiOp,
        addr: RegAddr,
        width: u32,
    },

    /// A write strobe names byte lanes the 32-bit data bus does not have.
    #[error("AXI4-Lite write of {addr}: WSTRB 0b{strb:b} has bits above the 4 byte lanes")]
    Strobe { addr: RegAddr, strb: u8 },

    /// The slave did not complete a handshake in time.
    #[error("AXI4-Lite {op} of {addr}: no {waiting_for} within {cycles} cycles")]
    Timeout {
        op: AxiOp,
        addr: RegAddr,
        waiting_for: &'static str,
        cycles: u64,
    },

    /// The slave answered with an error response (or EXOKAY, which AXI4-Lite does not have).
    #[error("AXI4-Lite {op} of {addr}: the slave answered {resp}")]
    Response {
        op: AxiOp,
        addr: RegAddr,
        resp: Resp,
    },

    /// The slave broke an AXI4-Lite handshake rule.
    #[error("AXI4-Lite {op} of {addr}: protocol violation by the slave at cycle {cycle}: {rule}")]
    Protocol {
        op: AxiOp,
        addr: RegAddr,
        cycle: u64,
        rule: String,
    },

    /// The DMA master broke an AXI4 rule (checked by the memory model).
    #[cfg(feature = "verilator")]
    #[error("AXI4 master port: {rule} on {channel} at cycle {cycle}: {detail}")]
    AxiProtocol {
        channel: Channel,
        cycle: u64,
        rule: Rule,
        detail: String,
    },

    /// A backdoor memory access outside the simulated memory.
    #[error(
        "memory access of {len} bytes at {addr:#x} is outside the memory [{base:#x}, {end:#x})"
    )]
    Memory {
        addr: u64,
        len: u64,
        base: u64,
        end: u64,
    },

    /// A trace file could not be opened.
    #[error("trace {}: {reason}", .path.display())]
    Trace { path: PathBuf, reason: String },

    /// A port looked up by name is missing or of another kind.
    #[error("{model}: port `{port}`: {reason}")]
    Port {
        model: String,
        port: String,
        reason: String,
    },

    /// Verilator or the C++ compiler cannot be used.
    #[error("Verilator model build: {reason}")]
    Tool { reason: String },

    /// Building a Verilator model failed; the log has every command and its output.
    #[error("building the Verilator model of {model}: {tool} failed (log: {}):\n{tail}", .log.display())]
    Build {
        model: String,
        tool: String,
        log: std::path::PathBuf,
        tail: String,
    },

    /// A built model library could not be loaded.
    #[error("loading the Verilator model of {model} from {}: {reason}", .path.display())]
    Load {
        model: String,
        path: std::path::PathBuf,
        reason: String,
    },

    /// A file or directory of the model cache.
    #[error("{}: {reason}", .path.display())]
    Io { path: PathBuf, reason: String },

    /// A config the backend cannot model.
    #[error("config `{name}`: {reason}")]
    Config { name: String, reason: String },

    /// An error of the device backend a generic helper drove.
    #[error("device: {0}")]
    Device(Box<dyn std::error::Error + Send + Sync>),
}
