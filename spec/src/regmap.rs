//! The AXI4-Lite register map, defined once as Rust data: every [`Register`] and [`Field`] is a
//! constant used by name by the generator, the simulators and the driver, and `docs/regmap.md` is
//! rendered from [`REGISTERS`] and [`ErrorCode::ALL`].
//!
//! All registers are 32 bits at byte offsets. A 64-bit value is a LO word followed by its HI word
//! ([`WidePair`]). Reading a performance counter's LO word snapshots the whole counter, and reading
//! its HI word returns the snapshot's upper half, so a LO-then-HI read is never torn.
//!
//! This module owns offsets, field positions, access types, reset values and error codes. It does not
//! know how CAPS values are derived from a config (`caps`) or what a descriptor holds (`descriptor`).

use std::fmt;

use crate::error::SpecError;

/// Register-map version carried in VERSION: major, minor, patch. 3.0.0: descriptor format v2
/// (per-side Conv2d padding: `pad_top`, `pad_left`, `pad_bottom`, `pad_right` replace `pad`).
/// 3.1.0: `max_pool` (word 27), max pooling on the Conv2d result path; a 3.0 device refuses it
/// as a reserved bit, so the driver requires a minor version at least its own. 3.2.0: a Conv2d's
/// input and output maps may start at any byte (a 3.1 device refuses them as MISALIGNED). 3.3.0:
/// `global_pool`, `pool_mult`, `pool_shift` (words 27–29), global average pooling on the Conv2d
/// result path (a 3.2 device refuses them as reserved bits).
pub const REGMAP_VERSION: (u8, u8, u8) = (3, 3, 0);
/// [`REGMAP_VERSION`] as text.
pub const REGMAP_VERSION_STRING: &str = "3.3.0";
/// The ID register's constant: "CAQ!" in ASCII, 'C' in the top byte.
pub const ID_VALUE: u32 = 0x4341_5121;

/// How software may access a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only; writes are ignored.
    Ro,
    /// Read-write.
    Rw,
    /// Readable; writing 1 to a bit clears it, writing 0 leaves it.
    W1c,
    /// Write-only; reads return 0.
    Wo,
}

impl Access {
    /// The abbreviation used in the docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Ro => "RO",
            Access::Rw => "RW",
            Access::W1c => "W1C",
            Access::Wo => "WO",
        }
    }
}

/// A register's value after reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// A fixed value.
    Value(u32),
    /// Set by the generator from the accelerator config (CONFIG_HASH, CAPS).
    FromConfig,
}

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reset::Value(v) => write!(f, "0x{v:08x}"),
            Reset::FromConfig => f.write_str("from config"),
        }
    }
}

/// A bit range as the generated docs write it: `[msb:lsb]`, or `[bit]` for one bit.
pub(crate) fn bit_range(lsb: u8, width: u8) -> String {
    if width == 1 {
        format!("[{lsb}]")
    } else {
        format!("[{}:{lsb}]", lsb + width - 1)
    }
}

/// A bit field of a 32-bit register: bits `lsb + width − 1 ..= lsb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub lsb: u8,
    pub width: u8,
    pub description: &'static str,
}

impl Field {
    const fn new(name: &'static str, lsb: u8, width: u8, description: &'static str) -> Field {
        Field {
            name,
            lsb,
            width,
            description,
        }
    }

    /// The largest value the field holds.
    pub const fn max(self) -> u32 {
        if self.width >= 32 {
            u32::MAX
        } else {
            (1u32 << self.width) - 1
        }
    }

    /// The field's bits in place within the register.
    pub const fn mask(self) -> u32 {
        self.max() << self.lsb
    }

    /// Extracts the field from a register value.
    pub const fn get(self, word: u32) -> u32 {
        (word >> self.lsb) & self.max()
    }

    /// True when any bit of the field is set (for one-bit flags).
    pub const fn is_set(self, word: u32) -> bool {
        self.get(word) != 0
    }

    /// Replaces the field in a register value; fails when `value` does not fit.
    pub fn set(self, word: u32, value: u32) -> Result<u32, SpecError> {
        if value > self.max() {
            return Err(SpecError::FieldOverflow {
                field: self.name,
                value: u64::from(value),
                width: self.width,
            });
        }
        Ok(self.insert(word, value))
    }

    /// Replaces the field with a value the caller has already range-checked.
    pub(crate) const fn insert(self, word: u32, value: u32) -> u32 {
        (word & !self.mask()) | ((value & self.max()) << self.lsb)
    }

    /// The bit range as written in the docs: `[7:0]` or `[3]`.
    pub fn bits(self) -> String {
        bit_range(self.lsb, self.width)
    }
}

/// A 32-bit register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    pub name: &'static str,
    /// Byte offset in the AXI4-Lite window.
    pub offset: u32,
    pub access: Access,
    pub reset: Reset,
    pub description: &'static str,
    /// Named fields; empty when the register is one 32-bit value.
    pub fields: &'static [Field],
}

impl Register {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A 64-bit value held in two registers, LO word first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WidePair {
    pub lo: Register,
    pub hi: Register,
}

impl WidePair {
    /// Splits a 64-bit value into the (LO, HI) words.
    pub const fn split(value: u64) -> (u32, u32) {
        (value as u32, (value >> 32) as u32)
    }

    /// Joins the (LO, HI) words.
    pub const fn join(lo: u32, hi: u32) -> u64 {
        (hi as u64) << 32 | lo as u64
    }
}

const fn ro(name: &'static str, offset: u32, reset: Reset, description: &'static str) -> Register {
    Register {
        name,
        offset,
        access: Access::Ro,
        reset,
        description,
        fields: &[],
    }
}

const fn rw(name: &'static str, offset: u32, description: &'static str) -> Register {
    Register {
        name,
        offset,
        access: Access::Rw,
        reset: Reset::Value(0),
        description,
        fields: &[],
    }
}

const fn counter(name: &'static str, offset: u32, description: &'static str) -> Register {
    ro(name, offset, Reset::Value(0), description)
}

// ---- identification -------------------------------------------------------------------------

pub const ID: Register = ro(
    "ID",
    0x000,
    Reset::Value(ID_VALUE),
    "Constant 0x43415121 (\"CAQ!\"): a caq accelerator is mapped here.",
);

pub const VERSION_MAJOR: Field = Field::new("MAJOR", 16, 8, "Incompatible register-map changes.");
pub const VERSION_MINOR: Field = Field::new("MINOR", 8, 8, "Compatible additions.");
pub const VERSION_PATCH: Field = Field::new("PATCH", 0, 8, "Fixes without interface change.");
pub const VERSION: Register = Register {
    name: "VERSION",
    offset: 0x004,
    access: Access::Ro,
    reset: Reset::Value(
        (REGMAP_VERSION.0 as u32) << 16 | (REGMAP_VERSION.1 as u32) << 8 | REGMAP_VERSION.2 as u32,
    ),
    description: "Register-map version; the driver refuses a different MAJOR.",
    fields: &[VERSION_MAJOR, VERSION_MINOR, VERSION_PATCH],
};

pub const CONFIG_HASH_LO: Register = ro(
    "CONFIG_HASH_LO",
    0x008,
    Reset::FromConfig,
    "Bits 31:0 of the config hash (see caq_spec::ConfigHash).",
);
pub const CONFIG_HASH_HI: Register = ro(
    "CONFIG_HASH_HI",
    0x00C,
    Reset::FromConfig,
    "Bits 63:32 of the config hash.",
);
pub const CONFIG_HASH: WidePair = WidePair {
    lo: CONFIG_HASH_LO,
    hi: CONFIG_HASH_HI,
};

// ---- capabilities ---------------------------------------------------------------------------

pub const CAPS0_ROWS: Field = Field::new("ROWS", 0, 8, "array.rows: output channels in parallel.");
pub const CAPS0_COLS: Field = Field::new("COLS", 8, 8, "array.cols: K lanes reduced per cycle.");
pub const CAPS0_WEIGHT_BITS_MASK: Field = Field::new(
    "WEIGHT_BITS_MASK",
    16,
    8,
    "Bit i−1 set when i-bit weights (array.weight_bits) are supported.",
);
pub const CAPS0_ACT_BITS: Field =
    Field::new("ACT_BITS", 24, 4, "array.act_bits: widest activation.");
pub const CAPS0_MAX_PLANE_GROUPS: Field = Field::new(
    "MAX_PLANE_GROUPS",
    28,
    3,
    "array.max_plane_groups: plane groups a descriptor may name.",
);
pub const CAPS0_GLOBAL_POOL: Field = Field::new(
    "GLOBAL_POOL",
    31,
    1,
    "array.global_pool: a Conv2d may average its outputs on the result path (descriptor field \
     global_pool).",
);
pub const CAPS0: Register = Register {
    name: "CAPS0",
    offset: 0x010,
    access: Access::Ro,
    reset: Reset::FromConfig,
    description: "Compute array capabilities.",
    fields: &[
        CAPS0_ROWS,
        CAPS0_COLS,
        CAPS0_WEIGHT_BITS_MASK,
        CAPS0_ACT_BITS,
        CAPS0_MAX_PLANE_GROUPS,
        CAPS0_GLOBAL_POOL,
    ],
};

pub const CAPS1_BUS_BYTES: Field = Field::new(
    "BUS_BYTES",
    0,
    8,
    "axi.data_width / 8: bytes per AXI beat (8 or 16); descriptor addresses align to it.",
);
pub const CAPS1_MAX_BURST_LOG2: Field = Field::new(
    "MAX_BURST_LOG2",
    8,
    4,
    "log2(axi.max_burst): longest burst in beats.",
);
pub const CAPS1_ADDR_WIDTH: Field = Field::new("ADDR_WIDTH", 12, 7, "axi.addr_width in bits.");
pub const CAPS1_MAX_OUTSTANDING: Field = Field::new(
    "MAX_OUTSTANDING",
    19,
    5,
    "axi.max_outstanding_reads: read bursts in flight.",
);
pub const CAPS1_GROUP_SIZE_LOG2: Field = Field::new(
    "GROUP_SIZE_LOG2",
    24,
    4,
    "log2(array.group_size), 0 when local quantization regions are disabled.",
);
pub const CAPS1_ID_WIDTH: Field = Field::new("ID_WIDTH", 28, 4, "axi.id_width in bits.");
pub const CAPS1: Register = Register {
    name: "CAPS1",
    offset: 0x014,
    access: Access::Ro,
    reset: Reset::FromConfig,
    description: "Memory interface and quantization-region capabilities.",
    fields: &[
        CAPS1_BUS_BYTES,
        CAPS1_MAX_BURST_LOG2,
        CAPS1_ADDR_WIDTH,
        CAPS1_MAX_OUTSTANDING,
        CAPS1_GROUP_SIZE_LOG2,
        CAPS1_ID_WIDTH,
    ],
};

pub const CAPS2_MAX_DESCRIPTORS: Field = Field::new(
    "MAX_DESCRIPTORS",
    0,
    16,
    "limits.max_descriptors: longest descriptor list.",
);
pub const CAPS2_MAX_DIM: Field = Field::new(
    "MAX_DIM",
    16,
    16,
    "limits.max_dim: largest channel count, height or width.",
);
pub const CAPS2: Register = Register {
    name: "CAPS2",
    offset: 0x018,
    access: Access::Ro,
    reset: Reset::FromConfig,
    description: "Descriptor-list and shape limits.",
    fields: &[CAPS2_MAX_DESCRIPTORS, CAPS2_MAX_DIM],
};

pub const CAPS3: Register = ro(
    "CAPS3",
    0x01C,
    Reset::FromConfig,
    "limits.max_k: longest reduction K of a layer.",
);

/// CAPS0..CAPS3 in order: the words `Caps::decode` takes.
pub const CAPS: [&Register; 4] = [&CAPS0, &CAPS1, &CAPS2, &CAPS3];

// ---- control and status -----------------------------------------------------------------------

pub const CTRL_START: Field = Field::new(
    "START",
    0,
    1,
    "Write 1 to run the descriptor list at DESC_ADDR; self-clearing; ignored while BUSY.",
);
pub const CTRL_SOFT_RESET: Field = Field::new(
    "SOFT_RESET",
    1,
    1,
    "Write 1 to abort and return to idle (STATUS and IRQ_STATUS cleared); self-clearing.",
);
pub const CTRL_IRQ_EN: Field = Field::new(
    "IRQ_EN",
    2,
    1,
    "Drive the interrupt line while any IRQ_STATUS bit is set.",
);
pub const CTRL_PERF_CLEAR: Field = Field::new(
    "PERF_CLEAR",
    3,
    1,
    "Write 1 to zero every performance counter; self-clearing.",
);
pub const CTRL: Register = Register {
    name: "CTRL",
    offset: 0x020,
    access: Access::Rw,
    reset: Reset::Value(0),
    description: "Control. Self-clearing bits read as 0.",
    fields: &[CTRL_START, CTRL_SOFT_RESET, CTRL_IRQ_EN, CTRL_PERF_CLEAR],
};

pub const STATUS_BUSY: Field = Field::new("BUSY", 0, 1, "A descriptor list is running.");
pub const STATUS_DONE: Field = Field::new(
    "DONE",
    1,
    1,
    "The last run finished every descriptor; cleared by START or SOFT_RESET.",
);
pub const STATUS_ERROR: Field = Field::new(
    "ERROR",
    2,
    1,
    "The last run stopped on an error; cleared by START or SOFT_RESET.",
);
pub const STATUS_ERR_CODE: Field = Field::new(
    "ERR_CODE",
    8,
    8,
    "The ErrorCode of the failure (0 when ERROR is clear).",
);
pub const STATUS_ERR_DESC: Field = Field::new(
    "ERR_DESC",
    16,
    16,
    "Index in the list of the descriptor that failed.",
);
pub const STATUS: Register = Register {
    name: "STATUS",
    offset: 0x024,
    access: Access::Ro,
    reset: Reset::Value(0),
    description: "Run state and the first error of the last run.",
    fields: &[
        STATUS_BUSY,
        STATUS_DONE,
        STATUS_ERROR,
        STATUS_ERR_CODE,
        STATUS_ERR_DESC,
    ],
};

pub const IRQ_STATUS_DONE: Field = Field::new("DONE", 0, 1, "Set when a run completes.");
pub const IRQ_STATUS_ERROR: Field = Field::new("ERROR", 1, 1, "Set when a run stops on an error.");
pub const IRQ_STATUS: Register = Register {
    name: "IRQ_STATUS",
    offset: 0x028,
    access: Access::W1c,
    reset: Reset::Value(0),
    description: "Interrupt causes; write 1 to acknowledge.",
    fields: &[IRQ_STATUS_DONE, IRQ_STATUS_ERROR],
};

// ---- descriptor list and address window ---------------------------------------------------------

pub const DESC_ADDR_LO: Register = rw(
    "DESC_ADDR_LO",
    0x030,
    "Bits 31:0 of the device address of the first descriptor (aligned to BUS_BYTES).",
);
pub const DESC_ADDR_HI: Register = rw(
    "DESC_ADDR_HI",
    0x034,
    "Bits 63:32 of the descriptor list address.",
);
pub const DESC_ADDR: WidePair = WidePair {
    lo: DESC_ADDR_LO,
    hi: DESC_ADDR_HI,
};
pub const DESC_COUNT: Register = rw(
    "DESC_COUNT",
    0x038,
    "Descriptors in the list (1..=MAX_DESCRIPTORS); the last must have the LAST flag.",
);

pub const WIN_BASE_LO: Register = rw(
    "WIN_BASE_LO",
    0x040,
    "Bits 31:0 of the lowest address the DMA may touch.",
);
pub const WIN_BASE_HI: Register = rw("WIN_BASE_HI", 0x044, "Bits 63:32 of the window base.");
pub const WIN_BASE: WidePair = WidePair {
    lo: WIN_BASE_LO,
    hi: WIN_BASE_HI,
};
pub const WIN_LIMIT_LO: Register = rw(
    "WIN_LIMIT_LO",
    0x048,
    "Bits 31:0 of the first address past the window: every DMA byte lies in [base, limit). \
     Resets to an empty window, so nothing runs until the driver sets it.",
);
pub const WIN_LIMIT_HI: Register = rw("WIN_LIMIT_HI", 0x04C, "Bits 63:32 of the window limit.");
pub const WIN_LIMIT: WidePair = WidePair {
    lo: WIN_LIMIT_LO,
    hi: WIN_LIMIT_HI,
};

// ---- performance counters -----------------------------------------------------------------------

pub const PERF_CYCLES_LO: Register = counter(
    "PERF_CYCLES_LO",
    0x080,
    "Clock cycles while BUSY (bits 31:0; reading LO snapshots the counter).",
);
pub const PERF_CYCLES_HI: Register =
    counter("PERF_CYCLES_HI", 0x084, "Bits 63:32 of the snapshot.");
pub const PERF_BUSY_CYCLES_LO: Register = counter(
    "PERF_BUSY_CYCLES_LO",
    0x088,
    "Cycles the compute array did useful work.",
);
pub const PERF_BUSY_CYCLES_HI: Register =
    counter("PERF_BUSY_CYCLES_HI", 0x08C, "Bits 63:32 of the snapshot.");
pub const PERF_STALL_CYCLES_LO: Register = counter(
    "PERF_STALL_CYCLES_LO",
    0x090,
    "Cycles the compute array waited on DMA.",
);
pub const PERF_STALL_CYCLES_HI: Register =
    counter("PERF_STALL_CYCLES_HI", 0x094, "Bits 63:32 of the snapshot.");
pub const PERF_PLANE_OPS_LO: Register = counter(
    "PERF_PLANE_OPS_LO",
    0x098,
    "Plane steps issued: one per (weight plane, rows x cols tile).",
);
pub const PERF_PLANE_OPS_HI: Register =
    counter("PERF_PLANE_OPS_HI", 0x09C, "Bits 63:32 of the snapshot.");
pub const PERF_BYTES_RD_LO: Register = counter(
    "PERF_BYTES_RD_LO",
    0x0A0,
    "Bytes read by the DMA, descriptors included.",
);
pub const PERF_BYTES_RD_HI: Register =
    counter("PERF_BYTES_RD_HI", 0x0A4, "Bits 63:32 of the snapshot.");
pub const PERF_BYTES_WR_LO: Register =
    counter("PERF_BYTES_WR_LO", 0x0A8, "Bytes written by the DMA.");
pub const PERF_BYTES_WR_HI: Register =
    counter("PERF_BYTES_WR_HI", 0x0AC, "Bits 63:32 of the snapshot.");

pub const PERF_CYCLES: WidePair = WidePair {
    lo: PERF_CYCLES_LO,
    hi: PERF_CYCLES_HI,
};
pub const PERF_BUSY_CYCLES: WidePair = WidePair {
    lo: PERF_BUSY_CYCLES_LO,
    hi: PERF_BUSY_CYCLES_HI,
};
pub const PERF_STALL_CYCLES: WidePair = WidePair {
    lo: PERF_STALL_CYCLES_LO,
    hi: PERF_STALL_CYCLES_HI,
};
pub const PERF_PLANE_OPS: WidePair = WidePair {
    lo: PERF_PLANE_OPS_LO,
    hi: PERF_PLANE_OPS_HI,
};
pub const PERF_BYTES_RD: WidePair = WidePair {
    lo: PERF_BYTES_RD_LO,
    hi: PERF_BYTES_RD_HI,
};
pub const PERF_BYTES_WR: WidePair = WidePair {
    lo: PERF_BYTES_WR_LO,
    hi: PERF_BYTES_WR_HI,
};
/// Every performance counter, in offset order.
pub const PERF_COUNTERS: [WidePair; 6] = [
    PERF_CYCLES,
    PERF_BUSY_CYCLES,
    PERF_STALL_CYCLES,
    PERF_PLANE_OPS,
    PERF_BYTES_RD,
    PERF_BYTES_WR,
];

/// Every register, in offset order. An access to an offset not listed gets SLVERR (reads return 0, writes change nothing).
pub static REGISTERS: &[Register] = &[
    ID,
    VERSION,
    CONFIG_HASH_LO,
    CONFIG_HASH_HI,
    CAPS0,
    CAPS1,
    CAPS2,
    CAPS3,
    CTRL,
    STATUS,
    IRQ_STATUS,
    DESC_ADDR_LO,
    DESC_ADDR_HI,
    DESC_COUNT,
    WIN_BASE_LO,
    WIN_BASE_HI,
    WIN_LIMIT_LO,
    WIN_LIMIT_HI,
    PERF_CYCLES_LO,
    PERF_CYCLES_HI,
    PERF_BUSY_CYCLES_LO,
    PERF_BUSY_CYCLES_HI,
    PERF_STALL_CYCLES_LO,
    PERF_STALL_CYCLES_HI,
    PERF_PLANE_OPS_LO,
    PERF_PLANE_OPS_HI,
    PERF_BYTES_RD_LO,
    PERF_BYTES_RD_HI,
    PERF_BYTES_WR_LO,
    PERF_BYTES_WR_HI,
];

/// Bytes of AXI4-Lite address space the register file decodes.
pub const REGISTER_SPACE_BYTES: u32 = 0x100;

/// The register called `name`.
pub fn register(name: &str) -> Option<&'static Register> {
    REGISTERS.iter().find(|r| r.name == name)
}

/// The register at byte `offset`.
pub fn register_at(offset: u32) -> Option<&'static Register> {
    REGISTERS.iter().find(|r| r.offset == offset)
}

/// The register software may read (`write` false) or write at byte `offset`: one of
/// [`REGISTERS`], readable unless [`Access::Wo`], writable unless [`Access::Ro`]. Anything else is
/// refused before it reaches the bus: the slave answers an unlisted offset with SLVERR, which a
/// Cortex-A53 store takes as an asynchronous SError that panics the kernel (a load gets SIGBUS).
pub fn checked_access(offset: u32, write: bool) -> Result<&'static Register, SpecError> {
    let op = if write { "write" } else { "read" };
    let refuse = |why: String| SpecError::RegisterAccess { op, offset, why };
    let Some(r) = register_at(offset) else {
        return Err(refuse(format!(
            "no register there (registers are the {} offsets of the map, 0x000..={:#05x}; others answer SLVERR)",
            REGISTERS.len(),
            REGISTERS.last().map_or(0, |r| r.offset)
        )));
    };
    match (r.access, write) {
        (Access::Ro, true) => Err(refuse(format!("{} is read-only", r.name))),
        (Access::Wo, false) => Err(refuse(format!("{} is write-only", r.name))),
        _ => Ok(r),
    }
}

// ---- error codes --------------------------------------------------------------------------------

/// Why a run stopped: STATUS.ERR_CODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    None = 0,
    BadOpcode = 1,
    BadBits = 2,
    BadShape = 3,
    BadGroups = 4,
    BadRegion = 5,
    Reserved = 6,
    Misaligned = 7,
    OutOfWindow = 8,
    DescCount = 9,
    AxiSlverr = 10,
    AxiDecerr = 11,
    Timeout = 12,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::None,
        ErrorCode::BadOpcode,
        ErrorCode::BadBits,
        ErrorCode::BadShape,
        ErrorCode::BadGroups,
        ErrorCode::BadRegion,
        ErrorCode::Reserved,
        ErrorCode::Misaligned,
        ErrorCode::OutOfWindow,
        ErrorCode::DescCount,
        ErrorCode::AxiSlverr,
        ErrorCode::AxiDecerr,
        ErrorCode::Timeout,
    ];

    /// The code carried in STATUS.ERR_CODE.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Decodes STATUS.ERR_CODE.
    pub fn from_u8(code: u8) -> Result<ErrorCode, SpecError> {
        ErrorCode::ALL
            .get(usize::from(code))
            .copied()
            .ok_or(SpecError::UnknownErrorCode { code })
    }

    /// The name used in the docs and in driver messages.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::BadOpcode => "BAD_OPCODE",
            ErrorCode::BadBits => "BAD_BITS",
            ErrorCode::BadShape => "BAD_SHAPE",
            ErrorCode::BadGroups => "BAD_GROUPS",
            ErrorCode::BadRegion => "BAD_REGION",
            ErrorCode::Reserved => "RESERVED",
            ErrorCode::Misaligned => "MISALIGNED",
            ErrorCode::OutOfWindow => "OUT_OF_WINDOW",
            ErrorCode::DescCount => "DESC_COUNT",
            ErrorCode::AxiSlverr => "AXI_SLVERR",
            ErrorCode::AxiDecerr => "AXI_DECERR",
            ErrorCode::Timeout => "TIMEOUT",
        }
    }

    /// What the code means.
    pub const fn description(self) -> &'static str {
        match self {
            ErrorCode::None => "No error.",
            ErrorCode::BadOpcode => "The descriptor's op is not a known operation.",
            ErrorCode::BadBits => {
                "An activation or weight width is not supported by CAPS0 (ACT_BITS, \
                 WEIGHT_BITS_MASK) or is outside 2..=8 for activations."
            }
            ErrorCode::BadShape => {
                "A dimension is zero or over MAX_DIM, K is over MAX_K, the kernel, stride or \
                 padding is out of range, or the output shape does not follow from the input."
            }
            ErrorCode::BadGroups => {
                "Plane groups: n_groups is 0 or over MAX_PLANE_GROUPS, active_groups is 0 or over \
                 n_groups, a group's shift is over 7, a group's top plane is above the widest \
                 supported weight, or an unused group slot is not zero."
            }
            ErrorCode::BadRegion => {
                "Local quantization regions: GROUPED is set without a group_size, group_size is set \
                 without GROUPED, or group_size differs from CAPS1.GROUP_SIZE_LOG2."
            }
            ErrorCode::Reserved => "A reserved descriptor bit is set.",
            ErrorCode::Misaligned => "An address is not aligned to CAPS1.BUS_BYTES.",
            ErrorCode::OutOfWindow => "A DMA address lies outside [WIN_BASE, WIN_LIMIT).",
            ErrorCode::DescCount => {
                "DESC_COUNT is 0 or over MAX_DESCRIPTORS, or the LAST flag is not on exactly the \
                 final descriptor."
            }
            ErrorCode::AxiSlverr => "The memory system answered a DMA burst with SLVERR.",
            ErrorCode::AxiDecerr => "The memory system answered a DMA burst with DECERR.",
            ErrorCode::Timeout => "A DMA burst got no response within the device's timeout.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_are_word_aligned_sorted_and_unique() {
        for pair in REGISTERS.windows(2) {
            assert!(
                pair[0].offset < pair[1].offset,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        for r in REGISTERS {
            assert_eq!(r.offset % 4, 0, "{}", r.name);
            assert!(r.offset < REGISTER_SPACE_BYTES, "{}", r.name);
            assert_eq!(register(r.name), Some(r));
            assert_eq!(register_at(r.offset), Some(r));
        }
        assert_eq!(register_at(0x02C), None);
    }

    #[test]
    fn fields_fit_their_register_and_do_not_overlap() {
        for r in REGISTERS {
            let mut used = 0u32;
            for f in r.fields {
                assert!(
                    f.width >= 1 && u32::from(f.lsb) + u32::from(f.width) <= 32,
                    "{}",
                    f.name
                );
                assert_eq!(used & f.mask(), 0, "{}.{} overlaps", r.name, f.name);
                used |= f.mask();
                assert_eq!(r.field(f.name), Some(f));
            }
            if let Reset::Value(v) = r.reset
                && !r.fields.is_empty()
            {
                assert_eq!(v & !used, 0, "{} resets a bit outside its fields", r.name);
            }
        }
    }

    #[test]
    fn documented_offsets_and_resets() {
        let expect = [
            ("ID", 0x000, Access::Ro),
            ("VERSION", 0x004, Access::Ro),
            ("CONFIG_HASH_LO", 0x008, Access::Ro),
            ("CAPS0", 0x010, Access::Ro),
            ("CAPS3", 0x01C, Access::Ro),
            ("CTRL", 0x020, Access::Rw),
            ("STATUS", 0x024, Access::Ro),
            ("IRQ_STATUS", 0x028, Access::W1c),
            ("DESC_ADDR_LO", 0x030, Access::Rw),
            ("DESC_COUNT", 0x038, Access::Rw),
            ("WIN_BASE_LO", 0x040, Access::Rw),
            ("WIN_LIMIT_HI", 0x04C, Access::Rw),
            ("PERF_CYCLES_LO", 0x080, Access::Ro),
            ("PERF_BYTES_WR_HI", 0x0AC, Access::Ro),
        ];
        for (name, offset, access) in expect {
            let r = register(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((r.offset, r.access), (offset, access), "{name}");
        }
        assert_eq!(ID.reset, Reset::Value(0x4341_5121));
        assert_eq!(ID_VALUE.to_be_bytes(), *b"CAQ!");
        assert_eq!(VERSION.reset, Reset::Value(0x0003_0300));
        assert_eq!(
            REGMAP_VERSION_STRING,
            format!(
                "{}.{}.{}",
                REGMAP_VERSION.0, REGMAP_VERSION.1, REGMAP_VERSION.2
            )
        );
    }

    #[test]
    fn only_listed_registers_are_accessible_and_only_as_their_access_allows() {
        assert_eq!(checked_access(0x020, true).unwrap().name, "CTRL");
        assert_eq!(checked_access(0x024, false).unwrap().name, "STATUS");
        assert_eq!(checked_access(0x028, true).unwrap().name, "IRQ_STATUS");
        let e = checked_access(0x02C, false).unwrap_err().to_string();
        assert!(
            e.starts_with("read of register offset 0x2c: no register there"),
            "{e}"
        );
        assert!(e.contains("SLVERR"), "{e}");
        for off in [0x002, 0x0FC, 0x100, 0xFFC] {
            assert!(checked_access(off, true).is_err(), "{off:#x}");
        }
        let e = checked_access(ID.offset, true).unwrap_err().to_string();
        assert_eq!(
            e,
            "write of register offset 0x0: ID is read-only (docs/regmap.md)"
        );
        for r in REGISTERS {
            assert_eq!(
                checked_access(r.offset, false).is_ok(),
                r.access != Access::Wo
            );
            assert_eq!(
                checked_access(r.offset, true).is_ok(),
                r.access != Access::Ro
            );
        }
    }

    #[test]
    fn wide_pairs_are_adjacent_lo_then_hi() {
        let pairs = [CONFIG_HASH, DESC_ADDR, WIN_BASE, WIN_LIMIT];
        for p in pairs.iter().chain(&PERF_COUNTERS) {
            assert_eq!(p.hi.offset, p.lo.offset + 4, "{}", p.lo.name);
            assert_eq!(p.lo.name.strip_suffix("_LO"), p.hi.name.strip_suffix("_HI"));
        }
        assert_eq!(
            WidePair::split(0x1234_5678_9abc_def0),
            (0x9abc_def0, 0x1234_5678)
        );
        assert_eq!(
            WidePair::join(0x9abc_def0, 0x1234_5678),
            0x1234_5678_9abc_def0
        );
    }

    #[test]
    fn field_get_and_set_by_name() {
        let word = STATUS_ERROR.insert(0, 1);
        let word = STATUS_ERR_CODE
            .set(word, u32::from(ErrorCode::Misaligned.as_u8()))
            .unwrap();
        let word = STATUS_ERR_DESC.set(word, 513).unwrap();
        assert_eq!(word, 513 << 16 | 7 << 8 | 1 << 2);
        assert!(STATUS_ERROR.is_set(word) && !STATUS_BUSY.is_set(word));
        assert_eq!(STATUS_ERR_DESC.get(word), 513);
        assert_eq!(CTRL_START.mask() | CTRL_IRQ_EN.mask(), 0b101);
        assert_eq!(STATUS_ERR_DESC.bits(), "[31:16]");
        assert_eq!(CTRL_IRQ_EN.bits(), "[2]");
        let err = CAPS0_ACT_BITS.set(0, 16).unwrap_err().to_string();
        assert!(
            err.contains("ACT_BITS") && err.contains("4 bits") && err.contains("0x10"),
            "{err}"
        );
        assert_eq!(CAPS0_ACT_BITS.set(0xffff_ffff, 0).unwrap(), 0xf0ff_ffff);
    }

    #[test]
    fn error_codes_round_trip_and_reject_unknown() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.as_u8()), i);
            assert_eq!(ErrorCode::from_u8(code.as_u8()).ok(), Some(*code));
            assert!(!code.description().is_empty());
        }
        let err = ErrorCode::from_u8(200).unwrap_err().to_string();
        assert!(err.contains("200"), "{err}");
        assert_eq!(ErrorCode::OutOfWindow.to_string(), "OUT_OF_WINDOW");
    }
}
