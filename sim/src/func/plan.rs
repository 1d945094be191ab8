//! The memory requests and compute steps of one checked descriptor, in the order the layer
//! engine's program runs them: the one sequence the functional model executes (and whose first
//! failing request it reports, as the RTL does). The RTL overlaps these steps (its fetch stage
//! runs ahead of compute, its writer behind it); `timing` prices that overlap. Knows the
//! descriptor, its [`Schedule`], the table layouts and caq-model's plane layout; knows nothing of
//! registers.
//!
//! Per descriptor: tile 0's loads (bias, requant, region multipliers, every active plane), the
//! input (Dense: `batch` K-vectors; Conv2d: the whole feature map, unless it is on chip: [`Resident`]),
//! then per tile: its compute, its output writes, and the next tile's loads.

use caq_spec::{CoreShape, LayerDescriptor, Opcode, Schedule};

/// What a read request loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// The 128-byte descriptor.
    Descriptor,
    /// The layer input: `batch` K-vectors (Dense) or the whole CHW feature map (Conv2d).
    Input,
    Bias,
    Requant,
    GroupMult,
    /// Plane `plane` of plane group `group`, the tile's rows.
    Plane {
        group: usize,
        plane: u8,
    },
}

/// Which computed outputs a write carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Conv2d: row `row` of the tile (one output channel), pixels `first .. first + len`.
    Channel { row: usize, first: u64, len: u64 },
    /// Dense: every row of the tile for input `item` of the batch.
    Item { item: u64 },
}

/// One step of a descriptor's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read `words` 64-bit words from `addr` (8-byte aligned) for tile `tile`.
    Read {
        load: Load,
        tile: u64,
        addr: u64,
        words: u64,
    },
    /// Compute tile `tile`: `rows` output channels from `o0`, every item of the schedule.
    Compute { tile: u64, o0: usize, rows: usize },
    /// Write `words` words at `addr` (8-byte aligned) with strobes on the `bytes` bytes from
    /// `first`.
    Write {
        tile: u64,
        addr: u64,
        words: u64,
        first: u64,
        bytes: u64,
        out: Out,
    },
}

/// The 16-word descriptor fetch at `addr`.
pub fn descriptor_read(addr: u64) -> Step {
    Step::Read {
        load: Load::Descriptor,
        tile: 0,
        addr,
        words: 16,
    }
}

/// The reads of tile `tile` (o0 = tile · R): bias, requant, region multipliers, then each active
/// plane's rows of the tile.
fn tile_loads(d: &LayerDescriptor, s: &Schedule, rows: usize, tile: u64) -> Vec<Step> {
    let out_c = u64::from(d.output.c);
    let o0 = tile * rows as u64;
    let n = (rows as u64).min(out_c - o0);
    let read = |load, addr, words| Step::Read {
        load,
        tile,
        addr,
        words,
    };
    let mut out = vec![
        read(Load::Bias, d.bias_addr.0 + 4 * o0, n.div_ceil(2)),
        read(Load::Requant, d.requant_addr.0 + 8 * o0, n),
    ];
    if d.flags.grouped {
        out.push(read(
            Load::GroupMult,
            d.group_mult_addr.0 + 2 * o0 * s.regions,
            (n * s.regions).div_ceil(4),
        ));
    }
    for (group, g) in d.active_plane_groups().iter().enumerate() {
        for plane in 0..g.bits.get() {
            let p = u64::from(plane);
            out.push(read(
                Load::Plane { group, plane },
                g.weight_addr.0 + (p * out_c + o0) * s.wpr * 8,
                n * s.wpr,
            ));
        }
    }
    out
}

/// A write of `bytes` bytes from `first`, rounded out to whole 64-bit words.
fn write(tile: u64, first: u64, bytes: u64, out: Out) -> Step {
    Step::Write {
        tile,
        addr: first & !7,
        words: ((first % 8) + bytes).div_ceil(8),
        first,
        bytes,
        out,
    }
}

/// The tile's output writes: Dense, one per input of the batch (the tile's rows at
/// `out + n·out_stride + o0`); Conv2d, per run of `run_bytes` pixels written (a run boundary at
/// every multiple of `run_bytes` of the tile's pixels, pooled pixels with max pooling), one per
/// row of the tile, run after run.
fn tile_writes(d: &LayerDescriptor, s: &Schedule, shape: &CoreShape, tile: u64) -> Vec<Step> {
    let rows = u64::from(shape.rows);
    let o0 = tile * rows;
    let n = rows.min(u64::from(d.output.c) - o0);
    let out = d.output_addr.0;
    match d.op {
        Opcode::Dense => (0..s.items)
            .map(|item| write(tile, out + item * s.out_stride + o0, n, Out::Item { item }))
            .collect(),
        Opcode::Conv2d => {
            let run = u64::from(shape.run_bytes);
            let mut steps = Vec::new();
            let mut first = 0;
            while first < s.written {
                let len = run.min(s.written - first);
                for row in 0..n {
                    steps.push(write(
                        tile,
                        out + (o0 + row) * s.written + first,
                        len,
                        Out::Channel {
                            row: row as usize,
                            first,
                            len,
                        },
                    ));
                }
                first += len;
            }
            steps
        }
    }
}

/// Every step after the descriptor fetch, for a descriptor whose schedule is `s`.
pub fn steps(d: &LayerDescriptor, s: &Schedule, shape: &CoreShape) -> Vec<Step> {
    let rows = shape.rows as usize;
    let out_c = usize::from(d.output.c);
    // A Conv2d's map may start inside a word: it is read from the word it starts in.
    let (lead, in_bytes) = match d.op {
        Opcode::Dense => (0, s.items * s.in_stride),
        Opcode::Conv2d => (d.input_addr.0 % 8, d.input.bytes()),
    };
    let mut out = tile_loads(d, s, rows, 0);
    out.push(Step::Read {
        load: Load::Input,
        tile: 0,
        addr: d.input_addr.0 - lead,
        words: (lead + in_bytes).div_ceil(8),
    });
    for tile in 0..s.tiles {
        let o0 = tile as usize * rows;
        out.push(Step::Compute {
            tile,
            o0,
            rows: rows.min(out_c - o0),
        });
        out.extend(tile_writes(d, s, shape, tile));
        if tile + 1 < s.tiles {
            out.extend(tile_loads(d, s, rows, tile + 1));
        }
    }
    out
}

/// What the layer engine's feature buffer holds between the descriptors of one job
/// (docs/hardware.md, "A resident input map" and "The output mirror"). It has two banks:
/// - the **resident map**: the bytes of the bank the last Conv2d read its input from — the input
///   it loaded (its read's address and whole words), or the whole mirror it took — until a write
///   request overlaps their words;
/// - the **mirror**: the map the last Conv2d wrote, captured from its write beats when the whole
///   written map fits a bank ([`CoreShape::mirror_bytes`]), until a write request of a later
///   descriptor overlaps its words or another Conv2d starts.
///
/// A Conv2d whose input map's bytes lie within the resident map's is not issued: it reads its
/// slice of the bank from the slice's offset. Nor is one whose input map's bytes lie within the
/// mirrored bytes (the mirror's last word past them holds nothing defined): the banks swap, and the
/// whole mirror becomes the resident map. A job starts with neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resident {
    /// The resident map's address and defined bytes.
    map: Option<(u64, u64)>,
    mirror: Option<Mirror>,
}

/// The mirror bank's map: its address and bytes, and whether the descriptor writing it is the
/// running one (whose own writes do not invalidate it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mirror {
    addr: u64,
    bytes: u64,
    own: bool,
}

/// Where the engine takes a read's data from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Issued to memory.
    Memory,
    /// The resident map, from this byte of its bank.
    Resident { offset: u64 },
    /// The mirror, from this byte of its bank, which becomes the resident one.
    Mirror { offset: u64 },
}

/// Whether the byte ranges of `a` words at `aa` and `b` words at `ba` overlap.
fn overlaps(aa: u64, a: u64, ba: u64, b: u64) -> bool {
    u128::from(ba) < u128::from(aa) + 8 * u128::from(a)
        && u128::from(aa) < u128::from(ba) + 8 * u128::from(b)
}

/// The offset of `bytes` bytes at `addr` within the `within` bytes at `base`, when they lie there.
fn slice_of(addr: u64, bytes: u64, base: u64, within: u64) -> Option<u64> {
    let offset = addr.checked_sub(base)?;
    (u128::from(offset) + u128::from(bytes) <= u128::from(within)).then_some(offset)
}

impl Resident {
    /// Where `step` of descriptor `d` takes its data from: a Conv2d input map whose bytes lie
    /// within the resident map's, or else within the mirror's, comes from the feature buffer.
    pub fn source(&self, d: &LayerDescriptor, step: &Step) -> Source {
        let Step::Read {
            load: Load::Input,
            addr,
            ..
        } = *step
        else {
            return Source::Memory;
        };
        if d.op != Opcode::Conv2d {
            return Source::Memory;
        }
        // The map's own bytes (its read starts at the word they start in).
        let (addr, bytes) = (addr + d.input_addr.0 % 8, d.input.bytes());
        if let Some(offset) = self
            .map
            .and_then(|(base, within)| slice_of(addr, bytes, base, within))
        {
            Source::Resident { offset }
        } else if let Some(offset) = self
            .mirror
            .and_then(|m| slice_of(addr, bytes, m.addr, m.bytes))
        {
            Source::Mirror { offset }
        } else {
            Source::Memory
        }
    }

    /// Whether `step` of descriptor `d` is a read the engine skips.
    pub fn skips(&self, d: &LayerDescriptor, step: &Step) -> bool {
        self.source(d, step) != Source::Memory
    }

    /// Follows `step` of descriptor `d`, issued or skipped: the bank a Conv2d's input came from
    /// becomes the resident map (the words it loaded, or the whole mirror it took; a slice of the
    /// resident map leaves it as it is) and its output the mirror's (none when it does not fit a
    /// bank); a Dense input ends the previous descriptor's hold on the mirror; a write whose
    /// words overlap the resident map drops it, and one of a later descriptor overlapping the
    /// mirror drops that.
    pub fn observe(&mut self, d: &LayerDescriptor, shape: &CoreShape, step: &Step) {
        match *step {
            Step::Read {
                load: Load::Input,
                addr,
                words,
                ..
            } => {
                if d.op == Opcode::Conv2d {
                    let source = self.source(d, step);
                    // A map written right after the mirrored one extends it, while both fit a
                    // bank (the mirror bank is not the one this descriptor reads).
                    let grown = self
                        .mirror
                        .filter(|_| !matches!(source, Source::Mirror { .. }))
                        .and_then(|m| {
                            let bytes = shape.mirror_bytes(d)?;
                            (d.output_addr.0 == m.addr + m.bytes
                                && m.addr % 8 + m.bytes + bytes <= u64::from(shape.fm_bytes))
                            .then_some(Mirror {
                                addr: m.addr,
                                bytes: m.bytes + bytes,
                                own: true,
                            })
                        });
                    match source {
                        Source::Memory => self.map = Some((addr, 8 * words)),
                        Source::Resident { .. } => {}
                        Source::Mirror { .. } => self.map = self.mirror.map(|m| (m.addr, m.bytes)),
                    }
                    self.mirror = grown.or_else(|| {
                        shape.mirror_bytes(d).map(|bytes| Mirror {
                            addr: d.output_addr.0,
                            bytes,
                            own: true,
                        })
                    });
                } else if let Some(m) = &mut self.mirror {
                    m.own = false;
                }
            }
            Step::Write { addr, words, .. } => {
                if self
                    .map
                    .is_some_and(|(a, b)| overlaps(a, b.div_ceil(8), addr, words))
                {
                    self.map = None;
                }
                if self
                    .mirror
                    .is_some_and(|m| !m.own && overlaps(m.addr, m.bytes.div_ceil(8), addr, words))
                {
                    self.mirror = None;
                }
            }
            _ => {}
        }
    }

    /// Whether `d` (schedule `s`, read program `steps`) is handed to the run side while `prev`,
    /// the descriptor before it, still writes (docs/hardware.md, "Early hand-over"), with this
    /// state being the one after `prev`'s steps: both are Conv2d, `prev`'s written map fits a
    /// bank, `d` has one tile and takes its input map from the resident bank (no read, no swap),
    /// and `prev`'s output, rounded out to whole words, does not overlap the resident map's
    /// bytes (so none of `prev`'s writes can drop it).
    pub fn early_handover(
        &self,
        prev: &LayerDescriptor,
        d: &LayerDescriptor,
        s: &Schedule,
        steps: &[Step],
        shape: &CoreShape,
    ) -> bool {
        let Some(bytes) = shape.mirror_bytes(prev) else {
            return false;
        };
        let in_bank = steps
            .iter()
            .any(|st| matches!(self.source(d, st), Source::Resident { .. }));
        let lo = prev.output_addr.0 & !7;
        let words = (prev.output_addr.0 + bytes).div_ceil(8) - lo / 8;
        d.op == Opcode::Conv2d
            && s.tiles == 1
            && in_bank
            && !self
                .map
                .is_some_and(|(a, b)| overlaps(a, b.div_ceil(8), lo, words))
    }

    /// The mirror the running descriptor is writing (its address and bytes), if any.
    pub fn mirroring(&self) -> Option<(u64, u64)> {
        self.mirror.filter(|m| m.own).map(|m| (m.addr, m.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caq_spec::descriptor::Shape;

    fn input(addr: u64, words: u64) -> Step {
        Step::Read {
            load: Load::Input,
            tile: 0,
            addr,
            words,
        }
    }

    fn written(addr: u64, words: u64) -> Step {
        Step::Write {
            tile: 0,
            addr,
            words,
            first: addr,
            bytes: 8 * words,
            out: Out::Item { item: 0 },
        }
    }

    fn shape() -> CoreShape {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
        CoreShape::of(&caq_spec::AccelConfig::load(path).expect("sim-small"))
    }

    /// A descriptor of opcode `op` reading a c×8×8 map and writing one at `out` (only the
    /// fields the rule reads).
    fn desc(op: Opcode, c: u16, out: u64) -> LayerDescriptor {
        use caq_spec::descriptor::{Flags, Pad, PlaneGroup, PlaneGroups};
        use caq_spec::{BitWidth, DeviceAddr};
        let b8 = BitWidth::try_from(8).expect("8");
        let g = PlaneGroup {
            bits: b8,
            shift: 0,
            weight_addr: DeviceAddr(0x9000),
        };
        LayerDescriptor {
            op,
            flags: Flags::default(),
            in_bits: b8,
            out_bits: b8,
            group_size: 0,
            input: Shape { c, h: 8, w: 8 },
            output: Shape { c, h: 8, w: 8 },
            kernel_h: 1,
            kernel_w: 1,
            stride: 1,
            pad: Pad::uniform(0),
            plane_groups: PlaneGroups::new(&[g]).expect("1 group"),
            active_groups: 1,
            input_addr: DeviceAddr(0),
            output_addr: DeviceAddr(out),
            bias_addr: DeviceAddr(0),
            requant_addr: DeviceAddr(0),
            group_mult_addr: DeviceAddr(0),
            batch: 1,
            max_pool: 0,
            global_pool: None,
        }
    }

    /// A Conv2d reading a map of `input`'s shape.
    fn reader(input: Shape) -> LayerDescriptor {
        LayerDescriptor {
            input,
            ..desc(Opcode::Conv2d, 1, 0x8000)
        }
    }

    /// The read of a Conv2d map of `shape` at `addr`.
    fn map_read(addr: u64, shape: Shape) -> Step {
        input(addr, shape.bytes().div_ceil(8))
    }

    /// A map stays resident until a write touches one of its words; a Conv2d reading any slice of
    /// its bytes (from an offset) reads the bank, one reaching past either end reads memory; a
    /// Dense input never becomes resident, and a write beside the map keeps it.
    #[test]
    fn a_map_is_resident_until_a_write_overlaps_it() {
        let sh = shape();
        // Reads a 1×8×8 map: 64 bytes.
        let (conv, dense) = (
            desc(Opcode::Conv2d, 1, 0x8000),
            desc(Opcode::Dense, 1, 0x8000),
        );
        let mut r = Resident::default();
        assert!(!r.skips(&conv, &input(0x1000, 16)));
        r.observe(&dense, &sh, &input(0x1000, 16));
        assert!(
            !r.skips(&conv, &input(0x1000, 16)),
            "a Dense input is not a map"
        );
        // 16 words loaded: 128 bytes at 0x1000.
        r.observe(&conv, &sh, &input(0x1000, 16));
        assert_eq!(
            r.source(&conv, &input(0x1000, 8)),
            Source::Resident { offset: 0 }
        );
        assert_eq!(
            r.source(&conv, &input(0x1040, 8)),
            Source::Resident { offset: 64 },
            "the slice that ends the map"
        );
        assert!(!r.skips(&dense, &input(0x1000, 8)));
        assert!(!r.skips(&conv, &input(0x1048, 8)), "past its end");
        assert!(!r.skips(&conv, &input(0x0ff8, 8)), "before its start");
        // A slice read keeps the whole map resident.
        let mut sliced = r;
        sliced.observe(&conv, &sh, &input(0x1040, 8));
        assert_eq!(
            sliced.source(&conv, &input(0x1000, 8)),
            Source::Resident { offset: 0 }
        );
        for (addr, words, stale) in [
            (0x1080, 4, false), // just past the map's last word
            (0x0fe0, 4, false), // ends where the map starts
            (0x1078, 1, true),  // its last word
            (0x0fe0, 5, true),  // into its first word
            (0x0800, 0x200, true),
        ] {
            let mut r2 = r;
            r2.observe(&conv, &sh, &written(addr, words));
            assert_eq!(
                !r2.skips(&conv, &input(0x1000, 8)) && !r2.skips(&conv, &input(0x1040, 8)),
                stale,
                "{addr:#x} {words}"
            );
        }
    }

    /// A Conv2d's output is mirrored when it fits a bank: a later Conv2d reading a map whose bytes
    /// lie within it (from any offset) takes it from the mirror, which then is the resident map,
    /// whole. Its own writes keep it; a later descriptor's overlapping write, or another Conv2d,
    /// ends it.
    #[test]
    fn a_conv_output_is_mirrored_until_a_later_write_overlaps_it() {
        let sh = shape();
        let op = Opcode::Conv2d;
        // 16 channels of 8×8: 1024 bytes, 128 words at 0x4000.
        let a = desc(op, 16, 0x4000);
        let whole = Shape { c: 16, h: 8, w: 8 };
        assert_eq!(sh.mirror_bytes(&a), Some(1024));
        let mut r = Resident::default();
        r.observe(&a, &sh, &input(0x1000, 128));
        assert_eq!(r.mirroring(), Some((0x4000, 1024)));
        r.observe(&a, &sh, &written(0x4000, 128));
        assert_eq!(
            r.mirroring(),
            Some((0x4000, 1024)),
            "its own writes keep it"
        );
        let src = |r: &Resident, addr, shape| r.source(&reader(shape), &map_read(addr, shape));
        let mirror = |offset| Source::Mirror { offset };
        assert_eq!(src(&r, 0x4000, whole), mirror(0));
        let half = Shape { c: 8, ..whole };
        assert_eq!(src(&r, 0x4000, half), mirror(0), "a smaller map");
        let more = Shape { c: 17, ..whole };
        assert_eq!(src(&r, 0x4000, more), Source::Memory, "a larger one");
        assert_eq!(src(&r, 0x4008, half), mirror(8), "a slice");
        assert_eq!(
            src(&r, 0x4200, half),
            mirror(0x200),
            "the slice that ends it"
        );
        assert_eq!(src(&r, 0x4208, half), Source::Memory, "past its end");
        assert_eq!(src(&r, 0x3ff8, half), Source::Memory, "before its start");
        let dense = desc(Opcode::Dense, 16, 0x9000);
        assert_eq!(r.source(&dense, &input(0x4000, 8)), Source::Memory);
        // B takes the mirror: it is the resident map now, and B's output the mirror.
        let b = desc(op, 16, 0x6000);
        let mut taken = r;
        taken.observe(&b, &sh, &input(0x4000, 128));
        assert_eq!(
            taken.source(&b, &input(0x4000, 128)),
            Source::Resident { offset: 0 }
        );
        assert_eq!(taken.mirroring(), Some((0x6000, 1024)));
        // B takes a slice (the upper 8 channels): the whole mirror is the resident map, and C
        // reads the lower 8 channels from it.
        let mut sliced = r;
        let upper = reader(half);
        sliced.observe(&upper, &sh, &map_read(0x4200, half));
        assert_eq!(
            sliced.source(&upper, &map_read(0x4000, half)),
            Source::Resident { offset: 0 }
        );
        assert_eq!(
            sliced.source(&reader(whole), &map_read(0x4000, whole)),
            Source::Resident { offset: 0 }
        );
        // A Dense layer after A: its input ends A's hold; its write into A's output ends the
        // mirror, one beside it does not.
        for (addr, words, stale) in [(0x4400, 8, false), (0x43f8, 1, true), (0x3ff8, 2, true)] {
            let mut r2 = r;
            r2.observe(&dense, &sh, &input(0x1000, 4));
            assert_eq!(r2.mirroring(), None, "A no longer runs");
            r2.observe(&dense, &sh, &written(addr, words));
            assert_eq!(
                src(&r2, 0x4000, whole) == Source::Memory,
                stale,
                "{addr:#x} {words}"
            );
        }
        // A map larger than a bank is not mirrored; a Conv2d's start replaces the mirror.
        let big = desc(op, 16 * (sh.fm_bytes / 1024 + 1) as u16, 0x4000);
        assert_eq!(sh.mirror_bytes(&big), None);
        let mut r3 = r;
        r3.observe(&big, &sh, &input(0x1000, 8));
        assert_eq!(src(&r3, 0x4000, whole), Source::Memory);
    }

    /// A Conv2d whose output starts where the mirrored map ends grows the mirror (from the same
    /// address) while both fit a bank, unless it takes its input from the mirror; one written
    /// elsewhere, or past the bank, starts a new mirror.
    #[test]
    fn a_map_written_right_after_the_mirror_grows_it() {
        let sh = shape();
        let op = Opcode::Conv2d;
        // A: 16×8×8 (1024 bytes) at 0x4000, reading a map at 0x1000.
        let a = desc(op, 16, 0x4000);
        let mut r = Resident::default();
        r.observe(&a, &sh, &input(0x1000, 128));
        let next = |r: &Resident, out: u64, from: u64| {
            let mut r = *r;
            r.observe(&desc(op, 16, out), &sh, &input(from, 128));
            r.mirroring()
        };
        assert_eq!(next(&r, 0x4400, 0x1000), Some((0x4000, 2048)), "grows");
        assert_eq!(next(&r, 0x4408, 0x1000), Some((0x4408, 1024)), "a gap");
        assert_eq!(
            next(&r, 0x4400, 0x4000),
            Some((0x4400, 1024)),
            "the mirror taken as input: the other bank starts anew"
        );
        // Grown, the two maps read as one from the mirror.
        let mut g = r;
        g.observe(&desc(op, 16, 0x4400), &sh, &input(0x1000, 128));
        let both = Shape { c: 32, h: 8, w: 8 };
        assert_eq!(
            g.source(&reader(both), &map_read(0x4000, both)),
            Source::Mirror { offset: 0 }
        );
        // Up to the bank and no further.
        let fill = (u64::from(sh.fm_bytes) - 1024) / 64;
        let mut full = r;
        full.observe(&desc(op, fill as u16, 0x4400), &sh, &input(0x1000, 128));
        assert_eq!(full.mirroring(), Some((0x4000, u64::from(sh.fm_bytes))));
        let past = desc(op, 1, 0x4000 + u64::from(sh.fm_bytes));
        full.observe(&past, &sh, &input(0x1000, 8));
        assert_eq!(
            full.mirroring(),
            Some((0x4000 + u64::from(sh.fm_bytes), 64)),
            "past the bank: a new mirror"
        );
    }

    /// The mirror holds its map's bytes, not its last word's: a map of as many words but more
    /// bytes is read from memory.
    #[test]
    fn a_map_past_the_mirrored_bytes_is_read() {
        let sh = shape();
        // 1×5×5: 25 bytes in 4 words.
        let a = LayerDescriptor {
            output: Shape { c: 1, h: 5, w: 5 },
            ..desc(Opcode::Conv2d, 1, 0x4000)
        };
        assert_eq!(sh.mirror_bytes(&a), Some(25));
        let mut r = Resident::default();
        r.observe(&a, &sh, &input(0x1000, 8));
        let at = |shape| r.source(&reader(shape), &map_read(0x4000, shape));
        let mirror = Source::Mirror { offset: 0 };
        assert_eq!(at(Shape { c: 1, h: 5, w: 5 }), mirror);
        assert_eq!(at(Shape { c: 1, h: 4, w: 6 }), mirror, "24 bytes");
        assert_eq!(
            at(Shape { c: 1, h: 3, w: 9 }),
            Source::Memory,
            "27 bytes, 4 words"
        );
        // Taken from the mirror, the resident map is the mirrored bytes: a later map of the same
        // words as one that ends inside a word would read bytes past them, from memory.
        for (shape, stays) in [
            (Shape { c: 1, h: 5, w: 5 }, false),
            (Shape { c: 1, h: 4, w: 6 }, true),
        ] {
            let mut r2 = r;
            r2.observe(&reader(shape), &sh, &map_read(0x4000, shape));
            let later = Shape {
                c: 1,
                h: 1,
                w: 8 * shape.bytes().div_ceil(8) as u16,
            };
            assert_eq!(
                r2.source(&reader(later), &map_read(0x4000, later))
                    == Source::Resident { offset: 0 },
                stays,
                "{shape:?}"
            );
        }
    }
}
