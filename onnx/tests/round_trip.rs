//! caq float model → ONNX → caq float model gives back the identical model (graph, names and
//! every weight bit).

mod common;

use caq_model::arch::{Arch, graph_for};
use caq_model::graph::FloatModel;
use caq_onnx::{export, export_file, import, import_bytes};
use common::*;

fn round_trip(m: &FloatModel) {
    let bytes = export(m).unwrap();
    let back = import_bytes(&bytes).unwrap();
    assert_eq!(&back, m);
}

#[test]
fn mlp_and_lenet_round_trip_identically() {
    round_trip(&random_model(graph_for(Arch::Mlp, [1, 8, 8], 10), 1));
    round_trip(&random_model(graph_for(Arch::LeNet, [1, 28, 28], 10), 2));
}

#[test]
fn the_mlperf_tiny_networks_round_trip_identically() {
    // Grouped (depthwise) convs, per-side "same" padding, residual adds, global average pools.
    for (_, arch) in Arch::ALL {
        if let Some((shape, classes)) = arch.mlperf_tiny() {
            round_trip(&caq_model::arch::seeded(arch, shape, classes, 9).unwrap());
        }
    }
}

#[test]
fn every_caq_operator_round_trips_identically() {
    round_trip(&random_model(residual_graph(), 3));
}

#[test]
fn vector_inputs_and_rank_changes_round_trip_identically() {
    round_trip(&random_model(vector_graph(), 4));
}

#[test]
fn export_file_writes_atomically_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let m = random_model(graph_for(Arch::Mlp, [1, 8, 8], 10), 5);
    export_file(&m, &path).unwrap();
    assert_eq!(import(&path).unwrap(), m);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "m.onnx")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn duplicate_node_names_are_refused_on_export() {
    let mut m = random_model(graph_for(Arch::Mlp, [1, 8, 8], 10), 6);
    m.graph.nodes[2].name = "fc1".into();
    let e = export(&m).unwrap_err().to_string();
    assert!(e.contains("'fc1' is empty or not unique"), "{e}");
}
