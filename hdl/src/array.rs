//! `caq_array`: the R×C plane-serial compute array (docs/architecture.md, "Array"). Each cycle it
//! takes one plane-step — C activations and, for each of the R rows, C weight bits of one bit plane
//! — and accumulates, per row, the selected activations shifted by the plane's weight, negated for
//! a group's top (sign) plane. At the end of each local quantization region the region sum is
//! multiplied by the row's region multiplier and folded into the 48-bit total. No multiplier in
//! the array itself: a 1-bit weight selects or skips an activation. Arithmetic: docs/numerics.md.
//!
//! Pipeline (a step entering at cycle t):
//! - t+1: `psum_q` — per row, the balanced adder tree over the C selected lanes, registered;
//! - t+2: `accg_q` — region accumulator, `±(psum << shift)` added (or loaded on a region's first step);
//! - t+3: `acct_q` — on a region's last step, `mult · accg` added (or loaded on the tile's first
//!   region); `acc_valid` pulses with the tile's last region and `acc_t` then holds the totals.
//!
//! A region's fold (t+3) reads `accg_q` in the same cycle in which the next region's first step
//! (one cycle later at t+2) overwrites it, so regions may follow each other back to back.

use crate::emit::{Code, Dir, Module, ModuleBuilder, Sig};
use crate::error::Result;
use caq_spec::AccelConfig;

/// Region accumulator width (docs/numerics.md: 32 bits cannot overflow for K ≤ max_k).
pub const ACC_G_BITS: u32 = 32;
/// Total accumulator width: the region multiplier is at most 2^8, so 2^8·2^31 plus a bias fits.
pub const ACC_T_BITS: u32 = 48;
/// Region multiplier 1..=256 needs 9 unsigned bits.
pub const MULT_BITS: u32 = 9;
/// Plane weight shift: group shift plus plane index, at most 7.
pub const SHIFT_BITS: u32 = 3;

/// Shape of the array, derived from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayShape {
    pub rows: u32,
    pub cols: u32,
    /// Lane width: activation bits + 1, so an unsigned code fits as a signed number.
    pub lane_bits: u32,
}

impl ArrayShape {
    pub fn of(cfg: &AccelConfig) -> ArrayShape {
        ArrayShape {
            rows: cfg.array.rows,
            cols: cfg.array.cols,
            lane_bits: cfg.array.act_bits + 1,
        }
    }

    /// Width of a row's lane sum: lane bits plus one bit per adder-tree level.
    pub fn psum_bits(&self) -> u32 {
        self.lane_bits + self.cols.next_power_of_two().trailing_zeros()
    }
}

fn ceil_log2(n: u32) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

/// Emits the balanced adder tree of one row; returns the root signal (signed, `psum_bits` wide
/// once sign-extended by the caller).
fn row_tree(
    m: &mut ModuleBuilder,
    r: u32,
    shape: ArrayShape,
    bits: &Sig,
    act: &Sig,
) -> Result<(String, u32)> {
    let lw = shape.lane_bits;
    // Level 0: each lane contributes its activation when its weight bit is 1.
    let mut level: Vec<(String, u32)> = Vec::with_capacity(shape.cols as usize);
    for c in 0..shape.cols {
        let name = format!("r{r}_sel{c}");
        let bit = r * shape.cols + c;
        let text = format!(
            "{bits}[{bit}] ? {act}[{msb}:{lsb}] : {lw}'d0",
            bits = bits.name(),
            act = act.name(),
            msb = c * lw + lw - 1,
            lsb = c * lw
        );
        m.wire_assign(&name, crate::emit::Expr::raw(text, lw), None)?;
        level.push((name, lw));
    }
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for (i, pair) in level.chunks(2).enumerate() {
            let w = pair[0].1 + 1;
            let name = format!("r{r}_t{depth}_{i}");
            let text = match pair {
                // Both operands sign-extended to the sum's width: the addition is then exact in
                // two's complement without relying on Verilog's signedness rules.
                [a, b] => format!(
                    "{{{a}[{am}], {a}}} + {{{b}[{bm}], {b}}}",
                    a = a.0,
                    am = a.1 - 1,
                    b = b.0,
                    bm = b.1 - 1
                ),
                [a] => format!("{{{a}[{msb}], {a}}}", a = a.0, msb = a.1 - 1),
                _ => unreachable!("chunks(2) yields one or two"),
            };
            m.wire_assign(&name, crate::emit::Expr::raw(text, w), None)?;
            next.push((name, w));
        }
        level = next;
    }
    Ok(level.pop().expect("cols >= 1"))
}

/// The `caq_array` module for `cfg`.
pub fn array(cfg: &AccelConfig) -> Result<Module> {
    let shape = ArrayShape::of(cfg);
    let (rows, cols, lw) = (shape.rows, shape.cols, shape.lane_bits);
    let pw = shape.psum_bits();
    let mut m = ModuleBuilder::new("caq_array")?;
    m.doc(&[
        "Plane-serial compute array: R rows x C lanes, one bit-plane step per cycle.",
        "Rows are output channels; lanes are K elements. See docs/architecture.md.",
    ]);
    m.doc_line(format!(
        "R = {rows} rows, C = {cols} lanes, {lw}-bit signed lanes (activation bits + 1), \
         {pw}-bit lane sums (+{} adder-tree levels).",
        ceil_log2(cols)
    ));
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_group("one plane-step per cycle");
    m.port(Dir::Input, "step_valid", 1)?;
    let act = m.port_doc(
        Dir::Input,
        "step_act",
        cols * lw,
        "lane c at [c*LANE +: LANE], signed",
    )?;
    let bits = m.port_doc(
        Dir::Input,
        "step_bits",
        rows * cols,
        "row r, lane c at bit r*C + c: the plane's weight bits",
    )?;
    m.port_doc(Dir::Input, "step_shift", SHIFT_BITS, "plane weight 2^shift")?;
    m.port_doc(
        Dir::Input,
        "step_neg",
        1,
        "top plane of a group: weight -2^shift",
    )?;
    m.port_doc(
        Dir::Input,
        "step_region_first",
        1,
        "first step of a region: load, not add",
    )?;
    m.port_doc(
        Dir::Input,
        "step_region_last",
        1,
        "last step of a region: fold it afterwards",
    )?;
    m.port_doc(
        Dir::Input,
        "step_tile_first",
        1,
        "the region is the tile's first: load the total",
    )?;
    m.port_doc(
        Dir::Input,
        "step_tile_last",
        1,
        "the region is the tile's last: totals are final",
    )?;
    m.port_doc(
        Dir::Input,
        "step_mult",
        rows * MULT_BITS,
        "row r's region multiplier (1..256) at [r*9 +: 9], sampled with the region's last step",
    )?;
    m.port_group("totals");
    let acc_valid = m.port_doc(
        Dir::Output,
        "acc_valid",
        1,
        "pulse: acc_t holds the tile's final totals",
    )?;
    let acc_t_port = m.port_doc(
        Dir::Output,
        "acc_t",
        rows * ACC_T_BITS,
        "row r's 48-bit total at [r*48 +: 48], signed; held until the next tile's first fold",
    )?;

    m.section("stage 1: lane selection and adder tree, registered");
    let mut roots = Vec::with_capacity(rows as usize);
    for r in 0..rows {
        roots.push(row_tree(&mut m, r, shape, &bits, &act)?);
    }
    for r in 0..rows {
        m.reg(&format!("psum{r}_q"), pw, None)?;
    }
    m.reg(
        "ctl1_q",
        6,
        Some("valid, neg, region_first, region_last, tile_first, tile_last"),
    )?;
    m.reg("shift1_q", SHIFT_BITS, None)?;
    m.reg("mult1_q", rows * MULT_BITS, None)?;
    let mut s1 = Code::new();
    s1.if_else(
        "!rst_n",
        |c| {
            c.nb("ctl1_q", "6'd0");
        },
        |c| {
            c.nb(
                "ctl1_q",
                "{step_valid, step_neg, step_region_first, step_region_last, step_tile_first, step_tile_last}",
            );
        },
    );
    s1.nb("shift1_q", "step_shift");
    s1.nb("mult1_q", "step_mult");
    for (r, (root, w)) in roots.iter().enumerate() {
        // The root is `w` bits; sign-extend to the lane-sum width (equal unless C is not a power of 2).
        if *w == pw {
            s1.nb(format!("psum{r}_q"), root);
        } else {
            s1.nb(
                format!("psum{r}_q"),
                format!("{{{{{}{{{root}[{}]}}}}, {root}}}", pw - w, w - 1),
            );
        }
    }
    m.always_ff(&clk, s1)?;

    m.section("stage 2: region accumulators");
    let tw = pw + 7 + 1; // shifted by up to 7, one more bit for the negation
    m.comment(&[&format!(
        "term = +/-(psum << shift): {pw} + 7 bits, plus one for the negation = {tw} bits, sign-extended to {ACC_G_BITS}."
    )]);
    for r in 0..rows {
        m.reg(&format!("accg{r}_q"), ACC_G_BITS, None)?;
        let shifted = format!(
            "($signed({{{{{ext}{{psum{r}_q[{msb}]}}}}, psum{r}_q}}) <<< shift1_q)",
            ext = tw - pw,
            msb = pw - 1
        );
        m.wire_assign(
            &format!("term{r}"),
            crate::emit::Expr::raw(format!("ctl1_q[4] ? -{shifted} : {shifted}"), tw),
            None,
        )?;
    }
    m.reg(
        "ctl2_q",
        3,
        Some("fold (valid & region_last), tile_first, tile_last"),
    )?;
    m.reg("mult2_q", rows * MULT_BITS, None)?;
    let mut s2 = Code::new();
    s2.if_else(
        "!rst_n",
        |c| {
            c.nb("ctl2_q", "3'd0");
        },
        |c| {
            c.nb("ctl2_q", "{ctl1_q[5] & ctl1_q[2], ctl1_q[1], ctl1_q[0]}");
        },
    );
    s2.nb("mult2_q", "mult1_q");
    s2.if_("ctl1_q[5]", |c| {
        for r in 0..rows {
            let term = format!(
                "{{{{{}{{term{r}[{}]}}}}, term{r}}}",
                ACC_G_BITS - tw,
                tw - 1
            );
            c.nb(
                format!("accg{r}_q"),
                format!("ctl1_q[3] ? {term} : accg{r}_q + {term}"),
            );
        }
    });
    m.always_ff(&clk, s2)?;

    m.section("stage 3: fold regions into the totals (one DSP multiply per row)");
    let pb = ACC_G_BITS + MULT_BITS + 1;
    m.comment(&[&format!(
        "product = (unsigned 9-bit multiplier) x (signed 32-bit region sum): {pb} bits signed, sign-extended to {ACC_T_BITS}."
    )]);
    for r in 0..rows {
        m.reg(&format!("acct{r}_q"), ACC_T_BITS, None)?;
        m.wire_assign(
            &format!("fold{r}"),
            crate::emit::Expr::raw(
                // Both operands extended to the product width, so the multiply is exact as written.
                format!(
                    "$signed({{{z}'d0, mult2_q[{msb}:{lsb}]}}) * $signed({{{{{e}{{accg{r}_q[{am}]}}}}, accg{r}_q}})",
                    z = pb - MULT_BITS,
                    msb = r * MULT_BITS + MULT_BITS - 1,
                    lsb = r * MULT_BITS,
                    e = pb - ACC_G_BITS,
                    am = ACC_G_BITS - 1
                ),
                pb,
            ),
            None,
        )?;
    }
    m.reg("acc_valid_q", 1, None)?;
    let mut s3 = Code::new();
    s3.if_else(
        "!rst_n",
        |c| {
            c.nb("acc_valid_q", "1'b0");
        },
        |c| {
            c.nb("acc_valid_q", "ctl2_q[2] & ctl2_q[0]");
        },
    );
    s3.if_("ctl2_q[2]", |c| {
        for r in 0..rows {
            let fold = format!(
                "{{{{{}{{fold{r}[{}]}}}}, fold{r}}}",
                ACC_T_BITS - pb,
                pb - 1
            );
            c.nb(
                format!("acct{r}_q"),
                format!("ctl2_q[1] ? {fold} : acct{r}_q + {fold}"),
            );
        }
    });
    m.always_ff(&clk, s3)?;

    m.section("outputs");
    let acc_t = (0..rows)
        .rev()
        .map(|r| format!("acct{r}_q"))
        .collect::<Vec<_>>()
        .join(", ");
    m.assign(
        &acc_t_port,
        crate::emit::Expr::raw(format!("{{{acc_t}}}"), rows * ACC_T_BITS),
    )?;
    m.assign(&acc_valid, crate::emit::Expr::raw("acc_valid_q", 1))?;
    Ok(m.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> AccelConfig {
        let path = format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        AccelConfig::load(&path).unwrap()
    }

    #[test]
    fn array_widths_follow_the_config() {
        let s = ArrayShape::of(&config("pynq-z2"));
        assert_eq!((s.rows, s.cols, s.lane_bits), (16, 64, 9));
        assert_eq!(s.psum_bits(), 15);
        let m = array(&config("sim-small")).unwrap();
        assert!(m.text.contains("module caq_array"));
    }
}
