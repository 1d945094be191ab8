//! A Dense layer as the device sees it — plane groups, tables, descriptor — laid out in a
//! [`AxiMem`], its golden output from `caq_model::kernels`, and a run of a descriptor list on
//! the RTL through its registers. Used by the co-simulation tests and the precision benchmark.
//! (The driver's compiler from a model bundle will produce the same layout: docs/descriptor.md.)

use crate::axi_mem::AxiMem;
use crate::axil::{AxiLite, AxiLiteOptions};
use crate::error::SimError;
use crate::rtl::RtlModel;
use crate::rtl::design::ports;
use caq_model::kernels::{self, GroupMult, IntLayer};
use caq_model::planes;
use caq_model::quant::ActQuant;
use caq_model::requant::{OutRange, Requant};
use caq_spec::descriptor::{
    Flags, LayerDescriptor, Opcode, PlaneGroup, PlaneGroups, RequantEntry, Shape,
};
use caq_spec::regmap;
use caq_spec::{BitWidth, DeviceAddr};
use ndarray::Array2;

/// One stored plane group: signed `bits`-bit codes `[out, K]` weighted by 2^shift.
#[derive(Clone, Debug)]
pub struct Group {
    pub bits: u8,
    pub shift: u8,
    pub codes: Array2<i32>,
}

/// A Dense layer at one precision (`active` plane groups), with everything the device reads.
#[derive(Clone, Debug)]
pub struct DenseJob {
    pub groups: Vec<Group>,
    pub active: usize,
    /// Local-region multipliers `[out, regions]` and the region size, or none.
    pub regions: Option<(Array2<u16>, usize)>,
    pub bias: Vec<i32>,
    pub requant: Vec<Requant>,
    pub relu: bool,
    pub in_signed: bool,
    pub out_signed: bool,
    pub out_bits: u8,
    /// Input codes (one byte each on the device).
    pub input: Vec<i32>,
}

/// A job placed in memory.
#[derive(Clone, Debug)]
pub struct Placed {
    pub desc: LayerDescriptor,
    pub out_c: usize,
    /// Σ bits of the active groups: plane-steps per chunk.
    pub planes: u64,
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl DenseJob {
    pub fn k(&self) -> usize {
        self.groups[0].codes.ncols()
    }
    pub fn out_c(&self) -> usize {
        self.groups[0].codes.nrows()
    }

    /// Σ of the active groups' codes, shifted: the effective weight codes.
    pub fn effective_codes(&self) -> Array2<i32> {
        let mut eff = Array2::<i32>::zeros((self.out_c(), self.k()));
        for g in self.groups.iter().take(self.active) {
            eff += &g.codes.mapv(|v| v << g.shift);
        }
        eff
    }

    /// Output codes as bytes, from the golden kernel.
    pub fn golden(&self) -> Result<Vec<u8>, caq_model::ModelError> {
        let eff = self.effective_codes();
        // The output code range is the activation quantizer's: one definition in caq-model.
        let act = ActQuant {
            bits: self.out_bits,
            signed: self.out_signed,
            scale: 1.0,
        };
        let out = OutRange {
            qmin: act.qmin(),
            qmax: act.qmax(),
            relu: self.relu,
        };
        let layer = IntLayer {
            codes: eff.view(),
            groups: self.regions.as_ref().map(|(m, gs)| GroupMult {
                mult: m.view(),
                group_size: *gs,
            }),
            bias: &self.bias,
            requant: &self.requant,
            out,
        };
        Ok(kernels::dense(&layer, &self.input)?
            .iter()
            .map(|&v| v as u8)
            .collect())
    }

    /// Writes the input, tables and plane groups into `mem` from `*next` on (64-byte aligned
    /// buffers) and returns the descriptor. The output buffer is filled with `0xa5` so that
    /// stray writes show, with 16 spare bytes after the outputs.
    pub fn place(&self, mem: &mut AxiMem, next: &mut u64) -> Result<Placed, SimError> {
        let mut alloc = |len: usize| {
            let a = *next;
            *next = align(a + len as u64 + 16, 64);
            a
        };
        let (k, o) = (self.k(), self.out_c());
        let input: Vec<u8> = self.input.iter().map(|&v| v as u8).collect();
        let input_addr = alloc(k);
        mem.write(input_addr, &input)?;
        let output_addr = alloc(o);
        mem.write(output_addr, &vec![0xa5; o + 16])?;
        let bias: Vec<u8> = self.bias.iter().flat_map(|b| b.to_le_bytes()).collect();
        let bias_addr = alloc(bias.len());
        mem.write(bias_addr, &bias)?;
        let rq: Vec<u8> = self
            .requant
            .iter()
            .flat_map(|r| {
                RequantEntry {
                    multiplier: r.mult,
                    shift: r.shift,
                }
                .to_bytes()
            })
            .collect();
        let rq_addr = alloc(rq.len());
        mem.write(rq_addr, &rq)?;
        let (gm_addr, group_size) = match &self.regions {
            Some((m, gs)) => {
                let b: Vec<u8> = m.iter().flat_map(|v| v.to_le_bytes()).collect();
                let a = alloc(b.len());
                mem.write(a, &b)?;
                (a, *gs as u16)
            }
            None => (0, 0),
        };
        let mut pg = Vec::new();
        for g in &self.groups {
            let bytes = planes::pack(g.codes.view(), g.bits)
                .map_err(|e| SimError::Job(e.to_string()))?
                .to_le_bytes();
            let a = alloc(bytes.len());
            mem.write(a, &bytes)?;
            pg.push(PlaneGroup {
                bits: BitWidth::try_from(g.bits).map_err(|e| SimError::Job(e.to_string()))?,
                shift: g.shift,
                weight_addr: DeviceAddr(a),
            });
        }
        let bits = |b: u8| BitWidth::try_from(b).map_err(|e| SimError::Job(e.to_string()));
        let desc = LayerDescriptor {
            op: Opcode::Dense,
            flags: Flags {
                relu: self.relu,
                in_signed: self.in_signed,
                out_signed: self.out_signed,
                grouped: self.regions.is_some(),
                last: false,
            },
            in_bits: bits(8)?,
            out_bits: bits(self.out_bits)?,
            group_size,
            input: Shape {
                c: k as u16,
                h: 1,
                w: 1,
            },
            output: Shape {
                c: o as u16,
                h: 1,
                w: 1,
            },
            kernel_h: 1,
            kernel_w: 1,
            stride: 1,
            pad: 0,
            plane_groups: PlaneGroups::new(&pg).map_err(|e| SimError::Job(e.to_string()))?,
            active_groups: self.active as u8,
            input_addr: DeviceAddr(input_addr),
            output_addr: DeviceAddr(output_addr),
            bias_addr: DeviceAddr(bias_addr),
            requant_addr: DeviceAddr(rq_addr),
            group_mult_addr: DeviceAddr(gm_addr),
        };
        Ok(Placed {
            desc,
            out_c: o,
            planes: self
                .groups
                .iter()
                .take(self.active)
                .map(|g| g.bits as u64)
                .sum(),
        })
    }
}

/// Writes a descriptor list at `desc_addr` (`last` set on the final one).
pub fn write_list(mem: &mut AxiMem, desc_addr: u64, placed: &[Placed]) -> Result<(), SimError> {
    for (i, p) in placed.iter().enumerate() {
        let mut d = p.desc;
        d.flags.last = i + 1 == placed.len();
        mem.write(desc_addr + 128 * i as u64, &d.encode())?;
    }
    Ok(())
}

/// The outcome of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Cycles from START to the interrupt.
    pub cycles: u64,
    pub status: u32,
}

/// Programs DESC_ADDR/DESC_COUNT, starts with the interrupt enabled, serves memory (on every
/// cycle, register accesses included) until the interrupt rises (at most `limit` cycles) and
/// returns the cycle count and STATUS. The bus must then be idle: the core finishes a list only
/// after every burst it caused.
pub fn run_list(
    m: &mut RtlModel,
    mem: &mut AxiMem,
    desc_addr: u64,
    count: u32,
    limit: u64,
) -> Result<Run, SimError> {
    let region = mem.region();
    let mut axil = AxiLite::with_hook(m, AxiLiteOptions::default(), mem);
    axil.write(&regmap::DESC_ADDR_LO, desc_addr as u32)?;
    axil.write(&regmap::DESC_ADDR_HI, (desc_addr >> 32) as u32)?;
    axil.write(&regmap::DESC_COUNT, count)?;
    // The window is the whole memory model.
    let (base, size) = region;
    let end = base + size;
    axil.write(&regmap::WIN_BASE_LO, base as u32)?;
    axil.write(&regmap::WIN_BASE_HI, (base >> 32) as u32)?;
    axil.write(&regmap::WIN_LIMIT_LO, end as u32)?;
    axil.write(&regmap::WIN_LIMIT_HI, (end >> 32) as u32)?;
    axil.write(&regmap::IRQ_STATUS, 0b11)?;
    axil.write(
        &regmap::CTRL,
        regmap::CTRL_START.mask() | regmap::CTRL_IRQ_EN.mask(),
    )?;
    let t0 = m.cycles();
    while !m.is_high(ports::IRQ) {
        if m.cycles() - t0 >= limit {
            return Err(SimError::Job(format!(
                "no interrupt within {limit} cycles of START"
            )));
        }
        mem.cycle(m)?;
    }
    let cycles = m.cycles() - t0;
    mem.check_idle()?;
    let status = AxiLite::with_hook(m, AxiLiteOptions::default(), mem).read(&regmap::STATUS)?;
    Ok(Run { cycles, status })
}
