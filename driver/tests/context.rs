//! The context probe on fake sysfs/procfs trees, context traces in JSON and CSV, context
//! policies, and the gate selector's hysteresis.

use std::path::{Path, PathBuf};

use caq_driver::context::{
    Context, ContextError, ContextPolicy, ContextProbe, ContextTrace, GateSelector, MIB,
    ProbeOptions, TracePoint,
};
use caq_driver::fake::FakeSys;
use caq_driver::sys::SysRoot;

fn fake() -> (tempfile::TempDir, FakeSys, ContextProbe) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeSys::new(dir.path());
    let probe = ContextProbe::new(SysRoot::new(dir.path()));
    (dir, fake, probe)
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

// ---- The probe ----

#[test]
fn a_full_tree_fills_every_probed_field() {
    let (_dir, fake, mut probe) = fake();
    fake.mains("AC", false).unwrap();
    fake.battery("BAT0", 64, "Discharging", 6_400_000).unwrap();
    fake.meminfo(300 * 1024).unwrap();
    fake.cgroup("/system.slice/app.service", Some(256 * MIB), 100 * MIB)
        .unwrap();
    fake.thermal_zone(0, 48_500).unwrap();
    fake.thermal_zone(1, 61_250).unwrap();
    fake.thermal_zone(2, -5_000).unwrap();
    let ctx = probe.probe();
    assert_eq!(probe.warnings(), &[] as &[String]);
    assert_eq!(
        ctx,
        Context {
            battery_pct: Some(64.0),
            battery_status: Some("Discharging".into()),
            battery_energy_uwh: Some(6_400_000),
            on_ac: Some(false),
            mem_available_bytes: Some(300 * MIB),
            cgroup_mem_max: Some(256 * MIB),
            cgroup_mem_current: Some(100 * MIB),
            temp_max_mc: Some(61_250),
            power_w: None,
            latency_budget_ms: None,
        }
    );
    assert_eq!(
        ctx.mem_free_bytes(),
        Some(156 * MIB),
        "the cgroup is tighter"
    );
}

#[test]
fn an_empty_root_is_all_unknown_without_warnings() {
    let (_dir, _fake, mut probe) = fake();
    assert_eq!(probe.probe(), Context::default());
    assert!(probe.warnings().is_empty(), "{:?}", probe.warnings());
    let mut missing = ContextProbe::new(SysRoot::new("/nonexistent/caq-root"));
    assert_eq!(missing.probe(), Context::default());
    assert!(missing.warnings().is_empty());
}

#[test]
fn setters_change_what_the_next_probe_reads() {
    let (_dir, fake, mut probe) = fake();
    let bat = fake.battery("BAT0", 90, "Discharging", 9_000_000).unwrap();
    let ac = fake.mains("AC", false).unwrap();
    let mem = fake.meminfo(400 * 1024).unwrap();
    let cg = fake.cgroup("/app", None, 10 * MIB).unwrap();
    let zone = fake.thermal_zone(0, 40_000).unwrap();
    let before = probe.probe();
    assert_eq!(before.cgroup_mem_max, None, "memory.max = max is no limit");
    assert_eq!(before.cgroup_mem_current, Some(10 * MIB));
    assert_eq!(before.mem_free_bytes(), Some(400 * MIB));
    bat.set_capacity(15).unwrap();
    bat.set_status("Charging").unwrap();
    bat.set_energy_now(1_500_000).unwrap();
    ac.set_online(true).unwrap();
    mem.set_mem_available(100 * 1024).unwrap();
    cg.set_max(Some(64 * MIB)).unwrap();
    cg.set_current(60 * MIB).unwrap();
    zone.set_temp(75_000).unwrap();
    let after = probe.probe();
    assert!(probe.warnings().is_empty(), "{:?}", probe.warnings());
    assert_eq!(after.battery_pct, Some(15.0));
    assert_eq!(after.battery_status.as_deref(), Some("Charging"));
    assert_eq!(after.battery_energy_uwh, Some(1_500_000));
    assert_eq!(after.on_ac, Some(true));
    assert_eq!(after.mem_available_bytes, Some(100 * MIB));
    assert_eq!(after.cgroup_mem_max, Some(64 * MIB));
    assert_eq!(after.mem_free_bytes(), Some(4 * MIB));
    assert_eq!(after.temp_max_mc, Some(75_000));
}

#[test]
fn malformed_files_are_warnings_naming_the_file_and_the_rest_is_read() {
    let (_dir, fake, mut probe) = fake();
    let bat = fake.battery("BAT0", 50, "Full", 5_000_000).unwrap();
    bat.set_attr("capacity", "lots\n").unwrap();
    bat.set_attr("energy_now", "-3\n").unwrap();
    let mem = fake.meminfo(200 * 1024).unwrap();
    mem.set_content("MemTotal: 1000 kB\nMemAvailable: many kB\n")
        .unwrap();
    let cg = fake.cgroup("/app", Some(MIB), 0).unwrap();
    cg.set_attr("memory.max", "unlimited\n").unwrap();
    fake.thermal_zone(0, 50_000).unwrap();
    fake.thermal_zone(1, 0)
        .unwrap()
        .set_attr("temp", "hot\n")
        .unwrap();
    let ctx = probe.probe();
    let w = probe.warnings();
    let root = fake.root().display().to_string();
    let expect = [
        format!(
            "{root}/sys/class/power_supply/BAT0/capacity: expected a percentage 0..=100, found \"lots\""
        ),
        format!(
            "{root}/sys/class/power_supply/BAT0/energy_now: expected µWh as a decimal number, found \"-3\""
        ),
        format!("{root}/proc/meminfo: expected MemAvailable in kB (\"<n> kB\"), found \"many kB\""),
        format!(
            "{root}/sys/fs/cgroup/app/memory.max: expected a byte count or \"max\", found \"unlimited\""
        ),
        format!(
            "{root}/sys/class/thermal/thermal_zone1/temp: expected millidegrees Celsius as an integer, found \"hot\""
        ),
    ];
    assert_eq!(w, &expect, "{w:#?}");
    assert_eq!(ctx.battery_pct, None);
    assert_eq!(ctx.battery_energy_uwh, None);
    assert_eq!(
        ctx.battery_status.as_deref(),
        Some("Full"),
        "read despite the others"
    );
    assert_eq!(ctx.mem_available_bytes, None);
    assert_eq!(ctx.cgroup_mem_max, None);
    assert_eq!(ctx.cgroup_mem_current, Some(0));
    assert_eq!(ctx.temp_max_mc, Some(50_000), "the good zone still counts");
    // The next probe starts afresh.
    bat.set_attr("capacity", "42\n").unwrap();
    bat.set_attr("energy_now", "4200000\n").unwrap();
    mem.set_mem_available(1024).unwrap();
    cg.set_max(None).unwrap();
    fake.thermal_zone(1, 1).unwrap();
    let ctx = probe.probe();
    assert!(probe.warnings().is_empty(), "{:?}", probe.warnings());
    assert_eq!(ctx.battery_pct, Some(42.0));
}

#[test]
fn capacity_out_of_range_is_a_warning_and_energy_stands_in_when_capacity_is_absent() {
    let (_dir, fake, mut probe) = fake();
    let bat = fake.battery("BAT0", 101, "Discharging", 2_500_000).unwrap();
    assert_eq!(
        probe.probe().battery_pct,
        Some(25.0),
        "from energy_now / energy_full"
    );
    assert_eq!(probe.warnings().len(), 1);
    assert!(
        probe.warnings()[0].ends_with("capacity: expected a percentage 0..=100, found \"101\"")
    );
    std::fs::remove_file(bat.dir.join("capacity")).unwrap();
    assert_eq!(probe.probe().battery_pct, Some(25.0));
    assert!(probe.warnings().is_empty());
    std::fs::remove_file(bat.dir.join("energy_full")).unwrap();
    assert_eq!(probe.probe().battery_pct, None);
    assert!(probe.warnings().is_empty());
}

#[test]
fn the_battery_is_the_first_system_battery_by_name_or_the_one_named() {
    let (dir, fake, mut probe) = fake();
    // A wireless mouse's battery (scope Device) sorts first but is not the system's.
    fake.battery("A-mouse", 5, "Discharging", 1_000)
        .unwrap()
        .set_attr("scope", "Device\n")
        .unwrap();
    fake.mains("AC0", false).unwrap();
    fake.battery("BAT1", 70, "Discharging", 7_000_000).unwrap();
    fake.battery("BAT0", 30, "Discharging", 3_000_000).unwrap();
    assert_eq!(probe.probe().battery_pct, Some(30.0));
    let named = ProbeOptions {
        battery: Some("BAT1".into()),
        ..ProbeOptions::default()
    };
    let mut p = ContextProbe::with_options(SysRoot::new(dir.path()), named);
    assert_eq!(p.probe().battery_pct, Some(70.0));
    let absent = ProbeOptions {
        battery: Some("BAT9".into()),
        ..ProbeOptions::default()
    };
    let mut p = ContextProbe::with_options(SysRoot::new(dir.path()), absent);
    let ctx = p.probe();
    assert_eq!(ctx.battery_pct, None);
    assert_eq!(ctx.on_ac, Some(false), "the adapters are still read");
    assert_eq!(p.warnings().len(), 1);
    assert!(
        p.warnings()[0].ends_with(
            "sys/class/power_supply/BAT9: no such power supply (the battery named in the probe options)"
        ),
        "{:?}",
        p.warnings()
    );
}

#[test]
fn external_power_is_any_mains_or_usb_supply_online() {
    let (_dir, fake, mut probe) = fake();
    fake.battery("BAT0", 50, "Discharging", 5_000_000).unwrap();
    assert_eq!(probe.probe().on_ac, None, "no adapter: unknown");
    fake.mains("AC", false).unwrap();
    let usb = fake.mains("usb", false).unwrap();
    usb.set_attr("type", "USB_DCP\n").unwrap();
    assert_eq!(probe.probe().on_ac, Some(false));
    usb.set_online(true).unwrap();
    assert_eq!(probe.probe().on_ac, Some(true));
}

#[test]
fn a_tighter_parent_cgroup_binds_the_child() {
    let (_dir, fake, mut probe) = fake();
    fake.cgroup_at("/sys/fs/cgroup", "/user.slice", Some(128 * MIB), 120 * MIB)
        .unwrap();
    fake.cgroup("/user.slice/app.scope", Some(1024 * MIB), 20 * MIB)
        .unwrap();
    let ctx = probe.probe();
    assert_eq!(
        (ctx.cgroup_mem_max, ctx.cgroup_mem_current),
        (Some(128 * MIB), Some(120 * MIB))
    );
    assert_eq!(ctx.mem_free_bytes(), Some(8 * MIB));
}

#[test]
fn a_cgroup_named_in_the_options_replaces_the_processs_own() {
    let (dir, fake, _) = fake();
    fake.cgroup("/app", Some(512 * MIB), 0).unwrap();
    fake.cgroup_at("/sys/fs/cgroup", "/other", Some(32 * MIB), MIB)
        .unwrap();
    let opts = ProbeOptions {
        cgroup: Some("/other".into()),
        ..ProbeOptions::default()
    };
    let mut p = ContextProbe::with_options(SysRoot::new(dir.path()), opts);
    assert_eq!(p.probe().cgroup_mem_max, Some(32 * MIB));
    let opts = ProbeOptions {
        cgroup: Some("/app/../other".into()),
        ..ProbeOptions::default()
    };
    let mut p = ContextProbe::with_options(SysRoot::new(dir.path()), opts);
    assert_eq!(p.probe().cgroup_mem_max, None);
    assert_eq!(
        p.warnings(),
        ["cgroup \"/app/../other\": expected an absolute cgroup path without '.' or '..'"]
    );
}

#[test]
fn a_hybrid_system_reads_the_unified_mount() {
    let (_dir, fake, mut probe) = fake();
    fake.cgroup_hybrid("/app").unwrap();
    // What a v2-only layout would hold must not be read: the v2 hierarchy is elsewhere.
    fake.cgroup_at("/sys/fs/cgroup", "/app", Some(MIB), 0)
        .unwrap();
    fake.cgroup_at("/sys/fs/cgroup/unified", "/app", Some(48 * MIB), 8 * MIB)
        .unwrap();
    let ctx = probe.probe();
    assert!(probe.warnings().is_empty(), "{:?}", probe.warnings());
    assert_eq!(
        (ctx.cgroup_mem_max, ctx.cgroup_mem_current),
        (Some(48 * MIB), Some(8 * MIB))
    );
    // Only cgroup v1: no limit is read.
    fake.write(
        "proc/self/mountinfo",
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n",
    )
    .unwrap();
    let ctx = probe.probe();
    assert_eq!((ctx.cgroup_mem_max, ctx.cgroup_mem_current), (None, None));
}

#[test]
fn the_root_cgroup_has_no_limit() {
    let (_dir, fake, mut probe) = fake();
    fake.write("proc/self/cgroup", "0::/\n").unwrap();
    fake.write("sys/fs/cgroup/cgroup.controllers", "memory\n")
        .unwrap();
    assert_eq!(probe.probe(), Context::default());
    assert!(probe.warnings().is_empty());
}

// ---- Traces ----

fn small_trace() -> ContextTrace {
    ContextTrace {
        points: vec![
            TracePoint {
                t_s: 0.0,
                ctx: Context {
                    battery_pct: Some(87.5),
                    battery_status: Some("Not charging".into()),
                    battery_energy_uwh: Some(8_750_000),
                    on_ac: Some(true),
                    mem_available_bytes: Some(123_456_789),
                    cgroup_mem_max: Some(256 * MIB),
                    cgroup_mem_current: Some(3),
                    temp_max_mc: Some(-1_500),
                    power_w: Some(2.75),
                    latency_budget_ms: Some(0.05),
                },
            },
            TracePoint {
                t_s: 0.5,
                ctx: Context::default(),
            },
            TracePoint {
                t_s: 0.5,
                ctx: Context {
                    battery_pct: Some(19.4),
                    ..Context::default()
                },
            },
        ],
    }
}

#[test]
fn json_and_csv_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace();
    let json = dir.path().join("t.json");
    trace.save_json(&json).unwrap();
    assert_eq!(ContextTrace::load(&json).unwrap(), trace);
    let csv = dir.path().join("t.CSV");
    trace.save_csv(&csv).unwrap();
    assert_eq!(ContextTrace::load(&csv).unwrap(), trace);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        text.lines().next(),
        Some(
            "t_s,battery_pct,battery_status,battery_energy_uwh,on_ac,mem_available_bytes,\
             cgroup_mem_max,cgroup_mem_current,temp_max_mc,power_w,latency_budget_ms"
        )
    );
    assert_eq!(text.lines().nth(2), Some("0.5,,,,,,,,,,"));
    let demo = ContextTrace::demo();
    demo.save_json(&json).unwrap();
    assert_eq!(ContextTrace::load(&json).unwrap(), demo);
    demo.save_csv(&csv).unwrap();
    assert_eq!(ContextTrace::load(&csv).unwrap(), demo);
}

#[test]
fn hand_written_traces_take_mem_free_mib_nulls_and_blanks() {
    let p = Path::new("hand.csv");
    let csv =
        "# a comment\n t_s , mem_free_mib, on_ac,battery_status\n0,512,1,\n2.5, 0.5 ,false,Full\n";
    let t = ContextTrace::from_csv_str(csv, p).unwrap();
    assert_eq!(t.points.len(), 2);
    assert_eq!(t.points[0].ctx.mem_available_bytes, Some(512 * MIB));
    assert_eq!(t.points[0].ctx.on_ac, Some(true));
    assert_eq!(t.points[0].ctx.battery_status, None);
    assert_eq!(t.points[1].ctx.mem_available_bytes, Some(MIB / 2));
    assert_eq!(t.points[1].ctx.battery_status.as_deref(), Some("Full"));
    let json = r#"[{"t_s": 1, "mem_free_mib": 64, "battery_pct": null}]"#;
    let t = ContextTrace::from_json_str(json, Path::new("hand.json")).unwrap();
    assert_eq!(t.points[0].t_s, 1.0);
    assert_eq!(t.points[0].ctx.mem_available_bytes, Some(64 * MIB));
    assert_eq!(t.points[0].ctx.battery_pct, None);
}

fn json_err(text: &str) -> String {
    ContextTrace::from_json_str(text, Path::new("t.json"))
        .unwrap_err()
        .to_string()
}

fn csv_err(text: &str) -> String {
    ContextTrace::from_csv_str(text, Path::new("t.csv"))
        .unwrap_err()
        .to_string()
}

#[test]
fn trace_errors_name_the_file_record_and_field() {
    assert_eq!(
        json_err(r#"[{"t_s": 0}, {"t_s": 1, "battery_pct": 120}]"#),
        "t.json: record 2: battery_pct = 120: expected a percentage in 0..=100"
    );
    assert_eq!(
        json_err(r#"[{"t_s": 0, "on_ac": "yes"}]"#),
        "t.json: record 1: on_ac = \"yes\": expected true or false"
    );
    assert_eq!(
        json_err(r#"[{"t_s": 0, "battery_status": "Draining"}]"#),
        "t.json: record 1: battery_status = \"Draining\": expected one of \"Unknown\", \
         \"Charging\", \"Discharging\", \"Not charging\", \"Full\""
    );
    assert_eq!(
        json_err(r#"[{"t_s": 5}, {"t_s": 4}]"#),
        "t.json: record 2: t_s = 4: expected a time ≥ 5 (the previous record's): times must \
         not decrease"
    );
    assert_eq!(
        json_err(r#"[{"battery_pct": 50}]"#),
        "t.json: record 1: t_s = (missing): expected a finite time in seconds"
    );
    assert_eq!(
        json_err(r#"[{"t_s": 0, "mem_available_bytes": 1.5}]"#),
        "t.json: record 1: mem_available_bytes = 1.5: expected a whole number of bytes"
    );
    assert!(json_err(r#"[{"t_s": 0, "batery_pct": 5}]"#).starts_with(
        "t.json: record 1: batery_pct = 5: expected one of t_s, battery_pct, battery_status"
    ));
    assert_eq!(
        json_err(r#"{"t_s": 0}"#),
        "t.json: expected a JSON array of points ({\"t_s\": ..., ...})"
    );
    assert_eq!(
        json_err("[]"),
        "t.json: no points: a trace needs at least one"
    );
    assert!(json_err("[{\"t_s\": 0},").starts_with("t.json: EOF while parsing"));
    let e = json_err(r#"[{"t_s": 0, "mem_free_mib": 1, "mem_available_bytes": 2}]"#);
    assert!(e.starts_with("t.json: record 1: mem_"), "{e}");
    assert!(
        e.ends_with(": expected mem_available_bytes or mem_free_mib, not both"),
        "{e}"
    );

    assert_eq!(
        csv_err("t_s,battery_pct\n0,50\n10,abc\n"),
        "t.csv: record 2 (line 3): battery_pct = \"abc\": expected a percentage in 0..=100"
    );
    assert_eq!(
        csv_err("t_s,battery_pct\n10,50\n# skipped\n9,40\n"),
        "t.csv: record 2 (line 4): t_s = 9: expected a time ≥ 10 (the previous record's): \
         times must not decrease"
    );
    assert_eq!(
        csv_err("t_s\nNaN\n"),
        "t.csv: record 1 (line 2): t_s = \"NaN\": expected a finite time in seconds"
    );
    assert_eq!(
        csv_err("# comment\n\nt_s,power_w\n0,1\n\n# a\n\n#b\n3,x\n"),
        "t.csv: record 2 (line 9): power_w = \"x\": expected watts, a number ≥ 0"
    );
    assert_eq!(
        csv_err("t_s,power_w\n,1\n"),
        "t.csv: record 1 (line 2): t_s = \"\": expected a finite time in seconds"
    );
    assert_eq!(
        csv_err("time,battery_pct\n0,50\n"),
        "t.csv: header: time = (column): expected one of t_s, battery_pct, battery_status, \
         battery_energy_uwh, on_ac, mem_available_bytes, cgroup_mem_max, cgroup_mem_current, \
         temp_max_mc, power_w, latency_budget_ms, mem_free_mib"
    );
    assert_eq!(
        csv_err("battery_pct\n50\n"),
        "t.csv: header: t_s = (missing): expected a t_s column"
    );
    assert_eq!(
        csv_err("t_s,t_s\n0,0\n"),
        "t.csv: header: t_s = (twice): expected each column once"
    );
    assert_eq!(
        csv_err("t_s,power_w\n0,-1\n"),
        "t.csv: record 1 (line 2): power_w = \"-1\": expected watts, a number ≥ 0"
    );
    let e = csv_err("t_s,power_w\n0,1,2\n");
    assert!(
        e.starts_with("t.csv: CSV error: ") && e.contains("line: 2"),
        "{e}"
    );
    assert!(e.contains("found record with 3 fields"), "{e}");
    assert_eq!(
        csv_err("t_s\n"),
        "t.csv: no points: a trace needs at least one"
    );
}

#[test]
fn load_chooses_the_format_by_extension_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("trace.txt");
    std::fs::write(&txt, "t_s\n0\n").unwrap();
    let e = ContextTrace::load(&txt).unwrap_err();
    assert!(matches!(e, ContextError::TraceFormat { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: unknown trace format: expected a file name ending in .json or .csv",
            txt.display()
        )
    );
    let none = dir.path().join("trace");
    assert!(matches!(
        ContextTrace::load(&none),
        Err(ContextError::TraceFormat { .. })
    ));
    let missing = dir.path().join("missing.csv");
    let e = ContextTrace::load(&missing).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
    // A JSON file is not read as CSV, nor the other way round.
    let json = dir.path().join("t.json");
    std::fs::write(&json, "t_s\n0\n").unwrap();
    assert!(ContextTrace::load(&json).is_err());
}

#[test]
fn the_committed_demo_csv_is_the_demo_trace() {
    let path = repo_path("configs/traces/demo.csv");
    let header = "# The demo scenario: ContextTrace::demo() in driver/src/context/trace.rs.\n\
                  # Regenerate with CAQ_BLESS=1 cargo test -p caq-driver --test context the_committed_demo_csv\n";
    let want = format!("{header}{}", ContextTrace::demo().to_csv_string());
    if std::env::var("CAQ_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with CAQ_BLESS=1)", path.display()));
    assert_eq!(
        text,
        want,
        "{} is out of date (bless with CAQ_BLESS=1)",
        path.display()
    );
    assert_eq!(ContextTrace::load(&path).unwrap(), ContextTrace::demo());
}

// ---- Policies ----

fn policy_err(text: &str) -> String {
    ContextPolicy::from_toml_str(text, "p.toml")
        .unwrap_err()
        .to_string()
}

const TWO_CLASSES: &str = "schema_version = 1\n\
    [[class]]\nname = \"low\"\nwhen = { battery_pct_below = 20.0 }\n\
    budget = { energy_fraction = 0.5 }\n\
    [[class]]\nname = \"high\"\n";

#[test]
fn the_shipped_policy_file_is_the_default_policy() {
    let path = repo_path("configs/contexts/default.toml");
    assert_eq!(
        ContextPolicy::load(&path).unwrap(),
        ContextPolicy::default_policy()
    );
    let p = ContextPolicy::from_toml_str(TWO_CLASSES, "p.toml").unwrap();
    assert_eq!(p.hysteresis.battery_pct, 0.0, "hysteresis is optional");
    assert_eq!(p.classes[1].budget.energy_fraction, None);
}

#[test]
fn policy_errors_name_the_file_and_field() {
    assert_eq!(
        policy_err(&TWO_CLASSES.replace("0.5", "1.5")),
        "p.toml: invalid context policy:\n  class[0].budget.energy_fraction = 1.5: expected a \
         fraction in (0, 1]"
    );
    assert_eq!(
        policy_err(&TWO_CLASSES.replace("\"high\"", "\"low\"")),
        "p.toml: invalid context policy:\n  class[1].name = \"low\": expected a name no other \
         class has"
    );
    assert_eq!(
        policy_err(&format!(
            "{TWO_CLASSES}when = {{ mem_free_mib_below = 8.0 }}\n"
        )),
        "p.toml: invalid context policy:\n  class[1].when = { mem_free_mib_below = 8 }: \
         expected no conditions: the last class is the fallback, chosen when no other holds"
    );
    let e =
        policy_err(&TWO_CLASSES.replace("battery_pct_below = 20.0", "battery_pct_below = 120.0"));
    assert!(
        e.ends_with("class[0].when.battery_pct_below = 120: expected a percentage in (0, 100]"),
        "{e}"
    );
    let e = policy_err(&TWO_CLASSES.replace("when = { battery_pct_below = 20.0 }\n", ""));
    assert!(
        e.contains("class[0].when = {}: expected conditions: only the last class may have none"),
        "{e}"
    );
    let e = policy_err(&format!(
        "{TWO_CLASSES}[hysteresis]\nbattery_pct = -1.0\nmin_dwell_s = -2.0\n"
    ));
    assert_eq!(
        e,
        "p.toml: invalid context policy:\n  hysteresis.battery_pct = -1: expected a number ≥ 0\n  \
         hysteresis.min_dwell_s = -2: expected a number ≥ 0"
    );
    assert_eq!(
        policy_err("schema_version = 2\n"),
        "p.toml: schema_version = 2: this build of caq reads context policies of schema_version \
         1 only"
    );
    assert!(policy_err("[[class]]\nname = \"x\"\n").contains("schema_version = (missing)"));
    let e = policy_err(&TWO_CLASSES.replace("energy_fraction", "energy_fractoin"));
    assert!(e.starts_with("p.toml:5:"), "{e}");
    assert!(e.contains("unknown field `energy_fractoin`"), "{e}");
    let e = policy_err(&TWO_CLASSES.replace("battery_pct_below", "battery_below"));
    assert!(e.contains("unknown field `battery_below`"), "{e}");
    assert!(policy_err("schema_version = 1\n").contains("missing field `class`"));
    assert!(policy_err("schema_version = 1\nclass = []\n").contains("at least one [[class]]"));
    let missing = ContextPolicy::load("/nonexistent/p.toml")
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("/nonexistent/p.toml: "), "{missing}");
}

// ---- The selector ----

fn battery(pct: f64) -> Context {
    Context {
        battery_pct: Some(pct),
        mem_available_bytes: Some(512 * MIB),
        latency_budget_ms: Some(10.0),
        ..Context::default()
    }
}

#[test]
fn classes_are_tried_in_priority_order() {
    let mut s = GateSelector::new(ContextPolicy::default_policy()).unwrap();
    let squeezed = Context {
        mem_available_bytes: Some(32 * MIB),
        ..battery(10.0)
    };
    assert_eq!(s.select(0.0, &squeezed).class, "memory");
    let rushed = Context {
        latency_budget_ms: Some(0.05),
        ..squeezed.clone()
    };
    let sel = s.select(1.0, &rushed);
    assert_eq!(
        (sel.class.as_str(), sel.index, sel.switched),
        ("deadline", 0, true)
    );
    assert_eq!(s.select(2.0, &battery(10.0)).class, "battery-low");
    assert_eq!(s.select(3.0, &battery(80.0)).class, "battery-high");
    assert_eq!(s.switches(), 3);
}

#[test]
fn a_battery_hovering_at_the_threshold_switches_once() {
    let mut s = GateSelector::new(ContextPolicy::default_policy()).unwrap();
    assert_eq!(s.select(0.0, &battery(30.0)).class, "battery-medium");
    let hover = [21.0, 19.0, 21.0, 19.5, 20.5, 19.0, 22.9, 20.0, 21.0];
    let classes: Vec<String> = hover
        .iter()
        .enumerate()
        .map(|(i, &b)| s.select(1.0 + i as f64, &battery(b)).class)
        .collect();
    assert_eq!(classes[0], "battery-medium");
    assert!(
        classes[1..].iter().all(|c| c == "battery-low"),
        "{classes:?}"
    );
    assert_eq!(s.switches(), 1, "exactly one switch, into battery-low");
    // The class is left at threshold + margin, not before.
    assert_eq!(s.select(20.0, &battery(23.0)).class, "battery-medium");
    assert_eq!(s.switches(), 2);
    // Without hysteresis the same hover flips at every crossing.
    let mut p = ContextPolicy::default_policy();
    p.hysteresis.battery_pct = 0.0;
    let mut plain = GateSelector::new(p).unwrap();
    plain.select(0.0, &battery(30.0));
    for (i, &b) in hover.iter().enumerate() {
        plain.select(1.0 + i as f64, &battery(b));
    }
    assert_eq!(plain.switches(), 6);
}

#[test]
fn memory_and_deadline_margins_apply_to_the_active_class_only() {
    let mut s = GateSelector::new(ContextPolicy::default_policy()).unwrap();
    let mem = |mib: u64| Context {
        mem_available_bytes: Some(mib * MIB),
        ..battery(80.0)
    };
    assert_eq!(s.select(0.0, &mem(100)).class, "battery-high");
    assert_eq!(
        s.select(1.0, &mem(70)).class,
        "battery-high",
        "70 ≥ 64: not entered"
    );
    assert_eq!(s.select(2.0, &mem(60)).class, "memory");
    assert_eq!(
        s.select(3.0, &mem(79)).class,
        "memory",
        "79 < 64 + 16: kept"
    );
    assert_eq!(s.select(4.0, &mem(80)).class, "battery-high");
    let deadline = |ms: f64| Context {
        latency_budget_ms: Some(ms),
        ..battery(80.0)
    };
    assert_eq!(s.select(5.0, &deadline(0.14)).class, "deadline");
    assert_eq!(s.select(6.0, &deadline(0.155)).class, "deadline");
    assert_eq!(s.select(7.0, &deadline(0.17)).class, "battery-high");
}

#[test]
fn min_dwell_delays_a_switch() {
    let mut p = ContextPolicy::default_policy();
    p.hysteresis.min_dwell_s = 15.0;
    let mut s = GateSelector::new(p).unwrap();
    s.select(0.0, &battery(80.0));
    let sel = s.select(5.0, &battery(10.0));
    assert_eq!((sel.class.as_str(), sel.switched), ("battery-high", false));
    let sel = s.select(15.0, &battery(10.0));
    assert_eq!((sel.class.as_str(), sel.switched), ("battery-low", true));
    assert_eq!(s.select(20.0, &battery(80.0)).class, "battery-low");
    assert_eq!(s.select(30.0, &battery(80.0)).class, "battery-high");
    assert_eq!(s.switches(), 2);
}

#[test]
fn unknown_fields_never_match_a_condition() {
    let mut s = GateSelector::new(ContextPolicy::default_policy()).unwrap();
    let nothing = Context::default();
    assert_eq!(s.select(0.0, &nothing).class, "battery-high");
    let no_battery = Context {
        mem_available_bytes: Some(512 * MIB),
        latency_budget_ms: Some(10.0),
        ..Context::default()
    };
    assert_eq!(s.select(1.0, &no_battery).class, "battery-high");
    assert_eq!(s.select(2.0, &battery(10.0)).class, "battery-low");
    // The battery disappears: the margin does not keep a class whose field is unknown.
    assert_eq!(s.select(3.0, &no_battery).class, "battery-high");
}

#[test]
fn the_demo_trace_walks_every_class_and_hysteresis_saves_switches() {
    let trace = ContextTrace::demo();
    let policy = ContextPolicy::default_policy();
    let mut s = GateSelector::new(policy.clone()).unwrap();
    let classes: Vec<String> = trace
        .points
        .iter()
        .map(|p| s.select(p.t_s, &p.ctx).class)
        .collect();
    let at = |t: usize| classes[t / 10].as_str();
    assert_eq!(at(0), "battery-high");
    assert_eq!(
        (at(130), at(140), at(170), at(180)),
        ("battery-high", "memory", "memory", "battery-high")
    );
    assert_eq!(
        (at(230), at(240), at(290), at(300)),
        ("battery-medium", "deadline", "deadline", "battery-medium")
    );
    assert_eq!((at(360), at(370)), ("battery-medium", "battery-low"));
    assert!(
        classes[37..].iter().all(|c| c == "battery-low"),
        "{classes:?}"
    );
    let changes = classes.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(s.switches(), changes);
    // Into memory and out, into battery-medium, into deadline and out, into battery-low.
    assert_eq!(s.switches(), 6);
    let plain: Vec<usize> = trace
        .points
        .iter()
        .map(|p| policy.classify(&p.ctx))
        .collect();
    let plain_changes = plain.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(
        plain_changes, 12,
        "the hover alone flips 7 times without hysteresis"
    );
}
