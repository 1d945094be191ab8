//! Per-block benches: single generated modules of the layer engine built on their own (the shared
//! model cache, `caq_sim::rtl::ModelLib`) and driven port by port against their rule, without the
//! rest of the accelerator around them.
//!
//! - `caq_requant`: random totals, biases, multipliers, shifts, output widths, signedness and ReLU,
//!   one value per cycle, against `caq_model::requant` (docs/numerics.md), with most draws aimed at
//!   the rounding and saturation edges of narrow outputs.
//!
//! Seeds are printed (`CAQ_SEED` replays one).

use std::collections::VecDeque;

use caq_model::requant::scale_round;
use caq_sim::rtl::{BuildOptions, ModelLib, ModelSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;

fn requant_lib() -> &'static ModelLib {
    let m = caq_hdl::requant::requant().unwrap();
    let src = ModelSource::module("caq_requant", vec![("caq_requant.v".into(), m.text)]);
    ModelLib::load(&src, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// One requantization case and what docs/numerics.md says it gives.
#[derive(Debug, Clone, Copy)]
struct Case {
    acc: i64,
    bias: i32,
    mult: i32,
    shift: u8,
    relu: bool,
    signed: bool,
    bits: u8,
}

impl Case {
    fn expected(&self) -> u8 {
        let total = i128::from(self.acc) + i128::from(self.bias);
        let mut y = scale_round(total, self.mult, self.shift);
        if self.relu {
            y = y.max(0);
        }
        let (lo, hi) = if self.signed {
            (-(1i128 << (self.bits - 1)), (1i128 << (self.bits - 1)) - 1)
        } else {
            (0, (1i128 << self.bits) - 1)
        };
        y.clamp(lo, hi) as i64 as u8
    }

    fn random(rng: &mut ChaCha8Rng) -> Case {
        let mult = if rng.random_bool(0.8) {
            rng.random_range(1 << 30..i32::MAX)
        } else {
            rng.random_range(0..=i32::MAX)
        };
        let shift: u8 = rng.random_range(0..64);
        // Mostly a total whose scaled value lands near the small output ranges (and exactly on
        // rounding ties); sometimes any 48-bit total.
        let acc: i64 = if rng.random_bool(0.75) && mult > 0 {
            let target: i64 = rng.random_range(-300..300);
            let exact = (i128::from(target) << shift) / i128::from(mult);
            let jitter: i64 = rng.random_range(-3..=3);
            (exact as i64).saturating_add(jitter)
        } else {
            rng.random_range(-(1i64 << 47)..(1i64 << 47))
        };
        let bias: i32 = if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(-1000..1000)
        };
        let acc = acc.clamp(-(1i64 << 47) + 1000, (1i64 << 47) - 1000);
        Case {
            acc,
            bias,
            mult,
            shift,
            relu: rng.random_bool(0.3),
            signed: rng.random_bool(0.5),
            bits: rng.random_range(2..=8),
        }
    }
}

#[test]
fn requant_matches_the_golden_rule_one_value_per_cycle() {
    let seed = common::seed("requant bench");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lib = requant_lib();
    let port = |n: &str| lib.input(n).unwrap();
    let (in_valid, in_acc, in_bias, in_mult, in_shift) = (
        port("in_valid"),
        port("in_acc"),
        port("in_bias"),
        port("in_mult"),
        port("in_shift"),
    );
    let (in_relu, in_signed, in_bits) =
        (port("in_relu"), port("in_out_signed"), port("in_out_bits"));
    let out_valid = lib.output("out_valid").unwrap();
    let out_code = lib.output("out_code").unwrap();
    let mut m = lib.instantiate(seed);
    m.reset(2);
    let mut pending = VecDeque::new();
    let (mut checked, mut gaps) = (0, 0);
    for cycle in 0..20_000u32 {
        // A gap now and then: the valid bits must follow the data.
        let valid = cycle < 19_900 && !rng.random_bool(0.1);
        let c = Case::random(&mut rng);
        m.set(in_valid, u64::from(valid)).unwrap();
        m.set_signed(in_acc, c.acc).unwrap();
        m.set_signed(in_bias, i64::from(c.bias)).unwrap();
        m.set(in_mult, c.mult as u64).unwrap();
        m.set(in_shift, u64::from(c.shift)).unwrap();
        m.set(in_relu, u64::from(c.relu)).unwrap();
        m.set(in_signed, u64::from(c.signed)).unwrap();
        m.set(in_bits, u64::from(c.bits)).unwrap();
        if valid {
            pending.push_back((cycle, c));
        } else {
            gaps += 1;
        }
        m.tick();
        if m.is_high(out_valid) {
            let (at, c) = pending.pop_front().unwrap_or_else(|| {
                panic!("seed {seed}: out_valid at cycle {cycle} with nothing in")
            });
            assert_eq!(
                cycle - at + 1,
                caq_hdl::requant::LATENCY,
                "seed {seed}: latency of the value in at cycle {at}"
            );
            assert_eq!(
                m.get(out_code) as u8,
                c.expected(),
                "seed {seed}: {c:?} (in at cycle {at})"
            );
            checked += 1;
        }
    }
    assert!(
        pending.is_empty(),
        "seed {seed}: {} values never came out",
        pending.len()
    );
    assert!(
        checked > 15_000 && gaps > 1_000,
        "{checked} checked, {gaps} gaps"
    );
}
