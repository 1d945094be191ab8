//! `caq_requant`: the requantization of one array row's totals, one value per cycle, pipelined
//! for the board clock. It is the executable rule of docs/numerics.md "Requantization", the same as
//! `caq_model::requant`:
//!
//! ```text
//! total = acc + bias                                  48-bit
//! y     = (total * mult + 2^(shift-1)) >>> shift      exact 80-bit product, round half up
//! y     = relu ? max(y, 0) : y
//! out   = clamp(y, qmin, qmax)                        qmin/qmax from the output bits and signedness
//! ```
//!
//! Stages, each one adder, one DSP multiply or one mux tree deep:
//! 1. `total = acc + bias`;
//! 2. four partial products of 24 x 16 bits (one DSP48 each): total = t_hi·2^24 + t_lo,
//!    mult = m_hi·2^16 + m_lo;
//! 3. `s_lo = t_lo·m_lo + t_lo·m_hi·2^16`, `s_hi = t_hi·m_lo + t_hi·m_hi·2^16`;
//! 4. `prod = s_lo + s_hi·2^24` (the exact 80-bit product);
//! 5. `q = prod >>> (shift - 1)` (shift 0: `prod`), kept as its low 11 bits and whether it lies
//!    outside [-1024, 1023] (its bits above the window are not all the sign); the output range
//!    [qmin, qmax] from the output bits, signedness and ReLU;
//! 6. the rounding `(q + 1) >>> 1` (shift > 0), equal to `(prod + 2^(shift-1)) >>> shift`
//!    because `⌊(⌊p/2^(s-1)⌋ + 1)/2⌋ = ⌊(p + 2^(s-1))/2^s⌋`; ReLU and saturation (any value
//!    outside the window saturates: every output range lies within [-128, 255]).
//!
//! `out_valid` follows `in_valid` by [`LATENCY`] cycles.

use crate::array::ACC_T_BITS;
use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder};
use crate::error::Result;

/// Requantization multiplier: a positive i32 (31 significant bits), as in `caq_model::requant`.
pub const MULT_BITS: u32 = 32;
/// Shift 0..=63.
pub const SHIFT_BITS: u32 = 6;
/// Product width: 48-bit total times a 32-bit (non-negative) multiplier.
pub const PROD_BITS: u32 = ACC_T_BITS + MULT_BITS;
/// Cycles from `in_valid` to `out_valid`.
pub const LATENCY: u32 = 6;
/// Width of the window kept of the shifted product: wide enough that every value inside it can
/// be told from the saturation bounds after rounding.
const WIN: u32 = 11;

/// The `caq_requant` module (independent of the config: widths are fixed by docs/numerics.md).
pub fn requant() -> Result<Module> {
    let mut m = ModuleBuilder::new("caq_requant")?;
    m.doc(&[
        "Requantization of one row: (acc + bias) * mult, round half up, >>> shift, ReLU, saturate.",
        "One value per cycle, 6-cycle latency, every stage one adder or multiplier deep.",
        "Rules: docs/numerics.md.",
    ]);
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_doc(
        Dir::Input,
        "clear",
        1,
        "synchronous: drop the values in flight (soft reset)",
    )?;
    m.port(Dir::Input, "in_valid", 1)?;
    m.port_doc(
        Dir::Input,
        "in_acc",
        ACC_T_BITS,
        "signed total from the array",
    )?;
    m.port_doc(Dir::Input, "in_bias", 32, "signed, accumulator units")?;
    m.port_doc(Dir::Input, "in_mult", MULT_BITS, "0 <= mult < 2^31")?;
    m.port_doc(Dir::Input, "in_shift", SHIFT_BITS, "0..63")?;
    m.port(Dir::Input, "in_relu", 1)?;
    m.port_doc(
        Dir::Input,
        "in_out_signed",
        1,
        "output codes signed (else unsigned)",
    )?;
    m.port_doc(Dir::Input, "in_out_bits", 4, "output code bits, 2..8")?;
    let out_valid = m.port(Dir::Output, "out_valid", 1)?;
    let out_code = m.port_doc(
        Dir::Output,
        "out_code",
        8,
        "two's complement or unsigned byte",
    )?;

    // The flags travel beside the data: shift, relu, signed, bits.
    let fw = SHIFT_BITS + 1 + 1 + 4;
    let mut ctl = Code::new();
    let mut data = Code::new();
    m.section("valid bits and flags along the stages");
    m.reg("v_q", LATENCY, Some("in_valid, delayed"))?;
    ctl.nb("v_q", format!("{{v_q[{}:0], in_valid}}", LATENCY - 2));
    // The flags are reset with the valid bits: a reset keeps synthesis from packing the chain
    // into shift-register LUTs, whose clock-to-out (about 1.5 ns) would start stage 5's path.
    let mut flags_reset = Code::new();
    for st in 1..=4 {
        m.reg(&format!("f{st}_q"), fw, Some("shift, relu, signed, bits"))?;
        let prev = if st == 1 {
            "{in_shift, in_relu, in_out_signed, in_out_bits}".to_owned()
        } else {
            format!("f{}_q", st - 1)
        };
        ctl.nb(format!("f{st}_q"), prev);
        flags_reset.nb(format!("f{st}_q"), format!("{fw}'d0"));
    }
    m.reg(
        "pos_q",
        SHIFT_BITS,
        Some("stage 5's window position: shift - 1 (shift 0: 0)"),
    )?;
    ctl.nb("pos_q", "(f3_q[11:6] == 6'd0) ? 6'd0 : f3_q[11:6] - 6'd1");
    flags_reset.nb("pos_q", format!("{SHIFT_BITS}'d0"));

    m.section("1: total = acc + bias");
    m.reg("total_q", ACC_T_BITS, None)?;
    m.reg("mult1_q", MULT_BITS, None)?;
    data.nb(
        "total_q",
        format!(
            "in_acc + {{{{{}{{in_bias[31]}}}}, in_bias}}",
            ACC_T_BITS - 32
        ),
    );
    data.nb("mult1_q", "in_mult");

    m.section("2: four 24 x 16 partial products (one DSP48 each)");
    m.comment(&[
        "total = t_hi * 2^24 + t_lo (t_lo unsigned); mult = m_hi * 2^16 + m_lo (both unsigned).",
        "Each operand is extended to the product's width, so each multiply is exact as written.",
    ]);
    for (name, a, b) in [
        ("p_ll_q", "{17'd0, total_q[23:0]}", "{25'd0, mult1_q[15:0]}"),
        (
            "p_lh_q",
            "{17'd0, total_q[23:0]}",
            "{25'd0, mult1_q[31:16]}",
        ),
        (
            "p_hl_q",
            "{{17{total_q[47]}}, total_q[47:24]}",
            "{25'd0, mult1_q[15:0]}",
        ),
        (
            "p_hh_q",
            "{{16{total_q[47]}}, total_q[47:24]}",
            "{24'd0, mult1_q[31:16]}",
        ),
    ] {
        // p_hh only feeds bits 16 and up of s_hi, which keeps 56 bits: 40 are enough.
        let w = if name == "p_hh_q" { 40 } else { 41 };
        m.reg(name, w, None)?;
        data.nb(name, format!("$signed({a}) * $signed({b})"));
    }

    m.section("3: pairs of partial products");
    m.reg("s_lo_q", 57, Some("t_lo * mult, unsigned"))?;
    m.reg(
        "s_hi_q",
        56,
        Some("t_hi * mult, signed (|t_hi * mult| < 2^54)"),
    )?;
    data.nb("s_lo_q", "{16'd0, p_ll_q} + {p_lh_q, 16'd0}");
    data.nb("s_hi_q", "{{15{p_hl_q[40]}}, p_hl_q} + {p_hh_q, 16'd0}");

    m.section("4: the exact product");
    m.reg("prod_q", PROD_BITS, None)?;
    data.nb(
        "prod_q",
        format!(
            "{{{{{e}{{s_lo_q[56]}}}}, s_lo_q}} + {{s_hi_q, 24'd0}}",
            e = PROD_BITS - 57
        ),
    );

    m.section("5: the window of prod >>> (shift - 1)");
    m.wire_assign(
        "pos",
        Expr::raw("pos_q", SHIFT_BITS),
        Some("the window's lowest bit: shift - 1 (shift 0: the product itself)"),
    )?;
    let lo = WIN - 1;
    m.wire_assign(
        "flip",
        Expr::raw(
            format!(
                "prod_q[{t}:{lo}] ^ {{{n}{{prod_q[{t}]}}}}",
                t = PROD_BITS - 1,
                n = PROD_BITS - lo
            ),
            PROD_BITS - lo,
        ),
        Some("bits 10 and up that differ from the sign"),
    )?;
    // q lies in [-1024, 1023] when bits pos + 10 .. 79 of the product all equal its sign.
    let max_pos = (1u32 << SHIFT_BITS) - 1;
    let above = (lo..PROD_BITS)
        .map(|i| {
            let f = format!("flip[{}]", i - lo);
            if i - lo >= max_pos {
                f
            } else {
                format!("({f} && pos <= 6'd{})", i - lo)
            }
        })
        .collect::<Vec<_>>()
        .join(" || ");
    m.reg("win_q", WIN, None)?;
    m.reg(
        "ovf_q",
        1,
        Some("the shifted product lies outside the window"),
    )?;
    m.reg("neg_q", 1, None)?;
    // The output range and shift == 0, registered here from the flags so that stage 6 is only the
    // rounding add, the compares and the choice.
    m.reg("qmax_q", 12, Some("the output's largest code"))?;
    m.reg("qmin_q", 12, Some("its smallest (ReLU: 0)"))?;
    m.reg("sh0_q", 1, Some("shift 0: no rounding"))?;
    data.nb(
        "qmax_q",
        "f4_q[4] ? ((12'd1 << (f4_q[3:0] - 4'd1)) - 12'd1) : ((12'd1 << f4_q[3:0]) - 12'd1)",
    );
    data.nb(
        "qmin_q",
        "(f4_q[4] && !f4_q[5]) ? (12'd0 - (12'd1 << (f4_q[3:0] - 4'd1))) : 12'd0",
    );
    data.nb("sh0_q", "f4_q[11:6] == 6'd0");
    data.nb("win_q", "prod_q[{1'b0, pos} +: 11]");
    data.nb("ovf_q", above);
    data.nb("neg_q", format!("prod_q[{}]", PROD_BITS - 1));

    m.section("6: round, ReLU, saturate");
    m.comment(&[
        "qmax = 2^bits - 1 (unsigned) or 2^(bits-1) - 1 (signed); qmin = 0 or -2^(bits-1);",
        "ReLU raises qmin to 0. Compared as 12-bit signed numbers.",
    ]);
    m.wire_assign(
        "y",
        Expr::raw(
            "sh0_q ? {win_q[10], win_q} : \
             ({win_q[10], win_q[10], win_q[10:1]} + {11'd0, win_q[0]})",
            12,
        ),
        Some(
            "the rounded value (q + 1) >>> 1 = (q >>> 1) + q[0], by bit selection: no \
             signedness rules involved",
        ),
    )?;
    m.wire_assign("qmax", Expr::raw("qmax_q", 12), None)?;
    m.wire_assign("qmin", Expr::raw("qmin_q", 12), None)?;
    m.reg("out_q", 8, None)?;
    data.nb(
        "out_q",
        "ovf_q ? (neg_q ? qmin[7:0] : qmax[7:0]) : \
         ($signed(y) > $signed(qmax)) ? qmax[7:0] : ($signed(y) < $signed(qmin)) ? qmin[7:0] : y[7:0]",
    );
    let mut all = data;
    all.if_else(
        "!rst_n || clear",
        |c| {
            c.nb("v_q", format!("{LATENCY}'d0"));
            c.append(&flags_reset);
        },
        |c| {
            c.append(&ctl);
        },
    );
    m.always_ff(&clk, all)?;
    m.section("outputs");
    m.assign(&out_valid, Expr::raw(format!("v_q[{}]", LATENCY - 1), 1))?;
    m.assign(&out_code, Expr::raw("out_q", 8))?;
    Ok(m.finish())
}
