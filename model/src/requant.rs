//! Fixed-point requantization: the one place where an accumulator becomes an activation code.
//! The rules are stated in `docs/numerics.md`; this file is their executable form, and the RTL's
//! requant stage must match it bit for bit.
//!
//! `y = clamp(relu?((acc * mult + 2^(shift-1)) >> shift), qmin, qmax)`: the product is exact
//! (48-bit accumulator times 31-bit multiplier fits 79 bits; computed in i128 here), rounding is
//! half towards +infinity (add half, then arithmetic shift right, which floors), and saturation is
//! to the output code range.

use caq_spec::RequantEntry;

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// The multiplier is normalised to [2^30, 2^31): 31 significant bits.
pub const MULT_BITS: u32 = 31;
/// Largest right shift the hardware implements.
pub const MAX_SHIFT: u8 = 63;

/// Per-output-channel requantization constants: real factor ≈ mult / 2^shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requant {
    pub mult: i32,
    pub shift: u8,
}

/// `(v * mult + 2^(shift-1)) >> shift` with an arithmetic (flooring) shift: round half up.
pub fn scale_round(v: i128, mult: i32, shift: u8) -> i128 {
    let p = v * mult as i128;
    if shift == 0 {
        p
    } else {
        (p + (1i128 << (shift - 1))) >> shift
    }
}

/// Normalise a positive real factor to (mult in [2^30, 2^31), shift).
fn normalise(real: f64) -> Option<(i64, i32)> {
    if !(real.is_finite() && real > 0.0) {
        return None;
    }
    let mut exp = real.log2().floor() as i32;
    // mult = round(real * 2^(30 - exp)) lies in [2^30, 2^31]; fold the 2^31 case back.
    let mut mult = (real * 2f64.powi(30 - exp)).round() as i64;
    if mult >= 1 << 31 {
        mult /= 2;
        exp += 1;
    }
    if mult < 1 << 30 {
        mult *= 2;
        exp -= 1;
    }
    Some((mult, 30 - exp))
}

impl Requant {
    /// The closest `mult / 2^shift` to `real` with a normalised multiplier. Factors too small for
    /// the shift range (< 2^-33) flush to a zero multiplier; factors ≥ 2^30 cannot be represented.
    pub fn from_real(real: f64) -> Result<Requant> {
        let Some((mult, shift)) = normalise(real) else {
            return Err(ModelError::arg(
                "requant factor",
                format!("{real} is not a positive finite number"),
            ));
        };
        if shift < 0 {
            return Err(ModelError::arg(
                "requant factor",
                format!("{real} is too large (must be < 2^30)"),
            ));
        }
        if shift > MAX_SHIFT as i32 {
            return Ok(Requant {
                mult: 0,
                shift: MAX_SHIFT,
            });
        }
        Ok(Requant {
            mult: mult as i32,
            shift: shift as u8,
        })
    }

    pub fn real(&self) -> f64 {
        self.mult as f64 / 2f64.powi(self.shift as i32)
    }

    /// Rescaled value before ReLU and saturation.
    pub fn apply(&self, acc: i64) -> i128 {
        scale_round(acc as i128, self.mult, self.shift)
    }

    /// The entry of the device's requantization table for these constants.
    pub fn entry(&self) -> RequantEntry {
        RequantEntry {
            multiplier: self.mult,
            shift: self.shift,
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.mult < 0 || self.shift > MAX_SHIFT {
            return Err(ModelError::arg(
                "requant",
                format!(
                    "mult {} shift {}: mult must be in [0, 2^31) and shift in 0..={MAX_SHIFT}",
                    self.mult, self.shift
                ),
            ));
        }
        Ok(())
    }
}

/// A layer's requantization table as the device reads it: one packed [`RequantEntry`] per output
/// channel (docs/descriptor.md).
pub fn table_bytes(requant: &[Requant]) -> Vec<u8> {
    requant.iter().flat_map(|r| r.entry().to_bytes()).collect()
}

/// The output side of a layer: optional ReLU, then saturation to the code range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutRange {
    pub qmin: i32,
    pub qmax: i32,
    pub relu: bool,
}

impl OutRange {
    pub fn finish(&self, v: i128) -> i32 {
        let v = if self.relu { v.max(0) } else { v };
        v.clamp(self.qmin as i128, self.qmax as i128) as i32
    }
}

/// Requantization of a residual add: both inputs share one shift so the sum is rounded once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRequant {
    pub mult_a: i32,
    pub mult_b: i32,
    pub shift: u8,
}

impl AddRequant {
    /// `y ≈ a * real_a + b * real_b` with one common shift chosen for the larger factor.
    pub fn from_real(real_a: f64, real_b: f64) -> Result<AddRequant> {
        let big = Requant::from_real(real_a.max(real_b))?;
        let small = real_a.min(real_b);
        if !(small.is_finite() && small > 0.0) {
            return Err(ModelError::arg(
                "add requant factor",
                format!("{small} is not a positive finite number"),
            ));
        }
        // Equal factors (an add whose inputs share a quantizer) get equal multipliers exactly.
        let m_small = if real_a == real_b {
            big.mult
        } else {
            (small * 2f64.powi(big.shift as i32)).round() as i32
        };
        let (mult_a, mult_b) = if real_a >= real_b {
            (big.mult, m_small)
        } else {
            (m_small, big.mult)
        };
        Ok(AddRequant {
            mult_a,
            mult_b,
            shift: big.shift,
        })
    }

    /// Both multipliers in [0, 2^31), the shift in 0..=MAX_SHIFT (the hardware's ranges).
    pub fn check(&self) -> Result<()> {
        if self.mult_a < 0 || self.mult_b < 0 || self.shift > MAX_SHIFT {
            return Err(ModelError::arg(
                "add requant",
                format!(
                    "mult_a {} mult_b {} shift {}: multipliers must be in [0, 2^31) and shift in \
                     0..={MAX_SHIFT}",
                    self.mult_a, self.mult_b, self.shift
                ),
            ));
        }
        Ok(())
    }

    pub fn apply(&self, a: i32, b: i32) -> i128 {
        let p = a as i128 * self.mult_a as i128 + b as i128 * self.mult_b as i128;
        if self.shift == 0 {
            p
        } else {
            (p + (1i128 << (self.shift - 1))) >> self.shift
        }
    }
}

/// The average-pool rule ([`crate::kernels::window_mean`]: `floor((2Σ + n) / (2n))`) as a layer
/// the device runs (docs/numerics.md, "Average pooling as a layer"): weight [`MeanAsLayer::WEIGHT`]
/// on every code of the window, bias [`MeanAsLayer::BIAS`], and a requantization by `1/(4n)`.
/// `(4Σ + 1) · mult / 2^shift` rounded half up is the mean rounded half up for every sum `Σ` of
/// `n` codes of at most 8 bits, signed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeanAsLayer {
    pub requant: Requant,
}

impl MeanAsLayer {
    /// The weight on every code of the window (the device's global pooling uses the same).
    pub const WEIGHT: i32 = caq_spec::descriptor::POOL_SUM_WEIGHT;
    /// The bias, in accumulator units.
    pub const BIAS: i32 = caq_spec::descriptor::POOL_SUM_BIAS;
    /// The largest window: the multiplier's error times the largest `4Σ + 1` stays below the
    /// `1/(4n)` the rule needs up to 2^21 codes; 2^20 keeps a factor of two.
    pub const MAX_AREA: usize = 1 << 20;

    /// The layer for windows of `area` codes; `None` for an empty window or one above
    /// [`MeanAsLayer::MAX_AREA`].
    pub fn of(area: usize) -> Option<MeanAsLayer> {
        if area == 0 || area > Self::MAX_AREA {
            return None;
        }
        let requant = Requant::from_real(1.0 / (Self::WEIGHT as f64 * area as f64)).ok()?;
        (requant.mult > 0).then_some(MeanAsLayer { requant })
    }

    /// The layer's output for a window whose codes sum to `sum`, before saturation (which the
    /// mean of in-range codes never reaches).
    pub fn apply(&self, sum: i64) -> i128 {
        self.requant
            .apply(sum * i64::from(Self::WEIGHT) + i64::from(Self::BIAS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sum of n codes of at most 8 bits (signed −128·n ..= unsigned 255·n), for every window
    /// of up to 160 codes (DS-CNN's 25·5 among them); then larger windows up to the bound at their
    /// extreme sums and at every exact half near them, where the rule's rounding decides.
    #[test]
    fn mean_as_a_layer_is_the_average_pool_rule() {
        use crate::kernels::window_mean;
        for n in 1..=160i64 {
            let m = MeanAsLayer::of(n as usize).expect("small windows");
            for sum in -128 * n..=255 * n {
                assert_eq!(
                    m.apply(sum),
                    i128::from(window_mean(sum, n)),
                    "n {n} sum {sum}"
                );
            }
        }
        let mut areas: Vec<i64> = (0..=20).map(|k| 1i64 << k).collect();
        areas.extend([3 * 64, 7 * 7, 1000, 16_383, 16_385, 99_999, (1 << 20) - 1]);
        for n in areas {
            let m = MeanAsLayer::of(n as usize).expect("within the bound");
            // Sums whose mean is an exact half (2Σ + n ≡ 0 mod 2n when n is even, the halves
            // k + 1/2 = Σ/n), one below and one above, at both ends of the range.
            let halves = |k: i64| {
                [
                    (2 * k + 1) * n / 2,
                    (2 * k + 1) * n / 2 - 1,
                    (2 * k + 1) * n / 2 + 1,
                ]
            };
            for k in (-128..-120).chain(-3..3).chain(248..255) {
                for sum in halves(k) {
                    if (-128 * n..=255 * n).contains(&sum) {
                        assert_eq!(
                            m.apply(sum),
                            i128::from(window_mean(sum, n)),
                            "n {n} sum {sum}"
                        );
                    }
                }
            }
            for sum in [-128 * n, 255 * n, 0, -1, 1] {
                assert_eq!(
                    m.apply(sum),
                    i128::from(window_mean(sum, n)),
                    "n {n} sum {sum}"
                );
            }
        }
        assert!(MeanAsLayer::of(0).is_none());
        assert!(MeanAsLayer::of(MeanAsLayer::MAX_AREA + 1).is_none());
    }

    #[test]
    fn factors_just_below_a_power_of_two_normalise() {
        // (1 − 2^-53)·2^k rounds to a multiplier of exactly 2^31, which must fold back to 2^30
        // with one less shift: as an i32, 2^31 would be negative.
        for k in -30..=29 {
            for below in [f64::EPSILON / 2.0, 1e-12, 2f64.powi(-32)] {
                let real = 2f64.powi(k) * (1.0 - below);
                let r = Requant::from_real(real).unwrap();
                assert!(
                    (1 << 30..1i64 << 31).contains(&(r.mult as i64)),
                    "2^{k}·(1 − {below:e}): {r:?}"
                );
                assert!(
                    ((r.real() - real) / real).abs() < 1e-9,
                    "2^{k}·(1 − {below:e}): {r:?}"
                );
            }
        }
    }

    #[test]
    fn from_real_normalises_the_multiplier() {
        for real in [1e-9, 3.3e-5, 0.0123, 0.5, 0.75, 1.0, 1.9999, 7.25, 1000.0] {
            let r = Requant::from_real(real).unwrap();
            assert!(
                (1 << 30..1i64 << 31).contains(&(r.mult as i64)),
                "{real}: {r:?}"
            );
            assert!(((r.real() - real) / real).abs() < 1e-9, "{real}: {r:?}");
        }
    }

    #[test]
    fn the_table_holds_one_device_entry_per_channel_in_order() {
        let rq = [
            Requant::from_real(0.0123).unwrap(),
            Requant { mult: 0, shift: 63 },
        ];
        let bytes = table_bytes(&rq);
        assert_eq!(bytes.len(), 16);
        for (r, e) in rq.iter().zip(bytes.chunks_exact(8)) {
            let e = RequantEntry::from_bytes(e.try_into().unwrap());
            assert_eq!((e.multiplier, e.shift), (r.mult, r.shift));
        }
    }

    #[test]
    fn rounding_is_half_up_including_negative_halves() {
        let half = Requant {
            mult: 1 << 30,
            shift: 31,
        }; // x 0.5
        assert_eq!(half.apply(3), 2); // 1.5 -> 2
        assert_eq!(half.apply(1), 1); // 0.5 -> 1
        assert_eq!(half.apply(-1), 0); // -0.5 -> 0 (towards +inf)
        assert_eq!(half.apply(-3), -1); // -1.5 -> -1
        assert_eq!(half.apply(-5), -2); // -2.5 -> -2
        assert_eq!(half.apply(4), 2);
    }

    #[test]
    fn saturation_and_relu_bounds() {
        let o = OutRange {
            qmin: -128,
            qmax: 127,
            relu: false,
        };
        assert_eq!(o.finish(1000), 127);
        assert_eq!(o.finish(-1000), -128);
        assert_eq!(o.finish(-5), -5);
        let r = OutRange {
            qmin: 0,
            qmax: 255,
            relu: true,
        };
        assert_eq!(r.finish(-5), 0);
        assert_eq!(r.finish(300), 255);
    }

    #[test]
    fn extreme_accumulator_does_not_overflow() {
        // Largest 48-bit accumulator times the largest multiplier.
        let r = Requant {
            mult: i32::MAX,
            shift: 0,
        };
        let acc = (1i64 << 47) - 1;
        assert_eq!(r.apply(acc), acc as i128 * i32::MAX as i128);
        assert_eq!(r.apply(-acc - 1), (-acc - 1) as i128 * i32::MAX as i128);
    }

    #[test]
    fn bad_factors_are_rejected() {
        assert!(Requant::from_real(0.0).is_err());
        assert!(Requant::from_real(-1.0).is_err());
        assert!(Requant::from_real(f64::NAN).is_err());
        assert!(Requant::from_real(2f64.powi(31)).is_err());
        assert_eq!(Requant::from_real(1e-30).unwrap().mult, 0);
    }

    #[test]
    fn add_requant_rounds_the_sum_once() {
        let r = AddRequant::from_real(0.5, 0.25).unwrap();
        // 0.5*3 + 0.25*2 = 2.0 exactly; 0.5*1 + 0.25*1 = 0.75 -> 1
        assert_eq!(r.apply(3, 2), 2);
        assert_eq!(r.apply(1, 1), 1);
        assert_eq!(r.apply(-1, 0), 0); // -0.5 -> 0
    }
}
