//! `caq bench --suite mlperf-tiny`: the four MLPerf Tiny reference networks (ResNet-8, DS-CNN,
//! MobileNetV1 0.25, the FC autoencoder) at their benchmark input shapes, with seeded untrained
//! weights quantized nested 8 ⊃ 4 ⊃ 2 on seeded synthetic inputs (the benchmark's data sets are
//! not here), run on the functional device of each config at every level and at a mixed setting:
//! cycles and latency at the config clock, utilization (per layer too), DMA bytes, energy (model),
//! resident weight bytes, host steps. Every output is checked byte for byte against the golden
//! executor. Writes JSON and the Markdown of `docs/results-mlperf-tiny.md` (generated).

use super::adapt;
use super::run::{self, LevelReport, SIM_MEM_BASE};
use anyhow::{Context as _, Result};
use caq_driver::compile;
use caq_model::arch::{self, Arch};
use caq_model::data;
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use caq_spec::{AccelConfig, DeviceAddr, PerfCounters};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Nesting levels of every network's bundle.
const LEVELS: [u8; 3] = [8, 4, 2];
/// Synthetic images the quantizer calibrates on.
const CALIB_IMAGES: usize = 64;

/// The published MLPerf Tiny FPGA results on the PYNQ-Z2's die (xc7z020) the issue sets beside
/// ours, in ms: (network, system, latency, note).
const PUBLISHED: [(&str, &str, f64, &str); 4] = [
    (
        "resnet8",
        "fpgaConvNet, ZedBoard (xc7z020), INT8",
        0.411,
        "143 MHz",
    ),
    ("ds_cnn", "fpgaConvNet, ZedBoard (xc7z020), INT8", 0.324, ""),
    (
        "mobilenet_v1",
        "fpgaConvNet, ZedBoard (xc7z020), INT8",
        9.49,
        "111 MHz",
    ),
    ("resnet8", "hls4ml RN08, PYNQ-Z2", 7.64, ""),
];

/// The suite's options (from `caq bench`).
pub struct Options {
    pub configs: Vec<PathBuf>,
    pub images: usize,
    pub seed: u64,
    pub markdown: PathBuf,
    pub json: PathBuf,
}

#[derive(Serialize)]
struct Row {
    network: String,
    config: String,
    clock_mhz: f64,
    setting: String,
    bits: Vec<u8>,
    images: usize,
    byte_equal_images: usize,
    cycles: f64,
    latency_ms: f64,
    utilization: f64,
    dma_rd_bytes: f64,
    dma_wr_bytes: f64,
    energy_uj: f64,
    dynamic_energy_uj: f64,
    resident_weight_bytes: u64,
    host_bytes: u64,
    host_ops: u64,
    /// Per layer, one descriptor list per layer: (layer, cycles, utilization).
    layers: Vec<(String, u64, f64)>,
}

#[derive(Serialize)]
struct Report {
    seed: u64,
    images: usize,
    levels: Vec<u8>,
    rows: Vec<Row>,
}

/// The mixed setting: the first and last weight layers at the top level, every other at the
/// middle one (a gate's typical shape: the edge layers are the sensitive ones).
fn mixed(q: &QModel) -> Vec<u8> {
    let n = q.weight_layers().len();
    (0..n)
        .map(|i| {
            if i == 0 || i + 1 == n {
                LEVELS[0]
            } else {
                LEVELS[1]
            }
        })
        .collect()
}

fn network(arch: Arch, seed: u64) -> Result<QModel> {
    let (shape, classes) = arch.mlperf_tiny().expect("an MLPerf Tiny network");
    let model = arch::seeded(arch, shape, classes, seed)?;
    let calib = data::synthetic(shape, classes.min(256), CALIB_IMAGES, seed)?;
    let cfg = QuantizeConfig {
        calib_images: CALIB_IMAGES,
        ..QuantizeConfig::nested(&LEVELS)
    };
    qmodel::quantize(&model, &calib, &cfg).with_context(|| format!("quantizing {}", arch.name()))
}

pub fn run(o: &Options) -> Result<()> {
    let mut rows = Vec::new();
    for (name, arch) in Arch::ALL {
        let Some((shape, classes)) = arch.mlperf_tiny() else {
            continue;
        };
        let q = network(arch, o.seed)?;
        let test = data::synthetic(shape, classes.min(256), o.images, o.seed + 1)?;
        let settings: Vec<(String, Vec<u8>)> = LEVELS
            .iter()
            .map(|&b| (format!("{b}-bit"), q.uniform_bits(b)))
            .chain([("mixed".to_string(), mixed(&q))])
            .collect();
        for path in &o.configs {
            let cfg = AccelConfig::load(path)
                .with_context(|| format!("reading config {}", path.display()))?;
            let em = adapt::load_energy(None, &cfg)?;
            let compiled = |opts| {
                compile::compile_with(&q, &cfg, &settings[0].1, DeviceAddr(SIM_MEM_BASE), opts)
                    .with_context(|| format!("compiling {name} for {}", cfg.name))
            };
            let host_steps = |p: &compile::Program| {
                p.steps
                    .iter()
                    .filter(|s| matches!(s, compile::Step::Host(_)))
                    .count()
            };
            // The default compile, and, where it leaves host steps the device can take, the
            // network as one list with the constant-weight layers (docs/hardware.md).
            let one_list = compile::CompileOptions {
                gap_on_device: true,
                add_on_device: true,
                avg_pool_on_device: true,
                max_pool_on_device: true,
            };
            let default = compiled(compile::CompileOptions::default())?;
            let mut programs = vec![("", default)];
            let single = compiled(one_list)?;
            if host_steps(&single) < host_steps(&programs[0].1) {
                programs.push((" one list", single));
            }
            for (variant, mut program) in programs {
                let resident = program.weight_bytes();
                let mut dev = caq_sim::FuncDevice::new(&cfg, run::sim_memory(&program))?;
                program.load(&mut dev)?;
                for (label, bits) in &settings {
                    let label = format!("{label}{variant}");
                    let r: LevelReport = run::device_level(&mut dev, &mut program, &q, bits, &test)
                        .with_context(|| format!("{name} on {} at {label}", cfg.name))?;
                    let d = r.device.as_ref().expect("a device run has counters");
                    let perf = PerfCounters {
                        cycles: d.cycles.round() as u64,
                        busy_cycles: d.busy_cycles.round() as u64,
                        stall_cycles: 0,
                        plane_ops: d.plane_ops.round() as u64,
                        bytes_rd: d.bytes_rd.round() as u64,
                        bytes_wr: d.bytes_wr.round() as u64,
                    };
                    let e = em.estimate(&cfg, &perf);
                    let host = r.host.unwrap_or_default();
                    rows.push(Row {
                        network: name.to_string(),
                        config: cfg.name.clone(),
                        clock_mhz: cfg.clock_mhz,
                        setting: label.clone(),
                        bits: r.bits.clone(),
                        images: r.images,
                        byte_equal_images: r.byte_equal_images,
                        cycles: d.cycles,
                        latency_ms: d.cycles / (cfg.clock_mhz * 1e3),
                        utilization: d.utilization,
                        dma_rd_bytes: d.bytes_rd,
                        dma_wr_bytes: d.bytes_wr,
                        energy_uj: e.total_j * 1e6,
                        dynamic_energy_uj: e.dynamic_j * 1e6,
                        resident_weight_bytes: resident,
                        host_bytes: host.bytes_read + host.bytes_written,
                        host_ops: host.ops,
                        layers: r
                            .layers
                            .iter()
                            .map(|l| (l.layer.clone(), l.cycles, l.utilization))
                            .collect(),
                    });
                    eprintln!(
                        "{name:>12} {:>9} {label:>6}: {:.3} ms, {}/{} equal to golden",
                        cfg.name,
                        d.cycles / (cfg.clock_mhz * 1e3),
                        r.byte_equal_images,
                        r.images
                    );
                }
            }
        }
    }
    let report = Report {
        seed: o.seed,
        images: o.images,
        levels: LEVELS.to_vec(),
        rows,
    };
    super::write_json(&o.json, &report)?;
    let md = markdown(&report, &o.configs);
    caq_model::store::write_bytes_atomic(&o.markdown, md.as_bytes())
        .with_context(|| format!("writing --markdown {}", o.markdown.display()))?;
    print!("{}", table_text(&report));
    println!(
        "\nreport written to {} and {}",
        o.markdown.display(),
        o.json.display()
    );
    Ok(())
}

const COLUMNS: [&str; 11] = [
    "network",
    "config",
    "setting",
    "= golden",
    "cycles",
    "latency ms",
    "util %",
    "DMA rd B",
    "DMA wr B",
    "energy µJ (dyn)",
    "host B / ops",
];

fn cells(r: &Row) -> Vec<String> {
    vec![
        r.network.clone(),
        r.config.clone(),
        r.setting.clone(),
        format!("{}/{}", r.byte_equal_images, r.images),
        format!("{:.0}", r.cycles),
        format!("{:.3}", r.latency_ms),
        format!("{:.1}", r.utilization * 100.0),
        format!("{:.0}", r.dma_rd_bytes),
        format!("{:.0}", r.dma_wr_bytes),
        format!("{:.1} ({:.1})", r.energy_uj, r.dynamic_energy_uj),
        format!("{} / {}", r.host_bytes, r.host_ops),
    ]
}

fn table_text(r: &Report) -> String {
    let rows: Vec<Vec<String>> = r.rows.iter().map(cells).collect();
    super::table::render(&COLUMNS, &rows)
}

fn markdown(r: &Report, configs: &[PathBuf]) -> String {
    let mut md = String::new();
    let names: Vec<String> = configs
        .iter()
        .map(|p| {
            p.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        })
        .collect();
    let _ = writeln!(
        md,
        "<!-- Generated by `caq bench --suite mlperf-tiny` (host/src/cli/tiny.rs); do not edit. -->\n\n\
         # MLPerf Tiny reference networks on caq\n\n\
         The four MLPerf Tiny networks (`caq_model::arch`) at their benchmark input shapes with \
         **seeded untrained weights** (Kaiming-uniform, seed {seed}) quantized nested {levels} on \
         {calib} **synthetic** calibration images, run on the functional device of {configs} \
         ({images} synthetic images per setting, every output byte-equal to the golden executor). \
         Latency is cycles at the config clock from the functional device's timing model; \
         energy is the energy model's (docs/energy.md). Accuracy is not applicable: the \
         benchmark's data sets are not here. `mixed` runs the first and last weight layers at 8 \
         bits and the others at 4. Host steps are the operators the default compile leaves to \
         the host: the residual add, and a global average pool on a device without \
         CAPS0.GLOBAL_POOL (pynq-z2; docs/hardware.md, \"Global average pooling on the result \
         path\") or after a host step. Rows marked `one list` compile the same network with \
         `--add-on-device --gap-on-device --avg-pool-on-device --max-pool-on-device` (docs/hardware.md, \"Residual adds as layers\" and \
         \"Global average pooling by constant-weight layers\"): no host step, at the array's \
         cost.\n",
        seed = r.seed,
        levels = r
            .levels
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(" ⊃ "),
        calib = CALIB_IMAGES,
        configs = names.join(" and "),
        images = r.images,
    );
    let _ = writeln!(md, "| {} |", COLUMNS.join(" | "));
    let _ = writeln!(md, "|{}", " --- |".repeat(COLUMNS.len()));
    for row in &r.rows {
        let _ = writeln!(md, "| {} |", cells(row).join(" | "));
    }
    let _ = writeln!(
        md,
        "\n## Beside the published MLPerf Tiny FPGA results on the same die\n\n\
         | network | system | latency ms | note |\n| --- | --- | ---: | --- |"
    );
    for (net, system, ms, note) in PUBLISHED {
        let _ = writeln!(md, "| {net} | {system} | {ms} | {note} |");
    }
    for net in ["resnet8", "ds_cnn", "mobilenet_v1"] {
        for row in r
            .rows
            .iter()
            .filter(|x| x.network == net && x.config == "pynq-z2")
        {
            let _ = writeln!(
                md,
                "| {net} | caq pynq-z2, {} ({} MHz) | {:.3} | functional device, untrained weights |",
                row.setting, row.clock_mhz, row.latency_ms
            );
        }
    }
    let _ = writeln!(md, "\n## Per layer (one descriptor list per layer)\n");
    for row in &r.rows {
        let _ = writeln!(
            md,
            "- **{} on {}, {}**: {}",
            row.network,
            row.config,
            row.setting,
            row.layers
                .iter()
                .map(|(l, c, u)| format!("{l} {c} cyc {:.0} %", u * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    md
}

/// The default Markdown report.
pub fn default_markdown() -> PathBuf {
    PathBuf::from("docs/results-mlperf-tiny.md")
}
