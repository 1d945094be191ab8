//! [`Caps`]: what a device can do, as carried by the read-only CAPS0..CAPS3 registers.
//!
//! The generator writes `Caps::from_config(cfg).encode()` into the RTL's reset values; the driver reads
//! the four words back with [`Caps::decode`] and checks descriptors against them. A `Caps` can only be
//! made from a valid config or from register words that pass the same rules, so every value it holds
//! fits its register field. This module knows the CAPS field packing (from `regmap`) and the config
//! rules (from `config`); it knows nothing about descriptors.

use crate::config::{self, AccelConfig, max_k_for};
use crate::error::SpecError;
use crate::regmap::{self, ErrorCode};
use crate::types::BitWidth;

/// A device's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    rows: u32,
    cols: u32,
    weight_bits_mask: u8,
    act_bits: BitWidth,
    max_plane_groups: u32,
    global_pool: bool,
    bus_bytes: u32,
    max_burst: u32,
    addr_width: u32,
    max_outstanding_reads: u32,
    group_size: u32,
    id_width: u32,
    max_descriptors: u32,
    max_dim: u32,
    max_k: u32,
}

impl Caps {
    /// The capabilities a config's hardware advertises. Fails if the config is invalid.
    pub fn from_config(cfg: &AccelConfig) -> Result<Caps, SpecError> {
        cfg.validate(&format!("config `{}`", cfg.name))?;
        Ok(Caps {
            rows: cfg.array.rows,
            cols: cfg.array.cols,
            weight_bits_mask: cfg.weight_bits_mask(),
            // Validated to be in 2..=8.
            act_bits: u8::try_from(cfg.array.act_bits)
                .ok()
                .and_then(|a| BitWidth::try_from(a).ok())
                .unwrap_or(BitWidth::MAX),
            max_plane_groups: cfg.array.max_plane_groups,
            global_pool: cfg.array.global_pool,
            bus_bytes: cfg.bus_bytes(),
            max_burst: cfg.axi.max_burst,
            addr_width: cfg.axi.addr_width,
            max_outstanding_reads: cfg.axi.max_outstanding_reads,
            group_size: cfg.array.group_size,
            id_width: cfg.axi.id_width,
            max_descriptors: cfg.limits.max_descriptors,
            max_dim: cfg.limits.max_dim,
            max_k: cfg.limits.max_k,
        })
    }

    /// The CAPS0..CAPS3 register values.
    pub fn encode(&self) -> [u32; 4] {
        use regmap::*;
        // Every value was range-checked when this Caps was made, so each fits its field.
        let caps0 = [
            (CAPS0_ROWS, self.rows),
            (CAPS0_COLS, self.cols),
            (CAPS0_WEIGHT_BITS_MASK, u32::from(self.weight_bits_mask)),
            (CAPS0_ACT_BITS, u32::from(self.act_bits.get())),
            (CAPS0_MAX_PLANE_GROUPS, self.max_plane_groups),
            (CAPS0_GLOBAL_POOL, u32::from(self.global_pool)),
        ];
        let caps1 = [
            (CAPS1_BUS_BYTES, self.bus_bytes),
            (CAPS1_MAX_BURST_LOG2, self.max_burst.trailing_zeros()),
            (CAPS1_ADDR_WIDTH, self.addr_width),
            (CAPS1_MAX_OUTSTANDING, self.max_outstanding_reads),
            (CAPS1_GROUP_SIZE_LOG2, self.group_size_log2()),
            (CAPS1_ID_WIDTH, self.id_width),
        ];
        let caps2 = [
            (CAPS2_MAX_DESCRIPTORS, self.max_descriptors),
            (CAPS2_MAX_DIM, self.max_dim),
        ];
        let pack = |fields: &[(Field, u32)]| fields.iter().fold(0, |w, (f, v)| f.insert(w, *v));
        [pack(&caps0), pack(&caps1), pack(&caps2), self.max_k]
    }

    /// Decodes CAPS0..CAPS3 as read from a device; fails, naming the register field, on a value no
    /// valid config produces.
    pub fn decode(words: [u32; 4]) -> Result<Caps, SpecError> {
        use regmap::*;
        let [caps0, caps1, caps2, caps3] = words;
        let in_range = |reg, field: Field, word, range: std::ops::RangeInclusive<u32>| {
            let v = field.get(word);
            if range.contains(&v) {
                Ok(v)
            } else {
                Err(caps_error(
                    reg,
                    field.name,
                    v,
                    format!("{}..={}", range.start(), range.end()),
                ))
            }
        };

        let used0 = CAPS0.fields.iter().fold(0, |m, f| m | f.mask());
        if caps0 & !used0 != 0 {
            return Err(caps_error("CAPS0", "reserved", caps0 & !used0, "0".into()));
        }
        let rows = in_range("CAPS0", CAPS0_ROWS, caps0, config::ROWS)?;
        let cols = CAPS0_COLS.get(caps0);
        if !config::COLS.contains(&cols) {
            return Err(caps_error(
                "CAPS0",
                "COLS",
                cols,
                format!("one of {:?}", config::COLS),
            ));
        }
        let weight_bits_mask = u8::try_from(CAPS0_WEIGHT_BITS_MASK.get(caps0)).unwrap_or(0);
        if weight_bits_mask == 0 {
            return Err(caps_error(
                "CAPS0",
                "WEIGHT_BITS_MASK",
                0,
                "at least one bit".into(),
            ));
        }
        let act = in_range("CAPS0", CAPS0_ACT_BITS, caps0, config::ACT_BITS)?;
        let act_bits = u8::try_from(act)
            .ok()
            .and_then(|a| BitWidth::try_from(a).ok())
            .unwrap_or(BitWidth::MAX);
        let max_plane_groups = in_range(
            "CAPS0",
            CAPS0_MAX_PLANE_GROUPS,
            caps0,
            config::MAX_PLANE_GROUPS,
        )?;
        let global_pool = CAPS0_GLOBAL_POOL.get(caps0) != 0;

        let bus_bytes = CAPS1_BUS_BYTES.get(caps1);
        if !config::DATA_WIDTH.contains(&(bus_bytes * 8)) {
            return Err(caps_error(
                "CAPS1",
                "BUS_BYTES",
                bus_bytes,
                "8 or 16".into(),
            ));
        }
        let burst_log2 = in_range("CAPS1", CAPS1_MAX_BURST_LOG2, caps1, 0..=8)?;
        let addr_width = in_range("CAPS1", CAPS1_ADDR_WIDTH, caps1, config::ADDR_WIDTH)?;
        let max_outstanding_reads = in_range(
            "CAPS1",
            CAPS1_MAX_OUTSTANDING,
            caps1,
            config::MAX_OUTSTANDING,
        )?;
        let group_log2 = CAPS1_GROUP_SIZE_LOG2.get(caps1);
        let group_size = if group_log2 == 0 { 0 } else { 1 << group_log2 };
        config::check_group_size(group_size, cols).map_err(|expected| {
            caps_error(
                "CAPS1",
                "GROUP_SIZE_LOG2",
                group_log2,
                format!("log2 of {expected}"),
            )
        })?;
        let id_width = in_range("CAPS1", CAPS1_ID_WIDTH, caps1, config::ID_WIDTH)?;

        let max_descriptors = in_range(
            "CAPS2",
            CAPS2_MAX_DESCRIPTORS,
            caps2,
            config::MAX_DESCRIPTORS,
        )?;
        let max_dim = in_range("CAPS2", CAPS2_MAX_DIM, caps2, config::MAX_DIM)?;

        let caps = Caps {
            rows,
            cols,
            weight_bits_mask,
            act_bits,
            max_plane_groups,
            global_pool,
            bus_bytes,
            max_burst: 1 << burst_log2,
            addr_width,
            max_outstanding_reads,
            group_size,
            id_width,
            max_descriptors,
            max_dim,
            max_k: caps3,
        };
        let k_limit = max_k_for(caps.max_weight_bits(), act_bits);
        if !(1..=k_limit).contains(&caps3) {
            return Err(caps_error(
                "CAPS3",
                "MAX_K",
                caps3,
                format!("1..={k_limit} (the per-region accumulator bound)"),
            ));
        }
        Ok(caps)
    }

    /// Output channels computed in parallel.
    pub const fn rows(&self) -> u32 {
        self.rows
    }

    /// K lanes reduced per cycle.
    pub const fn cols(&self) -> u32 {
        self.cols
    }

    /// Bit `i − 1` set when `i`-bit weights are supported.
    pub const fn weight_bits_mask(&self) -> u8 {
        self.weight_bits_mask
    }

    /// True when `bits`-bit weights are supported.
    pub const fn supports_weight_bits(&self, bits: BitWidth) -> bool {
        self.weight_bits_mask & (1 << (bits.get() - 1)) != 0
    }

    /// The widest supported weight.
    pub fn max_weight_bits(&self) -> BitWidth {
        BitWidth::all()
            .filter(|&b| self.supports_weight_bits(b))
            .max()
            .unwrap_or(BitWidth::MAX)
    }

    /// The widest activation.
    pub const fn act_bits(&self) -> BitWidth {
        self.act_bits
    }

    /// Whether a Conv2d may average its outputs on the result path (descriptor field
    /// `global_pool`).
    pub const fn global_pool(&self) -> bool {
        self.global_pool
    }

    /// Plane groups a descriptor may name.
    pub const fn max_plane_groups(&self) -> u32 {
        self.max_plane_groups
    }

    /// Bytes per AXI beat; every descriptor address aligns to it.
    pub const fn bus_bytes(&self) -> u32 {
        self.bus_bytes
    }

    /// Longest burst in beats.
    pub const fn max_burst(&self) -> u32 {
        self.max_burst
    }

    /// AXI address width in bits.
    pub const fn addr_width(&self) -> u32 {
        self.addr_width
    }

    /// Read bursts in flight.
    pub const fn max_outstanding_reads(&self) -> u32 {
        self.max_outstanding_reads
    }

    /// Local quantization region size along K; 0 when disabled.
    pub const fn group_size(&self) -> u32 {
        self.group_size
    }

    /// log2 of [`Caps::group_size`], 0 when disabled.
    pub const fn group_size_log2(&self) -> u32 {
        if self.group_size == 0 {
            0
        } else {
            self.group_size.trailing_zeros()
        }
    }

    /// AXI ID width in bits.
    pub const fn id_width(&self) -> u32 {
        self.id_width
    }

    /// Longest descriptor list.
    pub const fn max_descriptors(&self) -> u32 {
        self.max_descriptors
    }

    /// Largest channel count, height or width.
    pub const fn max_dim(&self) -> u32 {
        self.max_dim
    }

    /// Longest reduction K.
    pub const fn max_k(&self) -> u32 {
        self.max_k
    }

    /// The DESC_COUNT check a device makes at START.
    pub fn check_desc_count(&self, count: u32) -> Result<(), (ErrorCode, String)> {
        if (1..=self.max_descriptors).contains(&count) {
            Ok(())
        } else {
            Err((
                ErrorCode::DescCount,
                format!(
                    "DESC_COUNT = {count}: expected 1..={}",
                    self.max_descriptors
                ),
            ))
        }
    }
}

fn caps_error(
    register: &'static str,
    field: &'static str,
    value: u32,
    expected: String,
) -> SpecError {
    SpecError::Caps {
        register,
        field,
        value: u64::from(value),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{config_path, shipped_configs};

    fn pynq() -> Caps {
        let cfg = AccelConfig::load(config_path("pynq-z2.toml")).expect("pynq-z2");
        Caps::from_config(&cfg).expect("valid")
    }

    #[test]
    fn caps_round_trip_through_the_registers_for_every_shipped_config() {
        for path in shipped_configs() {
            let cfg = AccelConfig::load(&path).expect("valid");
            let caps = Caps::from_config(&cfg).expect("valid");
            assert_eq!(
                Caps::decode(caps.encode()).ok(),
                Some(caps),
                "{}",
                path.display()
            );
            assert_eq!(caps.max_k(), cfg.limits.max_k);
            assert_eq!(caps.max_burst(), cfg.axi.max_burst);
            assert_eq!(caps.group_size(), cfg.array.group_size);
        }
    }

    #[test]
    fn pynq_z2_caps_words() {
        let caps = pynq();
        let [c0, c1, c2, c3] = caps.encode();
        assert_eq!(c0, 16 | 64 << 8 | 0xff << 16 | 8 << 24 | 4 << 28);
        assert!(
            !caps.global_pool(),
            "pynq-z2 keeps global pooling off (LUT headroom)"
        );
        // The bit round-trips.
        let on = Caps::decode([c0 | 1 << 31, c1, c2, c3]).unwrap();
        assert!(on.global_pool());
        assert_eq!(on.encode()[0], c0 | 1 << 31);
        assert_eq!(c1, 8 | 4 << 8 | 32 << 12 | 8 << 19 | 6 << 24 | 6 << 28);
        assert_eq!(c2, 1024 | 4096 << 16);
        assert_eq!(c3, 16384);
        assert!(caps.supports_weight_bits(BitWidth::MIN));
        assert_eq!(caps.max_weight_bits(), BitWidth::MAX);
    }

    #[test]
    fn decode_rejects_values_no_config_produces_naming_the_field() {
        let good = pynq().encode();
        let cases: [(usize, u32, &str); 8] = [
            (0, good[0] & !0xff, "CAPS0.ROWS = 0"),
            (0, good[0] & !0xff00 | 24 << 8, "CAPS0.COLS = 24"),
            (0, good[0] & !0x00ff_0000, "CAPS0.WEIGHT_BITS_MASK = 0"),
            (0, good[0] & !(0x7 << 28), "CAPS0.MAX_PLANE_GROUPS = 0"),
            (1, good[1] & !0xff | 12, "CAPS1.BUS_BYTES = 12"),
            (
                1,
                good[1] & !0x0f00_0000 | 2 << 24,
                "CAPS1.GROUP_SIZE_LOG2 = 2",
            ),
            (2, good[2] & 0xffff_0000, "CAPS2.MAX_DESCRIPTORS = 0"),
            (3, 70_000, "CAPS3.MAX_K = 70000"),
        ];
        for (index, word, expected) in cases {
            let mut words = good;
            words[index] = word;
            let err = Caps::decode(words).expect_err(expected).to_string();
            assert!(err.starts_with(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn from_config_refuses_an_invalid_config() {
        let mut cfg = AccelConfig::load(config_path("sim-small.toml")).expect("valid");
        cfg.array.cols = 12;
        let err = Caps::from_config(&cfg).expect_err("invalid").to_string();
        assert!(
            err.contains("config `sim-small`") && err.contains("array.cols = 12"),
            "{err}"
        );
    }

    #[test]
    fn desc_count_must_be_between_one_and_the_limit() {
        let caps = pynq();
        assert!(caps.check_desc_count(1).is_ok() && caps.check_desc_count(1024).is_ok());
        for bad in [0, 1025] {
            let (code, msg) = caps.check_desc_count(bad).expect_err("bad count");
            assert_eq!(code, ErrorCode::DescCount);
            assert!(msg.contains(&format!("DESC_COUNT = {bad}")), "{msg}");
        }
    }
}
