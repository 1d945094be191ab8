//! `caq_fetch`: the command processor and loader of the layer engine (the fetch stage).
//!
//! It runs the descriptor list: fetches each descriptor, checks it (`caq_decode`), and issues the
//! descriptor's reads in program order — tile 0's tables and planes, the input, then every further
//! tile — ahead of the execute stage: a tile's reads start as soon as a weight slot is free, so
//! loads overlap compute, and the next descriptor's first tile is fetched while the current one
//! runs. Reads are pipelined (up to [`ROUTE_DEPTH`] in flight); their beats come back in order and
//! are routed word by word into the buffers of the other stages (`l*_` ports). It hands a
//! descriptor to the other stages (`x_*` run parameters) when the previous one has completed — or,
//! for a one-tile Conv2d on a resident map after a Conv2d, as soon as the previous one's steps are
//! issued (docs/hardware.md, "Early hand-over") — and ends the job: `done` when the last descriptor completes, `error` with the first error in program
//! order once every earlier piece of work has finished. A Conv2d input map stays resident in the
//! feature map until a write request it watches overlaps it; a Conv2d whose input lies within it
//! (the map or a slice) does not read it, and the window generator starts at the slice's offset
//! (`fm_off`; docs/hardware.md, "A resident input map"). A Conv2d's written map is mirrored into
//! the feature map's other bank; a Conv2d reading it or a slice of it takes it from there, the
//! banks swapping ("The output mirror").
//!
//! Program order and errors: a descriptor's work is (check, tile 0 loads, input, tile 0 compute and
//! writes, tile 1 loads, ...). An error is kept with its position (descriptor, tile, phase); the
//! earliest wins. After one, no new read is issued; the other stages finish what was loaded before
//! it and go idle; then the error is reported and every stage cleared.
//!
//! Knows the descriptor, the schedule and the buffer layouts; knows nothing of the array.

use caq_spec::regmap::ErrorCode;
use caq_spec::{AccelConfig, CoreShape};

use super::decode::{DESC_BITS, desc_fields, fm_byte_bits};
use super::params::{X_EARLY_DOC, x_params};
use super::ports::{
    Side, WORDS_BITS, Which, clog2, control_inputs, resp_error_code, some_memory_ports,
    status_outputs,
};
use crate::array::MULT_BITS;
use crate::emit::{Code, Dir, Expr, Interface, Module, ModuleBuilder, fit, zext};
use crate::error::Result;

/// Read requests issued but not yet fully routed.
pub const ROUTE_DEPTH: u32 = 8;

/// Request kinds, as routed.
const KINDS: [&str; 7] = ["DESC", "BIAS", "RQ", "GM", "PLANE", "INPUT", "FMAP"];

/// Widths of the fetch stage, derived once from the shape.
#[derive(Clone, Copy, Debug)]
pub struct FetchWidths {
    pub aw: u32,
    pub rows: u32,
    /// Row index bits.
    pub ri: u32,
    /// 64-bit words per beat.
    pub nw: u32,
    /// Linear weight-bank index bits (words of one row's bank).
    pub wib: u32,
    /// Linear activation word index bits (adepth · C/8 words).
    pub aib: u32,
    /// Feature-map word index bits.
    pub fib: u32,
    /// Region-multiplier index bits (two slots of max_regions).
    pub gib: u32,
}

impl FetchWidths {
    pub fn of(s: &CoreShape) -> FetchWidths {
        FetchWidths {
            aw: s.addr_bits,
            rows: s.rows,
            ri: clog2(s.rows),
            nw: s.bus_words,
            wib: clog2(s.wdepth),
            aib: clog2(s.adepth * s.abanks),
            fib: clog2(s.fm_bytes / 8),
            gib: clog2(2 * s.max_regions),
        }
    }
}

/// The `caq_fetch` module; `decode_if` is the interface of `caq_decode`.
pub fn fetch(cfg: &AccelConfig, decode_if: &Interface) -> Result<Module> {
    let s = CoreShape::of(cfg);
    let w = FetchWidths::of(&s);
    let mut m = ModuleBuilder::new("caq_fetch")?;
    m.doc(&[
        "Fetch stage: runs the descriptor list, checks each descriptor (caq_decode), issues its",
        "reads ahead of compute and routes the beats into the other stages' buffers; hands each",
        "descriptor to the run side and ends the job. See caq-hdl core/fetch.rs.",
    ]);
    m.doc_line(format!(
        "{} reads in flight; {} words per beat; weight slots of {} words per row.",
        ROUTE_DEPTH,
        w.nw,
        s.wdepth / 2
    ));
    ports(&mut m, cfg, &s, &w)?;

    m.section("the fetched descriptor and its checks");
    m.reg(
        "fdesc_q",
        DESC_BITS,
        Some("the descriptor being fetched for (F)"),
    )?;
    let fdesc = m.sig("fdesc_q")?;
    desc_fields(&mut m, &fdesc)?;
    let dec_done = m.wire("dec_done", 1, None)?;
    let dec_code = m.wire("dec_code", 8, None)?;
    let mut conns = vec![
        ("clk", Expr::raw("clk", 1)),
        ("rst_n", Expr::raw("rst_n", 1)),
        ("go", Expr::raw("dec_go_q", 1)),
        ("desc", Expr::raw("fdesc_q", DESC_BITS)),
        ("desc_last", Expr::raw("idx_q + 16'd1 == count_q", 1)),
        ("win_base", Expr::raw("win_base", w.aw + 1)),
        ("win_limit", Expr::raw("win_limit", w.aw + 1)),
        ("done", dec_done.expr()),
        ("code", dec_code.expr()),
    ];
    let sched: Vec<(String, u32)> = decode_if
        .ports
        .iter()
        .filter(|p| p.name.starts_with("s_"))
        .map(|p| (p.name.clone(), p.width))
        .collect();
    let mut sched_wires = Vec::new();
    for (name, width) in &sched {
        sched_wires.push(m.wire(&format!("f_{name}"), *width, None)?);
    }
    for ((name, _), wire) in sched.iter().zip(&sched_wires) {
        conns.push((name.as_str(), wire.expr()));
    }
    m.reg("dec_go_q", 1, Some("pulse: start the checks"))?;
    m.instance(decode_if, "u_decode", conns)?;

    issuer(&mut m, cfg, &s, &w)?;
    router(&mut m, &s, &w)?;
    run_side(&mut m, &s, &w)?;
    job(&mut m, cfg, &w)?;
    Ok(m.finish())
}

fn ports(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape, w: &FetchWidths) -> Result<()> {
    let aw = w.aw;
    let nw = w.nw;
    control_inputs(m, aw)?;
    m.port(Dir::Input, "win_base", aw + 1)?;
    m.port(Dir::Input, "win_limit", aw + 1)?;
    status_outputs(m)?;
    m.port_doc(Dir::Output, "perf_bytes_rd", 16, "bytes routed this cycle")?;
    some_memory_ports(m, aw, cfg.bus_bytes(), Side::Core, Which::Read)?;
    m.port_group("loads into the execute stage's weight banks (one word per lane)");
    m.port(Dir::Output, "lw_valid", nw)?;
    m.port_doc(Dir::Output, "lw_row", nw * w.ri, "lane l at [l*RI +: RI]")?;
    m.port_doc(
        Dir::Output,
        "lw_index",
        nw * w.wib,
        "word index in the row's bank",
    )?;
    m.port(Dir::Output, "lw_data", nw * 64)?;
    m.port_group("loads into the activation banks (Dense inputs)");
    m.port(Dir::Output, "la_valid", nw)?;
    m.port_doc(
        Dir::Output,
        "la_index",
        nw * w.aib,
        "word index: entry * C/8 + bank",
    )?;
    m.port(Dir::Output, "la_data", nw * 64)?;
    m.port_group("loads into the window generator's feature map (Conv2d inputs)");
    m.port(Dir::Output, "lf_valid", nw)?;
    m.port_doc(
        Dir::Output,
        "lf_index",
        nw * w.fib,
        "64-bit word of the map",
    )?;
    m.port(Dir::Output, "lf_data", nw * 64)?;
    m.port_group("loads of region multipliers (execute stage)");
    m.port(Dir::Output, "lg_valid", 1)?;
    m.port(Dir::Output, "lg_row", w.ri)?;
    m.port_doc(
        Dir::Output,
        "lg_index",
        w.gib,
        "slot * max_regions + region",
    )?;
    m.port(Dir::Output, "lg_data", MULT_BITS)?;
    m.port_group("loads of the bias and requant tables (result stage)");
    m.port_doc(
        Dir::Output,
        "lt_bias_valid",
        2,
        "bias of rows lt_row and lt_row + 1 in lt_data",
    )?;
    m.port_doc(Dir::Output, "lt_rq_valid", 1, "requant entry of lt_row")?;
    m.port(Dir::Output, "lt_row", w.ri)?;
    m.port(Dir::Output, "lt_slot", 1)?;
    m.port(Dir::Output, "lt_data", 64)?;
    m.port_group(
        "write requests taken by the DMA engine (watched: a resident map they overlap is stale)",
    );
    m.port(Dir::Input, "wr_req_valid", 1)?;
    m.port(Dir::Input, "wr_req_ready", 1)?;
    m.port(Dir::Input, "wr_req_addr", aw)?;
    m.port(Dir::Input, "wr_req_words", WORDS_BITS)?;
    m.port_group("tokens");
    m.port_doc(
        Dir::Output,
        "tile_loaded",
        1,
        "pulse: a tile's tables and planes are loaded",
    )?;
    m.port_doc(Dir::Output, "tile_slot", 1, "its weight slot")?;
    m.port_doc(
        Dir::Output,
        "input_loaded",
        1,
        "pulse: the running descriptor's input is loaded",
    )?;
    m.port_group("the feature map's banks (to the window generator)");
    m.port_doc(
        Dir::Output,
        "fm_cur",
        1,
        "the bank that holds the running descriptor's input map (and takes loads)",
    )?;
    m.port_doc(
        Dir::Output,
        "fm_off",
        fm_byte_bits(s),
        "the running Conv2d's input map: its first byte's offset in bank fm_cur",
    )?;
    m.port_doc(
        Dir::Output,
        "mir_on",
        1,
        "the running Conv2d's writes are mirrored into the other bank",
    )?;
    m.port_doc(
        Dir::Output,
        "mir_base",
        aw,
        "the mirrored map's first byte (the running Conv2d's output_addr)",
    )?;
    m.port_doc(
        Dir::Input,
        "tile_done",
        1,
        "pulse: the oldest loaded tile is computed; its slot is free",
    )?;
    m.port_doc(
        Dir::Input,
        "x_done",
        1,
        "pulse: the running descriptor completed (outputs written)",
    )?;
    m.port_doc(
        Dir::Input,
        "res_err_valid",
        1,
        "pulse: the result stage failed",
    )?;
    m.port(Dir::Input, "res_err_code", 8)?;
    m.port_doc(Dir::Input, "res_err_tile", 16, "at this tile")?;
    m.port_doc(Dir::Input, "res_err_desc", 16, "of this descriptor")?;
    m.port_doc(
        Dir::Input,
        "x_tail",
        1,
        "the running Conv2d has only writes left (the next may start early)",
    )?;
    m.port(Dir::Input, "exec_idle", 1)?;
    m.port(Dir::Input, "window_idle", 1)?;
    m.port(Dir::Input, "result_idle", 1)?;
    m.port_doc(
        Dir::Output,
        "job_clear",
        1,
        "pulse: return to idle (soft reset, or the job ended on an error)",
    )?;
    m.port_group("run parameters (to the window, execute and result stages)");
    m.port_doc(
        Dir::Output,
        "x_start",
        1,
        "pulse: x_* hold a new descriptor",
    )?;
    for (name, width, doc) in x_params(s) {
        if doc.is_empty() {
            m.port(Dir::Output, name, width)?;
        } else {
            m.port_doc(Dir::Output, name, width, doc)?;
        }
    }
    m.port_doc(Dir::Output, "x_early", 1, X_EARLY_DOC)?;
    let _ = s;
    Ok(())
}

/// A request kind's localparam name.
fn kind(k: &str) -> String {
    format!("K_{k}")
}

/// The issuer: the list, the descriptor fetch and checks, the program of reads, their window
/// checks and the weight slots.
fn issuer(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape, w: &FetchWidths) -> Result<()> {
    let aw = w.aw;
    let (ri, rows) = (w.ri, w.rows);
    let wb = WORDS_BITS;
    let fbb = fm_byte_bits(s);
    let states = [
        "IDLE", "DESC", "DWAIT", "TILE", "TSETUP", "CHK", "ISSUE", "INWAIT", "NEXT", "FINISH",
        "HALT",
    ];
    m.section("issuer");
    for (i, st) in states.iter().enumerate() {
        m.localparam(&format!("F_{st}"), Expr::lit(4, i as u64), None)?;
    }
    for (i, k) in KINDS.iter().enumerate() {
        m.localparam(&kind(k), Expr::lit(3, i as u64), None)?;
    }
    let bw = w.wib.max(w.gib);
    for (name, width, doc) in [
        ("fst_q", 4, "issuer state"),
        ("count_q", 16, "DESC_COUNT"),
        ("idx_q", 16, "the descriptor being fetched for (F)"),
        ("base_q", aw, "its address"),
        ("fchk_q", 1, "F passed its checks"),
        ("fxfer_q", 1, "F has been handed to the run side"),
        ("tile_q", 16, "the tile being loaded"),
        ("rem_q", 16, "out_c - o0: output channels from this tile on"),
        ("nrows_q", ri + 1, "rows of the tile"),
        ("o0b_q", aw, "o0 * 4: the bias table's offset"),
        ("twoff_q", aw, "o0 * wpr * 8: the planes' offset"),
        ("tgoff_q", aw, "o0 * regions * 2: the region table's offset"),
        ("tslot_q", 1, "the tile's slot"),
        ("g_q", 2, "plane group being loaded"),
        ("p_q", 3, "plane within the group"),
        ("q_q", 6, "plane within the tile"),
        (
            "wq_q",
            w.wib,
            "bank index of the plane: slot base + q * wpr",
        ),
        ("pa_q", aw, "address of the plane's first row of the tile"),
        ("inp_q", 1, "the input has been issued"),
        ("pwords_q", wb, "nrows * wpr"),
        ("gcount_q", wb, "nrows * regions"),
        ("nxt_slot_q", 1, "slot of the next double-buffered tile"),
        ("sbusy_q", 2, "weight slots holding an uncomputed tile"),
        ("smask0_q", 2, "slots of the oldest uncomputed tile"),
        ("smask1_q", 2, "slots of the next one"),
        ("scnt_q", 2, "uncomputed tiles"),
        ("rq_kind_q", 3, "the request being issued"),
        ("rq_addr_q", aw, ""),
        ("rq_words_q", wb, ""),
        (
            "rq_base_q",
            bw,
            "bank base (planes) or slot base (region table)",
        ),
        ("rq_rowlen_q", 16, "words per row or input, regions per row"),
        ("rq_count_q", wb, "table entries, or words between inputs"),
        ("rq_tend_q", 1, "the tile's last request"),
        ("rq_lo_q", aw + 2, "first byte of the first beat"),
        ("rq_hi_q", aw + 2, "first byte past the last beat"),
        (
            "res_v_q",
            1,
            "the feature map holds a Conv2d input map that memory still holds",
        ),
        ("res_addr_q", aw, "its address (the bank's byte 0)"),
        (
            "res_end_q",
            aw + 2,
            "first byte past its defined bytes (registered: no adder before the compares)",
        ),
        (
            "res_skip_q",
            1,
            "pulse: the running descriptor's input map is resident, not read",
        ),
        (
            "fm_cur_q",
            1,
            "the feature-map bank of the resident map (the other: the mirror)",
        ),
        (
            "mir_v_q",
            1,
            "the other bank mirrors a Conv2d's written map that memory still holds",
        ),
        (
            "mir_own_q",
            1,
            "the mirror's writer is the running descriptor (its writes keep it)",
        ),
        (
            "mir_on_q",
            1,
            "the running descriptor's writes are mirrored",
        ),
        ("mir_addr_q", aw, "the mirrored map's address"),
        (
            "mir_end_q",
            aw + 2,
            "first byte past its bytes (its last word's bytes past them are not defined)",
        ),
        ("mir_bytes_q", fbb, "its bytes (at most a bank's)"),
        (
            "fm_off_q",
            fbb,
            "the running Conv2d's input map: its first byte's offset in its bank",
        ),
        ("wh_v_q", 1, "a write request was taken last cycle"),
        ("wh_lo_q", aw + 2, "its first byte"),
        ("wh_hi_q", aw + 2, "first byte past it"),
    ] {
        m.reg(name, width, if doc.is_empty() { None } else { Some(doc) })?;
    }
    let bb = u64::from(cfg.bus_bytes());
    // The window, registered from the inputs (their saturation is off the check's path; it does
    // not change while a job runs).
    m.reg("win_base_q", aw + 1, None)?;
    m.reg("win_limit_q", aw + 1, None)?;
    let mut wr = Code::new();
    wr.nb("win_base_q", "win_base");
    wr.nb("win_limit_q", "win_limit");
    m.always_ff(&m.sig("clk")?, wr)?;
    m.wire_assign(
        "rq_in_win",
        Expr::raw(
            "rq_lo_q >= {1'b0, win_base_q} && rq_hi_q <= {1'b0, win_limit_q}",
            1,
        ),
        Some("the request, rounded out to beats, lies in [WIN_BASE, WIN_LIMIT)"),
    )?;
    m.wire_assign(
        "route_full",
        Expr::raw(
            format!("rcnt_q == {}'d{ROUTE_DEPTH}", clog2(ROUTE_DEPTH + 1)),
            1,
        ),
        None,
    )?;
    m.assign_raw(
        "rd_req_valid",
        "fst_q == F_ISSUE && rq_in_win && !route_full && !err_q",
    )?;
    m.assign_raw("rd_req_addr", "rq_addr_q")?;
    m.assign_raw("rd_req_words", "rq_words_q")?;
    m.wire_assign(
        "rd_req_fire",
        Expr::raw("rd_req_valid && rd_req_ready", 1),
        None,
    )?;
    m.wire_assign(
        "t_mask",
        Expr::raw("f_s_slots2 ? (nxt_slot_q ? 2'b10 : 2'b01) : 2'b11", 2),
        Some("weight slots the next tile needs"),
    )?;
    m.wire_assign(
        "tile_free",
        Expr::raw("(sbusy_q & t_mask) == 2'b00 && scnt_q != 2'd2", 1),
        Some("they hold no uncomputed tile"),
    )?;
    m.wire_assign("claim", Expr::raw("fst_q == F_TILE && tile_free", 1), None)?;
    m.wire_assign(
        "slot_release",
        Expr::raw("tile_done && scnt_q != 2'd0", 1),
        None,
    )?;
    m.wire_assign(
        "g_bits",
        Expr::raw(
            "(g_q == 2'd0) ? d_pg0_bits : (g_q == 2'd1) ? d_pg1_bits : (g_q == 2'd2) ? d_pg2_bits : d_pg3_bits",
            4,
        ),
        Some("bits of plane group g"),
    )?;
    m.wire_assign(
        "g_next_addr",
        Expr::raw(
            format!(
                "((g_q == 2'd0) ? d_weight_addr1[{a}:0] : (g_q == 2'd1) ? d_weight_addr2[{a}:0] : \
                 d_weight_addr3[{a}:0]) + twoff_q",
                a = aw - 1
            ),
            aw,
        ),
        Some("the next group's first plane, this tile"),
    )?;
    m.wire_assign(
        "plane_next_addr",
        Expr::raw(
            "({1'b0, p_q} == g_bits - 4'd1) ? g_next_addr : pa_q + f_s_plane_stride",
            aw,
        ),
        Some("the next plane's rows of this tile"),
    )?;
    let slot_half = s.wdepth / 2;
    let gslot = s.max_regions;
    let steps = [
        ("o0b_step", format!("{aw}'d{}", 4 * rows)),
        (
            "tw_step",
            format!(
                "{{{z}'d0, f_s_wpr, {sh}'d0}}",
                z = aw - 16 - (ri + 3),
                sh = ri + 3
            ),
        ),
        (
            "tg_step",
            format!(
                "{{{z}'d0, f_s_regions, {sh}'d0}}",
                z = aw - 16 - (ri + 1),
                sh = ri + 1
            ),
        ),
    ];
    for (name, value) in steps {
        m.wire_assign(name, Expr::raw(value, aw), Some("per tile: R rows further"))?;
    }

    // A resident map (docs/hardware.md, "A resident input map"): the Conv2d input map last
    // loaded into the feature map, until a write request taken by the DMA engine overlaps it
    // (registered, then compared: every write of a descriptor is answered before the next is
    // handed over, so the comparison is done long before the map could be reused — except at an
    // early hand-over, which requires the previous descriptor's output not to touch the map).
    m.wire_assign(
        "wh_hit",
        Expr::raw(
            "wh_v_q && wh_lo_q < res_end_q && {2'd0, res_addr_q} < wh_hi_q",
            1,
        ),
        Some("the write request taken last cycle overlaps the resident map"),
    )?;
    let in_addr = format!("d_input_addr[{}:0]", aw - 1);
    m.wire_assign(
        "in_end",
        Expr::raw(
            format!(
                "{{2'd0, {in_addr}}} + {}",
                zext("f_s_in_bytes", fbb, aw + 2)
            ),
            aw + 2,
        ),
        Some("first byte past the descriptor's input map"),
    )?;
    m.wire_assign(
        "in_resident",
        Expr::raw(
            format!("d_op == 8'd2 && {in_addr} >= res_addr_q && in_end <= res_end_q"),
            1,
        ),
        Some("the descriptor's Conv2d input map lies within the resident map's bytes"),
    )?;
    // The output mirror (docs/hardware.md, "The output mirror"): the other bank holds the map
    // the last Conv2d wrote, until a later descriptor's write request overlaps it.
    m.wire_assign(
        "wh_mir_hit",
        Expr::raw(
            "wh_v_q && !mir_own_q && wh_lo_q < mir_end_q && {2'd0, mir_addr_q} < wh_hi_q",
            1,
        ),
        Some("the write request taken last cycle, a later descriptor's, overlaps the mirror"),
    )?;
    m.wire_assign(
        "in_mirror",
        Expr::raw(
            format!("d_op == 8'd2 && {in_addr} >= mir_addr_q && in_end <= mir_end_q"),
            1,
        ),
        Some("the descriptor's Conv2d input map lies within the mirrored bytes"),
    )?;
    // Registered, off the state machine's path: their inputs hold still long before F_INWAIT
    // decides (the descriptor's fields and schedule; the banks' maps, which change at F_INWAIT,
    // at START and when a write request overlaps them, and the previous descriptor's last write
    // request is answered before this one is handed over, or cannot touch the resident map at an
    // early hand-over); the decision also reads res_v_q and mir_v_q.
    for (name, doc) in [
        ("in_resident_q", "in_resident, a cycle ago"),
        ("in_mirror_q", "in_mirror, a cycle ago"),
    ] {
        m.reg(name, 1, Some(doc))?;
    }
    m.wire_assign(
        "grow",
        Expr::raw(
            format!(
                "d_op == 8'd2 && {{2'd0, d_output_addr[{}:0]}} == mir_end_q && \
                 {{2'b0, mir_bytes_q}} + {{2'b0, f_s_out_bytes}} + {{{z}'d0, mir_addr_q[2:0]}} \
                 <= {w}'d{}",
                aw - 1,
                s.fm_bytes,
                w = fbb + 2,
                z = fbb - 1
            ),
            1,
        ),
        Some(
            "the descriptor's Conv2d output follows the mirrored map and both fit a bank (from \
             the word the mirrored map starts in)",
        ),
    )?;
    m.reg("grow_q", 1, Some("grow, a cycle ago"))?;
    m.wire_assign(
        "mir_grows",
        Expr::raw(
            "grow_q && mir_v_q && !(in_mirror_q && !(in_resident_q && res_v_q))",
            1,
        ),
        Some("at F_INWAIT: the descriptor's output grows the mirror (it does not take it)"),
    )?;
    for name in ["res_off_q", "mir_off_q"] {
        m.reg(
            name,
            fbb,
            Some("the input map's offset from the bank's first byte, a cycle ago"),
        )?;
    }
    m.assign_raw("fm_cur", "fm_cur_q")?;
    m.assign_raw("fm_off", "fm_off_q")?;
    m.assign_raw("mir_on", "mir_on_q")?;
    m.assign_raw("mir_base", format!("{{mir_addr_q[{}:3], 3'd0}}", aw - 1))?;
    let mut f = Code::new();
    f.nb("dec_go_q", "1'b0");
    f.nb("res_skip_q", "1'b0");
    f.nb("in_mirror_q", "in_mirror");
    f.nb("in_resident_q", "in_resident");
    f.nb("grow_q", "grow");
    // A bank holds its map from the 8-byte word the map starts in.
    for (reg, base) in [("res_off_q", "res_addr_q"), ("mir_off_q", "mir_addr_q")] {
        f.nb(
            reg,
            format!("d_input_addr[{b}:0] - {{{base}[{b}:3], 3'd0}}", b = fbb - 1),
        );
    }
    f.nb("wh_v_q", "wr_req_valid && wr_req_ready");
    f.nb("wh_lo_q", "{2'd0, wr_req_addr}");
    f.nb("wh_hi_q", bytes_end("wr_req_addr", "wr_req_words", aw));
    f.if_("wh_hit", |c| {
        c.nb("res_v_q", "1'b0");
    });
    f.if_("wh_mir_hit", |c| {
        c.nb("mir_v_q", "1'b0");
    });
    f.if_else(
        "!rst_n || job_clear",
        |c| {
            c.nb("res_v_q", "1'b0");
            c.nb("fm_cur_q", "1'b0");
            c.nb("mir_v_q", "1'b0");
            c.nb("mir_own_q", "1'b0");
            c.nb("mir_on_q", "1'b0");
            c.nb("fst_q", "F_IDLE");
            c.nb("sbusy_q", "2'b00");
            c.nb("scnt_q", "2'd0");
            c.nb("nxt_slot_q", "1'b0");
            c.nb("fchk_q", "1'b0");
            c.nb("fxfer_q", "1'b0");
        },
        |c| {
            c.comment("weight slots: a tile claims its slots as its loads start; tile_done frees the oldest");
            c.nb(
                "sbusy_q",
                "(sbusy_q & ~(slot_release ? smask0_q : 2'b00)) | (claim ? t_mask : 2'b00)",
            );
            c.case_block("case ({claim, slot_release})", |c| {
                c.block("2'b10:", |c| {
                    c.if_else(
                        "scnt_q == 2'd0",
                        |c| {
                            c.nb("smask0_q", "t_mask");
                        },
                        |c| {
                            c.nb("smask1_q", "t_mask");
                        },
                    );
                    c.nb("scnt_q", "scnt_q + 2'd1");
                });
                c.block("2'b01:", |c| {
                    c.nb("smask0_q", "smask1_q");
                    c.nb("scnt_q", "scnt_q - 2'd1");
                });
                c.block("2'b11:", |c| {
                    c.if_else(
                        "scnt_q == 2'd1",
                        |c| {
                            c.nb("smask0_q", "t_mask");
                        },
                        |c| {
                            c.nb("smask0_q", "smask1_q");
                            c.nb("smask1_q", "t_mask");
                        },
                    );
                });
                c.line("default: ;");
            });
            c.if_("fxfer_set", |c| {
                c.nb("fxfer_q", "1'b1");
            });
            c.comment(
                "an early hand-over's input map is resident (eh_q): it counts as loaded as the \
                 descriptor starts",
            );
            c.if_("fxfer_set && x_busy_q", |c| {
                c.nb("res_skip_q", "1'b1");
                c.nb("fm_off_q", "res_off_q");
            });
            c.case_block("case (fst_q)", |c| {
                c.block("F_IDLE:", |c| {
                    c.if_("start && start_code == 8'd0", |c| {
                        c.comment("the host may have written memory since the last job");
                        c.nb("res_v_q", "1'b0");
                        c.nb("mir_v_q", "1'b0");
                        c.nb("count_q", "desc_count");
                        c.nb("idx_q", "16'd0");
                        c.nb("base_q", "desc_addr");
                        c.nb("fst_q", "F_DESC");
                    });
                });
                c.block("F_DESC:", |c| {
                    c.comment("a new descriptor (F is free: handed over, every read issued)");
                    c.nb("fchk_q", "1'b0");
                    c.nb("fxfer_q", "1'b0");
                    c.nb("rq_kind_q", kind("DESC"));
                    c.nb("rq_addr_q", "base_q");
                    c.nb("rq_words_q", format!("{wb}'d16"));
                    c.nb("rq_tend_q", "1'b0");
                    c.nb("fst_q", "F_CHK");
                });
                c.block("F_DWAIT:", |c| {
                    c.comment("the descriptor's words are routed; then the checks (caq_decode)");
                    c.if_("dd_q", |c| {
                        c.nb("dec_go_q", "1'b1");
                    });
                    c.if_("dec_done && dec_code == 8'd0", |c| {
                        c.nb("fchk_q", "1'b1");
                        c.nb("tile_q", "16'd0");
                        c.nb("rem_q", "d_out_c");
                        c.nb("o0b_q", format!("{aw}'d0"));
                        c.nb("twoff_q", format!("{aw}'d0"));
                        c.nb("tgoff_q", format!("{aw}'d0"));
                        c.nb("inp_q", "1'b0");
                        c.nb("fst_q", "F_TILE");
                    });
                });
                c.block("F_TILE:", |c| {
                    c.comment("wait for the tile's slots");
                    c.if_("tile_free", |c| {
                        c.nb("tslot_q", "f_s_slots2 & nxt_slot_q");
                        c.if_("f_s_slots2", |c| {
                            c.nb("nxt_slot_q", "!nxt_slot_q");
                        });
                        c.nb(
                            "nrows_q",
                            format!(
                                "(rem_q < 16'd{rows}) ? rem_q[{ri}:0] : {w1}'d{rows}",
                                w1 = ri + 1
                            ),
                        );
                        c.nb("fst_q", "F_TSETUP");
                    });
                });
                c.block("F_TSETUP:", |c| {
                    c.comment("the tile's word counts; its first request: the bias table");
                    c.nb(
                        "pwords_q",
                        format!(
                            "{{{z}'d0, nrows_q}} * {{{z2}'d0, f_s_wpr}}",
                            z = wb - ri - 1,
                            z2 = wb - 16
                        ),
                    );
                    c.nb(
                        "gcount_q",
                        format!(
                            "{{{z}'d0, nrows_q}} * {{{z2}'d0, f_s_regions}}",
                            z = wb - ri - 1,
                            z2 = wb - 16
                        ),
                    );
                    c.nb("rq_kind_q", kind("BIAS"));
                    c.nb("rq_addr_q", format!("d_bias_addr[{}:0] + o0b_q", aw - 1));
                    c.nb(
                        "rq_words_q",
                        format!("({{{z}'d0, nrows_q}} + {wb}'d1) >> 1", z = wb - ri - 1),
                    );
                    c.nb("rq_count_q", format!("{{{}'d0, nrows_q}}", wb - ri - 1));
                    c.nb("rq_tend_q", "1'b0");
                    c.nb("g_q", "2'd0");
                    c.nb("p_q", "3'd0");
                    c.nb("q_q", "6'd0");
                    c.nb(
                        "wq_q",
                        format!(
                            "(f_s_slots2 && tslot_q) ? {b}'d{slot_half} : {b}'d0",
                            b = w.wib
                        ),
                    );
                    c.nb("pa_q", format!("d_weight_addr0[{}:0] + twoff_q", aw - 1));
                    c.nb("fst_q", "F_CHK");
                });
                c.block("F_CHK:", |c| {
                    c.comment("the request rounded out to whole beats, for the window check");
                    c.nb(
                        "rq_lo_q",
                        format!("{{2'd0, rq_addr_q}} & ~{}'d{}", aw + 2, bb - 1),
                    );
                    c.nb(
                        "rq_hi_q",
                        format!(
                            "({{2'd0, rq_addr_q}} + {{{z}'d0, rq_words_q, 3'd0}} + {w2}'d{b1}) & ~{w2}'d{b1}",
                            z = aw + 2 - wb - 3,
                            w2 = aw + 2,
                            b1 = bb - 1
                        ),
                    );
                    c.nb("fst_q", "F_ISSUE");
                });
                c.block("F_ISSUE:", |c| {
                    c.if_("rd_req_fire", |c| {
                        issue_next(c, &Next { aw, wb, ri, wib: w.wib, rqb: bw, gslot, rows });
                    });
                });
                c.block("F_INWAIT:", |c| {
                    c.comment("the input waits until the run side holds this descriptor");
                    c.if_("fxfer_q", |c| {
                        c.nb("inp_q", "1'b1");
                        c.comment(
                            "the previous descriptor has completed, or (early hand-over) its \
                             writes are still to come: they are its own, inside a grown mirror, \
                             or outside this one's map",
                        );
                        c.nb("mir_own_q", "1'b0");
                        c.nb("mir_on_q", "1'b0");
                        c.if_("d_op == 8'd2", |c| {
                            c.comment("this Conv2d's written map becomes the mirror");
                            let out = format!("d_output_addr[{}:0]", aw - 1);
                            c.nb("mir_v_q", "f_s_mirror");
                            c.nb("mir_own_q", "1'b1");
                            c.nb("mir_on_q", "f_s_mirror");
                            c.comment(
                                "written right after the mirrored map (and not taking it): the \
                                 mirror grows, from the same address",
                            );
                            c.if_else(
                                "mir_grows",
                                |c| {
                                    c.nb("mir_bytes_q", "mir_bytes_q + f_s_out_bytes");
                                },
                                |c| {
                                    c.nb("mir_addr_q", &out);
                                    c.nb("mir_bytes_q", "f_s_out_bytes");
                                },
                            );
                            c.comment(
                                "its bytes' end: a write request (whole words) overlaps them \
                                 exactly when it overlaps their words",
                            );
                            c.nb(
                                "mir_end_q",
                                format!("{{2'd0, {out}}} + {}", zext("f_s_out_bytes", fbb, aw + 2)),
                            );
                        });
                        c.if_else(
                            "in_resident_q && res_v_q",
                            |c| {
                                c.comment(
                                    "the map lies in the resident one, unchanged in memory: no \
                                     read, its slice from the offset",
                                );
                                c.comment("an early hand-over announced it already");
                                c.nb("res_skip_q", "!x_early_q");
                                c.nb("fm_off_q", "res_off_q");
                                c.nb("fst_q", AFTER_INPUT);
                            },
                            |c| {
                                c.if_else(
                                    "in_mirror_q && mir_v_q",
                                    |c| {
                                        c.comment(
                                            "the map lies in the mirror: the banks swap, no read; \
                                             the whole mirror is the resident map",
                                        );
                                        c.nb("fm_cur_q", "!fm_cur_q");
                                        c.nb("res_skip_q", "1'b1");
                                        c.nb("fm_off_q", "mir_off_q");
                                        c.nb("fst_q", AFTER_INPUT);
                                        make_resident(c, "mir_addr_q", "mir_end_q");
                                    },
                                    |c| {
                                        c.comment(
                                            "read from the word the map starts in, the map from \
                                             its byte there",
                                        );
                                        c.nb(
                                            "fm_off_q",
                                            format!("{{{}'d0, d_input_addr[2:0]}}", fbb - 3),
                                        );
                                        issue_input(c, &format!("{{d_input_addr[{}:3], 3'd0}}", aw - 1), aw);
                                    },
                                );
                            },
                        );
                    });
                });
                c.block("F_FINISH:", |c| {
                    c.if_("!x_busy_q", |c| {
                        c.nb("fst_q", "F_IDLE");
                    });
                });
                c.block("F_NEXT:", |c| {
                    c.if_else(
                        "idx_q + 16'd1 == count_q",
                        |c| {
                            c.nb("fst_q", "F_FINISH");
                        },
                        |c| {
                            c.if_("fxfer_q", |c| {
                                c.nb("idx_q", "idx_q + 16'd1");
                                c.nb("base_q", format!("base_q + {aw}'d128"));
                                c.nb("fst_q", "F_DESC");
                            });
                        },
                    );
                });
                c.line("default: ;");
            });
            c.if_("err_any && fst_q != F_IDLE", |c| {
                c.nb("fst_q", "F_HALT");
            });
        },
    );
    let clk = m.sig("clk")?;
    m.always_ff(&clk, f)?;
    Ok(())
}

/// The first byte past `words` 64-bit words from the `aw`-bit byte address `addr`, in aw + 2
/// bits (no overflow for any address and word count).
fn bytes_end(addr: &str, words: &str, aw: u32) -> String {
    format!(
        "{{2'd0, {addr}}} + {{{z}'d0, {words}, 3'd0}}",
        z = aw + 2 - WORDS_BITS - 3
    )
}

/// The bank's map from `addr` to `end` (its defined bytes) is the resident one.
fn make_resident(c: &mut Code, addr: &str, end: &str) {
    c.nb("res_v_q", "1'b1");
    c.nb("res_addr_q", addr);
    c.nb("res_end_q", end);
}

/// The descriptor's input read at `in_addr`: a Conv2d's map into the feature map's current bank
/// (it becomes the resident map), a Dense layer's K-vectors into the activation banks.
fn issue_input(c: &mut Code, in_addr: &str, aw: u32) {
    c.nb(
        "rq_kind_q",
        format!("d_op == 8'd2 ? {} : {}", kind("FMAP"), kind("INPUT")),
    );
    c.nb("rq_addr_q", in_addr);
    c.nb("rq_words_q", "f_s_in_words");
    c.nb("rq_tend_q", "1'b0");
    c.nb("fst_q", "F_CHK");
    c.if_("d_op == 8'd2", |c| {
        make_resident(c, in_addr, &bytes_end(in_addr, "f_s_in_words", aw));
    });
}

/// The issuer's state once a descriptor's input is issued (or resident): its next tile, or the
/// next descriptor.
const AFTER_INPUT: &str = "(tile_q == f_s_tiles) ? F_NEXT : F_TILE";

/// Widths `issue_next` writes with.
struct Next {
    aw: u32,
    wb: u32,
    ri: u32,
    wib: u32,
    /// Width of `rq_base_q`.
    rqb: u32,
    /// Region-table entries per slot.
    gslot: u32,
    rows: u32,
}

/// What follows a request the DMA engine took: the next request of the program, or the state
/// that waits for it.
fn issue_next(c: &mut Code, n: &Next) {
    let Next {
        aw,
        wb,
        ri,
        wib,
        rqb,
        gslot,
        rows,
    } = *n;
    let widen = |v: &str| {
        if rqb == wib {
            v.to_owned()
        } else {
            format!("{{{}'d0, {v}}}", rqb - wib)
        }
    };
    let first_plane = |c: &mut Code| {
        c.nb("rq_kind_q", kind("PLANE"));
        c.nb("rq_addr_q", "pa_q");
        c.nb("rq_words_q", "pwords_q");
        c.nb("rq_base_q", widen("wq_q"));
        c.nb("rq_rowlen_q", "f_s_wpr");
        c.nb("rq_tend_q", "f_s_planes == 6'd1");
        c.nb("fst_q", "F_CHK");
    };
    c.case_block("case (rq_kind_q)", |c| {
        c.block(format!("{}:", kind("DESC")), |c| {
            c.nb("fst_q", "F_DWAIT");
        });
        c.block(format!("{}:", kind("BIAS")), |c| {
            c.nb("rq_kind_q", kind("RQ"));
            c.nb(
                "rq_addr_q",
                format!(
                    "d_requant_addr[{}:0] + {{o0b_q[{}:0], 1'b0}}",
                    aw - 1,
                    aw - 2
                ),
            );
            c.nb("rq_words_q", format!("{{{}'d0, nrows_q}}", wb - ri - 1));
            c.nb("fst_q", "F_CHK");
        });
        c.block(format!("{}:", kind("RQ")), |c| {
            c.if_else(
                "d_grouped",
                |c| {
                    c.nb("rq_kind_q", kind("GM"));
                    c.nb(
                        "rq_addr_q",
                        format!("d_group_mult_addr[{}:0] + tgoff_q", aw - 1),
                    );
                    c.nb("rq_words_q", format!("(gcount_q + {wb}'d3) >> 2"));
                    c.nb("rq_count_q", "gcount_q");
                    c.nb("rq_rowlen_q", "f_s_regions");
                    c.nb("rq_base_q", format!("tslot_q ? {rqb}'d{gslot} : {rqb}'d0"));
                    c.nb("fst_q", "F_CHK");
                },
                first_plane,
            );
        });
        c.block(format!("{}:", kind("GM")), first_plane);
        c.block(format!("{}:", kind("PLANE")), |c| {
            c.if_else(
                "q_q + 6'd1 == f_s_planes",
                |c| {
                    c.comment(
                        "the tile is issued: then the input (after tile 0), or the next tile",
                    );
                    c.nb("tile_q", "tile_q + 16'd1");
                    c.nb("rem_q", format!("rem_q - 16'd{rows}"));
                    c.nb("o0b_q", "o0b_q + o0b_step");
                    c.nb("twoff_q", "twoff_q + tw_step");
                    c.nb("tgoff_q", "tgoff_q + tg_step");
                    c.nb(
                        "fst_q",
                        "!inp_q ? F_INWAIT : (tile_q + 16'd1 == f_s_tiles) ? F_NEXT : F_TILE",
                    );
                },
                |c| {
                    c.nb("q_q", "q_q + 6'd1");
                    c.if_else(
                        "{1'b0, p_q} == g_bits - 4'd1",
                        |c| {
                            c.nb("g_q", "g_q + 2'd1");
                            c.nb("p_q", "3'd0");
                        },
                        |c| {
                            c.nb("p_q", "p_q + 3'd1");
                        },
                    );
                    c.nb("pa_q", "plane_next_addr");
                    c.nb("rq_addr_q", "plane_next_addr");
                    c.nb("wq_q", format!("wq_q + {}", fit("f_s_wpr", 16, wib)));
                    m_base(c, &widen, wib);
                    c.nb("rq_tend_q", "q_q + 6'd2 == f_s_planes");
                    c.nb("fst_q", "F_CHK");
                },
            );
        });
        c.block(format!("{}, {}:", kind("INPUT"), kind("FMAP")), |c| {
            c.nb("fst_q", AFTER_INPUT);
        });
        c.line("default: ;");
    });
}

/// The next plane's bank base: this plane's plus one plane row.
fn m_base(c: &mut Code, widen: &dyn Fn(&str) -> String, wib: u32) {
    c.nb(
        "rq_base_q",
        widen(&format!("(wq_q + {})", fit("f_s_wpr", 16, wib))),
    );
}

/// The router: the entries of the issued reads, in order, and their beats routed word by word
/// (tables, descriptor words and region multipliers one unit per cycle; planes, feature maps and
/// inputs a whole beat per cycle) into the other stages' buffers. Dense inputs go one word per
/// cycle where a beat holds more words than there are activation banks (C = 8 on a 128-bit bus:
/// both words of a beat would land in the one bank).
fn router(m: &mut ModuleBuilder, s: &CoreShape, w: &FetchWidths) -> Result<()> {
    let wb = WORDS_BITS;
    let nw = w.nw;
    let input_slow = s.abanks < nw;
    let ri = w.ri;
    let rqb = w.wib.max(w.gib);
    // Wide enough for every buffer the router writes: weights, activations, feature map and
    // region multipliers (a region table can be the deepest, e.g. 1-KiB activation banks with
    // regions of 8).
    let ib = w.wib.max(w.aib).max(w.fib).max(w.gib);
    let lb = clog2(nw).max(1);
    let pb = clog2(ROUTE_DEPTH);
    let cb = clog2(ROUTE_DEPTH + 1);
    m.section("route entries: the reads issued, oldest first");
    let fields: [(&str, u32, &str); 10] = [
        ("kind", 3, "rq_kind_q"),
        ("words", wb, "rq_words_q"),
        ("lane", lb, "rq_lane"),
        ("base", rqb, "rq_base_q"),
        ("rowlen", 16, "rq_rowlen_q"),
        ("count", wb, "rq_count_q"),
        ("slot", 1, "tslot_q"),
        ("tend", 1, "rq_tend_q"),
        ("d", 16, "idx_q"),
        ("t", 16, "tile_q"),
    ];
    let lane0 = if nw == 1 {
        "1'b0".to_owned()
    } else {
        "rq_addr_q[3]".to_owned()
    };
    m.wire_assign(
        "rq_lane",
        Expr::raw(lane0, lb),
        Some("the request's first word's place in its beat"),
    )?;
    for (f, width, _) in fields {
        m.memory(&format!("re_{f}"), width, ROUTE_DEPTH, "route entry field")?;
    }
    m.reg("rwp_q", pb, None)?;
    m.reg("rrp_q", pb, None)?;
    m.reg("rcnt_q", cb, Some("entries not yet taken by the router"))?;
    m.section("the router's current request");
    for (name, width, doc) in [
        ("rt_busy_q", 1, "a request's beats are being routed"),
        (
            "rt_drain_q",
            1,
            "after a read error: drop every beat still due",
        ),
        ("rt_kind_q", 3, ""),
        ("rt_left_q", wb, "words left"),
        ("rt_lane_q", lb, "next word of the beat"),
        ("rt_sub_q", 2, "region multiplier within the word"),
        ("rt_r_q", ri + 1, "row (tables, planes, region multipliers)"),
        (
            "rt_c_q",
            16,
            "word within a row or input; region within a row; descriptor word",
        ),
        ("rt_idx_q", ib, "buffer index of the next word"),
        (
            "rt_base_q",
            ib,
            "the plane's or region table's bank base; the current input's first word",
        ),
        ("rt_rowlen_q", 16, ""),
        ("rt_count_q", wb, ""),
        ("rt_slot_q", 1, ""),
        ("rt_tend_q", 1, ""),
        ("rt_d_q", 16, ""),
        ("rt_t_q", 16, ""),
    ] {
        m.reg(name, width, if doc.is_empty() { None } else { Some(doc) })?;
    }
    let is = |k: &str| format!("rt_kind_q == {}", kind(k));
    m.wire_assign(
        "rt_fast",
        Expr::raw(
            if input_slow {
                format!("{} || {}", is("PLANE"), is("FMAP"))
            } else {
                format!("{} || {} || {}", is("PLANE"), is("INPUT"), is("FMAP"))
            },
            1,
        ),
        Some("a whole beat per cycle"),
    )?;
    m.wire_assign(
        "rt_unit_last",
        Expr::raw(
            format!(
                "!({}) || rt_sub_q == 2'd3 || rt_count_q == {wb}'d1",
                is("GM")
            ),
            1,
        ),
        Some("slow kinds: this unit ends its word"),
    )?;
    let beat_end = if nw == 1 {
        "1'b1".to_owned()
    } else {
        format!("rt_lane_q == 1'd1 || rt_left_q == {wb}'d1")
    };
    m.wire_assign(
        "rd_ready_w",
        Expr::raw(
            format!("rt_busy_q && (rt_drain_q || rt_fast || (rt_unit_last && ({beat_end})))"),
            1,
        ),
        None,
    )?;
    m.assign_raw("rd_ready", "rd_ready_w")?;
    m.wire_assign(
        "rt_unit",
        Expr::raw("rt_busy_q && rd_valid", 1),
        Some("a unit (or, fast, a beat) is routed this cycle"),
    )?;
    m.wire_assign(
        "rt_bad",
        Expr::raw("rt_unit && !rt_drain_q && rd_resp[1]", 1),
        Some("the beat carries SLVERR or DECERR"),
    )?;
    // Lanes of the beat that belong to the request, their offset among the words routed now.
    let lane_ok: Vec<String> = (0..nw)
        .map(|l| {
            if nw == 1 {
                format!("rt_left_q != {wb}'d0")
            } else if l == 0 {
                format!("rt_lane_q == 1'd0 && rt_left_q != {wb}'d0")
            } else {
                format!(
                    "(rt_lane_q == 1'd0 && rt_left_q >= {wb}'d2) || (rt_lane_q == 1'd1 && rt_left_q != {wb}'d0)"
                )
            }
        })
        .collect();
    for (l, ok) in lane_ok.iter().enumerate() {
        m.wire_assign(&format!("ln{l}_in"), Expr::raw(ok.clone(), 1), None)?;
        let first = if l == 0 || nw == 1 {
            "1'b1".to_owned()
        } else {
            "rt_lane_q == 1'd1".to_owned()
        };
        m.wire_assign(
            &format!("ln{l}_first"),
            Expr::raw(first, 1),
            Some("the lane holds the first word routed this cycle"),
        )?;
    }
    let nsum = (0..nw)
        .map(|l| format!("{{{}'d0, ln{l}_in}}", wb - 1))
        .collect::<Vec<_>>()
        .join(" + ");
    m.wire_assign(
        "rt_n",
        Expr::raw(
            format!(
                "(rt_drain_q || rt_fast) ? ({nsum}) : {{{}'d0, rt_unit_last}}",
                wb - 1
            ),
            wb,
        ),
        Some("words consumed by a routed unit or beat"),
    )?;
    // Successor counters of a fast request: (row, col, index) after one word. Planes restart
    // the index at the plane's bank base on every row; inputs and maps count on.
    let rl = "rt_rowlen_q";
    let succ: &[(&str, &str)] = if nw == 1 {
        &[("1", "rt")]
    } else {
        &[("1", "rt"), ("2", "s1")]
    };
    for &(sfx, prev) in succ {
        let q = if prev == "rt" { "_q" } else { "" };
        let (c, idx, r) = (
            format!("{prev}_c{q}"),
            format!("{prev}_idx{q}"),
            format!("{prev}_r{q}"),
        );
        m.wire_assign(
            &format!("s{sfx}_wrap"),
            Expr::raw(format!("{c} + 16'd1 == {rl}"), 1),
            None,
        )?;
        m.wire_assign(
            &format!("s{sfx}_c"),
            Expr::raw(format!("s{sfx}_wrap ? 16'd0 : {c} + 16'd1"), 16),
            None,
        )?;
        m.wire_assign(
            &format!("s{sfx}_r"),
            Expr::raw(format!("s{sfx}_wrap ? {r} + {}'d1 : {r}", ri + 1), ri + 1),
            None,
        )?;
        m.wire_assign(
            &format!("s{sfx}_idx"),
            Expr::raw(
                format!(
                    "({} && s{sfx}_wrap) ? rt_base_q : {idx} + {ib}'d1",
                    is("PLANE")
                ),
                ib,
            ),
            None,
        )?;
    }
    m.wire_assign(
        "rt_word",
        Expr::raw(
            if nw == 1 {
                "rd_data".to_owned()
            } else {
                "rt_lane_q ? rd_data[127:64] : rd_data[63:0]".to_owned()
            },
            64,
        ),
        Some("slow kinds: the word being routed"),
    )?;
    m.wire_assign(
        "rt_wr",
        Expr::raw("rt_unit && !rt_drain_q && !rd_resp[1]", 1),
        Some("route this cycle's words (no error, not draining)"),
    )?;
    // Buffer writes.
    let lanes = |f: &dyn Fn(u32) -> String| (0..nw).rev().map(f).collect::<Vec<_>>().join(", ");
    let lane_v = |k: &str| lanes(&|l| format!("rt_wr && {} && ln{l}_in", is(k)));
    let lane_idx = |bits: u32| {
        lanes(&|l| {
            format!(
                "(ln{l}_first ? rt_idx_q[{b}:0] : s1_idx[{b}:0])",
                b = bits - 1
            )
        })
    };
    m.assign_raw("lw_valid", format!("{{{}}}", lane_v("PLANE")))?;
    m.assign_raw(
        "lw_row",
        format!(
            "{{{}}}",
            lanes(&|l| format!("(ln{l}_first ? rt_r_q[{b}:0] : s1_r[{b}:0])", b = ri - 1))
        ),
    )?;
    m.assign_raw("lw_index", format!("{{{}}}", lane_idx(w.wib)))?;
    m.assign_raw("lw_data", "rd_data")?;
    if input_slow {
        // One word per cycle on lane 0 (the other lane is never valid).
        m.assign_raw(
            "la_valid",
            format!("{{{}'d0, rt_wr && {}}}", nw - 1, is("INPUT")),
        )?;
        m.assign_raw("la_index", format!("{{{nw}{{rt_idx_q[{}:0]}}}}", w.aib - 1))?;
        m.assign_raw("la_data", format!("{{{nw}{{rt_word}}}}"))?;
    } else {
        m.assign_raw("la_valid", format!("{{{}}}", lane_v("INPUT")))?;
        m.assign_raw("la_index", format!("{{{}}}", lane_idx(w.aib)))?;
        m.assign_raw("la_data", "rd_data")?;
    }
    m.assign_raw("lf_valid", format!("{{{}}}", lane_v("FMAP")))?;
    m.assign_raw("lf_index", format!("{{{}}}", lane_idx(w.fib)))?;
    m.assign_raw("lf_data", "rd_data")?;
    m.assign_raw(
        "lg_valid",
        format!("rt_wr && {} && rt_count_q != {wb}'d0", is("GM")),
    )?;
    m.assign_raw("lg_row", format!("rt_r_q[{}:0]", ri - 1))?;
    m.assign_raw(
        "lg_index",
        format!("rt_base_q[{b}:0] + rt_c_q[{b}:0]", b = w.gib - 1),
    )?;
    m.assign_raw(
        "lg_data",
        format!(
            "(rt_sub_q == 2'd0) ? rt_word[{m0}:0] : (rt_sub_q == 2'd1) ? rt_word[{m1}:16] : \
             (rt_sub_q == 2'd2) ? rt_word[{m2}:32] : rt_word[{m3}:48]",
            m0 = MULT_BITS - 1,
            m1 = 16 + MULT_BITS - 1,
            m2 = 32 + MULT_BITS - 1,
            m3 = 48 + MULT_BITS - 1
        ),
    )?;
    m.assign_raw(
        "lt_bias_valid",
        format!(
            "(rt_wr && {}) ? {{rt_count_q >= {wb}'d2, rt_count_q != {wb}'d0}} : 2'b00",
            is("BIAS")
        ),
    )?;
    m.assign_raw("lt_rq_valid", format!("rt_wr && {}", is("RQ")))?;
    m.assign_raw("lt_row", format!("rt_r_q[{}:0]", ri - 1))?;
    m.assign_raw("lt_slot", "rt_slot_q")?;
    m.assign_raw("lt_data", "rt_word")?;
    // Registered: PERF_BYTES_RD's 64-bit adder is off the router's path.
    m.reg("pbr_q", 16, Some("bytes routed last cycle"))?;
    let mut pc = Code::new();
    pc.nb("pbr_q", "rt_unit ? {rt_n[12:0], 3'd0} : 16'd0");
    m.always_ff(&m.sig("clk")?, pc)?;
    m.assign_raw("perf_bytes_rd", "pbr_q")?;
    m.wire_assign(
        "rt_end",
        Expr::raw("rt_unit && rt_n == rt_left_q", 1),
        Some("the request's last word is routed this cycle"),
    )?;
    m.wire_assign(
        "rt_desc_done",
        Expr::raw(format!("rt_end && !rt_drain_q && {}", is("DESC")), 1),
        None,
    )?;
    m.reg("dw_v_q", 1, Some("a descriptor word to write into F"))?;
    m.reg("dw_i_q", 4, None)?;
    m.reg("dw_data_q", 64, None)?;
    m.reg(
        "dd_q",
        1,
        Some("the descriptor's last word was routed a cycle ago"),
    )?;
    m.wire_assign(
        "rt_load",
        Expr::raw(
            "!rt_busy_q && rcnt_q != {CB}'d0".replace("{CB}", &cb.to_string()),
            1,
        ),
        Some("take the oldest entry"),
    )?;

    let mut c = Code::new();
    c.if_("rd_req_fire", |c| {
        for (f, _, src) in fields {
            c.nb(format!("re_{f}[rwp_q]"), src);
        }
    });
    c.if_else(
        "!rst_n || job_clear",
        |c| {
            c.nb("rwp_q", format!("{pb}'d0"));
            c.nb("rrp_q", format!("{pb}'d0"));
            c.nb("rcnt_q", format!("{cb}'d0"));
            c.nb("rt_busy_q", "1'b0");
            c.nb("rt_drain_q", "1'b0");
        },
        |c| {
            c.if_("rd_req_fire", |c| {
                c.nb("rwp_q", format!("rwp_q + {pb}'d1"));
            });
            c.nb(
                "rcnt_q",
                format!(
                    "rcnt_q + {{{z}'d0, rd_req_fire}} - {{{z}'d0, rt_load}}",
                    z = cb - 1
                ),
            );
            c.if_("rt_load", |c| {
                c.nb("rrp_q", format!("rrp_q + {pb}'d1"));
                c.nb("rt_busy_q", "1'b1");
                for (f, _, _) in fields {
                    let r = match f {
                        "words" => "rt_left_q",
                        "lane" => "rt_lane_q",
                        "base" => continue,
                        other => {
                            c.nb(format!("rt_{other}_q"), format!("re_{other}[rrp_q]"));
                            continue;
                        }
                    };
                    c.nb(r, format!("re_{f}[rrp_q]"));
                }
                c.nb("rt_sub_q", "2'd0");
                c.nb("rt_r_q", format!("{}'d0", ri + 1));
                c.nb("rt_c_q", "16'd0");
                let pad = |v: &str, from: u32| {
                    if from >= ib {
                        format!("{v}[{}:0]", ib - 1)
                    } else {
                        format!("{{{}'d0, {v}}}", ib - from)
                    }
                };
                c.nb(
                    "rt_idx_q",
                    format!(
                        "(re_kind[rrp_q] == {}) ? {} : {ib}'d0",
                        kind("PLANE"),
                        pad("re_base[rrp_q]", rqb)
                    ),
                );
                c.nb(
                    "rt_base_q",
                    format!(
                        "(re_kind[rrp_q] == {} || re_kind[rrp_q] == {}) ? {} : {ib}'d0",
                        kind("GM"),
                        kind("PLANE"),
                        pad("re_base[rrp_q]", rqb)
                    ),
                );
            });
            c.if_("rt_bad", |c| {
                c.nb("rt_drain_q", "1'b1");
            });
            c.if_("rt_unit", |c| {
                c.nb("rt_left_q", "rt_left_q - rt_n");
                c.if_("rt_end", |c| {
                    c.nb("rt_busy_q", "1'b0");
                });
                c.if_else(
                    "rt_drain_q || rt_fast",
                    |c| {
                        c.nb("rt_lane_q", format!("{lb}'d0"));
                        c.comment("fast: counters advance by the words routed (one or two)");
                        if nw == 1 {
                            for f in ["c", "r", "idx"] {
                                c.nb(format!("rt_{f}_q"), format!("s1_{f}"));
                            }
                        } else {
                            for f in ["c", "r", "idx"] {
                                c.nb(
                                    format!("rt_{f}_q"),
                                    format!("(rt_n == {wb}'d2) ? s2_{f} : s1_{f}"),
                                );
                            }
                        }
                    },
                    |c| {
                        slow_unit(c, &is, wb, ri, ib);
                        c.if_("rt_unit_last", |c| {
                            c.nb("rt_lane_q", format!("rt_lane_q + {lb}'d1"));
                        });
                        if nw == 1 {
                            c.nb("rt_lane_q", format!("{lb}'d0"));
                        }
                    },
                );
            });
        },
    );
    c.comment("a descriptor word is registered, then written into F (off the router's path)");
    c.nb("dw_v_q", format!("rt_wr && {}", is("DESC")));
    c.nb("dw_i_q", "rt_c_q[3:0]");
    c.nb("dw_data_q", "rt_word");
    c.nb("dd_q", "rt_desc_done");
    // One enable per word (a dynamic part-select would synthesize to a shifter).
    for k in 0..DESC_BITS / 64 {
        c.if_(format!("dw_v_q && dw_i_q == 4'd{k}"), |c| {
            c.nb(format!("fdesc_q[{} +: 64]", 64 * k), "dw_data_q");
        });
    }
    let clk = m.sig("clk")?;
    m.always_ff(&clk, c)?;
    m.assign_raw(
        "tile_loaded",
        "rt_end && !rt_drain_q && !rd_resp[1] && rt_tend_q",
    )?;
    m.assign_raw("tile_slot", "rt_slot_q")?;
    m.assign_raw(
        "input_loaded",
        format!(
            "res_skip_q || (rt_end && !rt_drain_q && !rd_resp[1] && ({} || {}))",
            is("INPUT"),
            is("FMAP")
        ),
    )?;
    let _ = s;
    Ok(())
}

/// A slow kind's unit: a descriptor word, a bias word (two rows), a requant entry, a region
/// multiplier.
fn slow_unit(c: &mut Code, is: &dyn Fn(&str) -> String, wb: u32, ri: u32, ib: u32) {
    c.if_(is("DESC"), |c| {
        c.nb("rt_c_q", "rt_c_q + 16'd1");
    });
    // Inputs on the slow path (see `router`): the next activation-bank entry.
    c.if_(is("INPUT"), |c| {
        c.nb("rt_idx_q", format!("rt_idx_q + {ib}'d1"));
    });
    c.if_(is("BIAS"), |c| {
        c.nb("rt_r_q", format!("rt_r_q + {}'d2", ri + 1));
        c.nb(
            "rt_count_q",
            format!("(rt_count_q >= {wb}'d2) ? rt_count_q - {wb}'d2 : {wb}'d0"),
        );
    });
    c.if_(is("RQ"), |c| {
        c.nb("rt_r_q", format!("rt_r_q + {}'d1", ri + 1));
    });
    c.if_(is("GM"), |c| {
        c.nb("rt_sub_q", "rt_sub_q + 2'd1");
        c.nb("rt_count_q", format!("rt_count_q - {wb}'d1"));
        c.if_else(
            "rt_c_q + 16'd1 == rt_rowlen_q",
            |c| {
                c.nb("rt_c_q", "16'd0");
                c.nb("rt_r_q", format!("rt_r_q + {}'d1", ri + 1));
            },
            |c| {
                c.nb("rt_c_q", "rt_c_q + 16'd1");
            },
        );
    });
}

/// The hand-over of F to the run side: the `x_*` registers, loaded when the previous descriptor
/// has completed, or early (`eh_q`, `x_early`).
fn run_side(m: &mut ModuleBuilder, s: &CoreShape, w: &FetchWidths) -> Result<()> {
    let aw = w.aw;
    m.section("run side: the running descriptor's parameters (X)");
    m.reg("x_busy_q", 1, Some("a descriptor runs"))?;
    m.reg("x_start_q", 1, None)?;
    // An early hand-over (docs/hardware.md, "Early hand-over"): F may start while the running
    // Conv2d's writes drain when nothing F does could see them: F is a one-tile Conv2d whose
    // input map is resident (no read, no swap), and the running descriptor's output does not
    // touch the resident map's words (so its writes cannot make that map stale). Everything else
    // F reads (its descriptor, tables and planes) is read before any hand-over anyway.
    m.reg(
        "xo_lo_q",
        aw + 2,
        Some("the running Conv2d's output, rounded out to whole words: first byte"),
    )?;
    m.reg("xo_hi_q", aw + 2, Some("its end"))?;
    m.reg(
        "xo_ok_q",
        1,
        Some("the running descriptor is a Conv2d whose output fits a bank (its bytes are known)"),
    )?;
    m.reg(
        "eh_q",
        1,
        Some("F may be handed over while the running descriptor's writes drain"),
    )?;
    m.wire_assign(
        "fxfer_set",
        Expr::raw("fchk_q && !fxfer_q && (!x_busy_q || eh_q) && !err_any", 1),
        Some("hand F over"),
    )?;
    let values: Vec<(&str, String)> = vec![
        ("x_conv", "d_op == 8'd2".into()),
        ("x_relu", "d_relu".into()),
        ("x_in_signed", "d_in_signed".into()),
        ("x_out_signed", "d_out_signed".into()),
        ("x_out_bits", "d_out_bits".into()),
        ("x_grouped", "d_grouped".into()),
        ("x_in_c", "d_in_c".into()),
        ("x_in_h", "d_in_h".into()),
        ("x_in_w", "d_in_w".into()),
        ("x_hw", "f_s_hw".into()),
        ("x_out_c", "d_out_c".into()),
        ("x_out_h", "d_out_h".into()),
        ("x_out_w", "d_out_w".into()),
        ("x_kh", "d_kernel_h[3:0]".into()),
        ("x_kw", "d_kernel_w[2:0]".into()),
        ("x_stride2", "d_stride == 8'd2".into()),
        ("x_pad_top", "d_pad_top[2:0]".into()),
        ("x_pad_left", "d_pad_left[2:0]".into()),
        (
            "x_pg_bits",
            "{d_pg3_bits, d_pg2_bits, d_pg1_bits, d_pg0_bits}".into(),
        ),
        (
            "x_pg_shift",
            "{d_pg3_shift[2:0], d_pg2_shift[2:0], d_pg1_shift[2:0], d_pg0_shift[2:0]}".into(),
        ),
        ("x_active", "d_active_groups[2:0]".into()),
        ("x_nch", "f_s_nch".into()),
        ("x_wpr", "f_s_wpr".into()),
        ("x_planes", "f_s_planes".into()),
        ("x_tiles", "f_s_tiles".into()),
        ("x_items", "f_s_items".into()),
        ("x_written", "f_s_written".into()),
        ("x_pool", "f_s_pool".into()),
        ("x_block", "f_s_block".into()),
        ("x_slots2", "f_s_slots2".into()),
        ("x_out_addr", format!("d_output_addr[{}:0]", aw - 1)),
        ("x_out_stride", "f_s_out_stride".into()),
        ("x_desc", "idx_q".into()),
    ];
    let values: Vec<(&str, String)> = if s.global_pool {
        values
            .into_iter()
            .chain([
                ("x_gpool", "d_global_pool".into()),
                ("x_pool_mult", "d_pool_mult".into()),
                ("x_pool_shift", "d_pool_shift".into()),
            ])
            .collect()
    } else {
        values
    };
    let mut c = Code::new();
    c.nb("x_start_q", "fxfer_set");
    c.if_("fxfer_set", |c| {
        c.nb("x_early_q", "x_busy_q");
    });
    c.nb(
        "eh_q",
        "x_busy_q && x_tail && xo_ok_q && fchk_q && !fxfer_q && d_op == 8'd2 && \
         f_s_tiles == 16'd1 && in_resident_q && res_v_q && \
         !(xo_lo_q < res_end_q && {2'd0, res_addr_q} < xo_hi_q)",
    );
    c.if_("fxfer_set", |c| {
        for (name, value) in &values {
            c.nb(format!("{name}_q"), value);
        }
        let out = format!("d_output_addr[{}:0]", aw - 1);
        c.nb("xo_ok_q", "d_op == 8'd2 && f_s_mirror");
        c.nb("xo_lo_q", format!("{{2'd0, {out}}} & ~{}'d7", aw + 2));
        c.nb(
            "xo_hi_q",
            format!(
                "({{2'd0, {out}}} + {} + {w}'d7) & ~{w}'d7",
                zext("f_s_out_bytes", fm_byte_bits(s), aw + 2),
                w = aw + 2
            ),
        );
    });
    c.if_else(
        "!rst_n || job_clear",
        |c| {
            c.nb("x_busy_q", "1'b0");
            c.nb("x_start_q", "1'b0");
        },
        |c| {
            c.comment(
                "x_done in the cycle an early hand-over starts is the previous descriptor's, \
                 which completed as F was handed over",
            );
            c.if_("x_done && !(x_start_q && x_early_q)", |c| {
                c.nb("x_busy_q", "1'b0");
            });
            c.if_("fxfer_set", |c| {
                c.nb("x_busy_q", "1'b1");
            });
        },
    );
    for (name, width, _) in x_params(s) {
        m.reg(&format!("{name}_q"), width, None)?;
        m.assign_raw(name, format!("{name}_q"))?;
    }
    m.assign_raw("x_start", "x_start_q")?;
    m.reg("x_early_q", 1, None)?;
    m.assign_raw("x_early", "x_early_q")?;
    let clk = m.sig("clk")?;
    m.always_ff(&clk, c)?;
    let _ = s;
    Ok(())
}

/// The job: START's own checks, the errors of each source with their program position, the
/// quiesce that reports the earliest, and done.
fn job(m: &mut ModuleBuilder, cfg: &AccelConfig, w: &FetchWidths) -> Result<()> {
    let code = |e: ErrorCode| format!("8'd{}", e.as_u8());
    let bus_log2 = clog2(cfg.bus_bytes());
    m.section("job: errors by program position (descriptor, tile, phase), quiesce, done");
    m.wire_assign(
        "start_code",
        Expr::raw(
            format!(
                "(desc_count == 16'd0 || desc_count > 16'd{}) ? {} : \
                 (desc_addr[{}:0] != {bus_log2}'d0) ? {} : 8'd0",
                cfg.limits.max_descriptors,
                code(ErrorCode::DescCount),
                bus_log2 - 1,
                code(ErrorCode::Misaligned)
            ),
            8,
        ),
        Some("DESC_COUNT and DESC_ADDR, checked at START"),
    )?;
    // Each source stops after its first error, so one slot per source.
    for src in ["iss", "rt", "res"] {
        m.reg(&format!("e_{src}_v_q"), 1, None)?;
        m.reg(&format!("e_{src}_code_q"), 8, None)?;
        m.reg(
            &format!("e_{src}_pos_q"),
            33,
            Some("{descriptor, tile, phase (0 loads, 1 writes)}"),
        )?;
    }
    m.wire_assign(
        "iss_err",
        Expr::raw(
            "(fst_q == F_DWAIT && dec_done && dec_code != 8'd0) || \
             (fst_q == F_ISSUE && !rq_in_win)",
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "err_q",
        Expr::raw("e_iss_v_q || e_rt_v_q || e_res_v_q", 1),
        Some("an error is pending"),
    )?;
    m.wire_assign(
        "err_any",
        Expr::raw("err_q || iss_err || rt_bad || res_err_valid", 1),
        None,
    )?;
    for (a, b) in [("iss", "rt"), ("iss", "res"), ("rt", "res")] {
        m.reg(
            &format!("lt_{a}_{b}_q"),
            1,
            Some("earlier in program order"),
        )?;
    }
    m.reg("quiet_q", 1, Some("the pending error may be reported"))?;
    for (name, width) in [
        ("busy_q", 1),
        ("start_err_q", 1),
        ("done_q", 1),
        ("error_q", 1),
        ("err_code_q", 8),
        ("err_desc_q", 16),
    ] {
        m.reg(name, width, None)?;
    }
    m.wire_assign(
        "quiesced",
        Expr::raw(
            "err_q && fst_q == F_HALT && rcnt_q == 4'd0 && !rt_busy_q && exec_idle && \
             window_idle && result_idle"
                .replace("4'd0", &format!("{}'d0", clog2(ROUTE_DEPTH + 1))),
            1,
        ),
        Some("everything before the error has finished"),
    )?;
    m.wire_assign(
        "pick_iss",
        Expr::raw(
            "e_iss_v_q && (!e_rt_v_q || lt_iss_rt_q) && (!e_res_v_q || lt_iss_res_q)",
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "pick_rt",
        Expr::raw("!pick_iss && e_rt_v_q && (!e_res_v_q || lt_rt_res_q)", 1),
        None,
    )?;
    m.wire_assign(
        "report",
        Expr::raw("quiet_q", 1),
        Some("the cycle the error is reported"),
    )?;
    m.assign_raw("job_clear", "soft_reset || report")?;
    let mut c = Code::new();
    for (a, b) in [("iss", "rt"), ("iss", "res"), ("rt", "res")] {
        c.nb(
            format!("lt_{a}_{b}_q"),
            format!("e_{a}_pos_q < e_{b}_pos_q"),
        );
    }
    c.if_else(
        "!rst_n || soft_reset",
        |c| {
            for r in [
                "e_iss_v_q",
                "e_rt_v_q",
                "e_res_v_q",
                "quiet_q",
                "busy_q",
                "start_err_q",
                "done_q",
                "error_q",
            ] {
                c.nb(r, "1'b0");
            }
        },
        |c| {
            c.nb("done_q", "1'b0");
            c.nb("error_q", "1'b0");
            c.nb("quiet_q", "quiesced && !quiet_q");
            c.comment("a START the list's own checks refuse: BUSY for one cycle, then the error");
            c.nb("start_err_q", "1'b0");
            c.if_("start_err_q", |c| {
                c.nb("error_q", "1'b1");
                c.nb("busy_q", "1'b0");
            });
            c.if_("start && fst_q == F_IDLE && !busy_q", |c| {
                c.nb("busy_q", "1'b1");
                c.if_("start_code != 8'd0", |c| {
                    c.nb("start_err_q", "1'b1");
                    c.nb("err_code_q", "start_code");
                    c.nb("err_desc_q", "16'd0");
                });
            });
            c.if_("iss_err && !e_iss_v_q", |c| {
                c.nb("e_iss_v_q", "1'b1");
                c.nb(
                    "e_iss_code_q",
                    format!("(fst_q == F_DWAIT) ? dec_code : {}", code(ErrorCode::OutOfWindow)),
                );
                c.nb(
                    "e_iss_pos_q",
                    "{idx_q, (fst_q == F_DWAIT) ? 16'd0 : tile_q, 1'b0}",
                );
            });
            c.if_("rt_bad && !e_rt_v_q", |c| {
                c.nb("e_rt_v_q", "1'b1");
                c.nb(
                    "e_rt_code_q",
                    resp_error_code("rd_resp"),
                );
                c.nb("e_rt_pos_q", "{rt_d_q, rt_t_q, 1'b0}");
            });
            c.if_("res_err_valid && !e_res_v_q", |c| {
                c.nb("e_res_v_q", "1'b1");
                c.nb("e_res_code_q", "res_err_code");
                c.nb("e_res_pos_q", "{res_err_desc, res_err_tile, 1'b1}");
            });
            c.if_("report", |c| {
                c.nb("error_q", "1'b1");
                c.nb("busy_q", "1'b0");
                c.nb(
                    "err_code_q",
                    "pick_iss ? e_iss_code_q : pick_rt ? e_rt_code_q : e_res_code_q",
                );
                c.nb(
                    "err_desc_q",
                    "pick_iss ? e_iss_pos_q[32:17] : pick_rt ? e_rt_pos_q[32:17] : e_res_pos_q[32:17]",
                );
                for r in ["e_iss_v_q", "e_rt_v_q", "e_res_v_q"] {
                    c.nb(r, "1'b0");
                }
            });
            c.if_("fst_q == F_FINISH && !x_busy_q && !err_any", |c| {
                c.nb("done_q", "1'b1");
                c.nb("busy_q", "1'b0");
            });
        },
    );
    let clk = m.sig("clk")?;
    m.always_ff(&clk, c)?;
    m.assign_raw("busy", "busy_q")?;
    m.assign_raw("done", "done_q")?;
    m.assign_raw("error", "error_q")?;
    m.assign_raw("err_code", "err_code_q")?;
    m.assign_raw("err_desc", "err_desc_q")?;
    let _ = w;
    Ok(())
}
