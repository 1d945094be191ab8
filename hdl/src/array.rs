//! `caq_array`: the R×C plane-serial compute array (docs/architecture.md, "Array"). Each cycle it
//! takes one plane-step — C activations and, for each of the R rows, C weight bits of one bit plane
//! — and accumulates, per row, the selected activations shifted by the plane's weight, negated for
//! a group's top (sign) plane. At the end of each local quantization region the region sum is
//! multiplied by the row's region multiplier and folded into the 48-bit total. No multiplier in
//! the array itself: a 1-bit weight selects or skips an activation. Arithmetic: docs/numerics.md.
//!
//! Pipelined for the board clock (every stage is one adder or one DSP multiply deep):
//! - tree stages 1..=T: per row, the balanced adder tree over the C selected lanes,
//!   [`TREE_LEVELS_PER_STAGE`] levels per registered stage (`r{r}_s{s}_*`, the root is `psum`).
//!   Its first level adds no lanes of its own: every pair of lanes is summed once for all rows
//!   (`pair{i}`), and a row's pair contributes 0, one activation or that sum as its two weight
//!   bits select (a 4:1 mux), which costs a LUT per bit instead of an AND per lane bit and an
//!   adder;
//! - term: `±(psum << shift)`, registered (`term{r}_q`);
//! - region: `accg` loads the term on a region's first step, adds it otherwise;
//! - fold 1: on a region's last step the region sum and its multiplier are registered (the DSP's
//!   input registers);
//! - fold 2: their product, registered (the DSP's product register);
//! - fold 3: `acct` loads the product on the item's first region, adds it otherwise; `acc_valid`
//!   pulses with the item's last region and `acc_t` holds the item's totals for that cycle.
//!
//! Steps may follow each other every cycle with no gap between regions or items: a region's sum is
//! captured by fold 1 one cycle after its last step, while the next region's first step loads
//! `accg`.

use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder, Sig};
use crate::error::Result;
use caq_spec::AccelConfig;

/// Region accumulator width (docs/numerics.md: 32 bits cannot overflow for K ≤ max_k).
pub const ACC_G_BITS: u32 = caq_spec::ACC_BITS;
/// Total accumulator width: the region multiplier is at most 2^8, so 2^8·2^31 plus a bias fits.
pub const ACC_T_BITS: u32 = caq_spec::TOTAL_ACC_BITS;
/// Region multiplier 1..=256 needs 9 unsigned bits.
pub const MULT_BITS: u32 = 9;
/// Plane weight shift: group shift plus plane index, at most 7.
pub const SHIFT_BITS: u32 = 3;
/// Adder-tree levels between two pipeline registers: three carry chains of at most 15 bits.
pub const TREE_LEVELS_PER_STAGE: u32 = 3;

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

    /// Adder-tree levels: ⌈log2 C⌉.
    pub fn tree_levels(&self) -> u32 {
        ceil_log2(self.cols)
    }

    /// Registered stages of the adder tree.
    pub fn tree_stages(&self) -> u32 {
        self.tree_levels().div_ceil(TREE_LEVELS_PER_STAGE).max(1)
    }

    /// Width of a row's lane sum: lane bits plus one bit per adder-tree level.
    pub fn psum_bits(&self) -> u32 {
        self.lane_bits + self.tree_levels()
    }

    /// Cycles from a step at the array's inputs to its item's `acc_valid` (when the step is the
    /// item's last): the tree stages, the term, the region accumulator and three fold stages.
    pub fn latency(&self) -> u32 {
        self.tree_stages() + 5
    }
}

fn ceil_log2(n: u32) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

/// Control bits carried beside the data through the array's stages.
const CTL_BITS: u32 = 6;
/// Their order in a `ctl` vector, most significant first:
/// valid, neg, region_first, region_last, item_first, item_last.
const CTL: &str = "valid, neg, region_first, region_last, item_first, item_last";

/// One tree level of row `r`: pairs of `(name, width)` summed into the next level, sign-extended
/// so that each addition is exact in two's complement.
fn tree_level(
    m: &mut ModuleBuilder,
    r: u32,
    level: u32,
    inputs: &[(String, u32)],
) -> Result<Vec<(String, u32)>> {
    let mut next = Vec::with_capacity(inputs.len().div_ceil(2));
    for (i, pair) in inputs.chunks(2).enumerate() {
        let w = pair[0].1 + 1;
        let name = format!("r{r}_l{level}_{i}");
        let text = match pair {
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
        m.wire_assign(&name, Expr::raw(text, w), None)?;
        next.push((name, w));
    }
    Ok(next)
}

/// Emits row `r`'s adder tree, registered every [`TREE_LEVELS_PER_STAGE`] levels; returns the
/// always-block code that registers the stage outputs and the root (registered, `psum{r}_q`).
fn row_tree(
    m: &mut ModuleBuilder,
    r: u32,
    shape: ArrayShape,
    bits: &Sig,
    act: &Sig,
    regs: &mut Code,
) -> Result<()> {
    let lw = shape.lane_bits;
    let pw = shape.psum_bits();
    // Level 1: each pair of lanes contributes 0, either activation or their sum (`pair{i}`,
    // shared by every row) as its two weight bits select: one 4:1 mux per bit, no adder.
    let mut level: Vec<(String, u32)> = Vec::with_capacity(shape.cols as usize / 2);
    for i in 0..shape.cols / 2 {
        let name = format!("r{r}_l1_{i}");
        let (b0, b1) = (r * shape.cols + 2 * i, r * shape.cols + 2 * i + 1);
        let lane = |c: u32| {
            format!(
                "{{{act}[{msb}], {act}[{msb}:{lsb}]}}",
                act = act.name(),
                msb = c * lw + lw - 1,
                lsb = c * lw
            )
        };
        let text = format!(
            "{bits}[{b1}] ? ({bits}[{b0}] ? pair{i} : {hi}) : ({bits}[{b0}] ? {lo} : {w}'d0)",
            bits = bits.name(),
            hi = lane(2 * i + 1),
            lo = lane(2 * i),
            w = lw + 1
        );
        m.wire_assign(&name, Expr::raw(text, lw + 1), None)?;
        level.push((name, lw + 1));
    }
    let levels = shape.tree_levels();
    let mut done = 1;
    for stage in 1..=shape.tree_stages() {
        // Stage 1 holds the mux level and the adder levels after it.
        let adders = if stage == 1 {
            TREE_LEVELS_PER_STAGE - 1
        } else {
            TREE_LEVELS_PER_STAGE
        };
        for _ in 0..adders {
            if done == levels {
                break;
            }
            done += 1;
            level = tree_level(m, r, done, &level)?;
        }
        let last = stage == shape.tree_stages();
        let mut registered = Vec::with_capacity(level.len());
        for (i, (name, w)) in level.iter().enumerate() {
            if last {
                // The root, sign-extended to the lane-sum width (equal unless C is not a power of 2).
                m.reg(&format!("psum{r}_q"), pw, None)?;
                let value = if *w == pw {
                    name.clone()
                } else {
                    format!("{{{{{}{{{name}[{}]}}}}, {name}}}", pw - w, w - 1)
                };
                regs.nb(format!("psum{r}_q"), value);
                registered.push((format!("psum{r}_q"), pw));
            } else {
                let q = format!("r{r}_s{stage}_{i}_q");
                m.reg(&q, *w, None)?;
                regs.nb(&q, name);
                registered.push((q, *w));
            }
        }
        level = registered;
    }
    Ok(())
}

/// The `caq_array` module for `cfg`.
pub fn array(cfg: &AccelConfig) -> Result<Module> {
    let shape = ArrayShape::of(cfg);
    let (rows, cols, lw) = (shape.rows, shape.cols, shape.lane_bits);
    let pw = shape.psum_bits();
    let ts = shape.tree_stages();
    let mut m = ModuleBuilder::new("caq_array")?;
    m.doc(&[
        "Plane-serial compute array: R rows x C lanes, one bit-plane step per cycle.",
        "Rows are output channels; lanes are K elements. See docs/architecture.md.",
    ]);
    m.doc_line(format!(
        "R = {rows} rows, C = {cols} lanes, {lw}-bit signed lanes (activation bits + 1), \
         {pw}-bit lane sums ({} adder-tree levels in {ts} registered stages); a step's item \
         totals leave {} cycles after it enters.",
        shape.tree_levels(),
        shape.latency()
    ));
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_doc(
        Dir::Input,
        "clear",
        1,
        "synchronous: drop the steps in flight (soft reset)",
    )?;
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
        "step_item_first",
        1,
        "the region is the item's first: load the total",
    )?;
    m.port_doc(
        Dir::Input,
        "step_item_last",
        1,
        "the region is the item's last: totals are final",
    )?;
    m.port_doc(
        Dir::Input,
        "step_mult",
        rows * MULT_BITS,
        "row r's region multiplier (1..256) at [r*9 +: 9], with the region's last step",
    )?;
    m.port_group("totals");
    let acc_valid = m.port_doc(
        Dir::Output,
        "acc_valid",
        1,
        "pulse: acc_t holds an item's final totals (this cycle only)",
    )?;
    let acc_t_port = m.port_doc(
        Dir::Output,
        "acc_t",
        rows * ACC_T_BITS,
        "row r's 48-bit total at [r*48 +: 48], signed",
    )?;

    m.section("pair sums: lanes 2i and 2i+1 added once, for every row's first level");
    for i in 0..cols / 2 {
        let lane = |c: u32| {
            format!(
                "{{step_act[{m}], step_act[{m}:{l}]}}",
                m = c * lw + lw - 1,
                l = c * lw
            )
        };
        m.wire_assign(
            &format!("pair{i}"),
            Expr::raw(format!("{} + {}", lane(2 * i), lane(2 * i + 1)), lw + 1),
            None,
        )?;
    }
    m.section("tree stages: lane-pair selection and adder tree, registered every few levels");
    let mut tree = Code::new();
    for r in 0..rows {
        row_tree(&mut m, r, shape, &bits, &act, &mut tree)?;
    }
    m.always_ff(&clk, tree)?;
    // The control bits, shift and multipliers travel beside the tree. Data registers run freely
    // (`side`); the control registers are reset (`reset`) and otherwise updated (`ctl`).
    let mut side = Code::new();
    let mut ctl = Code::new();
    let mut reset = Code::new();
    let mut prev_ctl = "{step_valid, step_neg, step_region_first, step_region_last, \
                        step_item_first, step_item_last}"
        .to_owned();
    let (mut prev_shift, mut prev_mult) = ("step_shift".to_owned(), "step_mult".to_owned());
    for s in 1..=ts {
        let (ctl_q, sh, mu) = (
            format!("ctl{s}_q"),
            format!("shift{s}_q"),
            format!("mult{s}_q"),
        );
        m.reg(&ctl_q, CTL_BITS, Some(CTL))?;
        m.reg(&sh, SHIFT_BITS, None)?;
        m.reg(&mu, rows * MULT_BITS, None)?;
        reset.nb(&ctl_q, format!("{CTL_BITS}'d0"));
        ctl.nb(&ctl_q, &prev_ctl);
        side.nb(&sh, &prev_shift);
        side.nb(&mu, &prev_mult);
        (prev_ctl, prev_shift, prev_mult) = (ctl_q, sh, mu);
    }

    m.section("term: +/-(psum << shift), registered");
    let tw = pw + 7 + 1; // shifted by up to 7, one more bit for the negation
    m.comment(&[&format!(
        "term = +/-(psum << shift): {pw} + 7 bits, plus one for the negation = {tw} bits."
    )]);
    let ctl_t = format!("ctl{ts}_q");
    for r in 0..rows {
        m.reg(&format!("term{r}_q"), tw, None)?;
        let shifted = format!(
            "($signed({{{{{ext}{{psum{r}_q[{msb}]}}}}, psum{r}_q}}) <<< shift{ts}_q)",
            ext = tw - pw,
            msb = pw - 1
        );
        side.nb(
            format!("term{r}_q"),
            format!("{ctl_t}[4] ? -{shifted} : {shifted}"),
        );
    }
    m.reg(
        "ctlt_q",
        CTL_BITS - 1,
        Some("valid, region_first, region_last, item_first, item_last"),
    )?;
    m.reg("multt_q", rows * MULT_BITS, None)?;
    reset.nb("ctlt_q", format!("{}'d0", CTL_BITS - 1));
    ctl.nb("ctlt_q", format!("{{{ctl_t}[5], {ctl_t}[3:0]}}"));
    side.nb("multt_q", format!("mult{ts}_q"));

    m.section("region accumulators");
    for r in 0..rows {
        m.reg(&format!("accg{r}_q"), ACC_G_BITS, None)?;
    }
    m.reg(
        "ctlg_q",
        3,
        Some("fold (valid & region_last), item_first, item_last"),
    )?;
    m.reg("multg_q", rows * MULT_BITS, None)?;
    reset.nb("ctlg_q", "3'd0");
    ctl.nb("ctlg_q", "{ctlt_q[4] & ctlt_q[2], ctlt_q[1], ctlt_q[0]}");
    side.nb("multg_q", "multt_q");
    side.if_("ctlt_q[4]", |c| {
        for r in 0..rows {
            let term = format!(
                "{{{{{}{{term{r}_q[{}]}}}}, term{r}_q}}",
                ACC_G_BITS - tw,
                tw - 1
            );
            c.nb(
                format!("accg{r}_q"),
                format!("ctlt_q[3] ? {term} : accg{r}_q + {term}"),
            );
        }
    });

    m.section("fold: region sum x multiplier (one DSP per row), into the 48-bit totals");
    let pb = ACC_G_BITS + MULT_BITS + 1;
    m.comment(&[&format!(
        "product = (unsigned 9-bit multiplier) x (signed 32-bit region sum): {pb} bits signed; \
         operands and product registered (the DSP's A/B and M registers)."
    )]);
    m.reg("ctlf1_q", 3, Some("fold, item_first, item_last"))?;
    m.reg("ctlf2_q", 3, Some("fold, item_first, item_last"))?;
    reset.nb("ctlf1_q", "3'd0");
    reset.nb("ctlf2_q", "3'd0");
    ctl.nb("ctlf1_q", "ctlg_q");
    ctl.nb("ctlf2_q", "ctlf1_q");
    for r in 0..rows {
        m.reg(&format!("fa{r}_q"), ACC_G_BITS, Some("region sum"))?;
        m.reg(&format!("fb{r}_q"), MULT_BITS, Some("its multiplier"))?;
        m.reg(&format!("prod{r}_q"), pb, None)?;
        m.reg(&format!("acct{r}_q"), ACC_T_BITS, None)?;
        side.nb(format!("fa{r}_q"), format!("accg{r}_q"));
        side.nb(
            format!("fb{r}_q"),
            format!(
                "multg_q[{}:{}]",
                r * MULT_BITS + MULT_BITS - 1,
                r * MULT_BITS
            ),
        );
        // Both operands extended to the product width, so the multiply is exact as written.
        side.nb(
            format!("prod{r}_q"),
            format!(
                "$signed({{{z}'d0, fb{r}_q}}) * $signed({{{{{e}{{fa{r}_q[{am}]}}}}, fa{r}_q}})",
                z = pb - MULT_BITS,
                e = pb - ACC_G_BITS,
                am = ACC_G_BITS - 1
            ),
        );
    }
    m.reg("acc_valid_q", 1, None)?;
    reset.nb("acc_valid_q", "1'b0");
    ctl.nb("acc_valid_q", "ctlf2_q[2] & ctlf2_q[0]");
    side.if_("ctlf2_q[2]", |c| {
        for r in 0..rows {
            let prod = format!(
                "{{{{{}{{prod{r}_q[{}]}}}}, prod{r}_q}}",
                ACC_T_BITS - pb,
                pb - 1
            );
            c.nb(
                format!("acct{r}_q"),
                format!("ctlf2_q[1] ? {prod} : acct{r}_q + {prod}"),
            );
        }
    });
    side.if_else(
        "!rst_n || clear",
        |c| {
            c.append(&reset);
        },
        |c| {
            c.append(&ctl);
        },
    );
    m.always_ff(&clk, side)?;

    m.section("outputs");
    let acc_t = (0..rows)
        .rev()
        .map(|r| format!("acct{r}_q"))
        .collect::<Vec<_>>()
        .join(", ");
    m.assign(
        &acc_t_port,
        Expr::raw(format!("{{{acc_t}}}"), rows * ACC_T_BITS),
    )?;
    m.assign(&acc_valid, Expr::raw("acc_valid_q", 1))?;
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
        assert_eq!(s.tree_stages(), 2);
        let m = array(&config("sim-small")).unwrap();
        assert!(m.text.contains("module caq_array"));
    }
}
