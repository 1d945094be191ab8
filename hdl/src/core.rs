//! `caq_core`: the layer engine. It fetches layer descriptors (docs/descriptor.md) and their
//! tables, activations and weight planes through a 64-bit word read port, streams plane-steps
//! into `caq_array`, drains the totals through `caq_requant`, and writes the output codes through
//! a word write port with byte strobes. The DMA engine (AXI4 master) sits behind those two ports;
//! the core never sees the bus width. Design: docs/architecture.md.
//!
//! Scope of this version: Dense layers (op 1) of any K up to the buffers' capacity, every plane
//! group layout, local quantization regions, ReLU, signed or unsigned outputs of 2..8 bits. A
//! Conv2d descriptor is reported as BAD_OPCODE until implicit im2col is generated.
//!
//! Memory port protocol (both ports): a request (`*_req_valid`/`*_req_ready`, 8-byte-aligned byte
//! address, word count ≥ 1) is followed by exactly that many words on the data channel
//! (`rd_valid`/`rd_ready`, `wr_valid`/`wr_ready`); a read word carries `rd_resp` (the AXI RRESP of
//! its beat); a write request ends with one `wr_resp_valid` (+ `wr_resp_resp`, the worst BRESP of
//! its bursts). One request per port is outstanding at a time. Every request's extent, rounded out
//! to whole bus beats, is checked against the address window [`win_base`, `win_limit`) before it is
//! issued: a request outside it is never issued, the job stops with OUT_OF_WINDOW.
//!
//! Per tile of R output channels (o0 = tile · R, n = min(R, out_c − o0) rows):
//! bias (⌈n/2⌉ words), requant (n words), region multipliers (⌈n·regions/4⌉ words, grouped
//! only), then for every active plane the plane's n rows (n·⌈K/64⌉ words, bundle layout), then
//! ⌈K/C⌉ chunks × P plane-steps of compute, R requantizations, and ⌈((o0 mod 8) + n)/8⌉ output
//! words. Tables are read for the n valid rows only, rounded up to whole 8-byte words.

use crate::array::{ACC_T_BITS, MULT_BITS};
use crate::emit::{Code, Dir, Expr, Interface, Module, ModuleBuilder};
use crate::error::{HdlError, Result};
use caq_spec::AccelConfig;
use caq_spec::descriptor::used_bits;
use caq_spec::regmap::ErrorCode;
use caq_spec::{Caps, CoreShape};

/// Largest plane count of a layer: 4 groups of up to 8 bits.
pub const MAX_PLANES: u32 = 32;
/// Width of word counts on the memory ports.
pub const WORDS_BITS: u32 = 20;

/// Which end of the word memory ports a module is: the core issues requests, the DMA engine
/// serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WordSide {
    Core,
    Dma,
}

/// Declares the word read and write ports (the protocol in this file's header) on `m`, with the
/// directions of `side`: one definition for both ends.
pub(crate) fn word_ports(m: &mut ModuleBuilder, aw: u32, side: WordSide) -> Result<()> {
    use Dir::{Input as In, Output as Out};
    // (name, width, direction at the core, description)
    let read: [(&str, u32, Dir, &str); 8] = [
        ("rd_req_valid", 1, Out, ""),
        ("rd_req_ready", 1, In, ""),
        ("rd_req_addr", aw, Out, "byte address, 8-byte aligned"),
        ("rd_req_words", WORDS_BITS, Out, ""),
        ("rd_valid", 1, In, ""),
        ("rd_ready", 1, Out, ""),
        ("rd_data", 64, In, ""),
        (
            "rd_resp",
            2,
            In,
            "RRESP of the word's beat (2 SLVERR, 3 DECERR)",
        ),
    ];
    let write: [(&str, u32, Dir, &str); 10] = [
        ("wr_req_valid", 1, Out, ""),
        ("wr_req_ready", 1, In, ""),
        ("wr_req_addr", aw, Out, "byte address, 8-byte aligned"),
        ("wr_req_words", WORDS_BITS, Out, ""),
        ("wr_valid", 1, Out, ""),
        ("wr_ready", 1, In, ""),
        ("wr_data", 64, Out, ""),
        ("wr_strb", 8, Out, ""),
        ("wr_resp_valid", 1, In, ""),
        (
            "wr_resp_resp",
            2,
            In,
            "the worst BRESP of the request's bursts",
        ),
    ];
    let (rd_group, wr_group) = match side {
        WordSide::Core => (
            "word read port (to the DMA engine)",
            "word write port (to the DMA engine)",
        ),
        WordSide::Dma => (
            "word read port (from caq_core)",
            "word write port (from caq_core)",
        ),
    };
    for (group, ports) in [(rd_group, &read[..]), (wr_group, &write[..])] {
        m.port_group(group);
        for &(name, width, at_core, doc) in ports {
            let dir = match (side, at_core) {
                (WordSide::Core, d) => d,
                (WordSide::Dma, In) => Out,
                (WordSide::Dma, Out) => In,
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

pub(crate) fn clog2(n: u32) -> u32 {
    n.max(1).next_power_of_two().trailing_zeros()
}

/// The `caq_core` module; `array_if` and `requant_if` are the interfaces of the instantiated
/// `caq_array` and `caq_requant`.
pub fn core(cfg: &AccelConfig, array_if: &Interface, requant_if: &Interface) -> Result<Module> {
    let s = CoreShape::of(cfg);
    let (r_n, c_n, aw) = (s.rows, s.cols, s.addr_bits);
    let lane = cfg.array.act_bits + 1;
    let wab = clog2(s.wdepth);
    let aab = clog2(s.adepth);
    let rab = clog2(s.max_regions);
    let rowb = clog2(r_n + 1);
    let cpw_log2 = clog2(s.chunks_per_word());
    let cpr_log2 = if s.group_size == 0 {
        0
    } else {
        clog2(s.group_size / c_n)
    };
    let mut m = ModuleBuilder::new("caq_core")?;
    m.doc(&[
        "Layer engine: descriptor fetch, buffer loads, plane-step sequencing, requantization,",
        "output writes. Dense layers in this version. Memory port protocol: see caq-hdl core.rs",
        "and docs/architecture.md.",
    ]);
    m.doc_line(format!(
        "R = {r_n} rows, C = {c_n} lanes; weight banks {r_n} x {} words; activation banks {} x {} words; \
         regions of {} (at most {} per layer).",
        s.wdepth, s.abanks, s.adepth, s.group_size, s.max_regions
    ));
    let clk = m.port(Dir::Input, "clk", 1)?;
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
    m.port_doc(
        Dir::Output,
        "perf_busy",
        1,
        "a plane-step entered the array",
    )?;
    m.port_doc(Dir::Output, "perf_stall", 1, "waiting on the memory ports")?;
    m.port(Dir::Output, "perf_plane_ops", 16)?;
    m.port(Dir::Output, "perf_bytes_rd", 16)?;
    m.port(Dir::Output, "perf_bytes_wr", 16)?;
    word_ports(&mut m, aw, WordSide::Core)?;
    m.port_group("address window (from WIN_BASE / WIN_LIMIT, saturated to 2^addr_width)");
    m.port(Dir::Input, "win_base", aw + 1)?;
    m.port(Dir::Input, "win_limit", aw + 1)?;

    // ------------------------------------------------------------------ state
    let states = [
        "IDLE",
        "DESC_REQ",
        "DESC_DATA",
        "CHECK",
        "PLAN",
        "ACT_REQ",
        "ACT_DATA",
        "BIAS_REQ",
        "BIAS_DATA",
        "RQ_REQ",
        "RQ_DATA",
        "GM_REQ",
        "GM_DATA",
        "W_REQ",
        "W_DATA",
        "COMPUTE",
        "WAIT_ACC",
        "DRAIN",
        "OUT_REQ",
        "OUT_FILL",
        "OUT_DATA",
        "OUT_RESP",
        "NEXT",
        "FAIL",
        "FM_REQ",
        "FM_DATA",
        "GINIT",
        "GATHER",
        "GFLUSH",
        "PIX_NEXT",
    ];
    m.section("states");
    for (i, st) in states.iter().enumerate() {
        m.localparam(&format!("S_{st}"), Expr::lit(5, i as u64), None)?;
    }
    m.reg("state_q", 5, None)?;

    m.section("descriptor");
    m.memory("desc_q", 32, 32, "the fetched descriptor, 32 words")?;
    descriptor_checks(&mut m, cfg, &s)?;

    m.section("job, tile and load counters");
    for (name, w, c) in [
        ("desc_base_q", aw, "address of the current descriptor"),
        ("desc_idx_q", 16, "its index in the list"),
        ("desc_count_q", 16, ""),
        ("wpr_q", 16, "words per plane row"),
        ("planes_q", 6, "P"),
        ("nchunks_q", 16, "ceil(K / C)"),
        ("nwords_act_q", 16, "ceil(K / 8)"),
        ("nregions_q", 16, "regions per row"),
        (
            "plane_stride_q",
            aw,
            "out_c * wpr * 8: bytes from one plane to the next",
        ),
        ("o0_q", 16, "first output channel of the tile"),
        ("nrows_q", rowb, "valid rows of the tile"),
        ("tile_woff_q", aw, "o0 * wpr * 8"),
        ("tile_gmoff_q", aw, "o0 * regions * 2"),
        ("cnt_q", WORDS_BITS, "words received in the current load"),
        ("words_q", WORDS_BITS, "words requested by the current load"),
        ("sub_q", 2, "element within a table word"),
        ("row_q", rowb, "row of the current load or drain"),
        ("col_q", 16, "word within a row, or region within a row"),
        ("g_q", 2, "plane group being loaded or planned"),
        ("p_q", 4, "plane within the group"),
        ("q_q", 6, "active plane index"),
        (
            "wq_base_q",
            wab + 1,
            "q * wpr: first weight-bank entry of plane q",
        ),
        ("wl_addr_q", aw, "address of the plane being loaded"),
        (
            "nwords_fm_q",
            WORDS_BITS,
            "Conv2d: ceil(in_c * in_h * in_w / 8)",
        ),
        (
            "hw_q",
            32,
            "Conv2d: in_h * in_w, bytes from one input channel to the next",
        ),
        ("ohw_q", 16, "Conv2d: out_h * out_w, output pixels"),
        ("sw_q", 32, "Conv2d: stride * in_w"),
        (
            "pix_q",
            16,
            "Conv2d: output pixel of the tile being computed (0 for Dense)",
        ),
        ("ox_q", 16, ""),
        ("oy_q", 16, ""),
        (
            "ix0_q",
            18,
            "pixel origin ox * stride - pad (two's complement)",
        ),
        ("iy0_q", 18, "oy * stride - pad"),
        ("pixrow_q", 32, "iy0 * in_w (two's complement)"),
        ("gr_q", 16, "gather: patch row (c, ky) being fetched"),
        ("grows_q", 16, "Conv2d: in_c * kernel_h, patch rows"),
        ("gfill_q", 3, "gather: patch bytes waiting in asm_q"),
        ("gwq_q", 16, "gather: next K-vector word"),
        ("gky_q", 3, ""),
        ("gcbase_q", 32, "gather: c * in_h * in_w + iy0 * in_w"),
        ("grow_q", 32, "gather: gcbase + ky * in_w"),
        (
            "tile_oaddr_q",
            aw,
            "first output byte of the tile: out + o0 (Dense), out + o0 * ohw (Conv2d)",
        ),
        ("run_q", rowb, "output run (one per row for Conv2d)"),
        ("run_addr_q", aw, "first byte of the run"),
        ("wo_q", WORDS_BITS, "output word of the run"),
        ("fl_q", 4, "byte lane being filled (8: word complete)"),
        ("err_code_q", 8, ""),
        (
            "pending_q",
            WORDS_BITS,
            "read words still to drain after an error",
        ),
    ] {
        m.reg(name, w, if c.is_empty() { None } else { Some(c) })?;
    }
    m.memory("plane_shift_q", 3, MAX_PLANES, "plane q's weight shift")?;
    m.memory(
        "plane_neg_q",
        1,
        MAX_PLANES,
        "plane q is its group's sign plane",
    )?;
    m.memory("bias_q", 32, r_n, "per-row bias of the tile")?;
    m.memory("rqm_q", 32, r_n, "per-row requant multiplier")?;
    m.memory("rqs_q", 6, r_n, "per-row requant shift")?;
    m.memory(
        "stage_mem",
        8,
        r_n * s.stage_bytes,
        "output staging: row r, pixel p at r * smax + p",
    )?;
    m.reg("stage_rd_q", 8, None)?;
    for b in 0..8 {
        m.memory(
            &format!("fm{b}_mem"),
            8,
            (s.fm_bytes / 8),
            "Conv2d input feature map (CHW bytes): byte lane b of word w at w",
        )?;
        m.reg(&format!("fm{b}_rd_q"), 8, None)?;
    }
    if s.group_size != 0 {
        for r in 0..r_n {
            m.memory(
                &format!("gm{r}_mem"),
                MULT_BITS,
                s.max_regions,
                "row r's region multipliers",
            )?;
        }
        m.reg("gm_rd_q", r_n * MULT_BITS, None)?;
    }

    m.section("buffers (inferred block RAM: one write port, one registered read port)");
    for b in 0..s.abanks {
        m.memory(
            &format!("act{b}_mem"),
            64,
            s.adepth,
            "activations: word w in bank w mod banks",
        )?;
        m.reg(&format!("act{b}_rd_q"), 64, None)?;
    }
    for r in 0..r_n {
        m.memory(
            &format!("w{r}_mem"),
            64,
            s.wdepth,
            "row r's planes: entry q*wpr + word",
        )?;
        m.reg(&format!("w{r}_rd_q"), 64, None)?;
    }

    // ------------------------------------------------------------------ handshakes
    m.section("memory port outputs");
    let rd_req_states = [
        "DESC_REQ", "FM_REQ", "ACT_REQ", "BIAS_REQ", "RQ_REQ", "GM_REQ", "W_REQ",
    ];
    let rd_data_states = [
        "DESC_DATA",
        "ACT_DATA",
        "FM_DATA",
        "BIAS_DATA",
        "RQ_DATA",
        "GM_DATA",
        "W_DATA",
    ];
    let in_state = |sts: &[&str]| {
        sts.iter()
            .map(|st| format!("state_q == S_{st}"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    m.wire_assign(
        "rd_req_fire",
        Expr::raw("rd_req_valid && rd_req_ready", 1),
        None,
    )?;
    m.wire_assign("rd_fire", Expr::raw("rd_valid && rd_ready", 1), None)?;
    m.wire_assign(
        "wr_req_fire",
        Expr::raw("wr_req_valid && wr_req_ready", 1),
        None,
    )?;
    m.wire_assign("wr_fire", Expr::raw("wr_valid && wr_ready", 1), None)?;
    m.wire_assign("in_rd_data", Expr::raw(in_state(&rd_data_states), 1), None)?;
    m.wire_assign(
        "nrows_w",
        Expr::raw(format!("{{{}'d0, nrows_q}}", WORDS_BITS - rowb), WORDS_BITS),
        Some("tile rows, widened for word counts"),
    )?;
    m.reg("rd_req_addr_d", aw, None)?;
    m.reg("rd_req_words_d", WORDS_BITS, None)?;
    let mut req = Code::new();
    req.comment("Address and length of the read the current state asks for.");
    req.set("rd_req_addr_d", format!("{aw}'d0"));
    req.set("rd_req_words_d", format!("{WORDS_BITS}'d0"));
    req.case_block("case (state_q)", |c| {
        c.block("S_DESC_REQ:", |c| {
            c.set("rd_req_addr_d", "desc_base_q");
            c.set("rd_req_words_d", format!("{WORDS_BITS}'d16"));
        });
        c.block("S_FM_REQ:", |c| {
            c.set("rd_req_addr_d", format!("d_in_addr[{}:0]", aw - 1));
            c.set("rd_req_words_d", "nwords_fm_q");
        });
        c.block("S_ACT_REQ:", |c| {
            c.set("rd_req_addr_d", format!("d_in_addr[{}:0]", aw - 1));
            c.set(
                "rd_req_words_d",
                format!("{{{}'d0, nwords_act_q}}", WORDS_BITS - 16),
            );
        });
        c.block("S_BIAS_REQ:", |c| {
            c.set(
                "rd_req_addr_d",
                format!("d_bias_addr[{}:0] + {{{}'d0, o0_q, 2'd0}}", aw - 1, aw - 18),
            );
            c.comment("two i32 per word");
            c.set(
                "rd_req_words_d",
                format!("(nrows_w + {WORDS_BITS}'d1) >> 1"),
            );
        });
        c.block("S_RQ_REQ:", |c| {
            c.set(
                "rd_req_addr_d",
                format!("d_rq_addr[{}:0] + {{{}'d0, o0_q, 3'd0}}", aw - 1, aw - 19),
            );
            c.set("rd_req_words_d", "nrows_w");
        });
        c.block("S_GM_REQ:", |c| {
            c.set(
                "rd_req_addr_d",
                format!("d_gm_addr[{}:0] + tile_gmoff_q", aw - 1),
            );
            c.comment("four u16 multipliers per word");
            c.set(
                "rd_req_words_d",
                format!(
                    "(nrows_w * {{{}'d0, nregions_q}} + {WORDS_BITS}'d3) >> 2",
                    WORDS_BITS - 16
                ),
            );
        });
        c.block("S_W_REQ:", |c| {
            c.set("rd_req_addr_d", "wl_addr_q");
            c.set(
                "rd_req_words_d",
                format!("nrows_w * {{{}'d0, wpr_q}}", WORDS_BITS - 16),
            );
        });
        c.line("default: ;");
    });
    m.always_comb(req);
    window_check(&mut m, cfg, "rd", "rd_req_addr_d", "rd_req_words_d")?;
    m.assign_raw(
        "rd_req_valid",
        format!("({}) && rd_in_win", in_state(&rd_req_states)),
    )?;
    m.assign_raw("rd_req_addr", "rd_req_addr_d")?;
    m.assign_raw("rd_req_words", "rd_req_words_d")?;
    m.wire_assign(
        "gm_last",
        Expr::raw(
            format!("row_q == nrows_q - {rowb}'d1 && col_q == nregions_q - 16'd1"),
            1,
        ),
        Some("the tile's last region multiplier"),
    )?;
    m.comment(&[
        "Region multiplier words (four entries) are consumed one entry per cycle (sub_q); every",
        "other load takes a word per cycle. After an error the rest of the request is drained.",
    ]);
    m.assign_raw(
        "rd_ready",
        format!(
            "(state_q == S_FAIL && pending_q != {WORDS_BITS}'d0) || \
             (state_q == S_GM_DATA && (sub_q == 2'd3 || gm_last)) || \
             state_q == S_DESC_DATA || state_q == S_ACT_DATA || state_q == S_FM_DATA || state_q == S_BIAS_DATA || \
             state_q == S_RQ_DATA || state_q == S_W_DATA"
        ),
    )?;
    core_rest(
        &mut m, cfg, &s, &clk, array_if, requant_if, lane, wab, aab, rab, rowb, cpw_log2, cpr_log2,
    )?;
    Ok(m.finish())
}

/// The descriptor's fields as wires and one wire per check of `check_fetched`
/// (docs/descriptor.md, in order) plus the device's capacity check; `check_code` is the first
/// failing check's error code (0: the descriptor runs).
fn descriptor_checks(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape) -> Result<()> {
    let aw = s.addr_bits;
    let caps = Caps::from_config(cfg).map_err(|e| HdlError::Unsupported {
        config: cfg.name.clone(),
        what: e.to_string(),
    })?;
    let dfield = |word: u32, msb: u32, lsb: u32| format!("desc_q[{word}][{msb}:{lsb}]");
    let wires: Vec<(&str, String, u32)> = vec![
        ("d_op", dfield(0, 7, 0), 8),
        ("d_relu", "desc_q[0][8]".into(), 1),
        ("d_in_signed", "desc_q[0][9]".into(), 1),
        ("d_out_signed", "desc_q[0][10]".into(), 1),
        ("d_grouped", "desc_q[0][11]".into(), 1),
        ("d_last", "desc_q[0][12]".into(), 1),
        ("d_ngroups", dfield(0, 23, 16), 8),
        ("d_active", dfield(0, 31, 24), 8),
        ("d_in_bits", dfield(1, 3, 0), 4),
        ("d_out_bits", dfield(1, 7, 4), 4),
        ("d_group_size", dfield(1, 31, 16), 16),
        ("d_in_c", dfield(2, 15, 0), 16),
        ("d_in_h", dfield(2, 31, 16), 16),
        ("d_in_w", dfield(3, 15, 0), 16),
        ("d_out_c", dfield(3, 31, 16), 16),
        ("d_out_h", dfield(4, 15, 0), 16),
        ("d_out_w", dfield(4, 31, 16), 16),
        ("d_kh", dfield(5, 7, 0), 8),
        ("d_kw", dfield(5, 15, 8), 8),
        ("d_stride", dfield(5, 23, 16), 8),
        ("d_pad", dfield(5, 31, 24), 8),
        ("d_pg0_bits", dfield(6, 3, 0), 4),
        ("d_pg0_shift8", dfield(6, 15, 8), 8),
        ("d_pg1_bits", dfield(6, 19, 16), 4),
        ("d_pg1_shift8", dfield(6, 31, 24), 8),
        ("d_pg2_bits", dfield(7, 3, 0), 4),
        ("d_pg2_shift8", dfield(7, 15, 8), 8),
        ("d_pg3_bits", dfield(7, 19, 16), 4),
        ("d_pg3_shift8", dfield(7, 31, 24), 8),
    ];
    for (name, text, w) in &wires {
        m.wire_assign(name, Expr::raw(text.clone(), *w), None)?;
    }
    for g in 0..4 {
        m.wire_assign(
            &format!("d_pg{g}_shift"),
            Expr::raw(format!("d_pg{g}_shift8[2:0]"), 3),
            Some("the shift as used (checked <= 7)"),
        )?;
    }
    m.wire_assign("d_conv", Expr::raw("d_op == 8'd2", 1), None)?;
    // 64-bit addresses, cut to the port width (the upper bits must be zero: checked).
    let addrs = [
        ("d_in_addr", 8),
        ("d_out_addr", 10),
        ("d_bias_addr", 12),
        ("d_rq_addr", 14),
        ("d_gm_addr", 16),
        ("d_w0_addr", 18),
        ("d_w1_addr", 20),
        ("d_w2_addr", 22),
        ("d_w3_addr", 24),
    ];
    for (name, word) in addrs {
        m.wire_assign(
            name,
            Expr::raw(format!("{{desc_q[{}], desc_q[{word}]}}", word + 1), 64),
            None,
        )?;
    }
    m.wire_assign(
        "d_k_full",
        Expr::raw(
            "{16'd0, d_in_c} * {24'd0, d_conv ? d_kh : 8'd1} * {24'd0, d_conv ? d_kw : 8'd1}",
            32,
        ),
        Some("K = in_c (Dense) or in_c * kh * kw (Conv2d)"),
    )?;
    m.wire_assign(
        "d_k",
        Expr::raw("d_k_full[15:0]", 16),
        Some("K as the datapath counts it (the capacity check keeps K < 2^16)"),
    )?;
    m.wire_assign(
        "d_wpr",
        Expr::raw("{6'd0, d_k[15:6]} + {15'd0, d_k[5:0] != 6'd0}", 16),
        Some("64-bit words per plane row: ceil(K/64)"),
    )?;
    m.wire_assign(
        "d_planes",
        Expr::raw(
            "{2'd0, d_pg0_bits} + ((d_active > 8'd1) ? {2'd0, d_pg1_bits} : 6'd0) + \
             ((d_active > 8'd2) ? {2'd0, d_pg2_bits} : 6'd0) + ((d_active > 8'd3) ? {2'd0, d_pg3_bits} : 6'd0)",
            6,
        ),
        Some("active planes P"),
    )?;
    m.comment(&[
        "One wire per check of caq_spec::descriptor::check_fetched (docs/descriptor.md, in that",
        "order); CHECK reports the first failing one.",
    ]);
    let used = used_bits();
    let code = |e: ErrorCode| format!("8'd{}", e.as_u8());
    let stored = |g: u32| format!("d_ngroups > 8'd{g}");
    let bits_in = |f: &str, lo: u32, hi: u32| format!("({f} >= 4'd{lo} && {f} <= 4'd{hi})");
    // 1-5: decode
    m.wire_assign("c_op", Expr::raw("d_op == 8'd1 || d_op == 8'd2", 1), None)?;
    m.wire_assign(
        "c_ngroups",
        Expr::raw("d_ngroups >= 8'd1 && d_ngroups <= 8'd4", 1),
        None,
    )?;
    let mut widths = vec![bits_in("d_in_bits", 1, 8), bits_in("d_out_bits", 1, 8)];
    for g in 0..4 {
        widths.push(format!(
            "(!({}) || {})",
            stored(g),
            bits_in(&format!("d_pg{g}_bits"), 1, 8)
        ));
    }
    m.wire_assign("c_widths", Expr::raw(widths.join(" && "), 1), None)?;
    let slots = (1..4)
        .map(|g| {
            format!(
                "({} || (d_pg{g}_bits == 4'd0 && d_pg{g}_shift8 == 8'd0 && d_w{g}_addr == 64'd0))",
                stored(g)
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    m.wire_assign("c_slots", Expr::raw(slots, 1), None)?;
    let reserved = used
        .iter()
        .enumerate()
        .filter(|(_, u)| **u != u32::MAX)
        .map(|(i, u)| format!("((desc_q[{i}] & 32'h{:08x}) == 32'd0)", !u))
        .collect::<Vec<_>>()
        .join(" && ");
    m.wire_assign("c_reserved", Expr::raw(reserved, 1), None)?;
    // 6: bits against CAPS
    let mask = u64::from(caps.weight_bits_mask());
    m.wire_assign(
        "bits_mask",
        Expr::lit(8, mask),
        Some("supported weight bit-widths"),
    )?;
    let act = caps.act_bits().get();
    let mut caps_bits = vec![
        bits_in("d_in_bits", 2, u32::from(act)),
        bits_in("d_out_bits", 2, u32::from(act)),
    ];
    for g in 0..4 {
        caps_bits.push(format!(
            "(!({}) || bits_mask[d_pg{g}_bits[2:0] - 3'd1])",
            stored(g)
        ));
    }
    m.wire_assign("c_caps_bits", Expr::raw(caps_bits.join(" && "), 1), None)?;
    // 7: shape
    let dim = caps.max_dim();
    let dims = [
        "d_in_c", "d_in_h", "d_in_w", "d_out_c", "d_out_h", "d_out_w",
    ]
    .iter()
    .map(|d| format!("({d} != 16'd0 && {{16'd0, {d}}} <= 32'd{dim})"))
    .collect::<Vec<_>>()
    .join(" && ");
    m.wire_assign("c_dims", Expr::raw(dims, 1), None)?;
    m.wire_assign(
        "c_kernel",
        Expr::raw(
            "d_kh >= 8'd1 && d_kh <= 8'd7 && d_kw >= 8'd1 && d_kw <= 8'd7 && d_stride >= 8'd1 && \
             d_stride <= 8'd2 && d_pad <= 8'd3 && {d_pad[6:0], 1'b0} <= ((d_kh < d_kw) ? d_kh : d_kw)",
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "c_dense_ones",
        Expr::raw(
            "d_in_h == 16'd1 && d_in_w == 16'd1 && d_out_h == 16'd1 && d_out_w == 16'd1 && \
             d_kh == 8'd1 && d_kw == 8'd1 && d_stride == 8'd1 && d_pad == 8'd0",
            1,
        ),
        None,
    )?;
    for (ax, inp, k, out) in [
        ("h", "d_in_h", "d_kh", "d_out_h"),
        ("w", "d_in_w", "d_kw", "d_out_w"),
    ] {
        m.wire_assign(
            &format!("padded_{ax}"),
            Expr::raw(format!("{{2'd0, {inp}}} + {{9'd0, d_pad, 1'b0}}"), 18),
            Some("in + 2 * pad"),
        )?;
        m.wire_assign(
            &format!("c_out_{ax}"),
            Expr::raw(
                format!(
                    "padded_{ax} >= {{10'd0, {k}}} && \
                     (((padded_{ax} - {{10'd0, {k}}}) >> (d_stride == 8'd2 ? 1 : 0)) + 18'd1) == {{2'd0, {out}}}"
                ),
                1,
            ),
            Some("out = (in + 2 pad - kernel) / stride + 1"),
        )?;
    }
    m.wire_assign(
        "c_shape",
        Expr::raw(
            format!(
                "c_dims && c_kernel && (d_conv ? (c_out_h && c_out_w) : c_dense_ones) && \
                 d_k_full <= 32'd{}",
                caps.max_k()
            ),
            1,
        ),
        None,
    )?;
    // 8: groups against CAPS
    let wmax = caps.max_weight_bits().get();
    let mut groups = vec![
        format!("d_ngroups <= 8'd{}", caps.max_plane_groups()),
        "d_active >= 8'd1 && d_active <= d_ngroups".to_string(),
    ];
    for g in 0..4 {
        groups.push(format!(
            "(!({st}) || (d_pg{g}_shift8 <= 8'd7 && {{4'd0, d_pg{g}_bits}} + d_pg{g}_shift8 <= 8'd{wmax}))",
            st = stored(g)
        ));
    }
    m.wire_assign("c_groups", Expr::raw(groups.join(" && "), 1), None)?;
    // 9: regions
    m.wire_assign(
        "c_region",
        Expr::raw(
            if s.group_size == 0 {
                "!d_grouped && d_group_size == 16'd0".to_string()
            } else {
                format!(
                    "d_grouped ? (d_group_size == 16'd{}) : (d_group_size == 16'd0)",
                    s.group_size
                )
            },
            1,
        ),
        None,
    )?;
    // 10, 11: the addresses the run uses: aligned, in the address space and the window
    let used_addr = |name: &str| match name {
        "d_gm_addr" => "d_grouped".to_string(),
        "d_w1_addr" => "d_active > 8'd1".to_string(),
        "d_w2_addr" => "d_active > 8'd2".to_string(),
        "d_w3_addr" => "d_active > 8'd3".to_string(),
        _ => "1'b1".to_string(),
    };
    let bus_log2 = clog2(cfg.bus_bytes());
    let aligned = addrs
        .iter()
        .map(|(n, _)| {
            format!(
                "(!({}) || {n}[{}:0] == {bus_log2}'d0)",
                used_addr(n),
                bus_log2 - 1
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    m.wire_assign("c_aligned", Expr::raw(aligned, 1), None)?;
    let regions = if s.group_size == 0 {
        "64'd1".to_string()
    } else {
        format!(
            "d_grouped ? (({{32'd0, d_k_full}} + 64'd{}) >> {}) : 64'd1",
            s.group_size - 1,
            clog2(s.group_size)
        )
    };
    m.wire_assign(
        "d_regions64",
        Expr::raw(regions, 64),
        Some("regions per row, for the table length"),
    )?;
    let table_len = |name: &str| match name {
        "d_bias_addr" => "({48'd0, d_out_c} << 2)".to_string(),
        "d_rq_addr" => "({48'd0, d_out_c} << 3)".to_string(),
        "d_gm_addr" => "(({48'd0, d_out_c} * d_regions64) << 1)".to_string(),
        _ => "64'd1".to_string(),
    };
    let window = addrs
        .iter()
        .map(|(n, _)| {
            let len = table_len(n);
            let len = if len == "64'd1" { len } else { format!("(({len} == 64'd0) ? 64'd1 : {len})") };
            format!(
                "(!({u}) || ({n}[63:{aw}] == {z}'d0 && {{{zw}'d0, {n}[{a}:0]}} >= {{{zb}'d0, win_base}} && \
                 {{{zw}'d0, {n}[{a}:0]}} + {len} <= {{{zb}'d0, win_limit}}))",
                u = used_addr(n),
                z = 64 - aw,
                zw = 64 - aw,
                zb = 63 - aw,
                a = aw - 1
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    m.wire_assign("c_window", Expr::raw(window, 1), None)?;
    // 12: the LAST flag on the final descriptor only
    m.wire_assign(
        "c_position",
        Expr::raw("d_last == (desc_idx_q + 16'd1 == desc_count_q)", 1),
        None,
    )?;
    // 13: the device's buffers (CoreShape::check_capacity)
    m.wire_assign(
        "d_fmap",
        Expr::raw("{16'd0, d_in_c} * {16'd0, d_in_h} * {16'd0, d_in_w}", 48),
        Some("Conv2d input bytes"),
    )?;
    m.wire_assign(
        "d_ohw",
        Expr::raw("{16'd0, d_out_h} * {16'd0, d_out_w}", 32),
        Some("Conv2d output pixels"),
    )?;
    let acap = (u64::from(s.adepth) * u64::from(s.cols)).min(0xffff);
    m.wire_assign(
        "c_capacity",
        Expr::raw(
            format!(
                "({{4'd0, d_wpr}} * {{14'd0, d_planes}}) <= 20'd{wd} && d_k_full <= 32'd{acap} && \
                 (!d_conv || (d_fmap <= 48'd{fb} && d_ohw <= 32'd{smax}))",
                wd = s.wdepth,
                fb = 8 * u64::from((s.fm_bytes / 8)),
                smax = s.stage_bytes
            ),
            1,
        ),
        None,
    )?;
    let chain = [
        ("c_op", ErrorCode::BadOpcode),
        ("c_ngroups", ErrorCode::BadGroups),
        ("c_widths", ErrorCode::BadBits),
        ("c_slots", ErrorCode::BadGroups),
        ("c_reserved", ErrorCode::Reserved),
        ("c_caps_bits", ErrorCode::BadBits),
        ("c_shape", ErrorCode::BadShape),
        ("c_groups", ErrorCode::BadGroups),
        ("c_region", ErrorCode::BadRegion),
        ("c_aligned", ErrorCode::Misaligned),
        ("c_window", ErrorCode::OutOfWindow),
        ("c_position", ErrorCode::DescCount),
        ("c_capacity", ErrorCode::BadShape),
    ];
    let text = chain
        .iter()
        .map(|(w, e)| format!("!{w} ? {} : ", code(*e)))
        .collect::<String>()
        + "8'd0";
    m.wire_assign("check_code", Expr::raw(text, 8), None)?;
    Ok(())
}

/// Wires `{p}_in_win`: the request at `addr` of `words` 64-bit words, rounded out to whole bus
/// beats (the bursts the DMA engine will issue), lies in [win_base, win_limit).
fn window_check(
    m: &mut ModuleBuilder,
    cfg: &AccelConfig,
    p: &str,
    addr: &str,
    words: &str,
) -> Result<()> {
    let aw = cfg.axi.addr_width;
    let beat_mask = u64::from(cfg.bus_bytes() - 1);
    let w = aw + 2;
    m.wire_assign(
        &format!("{p}_lo"),
        Expr::raw(format!("{{2'd0, {addr}}} & ~{w}'d{beat_mask}"), w),
        Some("first byte of the first beat"),
    )?;
    m.wire_assign(
        &format!("{p}_hi"),
        Expr::raw(
            format!(
                "({{2'd0, {addr}}} + {{{z}'d0, {words}, 3'd0}} + {w}'d{beat_mask}) & ~{w}'d{beat_mask}",
                z = w - WORDS_BITS - 3
            ),
            w,
        ),
        Some("first byte past the last beat"),
    )?;
    m.wire_assign(
        &format!("{p}_in_win"),
        Expr::raw(
            format!("{p}_lo >= {{1'b0, win_base}} && {p}_hi <= {{1'b0, win_limit}}"),
            1,
        ),
        None,
    )?;
    Ok(())
}

/// The FSM, the buffers, the plane-step pipeline, the array and requant instances and the
/// output path of `caq_core`.
#[allow(clippy::too_many_arguments)]
fn core_rest(
    m: &mut ModuleBuilder,
    cfg: &AccelConfig,
    s: &CoreShape,
    clk: &crate::emit::Sig,
    array_if: &Interface,
    requant_if: &Interface,
    lane: u32,
    wab: u32,
    aab: u32,
    rab: u32,
    rowb: u32,
    cpw_log2: u32,
    cpr_log2: u32,
) -> Result<()> {
    let (r_n, c_n, aw) = (s.rows, s.cols, s.addr_bits);
    let wb = WORDS_BITS;
    let rib = clog2(r_n); // index bits of the per-row tables
    let abank_log2 = clog2(s.abanks);
    let code = |e: ErrorCode| format!("8'd{}", e.as_u8());
    let grouped = s.group_size != 0;
    let bus_log2 = clog2(cfg.bus_bytes());

    m.section("signals of the sub-blocks, declared before the sequencer uses them");
    let arr_acc_valid = m.wire("arr_acc_valid", 1, None)?;
    let arr_acc_t = m.wire("arr_acc_t", r_n * ACC_T_BITS, None)?;
    let rq_out_valid = m.wire("rq_out_valid", 1, None)?;
    let rq_out_code = m.wire("rq_out_code", 8, None)?;
    m.lint_off(
        "UNUSEDSIGNAL",
        "the requant tag is 16 bits wide; the core's tags are row indices",
    );
    let rq_out_tag_w = m.wire("rq_out_tag_w", 16, None)?;
    m.lint_on("UNUSEDSIGNAL");
    m.wire_assign(
        "rq_out_tag",
        Expr::raw(format!("rq_out_tag_w[{}:0]", rib - 1), rib),
        None,
    )?;
    m.wire_assign(
        "row_i",
        Expr::raw(format!("row_q[{}:0]", rib - 1), rib),
        Some("row_q as a table index"),
    )?;
    m.wire_assign(
        "drain_lsb",
        Expr::raw("{1'b0, row_i, 5'd0} + {2'b0, row_i, 4'd0}", rib + 6),
        Some("row * 48: the row's total in arr_acc_t"),
    )?;
    m.wire_assign(
        "run_len",
        Expr::raw(
            format!("d_conv ? ohw_q : {{{}'d0, nrows_q}}", 16 - rowb),
            16,
        ),
        Some("bytes of an output run: a row's pixels (Conv2d) or the tile's rows (Dense)"),
    )?;
    m.wire_assign(
        "out_off",
        Expr::raw("run_addr_q[2:0]", 3),
        Some("byte lane of the run's first byte"),
    )?;
    m.wire_assign(
        "out_words",
        Expr::raw(
            format!(
                "({{{}'d0, out_off}} + {{{}'d0, run_len}} + {wb}'d7) >> 3",
                wb - 3,
                wb - 16
            ),
            wb,
        ),
        None,
    )?;
    m.wire_assign(
        "stride_full",
        Expr::raw(
            format!(
                "({{{z}'d0, d_out_c}} * {{{z}'d0, d_wpr}}) << 3",
                z = aw - 16
            ),
            aw,
        ),
        Some("out_c * wpr * 8: bytes from one plane to the next"),
    )?;
    if grouped {
        m.wire_assign(
            "gm_entry",
            Expr::raw(
                "(sub_q == 2'd0) ? rd_data[8:0] : (sub_q == 2'd1) ? rd_data[24:16] : (sub_q == 2'd2) ? rd_data[40:32] : rd_data[56:48]",
                MULT_BITS,
            ),
            Some("the u16 multiplier sub_q of the word (1..256 fits 9 bits)"),
        )?;
    }

    m.section("per-group plane parameters, selected by g_q");
    m.wire_assign(
        "g_bits",
        Expr::raw(
            "(g_q == 2'd0) ? d_pg0_bits : (g_q == 2'd1) ? d_pg1_bits : (g_q == 2'd2) ? d_pg2_bits : d_pg3_bits",
            4,
        ),
        None,
    )?;
    m.wire_assign(
        "g_shift",
        Expr::raw(
            "(g_q == 2'd0) ? d_pg0_shift : (g_q == 2'd1) ? d_pg1_shift : (g_q == 2'd2) ? d_pg2_shift : d_pg3_shift",
            3,
        ),
        None,
    )?;
    m.wire_assign(
        "g_next_addr",
        Expr::raw(
            format!(
                "((g_q == 2'd0) ? d_w1_addr[{a}:0] : (g_q == 2'd1) ? d_w2_addr[{a}:0] : d_w3_addr[{a}:0]) + tile_woff_q",
                a = aw - 1
            ),
            aw,
        ),
        Some("first plane of the next group, this tile"),
    )?;
    m.wire_assign(
        "last_plane_of_group",
        Expr::raw("p_q == g_bits - 4'd1", 1),
        None,
    )?;
    m.wire_assign("last_plane", Expr::raw("q_q == planes_q - 6'd1", 1), None)?;
    m.wire_assign(
        "rows_left",
        Expr::raw("d_out_c - o0_q - 16'd".to_string() + &r_n.to_string(), 16),
        Some("channels after the next tile starts (valid when o0 + R < out_c)"),
    )?;

    m.section("sequencer");
    m.reg("ck_q", 16, Some("compute: chunk"))?;
    m.reg("cq_q", 6, Some("compute: active plane"))?;
    m.reg("cw_base_q", wab + 1, Some("compute: cq * wpr"))?;
    m.reg("done_q", 1, None)?;
    m.reg("error_q", 1, None)?;
    m.wire_assign(
        "last_step",
        Expr::raw("ck_q == nchunks_q - 16'd1 && cq_q == planes_q - 6'd1", 1),
        None,
    )?;
    m.wire_assign("acc_valid_w", Expr::raw("arr_acc_valid", 1), None)?;
    let next_tile_o0 = format!("o0_q + 16'd{r_n}");
    let mut f = Code::new();
    f.nb("done_q", "1'b0");
    f.nb("error_q", "1'b0");
    f.if_else(
        "!rst_n || soft_reset",
        |c| {
            c.nb("state_q", "S_IDLE");
            c.nb("pending_q", format!("{wb}'d0"));
            c.nb("err_code_q", "8'd0");
        },
        |c| {
            c.comment("every read word counts; an error word sends the job to FAIL, draining the rest");
            c.if_("rd_req_fire", |c| {
                c.nb("words_q", "rd_req_words_d");
                c.nb("cnt_q", format!("{wb}'d0"));
            });
            c.if_("rd_fire && in_rd_data && rd_resp[1]", |c| {
                c.nb("state_q", "S_FAIL");
                c.nb(
                    "err_code_q",
                    format!(
                        "rd_resp[0] ? {} : {}",
                        code(ErrorCode::AxiDecerr),
                        code(ErrorCode::AxiSlverr)
                    ),
                );
                c.nb("pending_q", format!("words_q - cnt_q - {wb}'d1"));
            });
            c.case_block("else case (state_q)", |c| {
                c.block("S_IDLE:", |c| {
                    c.if_("start", |c| {
                        c.nb("desc_base_q", "desc_addr");
                        c.nb("desc_idx_q", "16'd0");
                        c.nb("desc_count_q", "desc_count");
                        c.if_else(
                            format!(
                                "desc_count == 16'd0 || desc_count > 16'd{}",
                                cfg.limits.max_descriptors
                            ),
                            |c| {
                                c.nb("err_code_q", code(ErrorCode::DescCount));
                                c.nb("state_q", "S_FAIL");
                            },
                            |c| {
                                c.if_else(
                                    format!("desc_addr[{}:0] != {}'d0", bus_log2 - 1, bus_log2),
                                    |c| {
                                        c.nb("err_code_q", code(ErrorCode::Misaligned));
                                        c.nb("state_q", "S_FAIL");
                                    },
                                    |c| {
                                        c.nb("state_q", "S_DESC_REQ");
                                    },
                                );
                            },
                        );
                    });
                });
                for st in ["DESC", "FM", "ACT", "BIAS", "RQ", "GM", "W"] {
                    c.block(format!("S_{st}_REQ:"), |c| {
                        c.if_("!rd_in_win", |c| {
                            c.nb("err_code_q", code(ErrorCode::OutOfWindow));
                            c.nb("state_q", "S_FAIL");
                        });
                        c.if_("rd_req_fire", |c| {
                            c.nb("state_q", format!("S_{st}_DATA"));
                            c.nb("row_q", format!("{rowb}'d0"));
                            c.nb("col_q", "16'd0");
                            c.nb("sub_q", "2'd0");
                        });
                    });
                }
                c.block("S_DESC_DATA:", |c| {
                    c.if_("rd_fire", |c| {
                        c.nb("desc_q[{cnt_q[3:0], 1'b0}]", "rd_data[31:0]");
                        c.nb("desc_q[{cnt_q[3:0], 1'b1}]", "rd_data[63:32]");
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_(format!("cnt_q == {wb}'d15"), |c| {
                            c.nb("state_q", "S_CHECK");
                        });
                    });
                });
                c.block("S_CHECK:", |c| {
                    c.if_else(
                        "check_code != 8'd0",
                        |c| {
                            c.nb("err_code_q", "check_code");
                            c.nb("state_q", "S_FAIL");
                        },
                        |c| {
                            c.nb("wpr_q", "d_wpr");
                            c.nb("planes_q", "d_planes");
                            c.nb(
                                "nchunks_q",
                                format!("(d_k + 16'd{}) >> {}", c_n - 1, clog2(c_n)),
                            );
                            c.nb("nwords_act_q", "(d_k + 16'd7) >> 3");
                            c.nb(
                                "nregions_q",
                                if grouped {
                                    format!(
                                        "d_grouped ? ((d_k + 16'd{}) >> {}) : 16'd1",
                                        s.group_size - 1,
                                        clog2(s.group_size)
                                    )
                                } else {
                                    "16'd1".to_string()
                                },
                            );
                            c.nb("plane_stride_q", "stride_full");
                            c.nb(
                                "nwords_fm_q",
                                format!("(d_fmap[{}:0] + {wb}'d7) >> 3", wb - 1),
                            );
                            c.nb("hw_q", "{16'd0, d_in_h} * {16'd0, d_in_w}");
                            c.nb("grows_q", "d_in_c * {8'd0, d_kh}");
                            c.nb("ohw_q", "d_conv ? d_ohw[15:0] : 16'd1");
                            c.nb("sw_q", "(d_stride == 8'd2) ? {15'd0, d_in_w, 1'b0} : {16'd0, d_in_w}");
                            c.nb("tile_oaddr_q", format!("d_out_addr[{}:0]", aw - 1));
                            c.nb("g_q", "2'd0");
                            c.nb("p_q", "4'd0");
                            c.nb("q_q", "6'd0");
                            c.nb("state_q", "S_PLAN");
                        },
                    );
                });
                c.block("S_PLAN:", |c| {
                    c.comment("one cycle per active plane: its shift and whether it is a sign plane");
                    c.nb("plane_shift_q[q_q[4:0]]", "g_shift + p_q[2:0]");
                    c.nb("plane_neg_q[q_q[4:0]]", "last_plane_of_group");
                    c.nb("q_q", "q_q + 6'd1");
                    c.if_else(
                        "last_plane_of_group",
                        |c| {
                            c.nb("g_q", "g_q + 2'd1");
                            c.nb("p_q", "4'd0");
                        },
                        |c| {
                            c.nb("p_q", "p_q + 4'd1");
                        },
                    );
                    c.if_("last_plane", |c| {
                        c.nb("state_q", "d_conv ? S_FM_REQ : S_ACT_REQ");
                        c.comment("first tile");
                        c.nb("o0_q", "16'd0");
                        c.nb(
                            "nrows_q",
                            format!(
                                "(d_out_c < 16'd{r_n}) ? d_out_c[{}:0] : {rowb}'d{r_n}",
                                rowb - 1
                            ),
                        );
                        c.nb("tile_woff_q", format!("{aw}'d0"));
                        c.nb("tile_gmoff_q", format!("{aw}'d0"));
                    });
                });
                c.block("S_ACT_DATA:", |c| {
                    c.if_("rd_fire", |c| {
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_("cnt_q == words_q - 20'd1", |c| {
                            c.nb("state_q", "S_BIAS_REQ");
                        });
                    });
                });
                c.block("S_FM_DATA:", |c| {
                    c.if_("rd_fire", |c| {
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_("cnt_q == words_q - 20'd1", |c| {
                            c.nb("state_q", "S_BIAS_REQ");
                        });
                    });
                });
                c.block("S_BIAS_DATA:", |c| {
                    c.if_("rd_fire", |c| {
                        c.nb(format!("bias_q[{{row_q[{}:0], 1'b0}}]", rib - 2), "rd_data[31:0]");
                        c.nb(format!("bias_q[{{row_q[{}:0], 1'b1}}]", rib - 2), "rd_data[63:32]");
                        c.nb("row_q", format!("row_q + {rowb}'d1"));
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_("cnt_q == words_q - 20'd1", |c| {
                            c.nb("state_q", "S_RQ_REQ");
                        });
                    });
                });
                c.block("S_RQ_DATA:", |c| {
                    c.if_("rd_fire", |c| {
                        c.nb("rqm_q[row_i]", "rd_data[31:0]");
                        c.nb("rqs_q[row_i]", "rd_data[37:32]");
                        c.nb("row_q", format!("row_q + {rowb}'d1"));
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_("cnt_q == words_q - 20'd1", |c| {
                            c.nb("state_q", if grouped { "d_grouped ? S_GM_REQ : S_W_REQ" } else { "S_W_REQ" });
                            c.nb("g_q", "2'd0");
                            c.nb("p_q", "4'd0");
                            c.nb("q_q", "6'd0");
                            c.nb("wq_base_q", format!("{}'d0", wab + 1));
                            c.nb("wl_addr_q", format!("d_w0_addr[{}:0] + tile_woff_q", aw - 1));
                        });
                    });
                });
                c.block("S_GM_DATA:", |c| {
                    c.if_("rd_fire", |c| {
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                    });
                    c.if_("rd_valid", |c| {
                        c.comment("one multiplier per cycle; the word is released after its fourth");
                        c.nb("sub_q", "sub_q + 2'd1");
                        c.if_else(
                            "col_q == nregions_q - 16'd1",
                            |c| {
                                c.nb("col_q", "16'd0");
                                c.nb("row_q", format!("row_q + {rowb}'d1"));
                            },
                            |c| {
                                c.nb("col_q", "col_q + 16'd1");
                            },
                        );
                        c.if_("gm_last", |c| {
                            c.nb("state_q", "S_W_REQ");
                        });
                    });
                });
                c.block("S_W_DATA:", |c| {
                    c.if_("rd_fire", |c| {
                        c.if_else(
                            "col_q == wpr_q - 16'd1",
                            |c| {
                                c.nb("col_q", "16'd0");
                                c.nb("row_q", format!("row_q + {rowb}'d1"));
                            },
                            |c| {
                                c.nb("col_q", "col_q + 16'd1");
                            },
                        );
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_("cnt_q == words_q - 20'd1", |c| {
                            c.comment("plane loaded: the next one, or compute");
                            c.nb("q_q", "q_q + 6'd1");
                            c.nb("wq_base_q", format!("wq_base_q + wpr_q[{wab}:0]"));
                            c.if_else(
                                "last_plane_of_group",
                                |c| {
                                    c.nb("g_q", "g_q + 2'd1");
                                    c.nb("p_q", "4'd0");
                                    c.nb("wl_addr_q", "g_next_addr");
                                },
                                |c| {
                                    c.nb("p_q", "p_q + 4'd1");
                                    c.nb("wl_addr_q", "wl_addr_q + plane_stride_q");
                                },
                            );
                            c.if_else(
                                "last_plane",
                                |c| {
                                    c.comment("weights loaded: the first pixel (Conv2d) or the compute (Dense)");
                                    c.nb("state_q", "d_conv ? S_GINIT : S_COMPUTE");
                                    c.nb("ck_q", "16'd0");
                                    c.nb("cq_q", "6'd0");
                                    c.nb("cw_base_q", format!("{}'d0", wab + 1));
                                    c.nb("pix_q", "16'd0");
                                    c.nb("ox_q", "16'd0");
                                    c.nb("oy_q", "16'd0");
                                    c.nb("ix0_q", "18'd0 - {10'd0, d_pad}");
                                    c.nb("iy0_q", "18'd0 - {10'd0, d_pad}");
                                    c.nb("pixrow_q", "32'd0 - ({24'd0, d_pad} * {16'd0, d_in_w})");
                                },
                                |c| {
                                    c.nb("state_q", "S_W_REQ");
                                },
                            );
                        });
                    });
                });
                c.block("S_GINIT:", |c| {
                    c.nb("gr_q", "16'd0");
                    c.nb("gky_q", "3'd0");
                    c.nb("gcbase_q", "pixrow_q");
                    c.nb("grow_q", "pixrow_q");
                    c.nb("state_q", "S_GATHER");
                });
                c.block("S_GATHER:", |c| {
                    c.comment("one patch row (kernel_w elements) per cycle, in (c, ky) order");
                    c.nb("gr_q", "gr_q + 16'd1");
                    c.if_else(
                        "{5'd0, gky_q} == d_kh - 8'd1",
                        |c| {
                            c.nb("gky_q", "3'd0");
                            c.nb("gcbase_q", "gcbase_q + hw_q");
                            c.nb("grow_q", "gcbase_q + hw_q");
                        },
                        |c| {
                            c.nb("gky_q", "gky_q + 3'd1");
                            c.nb("grow_q", "grow_q + {16'd0, d_in_w}");
                        },
                    );
                    c.if_("gr_q == grows_q - 16'd1", |c| {
                        c.nb("state_q", "S_GFLUSH");
                    });
                });
                c.block("S_GFLUSH:", |c| {
                    c.comment("the last row is appended (and a partial word flushed): compute");
                    c.if_("!gp_v_q", |c| {
                        c.nb("state_q", "S_COMPUTE");
                        c.nb("ck_q", "16'd0");
                        c.nb("cq_q", "6'd0");
                        c.nb("cw_base_q", format!("{}'d0", wab + 1));
                    });
                });
                c.block("S_PIX_NEXT:", |c| {
                    c.nb("pix_q", "pix_q + 16'd1");
                    c.if_else(
                        "ox_q == d_out_w - 16'd1",
                        |c| {
                            c.nb("ox_q", "16'd0");
                            c.nb("oy_q", "oy_q + 16'd1");
                            c.nb("ix0_q", "18'd0 - {10'd0, d_pad}");
                            c.nb("iy0_q", "iy0_q + {10'd0, d_stride}");
                            c.nb("pixrow_q", "pixrow_q + sw_q");
                        },
                        |c| {
                            c.nb("ox_q", "ox_q + 16'd1");
                            c.nb("ix0_q", "ix0_q + {10'd0, d_stride}");
                        },
                    );
                    c.nb("state_q", "S_GINIT");
                });
                c.block("S_COMPUTE:", |c| {
                    c.comment("one plane-step per cycle: all planes of a chunk, then the next chunk");
                    c.if_else(
                        "cq_q == planes_q - 6'd1",
                        |c| {
                            c.nb("cq_q", "6'd0");
                            c.nb("cw_base_q", format!("{}'d0", wab + 1));
                            c.nb("ck_q", "ck_q + 16'd1");
                        },
                        |c| {
                            c.nb("cq_q", "cq_q + 6'd1");
                            c.nb("cw_base_q", format!("cw_base_q + wpr_q[{wab}:0]"));
                        },
                    );
                    c.if_("last_step", |c| {
                        c.nb("state_q", "S_WAIT_ACC");
                    });
                });
                c.block("S_WAIT_ACC:", |c| {
                    c.if_("acc_valid_w", |c| {
                        c.nb("state_q", "S_DRAIN");
                        c.nb("row_q", format!("{rowb}'d0"));
                        c.nb("cnt_q", format!("{wb}'d0"));
                    });
                });
                c.block("S_DRAIN:", |c| {
                    c.if_("row_q != nrows_q", |c| {
                        c.nb("row_q", format!("row_q + {rowb}'d1"));
                    });
                    c.if_("rq_out_valid", |c| {
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_("cnt_q == nrows_w - 20'd1", |c| {
                            c.comment("the pixel's rows are staged: the next pixel, or the tile's output runs");
                            c.nb("run_q", format!("{rowb}'d0"));
                            c.nb("run_addr_q", "tile_oaddr_q");
                            c.nb(
                                "state_q",
                                "(d_conv && pix_q != ohw_q - 16'd1) ? S_PIX_NEXT : S_OUT_REQ",
                            );
                        });
                    });
                });
                c.block("S_OUT_REQ:", |c| {
                    c.if_("!wr_in_win", |c| {
                        c.nb("err_code_q", code(ErrorCode::OutOfWindow));
                        c.nb("state_q", "S_FAIL");
                    });
                    c.if_("wr_req_fire", |c| {
                        c.nb("state_q", "S_OUT_FILL");
                        c.nb("wo_q", format!("{wb}'d0"));
                        c.nb("fl_q", "4'd0");
                    });
                });
                c.block("S_OUT_FILL:", |c| {
                    c.comment("eight staged bytes, one per cycle, then the word goes out");
                    c.nb("fl_q", "fl_q + 4'd1");
                    c.if_("fl_q == 4'd8", |c| {
                        c.nb("state_q", "S_OUT_DATA");
                    });
                });
                c.block("S_OUT_DATA:", |c| {
                    c.if_("wr_fire", |c| {
                        c.nb("wo_q", format!("wo_q + {wb}'d1"));
                        c.nb("fl_q", "4'd0");
                        c.nb(
                            "state_q",
                            "(wo_q == out_words - 20'd1) ? S_OUT_RESP : S_OUT_FILL",
                        );
                    });
                });
                c.block("S_OUT_RESP:", |c| {
                    c.if_("wr_resp_valid", |c| {
                        c.if_else(
                            "wr_resp_resp[1]",
                            |c| {
                                c.nb(
                                    "err_code_q",
                                    format!(
                                        "wr_resp_resp[0] ? {} : {}",
                                        code(ErrorCode::AxiDecerr),
                                        code(ErrorCode::AxiSlverr)
                                    ),
                                );
                                c.nb("pending_q", format!("{wb}'d0"));
                                c.nb("state_q", "S_FAIL");
                            },
                            |c| {
                                c.if_("d_conv && run_q != nrows_q - {rowb}'d1".replace("{rowb}", &rowb.to_string()), |c| {
                                    c.comment("the next row's run");
                                    c.nb("run_q", format!("run_q + {rowb}'d1"));
                                    c.nb("run_addr_q", format!("run_addr_q + {{{}'d0, ohw_q}}", aw - 16));
                                    c.nb("state_q", "S_OUT_REQ");
                                });
                                c.if_("!(d_conv && run_q != nrows_q - {rowb}'d1)".replace("{rowb}", &rowb.to_string()), |c| {
                                c.nb(
                                    "tile_oaddr_q",
                                    format!("tile_oaddr_q + ({{{}'d0, ohw_q}} << {})", aw - 16, clog2(r_n)),
                                );
                                c.if_else(
                                    format!("{next_tile_o0} < d_out_c"),
                                    |c| {
                                        c.nb("o0_q", next_tile_o0.clone());
                                        c.nb(
                                            "nrows_q",
                                            format!(
                                                "(rows_left < 16'd{r_n}) ? rows_left[{}:0] : {rowb}'d{r_n}",
                                                rowb - 1
                                            ),
                                        );
                                        c.nb(
                                            "tile_woff_q",
                                            format!(
                                                "tile_woff_q + {{{}'d0, wpr_q, 3'd0}} * {aw}'d{r_n}",
                                                aw - 19
                                            ),
                                        );
                                        c.nb(
                                            "tile_gmoff_q",
                                            format!(
                                                "tile_gmoff_q + {{{}'d0, nregions_q, 1'b0}} * {aw}'d{r_n}",
                                                aw - 17
                                            ),
                                        );
                                        c.nb("state_q", "S_BIAS_REQ");
                                    },
                                    |c| {
                                        c.nb("state_q", "S_NEXT");
                                    },
                                );
                                });
                            },
                        );
                    });
                });
                c.block("S_NEXT:", |c| {
                    c.if_else(
                        "desc_idx_q + 16'd1 == desc_count_q",
                        |c| {
                            c.nb("done_q", "1'b1");
                            c.nb("state_q", "S_IDLE");
                        },
                        |c| {
                            c.nb("desc_idx_q", "desc_idx_q + 16'd1");
                            c.nb("desc_base_q", format!("desc_base_q + {aw}'d128"));
                            c.nb("state_q", "S_DESC_REQ");
                        },
                    );
                });
                c.block("S_FAIL:", |c| {
                    c.if_else(
                        format!("pending_q == {wb}'d0"),
                        |c| {
                            c.nb("error_q", "1'b1");
                            c.nb("state_q", "S_IDLE");
                        },
                        |c| {
                            c.if_("rd_fire", |c| {
                                c.nb("pending_q", format!("pending_q - {wb}'d1"));
                            });
                        },
                    );
                });
                c.line("default: state_q <= S_IDLE;");
            });
        },
    );
    m.always_ff(clk, f)?;

    m.section("Conv2d patch gather: row address (t) -> eight byte lanes (t+1) -> K-vector words");
    m.comment(&[
        "The feature map is stored in eight byte lanes, so the kernel_w (<= 7) consecutive bytes of",
        "a patch row are read in one cycle from any byte address: lane b reads entry A/8, or A/8 + 1",
        "when b < A mod 8. Bytes outside the input (padding) are zero. Rows are appended to asm_q;",
        "every full 8 bytes are a K-vector word.",
    ]);
    let fab = clog2((s.fm_bytes / 8));
    m.wire_assign("g_iy", Expr::raw("iy0_q + {15'd0, gky_q}", 18), None)?;
    m.wire_assign(
        "g_row_in",
        Expr::raw("!g_iy[17] && g_iy < {2'd0, d_in_h}", 1),
        Some("the patch row lies inside the input"),
    )?;
    let valid = (0..8)
        .rev()
        .map(|j| {
            format!("(g_row_in && 8'd{j} < d_kw && !g_ix{j}[17] && g_ix{j} < {{2'd0, d_in_w}})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    for j in 0..8 {
        m.wire_assign(
            &format!("g_ix{j}"),
            Expr::raw(format!("ix0_q + 18'd{j}"), 18),
            None,
        )?;
    }
    m.wire_assign(
        "g_valid",
        Expr::raw(format!("{{{valid}}}"), 8),
        Some("row element j is inside the input and the kernel"),
    )?;
    m.lint_off(
        "UNUSEDSIGNAL",
        "g_addr and act_widx are wider than the buffers they index (the capacity check bounds them)",
    );
    m.wire_assign(
        "g_addr",
        Expr::raw("grow_q + {{14{ix0_q[17]}}, ix0_q}", 32),
        Some("byte address of the row's first element (may lie outside the map: masked)"),
    )?;
    m.wire_assign(
        "g_entry",
        Expr::raw(format!("g_addr[{}:3]", fab + 2), fab),
        None,
    )?;
    m.reg(
        "gp_v_q",
        1,
        Some("a patch row arrives from the feature buffer"),
    )?;
    m.reg("gp_rot_q", 3, Some("the row's first byte lane"))?;
    m.reg("gp_valid_q", 8, None)?;
    m.reg(
        "asm_q",
        64,
        Some("patch bytes not yet written (gfill_q of them)"),
    )?;
    let mut gp = Code::new();
    gp.if_else(
        "!rst_n",
        |c| {
            c.nb("gp_v_q", "1'b0");
        },
        |c| {
            c.nb("gp_v_q", "state_q == S_GATHER");
        },
    );
    gp.nb("gp_rot_q", "g_addr[2:0]");
    gp.nb("gp_valid_q", "g_valid");
    for b in 0..8 {
        // Lane 7 is never below the row's first lane.
        let entry = if b == 7 {
            "g_entry".to_string()
        } else {
            format!("g_entry + {{{}'d0, 3'd{b} < g_addr[2:0]}}", fab - 1)
        };
        gp.nb(format!("fm{b}_rd_q"), format!("fm{b}_mem[{entry}]"));
    }
    gp.if_else(
        "state_q == S_GINIT",
        |c| {
            c.nb("gfill_q", "3'd0");
            c.nb("gwq_q", "16'd0");
            c.nb("asm_q", "64'd0");
        },
        |c| {
            c.if_("gp_v_q", |c| {
                c.comment("append the row; a full word leaves for the K-vector banks");
                c.nb("gfill_q", "g_total[2:0]");
                c.nb("asm_q", "g_total[3] ? g_comb[127:64] : g_comb[63:0]");
                c.if_("g_total[3]", |c| {
                    c.nb("gwq_q", "gwq_q + 16'd1");
                });
            });
            c.if_("g_flush", |c| {
                c.nb("gfill_q", "3'd0");
                c.nb("asm_q", "64'd0");
                c.nb("gwq_q", "gwq_q + 16'd1");
            });
        },
    );
    let lanes = (0..8)
        .rev()
        .map(|j| {
            let sel = (0..8)
                .map(|r| format!("(gp_rot_q == 3'd{r}) ? fm{}_rd_q", (r + j) % 8))
                .collect::<Vec<_>>()
                .join(" : ");
            format!("(gp_valid_q[{j}] ? ({sel} : 8'd0) : 8'd0)")
        })
        .collect::<Vec<_>>()
        .join(", ");
    m.wire_assign(
        "g_row",
        Expr::raw(format!("{{{lanes}}}"), 64),
        Some("the row's bytes from lane 0, zero outside the input and beyond kernel_w"),
    )?;
    m.wire_assign(
        "g_comb",
        Expr::raw("{64'd0, asm_q} | ({64'd0, g_row} << {gfill_q, 3'd0})", 128),
        None,
    )?;
    m.wire_assign(
        "g_total",
        Expr::raw("{1'b0, gfill_q} + d_kw[3:0]", 4),
        Some("bytes pending after the append"),
    )?;
    m.always_ff(clk, gp)?;
    m.wire_assign(
        "g_we",
        Expr::raw("gp_v_q && g_total[3]", 1),
        Some("a K-vector word is complete"),
    )?;
    m.wire_assign(
        "g_flush",
        Expr::raw("state_q == S_GFLUSH && !gp_v_q && gfill_q != 3'd0", 1),
        Some("the patch's last, partial word"),
    )?;
    m.wire_assign(
        "act_we",
        Expr::raw("(state_q == S_ACT_DATA && rd_fire) || g_we || g_flush", 1),
        None,
    )?;
    m.wire_assign(
        "act_widx",
        Expr::raw("(state_q == S_ACT_DATA) ? cnt_q[15:0] : gwq_q", 16),
        Some("word index of the K-vector"),
    )?;
    m.lint_on("UNUSEDSIGNAL");
    m.wire_assign(
        "act_wdata",
        Expr::raw(
            "(state_q == S_ACT_DATA) ? rd_data : g_we ? g_comb[63:0] : asm_q",
            64,
        ),
        None,
    )?;

    m.section("buffer writes");
    let mut bw = Code::new();
    bw.if_("act_we", |c| {
        for b in 0..s.abanks {
            let sel = if abank_log2 == 0 {
                "1'b1".to_string()
            } else {
                format!("act_widx[{}:0] == {abank_log2}'d{b}", abank_log2 - 1)
            };
            c.if_(sel, |c| {
                c.nb(
                    format!(
                        "act{b}_mem[act_widx[{}:{abank_log2}]]",
                        aab + abank_log2 - 1
                    ),
                    "act_wdata",
                );
            });
        }
    });
    bw.if_("state_q == S_FM_DATA && rd_fire", |c| {
        for b in 0..8 {
            c.nb(
                format!("fm{b}_mem[cnt_q[{}:0]]", fab - 1),
                format!("rd_data[{}:{}]", 8 * b + 7, 8 * b),
            );
        }
    });
    bw.if_("state_q == S_DRAIN && rq_out_valid", |c| {
        c.nb(
            format!("stage_mem[{{rq_out_tag, pix_q[{}:0]}}]", clog2(s.stage_bytes) - 1),
            "rq_out_code",
        );
    });
    bw.if_("state_q == S_W_DATA && rd_fire", |c| {
        for r in 0..r_n {
            c.if_(format!("row_q == {rowb}'d{r}"), |c| {
                c.nb(
                    format!("w{r}_mem[wq_base_q[{}:0] + col_q[{}:0]]", wab - 1, wab - 1),
                    "rd_data",
                );
            });
        }
    });
    if grouped {
        bw.if_("state_q == S_GM_DATA && rd_valid", |c| {
            for r in 0..r_n {
                c.if_(format!("row_q == {rowb}'d{r}"), |c| {
                    c.nb(
                        format!("gm{r}_mem[col_q[{}:0]]", rab.max(1) - 1),
                        "gm_entry",
                    );
                });
            }
        });
    }
    m.always_ff(clk, bw)?;
    m.section("plane-step pipeline: counters -> buffer reads (t+1) -> array inputs (t+2)");
    m.wire_assign(
        "act_rd_addr",
        Expr::raw(format!("ck_q[{}:0]", aab - 1), aab),
        None,
    )?;
    m.wire_assign(
        "w_rd_addr",
        Expr::raw(
            format!(
                "cw_base_q[{a}:0] + ck_q[{}:{cpw_log2}]",
                wab - 1 + cpw_log2,
                a = wab - 1
            ),
            wab,
        ),
        Some("plane cq's entry holding chunk ck"),
    )?;
    let mut rd = Code::new();
    for b in 0..s.abanks {
        rd.nb(format!("act{b}_rd_q"), format!("act{b}_mem[act_rd_addr]"));
    }
    for r in 0..r_n {
        rd.nb(format!("w{r}_rd_q"), format!("w{r}_mem[w_rd_addr]"));
    }
    if grouped {
        let region = format!("ck_q[{}:{cpr_log2}]", rab.max(1) - 1 + cpr_log2);
        let all = (0..r_n)
            .rev()
            .map(|r| format!("gm{r}_mem[{region}]"))
            .collect::<Vec<_>>()
            .join(", ");
        rd.nb("gm_rd_q", format!("{{{all}}}"));
    }
    m.always_ff(clk, rd)?;
    // Flags of the step issued this cycle.
    let (chunk_start, chunk_end, region_of) = if grouped {
        // A grouped layer's region is cpr chunks; an ungrouped layer has one region over all
        // of K, whatever the config's group size (also when a region is a single chunk).
        let lo = if cpr_log2 == 0 {
            (
                "d_grouped || ck_q == 16'd0".to_string(),
                "d_grouped || ck_q == nchunks_q - 16'd1".to_string(),
            )
        } else {
            (
                format!(
                    "d_grouped ? (ck_q[{}:0] == {cpr_log2}'d0) : (ck_q == 16'd0)",
                    cpr_log2 - 1
                ),
                format!(
                    "d_grouped ? (ck_q[{}:0] == {{{cpr_log2}{{1'b1}}}} || ck_q == nchunks_q - 16'd1) : (ck_q == nchunks_q - 16'd1)",
                    cpr_log2 - 1
                ),
            )
        };
        (lo.0, lo.1, format!("(ck_q >> {cpr_log2})"))
    } else {
        (
            "ck_q == 16'd0".to_string(),
            "ck_q == nchunks_q - 16'd1".to_string(),
            String::new(),
        )
    };
    let (tfirst, tlast) = if grouped {
        (
            format!("!d_grouped || {region_of} == 16'd0"),
            format!("!d_grouped || {region_of} == ((nchunks_q - 16'd1) >> {cpr_log2})"),
        )
    } else {
        ("1'b1".to_string(), "1'b1".to_string())
    };
    m.wire_assign("i_valid", Expr::raw("state_q == S_COMPUTE", 1), None)?;
    m.wire_assign(
        "i_rfirst",
        Expr::raw(format!("({chunk_start}) && cq_q == 6'd0"), 1),
        None,
    )?;
    m.wire_assign(
        "i_rlast",
        Expr::raw(format!("({chunk_end}) && cq_q == planes_q - 6'd1"), 1),
        None,
    )?;
    m.wire_assign("i_tfirst", Expr::raw(tfirst, 1), None)?;
    m.wire_assign("i_tlast", Expr::raw(tlast, 1), None)?;
    m.reg(
        "a_ctl_q",
        6,
        Some("valid, neg, region_first, region_last, tile_first, tile_last"),
    )?;
    m.reg("a_shift_q", 3, None)?;
    if cpw_log2 > 0 {
        m.reg(
            "a_slice_q",
            cpw_log2,
            Some("chunk within the 64-bit plane word"),
        )?;
    }
    m.reg("step_ctl_q", 6, None)?;
    m.reg("step_shift_q", 3, None)?;
    m.reg("step_act_q", c_n * lane, None)?;
    m.reg("step_bits_q", r_n * c_n, None)?;
    m.reg("step_mult_q", r_n * MULT_BITS, None)?;
    let mut pa = Code::new();
    pa.if_else(
        "!rst_n",
        |c| {
            c.nb("a_ctl_q", "6'd0");
            c.nb("step_ctl_q", "6'd0");
        },
        |c| {
            c.nb(
                "a_ctl_q",
                "{i_valid, plane_neg_q[cq_q[4:0]], i_rfirst, i_rlast, i_tfirst, i_tlast}",
            );
            c.nb("step_ctl_q", "a_ctl_q");
        },
    );
    pa.nb("a_shift_q", "plane_shift_q[cq_q[4:0]]");
    if cpw_log2 > 0 {
        pa.nb("a_slice_q", format!("ck_q[{}:0]", cpw_log2 - 1));
    }
    pa.nb("step_shift_q", "a_shift_q");
    let act8 = cfg.array.act_bits;
    let lanes = (0..c_n)
        .rev()
        .map(|c| {
            let (b, o) = (c / 8, (c % 8) * 8);
            format!(
                "d_in_signed & act{b}_rd_q[{}], act{b}_rd_q[{}:{o}]",
                o + 7,
                o + act8 - 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    pa.comment("lane = the byte's code, sign- or zero-extended by one bit");
    pa.nb("step_act_q", format!("{{{lanes}}}"));
    let rows = (0..r_n)
        .rev()
        .map(|r| {
            if cpw_log2 == 0 {
                format!("w{r}_rd_q")
            } else {
                format!("w{r}_rd_q[{{a_slice_q, {}'d0}} +: {c_n}]", clog2(c_n))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    pa.nb("step_bits_q", format!("{{{rows}}}"));
    if grouped {
        let ones = format!("{{{r_n}{{9'd1}}}}");
        pa.nb("step_mult_q", format!("d_grouped ? gm_rd_q : {ones}"));
    } else {
        pa.nb("step_mult_q", format!("{{{r_n}{{9'd1}}}}"));
    }
    m.always_ff(clk, pa)?;

    m.section("the array");
    m.instance(
        array_if,
        "u_array",
        vec![
            ("clk", Expr::raw("clk", 1)),
            ("rst_n", Expr::raw("rst_n", 1)),
            ("step_valid", Expr::raw("step_ctl_q[5]", 1)),
            ("step_act", Expr::raw("step_act_q", c_n * lane)),
            ("step_bits", Expr::raw("step_bits_q", r_n * c_n)),
            ("step_shift", Expr::raw("step_shift_q", 3)),
            ("step_neg", Expr::raw("step_ctl_q[4]", 1)),
            ("step_region_first", Expr::raw("step_ctl_q[3]", 1)),
            ("step_region_last", Expr::raw("step_ctl_q[2]", 1)),
            ("step_tile_first", Expr::raw("step_ctl_q[1]", 1)),
            ("step_tile_last", Expr::raw("step_ctl_q[0]", 1)),
            ("step_mult", Expr::raw("step_mult_q", r_n * MULT_BITS)),
            ("acc_valid", arr_acc_valid.expr()),
            ("acc_t", arr_acc_t.expr()),
        ],
    )?;

    m.section("requantization of the tile's rows, one per cycle");
    m.instance(
        requant_if,
        "u_requant",
        vec![
            ("clk", Expr::raw("clk", 1)),
            ("rst_n", Expr::raw("rst_n", 1)),
            (
                "in_valid",
                Expr::raw("state_q == S_DRAIN && row_q != nrows_q", 1),
            ),
            (
                "in_acc",
                Expr::raw(format!("arr_acc_t[drain_lsb +: {ACC_T_BITS}]"), ACC_T_BITS),
            ),
            ("in_bias", Expr::raw("bias_q[row_i]", 32)),
            ("in_mult", Expr::raw("rqm_q[row_i]", 32)),
            ("in_shift", Expr::raw("rqs_q[row_i]", 6)),
            ("in_relu", Expr::raw("d_relu", 1)),
            ("in_out_signed", Expr::raw("d_out_signed", 1)),
            ("in_out_bits", Expr::raw("d_out_bits", 4)),
            (
                "in_tag",
                Expr::raw(format!("{{{}'d0, row_q}}", 16 - rowb), 16),
            ),
            ("out_valid", rq_out_valid.expr()),
            ("out_code", rq_out_code.expr()),
            ("out_tag", rq_out_tag_w.expr()),
        ],
    )?;

    m.section("output words: staged bytes -> 64-bit words with strobes");
    let slog = clog2(s.stage_bytes);
    m.wire_assign(
        "fl_pos",
        Expr::raw(
            format!("{{wo_q, fl_q[2:0]}} - {{{}'d0, out_off}}", wb),
            wb + 3,
        ),
        Some("byte of the run in lane fl of word wo (wraps below the run's start)"),
    )?;
    m.wire_assign(
        "fl_on",
        Expr::raw(
            format!("fl_q != 4'd8 && fl_pos < {{{}'d0, run_len}}", wb + 3 - 16),
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "stage_raddr",
        Expr::raw(
            format!(
                "d_conv ? {{run_q[{}:0], fl_pos[{}:0]}} : {{fl_pos[{}:0], {slog}'d0}}",
                rib - 1,
                slog - 1,
                rib - 1
            ),
            rib + slog,
        ),
        Some("Conv2d: row run, pixel; Dense: row (pixel 0)"),
    )?;
    m.reg("fl_on_q", 1, None)?;
    m.reg("fl_lane_q", 3, None)?;
    m.reg("wbuf_q", 64, None)?;
    m.reg("wstrb_q", 8, None)?;
    let mut wf = Code::new();
    wf.nb("stage_rd_q", "stage_mem[stage_raddr]");
    wf.nb("fl_on_q", "state_q == S_OUT_FILL && fl_on");
    wf.nb("fl_lane_q", "fl_q[2:0]");
    wf.if_("state_q == S_OUT_FILL && fl_q != 4'd0", |c| {
        c.nb(
            "wbuf_q[{fl_lane_q, 3'd0} +: 8]",
            "fl_on_q ? stage_rd_q : 8'd0",
        );
        c.nb("wstrb_q[fl_lane_q]", "fl_on_q");
    });
    m.always_ff(clk, wf)?;
    m.assign_raw("wr_data", "wbuf_q")?;
    m.assign_raw("wr_strb", "wstrb_q")?;
    m.wire_assign(
        "wr_req_addr_d",
        Expr::raw(format!("run_addr_q & ~{aw}'d7"), aw),
        None,
    )?;
    window_check(m, cfg, "wr", "wr_req_addr_d", "out_words")?;
    m.assign_raw("wr_req_valid", "state_q == S_OUT_REQ && wr_in_win")?;
    m.assign_raw("wr_req_addr", "wr_req_addr_d")?;
    m.assign_raw("wr_req_words", "out_words")?;
    m.assign_raw("wr_valid", "state_q == S_OUT_DATA")?;

    m.section("status and performance outputs");
    m.assign_raw("busy", "state_q != S_IDLE")?;
    m.assign_raw("done", "done_q")?;
    m.assign_raw("error", "error_q")?;
    m.assign_raw("err_code", "err_code_q")?;
    m.assign_raw("err_desc", "desc_idx_q")?;
    m.assign_raw("perf_busy", "step_ctl_q[5]")?;
    m.assign_raw(
        "perf_stall",
        "(rd_req_valid && !rd_req_ready) || (in_rd_data && !rd_valid) || \
         (wr_req_valid && !wr_req_ready) || (wr_valid && !wr_ready) || \
         (state_q == S_OUT_RESP && !wr_resp_valid)",
    )?;
    m.assign_raw("perf_plane_ops", "{15'd0, step_ctl_q[5]}")?;
    m.assign_raw("perf_bytes_rd", "rd_fire ? 16'd8 : 16'd0")?;
    m.assign_raw(
        "perf_bytes_wr",
        "wr_fire ? ({15'd0, wr_strb[0]} + {15'd0, wr_strb[1]} + {15'd0, wr_strb[2]} + {15'd0, wr_strb[3]} + \
         {15'd0, wr_strb[4]} + {15'd0, wr_strb[5]} + {15'd0, wr_strb[6]} + {15'd0, wr_strb[7]}) : 16'd0",
    )?;
    Ok(())
}
