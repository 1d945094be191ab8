//! Images per second of the MNIST CNN (the LeNet graph of `caq_model::arch`) on the CPU: the golden
//! executor against `CpuModel` with the automatic choice (table look-up at ≤ 4 bits), the table
//! kernel everywhere, and the plain i8 GEMM, at uniform 8 bits, at [3, 2, 2, 8] (the lowest gate
//! the gate builder picks for a low battery) and at uniform 2 bits; one image at a time and
//! batches of 64.
//!
//! The weights are drawn from a seeded RNG and quantized nested 8 ⊃ 4 ⊃ 3 ⊃ 2: no kernel's speed
//! depends on the weight or pixel values (no branch or skip on a code), so a trained model runs
//! at the same rate. Results and commands: docs/cpu.md.

use caq_cpu::{CpuModel, Engine};
use caq_model::arch::{Arch, graph_for};
use caq_model::data::Dataset;
use caq_model::graph::{FloatModel, FloatParams};
use caq_model::qmodel::{QModel, QuantizeConfig, quantize};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

const SHAPE: [usize; 3] = [1, 28, 28];
const BATCH: usize = 64;

fn lenet(rng: &mut ChaCha8Rng) -> (QModel, Dataset) {
    let graph = graph_for(Arch::LeNet, SHAPE, 10);
    let params = graph
        .nodes
        .iter()
        .map(|n| {
            n.op.weight_matrix_dims().map(|(o, k, _)| {
                let r = 1.0 / (k as f32).sqrt();
                FloatParams {
                    weight: Array2::from_shape_fn((o, k), |_| rng.random_range(-r..r)),
                    bias: Array1::from_shape_fn(o, |_| rng.random_range(-0.1..0.1f32)),
                }
            })
        })
        .collect();
    let len: usize = SHAPE.iter().product();
    let images = Dataset {
        name: "random".into(),
        shape: SHAPE,
        pixels: (0..BATCH * len)
            .map(|_| rng.random_range(0..=255u8))
            .collect(),
        labels: vec![0; BATCH],
        max_value: 255,
        classes: 10,
    };
    let cfg = QuantizeConfig {
        calib_images: 16,
        ..QuantizeConfig::nested(&[8, 4, 3, 2])
    };
    let model = FloatModel { graph, params };
    (quantize(&model, &images, &cfg).expect("quantize"), images)
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let (q, images) = lenet(&mut rng);
    let settings: [(&str, [u8; 4]); 3] = [
        ("8bit", [8; 4]),
        ("3-2-2-8", [3, 2, 2, 8]),
        ("2bit", [2; 4]),
    ];
    let engines = [
        ("auto", Engine::Auto),
        ("lut", Engine::Lut),
        ("gemm", Engine::Gemm),
    ];
    for (batch, name) in [(1, "lenet_single"), (BATCH, "lenet_batch64")] {
        let mut g = c.benchmark_group(name);
        g.measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_millis(500))
            .sample_size(20)
            .throughput(Throughput::Elements(batch as u64));
        let pixels = &images.pixels[..batch * SHAPE.iter().product::<usize>()];
        for (setting, bits) in &settings {
            let golden = q.executor(bits).expect("executor");
            g.bench_function(BenchmarkId::new("golden", setting), |b| {
                b.iter(|| {
                    for i in 0..batch {
                        black_box(golden.logits(images.image(i)).expect("golden"));
                    }
                })
            });
            for (engine_name, engine) in engines {
                let cpu = CpuModel::new(&q, bits, engine).expect("plan");
                g.bench_function(BenchmarkId::new(engine_name, setting), |b| {
                    b.iter(|| black_box(cpu.infer_batch(black_box(pixels), batch).expect("cpu")))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
