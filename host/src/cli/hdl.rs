//! `caq hdl ...`: generate, lint, synthesize and time the accelerator's RTL (a thin layer over
//! caq-hdl).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use caq_hdl::{NameSource, Part, SynthReport, TimingReport};
use caq_spec::AccelConfig;
use clap::{Args, Subcommand};

use super::table;

#[derive(Args, Debug)]
pub struct HdlArgs {
    #[command(subcommand)]
    command: HdlCommand,
}

#[derive(Subcommand, Debug)]
enum HdlCommand {
    /// Write the Verilog of a config and its manifest.json into a directory.
    Generate(GenerateArgs),
    /// `verilator --lint-only -Wall` the generated RTL; fails on any warning.
    Lint(LintArgs),
    /// Synthesize with Yosys `synth_xilinx` and print resources against the part.
    Synth(SynthArgs),
    /// Synthesize and time the netlist with Yosys `sta`: the worst logic path (cell delays of
    /// Yosys' Xilinx library, no routing), its start and end by RTL name, its LUT depth.
    Timing(TimingArgs),
    /// Write a board's Vivado build: build.tcl, rtl/*.v, constraints.xdc and a README.
    Vivado(VivadoArgs),
    /// Write the board's device-tree overlay (.dtso): the accelerator as generic-uio with its
    /// interrupt, and a u-dma-buf region sized from the largest model.
    Overlay(OverlayArgs),
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Accelerator config (configs/*.toml).
    #[arg(long)]
    config: PathBuf,
    /// Output directory (created if missing; files in it are replaced).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct VivadoArgs {
    /// Accelerator config of a real board (configs/pynq-z2.toml, configs/zcu104.toml).
    #[arg(long)]
    config: PathBuf,
    /// Output directory (created if missing; files in it are replaced).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct LintArgs {
    /// Accelerator config; default: every configs/*.toml.
    #[arg(long)]
    config: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Accelerator config (configs/*.toml).
    #[arg(long)]
    config: PathBuf,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Fail unless every resource fits the part and at least this percentage of LUTs stays free.
    #[arg(long, value_name = "PERCENT", value_parser = super::percent)]
    require_headroom: Option<f64>,
    /// Also time the netlist with `sta` in the same Yosys run (as `hdl timing`), and fail when the
    /// worst logic path is longer than NS nanoseconds.
    #[arg(long, value_name = "NS", value_parser = budget_ns, allow_hyphen_values = true)]
    require_ns: Option<f64>,
    /// Also synthesize without flattening and print each module's resources (one more Yosys run;
    /// the budgets are checked against the flattened netlist).
    #[arg(long)]
    per_module: bool,
}

#[derive(Args, Debug)]
struct TimingArgs {
    /// Accelerator config (configs/*.toml).
    #[arg(long, required_unless_present = "report")]
    config: Option<PathBuf>,
    /// Read a report written earlier by --json (of `hdl timing` or `hdl synth --require-ns`)
    /// instead of running Yosys.
    #[arg(long, conflicts_with = "config")]
    report: Option<PathBuf>,
    /// Also write the report as JSON: the resources of `hdl synth` and a `timing` object.
    #[arg(long, conflicts_with = "report")]
    json: Option<PathBuf>,
    /// Fail when the worst logic path is longer than NS nanoseconds.
    #[arg(long, value_name = "NS", value_parser = budget_ns, allow_hyphen_values = true)]
    require_ns: Option<f64>,
}

/// A timing budget: a positive, finite number of nanoseconds.
fn budget_ns(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ns) if ns.is_finite() && ns > 0.0 => Ok(ns),
        _ => Err(format!(
            "the budget is a positive, finite number of nanoseconds (such as 5 or 7.5), not '{text}'"
        )),
    }
}

#[derive(Args, Debug)]
struct OverlayArgs {
    /// Accelerator config of a real board (configs/pynq-z2.toml, configs/zcu104.toml, or
    /// configs/zcu104-hpc.toml for the DMA master on the I/O-coherent port: its `axi.coherence`
    /// decides `dma-coherent`).
    #[arg(long)]
    config: PathBuf,
    /// Size the u-dma-buf region for these models (.caqb): the largest one's device memory plus
    /// room for buffers, rounded up to a power of two.
    #[arg(long)]
    bundle: Vec<PathBuf>,
    /// The u-dma-buf size in bytes (a power of two, at least 1 MiB) instead of --bundle; default
    /// 16 MiB.
    #[arg(long, value_name = "BYTES", conflicts_with = "bundle")]
    udmabuf_size: Option<u64>,
    /// Output .dtso file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: HdlArgs) -> Result<()> {
    match args.command {
        HdlCommand::Generate(a) => generate(a),
        HdlCommand::Lint(a) => lint(a),
        HdlCommand::Synth(a) => synth(a),
        HdlCommand::Timing(a) => timing(a),
        HdlCommand::Vivado(a) => vivado(a),
        HdlCommand::Overlay(a) => overlay(a),
    }
}

fn load(path: &Path) -> Result<(AccelConfig, caq_hdl::Design)> {
    let cfg = AccelConfig::load(path)?;
    let design = caq_hdl::generate(&cfg)
        .with_context(|| format!("generating RTL for {}", path.display()))?;
    Ok((cfg, design))
}

fn generate(a: GenerateArgs) -> Result<()> {
    let (cfg, design) = load(&a.config)?;
    design
        .write(&a.out)
        .with_context(|| format!("writing the RTL of {}", a.config.display()))?;
    println!(
        "{}: config '{}' (hash {}) -> {} ({} files + manifest.json, top {})",
        a.config.display(),
        cfg.name,
        design.config_hash,
        a.out.display(),
        design.files.len(),
        design.top
    );
    Ok(())
}

fn overlay(a: OverlayArgs) -> Result<()> {
    use caq_hdl::devicetree::{self, OverlayOptions};
    let cfg = AccelConfig::load(&a.config)?;
    let mut largest: Option<(u64, &Path)> = None;
    for path in &a.bundle {
        let q = caq_model::bundle::Bundle::open(path)
            .and_then(|b| b.load())
            .with_context(|| format!("reading {}", path.display()))?;
        let bytes = caq_driver::compile::device_bytes(&q, &cfg)
            .with_context(|| format!("compiling {} for {}", path.display(), a.config.display()))?;
        println!("{}: {bytes} bytes of device memory", path.display());
        if largest.is_none_or(|(b, _)| bytes > b) {
            largest = Some((bytes, path));
        }
    }
    let udmabuf_bytes = match (a.udmabuf_size, largest) {
        (Some(n), _) => n,
        (None, Some((bytes, _))) => devicetree::udmabuf_bytes_for(bytes),
        (None, None) => devicetree::DEFAULT_UDMABUF_BYTES,
    };
    let opts = OverlayOptions {
        uio_name: caq_driver::accel::DEFAULT_UIO_NAME.into(),
        udmabuf_name: caq_driver::accel::DEFAULT_UDMABUF.into(),
        udmabuf_bytes,
    };
    let text = devicetree::overlay(&cfg, &opts)
        .with_context(|| format!("device-tree overlay for {}", a.config.display()))?;
    caq_spec::fsio::write_atomic(&a.out, text.as_bytes())
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{}: board {} -> {} (u-dma-buf '{}' of {udmabuf_bytes} bytes{}{})",
        a.config.display(),
        cfg.board.as_str(),
        a.out.display(),
        opts.udmabuf_name,
        if cfg.axi.coherence.dma_coherent() {
            ", dma-coherent"
        } else {
            ""
        },
        largest
            .map(|(_, p)| format!(", sized for {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

fn vivado(a: VivadoArgs) -> Result<()> {
    let (cfg, design) = load(&a.config)?;
    let flow = caq_hdl::vivado(&cfg, &design)
        .with_context(|| format!("generating the Vivado flow of {}", a.config.display()))?;
    flow.write(&design, &a.out)
        .with_context(|| format!("writing the Vivado flow of {}", a.config.display()))?;
    println!(
        "{}: config '{}' (hash {}), board {} -> {}: {}, {}/ ({} files), {}, {}",
        a.config.display(),
        cfg.name,
        design.config_hash,
        cfg.board.as_str(),
        a.out.display(),
        caq_hdl::vivado::SCRIPT,
        caq_hdl::vivado::RTL_DIR,
        design.files.len(),
        caq_hdl::vivado::XDC,
        caq_hdl::vivado::README
    );
    println!(
        "run: cd {} && vivado -mode batch -source {} (written against Vivado {}; not run here)",
        a.out.display(),
        caq_hdl::vivado::SCRIPT,
        caq_hdl::vivado::VIVADO_VERSION
    );
    Ok(())
}

/// `configs/*.toml`, sorted.
fn all_configs() -> Result<Vec<PathBuf>> {
    let dir = Path::new("configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "listing {} (run from the repo root or pass --config)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no accelerator configs in {}", dir.display());
    }
    Ok(paths)
}

fn lint(a: LintArgs) -> Result<()> {
    let paths = if a.config.is_empty() {
        all_configs()?
    } else {
        a.config
    };
    let mut dirty = Vec::new();
    for path in &paths {
        let (_, design) = load(path)?;
        let report =
            caq_hdl::lint(&design).with_context(|| format!("linting {}", path.display()))?;
        if report.is_clean() {
            println!("{}: clean", path.display());
        } else {
            println!("{}: {} warning(s)", path.display(), report.warnings.len());
            for w in &report.warnings {
                println!("  {w}");
            }
            dirty.push(path.display().to_string());
        }
    }
    if !dirty.is_empty() {
        bail!("verilator -Wall warnings in {}", dirty.join(", "));
    }
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    let (cfg, design) = load(&a.config)?;
    let part = Part::for_board(cfg.board);
    let timed = a.require_ns.is_some();
    let mut report = if timed {
        caq_hdl::synth_with_timing(&design, &part)
    } else {
        caq_hdl::synth(&design, &part)
    }
    .with_context(|| format!("synthesizing {}", a.config.display()))?;
    if a.per_module {
        report.modules = caq_hdl::synth_modules(&design, &part)
            .with_context(|| format!("synthesizing {} module by module", a.config.display()))?;
    }
    println!(
        "{}: config '{}' (hash {}), yosys synth_xilinx -family {}{} in {:.1} s",
        a.config.display(),
        cfg.name,
        design.config_hash,
        part.family.as_str(),
        if timed { " + sta" } else { "" },
        report.seconds
    );
    print_table(&report);
    if !report.modules.is_empty() {
        print_modules(&report);
    }
    if let Some(t) = &report.timing {
        print_timing(t);
    }
    if let Some(path) = &a.json {
        super::write_json(path, &report)?;
    }
    let mut failures = Vec::new();
    if let Some(min) = a.require_headroom {
        if report.fits_with_headroom(min) {
            println!(
                "fits {} with {:.1}% LUT headroom (required {min}%)",
                part.name,
                report.lut_headroom_pct()
            );
        } else {
            failures.push(format!(
                "does not fit {} with {min}% LUT headroom (LUT {:.1}% used, FF {:.1}%, BRAM36 \
                 {:.1}%, DSP {:.1}%)",
                part.name,
                report.utilisation.lut_pct,
                report.utilisation.ff_pct,
                report.utilisation.bram36_pct,
                report.utilisation.dsp_pct
            ));
        }
    }
    if let Some(budget) = a.require_ns {
        failures.extend(check_budget(&report, budget)?);
    }
    if !failures.is_empty() {
        bail!("{}: {}", a.config.display(), failures.join("; "));
    }
    Ok(())
}

fn timing(a: TimingArgs) -> Result<()> {
    let (source, report) = match (&a.report, &a.config) {
        (Some(path), _) => (path, read_report(path)?),
        (None, Some(config)) => (config, synth_and_time(config)?),
        (None, None) => bail!("pass --config (run Yosys) or --report (a saved report)"),
    };
    let t = report.timing.as_ref().with_context(|| {
        format!(
            "{}: the report has no `timing` (written by `hdl synth` without --require-ns?)",
            source.display()
        )
    })?;
    print_timing(t);
    if let Some(path) = &a.json {
        super::write_json(path, &report)?;
    }
    if let Some(budget) = a.require_ns
        && let Some(failure) = check_budget(&report, budget)?
    {
        bail!("{}: {failure}", source.display());
    }
    Ok(())
}

/// The hierarchical run's table: per module, its instances and the cells of all of them.
fn print_modules(report: &SynthReport) {
    println!(
        "\nper module (synth_xilinx without -flatten; every instance counted, submodules apart):"
    );
    println!(
        "{:<16} {:>5} {:>7} {:>6} {:>7} {:>6} {:>6} {:>7} {:>4}",
        "module", "inst", "LUT", "LUT %", "FF", "CARRY", "MUXF", "BRAM36", "DSP"
    );
    let row = |name: &str, inst: String, r: &caq_hdl::Resources| {
        println!(
            "{:<16} {:>5} {:>7} {:>5.1}% {:>7} {:>6} {:>6} {:>7.1} {:>4}",
            name,
            inst,
            r.lut,
            100.0 * r.lut as f64 / report.part.lut as f64,
            r.ff,
            r.carry,
            r.muxf,
            r.bram36,
            r.dsp
        );
    };
    let mut total = caq_hdl::Resources::default();
    for m in &report.modules {
        let r = m.each.times(m.instances);
        row(&m.module, m.instances.to_string(), &r);
        total.add(r);
    }
    row("sum", String::new(), &total);
}

/// One Yosys run: synthesis and `sta`; prints the run and the resources in one line each.
fn synth_and_time(config: &Path) -> Result<SynthReport> {
    let (cfg, design) = load(config)?;
    let part = Part::for_board(cfg.board);
    let report = caq_hdl::synth_with_timing(&design, &part)
        .with_context(|| format!("timing {}", config.display()))?;
    println!(
        "{}: config '{}' (hash {}), yosys synth_xilinx -family {} + sta in {:.1} s",
        config.display(),
        cfg.name,
        design.config_hash,
        part.family.as_str(),
        report.seconds
    );
    let u = &report.utilisation;
    println!(
        "resources of {}: LUT {} ({:.1}%), FF {} ({:.1}%), BRAM36 {} ({:.1}%), DSP {} ({:.1}%)",
        part.name,
        report.lut,
        u.lut_pct,
        report.ff,
        u.ff_pct,
        report.bram36,
        u.bram36_pct,
        report.dsp,
        u.dsp_pct
    );
    Ok(report)
}

/// A report written by `--json`, read back instead of running Yosys again.
fn read_report(path: &Path) -> Result<SynthReport> {
    let text = caq_spec::fsio::read_regular_to_string(path)
        .with_context(|| format!("reading --report {}", path.display()))?;
    let report: SynthReport = serde_json::from_str(&text).with_context(|| {
        format!(
            "--report {}: not a report written by `caq hdl timing --json`",
            path.display()
        )
    })?;
    println!(
        "{}: report of config hash {} on {} (from a yosys run of {:.1} s, not repeated)",
        path.display(),
        report.config_hash,
        report.part.name,
        report.seconds
    );
    Ok(report)
}

/// `None` when the worst path fits in `budget` ns (and says so), else what is too slow.
fn check_budget(report: &SynthReport, budget: f64) -> Result<Option<String>> {
    let t = report
        .timing
        .as_ref()
        .context("the report has no timing to check --require-ns against")?;
    if t.meets(budget) {
        println!(
            "worst logic path {:.3} ns within the {budget} ns budget ({:.3} ns to spare)",
            t.worst_ns,
            budget - t.worst_ns
        );
        return Ok(None);
    }
    Ok(Some(format!(
        "worst logic path {:.3} ns exceeds the {budget} ns budget: {} -> {}, {} LUTs deep",
        t.worst_ns, t.start, t.end, t.lut_depth
    )))
}

fn print_timing(t: &TimingReport) {
    println!(
        "worst logic path (yosys sta: Yosys' Xilinx cell delays, no routing): {:.3} ns, {} LUTs deep",
        t.worst_ns, t.lut_depth
    );
    let named_by = |n: NameSource| match n {
        NameSource::Port => "port",
        NameSource::DrivenWire => "RTL wire it drives",
        NameSource::CellName => "cell name",
        NameSource::SourceLine => "RTL source line",
        NameSource::Internal => "Yosys name (no RTL name left)",
    };
    println!("  start: {}  [{}]", t.start, named_by(t.start.named_by));
    println!("  end:   {}  [{}]", t.end, named_by(t.end.named_by));
    let cells: Vec<String> = t
        .cells_on_path
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    println!("  cells on the path: {}", cells.join(", "));
    println!("  path (arrival ps, cell.arc, net driven):");
    for step in &t.path {
        let arc = if step.pins.is_empty() {
            step.cell_type.clone()
        } else {
            format!("{}.{}", step.cell_type, step.pins)
        };
        let net = step.net.as_deref().unwrap_or("(endpoint)");
        println!("  {:>7}  {arc:<18} {net}", step.arrival_ps);
    }
}

fn print_table(r: &SynthReport) {
    let row = |name: &str, used: f64, cap: u64, pct: f64| {
        vec![
            name.to_owned(),
            format!("{used}"),
            cap.to_string(),
            format!("{pct:.2}%"),
            format!("{:.2}%", 100.0 - pct),
        ]
    };
    let u = &r.utilisation;
    let rows = vec![
        row("LUT", r.lut as f64, r.part.lut, u.lut_pct),
        row("FF", r.ff as f64, r.part.ff, u.ff_pct),
        row("BRAM36", r.bram36, r.part.bram36, u.bram36_pct),
        row("DSP", r.dsp as f64, r.part.dsp, u.dsp_pct),
    ];
    let cap = format!("{} capacity", r.part.name);
    table::print(&["resource", "used", &cap, "used %", "headroom"], &rows);
    println!(
        "longest combinational path (ltp; registers, RAMs and DSPs end paths): {} cells",
        r.ltp_length
    );
}
