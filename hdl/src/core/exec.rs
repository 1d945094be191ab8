//! `caq_exec`: the execute stage. It holds the weight banks (one per array row, in two slots so
//! a tile loads while the previous one computes), the activation banks (Dense inputs, or the
//! window generator's Conv2d patches) and the region multipliers, and issues one plane-step per
//! cycle into `caq_array`: for each tile, for each item (an input of the batch, or a pixel of a
//! window block), for each C-wide chunk of K, every active plane — with no gap between planes,
//! chunks, items, blocks or tiles while their data is there.
//!
//! Pipeline of a step: the sequencer's registers address the banks (issue), the banks' registered
//! outputs (read), then the chunk's weight bits, the rotated activation lanes and the region
//! multipliers are registered as the array's inputs (format).
//!
//! Tokens: `tile_loaded` (with its slot) and `input_loaded` from the fetch stage; `block_ready`
//! from the window generator, `block_done` back to it; result credits (one per item the result
//! stage can hold) returned on `credit_ret`.
//!
//! Knows the buffer layouts and the step order; knows nothing of memory ports or requantization.

use caq_spec::shape::DENSE_QUEUE;
use caq_spec::{AccelConfig, CoreShape};

use super::fetch::FetchWidths;
use super::params::{POOL_MASK, pool_in_window, pool_window_last, x_inputs};
use super::ports::{bit, clog2};
use crate::array::{ArrayShape, MULT_BITS, SHIFT_BITS};
use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder, fit};
use crate::error::Result;

/// Width of the credit counter and of credits returned per cycle: wide enough for a Conv2d's
/// `stage_bytes` staging positions (the counter's initial value), and at least 16 bits.
pub fn credit_bits(s: &CoreShape) -> u32 {
    (u32::BITS - s.stage_bytes.leading_zeros()).max(16)
}

/// Cycles from a step's issue (its addresses in the sequencer's registers) to the array's
/// inputs: the banks' registered outputs, then the format stage.
pub const ISSUE_TO_ARRAY: u32 = 2;

/// Entry-index width of the activation banks.
pub fn act_entry_bits(s: &CoreShape) -> u32 {
    clog2(s.adepth)
}

/// The `caq_exec` module.
pub fn exec(cfg: &AccelConfig) -> Result<Module> {
    let s = CoreShape::of(cfg);
    let fw = FetchWidths::of(&s);
    let a = ArrayShape::of(cfg);
    let (rows, cols) = (s.rows, s.cols);
    let nb = s.abanks;
    let nsub = s.bus_words;
    let aeb = act_entry_bits(&s);
    let cb = credit_bits(&s);
    let lane = a.lane_bits;
    let mut m = ModuleBuilder::new("caq_exec")?;
    m.doc(&[
        "Execute stage: weight, activation and region-multiplier banks, and the plane-step",
        "sequencer that feeds caq_array one step per cycle. See caq-hdl core/exec.rs.",
    ]);
    m.doc_line(format!(
        "R = {rows}, C = {cols}; weight banks {rows} x {nsub} x {} words (two slots of {}); \
         activation banks {nb} x {} entries; window blocks of up to {} pixels.",
        s.wdepth / nsub,
        s.wdepth / 2,
        s.adepth,
        s.max_block
    ));
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_doc(
        Dir::Input,
        "clear",
        1,
        "pulse: back to idle (soft reset, error)",
    )?;
    m.port_doc(Dir::Input, "x_start", 1, "pulse: a descriptor starts")?;
    m.port_doc(Dir::Input, "x_early", 1, super::params::X_EARLY_DOC)?;
    x_inputs(&mut m, &s)?;
    m.port_group("loads from the fetch stage");
    m.port(Dir::Input, "lw_valid", nsub)?;
    m.port(Dir::Input, "lw_row", nsub * fw.ri)?;
    m.port(Dir::Input, "lw_index", nsub * fw.wib)?;
    m.port(Dir::Input, "lw_data", nsub * 64)?;
    m.port(Dir::Input, "la_valid", nsub)?;
    m.port(Dir::Input, "la_index", nsub * fw.aib)?;
    m.port(Dir::Input, "la_data", nsub * 64)?;
    if s.group_size == 0 {
        m.port_lint_off(
            "UNUSEDSIGNAL",
            "no local quantization regions in this config (group_size = 0)",
        );
    }
    m.port(Dir::Input, "lg_valid", 1)?;
    m.port(Dir::Input, "lg_row", fw.ri)?;
    m.port(Dir::Input, "lg_index", fw.gib)?;
    m.port(Dir::Input, "lg_data", MULT_BITS)?;
    if s.group_size == 0 {
        m.port_lint_on("UNUSEDSIGNAL");
    }
    m.port_group("patch words from the window generator, one port per activation bank");
    m.port(Dir::Input, "pw_valid", nb)?;
    m.port(Dir::Input, "pw_entry", nb * aeb)?;
    m.port(Dir::Input, "pw_data", nb * 64)?;
    m.port_group("tokens");
    m.port(Dir::Input, "tile_loaded", 1)?;
    m.port(Dir::Input, "tile_slot", 1)?;
    m.port(Dir::Input, "input_loaded", 1)?;
    m.port_doc(
        Dir::Input,
        "block_ready",
        1,
        "pulse: a patch block is gathered",
    )?;
    m.port_doc(
        Dir::Output,
        "block_done",
        1,
        "pulse: the oldest patch block is read; its buffer is free",
    )?;
    m.port_doc(
        Dir::Input,
        "credit_ret",
        cb,
        "items the result stage freed this cycle",
    )?;
    m.port_doc(
        Dir::Input,
        "run_credit_ret",
        1,
        "Conv2d: the result stage wrote a run",
    )?;
    m.port_doc(
        Dir::Input,
        "x_go",
        1,
        "pulse: the sequencer starts the descriptor handed over (the result stage has taken it: \
         at once, or after an early hand-over once the previous one's last item is out)",
    )?;
    m.port_doc(
        Dir::Output,
        "exec_idle",
        1,
        "nothing in flight; waiting for the fetch stage or done",
    )?;
    m.port_doc(
        Dir::Output,
        "x_issued",
        1,
        "the sequencer is idle and every step has left the issue stage (x_* may change a cycle \
         later: the format stage read them for the last step); the result stage qualifies it \
         with the descriptor it holds",
    )?;
    m.port_doc(Dir::Output, "perf_busy", 1, "a plane-step enters the array")?;
    m.port_doc(
        Dir::Output,
        "perf_stall",
        1,
        "a descriptor runs and no step issues",
    )?;
    m.port_group("plane-steps into caq_array");
    m.port(Dir::Output, "step_valid", 1)?;
    m.port(Dir::Output, "step_act", cols * lane)?;
    m.port(Dir::Output, "step_bits", rows * cols)?;
    m.port(Dir::Output, "step_shift", SHIFT_BITS)?;
    m.port(Dir::Output, "step_neg", 1)?;
    m.port(Dir::Output, "step_region_first", 1)?;
    m.port(Dir::Output, "step_region_last", 1)?;
    m.port(Dir::Output, "step_item_first", 1)?;
    m.port(Dir::Output, "step_item_last", 1)?;
    m.port(Dir::Output, "step_mult", rows * MULT_BITS)?;

    banks(&mut m, cfg, &s, &fw)?;
    sequencer(&mut m, cfg, &s, &fw, &a)?;
    format(&mut m, cfg, &s, &a)?;
    let _ = clk;
    Ok(m.finish())
}

/// The weight, activation and region-multiplier banks: writes from the loads, reads at the
/// issue stage's addresses (registered outputs: inferred block RAM).
fn banks(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape, fw: &FetchWidths) -> Result<()> {
    let (rows, nb, nsub) = (s.rows, s.abanks, s.bus_words);
    let aeb = act_entry_bits(s);
    let sl = clog2(nsub);
    let wdep = s.wdepth / nsub;
    let web = clog2(wdep);
    let nbl = clog2(nb);
    m.section(
        "weight banks: row r, sub-bank b holds the row's words whose index is b mod sub-banks",
    );
    let clk = m.sig("clk")?;
    let mut wr = Code::new();
    let mut rd = Code::new();
    for r in 0..rows {
        for b in 0..nsub {
            let mem = format!("w{r}_{b}_mem");
            m.memory(&mem, 64, wdep, "row r's planes: word i at i / sub-banks")?;
            m.reg(&format!("w{r}_{b}_rd_q"), 64, None)?;
            let hits: Vec<String> = (0..nsub)
                .map(|l| {
                    let sub = if sl == 0 {
                        "1'b1".to_owned()
                    } else {
                        format!("lw_index[{}] == 1'b{b}", l * fw.wib)
                    };
                    format!(
                        "{} && lw_row[{} +: {}] == {}'d{r} && {sub}",
                        bit("lw_valid", l, nsub),
                        l * fw.ri,
                        fw.ri,
                        fw.ri
                    )
                })
                .collect();
            for (l, h) in (0u32..).zip(hits.iter()) {
                wr.if_(h, |c| {
                    c.nb(
                        format!("{mem}[lw_index[{} +: {web}]]", l * fw.wib + sl),
                        format!("lw_data[{} +: 64]", 64 * l),
                    );
                });
            }
            rd.nb(
                format!("w{r}_{b}_rd_q"),
                format!("{mem}[widx_q[{} +: {web}]]", sl),
            );
        }
    }
    m.section("activation banks: word v of the K-vector space at bank v mod C/8, entry v / (C/8)");
    for b in 0..nb {
        let mem = format!("act{b}_mem");
        m.memory(&mem, 64, s.adepth, "K-vectors chunk by chunk")?;
        m.reg(&format!("act{b}_rd_q"), 64, None)?;
        let mut chain = Code::new();
        chain.if_(bit("pw_valid", b, nb), |c| {
            c.nb(
                format!("{mem}[pw_entry[{} +: {aeb}]]", b * aeb),
                format!("pw_data[{} +: 64]", 64 * b),
            );
        });
        for l in 0..nsub {
            let bank = if nbl == 0 {
                "1'b1".to_owned()
            } else {
                format!("la_index[{} +: {nbl}] == {nbl}'d{b}", l * fw.aib)
            };
            chain.else_if(format!("{} && {bank}", bit("la_valid", l, nsub)), |c| {
                c.nb(
                    format!("{mem}[la_index[{} +: {aeb}]]", l * fw.aib + nbl),
                    format!("la_data[{} +: 64]", 64 * l),
                );
            });
        }
        wr.append(&chain);
        rd.nb(format!("act{b}_rd_q"), format!("{mem}[aentry_q]"));
    }
    if s.group_size != 0 {
        m.section("region multipliers: row r, slot * max_regions + region");
        for r in 0..rows {
            let mem = format!("gm{r}_mem");
            m.memory(
                &mem,
                MULT_BITS,
                2 * s.max_regions,
                "row r's region multipliers",
            )?;
            wr.if_(format!("lg_valid && lg_row == {}'d{r}", fw.ri), |c| {
                c.nb(format!("{mem}[lg_index]"), "lg_data");
            });
        }
        m.reg("gm_rd_q", rows * MULT_BITS, None)?;
        let all = (0..rows)
            .rev()
            .map(|r| format!("gm{r}_mem[gidx_q]"))
            .collect::<Vec<_>>()
            .join(", ");
        rd.nb("gm_rd_q", format!("{{{all}}}"));
    }
    m.always_ff(&clk, wr)?;
    m.always_ff(&clk, rd)?;
    let _ = cfg;
    Ok(())
}

/// The sequencer: tiles, items (inputs or block pixels), chunks, planes; the issue stage's
/// addresses and flags.
fn sequencer(
    m: &mut ModuleBuilder,
    cfg: &AccelConfig,
    s: &CoreShape,
    fw: &FetchWidths,
    a: &ArrayShape,
) -> Result<()> {
    let aeb = act_entry_bits(s);
    let cb = credit_bits(s);
    let gib = fw.gib;
    let wib = fw.wib;
    let cpw = s.chunks_per_word();
    let cpwl = clog2(cpw);
    let grouped = s.group_size != 0;
    let cpr = if grouped { s.group_size / s.cols } else { 1 };
    let cprl = clog2(cpr);
    m.section("sequencer");
    m.localparam(
        "E_IDLE",
        Expr::lit(2, 0),
        Some("no descriptor, or all its tiles issued".into()),
    )?;
    m.localparam(
        "E_TILE",
        Expr::lit(2, 1),
        Some("waiting for a tile (and its input)".into()),
    )?;
    m.localparam(
        "E_UNIT",
        Expr::lit(2, 2),
        Some("waiting for a block (Conv2d) or items".into()),
    )?;
    m.localparam("E_RUN", Expr::lit(2, 3), Some("issuing steps".into()))?;
    for (name, width, doc) in [
        ("est_q", 2, "state"),
        ("tiles_q", 16, "tiles of the descriptor started"),
        ("tl_cnt_q", 2, "tiles loaded and not yet started"),
        ("tl_slot0_q", 1, "their slots, oldest first"),
        ("tl_slot1_q", 1, ""),
        ("inp_q", 1, "the descriptor's input is loaded"),
        ("blk_cnt_q", 2, "patch blocks gathered and not yet started"),
        ("credits_q", cb, "items the result stage can still take"),
        (
            "runcr_q",
            3,
            "Conv2d: runs the result stage can still queue",
        ),
        (
            "pix_q",
            16,
            "Conv2d: pixels of the tile written so far (pooled pixels with max pooling)",
        ),
        (
            "pmask_q",
            8,
            "Conv2d: which pixels of the block write one (with max pooling: complete a window)",
        ),
        ("wslot_q", wib, "the tile's first weight-bank word"),
        ("gslot_q", gib, "the tile's first region-multiplier entry"),
        ("by_q", 16, "Conv2d: the block's output row"),
        ("bx_q", 16, "Conv2d: the block's first output column"),
        ("bn_q", 4, "Conv2d: pixels of the block"),
        ("buf_q", 1, "Conv2d: the block's patch buffer"),
        (
            "it_q",
            16,
            "item: input of the batch, or pixel of the block",
        ),
        ("ilast_q", 16, "the unit's last item index"),
        ("ch_q", 16, "chunk"),
        ("pl_q", 6, "plane within the chunk"),
        ("g_q", 2, "its group"),
        ("p_q", 3, "its index within the group"),
        ("rg_q", 16, "region of the chunk"),
        ("abase_q", aeb, "the item's first activation entry"),
        ("wbase_q", wib, "the chunk's word in plane 0"),
        ("widx_q", wib, "the step's weight-bank word"),
        ("aentry_q", aeb, "the step's activation entry"),
        ("gidx_q", gib, "the step's region-multiplier entry"),
        (
            "i_ctl_q",
            6,
            "the step's valid, neg, region first/last, item first/last",
        ),
        ("i_shift_q", 3, "the step's plane weight"),
        ("wn_q", aeb, "W * chunks: entries of one patch buffer"),
        ("drain_q", 5, "cycles until the last step leaves the array"),
        ("bdone_q", 1, "pulse: a block's last step was read"),
    ] {
        m.reg(name, width, Some(doc))?;
    }
    if s.group_size == 0 {
        m.lint_off("UNUSEDSIGNAL", "no regions in this config (group_size = 0)");
    }
    m.reg("regions_q", 16, Some("regions per item"))?;
    if s.group_size == 0 {
        m.lint_on("UNUSEDSIGNAL");
    }
    let rotb = clog2(s.abanks);
    if rotb > 0 {
        m.reg(
            "rot_q",
            rotb,
            Some("the step's rotation of the activation words (block pixel)"),
        )?;
    }
    if cpwl > 0 {
        m.reg(
            "cslice_q",
            cpwl,
            Some("the chunk within the 64-bit plane word"),
        )?;
    }
    let is_conv = "x_conv";
    m.wire_assign(
        "pg_bits",
        Expr::raw(
            "(g_q == 2'd0) ? x_pg_bits[3:0] : (g_q == 2'd1) ? x_pg_bits[7:4] : \
             (g_q == 2'd2) ? x_pg_bits[11:8] : x_pg_bits[15:12]",
            4,
        ),
        Some("bits of the step's group"),
    )?;
    m.wire_assign(
        "pg_shift",
        Expr::raw(
            "(g_q == 2'd0) ? x_pg_shift[2:0] : (g_q == 2'd1) ? x_pg_shift[5:3] : \
             (g_q == 2'd2) ? x_pg_shift[8:6] : x_pg_shift[11:9]",
            3,
        ),
        None,
    )?;
    m.wire_assign("l_plane", Expr::raw("pl_q == x_planes - 6'd1", 1), None)?;
    m.wire_assign("l_chunk", Expr::raw("ch_q == x_nch - 16'd1", 1), None)?;
    m.wire_assign("l_item", Expr::raw("it_q == ilast_q", 1), None)?;
    m.wire_assign(
        "g_top",
        Expr::raw("{1'b0, p_q} == pg_bits - 4'd1", 1),
        Some("the group's sign plane"),
    )?;
    let (r_first, r_last, i_first, i_last) = if grouped {
        let low = |v: &str| {
            if cprl == 0 {
                "1'b1".to_owned()
            } else {
                format!("ch_q[{}:0] == {cprl}'d{v}", cprl - 1)
            }
        };
        let all_ones = if cprl == 0 { 0 } else { (1u32 << cprl) - 1 };
        (
            format!(
                "(!x_grouped ? ch_q == 16'd0 : {}) && pl_q == 6'd0",
                low("0")
            ),
            format!(
                "(!x_grouped ? l_chunk : ({} || l_chunk)) && l_plane",
                low(&all_ones.to_string())
            ),
            "!x_grouped || rg_q == 16'd0".to_owned(),
            "!x_grouped || rg_q == regions_q - 16'd1".to_owned(),
        )
    } else {
        (
            "ch_q == 16'd0 && pl_q == 6'd0".to_owned(),
            "l_chunk && l_plane".to_owned(),
            "1'b1".to_owned(),
            "1'b1".to_owned(),
        )
    };
    m.wire_assign("f_rfirst", Expr::raw(r_first, 1), None)?;
    m.wire_assign("f_rlast", Expr::raw(r_last, 1), None)?;
    m.wire_assign("f_ifirst", Expr::raw(i_first, 1), None)?;
    m.wire_assign("f_ilast", Expr::raw(i_last, 1), None)?;
    m.wire_assign(
        "item_start",
        Expr::raw("ch_q == 16'd0 && pl_q == 6'd0", 1),
        Some("the step begins an item: it takes a result credit"),
    )?;
    let runl = clog2(s.run_bytes);
    let run_start = if runl == 0 {
        "1'b1".to_owned()
    } else {
        format!("pix_q[{}:0] == {runl}'d0", runl - 1)
    };
    // Max pooling (window k = 2^x_pool): the item writes a pixel when it completes a whole
    // window, the result stage's rule (core/result.rs, `pool`). The block's mask of such pixels
    // is registered from its row and first column while the sequencer waits for the block, so a
    // step only selects its pixel's bit.
    m.wire_assign("epool_m", Expr::raw(POOL_MASK, 3), Some("k - 1"))?;
    let mut bits = Vec::new();
    for i in (0..8u32).rev() {
        m.wire_assign(
            &format!("pcol{i}"),
            Expr::raw(format!("bx_q + 16'd{i}"), 16),
            None,
        )?;
        let col = format!("pcol{i}");
        let max = format!(
            "(x_pool == 2'd0 || ({} && {}))",
            pool_window_last("by_q", &col, "epool_m"),
            pool_in_window("by_q", &col, "epool_m")
        );
        bits.push(if s.global_pool {
            format!("(x_gpool ? (by_q == x_out_h - 16'd1 && {col} == x_out_w - 16'd1) : {max})")
        } else {
            max
        });
    }
    let bits = bits.join(", ");
    m.wire_assign(
        "pmask_next",
        Expr::raw(format!("{{{bits}}}"), 8),
        Some("pixel i of the block (column bx + i) writes"),
    )?;
    m.wire_assign(
        "pix_writes",
        Expr::raw("pmask_q[it_q[2:0]]", 1),
        Some(
            "Conv2d: the item writes a pixel (with max pooling: completes a window; with global \
             pooling: the tile's last)",
        ),
    )?;
    m.wire_assign(
        "run_start",
        Expr::raw(format!("x_conv && pix_writes && {run_start}"), 1),
        Some("Conv2d: the item opens an output run of the result stage"),
    )?;
    // Global pooling: a tile's pixel (its last) opens a run only when every run credit is home,
    // so the result stage's mean of the tile before it has been written and its sums are free.
    let run_ok = if s.global_pool {
        format!(
            "(x_gpool ? runcr_q == 3'd{} : runcr_q != 3'd0)",
            super::result::RUN_QUEUE
        )
    } else {
        "runcr_q != 3'd0".to_owned()
    };
    m.wire_assign(
        "go",
        Expr::raw(
            format!(
                "est_q == E_RUN && !gap_q && (!item_start || (credits_q != {cb}'d0 && \
                 (!run_start || {run_ok})))"
            ),
            1,
        ),
        Some("a step issues this cycle"),
    )?;
    m.reg(
        "gap_q",
        1,
        Some("an item of one plane-step issued: the next waits a cycle (REQUANT_PHASES = 2)"),
    )?;
    m.wire_assign(
        "unit_end",
        Expr::raw("go && l_plane && l_chunk && l_item", 1),
        Some("the unit's (block's, or tile's inputs') last step issues"),
    )?;
    m.wire_assign(
        "conv_tile_end",
        Expr::raw(
            "by_q == x_out_h - 16'd1 && {12'd0, bn_q} + bx_q == x_out_w",
            1,
        ),
        Some("Conv2d: the block is the tile's last"),
    )?;
    m.wire_assign(
        "tile_end",
        Expr::raw(format!("unit_end && (!{is_conv} || conv_tile_end)"), 1),
        None,
    )?;
    m.wire_assign(
        "next_bn",
        Expr::raw(
            "(x_out_w - bx_q - {12'd0, bn_q} < {12'd0, x_block}) ? (x_out_w[3:0] - bx_q[3:0] - bn_q) : x_block",
            4,
        ),
        Some("pixels of the next block of the row (bx + bn < out_w)"),
    )?;
    m.wire_assign(
        "first_bn",
        Expr::raw("(x_out_w < {12'd0, x_block}) ? x_out_w[3:0] : x_block", 4),
        Some("pixels of a row's first block"),
    )?;
    m.wire_assign(
        "wslot_next",
        Expr::raw(
            format!(
                "(x_slots2 && tl_slot0_q) ? {wib}'d{} : {wib}'d0",
                s.wdepth / 2
            ),
            wib,
        ),
        None,
    )?;
    m.wire_assign(
        "gslot_next",
        Expr::raw(
            format!("tl_slot0_q ? {gib}'d{} : {gib}'d0", s.max_regions),
            gib,
        ),
        None,
    )?;
    let slice_inc = if cpwl == 0 {
        "1'b1".to_owned()
    } else {
        format!("cslice_q == {cpwl}'d{}", cpw - 1)
    };
    m.wire_assign(
        "next_wbase",
        Expr::raw(format!("wbase_q + {{{}'d0, {slice_inc}}}", wib - 1), wib),
        Some("the next chunk's word in plane 0"),
    )?;
    m.wire_assign(
        "tile_start",
        Expr::raw(
            format!("est_q == E_TILE && tl_cnt_q != 2'd0 && ({is_conv} || inp_q)"),
            1,
        ),
        None,
    )?;
    m.wire_assign(
        "blk_start",
        Expr::raw("est_q == E_UNIT && blk_cnt_q != 2'd0", 1),
        None,
    )?;
    m.wire_assign(
        "dense_start",
        Expr::raw(format!("est_q == E_UNIT && !{is_conv}"), 1),
        None,
    )?;
    m.wire_assign(
        "region_next",
        Expr::raw(
            if !grouped {
                "1'b0".to_owned()
            } else if cprl == 0 {
                "x_grouped".to_owned()
            } else {
                format!(
                    "x_grouped && ch_q[{}:0] == {cprl}'d{}",
                    cprl - 1,
                    (1u32 << cprl) - 1
                )
            },
            1,
        ),
        Some("the next chunk starts a region"),
    )?;
    let w = Widths {
        aeb,
        wib,
        gib,
        rotb,
        cpwl,
    };

    let mut c = Code::new();
    c.nb("bdone_q", format!("unit_end && {is_conv}"));
    c.nb("gap_q", "go && item_start && l_chunk && l_plane");
    c.nb(
        "i_ctl_q",
        "{go, g_top, f_rfirst, f_rlast, f_ifirst, f_ilast}",
    );
    c.nb("i_shift_q", "pg_shift + p_q");
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("est_q", "E_IDLE");
            c.nb("tl_cnt_q", "2'd0");
            c.nb("blk_cnt_q", "2'd0");
            c.nb("inp_q", "1'b0");
            c.nb("drain_q", "5'd0");
            c.nb("i_ctl_q", "6'd0");
            c.nb("bdone_q", "1'b0");
            c.nb("gap_q", "1'b0");
        },
        |c| {
            c.comment("tokens");
            c.nb(
                "tl_cnt_q",
                "tl_cnt_q + {1'b0, tile_loaded} - {1'b0, tile_start}",
            );
            c.if_("tile_loaded", |c| {
                c.if_else(
                    "tl_cnt_q == 2'd0 || (tl_cnt_q == 2'd1 && tile_start)",
                    |c| {
                        c.nb("tl_slot0_q", "tile_slot");
                    },
                    |c| {
                        c.nb("tl_slot1_q", "tile_slot");
                    },
                );
            });
            c.if_("tile_start && !(tile_loaded && tl_cnt_q == 2'd1)", |c| {
                c.nb("tl_slot0_q", "tl_slot1_q");
            });
            c.nb(
                "blk_cnt_q",
                "blk_cnt_q + {1'b0, block_ready} - {1'b0, blk_start}",
            );
            c.if_("input_loaded", |c| {
                c.nb("inp_q", "1'b1");
            });
            c.nb(
                "credits_q",
                format!(
                    "credits_q + credit_ret - {{{}'d0, go && item_start}}",
                    cb - 1
                ),
            );
            c.nb(
                "runcr_q",
                "runcr_q + {2'd0, run_credit_ret} - {2'd0, go && item_start && run_start}",
            );
            c.if_("go && item_start && pix_writes", |c| {
                c.nb("pix_q", "pix_q + 16'd1");
            });
            c.nb("pmask_q", "pmask_next");
            c.nb(
                "drain_q",
                format!(
                    "go ? 5'd{} : (drain_q != 5'd0) ? drain_q - 5'd1 : 5'd0",
                    ISSUE_TO_ARRAY + a.latency() + 1
                ),
            );
            c.if_("x_go", |c| {
                c.nb("est_q", "E_TILE");
                c.nb("tiles_q", "16'd0");
                c.comment("patch buffers alternate block by block across the descriptor's tiles");
                c.nb("buf_q", "1'b0");
                c.comment("started after its hand-over: its input (resident) was announced then");
                c.nb("inp_q", "input_loaded || !x_start");
                c.comment(
                    "after an early hand-over the previous Conv2d's runs still hold staging \
                     positions and run slots: the credits run on",
                );
                c.if_("!x_early", |c| {
                    c.nb("runcr_q", format!("3'd{}", super::result::RUN_QUEUE));
                    c.nb(
                        "credits_q",
                        format!("x_conv ? {cb}'d{} : {cb}'d{DENSE_QUEUE}", s.stage_bytes),
                    );
                });
                let block = if aeb > 4 {
                    format!("{{{}'d0, x_block}}", aeb - 4)
                } else {
                    format!("x_block[{}:0]", aeb - 1)
                };
                c.nb("wn_q", format!("{block} * x_nch[{}:0]", aeb - 1));
                c.nb(
                    "regions_q",
                    if cprl == 0 {
                        "x_nch".to_owned()
                    } else {
                        format!(
                            "{{{cprl}'d0, x_nch[15:{cprl}]}} + {{15'd0, x_nch[{}:0] != {cprl}'d0}}",
                            cprl - 1
                        )
                    },
                );
            });
            c.case_block("case (est_q)", |c| {
                c.block("E_TILE:", |c| {
                    c.if_("tile_start", |c| {
                        c.nb("tiles_q", "tiles_q + 16'd1");
                        c.nb("wslot_q", "wslot_next");
                        c.nb("gslot_q", "gslot_next");
                        c.nb("by_q", "16'd0");
                        c.nb("bx_q", "16'd0");
                        c.nb("bn_q", "first_bn");
                        c.nb("pix_q", "16'd0");
                        c.nb("est_q", "E_UNIT");
                    });
                });
                c.block("E_UNIT:", |c| {
                    c.comment(
                        "a unit: a patch block (Conv2d), or every input of the batch (Dense)",
                    );
                    c.if_("blk_start || dense_start", |c| {
                        c.nb("it_q", "16'd0");
                        c.nb(
                            "ilast_q",
                            format!("{is_conv} ? {{12'd0, bn_q - 4'd1}} : x_items - 16'd1"),
                        );
                        start_item(c, &format!("(x_conv && buf_q) ? wn_q : {aeb}'d0"), &w);
                        if rotb > 0 {
                            c.nb("rot_q", format!("{rotb}'d0"));
                        }
                        c.nb("est_q", "E_RUN");
                    });
                });
                c.block("E_RUN:", |c| {
                    c.if_("go", |c| {
                        advance(c, &w);
                    });
                    c.if_("unit_end", |c| {
                        c.nb("buf_q", "!buf_q");
                        c.if_else(
                            "tile_end",
                            |c| {
                                c.nb("est_q", "(tiles_q == x_tiles) ? E_IDLE : E_TILE");
                            },
                            |c| {
                                c.comment("Conv2d: the next block, in the same row or the next");
                                c.if_else(
                                    "{12'd0, bn_q} + bx_q == x_out_w",
                                    |c| {
                                        c.nb("by_q", "by_q + 16'd1");
                                        c.nb("bx_q", "16'd0");
                                        c.nb("bn_q", "first_bn");
                                    },
                                    |c| {
                                        c.nb("bx_q", "bx_q + {12'd0, bn_q}");
                                        c.nb("bn_q", "next_bn");
                                    },
                                );
                                c.nb("est_q", "E_UNIT");
                            },
                        );
                    });
                });
                c.line("default: ;");
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    m.assign_raw("block_done", "bdone_q")?;
    m.assign_raw("x_issued", "est_q == E_IDLE && !i_ctl_q[5]")?;
    m.assign_raw(
        "exec_idle",
        "drain_q == 5'd0 && !(est_q == E_RUN) && !(est_q == E_UNIT && !x_conv)",
    )?;
    let _ = (cfg, cpr);
    Ok(())
}

/// Index widths the sequencer's updates are written with.
struct Widths {
    aeb: u32,
    wib: u32,
    gib: u32,
    /// Width of `rot_q` (0: one activation bank, no rotation).
    rotb: u32,
    /// Width of `cslice_q`: log2 of the chunks per plane word (0: none).
    cpwl: u32,
}

/// Addresses of a unit's first step: its first item at activation entry `base`, chunk 0,
/// plane 0.
fn start_item(c: &mut Code, base: &str, w: &Widths) {
    c.nb("abase_q", base);
    c.nb("aentry_q", base);
    first_chunk(c, w);
}

/// Chunk 0, plane 0 of an item (its activation entries set by the caller).
fn first_chunk(c: &mut Code, w: &Widths) {
    c.nb("ch_q", "16'd0");
    c.nb("rg_q", "16'd0");
    c.nb("pl_q", "6'd0");
    c.nb("g_q", "2'd0");
    c.nb("p_q", "3'd0");
    c.nb("wbase_q", "wslot_q");
    c.nb("widx_q", "wslot_q");
    c.nb("gidx_q", "gslot_q");
    if w.cpwl > 0 {
        c.nb("cslice_q", format!("{}'d0", w.cpwl));
    }
}

/// One step further: the next plane, chunk or item.
fn advance(c: &mut Code, w: &Widths) {
    c.if_else(
        "!l_plane",
        |c| {
            c.nb("pl_q", "pl_q + 6'd1");
            c.nb("widx_q", format!("widx_q + {}", fit("x_wpr", 16, w.wib)));
            c.if_else(
                "g_top",
                |c| {
                    c.nb("g_q", "g_q + 2'd1");
                    c.nb("p_q", "3'd0");
                },
                |c| {
                    c.nb("p_q", "p_q + 3'd1");
                },
            );
        },
        |c| {
            c.nb("pl_q", "6'd0");
            c.nb("g_q", "2'd0");
            c.nb("p_q", "3'd0");
            c.if_else(
                "!l_chunk",
                |c| {
                    c.nb("ch_q", "ch_q + 16'd1");
                    c.nb("aentry_q", format!("aentry_q + {}'d1", w.aeb));
                    c.nb("wbase_q", "next_wbase");
                    c.nb("widx_q", "next_wbase");
                    if w.cpwl > 0 {
                        c.nb("cslice_q", format!("cslice_q + {}'d1", w.cpwl));
                    }
                    c.if_("region_next", |c| {
                        c.nb("rg_q", "rg_q + 16'd1");
                        c.nb("gidx_q", format!("gidx_q + {}'d1", w.gib));
                    });
                },
                |c| {
                    c.comment("the item is issued: the next input, or the block's next pixel");
                    c.if_("!l_item", |c| {
                        let next = format!("abase_q + x_nch[{}:0]", w.aeb - 1);
                        c.nb("it_q", "it_q + 16'd1");
                        c.nb("abase_q", &next);
                        c.nb("aentry_q", &next);
                        if w.rotb > 0 {
                            c.comment("a block's next pixel: its words sit one bank further");
                            c.if_("x_conv", |c| {
                                c.nb("rot_q", format!("rot_q + {}'d1", w.rotb));
                            });
                        }
                        first_chunk(c, w);
                    });
                },
            );
        },
    );
}

/// The format stage: the banks' outputs as the array's inputs, registered. Weight bits: the
/// step's sub-bank, then the chunk's C bits of the 64-bit plane word. Activations: the C/8 bank
/// words rotated by the block pixel (pixel w's word j sits in bank (j + w) mod C/8), each byte
/// a lane sign- or zero-extended by one bit. Multipliers: the region's, or 1.
fn format(m: &mut ModuleBuilder, cfg: &AccelConfig, s: &CoreShape, a: &ArrayShape) -> Result<()> {
    let (rows, cols, nb, nsub) = (s.rows, s.cols, s.abanks, s.bus_words);
    let cpwl = clog2(s.chunks_per_word());
    let act = cfg.array.act_bits;
    m.section("format stage: the array's inputs");
    let mut c = Code::new();
    if nsub > 1 {
        m.reg("i_wsub_q", 1, Some("the step's weight sub-bank"))?;
        c.nb("i_wsub_q", "widx_q[0]");
    }
    if cpwl > 0 {
        m.reg(
            "i_slice_q",
            cpwl,
            Some("the step's chunk within the plane word"),
        )?;
        c.nb("i_slice_q", "cslice_q");
    }
    if nb > 1 {
        m.reg("i_rot_q", clog2(nb), Some("the step's activation rotation"))?;
        c.nb("i_rot_q", "rot_q");
    }
    for reg in [
        "s_valid_q",
        "s_neg_q",
        "s_rfirst_q",
        "s_rlast_q",
        "s_ifirst_q",
        "s_ilast_q",
    ] {
        m.reg(reg, 1, None)?;
    }
    m.reg("s_shift_q", 3, None)?;
    m.reg("s_act_q", cols * a.lane_bits, None)?;
    m.reg("s_bits_q", rows * cols, None)?;
    m.reg("s_mult_q", rows * MULT_BITS, None)?;
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("s_valid_q", "1'b0");
        },
        |c| {
            c.nb("s_valid_q", "i_ctl_q[5]");
        },
    );
    c.nb("s_neg_q", "i_ctl_q[4]");
    c.nb("s_rfirst_q", "i_ctl_q[3]");
    c.nb("s_rlast_q", "i_ctl_q[2]");
    c.nb("s_ifirst_q", "i_ctl_q[1]");
    c.nb("s_ilast_q", "i_ctl_q[0]");
    c.nb("s_shift_q", "i_shift_q");
    // Weight bits per row.
    if nsub > 1 {
        for r in 0..rows {
            m.wire_assign(
                &format!("wsel{r}"),
                Expr::raw(format!("i_wsub_q ? w{r}_1_rd_q : w{r}_0_rd_q"), 64),
                Some("the row's sub-bank word"),
            )?;
        }
    }
    let bits = (0..rows)
        .rev()
        .map(|r| {
            let word = if nsub == 1 {
                format!("w{r}_0_rd_q")
            } else {
                format!("wsel{r}")
            };
            if cpwl == 0 {
                word
            } else {
                format!("{word}[{{i_slice_q, {}'d0}} +: {cols}]", clog2(cols))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    c.nb("s_bits_q", format!("{{{bits}}}"));
    // Activation words rotated by the block pixel.
    if act < 8 {
        m.lint_off(
            "UNUSEDSIGNAL",
            "bits act_bits..7 of an activation byte: a code is its low act_bits (docs/descriptor.md)",
        );
    }
    for j in 0..nb {
        let sel = if nb == 1 {
            "act0_rd_q".to_owned()
        } else {
            (0..nb)
                .map(|w| format!("(i_rot_q == {}'d{w}) ? act{}_rd_q", clog2(nb), (j + w) % nb))
                .collect::<Vec<_>>()
                .join(" : ")
                + " : 64'd0"
        };
        m.wire_assign(&format!("aw{j}"), Expr::raw(sel, 64), Some("chunk word j"))?;
    }
    if act < 8 {
        m.lint_on("UNUSEDSIGNAL");
    }
    let lanes = (0..cols)
        .rev()
        .map(|c| {
            let (j, o) = (c / 8, (c % 8) * 8);
            format!(
                "x_in_signed & aw{j}[{}], aw{j}[{}:{o}]",
                o + act - 1,
                o + act - 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    c.comment("lane = the byte's low act_bits, sign- (in_signed) or zero-extended by one bit");
    c.nb("s_act_q", format!("{{{lanes}}}"));
    let ones = format!("{{{rows}{{{MULT_BITS}'d1}}}}");
    if s.group_size != 0 {
        c.nb("s_mult_q", format!("x_grouped ? gm_rd_q : {ones}"));
    } else {
        c.nb("s_mult_q", ones);
    }
    m.always_ff(&m.sig("clk")?, c)?;
    if act < 8 || nb > 1 && cpwl > 0 {
        // Bits above the activation width are the code's sign extension (checked in_bits <=
        // act_bits), and rotations beyond the block width never occur.
    }
    for (port, reg) in [
        ("step_valid", "s_valid_q"),
        ("step_act", "s_act_q"),
        ("step_bits", "s_bits_q"),
        ("step_shift", "s_shift_q"),
        ("step_neg", "s_neg_q"),
        ("step_region_first", "s_rfirst_q"),
        ("step_region_last", "s_rlast_q"),
        ("step_item_first", "s_ifirst_q"),
        ("step_item_last", "s_ilast_q"),
        ("step_mult", "s_mult_q"),
    ] {
        m.assign_raw(port, reg)?;
    }
    m.assign_raw("perf_busy", "s_valid_q")?;
    // Registered: PERF_STALL_CYCLES' 64-bit adder is off the issue logic.
    m.reg(
        "pst_q",
        1,
        Some("a descriptor ran and no step issued last cycle"),
    )?;
    let mut pc = Code::new();
    pc.nb("pst_q", "est_q != E_IDLE && !go");
    m.always_ff(&m.sig("clk")?, pc)?;
    m.assign_raw("perf_stall", "pst_q")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(acc_buf_kib: u32) -> CoreShape {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/pynq-z2.toml");
        let mut cfg = AccelConfig::load(path).expect("shipped config");
        cfg.memory.acc_buf_kib = acc_buf_kib;
        CoreShape::of(&cfg)
    }

    #[test]
    fn the_credit_counter_holds_every_staging_position() {
        // A random config of CI's (seed 17062984760752375148): 2805 KiB of accumulator buffer
        // over 16 rows stages 131072 bytes per row, which a 16-bit counter cannot start at.
        for kib in [1, 64, 512, 1024, 2805, 8192] {
            let s = shape(kib);
            let cb = credit_bits(&s);
            assert!(cb >= 16);
            assert!(
                u64::from(s.stage_bytes) < 1u64 << cb,
                "{kib} KiB: {} staging bytes in {cb} bits",
                s.stage_bytes
            );
        }
        assert_eq!(credit_bits(&shape(2805)), 18);
    }
}
