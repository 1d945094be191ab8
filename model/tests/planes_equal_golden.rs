//! The hardware's computation (plane-serial accumulation over the active plane groups, each
//! shifted by its group shift) equals the golden kernel on the effective codes, at every nesting
//! level, for random shapes that are not multiples of 8 or 64.

use caq_model::kernels::IntLayer;
use caq_model::nested;
use caq_model::planes::{self, PackedPlanes};
use caq_model::quant::{self, Rounding, WeightQuantConfig};
use caq_model::requant::{OutRange, Requant};
use ndarray::{Array2, ArrayView1};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn seed() -> u64 {
    let s = std::env::var("CAQ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("CAQ_SEED={s}");
    s
}

/// Random descending chain starting at 8, e.g. [8, 5, 3].
fn random_chain(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut chain = vec![8u8];
    while *chain.last().unwrap() > 2 && rng.random_bool(0.6) {
        let top = *chain.last().unwrap();
        chain.push(rng.random_range(2..top));
    }
    chain
}

#[test]
fn plane_serial_sum_of_active_groups_equals_golden_accumulator() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    for case in 0..60 {
        let o = rng.random_range(1..40);
        let k: usize = rng.random_range(1..200);
        let kernel_len: usize = [1, 3, 9][rng.random_range(0..3)];
        let k = k.div_ceil(kernel_len) * kernel_len;
        let w = Array2::from_shape_fn((o, k), |_| rng.random_range(-1.0..1.0f32));
        let rounding = if rng.random_bool(0.5) {
            Rounding::Adaptive
        } else {
            Rounding::Nearest
        };
        let full = quant::quantize_weights(
            w.view(),
            kernel_len,
            &WeightQuantConfig {
                bits: 8,
                rounding,
                group_size: None,
                clip_search: rng.random_bool(0.5),
            },
        )
        .unwrap();
        let chain = random_chain(&mut rng);
        let nw = nested::nest(&full, &chain, kernel_len, rounding).unwrap();
        let packed: Vec<PackedPlanes> = nw
            .groups
            .iter()
            .map(|g| planes::pack(g.codes.view(), g.bits).unwrap())
            .collect();
        let a: Vec<i32> = (0..k).map(|_| rng.random_range(-128..=255)).collect();
        for &level in &chain {
            let active = nw.active_groups(level).unwrap();
            let eff = nw.effective_codes(level).unwrap();
            let golden = IntLayer {
                codes: eff.view(),
                groups: None,
                bias: &vec![0; o],
                requant: &vec![Requant { mult: 1, shift: 0 }; o],
                out: OutRange {
                    qmin: i32::MIN,
                    qmax: i32::MAX,
                    relu: false,
                },
            };
            let mut hw = vec![0i64; o];
            for (g, p) in packed.iter().take(active).enumerate() {
                let part = planes::plane_serial_matvec(p, &a).unwrap();
                for (h, v) in hw.iter_mut().zip(part) {
                    *h += v << nw.groups[g].shift;
                }
            }
            for (oi, &h) in hw.iter().enumerate() {
                assert_eq!(
                    h,
                    golden.accumulate(oi, ArrayView1::from(&a)),
                    "case {case}: o={o} k={k} chain={chain:?} level={level} row {oi}"
                );
            }
            // Part-bit codes sit on the coarse grid; full-bit is the INT8 model exactly.
            let step = 1i32 << (8 - level);
            assert!(eff.iter().all(|&c| c % step == 0));
            if level == 8 {
                assert_eq!(eff, full.codes);
            }
        }
    }
}
