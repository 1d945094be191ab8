//! `caq import` (ONNX → caq float model) and `caq export` (caq float model → ONNX): thin over
//! caq-onnx, which owns the operator mapping and every error message.

use super::write_json;
use anyhow::{Context, Result};
use caq_model::graph::FloatModel;
use caq_onnx::import::Action;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The ONNX model: float32, one input [N, C, H, W] or [N, F], ai.onnx opset 7..=22.
    model: PathBuf,
    /// Where the caq float model is written (atomically; nothing is written on error).
    #[arg(long, default_value = "out/model.caqf")]
    out: PathBuf,
    /// Also write the import report (the operator table) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The caq float model (from `caq train` or `caq import`).
    #[arg(long)]
    model: PathBuf,
    /// Where the ONNX model is written (opset 13, atomically).
    #[arg(long)]
    out: PathBuf,
}

pub fn import(a: ImportArgs) -> Result<()> {
    let json: Vec<(&str, &Path)> = a.json.iter().map(|j| ("--json", j.as_path())).collect();
    super::check_outputs(
        &[("the ONNX model", a.model.as_path())],
        &[&[("--out", a.out.as_path())][..], &json].concat(),
    )?;
    let (model, report) = caq_onnx::import_with_report(&a.model)
        .with_context(|| format!("importing {}", a.model.display()))?;
    println!(
        "{}: ONNX IR {}, ai.onnx opset {}, producer '{}'; input '{}' is caq {:?} (C, H, W)",
        a.model.display(),
        report.ir_version,
        report.opset,
        report.producer,
        report.input,
        report.input_shape
    );
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.onnx_node.clone(),
                n.op_type.clone(),
                match n.action {
                    Action::Node => "node",
                    Action::Folded => "folded",
                    Action::Skipped => "skipped",
                }
                .to_string(),
                n.caq_node.clone().unwrap_or_else(|| "-".into()),
                n.detail.clone(),
            ]
        })
        .collect();
    print_left(&["onnx node", "op", "caq", "caq node", "what"], &rows);
    let params = model.param_count();
    println!(
        "caq graph: {} nodes, {} weight layers, {params} parameters, output {:?}",
        model.graph.nodes.len(),
        model.graph.weight_layers().len(),
        model.graph.output_shape()?
    );
    model
        .save(&a.out)
        .with_context(|| format!("writing --out {}", a.out.display()))?;
    println!("float model written to {}", a.out.display());
    if let Some(j) = &a.json {
        write_json(j, &report)?;
    }
    Ok(())
}

pub fn export(a: ExportArgs) -> Result<()> {
    super::check_outputs(
        &[("--model", a.model.as_path())],
        &[("--out", a.out.as_path())],
    )?;
    let model = FloatModel::load(&a.model)
        .with_context(|| format!("reading --model {}", a.model.display()))?;
    caq_onnx::export_file(&model, &a.out)
        .with_context(|| format!("exporting to {}", a.out.display()))?;
    println!(
        "{} nodes written to {} (ONNX opset {}, IR version {})",
        model.graph.nodes.len(),
        a.out.display(),
        caq_onnx::export::EXPORT_OPSET,
        caq_onnx::export::EXPORT_IR_VERSION
    );
    Ok(())
}

/// A text table with every column left-aligned (names, unlike `table::print`'s numbers).
fn print_left(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(width.iter().map(|&w| "-".repeat(w)).collect());
    for r in rows {
        line(r.clone());
    }
}
