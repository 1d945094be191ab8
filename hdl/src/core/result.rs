//! `caq_result`: the result stage. It requantizes an item's R totals in one go (one
//! `caq_requant` per row, with the tile's bias and requant tables), stages the codes, and writes
//! them out behind the compute, a whole bus beat per cycle:
//! - Conv2d: the codes go into a ring of output staging per row (byte-wide lanes, one byte per
//!   row per pixel); every [`caq_spec::CoreShape::run_bytes`] pixels of a tile (and at the tile's
//!   end) the run is written as one burst per row — the CHW layout, one channel's pixels in a row;
//! - Dense: an input's R codes go into a small queue and out as one burst at
//!   `out + n·out_stride + o0`;
//! - with max pooling, only the codes of the pixels that complete a window (the pooling line);
//!   with global pooling (cores with `array.global_pool`), each row's mean over the tile, as one
//!   pixel after the tile's last (`mean`).
//!
//! The writer has two stages: the request stage computes each burst's address, checks it against
//! the window and issues it; the data stage reads the staging (or the queue) and funnels it into
//! beats at the burst's byte offset, with strobes on the burst's bytes only, each beat's address
//! beside it (`wr_beat_addr`, for the window generator's output mirror). Credits go back to
//! the execute stage as staging positions, runs and queue entries are freed. When every output of
//! the running descriptor is written and acknowledged, `x_done` (or, on a bus error, `res_err`).
//!
//! Early hand-over (docs/hardware.md, "Early hand-over"): the stage reads its own copy of the run
//! parameters (`r_*`), taken from `x_*` once the previous descriptor's last item has left
//! requantization, so the window and execute stages may start the next descriptor (`x_tail`)
//! while this stage finishes the last one; the sequencer starts the new one when this stage takes
//! it (`x_go`), so none of its totals arrives before; the window generator gathers its first
//! blocks meanwhile. The staging positions then run on, each run carries its epoch, and
//! the writer takes the new descriptor's runs only when every write of the previous one is
//! answered and its BRESPs checked (`a_switch`): an error there is the previous descriptor's
//! (`res_err_desc`), and nothing later is written.
//!
//! Knows the output layouts and the write port; knows nothing of weights or the array.

use caq_spec::regmap::ErrorCode;
use caq_spec::shape::{DENSE_QUEUE, POOL_LINE, REQUANT_PHASES};
use caq_spec::{AccelConfig, CoreShape};

use super::exec::credit_bits;
use super::fetch::FetchWidths;
use super::params::{POOL_MASK, pool_in_window, pool_window_last, x_inputs};
use super::ports::{Side, WORDS_BITS, Which, clog2, resp_error_code, some_memory_ports};
use crate::array::ACC_T_BITS;
use crate::emit::{Code, Dir, Expr, Interface, Module, ModuleBuilder, zext};
use crate::error::Result;
use crate::requant::LATENCY as RQ_LATENCY;

/// Conv2d runs waiting to be written (the execute stage holds as many run credits).
pub const RUN_QUEUE: u32 = 4;
/// Beats the data stage may have formed ahead of the write port.
const BEAT_FIFO: u32 = 4;

/// The `caq_result` module; `requant_if` is the interface of `caq_requant`.
pub fn result(cfg: &AccelConfig, requant_if: &Interface) -> Result<Module> {
    let s = CoreShape::of(cfg);
    let fw = FetchWidths::of(&s);
    let (rows, aw) = (s.rows, s.addr_bits);
    let cb = credit_bits(&s);
    let bb = cfg.bus_bytes();
    let mut m = ModuleBuilder::new("caq_result")?;
    m.doc(&[
        "Result stage: requantization (one caq_requant per row), output staging and the writer.",
        "See caq-hdl core/result.rs.",
    ]);
    m.doc_line(format!(
        "{rows} requant units; staging {} bytes per row; runs of {} bytes; {} Dense outputs queued; \
         {bb}-byte beats.",
        s.stage_bytes, s.run_bytes, DENSE_QUEUE
    ));
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_doc(Dir::Input, "clear", 1, "pulse: back to idle")?;
    m.port(Dir::Input, "x_start", 1)?;
    m.port_doc(Dir::Input, "x_early", 1, super::params::X_EARLY_DOC)?;
    x_inputs(&mut m, &s)?;
    m.port_group("totals from caq_array");
    m.port(Dir::Input, "acc_valid", 1)?;
    m.port(Dir::Input, "acc_t", rows * ACC_T_BITS)?;
    m.port_group("table loads from the fetch stage");
    m.port(Dir::Input, "lt_bias_valid", 2)?;
    m.port(Dir::Input, "lt_rq_valid", 1)?;
    m.port(Dir::Input, "lt_row", fw.ri)?;
    m.port(Dir::Input, "lt_slot", 1)?;
    m.port(Dir::Input, "lt_data", 64)?;
    m.port(Dir::Input, "tile_loaded", 1)?;
    m.port(Dir::Input, "tile_slot", 1)?;
    m.port(Dir::Input, "win_base", aw + 1)?;
    m.port(Dir::Input, "win_limit", aw + 1)?;
    some_memory_ports(&mut m, aw, bb, Side::Core, Which::Write)?;
    m.port_doc(
        Dir::Output,
        "wr_beat_addr",
        aw,
        "the byte address of the beat on wr_data (for the window's output mirror)",
    )?;
    m.port_group("tokens and status");
    m.port_doc(
        Dir::Output,
        "credit_ret",
        cb,
        "staging positions (Conv2d) or queue entries (Dense) freed this cycle",
    )?;
    m.port_doc(Dir::Output, "run_credit_ret", 1, "a Conv2d run is written")?;
    m.port_doc(
        Dir::Output,
        "tile_done",
        1,
        "pulse: the oldest tile's last item is requantized; its tables are free",
    )?;
    m.port_doc(
        Dir::Output,
        "x_done",
        1,
        "pulse: every output of the descriptor is written",
    )?;
    m.port_doc(
        Dir::Input,
        "x_issued",
        1,
        "the execute stage has issued every step of the running descriptor",
    )?;
    m.port_doc(
        Dir::Output,
        "x_tail",
        1,
        "the running Conv2d's steps are all issued, its run parameters are this stage's and no \
         earlier descriptor's writes wait: the next may start (an early hand-over, x_early)",
    )?;
    m.port_doc(
        Dir::Output,
        "x_go",
        1,
        "pulse: this stage takes the descriptor handed over (r_go): at its hand-over, or after an \
         early one once the previous descriptor's last item has left requantization; the \
         sequencer starts it then",
    )?;
    m.port(Dir::Output, "res_err_valid", 1)?;
    m.port(Dir::Output, "res_err_code", 8)?;
    m.port(Dir::Output, "res_err_tile", 16)?;
    m.port_doc(
        Dir::Output,
        "res_err_desc",
        16,
        "the failing write's descriptor (x_desc, or the previous one's while it drains)",
    )?;
    m.port(Dir::Output, "result_idle", 1)?;
    m.port_doc(Dir::Output, "perf_bytes_wr", 16, "bytes written this cycle")?;

    run_params(&mut m, &s)?;
    tables(&mut m, &s, &fw)?;
    requantize(&mut m, &s, requant_if)?;
    staging(&mut m, cfg, &s)?;
    if s.global_pool {
        mean(&mut m, &s, requant_if)?;
    }
    requests(&mut m, cfg, &s)?;
    beats(&mut m, cfg, &s)?;
    finish(&mut m, &s)?;
    let _ = clk;
    Ok(m.finish())
}

/// The run parameters the result stage reads (`r_*`): the fetch stage's `x_*`, taken when a
/// descriptor is handed over if the previous one's items have all left requantization, else as
/// soon as they have (`r_start` a cycle later). So after an early hand-over the window and execute
/// stages run the new descriptor while this stage finishes the old one's items with its own.
const RESULT_PARAMS: [&str; 18] = [
    "conv",
    "relu",
    "out_signed",
    "out_bits",
    "items",
    "written",
    "out_c",
    "tiles",
    "out_addr",
    "out_stride",
    "pool",
    "gpool",
    "pool_mult",
    "pool_shift",
    "out_w",
    "out_h",
    "desc",
    "early",
];

fn run_params(m: &mut ModuleBuilder, s: &CoreShape) -> Result<()> {
    m.section("run parameters of this stage's descriptor (r_*), taken from x_* at r_go");
    let widths: Vec<(String, u32)> = super::params::x_params(s)
        .into_iter()
        .chain([("x_early", 1, "")])
        .filter_map(|(name, w, _)| {
            let short = name.trim_start_matches("x_");
            RESULT_PARAMS
                .contains(&short)
                .then(|| (short.to_owned(), w))
        })
        .collect();
    for (name, w) in &widths {
        m.reg(&format!("r_{name}_q"), *w, None)?;
        m.wire_assign(
            &format!("r_{name}"),
            Expr::raw(format!("r_{name}_q"), *w),
            None,
        )?;
    }
    m.reg(
        "r_pend_q",
        1,
        Some("a descriptor was handed over and waits for this stage"),
    )?;
    m.reg(
        "r_open_q",
        1,
        Some("this stage's descriptor still has items to come"),
    )?;
    m.reg("r_start_q", 1, Some("pulse: r_* hold a new descriptor"))?;
    m.wire_assign(
        "r_go",
        Expr::raw("(x_start || r_pend_q) && !r_open_q", 1),
        Some("take x_* now"),
    )?;
    let mut c = Code::new();
    c.nb("r_start_q", "r_go");
    c.if_("r_go", |c| {
        for (name, _) in &widths {
            c.nb(format!("r_{name}_q"), format!("x_{name}"));
        }
    });
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("r_pend_q", "1'b0");
            c.nb("r_open_q", "1'b0");
            c.nb("r_start_q", "1'b0");
        },
        |c| {
            c.if_else(
                "r_go",
                |c| {
                    c.nb("r_pend_q", "1'b0");
                    c.nb("r_open_q", "1'b1");
                },
                |c| {
                    c.if_("x_start", |c| {
                        c.nb("r_pend_q", "1'b1");
                    });
                    c.comment(
                        "the descriptor's last item leaves requantization, or with global \
                         pooling its last mean (o_done_q rises)",
                    );
                    let items_out = "q1_valid_q && o_tile_end && o_tile_q + 16'd1 == r_tiles";
                    c.if_(
                        if s.global_pool {
                            format!("r_gpool ? (m_emit_q && m_last_q) : ({items_out})")
                        } else {
                            items_out.to_owned()
                        },
                        |c| {
                            c.nb("r_open_q", "1'b0");
                        },
                    );
                },
            );
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    m.wire_assign("r_start", Expr::raw("r_start_q", 1), None)?;
    m.assign_raw("x_go", "r_go")?;
    Ok(())
}

/// The bias and requant tables of the two tile slots, and which slot each loaded tile uses.
fn tables(m: &mut ModuleBuilder, s: &CoreShape, fw: &FetchWidths) -> Result<()> {
    let rows = s.rows;
    let ri = fw.ri;
    m.section("tables: bias, multiplier and shift per slot and row");
    let mut c = Code::new();
    for slot in 0..2 {
        for r in 0..rows {
            m.reg(&format!("bias{slot}_{r}_q"), 32, None)?;
            m.reg(&format!("rqm{slot}_{r}_q"), 32, None)?;
            m.reg(&format!("rqs{slot}_{r}_q"), 6, None)?;
            let row = |v: u32| format!("lt_row == {ri}'d{v}");
            if r % 2 == 0 {
                c.if_(
                    format!("lt_bias_valid[0] && lt_slot == 1'b{slot} && {}", row(r)),
                    |c| {
                        c.nb(format!("bias{slot}_{r}_q"), "lt_data[31:0]");
                    },
                );
            } else {
                c.if_(
                    format!("lt_bias_valid[1] && lt_slot == 1'b{slot} && {}", row(r - 1)),
                    |c| {
                        c.nb(format!("bias{slot}_{r}_q"), "lt_data[63:32]");
                    },
                );
            }
            c.if_(
                format!("lt_rq_valid && lt_slot == 1'b{slot} && {}", row(r)),
                |c| {
                    c.nb(format!("rqm{slot}_{r}_q"), "lt_data[31:0]");
                    c.nb(format!("rqs{slot}_{r}_q"), "lt_data[37:32]");
                },
            );
        }
    }
    m.lint_off(
        "UNUSEDSIGNAL",
        "the requant table's padding bytes (docs/descriptor.md: ignored)",
    );
    m.wire_assign("lt_pad", Expr::raw("^lt_data[63:38]", 1), None)?;
    m.lint_on("UNUSEDSIGNAL");
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// The requant units and the tile/item counters on the array's side.
fn requantize(m: &mut ModuleBuilder, s: &CoreShape, requant_if: &Interface) -> Result<()> {
    let rows = s.rows;
    m.section("requantization: an item's rows in two phases of R/2 units");
    for (name, width, doc) in [
        ("tl_cnt_q", 2, "tiles loaded and not yet requantized"),
        ("tl_slot0_q", 1, "their slots, oldest first"),
        ("tl_slot1_q", 1, ""),
        ("in_item_q", 16, "item of the totals arriving"),
        ("in_tile_q", 16, "its tile"),
    ] {
        m.reg(name, width, Some(doc))?;
    }
    m.wire_assign(
        "in_tile_end",
        Expr::raw("acc_valid && in_item_q == r_items - 16'd1", 1),
        Some("the tile's last item: its tables are read now"),
    )?;
    let mut c = Code::new();
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("tl_cnt_q", "2'd0");
            c.nb("in_item_q", "16'd0");
            c.nb("in_tile_q", "16'd0");
        },
        |c| {
            c.nb(
                "tl_cnt_q",
                "tl_cnt_q + {1'b0, tile_loaded} - {1'b0, in_tile_end}",
            );
            c.if_("tile_loaded", |c| {
                c.if_else(
                    "tl_cnt_q == 2'd0 || (tl_cnt_q == 2'd1 && in_tile_end)",
                    |c| {
                        c.nb("tl_slot0_q", "tile_slot");
                    },
                    |c| {
                        c.nb("tl_slot1_q", "tile_slot");
                    },
                );
            });
            c.if_("in_tile_end && !(tile_loaded && tl_cnt_q == 2'd1)", |c| {
                c.nb("tl_slot0_q", "tl_slot1_q");
            });
            c.if_("r_start", |c| {
                c.nb("in_item_q", "16'd0");
                c.nb("in_tile_q", "16'd0");
            });
            c.if_("acc_valid", |c| {
                c.if_else(
                    "in_tile_end",
                    |c| {
                        c.nb("in_item_q", "16'd0");
                        c.nb("in_tile_q", "in_tile_q + 16'd1");
                    },
                    |c| {
                        c.nb("in_item_q", "in_item_q + 16'd1");
                    },
                );
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    m.comment(&[
        "The slot's tables are read until the tile's last item has had every phase: its weight",
        "slot (and tables) are released a cycle after its totals arrive.",
    ]);
    m.reg(
        "td_q",
        1,
        Some("the tile's last item's totals arrived a cycle ago"),
    )?;
    let mut td = Code::new();
    td.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("td_q", "1'b0");
        },
        |c| {
            c.nb("td_q", "in_tile_end");
        },
    );
    m.always_ff(&m.sig("clk")?, td)?;
    m.assign_raw("tile_done", "td_q")?;
    // REQUANT_PHASES = 2: R/2 units; phase 0 takes rows 0..U-1 as the totals arrive, phase 1
    // rows U..R-1 from a hold register the next cycle (the execute stage spaces items by two).
    let units = rows / REQUANT_PHASES;
    debug_assert_eq!(REQUANT_PHASES, 2, "the phases below are written for two");
    m.reg(
        "hold_q",
        units * ACC_T_BITS,
        Some("rows U..R-1 of the item's totals"),
    )?;
    m.reg("hph_q", 1, Some("phase 1: the units take the held rows"))?;
    m.reg("hslot_q", 1, Some("the held item's table slot"))?;
    m.reg(
        "oph_q",
        RQ_LATENCY,
        Some("the phase of the values inside the units"),
    )?;
    m.reg(
        "qa_q",
        units * 8,
        Some("phase 0's codes, waiting for phase 1's"),
    )?;
    let mut h = Code::new();
    h.nb(
        "hold_q",
        format!("acc_t[{} +: {}]", units * ACC_T_BITS, units * ACC_T_BITS),
    );
    h.nb("hslot_q", "tl_slot0_q");
    h.nb("oph_q", format!("{{oph_q[{}:0], hph_q}}", RQ_LATENCY - 2));
    h.if_(
        "rq0_valid && !oph_q[RQL]".replace("RQL", &(RQ_LATENCY - 1).to_string()),
        |c| {
            c.nb("qa_q", "qa_codes");
        },
    );
    h.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("hph_q", "1'b0");
        },
        |c| {
            c.nb("hph_q", "acc_valid");
        },
    );
    m.always_ff(&m.sig("clk")?, h)?;
    let mut codes = Vec::new();
    for u in 0..units {
        let v = m.wire(&format!("rq{u}_valid"), 1, None)?;
        let code = m.wire(&format!("rq{u}_code"), 8, None)?;
        let hi = u + units;
        let pick = |t: &str, w: u32| {
            Expr::raw(
                format!(
                    "hph_q ? (hslot_q ? {t}1_{hi}_q : {t}0_{hi}_q) : \
                     (tl_slot0_q ? {t}1_{u}_q : {t}0_{u}_q)"
                ),
                w,
            )
        };
        m.instance(
            requant_if,
            &format!("u_rq{u}"),
            vec![
                ("clk", Expr::raw("clk", 1)),
                ("rst_n", Expr::raw("rst_n", 1)),
                ("clear", Expr::raw("clear", 1)),
                ("in_valid", Expr::raw("acc_valid || hph_q", 1)),
                (
                    "in_acc",
                    Expr::raw(
                        format!(
                            "hph_q ? hold_q[{o} +: {ACC_T_BITS}] : acc_t[{o} +: {ACC_T_BITS}]",
                            o = u * ACC_T_BITS
                        ),
                        ACC_T_BITS,
                    ),
                ),
                ("in_bias", pick("bias", 32)),
                ("in_mult", pick("rqm", 32)),
                ("in_shift", pick("rqs", 6)),
                ("in_relu", Expr::raw("r_relu", 1)),
                ("in_out_signed", Expr::raw("r_out_signed", 1)),
                ("in_out_bits", Expr::raw("r_out_bits", 4)),
                ("out_valid", v.expr()),
                ("out_code", code.expr()),
            ],
        )?;
        codes.push(format!("rq{u}_code"));
    }
    if units > 1 {
        m.lint_off("UNUSEDSIGNAL", "every unit's valid equals unit 0's");
        let valids: Vec<String> = (1..units).map(|u| format!("rq{u}_valid")).collect();
        m.wire_assign("rq_valid_rest", Expr::raw(valids.join(" & "), 1), None)?;
        m.lint_on("UNUSEDSIGNAL");
    }
    let now = codes.iter().rev().cloned().collect::<Vec<_>>().join(", ");
    m.wire_assign(
        "qa_codes",
        Expr::raw(format!("{{{now}}}"), units * 8),
        Some("the units' codes this cycle: unit u's at [8u +: 8]"),
    )?;
    m.wire_assign(
        "q_valid",
        Expr::raw(format!("rq0_valid && oph_q[{}]", RQ_LATENCY - 1), 1),
        Some("an item's codes are complete (its phase 1 leaves the units)"),
    )?;
    m.wire_assign(
        "q_codes",
        Expr::raw("{qa_codes, qa_q}", rows * 8),
        Some("row r's code at [8r +: 8]"),
    )?;
    Ok(())
}

/// The codes leaving requantization: Conv2d into the staging rings and the run queue; Dense into
/// the output queue. The output-side counters (item, tile, ring position, addresses).
fn staging(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape) -> Result<()> {
    let rows = s.rows;
    let aw = s.addr_bits;
    let bb = cfg.bus_bytes();
    let lbb = clog2(bb);
    let se = s.stage_bytes / bb;
    let seb = clog2(se);
    let pb = clog2(s.stage_bytes);
    let runl = clog2(s.run_bytes);
    let ri = clog2(rows);
    pool(m, s)?;
    m.section("output side: counters");
    for (name, width, doc) in [
        (
            "o_citem_q",
            16,
            "item of the codes leaving the pooling stage (q1)",
        ),
        (
            "o_item_q",
            16,
            "the written item they make (Conv2d: its pixel in the written map)",
        ),
        ("o_tile_q", 16, "its tile"),
        ("o_rem_q", 16, "out_c - o0"),
        ("o_pos_q", pb, "its staging position (a ring)"),
        ("o_rpos_q", pb, "the current run's first position"),
        ("o_rp0_q", 16, "the current run's first item"),
        (
            "o_chan_q",
            aw,
            "out + o0 * out_h * out_w: the tile's first channel (Conv2d)",
        ),
        (
            "o_dest_q",
            aw,
            "out + n * out_stride + o0: the item's output (Dense)",
        ),
        ("o_dtile_q", aw, "out + o0 (Dense)"),
        (
            "o_done_q",
            1,
            "every item of the descriptor has left requantization",
        ),
        (
            "o_ep_q",
            1,
            "the epoch of the codes staged: flips at an early hand-over",
        ),
    ] {
        m.reg(name, width, Some(doc))?;
    }
    m.wire_assign(
        "o_nrows",
        Expr::raw(
            format!(
                "(o_rem_q < 16'd{rows}) ? o_rem_q[{ri}:0] : {}'d{rows}",
                ri + 1
            ),
            ri + 1,
        ),
        Some("rows of the tile"),
    )?;
    m.wire_assign(
        "o_tile_end",
        Expr::raw("q1_valid_q && o_citem_q == r_items - 16'd1", 1),
        None,
    )?;
    let run_end = if runl == 0 {
        "1'b1".to_owned()
    } else {
        format!("o_item_q[{}:0] == {runl}'d{}", runl - 1, s.run_bytes - 1)
    };
    m.wire_assign(
        "o_run_end",
        Expr::raw(
            format!("s_valid && r_conv && (o_item_q == r_written - 16'd1 || {run_end})"),
            1,
        ),
        Some("Conv2d: the written item closes a run (the tile's last, or a run's length)"),
    )?;
    // Staging: row r, byte lane l holds position p when p mod B == l, entry (p / B) mod depth.
    m.section("staging rings: row r, byte lane l, entry e holds position e * B + l");
    let mut st = Code::new();
    for r in 0..rows {
        for l in 0..bb {
            let mem = format!("st{r}_{l}_mem");
            m.memory(&mem, 8, se, "staged output codes")?;
            let lane = if lbb == 0 {
                "1'b1".to_owned()
            } else {
                format!("o_pos_q[{}:0] == {lbb}'d{l}", lbb - 1)
            };
            st.if_(format!("s_valid && r_conv && {lane}"), |c| {
                c.nb(
                    format!("{mem}[o_pos_q[{}:{lbb}]]", pb - 1),
                    format!("s_codes[{} +: 8]", 8 * r),
                );
            });
        }
    }
    m.always_ff(&m.sig("clk")?, st)?;
    // The run queue (Conv2d) and the output queue (Dense).
    m.section("run queue (Conv2d) and output queue (Dense)");
    let rqb = clog2(RUN_QUEUE);
    for (f, w) in [
        ("pos", pb),
        ("len", runl + 1),
        ("dest", aw),
        ("nrows", ri + 1),
        ("tile", 16),
        ("step", 16),
        ("ep", 1),
    ] {
        m.memory(&format!("rq_{f}"), w, RUN_QUEUE, "run field")?;
    }
    m.reg("rq_wp_q", rqb.max(1), None)?;
    m.reg("rq_rp_q", rqb.max(1), None)?;
    m.reg("rq_n_q", clog2(RUN_QUEUE + 1), Some("runs queued"))?;
    let dq = DENSE_QUEUE;
    let dqb = clog2(dq);
    for (f, w) in [
        ("codes", rows * 8),
        ("dest", aw),
        ("nrows", ri + 1),
        ("tile", 16),
    ] {
        m.memory(&format!("dq_{f}"), w, dq, "output field")?;
    }
    m.reg("dq_wp_q", dqb.max(1), None)?;
    m.reg("dq_rp_q", dqb.max(1), None)?;
    m.reg("dq_n_q", clog2(dq + 1), Some("outputs queued"))?;
    let ppos = clog2(s.stage_bytes);
    let _ = (seb, ppos);
    let mut c = Code::new();
    c.if_("o_run_end", |c| {
        c.nb("rq_pos[rq_wp_q]", "o_rpos_q");
        c.nb(
            "rq_len[rq_wp_q]",
            format!("o_item_q[{runl}:0] - o_rp0_q[{runl}:0] + {}'d1", runl + 1),
        );
        // With global pooling the run is the tile's means, written after the tile has ended:
        // its address, rows, tile and epoch were taken with its sums.
        let g = |mean: &str, item: String| {
            if s.global_pool {
                format!("r_gpool ? {mean} : {item}")
            } else {
                item
            }
        };
        c.nb(
            "rq_dest[rq_wp_q]",
            g(
                "m_chan_q",
                format!("o_chan_q + {{{}'d0, o_rp0_q}}", aw - 16),
            ),
        );
        c.nb("rq_nrows[rq_wp_q]", g("m_nrows_q", "o_nrows".into()));
        c.nb("rq_tile[rq_wp_q]", g("m_tile_q", "o_tile_q".into()));
        c.nb("rq_step[rq_wp_q]", "r_written");
        c.nb("rq_ep[rq_wp_q]", g("m_ep_q", "o_ep_q".into()));
    });
    c.if_("d_push", |c| {
        c.nb("dq_codes[dq_wp_q]", "q1_codes_q");
        c.nb("dq_dest[dq_wp_q]", "o_dest_q");
        c.nb("dq_nrows[dq_wp_q]", "o_nrows");
        c.nb("dq_tile[dq_wp_q]", "o_tile_q");
    });
    let rowstep = format!("{{{z}'d0, r_written, {ri}'d0}}", z = aw - 16 - ri);
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("o_done_q", "1'b0");
            c.nb("o_ep_q", "1'b0");
            c.nb("o_pos_q", format!("{pb}'d0"));
            c.nb("o_rpos_q", format!("{pb}'d0"));
            c.nb("rq_wp_q", format!("{}'d0", rqb.max(1)));
            c.nb("dq_wp_q", format!("{}'d0", dqb.max(1)));
        },
        |c| {
            c.comment(
                "staging positions run on across descriptors: after an early hand-over the \
                 previous one's runs still wait in the ring",
            );
            c.if_("r_start && r_early", |c| {
                c.nb("o_ep_q", "!o_ep_q");
            });
            c.if_("r_start", |c| {
                c.nb("o_citem_q", "16'd0");
                c.nb("o_item_q", "16'd0");
                c.nb("o_tile_q", "16'd0");
                c.nb("o_rem_q", "r_out_c");
                c.nb("o_rp0_q", "16'd0");
                c.if_("!r_early", |c| {
                    c.nb("o_pos_q", format!("{pb}'d0"));
                    c.nb("o_rpos_q", format!("{pb}'d0"));
                });
                c.nb("o_chan_q", "r_out_addr");
                c.nb("o_dest_q", "r_out_addr");
                c.nb("o_dtile_q", "r_out_addr");
                c.nb("o_done_q", "1'b0");
            });
            c.if_("o_run_end", |c| {
                c.nb("rq_wp_q", format!("rq_wp_q + {}'d1", rqb.max(1)));
                c.nb("o_rpos_q", format!("o_pos_q + {pb}'d1"));
                c.nb(
                    "o_rp0_q",
                    "(o_item_q == r_written - 16'd1) ? 16'd0 : o_item_q + 16'd1",
                );
            });
            c.if_("d_push", |c| {
                c.nb("dq_wp_q", format!("dq_wp_q + {}'d1", dqb.max(1)));
            });
            if s.global_pool {
                c.if_("m_emit_q && m_last_q", |c| {
                    c.nb("o_done_q", "1'b1");
                });
            }
            c.if_("s_valid", |c| {
                c.nb("o_pos_q", format!("o_pos_q + {pb}'d1"));
                c.nb("o_item_q", "o_item_q + 16'd1");
            });
            c.if_("q1_valid_q", |c| {
                c.nb(
                    "o_dest_q",
                    format!("o_dest_q + {{{}'d0, r_out_stride}}", aw - 17),
                );
                c.if_else(
                    "o_tile_end",
                    |c| {
                        c.nb("o_citem_q", "16'd0");
                        c.nb("o_item_q", "16'd0");
                        c.nb("o_tile_q", "o_tile_q + 16'd1");
                        c.nb("o_rem_q", format!("o_rem_q - 16'd{rows}"));
                        c.nb("o_chan_q", format!("o_chan_q + {rowstep}"));
                        c.nb("o_dtile_q", format!("o_dtile_q + {aw}'d{rows}"));
                        c.nb("o_dest_q", format!("o_dtile_q + {aw}'d{rows}"));
                        let last = "o_tile_q + 16'd1 == r_tiles";
                        c.if_(
                            if s.global_pool {
                                format!("{last} && !r_gpool")
                            } else {
                                last.to_owned()
                            },
                            |c| {
                                c.nb("o_done_q", "1'b1");
                            },
                        );
                    },
                    |c| {
                        c.nb("o_citem_q", "o_citem_q + 16'd1");
                    },
                );
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// Bits of a row's sum of output codes over a tile: at most `MAX_ITEMS` codes of 8 bits, signed
/// or not (|Σ| ≤ 255 · 65,535 < 2^24), plus the sign.
const SUM_BITS: u32 = 25;

/// Global average pooling (`r_gpool`): every item leaving requantization adds its codes to its
/// row's sum (`gs<r>_q`, restarted by the tile's first item); the tile's last item's sums are
/// taken into a shift register and go one row per cycle through one more requant unit, as
/// `POOL_SUM_WEIGHT · Σ` with bias `POOL_SUM_BIAS`, the descriptor's `pool_mult` and `pool_shift`
/// and the layer's ReLU and output range. Their R codes, collected, are written as the tile's one
/// pixel (`m_emit_q`), to the run address and rows taken with the sums. The execute stage opens
/// that pixel's run only when no run is outstanding, so a tile's sums are never taken while the
/// tile before it still uses the shift register.
fn mean(m: &mut ModuleBuilder, s: &CoreShape, requant_if: &Interface) -> Result<()> {
    use caq_spec::descriptor::{POOL_SUM_BIAS, POOL_SUM_WEIGHT};
    // The sum enters the unit times POOL_SUM_WEIGHT, a power of two: shifted left.
    assert!(
        POOL_SUM_WEIGHT > 0 && (POOL_SUM_WEIGHT as u32).is_power_of_two(),
        "POOL_SUM_WEIGHT is a power of two"
    );
    let wl = POOL_SUM_WEIGHT.trailing_zeros();
    let rows = s.rows;
    let aw = s.addr_bits;
    let ri = clog2(rows);
    let cb = clog2(rows + 1);
    let sw = SUM_BITS;
    m.section("global average pooling: each row's sum over the tile, then its mean");
    let mut sums = Vec::new();
    for r in 0..rows {
        m.reg(&format!("gs{r}_q"), sw, None)?;
        let b = format!("q1_codes_q[{} +: 8]", 8 * r);
        m.wire_assign(
            &format!("gsum{r}"),
            Expr::raw(
                format!(
                    "((o_citem_q == 16'd0) ? {sw}'d0 : gs{r}_q) + \
                     (r_out_signed ? {{{{{e}{{q1_codes_q[{t}]}}}}, {b}}} : {{{e}'d0, {b}}})",
                    e = sw - 8,
                    t = 8 * r + 7
                ),
                sw,
            ),
            None,
        )?;
        sums.push(format!("gsum{r}"));
    }
    sums.reverse();
    for (name, width, doc) in [
        (
            "m_sh_q",
            rows * sw,
            "the tile's sums, row 0 next into the unit",
        ),
        ("m_cnt_q", cb, "rows still to enter the unit"),
        ("m_out_q", cb, "rows' codes collected"),
        (
            "m_codes_q",
            rows * 8,
            "the means, row r's at [8r +: 8] once all are in",
        ),
        ("m_emit_q", 1, "pulse: the tile's means are written"),
        ("m_chan_q", aw, "the tile's first channel's output address"),
        ("m_nrows_q", ri + 1, "the tile's rows"),
        ("m_tile_q", 16, "the tile"),
        ("m_ep_q", 1, "its staging epoch"),
        ("m_last_q", 1, "the descriptor's last tile"),
    ] {
        m.reg(name, width, Some(doc))?;
    }
    let rqm_valid = m.wire("rqm_valid", 1, None)?;
    let rqm_code = m.wire("rqm_code", 8, None)?;
    let top = format!("m_sh_q[{}]", sw - 1);
    let pad = ACC_T_BITS - sw - wl;
    m.instance(
        requant_if,
        "u_rqm",
        vec![
            ("clk", Expr::raw("clk", 1)),
            ("rst_n", Expr::raw("rst_n", 1)),
            ("clear", Expr::raw("clear", 1)),
            ("in_valid", Expr::raw(format!("m_cnt_q != {cb}'d0"), 1)),
            (
                "in_acc",
                Expr::raw(
                    format!("{{{{{pad}{{{top}}}}}, m_sh_q[{}:0], {wl}'d0}}", sw - 1),
                    ACC_T_BITS,
                ),
            ),
            ("in_bias", Expr::raw(format!("32'd{POOL_SUM_BIAS}"), 32)),
            ("in_mult", Expr::raw("r_pool_mult", 32)),
            ("in_shift", Expr::raw("r_pool_shift", 6)),
            ("in_relu", Expr::raw("r_relu", 1)),
            ("in_out_signed", Expr::raw("r_out_signed", 1)),
            ("in_out_bits", Expr::raw("r_out_bits", 4)),
            ("out_valid", rqm_valid.expr()),
            ("out_code", rqm_code.expr()),
        ],
    )?;
    let mut c = Code::new();
    c.if_("q1_valid_q && r_conv && r_gpool", |c| {
        for r in 0..rows {
            c.nb(format!("gs{r}_q"), format!("gsum{r}"));
        }
    });
    c.if_("rqm_valid", |c| {
        if rows == 1 {
            c.nb("m_codes_q", "rqm_code");
        } else {
            c.nb(
                "m_codes_q",
                format!("{{rqm_code, m_codes_q[{}:8]}}", rows * 8 - 1),
            );
        }
    });
    c.if_(format!("m_cnt_q != {cb}'d0"), |c| {
        c.nb("m_sh_q", format!("m_sh_q >> {sw}"));
    });
    c.if_("q1_valid_q && r_gpool && o_tile_end", |c| {
        c.nb("m_sh_q", format!("{{{}}}", sums.join(", ")));
        c.nb("m_chan_q", "o_chan_q");
        c.nb("m_nrows_q", "o_nrows");
        c.nb("m_tile_q", "o_tile_q");
        c.nb("m_ep_q", "o_ep_q");
        c.nb("m_last_q", "o_tile_q + 16'd1 == r_tiles");
    });
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("m_cnt_q", format!("{cb}'d0"));
            c.nb("m_out_q", format!("{cb}'d0"));
            c.nb("m_emit_q", "1'b0");
        },
        |c| {
            let full = format!("m_out_q == {cb}'d{}", rows - 1);
            c.nb("m_emit_q", format!("rqm_valid && {full}"));
            c.if_("rqm_valid", |c| {
                c.nb("m_out_q", format!("({full}) ? {cb}'d0 : m_out_q + {cb}'d1"));
            });
            c.if_(format!("m_cnt_q != {cb}'d0"), |c| {
                c.nb("m_cnt_q", format!("m_cnt_q - {cb}'d1"));
            });
            c.if_("q1_valid_q && r_gpool && o_tile_end", |c| {
                c.nb("m_cnt_q", format!("{cb}'d{rows}"));
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// The pooling stage between requantization and the staging, one register deep for every
/// descriptor: `q1_*` hold the item that left requantization a cycle ago. With max pooling of
/// window k = 2^r_pool, a line of partial maxima (one entry per pooled column, every row of the
/// tile in one word) is read as the item leaves requantization (its column's entry) and written
/// back a cycle later: the item's codes when it is its window's first, else the larger of them and
/// the entry's, per row. The item whose window it completes is written (`s_valid`); items past
/// the last whole window are dropped. Items are at least [`REQUANT_PHASES`] cycles apart, so a
/// read always sees the previous item's write. Without pooling every item is written.
fn pool(m: &mut ModuleBuilder, s: &CoreShape) -> Result<()> {
    let rows = s.rows;
    let lb = clog2(POOL_LINE);
    m.section("pooling stage: the max-pooling line, then the item written");
    for (name, width, doc) in [
        (
            "pcx_q",
            16,
            "column of the item leaving requantization (Conv2d)",
        ),
        ("pcy_q", 16, "its row"),
        ("q1_valid_q", 1, "an item left requantization a cycle ago"),
        ("q1_first_q", 1, "it opens its pooling window"),
        ("q1_emit_q", 1, "it completes its pooling window"),
        ("q1_in_q", 1, "it lies in a whole pooling window"),
        ("q1_j_q", lb, "its window's entry in the pooling line"),
    ] {
        m.reg(name, width, Some(doc))?;
    }
    m.reg(
        "q1_codes_q",
        rows * 8,
        Some("its codes, row r's at [8r +: 8]"),
    )?;
    m.reg("pl_rd_q", rows * 8, Some("the line entry of its window"))?;
    // LUT RAM: a block RAM's clock-to-output (2.5 ns) before the compare and the write back
    // would take the path past the 5 ns logic budget (docs/hardware.md "Timing").
    m.memory_distributed(
        "pl_mem",
        rows * 8,
        POOL_LINE,
        "partial maxima of the pooled row, one entry per pooled column",
    )?;
    m.wire_assign(
        "pool_m",
        Expr::raw(POOL_MASK.replace("x_pool", "r_pool"), 3),
        Some("k - 1: the item's place in its window is its row's and column's low bits"),
    )?;
    m.wire_assign(
        "p_first",
        Expr::raw(
            "(pcx_q[2:0] & pool_m) == 3'd0 && (pcy_q[2:0] & pool_m) == 3'd0",
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "p_emit",
        Expr::raw(
            pool_window_last("pcy_q", "pcx_q", "pool_m").replace("x_out", "r_out"),
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "p_in",
        Expr::raw(
            pool_in_window("pcy_q", "pcx_q", "pool_m").replace("x_out", "r_out"),
            1,
        ),
        Some("the item lies in a whole window (rows and columns past the last are dropped)"),
    )?;
    m.lint_off(
        "UNUSEDSIGNAL",
        "a column past the pooling line's last entry is never in a whole window",
    );
    m.wire_assign(
        "p_j",
        Expr::raw("pcx_q >> r_pool", 16),
        Some("the item's pooled column"),
    )?;
    m.lint_on("UNUSEDSIGNAL");
    let mut max = Vec::new();
    for r in (0..rows).rev() {
        let (a, b) = (
            format!("pl_rd_q[{} +: 8]", 8 * r),
            format!("q1_codes_q[{} +: 8]", 8 * r),
        );
        max.push(format!(
            "((r_out_signed ? ($signed({a}) > $signed({b})) : ({a} > {b})) ? {a} : {b})"
        ));
    }
    m.wire_assign(
        "p_max",
        Expr::raw(format!("{{{}}}", max.join(", ")), rows * 8),
        Some("per row, the larger of the line's entry and the item's code"),
    )?;
    m.wire_assign(
        "p_codes",
        Expr::raw("q1_first_q ? q1_codes_q : p_max", rows * 8),
        Some("the window's maximum so far"),
    )?;
    let (items, writes, codes) = (
        "(r_pool == 2'd0 || (q1_in_q && q1_emit_q))",
        "q1_valid_q && (!r_conv || ITEMS)",
        "(r_pool == 2'd0) ? q1_codes_q : p_codes",
    );
    let (writes, valid, codes) = if s.global_pool {
        (
            writes.replace("ITEMS", &format!("(!r_gpool && {items})")),
            "q1_writes || m_emit_q".to_owned(),
            format!("m_emit_q ? m_codes_q : {codes}"),
        )
    } else {
        (
            writes.replace("ITEMS", items),
            "q1_writes".to_owned(),
            codes.to_owned(),
        )
    };
    m.wire_assign(
        "q1_writes",
        Expr::raw(writes, 1),
        Some("the item (or the max-pooling window it completes) is written"),
    )?;
    m.wire_assign(
        "s_valid",
        Expr::raw(valid, 1),
        Some("a pixel is written: an item's, a max-pooling window's or a tile's means"),
    )?;
    m.wire_assign("s_codes", Expr::raw(codes, rows * 8), None)?;
    m.wire_assign(
        "d_push",
        Expr::raw("q1_valid_q && !r_conv", 1),
        Some("Dense: the item's output"),
    )?;
    let mut c = Code::new();
    c.nb("q1_codes_q", "q_codes");
    c.nb("q1_first_q", "p_first");
    c.nb("q1_emit_q", "p_emit");
    c.nb("q1_in_q", "p_in");
    c.nb("q1_j_q", format!("p_j[{}:0]", lb - 1));
    c.nb("pl_rd_q", format!("pl_mem[p_j[{}:0]]", lb - 1));
    c.if_("q1_valid_q && r_conv && r_pool != 2'd0 && q1_in_q", |c| {
        c.nb("pl_mem[q1_j_q]", "p_codes");
    });
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("q1_valid_q", "1'b0");
        },
        |c| {
            c.nb("q1_valid_q", "q_valid");
            c.if_("r_start", |c| {
                c.nb("pcx_q", "16'd0");
                c.nb("pcy_q", "16'd0");
            });
            c.if_("q_valid && r_conv", |c| {
                c.if_else(
                    "pcx_q == r_out_w - 16'd1",
                    |c| {
                        c.nb("pcx_q", "16'd0");
                        c.nb(
                            "pcy_q",
                            "(pcy_q == r_out_h - 16'd1) ? 16'd0 : pcy_q + 16'd1",
                        );
                    },
                    |c| {
                        c.nb("pcx_q", "pcx_q + 16'd1");
                    },
                );
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// The request stage: each run (a Conv2d run's rows one by one, or a Dense output) as a write
/// request, checked against the window; its data job queued for the data stage. After a window
/// error every later run becomes a null job (no request, no beats) so credits still return.
fn requests(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape) -> Result<()> {
    let aw = s.addr_bits;
    let bb = u64::from(cfg.bus_bytes());
    let lbb = clog2(cfg.bus_bytes());
    let ri = clog2(s.rows);
    let pb = clog2(s.stage_bytes);
    let runl = clog2(s.run_bytes);
    let wb = WORDS_BITS;
    let rqb = clog2(RUN_QUEUE).max(1);
    let dqb = clog2(DENSE_QUEUE).max(1);
    m.section("request stage");
    m.localparam("A_IDLE", Expr::lit(2, 0), None)?;
    m.localparam("A_CHK", Expr::lit(2, 1), None)?;
    m.localparam("A_REQ", Expr::lit(2, 2), None)?;
    for (name, width, doc) in [
        ("ast_q", 2, "state"),
        ("a_rq_q", rqb, "the next run to request (Conv2d)"),
        (
            "a_rqn_q",
            clog2(RUN_QUEUE + 1),
            "runs queued and not yet requested",
        ),
        ("a_dq_q", dqb, "the next output to request (Dense)"),
        (
            "a_dqn_q",
            clog2(DENSE_QUEUE + 1),
            "outputs queued and not yet requested",
        ),
        ("a_conv_q", 1, "the job is a Conv2d run's row"),
        ("a_row_q", ri + 1, "its row"),
        ("a_nrows_q", ri + 1, "the run's rows"),
        ("a_dest_q", aw, "the burst's first byte"),
        ("a_len_q", 7, "its bytes"),
        ("a_pos_q", pb, "Conv2d: the run's first staging position"),
        ("a_tile_q", 16, ""),
        (
            "a_step_q",
            16,
            "Conv2d: bytes between the run's rows (the written map's H*W)",
        ),
        (
            "a_ep_q",
            1,
            "the epoch whose runs the writer takes (o_ep_q's, or the previous one's while its \
             writes drain)",
        ),
        ("a_lo_q", aw + 2, "the burst rounded out to beats"),
        ("a_hi_q", aw + 2, ""),
        (
            "a_err_q",
            1,
            "a burst was outside the window: every later one is dropped",
        ),
    ] {
        m.reg(name, width, Some(doc))?;
    }
    // The data stage's job queue: two entries.
    for (f, w) in [
        ("conv", 1),
        ("null", 1),
        ("row", ri.max(1)),
        ("pos", pb),
        ("off", lbb),
        ("len", 7),
        ("beats", 5),
        ("last", 1),
        ("base", aw - lbb),
    ] {
        m.memory(&format!("jq_{f}"), w, 2, "data job field")?;
    }
    m.reg("jq_wp_q", 1, None)?;
    m.reg("jq_rp_q", 1, None)?;
    m.reg("jq_n_q", 2, Some("jobs queued"))?;
    // The window, registered from the inputs (their saturation is off the check's path; it does
    // not change while a job runs).
    m.reg("win_base_q", aw + 1, None)?;
    m.reg("win_limit_q", aw + 1, None)?;
    let mut wr = Code::new();
    wr.nb("win_base_q", "win_base");
    wr.nb("win_limit_q", "win_limit");
    m.always_ff(&m.sig("clk")?, wr)?;
    m.wire_assign(
        "a_in_win",
        Expr::raw(
            "a_lo_q >= {1'b0, win_base_q} && a_hi_q <= {1'b0, win_limit_q}",
            1,
        ),
        Some("the burst, rounded out to beats, lies in [WIN_BASE, WIN_LIMIT)"),
    )?;
    let job_free = "jq_n_q != 2'd2";
    m.assign_raw(
        "wr_req_valid",
        format!("ast_q == A_REQ && !a_err_q && a_in_win && {job_free}"),
    )?;
    m.assign_raw("wr_req_addr", format!("a_dest_q & ~{aw}'d7"))?;
    m.assign_raw(
        "wr_req_words",
        format!(
            "({{{z}'d0, a_dest_q[2:0]}} + {{{z2}'d0, a_len_q}} + {wb}'d7) >> 3",
            z = wb - 3,
            z2 = wb - 7
        ),
    )?;
    m.wire_assign(
        "wr_req_fire",
        Expr::raw("wr_req_valid && wr_req_ready", 1),
        None,
    )?;
    m.wire_assign(
        "w_quiet",
        Expr::raw(
            format!(
                "jq_n_q == 2'd0 && !b_busy_q && !r1_v_q && !r2_v_q && bf_n_q == {}'d0 && !wr_busy",
                clog2(BEAT_FIFO) + 1
            ),
            1,
        ),
        Some("every write issued is answered and nothing is being formed"),
    )?;
    let rn = clog2(RUN_QUEUE + 1);
    m.wire_assign(
        "a_next_ep",
        Expr::raw(
            format!("ast_q == A_IDLE && w_prev && (a_rqn_q == {rn}'d0 || rq_ep[a_rq_q] != a_ep_q)"),
            1,
        ),
        Some(
            "the writer is on the previous descriptor's runs and has taken them all (this stage \
             moved on after its last one was queued)",
        ),
    )?;
    m.wire_assign(
        "a_switch",
        Expr::raw("a_next_ep && w_quiet", 1),
        Some(
            "the previous descriptor's writes are all answered: its BRESPs are checked, then the \
             writer takes the next one's runs",
        ),
    )?;
    m.wire_assign(
        "a_switch_err",
        Expr::raw("a_switch && wr_err[1]", 1),
        Some("a write of the previous descriptor failed: nothing later is written"),
    )?;
    m.wire_assign(
        "a_bad",
        Expr::raw("ast_q == A_REQ && !a_err_q && !a_in_win", 1),
        Some("the burst lies outside the window"),
    )?;
    m.wire_assign(
        "a_push",
        Expr::raw(
            format!("ast_q == A_REQ && {job_free} && (a_err_q || a_bad || wr_req_fire)"),
            1,
        ),
        Some("the job goes to the data stage (a null job after a window error)"),
    )?;
    m.lint_off(
        "UNUSEDSIGNAL",
        "the burst's bytes beyond whole beats (only the beat count is kept)",
    );
    m.wire_assign(
        "a_end_beat",
        Expr::raw(
            format!(
                "{{{z}'d0, a_dest_q[{}:0]}} + {{2'd0, a_len_q}} + 9'd{}",
                lbb - 1,
                bb - 1,
                z = 9 - lbb
            ),
            9,
        ),
        Some("offset + bytes + B - 1: the beats, times B"),
    )?;
    m.lint_on("UNUSEDSIGNAL");
    let mut c = Code::new();
    c.if_("a_push", |c| {
        c.nb("jq_conv[jq_wp_q]", "a_conv_q");
        c.nb("jq_null[jq_wp_q]", "a_err_q || a_bad");
        c.nb("jq_row[jq_wp_q]", format!("a_row_q[{}:0]", ri.max(1) - 1));
        c.nb("jq_pos[jq_wp_q]", "a_pos_q");
        c.nb("jq_base[jq_wp_q]", format!("a_dest_q[{}:{lbb}]", aw - 1));
        c.nb("jq_off[jq_wp_q]", format!("a_dest_q[{}:0]", lbb - 1));
        c.nb("jq_len[jq_wp_q]", "a_len_q");
        c.nb(
            "jq_beats[jq_wp_q]",
            format!("a_end_beat[{}:{lbb}]", lbb + 4),
        );
        c.nb(
            "jq_last[jq_wp_q]",
            "!a_conv_q || a_row_q + 1 == a_nrows_q"
                .replace("a_row_q + 1", &format!("a_row_q + {}'d1", ri + 1)),
        );
    });
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("ast_q", "A_IDLE");
            c.nb("a_rqn_q", format!("{}'d0", clog2(RUN_QUEUE + 1)));
            c.nb("a_dqn_q", format!("{}'d0", clog2(DENSE_QUEUE + 1)));
            c.nb("a_rq_q", format!("{rqb}'d0"));
            c.nb("a_dq_q", format!("{dqb}'d0"));
            c.nb("a_err_q", "1'b0");
            c.nb("a_ep_q", "1'b0");
            c.nb("jq_wp_q", "1'b0");
        },
        |c| {
            c.if_("r_start && !r_early", |c| {
                c.nb("a_err_q", "1'b0");
            });
            c.if_("a_bad || a_switch_err || fin_err", |c| {
                c.nb("a_err_q", "1'b1");
            });
            c.if_("a_switch", |c| {
                c.nb("a_ep_q", "!a_ep_q");
            });
            c.if_("a_push", |c| {
                c.nb("jq_wp_q", "!jq_wp_q");
            });
            let take_run = "ast_q == A_IDLE && a_rqn_q != 0 && rq_ep[a_rq_q] == a_ep_q";
            let take_out = "ast_q == A_IDLE && a_rqn_q == 0 && a_dqn_q != 0";
            let dn = clog2(DENSE_QUEUE + 1);
            c.nb(
                "a_rqn_q",
                format!(
                    "a_rqn_q + {{{z}'d0, o_run_end}} - {{{z}'d0, {t}}}",
                    z = rn - 1,
                    t = take_run.replace("!= 0", &format!("!= {rn}'d0"))
                ),
            );
            c.nb(
                "a_dqn_q",
                format!(
                    "a_dqn_q + {{{z}'d0, d_push}} - {{{z}'d0, {t}}}",
                    z = dn - 1,
                    t = take_out
                        .replace("a_rqn_q == 0", &format!("a_rqn_q == {rn}'d0"))
                        .replace("!= 0", &format!("!= {dn}'d0"))
                ),
            );
            c.case_block("case (ast_q)", |c| {
                c.block("A_IDLE:", |c| {
                    c.if_else(
                        format!("a_rqn_q != {rn}'d0"),
                        |c| {
                            c.if_("rq_ep[a_rq_q] == a_ep_q", |c| {
                                c.nb("a_conv_q", "1'b1");
                                c.nb("a_row_q", format!("{}'d0", ri + 1));
                                c.nb("a_nrows_q", "rq_nrows[a_rq_q]");
                                c.nb("a_dest_q", "rq_dest[a_rq_q]");
                                c.nb("a_len_q", zext("rq_len[a_rq_q]", runl + 1, 7));
                                c.nb("a_pos_q", "rq_pos[a_rq_q]");
                                c.nb("a_tile_q", "rq_tile[a_rq_q]");
                                c.nb("a_step_q", "rq_step[a_rq_q]");
                                c.nb("a_rq_q", format!("a_rq_q + {rqb}'d1"));
                                c.nb("ast_q", "A_CHK");
                            });
                        },
                        |c| {
                            c.if_(format!("a_dqn_q != {dn}'d0"), |c| {
                                c.nb("a_conv_q", "1'b0");
                                c.nb("a_row_q", format!("{}'d0", ri + 1));
                                c.nb("a_nrows_q", format!("{}'d1", ri + 1));
                                c.nb("a_dest_q", "dq_dest[a_dq_q]");
                                c.nb("a_len_q", zext("dq_nrows[a_dq_q]", ri + 1, 7));
                                c.nb("a_tile_q", "dq_tile[a_dq_q]");
                                c.nb("a_dq_q", format!("a_dq_q + {dqb}'d1"));
                                c.nb("ast_q", "A_CHK");
                            });
                        },
                    );
                });
                c.block("A_CHK:", |c| {
                    c.nb(
                        "a_lo_q",
                        format!("{{2'd0, a_dest_q}} & ~{}'d{}", aw + 2, bb - 1),
                    );
                    c.nb(
                        "a_hi_q",
                        format!(
                            "({{2'd0, a_dest_q}} + {{{z}'d0, a_len_q}} + {w}'d{b1}) & ~{w}'d{b1}",
                            z = aw + 2 - 7,
                            w = aw + 2,
                            b1 = bb - 1
                        ),
                    );
                    c.nb("ast_q", "A_REQ");
                });
                c.block("A_REQ:", |c| {
                    c.if_("a_push", |c| {
                        c.if_else(
                            format!("a_conv_q && a_row_q + {}'d1 != a_nrows_q", ri + 1),
                            |c| {
                                c.nb("a_row_q", format!("a_row_q + {}'d1", ri + 1));
                                c.nb(
                                    "a_dest_q",
                                    format!("a_dest_q + {{{}'d0, a_step_q}}", aw - 16),
                                );
                                c.nb("ast_q", "A_CHK");
                            },
                            |c| {
                                c.nb("ast_q", "A_IDLE");
                            },
                        );
                    });
                });
                c.line("default: ;");
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// The data stage: beats formed from the staging (or the output queue) at the request's byte
/// offset, with strobes on its bytes, into a small queue before the write port. A Conv2d run's
/// row reads entries E0, E0+1, ... of the row's staging (registered read, then the row's lanes
/// chosen); beat k is the bytes from the rotation of entries E0+k and E0+k+1. A Dense output's
/// beats come from its queue entry shifted to the burst's offset.
fn beats(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape) -> Result<()> {
    let rows = s.rows;
    let bb = cfg.bus_bytes();
    let lbb = clog2(bb);
    let se = s.stage_bytes / bb;
    let seb = clog2(se);
    let pb = clog2(s.stage_bytes);
    let ri = clog2(rows);
    let fb = clog2(BEAT_FIFO);
    let bw = 8 * bb;
    let rqb = clog2(RUN_QUEUE).max(1);
    let dqb = clog2(DENSE_QUEUE).max(1);
    m.section("data stage");
    for (name, width, doc) in [
        ("b_busy_q", 1, "a job is being formed"),
        ("b_conv_q", 1, ""),
        ("b_null_q", 1, ""),
        ("b_row_q", ri.max(1), ""),
        ("b_off_q", lbb, ""),
        ("b_len_q", 7, ""),
        ("b_beats_q", 5, ""),
        ("b_last_q", 1, ""),
        ("b_rot_q", lbb, "staging rotation: (pos - off) mod B"),
        ("b_e_q", seb.max(1), "next staging entry to read"),
        ("b_rd_q", 5, "reads issued for the job"),
        ("b_k_q", 5, "beats formed for the job"),
    ] {
        m.reg(name, width, if doc.is_empty() { None } else { Some(doc) })?;
    }
    // Staging reads: every row's lanes at one entry, registered; then the job's row.
    let mut rd = Code::new();
    for r in 0..rows {
        for l in 0..bb {
            m.reg(&format!("st{r}_{l}_rd_q"), 8, None)?;
            let entry = if seb == 0 {
                "1'b0".to_owned()
            } else {
                "b_e_q".to_owned()
            };
            rd.nb(format!("st{r}_{l}_rd_q"), format!("st{r}_{l}_mem[{entry}]"));
        }
    }
    m.always_ff(&m.sig("clk")?, rd)?;
    for (name, width) in [
        ("r1_v_q", 1),
        ("r1_beat_q", 1),
        ("r2_v_q", 1),
        ("r2_beat_q", 1),
    ] {
        m.reg(name, width, None)?;
    }
    m.reg("r1_row_q", ri.max(1), None)?;
    // What a read's beat needs travels with the read, so the next job's reads follow the last
    // one's without a gap.
    for st in ["r1", "r2"] {
        m.reg(
            &format!("{st}_sel_q"),
            lbb + 1,
            Some("the beat's first byte in {cur, prev}: B when aligned, else the rotation"),
        )?;
        m.reg(&format!("{st}_strb_q"), bb, None)?;
    }
    let bab = s.addr_bits - lbb;
    m.reg("b_base_q", bab, Some("the job's first beat's address / B"))?;
    for st in ["r1", "r2"] {
        m.reg(&format!("{st}_ba_q"), bab, Some("the beat's address / B"))?;
    }
    m.reg("cur_q", bw, Some("the job's row's entry just read"))?;
    m.reg("prev_q", bw, Some("the entry before it"))?;
    let row_entry = |r: u32| {
        let entry = (0..bb)
            .rev()
            .map(|l| format!("st{r}_{l}_rd_q"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{{{entry}}}")
    };
    let row_sel = if rows == 1 {
        row_entry(0)
    } else {
        (0..rows)
            .map(|r| format!("(r1_row_q == {}'d{r}) ? {}", ri.max(1), row_entry(r)))
            .collect::<Vec<_>>()
            .join(" : ")
            + &format!(" : {bw}'d0")
    };
    m.wire_assign("row_entry", Expr::raw(row_sel, bw), None)?;
    // The beat queue.
    m.memory("bf_data", bw, BEAT_FIFO, "beats formed")?;
    m.memory("bf_strb", bb, BEAT_FIFO, "their strobes")?;
    m.memory("bf_addr", bab, BEAT_FIFO, "their addresses / B")?;
    m.reg("bf_wp_q", fb, None)?;
    m.reg("bf_rp_q", fb, None)?;
    m.reg("bf_n_q", fb + 1, Some("beats queued"))?;
    m.wire_assign(
        "b_job_go",
        Expr::raw("(!b_busy_q || (b_fin && b_conv_q)) && jq_n_q != 2'd0", 1),
        Some(
            "take the next job: in the cycle a Conv2d job's last read is issued, a cycle after a \
             Dense job's last beat (whose output-queue entry is then free)",
        ),
    )?;
    m.wire_assign(
        "b_room",
        Expr::raw(
            format!(
                "bf_n_q + {{{fb}'d0, r1_v_q && r1_beat_q}} + {{{fb}'d0, r2_v_q && r2_beat_q}} < {w}'d{BEAT_FIFO}",
                w = fb + 1
            ),
            1,
        ),
        Some("a beat formed now, and those the reads in flight will form, still fit the queue"),
    )?;
    m.wire_assign(
        "b_rot0",
        Expr::raw(format!("b_rot_q == {lbb}'d0"), 1),
        Some("the run's bytes lie in the staging as in memory: entry E0 + k is beat k"),
    )?;
    m.wire_assign(
        "b_read",
        Expr::raw("b_busy_q && b_conv_q && !b_null_q && b_room", 1),
        Some("Conv2d: read the next staging entry (beats reads, one more when rotated)"),
    )?;
    m.wire_assign(
        "b_read_last",
        Expr::raw(
            "b_rot0 ? (b_rd_q + 5'd1 == b_beats_q) : (b_rd_q == b_beats_q)",
            1,
        ),
        Some("this read forms the job's last beat"),
    )?;
    m.wire_assign(
        "b_kc",
        Expr::raw("b_rot0 ? b_rd_q : b_rd_q - 5'd1", 5),
        Some("Conv2d: the beat the read forms (rotated: the first read only fills cur)"),
    )?;
    m.wire_assign(
        "b_dense_beat",
        Expr::raw(
            "b_busy_q && !b_conv_q && !b_null_q && b_k_q != b_beats_q && b_room",
            1,
        ),
        Some("Dense: form the next beat from the output queue"),
    )?;
    m.wire_assign(
        "r2_beat",
        Expr::raw("r2_v_q && r2_beat_q", 1),
        Some("Conv2d: a beat is formed from prev and cur"),
    )?;
    // Strobes of beat k: byte b lies in [off, off + len).
    let kw = 5 + lbb;
    m.wire_assign(
        "b_lo",
        Expr::raw(format!("{{(b_conv_q ? b_kc : b_k_q), {lbb}'d0}}"), kw),
        Some("k * B: the beat's first byte from the burst's beat-aligned start"),
    )?;
    m.wire_assign(
        "b_hi",
        Expr::raw(
            format!(
                "{{{z}'d0, b_off_q}} + {{{z2}'d0, b_len_q}}",
                z = kw - lbb,
                z2 = kw - 7
            ),
            kw,
        ),
        Some("off + len: the first byte past the burst"),
    )?;
    let strb = (0..bb)
        .rev()
        .map(|b| {
            format!(
                "(b_lo + {kw}'d{b} >= {{{z}'d0, b_off_q}} && b_lo + {kw}'d{b} < b_hi)",
                z = kw - lbb
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    m.wire_assign("b_strb", Expr::raw(format!("{{{strb}}}"), bb), None)?;
    m.wire_assign(
        "pair",
        Expr::raw("{cur_q, prev_q}", 2 * bw),
        Some("entries E0+k (prev) and E0+k+1 (cur), or E0+k alone (cur) when aligned"),
    )?;
    let funnel = (0..bb)
        .rev()
        .map(|b| format!("pair[{{r2_sel_q + {}'d{b}, 3'd0}} +: 8]", lbb + 1))
        .collect::<Vec<_>>()
        .join(", ");
    m.wire_assign(
        "funnel",
        Expr::raw(format!("{{{funnel}}}"), bw),
        Some("the beat: bytes sel .. sel + B - 1 of the pair"),
    )?;
    // Dense: the output's codes shifted to the burst's offset.
    let dl = rows * 8 + bw;
    m.reg(
        "dv_q",
        dl,
        Some("Dense: the codes shifted left by the burst's offset"),
    )?;
    let kb = clog2(dl.div_ceil(bw));
    m.wire_assign(
        "dense_beat",
        Expr::raw(
            format!(
                "dv_q[{{b_k_q[{}:0], {}'d0}} +: {bw}]",
                kb.max(1) - 1,
                lbb + 3
            ),
            bw,
        ),
        None,
    )?;
    m.wire_assign(
        "b_fin",
        Expr::raw(
            "b_busy_q && (b_null_q || (b_conv_q ? (b_read && b_read_last) : \
             (b_dense_beat && b_k_q + 5'd1 == b_beats_q)))",
            1,
        ),
        Some("the job's last read (Conv2d) or beat (Dense) is issued, or the job is null"),
    )?;
    let mut c = Code::new();
    c.comment("the running job's counters; a job taken in the same cycle overrides them");
    c.if_("b_read", |c| {
        c.nb("b_rd_q", "b_rd_q + 5'd1");
        if seb > 0 {
            c.nb("b_e_q", format!("b_e_q + {seb}'d1"));
        }
    });
    c.if_("b_dense_beat", |c| {
        c.nb("b_k_q", "b_k_q + 5'd1");
    });
    c.if_("b_job_go", |c| {
        c.nb("b_conv_q", "jq_conv[jq_rp_q]");
        c.nb("b_null_q", "jq_null[jq_rp_q]");
        c.nb("b_row_q", "jq_row[jq_rp_q]");
        c.nb("b_off_q", "jq_off[jq_rp_q]");
        c.nb("b_len_q", "jq_len[jq_rp_q]");
        c.nb("b_base_q", "jq_base[jq_rp_q]");
        c.nb("b_beats_q", "jq_beats[jq_rp_q]");
        c.nb("b_last_q", "jq_last[jq_rp_q]");
        c.nb(
            "b_rot_q",
            format!("jq_pos[jq_rp_q][{}:0] - jq_off[jq_rp_q]", lbb - 1),
        );
        if seb > 0 {
            c.nb(
                "b_e_q",
                format!(
                    "jq_pos[jq_rp_q][{}:{lbb}] - {{{}'d0, jq_pos[jq_rp_q][{}:0] < jq_off[jq_rp_q]}}",
                    pb - 1,
                    seb - 1,
                    lbb - 1
                ),
            );
        }
        c.nb("b_rd_q", "5'd0");
        c.nb("b_k_q", "5'd0");
        c.nb(
            "dv_q",
            format!("{{{bw}'d0, dq_codes[dq_rp_q]}} << {{jq_off[jq_rp_q], 3'd0}}"),
        );
    });
    c.nb("r1_beat_q", "b_rot0 || b_rd_q != 5'd0");
    c.nb("r1_row_q", "b_row_q");
    c.nb(
        "r1_sel_q",
        format!("b_rot0 ? {}'d{bb} : {{1'b0, b_rot_q}}", lbb + 1),
    );
    c.nb("r1_strb_q", "b_strb");
    c.nb("r1_ba_q", format!("b_base_q + {}", zext("b_kc", 5, bab)));
    c.nb("r2_ba_q", "r1_ba_q");
    c.nb("r2_beat_q", "r1_beat_q");
    c.nb("r2_sel_q", "r1_sel_q");
    c.nb("r2_strb_q", "r1_strb_q");

    c.if_("r1_v_q", |c| {
        c.nb("cur_q", "row_entry");
        c.nb("prev_q", "cur_q");
    });
    c.if_("r2_beat || b_dense_beat", |c| {
        c.nb("bf_data[bf_wp_q]", "r2_beat ? funnel : dense_beat");
        c.nb("bf_strb[bf_wp_q]", "r2_beat ? r2_strb_q : b_strb");
        c.nb(
            "bf_addr[bf_wp_q]",
            format!("r2_beat ? r2_ba_q : b_base_q + {}", zext("b_k_q", 5, bab)),
        );
    });
    let rn = clog2(RUN_QUEUE + 1);
    let dn = clog2(DENSE_QUEUE + 1);
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("b_busy_q", "1'b0");
            c.nb("r1_v_q", "1'b0");
            c.nb("r2_v_q", "1'b0");
            c.nb("bf_wp_q", format!("{fb}'d0"));
            c.nb("bf_rp_q", format!("{fb}'d0"));
            c.nb("bf_n_q", format!("{}'d0", fb + 1));
            c.nb("jq_rp_q", "1'b0");
            c.nb("jq_n_q", "2'd0");
            c.nb("rq_rp_q", format!("{rqb}'d0"));
            c.nb("rq_n_q", format!("{rn}'d0"));
            c.nb("dq_rp_q", format!("{dqb}'d0"));
            c.nb("dq_n_q", format!("{dn}'d0"));
        },
        |c| {
            c.nb("r1_v_q", "b_read");
            c.nb("r2_v_q", "r1_v_q");
            c.if_("b_fin", |c| {
                c.nb("b_busy_q", "1'b0");
            });
            c.if_("b_job_go", |c| {
                c.nb("b_busy_q", "1'b1");
                c.nb("jq_rp_q", "!jq_rp_q");
            });
            c.nb("jq_n_q", "jq_n_q + {1'b0, a_push} - {1'b0, b_job_go}");
            c.if_("r2_beat || b_dense_beat", |c| {
                c.nb("bf_wp_q", format!("bf_wp_q + {fb}'d1"));
            });
            c.nb(
                "bf_n_q",
                format!(
                    "bf_n_q + {{{fb}'d0, r2_beat || b_dense_beat}} - {{{fb}'d0, wr_valid && wr_ready}}"
                ),
            );
            c.if_("wr_valid && wr_ready", |c| {
                c.nb("bf_rp_q", format!("bf_rp_q + {fb}'d1"));
            });
            c.comment("a finished job frees its run (after the run's last row) or its output");
            c.nb(
                "rq_n_q",
                format!(
                    "rq_n_q + {{{z}'d0, o_run_end}} - {{{z}'d0, run_free}}",
                    z = rn - 1
                ),
            );
            c.if_("run_free", |c| {
                c.nb("rq_rp_q", format!("rq_rp_q + {rqb}'d1"));
            });
            c.nb(
                "dq_n_q",
                format!(
                    "dq_n_q + {{{z}'d0, d_push}} - {{{z}'d0, out_free}}",
                    z = dn - 1
                ),
            );
            c.if_("out_free", |c| {
                c.nb("dq_rp_q", format!("dq_rp_q + {dqb}'d1"));
            });
        },
    );
    m.wire_assign(
        "run_free",
        Expr::raw("b_fin && b_conv_q && b_last_q", 1),
        Some("a Conv2d run's last row is formed: its staging positions are free"),
    )?;
    m.wire_assign(
        "out_free",
        Expr::raw("b_fin && !b_conv_q", 1),
        Some("a Dense output is formed: its queue entry is free"),
    )?;
    m.always_ff(&m.sig("clk")?, c)?;
    let runl = clog2(s.run_bytes);
    let cb = credit_bits(s);
    // Credits go back a cycle later, registered (off the data stage's path into the sequencer).
    m.reg("cr_q", cb, Some("credits returned this cycle"))?;
    m.reg("rcr_q", 1, Some("a run's credit returned this cycle"))?;
    let mut cr = Code::new();
    cr.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("cr_q", format!("{cb}'d0"));
            c.nb("rcr_q", "1'b0");
        },
        |c| {
            c.nb(
                "cr_q",
                format!(
                    "(run_free ? {{{z}'d0, rq_len[rq_rp_q]}} : out_free ? {cb}'d1 : {cb}'d0) + \
                     {{{z1}'d0, q1_valid_q && r_conv && !q1_writes{held}}}",
                    z = cb - runl - 1,
                    z1 = cb - 1,
                    // The tile's last item's credit comes back with its means' run.
                    held = if s.global_pool {
                        " && !(r_gpool && o_tile_end)"
                    } else {
                        ""
                    }
                ),
            );
            c.nb("rcr_q", "run_free");
        },
    );
    m.always_ff(&m.sig("clk")?, cr)?;
    m.assign_raw("credit_ret", "cr_q")?;
    m.assign_raw("run_credit_ret", "rcr_q")?;
    m.assign_raw("wr_valid", format!("bf_n_q != {}'d0", fb + 1))?;
    m.assign_raw("wr_data", "bf_data[bf_rp_q]")?;
    m.assign_raw("wr_strb", "bf_strb[bf_rp_q]")?;
    m.assign_raw("wr_beat_addr", format!("{{bf_addr[bf_rp_q], {lbb}'d0}}"))?;
    let pop = (0..bb)
        .map(|b| format!("{{15'd0, wr_strb[{b}]}}"))
        .collect::<Vec<_>>()
        .join(" + ");
    // Registered: the strobes come out of the beat queue's LUT RAM, and the count feeds the
    // 64-bit PERF_BYTES_WR adder.
    m.reg(
        "pbw_q",
        16,
        Some("bytes of the beat that went out last cycle"),
    )?;
    let mut pc = Code::new();
    pc.nb("pbw_q", format!("(wr_valid && wr_ready) ? ({pop}) : 16'd0"));
    m.always_ff(&m.sig("clk")?, pc)?;
    m.assign_raw("perf_bytes_wr", "pbw_q")?;
    Ok(())
}

/// Completion: every output written and acknowledged, then `x_done` (or, on a bus error,
/// `res_err`); idle.
fn finish(m: &mut ModuleBuilder, s: &CoreShape) -> Result<()> {
    let code = |e: ErrorCode| format!("8'd{}", e.as_u8());
    m.section("completion");
    m.reg(
        "rqv_q",
        RQ_LATENCY + 1,
        Some("items inside the requant units (both phases)"),
    )?;
    m.reg(
        "fin_q",
        1,
        Some("the descriptor's completion was signalled"),
    )?;
    m.reg("x_done_q", 1, None)?;
    m.reg("err_v_q", 1, None)?;
    m.reg("err_code_q", 8, None)?;
    m.reg("err_tile_q", 16, None)?;
    m.reg("err_desc_q", 16, None)?;
    m.reg("wec_q", 1, None)?;
    for (name, doc) in [
        (
            "pd_q",
            "the previous descriptor's index (whose writes may still drain)",
        ),
        ("pt_q", "its tiles"),
    ] {
        m.reg(name, 16, Some(doc))?;
    }
    let rn = clog2(RUN_QUEUE + 1);
    let dn = clog2(DENSE_QUEUE + 1);
    let fb = clog2(BEAT_FIFO);
    m.wire_assign(
        "drained",
        Expr::raw(
            format!(
                "rqv_q == {l}'d0 && !q1_valid_q && rq_n_q == {rn}'d0 && dq_n_q == {dn}'d0 && ast_q == A_IDLE && \
                 jq_n_q == 2'd0 && !b_busy_q && !r1_v_q && !r2_v_q && bf_n_q == {f}'d0 && !wr_busy",
                l = RQ_LATENCY + 1,
                f = fb + 1
            ),
            1,
        ),
        Some("nothing of the descriptor is left in the stage or the DMA engine"),
    )?;
    m.wire_assign(
        "fin_go",
        Expr::raw(
            "!fin_q && o_done_q && drained && !a_err_q && !x_start && !r_pend_q && !r_start",
            1,
        ),
        Some("every output of the descriptor (and of the one before it) is written and answered"),
    )?;
    m.wire_assign(
        "fin_err",
        Expr::raw("fin_go && wr_err[1]", 1),
        Some("one of its writes failed"),
    )?;
    m.wire_assign(
        "w_prev",
        Expr::raw("a_ep_q != o_ep_q", 1),
        Some("the writer is on the previous descriptor's runs"),
    )?;
    m.assign_raw(
        "x_tail",
        "x_issued && r_conv && !x_start && !r_pend_q && !r_start && !w_prev && !a_err_q",
    )?;
    let mut c = Code::new();
    c.nb("x_done_q", "1'b0");
    c.nb("err_v_q", "1'b0");
    c.comment("the BRESPs are forgotten when a descriptor starts after the last one completed, and when the writer moves on from a previous descriptor's runs");
    c.nb("wec_q", "(r_start && !r_early) || a_switch");
    c.if_("r_go", |c| {
        c.nb("pd_q", "r_desc");
        c.nb("pt_q", "r_tiles");
    });
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("rqv_q", format!("{}'d0", RQ_LATENCY + 1));
            c.nb("fin_q", "1'b1");
        },
        |c| {
            c.nb(
                "rqv_q",
                format!("{{rqv_q[{}:0], acc_valid}}", RQ_LATENCY - 1),
            );
            c.if_("r_start", |c| {
                c.nb("fin_q", "1'b0");
            });
            c.if_("a_bad", |c| {
                c.nb("err_v_q", "1'b1");
                c.nb("err_code_q", code(ErrorCode::OutOfWindow));
                c.nb("err_tile_q", "a_tile_q");
                c.nb("err_desc_q", "w_prev ? pd_q : r_desc");
            });
            c.if_("a_switch_err", |c| {
                c.nb("err_v_q", "1'b1");
                c.nb("err_code_q", resp_error_code("wr_err"));
                c.nb("err_tile_q", "pt_q");
                c.nb("err_desc_q", "pd_q");
            });
            c.if_("fin_go", |c| {
                c.nb("fin_q", "1'b1");
                c.if_else(
                    "wr_err[1]",
                    |c| {
                        c.nb("err_v_q", "1'b1");
                        c.nb("err_code_q", resp_error_code("wr_err"));
                        c.nb("err_tile_q", "r_tiles");
                        c.nb("err_desc_q", "r_desc");
                    },
                    |c| {
                        c.nb("x_done_q", "1'b1");
                    },
                );
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    m.assign_raw("x_done", "x_done_q")?;
    m.assign_raw("res_err_valid", "err_v_q")?;
    m.assign_raw("res_err_code", "err_code_q")?;
    m.assign_raw("res_err_tile", "err_tile_q")?;
    m.assign_raw("res_err_desc", "err_desc_q")?;
    m.assign_raw("wr_err_clear", "wec_q")?;
    m.assign_raw("result_idle", "drained")?;
    let _ = s;
    Ok(())
}
