//! `caq import` time against the node count: a dense layer followed by a chain of N ReLU nodes,
//! exported to ONNX by caq and imported back, for N from 1,000 to 100,000. The import must grow
//! linearly (it re-checked the whole graph at every node before issue 20: 65 s at 40,000 nodes).
//!
//! `cargo run --release -p caq-onnx --example import_scaling [N ...]`; with `CAQ_SCALING_DIR=D`
//! each model is also written to `D/chain-N.onnx`, to time `caq import` on it.

use caq_model::graph::{FloatModel, FloatParams, Graph, Node, Op, Src};
use ndarray::{Array1, Array2};
use std::time::Instant;

fn chain(n: usize) -> FloatModel {
    let mut nodes = vec![Node {
        name: "fc".into(),
        op: Op::Dense {
            in_features: 4,
            out_features: 4,
            relu: true,
        },
        inputs: vec![Src::Input],
    }];
    let mut params = vec![Some(FloatParams {
        weight: Array2::eye(4),
        bias: Array1::zeros(4),
    })];
    for i in 1..=n {
        nodes.push(Node {
            name: format!("relu{i}"),
            op: Op::Relu,
            inputs: vec![Src::Node(i - 1)],
        });
        params.push(None);
    }
    FloatModel {
        graph: Graph {
            input_shape: [4, 1, 1],
            nodes,
        },
        params,
    }
}

fn main() {
    let parsed: Result<Vec<usize>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    let sizes = match parsed {
        Ok(v) if !v.is_empty() => v,
        _ => vec![1_000, 2_000, 5_000, 10_000, 20_000, 40_000, 100_000],
    };
    println!("| nodes | ONNX bytes | import s | µs per node |");
    println!("| ---: | ---: | ---: | ---: |");
    for n in sizes {
        let bytes = caq_onnx::export(&chain(n)).expect("export");
        if let Ok(dir) = std::env::var("CAQ_SCALING_DIR") {
            let path = std::path::Path::new(&dir).join(format!("chain-{n}.onnx"));
            std::fs::write(&path, &bytes).expect("writing the model");
        }
        let t = Instant::now();
        let m = caq_onnx::import_bytes(&bytes).expect("import");
        let s = t.elapsed().as_secs_f64();
        assert_eq!(m.graph.nodes.len(), n + 1);
        println!(
            "| {n} | {} | {s:.3} | {:.2} |",
            bytes.len(),
            s * 1e6 / n as f64
        );
    }
}
