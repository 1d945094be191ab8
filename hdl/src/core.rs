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
use caq_spec::regmap::ErrorCode;
use caq_spec::{LayerDescriptor, Opcode};

/// Largest plane count of a layer: 4 groups of up to 8 bits.
pub const MAX_PLANES: u32 = 32;
/// Width of word counts on the memory ports.
pub const WORDS_BITS: u32 = 20;

fn prev_power_of_two(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        1 << (31 - n.leading_zeros())
    }
}

fn clog2(n: u32) -> u32 {
    n.max(1).next_power_of_two().trailing_zeros()
}

/// Buffer geometry derived from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreShape {
    pub rows: u32,
    pub cols: u32,
    /// 64-bit words per weight bank (one bank per row).
    pub wdepth: u32,
    /// Activation banks (C/8), each 64 bits wide.
    pub abanks: u32,
    /// Entries per activation bank.
    pub adepth: u32,
    /// Local region size (0: none) and the largest region count a layer may have.
    pub group_size: u32,
    pub max_regions: u32,
    pub addr_bits: u32,
    /// Conv2d feature-map buffer: 64-bit words (memory.act_buf_kib).
    pub fwords: u32,
    /// Output staging: bytes per row (memory.acc_buf_kib / rows, a power of two): the most output
    /// pixels (out_h · out_w) of a Conv2d layer.
    pub smax: u32,
}

impl CoreShape {
    pub fn of(cfg: &AccelConfig) -> Result<CoreShape> {
        let (rows, cols) = (cfg.array.rows, cfg.array.cols);
        let unsupported = |what: String| HdlError::Unsupported {
            config: cfg.name.clone(),
            what,
        };
        if cols > 64 {
            return Err(unsupported(format!(
                "array.cols = {cols}: the core reads one 64-bit plane word per row and chunk (cols <= 64)"
            )));
        }
        if rows % 4 != 0 || !rows.is_power_of_two() {
            return Err(unsupported(format!(
                "array.rows = {rows}: the core needs a power of two of at least 4 (tiles start on \
                 8-byte table boundaries; row tables are indexed by bit fields)"
            )));
        }
        let wdepth = cfg.memory.weight_buf_kib * 1024 / (rows * 8);
        let abanks = cols / 8;
        // The activation banks hold one K-vector (a Dense input or a Conv2d patch): MAX_K bytes.
        let adepth = cfg.limits.max_k.div_ceil(cols).next_power_of_two();
        let k_cap = (adepth * cols).min(64 * wdepth).min(cfg.limits.max_k);
        let fwords = cfg.memory.act_buf_kib * 1024 / 8;
        let smax = prev_power_of_two(cfg.memory.acc_buf_kib * 1024 / rows);
        let group_size = cfg.array.group_size;
        let max_regions = if group_size == 0 {
            1
        } else {
            k_cap.div_ceil(group_size)
        };
        Ok(CoreShape {
            rows,
            cols,
            wdepth,
            abanks,
            adepth,
            group_size,
            max_regions,
            addr_bits: cfg.axi.addr_width,
            fwords,
            smax,
        })
    }

    /// The device's own limits on a descriptor that passed every check of
    /// `caq_spec::descriptor::check_fetched`: its K-vector, planes, feature map and output pixels
    /// must fit the buffers. The core checks this last and reports BAD_SHAPE.
    pub fn check_capacity(&self, d: &LayerDescriptor) -> std::result::Result<(), String> {
        let k = d.k();
        let wpr = k.div_ceil(64);
        let planes: u64 = d
            .active_plane_groups()
            .iter()
            .map(|g| u64::from(g.bits.get()))
            .sum();
        if wpr * planes > u64::from(self.wdepth) {
            return Err(format!(
                "K = {k} at {planes} planes needs {} weight words per row: the buffer holds {}",
                wpr * planes,
                self.wdepth
            ));
        }
        let acap = u64::from(self.adepth) * u64::from(self.cols);
        if k > acap {
            return Err(format!("K = {k}: the activation banks hold {acap}"));
        }
        if d.op == Opcode::Conv2d {
            let fm = u64::from(d.input.c) * u64::from(d.input.h) * u64::from(d.input.w);
            if fm > 8 * u64::from(self.fwords) {
                return Err(format!(
                    "input feature map {}x{}x{} = {fm} bytes: the feature buffer holds {}",
                    d.input.c,
                    d.input.h,
                    d.input.w,
                    8 * self.fwords
                ));
            }
            let px = u64::from(d.output.h) * u64::from(d.output.w);
            if px > u64::from(self.smax) {
                return Err(format!(
                    "output {}x{} = {px} pixels: the output staging holds {} per channel",
                    d.output.h, d.output.w, self.smax
                ));
            }
        }
        Ok(())
    }

    /// Chunks (of C lanes) per 64-bit plane word.
    pub fn chunks_per_word(&self) -> u32 {
        64 / self.cols
    }
}

/// The `caq_core` module; `array_if` and `requant_if` are the interfaces of the instantiated
/// `caq_array` and `caq_requant`.
pub fn core(cfg: &AccelConfig, array_if: &Interface, requant_if: &Interface) -> Result<Module> {
    let s = CoreShape::of(cfg)?;
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
    m.port_group("word read port (to the DMA engine)");
    m.port(Dir::Output, "rd_req_valid", 1)?;
    m.port(Dir::Input, "rd_req_ready", 1)?;
    m.port_doc(
        Dir::Output,
        "rd_req_addr",
        aw,
        "byte address, 8-byte aligned",
    )?;
    m.port(Dir::Output, "rd_req_words", WORDS_BITS)?;
    m.port(Dir::Input, "rd_valid", 1)?;
    m.port(Dir::Output, "rd_ready", 1)?;
    m.port(Dir::Input, "rd_data", 64)?;
    m.port_doc(
        Dir::Input,
        "rd_resp",
        2,
        "RRESP of the word's beat (2 SLVERR, 3 DECERR)",
    )?;
    m.port_group("word write port (to the DMA engine)");
    m.port(Dir::Output, "wr_req_valid", 1)?;
    m.port(Dir::Input, "wr_req_ready", 1)?;
    m.port(Dir::Output, "wr_req_addr", aw)?;
    m.port(Dir::Output, "wr_req_words", WORDS_BITS)?;
    m.port(Dir::Output, "wr_valid", 1)?;
    m.port(Dir::Input, "wr_ready", 1)?;
    m.port(Dir::Output, "wr_data", 64)?;
    m.port(Dir::Output, "wr_strb", 8)?;
    m.port(Dir::Input, "wr_resp_valid", 1)?;
    m.port_doc(
        Dir::Input,
        "wr_resp_resp",
        2,
        "the worst BRESP of the request's bursts",
    )?;
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
        "OUT_DATA",
        "OUT_RESP",
        "NEXT",
        "FAIL",
    ];
    m.section("states");
    for (i, st) in states.iter().enumerate() {
        m.localparam(&format!("S_{st}"), Expr::lit(5, i as u64), None)?;
    }
    m.reg("state_q", 5, None)?;

    m.section("descriptor");
    m.memory("desc_q", 32, 32, "the fetched descriptor, 32 words")?;
    let dfield = |word: u32, msb: u32, lsb: u32| format!("desc_q[{word}][{msb}:{lsb}]");
    let wires: Vec<(&str, String, u32)> = vec![
        ("d_op", dfield(0, 7, 0), 8),
        ("d_relu", "desc_q[0][8]".into(), 1),
        ("d_in_signed", "desc_q[0][9]".into(), 1),
        ("d_out_signed", "desc_q[0][10]".into(), 1),
        ("d_grouped", "desc_q[0][11]".into(), 1),
        ("d_ngroups", dfield(0, 23, 16), 8),
        ("d_active", dfield(0, 31, 24), 8),
        ("d_out_bits", dfield(1, 7, 4), 4),
        ("d_group_size", dfield(1, 31, 16), 16),
        ("d_in_c", dfield(2, 15, 0), 16),
        ("d_in_h", dfield(2, 31, 16), 16),
        ("d_in_w", dfield(3, 15, 0), 16),
        ("d_out_c", dfield(3, 31, 16), 16),
        ("d_pg0_bits", dfield(6, 3, 0), 4),
        ("d_pg0_shift", dfield(6, 10, 8), 3),
        ("d_pg1_bits", dfield(6, 19, 16), 4),
        ("d_pg1_shift", dfield(6, 26, 24), 3),
        ("d_pg2_bits", dfield(7, 3, 0), 4),
        ("d_pg2_shift", dfield(7, 10, 8), 3),
        ("d_pg3_bits", dfield(7, 19, 16), 4),
        ("d_pg3_shift", dfield(7, 26, 24), 3),
    ];
    for (name, text, w) in &wires {
        m.wire_assign(name, Expr::raw(text.clone(), *w), None)?;
    }
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
    m.comment(&[
        "A wire per check; CHECK reports the first failing one (docs/descriptor.md order).",
    ]);
    let k_bits = 16;
    m.wire_assign("d_k", Expr::raw("d_in_c", k_bits), Some("Dense: K = in_c"))?;
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
    let addr_hi_zero = addrs
        .iter()
        .map(|(n, _)| format!("({n}[63:{aw}] == {}'d0)", 64 - aw))
        .collect::<Vec<_>>()
        .join(" && ");
    let aligned = addrs
        .iter()
        .map(|(n, _)| format!("({n}[2:0] == 3'd0)"))
        .collect::<Vec<_>>()
        .join(" && ");
    m.wire_assign("ok_addr_range", Expr::raw(addr_hi_zero, 1), None)?;
    m.wire_assign("ok_aligned", Expr::raw(aligned, 1), None)?;
    m.wire_assign("ok_op", Expr::raw("d_op == 8'd1", 1), None)?;
    m.wire_assign(
        "ok_groups",
        Expr::raw(
            format!(
                "d_ngroups >= 8'd1 && d_ngroups <= 8'd{} && d_active >= 8'd1 && d_active <= d_ngroups",
                cfg.array.max_plane_groups
            ),
            1,
        ),
        None,
    )?;
    let mask = (0..8u32)
        .filter(|b| cfg.array.weight_bits.contains(&(b + 1)))
        .fold(0u32, |acc, b| acc | (1 << b));
    m.wire_assign(
        "bits_mask",
        Expr::lit(8, mask as u64),
        Some("supported weight bit-widths"),
    )?;
    for g in 0..4 {
        m.wire_assign(
            &format!("pg_ok{g}"),
            Expr::raw(
                format!(
                    "d_pg{g}_bits != 4'd0 && d_pg{g}_bits <= 4'd8 && bits_mask[d_pg{g}_bits[2:0] - 3'd1]"
                ),
                1,
            ),
            Some("stored bits supported (8 wraps to index 7)"),
        )?;
    }
    m.wire_assign(
        "ok_bits",
        Expr::raw(
            format!(
                "d_out_bits >= 4'd2 && d_out_bits <= 4'd{} && \
                 pg_ok0 && (d_active < 8'd2 || pg_ok1) && (d_active < 8'd3 || pg_ok2) && (d_active < 8'd4 || pg_ok3)",
                cfg.array.act_bits
            ),
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "ok_shape",
        Expr::raw(
            format!(
                "d_in_c != 16'd0 && d_out_c != 16'd0 && d_in_h == 16'd1 && d_in_w == 16'd1 && \
                 ({{4'd0, d_wpr}} * {{14'd0, d_planes}}) <= 20'd{wd} && \
                 {{3'd0, d_k}} <= 19'd{acap}",
                wd = s.wdepth,
                acap = s.adepth * c_n
            ),
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "ok_region",
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
    let code = |e: ErrorCode| format!("8'd{}", e.as_u8());
    m.wire_assign(
        "check_code",
        Expr::raw(
            format!(
                "!ok_op ? {} : !ok_groups ? {} : !ok_bits ? {} : !ok_shape ? {} : !ok_region ? {} : \
                 !(ok_aligned && ok_addr_range) ? {} : 8'd0",
                code(ErrorCode::BadOpcode),
                code(ErrorCode::BadGroups),
                code(ErrorCode::BadBits),
                code(ErrorCode::BadShape),
                code(ErrorCode::BadRegion),
                code(ErrorCode::Misaligned)
            ),
            8,
        ),
        None,
    )?;

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
    m.memory("out_q", 8, r_n, "per-row output code")?;
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
        "DESC_REQ", "ACT_REQ", "BIAS_REQ", "RQ_REQ", "GM_REQ", "W_REQ",
    ];
    let rd_data_states = [
        "DESC_DATA",
        "ACT_DATA",
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
             state_q == S_DESC_DATA || state_q == S_ACT_DATA || state_q == S_BIAS_DATA || \
             state_q == S_RQ_DATA || state_q == S_W_DATA"
        ),
    )?;
    core_rest(
        &mut m, cfg, &s, &clk, array_if, requant_if, lane, wab, aab, rab, rowb, cpw_log2, cpr_log2,
    )?;
    Ok(m.finish())
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
        "out_off",
        Expr::raw("o0_q[2:0]", 3),
        Some("byte lane of the tile's first output (out_addr is 8-byte aligned)"),
    )?;
    m.wire_assign(
        "out_words",
        Expr::raw(
            format!("({{{}'d0, out_off}} + nrows_w + {wb}'d7) >> 3", wb - 3),
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
                            "desc_count == 16'd0",
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
                for st in ["DESC", "ACT", "BIAS", "RQ", "GM", "W"] {
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
                        c.nb("state_q", "S_ACT_REQ");
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
                                    c.nb("state_q", "S_COMPUTE");
                                    c.nb("ck_q", "16'd0");
                                    c.nb("cq_q", "6'd0");
                                    c.nb("cw_base_q", format!("{}'d0", wab + 1));
                                },
                                |c| {
                                    c.nb("state_q", "S_W_REQ");
                                },
                            );
                        });
                    });
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
                        c.nb("out_q[rq_out_tag]", "rq_out_code");
                        c.nb("cnt_q", format!("cnt_q + {wb}'d1"));
                        c.if_("cnt_q == nrows_w - 20'd1", |c| {
                            c.nb("state_q", "S_OUT_REQ");
                        });
                    });
                });
                c.block("S_OUT_REQ:", |c| {
                    c.if_("!wr_in_win", |c| {
                        c.nb("err_code_q", code(ErrorCode::OutOfWindow));
                        c.nb("state_q", "S_FAIL");
                    });
                    c.if_("wr_req_fire", |c| {
                        c.nb("state_q", "S_OUT_DATA");
                        c.nb("col_q", "16'd0");
                    });
                });
                c.block("S_OUT_DATA:", |c| {
                    c.if_("wr_fire", |c| {
                        c.nb("col_q", "col_q + 16'd1");
                        c.if_(format!("{{{}'d0, col_q}} == out_words - {wb}'d1", wb - 16), |c| {
                            c.nb("state_q", "S_OUT_RESP");
                        });
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

    m.section("buffer writes");
    let mut bw = Code::new();
    bw.if_("state_q == S_ACT_DATA && rd_fire", |c| {
        for b in 0..s.abanks {
            let sel = if abank_log2 == 0 {
                "1'b1".to_string()
            } else {
                format!("cnt_q[{}:0] == {abank_log2}'d{b}", abank_log2 - 1)
            };
            c.if_(sel, |c| {
                c.nb(
                    format!("act{b}_mem[cnt_q[{}:{abank_log2}]]", aab + abank_log2 - 1),
                    "rd_data",
                );
            });
        }
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

    m.section("output words");
    let mut bytes = Vec::new();
    let mut strb = Vec::new();
    m.comment(&[
        "Output byte index of each lane of the current word; lanes before the tile's first",
        "output wrap to large unsigned values and fail the range check.",
    ]);
    for l in 0..8 {
        m.wire_assign(
            &format!("lane{l}_idx"),
            Expr::raw(
                format!("{{col_q[12:0], 3'd0}} + 16'd{l} - {{13'd0, out_off}}"),
                16,
            ),
            None,
        )?;
        m.wire_assign(
            &format!("lane{l}_on"),
            Expr::raw(format!("lane{l}_idx < {{{}'d0, nrows_q}}", 16 - rowb), 1),
            None,
        )?;
    }
    for l in (0..8).rev() {
        strb.push(format!("lane{l}_on"));
        bytes.push(format!(
            "(lane{l}_on ? out_q[lane{l}_idx[{}:0]] : 8'd0)",
            rib - 1
        ));
    }
    m.assign_raw("wr_data", format!("{{{}}}", bytes.join(", ")))?;
    m.assign_raw("wr_strb", format!("{{{}}}", strb.join(", ")))?;
    m.wire_assign(
        "wr_req_addr_d",
        Expr::raw(
            format!(
                "(d_out_addr[{}:0] + {{{}'d0, o0_q}}) & ~{aw}'d7",
                aw - 1,
                aw - 16
            ),
            aw,
        ),
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
