//! `caq inspect BUNDLE`: what a bundle holds, per layer and per plane group.

use super::{table, write_json};
use anyhow::{Context, Result};
use caq_model::adaptive::{AdaptivePolicy, PreparedGate};
use caq_model::bundle::Bundle;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The model bundle.
    bundle: PathBuf,
    /// Also write the figures as JSON to this file (written atomically).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct GroupInfo {
    bits: u8,
    shift: u8,
    /// The level this group completes (the high part completes the lowest level).
    completes_level: u8,
    bytes: usize,
}

#[derive(Serialize)]
struct LayerInfo {
    name: String,
    op: String,
    out: usize,
    k: usize,
    levels: Vec<u8>,
    group_size: Option<usize>,
    plane_groups: Vec<GroupInfo>,
    /// Plane bytes resident at each level, lowest level first.
    resident_bytes: Vec<(u8, usize)>,
}

#[derive(Serialize)]
struct InspectReport {
    bundle: PathBuf,
    file_bytes: usize,
    schema_version: u32,
    input_shape: [usize; 3],
    act_bits: u8,
    layers: Vec<LayerInfo>,
    gates: Vec<GateInfo>,
    adaptive: Vec<AdaptivePolicy>,
}

#[derive(Serialize)]
struct GateInfo {
    name: String,
    bits: Vec<u8>,
    /// Plane-group bytes resident at this gate.
    resident_bytes: u64,
}

pub fn inspect(a: InspectArgs) -> Result<()> {
    let b = Bundle::open(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    // Read every plane group once so a corrupted tensor is reported here, not at run time.
    for (li, l) in b.manifest().layers.iter().enumerate() {
        for g in 0..l.plane_groups.len() {
            b.plane_group(li, g)?;
        }
    }
    let m = b.manifest();
    let mut layers = Vec::new();
    for l in &m.layers {
        let op = serde_json::to_value(&m.graph.nodes[l.node].op)
            .ok()
            .and_then(|v| v.get("type").and_then(|o| o.as_str()).map(str::to_string))
            .unwrap_or_default();
        let n = l.levels.len();
        let plane_groups: Vec<GroupInfo> = l
            .plane_groups
            .iter()
            .enumerate()
            .map(|(g, e)| GroupInfo {
                bits: e.bits,
                shift: e.shift,
                completes_level: l.levels[n - 1 - g],
                bytes: e.bytes,
            })
            .collect();
        let mut acc = 0;
        let resident_bytes = plane_groups
            .iter()
            .map(|g| {
                acc += g.bytes;
                (g.completes_level, acc)
            })
            .collect();
        layers.push(LayerInfo {
            name: l.name.clone(),
            op,
            out: l.out,
            k: l.k,
            levels: l.levels.clone(),
            group_size: l.group_size,
            plane_groups,
            resident_bytes,
        });
    }
    let report = InspectReport {
        bundle: a.bundle.clone(),
        file_bytes: b.file_len(),
        schema_version: m.schema_version,
        input_shape: m.graph.input_shape,
        act_bits: m.quantize.act_bits,
        gates: m
            .gates
            .iter()
            .map(|g| GateInfo {
                name: g.name.clone(),
                bits: g.bits.clone(),
                resident_bytes: layers
                    .iter()
                    .zip(&g.bits)
                    .map(|(l, &b)| {
                        l.resident_bytes
                            .iter()
                            .find(|(lvl, _)| *lvl == b)
                            .map_or(0, |(_, bytes)| *bytes as u64)
                    })
                    .sum(),
            })
            .collect(),
        adaptive: m.adaptive.clone(),
        layers,
    };
    println!(
        "{}: {} bytes, schema {}, input {:?}, {}-bit activations, rounding {:?}",
        a.bundle.display(),
        report.file_bytes,
        report.schema_version,
        report.input_shape,
        report.act_bits,
        m.quantize.rounding
    );
    let mut rows = Vec::new();
    for l in &report.layers {
        for (g, pg) in l.plane_groups.iter().enumerate() {
            rows.push(vec![
                if g == 0 {
                    l.name.clone()
                } else {
                    String::new()
                },
                if g == 0 { l.op.clone() } else { String::new() },
                if g == 0 {
                    format!("{}x{}", l.out, l.k)
                } else {
                    String::new()
                },
                if g == 0 {
                    l.levels
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join("⊃")
                } else {
                    String::new()
                },
                if g == 0 {
                    "high".into()
                } else {
                    format!("residual {g}")
                },
                format!("{} (<<{})", pg.bits, pg.shift),
                pg.completes_level.to_string(),
                pg.bytes.to_string(),
            ]);
        }
    }
    table::print(
        &[
            "layer",
            "op",
            "out x K",
            "levels",
            "plane group",
            "bits",
            "level",
            "bytes",
        ],
        &rows,
    );
    if report.gates.is_empty() {
        println!("\nno gates (`caq gate` builds them)");
    } else {
        let names: Vec<&str> = report.layers.iter().map(|l| l.name.as_str()).collect();
        println!("\ngates (bits per layer: {}):", names.join(", "));
        let rows: Vec<Vec<String>> = report
            .gates
            .iter()
            .map(|g| {
                vec![
                    g.name.clone(),
                    g.bits
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join("/"),
                    g.resident_bytes.to_string(),
                ]
            })
            .collect();
        table::print(&["gate", "bits per layer", "resident bytes"], &rows);
    }
    print_adaptive(&report.adaptive);
    if let Some(j) = &a.json {
        write_json(j, &report)?;
    }
    Ok(())
}

fn slashed(bits: &[u8]) -> String {
    bits.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The input-adaptive policies: each cascade stage with its threshold, each gate network's size
/// and codebook.
fn print_adaptive(policies: &[AdaptivePolicy]) {
    if policies.is_empty() {
        println!("\nno input-adaptive policies (`caq gate --adaptive` builds them)");
        return;
    }
    println!("\ninput-adaptive policies (docs/gates.md, \"Input-adaptive gating\"):");
    let mut rows = Vec::new();
    for p in policies {
        if let Some(c) = &p.cascade {
            for (k, s) in c.stages.iter().enumerate() {
                rows.push(vec![
                    if k == 0 {
                        p.class.clone()
                    } else {
                        String::new()
                    },
                    if k == 0 {
                        "cascade".into()
                    } else {
                        String::new()
                    },
                    format!("stage {k}"),
                    slashed(s),
                    c.thresholds
                        .get(k)
                        .map_or("final".into(), |t| format!("final when margin ≥ {t}")),
                ]);
            }
        }
        if let Some(n) = p.network.as_ref().map(PreparedGate::net) {
            let shape = format!(
                "{}×{} grid per channel{}, {} hidden, {} weights, shift {}",
                n.grid,
                n.grid,
                match n.row_step {
                    1 => String::new(),
                    s => format!(" (1 row in {s} of each cell)"),
                },
                n.hidden,
                n.w1.len() + n.w2.len(),
                n.shift
            );
            for (k, s) in n.codebook.iter().enumerate() {
                rows.push(vec![
                    if k == 0 && p.cascade.is_none() {
                        p.class.clone()
                    } else {
                        String::new()
                    },
                    if k == 0 {
                        "network".into()
                    } else {
                        String::new()
                    },
                    format!("entry {k}"),
                    slashed(s),
                    if k == 0 { shape.clone() } else { String::new() },
                ]);
            }
        }
    }
    table::print(
        &["class", "policy", "setting", "bits per layer", "rule"],
        &rows,
    );
}
