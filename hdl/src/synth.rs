//! [`synth`]: Yosys `synth_xilinx` over a generated design, read back as a [`SynthReport`]: LUTs,
//! flip-flops, block RAM (in RAMB36 equivalents), DSPs, the longest combinational path in cells, and
//! utilisation of the target part. [`synth_with_timing`] also times the netlist with `sta` in the
//! same Yosys run ([`crate::timing`] parses it). [`synth_modules`] synthesizes without flattening
//! and reads each module's own cells ([`ModuleUse`]): where the resources go. The Yosys scripts
//! are built here and only here.

use std::collections::BTreeMap;
use std::fs;
use std::time::Instant;

use caq_spec::Board;
use serde::{Deserialize, Serialize};

use crate::design::Design;
use crate::error::{HdlError, Result};
use crate::timing::{self, StaProblem, TimingReport};
use crate::tools::{self, ScratchDir, YOSYS};

/// A Xilinx device family as `synth_xilinx -family` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// 7-series (Zynq-7000): RAMB36E1/RAMB18E1, DSP48E1.
    Xc7,
    /// UltraScale+ (Zynq UltraScale+): RAMB36E2/RAMB18E2, DSP48E2.
    Xcup,
}

impl Family {
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Xc7 => "xc7",
            Family::Xcup => "xcup",
        }
    }
}

/// A target part and its capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub family: Family,
    pub lut: u64,
    pub ff: u64,
    pub bram36: u64,
    pub dsp: u64,
}

impl Part {
    /// Zynq-7000 XC7Z020 (PYNQ-Z2), DS190 table 1.
    pub fn xc7z020() -> Part {
        Part {
            name: "xc7z020".into(),
            family: Family::Xc7,
            lut: 53_200,
            ff: 106_400,
            bram36: 140,
            dsp: 220,
        }
    }

    /// Zynq UltraScale+ XCZU7EV (ZCU104), DS891.
    pub fn xczu7ev() -> Part {
        Part {
            name: "xczu7ev".into(),
            family: Family::Xcup,
            lut: 230_400,
            ff: 460_800,
            bram36: 312,
            dsp: 1_728,
        }
    }

    /// The part a board carries. The simulation-only board is measured against the XC7Z020, the
    /// smallest real target, so its numbers are comparable with the PYNQ-Z2's.
    pub fn for_board(board: Board) -> Part {
        match board {
            Board::PynqZ2 | Board::Sim => Part::xc7z020(),
            Board::Zcu104 => Part::xczu7ev(),
        }
    }
}

/// Used share of each resource, percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Utilisation {
    pub lut_pct: f64,
    pub ff_pct: f64,
    pub bram36_pct: f64,
    pub dsp_pct: f64,
}

/// What Yosys reports after `synth_xilinx`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthReport {
    pub top: String,
    /// 16 hex digits of the config hash the design carries.
    pub config_hash: String,
    pub part: Part,
    /// LUT1..LUT6 cells.
    pub lut: u64,
    /// FDRE/FDSE/FDCE/FDPE (and any other FD*) cells.
    pub ff: u64,
    /// RAMB36 + RAMB18 / 2.
    pub bram36: f64,
    /// DSP48E1/DSP48E2 cells.
    pub dsp: u64,
    /// Longest topological path through combinational cells (`ltp`), in cells: LUTs, MUXF7/8 and
    /// carry cells; registers, RAMs and DSPs end paths.
    pub ltp_length: u64,
    /// Every cell type and its count.
    pub cells: BTreeMap<String, u64>,
    pub utilisation: Utilisation,
    /// The worst logic path; set by [`synth_with_timing`], absent after [`synth`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingReport>,
    /// Where the resources go, module by module ([`synth_modules`]: a second, hierarchical
    /// run); empty unless asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleUse>,
    /// Wall time of the Yosys run, seconds.
    pub seconds: f64,
}

impl SynthReport {
    /// LUTs left free, percent of the part.
    pub fn lut_headroom_pct(&self) -> f64 {
        100.0 - self.utilisation.lut_pct
    }

    /// True when every resource fits and at least `min_lut_headroom_pct` of the LUTs stay free.
    pub fn fits_with_headroom(&self, min_lut_headroom_pct: f64) -> bool {
        let u = &self.utilisation;
        u.ff_pct <= 100.0
            && u.bram36_pct <= 100.0
            && u.dsp_pct <= 100.0
            && self.lut_headroom_pct() >= min_lut_headroom_pct
    }
}

const LOG: &str = "yosys.log";
const STAT_JSON: &str = "stat.json";
const LTP_TXT: &str = "ltp.txt";

/// Synthesizes a design for a part with `yosys synth_xilinx`, in a scratch directory that is kept
/// (with `yosys.log`) when anything fails.
pub fn synth(design: &Design, part: &Part) -> Result<SynthReport> {
    run(design, part, false)
}

/// [`synth`], and in the same Yosys run `sta` over the netlist: the report's `timing` is set.
/// Fails with [`HdlError::TimingUnsupported`] when Yosys' cell library cannot time some cells of
/// the netlist (UltraScale+ DSPs, block RAMs, MUXF9 and LUT RAMs in Yosys 0.23).
pub fn synth_with_timing(design: &Design, part: &Part) -> Result<SynthReport> {
    run(design, part, true)
}

/// The script's start, for both runs: read the design, `synth_xilinx` (flattened or not), and
/// the cell counts into [`STAT_JSON`].
fn synth_and_stat(design: &Design, part: &Part, flatten: bool) -> String {
    let files: Vec<&str> = design.files.iter().map(|f| f.name.as_str()).collect();
    format!(
        "read_verilog {}; synth_xilinx{} -family {} -top {}; tee -q -o {STAT_JSON} stat -json",
        files.join(" "),
        if flatten { " -flatten" } else { "" },
        part.family.as_str(),
        design.top
    )
}

/// The Yosys script: synthesis, the resource and depth reports, and `sta` when asked.
fn script(design: &Design, part: &Part, with_sta: bool) -> String {
    // -flatten: one netlist, so the counts are the whole design's and paths cross module
    // boundaries (sta only times within one module). ltp's -noff only knows Yosys' internal
    // flip-flop types, not the Xilinx primitives synth_xilinx maps to, so the selection leaves out
    // every clocked cell (FD*, block and LUT RAMs, shift registers) and the DSPs, whose internal
    // registers close loops; without that, ltp walks through registers (1,063 "cells" on pynq-z2)
    // and writes hundreds of MB of loop warnings.
    let mut script = format!(
        "{}; tee -q -o {LTP_TXT} ltp -noff * t:FD* %d t:RAM* %d t:SRL* %d t:DSP48* %d t:URAM* %d",
        synth_and_stat(design, part, true)
    );
    if with_sta {
        script.push_str("; ");
        script.push_str(&timing::commands());
    }
    script
}

/// Runs Yosys on `script` in `scratch`'s directory, logging to [`LOG`]; when it fails, keeps the
/// directory and returns the log's tail. The wall time in seconds.
fn yosys(scratch: &mut ScratchDir, script: String) -> Result<f64> {
    let dir = scratch.path().to_owned();
    let args = vec![
        "-q".to_owned(),
        "-l".to_owned(),
        LOG.to_owned(),
        "-p".to_owned(),
        script,
    ];
    let started = Instant::now();
    let out = tools::run(YOSYS, &args, &dir)?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        let log = fs::read_to_string(dir.join(LOG)).unwrap_or_default();
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(HdlError::ToolFailed {
            command: tools::command_line(YOSYS, &args),
            status: out.status.to_string(),
            log: scratch.keep().join(LOG),
            tail: tools::tail(&format!("{log}\n{stderr}"), 20),
        });
    }
    Ok(seconds)
}

fn run(design: &Design, part: &Part, with_sta: bool) -> Result<SynthReport> {
    let mut scratch = ScratchDir::new("synth")?;
    let dir = scratch.path().to_owned();
    design.write(&dir)?;
    let seconds = yosys(&mut scratch, script(design, part, with_sta))?;
    let failed = |scratch: &mut ScratchDir, message: String| {
        let kept = scratch.keep().join(LOG);
        HdlError::Report {
            tool: "yosys",
            log: kept,
            message,
        }
    };
    let stat = fs::read_to_string(dir.join(STAT_JSON)).unwrap_or_default();
    let cells = match parse_stat_json(&stat, &design.top) {
        Ok(c) => c,
        Err(message) => return Err(failed(&mut scratch, message)),
    };
    let ltp = fs::read_to_string(dir.join(LTP_TXT)).unwrap_or_default();
    let Some(ltp_length) = parse_ltp(&ltp) else {
        return Err(failed(
            &mut scratch,
            format!("no \"Longest topological path ... (length=N)\" line in {LTP_TXT}"),
        ));
    };
    let timing = if with_sta {
        let sta = fs::read_to_string(dir.join(timing::STA_TXT)).unwrap_or_default();
        let names = fs::read_to_string(dir.join(timing::NAMES_JSON)).unwrap_or_default();
        match timing::report(&sta, &names, &design.top) {
            Ok(t) => Some(t),
            Err(StaProblem::Untimed(cells)) => {
                return Err(HdlError::TimingUnsupported {
                    part: part.name.clone(),
                    family: part.family.as_str(),
                    cells,
                    log: scratch.keep().join(timing::STA_TXT),
                });
            }
            Err(StaProblem::Malformed(message)) => return Err(failed(&mut scratch, message)),
        }
    } else {
        None
    };
    let mut report = report(design, part, cells, ltp_length, seconds);
    report.timing = timing;
    Ok(report)
}

fn report(
    design: &Design,
    part: &Part,
    cells: BTreeMap<String, u64>,
    ltp_length: u64,
    seconds: f64,
) -> SynthReport {
    let Resources {
        lut,
        ff,
        bram36,
        dsp,
        ..
    } = Resources::of(&cells);
    let pct = |used: f64, cap: u64| 100.0 * used / cap as f64;
    SynthReport {
        top: design.top.clone(),
        config_hash: design.config_hash.to_string(),
        part: part.clone(),
        lut,
        ff,
        bram36,
        dsp,
        ltp_length,
        utilisation: Utilisation {
            lut_pct: pct(lut as f64, part.lut),
            ff_pct: pct(ff as f64, part.ff),
            bram36_pct: pct(bram36, part.bram36),
            dsp_pct: pct(dsp as f64, part.dsp),
        },
        cells,
        timing: None,
        modules: Vec::new(),
        seconds,
    }
}

/// The resources a set of cells uses, counted as [`SynthReport`] counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// LUT1..LUT6 cells.
    pub lut: u64,
    /// FD* cells.
    pub ff: u64,
    /// CARRY4/CARRY8 cells (adders and comparators).
    pub carry: u64,
    /// MUXF7/MUXF8/MUXF9 cells (wide multiplexers).
    pub muxf: u64,
    /// RAMB36 + RAMB18 / 2.
    pub bram36: f64,
    /// DSP48E1/DSP48E2 cells.
    pub dsp: u64,
}

impl Resources {
    /// These resources `n` times over (a module's instances).
    pub fn times(self, n: u64) -> Self {
        Self {
            lut: n * self.lut,
            ff: n * self.ff,
            carry: n * self.carry,
            muxf: n * self.muxf,
            bram36: n as f64 * self.bram36,
            dsp: n * self.dsp,
        }
    }

    /// Adds `o` to these.
    pub fn add(&mut self, o: Self) {
        self.lut += o.lut;
        self.ff += o.ff;
        self.carry += o.carry;
        self.muxf += o.muxf;
        self.bram36 += o.bram36;
        self.dsp += o.dsp;
    }

    fn of(cells: &BTreeMap<String, u64>) -> Self {
        let sum = |pred: &dyn Fn(&str) -> bool| -> u64 {
            cells.iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum()
        };
        Self {
            lut: sum(&|c| matches!(c, "LUT1" | "LUT2" | "LUT3" | "LUT4" | "LUT5" | "LUT6")),
            ff: sum(&|c| c.starts_with("FD")),
            carry: sum(&|c| c.starts_with("CARRY")),
            muxf: sum(&|c| c.starts_with("MUXF")),
            bram36: sum(&|c| c.starts_with("RAMB36")) as f64
                + sum(&|c| c.starts_with("RAMB18")) as f64 / 2.0,
            dsp: sum(&|c| c.starts_with("DSP48")),
        }
    }
}

/// One module of a hierarchical synthesis ([`synth_modules`]): the cells of one instance of it,
/// its submodules' cells not included, and how many instances the design holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleUse {
    pub module: String,
    pub instances: u64,
    /// One instance's own cells.
    pub each: Resources,
}

/// Where a design's resources go: `synth_xilinx` without `-flatten`, so that every module keeps
/// its own cells, and `stat -json` read per module. Modules come in the design's hierarchy order
/// (top first). Cross-module optimization is lost, so the sum runs a few percent above
/// [`synth`]'s flattened count, which is the one budgets are checked against.
pub fn synth_modules(design: &Design, part: &Part) -> Result<Vec<ModuleUse>> {
    let mut scratch = ScratchDir::new("synth-modules")?;
    let dir = scratch.path().to_owned();
    design.write(&dir)?;
    yosys(&mut scratch, synth_and_stat(design, part, false))?;
    let stat = fs::read_to_string(dir.join(STAT_JSON)).unwrap_or_default();
    parse_module_uses(&stat, &design.top).map_err(|message| HdlError::Report {
        tool: "yosys",
        log: scratch.keep().join(LOG),
        message,
    })
}

/// Every module's cell counts from `stat -json` (Yosys 0.23: `modules.<name>.num_cells_by_type`),
/// names without Yosys' leading backslash.
fn parse_stat_modules(text: &str) -> Result<BTreeMap<String, BTreeMap<String, u64>>, String> {
    // `tee -o` may put Yosys's own header lines before the JSON object, and Yosys 0.23's
    // `stat -json` of a hierarchical design prints the hierarchy's text lines ("  caq_requant
    // 8") inside it; every line of JSON holds a quote or a bracket.
    let text: String = text
        .lines()
        .filter(|l| l.contains(['"', '{', '}', '[', ']']))
        .collect::<Vec<_>>()
        .join("\n");
    let start = text
        .find('{')
        .ok_or_else(|| format!("{STAT_JSON} holds no JSON object"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text[start..]).map_err(|e| format!("{STAT_JSON}: {e}"))?;
    let modules = v
        .get("modules")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format!("{STAT_JSON} has no \"modules\" object"))?;
    let mut cells = BTreeMap::new();
    for (name, m) in modules {
        let by_type = m
            .get("num_cells_by_type")
            .and_then(|c| c.as_object())
            .ok_or_else(|| format!("{STAT_JSON}: module `{name}` has no num_cells_by_type"))?;
        cells.insert(
            name.trim_start_matches('\\').to_owned(),
            by_type
                .iter()
                .filter_map(|(k, n)| Some((k.trim_start_matches('\\').to_owned(), n.as_u64()?)))
                .collect(),
        );
    }
    Ok(cells)
}

/// Per module of `stat -json`, its own cells and its instance count below `top`: a module
/// instantiated n times in a module of m instances has n·m more.
fn parse_module_uses(text: &str, top: &str) -> Result<Vec<ModuleUse>, String> {
    let cells = parse_stat_modules(text)?;
    if !cells.contains_key(top) {
        return Err(format!("{STAT_JSON} has no module `{top}`"));
    }
    // Instances of a module: the sum over the modules that instantiate it of their instances
    // times its cells there (the top has one). Recursion deeper than the module count means a
    // cycle.
    fn instances(
        m: &str,
        top: &str,
        cells: &BTreeMap<String, BTreeMap<String, u64>>,
        depth: usize,
    ) -> Result<u64, String> {
        if m == top {
            return Ok(1);
        }
        if depth > cells.len() {
            return Err(format!("{STAT_JSON}: the module hierarchy has a cycle"));
        }
        let mut n = 0;
        for (parent, by_type) in cells {
            if let Some(k) = by_type.get(m) {
                n += k * instances(parent, top, cells, depth + 1)?;
            }
        }
        Ok(n)
    }
    // Modules in depth-first order from the top, each once.
    let mut order: Vec<String> = Vec::new();
    let mut stack = vec![top.to_owned()];
    while let Some(m) = stack.pop() {
        if order.contains(&m) {
            continue;
        }
        let children: Vec<String> = cells[&m]
            .keys()
            .filter(|k| cells.contains_key(*k))
            .cloned()
            .collect();
        stack.extend(children.into_iter().rev());
        order.push(m);
    }
    let count = order
        .iter()
        .map(|m| Ok((m.clone(), instances(m, top, &cells, 0)?)))
        .collect::<Result<BTreeMap<String, u64>, String>>()?;
    Ok(order
        .iter()
        .map(|m| {
            let own: BTreeMap<String, u64> = cells[m]
                .iter()
                .filter(|(c, _)| !cells.contains_key(*c))
                .map(|(c, n)| (c.clone(), *n))
                .collect();
            ModuleUse {
                module: m.clone(),
                instances: count[m],
                each: Resources::of(&own),
            }
        })
        .collect())
}

/// Cell counts of `top` from `stat -json`.
fn parse_stat_json(text: &str, top: &str) -> Result<BTreeMap<String, u64>, String> {
    parse_stat_modules(text)?
        .remove(top)
        .ok_or_else(|| format!("{STAT_JSON} has no module `{top}`"))
}

/// The N of "Longest topological path in <module> (length=N):".
fn parse_ltp(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.split("Longest topological path").nth(1)?;
            let n = rest.split("(length=").nth(1)?;
            n.split(')').next()?.trim().parse::<u64>().ok()
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_uses_count_instances_through_the_hierarchy() {
        // top has two `a`s and one `c`; each `a` has three `b`s; `c` has one `b`.
        let text = r#"header line
{ "modules": {
  "\\top": { "num_cells_by_type": { "\\a": 2, "\\c": 1, "LUT2": 5 } },
  "\\a":   { "num_cells_by_type": { "\\b": 3, "FDRE": 4, "CARRY4": 1 } },
  "\\b":   { "num_cells_by_type": { "LUT6": 7, "RAMB18E1": 1, "DSP48E1": 2, "MUXF7": 1 } },
  "\\c":   { "num_cells_by_type": { "\\b": 1, "LUT1": 1, "RAMB36E1": 1 } }
},
     a                 2
       b               3
  "design": { "num_cells": 1 }
}"#;
        let uses = parse_module_uses(text, "top").unwrap();
        let names: Vec<&str> = uses.iter().map(|u| u.module.as_str()).collect();
        assert_eq!(names, ["top", "a", "b", "c"]);
        let by = |m: &str| uses.iter().find(|u| u.module == m).unwrap().clone();
        assert_eq!(by("top").instances, 1);
        assert_eq!(by("top").each.lut, 5);
        assert_eq!(by("a").instances, 2);
        assert_eq!((by("a").each.ff, by("a").each.carry), (4, 1));
        assert_eq!(by("b").instances, 7);
        let b = by("b").each;
        assert_eq!((b.lut, b.dsp, b.muxf, b.bram36), (7, 2, 1, 0.5));
        assert_eq!((by("c").instances, by("c").each.bram36), (1, 1.0));
        // Submodule instances are not cells of their parent.
        assert_eq!(by("c").each.lut, 1);
        assert!(
            parse_module_uses(text, "nope")
                .unwrap_err()
                .contains("nope")
        );
        let cyclic = r#"{ "modules": {
  "top": { "num_cells_by_type": { "a": 1 } },
  "a": { "num_cells_by_type": { "b": 1 } },
  "b": { "num_cells_by_type": { "a": 1 } } } }"#;
        assert!(
            parse_module_uses(cyclic, "top")
                .unwrap_err()
                .contains("cycle")
        );
    }

    #[test]
    fn ltp_line_is_parsed() {
        let text = "\n3. Executing LTP pass (find longest path).\nLongest topological path in caq_top (length=7):\n    0: \\a\n";
        assert_eq!(parse_ltp(text), Some(7));
        assert_eq!(parse_ltp("nothing here"), None);
    }

    #[test]
    fn the_script_times_the_netlist_only_when_asked() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
        let cfg = caq_spec::AccelConfig::load(std::path::Path::new(path)).unwrap();
        let design = crate::generate(&cfg).unwrap();
        let part = Part::xc7z020();
        let plain = script(&design, &part, false);
        assert!(
            plain.contains("synth_xilinx -flatten -family xc7 -top caq_top;"),
            "{plain}"
        );
        assert!(!plain.contains(timing::STA_TXT), "{plain}");
        let timed = script(&design, &part, true);
        assert_eq!(timed, format!("{plain}; {}", timing::commands()));
    }

    #[test]
    fn stat_json_counts_cells_of_the_top() {
        let text = r#"
5. Printing statistics.
{
   "creator": "Yosys 0.23",
   "modules": {
      "\\caq_top": {
         "num_wires": 10,
         "num_cells": 6,
         "num_cells_by_type": { "LUT2": 2, "LUT6": 1, "FDRE": 2, "RAMB18E1": 1 }
      }
   }
}
"#;
        let cells = parse_stat_json(text, "caq_top").unwrap();
        assert_eq!(cells.get("LUT6"), Some(&1));
        assert_eq!(cells.len(), 4);
        assert!(
            parse_stat_json(text, "other")
                .unwrap_err()
                .contains("other")
        );
    }
}
