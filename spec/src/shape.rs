//! [`CoreShape`]: the layer engine's buffer geometry derived from an [`AccelConfig`], and
//! [`Schedule`]: what the engine derives from one descriptor to run it (tiles, chunks, planes, the
//! pixel block of the window generator, the weight slots, the batch strides) together with the
//! device's capacity rule ([`CoreShape::schedule`], reported as BAD_SHAPE after the checks of
//! `descriptor::check_fetched`).
//!
//! These are the one definition of every derived value of the engine: the generator sizes its
//! memories from [`CoreShape`] and computes the same [`Schedule`] fields in its descriptor check
//! pipeline, the functional model and the compiler call [`CoreShape::schedule`]. The rules are
//! written down in docs/hardware.md ("The layer engine"). This module knows the config and the
//! descriptor; it does not know Verilog or models.

use crate::config::AccelConfig;
use crate::descriptor::{LayerDescriptor, Opcode};

/// Byte lanes of the feature-map buffer: the window generator reads any 16 consecutive bytes of
/// the map in one cycle.
pub const FM_LANES: u32 = 16;
/// Most output pixels the window generator gathers together (one feature-map read serves a
/// kernel row of each): the block width W is at most this and at most the activation banks.
pub const MAX_BLOCK: u32 = 8;
/// Widest kernel row of which the window generator gathers two per cycle (docs/hardware.md, "The
/// window generator"): two rows of at most this many bytes append at most 8 bytes to a pixel's
/// patch, so each pixel still sends at most one patch word per cycle.
pub const PAIRED_KW: u8 = 4;

/// Kernel rows the window generator reads per cycle for a Conv2d of kernel width `kernel_w`: two
/// (both ports of the feature map's bank) when `kernel_w <= PAIRED_KW`, else one.
pub fn gather_rows(kernel_w: u8) -> u64 {
    if kernel_w <= PAIRED_KW { 2 } else { 1 }
}

/// Cycles the window generator's walk takes over one block of a Conv2d (beyond its pipeline's
/// fill), whatever the block's width: its in_c·kh kernel rows, [`gather_rows`] per cycle.
pub fn gather_cycles(d: &LayerDescriptor) -> u64 {
    (u64::from(d.input.c) * u64::from(d.kernel_h)).div_ceil(gather_rows(d.kernel_w))
}

/// Longest output run the writer sends for one channel of a Conv2d tile, in bytes.
pub const MAX_RUN_BYTES: u32 = 64;
/// Least output staging per row (`memory.acc_buf_kib · 1024 / array.rows`), in bytes: room for
/// four runs of 16 bytes, so the writer drains one run while the array fills the next.
pub const MIN_STAGE_BYTES: u32 = 64;
/// Largest K the datapath counts (16-bit counters).
pub const MAX_K_DATAPATH: u64 = 65_535;
/// Most outputs per tile the engine counts (16-bit counters): Conv2d output pixels.
pub const MAX_ITEMS: u64 = 65_535;
/// Pooled outputs per row of a tile the result stage's max-pooling line holds: a Conv2d with
/// max pooling of window k writes at most this many pixels per row (out_w / k).
pub const POOL_LINE: u32 = 128;
/// Depth of the Dense result queue between requantization and the writer, in output vectors.
pub const DENSE_QUEUE: u32 = 4;
/// Cycles the result stage takes to requantize an item's R totals: it has R / REQUANT_PHASES
/// requantization units, each taking one row of the first R / REQUANT_PHASES rows, then one of
/// the next, and so on; so the execute stage starts items at least this many cycles apart (an item
/// of fewer plane-steps is followed by idle cycles).
pub const REQUANT_PHASES: u32 = 2;

fn prev_power_of_two(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        1 << (31 - n.leading_zeros())
    }
}

/// Buffer geometry derived from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreShape {
    /// Array rows R (output channels in parallel) and lanes C (K elements per plane-step).
    pub rows: u32,
    pub cols: u32,
    /// 64-bit words per bus beat (1 on a 64-bit bus, 2 on a 128-bit one).
    pub bus_words: u32,
    /// Longest AXI burst in beats and bursts in flight per direction (`axi.max_burst`,
    /// `axi.max_outstanding_reads`): what the timing model needs of the bus.
    pub max_burst: u32,
    pub outstanding: u32,
    /// 64-bit words per row of the weight buffer (one bank per row). A tile whose planes take at
    /// most half of it is double-buffered (two slots); a larger one takes the whole bank.
    pub wdepth: u32,
    /// Activation banks (C/8), each 64 bits wide, holding K-vectors chunk by chunk.
    pub abanks: u32,
    /// Chunks (entries) per activation bank: Dense inputs (`batch` K-vectors) or Conv2d patches
    /// (two blocks of W pixels).
    pub adepth: u32,
    /// Local region size (0: none) and the largest region count a layer may have.
    pub group_size: u32,
    pub max_regions: u32,
    pub addr_bits: u32,
    /// Conv2d feature-map buffer in bytes (memory.act_buf_kib), in [`FM_LANES`] byte lanes.
    pub fm_bytes: u32,
    /// Output staging per row in bytes (a ring, a power of two).
    pub stage_bytes: u32,
    /// Output run length of the writer for Conv2d, in bytes.
    pub run_bytes: u32,
    /// Most pixels per window-generator block: at most MAX_BLOCK, C/8 (one bank per pixel) and
    /// half the activation banks' entries (two blocks of one-chunk patches).
    pub max_block: u32,
    /// Global average pooling on the result path (`array.global_pool`, CAPS0.GLOBAL_POOL).
    pub global_pool: bool,
}

/// What the engine derives from a descriptor that passed its checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The reduction length and its 64-bit words per plane row, ⌈K/64⌉.
    pub k: u64,
    pub wpr: u64,
    /// C-wide chunks per K-vector, ⌈K/C⌉.
    pub chunks: u64,
    /// Active planes P (the plane-steps per chunk).
    pub planes: u64,
    /// Local regions along K (1 when not grouped).
    pub regions: u64,
    /// Tiles of R output channels, ⌈out_c/R⌉.
    pub tiles: u64,
    /// Outputs per tile: Dense inputs of the batch, or Conv2d output pixels.
    pub items: u64,
    /// Outputs per tile written: `items`, or with max pooling the pooled pixels
    /// (out_h / k)·(out_w / k) (`LayerDescriptor::written`).
    pub written: u64,
    /// Window-generator block width W in pixels (Conv2d; 1 for Dense).
    pub block: u64,
    /// Weight-buffer slots: 2 (double-buffered tiles) or 1 (a tile takes the whole buffer).
    pub slots: u64,
    /// Dense: bytes from one input of the batch to the next (whole chunks, ⌈K/C⌉·C, so an
    /// input's words fill the activation banks in order), and from one output to the next
    /// (⌈out_c/C⌉·C: the next layer's input stride).
    pub in_stride: u64,
    pub out_stride: u64,
}

impl CoreShape {
    /// The geometry of a config that passed [`AccelConfig::validate`] (whose rules include what
    /// the layer engine supports).
    pub fn of(cfg: &AccelConfig) -> CoreShape {
        let (rows, cols) = (cfg.array.rows, cfg.array.cols);
        let wdepth = cfg.memory.weight_buf_kib * 1024 / (rows * 8);
        let abanks = cols / 8;
        // The activation banks hold at least one K-vector of MAX_K bytes, and four entries at
        // the least (two one-chunk patch blocks of two pixels; entry indices of two bits).
        let adepth = cfg.limits.max_k.div_ceil(cols).next_power_of_two().max(4);
        let k_cap = u64::from(adepth * cols)
            .min(64 * u64::from(wdepth))
            .min(u64::from(cfg.limits.max_k))
            .min(MAX_K_DATAPATH) as u32;
        let group_size = cfg.array.group_size;
        let max_regions = if group_size == 0 {
            1
        } else {
            k_cap.div_ceil(group_size)
        };
        let stage_bytes = prev_power_of_two(cfg.memory.acc_buf_kib * 1024 / rows);
        CoreShape {
            rows,
            cols,
            bus_words: cfg.bus_bytes() / 8,
            max_burst: cfg.axi.max_burst,
            outstanding: cfg.axi.max_outstanding_reads,
            wdepth,
            abanks,
            adepth,
            group_size,
            max_regions,
            addr_bits: cfg.axi.addr_width,
            fm_bytes: cfg.memory.act_buf_kib * 1024,
            stage_bytes,
            run_bytes: (stage_bytes / 4).min(MAX_RUN_BYTES),
            // Two patch blocks of W one-chunk pixels must fit the activation banks' entries.
            max_block: MAX_BLOCK.min(abanks).min(adepth / 2),
            global_pool: cfg.array.global_pool,
        }
    }

    /// Chunks (of C lanes) per 64-bit plane word.
    pub fn chunks_per_word(&self) -> u32 {
        64 / self.cols
    }

    /// The bytes of a Conv2d's output that the feature buffer's second bank mirrors as the
    /// descriptor writes it (docs/hardware.md, "The output mirror"): the whole written map,
    /// out_c · (out_h / k) · (out_w / k) bytes, when they fit the bank (`fm_bytes`) from the 8-byte
    /// word the map starts in; none for a larger map or a Dense layer.
    pub fn mirror_bytes(&self, d: &LayerDescriptor) -> Option<u64> {
        let bytes = d.written().bytes();
        let lead = d.output_addr.0 % 8;
        (d.op == Opcode::Conv2d && lead + bytes <= u64::from(self.fm_bytes)).then_some(bytes)
    }

    /// The schedule of a descriptor that passed every check of
    /// `caq_spec::descriptor::check_fetched`, or why it does not fit the device's buffers (the
    /// core checks this last and reports BAD_SHAPE).
    pub fn schedule(&self, d: &LayerDescriptor) -> Result<Schedule, String> {
        let k = d.k();
        if k > MAX_K_DATAPATH {
            return Err(format!(
                "K = {k}: the engine counts K in 16 bits (at most {MAX_K_DATAPATH})"
            ));
        }
        let wpr = k.div_ceil(64);
        let chunks = k.div_ceil(u64::from(self.cols));
        let planes: u64 = d
            .active_plane_groups()
            .iter()
            .map(|g| u64::from(g.bits.get()))
            .sum();
        let words = wpr * planes;
        let wdepth = u64::from(self.wdepth);
        if words > wdepth {
            return Err(format!(
                "K = {k} at {planes} planes needs {words} weight words per row: the buffer holds \
                 {wdepth}"
            ));
        }
        let slots = if 2 * words <= wdepth { 2 } else { 1 };
        let adepth = u64::from(self.adepth);
        let out_c = u64::from(d.output.c);
        let (items, block) = match d.op {
            Opcode::Dense => {
                let batch = u64::from(d.batch);
                if batch * chunks > adepth {
                    return Err(format!(
                        "batch {batch} of K = {k} ({chunks} chunks each): the activation banks \
                         hold {adepth} chunks"
                    ));
                }
                (batch, 1)
            }
            Opcode::Conv2d => {
                // The bank holds the map from the 8-byte word it starts in.
                let fm = d.input.bytes();
                let lead = d.input_addr.0 % 8;
                if lead + fm > u64::from(self.fm_bytes) {
                    let from = if lead == 0 {
                        String::new()
                    } else {
                        format!(" from byte {lead} of its first word")
                    };
                    return Err(format!(
                        "input feature map {}x{}x{} = {fm} bytes{from}: the feature buffer holds {}",
                        d.input.c, d.input.h, d.input.w, self.fm_bytes
                    ));
                }
                let pixels = u64::from(d.output.h) * u64::from(d.output.w);
                if pixels > MAX_ITEMS {
                    return Err(format!(
                        "output {}x{} = {pixels} pixels: the engine counts at most {MAX_ITEMS}",
                        d.output.h, d.output.w
                    ));
                }
                let by_patch = adepth / (2 * chunks);
                if by_patch == 0 {
                    return Err(format!(
                        "K = {k} ({chunks} chunks): the patch banks hold two blocks of one pixel \
                         only up to {} chunks",
                        adepth / 2
                    ));
                }
                let by_segment =
                    u64::from(FM_LANES - u32::from(d.kernel_w)) / u64::from(d.stride) + 1;
                let block = u64::from(self.max_block)
                    .min(by_segment)
                    .min(by_patch)
                    .min(u64::from(d.output.w));
                let pooled = d.written();
                if d.max_pool != 0 && u32::from(pooled.w) > POOL_LINE {
                    return Err(format!(
                        "max pool {k} of a {}-pixel-wide output writes {} pixels per row: the \
                         pooling line holds {POOL_LINE}",
                        d.output.w,
                        pooled.w,
                        k = d.max_pool
                    ));
                }
                (pixels, block)
            }
        };
        Ok(Schedule {
            k,
            wpr,
            chunks,
            planes,
            regions: d.regions(),
            tiles: out_c.div_ceil(u64::from(self.rows)),
            items,
            written: u64::from(d.written().h) * u64::from(d.written().w) * u64::from(d.batch),
            block,
            slots,
            in_stride: chunks * u64::from(self.cols),
            out_stride: self.batch_stride(out_c),
        })
    }

    /// Bytes between the Dense inputs (or outputs) of a batch for vectors of `len` codes: whole
    /// chunks of C bytes.
    pub fn batch_stride(&self, len: u64) -> u64 {
        len.div_ceil(u64::from(self.cols)) * u64::from(self.cols)
    }

    /// The device's capacity rule alone: `Ok` when [`CoreShape::schedule`] fits.
    pub fn check_capacity(&self, d: &LayerDescriptor) -> Result<(), String> {
        self.schedule(d).map(|_| ())
    }
}

impl Schedule {
    /// Plane-steps the array runs for the descriptor: tiles × items × chunks × planes, the
    /// descriptor's ideal cycles.
    pub fn plane_steps(&self) -> u64 {
        self.tiles * self.items * self.chunks * self.planes
    }
}
