//! The memory ports between the layer engine and the DMA engine (`caq_dma`): one definition of
//! their names, widths and directions for both ends.
//!
//! Protocol. Addresses are byte addresses, 8-byte aligned; a request's length is in 64-bit words
//! (≥ 1). Its data moves as whole bus beats: the beats from `addr` rounded down to the bus width up
//! to `addr + 8·words` rounded up, ⌈((addr mod B) + 8·words)/B⌉ of them for B bus bytes.
//! - Read: `rd_req_*` is a valid/ready request; the DMA engine takes the next request as soon as
//!   the previous one's bursts are all issued, so several may be in flight. Their beats come back
//!   in request order on `rd_valid/ready/data`, each with the RRESP of its beat (`rd_resp`).
//! - Write: `wr_req_*` the same; the request's beats follow on `wr_valid/ready/data/strb` (bytes
//!   outside the request carry zero strobes), requests' beats in request order. `wr_busy` is high
//!   while any accepted request has a beat or a response outstanding; `wr_err` holds the worst
//!   BRESP since the last `wr_err_clear` (and soft reset).
//!
//! The engine checks every request against the address window before it issues it, so the DMA
//! engine only sees in-window requests and knows nothing of layers.

use crate::emit::{Dir, ModuleBuilder};
use crate::error::Result;

/// Width of word counts on the memory ports.
pub const WORDS_BITS: u32 = 20;

/// Declares the clock, the reset and the control block's inputs (START, SOFT_RESET, DESC_ADDR,
/// DESC_COUNT) that the engine's top and its fetch stage share.
pub fn control_inputs(m: &mut ModuleBuilder, aw: u32) -> Result<()> {
    m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_group("control block");
    m.port_doc(
        Dir::Input,
        "start",
        1,
        "pulse: run DESC_COUNT descriptors from DESC_ADDR",
    )?;
    m.port_doc(
        Dir::Input,
        "soft_reset",
        1,
        "pulse: abandon the job, back to idle",
    )?;
    m.port(Dir::Input, "desc_addr", aw)?;
    m.port(Dir::Input, "desc_count", 16)?;
    Ok(())
}

/// Declares the job's status outputs (BUSY, the DONE and ERROR pulses, ERR_CODE, ERR_DESC) that
/// the engine's top and its fetch stage share.
pub fn status_outputs(m: &mut ModuleBuilder) -> Result<()> {
    m.port(Dir::Output, "busy", 1)?;
    m.port_doc(Dir::Output, "done", 1, "pulse: the list completed")?;
    m.port_doc(
        Dir::Output,
        "error",
        1,
        "pulse: the job stopped on an error",
    )?;
    m.port(Dir::Output, "err_code", 8)?;
    m.port_doc(
        Dir::Output,
        "err_desc",
        16,
        "index of the failing descriptor",
    )?;
    Ok(())
}

/// Which end of the memory ports a module is: the engine issues requests, the DMA engine serves
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Core,
    Dma,
}

/// Which of the two ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Read,
    Write,
    Both,
}

/// Declares the read and write ports on `m`, with the directions of `side`, for an address width
/// `aw` and a bus of `bus_bytes` bytes.
pub fn memory_ports(m: &mut ModuleBuilder, aw: u32, bus_bytes: u32, side: Side) -> Result<()> {
    some_memory_ports(m, aw, bus_bytes, side, Which::Both)
}

/// Declares the read port, the write port or both (see [`memory_ports`]).
pub fn some_memory_ports(
    m: &mut ModuleBuilder,
    aw: u32,
    bus_bytes: u32,
    side: Side,
    which: Which,
) -> Result<()> {
    use Dir::{Input as In, Output as Out};
    let bw = 8 * bus_bytes;
    // (name, width, direction at the engine, description)
    let read: [(&str, u32, Dir, &str); 8] = [
        ("rd_req_valid", 1, Out, ""),
        ("rd_req_ready", 1, In, ""),
        ("rd_req_addr", aw, Out, "byte address, 8-byte aligned"),
        ("rd_req_words", WORDS_BITS, Out, "64-bit words, at least 1"),
        ("rd_valid", 1, In, ""),
        ("rd_ready", 1, Out, ""),
        ("rd_data", bw, In, "a whole bus beat"),
        ("rd_resp", 2, In, "RRESP of the beat (2 SLVERR, 3 DECERR)"),
    ];
    let write: [(&str, u32, Dir, &str); 11] = [
        ("wr_req_valid", 1, Out, ""),
        ("wr_req_ready", 1, In, ""),
        ("wr_req_addr", aw, Out, "byte address, 8-byte aligned"),
        ("wr_req_words", WORDS_BITS, Out, "64-bit words, at least 1"),
        ("wr_valid", 1, Out, ""),
        ("wr_ready", 1, In, ""),
        ("wr_data", bw, Out, "a whole bus beat"),
        ("wr_strb", bus_bytes, Out, ""),
        (
            "wr_busy",
            1,
            In,
            "a request has beats or responses outstanding",
        ),
        ("wr_err", 2, In, "the worst BRESP since wr_err_clear"),
        ("wr_err_clear", 1, Out, "pulse: forget wr_err (at START)"),
    ];
    let (rd_group, wr_group) = match side {
        Side::Core => (
            "read port (to the DMA engine)",
            "write port (to the DMA engine)",
        ),
        Side::Dma => (
            "read port (from the layer engine)",
            "write port (from the layer engine)",
        ),
    };
    let groups = match which {
        Which::Read => vec![(rd_group, &read[..])],
        Which::Write => vec![(wr_group, &write[..])],
        Which::Both => vec![(rd_group, &read[..]), (wr_group, &write[..])],
    };
    for (group, ports) in groups {
        m.port_group(group);
        for &(name, width, at_core, doc) in ports {
            let dir = match (side, at_core) {
                (Side::Core, d) => d,
                (Side::Dma, In) => Out,
                (Side::Dma, Out) => In,
            };
            if doc.is_empty() {
                m.port(dir, name, width)?;
            } else {
                m.port_doc(dir, name, width, doc)?;
            }
        }
    }
    Ok(())
}

/// ⌈log2 n⌉ (0 for n ≤ 1): the index width of n things.
/// Verilog: the error code of a failing AXI response `resp` (RRESP or the worst BRESP, 2 bits
/// whose high bit is set): DECERR or SLVERR.
pub fn resp_error_code(resp: &str) -> String {
    use caq_spec::regmap::ErrorCode;
    format!(
        "{resp}[0] ? 8'd{} : 8'd{}",
        ErrorCode::AxiDecerr.as_u8(),
        ErrorCode::AxiSlverr.as_u8()
    )
}

pub fn clog2(n: u32) -> u32 {
    n.max(1).next_power_of_two().trailing_zeros()
}

/// Bit `i` of a `width`-bit vector `name`, written so that a one-bit vector is not indexed.
pub fn bit(name: &str, i: u32, width: u32) -> String {
    if width == 1 {
        name.to_owned()
    } else {
        format!("{name}[{i}]")
    }
}
