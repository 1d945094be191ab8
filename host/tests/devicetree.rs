//! The board files of docs/deploy.md: the committed device-tree overlays (`devicetree/*.dtso`) are
//! what `caq hdl overlay` generates, every overlay compiles with `dtc` without a warning, and the
//! udev rule (`deploy/99-caq.rules`) is well-formed and names the devices the driver opens.

use std::path::{Path, PathBuf};
use std::process::Command;

use caq_driver::accel::{DEFAULT_UDMABUF, DEFAULT_UIO_NAME};
use caq_hdl::devicetree::{self, OverlayOptions};
use caq_spec::AccelConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every committed overlay: (file name, its text as generated now). Uses the documented default
/// size, as `caq hdl overlay --config configs/<board>.toml` without `--bundle` does.
fn overlays() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["pynq-z2", "zcu104", "zcu104-hpc"] {
        let cfg = AccelConfig::load(repo().join(format!("configs/{name}.toml"))).unwrap();
        let opts = OverlayOptions {
            uio_name: DEFAULT_UIO_NAME.into(),
            udmabuf_name: DEFAULT_UDMABUF.into(),
            udmabuf_bytes: devicetree::DEFAULT_UDMABUF_BYTES,
        };
        let text = devicetree::overlay(&cfg, &opts).unwrap();
        out.push((devicetree::file_name(&cfg), text));
    }
    out
}

/// `dma-coherent` is in the overlay of exactly the configs whose DMA engine drives snooped
/// AxCACHE/AxPROT, and the comment names the values that config's RTL carries.
#[test]
fn the_overlay_is_dma_coherent_exactly_when_the_config_snoops() {
    for (name, text) in overlays() {
        let stem = name.trim_end_matches(".dtso");
        let cfg = AccelConfig::load(repo().join(format!("configs/{stem}.toml"))).unwrap();
        let attrs = cfg.axi.coherence.axi_attrs();
        assert_eq!(
            text.contains("\t\tdma-coherent;"),
            attrs.snooped(),
            "{name}"
        );
        let arcache = caq_spec::AxiAttrs::verilog(attrs.arcache, 4);
        assert!(text.contains(&format!("ARCACHE {arcache}")), "{name}");
    }
}

/// Regenerate with `CAQ_BLESS=1 cargo test -p caq-host --test devicetree`.
#[test]
fn committed_overlays_are_what_the_generator_writes() {
    let dir = repo().join("devicetree");
    let bless = std::env::var("CAQ_BLESS").is_ok_and(|v| v == "1");
    for (name, text) in overlays() {
        let path = dir.join(&name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with CAQ_BLESS=1)", path.display()));
        assert!(
            committed == text,
            "{} differs from `caq hdl overlay` (bless with CAQ_BLESS=1 after review)",
            path.display()
        );
    }
}

#[test]
fn every_overlay_compiles_with_dtc_without_a_warning() {
    if Command::new("dtc").arg("--version").output().is_err() {
        println!(
            "note: dtc not found (apt-get install device-tree-compiler); overlays not compiled"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (name, text) in overlays() {
        let src = tmp.path().join(&name);
        std::fs::write(&src, &text).unwrap();
        let dtbo = src.with_extension("dtbo");
        let out = Command::new("dtc")
            .args(["-@", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtbo)
            .arg(&src)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "dtc on {name}: {}\n{stderr}",
            out.status
        );
        assert!(std::fs::metadata(&dtbo).unwrap().len() > 0);
        // The compiled overlay carries the fixups for the base tree's labels it refers to.
        let back = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts"])
            .arg(&dtbo)
            .output()
            .unwrap();
        let dts = String::from_utf8_lossy(&back.stdout);
        assert!(dts.contains("__fixups__"), "{name}: no __fixups__");
        assert!(dts.contains("amba = "), "{name}: no fixup for &amba");
    }
}

/// One `KEY op "value"` of a udev rule line.
#[derive(Debug, PartialEq)]
struct Term {
    key: String,
    attr: Option<String>,
    op: String,
    value: String,
}

/// Keys this rule file may use, and whether each is a match (`==`) or an assignment.
const MATCH_KEYS: &[&str] = &["SUBSYSTEM", "KERNEL", "ATTR", "ACTION", "DRIVER"];
const ASSIGN_KEYS: &[&str] = &["GROUP", "MODE", "OWNER", "RUN"];

/// Parses one non-comment line of a udev rules file: comma-separated `KEY[{attr}] op "value"`.
fn parse_line(line: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .ok_or_else(|| format!("no operator after '{rest}'"))?;
        let key = &rest[..key_end];
        rest = &rest[key_end..];
        let mut attr = None;
        if let Some(r) = rest.strip_prefix('{') {
            let close = r.find('}').ok_or("unclosed '{'")?;
            attr = Some(r[..close].to_owned());
            rest = &r[close + 1..];
        }
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("{key}: no operator"))?;
        rest = &rest[op.len()..];
        let r = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("{key}: value not quoted"))?;
        let close = r
            .find('"')
            .ok_or_else(|| format!("{key}: unclosed quote"))?;
        let value = r[..close].to_owned();
        rest = r[close + 1..].trim_start();
        let is_match = op == "==" || op == "!=";
        let known = if is_match { MATCH_KEYS } else { ASSIGN_KEYS };
        if !known.contains(&key) {
            return Err(format!("unknown key {key} for operator {op}"));
        }
        if (key == "ATTR") != attr.is_some() {
            return Err(format!("{key}: attribute braces only on ATTR"));
        }
        terms.push(Term {
            key: key.to_owned(),
            attr,
            op: op.to_owned(),
            value,
        });
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected ',' before '{rest}'"));
        }
    }
    Ok(terms)
}

fn rules() -> Vec<Vec<Term>> {
    let path = repo().join("deploy/99-caq.rules");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| parse_line(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

fn has(rule: &[Term], key: &str, op: &str, value: &str) -> bool {
    rule.iter()
        .any(|t| t.key == key && t.op == op && t.value == value)
}

#[test]
fn the_udev_rule_parses_and_opens_the_driver_devices_to_group_caq() {
    let rules = rules();
    assert!(!rules.is_empty());
    for rule in &rules {
        assert!(
            rule.iter().any(|t| t.op == "=="),
            "a rule without a match: {rule:?}"
        );
        assert!(
            rule.iter().any(|t| t.op != "==" && t.op != "!="),
            "a rule without an action: {rule:?}"
        );
    }
    let uio = rules
        .iter()
        .find(|r| has(r, "SUBSYSTEM", "==", "uio"))
        .expect("a uio rule");
    assert!(uio.iter().any(|t| t.key == "ATTR"
        && t.attr.as_deref() == Some("name")
        && t.value == DEFAULT_UIO_NAME));
    assert!(has(uio, "GROUP", "=", "caq") && has(uio, "MODE", "=", "0660"));
    let dma: Vec<_> = rules
        .iter()
        .filter(|r| has(r, "SUBSYSTEM", "==", "u-dma-buf"))
        .collect();
    assert!(
        dma.iter().all(|r| has(r, "KERNEL", "==", DEFAULT_UDMABUF)),
        "every u-dma-buf rule is for {DEFAULT_UDMABUF} only"
    );
    assert!(
        dma.iter()
            .any(|r| has(r, "GROUP", "=", "caq") && has(r, "MODE", "=", "0660"))
    );
    // The sysfs attributes the driver writes when it has no ioctl.
    let runs: String = dma
        .iter()
        .flat_map(|r| r.iter().filter(|t| t.key == "RUN" && t.op == "+="))
        .map(|t| t.value.clone() + "\n")
        .collect();
    for attr in ["sync_for_cpu", "sync_for_device", "sync_mode"] {
        let path = format!("/sys%p/{attr}");
        assert!(
            runs.lines()
                .any(|l| l.starts_with("/bin/chgrp caq ") && l.contains(&path))
                && runs
                    .lines()
                    .any(|l| l.starts_with("/bin/chmod g+w ") && l.contains(&path)),
            "{attr} not opened to group caq"
        );
    }
}

#[test]
fn the_udev_parser_refuses_unknown_keys_and_bad_syntax() {
    assert!(parse_line(r#"SUBSYSTEM=="uio", GROUP="caq""#).is_ok());
    assert!(
        parse_line(r#"SUBSYTEM=="uio""#)
            .unwrap_err()
            .contains("unknown key")
    );
    assert!(
        parse_line(r#"SUBSYSTEM==uio"#)
            .unwrap_err()
            .contains("not quoted")
    );
    assert!(
        parse_line(r#"SUBSYSTEM=="uio" GROUP="caq""#)
            .unwrap_err()
            .contains("','")
    );
    assert!(parse_line(r#"NAME{x}=="y""#).is_err());
}
