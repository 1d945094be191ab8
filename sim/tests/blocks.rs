//! Per-block benches: single generated modules of the layer engine built on their own (the shared
//! model cache, `caq_sim::rtl::ModelLib`) and driven port by port against their rule, without the
//! rest of the accelerator around them.
//!
//! - `caq_requant`: random totals, biases, multipliers, shifts, output widths, signedness and ReLU,
//!   one value per cycle, against `caq_model::requant` (docs/numerics.md), with most draws aimed at
//!   the rounding and saturation edges of narrow outputs;
//! - `caq_array` of sim-small and pynq-z2: random plane-steps back to back (signed lanes, random
//!   weight bits, shifts, sign planes, regions of 1..4 steps with random multipliers, items of 1..3
//!   regions, gaps), every item's R totals against the plane-serial rule of docs/numerics.md,
//!   `latency()` cycles after its last step;
//! - `caq_decode` of sim-small and pynq-z2: descriptors of random valid layers, most of them edited
//!   (one check's edit from the device suite, a random word, a random bit, a random field value)
//!   under random windows, each against `caq_spec::descriptor::check_fetched` and
//!   `CoreShape::schedule`: the error code, and for an accepted descriptor the schedule's values.
//!
//! Seeds are printed (`CAQ_SEED` replays one).

use std::collections::VecDeque;

use caq_model::requant::scale_round;
use caq_sim::rtl::{BuildOptions, ModelLib, ModelSource, RtlModel};
use caq_spec::AccelConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
#[path = "common/suite.rs"]
mod suite;

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

/// Drives input `name` with the low bits of `words` (32-bit words, least significant first),
/// through the narrow or the wide API as the port's width requires.
fn drive(m: &mut RtlModel, lib: &ModelLib, name: &str, words: &[u32]) {
    if let Ok(p) = lib.input(name) {
        let v = u64::from(words[0]) | u64::from(*words.get(1).unwrap_or(&0)) << 32;
        let v = if p.width() < 64 {
            v & ((1 << p.width()) - 1)
        } else {
            v
        };
        m.set(p, v).unwrap();
    } else {
        let p = lib.wide_input(name).unwrap();
        m.set_wide(p, &words[..p.words()]).unwrap();
    }
}

/// A little-endian bit vector packed into 32-bit words.
struct Bits(Vec<u32>);

impl Bits {
    fn new(bits: u32) -> Bits {
        Bits(vec![0; bits.div_ceil(32) as usize + 1])
    }
    /// Puts the low `width` bits of `v` at bit `at`.
    fn put(&mut self, at: u32, width: u32, v: i64) {
        for b in 0..width {
            if v >> b & 1 == 1 {
                let i = at + b;
                self.0[(i / 32) as usize] |= 1 << (i % 32);
            }
        }
    }
}

/// Reads `width` bits at `at` of the little-endian words as a signed value.
fn field(words: &[u32], at: u32, width: u32) -> i64 {
    let mut v: i64 = 0;
    for b in 0..width {
        let i = at + b;
        if words[(i / 32) as usize] >> (i % 32) & 1 == 1 {
            v |= 1 << b;
        }
    }
    (v << (64 - width)) >> (64 - width)
}

fn array_bench(config: &str) {
    let cfg =
        AccelConfig::load(format!("../configs/{config}.toml")).unwrap_or_else(|e| panic!("{e}"));
    let shape = caq_hdl::array::ArrayShape::of(&cfg);
    let (rows, cols, lw) = (shape.rows, shape.cols, shape.lane_bits);
    let module = caq_hdl::array::array(&cfg).unwrap();
    let src = ModelSource::module("caq_array", vec![("caq_array.v".into(), module.text)]);
    let lib = ModelLib::load(&src, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let seed = common::seed(&format!("array bench {config}"));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = lib.instantiate(seed);
    m.reset(2);
    let acc_valid = lib.output("acc_valid").unwrap();
    let acc_t = lib.wide_output("acc_t").unwrap();
    let latency = u64::from(shape.latency());
    // The golden model's state per row: the region sum and the item total.
    let (mut region, mut total) = (vec![0i64; rows as usize], vec![0i64; rows as usize]);
    let mut expected: VecDeque<(u64, Vec<i64>)> = VecDeque::new();
    let (mut items, mut checked) = (0, 0);
    let mut cycle = 0u64;
    let act_max = 1i64 << (lw - 1);
    while items < 300 {
        // One item: 1..3 regions of 1..4 steps, steps back to back, a gap now and then.
        let n_regions = rng.random_range(1..=3);
        for g in 0..n_regions {
            let n_steps = rng.random_range(1..=4);
            let mult: Vec<i64> = (0..rows).map(|_| rng.random_range(1..=256)).collect();
            for st in 0..n_steps {
                while rng.random_bool(0.1) {
                    drive(&mut m, lib, "step_valid", &[0]);
                    m.tick();
                    cycle += 1;
                    check(
                        &mut m,
                        acc_valid,
                        acc_t,
                        rows,
                        cycle,
                        &mut expected,
                        &mut checked,
                        seed,
                    );
                }
                let acts: Vec<i64> = (0..cols)
                    .map(|_| rng.random_range(-act_max..act_max))
                    .collect();
                let shift: u32 = rng.random_range(0..8);
                let neg = rng.random_bool(0.2);
                let mut act_bits = Bits::new(cols * lw);
                for (c, &a) in acts.iter().enumerate() {
                    act_bits.put(c as u32 * lw, lw, a);
                }
                let mut w_bits = Bits::new(rows * cols);
                let mut mult_bits = Bits::new(rows * 9);
                let (rfirst, rlast) = (st == 0, st + 1 == n_steps);
                let (ifirst, ilast) = (g == 0, g + 1 == n_regions);
                for r in 0..rows {
                    let mut sum = 0i64;
                    for (c, &a) in acts.iter().enumerate() {
                        if rng.random_bool(0.5) {
                            w_bits.put(r * cols + c as u32, 1, 1);
                            sum += a;
                        }
                    }
                    let term = if neg { -(sum << shift) } else { sum << shift };
                    let ri = r as usize;
                    region[ri] = if rfirst { term } else { region[ri] + term };
                    mult_bits.put(r * 9, 9, mult[ri]);
                    if rlast {
                        let folded = region[ri] * mult[ri];
                        total[ri] = if ifirst { folded } else { total[ri] + folded };
                    }
                }
                drive(&mut m, lib, "step_valid", &[1]);
                drive(&mut m, lib, "step_act", &act_bits.0);
                drive(&mut m, lib, "step_bits", &w_bits.0);
                drive(&mut m, lib, "step_shift", &[shift]);
                drive(&mut m, lib, "step_neg", &[u32::from(neg)]);
                drive(&mut m, lib, "step_region_first", &[u32::from(rfirst)]);
                drive(&mut m, lib, "step_region_last", &[u32::from(rlast)]);
                drive(&mut m, lib, "step_item_first", &[u32::from(ifirst)]);
                drive(&mut m, lib, "step_item_last", &[u32::from(ilast)]);
                drive(&mut m, lib, "step_mult", &mult_bits.0);
                if rlast && ilast {
                    expected.push_back((cycle + latency, total.clone()));
                    items += 1;
                }
                m.tick();
                cycle += 1;
                check(
                    &mut m,
                    acc_valid,
                    acc_t,
                    rows,
                    cycle,
                    &mut expected,
                    &mut checked,
                    seed,
                );
            }
        }
    }
    drive(&mut m, lib, "step_valid", &[0]);
    for _ in 0..=latency {
        m.tick();
        cycle += 1;
        check(
            &mut m,
            acc_valid,
            acc_t,
            rows,
            cycle,
            &mut expected,
            &mut checked,
            seed,
        );
    }
    assert!(
        expected.is_empty(),
        "seed {seed}: {} items never came out",
        expected.len()
    );
    assert_eq!(checked, 300, "seed {seed}");
}

/// After `cycle` ticks: an acc_valid must be the oldest expected item, due now (its last step
/// presented `latency()` ticks ago), with its totals.
#[allow(clippy::too_many_arguments)]
fn check(
    m: &mut RtlModel,
    acc_valid: caq_sim::rtl::OutPort,
    acc_t: caq_sim::rtl::WideOutPort,
    rows: u32,
    cycle: u64,
    expected: &mut VecDeque<(u64, Vec<i64>)>,
    checked: &mut usize,
    seed: u64,
) {
    if !m.is_high(acc_valid) {
        if let Some((due, _)) = expected.front() {
            assert!(
                *due + 1 > cycle,
                "seed {seed}: item due at cycle {due} missing at {cycle}"
            );
        }
        return;
    }
    let (due, want) = expected
        .pop_front()
        .unwrap_or_else(|| panic!("seed {seed}: acc_valid at cycle {cycle} with no item"));
    assert_eq!(due, cycle, "seed {seed}: latency");
    let words = m.get_wide(acc_t);
    let got: Vec<i64> = (0..rows).map(|r| field(&words, r * 48, 48)).collect();
    assert_eq!(got, want, "seed {seed}: item totals at cycle {cycle}");
    *checked += 1;
}

#[test]
fn array_of_sim_small_matches_the_plane_serial_rule() {
    array_bench("sim-small");
}

#[test]
fn array_of_pynq_z2_matches_the_plane_serial_rule() {
    array_bench("pynq-z2");
}

/// What `caq_decode` must report for a fetched descriptor: the code of the first failing check
/// (check_fetched, then the capacity rule), or 0 and the schedule's values by output port.
fn decode_expected(
    bytes: &[u8; 128],
    last: bool,
    caps: &caq_spec::Caps,
    shape: &caq_spec::CoreShape,
    window: caq_spec::descriptor::Window,
) -> (u8, Vec<(&'static str, u64)>) {
    // The descriptor's index and the list's length as the check sees them: only "is it the
    // last" reaches the module.
    let (index, count) = if last { (0, 1) } else { (0, 2) };
    let d = match caq_spec::descriptor::check_fetched(bytes, index, count, caps, window) {
        Ok(d) => d,
        Err((code, _)) => return (code as u8, Vec::new()),
    };
    let Ok(s) = shape.schedule(&d) else {
        return (caq_spec::regmap::ErrorCode::BadShape as u8, Vec::new());
    };
    let conv = d.op == caq_spec::Opcode::Conv2d;
    let hw = u64::from(d.input.h) * u64::from(d.input.w);
    // The words of the input read (a Conv2d's map from the word it starts in).
    let in_words = caq_sim::func::plan::steps(&d, &s, shape)
        .into_iter()
        .find_map(|st| match st {
            caq_sim::func::plan::Step::Read {
                load: caq_sim::func::plan::Load::Input,
                words,
                ..
            } => Some(words),
            _ => None,
        })
        .expect("an input read");
    let mut want = vec![
        ("s_wpr", s.wpr),
        ("s_nch", s.chunks),
        ("s_planes", s.planes),
        ("s_regions", s.regions),
        ("s_tiles", s.tiles),
        ("s_items", s.items),
        ("s_block", s.block),
        ("s_slots2", u64::from(s.slots == 2)),
        ("s_in_words", in_words),
        ("s_plane_stride", u64::from(d.output.c) * s.wpr * 8),
    ];
    if conv {
        want.push(("s_hw", hw));
    } else {
        want.push(("s_out_stride", s.out_stride));
    }
    (0, want)
}

fn decode_bench(config: &str) {
    use caq_spec::descriptor::DESCRIPTOR_FIELDS;
    use caq_spec::descriptor::Window;
    use caq_spec::{Caps, CoreShape, DeviceAddr};
    let cfg = suite::config(config);
    let shape = CoreShape::of(&cfg);
    let caps = Caps::from_config(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let module = caq_hdl::core::decode::decode(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let src = ModelSource::module("caq_decode", vec![("caq_decode.v".into(), module.text)]);
    let lib = ModelLib::load(&src, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let seed = common::seed(&format!("decode bench {config}"));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = lib.instantiate(seed);
    m.reset(2);
    let done = lib.output("done").unwrap();
    let code = lib.output("code").unwrap();
    // Valid layers placed in a functional device's memory give valid descriptors to edit.
    let mut dev = suite::func_device(&cfg);
    let edits = suite::field_edits();
    let aw = cfg.axi.addr_width;
    let top = 1u64.checked_shl(aw).unwrap_or(u64::MAX);
    let mem = (suite::MEM_BASE, suite::MEM_BASE + suite::MEM_BYTES);
    let mut codes = std::collections::BTreeMap::<u8, usize>::new();
    for case in 0..600 {
        let conv = rng.random_bool(0.5);
        let job = suite::random_layer(&mut rng, &cfg, conv);
        let (_, placed) = suite::place_all(&mut dev, std::slice::from_ref(&job));
        let p = &placed[0];
        let last = rng.random_bool(0.8);
        let mut desc = p.desc;
        desc.flags.last = last;
        let mut bytes = desc.encode();
        let what = match rng.random_range(0..10) {
            0..=2 => "unedited".to_owned(),
            3..=4 => {
                let (_, name, f) = &edits[rng.random_range(0..edits.len())];
                f(&mut bytes, p, mem.1);
                (*name).to_owned()
            }
            5 => {
                let w = rng.random_range(0..32);
                let v: u32 = rng.random();
                suite::put_word(&mut bytes, w, |_| v);
                format!("word {w} = {v:#x}")
            }
            6 => {
                let b = rng.random_range(0..1024);
                bytes[b / 8] ^= 1 << (b % 8);
                format!("bit {b} flipped")
            }
            _ => {
                let f = &DESCRIPTOR_FIELDS[rng.random_range(0..DESCRIPTOR_FIELDS.len())];
                let (width, shift) = (u32::from(f.width).min(32), u32::from(f.lsb));
                let v: u32 = if rng.random_bool(0.5) {
                    rng.random_range(0..=3)
                } else {
                    rng.random::<u32>() >> (32 - width.max(1))
                };
                suite::put_word(&mut bytes, f.word as usize, |w| {
                    let mask = if width == 32 {
                        u32::MAX
                    } else {
                        ((1u32 << width) - 1) << shift
                    };
                    w & !mask | (v << shift) & mask
                });
                format!("{} = {v}", f.name)
            }
        };
        // The window: the whole memory, a random sub-range, or bounds at or past 2^addr_width.
        let (base, limit) = match rng.random_range(0..4) {
            0 => (mem.0, mem.1),
            1 => {
                let a = rng.random_range(mem.0..mem.1);
                let b = rng.random_range(a..=mem.1);
                (a & !7, b)
            }
            2 => (0, top),
            _ => (
                rng.random_range(0..mem.0),
                u64::MAX - rng.random_range(0..1000),
            ),
        };
        let window = Window {
            base: DeviceAddr(base.min(top)),
            limit: DeviceAddr(limit.min(top)),
        };
        let (want_code, want) = decode_expected(&bytes, last, &caps, &shape, window);
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        drive(&mut m, lib, "desc", &words);
        drive(&mut m, lib, "desc_last", &[u32::from(last)]);
        let wbase = window.base.0;
        let wlim = window.limit.0;
        drive(
            &mut m,
            lib,
            "win_base",
            &[wbase as u32, (wbase >> 32) as u32],
        );
        drive(
            &mut m,
            lib,
            "win_limit",
            &[wlim as u32, (wlim >> 32) as u32],
        );
        drive(&mut m, lib, "go", &[1]);
        m.tick();
        drive(&mut m, lib, "go", &[0]);
        let mut cycles = 1;
        while m.get(done) == 0 {
            assert!(
                cycles < 64,
                "seed {seed} case {case}: no done within 64 cycles"
            );
            m.tick();
            cycles += 1;
        }
        let got = m.get(code) as u8;
        assert_eq!(
            got, want_code,
            "seed {seed} case {case} ({what}, last {last}, window {wbase:#x}..{wlim:#x}): \
             code {got}, check_fetched + schedule give {want_code}"
        );
        for (port, v) in want {
            let got = m.get(lib.output(port).unwrap());
            assert_eq!(got, v, "seed {seed} case {case} ({what}): {port}");
        }
        *codes.entry(got).or_default() += 1;
        m.tick();
    }
    println!("{config}: error codes seen {codes:?}");
    // Accepted descriptors and most checks' codes were exercised.
    assert!(
        codes.get(&0).copied().unwrap_or(0) > 100 && codes.len() >= 6,
        "seed {seed}: {codes:?}"
    );
}

#[test]
fn decode_of_sim_small_matches_check_fetched_and_the_schedule() {
    decode_bench("sim-small");
}

#[test]
fn decode_of_pynq_z2_matches_check_fetched_and_the_schedule() {
    decode_bench("pynq-z2");
}
