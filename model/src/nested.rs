//! NestQuant integer nesting (Xie et al., TMC 2025; research notes §A1): one n-bit weight matrix
//! split into plane groups so that every lower level is a prefix of what is stored. Owns the chain of
//! rounded right shifts and the residuals between levels. Knows nothing of the packed bit layout
//! (`planes`) or of how scales are chosen (`quant`), beyond reusing the full-bit scales.
//!
//! Chain from the top. `h_n` is the full n-bit code. For each lower level b, with
//! `l = previous level − b`, `h_b = clamp(round(h_prev / 2^l))` into the signed b-bit range.
//! The shift *rounds* (to nearest, or with the SQuant flip pass in the high-bit domain); it does not
//! truncate. So the residual `r = h_prev − h_b·2^l` lies in `[−2^l, 2^l − 1]`, a signed (l+1)-bit
//! integer: NestQuant's "extra bit". A level's effective code, in full-bit units, is
//! `h_b · 2^(n−b)`. It uses the full-bit channel and group scales unchanged, so the real part-bit
//! weight is `scale · h_b · 2^(n−b)`.

use crate::error::{ModelError, Result};
use crate::quant::{
    QuantWeights, Rounding, WeightQuantConfig, check_bits, check_weights, choose_scales,
    code_range, quantize_with_scales, scale_at,
};
use crate::rounding::{adaptive_round_between, check_kernel_len};
use ndarray::{Array2, ArrayView2};

/// One stored part of a nested matrix: signed `bits`-bit codes contributing `codes << shift`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaneGroup {
    pub bits: u8,
    pub shift: u8,
    pub codes: Array2<i32>,
}

/// A nested weight matrix.
///
/// `levels` is strictly descending with `levels[0] = n` (e.g. `[8, 6, 4]`). `groups[0]` is the
/// high part of the lowest level (`bits = levels.last()`, `shift = n − levels.last()`).
/// `groups[i]` for i ≥ 1 is the residual between `levels[len−i]` and `levels[len−i−1]`, with
/// `bits = gap + 1` and `shift = n − levels[len−1−i]`. So running level `levels[j]` reads the first
/// `len − j` groups.
#[derive(Clone, Debug, PartialEq)]
pub struct NestedWeights {
    pub levels: Vec<u8>,
    pub groups: Vec<PlaneGroup>,
}

/// Nests the full-bit codes of `full` into `levels` (`levels[0] == full.bits`, strictly
/// descending, each in 2..=8). `rounding` chooses how each right shift rounds; `Adaptive` runs
/// the SQuant pass on `h_prev / 2^l` with candidates floor and ceil (so `kernel_len` must divide K).
pub fn nest(
    full: &QuantWeights,
    levels: &[u8],
    kernel_len: usize,
    rounding: Rounding,
) -> Result<NestedWeights> {
    full.check()?;
    check_levels(levels, full.bits)?;
    check_kernel_len(full.codes.ncols(), kernel_len)?;
    let n = full.bits;
    let mut h = full.codes.clone();
    let mut residuals = Vec::with_capacity(levels.len() - 1);
    for pair in levels.windows(2) {
        let (prev, b) = (pair[0], pair[1]);
        let l = prev - b;
        let high = shift_down(h.view(), l, b, kernel_len, rounding)?;
        residuals.push(PlaneGroup {
            bits: l + 1,
            shift: n - prev,
            codes: residual(h.view(), high.view(), prev, b)?,
        });
        h = high;
    }
    let lowest = levels[levels.len() - 1];
    let mut groups = vec![PlaneGroup {
        bits: lowest,
        shift: n - lowest,
        codes: h,
    }];
    groups.extend(residuals.into_iter().rev());
    Ok(NestedWeights {
        levels: levels.to_vec(),
        groups,
    })
}

impl NestedWeights {
    /// The full bit-width n (`levels[0]`; 0 for a value with no levels).
    pub fn full_bits(&self) -> u8 {
        self.levels.first().copied().unwrap_or(0)
    }

    /// How many plane groups level `level` reads: for `[8, 6, 4]`, 8 → 3, 6 → 2, 4 → 1.
    pub fn active_groups(&self, level: u8) -> Result<usize> {
        let idx = self
            .levels
            .iter()
            .position(|&l| l == level)
            .ok_or_else(|| {
                ModelError::arg(
                    "level",
                    format!(
                        "{level} bits is not one of the nested levels {:?}",
                        self.levels
                    ),
                )
            })?;
        Ok(self.levels.len() - idx)
    }

    /// Σ over the active groups of `codes << shift`: the level's codes in full-bit units.
    pub fn effective_codes(&self, level: u8) -> Result<Array2<i32>> {
        let active = self.active_groups(level)?;
        let Some(used) = self.groups.get(..active) else {
            return Err(ModelError::arg(
                "groups",
                format!(
                    "level {level} needs {active} plane groups but only {} are stored",
                    self.groups.len()
                ),
            ));
        };
        let dim = used[0].codes.dim();
        let mut acc = Array2::<i32>::zeros(dim);
        for (gi, g) in used.iter().enumerate() {
            if g.codes.dim() != dim {
                return Err(ModelError::Shape {
                    context: format!("plane group {gi}"),
                    expected: format!("{dim:?}"),
                    found: format!("{:?}", g.codes.dim()),
                });
            }
            let overflow = || {
                ModelError::arg(
                    "groups",
                    format!("plane group {gi} (shift {}) overflows an i32 code", g.shift),
                )
            };
            let factor = 1i32.checked_shl(u32::from(g.shift)).ok_or_else(overflow)?;
            for (a, &c) in acc.iter_mut().zip(g.codes.iter()) {
                *a = c
                    .checked_mul(factor)
                    .and_then(|v| a.checked_add(v))
                    .ok_or_else(overflow)?;
            }
        }
        Ok(acc)
    }

    /// Bits stored per weight over all groups (n + number of levels − 1).
    pub fn stored_bits_per_weight(&self) -> u32 {
        self.groups.iter().map(|g| u32::from(g.bits)).sum()
    }
}

/// Clip-ratio grid of the nesting-aware search: 1.00, 0.99, …, 0.25. It reaches lower than the
/// plain search because a 2-bit level on an 8-bit max|w| grid wants roughly 0.6.
const NEST_CLIP_STEPS: u16 = 75;

/// Quantizes `w` at `full_cfg.bits` with per-channel scales chosen for nesting, then nests it.
///
/// A part-bit level inherits the full-bit grid, and at 2 bits the max|w| grid wastes most of its
/// four levels. So each channel's scale is the max|w|-based scale (per group, as in
/// `quantize_weights`) times the clip ratio in 1.00, 0.99, …, 0.25 that minimises the summed squared
/// dequantization error over all levels (full and every part-bit level). The search evaluates
/// with round-to-nearest. The final codes use `full_cfg.rounding`, and the nesting uses
/// `rounding`. The ratio search replaces the plain clip search, so `full_cfg.clip_search` is not
/// consulted. A ratio of 1.0 reproduces `quantize_weights` without clipping, and a smaller ratio
/// must be strictly better, so the result is never worse than that under this objective.
pub fn quantize_for_nesting(
    w: ArrayView2<f32>,
    kernel_len: usize,
    full_cfg: &WeightQuantConfig,
    levels: &[u8],
    rounding: Rounding,
) -> Result<(QuantWeights, NestedWeights)> {
    check_weights(w, kernel_len, full_cfg.bits, full_cfg.group_size)?;
    check_levels(levels, full_cfg.bits)?;
    let (mut channel_scale, groups) = choose_scales(w, full_cfg.bits, full_cfg.group_size, false);
    for (r, row) in w.rows().into_iter().enumerate() {
        let vals = row.to_vec();
        let base: Vec<f32> = (0..vals.len())
            .map(|k| scale_at(&channel_scale, groups.as_ref(), r, k))
            .collect();
        let mut best = (1.0f32, nesting_error(&vals, &base, 1.0, levels));
        for i in 1..=NEST_CLIP_STEPS {
            let ratio = f32::from(100 - i) / 100.0;
            let e = nesting_error(&vals, &base, ratio, levels);
            if e < best.1 {
                best = (ratio, e);
            }
        }
        channel_scale[r] *= best.0;
    }
    let full = quantize_with_scales(
        w,
        kernel_len,
        full_cfg.bits,
        full_cfg.rounding,
        channel_scale,
        groups,
    )?;
    let nested = nest(&full, levels, kernel_len, rounding)?;
    Ok((full, nested))
}

/// The real weights `scale · effective code` of every level in `levels`, exactly as
/// `qmodel::quantize` stores them for these settings: `quantize_for_nesting` when `nest_clip`,
/// else `quantize_weights` then `nest`. Quantization-aware training uses this as its fake
/// quantizer, so what a training step sees at each level is what the integer model will run.
/// One array per level, in `levels` order.
pub fn fake_quantize(
    w: ArrayView2<f32>,
    kernel_len: usize,
    full_cfg: &WeightQuantConfig,
    levels: &[u8],
    nest_clip: bool,
) -> Result<Vec<Array2<f32>>> {
    let (full, nested) = if nest_clip {
        quantize_for_nesting(w, kernel_len, full_cfg, levels, full_cfg.rounding)?
    } else {
        let full = crate::quant::quantize_weights(w, kernel_len, full_cfg)?;
        let nested = nest(&full, levels, kernel_len, full_cfg.rounding)?;
        (full, nested)
    };
    levels
        .iter()
        .map(|&b| {
            let codes = nested.effective_codes(b)?;
            crate::quant::dequantize_codes(codes.view(), &full.channel_scale, full.groups.as_ref())
        })
        .collect()
}

/// Σ over elements and levels of (w − scale·effective code)², rounding to nearest throughout.
fn nesting_error(vals: &[f32], base: &[f32], ratio: f32, levels: &[u8]) -> f64 {
    let n = levels[0];
    let (lo, hi) = code_range(n);
    let mut total = 0.0;
    for (&v, &b) in vals.iter().zip(base) {
        let s = b * ratio;
        let mut h = ((v / s).round() as i32).clamp(lo, hi);
        let mut sq = |code: i32| {
            let d = f64::from(v) - f64::from(s) * f64::from(code);
            total += d * d;
        };
        sq(h);
        for pair in levels.windows(2) {
            let (blo, bhi) = code_range(pair[1]);
            h = round_shift(h, pair[0] - pair[1]).clamp(blo, bhi);
            sq(h << (n - pair[1]));
        }
    }
    total
}

/// `h / 2^l` rounded to nearest, half away from zero, in exact integer arithmetic.
fn round_shift(h: i32, l: u8) -> i32 {
    if l == 0 {
        return h;
    }
    let half = 1i32 << (l - 1);
    if h >= 0 {
        (h + half) >> l
    } else {
        -((-h + half) >> l)
    }
}

/// The next lower level's codes `clamp(round(h / 2^l))` in the signed `b`-bit range.
fn shift_down(
    h: ArrayView2<i32>,
    l: u8,
    b: u8,
    kernel_len: usize,
    rounding: Rounding,
) -> Result<Array2<i32>> {
    let (lo, hi) = code_range(b);
    match rounding {
        Rounding::Nearest => Ok(h.mapv(|v| round_shift(v, l).clamp(lo, hi))),
        Rounding::Adaptive => {
            let mask = (1i32 << l) - 1;
            let down = h.mapv(|v| (v >> l).clamp(lo, hi));
            let up = h.mapv(|v| ((v >> l) + i32::from(v & mask != 0)).clamp(lo, hi));
            // Exact: |h| < 2^8 and a division by a power of two.
            let x = h.mapv(|v| v as f32 / (1i32 << l) as f32);
            adaptive_round_between(x.view(), down.view(), up.view(), kernel_len)
        }
    }
}

/// `h − high·2^l`, checked to fit a signed (l+1)-bit integer; never wraps silently.
fn residual(h: ArrayView2<i32>, high: ArrayView2<i32>, prev: u8, b: u8) -> Result<Array2<i32>> {
    let l = prev - b;
    let (lo, hi) = code_range(l + 1);
    let r = &h - &(&high * (1i32 << l));
    if let Some(((row, col), v)) = r.indexed_iter().find(|(_, v)| !(lo..=hi).contains(*v)) {
        return Err(ModelError::arg(
            "levels",
            format!(
                "nesting {prev} → {b} bits: residual {v} at (row {row}, col {col}) does not fit \
                 a signed {}-bit integer [{lo}, {hi}]",
                l + 1
            ),
        ));
    }
    Ok(r)
}

/// Builds the nested matrix whose level `levels[j]` has the codes `codes[j]` (each in its own
/// level's units, `levels` strictly descending): the lowest level's codes are the first group and
/// each residual is `h_prev − h_b·2^l`, as [`nest`] stores them. Errors if a residual does not fit
/// its signed (l+1)-bit group (see [`nearest_nested`] for codes that always fit).
pub fn from_level_codes(levels: &[u8], codes: &[Array2<i32>]) -> Result<NestedWeights> {
    check_levels(levels, levels.first().copied().unwrap_or(0))?;
    if codes.len() != levels.len() {
        return Err(ModelError::arg(
            "codes",
            format!(
                "{} code matrices for {} levels {levels:?}",
                codes.len(),
                levels.len()
            ),
        ));
    }
    let n = levels[0];
    let mut residuals = Vec::with_capacity(levels.len() - 1);
    for (j, pair) in levels.windows(2).enumerate() {
        let (prev, b) = (pair[0], pair[1]);
        if codes[j].dim() != codes[j + 1].dim() {
            return Err(ModelError::Shape {
                context: format!("codes of level {prev}"),
                expected: format!("{:?}", codes[j + 1].dim()),
                found: format!("{:?}", codes[j].dim()),
            });
        }
        residuals.push(PlaneGroup {
            bits: prev - b + 1,
            shift: n - prev,
            codes: residual(codes[j].view(), codes[j + 1].view(), prev, b)?,
        });
    }
    let lowest = levels[levels.len() - 1];
    let mut groups = vec![PlaneGroup {
        bits: lowest,
        shift: n - lowest,
        codes: codes[levels.len() - 1].clone(),
    }];
    groups.extend(residuals.into_iter().rev());
    Ok(NestedWeights {
        levels: levels.to_vec(),
        groups,
    })
}

/// The `b`-bit codes nearest to `want` that nest on the level below: with `below` the codes of
/// the next lower level (`b − l` bits), each code is clamped into
/// `[below·2^l − 2^l, below·2^l + 2^l − 1]` (the residual's signed (l+1)-bit range) and into the
/// signed `b`-bit range. The interval is never empty, so any wanted level can be nested on any
/// lower one at the cost of at most one lower-level step.
pub fn nearest_nested(want: ArrayView2<i32>, below: ArrayView2<i32>, l: u8, b: u8) -> Array2<i32> {
    let (lo, hi) = code_range(b);
    let step = 1i32 << l;
    let mut out = want.to_owned();
    for (o, &h) in out.iter_mut().zip(below.iter()) {
        let base = h * step;
        *o = (*o).clamp((base - step).max(lo), (base + step - 1).min(hi));
    }
    out
}

/// The `b`-bit codes nearest to `want` on which the next higher level nests: with `above` its codes
/// (`b + l` bits), each code is clamped into `[⌊above / 2^l⌋, ⌊above / 2^l⌋ + 1]` (the codes c
/// that leave `above − c·2^l` in the residual's signed (l+1)-bit range `[−2^l, 2^l − 1]`) and into
/// the signed `b`-bit range. `⌊above / 2^l⌋` is always in that range, so the interval is never
/// empty: levels can be chosen from the top down, the higher ones kept exactly, at the cost of
/// at most one step of the level being chosen.
pub fn nearest_under(want: ArrayView2<i32>, above: ArrayView2<i32>, l: u8, b: u8) -> Array2<i32> {
    let (_, hi) = code_range(b);
    let mut out = want.to_owned();
    for (o, &h) in out.iter_mut().zip(above.iter()) {
        let floor = h >> l;
        *o = (*o).clamp(floor, (floor + 1).min(hi));
    }
    out
}

/// The plane groups a nested matrix of `levels` stores, as `(bits, shift)` in storage order (the
/// rule of [`NestedWeights`]): for `[8, 6, 4]`, `[(4, 4), (3, 2), (3, 0)]`. Errors unless `levels`
/// is non-empty, strictly descending and each in 2..=8.
pub fn group_layout(levels: &[u8]) -> Result<Vec<(u8, u8)>> {
    check_levels(levels, levels.first().copied().unwrap_or(0))?;
    let n = levels[0];
    let lowest = levels[levels.len() - 1];
    let mut out = vec![(lowest, n - lowest)];
    for pair in levels.windows(2).rev() {
        let (prev, b) = (pair[0], pair[1]);
        out.push((prev - b + 1, n - prev));
    }
    Ok(out)
}

fn check_levels(levels: &[u8], full_bits: u8) -> Result<()> {
    let Some(&top) = levels.first() else {
        return Err(ModelError::arg("levels", "no levels given"));
    };
    if top != full_bits {
        return Err(ModelError::arg(
            "levels",
            format!("levels[0] = {top} must equal the full bit-width {full_bits} ({levels:?})"),
        ));
    }
    for &b in levels {
        check_bits("levels", b)?;
    }
    if let Some(pair) = levels.windows(2).find(|p| p[0] <= p[1]) {
        return Err(ModelError::arg(
            "levels",
            format!(
                "levels must be strictly descending; {} is followed by {} in {levels:?}",
                pair[0], pair[1]
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_support::{gaussian, seeded_rng};
    use crate::quant::{dequantize_codes, quantize_weights};
    use rand::Rng;

    const CHAINS: &[&[u8]] = &[
        &[8],
        &[8, 6, 4],
        &[8, 4],
        &[8, 3],
        &[8, 2],
        &[8, 7, 6, 5, 4, 3, 2],
        &[6, 4, 2],
        &[4, 2],
        &[3, 2],
    ];

    fn full(w: &Array2<f32>, bits: u8, group: Option<usize>, rounding: Rounding) -> QuantWeights {
        let cfg = WeightQuantConfig {
            bits,
            rounding,
            group_size: group,
            clip_search: false,
        };
        quantize_weights(w.view(), 9, &cfg).unwrap()
    }

    fn level_error(w: &Array2<f32>, q: &QuantWeights, nested: &NestedWeights) -> f64 {
        nested
            .levels
            .iter()
            .map(|&b| {
                let codes = nested.effective_codes(b).unwrap();
                let deq =
                    dequantize_codes(codes.view(), &q.channel_scale, q.groups.as_ref()).unwrap();
                w.iter()
                    .zip(&deq)
                    .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                    .sum::<f64>()
            })
            .sum()
    }

    #[test]
    fn level_codes_rebuild_what_nest_stores_and_the_projections_always_fit() {
        let mut rng = seeded_rng("level_codes_rebuild");
        let w = gaussian(&mut rng, (6, 18), 0.3);
        let levels = [8u8, 6, 4, 3, 2];
        let q = full(&w, 8, None, Rounding::Nearest);
        let nested = nest(&q, &levels, 9, Rounding::Nearest).unwrap();
        let own: Vec<Array2<i32>> = levels
            .iter()
            .map(|&b| nested.effective_codes(b).unwrap().mapv(|c| c >> (8 - b)))
            .collect();
        assert_eq!(from_level_codes(&levels, &own).unwrap(), nested);
        // Any wanted codes, projected bottom-up, nest; where they already fit they are kept.
        let mut codes = own.clone();
        for j in (0..levels.len() - 1).rev() {
            let (lo, hi) = code_range(levels[j]);
            let want = own[j].mapv(|_| rng.random_range(lo..=hi));
            let l = levels[j] - levels[j + 1];
            codes[j] = nearest_nested(want.view(), codes[j + 1].view(), l, levels[j]);
            let again = nearest_nested(codes[j].view(), codes[j + 1].view(), l, levels[j]);
            assert_eq!(again, codes[j]);
        }
        let rebuilt = from_level_codes(&levels, &codes).unwrap();
        for (j, &b) in levels.iter().enumerate() {
            assert_eq!(
                rebuilt.effective_codes(b).unwrap(),
                codes[j].mapv(|c| c << (8 - b))
            );
        }
        // Projected top-down, the full-bit codes are kept exactly and every level nests.
        let mut down = own.clone();
        down[0] = own[0].mapv(|_| rng.random_range(-128..=127));
        for j in 1..levels.len() {
            let (lo, hi) = code_range(levels[j]);
            let want = own[j].mapv(|_| rng.random_range(lo..=hi));
            let l = levels[j - 1] - levels[j];
            down[j] = nearest_under(want.view(), down[j - 1].view(), l, levels[j]);
            let again = nearest_under(down[j].view(), down[j - 1].view(), l, levels[j]);
            assert_eq!(again, down[j]);
            // Both codes of the band are reached, not only the rounded one.
            let above = down[j - 1].mapv(|h| h >> l);
            assert!(down[j].iter().zip(&above).any(|(c, f)| c == f));
            assert!(down[j].iter().zip(&above).any(|(c, f)| c == &(f + 1)));
        }
        let rebuilt = from_level_codes(&levels, &down).unwrap();
        for (j, &b) in levels.iter().enumerate() {
            assert_eq!(
                rebuilt.effective_codes(b).unwrap(),
                down[j].mapv(|c| c << (8 - b))
            );
        }
        // Codes that do not nest are refused, naming the levels.
        let mut bad = own.clone();
        bad[0] = own[1].mapv(|c| (c * 4 + 100).clamp(-128, 127));
        bad[1] = own[1].mapv(|_| -32);
        assert!(
            from_level_codes(&levels, &bad)
                .unwrap_err()
                .to_string()
                .contains("8 → 6")
        );
        assert!(from_level_codes(&levels, &own[1..]).is_err());
    }

    #[test]
    fn group_layout_states_the_rule_and_refuses_bad_chains() {
        assert_eq!(group_layout(&[8, 6, 4]).unwrap(), [(4, 4), (3, 2), (3, 0)]);
        assert_eq!(group_layout(&[6]).unwrap(), [(6, 0)]);
        for bad in [&[][..], &[4, 8], &[8, 8], &[9], &[8, 1], &[0]] {
            assert!(group_layout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_chain_reconstructs_the_full_codes_exactly() {
        let mut rng = seeded_rng("every_chain_reconstructs_the_full_codes_exactly");
        // Wide enough that every code of every width occurs, including both extremes.
        let w = gaussian(&mut rng, (16, 144), 1.0);
        for &levels in CHAINS {
            for group in [None, Some(16), Some(50)] {
                for full_rounding in [Rounding::Nearest, Rounding::Adaptive] {
                    let q = full(&w, levels[0], group, full_rounding);
                    for rounding in [Rounding::Nearest, Rounding::Adaptive] {
                        let ctx =
                            format!("{levels:?} group {group:?} {full_rounding:?}/{rounding:?}");
                        let nested = nest(&q, levels, 9, rounding).unwrap();
                        assert_eq!(nested.effective_codes(levels[0]).unwrap(), q.codes, "{ctx}");
                        check_structure(&q, &nested, rounding, &ctx);
                    }
                }
            }
        }
    }

    /// Group bits/shifts, residual ranges, and every part-bit level being a rounded shift of the
    /// level above it.
    fn check_structure(q: &QuantWeights, nested: &NestedWeights, rounding: Rounding, ctx: &str) {
        let levels = &nested.levels;
        let n = levels[0];
        let len = levels.len();
        assert_eq!(nested.groups.len(), len, "{ctx}");
        let layout: Vec<(u8, u8)> = nested.groups.iter().map(|g| (g.bits, g.shift)).collect();
        assert_eq!(layout, group_layout(levels).unwrap(), "{ctx}");
        assert_eq!(nested.groups[0].bits, levels[len - 1], "{ctx}");
        assert_eq!(nested.groups[0].shift, n - levels[len - 1], "{ctx}");
        for i in 1..len {
            let g = &nested.groups[i];
            assert_eq!(g.bits, levels[len - 1 - i] - levels[len - i] + 1, "{ctx}");
            assert_eq!(g.shift, n - levels[len - 1 - i], "{ctx}");
        }
        for g in &nested.groups {
            let (lo, hi) = code_range(g.bits);
            assert!(
                g.codes.iter().all(|c| (lo..=hi).contains(c)),
                "{ctx}: group {g:?}"
            );
        }
        let stored: u32 = u32::from(n) + len as u32 - 1;
        assert_eq!(nested.stored_bits_per_weight(), stored, "{ctx}");
        let mut prev = q.codes.clone();
        for pair in levels.windows(2) {
            let step = 1i32 << (n - pair[1]);
            let eff = nested.effective_codes(pair[1]).unwrap();
            assert!(
                eff.iter().all(|c| c % step == 0),
                "{ctx}: level {} not a multiple of {step}",
                pair[1]
            );
            let (lo, hi) = code_range(pair[1]);
            let prev_step = 1i32 << (n - pair[0]);
            for (i, &e) in eff.indexed_iter() {
                let h = e / step;
                let exact = f64::from(prev[i] / prev_step) / f64::from(step / prev_step);
                let (f, c) = (
                    (exact.floor() as i32).clamp(lo, hi),
                    (exact.ceil() as i32).clamp(lo, hi),
                );
                assert!(
                    h == f || h == c,
                    "{ctx}: level {} code {h} not a neighbour of {exact}",
                    pair[1]
                );
                if rounding == Rounding::Nearest {
                    let nearest = (exact.round() as i32).clamp(lo, hi);
                    assert_eq!(h, nearest, "{ctx}: level {} of {exact}", pair[1]);
                }
            }
            prev = eff;
        }
    }

    #[test]
    fn groups_are_laid_out_low_level_first() {
        let q = QuantWeights {
            bits: 8,
            codes: Array2::from_shape_vec((1, 4), vec![127, -128, 8, -8]).unwrap(),
            channel_scale: vec![1.0],
            groups: None,
        };
        let nested = nest(&q, &[8, 6, 4], 1, Rounding::Nearest).unwrap();
        let shape: Vec<(u8, u8)> = nested.groups.iter().map(|g| (g.bits, g.shift)).collect();
        assert_eq!(shape, vec![(4, 4), (3, 2), (3, 0)]);
        assert_eq!(nested.stored_bits_per_weight(), 10);
        assert_eq!(nested.full_bits(), 8);
        assert_eq!(nested.active_groups(8).unwrap(), 3);
        assert_eq!(nested.active_groups(6).unwrap(), 2);
        assert_eq!(nested.active_groups(4).unwrap(), 1);
        assert!(nested.active_groups(5).is_err());
        assert!(nested.effective_codes(2).is_err());
        // 127 → 32 (6-bit, clamped to 31) → 8 (4-bit, clamped to 7)
        assert_eq!(
            nested.effective_codes(6).unwrap().row(0).to_vec(),
            vec![124, -128, 8, -8]
        );
        assert_eq!(
            nested.effective_codes(4).unwrap().row(0).to_vec(),
            vec![112, -128, 16, -16]
        );
    }

    #[test]
    fn top_edge_clamp_leaves_a_residual_that_fits() {
        let q = QuantWeights {
            bits: 8,
            codes: Array2::from_shape_vec((1, 2), vec![127, 120]).unwrap(),
            channel_scale: vec![1.0],
            groups: None,
        };
        for rounding in [Rounding::Nearest, Rounding::Adaptive] {
            let nested = nest(&q, &[8, 4], 1, rounding).unwrap();
            assert_eq!(nested.groups[0].codes.row(0).to_vec(), vec![7, 7]);
            assert_eq!(nested.groups[1].codes.row(0).to_vec(), vec![15, 8]);
            assert_eq!(nested.groups[1].bits, 5);
        }
    }

    #[test]
    fn shifts_round_half_away_from_zero() {
        assert_eq!(round_shift(8, 4), 1);
        assert_eq!(round_shift(-8, 4), -1);
        assert_eq!(round_shift(7, 4), 0);
        assert_eq!(round_shift(-7, 4), 0);
        assert_eq!(round_shift(-9, 4), -1);
        assert_eq!(round_shift(24, 4), 2);
        assert_eq!(round_shift(5, 0), 5);
    }

    #[test]
    fn adaptive_nesting_balances_channels_in_the_high_domain() {
        let mut rng = seeded_rng("adaptive_nesting_balances_channels_in_the_high_domain");
        // Codes within ±100 keep h = code / 16 clear of the 4-bit clamp, so no flip is blocked.
        let q = QuantWeights {
            bits: 8,
            codes: Array2::from_shape_simple_fn((8, 144), || rng.random_range(-100..=100)),
            channel_scale: vec![1.0; 8],
            groups: None,
        };
        let nested = nest(&q, &[8, 4], 9, Rounding::Adaptive).unwrap();
        let high = &nested.groups[0].codes;
        for r in 0..q.codes.nrows() {
            let e: f64 = q
                .codes
                .row(r)
                .iter()
                .zip(high.row(r))
                .map(|(&c, &h)| f64::from(h) - f64::from(c) / 16.0)
                .sum();
            assert!(e.abs() <= 0.5 + 1e-9, "row {r}: accumulated error {e}");
        }
    }

    #[test]
    fn nesting_aware_scales_lower_the_summed_level_error() {
        let mut rng = seeded_rng("nesting_aware_scales_lower_the_summed_level_error");
        let w = gaussian(&mut rng, (8, 288), 0.2);
        for (levels, group) in [
            (&[8u8, 4, 2][..], None),
            (&[8, 2][..], Some(32)),
            (&[8][..], None),
        ] {
            let cfg = WeightQuantConfig {
                bits: 8,
                rounding: Rounding::Nearest,
                group_size: group,
                clip_search: false,
            };
            let plain = quantize_weights(w.view(), 9, &cfg).unwrap();
            let plain_nested = nest(&plain, levels, 9, Rounding::Nearest).unwrap();
            let (aware, aware_nested) =
                quantize_for_nesting(w.view(), 9, &cfg, levels, Rounding::Nearest).unwrap();
            assert_eq!(aware_nested.effective_codes(8).unwrap(), aware.codes);
            let e_plain = level_error(&w, &plain, &plain_nested);
            let e_aware = level_error(&w, &aware, &aware_nested);
            eprintln!("{levels:?} group {group:?}: plain {e_plain}, nesting-aware {e_aware}");
            assert!(
                e_aware <= e_plain * (1.0 + 1e-6),
                "{levels:?}: {e_aware} > {e_plain}"
            );
            // Per-channel max|w| wastes the 2-bit grid; small groups already fit it (about 5 %).
            if levels.contains(&2) && group.is_none() {
                assert!(
                    e_aware < 0.8 * e_plain,
                    "{levels:?}: {e_aware} vs {e_plain}"
                );
            }
        }
    }

    #[test]
    fn bad_levels_are_errors() {
        let w = Array2::from_elem((2, 9), 0.5f32);
        let q = full(&w, 8, None, Rounding::Nearest);
        for levels in [
            &[][..],
            &[8, 8],
            &[6, 8],
            &[6, 4],
            &[8, 6, 6],
            &[8, 1],
            &[8, 4, 0],
        ] {
            let msg = nest(&q, levels, 9, Rounding::Nearest)
                .unwrap_err()
                .to_string();
            assert!(msg.contains("levels"), "{levels:?}: {msg}");
        }
        assert!(nest(&q, &[8, 4], 4, Rounding::Adaptive).is_err());
        let mut bad = q.clone();
        bad.codes[[0, 0]] = 200;
        assert!(nest(&bad, &[8, 4], 9, Rounding::Nearest).is_err());
        let cfg = WeightQuantConfig {
            bits: 8,
            rounding: Rounding::Nearest,
            group_size: None,
            clip_search: false,
        };
        assert!(quantize_for_nesting(w.view(), 9, &cfg, &[8, 8], Rounding::Nearest).is_err());
        assert!(quantize_for_nesting(w.view(), 2, &cfg, &[8, 4], Rounding::Nearest).is_err());
    }

    #[test]
    fn residual_that_does_not_fit_is_an_error() {
        let h = Array2::from_shape_vec((1, 2), vec![40, 3]).unwrap();
        let high = Array2::from_shape_vec((1, 2), vec![1, 0]).unwrap();
        let msg = residual(h.view(), high.view(), 8, 4)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("row 0, col 0") && msg.contains("24"), "{msg}");
    }

    #[test]
    fn inconsistent_hand_built_values_are_errors() {
        let nested = NestedWeights {
            levels: vec![8, 4],
            groups: vec![PlaneGroup {
                bits: 4,
                shift: 4,
                codes: Array2::zeros((1, 1)),
            }],
        };
        assert!(nested.effective_codes(8).is_err());
        let overflow = NestedWeights {
            levels: vec![8],
            groups: vec![PlaneGroup {
                bits: 8,
                shift: 40,
                codes: Array2::ones((1, 1)),
            }],
        };
        assert!(overflow.effective_codes(8).is_err());
    }
}
