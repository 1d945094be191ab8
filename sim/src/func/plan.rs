//! The memory requests and compute steps of one checked descriptor, in the order the layer
//! engine's program runs them: the one sequence the functional model executes (and whose first
//! failing request it reports, as the RTL does). The RTL overlaps these steps (its fetch stage
//! runs ahead of compute, its writer behind it); `timing` prices that overlap. Knows the
//! descriptor, its [`Schedule`], the table layouts and caq-model's plane layout; knows nothing of
//! registers.
//!
//! Per descriptor: tile 0's loads (bias, requant, region multipliers, every active plane), the
//! input (Dense: `batch` K-vectors; Conv2d: the whole feature map, unless it is [`Resident`]),
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
    let in_bytes = match d.op {
        Opcode::Dense => s.items * s.in_stride,
        Opcode::Conv2d => u64::from(d.input.c) * u64::from(d.input.h) * u64::from(d.input.w),
    };
    let mut out = tile_loads(d, s, rows, 0);
    out.push(Step::Read {
        load: Load::Input,
        tile: 0,
        addr: d.input_addr.0,
        words: in_bytes.div_ceil(8),
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

/// The Conv2d input map the layer engine holds in its feature map between the descriptors of one
/// job (docs/hardware.md, "A resident input map"): the map of the last Conv2d input read (its
/// address and words), until a write request overlaps those words. A Conv2d whose input read is
/// the resident map's (the same address and words) is not issued: the engine computes from the
/// map it holds. A job starts with none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resident(Option<(u64, u64)>);

impl Resident {
    /// Whether `step` of a descriptor of opcode `op` is a read the engine skips: a Conv2d's
    /// input map, resident.
    pub fn skips(&self, op: Opcode, step: &Step) -> bool {
        matches!(*step, Step::Read { load: Load::Input, addr, words, .. }
            if op == Opcode::Conv2d && self.0 == Some((addr, words)))
    }

    /// Follows `step` of a descriptor of opcode `op`, issued or skipped: a Conv2d input map
    /// becomes the resident one; a write whose words overlap the resident map's drops it.
    pub fn observe(&mut self, op: Opcode, step: &Step) {
        match *step {
            Step::Read {
                load: Load::Input,
                addr,
                words,
                ..
            } if op == Opcode::Conv2d => self.0 = Some((addr, words)),
            Step::Write { addr, words, .. } => {
                if let Some((a, w)) = self.0
                    && u128::from(addr) < u128::from(a) + 8 * u128::from(w)
                    && u128::from(a) < u128::from(addr) + 8 * u128::from(words)
                {
                    self.0 = None;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A map stays resident for the same address and words, until a write touches one of its
    /// words; a Dense input never becomes resident, and a write beside the map keeps it.
    #[test]
    fn a_map_is_resident_until_a_write_overlaps_it() {
        let (conv, dense) = (Opcode::Conv2d, Opcode::Dense);
        let mut r = Resident::default();
        assert!(!r.skips(conv, &input(0x1000, 16)));
        r.observe(dense, &input(0x1000, 16));
        assert!(
            !r.skips(conv, &input(0x1000, 16)),
            "a Dense input is not a map"
        );
        r.observe(conv, &input(0x1000, 16));
        assert!(r.skips(conv, &input(0x1000, 16)));
        assert!(!r.skips(dense, &input(0x1000, 16)));
        assert!(!r.skips(conv, &input(0x1000, 15)), "other words");
        assert!(!r.skips(conv, &input(0x1008, 16)), "other address");
        for (addr, words, stale) in [
            (0x1080, 4, false), // just past the map's last word
            (0x0fe0, 4, false), // ends where the map starts
            (0x1078, 1, true),  // its last word
            (0x0fe0, 5, true),  // into its first word
            (0x0800, 0x200, true),
        ] {
            let mut r2 = r;
            r2.observe(conv, &written(addr, words));
            assert_eq!(
                !r2.skips(conv, &input(0x1000, 16)),
                stale,
                "{addr:#x} {words}"
            );
        }
    }
}
