//! [`LayerDescriptor`]: the 128-byte record the command processor fetches from DDR for each layer,
//! its bit layout ([`DESCRIPTOR_FIELDS`], the one definition that encode, decode and
//! `docs/descriptor.md` all read), and the checks a device makes before running it.
//!
//! A descriptor is 32 little-endian u32 words. Bits no field names are reserved and must be zero.
//! The per-output-channel tables a descriptor points at (bias, requantization, group multipliers) are
//! packed as defined here; the activation and weight-plane layouts belong to caq-model's packing.
//! This module knows `Caps` and `ErrorCode`; it does not know configs or registers.

use crate::caps::Caps;
use crate::error::SpecError;
use crate::regmap::ErrorCode;
use crate::types::{BitWidth, DeviceAddr};

/// Bytes in one descriptor.
pub const DESCRIPTOR_BYTES: usize = 128;
/// u32 words in one descriptor.
pub const DESCRIPTOR_WORDS: usize = DESCRIPTOR_BYTES / 4;
/// Plane-group slots in a descriptor.
pub const PLANE_GROUP_SLOTS: usize = 4;
/// The max-pooling windows a descriptor may ask for ([`MAX_POOL`]; 0 = none): powers of two, so
/// a pixel's place in its window is a few bits of its row and column.
pub const POOL_WINDOWS: [u8; 3] = [2, 4, 8];
/// Global pooling on the result path ([`GLOBAL_POOL`]) requantizes `POOL_SUM_WEIGHT · Σ +
/// POOL_SUM_BIAS` for the sum Σ of a channel's output codes: with the multiplier and shift of
/// 1/(4·n) that is the average-pool rule exactly (docs/numerics.md, "Average pooling as a layer").
pub const POOL_SUM_WEIGHT: i32 = 4;
/// See [`POOL_SUM_WEIGHT`].
pub const POOL_SUM_BIAS: i32 = 1;
/// Bytes per output channel in the bias table: one little-endian i32.
pub const BIAS_ENTRY_BYTES: u64 = 4;
/// Bytes per output channel in the requantization table (see [`RequantEntry`]).
pub const REQUANT_ENTRY_BYTES: u64 = 8;
/// Bytes per (output channel, region) in the group-multiplier table: one little-endian u16.
pub const GROUP_MULT_ENTRY_BYTES: u64 = 2;

/// The code an activation byte carries on a device whose lanes are `act_bits` wide
/// (CAPS0.ACT_BITS): the byte's low `act_bits` bits, sign-extended from bit `act_bits − 1` when
/// the layer's input is signed, else zero-extended; the bits above are ignored. A byte the golden
/// model writes (a code of at most `act_bits` bits, sign-extended to 8) is its own value.
pub fn activation_code(byte: u8, act_bits: BitWidth, signed: bool) -> i32 {
    let unused = 8 - u32::from(act_bits.get());
    if signed {
        i32::from(((byte << unused) as i8) >> unused)
    } else {
        i32::from((byte << unused) >> unused)
    }
}

/// The code of an activation byte as the device and the golden model write it (a code of at most
/// 8 bits, two's complement in the byte when `signed`): [`activation_code`] at 8 bits, the rule
/// every reader of an activation buffer uses.
#[inline]
pub fn byte_code(byte: u8, signed: bool) -> i32 {
    if signed {
        i32::from(byte as i8)
    } else {
        i32::from(byte)
    }
}

/// One field of the descriptor layout: bits `lsb .. lsb + width` counted from bit 0 of `word`.
/// 64-bit fields start at bit 0 of a word and take that word (LO) and the next (HI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescField {
    pub name: &'static str,
    pub word: u8,
    pub lsb: u8,
    pub width: u8,
    pub description: &'static str,
}

impl DescField {
    const fn new(
        name: &'static str,
        word: u8,
        lsb: u8,
        width: u8,
        description: &'static str,
    ) -> Self {
        DescField {
            name,
            word,
            lsb,
            width,
            description,
        }
    }

    /// The largest value the field holds.
    pub const fn max(self) -> u64 {
        if self.width >= 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        }
    }

    fn span(self, words: &[u32; DESCRIPTOR_WORDS]) -> u64 {
        let w = usize::from(self.word);
        let hi = words.get(w + 1).copied().unwrap_or(0);
        u64::from(hi) << 32 | u64::from(words[w])
    }

    /// Reads the field.
    pub fn get(self, words: &[u32; DESCRIPTOR_WORDS]) -> u64 {
        (self.span(words) >> self.lsb) & self.max()
    }

    /// Writes the field; callers pass values that fit (every `LayerDescriptor` field type does).
    fn put(self, words: &mut [u32; DESCRIPTOR_WORDS], value: u64) {
        let mask = self.max() << self.lsb;
        let span = (self.span(words) & !mask) | ((value << self.lsb) & mask);
        let w = usize::from(self.word);
        words[w] = span as u32;
        if u32::from(self.lsb) + u32::from(self.width) > 32 {
            words[w + 1] = (span >> 32) as u32;
        }
    }

    /// The bit range within its word(s) as written in the docs.
    pub fn bits(self) -> String {
        crate::regmap::bit_range(self.lsb, self.width)
    }
}

pub const OP: DescField = DescField::new("op", 0, 0, 8, "Operation: 1 = Dense, 2 = Conv2d.");
pub const RELU: DescField =
    DescField::new("relu", 0, 8, 1, "Clamp outputs at 0 after requantization.");
pub const IN_SIGNED: DescField = DescField::new(
    "in_signed",
    0,
    9,
    1,
    "Input activations are two's complement (else unsigned).",
);
pub const OUT_SIGNED: DescField = DescField::new(
    "out_signed",
    0,
    10,
    1,
    "Outputs saturate to the signed out_bits range.",
);
pub const GROUPED: DescField = DescField::new(
    "grouped",
    0,
    11,
    1,
    "Per-region group multipliers are present at group_mult_addr (requires group_size).",
);
pub const LAST: DescField = DescField::new(
    "last",
    0,
    12,
    1,
    "Set on the final descriptor of the list, and only there.",
);
pub const N_GROUPS: DescField = DescField::new(
    "n_groups",
    0,
    16,
    8,
    "Plane groups stored for this layer (1..=4).",
);
pub const ACTIVE_GROUPS: DescField = DescField::new(
    "active_groups",
    0,
    24,
    8,
    "Plane groups streamed, from group 0 (1..=n_groups): the run-time precision.",
);
pub const IN_BITS: DescField =
    DescField::new("in_bits", 1, 0, 4, "Input activation width (2..=8).");
pub const OUT_BITS: DescField =
    DescField::new("out_bits", 1, 4, 4, "Output activation width (2..=8).");
pub const GROUP_SIZE: DescField = DescField::new(
    "group_size",
    1,
    16,
    16,
    "Local quantization region size along K; 0 = none, else CAPS group size.",
);
pub const IN_C: DescField = DescField::new("in_c", 2, 0, 16, "Input channels.");
pub const IN_H: DescField = DescField::new("in_h", 2, 16, 16, "Input height (1 for Dense).");
pub const IN_W: DescField = DescField::new("in_w", 3, 0, 16, "Input width (1 for Dense).");
pub const OUT_C: DescField = DescField::new("out_c", 3, 16, 16, "Output channels.");
pub const OUT_H: DescField = DescField::new("out_h", 4, 0, 16, "Output height (1 for Dense).");
pub const OUT_W: DescField = DescField::new("out_w", 4, 16, 16, "Output width (1 for Dense).");
pub const KERNEL_H: DescField =
    DescField::new("kernel_h", 5, 0, 8, "Kernel height (1..=15; 1 for Dense).");
pub const KERNEL_W: DescField =
    DescField::new("kernel_w", 5, 8, 8, "Kernel width (1..=7; 1 for Dense).");
pub const STRIDE: DescField = DescField::new("stride", 5, 16, 8, "Stride in both axes (1..=2).");
pub const PAD_TOP: DescField = DescField::new(
    "pad_top",
    5,
    24,
    4,
    "Zero rows above the input (0..=7; pad_top + pad_bottom ≤ kernel_h).",
);
pub const PAD_LEFT: DescField = DescField::new(
    "pad_left",
    5,
    28,
    4,
    "Zero columns left of the input (0..=7; pad_left + pad_right ≤ kernel_w).",
);
pub const PAD_BOTTOM: DescField = DescField::new(
    "pad_bottom",
    1,
    8,
    4,
    "Zero rows below the input (0..=7): only bounds out_h.",
);
pub const PAD_RIGHT: DescField = DescField::new(
    "pad_right",
    1,
    12,
    4,
    "Zero columns right of the input (0..=7): only bounds out_w.",
);
pub const PLANE_GROUP_BITS: [DescField; PLANE_GROUP_SLOTS] = [
    DescField::new(
        "pg0_bits",
        6,
        0,
        4,
        "Plane group 0: code width (1..=8); 0 when unused.",
    ),
    DescField::new("pg1_bits", 6, 16, 4, "Plane group 1: code width."),
    DescField::new("pg2_bits", 7, 0, 4, "Plane group 2: code width."),
    DescField::new("pg3_bits", 7, 16, 4, "Plane group 3: code width."),
];
pub const PLANE_GROUP_SHIFT: [DescField; PLANE_GROUP_SLOTS] = [
    DescField::new(
        "pg0_shift",
        6,
        8,
        8,
        "Plane group 0: weight 2^shift of its codes (0..=7).",
    ),
    DescField::new("pg1_shift", 6, 24, 8, "Plane group 1: shift."),
    DescField::new("pg2_shift", 7, 8, 8, "Plane group 2: shift."),
    DescField::new("pg3_shift", 7, 24, 8, "Plane group 3: shift."),
];
/// The tallest kernel the window generator walks (rows of the feature map).
pub const MAX_KERNEL_H: u8 = 15;
/// The widest kernel: a kernel row must lie within one 16-byte read of the feature map.
pub const MAX_KERNEL_W: u8 = 7;

pub const INPUT_ADDR: DescField = DescField::new("input_addr", 8, 0, 64, "Input activations.");
pub const OUTPUT_ADDR: DescField = DescField::new("output_addr", 10, 0, 64, "Output activations.");
pub const BIAS_ADDR: DescField = DescField::new(
    "bias_addr",
    12,
    0,
    64,
    "Bias table: i32 per output channel.",
);
pub const REQUANT_ADDR: DescField = DescField::new(
    "requant_addr",
    14,
    0,
    64,
    "Requantization table: 8 bytes per output channel.",
);
pub const GROUP_MULT_ADDR: DescField = DescField::new(
    "group_mult_addr",
    16,
    0,
    64,
    "Group-multiplier table: u16 per (output channel, region); read only when grouped.",
);
pub const WEIGHT_ADDR: [DescField; PLANE_GROUP_SLOTS] = [
    DescField::new("weight_addr0", 18, 0, 64, "Plane group 0 weight planes."),
    DescField::new(
        "weight_addr1",
        20,
        0,
        64,
        "Plane group 1 weight planes (0 when unused).",
    ),
    DescField::new(
        "weight_addr2",
        22,
        0,
        64,
        "Plane group 2 weight planes (0 when unused).",
    ),
    DescField::new(
        "weight_addr3",
        24,
        0,
        64,
        "Plane group 3 weight planes (0 when unused).",
    ),
];

pub const BATCH: DescField = DescField::new(
    "batch",
    26,
    0,
    16,
    "Inputs run through the layer with each loaded weight tile (1..; Dense only, 1 for Conv2d): \
     input n at input_addr + n·⌈K/C⌉·C, output n at output_addr + n·⌈out_c/C⌉·C (C = CAPS0.COLS).",
);

pub const MAX_POOL: DescField = DescField::new(
    "max_pool",
    27,
    0,
    4,
    "Conv2d: max pooling of the outputs, window k×k with stride k, before they are written \
     (0 = none; 2, 4 or 8; 0 for Dense). The map written is [out_c, out_h / k, out_w / k] (rows and \
     columns past the last whole window are dropped), CHW at output_addr.",
);

pub const GLOBAL_POOL: DescField = DescField::new(
    "global_pool",
    27,
    4,
    1,
    "Conv2d, on a device with CAPS0.GLOBAL_POOL: global average pooling of the outputs before they \
     are written (0 for Dense; not with max_pool). The map written is [out_c, 1, 1] at output_addr: channel c's byte is \
     ((4·Σ + 1)·pool_mult + 2^(pool_shift−1)) >> pool_shift, Σ the sum of its out_h·out_w output \
     codes, then ReLU (with relu) and saturation as for any output.",
);

pub const POOL_MULT: DescField = DescField::new(
    "pool_mult",
    28,
    0,
    32,
    "With global_pool: the mean's multiplier, a two's-complement i32 (the compiler writes the \
     requantization of 1/(4·out_h·out_w)); 0 without.",
);

pub const POOL_SHIFT: DescField = DescField::new(
    "pool_shift",
    29,
    0,
    6,
    "With global_pool: the mean's right shift (0..=63); 0 without.",
);

/// Every descriptor field, in word and bit order. Words 30 and 31 are reserved.
pub static DESCRIPTOR_FIELDS: &[DescField] = &[
    OP,
    RELU,
    IN_SIGNED,
    OUT_SIGNED,
    GROUPED,
    LAST,
    N_GROUPS,
    ACTIVE_GROUPS,
    IN_BITS,
    OUT_BITS,
    PAD_BOTTOM,
    PAD_RIGHT,
    GROUP_SIZE,
    IN_C,
    IN_H,
    IN_W,
    OUT_C,
    OUT_H,
    OUT_W,
    KERNEL_H,
    KERNEL_W,
    STRIDE,
    PAD_TOP,
    PAD_LEFT,
    PLANE_GROUP_BITS[0],
    PLANE_GROUP_SHIFT[0],
    PLANE_GROUP_BITS[1],
    PLANE_GROUP_SHIFT[1],
    PLANE_GROUP_BITS[2],
    PLANE_GROUP_SHIFT[2],
    PLANE_GROUP_BITS[3],
    PLANE_GROUP_SHIFT[3],
    INPUT_ADDR,
    OUTPUT_ADDR,
    BIAS_ADDR,
    REQUANT_ADDR,
    GROUP_MULT_ADDR,
    WEIGHT_ADDR[0],
    WEIGHT_ADDR[1],
    WEIGHT_ADDR[2],
    WEIGHT_ADDR[3],
    BATCH,
    MAX_POOL,
    GLOBAL_POOL,
    POOL_MULT,
    POOL_SHIFT,
];

/// Per word, the bits some field names; the rest are reserved.
pub fn used_bits() -> [u32; DESCRIPTOR_WORDS] {
    let mut used = [0u32; DESCRIPTOR_WORDS];
    for f in DESCRIPTOR_FIELDS {
        f.put(&mut used, f.max());
    }
    used
}

/// The checks a device makes on a fetched descriptor, in the order it makes them; the first failure
/// is reported in STATUS. [`check_fetched`] runs them in this order.
pub static CHECKS: &[(ErrorCode, &str)] = &[
    (ErrorCode::BadOpcode, "`op` is 1 (Dense) or 2 (Conv2d)."),
    (ErrorCode::BadGroups, "`n_groups` is 1..=4."),
    (
        ErrorCode::BadBits,
        "`in_bits`, `out_bits` and the stored groups' `pgN_bits` are 1..=8.",
    ),
    (
        ErrorCode::BadGroups,
        "Group slots from n_groups on are all zero.",
    ),
    (
        ErrorCode::Reserved,
        "Reserved bits are zero; so are pool_mult and pool_shift while global_pool is clear.",
    ),
    (
        ErrorCode::BadBits,
        "`in_bits` and `out_bits` are 2..=CAPS0.ACT_BITS; each stored group's bits are in \
         CAPS0.WEIGHT_BITS_MASK.",
    ),
    (
        ErrorCode::BadShape,
        "Dimensions are 1..=MAX_DIM; kernel_h 1..=15, kernel_w 1..=7, stride 1..=2, each pad \
         0..=7, pad_top + \
         pad_bottom ≤ kernel_h and pad_left + pad_right ≤ kernel_w; \
         Dense has 1x1 spatial shapes, kernel 1, stride 1, pad 0 and batch ≥ 1; Conv2d's out_h = \
         (in_h + pad_top + pad_bottom − kernel_h) / stride + 1 (likewise out_w with pad_left + \
         pad_right) and batch 1; max_pool is 0, 2, 4 or 8, 0 for Dense, and at most out_h and \
         out_w; global_pool is 0 for Dense, with max_pool and without CAPS0.GLOBAL_POOL; K (in_c for Dense, in_c·kernel_h·kernel_w for Conv2d) ≤ MAX_K.",
    ),
    (
        ErrorCode::BadGroups,
        "n_groups ≤ MAX_PLANE_GROUPS; active_groups is 1..=n_groups; each group's shift ≤ 7 and \
         bits + shift ≤ the widest supported weight.",
    ),
    (
        ErrorCode::BadRegion,
        "`grouped` is set exactly when group_size ≠ 0, and group_size is the CAPS group size.",
    ),
    (
        ErrorCode::Misaligned,
        "Bias, requant, group-multiplier (when grouped) and active groups' weight addresses, and \
         a Dense layer's input and output addresses, are multiples of BUS_BYTES (a Conv2d's input \
         and output maps may start at any byte).",
    ),
    (
        ErrorCode::OutOfWindow,
        "Those addresses fit in ADDR_WIDTH bits and lie in [WIN_BASE, WIN_LIMIT); the bias, \
         requant and group-multiplier tables lie in it whole. (The DMA also checks every burst.)",
    ),
    (
        ErrorCode::DescCount,
        "`last` is set on descriptor DESC_COUNT − 1 and on no other.",
    ),
];

/// A layer's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// A fully connected layer: K = in_c, all spatial sizes 1.
    Dense = 1,
    /// A 2-D convolution by implicit im2col: K = in_c · kernel_h · kernel_w.
    Conv2d = 2,
}

impl Opcode {
    /// Decodes the `op` field.
    pub fn from_u8(op: u8) -> Option<Opcode> {
        match op {
            1 => Some(Opcode::Dense),
            2 => Some(Opcode::Conv2d),
            _ => None,
        }
    }
}

/// The one-bit flags of word 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub relu: bool,
    pub in_signed: bool,
    pub out_signed: bool,
    /// Per-region group multipliers are present.
    pub grouped: bool,
    /// The final descriptor of the list.
    pub last: bool,
}

/// Zero padding of a Conv2d per side (descriptor format v2; v1 had one `pad` for all four).
/// Output pixel (y, x) reads input row `y·stride + ky − top` and column `x·stride + kx − left`;
/// `bottom` and `right` only bound the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pad {
    pub top: u8,
    pub left: u8,
    pub bottom: u8,
    pub right: u8,
}

impl Pad {
    /// The same padding on every side.
    pub const fn uniform(p: u8) -> Pad {
        Pad {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }

    /// Whether every side is 0.
    pub fn is_zero(&self) -> bool {
        *self == Pad::default()
    }
}

impl std::fmt::Display for Pad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[top {}, left {}, bottom {}, right {}]",
            self.top, self.left, self.bottom, self.right
        )
    }
}

/// A tensor shape: channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    pub c: u16,
    pub h: u16,
    pub w: u16,
}

impl Shape {
    /// The bytes of a CHW map of this shape (one byte per code).
    pub fn bytes(self) -> u64 {
        u64::from(self.c) * u64::from(self.h) * u64::from(self.w)
    }
}

/// One plane group: signed two's-complement `bits`-bit codes weighted by 2^`shift`, so its plane `p`
/// has weight 2^(shift + p) and its top plane is negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneGroup {
    pub bits: BitWidth,
    pub shift: u8,
    pub weight_addr: DeviceAddr,
}

/// The 1..=4 plane groups a descriptor stores, group 0 first (the high part of a nested weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneGroups {
    slots: [PlaneGroup; PLANE_GROUP_SLOTS],
    len: u8,
}

impl PlaneGroups {
    /// Takes 1..=4 groups.
    pub fn new(groups: &[PlaneGroup]) -> Result<PlaneGroups, SpecError> {
        if groups.is_empty() || groups.len() > PLANE_GROUP_SLOTS {
            return Err(SpecError::PlaneGroupCount {
                count: groups.len(),
                max: PLANE_GROUP_SLOTS,
            });
        }
        // Unused slots hold one canonical value so that equality only sees the used ones.
        let mut slots = [PlaneGroup {
            bits: BitWidth::MIN,
            shift: 0,
            weight_addr: DeviceAddr(0),
        }; PLANE_GROUP_SLOTS];
        slots[..groups.len()].copy_from_slice(groups);
        Ok(PlaneGroups {
            slots,
            len: groups.len() as u8,
        })
    }

    /// The stored groups.
    pub fn as_slice(&self) -> &[PlaneGroup] {
        &self.slots[..usize::from(self.len)]
    }
}

/// One entry of the requantization table: `out = sat(round(acc · multiplier / 2^shift))`.
/// Packed as 8 bytes: multiplier (i32 LE) at bytes 0..4, shift at byte 4, bytes 5..8 zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequantEntry {
    pub multiplier: i32,
    pub shift: u8,
}

impl RequantEntry {
    /// The packed table entry.
    pub fn to_bytes(self) -> [u8; REQUANT_ENTRY_BYTES as usize] {
        let m = self.multiplier.to_le_bytes();
        [m[0], m[1], m[2], m[3], self.shift, 0, 0, 0]
    }

    /// Unpacks a table entry; the padding bytes are ignored, as the device ignores them.
    pub fn from_bytes(bytes: [u8; REQUANT_ENTRY_BYTES as usize]) -> RequantEntry {
        RequantEntry {
            multiplier: i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            shift: bytes[4],
        }
    }
}

/// The DMA address window, [base, limit), from WIN_BASE / WIN_LIMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub base: DeviceAddr,
    pub limit: DeviceAddr,
}

impl Window {
    /// True when `[addr, addr + len)` lies in the window (`len = 0` checks the start only).
    pub fn contains(&self, addr: DeviceAddr, len: u64) -> bool {
        let end = addr.0.checked_add(len.max(1));
        addr >= self.base && end.is_some_and(|end| end <= self.limit.0)
    }
}

/// A layer descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDescriptor {
    pub op: Opcode,
    pub flags: Flags,
    pub in_bits: BitWidth,
    pub out_bits: BitWidth,
    /// Region size along K; 0 = none.
    pub group_size: u16,
    pub input: Shape,
    pub output: Shape,
    pub kernel_h: u8,
    pub kernel_w: u8,
    pub stride: u8,
    pub pad: Pad,
    pub plane_groups: PlaneGroups,
    /// Groups streamed this run, from group 0.
    pub active_groups: u8,
    pub input_addr: DeviceAddr,
    pub output_addr: DeviceAddr,
    pub bias_addr: DeviceAddr,
    pub requant_addr: DeviceAddr,
    pub group_mult_addr: DeviceAddr,
    /// Inputs run with each loaded weight tile (Dense; 1 for Conv2d). See [`BATCH`].
    pub batch: u16,
    /// Conv2d: the max-pooling window k of the outputs (k×k, stride k), 0 = none. See [`MAX_POOL`].
    pub max_pool: u8,
    /// Conv2d: global average pooling of the outputs with this mean requantization (applied to
    /// 4·Σ + 1), `None` = none. See [`GLOBAL_POOL`].
    pub global_pool: Option<RequantEntry>,
}

type Check = Result<(), (ErrorCode, String)>;

fn fail(code: ErrorCode, message: String) -> Check {
    Err((code, message))
}

impl LayerDescriptor {
    /// The 128 bytes the device fetches.
    pub fn encode(&self) -> [u8; DESCRIPTOR_BYTES] {
        let mut w = [0u32; DESCRIPTOR_WORDS];
        let f = self.flags;
        let pool = self.global_pool;
        let values: [(DescField, u64); 33] = [
            (OP, self.op as u64),
            (RELU, u64::from(f.relu)),
            (IN_SIGNED, u64::from(f.in_signed)),
            (OUT_SIGNED, u64::from(f.out_signed)),
            (GROUPED, u64::from(f.grouped)),
            (LAST, u64::from(f.last)),
            (N_GROUPS, self.plane_groups.as_slice().len() as u64),
            (ACTIVE_GROUPS, u64::from(self.active_groups)),
            (IN_BITS, u64::from(self.in_bits.get())),
            (OUT_BITS, u64::from(self.out_bits.get())),
            (GROUP_SIZE, u64::from(self.group_size)),
            (IN_C, u64::from(self.input.c)),
            (IN_H, u64::from(self.input.h)),
            (IN_W, u64::from(self.input.w)),
            (OUT_C, u64::from(self.output.c)),
            (OUT_H, u64::from(self.output.h)),
            (OUT_W, u64::from(self.output.w)),
            (KERNEL_H, u64::from(self.kernel_h)),
            (KERNEL_W, u64::from(self.kernel_w)),
            (STRIDE, u64::from(self.stride)),
            (PAD_TOP, u64::from(self.pad.top)),
            (PAD_LEFT, u64::from(self.pad.left)),
            (PAD_BOTTOM, u64::from(self.pad.bottom)),
            (PAD_RIGHT, u64::from(self.pad.right)),
            (INPUT_ADDR, self.input_addr.0),
            (OUTPUT_ADDR, self.output_addr.0),
            (BIAS_ADDR, self.bias_addr.0),
            (REQUANT_ADDR, self.requant_addr.0),
            (BATCH, u64::from(self.batch)),
            (MAX_POOL, u64::from(self.max_pool)),
            (GLOBAL_POOL, u64::from(pool.is_some())),
            (
                POOL_MULT,
                u64::from(pool.map_or(0, |p| p.multiplier as u32)),
            ),
            (POOL_SHIFT, u64::from(pool.map_or(0, |p| p.shift))),
        ];
        for (field, value) in values {
            field.put(&mut w, value);
        }
        GROUP_MULT_ADDR.put(&mut w, self.group_mult_addr.0);
        for (g, group) in self.plane_groups.as_slice().iter().enumerate() {
            PLANE_GROUP_BITS[g].put(&mut w, u64::from(group.bits.get()));
            PLANE_GROUP_SHIFT[g].put(&mut w, u64::from(group.shift));
            WEIGHT_ADDR[g].put(&mut w, group.weight_addr.0);
        }
        let mut bytes = [0u8; DESCRIPTOR_BYTES];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(w) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Parses 128 fetched bytes. Fails, naming the field and value, on an unknown opcode, a
    /// plane-group count outside 1..=4, a width outside 1..=8, a non-zero unused group slot or a set
    /// reserved bit — in that order (see [`CHECKS`]).
    pub fn decode(bytes: &[u8]) -> Result<LayerDescriptor, SpecError> {
        if bytes.len() != DESCRIPTOR_BYTES {
            return Err(SpecError::DescriptorLength {
                len: bytes.len(),
                expected: DESCRIPTOR_BYTES,
            });
        }
        let mut w = [0u32; DESCRIPTOR_WORDS];
        for (word, chunk) in w.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let get = |f: DescField| f.get(&w);
        // Every field below is at most 16 bits wide except the addresses, so `as` is exact.
        let small = |f: DescField| get(f) as u16;
        let byte = |f: DescField| get(f) as u8;

        let op = Opcode::from_u8(byte(OP)).ok_or_else(|| {
            field_error(OP, get(OP), "1 (Dense) or 2 (Conv2d)", ErrorCode::BadOpcode)
        })?;
        let width = |f: DescField| {
            BitWidth::try_from(byte(f))
                .map_err(|_| field_error(f, get(f), "1..=8", ErrorCode::BadBits))
        };
        let n_groups = usize::from(byte(N_GROUPS));
        if !(1..=PLANE_GROUP_SLOTS).contains(&n_groups) {
            return Err(field_error(
                N_GROUPS,
                get(N_GROUPS),
                "1..=4",
                ErrorCode::BadGroups,
            ));
        }
        let in_bits = width(IN_BITS)?;
        let out_bits = width(OUT_BITS)?;
        let mut groups = Vec::with_capacity(n_groups);
        for g in 0..n_groups {
            groups.push(PlaneGroup {
                bits: width(PLANE_GROUP_BITS[g])?,
                shift: byte(PLANE_GROUP_SHIFT[g]),
                weight_addr: DeviceAddr(get(WEIGHT_ADDR[g])),
            });
        }
        for g in n_groups..PLANE_GROUP_SLOTS {
            for f in [PLANE_GROUP_BITS[g], PLANE_GROUP_SHIFT[g], WEIGHT_ADDR[g]] {
                if get(f) != 0 {
                    let expected = format!("0 (group {g} is not stored: n_groups = {n_groups})");
                    return Err(field_error(f, get(f), &expected, ErrorCode::BadGroups));
                }
            }
        }
        let used = used_bits();
        if let Some((i, bits)) = w
            .iter()
            .zip(used)
            .map(|(x, u)| x & !u)
            .enumerate()
            .find(|(_, b)| *b != 0)
        {
            return Err(SpecError::DescriptorField {
                field: "reserved",
                value: u64::from(bits),
                expected: format!("0 (reserved bits of word {i})"),
                code: ErrorCode::Reserved,
            });
        }
        let global_pool = if get(GLOBAL_POOL) != 0 {
            Some(RequantEntry {
                multiplier: get(POOL_MULT) as u32 as i32,
                shift: byte(POOL_SHIFT),
            })
        } else {
            for f in [POOL_MULT, POOL_SHIFT] {
                if get(f) != 0 {
                    return Err(field_error(
                        f,
                        get(f),
                        "0 (reserved while global_pool is clear)",
                        ErrorCode::Reserved,
                    ));
                }
            }
            None
        };
        Ok(LayerDescriptor {
            op,
            flags: Flags {
                relu: get(RELU) != 0,
                in_signed: get(IN_SIGNED) != 0,
                out_signed: get(OUT_SIGNED) != 0,
                grouped: get(GROUPED) != 0,
                last: get(LAST) != 0,
            },
            in_bits,
            out_bits,
            group_size: small(GROUP_SIZE),
            input: Shape {
                c: small(IN_C),
                h: small(IN_H),
                w: small(IN_W),
            },
            output: Shape {
                c: small(OUT_C),
                h: small(OUT_H),
                w: small(OUT_W),
            },
            kernel_h: byte(KERNEL_H),
            kernel_w: byte(KERNEL_W),
            stride: byte(STRIDE),
            pad: Pad {
                top: byte(PAD_TOP),
                left: byte(PAD_LEFT),
                bottom: byte(PAD_BOTTOM),
                right: byte(PAD_RIGHT),
            },
            plane_groups: PlaneGroups::new(&groups)?,
            active_groups: byte(ACTIVE_GROUPS),
            input_addr: DeviceAddr(get(INPUT_ADDR)),
            output_addr: DeviceAddr(get(OUTPUT_ADDR)),
            bias_addr: DeviceAddr(get(BIAS_ADDR)),
            requant_addr: DeviceAddr(get(REQUANT_ADDR)),
            group_mult_addr: DeviceAddr(get(GROUP_MULT_ADDR)),
            batch: small(BATCH),
            max_pool: byte(MAX_POOL),
            global_pool,
        })
    }

    /// The reduction length: `in_c` for Dense, `in_c · kernel_h · kernel_w` for Conv2d.
    pub fn k(&self) -> u64 {
        let c = u64::from(self.input.c);
        match self.op {
            Opcode::Dense => c,
            Opcode::Conv2d => c * u64::from(self.kernel_h) * u64::from(self.kernel_w),
        }
    }

    /// Quantization regions along K: ⌈K / group_size⌉ (the last may be partial), 1 without regions.
    pub fn regions(&self) -> u64 {
        match self.group_size {
            0 => 1,
            g => self.k().div_ceil(u64::from(g)),
        }
    }

    /// The map the device writes, [out_c, out_h / k, out_w / k] with max pooling of window k,
    /// [out_c, 1, 1] with global pooling, else the output shape: the one rule for the written
    /// extent.
    pub fn written(&self) -> Shape {
        if self.global_pool.is_some() {
            return Shape {
                c: self.output.c,
                h: 1,
                w: 1,
            };
        }
        match self.max_pool {
            0 => self.output,
            k => Shape {
                c: self.output.c,
                h: self.output.h / u16::from(k),
                w: self.output.w / u16::from(k),
            },
        }
    }

    /// The groups streamed this run.
    pub fn active_plane_groups(&self) -> &[PlaneGroup] {
        let groups = self.plane_groups.as_slice();
        &groups[..usize::from(self.active_groups).min(groups.len())]
    }

    /// Checks the descriptor against a device's capabilities (see [`CHECKS`] for the order).
    pub fn validate(&self, caps: &Caps) -> Result<(), (ErrorCode, String)> {
        self.check_bits(caps)?;
        self.check_shape(caps)?;
        self.check_groups(caps)?;
        self.check_region(caps)?;
        self.check_alignment(caps)
    }

    fn check_bits(&self, caps: &Caps) -> Check {
        let act = caps.act_bits().get();
        for (name, bits) in [("in_bits", self.in_bits), ("out_bits", self.out_bits)] {
            if !(2..=act).contains(&bits.get()) {
                return fail(
                    ErrorCode::BadBits,
                    format!("{name} = {bits}: expected 2..={act}"),
                );
            }
        }
        for (g, group) in self.plane_groups.as_slice().iter().enumerate() {
            if !caps.supports_weight_bits(group.bits) {
                return fail(
                    ErrorCode::BadBits,
                    format!(
                        "pg{g}_bits = {}: not in CAPS0.WEIGHT_BITS_MASK = {:#010b}",
                        group.bits,
                        caps.weight_bits_mask()
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_shape(&self, caps: &Caps) -> Check {
        let bad = |m: String| fail(ErrorCode::BadShape, m);
        let dims = [
            ("in_c", self.input.c),
            ("in_h", self.input.h),
            ("in_w", self.input.w),
            ("out_c", self.output.c),
            ("out_h", self.output.h),
            ("out_w", self.output.w),
        ];
        for (name, v) in dims {
            if !(1..=caps.max_dim()).contains(&u32::from(v)) {
                return bad(format!("{name} = {v}: expected 1..={}", caps.max_dim()));
            }
        }
        let ranges = [
            ("kernel_h", self.kernel_h, 1..=MAX_KERNEL_H),
            ("kernel_w", self.kernel_w, 1..=MAX_KERNEL_W),
            ("stride", self.stride, 1..=2),
            ("pad_top", self.pad.top, 0..=7),
            ("pad_left", self.pad.left, 0..=7),
            ("pad_bottom", self.pad.bottom, 0..=7),
            ("pad_right", self.pad.right, 0..=7),
        ];
        for (name, v, range) in ranges {
            if !range.contains(&v) {
                return bad(format!(
                    "{name} = {v}: expected {}..={}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if self.max_pool != 0 && !POOL_WINDOWS.contains(&self.max_pool) {
            return bad(format!(
                "max_pool = {}: expected 0 (none) or a window of {POOL_WINDOWS:?}",
                self.max_pool
            ));
        }
        let p = self.pad;
        if p.top + p.bottom > self.kernel_h || p.left + p.right > self.kernel_w {
            return bad(format!(
                "pad {p}: expected pad_top + pad_bottom ≤ kernel_h and pad_left + pad_right ≤ \
                 kernel_w (kernel {}x{})",
                self.kernel_h, self.kernel_w
            ));
        }
        match self.op {
            Opcode::Dense => {
                let ones = [
                    ("in_h", self.input.h),
                    ("in_w", self.input.w),
                    ("out_h", self.output.h),
                    ("out_w", self.output.w),
                    ("kernel_h", u16::from(self.kernel_h)),
                    ("kernel_w", u16::from(self.kernel_w)),
                    ("stride", u16::from(self.stride)),
                ];
                if let Some((name, v)) = ones.into_iter().find(|(_, v)| *v != 1) {
                    return bad(format!("{name} = {v}: expected 1 for Dense"));
                }
                if !self.pad.is_zero() {
                    return bad(format!("pad {}: expected 0 for Dense", self.pad));
                }
                if self.batch == 0 {
                    return bad("batch = 0: expected at least 1".into());
                }
                if self.max_pool != 0 {
                    return bad(format!(
                        "max_pool = {}: expected 0 for Dense",
                        self.max_pool
                    ));
                }
                if self.global_pool.is_some() {
                    return bad("global_pool = 1: expected 0 for Dense".into());
                }
            }
            Opcode::Conv2d => {
                if self.batch != 1 {
                    return bad(format!("batch = {}: expected 1 for Conv2d", self.batch));
                }
                let axes = [
                    (
                        "out_h",
                        self.input.h,
                        self.kernel_h,
                        self.output.h,
                        p.top + p.bottom,
                    ),
                    (
                        "out_w",
                        self.input.w,
                        self.kernel_w,
                        self.output.w,
                        p.left + p.right,
                    ),
                ];
                for (name, input, kernel, out, pads) in axes {
                    let padded = u32::from(input) + u32::from(pads);
                    let expected = padded
                        .checked_sub(u32::from(kernel))
                        .map(|span| span / u32::from(self.stride) + 1);
                    if expected != Some(u32::from(out)) {
                        return bad(format!(
                            "{name} = {out}: expected {} from input {input}, kernel {kernel}, \
                             stride {}, pad {}",
                            expected.map_or_else(
                                || "none (kernel larger than padded input)".into(),
                                |e| e.to_string()
                            ),
                            self.stride,
                            self.pad
                        ));
                    }
                }
                let k = u16::from(self.max_pool);
                if k > self.output.h.min(self.output.w) {
                    return bad(format!(
                        "max_pool = {k}: expected a window within the {}x{} output",
                        self.output.h, self.output.w
                    ));
                }
                if self.global_pool.is_some() && !caps.global_pool() {
                    return bad(
                        "global_pool = 1: this device has no global pooling on the result path \
                         (CAPS0.GLOBAL_POOL = 0)"
                            .into(),
                    );
                }
                if k != 0 && self.global_pool.is_some() {
                    return bad(format!(
                        "global_pool = 1 with max_pool = {k}: expected one pooling, not both"
                    ));
                }
            }
        }
        if self.k() > u64::from(caps.max_k()) {
            return bad(format!(
                "K = {}: expected at most MAX_K = {}",
                self.k(),
                caps.max_k()
            ));
        }
        Ok(())
    }

    fn check_groups(&self, caps: &Caps) -> Check {
        let bad = |m: String| fail(ErrorCode::BadGroups, m);
        let n = self.plane_groups.as_slice().len();
        if n as u32 > caps.max_plane_groups() {
            return bad(format!(
                "n_groups = {n}: expected at most MAX_PLANE_GROUPS = {}",
                caps.max_plane_groups()
            ));
        }
        if !(1..=n).contains(&usize::from(self.active_groups)) {
            return bad(format!(
                "active_groups = {}: expected 1..={n}",
                self.active_groups
            ));
        }
        let wmax = caps.max_weight_bits().get();
        for (g, group) in self.plane_groups.as_slice().iter().enumerate() {
            if group.shift > 7 {
                return bad(format!("pg{g}_shift = {}: expected 0..=7", group.shift));
            }
            if group.bits.get() + group.shift > wmax {
                return bad(format!(
                    "pg{g}_bits + pg{g}_shift = {} + {}: expected at most {wmax}, the widest \
                     supported weight (its top plane would exceed the accumulator bound)",
                    group.bits, group.shift
                ));
            }
        }
        Ok(())
    }

    fn check_region(&self, caps: &Caps) -> Check {
        let bad = |m: String| fail(ErrorCode::BadRegion, m);
        let (grouped, size) = (self.flags.grouped, u32::from(self.group_size));
        if grouped != (size != 0) {
            return bad(format!(
                "grouped = {grouped} with group_size = {size}: grouped must be set exactly when \
                 group_size is not 0"
            ));
        }
        if size != 0 && size != caps.group_size() {
            return bad(format!(
                "group_size = {size}: expected 0 or the device's group size {}",
                caps.group_size()
            ));
        }
        Ok(())
    }

    /// Every address the device reads or writes for this run, with its field name.
    fn addresses(&self) -> Vec<(&'static str, DeviceAddr)> {
        let mut addrs = vec![
            (INPUT_ADDR.name, self.input_addr),
            (OUTPUT_ADDR.name, self.output_addr),
            (BIAS_ADDR.name, self.bias_addr),
            (REQUANT_ADDR.name, self.requant_addr),
        ];
        if self.flags.grouped {
            addrs.push((GROUP_MULT_ADDR.name, self.group_mult_addr));
        }
        for (g, group) in self.active_plane_groups().iter().enumerate() {
            addrs.push((WEIGHT_ADDR[g].name, group.weight_addr));
        }
        addrs
    }

    fn check_alignment(&self, caps: &Caps) -> Check {
        let bus = caps.bus_bytes();
        for (name, addr) in self.addresses() {
            // A Conv2d's maps may start at any byte: the engine reads a map from the 8-byte word
            // it starts in and writes its runs with byte strobes.
            let conv_map =
                self.op == Opcode::Conv2d && (name == INPUT_ADDR.name || name == OUTPUT_ADDR.name);
            if !conv_map && !addr.is_aligned(bus) {
                return fail(
                    ErrorCode::Misaligned,
                    format!("{name} = {addr}: expected a multiple of BUS_BYTES = {bus}"),
                );
            }
        }
        Ok(())
    }

    /// Checks every address against the address space and the DMA window.
    pub fn check_window(&self, caps: &Caps, window: Window) -> Result<(), (ErrorCode, String)> {
        let out_c = u64::from(self.output.c);
        let table_bytes = |name: &str| match name {
            "bias_addr" => out_c * BIAS_ENTRY_BYTES,
            "requant_addr" => out_c * REQUANT_ENTRY_BYTES,
            "group_mult_addr" => out_c * self.regions() * GROUP_MULT_ENTRY_BYTES,
            _ => 0,
        };
        let space = caps.addr_width();
        for (name, addr) in self.addresses() {
            if space < 64 && addr.0 >> space != 0 {
                return fail(
                    ErrorCode::OutOfWindow,
                    format!("{name} = {addr}: beyond the {space}-bit AXI address space"),
                );
            }
            let len = table_bytes(name);
            if !window.contains(addr, len) {
                return fail(
                    ErrorCode::OutOfWindow,
                    format!(
                        "{name} = {addr} (+{len} bytes): outside the window [{}, {})",
                        window.base, window.limit
                    ),
                );
            }
        }
        Ok(())
    }

    /// Checks the LAST flag against the descriptor's place in a list of `count`.
    pub fn check_position(&self, index: u32, count: u32) -> Result<(), (ErrorCode, String)> {
        let final_one = index.checked_add(1) == Some(count);
        if self.flags.last != final_one {
            return fail(
                ErrorCode::DescCount,
                format!(
                    "last = {} on descriptor {index} of DESC_COUNT = {count}: expected it on \
                     descriptor {} only",
                    self.flags.last,
                    count.saturating_sub(1)
                ),
            );
        }
        Ok(())
    }
}

/// Everything a device checks on descriptor `index` of `count` before running it, in the order of
/// [`CHECKS`]; returns the decoded descriptor or the STATUS error code and a message.
pub fn check_fetched(
    bytes: &[u8; DESCRIPTOR_BYTES],
    index: u32,
    count: u32,
    caps: &Caps,
    window: Window,
) -> Result<LayerDescriptor, (ErrorCode, String)> {
    let desc = LayerDescriptor::decode(bytes).map_err(|e| {
        // Every decode error of a full-length descriptor carries its code; the fallback is unused.
        let code = e.device_error_code().unwrap_or(ErrorCode::Reserved);
        (code, e.to_string())
    })?;
    desc.validate(caps)?;
    desc.check_window(caps, window)?;
    desc.check_position(index, count)?;
    Ok(desc)
}

fn field_error(field: DescField, value: u64, expected: &str, code: ErrorCode) -> SpecError {
    SpecError::DescriptorField {
        field: field.name,
        value,
        expected: expected.to_string(),
        code,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_activation_byte_is_its_low_act_bits() {
        let w = |b: u8| BitWidth::try_from(b).unwrap();
        for byte in 0..=255u8 {
            assert_eq!(activation_code(byte, w(8), true), i32::from(byte as i8));
            assert_eq!(activation_code(byte, w(8), false), i32::from(byte));
            for signed in [false, true] {
                assert_eq!(byte_code(byte, signed), activation_code(byte, w(8), signed));
            }
        }
        assert_eq!(activation_code(0b1110_0101, w(5), false), 0b00101);
        assert_eq!(activation_code(0b0001_0101, w(5), true), -11);
        assert_eq!(activation_code(0b1111_0101, w(5), true), -11);
        assert_eq!(activation_code(0b1110_0101, w(5), true), 5);
        assert_eq!(activation_code(0b0000_0011, w(2), true), -1);
        assert_eq!(activation_code(0b0000_0011, w(2), false), 3);
        // Every code of act_bits bits, stored sign-extended, reads back as itself.
        for a in 2..=8u8 {
            for v in -(1i32 << (a - 1))..(1 << (a - 1)) {
                assert_eq!(
                    activation_code(v as i8 as u8, w(a), true),
                    v,
                    "act {a} v {v}"
                );
            }
            for v in 0..(1i32 << a) {
                assert_eq!(activation_code(v as u8, w(a), false), v, "act {a} v {v}");
            }
        }
    }

    use super::*;
    use crate::config::{AccelConfig, config_path};
    use proptest::prelude::*;

    type Edit = fn(&mut LayerDescriptor);

    fn caps(name: &str) -> Caps {
        let cfg = AccelConfig::load(config_path(name)).expect("shipped config");
        Caps::from_config(&cfg).expect("valid")
    }

    fn bits(b: u8) -> BitWidth {
        BitWidth::try_from(b).expect("1..=8")
    }

    /// A nested INT8 ⊃ INT4 3x3 conv that passes every check on pynq-z2.
    fn conv() -> LayerDescriptor {
        let groups = [
            PlaneGroup {
                bits: bits(4),
                shift: 4,
                weight_addr: DeviceAddr(0x1000_0000),
            },
            PlaneGroup {
                bits: bits(5),
                shift: 0,
                weight_addr: DeviceAddr(0x1001_0000),
            },
        ];
        LayerDescriptor {
            op: Opcode::Conv2d,
            flags: Flags {
                relu: true,
                grouped: true,
                last: true,
                ..Flags::default()
            },
            in_bits: bits(8),
            out_bits: bits(8),
            group_size: 64,
            input: Shape {
                c: 16,
                h: 28,
                w: 28,
            },
            output: Shape {
                c: 32,
                h: 14,
                w: 14,
            },
            kernel_h: 3,
            kernel_w: 3,
            stride: 2,
            pad: Pad::uniform(1),
            plane_groups: PlaneGroups::new(&groups).expect("2 groups"),
            active_groups: 2,
            input_addr: DeviceAddr(0x2000_0000),
            output_addr: DeviceAddr(0x2100_0000),
            bias_addr: DeviceAddr(0x2200_0000),
            requant_addr: DeviceAddr(0x2200_0100),
            group_mult_addr: DeviceAddr(0x2200_0200),
            batch: 1,
            max_pool: 0,
            global_pool: None,
        }
    }

    fn words(bytes: &[u8; DESCRIPTOR_BYTES]) -> [u32; DESCRIPTOR_WORDS] {
        let mut w = [0u32; DESCRIPTOR_WORDS];
        for (word, c) in w.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        w
    }

    fn decode_err(edit: impl FnOnce(&mut [u8; DESCRIPTOR_BYTES])) -> (String, Option<ErrorCode>) {
        let mut bytes = conv().encode();
        edit(&mut bytes);
        let err = LayerDescriptor::decode(&bytes).expect_err("should not decode");
        (err.to_string(), err.device_error_code())
    }

    fn invalid(edit: impl FnOnce(&mut LayerDescriptor)) -> (ErrorCode, String) {
        let mut d = conv();
        edit(&mut d);
        d.validate(&caps("pynq-z2.toml"))
            .expect_err("should be invalid")
    }

    #[test]
    fn layout_fields_fit_and_do_not_overlap() {
        let mut used = [0u32; DESCRIPTOR_WORDS];
        for f in DESCRIPTOR_FIELDS {
            assert!(
                f.width == 64 && f.lsb == 0 || u32::from(f.lsb) + u32::from(f.width) <= 32,
                "{}",
                f.name
            );
            assert!(
                usize::from(f.word) + usize::from(f.width > 32) < DESCRIPTOR_WORDS,
                "{}",
                f.name
            );
            let mut mine = [0u32; DESCRIPTOR_WORDS];
            f.put(&mut mine, f.max());
            for (u, m) in used.iter_mut().zip(mine) {
                assert_eq!(*u & m, 0, "{} overlaps another field", f.name);
                *u |= m;
            }
        }
        assert_eq!(used, used_bits());
        assert_eq!(used[26], 0xffff, "word 26 holds batch in [15:0]");
        assert_eq!(used[27], 0x1f, "word 27: max_pool [3:0], global_pool [4]");
        assert_eq!(used[28], u32::MAX, "word 28 holds pool_mult");
        assert_eq!(used[29], 0x3f, "word 29 holds pool_shift in [5:0]");
        assert!(
            used[30..].iter().all(|&w| w == 0),
            "words 30 and 31 are reserved"
        );
    }

    #[test]
    fn encode_puts_fields_where_the_table_says() {
        let w = words(&conv().encode());
        assert_eq!(w[0], 2 | 1 << 8 | 1 << 11 | 1 << 12 | 2 << 16 | 2 << 24);
        assert_eq!(w[1], 8 | 8 << 4 | 1 << 8 | 1 << 12 | 64 << 16);
        assert_eq!(
            (w[2], w[3], w[4]),
            (16 | 28 << 16, 28 | 32 << 16, 14 | 14 << 16)
        );
        assert_eq!(w[5], 3 | 3 << 8 | 2 << 16 | 1 << 24 | 1 << 28);
        assert_eq!((w[6], w[7]), (4 | 4 << 8 | 5 << 16, 0));
        assert_eq!((w[8], w[9]), (0x2000_0000, 0));
        assert_eq!((w[18], w[20], w[22]), (0x1000_0000, 0x1001_0000, 0));
    }

    #[test]
    fn addresses_use_both_words() {
        let mut d = conv();
        d.input_addr = DeviceAddr(0x0000_00ab_cdef_0000);
        let w = words(&d.encode());
        assert_eq!((w[8], w[9]), (0xcdef_0000, 0xab));
        assert_eq!(LayerDescriptor::decode(&d.encode()).ok(), Some(d));
    }

    #[test]
    fn decode_rejects_unknown_opcodes() {
        for op in [0u8, 3, 255] {
            let (err, code) = decode_err(|b| b[0] = op);
            assert!(
                err.contains(&format!("`op` = {op:#x}")) && err.contains("Conv2d"),
                "{err}"
            );
            assert_eq!(code, Some(ErrorCode::BadOpcode));
        }
    }

    #[test]
    fn decode_rejects_set_reserved_bits_naming_the_word() {
        // Word 27 holds max_pool in [3:0] and global_pool in [4]: bit 5 (byte 108, 0x20) is
        // reserved; word 29 holds pool_shift in [5:0]: bit 6 (byte 116, 0x40) is.
        for (byte, mask, word) in [
            (1usize, 0x20u8, 0),
            (108, 0x20, 27),
            (116, 0x40, 29),
            (120, 0x01, 30),
            (127, 0x80, 31),
        ] {
            let (err, code) = decode_err(|b| b[byte] |= mask);
            assert!(
                err.contains("`reserved`") && err.contains(&format!("word {word}")),
                "{err}"
            );
            assert_eq!(code, Some(ErrorCode::Reserved));
        }
    }

    #[test]
    fn decode_rejects_widths_outside_one_to_eight() {
        let (err, code) = decode_err(|b| b[4] &= 0xf0);
        assert!(
            err.contains("`in_bits` = 0x0") && err.contains("1..=8"),
            "{err}"
        );
        assert_eq!(code, Some(ErrorCode::BadBits));
        let (err, _) = decode_err(|b| b[4] = b[4] & 0x0f | 0x90);
        assert!(err.contains("`out_bits` = 0x9"), "{err}");
        let (err, _) = decode_err(|b| b[26] = 12);
        assert!(err.contains("`pg1_bits` = 0xc"), "{err}");
    }

    #[test]
    fn decode_rejects_bad_group_counts_and_stale_slots() {
        for n in [0u8, 5] {
            let (err, code) = decode_err(|b| b[2] = n);
            assert!(err.contains(&format!("`n_groups` = {n:#x}")), "{err}");
            assert_eq!(code, Some(ErrorCode::BadGroups));
        }
        // n_groups = 1 leaves group 1's slot filled.
        let (err, code) = decode_err(|b| b[2] = 1);
        assert!(
            err.contains("`pg1_bits`") && err.contains("n_groups = 1"),
            "{err}"
        );
        assert_eq!(code, Some(ErrorCode::BadGroups));
    }

    #[test]
    fn decode_rejects_wrong_lengths() {
        for len in [0, 127, 129] {
            let err = LayerDescriptor::decode(&vec![0; len])
                .expect_err("length")
                .to_string();
            assert!(
                err.contains(&format!("got {len}")) && err.contains("128"),
                "{err}"
            );
        }
    }

    #[test]
    fn plane_groups_hold_one_to_four() {
        let g = conv().plane_groups.as_slice()[0];
        assert!(PlaneGroups::new(&[]).is_err());
        let err = PlaneGroups::new(&[g; 5]).expect_err("5").to_string();
        assert!(err.contains("5 plane groups"), "{err}");
        assert_eq!(
            PlaneGroups::new(&[g; 4]).map(|p| p.as_slice().len()).ok(),
            Some(4)
        );
    }

    #[test]
    fn derived_k_and_regions() {
        let d = conv();
        assert_eq!((d.k(), d.regions()), (16 * 9, 3));
        assert_eq!(d.active_plane_groups().len(), 2);
        let dense = LayerDescriptor {
            op: Opcode::Dense,
            group_size: 0,
            ..d
        };
        assert_eq!((dense.k(), dense.regions()), (16, 1));
    }

    #[test]
    fn validate_accepts_the_reference_layers() {
        let pynq = caps("pynq-z2.toml");
        assert_eq!(conv().validate(&pynq), Ok(()));
        let dense = LayerDescriptor {
            op: Opcode::Dense,
            input: Shape {
                c: 1024,
                h: 1,
                w: 1,
            },
            output: Shape { c: 10, h: 1, w: 1 },
            kernel_h: 1,
            kernel_w: 1,
            stride: 1,
            pad: Pad::default(),
            active_groups: 1,
            ..conv()
        };
        assert_eq!(dense.validate(&pynq), Ok(()));
    }

    #[test]
    fn max_pool_is_checked_encoded_and_sets_the_written_map() {
        let pynq = caps("pynq-z2.toml");
        let cfg = AccelConfig::load(config_path("pynq-z2.toml")).expect("shipped config");
        let shape = crate::CoreShape::of(&cfg);
        let mut d = conv();
        let (oh, ow) = (d.output.h, d.output.w);
        for k in POOL_WINDOWS {
            d.max_pool = k;
            assert_eq!(d.validate(&pynq), Ok(()), "k {k}");
            assert_eq!(LayerDescriptor::decode(&d.encode()).unwrap(), d);
            let k16 = u16::from(k);
            let w = d.written();
            assert_eq!((w.c, w.h, w.w), (d.output.c, oh / k16, ow / k16));
            let s = shape.schedule(&d).unwrap();
            assert_eq!(s.items, u64::from(oh) * u64::from(ow));
            assert_eq!(s.written, u64::from(oh / k16) * u64::from(ow / k16));
        }
        // Word 27's low nibble, nothing else.
        d.max_pool = 8;
        let words = d.encode();
        assert_eq!(words[4 * 27], 8);
        // Other windows, a window wider than the output, and pooling a Dense layer are refused.
        for (k, want) in [
            (3, "max_pool = 3: expected 0"),
            (6, "max_pool = 6"),
            (15, "max_pool = 15"),
        ] {
            d.max_pool = k;
            let e = d.validate(&pynq).unwrap_err();
            assert_eq!(e.0, ErrorCode::BadShape);
            assert!(e.1.contains(want), "{}", e.1);
        }
        let mut small = conv();
        small.output.w = 3;
        small.input.w = 5;
        small.pad = Pad::uniform(1);
        small.max_pool = 4;
        let e = small.validate(&pynq).unwrap_err();
        assert!(e.1.contains("within the"), "{}", e.1);
        let mut dense = conv();
        dense.op = Opcode::Dense;
        dense.max_pool = 2;
        let e = dense.check_shape(&pynq).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadShape);
        // A pooled row wider than the pooling line is a capacity error (the descriptor is valid).
        let mut wide = conv();
        wide.input = Shape {
            c: 1,
            h: 4,
            w: 1030,
        };
        wide.output.h = 2;
        wide.output.w = 1028;
        wide.pad = Pad::uniform(0);
        wide.stride = 1;
        wide.max_pool = 2;
        assert_eq!(wide.validate(&pynq), Ok(()));
        let e = shape.schedule(&wide).unwrap_err();
        assert!(
            e.contains("writes 514 pixels per row: the pooling line holds 128"),
            "{e}"
        );
        wide.max_pool = 4;
        assert!(shape.schedule(&wide).is_err());
        wide.max_pool = 8;
        assert!(shape.schedule(&wide).is_ok());
    }

    #[test]
    fn global_pool_is_checked_encoded_and_sets_the_written_map() {
        let pynq = caps("pynq-z2.toml");
        let mut d = conv();
        let mean = RequantEntry {
            multiplier: -0x4000_0001,
            shift: 63,
        };
        d.global_pool = Some(mean);
        // Only a device with the capability takes it.
        let e = d.validate(&pynq).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadShape);
        assert!(e.1.contains("CAPS0.GLOBAL_POOL = 0"), "{}", e.1);
        let pynq = caps("zcu104.toml");
        assert_eq!(d.validate(&pynq), Ok(()));
        let bytes = d.encode();
        assert_eq!(LayerDescriptor::decode(&bytes).unwrap(), d);
        let w = words(&bytes);
        assert_eq!((w[27], w[28], w[29]), (0x10, 0xbfff_ffff, 63));
        let written = d.written();
        assert_eq!((written.c, written.h, written.w), (d.output.c, 1, 1));
        // The mean's fields are reserved while the flag is clear.
        for (byte, field) in [(112usize, "pool_mult"), (116, "pool_shift")] {
            let (err, code) = decode_err(|b| b[byte] = 1);
            assert!(
                err.contains(field) && err.contains("reserved while global_pool is clear"),
                "{err}"
            );
            assert_eq!(code, Some(ErrorCode::Reserved));
        }
        // One pooling per layer, and none for Dense.
        d.max_pool = 2;
        let e = d.validate(&pynq).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadShape);
        assert!(e.1.contains("one pooling, not both"), "{}", e.1);
        let mut dense = conv();
        dense.op = Opcode::Dense;
        (dense.input.h, dense.input.w, dense.output.h, dense.output.w) = (1, 1, 1, 1);
        (dense.kernel_h, dense.kernel_w, dense.stride) = (1, 1, 1);
        dense.pad = Pad::uniform(0);
        assert_eq!(dense.check_shape(&pynq), Ok(()));
        dense.global_pool = Some(mean);
        let e = dense.check_shape(&pynq).unwrap_err();
        assert!(
            e.1.contains("global_pool = 1: expected 0 for Dense"),
            "{}",
            e.1
        );
    }

    #[test]
    fn per_side_padding_sets_the_output_size() {
        // TensorFlow "same" for a 3x3 stride-2 conv on an even map: [0, 0, 1, 1], 28 -> 14.
        let pynq = caps("pynq-z2.toml");
        let mut d = conv();
        d.pad = Pad {
            top: 0,
            left: 0,
            bottom: 1,
            right: 1,
        };
        assert_eq!(d.validate(&pynq), Ok(()));
        assert_eq!(LayerDescriptor::decode(&d.encode()).unwrap(), d);
        // The same output from the top and left only would read one row and column less.
        d.pad = Pad {
            top: 1,
            left: 1,
            bottom: 0,
            right: 0,
        };
        assert_eq!(d.validate(&pynq), Ok(()));
        d.pad.bottom = 2;
        let e = d.validate(&pynq).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadShape);
        assert!(e.1.contains("out_h = 14: expected 15"), "{}", e.1);
    }

    #[test]
    fn validate_reports_code_and_field() {
        let cases: [(Edit, ErrorCode, &str); 18] = [
            (|d| d.in_bits = bits(1), ErrorCode::BadBits, "in_bits = 1"),
            (|d| d.input.c = 0, ErrorCode::BadShape, "in_c = 0"),
            (|d| d.output.w = 5000, ErrorCode::BadShape, "out_w = 5000"),
            (|d| d.kernel_h = 16, ErrorCode::BadShape, "kernel_h = 16"),
            (|d| d.stride = 3, ErrorCode::BadShape, "stride = 3"),
            (
                |d| d.pad.left = 3,
                ErrorCode::BadShape,
                "pad [top 1, left 3, bottom 1, right 1]: expected pad_top + pad_bottom",
            ),
            (
                |d| d.output.h = 15,
                ErrorCode::BadShape,
                "out_h = 15: expected 14",
            ),
            (|d| d.input.c = 2000, ErrorCode::BadShape, "K = 18000"),
            (
                |d| d.op = Opcode::Dense,
                ErrorCode::BadShape,
                "in_h = 28: expected 1 for Dense",
            ),
            (
                |d| d.active_groups = 0,
                ErrorCode::BadGroups,
                "active_groups = 0",
            ),
            (
                |d| d.active_groups = 3,
                ErrorCode::BadGroups,
                "active_groups = 3: expected 1..=2",
            ),
            (
                |d| {
                    let mut g = d.plane_groups.as_slice().to_vec();
                    g[1].shift = 4;
                    d.plane_groups = PlaneGroups::new(&g).expect("2");
                },
                ErrorCode::BadGroups,
                "pg1_bits + pg1_shift = 5 + 4",
            ),
            (
                |d| {
                    let mut g = d.plane_groups.as_slice().to_vec();
                    g[0].shift = 8;
                    d.plane_groups = PlaneGroups::new(&g).expect("2");
                },
                ErrorCode::BadGroups,
                "pg0_shift = 8",
            ),
            (
                |d| d.flags.grouped = false,
                ErrorCode::BadRegion,
                "grouped = false",
            ),
            (
                |d| d.group_size = 128,
                ErrorCode::BadRegion,
                "group_size = 128",
            ),
            (
                |d| d.bias_addr.0 += 4,
                ErrorCode::Misaligned,
                "bias_addr = ",
            ),
            (
                |d| d.group_mult_addr.0 += 1,
                ErrorCode::Misaligned,
                "group_mult_addr",
            ),
            (
                |d| {
                    let mut g = d.plane_groups.as_slice().to_vec();
                    g[1].weight_addr.0 += 2;
                    d.plane_groups = PlaneGroups::new(&g).expect("2");
                },
                ErrorCode::Misaligned,
                "weight_addr1",
            ),
        ];
        for (edit, code, text) in cases {
            let (got, msg) = invalid(edit);
            assert_eq!(got, code, "{text}: {msg}");
            assert!(msg.contains(text), "{text}: {msg}");
        }
    }

    #[test]
    fn conv_maps_start_at_any_byte_dense_vectors_on_a_bus_word() {
        let caps = caps("pynq-z2.toml");
        let mut d = conv();
        for lead in 1..8 {
            d.input_addr.0 = conv().input_addr.0 + lead;
            d.output_addr.0 = conv().output_addr.0 + 8 - lead;
            assert_eq!(d.validate(&caps), Ok(()), "lead {lead}");
        }
        let mut d = conv();
        d.op = Opcode::Dense;
        d.input = Shape { c: 100, h: 1, w: 1 };
        d.output = Shape { c: 10, h: 1, w: 1 };
        (d.kernel_h, d.kernel_w, d.stride, d.pad) = (1, 1, 1, Pad::default());
        assert_eq!(d.validate(&caps), Ok(()), "the Dense layer");
        for (edit, field) in [
            ((|d| d.input_addr.0 += 4) as Edit, "input_addr"),
            (|d| d.output_addr.0 += 1, "output_addr"),
        ] {
            let mut e = d;
            edit(&mut e);
            let (code, msg) = e.validate(&caps).expect_err(field);
            assert_eq!(code, ErrorCode::Misaligned, "{msg}");
            assert!(msg.contains(field), "{msg}");
        }
    }

    #[test]
    fn inactive_groups_are_not_checked_for_alignment() {
        let mut d = conv();
        let mut g = d.plane_groups.as_slice().to_vec();
        g[1].weight_addr = DeviceAddr(3);
        d.plane_groups = PlaneGroups::new(&g).expect("2");
        d.active_groups = 1;
        assert_eq!(d.validate(&caps("pynq-z2.toml")), Ok(()));
    }

    #[test]
    fn unsupported_weight_widths_and_group_limits_follow_caps() {
        let mut cfg = AccelConfig::load(config_path("pynq-z2.toml")).expect("pynq-z2");
        cfg.array.weight_bits = vec![4, 8];
        cfg.array.max_plane_groups = 1;
        let narrow = Caps::from_config(&cfg).expect("valid");
        let (code, msg) = conv().validate(&narrow).expect_err("5-bit group");
        assert_eq!(code, ErrorCode::BadBits);
        assert!(
            msg.contains("pg1_bits = 5") && msg.contains("0b10001000"),
            "{msg}"
        );
        cfg.array.weight_bits = vec![1, 2, 3, 4, 5, 6, 7, 8];
        let one_group = Caps::from_config(&cfg).expect("valid");
        let (code, msg) = conv().validate(&one_group).expect_err("2 groups");
        assert_eq!(code, ErrorCode::BadGroups);
        assert!(
            msg.contains("n_groups = 2") && msg.contains("MAX_PLANE_GROUPS = 1"),
            "{msg}"
        );
    }

    #[test]
    fn window_covers_starts_and_whole_tables() {
        let pynq = caps("pynq-z2.toml");
        let d = conv();
        let window = Window {
            base: DeviceAddr(0x1000_0000),
            limit: DeviceAddr(0x3000_0000),
        };
        assert_eq!(d.check_window(&pynq, window), Ok(()));
        let low = Window {
            base: DeviceAddr(0x1000_8000),
            ..window
        };
        let (code, msg) = d.check_window(&pynq, low).expect_err("weights below base");
        assert_eq!(code, ErrorCode::OutOfWindow);
        assert!(msg.contains("weight_addr0 = 0x10000000"), "{msg}");
        // The group-multiplier table is 32 channels x 3 regions x 2 bytes = 192 bytes.
        let tight = Window {
            limit: DeviceAddr(0x2200_0200 + 191),
            ..window
        };
        let (_, msg) = d
            .check_window(&pynq, tight)
            .expect_err("table crosses limit");
        assert!(
            msg.contains("group_mult_addr = 0x22000200 (+192 bytes)"),
            "{msg}"
        );
        let mut far = d;
        far.output_addr = DeviceAddr(1 << 32);
        let (code, msg) = far
            .check_window(
                &pynq,
                Window {
                    base: DeviceAddr(0),
                    limit: DeviceAddr(u64::MAX),
                },
            )
            .expect_err("33 bits");
        assert_eq!(code, ErrorCode::OutOfWindow);
        assert!(msg.contains("32-bit AXI address space"), "{msg}");
    }

    #[test]
    fn every_table_and_buffer_ending_at_win_limit_is_accepted_and_one_byte_more_refused() {
        // Each table moved to the top of the window, so it is the one that meets the limit: its
        // whole length must count (dropping the requant table's length passed every other test).
        let pynq = caps("pynq-z2.toml");
        let d = conv();
        let top = 0x2f00_0000u64;
        let base = DeviceAddr(0x1000_0000);
        let out_c = u64::from(d.output.c);
        type Set = fn(&mut LayerDescriptor, DeviceAddr);
        let tables: [(&str, Set, u64); 3] = [
            (
                "bias_addr",
                |d, a| d.bias_addr = a,
                out_c * BIAS_ENTRY_BYTES,
            ),
            (
                "requant_addr",
                |d, a| d.requant_addr = a,
                out_c * REQUANT_ENTRY_BYTES,
            ),
            (
                "group_mult_addr",
                |d, a| d.group_mult_addr = a,
                out_c * d.regions() * GROUP_MULT_ENTRY_BYTES,
            ),
        ];
        for (name, set, len) in tables {
            let mut t = d;
            set(&mut t, DeviceAddr(top));
            let at = |limit: u64| Window {
                base,
                limit: DeviceAddr(limit),
            };
            assert_eq!(t.check_window(&pynq, at(top + len)), Ok(()), "{name}");
            let (code, msg) = t
                .check_window(&pynq, at(top + len - 1))
                .expect_err("one byte past the limit");
            assert_eq!(code, ErrorCode::OutOfWindow, "{name}");
            assert!(
                msg.starts_with(&format!("{name} = {} (+{len} bytes)", DeviceAddr(top))),
                "{msg}"
            );
        }
        // Buffers are checked by their start here (the DMA checks every burst of them): one
        // starting at the last byte of the window is in it, one starting at the limit is not.
        type SetBuf = fn(&mut LayerDescriptor, DeviceAddr);
        let buffers: [(&str, SetBuf); 3] = [
            ("input_addr", |d, a| d.input_addr = a),
            ("output_addr", |d, a| d.output_addr = a),
            ("weight_addr1", |d, a| {
                d.plane_groups.slots[1].weight_addr = a
            }),
        ];
        for (name, set) in buffers {
            let mut t = d;
            set(&mut t, DeviceAddr(top));
            let at = |limit: u64| Window {
                base,
                limit: DeviceAddr(limit),
            };
            assert_eq!(t.check_window(&pynq, at(top + 1)), Ok(()), "{name}");
            let (_, msg) = t.check_window(&pynq, at(top)).expect_err(name);
            assert!(msg.starts_with(name), "{msg}");
        }
    }

    #[test]
    fn last_flag_marks_exactly_the_final_descriptor() {
        let mut d = conv();
        assert_eq!(d.check_position(2, 3), Ok(()));
        let (code, msg) = d.check_position(0, 3).expect_err("early last");
        assert_eq!(code, ErrorCode::DescCount);
        assert!(msg.contains("descriptor 0 of DESC_COUNT = 3"), "{msg}");
        d.flags.last = false;
        assert_eq!(d.check_position(0, 3), Ok(()));
        assert!(d.check_position(2, 3).is_err());
    }

    #[test]
    fn check_fetched_runs_decode_then_validate_then_window_then_position() {
        let pynq = caps("pynq-z2.toml");
        let window = Window {
            base: DeviceAddr(0),
            limit: DeviceAddr(1 << 32),
        };
        let bytes = conv().encode();
        assert_eq!(
            check_fetched(&bytes, 0, 1, &pynq, window).ok(),
            Some(conv())
        );
        // A reserved bit outranks a bad shape, which outranks the window and the position.
        let mut bad = conv();
        bad.input.c = 0;
        let mut bytes = bad.encode();
        assert_eq!(
            check_fetched(&bytes, 0, 2, &pynq, window).map_err(|e| e.0),
            Err(ErrorCode::BadShape)
        );
        bytes[127] = 1;
        assert_eq!(
            check_fetched(&bytes, 0, 2, &pynq, window).map_err(|e| e.0),
            Err(ErrorCode::Reserved)
        );
        let empty = Window {
            base: DeviceAddr(0),
            limit: DeviceAddr(0),
        };
        assert_eq!(
            check_fetched(&conv().encode(), 0, 2, &pynq, empty).map_err(|e| e.0),
            Err(ErrorCode::OutOfWindow)
        );
        assert_eq!(
            check_fetched(&conv().encode(), 0, 2, &pynq, window).map_err(|e| e.0),
            Err(ErrorCode::DescCount)
        );
    }

    #[test]
    fn checks_table_names_every_descriptor_error_code() {
        for code in [
            ErrorCode::BadOpcode,
            ErrorCode::BadBits,
            ErrorCode::BadShape,
            ErrorCode::BadGroups,
            ErrorCode::BadRegion,
            ErrorCode::Reserved,
            ErrorCode::Misaligned,
            ErrorCode::OutOfWindow,
            ErrorCode::DescCount,
        ] {
            assert!(CHECKS.iter().any(|(c, _)| *c == code), "{code}");
        }
    }

    #[test]
    fn requant_entries_pack_into_eight_bytes() {
        let e = RequantEntry {
            multiplier: -0x1234_5678,
            shift: 31,
        };
        let bytes = e.to_bytes();
        assert_eq!(&bytes[..4], &(-0x1234_5678i32).to_le_bytes());
        assert_eq!(&bytes[4..], &[31, 0, 0, 0]);
        let mut padded = bytes;
        padded[7] = 0xff;
        assert_eq!(RequantEntry::from_bytes(padded), e);
    }

    fn valid_descriptor() -> impl Strategy<Value = LayerDescriptor> {
        let addr = (0u64..1 << 29).prop_map(|a| DeviceAddr(a * 8));
        let group = (1u8..=8, 0u8..=7, addr.clone()).prop_map(|(b, s, weight_addr)| {
            let b = b.min(8 - s.min(7)).max(1);
            PlaneGroup {
                bits: BitWidth::try_from(b).expect("1..=8"),
                shift: s.min(8 - b),
                weight_addr,
            }
        });
        let shape = prop_oneof![
            (1u16..=4096, 1u16..=4096).prop_map(|(ic, oc)| (
                Opcode::Dense,
                ic,
                oc,
                1,
                1,
                1,
                Pad::default(),
                0
            )),
            (
                1u16..=64,
                1u16..=512,
                1u8..=15,
                1u8..=7,
                1u8..=2,
                proptest::array::uniform4(0u8..=7),
                0u16..=100
            )
                .prop_map(|(ic, oc, kh, kw, stride, [t, l, b, r], extra)| {
                    // Per side, each axis's two pads at most its kernel.
                    let (top, left) = (t.min(kh), l.min(kw));
                    let pad = Pad {
                        top,
                        left,
                        bottom: b.min(kh - top),
                        right: r.min(kw - left),
                    };
                    (Opcode::Conv2d, ic, oc, kh, kw, stride, pad, extra)
                }),
        ];
        (
            shape,
            proptest::collection::vec(group, 1..=4),
            any::<u8>(),
            (2u8..=8, 2u8..=8, any::<[bool; 5]>()),
            proptest::array::uniform5(addr),
        )
            .prop_map(|(shape, groups, active, (ib, ob, f), a)| {
                let (op, ic, oc, kh, kw, stride, pad, extra) = shape;
                let (ih, iw) = if op == Opcode::Dense {
                    (1, 1)
                } else {
                    (u16::from(kh) + extra, u16::from(kw) + extra / 2)
                };
                let out = |i: u16, k: u8, pads: u8| {
                    (i + u16::from(pads) - u16::from(k)) / u16::from(stride) + 1
                };
                let n = groups.len() as u8;
                LayerDescriptor {
                    op,
                    flags: Flags {
                        relu: f[0],
                        in_signed: f[1],
                        out_signed: f[2],
                        grouped: f[3],
                        last: f[4],
                    },
                    in_bits: BitWidth::try_from(ib).expect("2..=8"),
                    out_bits: BitWidth::try_from(ob).expect("2..=8"),
                    group_size: if f[3] { 64 } else { 0 },
                    input: Shape {
                        c: ic,
                        h: ih,
                        w: iw,
                    },
                    output: Shape {
                        c: oc,
                        h: if op == Opcode::Dense {
                            1
                        } else {
                            out(ih, kh, pad.top + pad.bottom)
                        },
                        w: if op == Opcode::Dense {
                            1
                        } else {
                            out(iw, kw, pad.left + pad.right)
                        },
                    },
                    kernel_h: kh,
                    kernel_w: kw,
                    stride,
                    pad,
                    plane_groups: PlaneGroups::new(&groups).expect("1..=4"),
                    active_groups: active % n + 1,
                    input_addr: a[0],
                    output_addr: a[1],
                    bias_addr: a[2],
                    requant_addr: a[3],
                    group_mult_addr: a[4],
                    batch: 1,
                    max_pool: 0,
                    global_pool: None,
                }
            })
    }

    proptest! {
        #[test]
        fn valid_descriptors_round_trip_and_validate(d in valid_descriptor()) {
            let pynq = caps("pynq-z2.toml");
            prop_assert_eq!(d.validate(&pynq), Ok(()));
            let bytes = d.encode();
            prop_assert_eq!(LayerDescriptor::decode(&bytes).ok(), Some(d));
            prop_assert_eq!(LayerDescriptor::decode(&bytes).map(|d| d.encode()).ok(), Some(bytes));
        }

        #[test]
        fn decode_never_panics_and_reencodes_what_it_accepts(bytes in proptest::array::uniform32(any::<u32>())) {
            let mut raw = [0u8; DESCRIPTOR_BYTES];
            for (c, w) in raw.chunks_exact_mut(4).zip(bytes.iter().chain(bytes.iter())) {
                c.copy_from_slice(&w.to_le_bytes());
            }
            if let Ok(d) = LayerDescriptor::decode(&raw) {
                prop_assert_eq!(d.encode(), raw);
            }
        }
    }
}
