//! Verilator lint and Yosys synthesis of the generated RTL. These need the tools on PATH: without
//! them a test prints a note and passes, except under CI (`CI=true`), where it fails.

mod common;

use caq_hdl::{Family, NameSource, Part, generate, lint, synth_modules, synth_with_timing};
use caq_spec::AccelConfig;

#[test]
fn lint_is_clean_for_every_config() {
    if !common::tool_or_skip("verilator", "lint_is_clean_for_every_config") {
        return;
    }
    for path in common::config_paths() {
        let cfg = AccelConfig::load(&path).unwrap();
        let design = generate(&cfg).unwrap();
        let report = lint(&design).unwrap();
        assert!(
            report.is_clean(),
            "{}: {}\n{}",
            path.display(),
            report.command,
            report.warnings.join("\n")
        );
    }
}

#[test]
fn lint_reads_a_written_directory_and_reports_warnings() {
    if !common::tool_or_skip(
        "verilator",
        "lint_reads_a_written_directory_and_reports_warnings",
    ) {
        return;
    }
    let mut design = generate(&common::load("sim-small")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    design.write(dir.path()).unwrap();
    assert!(lint(dir.path()).unwrap().is_clean());

    // An unused, undriven wire must be reported, not waived.
    let top = design
        .files
        .iter_mut()
        .find(|f| f.name == "caq_top.v")
        .unwrap();
    top.text = top
        .text
        .replace("\nendmodule\n", "\n    wire stray;\n\nendmodule\n");
    let report = lint(&design).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("stray")),
        "{:?}",
        report.warnings
    );
}

/// One flattened Yosys run gives both reports (resources and timing); the per-module run goes
/// beside it.
#[test]
fn synth_of_sim_small_reports_resources_depth_and_a_named_worst_path() {
    if !common::tool_or_skip(
        "yosys",
        "synth_of_sim_small_reports_resources_depth_and_a_named_worst_path",
    ) {
        return;
    }
    let cfg = common::load("sim-small");
    let design = generate(&cfg).unwrap();
    let part = Part::for_board(cfg.board);
    assert_eq!(part.family, Family::Xc7);
    // The flattened and the per-module runs are two Yosys processes (each single-threaded): run
    // them side by side.
    let (report, modules) = std::thread::scope(|s| {
        let per_module = s.spawn(|| synth_modules(&design, &part));
        let flat = synth_with_timing(&design, &part);
        (
            flat,
            per_module.join().expect("the per-module run's thread"),
        )
    });
    let (report, modules) = (report.unwrap(), modules.unwrap());
    assert!(report.lut > 0 && report.ff > 0, "{report:?}");
    assert!(report.ltp_length > 0, "{report:?}");
    assert!(report.utilisation.lut_pct > 0.0 && report.utilisation.lut_pct < 100.0);
    assert!(report.fits_with_headroom(20.0), "{report:?}");
    assert_eq!(report.config_hash, design.config_hash.to_string());

    let t = report
        .timing
        .as_ref()
        .expect("synth_with_timing sets timing");
    assert!(t.worst_ns > 0.0, "{t:?}");
    assert!(t.lut_depth >= 1, "{t:?}");
    // Both ends carry an RTL name: a register's, a memory's, a source line or a port.
    for end in [&t.start, &t.end] {
        assert_ne!(end.named_by, NameSource::Internal, "{end}");
        assert!(!end.name.starts_with('$'), "{end}");
    }
    assert_eq!(
        t.path.last().unwrap().arrival_ps as f64 / 1000.0,
        t.worst_ns
    );
    let luts: u32 = t
        .cells_on_path
        .iter()
        .filter(|(c, _)| c.starts_with("LUT"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(luts, t.lut_depth);

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["part"]["name"], "xc7z020");
    assert_eq!(json["timing"]["worst_ns"], t.worst_ns);
    assert_eq!(json["timing"]["start"]["name"], t.start.name.as_str());

    // Module by module: every generated module once, the top first with one instance, the
    // requantizers as many as the result stage holds (R/2), and the sums of the hierarchical
    // run near the flattened counts (cross-module optimization only trims a little: on sim-small
    // it maps two small constant products to LUTs, 30 DSPs flattened against 32).
    let mut names: Vec<&str> = modules.iter().map(|m| m.module.as_str()).collect();
    assert_eq!(names[0], design.top);
    assert_eq!(modules[0].instances, 1);
    names.sort_unstable();
    let mut files: Vec<String> = design
        .files
        .iter()
        .map(|f| f.name.trim_end_matches(".v").to_owned())
        .collect();
    files.sort_unstable();
    assert_eq!(names, files);
    let requant = modules.iter().find(|m| m.module == "caq_requant").unwrap();
    // R/2 units for the items' two phases, and one for the global pooling's means.
    assert_eq!(requant.instances, u64::from(cfg.array.rows.div_ceil(2)) + 1);
    let sum: u64 = modules.iter().map(|m| m.instances * m.each.lut).sum();
    let dsp: u64 = modules.iter().map(|m| m.instances * m.each.dsp).sum();
    assert!(
        dsp.abs_diff(report.dsp) <= (report.dsp / 10).max(2),
        "hierarchical {dsp} DSPs against flattened {}: {modules:?}",
        report.dsp
    );
    assert!(
        sum >= report.lut * 95 / 100 && sum <= report.lut * 110 / 100,
        "hierarchical {sum} LUTs against flattened {}",
        report.lut
    );
}
