//! Import of hand-built ONNX protobufs: the folds, numerically, and every error path naming the
//! node and what was expected.

mod common;

use caq_model::graph::{Op, Padding, conv2d_f32};
use caq_onnx::import::Action;
use caq_onnx::{import_bytes, import_bytes_with_report};
use common::*;
use ndarray::{Array1, Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn err(m: &caq_onnx::proto::ModelProto) -> String {
    import_bytes(&bytes(m)).unwrap_err().to_string()
}

/// x [1, 6] → Gemm fc (4 outputs) → `then` (reading `g`, writing `y`).
fn gemm_then(then: Vec<caq_onnx::proto::NodeProto>) -> caq_onnx::proto::ModelProto {
    let mut nodes = vec![with(
        node("Gemm", "fc", &["x", "w", "b"], &["g"]),
        vec![int("transB", 1)],
    )];
    nodes.extend(then);
    model(
        nodes,
        vec![
            tensor("w", &[4, 6], &[0.1; 24]),
            tensor("b", &[4], &[0.0; 4]),
        ],
        &[1, 6],
        &[1, 4],
    )
}

#[test]
fn unsupported_operator_names_the_node_and_lists_what_caq_imports() {
    let e = err(&gemm_then(vec![node("Softmax", "sm", &["g"], &["y"])]));
    assert!(
        e.starts_with(
            "node 'sm' (Softmax): operator not supported; caq imports Gemm, MatMul, Conv"
        ),
        "{e}"
    );
}

#[test]
fn unnamed_node_is_named_by_its_index_and_op_type() {
    let e = err(&gemm_then(vec![node("Sigmoid", "", &["g"], &["y"])]));
    assert!(
        e.starts_with("node #1 (Sigmoid): operator not supported"),
        "{e}"
    );
}

#[test]
fn truncated_or_corrupted_bytes_are_errors_never_panics() {
    let good = bytes(&gemm_then(vec![node("Relu", "r", &["g"], &["y"])]));
    assert!(import_bytes(&good).is_ok());
    for len in 0..good.len() {
        assert!(import_bytes(&good[..len]).is_err(), "prefix of {len} bytes");
    }
    let e = import_bytes(&good[..good.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid ONNX protobuf"), "{e}");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
        }
        // Either outcome is fine; a panic fails the test.
        let _ = import_bytes(&b);
    }
}

#[test]
fn missing_initializer_is_named_with_the_node() {
    let m = model(
        vec![node("Gemm", "fc", &["x", "w_missing"], &["y"])],
        vec![],
        &[1, 6],
        &[1, 4],
    );
    let e = err(&m);
    assert!(
        e.contains("node 'fc' (Gemm)") && e.contains("'w_missing'") && e.contains("initializer"),
        "{e}"
    );
}

fn conv_model(attrs: Vec<caq_onnx::proto::AttributeProto>, w_dims: &[i64]) -> String {
    let n: i64 = w_dims.iter().product();
    let m = model(
        vec![with(node("Conv", "c", &["x", "w"], &["y"]), attrs)],
        vec![tensor("w", w_dims, &vec![0.1; n as usize])],
        &[1, 2, 8, 8],
        &[1, 4, 6, 6],
    );
    err(&m)
}

#[test]
fn conv_with_bad_groups_dilation_bad_pads_or_uneven_strides_is_rejected() {
    let e = conv_model(vec![int("group", 3)], &[4, 1, 3, 3]);
    assert!(
        e.contains("node 'c' (Conv): group=3 with W [4, 1, 3, 3]"),
        "{e}"
    );
    let e = conv_model(vec![ints("dilations", &[2, 2])], &[4, 2, 3, 3]);
    assert!(e.contains("node 'c' (Conv): dilations [2, 2]"), "{e}");
    let e = conv_model(vec![ints("pads", &[1, 1])], &[4, 2, 3, 3]);
    assert!(e.contains("pads [1, 1]: expected four"), "{e}");
    let e = conv_model(vec![ints("pads", &[3, 0, 0, 0])], &[4, 2, 3, 3]);
    assert!(e.contains("not smaller than the 3×3 kernel"), "{e}");
    let e = conv_model(vec![ints("strides", &[1, 2])], &[4, 2, 3, 3]);
    assert!(e.contains("strides [1, 2]"), "{e}");
    let e = conv_model(vec![], &[4, 3, 3, 3]);
    assert!(e.contains("W [4, 3, 3, 3] and 2 input channels"), "{e}");
}

#[test]
fn grouped_convs_and_per_side_pads_import_as_written() {
    // Depthwise (group = C = M = 2) with pads [top 1, left 0, bottom 2, right 1] on 8x8: 9x7 out.
    let m = model(
        vec![with(
            node("Conv", "c", &["x", "w"], &["y"]),
            vec![int("group", 2), ints("pads", &[1, 0, 2, 1])],
        )],
        vec![tensor("w", &[2, 1, 3, 3], &[0.5; 18])],
        &[1, 2, 8, 8],
        &[1, 2, 9, 7],
    );
    let fm = caq_onnx::import_bytes(&bytes(&m)).unwrap();
    let want = Padding {
        top: 1,
        left: 0,
        bottom: 2,
        right: 1,
    };
    assert!(
        matches!(fm.graph.nodes[0].op, Op::Conv2d { groups: 2, padding, in_channels: 2, .. } if padding == want),
        "{:?}",
        fm.graph.nodes[0].op
    );
    assert_eq!(fm.graph.output_shape().unwrap(), [2, 9, 7]);
    // Channel 1 alone feeds output channel 1: its top-left output sees rows 0..1 (row -1 is
    // padding), columns 0..2.
    let x = Array3::from_shape_fn((2, 8, 8), |(c, _, _)| if c == 1 { 1.0 } else { 0.0 });
    let y = fm.forward(x.view());
    assert_eq!((y[0], y[63]), (0.0, 0.5 * 6.0));
    // auto_pad SAME_UPPER with stride 2 on 8x8: 4x4 out, padded [0, 0, 1, 1].
    let m = model(
        vec![with(
            node("Conv", "c", &["x", "w"], &["y"]),
            vec![string("auto_pad", "SAME_UPPER"), ints("strides", &[2, 2])],
        )],
        vec![tensor("w", &[4, 2, 3, 3], &[0.1; 72])],
        &[1, 2, 8, 8],
        &[1, 4, 4, 4],
    );
    let fm = caq_onnx::import_bytes(&bytes(&m)).unwrap();
    assert!(matches!(fm.graph.nodes[0].op, Op::Conv2d { padding, .. }
        if padding == Padding { top: 0, left: 0, bottom: 1, right: 1 }));
}

#[test]
fn pools_that_caq_cannot_express_are_rejected() {
    let pool = |attrs| {
        err(&model(
            vec![with(node("MaxPool", "p", &["x"], &["y"]), attrs)],
            vec![],
            &[1, 2, 8, 8],
            &[1, 2, 4, 4],
        ))
    };
    let e = pool(vec![ints("kernel_shape", &[2, 3])]);
    assert!(
        e.contains("node 'p' (MaxPool): kernel_shape [2, 3] is not square"),
        "{e}"
    );
    let e = pool(vec![
        ints("kernel_shape", &[2, 2]),
        ints("pads", &[1, 1, 1, 1]),
    ]);
    assert!(e.contains("caq pools take no padding"), "{e}");
    let e = pool(vec![ints("kernel_shape", &[3, 3]), int("ceil_mode", 1)]);
    assert!(e.contains("ceil_mode=1"), "{e}");
}

#[test]
fn an_average_pool_over_a_whole_non_square_map_is_a_global_pool() {
    // Keras' AveragePooling2D over DS-CNN's last map writes kernel_shape = strides = the map's
    // 25x5: a global average pool. The same over the map's square size stays an AvgPool (which
    // computes the same codes); MaxPool has no such reading.
    let pool = |op: &str, dims: &[i64], attrs| {
        model(
            vec![with(node(op, "p", &["x"], &["y"]), attrs)],
            vec![],
            dims,
            &[1, dims[1], 1, 1],
        )
    };
    let keras = |k: &[i64]| vec![ints("kernel_shape", k), ints("strides", k)];
    let fm = caq_onnx::import_bytes(&bytes(&pool(
        "AveragePool",
        &[1, 2, 25, 5],
        keras(&[25, 5]),
    )))
    .unwrap();
    assert_eq!(fm.graph.nodes[0].op, Op::GlobalAvgPool);
    let x = Array3::from_shape_fn((2, 25, 5), |(c, y, x)| (c * 125 + y * 5 + x) as f32);
    let y = fm.forward(x.view());
    assert_eq!((y[0], y[1]), (62.0, 187.0));
    let (_, report) = caq_onnx::import_bytes_with_report(&bytes(&pool(
        "AveragePool",
        &[1, 2, 25, 5],
        keras(&[25, 5]),
    )))
    .unwrap();
    assert_eq!(
        report.nodes[0].detail,
        "GlobalAvgPool 25×5 (an AveragePool over the whole map)"
    );
    let fm = caq_onnx::import_bytes(&bytes(&pool("AveragePool", &[1, 2, 4, 4], keras(&[4, 4]))))
        .unwrap();
    assert_eq!(
        fm.graph.nodes[0].op,
        Op::AvgPool {
            kernel: 4,
            stride: 4
        }
    );
    let e = err(&pool("MaxPool", &[1, 2, 25, 5], keras(&[25, 5])));
    assert!(
        e.contains(
            "node 'p' (MaxPool): kernel_shape [25, 5] is not square; caq pools take a k×k window"
        ),
        "{e}"
    );
    let e = err(&pool("AveragePool", &[1, 2, 25, 5], keras(&[5, 25])));
    assert!(
        e.contains(
            "is not square; caq pools take a k×k window (or, averaging, the whole 25×5 map)"
        ),
        "{e}"
    );
    let mut attrs = keras(&[25, 5]);
    attrs.push(ints("pads", &[0, 0, 1, 0]));
    let e = err(&pool("AveragePool", &[1, 2, 25, 5], attrs));
    assert!(e.contains("caq pools take no padding"), "{e}");
    let e = err(&pool(
        "AveragePool",
        &[1, 2, 25, 5],
        vec![ints("kernel_shape", &[25, 5]), ints("strides", &[0, 5])],
    ));
    assert!(
        e.contains("strides [0, 5] must be two positive values"),
        "{e}"
    );
}

#[test]
fn gemm_weight_not_matching_the_input_is_a_shape_error_naming_the_node() {
    let m = model(
        vec![with(
            node("Gemm", "fc", &["x", "w"], &["y"]),
            vec![int("transB", 1)],
        )],
        vec![tensor("w", &[4, 5], &[0.1; 20])],
        &[1, 6],
        &[1, 4],
    );
    let e = err(&m);
    assert!(
        e.contains("node 'fc' (Gemm): B [4, 5] (transB=1) has 5 input features, input A has 6"),
        "{e}"
    );
}

#[test]
fn opsets_outside_the_supported_range_and_bad_inputs_are_rejected() {
    let mut m = gemm_then(vec![node("Relu", "r", &["g"], &["y"])]);
    m.opset_import[0].version = 6;
    assert!(err(&m).contains("opset 6 is not supported; caq imports opsets 7..=22"));
    m.opset_import.clear();
    assert!(err(&m).contains("no ai.onnx operator set"));
    let mut m = gemm_then(vec![node("Relu", "r", &["g"], &["y"])]);
    m.graph.as_mut().unwrap().input[0] = value("x", &[2, 6]);
    let e = err(&m);
    assert!(
        e.contains("graph input 'x'") && e.contains("N = 1 or symbolic"),
        "{e}"
    );
}

/// A Keras-style depthwise block as exporters write it: a depthwise Conv (group = C, no bias)
/// with uneven pads → BatchNormalization → Relu → GlobalAveragePool over a non-square map,
/// against the unfused computation.
#[test]
fn a_depthwise_batch_norm_block_with_uneven_pads_and_global_pooling_imports_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (c, h, w) = (4usize, 5usize, 3usize);
    let wt = randn(&mut rng, c * 9, 0.5);
    let gamma: Vec<f32> = (0..c).map(|_| rng.random_range(0.5..1.5)).collect();
    let beta = randn(&mut rng, c, 0.3);
    let mean = randn(&mut rng, c, 0.3);
    let var: Vec<f32> = (0..c).map(|_| rng.random_range(0.2..2.0)).collect();
    let eps = 1e-3f32;
    let m = model(
        vec![
            with(
                node("Conv", "dw", &["x", "w"], &["c"]),
                vec![int("group", c as i64), ints("pads", &[1, 0, 1, 2])],
            ),
            with(
                node(
                    "BatchNormalization",
                    "bn",
                    &["c", "g", "be", "mu", "var"],
                    &["n"],
                ),
                vec![float("epsilon", eps)],
            ),
            node("Relu", "relu", &["n"], &["r"]),
            node("GlobalAveragePool", "gap", &["r"], &["y"]),
        ],
        vec![
            tensor("w", &[c as i64, 1, 3, 3], &wt),
            tensor("g", &[c as i64], &gamma),
            tensor("be", &[c as i64], &beta),
            tensor("mu", &[c as i64], &mean),
            tensor("var", &[c as i64], &var),
        ],
        &[1, c as i64, h as i64, w as i64],
        &[1, c as i64, 1, 1],
    );
    let fm = import_bytes(&bytes(&m)).unwrap();
    let ops: Vec<&Op> = fm.graph.nodes.iter().map(|n| &n.op).collect();
    let pad = Padding {
        top: 1,
        left: 0,
        bottom: 1,
        right: 2,
    };
    assert!(
        matches!(ops[..], [Op::Conv2d { groups: 4, padding, relu: true, .. }, Op::GlobalAvgPool] if *padding == pad),
        "{ops:?}"
    );
    let x = Array3::from_shape_vec((c, h, w), randn(&mut rng, c * h * w, 1.0)).unwrap();
    let conv = conv2d_f32(
        x.view(),
        &Array2::from_shape_vec((c, 9), wt).unwrap(),
        &Array1::zeros(c),
        caq_model::graph::FloatConv {
            out_c: c,
            kernel: [3, 3],
            stride: 1,
            pad,
            groups: c,
        },
    );
    assert_eq!(conv.dim(), (c, 5, 3));
    let got = fm.forward(x.view());
    for ch in 0..c {
        let want = conv
            .index_axis(ndarray::Axis(0), ch)
            .iter()
            .map(|&y| ((y - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]).max(0.0))
            .sum::<f32>()
            / 15.0;
        assert!(
            (want - got[ch]).abs() < 1e-5,
            "channel {ch}: {want} vs {}",
            got[ch]
        );
    }
}

/// Conv (with bias) → BatchNormalization → Relu, against the unfused computation.
#[test]
fn batch_norm_and_relu_fold_into_the_conv_within_1e5_of_the_unfused_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (c, o, side) = (3, 5, 7);
    let w = randn(&mut rng, o * c * 9, 0.5);
    let b = randn(&mut rng, o, 0.3);
    let gamma: Vec<f32> = (0..o).map(|_| rng.random_range(0.5..1.5)).collect();
    let beta = randn(&mut rng, o, 0.3);
    let mean = randn(&mut rng, o, 0.3);
    let var: Vec<f32> = (0..o).map(|_| rng.random_range(0.2..2.0)).collect();
    let eps = 1e-3f32;
    let m = model(
        vec![
            with(
                node("Conv", "conv", &["x", "w", "b"], &["c"]),
                vec![ints("pads", &[1, 1, 1, 1]), ints("kernel_shape", &[3, 3])],
            ),
            with(
                node(
                    "BatchNormalization",
                    "bn",
                    &["c", "g", "be", "mu", "var"],
                    &["n"],
                ),
                vec![float("epsilon", eps)],
            ),
            node("Relu", "relu", &["n"], &["y"]),
        ],
        vec![
            tensor("w", &[o as i64, c as i64, 3, 3], &w),
            tensor("b", &[o as i64], &b),
            tensor("g", &[o as i64], &gamma),
            tensor("be", &[o as i64], &beta),
            tensor("mu", &[o as i64], &mean),
            tensor("var", &[o as i64], &var),
        ],
        &[1, c as i64, side, side],
        &[1, o as i64, side, side],
    );
    let (fm, report) = import_bytes_with_report(&bytes(&m)).unwrap();
    assert_eq!(fm.graph.nodes.len(), 1, "{:?}", fm.graph);
    assert!(matches!(
        fm.graph.nodes[0].op,
        Op::Conv2d {
            padding,
            groups: 1,
            relu: true,
            ..
        } if padding == caq_model::graph::Padding::uniform(1)
    ));
    let actions: Vec<Action> = report.nodes.iter().map(|n| n.action).collect();
    assert_eq!(actions, [Action::Node, Action::Folded, Action::Folded]);

    let x = Array3::from_shape_vec(
        (c, side as usize, side as usize),
        randn(&mut rng, c * 49, 1.0),
    )
    .unwrap();
    let conv = conv2d_f32(
        x.view(),
        &Array2::from_shape_vec((o, c * 9), w).unwrap(),
        &Array1::from(b),
        caq_model::graph::FloatConv {
            out_c: o,
            kernel: [3, 3],
            stride: 1,
            pad: caq_model::graph::Padding::uniform(1),
            groups: 1,
        },
    );
    let got = fm.forward(x.view());
    let mut worst = 0.0f32;
    for (i, (&y, &g)) in conv.iter().zip(got.iter()).enumerate() {
        let ch = i / 49;
        let want = ((y - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]).max(0.0);
        worst = worst.max((want - g).abs());
    }
    assert!(worst < 1e-5, "worst difference {worst}");
}

#[test]
fn matmul_add_and_batch_norm_fold_into_one_dense_layer() {
    let m = model(
        vec![
            node("MatMul", "mm", &["x", "w"], &["m"]),
            node("Add", "bias", &["m", "b"], &["a"]),
            node(
                "BatchNormalization",
                "bn",
                &["a", "g", "be", "mu", "var"],
                &["y"],
            ),
        ],
        vec![
            tensor("w", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            tensor("b", &[1, 2], &[0.5, -0.5]),
            tensor("g", &[2], &[2.0, 1.0]),
            tensor("be", &[2], &[0.0, 1.0]),
            tensor("mu", &[2], &[1.0, 0.0]),
            tensor("var", &[2], &[1.0, 4.0]),
        ],
        &[-1, 3],
        &[-1, 2],
    );
    let fm = import_bytes(&bytes(&m)).unwrap();
    assert_eq!(fm.graph.input_shape, [3, 1, 1]);
    assert_eq!(fm.graph.nodes.len(), 1);
    let x = Array3::from_shape_vec((3, 1, 1), vec![1.0, -1.0, 2.0]).unwrap();
    let y = fm.forward(x.view());
    // x·W = [1-3+10, 2-4+12] = [8, 10]; + b = [8.5, 9.5]; BN (eps 1e-5).
    let want = [
        (8.5 - 1.0) / (1.0f32 + 1e-5).sqrt() * 2.0,
        9.5 / (4.0f32 + 1e-5).sqrt() + 1.0,
    ];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{y} vs {want:?}");
    }
}

#[test]
fn relu_folds_only_into_a_layer_it_alone_reads() {
    // conv's output feeds the Relu and the residual Add: the Relu must stay a node.
    let m = model(
        vec![
            with(
                node("Conv", "conv", &["x", "w"], &["c"]),
                vec![ints("pads", &[1, 1, 1, 1])],
            ),
            node("Relu", "relu", &["c"], &["r"]),
            node("Add", "res", &["r", "c"], &["s"]),
            node("Relu", "relu2", &["s"], &["y"]),
        ],
        vec![tensor("w", &[2, 2, 3, 3], &[0.1; 36])],
        &[1, 2, 4, 4],
        &[1, 2, 4, 4],
    );
    let fm = import_bytes(&bytes(&m)).unwrap();
    let ops: Vec<&Op> = fm.graph.nodes.iter().map(|n| &n.op).collect();
    assert!(matches!(ops[0], Op::Conv2d { relu: false, .. }), "{ops:?}");
    assert_eq!(ops[1], &Op::Relu);
    assert_eq!(ops[2], &Op::Add { relu: true });
    assert_eq!(ops.len(), 3);
}

#[test]
fn add_of_a_constant_that_is_not_a_bias_is_rejected() {
    let m = model(
        vec![
            node("Relu", "r", &["x"], &["h"]),
            node("Add", "shift", &["h", "k"], &["y"]),
        ],
        vec![tensor("k", &[1, 4], &[1.0; 4])],
        &[1, 4],
        &[1, 4],
    );
    let e = err(&m);
    assert!(
        e.contains("node 'shift' (Add): Add of a constant is supported only as the bias"),
        "{e}"
    );
}

#[test]
fn reshape_to_anything_but_a_flatten_is_rejected() {
    let m = model(
        vec![node("Reshape", "rs", &["x", "s"], &["y"])],
        vec![tensor_i64("s", &[1, 4, 8])],
        &[1, 2, 4, 4],
        &[1, 4, 8],
    );
    let e = err(&m);
    assert!(
        e.contains("node 'rs' (Reshape): Reshape of [1, 2, 4, 4] to [1, 4, 8]"),
        "{e}"
    );
}

#[test]
fn constant_shapes_identity_dropout_and_global_pool_import() {
    let shape = caq_onnx::proto::AttributeProto {
        name: "value".into(),
        r#type: caq_onnx::proto::attribute_type::TENSOR,
        t: Some(tensor_i64("", &[1, -1])),
        ..Default::default()
    };
    let m = model(
        vec![
            node("GlobalAveragePool", "gap", &["x"], &["p"]),
            with(node("Constant", "k", &[], &["shape"]), vec![shape]),
            node("Reshape", "rs", &["p", "shape"], &["f"]),
            node("Dropout", "drop", &["f"], &["d"]),
            node("Identity", "id", &["d"], &["y"]),
        ],
        vec![],
        &[1, 3, 4, 4],
        &[1, 3],
    );
    let (fm, report) = import_bytes_with_report(&bytes(&m)).unwrap();
    let ops: Vec<&Op> = fm.graph.nodes.iter().map(|n| &n.op).collect();
    assert_eq!(ops, [&Op::GlobalAvgPool]);
    // [1, 3, 1, 1] → [1, 3] keeps caq's shape [3, 1, 1]: no Flatten node.
    assert_eq!(report.nodes[2].action, Action::Skipped);
    let x = Array3::from_shape_fn((3, 4, 4), |(c, h, w)| (c * 16 + h * 4 + w) as f32);
    let y = fm.forward(x.view());
    assert_eq!(y.to_vec(), [7.5, 23.5, 39.5]);
}

#[test]
fn relu_after_an_identity_does_not_fold_when_the_original_has_another_reader() {
    let m = model(
        vec![
            with(
                node("Gemm", "fc", &["x", "w"], &["g"]),
                vec![int("transB", 1)],
            ),
            node("Identity", "id", &["g"], &["i"]),
            node("Relu", "relu", &["i"], &["r"]),
            node("Add", "sum", &["r", "g"], &["y"]),
        ],
        vec![tensor("w", &[2, 2], &[1.0, 0.0, 0.0, -1.0])],
        &[1, 2],
        &[1, 2],
    );
    let fm = import_bytes(&bytes(&m)).unwrap();
    let ops: Vec<&Op> = fm.graph.nodes.iter().map(|n| &n.op).collect();
    assert!(matches!(ops[0], Op::Dense { relu: false, .. }), "{ops:?}");
    assert_eq!(ops[1], &Op::Relu);
    let x = Array3::from_shape_vec((2, 1, 1), vec![1.0, 1.0]).unwrap();
    // g = [1, -1]; relu(g) + g = [2, -1].
    assert_eq!(fm.forward(x.view()).to_vec(), [2.0, -1.0]);
}

#[test]
fn padding_of_a_whole_kernel_is_rejected() {
    let e = conv_model(vec![ints("pads", &[3, 3, 3, 3])], &[4, 2, 3, 3]);
    assert!(
        e.contains("pads [3, 3, 3, 3] are not smaller than the 3×3 kernel"),
        "{e}"
    );
}
