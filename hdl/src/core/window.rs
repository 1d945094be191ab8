//! `caq_window`: the Conv2d window generator. It holds the input feature map (CHW bytes, in
//! [`FM_LANES`] byte lanes so that any 16 consecutive bytes are one read) in one of two banks —
//! the other mirrors the running Conv2d's write beats (docs/hardware.md, "The output mirror";
//! the fetch stage says which bank is which) — and gathers patches —
//! the K-vectors in (c, ky, kx) order of implicit im2col — a block of W output pixels of one
//! output row at a time: each cycle it reads one kernel row's segment of the map, which holds
//! that kernel row for every pixel of the block, and appends each pixel's kw bytes to the pixel's
//! patch (zero where the window lies in the padding). When the kernel is at most
//! [`PAIRED_KW`] bytes wide it reads two kernel rows per cycle, A and the one after it, B (port A
//! and port B of the bank's lane memories), and appends A's kw bytes then B's: still at most one
//! patch word per pixel per cycle. The map's bytes start at `fm_off` in the bank (a slice of the
//! resident map or of the mirror starts at its offset). Full 64-bit patch words go straight into
//! the execute stage's activation banks, pixel w's word j into bank (j + w) mod C/8 of patch
//! buffer (b mod 2, w), so the W pixels' words land in different banks in the same cycle.
//!
//! Blocks follow the execute stage's order (tiles, output rows, blocks along the row); a block is
//! gathered while the previous one computes (two patch buffers, `block_ready` / `block_done`).
//! A block costs `caq_spec::shape::gather_cycles` (⌈in_c·kh / rows⌉) cycles plus the pipeline's
//! fill, whatever its width.
//!
//! Pipeline of a kernel row: address (t), lane reads (t+1), the segment rotated into place (t+2),
//! the block's bytes selected and masked per pixel (t+3), appended, full words out (t+4), written
//! (t+5).
//!
//! Knows the feature-map layout and the patch layout; knows nothing of weights or results.

use caq_spec::shape::{FM_LANES, PAIRED_KW};
use caq_spec::{AccelConfig, CoreShape};

use super::decode::fm_byte_bits;
use super::exec::act_entry_bits;
use super::fetch::FetchWidths;
use super::params::x_inputs;
use super::ports::{bit, clog2};
use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder};
use crate::error::Result;

/// Cycles from a block's last kernel row to its `block_ready`.
pub const GATHER_LATENCY: u32 = 5;

/// The `caq_window` module.
pub fn window(cfg: &AccelConfig) -> Result<Module> {
    let s = CoreShape::of(cfg);
    let fw = FetchWidths::of(&s);
    let (nb, nw) = (s.abanks, s.bus_words);
    let aeb = act_entry_bits(&s);
    let wmax = s.max_block;
    let fl = FM_LANES;
    let fdepth = s.fm_bytes / fl;
    let feb = clog2(fdepth);
    let aw = s.addr_bits;
    let mut m = ModuleBuilder::new("caq_window")?;
    m.doc(&[
        "Window generator: the Conv2d feature map and the gather of patches, a block of pixels",
        "of one output row at a time, into the activation banks. See caq-hdl core/window.rs.",
    ]);
    m.doc_line(format!(
        "Feature map {} bytes in {fl} lanes of {fdepth}; blocks of up to {wmax} pixels; \
         {nb} activation banks.",
        s.fm_bytes
    ));
    m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_doc(Dir::Input, "clear", 1, "pulse: back to idle")?;
    m.port(Dir::Input, "x_start", 1)?;
    x_inputs(&mut m, &s)?;
    m.port_group("feature-map loads from the fetch stage");
    m.port(Dir::Input, "lf_valid", nw)?;
    m.port(Dir::Input, "lf_index", nw * fw.fib)?;
    m.port(Dir::Input, "lf_data", nw * 64)?;
    m.port(Dir::Input, "input_loaded", 1)?;
    m.port_group("the feature map's banks and the output mirror (fetch stage, write port)");
    m.port_doc(Dir::Input, "fm_cur", 1, "the bank of the input map")?;
    m.port_doc(
        Dir::Input,
        "fm_off",
        fm_byte_bits(&s),
        "the input map's first byte in its bank",
    )?;
    m.port_doc(Dir::Input, "mir_on", 1, "mirror the write beats")?;
    m.port_doc(Dir::Input, "mir_base", aw, "the mirrored map's first byte")?;
    m.port(Dir::Input, "wr_valid", 1)?;
    m.port(Dir::Input, "wr_ready", 1)?;
    m.port(Dir::Input, "wr_data", nw * 64)?;
    m.port(Dir::Input, "wr_strb", nw * 8)?;
    m.port_doc(
        Dir::Input,
        "wr_beat_addr",
        aw,
        "the byte address of wr_data",
    )?;
    m.port_group("patch words into the activation banks");
    m.port(Dir::Output, "pw_valid", nb)?;
    m.port(Dir::Output, "pw_entry", nb * aeb)?;
    m.port(Dir::Output, "pw_data", nb * 64)?;
    m.port_group("tokens");
    m.port(Dir::Output, "block_ready", 1)?;
    m.port(Dir::Input, "block_done", 1)?;
    m.port(Dir::Output, "window_idle", 1)?;

    mirror(&mut m, &s, fw.fib)?;
    walk(&mut m, &s, feb)?;
    banks(&mut m, &s, fw.fib, feb)?;
    gather(&mut m, &s)?;
    assemble(&mut m, &s, aeb)?;
    Ok(m.finish())
}

/// The output mirror's snoop: each word of a write beat that lies in the mirrored bank's bytes
/// from `mir_base`, registered with its word index (`fib` bits) and strobes, then written.
fn mirror(m: &mut ModuleBuilder, s: &CoreShape, fib: u32) -> Result<()> {
    let aw = s.addr_bits;
    m.section("output mirror: the running Conv2d's write beats, word by word");
    let mut c = Code::new();
    for l in 0..s.bus_words {
        m.wire_assign(
            &format!("mw{l}_off"),
            Expr::raw(
                format!(
                    "{{1'b0, wr_beat_addr}} + {w}'d{} - {{1'b0, mir_base}}",
                    8 * l,
                    w = aw + 1
                ),
                aw + 1,
            ),
            Some("the word's byte offset in the mirrored map (negative: before it)"),
        )?;
        for (name, width) in [("v", 1), ("idx", fib), ("data", 64), ("strb", 8)] {
            m.reg(&format!("mw{l}_{name}_q"), width, None)?;
        }
        c.nb(
            format!("mw{l}_v_q"),
            format!(
                "mir_on && wr_valid && wr_ready && !mw{l}_off[{aw}] && mw{l}_off < {w}'d{} && \
                 wr_strb[{} +: 8] != 8'd0",
                s.fm_bytes,
                8 * l,
                w = aw + 1
            ),
        );
        c.nb(
            format!("mw{l}_idx_q"),
            format!("mw{l}_off[{} : 3]", fib + 2),
        );
        c.nb(
            format!("mw{l}_data_q"),
            format!("wr_data[{} +: 64]", 64 * l),
        );
        c.nb(format!("mw{l}_strb_q"), format!("wr_strb[{} +: 8]", 8 * l));
    }
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// The feature map's two banks, each a memory per byte lane: byte a of a bank in lane a mod 16,
/// entry a / 16. Loads go into bank `fm_cur`, mirrored words into the other. Port A of a lane's
/// memory takes its writes and, in the cycles it writes nothing, reads kernel row A's entry; port
/// B reads kernel row B's (the paired row). The bank the gather reads takes no write while it
/// reads: its map was loaded before the descriptor ran, and the mirror writes the other bank.
fn banks(m: &mut ModuleBuilder, s: &CoreShape, fib: u32, feb: u32) -> Result<()> {
    let fl = FM_LANES;
    let fdepth = s.fm_bytes / fl;
    let nw = s.bus_words;
    m.section(
        "feature map: two banks of 16 byte lanes; loads into bank fm_cur, mirrored words into the \
         other; port A writes or reads kernel row A, port B reads kernel row B",
    );
    m.comment(&[
        "Lane b holds the bytes whose address is b mod 16; the 16 bytes from address A are lane",
        "b's entry A/16, or A/16 + 1 when b < A mod 16.",
    ]);
    let mut c = Code::new();
    for b in 0..fl {
        let (half, j) = (b / 8, b % 8);
        // The load and the mirrored word of this lane, if any (one of the bus words).
        let mut lw = Vec::new();
        let mut la = Vec::new();
        let mut ld = Vec::new();
        let mut mw = Vec::new();
        let mut ma = Vec::new();
        let mut md = Vec::new();
        for l in 0..nw {
            let lhit = format!(
                "({} && lf_index[{}] == 1'b{half})",
                bit("lf_valid", l, nw),
                l * fib
            );
            la.push(format!("{lhit} ? lf_index[{} +: {feb}]", l * fib + 1));
            ld.push(format!("{lhit} ? lf_data[{} +: 8]", 64 * l + 8 * j));
            lw.push(lhit);
            let mhit = format!("(mw{l}_v_q && mw{l}_idx_q[0] == 1'b{half} && mw{l}_strb_q[{j}])");
            ma.push(format!("{mhit} ? mw{l}_idx_q[1 +: {feb}]"));
            md.push(format!("{mhit} ? mw{l}_data_q[{} +: 8]", 8 * j));
            mw.push(mhit);
        }
        let sel = |arms: &[String], width: u32| format!("{} : {width}'d0", arms.join(" : "));
        m.wire_assign(&format!("fm{b}_lw"), Expr::raw(lw.join(" || "), 1), None)?;
        m.wire_assign(&format!("fm{b}_la"), Expr::raw(sel(&la, feb), feb), None)?;
        m.wire_assign(&format!("fm{b}_ld"), Expr::raw(sel(&ld, 8), 8), None)?;
        m.wire_assign(&format!("fm{b}_mw"), Expr::raw(mw.join(" || "), 1), None)?;
        m.wire_assign(&format!("fm{b}_ma"), Expr::raw(sel(&ma, feb), feb), None)?;
        m.wire_assign(&format!("fm{b}_md"), Expr::raw(sel(&md, 8), 8), None)?;
        // Kernel row X's entry in this lane.
        for x in ["g", "h"] {
            let entry = if b == fl - 1 {
                format!("{x}a_q[{}:4]", feb + 3)
            } else {
                format!(
                    "{x}a_q[{}:4] + {{{}'d0, 4'd{b} < {x}a_q[3:0]}}",
                    feb + 3,
                    feb - 1
                )
            };
            m.wire_assign(&format!("fm{b}_{x}e"), Expr::raw(entry, feb), None)?;
        }
        for k in 0..2 {
            let own = if k == 1 { "fm_cur" } else { "!fm_cur" };
            let mem = format!("fm{b}_{k}_mem");
            m.memory(&mem, 8, fdepth, &format!("feature-map bank {k}, lane {b}"))?;
            m.wire_assign(
                &format!("fm{b}_{k}_we"),
                Expr::raw(format!("{own} ? fm{b}_lw : fm{b}_mw"), 1),
                None,
            )?;
            m.wire_assign(
                &format!("fm{b}_{k}_aa"),
                Expr::raw(
                    format!("fm{b}_{k}_we ? ({own} ? fm{b}_la : fm{b}_ma) : fm{b}_ge"),
                    feb,
                ),
                Some("port A: the write's entry, else kernel row A's"),
            )?;
            m.reg(&format!("fm{b}_{k}_ra_q"), 8, None)?;
            m.reg(&format!("fm{b}_{k}_rb_q"), 8, None)?;
            c.if_(format!("fm{b}_{k}_we"), |c| {
                c.nb(
                    format!("{mem}[fm{b}_{k}_aa]"),
                    format!("{own} ? fm{b}_ld : fm{b}_md"),
                );
            });
            c.nb(format!("fm{b}_{k}_ra_q"), format!("{mem}[fm{b}_{k}_aa]"));
            c.nb(format!("fm{b}_{k}_rb_q"), format!("{mem}[fm{b}_he]"));
        }
    }
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// The walk over blocks and kernel rows: which block is gathered, into which buffer, and the
/// address of each kernel row's segment in the bank (`feb` + 4 bits: entry and lane).
fn walk(m: &mut ModuleBuilder, s: &CoreShape, feb: u32) -> Result<()> {
    m.section("walk: tiles, blocks, kernel rows");
    // Byte addresses within a bank, modulo 2^gw: the entry and the lane take their low bits only
    // (rows and columns outside the map are masked by their indices, not by the address).
    let gw = feb + 4;
    let low = |expr32: &str| format!("{expr32}[{}:0]", gw - 1);
    for (name, width, doc) in [
        ("fm_ready_q", 1, "the feature map is loaded"),
        ("gon_q", 1, "a block is being gathered"),
        (
            "out_q",
            2,
            "blocks started and not yet read by the execute stage (one per patch buffer)",
        ),
        ("gblk_q", 1, "the gathered block's patch buffer"),
        ("wt_q", 16, "tiles walked"),
        ("by_q", 16, "the block's output row"),
        ("bx_q", 16, "its first output column"),
        ("bn_q", 4, "its pixels"),
        ("gc_q", 16, "kernel row: input channel"),
        ("gky_q", 4, "kernel row: ky"),
        ("iy0_q", 18, "by * stride - pad_top"),
        ("ix0_q", 18, "bx * stride - pad_left"),
        ("giy_q", 18, "the kernel row's input row: iy0 + ky"),
        (
            "ga_q",
            gw,
            "the segment's first byte: c * hw + giy * in_w + ix0",
        ),
        ("gac_q", gw, "the channel's first kernel row's byte"),
        (
            "hc_q",
            16,
            "kernel row B (the one after A): input channel (in_c: none)",
        ),
        ("hky_q", 4, "kernel row B: ky"),
        ("hiy_q", 18, "kernel row B's input row"),
        ("ha_q", gw, "kernel row B's segment's first byte"),
        (
            "hac_q",
            gw,
            "kernel row B's channel's first kernel row's byte",
        ),
        (
            "pair_q",
            1,
            "two kernel rows per cycle (kw <= PAIRED_KW): A, and B after it",
        ),
        ("k2w_q", gw, "2 * in_w"),
        ("khw_q", gw, "in_h * in_w"),
        ("khw1_q", gw, "in_h * in_w + in_w"),
        ("k2hw_q", gw, "2 * in_h * in_w"),
        (
            "rb_q",
            gw,
            "fm_off + iy0 * in_w: the block's first input row's byte in channel 0",
        ),
        ("rb0_q", gw, "rb_q of output row 0: fm_off - pad_top * in_w"),
    ] {
        m.reg(name, width, Some(doc))?;
    }
    m.wire_assign(
        "sw",
        Expr::raw("x_stride2 ? {x_in_w[14:0], 1'b0} : x_in_w", 16),
        Some("stride * in_w: from one output row's first kernel row to the next"),
    )?;
    let fbb = fm_byte_bits(s);
    let fm_off32 = format!("{{{}'d0, fm_off}}", 32 - fbb);
    let pad_rows = "(x_pad_top[2] ? {14'd0, x_in_w, 2'b0} : 32'd0) + \
                    (x_pad_top[1] ? {15'd0, x_in_w, 1'b0} : 32'd0) + \
                    (x_pad_top[0] ? {16'd0, x_in_w} : 32'd0)";
    m.lint_off(
        "UNUSEDSIGNAL",
        "32-bit values of which the walk keeps the low gw bits (bank addresses modulo 2^gw)",
    );
    let wide = [
        ("row_step", "{16'd0, x_in_w}", "in_w"),
        (
            "fm_off",
            fm_off32.as_str(),
            "the map's first byte in its bank",
        ),
        ("ix0", "{{14{ix0_q[17]}}, ix0_q}", "ix0, sign-extended"),
        ("pad", pad_rows, "pad_top * in_w"),
        ("sw", "{16'd0, sw}", "stride * in_w"),
        ("k2w", "{15'd0, x_in_w, 1'b0}", "2 * in_w"),
        ("khw", "{8'd0, x_hw}", "in_h * in_w"),
        (
            "khw1",
            "{8'd0, x_hw} + {16'd0, x_in_w}",
            "in_h * in_w + in_w",
        ),
        ("k2hw", "{7'd0, x_hw, 1'b0}", "2 * in_h * in_w"),
    ];
    for (name, value, doc) in wide {
        m.wire_assign(&format!("{name}32"), Expr::raw(value, 32), Some(doc))?;
    }
    m.lint_on("UNUSEDSIGNAL");
    for name in ["row_step", "fm_off", "ix0", "pad", "sw"] {
        let short = if name == "row_step" {
            "row_step".to_owned()
        } else {
            format!("{name}_g")
        };
        m.wire_assign(&short, Expr::raw(low(&format!("{name}32")), gw), None)?;
    }
    m.wire_assign(
        "blk_go",
        Expr::raw(
            "fm_ready_q && !x_start && !gon_q && out_q != 2'd2 && wt_q != x_tiles && x_conv",
            1,
        ),
        Some("start gathering the next block"),
    )?;
    for x in ["g", "h"] {
        m.wire_assign(
            &format!("{x}_end"),
            Expr::raw(
                format!("{x}c_q == x_in_c - 16'd1 && {{1'b0, {x}ky_q}} == {{1'b0, x_kh}} - 5'd1"),
                1,
            ),
            Some(if x == "g" {
                "kernel row A is the block's last"
            } else {
                "kernel row B is the block's last"
            }),
        )?;
    }
    m.wire_assign(
        "h_v",
        Expr::raw("pair_q && hc_q != x_in_c", 1),
        Some("kernel row B is gathered this cycle (A is not the block's last)"),
    )?;
    m.wire_assign(
        "g_last",
        Expr::raw("g_end || (pair_q && h_end)", 1),
        Some("this cycle gathers the block's last kernel row"),
    )?;
    m.wire_assign("kh1", Expr::raw("x_kh == 4'd1", 1), None)?;
    m.wire_assign(
        "ga0",
        Expr::raw("rb_q + ix0_g", gw),
        Some("the block's first kernel row's byte"),
    )?;
    m.wire_assign(
        "row_end",
        Expr::raw("{12'd0, bn_q} + bx_q == x_out_w", 1),
        Some("the block ends its output row"),
    )?;
    m.wire_assign(
        "first_bn",
        Expr::raw("(x_out_w < {12'd0, x_block}) ? x_out_w[3:0] : x_block", 4),
        None,
    )?;
    m.wire_assign(
        "next_bn",
        Expr::raw(
            "(x_out_w - bx_q - {12'd0, bn_q} < {12'd0, x_block}) ? (x_out_w[3:0] - bx_q[3:0] - bn_q) : x_block",
            4,
        ),
        None,
    )?;
    m.wire_assign("top18", Expr::raw("{15'd0, x_pad_top}", 18), None)?;
    m.wire_assign("left18", Expr::raw("{15'd0, x_pad_left}", 18), None)?;
    let mut c = Code::new();
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("fm_ready_q", "1'b0");
            c.nb("gon_q", "1'b0");
            c.nb("out_q", "2'd0");
            c.nb("wt_q", "16'd0");
        },
        |c| {
            c.if_("x_start", |c| {
                c.nb("fm_ready_q", "1'b0");
                c.nb("wt_q", "16'd0");
                c.nb("by_q", "16'd0");
                c.nb("bx_q", "16'd0");
                c.nb("bn_q", "first_bn");
                c.nb("gblk_q", "1'b0");
                c.nb("iy0_q", "18'd0 - top18");
                c.nb("ix0_q", "18'd0 - left18");
                c.nb("pair_q", format!("x_kw <= 3'd{PAIRED_KW}"));
                for name in ["k2w", "khw", "khw1", "k2hw"] {
                    c.nb(format!("{name}_q"), low(&format!("{name}32")));
                }
            });
            c.if_("input_loaded && x_conv", |c| {
                c.nb("fm_ready_q", "1'b1");
                c.comment("the map's place in its bank is known once it is loaded (or on chip)");
                c.nb("rb_q", "fm_off_g - pad_g");
                c.nb("rb0_q", "fm_off_g - pad_g");
            });
            c.nb("out_q", "out_q + {1'b0, blk_go} - {1'b0, block_done}");
            c.if_("blk_go", |c| {
                c.nb("gon_q", "1'b1");
                c.nb("gc_q", "16'd0");
                c.nb("gky_q", "4'd0");
                c.nb("giy_q", "iy0_q");
                c.comment("the block's first kernel row: channel 0, input row iy0");
                c.nb("ga_q", "ga0");
                c.nb("gac_q", "ga0");
                c.comment("kernel row B: the next one (1x1 kernels: the next channel)");
                c.nb("hc_q", "kh1 ? 16'd1 : 16'd0");
                c.nb("hky_q", "kh1 ? 4'd0 : 4'd1");
                c.nb("hiy_q", "kh1 ? iy0_q : iy0_q + 18'd1");
                c.nb("ha_q", "ga0 + (kh1 ? khw_q : row_step)");
                c.nb("hac_q", "kh1 ? ga0 + khw_q : ga0");
            });
            c.if_("gon_q", |c| {
                c.comment("one kernel row per cycle (two when paired), in (c, ky) order");
                c.if_else(
                    "g_last",
                    |c| {
                        c.nb("gon_q", "1'b0");
                        c.comment("the next block: along the row, the next row, the next tile");
                        c.nb("gblk_q", "!gblk_q");
                        c.if_else(
                            "row_end",
                            |c| {
                                c.nb("bx_q", "16'd0");
                                c.nb("bn_q", "first_bn");
                                c.nb("ix0_q", "18'd0 - left18");
                                c.if_else(
                                    "by_q == x_out_h - 16'd1",
                                    |c| {
                                        c.nb("by_q", "16'd0");
                                        c.nb("iy0_q", "18'd0 - top18");
                                        c.nb("rb_q", "rb0_q");
                                        c.nb("wt_q", "wt_q + 16'd1");
                                    },
                                    |c| {
                                        c.nb("by_q", "by_q + 16'd1");
                                        c.nb("iy0_q", "iy0_q + (x_stride2 ? 18'd2 : 18'd1)");
                                        c.nb("rb_q", "rb_q + sw_g");
                                    },
                                );
                            },
                            |c| {
                                c.nb("bx_q", "bx_q + {12'd0, bn_q}");
                                c.nb("bn_q", "next_bn");
                                c.nb(
                                    "ix0_q",
                                    "ix0_q + (x_stride2 ? {13'd0, bn_q, 1'b0} : {14'd0, bn_q})",
                                );
                            },
                        );
                    },
                    |c| {
                        c.if_else(
                            "pair_q",
                            |c| {
                                advance_two(c, "g");
                                advance_two(c, "h");
                            },
                            |c| {
                                c.if_else(
                                    "{12'd0, gky_q} == {12'd0, x_kh} - 16'd1",
                                    |c| {
                                        c.nb("gky_q", "4'd0");
                                        c.nb("gc_q", "gc_q + 16'd1");
                                        c.nb("giy_q", "iy0_q");
                                        c.nb("ga_q", "gac_q + khw_q");
                                        c.nb("gac_q", "gac_q + khw_q");
                                    },
                                    |c| {
                                        c.nb("gky_q", "gky_q + 4'd1");
                                        c.nb("giy_q", "giy_q + 18'd1");
                                        c.nb("ga_q", "ga_q + row_step");
                                    },
                                );
                            },
                        );
                    },
                );
            });
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// Kernel row `x` (A: "g", B: "h") two rows on in (c, ky) order.
fn advance_two(c: &mut Code, x: &str) {
    let (ch, ky, iy, a, ac) = (
        format!("{x}c_q"),
        format!("{x}ky_q"),
        format!("{x}iy_q"),
        format!("{x}a_q"),
        format!("{x}ac_q"),
    );
    c.if_else(
        "kh1",
        |c| {
            c.comment("1-row kernels: two channels on");
            c.nb(&ch, format!("{ch} + 16'd2"));
            c.nb(&a, format!("{ac} + k2hw_q"));
            c.nb(&ac, format!("{ac} + k2hw_q"));
        },
        |c| {
            c.if_else(
                format!("{{1'b0, {ky}}} + 5'd2 < {{1'b0, x_kh}}"),
                |c| {
                    c.nb(&ky, format!("{ky} + 4'd2"));
                    c.nb(&iy, format!("{iy} + 18'd2"));
                    c.nb(&a, format!("{a} + k2w_q"));
                },
                |c| {
                    c.comment("the next channel's first row, or its second");
                    let second = format!("{{1'b0, {ky}}} + 5'd1 == {{1'b0, x_kh}}");
                    c.nb(&ch, format!("{ch} + 16'd1"));
                    c.nb(&ky, format!("{second} ? 4'd1 : 4'd0"));
                    c.nb(&iy, format!("{second} ? iy0_q + 18'd1 : iy0_q"));
                    c.nb(&a, format!("{second} ? {ac} + khw1_q : {ac} + khw_q"));
                    c.nb(&ac, format!("{ac} + khw_q"));
                },
            );
        },
    );
}

/// The gather: each kernel row's 16 lanes read (t+1, in `banks`), rotated to the segment's first
/// byte (t+2), each pixel's kernel row selected and masked (t+3). Paired rows: row B's kw bytes
/// follow row A's in the pixel's append (their (c, ky) order).
fn gather(m: &mut ModuleBuilder, s: &CoreShape) -> Result<()> {
    let fl = FM_LANES;
    let wmax = s.max_block;
    let pk = u32::from(PAIRED_KW);
    m.section("gather: lane reads (t+1), the segments (t+2), each pixel's kernel rows (t+3)");
    m.comment(&["Bytes outside the input are masked."]);
    for x in ["g", "h"] {
        m.wire_assign(
            &format!("{x}_rowok"),
            Expr::raw(format!("!{x}iy_q[17] && {x}iy_q < {{2'd0, x_in_h}}"), 1),
            Some("the kernel row's input row lies inside the map"),
        )?;
    }
    // Segment bytes a pixel's kernel row can take: w + j (stride 1) or 2w + j (stride 2), j < kw;
    // row B's kw is at most PAIRED_KW.
    let nseg = (2 * (wmax - 1) + 7).min(fl);
    let nsegb = (2 * (wmax - 1) + pk).min(fl);
    m.reg(
        "colok_q",
        nseg,
        Some("the block's column t lies inside the map: 0 <= ix0 + t < in_w"),
    )?;
    for (name, width) in [
        ("p1_v_q", 1),
        ("p1_last_q", 1),
        ("p1_cur_q", 1),
        ("p1_rot_q", 4),
        ("p1_rowok_q", 1),
        ("p1_hv_q", 1),
        ("p1_hrot_q", 4),
        ("p1_hrowok_q", 1),
        ("p1_n_q", 4),
        ("p1_colok_q", nseg),
        ("p1_blk_q", 1),
        ("p1_bn_q", 4),
    ] {
        m.reg(name, width, None)?;
    }
    let mut c = Code::new();
    let cols = (0..nseg)
        .rev()
        .map(|t| format!("(!ix0_t{t}[17] && ix0_t{t} < {{2'd0, x_in_w}})"))
        .collect::<Vec<_>>()
        .join(", ");
    for t in 0..nseg {
        m.wire_assign(
            &format!("ix0_t{t}"),
            Expr::raw(format!("ix0_q + 18'd{t}"), 18),
            None,
        )?;
    }
    c.if_("blk_go", |c| {
        c.nb("colok_q", format!("{{{cols}}}"));
    });
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("p1_v_q", "1'b0");
            c.nb("p1_last_q", "1'b0");
        },
        |c| {
            c.nb("p1_v_q", "gon_q");
            c.nb("p1_last_q", "gon_q && g_last");
        },
    );
    c.nb("p1_cur_q", "fm_cur");
    c.nb("p1_rot_q", "ga_q[3:0]");
    c.nb("p1_rowok_q", "g_rowok");
    c.nb("p1_hv_q", "h_v");
    c.nb("p1_hrot_q", "ha_q[3:0]");
    c.nb("p1_hrowok_q", "h_rowok");
    c.nb("p1_n_q", "{1'b0, x_kw} + (h_v ? {1'b0, x_kw} : 4'd0)");
    c.nb("p1_colok_q", "colok_q");
    c.nb("p1_blk_q", "gblk_q");
    c.nb("p1_bn_q", "bn_q");
    // t+2: the segments, from lane (rot + j) mod 16 of the bank read, registered (the rotation is
    // the only logic after the block RAM's output).
    for (name, width) in [
        ("pq_v_q", 1),
        ("pq_last_q", 1),
        ("pq_rowok_q", 1),
        ("pq_hv_q", 1),
        ("pq_hrowok_q", 1),
        ("pq_n_q", 4),
        ("pq_colok_q", nseg),
        ("pq_blk_q", 1),
        ("pq_bn_q", 4),
    ] {
        m.reg(name, width, None)?;
    }
    for (x, port, rot, n) in [
        ("", "ra", "p1_rot_q", nseg),
        ("h", "rb", "p1_hrot_q", nsegb),
    ] {
        for j in 0..n {
            let sel = (0..fl)
                .map(|r| {
                    let l = (r + j) % fl;
                    format!("({rot} == 4'd{r}) ? (p1_cur_q ? fm{l}_1_{port}_q : fm{l}_0_{port}_q)")
                })
                .collect::<Vec<_>>()
                .join(" : ");
            m.reg(
                &format!("{x}seg{j}_q"),
                8,
                (j == 0).then_some(if x.is_empty() {
                    "segment byte j: the input byte at kernel row A's start + j"
                } else {
                    "segment byte j of kernel row B"
                }),
            )?;
            c.nb(format!("{x}seg{j}_q"), format!("{sel} : 8'd0"));
        }
    }
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("pq_v_q", "1'b0");
            c.nb("pq_last_q", "1'b0");
        },
        |c| {
            c.nb("pq_v_q", "p1_v_q");
            c.nb("pq_last_q", "p1_last_q");
        },
    );
    for r in ["rowok", "hv", "hrowok", "n", "colok", "blk", "bn"] {
        c.nb(format!("pq_{r}_q"), format!("p1_{r}_q"));
    }
    // t+3: each pixel's kernel rows, selected and masked: row A's kw bytes, then (paired) row
    // B's.
    for (name, width) in [
        ("p2_v_q", 1),
        ("p2_last_q", 1),
        ("p2_n_q", 4),
        ("p2_blk_q", 1),
        ("p2_bn_q", 4),
    ] {
        m.reg(name, width, None)?;
    }
    for w in 0..wmax {
        m.reg(
            &format!("prow{w}_q"),
            64,
            Some("pixel w's bytes of this cycle, byte j at [8j +: 8]"),
        )?;
        // Row X's byte j of pixel w: segment byte w + j (stride 1) or 2w + j (stride 2).
        let row = |x: &str, ok: &str, n: u32, j: u32| {
            let pick = |off: u32| {
                if off < n {
                    format!("(pq_colok_q[{off}] ? {x}seg{off}_q : 8'd0)")
                } else {
                    "8'd0".to_owned()
                }
            };
            format!(
                "(({ok} && 3'd{j} < x_kw) ? (x_stride2 ? {} : {}) : 8'd0)",
                pick(2 * w + j),
                pick(w + j)
            )
        };
        let bytes = (0..8u32)
            .rev()
            .map(|j| {
                let a = row("", "pq_rowok_q", nseg, j);
                // Paired: byte j is row B's byte j - kw.
                let b = (1..=pk)
                    .filter(|&k| k <= j && j - k < pk)
                    .map(|k| {
                        format!(
                            "(x_kw == 3'd{k}) ? {}",
                            row("h", "pq_hv_q && pq_hrowok_q", nsegb, j - k)
                        )
                    })
                    .chain(std::iter::once("8'd0".to_owned()))
                    .collect::<Vec<_>>()
                    .join(" : ");
                if j < 7 {
                    format!("((3'd{j} < x_kw) ? {a} : (pair_q ? ({b}) : 8'd0))")
                } else {
                    format!("(pair_q ? ({b}) : 8'd0)")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        c.nb(format!("prow{w}_q"), format!("{{{bytes}}}"));
    }
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("p2_v_q", "1'b0");
            c.nb("p2_last_q", "1'b0");
        },
        |c| {
            c.nb("p2_v_q", "pq_v_q");
            c.nb("p2_last_q", "pq_last_q");
        },
    );
    c.nb("p2_n_q", "pq_n_q");
    c.nb("p2_blk_q", "pq_blk_q");
    c.nb("p2_bn_q", "pq_bn_q");
    m.always_ff(&m.sig("clk")?, c)?;
    Ok(())
}

/// The assemblers: each pixel's kernel row appended to its patch (t+4); a full word, or the
/// block's last partial one, written into the activation banks (t+5).
fn assemble(m: &mut ModuleBuilder, s: &CoreShape, aeb: u32) -> Result<()> {
    let wmax = s.max_block;
    let nb = s.abanks;
    let nbl = clog2(nb);
    m.section("assemblers (t+4) and the bank writes (t+5)");
    m.reg(
        "fill_q",
        3,
        Some("bytes pending in every pixel's assembler"),
    )?;
    let gwb = aeb + nbl;
    m.reg("gw_q", gwb, Some("the next patch word"))?;
    m.reg(
        "flush_q",
        1,
        Some("the block's leftover bytes go out next cycle"),
    )?;
    for (name, width) in [
        ("e_v_q", 1),
        ("e_last_q", 1),
        ("e_gw_q", gwb),
        ("e_blk_q", 1),
        ("e_bn_q", 4),
    ] {
        m.reg(name, width, None)?;
    }
    m.wire_assign(
        "tot",
        Expr::raw("{1'b0, fill_q} + p2_n_q", 4),
        Some("bytes after the append"),
    )?;
    for w in 0..wmax {
        m.reg(&format!("acc{w}_q"), 56, Some("pixel w's pending bytes"))?;
        m.reg(
            &format!("e_word{w}_q"),
            64,
            Some("pixel w's word going out"),
        )?;
        m.wire_assign(
            &format!("comb{w}"),
            Expr::raw(
                format!("{{64'd0, acc{w}_q}} | ({{56'd0, prow{w}_q}} << {{fill_q, 3'd0}})"),
                120,
            ),
            None,
        )?;
    }
    m.reg(
        "pw_off_q",
        wmax * aeb,
        Some("w * chunks: pixel w's patch, from its buffer's start"),
    )?;
    let mut c = Code::new();
    c.if_("x_start", |c| {
        let offs = (0..wmax)
            .rev()
            .map(|w| format!("{aeb}'d{w} * x_nch[{}:0]", aeb - 1))
            .collect::<Vec<_>>()
            .join(", ");
        c.nb("pw_off_q", format!("{{{offs}}}"));
    });
    c.nb("e_v_q", "1'b0");
    c.nb("e_last_q", "1'b0");
    c.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("fill_q", "3'd0");
            c.nb("gw_q", format!("{gwb}'d0"));
            c.nb("flush_q", "1'b0");
            for w in 0..wmax {
                c.nb(format!("acc{w}_q"), "56'd0");
            }
        },
        |c| {
            c.nb("flush_q", "1'b0");
            c.if_else(
                "flush_q",
                |c| {
                    c.comment("the block's leftover bytes: its last, partial word");
                    c.nb("e_v_q", "1'b1");
                    c.nb("e_last_q", "1'b1");
                    c.nb("e_gw_q", "gw_q");
                    for w in 0..wmax {
                        c.nb(format!("e_word{w}_q"), format!("{{8'd0, acc{w}_q}}"));
                        c.nb(format!("acc{w}_q"), "56'd0");
                    }
                    c.nb("fill_q", "3'd0");
                    c.nb("gw_q", format!("{gwb}'d0"));
                },
                |c| {
                    c.if_("p2_v_q", |c| {
                        c.nb("e_blk_q", "p2_blk_q");
                        c.nb("e_bn_q", "p2_bn_q");
                        c.nb("e_gw_q", "gw_q");
                        for w in 0..wmax {
                            c.nb(format!("e_word{w}_q"), format!("comb{w}[63:0]"));
                        }
                        c.if_else(
                            "tot[3]",
                            |c| {
                                c.comment("a full word goes out; the rest waits");
                                c.nb("e_v_q", "1'b1");
                                c.nb("gw_q", format!("gw_q + {gwb}'d1"));
                                c.nb("fill_q", "tot[2:0]");
                                for w in 0..wmax {
                                    c.nb(format!("acc{w}_q"), format!("comb{w}[119:64]"));
                                }
                                c.if_("p2_last_q", |c| {
                                    c.if_else(
                                        "tot[2:0] != 3'd0",
                                        |c| {
                                            c.nb("flush_q", "1'b1");
                                        },
                                        |c| {
                                            c.nb("e_last_q", "1'b1");
                                            c.nb("fill_q", "3'd0");
                                            c.nb("gw_q", format!("{gwb}'d0"));
                                        },
                                    );
                                });
                            },
                            |c| {
                                c.nb("fill_q", "tot[2:0]");
                                for w in 0..wmax {
                                    c.nb(format!("acc{w}_q"), format!("comb{w}[55:0]"));
                                }
                                c.if_("p2_last_q", |c| {
                                    c.comment("the block's last word is partial: out now");
                                    c.nb("e_v_q", "1'b1");
                                    c.nb("e_last_q", "1'b1");
                                    c.nb("fill_q", "3'd0");
                                    c.nb("gw_q", format!("{gwb}'d0"));
                                    for w in 0..wmax {
                                        c.nb(format!("acc{w}_q"), "56'd0");
                                    }
                                });
                            },
                        );
                    });
                },
            );
        },
    );
    m.always_ff(&m.sig("clk")?, c)?;
    // t+5: the bank writes. Pixel w's word gw goes to bank (gw + w) mod C/8, entry
    // buffer * W * chunks + w * chunks + gw / (C/8).
    m.reg("wn_q", aeb, Some("W * chunks: one patch buffer"))?;
    let mut w4 = Code::new();
    let block = if aeb > 4 {
        format!("{{{}'d0, x_block}}", aeb - 4)
    } else {
        format!("x_block[{}:0]", aeb - 1)
    };
    w4.if_("x_start", |c| {
        c.nb("wn_q", format!("{block} * x_nch[{}:0]", aeb - 1));
    });
    m.reg("pw_valid_q", nb, None)?;
    m.reg("pw_entry_q", nb * aeb, None)?;
    m.reg("pw_data_q", nb * 64, None)?;
    m.reg("rdy_q", 1, None)?;
    m.wire_assign(
        "e_row",
        Expr::raw(
            if nbl == 0 {
                format!("e_gw_q[{}:0]", aeb - 1)
            } else {
                format!("e_gw_q[{}:{nbl}]", aeb - 1 + nbl)
            },
            aeb,
        ),
        Some("the word's entry within the pixel's patch"),
    )?;
    for b in 0..nb {
        // Pixel w writes bank b when (gw + w) mod nb == b.
        let mut valid = Vec::new();
        let mut entry = Vec::new();
        let mut data = Vec::new();
        for w in 0..wmax {
            let hit = if nbl == 0 {
                "1'b1".to_owned()
            } else {
                format!("(e_gw_q[{}:0] + {nbl}'d{w}) == {nbl}'d{b}", nbl - 1)
            };
            valid.push(format!("({hit} && 4'd{w} < e_bn_q)"));
            // A one-bit pw_off_q is a scalar, which takes no select.
            let off = if wmax * aeb == 1 {
                "pw_off_q".to_owned()
            } else {
                format!("pw_off_q[{} +: {aeb}]", w * aeb)
            };
            entry.push(format!(
                "({hit}) ? ((e_blk_q ? wn_q : {aeb}'d0) + {off} + e_row)"
            ));
            data.push(format!("({hit}) ? e_word{w}_q"));
        }
        w4.nb(
            bit("pw_valid_q", b, nb),
            format!("e_v_q && ({})", valid.join(" || ")),
        );
        w4.nb(
            format!("pw_entry_q[{} +: {aeb}]", b * aeb),
            format!("{} : {aeb}'d0", entry.join(" : ")),
        );
        w4.nb(
            format!("pw_data_q[{} +: 64]", b * 64),
            format!("{} : 64'd0", data.join(" : ")),
        );
    }
    w4.nb("rdy_q", "e_v_q && e_last_q");
    w4.if_("!rst_n || clear", |c| {
        c.nb("pw_valid_q", format!("{nb}'d0"));
        c.nb("rdy_q", "1'b0");
    });
    m.always_ff(&m.sig("clk")?, w4)?;
    m.assign_raw("pw_valid", "pw_valid_q")?;
    m.assign_raw("pw_entry", "pw_entry_q")?;
    m.assign_raw("pw_data", "pw_data_q")?;
    m.assign_raw("block_ready", "rdy_q")?;
    m.assign_raw(
        "window_idle",
        "!gon_q && !p1_v_q && !pq_v_q && !p2_v_q && !flush_q && !e_v_q && !rdy_q",
    )?;
    Ok(())
}
