//! The memory requests and compute steps the core makes for one checked descriptor, in issue
//! order: the one sequence the functional model executes and the timing model prices. Knows the
//! descriptor, the table layouts and caq-model's plane layout; knows nothing of registers.

use caq_spec::{LayerDescriptor, Opcode};

/// What a read request loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// The 128-byte descriptor.
    Descriptor,
    /// The layer input: the K-vector (Dense) or the whole CHW feature map (Conv2d).
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

/// One step of a descriptor's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read `words` 64-bit words from `addr` (8-byte aligned).
    Read { load: Load, addr: u64, words: u64 },
    /// Compute the tile of `rows` output channels from `o0`: `pixels` output pixels, each
    /// ⌈K/C⌉ chunks × `planes` plane-steps (and, for Conv2d, a patch gather of in_c·kernel_h rows).
    Compute {
        o0: usize,
        rows: usize,
        pixels: u64,
        chunks: u64,
        planes: u64,
        gather: u64,
    },
    /// Write `words` words at `addr` (8-byte aligned) with strobes on the `bytes` bytes from
    /// `first`: tile rows `rows` of the computed outputs, row-major (channel, pixel).
    Write {
        addr: u64,
        words: u64,
        first: u64,
        bytes: u64,
        rows: std::ops::Range<usize>,
    },
}

/// The 16-word descriptor fetch at `addr`.
pub fn descriptor_read(addr: u64) -> Step {
    Step::Read {
        load: Load::Descriptor,
        addr,
        words: 16,
    }
}

/// Every step after the descriptor fetch, for a descriptor that passed its checks, on an array
/// of `rows` x `cols`.
pub fn steps(d: &LayerDescriptor, rows: usize, cols: u64) -> Vec<Step> {
    let k = d.k();
    let wpr = k.div_ceil(64);
    let out_c = usize::from(d.output.c);
    let regions = d.regions();
    let conv = d.op == Opcode::Conv2d;
    let in_bytes = match d.op {
        Opcode::Dense => k,
        Opcode::Conv2d => u64::from(d.input.c) * u64::from(d.input.h) * u64::from(d.input.w),
    };
    let pixels = u64::from(d.output.h) * u64::from(d.output.w);
    let planes: u64 = d
        .active_plane_groups()
        .iter()
        .map(|g| u64::from(g.bits.get()))
        .sum();
    let mut out = vec![Step::Read {
        load: Load::Input,
        addr: d.input_addr.0,
        words: in_bytes.div_ceil(8),
    }];
    for o0 in (0..out_c).step_by(rows) {
        let n = rows.min(out_c - o0);
        let (o0w, nw) = (o0 as u64, n as u64);
        out.push(Step::Read {
            load: Load::Bias,
            addr: d.bias_addr.0 + 4 * o0w,
            words: nw.div_ceil(2),
        });
        out.push(Step::Read {
            load: Load::Requant,
            addr: d.requant_addr.0 + 8 * o0w,
            words: nw,
        });
        if d.flags.grouped {
            out.push(Step::Read {
                load: Load::GroupMult,
                addr: d.group_mult_addr.0 + 2 * o0w * regions,
                words: (nw * regions).div_ceil(4),
            });
        }
        for (group, g) in d.active_plane_groups().iter().enumerate() {
            for plane in 0..g.bits.get() {
                let p = u64::from(plane);
                out.push(Step::Read {
                    load: Load::Plane { group, plane },
                    addr: g.weight_addr.0 + p * out_c as u64 * wpr * 8 + o0w * wpr * 8,
                    words: nw * wpr,
                });
            }
        }
        out.push(Step::Compute {
            o0,
            rows: n,
            pixels,
            chunks: k.div_ceil(cols),
            planes,
            // One patch row (kernel_w elements) per cycle: in_c · kernel_h rows.
            gather: if conv {
                u64::from(d.input.c) * u64::from(d.kernel_h)
            } else {
                0
            },
        });
        let run = |first: u64, bytes: u64, rows| Step::Write {
            addr: first & !7,
            words: ((first % 8) + bytes).div_ceil(8),
            first,
            bytes,
            rows,
        };
        if conv {
            for r in 0..n {
                let first = d.output_addr.0 + (o0w + r as u64) * pixels;
                out.push(run(first, pixels, r..r + 1));
            }
        } else {
            out.push(run(d.output_addr.0 + o0w, nw, 0..n));
        }
    }
    out
}
