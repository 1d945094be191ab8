//! `caq_requant`: the requantization stage, one output per cycle, shared by the array's rows
//! (a tile's R totals go through it one after the other). It is the executable rule of
//! docs/numerics.md "Requantization", the same as `caq_model::requant`:
//!
//! ```text
//! total = acc + bias                                  48-bit
//! y     = (total * mult + 2^(shift-1)) >>> shift      exact 80-bit product, round half up
//! y     = relu ? max(y, 0) : y
//! out   = clamp(y, qmin, qmax)                        qmin/qmax from the output bits and signedness
//! ```
//!
//! Pipeline: `total_q` (t+1), `prod_q` (t+2, the DSP cascade), `shifted_q` (t+3), `out_q` (t+4);
//! `out_valid` follows `in_valid` by 4 cycles and `out_tag` carries `in_tag` along.

use crate::array::ACC_T_BITS;
use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder};
use crate::error::Result;

/// Requantization multiplier: a positive i32 (31 significant bits), as in `caq_model::requant`.
pub const MULT_BITS: u32 = 32;
/// Shift 0..=63.
pub const SHIFT_BITS: u32 = 6;
/// Product width: 48-bit total times a 32-bit (non-negative) multiplier.
pub const PROD_BITS: u32 = ACC_T_BITS + MULT_BITS;
/// Tag carried alongside a value (the output channel it belongs to).
pub const TAG_BITS: u32 = 16;

/// The `caq_requant` module (independent of the config: widths are fixed by docs/numerics.md).
pub fn requant() -> Result<Module> {
    let mut m = ModuleBuilder::new("caq_requant")?;
    m.doc(&[
        "Requantization: (acc + bias) * mult, round half up, >>> shift, ReLU, saturate.",
        "One value per cycle, 4-cycle latency. Rules: docs/numerics.md.",
    ]);
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
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
    m.port_doc(Dir::Input, "in_tag", TAG_BITS, "carried to out_tag")?;
    let out_valid = m.port(Dir::Output, "out_valid", 1)?;
    let out_code = m.port_doc(
        Dir::Output,
        "out_code",
        8,
        "two's complement or unsigned byte",
    )?;
    let out_tag = m.port(Dir::Output, "out_tag", TAG_BITS)?;

    m.section("stage 1: add the bias");
    m.reg("total_q", ACC_T_BITS, None)?;
    m.reg("mult1_q", MULT_BITS, None)?;
    m.reg(
        "ctl1_q",
        1 + SHIFT_BITS + 1 + 1 + 4 + TAG_BITS,
        Some("valid, shift, relu, signed, bits, tag"),
    )?;
    let ctl_w = 1 + SHIFT_BITS + 1 + 1 + 4 + TAG_BITS;
    let mut s1 = Code::new();
    s1.if_else(
        "!rst_n",
        |c| {
            c.nb("ctl1_q", format!("{ctl_w}'d0"));
        },
        |c| {
            c.nb(
                "ctl1_q",
                "{in_valid, in_shift, in_relu, in_out_signed, in_out_bits, in_tag}",
            );
        },
    );
    s1.nb(
        "total_q",
        format!(
            "in_acc + {{{{{}{{in_bias[31]}}}}, in_bias}}",
            ACC_T_BITS - 32
        ),
    );
    s1.nb("mult1_q", "in_mult");
    m.always_ff(&clk, s1)?;

    m.section("stage 2: exact product (DSP cascade)");
    m.comment(&[&format!(
        "{ACC_T_BITS}-bit signed total x {MULT_BITS}-bit non-negative multiplier = {PROD_BITS} bits; both operands are extended to {PROD_BITS} bits so the multiply is exact as written."
    )]);
    m.wire_assign(
        "prod",
        Expr::raw(
            format!(
                "$signed({{{{{e}{{total_q[{am}]}}}}, total_q}}) * $signed({{{z}'d0, mult1_q}})",
                e = PROD_BITS - ACC_T_BITS,
                am = ACC_T_BITS - 1,
                z = PROD_BITS - MULT_BITS
            ),
            PROD_BITS,
        ),
        None,
    )?;
    m.reg("prod_q", PROD_BITS, None)?;
    m.reg("ctl2_q", ctl_w, None)?;
    let mut s2 = Code::new();
    s2.if_else(
        "!rst_n",
        |c| {
            c.nb("ctl2_q", format!("{ctl_w}'d0"));
        },
        |c| {
            c.nb("ctl2_q", "ctl1_q");
        },
    );
    s2.nb("prod_q", "prod");
    m.always_ff(&clk, s2)?;

    m.section("stage 3: round half up and shift");
    let tag_lsb = 0;
    let bits_lsb = TAG_BITS;
    let signed_bit = bits_lsb + 4;
    let relu_bit = signed_bit + 1;
    let shift_lsb = relu_bit + 1;
    let valid_bit = shift_lsb + SHIFT_BITS;
    m.comment(&[
        "half = 2^(shift-1), 0 for shift 0; the arithmetic shift floors, so adding half rounds",
        "half towards +infinity. The sum cannot overflow: |prod| < 2^79.",
    ]);
    m.wire_assign(
        "shift2",
        Expr::raw(format!("ctl2_q[{}:{shift_lsb}]", valid_bit - 1), SHIFT_BITS),
        None,
    )?;
    m.wire_assign(
        "half",
        Expr::raw(
            format!(
                "(shift2 == {SHIFT_BITS}'d0) ? {PROD_BITS}'d0 : ({PROD_BITS}'d1 << (shift2 - {SHIFT_BITS}'d1))"
            ),
            PROD_BITS,
        ),
        None,
    )?;
    m.wire_assign(
        "rounded",
        Expr::raw("$signed(prod_q + half) >>> shift2", PROD_BITS),
        None,
    )?;
    m.reg("shifted_q", PROD_BITS, None)?;
    // The shift has been applied: stage 4 needs valid, relu, signedness, bits and the tag.
    let ctl3_w = ctl_w - SHIFT_BITS;
    let valid3_bit = shift_lsb;
    m.reg("ctl3_q", ctl3_w, Some("valid, relu, signed, bits, tag"))?;
    let mut s3 = Code::new();
    s3.if_else(
        "!rst_n",
        |c| {
            c.nb("ctl3_q", format!("{ctl3_w}'d0"));
        },
        |c| {
            c.nb(
                "ctl3_q",
                format!("{{ctl2_q[{valid_bit}], ctl2_q[{relu_bit}:0]}}"),
            );
        },
    );
    s3.nb("shifted_q", "rounded");
    m.always_ff(&clk, s3)?;

    m.section("stage 4: ReLU and saturation");
    m.comment(&[
        "qmax = 2^bits - 1 (unsigned) or 2^(bits-1) - 1 (signed); qmin = 0 or -2^(bits-1).",
        "ReLU only raises qmin to 0. Compared as 80-bit signed numbers.",
    ]);
    m.wire_assign(
        "bits3",
        Expr::raw(format!("ctl3_q[{}:{bits_lsb}]", bits_lsb + 3), 4),
        None,
    )?;
    m.wire_assign(
        "qmax",
        Expr::raw(
            format!(
                "ctl3_q[{signed_bit}] ? (({PROD_BITS}'d1 << (bits3 - 4'd1)) - {PROD_BITS}'d1) : (({PROD_BITS}'d1 << bits3) - {PROD_BITS}'d1)"
            ),
            PROD_BITS,
        ),
        None,
    )?;
    m.wire_assign(
        "qmin",
        Expr::raw(
            format!(
                "(ctl3_q[{signed_bit}] && !ctl3_q[{relu_bit}]) ? -({PROD_BITS}'d1 << (bits3 - 4'd1)) : {PROD_BITS}'d0"
            ),
            PROD_BITS,
        ),
        None,
    )?;
    m.wire_assign(
        "clamped",
        Expr::raw(
            "($signed(shifted_q) > $signed(qmax)) ? qmax[7:0] : ($signed(shifted_q) < $signed(qmin)) ? qmin[7:0] : shifted_q[7:0]",
            8,
        ),
        None,
    )?;
    m.reg("out_q", 8, None)?;
    m.reg("out_valid_q", 1, None)?;
    m.reg("out_tag_q", TAG_BITS, None)?;
    let mut s4 = Code::new();
    s4.if_else(
        "!rst_n",
        |c| {
            c.nb("out_valid_q", "1'b0");
        },
        |c| {
            c.nb("out_valid_q", format!("ctl3_q[{valid3_bit}]"));
        },
    );
    s4.nb("out_q", "clamped");
    s4.nb("out_tag_q", format!("ctl3_q[{}:{tag_lsb}]", TAG_BITS - 1));
    m.always_ff(&clk, s4)?;
    m.section("outputs");
    m.assign(&out_valid, Expr::raw("out_valid_q", 1))?;
    m.assign(&out_code, Expr::raw("out_q", 8))?;
    m.assign(&out_tag, Expr::raw("out_tag_q", TAG_BITS))?;
    Ok(m.finish())
}
