//! `caq demo`, `caq gate` and `caq inspect` end to end through the binary: the gates meet their
//! budgets, the trace replay switches with hysteresis, every device output matched the golden
//! model (the demo fails otherwise), and the plots are written. Under the `rtl` feature the same
//! trace also runs on the Verilator model and must equal the functional device.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn caq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_caq"))
        .args(args)
        .current_dir(repo(""))
        .output()
        .expect("running caq");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn demo_builds_gates_within_budget_and_replays_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let out_s = out.to_str().unwrap();
    let (ok, stdout, stderr) = caq(&["demo", "--out", out_s, "--images-per-point", "1"]);
    assert!(ok, "caq demo failed:\n{stdout}\n{stderr}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("demo.json")).unwrap()).unwrap();

    // The gates: one per class of the default policy, each within its budget.
    let gates = r["gates"]["gates"].as_array().unwrap();
    let names: Vec<&str> = gates.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "deadline",
            "memory",
            "battery-low",
            "battery-medium",
            "battery-high"
        ]
    );
    let full = &r["gates"]["uniform"][0];
    assert!(full["bits"].as_array().unwrap().iter().all(|b| b == 8));
    let by = |n: &str| gates.iter().find(|g| g["name"] == n).unwrap();
    assert_eq!(by("battery-high")["gate"]["bits"], full["bits"]);
    for (name, key, frac) in [
        ("battery-low", "dynamic_j", 0.35),
        ("battery-medium", "dynamic_j", 0.6),
    ] {
        let g = &by(name)["gate"];
        assert!(by(name)["within_budget"].as_bool().unwrap());
        assert!(
            f(&g["energy"][key]) <= frac * f(&full["energy"][key]) * (1.0 + 1e-9),
            "{name}: {} vs {frac} of {}",
            g["energy"][key],
            full["energy"][key]
        );
    }
    let mem = &by("memory")["gate"];
    assert!(f(&mem["resident_bytes"]) <= 0.45 * f(&full["resident_bytes"]));
    let dl = &by("deadline")["gate"];
    assert!(f(&dl["cycles"]) <= 0.75 * f(&full["cycles"]));
    // A gate is chosen over the uniform precision of its budget on training images; on the
    // held-out set it must not fall clearly below it.
    for g in gates {
        if let Some(u) = g["uniform"].as_object() {
            assert!(
                f(&g["gate"]["accuracy_pct"]) >= f(&u["accuracy_pct"]) - 1.0,
                "gate {} below uniform: {g}",
                g["name"]
            );
        }
    }

    // The trace: every class visited, one switch into battery-low while the battery hovers at
    // its threshold, energy and resident bytes following the gate.
    let trace = r["trace"].as_array().unwrap();
    assert_eq!(trace.len(), 60);
    for n in names {
        assert!(
            trace.iter().any(|p| p["gate"] == n),
            "class {n} never chosen"
        );
    }
    let into_low = trace
        .iter()
        .filter(|p| p["gate"] == "battery-low" && p["switched"] == true)
        .count();
    assert_eq!(
        into_low, 1,
        "hysteresis: battery-low entered {into_low} times"
    );
    let switches = trace.iter().filter(|p| p["switched"] == true).count();
    assert_eq!(switches as u64, r["switches"].as_u64().unwrap());
    for p in trace {
        let g = by(p["gate"].as_str().unwrap());
        assert_eq!(p["bits"], g["gate"]["bits"]);
        assert_eq!(
            p["cycles"], g["gate"]["cycles"],
            "device cycles = predicted: {p}"
        );
        assert_eq!(p["resident_bytes"], g["gate"]["resident_bytes"]);
        assert_eq!(p["energy_source"], "model");
        let want = f(&g["gate"]["energy"]["dynamic_j"]) * 1e6;
        assert!((f(&p["energy_dynamic_uj"]) - want).abs() <= 1e-9 * want.max(1.0));
    }
    // Every point ran its images; a deadline point ran the deadline gate and met it.
    for p in trace.iter().filter(|p| p["gate"] == "deadline") {
        assert_eq!(p["deadline_met"], true, "{p}");
    }

    for plot in ["gates.svg", "trace.svg"] {
        let s = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(s.starts_with("<svg") && s.contains("</svg>"), "{plot}");
    }
    assert!(out.join("rtl/manifest.json").exists());
    let rtl = r["rtl"].as_str().unwrap();
    if cfg!(feature = "rtl") {
        assert!(rtl.starts_with("equal"), "{rtl}");
    } else {
        assert!(rtl.starts_with("skipped"), "{rtl}");
    }

    // `caq inspect` shows the gates stored in the bundle.
    let bundle = out.join("digits-mlp.caqb");
    let (ok, stdout, stderr) = caq(&["inspect", bundle.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("gates (bits per layer"), "{stdout}");
    for g in gates {
        let bits: Vec<String> = g["gate"]["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.to_string())
            .collect();
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(g["name"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{} missing:\n{stdout}", g["name"]));
        assert!(line.contains(&bits.join("/")), "{line}");
    }

    // `caq gate` with a broken policy: a non-zero exit naming the file and the field, and the
    // bundle untouched.
    let before = std::fs::read(&bundle).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "schema_version = 1\n[[class]]\nname = \"x\"\nbudget = { energy_fraction = 1.5 }\n",
    )
    .unwrap();
    let model = out.join("digits-mlp.caqf");
    let (ok, _, stderr) = caq(&[
        "gate",
        "--bundle",
        bundle.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--policy",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("energy_fraction"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&bundle).unwrap(), before);

    // `caq gate` rebuilds the same gates from the same inputs (deterministic), into a new file.
    let again = dir.path().join("again.caqb");
    let (ok, stdout, stderr) = caq(&[
        "gate",
        "--bundle",
        bundle.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let (_, a, _) = caq(&["inspect", bundle.to_str().unwrap()]);
    let (_, b, _) = caq(&["inspect", again.to_str().unwrap()]);
    let gates_of = |s: &str| s[s.find("gates (").unwrap()..].to_string();
    assert_eq!(gates_of(&a), gates_of(&b));
}

#[test]
fn adaptive_policies_are_built_on_training_images_stored_shown_and_run_as_priced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let out_s = out.to_str().unwrap();
    let (ok, stdout, stderr) = caq(&[
        "demo",
        "--out",
        out_s,
        "--images-per-point",
        "1",
        "--adaptive",
    ]);
    assert!(ok, "caq demo --adaptive failed:\n{stdout}\n{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("demo.json")).unwrap()).unwrap();
    // The low-battery points replay the class's cascade (outputs checked against the golden
    // cascade inside the demo).
    let trace = report["trace"].as_array().unwrap();
    assert!(
        trace
            .iter()
            .any(|p| p["gate"] == "battery-low" && p["policy"] == "cascade"),
        "no battery-low point ran the cascade"
    );
    assert!(out.join("adaptive.svg").exists());

    // Built again through `caq gate --adaptive`: calibrated on the training split only (the
    // digits: 1,438 of 1,797 images; the 359 held-out ones are only reported on).
    let bundle = out.join("digits-mlp.caqb");
    let model = out.join("digits-mlp.caqf");
    // `caq gate` on the bundle with `extra` arguments: (success, stdout, stderr).
    let gate_run = |extra: &[&str]| {
        let mut args = vec![
            "gate",
            "--bundle",
            bundle.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        caq(&args)
    };
    // `caq gate --adaptive` with `extra` arguments: its JSON and Markdown reports.
    let gate = |name: &str, extra: &[&str]| -> (Value, String) {
        let json = dir.path().join(format!("{name}.json"));
        let md = dir.path().join(format!("{name}.md"));
        let mut args = vec![
            "--adaptive",
            "--json",
            json.to_str().unwrap(),
            "--markdown",
            md.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = gate_run(&args);
        assert!(ok, "{stdout}\n{stderr}");
        let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (v, std::fs::read_to_string(&md).unwrap())
    };
    let (g, text) = gate("gate", &[]);
    assert_eq!(g["adaptive"]["build"]["images"], 1438);
    assert_eq!(g["adaptive"]["held_out"]["test_images"], 359);
    for c in g["adaptive"]["build"]["classes"].as_array().unwrap() {
        let limit = f(&c["energy_limit_j"]);
        assert!(limit <= f(&c["static_gate"]["energy_j"]) * (1.0 + 1e-12));
        for kind in ["cascade", "network"] {
            if !c[kind].is_null() {
                assert!(
                    f(&c[kind]["energy_j"]) <= limit * (1.0 + 1e-9),
                    "{kind}: {c}"
                );
            }
        }
    }
    assert!(text.contains("Against the issue's target"), "{text}");
    // Each figure against the static gate carries its paired standard error.
    assert!(text.contains("points vs static (± s.e.)"), "{text}");
    assert_eq!(g["adaptive"]["build"]["reference"], "float");
    assert_eq!(g["adaptive"]["build"]["validation"], false);

    // Calibrated on validation images carved from the training split, scored against the
    // labels: the build says so, and uses only those images.
    let val_bundle = dir.path().join("val.caqb");
    let (v, text) = gate(
        "gate-val",
        &[
            "--val-images",
            "300",
            "--adaptive-reference",
            "labels",
            "--out",
            val_bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(v["adaptive"]["build"]["images"], 300);
    assert_eq!(v["adaptive"]["build"]["reference"], "labels");
    assert_eq!(v["adaptive"]["build"]["validation"], true);
    assert_eq!(v["adaptive"]["held_out"]["test_images"], 359);
    assert!(
        text.contains("300 **training** images only (validation images"),
        "{text}"
    );
    assert!(text.contains("top-1 vs labels %"), "{text}");
    // At 80 % of each static gate's energy (the "same accuracy at 20 % less" route):
    // every limit below it; a fraction outside (0, 1] is refused.
    let lean_bundle = dir.path().join("lean.caqb");
    let (l, _) = gate(
        "gate-lean",
        &[
            "--adaptive-energy-fraction",
            "0.8",
            "--out",
            lean_bundle.to_str().unwrap(),
        ],
    );
    let classes = l["adaptive"]["build"]["classes"].as_array().unwrap();
    assert!(!classes.is_empty());
    for c in classes {
        let static_e = f(&c["static_gate"]["energy_j"]);
        assert!(
            f(&c["energy_limit_j"]) <= 0.8 * static_e * (1.0 + 1e-12),
            "{c}"
        );
    }
    // `caq gate` with `extra` arguments must fail; its message.
    let refused = |extra: &[&str]| -> String {
        let mut args = vec!["--out", lean_bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = gate_run(&args);
        assert!(!ok, "{args:?}");
        stderr
    };
    let e = refused(&["--adaptive", "--adaptive-energy-fraction", "1.5"]);
    assert!(
        e.contains("--adaptive-energy-fraction") && e.contains("(0, 1]"),
        "{e}"
    );
    // Without --adaptive there is nothing to calibrate on validation images.
    let e = refused(&["--val-images", "300"]);
    assert!(e.contains("--val-images"), "{e}");

    // `caq inspect` shows the policies.
    let (ok, stdout, stderr) = caq(&["inspect", bundle.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("input-adaptive policies"), "{stdout}");
    assert!(stdout.contains("final when margin ≥"), "{stdout}");

    // `caq run --adaptive` on the functional device: every image equal to the golden reference
    // (the run fails otherwise), and the energy per inference the table priced.
    let run_json = dir.path().join("run.json");
    let (ok, stdout, stderr) = caq(&[
        "run",
        "--bundle",
        bundle.to_str().unwrap(),
        "--backend",
        "func",
        "--adaptive",
        "battery-low",
        "--json",
        run_json.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let runs: Value = serde_json::from_str(&std::fs::read_to_string(&run_json).unwrap()).unwrap();
    let rows = g["adaptive"]["held_out"]["rows"].as_array().unwrap();
    for r in runs.as_array().unwrap() {
        assert_eq!(r["golden_equal"], r["images"]);
        let want = rows
            .iter()
            .find(|w| w["class"] == "battery-low" && w["kind"] == r["kind"])
            .unwrap();
        assert_eq!(r["accuracy_pct"], want["accuracy_pct"]);
        let (got, want) = (
            f(&r["device"]["energy_dynamic_uj"]),
            f(&want["energy_dynamic_uj"]),
        );
        assert!((got - want).abs() <= 1e-9 * want, "{got} vs {want}");
        assert!(r["device"]["paged_in_bytes_total"].as_u64().unwrap() > 0);
    }
}
