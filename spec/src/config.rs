//! [`AccelConfig`]: the accelerator configuration read from `configs/*.toml`, its validation rules and
//! every parameter derived from it.
//!
//! This is the single source of truth for the hardware: the generator, the simulators and the driver
//! all read one `AccelConfig`. Derived values (bus bytes, accumulator widths, the largest safe K) are
//! computed here and nowhere else. This module knows the TOML schema, not the register map or the
//! descriptor format; those live in `regmap`, `caps` and `descriptor`.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::coherence::Coherence;
use crate::error::{ConfigProblem, SpecError};
use crate::types::BitWidth;

/// The config schema this build reads. Any other `schema_version` is rejected.
pub const SCHEMA_VERSION: u32 = 1;

/// Width of the signed accumulator each quantization region (group of K) is summed into.
pub const ACC_BITS: u32 = 32;

/// Width of the rescaled total, after each region's accumulator is multiplied by its group multiplier
/// (at most [`GROUP_MULT_MAX`] = 2^8) and the regions are summed. See [`AccelConfig::total_acc_bits`].
pub const TOTAL_ACC_BITS: u32 = 48;

/// The largest group multiplier a descriptor's group-multiplier table may hold (2^8).
pub const GROUP_MULT_MAX: u16 = 256;

pub(crate) const ROWS: RangeInclusive<u32> = 1..=64;
pub(crate) const COLS: [u32; 4] = [8, 16, 32, 64];
pub(crate) const ACT_BITS: RangeInclusive<u32> = 2..=8;
pub(crate) const MAX_PLANE_GROUPS: RangeInclusive<u32> = 1..=4;
pub(crate) const GROUP_SIZE_MAX: u32 = 4096;
const CLOCK_MHZ: RangeInclusive<f64> = 10.0..=500.0;
const BUF_KIB: RangeInclusive<u32> = 1..=4096;
pub(crate) const DATA_WIDTH: [u32; 2] = [64, 128];
pub(crate) const MAX_BURST: RangeInclusive<u32> = 1..=256;
/// Zynq-7000 HP ports are AXI3: bursts of at most 16 beats (UG585, "AXI_HP Interfaces").
const MAX_BURST_AXI3: u32 = 16;
pub(crate) const ADDR_WIDTH: RangeInclusive<u32> = 32..=64;
const ADDR_WIDTH_ZYNQ7: u32 = 32;
pub(crate) const ID_WIDTH: RangeInclusive<u32> = 1..=8;
pub(crate) const MAX_OUTSTANDING: RangeInclusive<u32> = 1..=16;
pub(crate) const MAX_DESCRIPTORS: RangeInclusive<u32> = 1..=65535;
pub(crate) const MAX_DIM: RangeInclusive<u32> = 1..=65535;

/// The board an accelerator config targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Board {
    /// TUL PYNQ-Z2: Zynq-7000 XC7Z020, AXI3 HP ports, 32-bit addresses.
    PynqZ2,
    /// AMD ZCU104: Zynq UltraScale+ XCZU7EV, AXI4 HP ports, 40-bit addresses.
    Zcu104,
    /// Simulation only (FuncDevice / Verilator); no part constraints.
    Sim,
}

impl Board {
    /// The name used in TOML (`pynq-z2`, `zcu104`, `sim`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Board::PynqZ2 => "pynq-z2",
            Board::Zcu104 => "zcu104",
            Board::Sim => "sim",
        }
    }

    /// The FPGA part prefix the board carries, if it is a real board.
    const fn part_prefix(self) -> Option<&'static str> {
        match self {
            Board::PynqZ2 => Some("xc7z020"),
            Board::Zcu104 => Some("xczu7ev"),
            Board::Sim => None,
        }
    }
}

/// An accelerator configuration: one `configs/*.toml` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccelConfig {
    /// Must be [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// A short identifier; names generated files, so letters, digits, `-` and `_` only.
    pub name: String,
    pub board: Board,
    /// The FPGA part, e.g. `xc7z020clg400-1`.
    pub part: String,
    /// Target clock of the accelerator, MHz (10..=500).
    pub clock_mhz: f64,
    pub array: ArrayConfig,
    pub memory: MemoryConfig,
    pub axi: AxiConfig,
    pub limits: LimitsConfig,
}

/// `[array]`: the bit-serial compute array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayConfig {
    /// Output channels computed in parallel (1..=64).
    pub rows: u32,
    /// K lanes reduced per cycle (8, 16, 32, 64 or 128).
    pub cols: u32,
    /// Supported weight bit-widths, ascending, each 1..=8.
    pub weight_bits: Vec<u32>,
    /// Largest activation width (2..=8).
    pub act_bits: u32,
    /// How many nested plane groups a descriptor may name (1..=4).
    pub max_plane_groups: u32,
    /// Local quantization region size along K; 0 disables regions, otherwise a power of two that is
    /// a multiple of `cols`, at most 4096.
    pub group_size: u32,
    /// Global average pooling on a Conv2d's result path (descriptor field `global_pool`): R sum
    /// registers and one more requantization unit. Off when absent.
    #[serde(default)]
    pub global_pool: bool,
}

/// `[memory]`: on-chip scratchpads, KiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    pub weight_buf_kib: u32,
    pub act_buf_kib: u32,
    pub acc_buf_kib: u32,
}

/// `[axi]`: the DMA engine's AXI4 master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxiConfig {
    /// Data bus width in bits (64 or 128).
    pub data_width: u32,
    /// Longest burst in beats: a power of two, 1..=256, at most 16 on `pynq-z2` (AXI3 HP ports).
    pub max_burst: u32,
    /// Address width in bits (32..=64, at most 32 on `pynq-z2`).
    pub addr_width: u32,
    /// AXI ID width in bits (1..=8).
    pub id_width: u32,
    /// Read bursts in flight (1..=16).
    pub max_outstanding_reads: u32,
    /// How the master's traffic meets the CPU caches (`none` or `io`; default `none`): decides the
    /// AxCACHE/AxPROT the DMA engine drives, the PS port and the overlay's `dma-coherent`
    /// (`caq_spec::Coherence`). Only boards with an I/O-coherent port take `io`. Left out of the
    /// canonical form when `none`, so the hashes of configs written before the field are unchanged.
    #[serde(default, skip_serializing_if = "Coherence::is_none")]
    pub coherence: Coherence,
}

/// `[limits]`: the largest work a descriptor list may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest descriptor list (1..=65535).
    pub max_descriptors: u32,
    /// Longest reduction K of a layer; bounded so the per-region accumulator cannot overflow.
    pub max_k: u32,
    /// Largest channel count, height or width (1..=65535).
    pub max_dim: u32,
}

/// The largest K for which a signed [`ACC_BITS`]-bit accumulator cannot overflow with weights of
/// `weight_bits` (two's complement, magnitude at most 2^(w−1)) and activations of `act_bits` (magnitude
/// at most 2^a − 1): the largest K with K · 2^(w−1) · (2^a − 1) ≤ 2^31 − 1.
pub fn max_k_for(weight_bits: BitWidth, act_bits: BitWidth) -> u32 {
    let acc_max = (1u64 << (ACC_BITS - 1)) - 1;
    let per_mac = (1u64 << (weight_bits.get() - 1)) * ((1u64 << act_bits.get()) - 1);
    // per_mac ≥ 1 and acc_max < 2^31, so the quotient fits in u32.
    u32::try_from(acc_max / per_mac).unwrap_or(u32::MAX)
}

impl AccelConfig {
    /// Parses and validates a config. `origin` names the text in errors (usually its path).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, SpecError> {
        // Check the schema version before the strict parse, so a file written for another schema is
        // reported as such rather than as a list of unknown fields.
        let table: toml::Table = text.parse().map_err(|e| toml_error(origin, text, &e))?;
        match table.get("schema_version") {
            Some(toml::Value::Integer(v)) if *v == i64::from(SCHEMA_VERSION) => {}
            found => {
                return Err(SpecError::SchemaVersion {
                    origin: origin.to_string(),
                    found: found.map_or_else(|| "(missing)".to_string(), |v| v.to_string()),
                    supported: SCHEMA_VERSION,
                });
            }
        }
        let cfg: AccelConfig = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SpecError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = crate::fsio::read_regular_to_string(path).map_err(|source| SpecError::Io {
            path: origin.clone(),
            source,
        })?;
        Self::from_toml_str(&text, &origin)
    }

    /// Checks every rule; on failure the error lists all problems, each naming its TOML field.
    /// `origin` names the config in the error.
    pub fn validate(&self, origin: &str) -> Result<(), SpecError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SpecError::InvalidConfig {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    /// Every rule this config breaks, in field order; empty when it is valid.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if self.schema_version != SCHEMA_VERSION {
            p.push("schema_version", self.schema_version, SCHEMA_VERSION);
        }
        if !crate::name_ok(&self.name) {
            p.push(
                "name",
                format!("{:?}", self.name),
                format!("{} (it names generated files)", crate::NAME_RULE),
            );
        }
        match self.board.part_prefix() {
            Some(prefix) if !self.part.to_ascii_lowercase().starts_with(prefix) => p.push(
                "part",
                format!("{:?}", self.part),
                format!(
                    "an {prefix} part (the one board {} carries)",
                    self.board.as_str()
                ),
            ),
            None if self.part.is_empty() => p.push("part", "\"\"", "a part name"),
            _ => {}
        }
        if !CLOCK_MHZ.contains(&self.clock_mhz) {
            p.push("clock_mhz", self.clock_mhz, "10..=500");
        }
        self.array_problems(&mut p);
        let m = &self.memory;
        p.range("memory.weight_buf_kib", m.weight_buf_kib, BUF_KIB);
        p.range("memory.act_buf_kib", m.act_buf_kib, BUF_KIB);
        p.range("memory.acc_buf_kib", m.acc_buf_kib, BUF_KIB);
        let stage = crate::shape::MIN_STAGE_BYTES;
        if BUF_KIB.contains(&m.acc_buf_kib)
            && ROWS.contains(&self.array.rows)
            && m.acc_buf_kib * 1024 / self.array.rows < stage
        {
            p.push(
                "memory.acc_buf_kib",
                m.acc_buf_kib,
                format!(
                    "at least {} (array.rows = {} rows of output staging need {stage} bytes each)",
                    (self.array.rows * stage).div_ceil(1024),
                    self.array.rows
                ),
            );
        }
        self.axi_problems(&mut p);
        self.limits_problems(&mut p);
        p.0
    }

    fn array_problems(&self, p: &mut Problems) {
        let a = &self.array;
        p.range("array.rows", a.rows, ROWS);
        if ROWS.contains(&a.rows) && (a.rows < 4 || !a.rows.is_power_of_two()) {
            p.push(
                "array.rows",
                a.rows,
                "a power of two of at least 4 (the layer engine starts a tile's tables on 8-byte \
                 boundaries and indexes its row tables by bit fields)",
            );
        }
        if !COLS.contains(&a.cols) {
            p.push(
                "array.cols",
                a.cols,
                "one of 8, 16, 32, 64 (a K chunk lies within one 64-bit plane word)",
            );
        }
        if a.weight_bits.is_empty() {
            p.push("array.weight_bits", "[]", "at least one width");
        }
        for (i, &w) in a.weight_bits.iter().enumerate() {
            p.range(&format!("array.weight_bits[{i}]"), w, 1..=8);
        }
        if a.weight_bits.windows(2).any(|w| w[0] >= w[1]) {
            p.push(
                "array.weight_bits",
                format!("{:?}", a.weight_bits),
                "strictly ascending widths (sorted, no duplicates)",
            );
        }
        p.range("array.act_bits", a.act_bits, ACT_BITS);
        p.range(
            "array.max_plane_groups",
            a.max_plane_groups,
            MAX_PLANE_GROUPS,
        );
        if let Err(expected) = check_group_size(a.group_size, a.cols) {
            p.push("array.group_size", a.group_size, expected);
        }
    }

    fn axi_problems(&self, p: &mut Problems) {
        let x = &self.axi;
        let pynq = self.board == Board::PynqZ2;
        if !DATA_WIDTH.contains(&x.data_width) {
            p.push("axi.data_width", x.data_width, "64 or 128");
        }
        if !MAX_BURST.contains(&x.max_burst) || !x.max_burst.is_power_of_two() {
            p.push(
                "axi.max_burst",
                x.max_burst,
                "a power of two in 1..=256 (CAPS1 carries its log2)",
            );
        } else if pynq && x.max_burst > MAX_BURST_AXI3 {
            p.push(
                "axi.max_burst",
                x.max_burst,
                "at most 16 on pynq-z2 (Zynq-7000 HP ports are AXI3)",
            );
        }
        p.range("axi.addr_width", x.addr_width, ADDR_WIDTH);
        if pynq && x.addr_width > ADDR_WIDTH_ZYNQ7 {
            p.push(
                "axi.addr_width",
                x.addr_width,
                "at most 32 on pynq-z2 (Zynq-7000 HP ports are 32-bit)",
            );
        }
        p.range("axi.id_width", x.id_width, ID_WIDTH);
        let coherent_port = crate::board::board_map(self.board).and_then(|m| m.dma_port_coherent);
        if x.coherence == Coherence::Io && coherent_port.is_none() {
            p.push(
                "axi.coherence",
                format!("\"{}\"", x.coherence.as_str()),
                format!(
                    "\"none\": board {} has no I/O-coherent DMA port",
                    self.board.as_str()
                ),
            );
        }
        p.range(
            "axi.max_outstanding_reads",
            x.max_outstanding_reads,
            MAX_OUTSTANDING,
        );
    }

    fn limits_problems(&self, p: &mut Problems) {
        let l = &self.limits;
        p.range("limits.max_descriptors", l.max_descriptors, MAX_DESCRIPTORS);
        p.range("limits.max_dim", l.max_dim, MAX_DIM);
        // The bound is only meaningful once the widths it uses are valid; bad widths are reported
        // on their own fields.
        let wmax = self
            .array
            .weight_bits
            .iter()
            .copied()
            .max()
            .and_then(bit_width);
        let act = Some(self.array.act_bits)
            .filter(|a| ACT_BITS.contains(a))
            .and_then(bit_width);
        if l.max_k == 0 {
            p.push("limits.max_k", l.max_k, "at least 1");
        } else if let (Some(w), Some(a)) = (wmax, act) {
            let limit = max_k_for(w, a);
            if l.max_k > limit {
                p.push(
                    "limits.max_k",
                    l.max_k,
                    format!(
                        "at most {limit}: a signed {ACC_BITS}-bit per-region accumulator must hold \
                         max_k · 2^({w}−1) · (2^{a} − 1) ≤ 2^31 − 1 (largest weight_bits = {w}, \
                         act_bits = {a})"
                    ),
                );
            }
        }
    }

    /// Bytes per AXI data beat.
    pub const fn bus_bytes(&self) -> u32 {
        self.axi.data_width / 8
    }

    /// Bytes in the longest burst.
    pub const fn max_burst_bytes(&self) -> u32 {
        self.axi.max_burst * self.bus_bytes()
    }

    /// The widest supported weight. For an invalid config with no valid width this is 8, the widest
    /// the contract allows, so bounds derived from it stay conservative.
    pub fn max_weight_bits(&self) -> BitWidth {
        self.supported_weight_bits().max().unwrap_or(BitWidth::MAX)
    }

    /// The supported weight widths, ascending (entries outside 1..=8 are skipped).
    pub fn supported_weight_bits(&self) -> impl Iterator<Item = BitWidth> + '_ {
        self.array.weight_bits.iter().filter_map(|&w| bit_width(w))
    }

    /// Bit `i − 1` set when an `i`-bit weight is supported (the CAPS0.WEIGHT_BITS_MASK encoding).
    pub fn weight_bits_mask(&self) -> u8 {
        self.supported_weight_bits()
            .fold(0, |mask, w| mask | 1 << (w.get() - 1))
    }

    /// Width of the signed per-region accumulator: 32. `limits.max_k` is validated against it.
    pub const fn acc_bits(&self) -> u32 {
        ACC_BITS
    }

    /// Width of the rescaled total: 48.
    ///
    /// The regions' 32-bit accumulators are each multiplied by a group multiplier of at most 2^8 and
    /// summed. Since the whole layer obeys the same bound as one region (Σ|acc| ≤ 2^31 − 1), the total
    /// stays below 2^39; 48 bits leave headroom and match the P register of the DSP48E1/E2, so the
    /// multiply-accumulate maps onto one DSP slice.
    pub const fn total_acc_bits(&self) -> u32 {
        TOTAL_ACC_BITS
    }

    /// Peak multiply-accumulates per cycle at a weight width: each cycle the array does
    /// `rows · cols` one-bit plane products, and a `bits`-bit weight takes `bits` plane steps.
    pub fn peak_macs_per_cycle_at(&self, bits: BitWidth) -> f64 {
        f64::from(self.array.rows) * f64::from(self.array.cols) / f64::from(bits.get())
    }

    /// Peak multiply-accumulates per second at a weight width and the configured clock.
    pub fn peak_macs_per_second_at(&self, bits: BitWidth) -> f64 {
        self.peak_macs_per_cycle_at(bits) * self.clock_mhz * 1e6
    }

    /// log2 of the region size, 0 when regions are disabled (the CAPS1.GROUP_SIZE_LOG2 encoding).
    pub const fn group_size_log2(&self) -> u32 {
        if self.array.group_size == 0 {
            0
        } else {
            self.array.group_size.trailing_zeros()
        }
    }
}

fn bit_width(v: u32) -> Option<BitWidth> {
    BitWidth::try_from(u8::try_from(v).ok()?).ok()
}

/// Checks a local-quantization-region size against the array width; `Err` holds what is allowed.
pub(crate) fn check_group_size(group_size: u32, cols: u32) -> Result<(), String> {
    let ok = group_size == 0
        || (group_size.is_power_of_two() && group_size >= cols && group_size <= GROUP_SIZE_MAX);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "0 (no regions) or a power of two that is a multiple of array.cols = {cols}, \
             at most {GROUP_SIZE_MAX}"
        ))
    }
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, field: &str, value: impl Display, expected: impl Display) {
        self.0.push(ConfigProblem {
            field: field.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        });
    }

    fn range(&mut self, field: &str, value: u32, range: RangeInclusive<u32>) {
        if !range.contains(&value) {
            self.push(field, value, format!("{}..={}", range.start(), range.end()));
        }
    }
}

fn toml_error(origin: &str, text: &str, err: &toml::de::Error) -> SpecError {
    let location = match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{origin}:{line}:{column}")
        }
        None => origin.to_string(),
    };
    SpecError::Toml {
        location,
        message: err.message().trim_end().to_string(),
    }
}

/// Every `*.toml` in the workspace's `configs/`, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn shipped_configs() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    paths.sort();
    paths
}

#[cfg(test)]
pub(crate) fn config_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Edit = fn(&mut AccelConfig);

    fn sim_small_text() -> String {
        std::fs::read_to_string(config_path("sim-small.toml")).expect("configs/sim-small.toml")
    }

    fn parse_err(text: &str) -> String {
        AccelConfig::from_toml_str(text, "test.toml")
            .expect_err("config should be rejected")
            .to_string()
    }

    fn invalid_with(edit: impl FnOnce(&mut AccelConfig)) -> String {
        let mut cfg = AccelConfig::from_toml_str(&sim_small_text(), "sim-small").expect("valid");
        edit(&mut cfg);
        cfg.validate("edited.toml")
            .expect_err("should be invalid")
            .to_string()
    }

    #[test]
    fn every_shipped_config_loads_and_validates() {
        let paths = shipped_configs();
        let names: Vec<_> = paths
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        for expected in ["pynq-z2.toml", "zcu104.toml", "sim-small.toml"] {
            assert!(
                names.contains(&expected),
                "configs/{expected} missing: {names:?}"
            );
        }
        for path in &paths {
            let cfg = AccelConfig::load(path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cfg.schema_version, SCHEMA_VERSION);
            assert_eq!(
                path.file_stem().and_then(|s| s.to_str()),
                Some(cfg.name.as_str()),
                "a config's name matches its file name"
            );
        }
    }

    #[test]
    fn shipped_configs_have_the_documented_shapes() {
        let pynq = AccelConfig::load(config_path("pynq-z2.toml")).expect("pynq-z2");
        assert_eq!(pynq.board, Board::PynqZ2);
        assert_eq!(
            (pynq.array.rows, pynq.array.cols, pynq.bus_bytes()),
            (16, 64, 8)
        );
        assert_eq!(pynq.weight_bits_mask(), 0xff);
        assert_eq!(pynq.axi.max_burst, 16);
        let zcu = AccelConfig::load(config_path("zcu104.toml")).expect("zcu104");
        assert_eq!(zcu.board, Board::Zcu104);
        assert_eq!(
            (zcu.array.rows, zcu.array.cols, zcu.bus_bytes()),
            (64, 64, 16)
        );
        assert_eq!((zcu.axi.max_burst, zcu.axi.addr_width), (256, 40));
        let sim = AccelConfig::load(config_path("sim-small.toml")).expect("sim-small");
        assert_eq!(
            (sim.board, sim.array.rows, sim.array.cols),
            (Board::Sim, 4, 8)
        );
    }

    #[test]
    fn zcu104_hpc_is_zcu104_with_io_coherence_only() {
        let zcu = AccelConfig::load(config_path("zcu104.toml")).expect("zcu104");
        let mut hpc = AccelConfig::load(config_path("zcu104-hpc.toml")).expect("zcu104-hpc");
        assert_eq!(
            (zcu.axi.coherence, hpc.axi.coherence),
            (Coherence::None, Coherence::Io)
        );
        hpc.name = zcu.name.clone();
        hpc.axi.coherence = Coherence::None;
        assert_eq!(hpc, zcu);
    }

    #[test]
    fn io_coherence_needs_a_board_with_a_coherent_port() {
        for board in ["pynq-z2", "sim-small"] {
            let mut cfg = AccelConfig::load(config_path(&format!("{board}.toml"))).unwrap();
            cfg.axi.coherence = Coherence::Io;
            let err = cfg.validate("edited.toml").unwrap_err().to_string();
            assert!(
                err.contains("axi.coherence = \"io\"") && err.contains("no I/O-coherent DMA port"),
                "{err}"
            );
        }
        let text = sim_small_text().replace("[axi]\n", "[axi]\ncoherence = \"snoopy\"\n");
        let err = parse_err(&text);
        assert!(err.contains("snoopy") && err.contains("none"), "{err}");
    }

    #[test]
    fn derived_parameters() {
        let cfg = AccelConfig::load(config_path("pynq-z2.toml")).expect("pynq-z2");
        assert_eq!(cfg.max_weight_bits(), BitWidth::MAX);
        assert_eq!(cfg.max_burst_bytes(), 16 * 8);
        assert_eq!((cfg.acc_bits(), cfg.total_acc_bits()), (32, 48));
        let four = BitWidth::try_from(4).expect("4");
        assert_eq!(cfg.peak_macs_per_cycle_at(four), 16.0 * 64.0 / 4.0);
        assert_eq!(cfg.peak_macs_per_second_at(four), 256.0 * 100e6);
        assert_eq!(cfg.group_size_log2(), 6);
        let mut sparse = cfg.clone();
        sparse.array.weight_bits = vec![2, 4, 8];
        assert_eq!(sparse.weight_bits_mask(), 0b1000_1010);
        sparse.array.group_size = 0;
        assert_eq!(sparse.group_size_log2(), 0);
    }

    #[test]
    fn total_of_rescaled_regions_fits_in_total_acc_bits() {
        // Σ over regions of multiplier · acc is at most 2^8 · (2^31 − 1) in magnitude.
        let worst = i128::from(GROUP_MULT_MAX) * ((1i128 << (ACC_BITS - 1)) - 1);
        assert!(worst < 1i128 << (TOTAL_ACC_BITS - 1));
    }

    #[test]
    fn max_k_bound_is_exact() {
        let w8 = BitWidth::MAX;
        assert_eq!(max_k_for(w8, w8), 65793);
        let k = u64::from(max_k_for(w8, w8));
        assert!(k * 128 * 255 < 1 << 31);
        assert!((k + 1) * 128 * 255 > (1 << 31) - 1);
        let two = BitWidth::try_from(2).expect("2");
        assert_eq!(max_k_for(BitWidth::MIN, two), ((1u64 << 31) - 1) as u32 / 3);
    }

    #[test]
    fn max_k_over_the_accumulator_bound_is_rejected_with_the_reason() {
        let err = invalid_with(|c| c.limits.max_k = 65794);
        assert!(err.contains("edited.toml"), "{err}");
        assert!(err.contains("limits.max_k = 65794"), "{err}");
        assert!(err.contains("at most 65793"), "{err}");
        assert!(
            err.contains("2^31 − 1") && err.contains("accumulator"),
            "{err}"
        );
        // Narrower weights allow a longer K.
        let mut cfg = AccelConfig::load(config_path("sim-small.toml")).expect("sim-small");
        cfg.array.weight_bits = vec![1, 2, 4];
        cfg.limits.max_k = 65794;
        assert!(cfg.validate("x").is_ok());
    }

    #[test]
    fn validation_names_field_value_and_expectation() {
        let cases: [(Edit, &str, &str); 21] = [
            (
                |c| c.axi.data_width = 96,
                "axi.data_width = 96",
                "64 or 128",
            ),
            (
                |c| c.axi.max_burst = 12,
                "axi.max_burst = 12",
                "power of two",
            ),
            (|c| c.axi.max_burst = 512, "axi.max_burst = 512", "1..=256"),
            (|c| c.axi.addr_width = 16, "axi.addr_width = 16", "32..=64"),
            (|c| c.axi.id_width = 0, "axi.id_width = 0", "1..=8"),
            (
                |c| c.axi.max_outstanding_reads = 17,
                "axi.max_outstanding_reads = 17",
                "1..=16",
            ),
            (|c| c.array.rows = 65, "array.rows = 65", "1..=64"),
            (
                |c| c.array.cols = 24,
                "array.cols = 24",
                "8, 16, 32, 64 (a K chunk",
            ),
            (
                |c| c.array.rows = 6,
                "array.rows = 6",
                "a power of two of at least 4",
            ),
            (
                |c| c.array.weight_bits = vec![],
                "array.weight_bits = []",
                "at least one",
            ),
            (
                |c| c.array.weight_bits = vec![4, 9],
                "array.weight_bits[1] = 9",
                "1..=8",
            ),
            (
                |c| c.array.weight_bits = vec![4, 2],
                "array.weight_bits = [4, 2]",
                "ascending",
            ),
            (
                |c| c.array.weight_bits = vec![2, 2],
                "array.weight_bits = [2, 2]",
                "duplicates",
            ),
            (|c| c.array.act_bits = 1, "array.act_bits = 1", "2..=8"),
            (
                |c| c.array.max_plane_groups = 5,
                "array.max_plane_groups = 5",
                "1..=4",
            ),
            (
                |c| c.array.group_size = 4,
                "array.group_size = 4",
                "multiple of array.cols",
            ),
            (
                |c| c.memory.acc_buf_kib = 0,
                "memory.acc_buf_kib = 0",
                "1..=4096",
            ),
            (
                |c| c.limits.max_descriptors = 0,
                "limits.max_descriptors = 0",
                "1..=65535",
            ),
            (
                |c| c.limits.max_dim = 70000,
                "limits.max_dim = 70000",
                "1..=65535",
            ),
            (|c| c.clock_mhz = 600.0, "clock_mhz = 600", "10..=500"),
            (
                |c| c.name = "a b".into(),
                "name = \"a b\"",
                "letters, digits",
            ),
        ];
        for (edit, field, expected) in cases {
            let err = invalid_with(edit);
            assert!(err.starts_with("edited.toml: "), "{err}");
            assert!(err.contains(field), "{field}: {err}");
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn pynq_z2_limits_follow_the_zynq_7000_hp_ports() {
        let mut cfg = AccelConfig::load(config_path("pynq-z2.toml")).expect("pynq-z2");
        cfg.axi.max_burst = 32;
        cfg.axi.addr_width = 40;
        cfg.part = "xczu7ev-ffvc1156-2-e".into();
        let problems = cfg.problems();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["part", "axi.max_burst", "axi.addr_width"]);
        assert!(problems[1].expected.contains("AXI3"), "{}", problems[1]);
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let err = invalid_with(|c| {
            c.array.rows = 0;
            c.axi.data_width = 32;
            c.limits.max_dim = 0;
        });
        for field in [
            "array.rows = 0",
            "axi.data_width = 32",
            "limits.max_dim = 0",
        ] {
            assert!(err.contains(field), "{field}: {err}");
        }
        assert_eq!(err.lines().count(), 4, "{err}");
    }

    #[test]
    fn unknown_fields_are_errors_with_a_location() {
        let text = sim_small_text().replace("[axi]\n", "[axi]\nburst_mode = \"incr\"\n");
        let err = parse_err(&text);
        assert!(err.starts_with("test.toml:"), "{err}");
        assert!(err.contains("unknown field `burst_mode`"), "{err}");
        let line = text
            .lines()
            .position(|l| l.starts_with("burst_mode"))
            .expect("inserted")
            + 1;
        assert!(err.starts_with(&format!("test.toml:{line}:")), "{err}");
    }

    #[test]
    fn wrong_types_and_unknown_boards_are_errors() {
        let text = sim_small_text().replace("board = \"sim\"", "board = \"kv260\"");
        let err = parse_err(&text);
        assert!(err.contains("kv260") && err.contains("pynq-z2"), "{err}");
        let text = sim_small_text().replace("rows = 4", "rows = -4");
        assert!(parse_err(&text).contains("-4"));
        assert!(parse_err("schema_version = 1\nname = ").starts_with("test.toml:2:"));
    }

    #[test]
    fn schema_version_other_than_one_is_rejected() {
        let text = sim_small_text().replace("schema_version = 1", "schema_version = 2");
        let err = parse_err(&text);
        assert!(err.contains("schema_version = 2"), "{err}");
        assert!(err.contains("reads schema_version 1 only"), "{err}");
        let text = sim_small_text().replace("schema_version = 1", "");
        assert!(parse_err(&text).contains("schema_version = (missing)"));
        let text = sim_small_text().replace("schema_version = 1", "schema_version = \"1\"");
        assert!(parse_err(&text).contains("schema_version = \"1\""));
    }

    #[test]
    fn clock_accepts_integer_and_float_spellings() {
        let a = AccelConfig::from_toml_str(&sim_small_text(), "a").expect("valid");
        let text = sim_small_text().replace("clock_mhz = 100.0", "clock_mhz = 100");
        assert_ne!(text, sim_small_text());
        let b = AccelConfig::from_toml_str(&text, "b").expect("valid");
        assert_eq!(a, b);
    }

    #[test]
    fn load_names_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.toml");
        let err = AccelConfig::load(&path).expect_err("missing").to_string();
        assert!(
            err.contains("absent.toml") && err.contains("cannot read"),
            "{err}"
        );
    }
}
