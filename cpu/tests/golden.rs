//! The CPU backend against the golden executor: every node's output, bit for bit, on random
//! graphs (convs with stride and per-side padding, grouped and depthwise convs, K not a multiple
//! of four, channel counts off the lane width, pools, global average pools, residual adds, dense
//! layers), at every nesting level and at mixed per-layer
//! bits, with and without local quantization regions, on all three engines. Set `CAQ_SEED` to
//! replay a failure; the seed is printed.

use caq_cpu::{CpuError, CpuModel, Engine, Kernel};
use caq_model::arch::{Arch, graph_for};
use caq_model::data::{self, Dataset};
use caq_model::graph::{FloatModel, FloatParams, Graph, Node, Op, Padding, Shape3, Src, conv_out};
use caq_model::qmodel::{QModel, QuantizeConfig, quantize};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ALL_LEVELS: [u8; 7] = [8, 7, 6, 5, 4, 3, 2];
const ENGINES: [Engine; 3] = [Engine::Auto, Engine::Lut, Engine::Gemm];

fn seed() -> u64 {
    let s = std::env::var("CAQ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("CAQ_SEED={s}");
    s
}

/// Float weights for `graph`, uniform in ±1/sqrt(K).
fn params_for(graph: &Graph, rng: &mut ChaCha8Rng) -> Vec<Option<FloatParams>> {
    graph
        .nodes
        .iter()
        .map(|n| {
            n.op.weight_matrix_dims().map(|(o, k, _)| {
                let r = 1.0 / (k as f32).sqrt();
                FloatParams {
                    weight: Array2::from_shape_fn((o, k), |_| rng.random_range(-r..r)),
                    bias: Array1::from_shape_fn(o, |_| rng.random_range(-0.2..0.2f32)),
                }
            })
        })
        .collect()
}

/// A random graph: conv (stride, padding, odd kernel shapes), an optional residual block, an
/// optional pool and ReLU, flatten, one or two dense layers.
fn random_graph(rng: &mut ChaCha8Rng) -> Graph {
    let input_shape = [
        rng.random_range(1..=3),
        rng.random_range(6..=11),
        rng.random_range(6..=11),
    ];
    let mut nodes: Vec<Node> = Vec::new();
    let mut shape: Shape3 = input_shape;
    let push = |nodes: &mut Vec<Node>, name: String, op: Op, inputs: Vec<Src>| {
        nodes.push(Node { name, op, inputs });
        Src::Node(nodes.len() - 1)
    };
    let mut cur = Src::Input;
    let [c, h, w] = shape;
    let (kh, kw) = (rng.random_range(1..=4), rng.random_range(1..=4));
    let stride = rng.random_range(1..=2);
    // Padding per side (asymmetric, as exporters write "same"), and channel groups: depthwise
    // (groups = in_channels) a third of the time.
    let [top, left, bottom, right] = std::array::from_fn(|_| rng.random_range(0..=2));
    let padding = Padding {
        top,
        left,
        bottom,
        right,
    };
    let groups = if rng.random_bool(0.33) { c } else { 1 };
    let oc = groups * rng.random_range(1..=19usize.div_ceil(groups));
    cur = push(
        &mut nodes,
        "conv1".into(),
        Op::Conv2d {
            in_channels: c,
            out_channels: oc,
            kernel: [kh, kw],
            stride,
            padding,
            groups,
            relu: rng.random_bool(0.7),
        },
        vec![cur],
    );
    shape = [
        oc,
        conv_out(h, kh, stride, padding.axis(0)).unwrap(),
        conv_out(w, kw, stride, padding.axis(1)).unwrap(),
    ];
    if rng.random_bool(0.6) {
        let r = push(
            &mut nodes,
            "res_conv".into(),
            Op::Conv2d {
                in_channels: oc,
                out_channels: oc,
                kernel: [3, 3],
                stride: 1,
                padding: Padding::uniform(1),
                groups: 1,
                relu: rng.random_bool(0.5),
            },
            vec![cur],
        );
        cur = push(
            &mut nodes,
            "add".into(),
            Op::Add {
                relu: rng.random_bool(0.5),
            },
            vec![cur, r],
        );
    }
    if rng.random_bool(0.4) {
        // A depthwise 3x3 with TensorFlow "same" padding, stride 1 or 2.
        let stride = rng.random_range(1..=2);
        let padding = Padding::same([shape[1], shape[2]], [3, 3], stride);
        cur = push(
            &mut nodes,
            "dw".into(),
            Op::Conv2d {
                in_channels: oc,
                out_channels: oc,
                kernel: [3, 3],
                stride,
                padding,
                groups: oc,
                relu: true,
            },
            vec![cur],
        );
        shape = [
            oc,
            conv_out(shape[1], 3, stride, padding.axis(0)).unwrap(),
            conv_out(shape[2], 3, stride, padding.axis(1)).unwrap(),
        ];
    }
    if rng.random_bool(0.2) {
        cur = push(&mut nodes, "gap".into(), Op::GlobalAvgPool, vec![cur]);
        shape = [shape[0], 1, 1];
    } else if shape[1] >= 2 && shape[2] >= 2 && rng.random_bool(0.7) {
        let (kernel, stride) = (2, rng.random_range(1..=2));
        let op = if rng.random_bool(0.5) {
            Op::MaxPool { kernel, stride }
        } else {
            Op::AvgPool { kernel, stride }
        };
        cur = push(&mut nodes, "pool".into(), op, vec![cur]);
        shape = [
            shape[0],
            (shape[1] - kernel) / stride + 1,
            (shape[2] - kernel) / stride + 1,
        ];
    }
    if rng.random_bool(0.3) {
        cur = push(&mut nodes, "relu".into(), Op::Relu, vec![cur]);
    }
    cur = push(&mut nodes, "flatten".into(), Op::Flatten, vec![cur]);
    let mut features: usize = shape.iter().product();
    if rng.random_bool(0.5) {
        let hidden = rng.random_range(3..=21);
        cur = push(
            &mut nodes,
            "fc1".into(),
            Op::Dense {
                in_features: features,
                out_features: hidden,
                relu: true,
            },
            vec![cur],
        );
        features = hidden;
    }
    push(
        &mut nodes,
        "fc_out".into(),
        Op::Dense {
            in_features: features,
            out_features: rng.random_range(2..=11),
            relu: false,
        },
        vec![cur],
    );
    Graph { input_shape, nodes }
}

fn random_images(shape: Shape3, n: usize, rng: &mut ChaCha8Rng) -> Dataset {
    let len: usize = shape.iter().product();
    Dataset {
        name: "random".into(),
        shape,
        pixels: (0..n * len).map(|_| rng.random_range(0..=255u8)).collect(),
        labels: vec![0; n],
        max_value: 255,
        classes: 2,
    }
}

fn quantized(
    graph: Graph,
    levels: &[u8],
    group_size: Option<usize>,
    rng: &mut ChaCha8Rng,
) -> (QModel, Dataset) {
    let params = params_for(&graph, rng);
    let model = FloatModel { graph, params };
    let calib = random_images(model.graph.input_shape, 12, rng);
    let cfg = QuantizeConfig {
        group_size,
        calib_images: 12,
        ..QuantizeConfig::nested(levels)
    };
    (quantize(&model, &calib, &cfg).expect("quantize"), calib)
}

/// Every node's output of the plan equals the golden executor's on every image.
fn assert_every_node_equal(q: &QModel, bits: &[u8], engine: Engine, images: &Dataset) {
    let cpu = CpuModel::new(q, bits, engine).expect("plan");
    let golden = q.executor(bits).expect("executor");
    for i in 0..images.len() {
        let want = golden.run(images.image(i)).expect("golden");
        let got = cpu.run_all(images.image(i)).expect("cpu");
        assert_eq!(got.len(), want.len());
        for (n, (g, w)) in got.iter().zip(&want).enumerate() {
            let w: Vec<i32> = w.iter().copied().collect();
            assert_eq!(
                g,
                &w,
                "node {n} ('{}') image {i} bits {bits:?} {engine:?} layers {:?}",
                q.graph.nodes[n].name,
                cpu.layers().collect::<Vec<_>>()
            );
        }
    }
}

fn random_bits(q: &QModel, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let levels = q.levels();
    (0..q.weight_layers().len())
        .map(|_| levels[rng.random_range(0..levels.len())])
        .collect()
}

fn check_random_graphs(group_sizes: &[Option<usize>], models: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    for m in 0..models {
        let graph = random_graph(&mut rng);
        let gs = group_sizes[m % group_sizes.len()];
        let (q, images) = quantized(graph, &ALL_LEVELS, gs, &mut rng);
        let images = images.subset(&[0, 1]);
        let mut settings: Vec<Vec<u8>> = ALL_LEVELS.iter().map(|&b| q.uniform_bits(b)).collect();
        settings.push(random_bits(&q, &mut rng));
        settings.push(random_bits(&q, &mut rng));
        for bits in &settings {
            for engine in ENGINES {
                assert_every_node_equal(&q, bits, engine, &images);
            }
        }
    }
}

#[test]
fn every_node_equals_golden_on_random_graphs_at_every_level() {
    check_random_graphs(&[None], 10);
}

#[test]
fn every_node_equals_golden_with_local_quantization_regions() {
    // Multiples of four run on the table kernel; 3, 5 and 6 make the plan fall back to GEMM.
    check_random_graphs(&[Some(4), Some(8), Some(3), Some(16), Some(5), Some(6)], 10);
}

#[test]
fn a_batch_equals_its_images_one_by_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let graph = random_graph(&mut rng);
    let (q, _) = quantized(graph, &[8, 4, 2], Some(8), &mut rng);
    let images = random_images(q.graph.input_shape, 37, &mut rng);
    for bits in [
        q.uniform_bits(2),
        q.uniform_bits(8),
        random_bits(&q, &mut rng),
    ] {
        let golden = q.executor(&bits).unwrap();
        for engine in ENGINES {
            let cpu = CpuModel::new(&q, &bits, engine).unwrap();
            let batch = cpu.infer_batch(&images.pixels, images.len()).unwrap();
            assert_eq!(batch.len(), images.len());
            for (i, out) in batch.iter().enumerate() {
                assert_eq!(out, &cpu.infer(images.image(i)).unwrap(), "image {i}");
                assert_eq!(out, &golden.logits(images.image(i)).unwrap(), "image {i}");
            }
        }
    }
}

#[test]
fn auto_uses_tables_at_four_bits_or_fewer_and_gemm_above() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let graph = graph_for(Arch::LeNet, [1, 28, 28], 10);
    let (q, images) = quantized(graph, &[8, 4, 3, 2], None, &mut rng);
    let bits = [3, 2, 2, 8];
    let cpu = CpuModel::new(&q, &bits, Engine::Auto).unwrap();
    let kernels: Vec<Kernel> = cpu.layers().map(|l| l.kernel).collect();
    assert_eq!(
        kernels,
        [Kernel::Lut, Kernel::Lut, Kernel::Lut, Kernel::Gemm]
    );
    let gemm = CpuModel::new(&q, &bits, Engine::Gemm).unwrap();
    assert!(gemm.layers().all(|l| l.kernel == Kernel::Gemm));
    let lut = CpuModel::new(&q, &bits, Engine::Lut).unwrap();
    assert!(lut.layers().all(|l| l.kernel == Kernel::Lut));
    assert_every_node_equal(&q, &bits, Engine::Auto, &images.subset(&[0, 1, 2]));
}

#[test]
fn regions_not_a_multiple_of_four_fall_back_to_gemm_and_say_why() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let graph = graph_for(Arch::Mlp, [1, 8, 8], 10);
    let (q, _) = quantized(graph, &[8, 4, 2], Some(6), &mut rng);
    let cpu = CpuModel::new(&q, &q.uniform_bits(2), Engine::Lut).unwrap();
    for l in cpu.layers() {
        assert_eq!(l.kernel, Kernel::Gemm, "{l:?}");
        let why = l.fallback.as_deref().unwrap_or_default();
        assert!(why.contains("multiple of 4"), "{why}");
    }
}

#[test]
fn bad_bits_and_pixel_counts_are_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let graph = graph_for(Arch::Mlp, [1, 8, 8], 10);
    let (q, _) = quantized(graph, &[8, 4], None, &mut rng);
    let e = CpuModel::new(&q, &[8, 4], Engine::Auto).unwrap_err();
    assert!(matches!(e, CpuError::Model(_)), "{e}");
    assert!(
        e.to_string().contains("2 entries for 3 weight layers"),
        "{e}"
    );
    let e = CpuModel::new(&q, &[8, 3, 8], Engine::Auto).unwrap_err();
    assert!(
        e.to_string().contains("fc2") && e.to_string().contains("3 bits"),
        "{e}"
    );
    let cpu = CpuModel::new(&q, &[8, 4, 8], Engine::Auto).unwrap();
    let e = cpu.infer(&[0; 63]).unwrap_err().to_string();
    assert!(e.contains("expected 64") && e.contains("found 63"), "{e}");
    let e = cpu.infer_batch(&[0; 64 * 3], 2).unwrap_err().to_string();
    assert!(e.contains("expected 128") && e.contains("found 192"), "{e}");
    assert!(cpu.infer_batch(&[], 0).unwrap().is_empty());
}

#[test]
fn digits_mlp_equals_golden_on_every_image() {
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let digits = data::digits().unwrap();
    let graph = graph_for(Arch::Mlp, digits.shape, digits.classes);
    let model = FloatModel {
        params: params_for(&graph, &mut rng),
        graph,
    };
    let cfg = QuantizeConfig {
        group_size: Some(16),
        calib_images: 64,
        ..QuantizeConfig::nested(&[8, 4, 2])
    };
    let q = quantize(&model, &digits, &cfg).unwrap();
    for bits in [q.uniform_bits(8), q.uniform_bits(4), vec![2, 4, 8]] {
        let golden = q.executor(&bits).unwrap();
        let cpu = CpuModel::new(&q, &bits, Engine::Auto).unwrap();
        let got = cpu.infer_batch(&digits.pixels, digits.len()).unwrap();
        for (i, out) in got.iter().enumerate() {
            assert_eq!(
                out,
                &golden.logits(digits.image(i)).unwrap(),
                "image {i} bits {bits:?}"
            );
        }
    }
}
