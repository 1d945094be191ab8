//! The host cost of an input-adaptive decision per inference: the gate network's features and
//! choice (`caq_model::adaptive::PreparedGate::choose_for`, as every backend runs it) and the cascade's confidence
//! (`caq_model::adaptive::margin`), at the shapes `caq gate --adaptive` builds for the MNIST
//! LeNet (pool1's output 16×12×12, a 2×2 grid: 64 features; `gate_network_conv1*` read conv1's
//! 16×24×24 output instead, as schema 2 bundles did, every row or every third) and the digits
//! MLP (the first dense layer's 128 codes),
//! on the bytes the driver reads from the device (`gate_network_*`) and on the i32 codes of the
//! golden model and the CPU backend (`*_codes`); `*_choice` is the choice alone from the features
//! (`*_choice_reference`: the reference integer arithmetic, `GateNet::choose`). The cost does not depend
//! on the weights' values, so they are seeded random. Run: `cargo bench -p caq-host --bench gate`; docs/gates.md sets the times beside an
//! inference's.

use caq_host::adaptive::network::{CODEBOOK, hidden_units, sampling};
use caq_model::adaptive::{GateNet, LayerCodes, PreparedGate, Sampling, margin};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

fn net(rng: &mut impl Rng, d: usize, s: Sampling) -> GateNet {
    let hidden = hidden_units(d);
    GateNet {
        grid: s.grid,
        row_step: s.row_step,
        hidden,
        w1: (0..hidden * d)
            .map(|_| rng.random_range(-1 << 20..1 << 20))
            .collect(),
        b1: (0..hidden)
            .map(|_| rng.random_range(-1 << 30..1 << 30))
            .collect(),
        shift: 10,
        w2: (0..CODEBOOK * hidden)
            .map(|_| rng.random_range(-1 << 20..1 << 20))
            .collect(),
        b2: vec![0; CODEBOOK],
        codebook: vec![vec![8]; CODEBOOK],
    }
}

fn benches(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut g = c.benchmark_group("adaptive_decision");
    // The LeNet's gate reads pool1 (16×12×12); its conv1 output (16×24×24) for comparison,
    // every row and every third.
    let lenet = [16, 12, 12];
    let conv1 = [16, 24, 24];
    for (name, shape, s) in [
        (
            "gate_network_lenet",
            lenet,
            sampling(lenet, None).expect("LeNet shape"),
        ),
        ("gate_network_conv1", conv1, Sampling::dense(2)),
        (
            "gate_network_conv1_third_rows",
            conv1,
            Sampling {
                grid: 2,
                row_step: 3,
            },
        ),
        (
            "gate_network_mlp",
            [128, 1, 1],
            sampling([128, 1, 1], None).expect("MLP shape"),
        ),
    ] {
        let n = PreparedGate::new(net(&mut rng, shape[0] * s.grid * s.grid, s));
        let codes: Vec<i32> = (0..shape.iter().product::<usize>())
            .map(|_| rng.random_range(0..256))
            .collect();
        // The first layer's output as the driver reads it from the device (its bytes), and as
        // the golden model and the CPU backend hold it (i32 codes).
        let held = [
            (
                "",
                LayerCodes::Bytes {
                    bytes: codes.iter().map(|&v| v as u8).collect(),
                    signed: false,
                },
            ),
            ("_codes", LayerCodes::Codes(codes)),
        ];
        for (form, codes) in &held {
            // The features alone: the part of the decision that reads the first layer's output.
            g.bench_function(format!("{name}{form}_features"), |b| {
                b.iter(|| black_box(black_box(codes).features(shape, s).expect("shape")))
            });
            // The choice alone, from the features: the prepared gate's f64 hidden layer and the
            // reference integer arithmetic it must equal.
            let f = codes.features(shape, s).expect("shape");
            if form.is_empty() {
                g.bench_function(format!("{name}_choice"), |b| {
                    b.iter(|| black_box(n.choose(black_box(&f))))
                });
                g.bench_function(format!("{name}_choice_reference"), |b| {
                    b.iter(|| black_box(n.net().choose(black_box(&f))))
                });
            }
            g.bench_function(format!("{name}{form}"), |b| {
                b.iter(|| black_box(n.choose_for(black_box(codes), shape).expect("shape")))
            });
        }
    }
    let logits: Vec<i32> = (0..10).map(|_| rng.random_range(-128..128)).collect();
    g.bench_function("cascade_margin", |b| {
        b.iter(|| black_box(margin(black_box(&logits))))
    });
    g.finish();
}

criterion_group! {
    name = gate;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(gate);
