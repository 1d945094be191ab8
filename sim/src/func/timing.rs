//! The timing model of the RTL: cycles of a descriptor list priced per memory request and per
//! compute step of [`super::plan`]. The coefficients are a [`TimingModel`] so they can be
//! calibrated against the Verilator model (`RtlDevice`, see [`TimingModel::default`]): one word
//! per cycle on each port, no overlap of loads and compute, as the core's state machine works.
//! Knows the plan; knows nothing of registers or data.

use caq_spec::{CoreShape, LayerDescriptor, PerfCounters, Schedule};

use super::plan::{self, Step};

/// Cycle costs of the core's activities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimingModel {
    /// Cycles from START to the first descriptor request.
    pub start: u64,
    /// Cycles from a read request to its first word (request handshake and memory latency).
    pub read_latency: u64,
    /// Cycles per word of a read (the port moves one word per cycle).
    pub read_word: u64,
    /// Cycles from a write request to its first word.
    pub write_latency: u64,
    /// Cycles per written word.
    pub write_word: u64,
    /// Cycles from the last written word to the write response.
    pub write_response: u64,
    /// Cycles to check and plan a fetched descriptor.
    pub descriptor: u64,
    /// Pipeline fill and accumulator wait per pixel of a tile.
    pub pixel: u64,
    /// Cycles per gathered patch row (Conv2d im2col, one kernel row of up to 7 elements per cycle).
    pub gather_row: u64,
    /// Requantization drain: cycles per tile row, plus a fixed pipeline latency per pixel.
    pub drain_row: u64,
    pub drain_latency: u64,
    /// Cycles between descriptors and after the last one.
    pub next: u64,
}

/// Fitted by `calibrate_the_timing_model_against_the_rtl` (sim/tests/devices.rs) to RtlDevice on
/// sim-small with `AxiMemOptions::default()` (read latency 8, write latency 4, no stalls), over
/// random Dense and Conv2d lists of three seeds, then rounded: the patch gather came out at
/// exactly 1 cycle per kernel row and a plane-step word at ~1 cycle, as the design says; a request
/// costs ~8 cycles before its first word; an output word ~10 (eight staged bytes, one per cycle,
/// then the handshake); a pixel ~13 cycles of pipeline fill and drain. Over 60 lists these
/// defaults estimate PERF_CYCLES with a mean |error| of 2 % and a worst of 9-11 % (short lists,
/// where fixed costs dominate). Other memory latencies change `read_latency` and `write_latency`.
impl Default for TimingModel {
    fn default() -> Self {
        TimingModel {
            start: 0,
            read_latency: 8,
            read_word: 1,
            write_latency: 10,
            write_word: 10,
            write_response: 0,
            descriptor: 8,
            pixel: 13,
            gather_row: 1,
            drain_row: 1,
            drain_latency: 0,
            next: 0,
        }
    }
}

impl TimingModel {
    /// Adds the cost of one step to `perf`.
    pub fn charge(&self, step: &Step, sched: &Schedule, perf: &mut PerfCounters) {
        match *step {
            Step::Read { words, .. } => {
                let c = self.read_latency + self.read_word * words;
                perf.cycles += c;
                perf.stall_cycles += c;
                perf.bytes_rd += 8 * words;
            }
            Step::Write { words, bytes, .. } => {
                let c = self.write_latency + self.write_word * words + self.write_response;
                perf.cycles += c;
                perf.stall_cycles += c;
                perf.bytes_wr += bytes;
            }
            Step::Compute { rows, .. } => {
                let steps = sched.items * sched.chunks * sched.planes;
                let per_pixel = self.pixel + self.drain_latency + self.drain_row * rows as u64;
                perf.cycles += steps + sched.items * per_pixel;
                perf.busy_cycles += steps;
                perf.plane_ops += steps;
            }
        }
    }

    /// Fixed costs of a run (START) and of each descriptor (checks and hand-over).
    pub fn charge_start(&self, perf: &mut PerfCounters) {
        perf.cycles += self.start;
    }

    pub fn charge_descriptor(&self, perf: &mut PerfCounters) {
        perf.cycles += self.descriptor + self.next;
    }

    /// The counters a run of `descs` (all valid, in the window, no bus errors) would report on
    /// a device of geometry `shape`, without executing it: what a driver uses to predict a list's
    /// latency.
    pub fn estimate(&self, shape: &CoreShape, descs: &[LayerDescriptor]) -> PerfCounters {
        let mut perf = PerfCounters::default();
        self.charge_start(&mut perf);
        for d in descs {
            self.charge(&plan::descriptor_read(0), &ZERO, &mut perf);
            self.charge_descriptor(&mut perf);
            let Ok(sched) = shape.schedule(d) else {
                continue;
            };
            for step in plan::steps(d, &sched, shape) {
                self.charge(&step, &sched, &mut perf);
            }
        }
        perf
    }
}

const ZERO: Schedule = Schedule {
    k: 0,
    wpr: 0,
    chunks: 0,
    planes: 0,
    regions: 0,
    tiles: 0,
    items: 0,
    block: 0,
    slots: 0,
    in_stride: 0,
    out_stride: 0,
};
