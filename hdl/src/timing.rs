//! [`TimingReport`]: the worst logic path of a synthesized netlist as Yosys `sta` measures it, with
//! its start and end named by the RTL signals they drive.
//!
//! This file owns the Yosys commands that time a netlist (appended to the synthesis script by
//! [`crate::synth`], so one run gives resources and timing), the parser of `sta`'s path listing and
//! the recovery of RTL names. It does not run Yosys, and it knows nothing of caq's modules: every
//! name comes from the netlist.
//!
//! # What `sta` measures
//! `read_verilog -lib -specify +/xilinx/cells_sim.v` gives each Xilinx primitive the delays of its
//! `specify` block (Yosys takes them from Project X-Ray's Artix-7 timing database); `sta` then
//! propagates arrival times from the primary inputs through the flattened netlist and reports the
//! latest one. For a register-to-register path that is the clock input's buffers (IBUF 0 ps, BUFG
//! 96 ps), the launching cell's clock-to-output, every cell delay on the way and the capturing pin's
//! setup time. The BUFG's 96 ps count on the launch side only (a real clock tree delays the capture
//! as well). Not included: routing (so a design meant to close keeps this figure at about half the
//! clock period), clock skew and uncertainty, placement, Vivado's own delay tables. The figure
//! compares designs and finds their deepest logic; it is not a timing sign-off.
//!
//! `sta` only times cells whose library model has timing arcs. In Yosys 0.23 the UltraScale+
//! primitives synth_xilinx -family xcup maps to (DSP48E2, RAMB18E2, RAMB36E2, MUXF9, the UltraScale
//! LUT RAMs) have none, so `sta` cuts every path through them and reports a shorter one (10.0 ns on
//! zcu104, LUTs and carries only). Yosys warns about each such cell type; this module turns the
//! warnings into [`StaProblem::Untimed`] instead of reporting a path that is not the worst.
//!
//! # How start and end get their RTL names
//! After `synth_xilinx -flatten`, the cells of a path have Yosys names (`$abc$...`, `$auto$ff.cc:...`),
//! but the public wires of the RTL survive wherever they still name a net, with their hierarchy
//! (`u_core.state_q`). In the same run as `sta`, `json -o names.json` writes the sequential cells
//! (FD*, RAM*, SRL*, DSP48*, URAM*) with their connections, and every public wire with its bits;
//! wires sharing a bit are aliases of one net. Then:
//! - the start is the first cell on the path entered through a clock pin (C, CLK, ...). It is named
//!   by the public name of the net it drives on the path (a register's `_q`; a block RAM or DSP that
//!   absorbed an output register carries that register's name), else as the end is;
//! - the end is the cell `sta` names as the endpoint. A flip-flop is named by the public name of its
//!   Q net; a block RAM by its cell name, which Yosys derives from the RTL memory
//!   (`u_core.act0_mem.0.0`); a DSP by the RTL line of the multiplication it implements (its `src`
//!   attribute, `caq_core.v:222`);
//! - a path from or to a top-level port is named by the port;
//! - among aliases, a name ending in `_q` (this generator's flop suffix) wins, then the deepest in
//!   the hierarchy (where the register is declared, rather than a port it feeds), then the shortest.
//!
//! Limits: a register whose output net has no public name left (one Yosys created, a register merged
//! into another, a state register re-encoded by `fsm`) keeps its Yosys name, marked
//! [`NameSource::Internal`]; the nets between start and end are mostly LUT outputs that only have
//! Yosys names (an arithmetic cell's name still shows its RTL line, `$le$caq_core.v:222`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// File `sta`'s listing is written to, in the synthesis scratch directory.
pub(crate) const STA_TXT: &str = "sta.txt";
/// File the sequential cells and public wires are written to.
pub(crate) const NAMES_JSON: &str = "names.json";

/// The Yosys commands that time the synthesized netlist and dump what name recovery needs; they
/// run after `synth_xilinx -flatten` in the same script.
pub(crate) fn commands() -> String {
    // `w:* w:$* %d`: every wire minus the internal (`$`) ones, i.e. the public wires.
    format!(
        "read_verilog -lib -specify +/xilinx/cells_sim.v; tee -q -o {STA_TXT} sta; json -o \
         {NAMES_JSON} t:FD* t:RAM* t:SRL* t:DSP48* t:URAM* w:* w:$* %d"
    )
}

/// Pins through which a cell launches a new value on a clock edge: the ones `cells_sim.v` times
/// as `(posedge <pin> => ...)`.
const CLOCK_PINS: &[&str] = &["C", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK"];

/// The worst logic path of a netlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingReport {
    /// Latest arrival time `sta` found, ns: clock buffers, clock-to-output, cell delays and the
    /// endpoint's setup time, no routing.
    pub worst_ns: f64,
    /// Where the path starts: the launching register (or block RAM, DSP) or an input port.
    pub start: PathEnd,
    /// Where it ends: the capturing register's pin or an output port.
    pub end: PathEnd,
    /// LUTs between start and end.
    pub lut_depth: u32,
    /// Cells between start and end (the launching cell and the clock buffers before it excluded),
    /// by type: LUT1..LUT6, MUXF7, MUXF8, CARRY4, DSP48E1, ...
    pub cells_on_path: BTreeMap<String, u32>,
    /// The whole path from the primary input `sta` starts at (the clock input for a register) to the
    /// endpoint.
    pub path: Vec<PathStep>,
}

impl TimingReport {
    /// True when the worst path fits in `budget_ns`.
    pub fn meets(&self, budget_ns: f64) -> bool {
        self.worst_ns <= budget_ns
    }
}

/// One end of the worst path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEnd {
    /// RTL name (`u_core.state_q[3]`, `s_axil_wdata[5]`), or the best the netlist has (see
    /// `named_by`).
    pub name: String,
    /// Cell type (`FDRE`, `RAMB36E1`, `DSP48E1`), or `port`.
    pub cell_type: String,
    /// The pin the path leaves or enters the cell by (`C`; `D`, `R`, `CE`, `ADDRARDADDR`), or the
    /// port's direction (`input`, `output`).
    pub pin: String,
    pub named_by: NameSource,
}

impl fmt::Display for PathEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cell_type == PORT {
            write!(f, "{} ({} port)", self.name, self.pin)
        } else if self.cell_type == UNRECOGNISED {
            write!(f, "{} (then an endpoint sta does not recognise)", self.name)
        } else {
            write!(f, "{} ({}.{})", self.name, self.cell_type, self.pin)
        }
    }
}

/// Where a [`PathEnd`]'s name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// A top-level port.
    Port,
    /// A public RTL wire the cell drives: a register's `_q` net.
    DrivenWire,
    /// The cell's own public name (block RAMs are named after their RTL memory).
    CellName,
    /// The RTL source line Yosys kept on the cell (`caq_core.v:222`).
    SourceLine,
    /// Nothing public survived synthesis: Yosys' own name.
    Internal,
}

/// One cell (or port) on the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStep {
    /// Arrival time at the step's output, ps; at the endpoint, plus the pin's setup time.
    pub arrival_ps: u64,
    /// Cell type (`LUT6`, `CARRY4`, `FDRE`), or `port`.
    pub cell_type: String,
    /// The arc `sta` took (`I0->O`, `C->Q`), the endpoint's pin (`D`), or the port's direction.
    pub pins: String,
    /// Instance name in the netlist (the port's name for a port).
    pub cell: String,
    /// The net the step drives as `sta` names it: its public RTL name where it has one (Yosys'
    /// `opt_clean` keeps public names on nets), else Yosys' own; `None` at the endpoint.
    pub net: Option<String>,
}

const PORT: &str = "port";
/// The end cell type of a path `sta` could not classify (`(<unknown>)`).
const UNRECOGNISED: &str = "unrecognised";

/// Why `sta`'s output gives no trustworthy worst path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StaProblem {
    /// Cell types without timing arcs in Yosys' library: `sta` cuts the paths through them.
    Untimed(Vec<String>),
    /// The files do not say what they should.
    Malformed(String),
}

/// Reads `sta`'s listing and the name dump into a report.
pub(crate) fn report(sta: &str, names_json: &str, top: &str) -> Result<TimingReport, StaProblem> {
    let untimed = untimed_cell_types(sta);
    if !untimed.is_empty() {
        return Err(StaProblem::Untimed(untimed));
    }
    let path = parse_sta(sta).map_err(StaProblem::Malformed)?;
    let names = Names::parse(names_json, top).map_err(StaProblem::Malformed)?;
    Ok(recover(&path, &names))
}

/// Cell types `sta` warned it cannot time, sorted, each once.
fn untimed_cell_types(sta: &str) -> Vec<String> {
    // sta.cc: "Cell type '%s' not recognised! Ignoring." (no model read) and "Module '%s' has no
    // timing arcs!" (a model without a specify block).
    let mut types: Vec<String> = sta
        .lines()
        .filter_map(|l| {
            let quoted = |prefix: &str, suffix: &str| {
                let rest = l.split(prefix).nth(1)?;
                let (name, tail) = rest.split_once('\'')?;
                tail.starts_with(suffix).then(|| name.to_owned())
            };
            quoted("Cell type '", " not recognised")
                .or_else(|| quoted("Module '", " has no timing arcs"))
        })
        .collect();
    types.sort();
    types.dedup();
    types
}

/// A net as `sta` prints it (`\u_core.desc_q[0] [2]`, `$abc$1$n5`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NetRef {
    wire: String,
    index: Option<i64>,
    public: bool,
}

impl NetRef {
    fn parse(text: &str) -> NetRef {
        let text = text.trim();
        let (wire, index) = match text.strip_suffix(']').and_then(|t| t.rsplit_once(" [")) {
            Some((wire, i)) => match i.parse::<i64>() {
                Ok(i) => (wire, Some(i)),
                Err(_) => (text, None),
            },
            None => (text, None),
        };
        match wire.strip_prefix('\\') {
            Some(w) => NetRef {
                wire: w.to_owned(),
                index,
                public: true,
            },
            None => NetRef {
                wire: wire.to_owned(),
                index,
                public: false,
            },
        }
    }
}

impl fmt::Display for NetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.public, self.index) {
            (true, Some(i)) => write!(f, "{}[{i}]", self.wire),
            (true, None) => write!(f, "{}", self.wire),
            // Yosys' own spelling, so the name can be searched for in its log.
            (false, Some(i)) => write!(f, "{} [{i}]", self.wire),
            (false, None) => write!(f, "{}", self.wire),
        }
    }
}

/// The cell that drives a net on the path, and the arc taken through it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Driver {
    cell: String,
    cell_type: String,
    from: String,
    to: String,
}

/// `sta`'s path, in its order: endpoint first, primary input last.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StaPath {
    arrival_ps: u64,
    /// `None` for a primary output, or for an endpoint `sta` does not recognise.
    sink: Option<Sink>,
    /// `sta` printed `(<unknown>)` for the endpoint: the path ends in a net no timed cell reads
    /// (e.g. an unused carry-chain output), so its length bounds the real worst path from above.
    unrecognised_end: bool,
    /// (arrival ps, net, the cell driving it) from the endpoint back; the last has no driver: it is
    /// the primary input.
    steps: Vec<(u64, NetRef, Option<Driver>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sink {
    cell: String,
    cell_type: String,
    pin: String,
}

/// Parses the listing after "Latest arrival time in '<top>' is N:" (format of Yosys 0.23's
/// `passes/cmds/sta.cc`).
fn parse_sta(text: &str) -> Result<StaPath, String> {
    let mut lines = text.lines();
    let header = lines
        .by_ref()
        .find(|l| {
            l.starts_with("Latest arrival time in ") || l.starts_with("No timing paths found")
        })
        .ok_or_else(|| format!("{STA_TXT} has no \"Latest arrival time\" line"))?;
    if header.starts_with("No timing paths found") {
        return Err(format!("{STA_TXT}: sta found no timing path"));
    }
    let arrival_ps = header
        .rsplit_once(" is ")
        .and_then(|(_, n)| n.trim_end_matches(':').trim().parse::<u64>().ok())
        .ok_or_else(|| format!("{STA_TXT}: cannot read the arrival time in {header:?}"))?;
    let end_line = lines
        .next()
        .ok_or_else(|| format!("{STA_TXT}: the path listing is empty"))?;
    let (_, end_rest) = split_arrival(end_line)?;
    let unrecognised_end = end_rest == "(<unknown>)";
    let sink = match end_rest {
        "(<primary output>)" | "(<unknown>)" => None,
        rest => {
            let (cell, inner) = split_cell(rest)?;
            let (cell_type, pin) = inner
                .split_once('.')
                .ok_or_else(|| format!("{STA_TXT}: no `TYPE.PIN` in {end_line:?}"))?;
            Some(Sink {
                cell: cell.to_owned(),
                cell_type: cell_type.to_owned(),
                pin: pin.to_owned(),
            })
        }
    };
    let mut steps = Vec::new();
    let mut net: Option<NetRef> = None;
    for line in lines {
        // sta warns about an unrecognised endpoint right after it; its later warnings end the
        // listing.
        if line.starts_with("Warning:") && unrecognised_end && steps.is_empty() && net.is_none() {
            continue;
        }
        if line.trim().is_empty() || line.starts_with("Warning:") {
            break;
        }
        if !line.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
            net = Some(NetRef::parse(line));
            continue;
        }
        let (arrival, rest) = split_arrival(line)?;
        if let Some(input) = rest.strip_suffix(" (<primary input>)") {
            steps.push((arrival, NetRef::parse(input), None));
            return Ok(StaPath {
                arrival_ps,
                sink,
                unrecognised_end,
                steps,
            });
        }
        let (cell, inner) = split_cell(rest)?;
        let (cell_type, arc) = inner
            .split_once('.')
            .ok_or_else(|| format!("{STA_TXT}: no `TYPE.ARC` in {line:?}"))?;
        let (from, to) = arc
            .split_once("->")
            .ok_or_else(|| format!("{STA_TXT}: no `FROM->TO` arc in {line:?}"))?;
        let driven = net
            .take()
            .ok_or_else(|| format!("{STA_TXT}: no net line before {line:?}"))?;
        steps.push((
            arrival,
            driven,
            Some(Driver {
                cell: cell.to_owned(),
                cell_type: cell_type.to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
            }),
        ));
    }
    Err(format!(
        "{STA_TXT}: the path listing stops before its primary input"
    ))
}

/// "  25565 rest" -> (25565, "rest").
fn split_arrival(line: &str) -> Result<(u64, &str), String> {
    let line = line.trim();
    let (n, rest) = line
        .split_once(' ')
        .ok_or_else(|| format!("{STA_TXT}: no arrival time in {line:?}"))?;
    let n = n
        .parse::<u64>()
        .map_err(|_| format!("{STA_TXT}: no arrival time in {line:?}"))?;
    Ok((n, rest.trim_start()))
}

/// "name (INNER)" -> ("name", "INNER").
fn split_cell(rest: &str) -> Result<(&str, &str), String> {
    rest.strip_suffix(')')
        .and_then(|r| r.rsplit_once(" ("))
        .ok_or_else(|| format!("{STA_TXT}: no `cell (TYPE...)` in {rest:?}"))
}

/// A bit of a public wire: `name` or `name[index]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BitName {
    wire: String,
    index: Option<i64>,
}

impl BitName {
    /// Rank among aliases, best first: a `_q` name, then the deepest, then the shortest.
    fn rank(&self) -> (bool, std::cmp::Reverse<usize>, usize, &str) {
        let base = self
            .wire
            .trim_end_matches(|c: char| c == ']' || c == '[' || c.is_ascii_digit());
        (
            !base.ends_with("_q"),
            std::cmp::Reverse(self.wire.matches('.').count()),
            self.wire.len(),
            &self.wire,
        )
    }
}

impl fmt::Display for BitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.wire),
            None => write!(f, "{}", self.wire),
        }
    }
}

#[derive(Debug, Deserialize)]
struct JsonNetlist {
    modules: HashMap<String, JsonModule>,
}

#[derive(Debug, Deserialize)]
struct JsonModule {
    #[serde(default)]
    cells: HashMap<String, JsonCell>,
    #[serde(default)]
    netnames: HashMap<String, JsonNet>,
}

#[derive(Debug, Deserialize)]
struct JsonCell {
    #[serde(default)]
    port_directions: HashMap<String, String>,
    /// A bit is a net number or a constant ("0", "1", "x", "z").
    #[serde(default)]
    connections: HashMap<String, Vec<serde_json::Value>>,
    #[serde(default)]
    attributes: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct JsonNet {
    bits: Vec<serde_json::Value>,
    /// HDL index of `bits[0]` (`[7:4]` has offset 4).
    #[serde(default)]
    offset: i64,
    /// 1 for `[0:7]`-style ranges: `bits[0]` is then the highest index.
    #[serde(default)]
    upto: u8,
}

/// What `names.json` tells: public wires by net, and the sequential cells.
struct Names {
    /// Net number of each public wire bit.
    bits: HashMap<(String, Option<i64>), u64>,
    /// Public names of each net.
    aliases: HashMap<u64, Vec<BitName>>,
    cells: HashMap<String, JsonCell>,
}

impl Names {
    fn parse(text: &str, top: &str) -> Result<Names, String> {
        let netlist: JsonNetlist =
            serde_json::from_str(text).map_err(|e| format!("{NAMES_JSON}: {e}"))?;
        let module = netlist
            .modules
            .into_iter()
            .find(|(name, _)| name == top)
            .map(|(_, m)| m)
            .ok_or_else(|| format!("{NAMES_JSON} has no module `{top}`"))?;
        let mut bits = HashMap::new();
        let mut aliases: HashMap<u64, Vec<BitName>> = HashMap::new();
        for (wire, net) in &module.netnames {
            let width = net.bits.len();
            for (i, bit) in net.bits.iter().enumerate() {
                let Some(id) = bit.as_u64() else { continue };
                let index = (width > 1).then(|| {
                    let from_lsb = if net.upto == 1 { width - 1 - i } else { i };
                    net.offset + from_lsb as i64
                });
                bits.insert((wire.clone(), index), id);
                aliases.entry(id).or_default().push(BitName {
                    wire: wire.clone(),
                    index,
                });
            }
        }
        Ok(Names {
            bits,
            aliases,
            cells: module.cells,
        })
    }

    /// The best public name of a net.
    fn best_alias(&self, id: u64) -> Option<&BitName> {
        self.aliases
            .get(&id)?
            .iter()
            .min_by(|a, b| a.rank().cmp(&b.rank()))
    }

    /// The best public name of a net `sta` printed.
    fn public_name(&self, net: &NetRef) -> Option<String> {
        if !net.public {
            return None;
        }
        let id = self.bits.get(&(net.wire.clone(), net.index))?;
        self.best_alias(*id).map(|b| b.to_string())
    }

    /// A name for a launching or capturing cell, and where it came from.
    fn cell_name(&self, cell: &str) -> (String, NameSource) {
        let Some(c) = self.cells.get(cell) else {
            return (cell.to_owned(), NameSource::Internal);
        };
        let outputs: Vec<u64> = c
            .connections
            .iter()
            .filter(|(port, _)| c.port_directions.get(*port).is_some_and(|d| d == "output"))
            .flat_map(|(_, bits)| bits.iter())
            .filter_map(|b| b.as_u64())
            .collect();
        // A one-bit output is a flip-flop's Q (or an SRL's): its name is the register's.
        if let [q] = outputs.as_slice()
            && let Some(name) = self.best_alias(*q)
        {
            return (name.to_string(), NameSource::DrivenWire);
        }
        if !cell.starts_with('$') {
            return (cell.to_owned(), NameSource::CellName);
        }
        if let Some(line) = c
            .attributes
            .get("src")
            .and_then(|s| s.as_str())
            .and_then(rtl_source_line)
        {
            return (line, NameSource::SourceLine);
        }
        (cell.to_owned(), NameSource::Internal)
    }
}

/// The innermost RTL location of a `src` attribute ("caq_top.v:149.14-186.6|caq_core.v:222.893-
/// 222.923|/usr/share/yosys/mul2dsp.v:91.5-95.4" -> "caq_core.v:222"): the last entry that is not
/// one of Yosys' own techmap files. The RTL is read by relative name in the scratch directory;
/// Yosys' files come with absolute paths.
fn rtl_source_line(src: &str) -> Option<String> {
    let entry = src.split('|').rev().find(|e| !e.contains('/'))?;
    let (file, pos) = entry.split_once(':')?;
    let line = pos.split('.').next()?;
    Some(format!("{file}:{line}"))
}

/// Turns `sta`'s path into the report, naming what can be named.
fn recover(sta: &StaPath, names: &Names) -> TimingReport {
    let mut path: Vec<PathStep> = sta
        .steps
        .iter()
        .rev()
        .map(|(arrival, net, driver)| {
            // As sta printed it: a public name where the net has one (opt_clean prefers them).
            let name = net.to_string();
            match driver {
                Some(d) => PathStep {
                    arrival_ps: *arrival,
                    cell_type: d.cell_type.clone(),
                    pins: format!("{}->{}", d.from, d.to),
                    cell: d.cell.clone(),
                    net: Some(name),
                },
                None => PathStep {
                    arrival_ps: *arrival,
                    cell_type: PORT.to_owned(),
                    pins: "input".to_owned(),
                    cell: name.clone(),
                    net: Some(name),
                },
            }
        })
        .collect();

    // The launching cell: the first one entered through a clock pin. Before it, only the clock's
    // buffers; without one, the path starts at a data input.
    let launch = sta.steps.iter().rev().position(|(_, _, d)| {
        d.as_ref()
            .is_some_and(|d| CLOCK_PINS.contains(&d.from.as_str()))
    });
    let (start, first_logic) = match launch {
        Some(i) => {
            let (_, net, driver) = &sta.steps[sta.steps.len() - 1 - i];
            let driver = driver.as_ref().expect("a launching step has a driver");
            let (name, named_by) = match names.public_name(net) {
                Some(n) => (n, NameSource::DrivenWire),
                None => names.cell_name(&driver.cell),
            };
            let start = PathEnd {
                name,
                cell_type: driver.cell_type.clone(),
                pin: driver.from.clone(),
                named_by,
            };
            (start, i + 1)
        }
        None => {
            let input = &path[0];
            let start = PathEnd {
                name: input.cell.clone(),
                cell_type: PORT.to_owned(),
                pin: "input".to_owned(),
                named_by: NameSource::Port,
            };
            (start, 1)
        }
    };

    let mut cells_on_path = BTreeMap::new();
    for step in &path[first_logic..] {
        *cells_on_path.entry(step.cell_type.clone()).or_insert(0) += 1;
    }
    let lut_depth = cells_on_path
        .iter()
        .filter(|(t, _)| t.starts_with("LUT"))
        .map(|(_, n)| n)
        .sum();

    let end = match &sta.sink {
        Some(sink) => {
            let (name, named_by) = names.cell_name(&sink.cell);
            path.push(PathStep {
                arrival_ps: sta.arrival_ps,
                cell_type: sink.cell_type.clone(),
                pins: sink.pin.clone(),
                cell: sink.cell.clone(),
                net: None,
            });
            PathEnd {
                name,
                cell_type: sink.cell_type.clone(),
                pin: sink.pin.clone(),
                named_by,
            }
        }
        None if sta.unrecognised_end => {
            // The nets at the end of such a path are Yosys' own (an adder's unread bit): named by
            // the last public net on the path, the RTL signal the path runs through last, else
            // by the net it ends in.
            let public = sta.steps.iter().find(|(_, net, _)| net.public);
            let (name, named_by) = match public {
                Some((_, net, _)) => (net.to_string(), NameSource::DrivenWire),
                None => (
                    sta.steps
                        .first()
                        .map(|(_, net, _)| net.to_string())
                        .unwrap_or_default(),
                    NameSource::Internal,
                ),
            };
            path.push(PathStep {
                arrival_ps: sta.arrival_ps,
                cell_type: UNRECOGNISED.to_owned(),
                pins: String::new(),
                cell: name.clone(),
                net: None,
            });
            PathEnd {
                name,
                cell_type: UNRECOGNISED.to_owned(),
                pin: String::new(),
                named_by,
            }
        }
        None => {
            // The output port is the net sta printed first.
            let port = sta
                .steps
                .first()
                .map(|(_, net, _)| net.to_string())
                .unwrap_or_default();
            path.push(PathStep {
                arrival_ps: sta.arrival_ps,
                cell_type: PORT.to_owned(),
                pins: "output".to_owned(),
                cell: port.clone(),
                net: None,
            });
            PathEnd {
                name: port,
                cell_type: PORT.to_owned(),
                pin: "output".to_owned(),
                named_by: NameSource::Port,
            }
        }
    };

    TimingReport {
        worst_ns: sta.arrival_ps as f64 / 1000.0,
        start,
        end,
        lut_depth,
        cells_on_path,
        path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sta` on today's pynq-z2 RTL (Yosys 0.23), endpoint warnings trimmed to two.
    const STA_PYNQ_Z2: &str = include_str!("../tests/fixtures/sta-pynq-z2.txt");
    /// The same run's `json` dump, trimmed to the cells and wires of that path (the DSP cell to its
    /// P output).
    const NAMES_PYNQ_Z2: &str = include_str!("../tests/fixtures/names-pynq-z2.json");

    #[test]
    fn sta_listing_parses_from_endpoint_back_to_the_clock_input() {
        let path = parse_sta(STA_PYNQ_Z2).unwrap();
        assert_eq!(path.arrival_ps, 25_565);
        assert_eq!(
            path.sink,
            Some(Sink {
                cell: "$auto$ff.cc:266:slice$55329".into(),
                cell_type: "FDRE".into(),
                pin: "D".into(),
            })
        );
        // 50 cells and the primary input they start from.
        assert_eq!(path.steps.len(), 51);
        let (arrival, input, driver) = path.steps.last().unwrap();
        assert_eq!(
            (*arrival, input.to_string(), driver),
            (0, "clk".into(), &None)
        );
        let (arrival, net, driver) = &path.steps[path.steps.len() - 4];
        assert_eq!(*arrival, 399);
        assert_eq!(net.to_string(), "u_core.desc_q[0][0]");
        let driver = driver.as_ref().unwrap();
        assert_eq!(
            (driver.cell_type.as_str(), driver.from.as_str()),
            ("FDRE", "C")
        );
    }

    #[test]
    fn start_and_end_of_the_pynq_z2_path_are_named_by_their_registers() {
        let r = report(STA_PYNQ_Z2, NAMES_PYNQ_Z2, "caq_top").unwrap();
        assert_eq!(r.worst_ns, 25.565);
        // The start's Q net is also `u_core.d_op[0]`, a wire that decodes the descriptor; the
        // register's `_q` name wins.
        assert_eq!(r.start.name, "u_core.desc_q[0][0]");
        assert_eq!(
            (r.start.cell_type.as_str(), r.start.pin.as_str()),
            ("FDRE", "C")
        );
        assert_eq!(r.start.named_by, NameSource::DrivenWire);
        assert_eq!(r.end.name, "u_core.state_q[1]");
        assert_eq!(
            (r.end.cell_type.as_str(), r.end.pin.as_str()),
            ("FDRE", "D")
        );
        assert_eq!(r.end.named_by, NameSource::DrivenWire);
        assert_eq!(r.end.to_string(), "u_core.state_q[1] (FDRE.D)");
        assert!(!r.meets(25.0) && r.meets(25.565));
    }

    #[test]
    fn cells_on_the_path_are_counted_after_the_launching_register() {
        let r = report(STA_PYNQ_Z2, NAMES_PYNQ_Z2, "caq_top").unwrap();
        assert_eq!(r.lut_depth, 15);
        let count = |t: &str| r.cells_on_path.get(t).copied();
        assert_eq!(count("CARRY4"), Some(19));
        assert_eq!(count("DSP48E1"), Some(7));
        assert_eq!(count("MUXF7"), Some(4));
        assert_eq!(count("MUXF8"), Some(2));
        assert_eq!(count("LUT6"), Some(11));
        // The clock's buffers and the launching flip-flop are not on the logic path.
        assert_eq!(
            (count("IBUF"), count("BUFG"), count("FDRE")),
            (None, None, None)
        );
    }

    #[test]
    fn the_path_runs_from_the_clock_port_to_the_endpoint_in_time_order() {
        let r = report(STA_PYNQ_Z2, NAMES_PYNQ_Z2, "caq_top").unwrap();
        assert_eq!(r.path.len(), 52);
        let first = &r.path[0];
        assert_eq!(
            (first.cell_type.as_str(), first.cell.as_str()),
            ("port", "clk")
        );
        let last = r.path.last().unwrap();
        assert_eq!((last.arrival_ps, last.pins.as_str()), (25_565, "D"));
        assert_eq!(last.net, None);
        assert!(
            r.path
                .windows(2)
                .all(|w| w[0].arrival_ps <= w[1].arrival_ps)
        );
        // Two cascades of DSP48E1 (multiplications wider than one DSP) enter at A.
        let cascades: Vec<(u64, &str)> = r
            .path
            .iter()
            .filter(|s| s.pins == "A->PCOUT")
            .map(|s| (s.arrival_ps, s.cell_type.as_str()))
            .collect();
        assert_eq!(cascades, [(7_250, "DSP48E1"), (12_316, "DSP48E1")]);
        assert!(
            r.path
                .iter()
                .any(|s| s.net.as_deref() == Some("u_core.d_regions64[15]")),
            "{:?}",
            r.path
        );
    }

    #[test]
    fn a_dsp_endpoint_is_named_by_the_rtl_line_of_its_multiplication() {
        let sta = "Latest arrival time in 'caq_top' is 1500:\n   \
             1500 $flatten\\u_core.$mul$caq_core.v:222$6212.genblk1.genblk1.genblk1.genblk1.genblk1.genblk1.genblk1.sliceA.last (DSP48E1.A)\n           \
             \\u_core.d_regions64 [15]\n     \
             399 $auto$ff.cc:266:slice$66158 (FDRE.C->Q)\n           \
             \\u_core.clk\n      \
             96 $auto$clkbufmap.cc:261:execute$218838 (BUFG.I->O)\n           \
             $auto$clkbufmap.cc:262:execute$218839\n       \
             0 $iopadmap$caq_top.clk (IBUF.I->O)\n       \
             0   \\clk (<primary input>)\n";
        let r = report(sta, NAMES_PYNQ_Z2, "caq_top").unwrap();
        assert_eq!(r.end.name, "caq_core.v:222");
        assert_eq!(r.end.named_by, NameSource::SourceLine);
        assert_eq!(r.end.to_string(), "caq_core.v:222 (DSP48E1.A)");
        assert_eq!(r.lut_depth, 0);
        assert!(r.cells_on_path.is_empty());
    }

    #[test]
    fn a_path_between_ports_is_named_by_the_ports() {
        let sta = "Latest arrival time in 'caq_top' is 642:\n     \
             642 (<primary output>)\n           \
             \\irq\n     \
             642 $abc$9$auto$blifparse.cc:525:parse_blif$10 (LUT2.I0->O)\n           \
             \\u_regs.s_axil_wdata [0]\n       \
             0 $iopadmap$caq_top.s_axil_wdata (IBUF.I->O)\n       \
             0   \\s_axil_wdata [0] (<primary input>)\n";
        let r = report(sta, NAMES_PYNQ_Z2, "caq_top").unwrap();
        assert_eq!(r.start.to_string(), "s_axil_wdata[0] (input port)");
        assert_eq!(r.end.to_string(), "irq (output port)");
        assert_eq!(
            (r.start.named_by, r.end.named_by),
            (NameSource::Port, NameSource::Port)
        );
        // The input's IBUF is on the path.
        assert_eq!(r.cells_on_path.get("IBUF"), Some(&1));
        assert_eq!(r.lut_depth, 1);
        assert_eq!(r.path.len(), 4);
    }

    #[test]
    fn a_register_without_a_public_name_keeps_its_yosys_name() {
        let sta = STA_PYNQ_Z2.replace("$auto$ff.cc:266:slice$55329", "$auto$ff.cc:266:slice$1");
        let r = report(&sta, NAMES_PYNQ_Z2, "caq_top").unwrap();
        assert_eq!(r.end.name, "$auto$ff.cc:266:slice$1");
        assert_eq!(r.end.named_by, NameSource::Internal);
    }

    #[test]
    fn cells_without_timing_arcs_refuse_the_report() {
        // What sta printed before its (cut) path on today's zcu104 RTL, -family xcup, Yosys 0.23.
        let zcu104 = "10. Executing STA pass (static timing analysis).\n\
             Warning: Module 'MUXF9' has no timing arcs!\n\
             Warning: Module 'DSP48E2' has no timing arcs!\n\
             Warning: Module 'RAMB36E2' has no timing arcs!\n\
             Warning: Module 'RAM32X16DR8' has no timing arcs!\n\
             Warning: Module 'RAMB36E2' has no timing arcs!\n\
             Warning: Module 'RAMB18E2' has no timing arcs!\n\
             Warning: Module 'RAM32M16' has no timing arcs!\n\
             Warning: Module 'RAM64X1S' has no timing arcs!\n\
             Warning: Module 'RAMB36E2' has no timing arcs!\n";
        let sta = format!("{zcu104}{STA_PYNQ_Z2}");
        let types = [
            "DSP48E2",
            "MUXF9",
            "RAM32M16",
            "RAM32X16DR8",
            "RAM64X1S",
            "RAMB18E2",
            "RAMB36E2",
        ];
        assert_eq!(
            report(&sta, NAMES_PYNQ_Z2, "caq_top"),
            Err(StaProblem::Untimed(types.map(String::from).to_vec()))
        );
        // A cell type with no model at all is refused the same way.
        let sta = format!("Warning: Cell type 'URAM288' not recognised! Ignoring.\n{STA_PYNQ_Z2}");
        assert_eq!(
            report(&sta, NAMES_PYNQ_Z2, "caq_top"),
            Err(StaProblem::Untimed(vec!["URAM288".into()]))
        );
    }

    #[test]
    fn a_path_into_an_unrecognised_endpoint_is_reported_by_its_last_net() {
        // sim-small after descriptor v2 (Yosys 0.23): the critical path ends in a carry-chain
        // output of a `$macc` that no timed cell reads.
        let sta = include_str!("../tests/fixtures/sta-unknown-end.txt");
        let path = parse_sta(sta).unwrap();
        assert_eq!((path.arrival_ps, path.sink.is_none()), (4627, true));
        assert!(path.unrecognised_end);
        let (arrival, input, driver) = path.steps.last().unwrap();
        assert_eq!(
            (*arrival, input.to_string(), driver),
            (0, "clk".into(), &None)
        );
        let r = report(sta, "{\"modules\": {\"caq_top\": {}}}", "caq_top").unwrap();
        assert_eq!(r.worst_ns, 4.627);
        assert_eq!(r.end.cell_type, "unrecognised");
        // Named by the last public net on the path, the result stage's run-end strobe.
        assert_eq!(r.end.name, "u_core.u_result.o_run_end");
        assert_eq!(r.end.named_by, NameSource::DrivenWire);
    }

    #[test]
    fn missing_or_cut_listings_are_malformed() {
        let no_path = "10. Executing STA pass (static timing analysis).\nNo timing paths found.\n";
        let err = |sta: &str| match report(sta, NAMES_PYNQ_Z2, "caq_top") {
            Err(StaProblem::Malformed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(no_path).contains("no timing path"));
        assert!(err("").contains("Latest arrival time"));
        let cut: String = STA_PYNQ_Z2
            .lines()
            .filter(|l| !l.contains("<primary input>"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(err(&cut).contains("primary input"));
        // An endpoint sta does not recognise still needs the path back to its input.
        let unknown = "Latest arrival time in 'caq_top' is 5:\n       5 (<unknown>)\n";
        assert!(err(unknown).contains("primary input"));
        assert!(report(STA_PYNQ_Z2, NAMES_PYNQ_Z2, "other").unwrap_err().eq(
            &StaProblem::Malformed(format!("{NAMES_JSON} has no module `other`"))
        ));
    }

    #[test]
    fn aliases_rank_the_q_name_then_the_deepest_then_the_shortest() {
        let name = |wire: &str, index| BitName {
            wire: wire.into(),
            index,
        };
        let best = |names: Vec<BitName>| {
            names
                .into_iter()
                .min_by(|a, b| a.rank().cmp(&b.rank()))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            best(vec![
                name("u_core.d_op", Some(2)),
                name("u_core.desc_q[0]", Some(2))
            ]),
            "u_core.desc_q[0][2]"
        );
        assert_eq!(
            best(vec![
                name("u_core.acc", None),
                name("u_core.u_array.acc_out", None)
            ]),
            "u_core.u_array.acc_out"
        );
        assert_eq!(
            best(vec![
                name("u_core.u_array.clk", None),
                name("u_dma.clk", None),
                name("u_core.u_requant.clk", None)
            ]),
            "u_core.u_array.clk"
        );
    }

    #[test]
    fn net_names_keep_yosys_spelling_unless_public() {
        assert_eq!(
            NetRef::parse("  \\u_core.desc_q[0] [2]").to_string(),
            "u_core.desc_q[0][2]"
        );
        assert_eq!(NetRef::parse("\\u_core.clk").to_string(), "u_core.clk");
        assert_eq!(
            NetRef::parse("$abc$1$n5.A [4]").to_string(),
            "$abc$1$n5.A [4]"
        );
        assert_eq!(
            NetRef::parse("$abc$1$n5_Y[1]").to_string(),
            "$abc$1$n5_Y[1]"
        );
    }

    #[test]
    fn source_line_is_the_innermost_rtl_entry() {
        let src = "caq_top.v:149.14-186.6|caq_core.v:222.893-222.923|/usr/bin/../share/yosys/mul2dsp.v:91.5-95.4";
        assert_eq!(rtl_source_line(src).as_deref(), Some("caq_core.v:222"));
        assert_eq!(
            rtl_source_line("/usr/share/yosys/xilinx/ff_map.v:68.41-68.95"),
            None
        );
    }

    #[test]
    fn the_commands_time_with_the_specify_library_and_dump_public_wires() {
        let c = commands();
        assert!(
            c.starts_with("read_verilog -lib -specify +/xilinx/cells_sim.v; "),
            "{c}"
        );
        assert!(c.contains(&format!("tee -q -o {STA_TXT} sta;")), "{c}");
        assert!(c.ends_with("w:* w:$* %d"), "{c}");
    }
}
