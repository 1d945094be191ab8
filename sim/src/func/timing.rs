//! The timing model of the layer engine: the cycles of a descriptor list on the RTL, from an
//! event model of its decoupled stages (docs/hardware.md, "The layer engine"), without running
//! the RTL. Knows the schedule ([`Schedule`]), the buffer geometry ([`CoreShape`]) and the order
//! of the engine's work (`plan`); knows nothing of registers or data.
//!
//! What is modelled, each as a resource that is busy from one time to another:
//! - the **read port**: the fetch stage issues its requests in program order (descriptor, tile 0's
//!   tables and planes, the input, further tiles), at most [`ROUTE_DEPTH`] in flight; a request's
//!   first beat comes [`TimingModel::read_latency`] cycles after it is issued and never before the
//!   previous request's data is routed; planes, feature maps and inputs are routed a beat per cycle,
//!   tables and descriptor words a word per cycle, region multipliers an entry per cycle. A tile's
//!   loads wait for a free weight slot (two slots when two tiles fit the buffer, else one); the
//!   input waits until the descriptor is handed to the run side (the previous one has completed,
//!   or has issued its last step when `plan::Resident::early_handover` allows: then the new one
//!   issues no step before the result stage has the old one's last item, and writes nothing before
//!   the old one's writes are answered), and a Conv2d map on chip (resident or mirrored,
//!   `plan::Resident`) is not read at all; the next descriptor is fetched once every read of the
//!   current one is issued and it runs;
//! - the **window generator** (Conv2d): one block of W pixels after another, each taking
//!   `caq_spec::shape::gather_cycles` (in_c·kh kernel rows, two per cycle when kw ≤ 4) plus its
//!   pipeline, into one of two patch buffers, freed when the block's last
//!   step has issued;
//! - the **execute stage**: one plane-step per cycle, tile after tile, item (pixel) after item,
//!   a tile once its planes (and, Dense, the input) are in, a block once it is gathered, an item
//!   once the result stage has room for it;
//! - the **writer**: Conv2d outputs per run of `run_bytes` pixels, one burst per row; Dense
//!   outputs one burst per item; one request per [`WRITE_JOB_CYCLES`] cycles, one beat per cycle
//!   on the bus, the response [`TimingModel::write_latency`] cycles after the last beat;
//! - completion: the descriptor ends when its last write is answered.
//!
//! The fixed latencies between these events are the RTL's (constants below), measured on its
//! Verilator model; `calibrate_the_timing_model_against_the_rtl` (sim/tests/devices.rs) and the
//! random-config test compare the whole estimate with PERF_CYCLES.

use std::collections::VecDeque;

use caq_spec::shape::REQUANT_PHASES;
use caq_spec::{CoreShape, LayerDescriptor, Opcode, PerfCounters, Schedule};

use super::plan::{self, Load, Step};

/// Read requests the fetch stage keeps in flight (its route queue).
pub const ROUTE_DEPTH: usize = 8;
/// Cycles from START to the descriptor fetch's request.
const START: u64 = 3;
/// Cycles between two read requests of the fetch stage.
const ISSUE_GAP: u64 = 2;
/// Cycles from a descriptor's last routed word to its first tile request (the checks' stages and
/// the fetch state machine).
const DECODE: u64 = 11;
/// Cycles from a tile's last routed word to its first plane-step.
const TILE_READY: u64 = 3;
/// Cycles from the hand-over of a descriptor whose input map is resident to the window's
/// "loaded" (the fetch stage's skip, registered).
const RESIDENT_READY: u64 = 2;
/// Cycles from the input's (Conv2d: a block's) last routed word to the block's first plane-step
/// beyond the gather itself: the window's pipeline and the hand-over.
const GATHER_FILL: u64 = 8;
/// Idle cycles of the sequencer between two blocks or two items.
const UNIT_GAP: u64 = 1;
/// Idle cycles of the sequencer between two tiles.
const TILE_GAP: u64 = 2;
/// Cycles from an item's (a run's) last plane-step to its write request: the array's and the
/// requantization's pipelines and the request stage.
const OUT_LATENCY: u64 = 18;
/// Cycles global pooling adds after a tile's last pixel besides one per row: the sums' register,
/// the requantization unit's pipeline and the collected means' register.
const MEAN_LATENCY: u64 = 8;
/// Cycles of the writer's request stage per burst.
pub const WRITE_JOB_CYCLES: u64 = 2;
/// Write requests the DMA engine holds behind the one whose beats are going out.
const WRITE_QUEUE: usize = 4;
/// Cycles from a burst's request to its first beat on the bus.
const WRITE_FIRST_BEAT: u64 = 7;
/// Cycles from the last write response to DONE (and the next descriptor's hand-over).
const FINISH: u64 = 3;
/// Cycles from a Conv2d's last plane-step to an early hand-over of the next descriptor: the
/// issue stage empties, then the fetch stage's registered decision.
const EARLY: u64 = 4;
/// Cycles from a Conv2d's last plane-step until the result stage takes the next descriptor's
/// run parameters (its last item through the array and requantization), before which the
/// early-handed-over descriptor issues no step.
const RESULT_TAIL: u64 = 17;
/// Output items the Dense path holds between the array and the bus (the output queue).
const DENSE_QUEUE: usize = caq_spec::shape::DENSE_QUEUE as usize;

/// The memory's latencies the estimate assumes: an AXI slave that answers a read after
/// `read_latency` cycles and a write burst `write_latency` cycles after its last beat, never
/// stalling a beat (`caq_sim::AxiMemOptions`' defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingModel {
    /// Cycles from a read request's acceptance to its first beat.
    pub read_latency: u64,
    /// Cycles from a write burst's last beat to its response.
    pub write_latency: u64,
}

impl Default for TimingModel {
    fn default() -> Self {
        TimingModel {
            read_latency: 8,
            write_latency: 4,
        }
    }
}

/// The AXI side of a port: bus beats, bursts split at `max_burst`-beat boundaries, at most
/// `outstanding` bursts in flight.
#[derive(Clone, Copy)]
struct Bus {
    bytes: u64,
    max_burst: u64,
    outstanding: usize,
}

impl Bus {
    fn of(shape: &CoreShape) -> Bus {
        Bus {
            bytes: 8 * u64::from(shape.bus_words),
            max_burst: u64::from(shape.max_burst),
            outstanding: shape.outstanding as usize,
        }
    }

    /// The beats of each burst of a transfer of `bytes` bytes at byte address `addr`.
    fn bursts(&self, addr: u64, bytes: u64) -> Vec<u64> {
        let first = addr / self.bytes;
        let last = (addr + bytes.max(1) - 1) / self.bytes;
        let mut out = Vec::new();
        let mut beat = first;
        while beat <= last {
            let end = ((beat / self.max_burst + 1) * self.max_burst).min(last + 1);
            out.push(end - beat);
            beat = end;
        }
        out
    }
}

/// The read port: requests in program order, their bursts issued as the DMA engine allows, their
/// data routed one request after another.
struct ReadPort {
    latency: u64,
    bus: Bus,
    /// When the next request can be issued.
    issue_free: u64,
    /// When the next burst's AR can go out.
    ar_free: u64,
    /// When the router is free for the next beat.
    data_free: u64,
    /// When each request in flight finishes routing, oldest first.
    inflight: VecDeque<u64>,
    /// When each burst in flight has all its beats routed, oldest first.
    bursts: VecDeque<u64>,
}

impl ReadPort {
    /// A request for `words` words at `addr` that may be issued from `ready` and routes in
    /// `cycles`: when its data is routed.
    fn read(&mut self, ready: u64, addr: u64, words: u64, cycles: u64) -> u64 {
        let mut issue = ready.max(self.issue_free);
        while self.inflight.len() >= ROUTE_DEPTH {
            let done = self.inflight.pop_front().unwrap_or(0);
            issue = issue.max(done);
        }
        self.issue_free = issue + ISSUE_GAP;
        let bursts = self.bus.bursts(addr, 8 * words);
        let beats: u64 = bursts.iter().sum();
        let mut ar = issue.max(self.ar_free);
        let mut end = self.data_free;
        let mut routed = 0;
        for (i, b) in bursts.iter().enumerate() {
            while self.bursts.len() >= self.bus.outstanding {
                ar = ar.max(self.bursts.pop_front().unwrap_or(0));
            }
            // The burst's share of the routing cycles (tables route slower than a beat a cycle).
            let upto = if i + 1 == bursts.len() {
                cycles
            } else {
                cycles * (routed + b) / beats
            };
            let start = (ar + self.latency + 1).max(self.data_free);
            end = start + (upto - cycles * routed / beats);
            routed += b;
            self.data_free = end;
            // The slot is free in the cycle of the burst's last beat.
            self.bursts.push_back(end - 1);
            ar += 1;
        }
        self.ar_free = ar;
        self.inflight.push_back(end);
        end
    }
}

/// The writer: a request stage that offers a request every [`WRITE_JOB_CYCLES`], a DMA engine
/// that takes a request while fewer than [`WRITE_QUEUE`] wait behind the one whose beats are going
/// out, beats one per cycle, and at most `outstanding` bursts waiting for their response.
struct Writer {
    latency: u64,
    bus: Bus,
    job_free: u64,
    data_free: u64,
    /// When the beats of the last requests were all out (the older first).
    ends: VecDeque<u64>,
    /// When each burst waiting for its response gets it, oldest first.
    answers: VecDeque<u64>,
    /// The last burst's response.
    answered: u64,
    /// No request before this cycle: after an early hand-over the new descriptor's writes wait
    /// until every write of the one before is answered.
    gate: u64,
}

impl Writer {
    /// A write of `bytes` bytes at `first` whose data is ready at `ready` and whose beats take the
    /// data stage `extra` cycles more than one per beat (a rotated Conv2d run's first read, the
    /// cycle after a Dense output): when its beats are formed (the staging it used is free).
    fn write(&mut self, ready: u64, first: u64, bytes: u64, extra: u64) -> u64 {
        let mut job = ready.max(self.job_free).max(self.gate);
        if self.ends.len() > WRITE_QUEUE {
            job = job.max(self.ends.pop_front().unwrap_or(0).saturating_sub(1));
        }
        self.job_free = job + WRITE_JOB_CYCLES;
        let mut start = (job + WRITE_FIRST_BEAT).max(self.data_free) + extra;
        for b in self.bus.bursts(first, bytes) {
            while self.answers.len() >= self.bus.outstanding {
                start = start.max(self.answers.pop_front().unwrap_or(0) + 1);
            }
            let end = start + b;
            self.answers.push_back(end + self.latency);
            self.answered = self.answered.max(end + self.latency);
            start = end;
        }
        self.data_free = start;
        self.ends.push_back(start);
        start
    }
}

/// Where a Conv2d tile's written pixels come from: with max pooling of window k, pooled pixel
/// (py, px) is complete at conv pixel ((py + 1)·k − 1, (px + 1)·k − 1); without, k = 1. Global
/// pooling is the window of the whole map (kh = out_h, kw = out_w): one pixel, complete at the
/// last conv pixel, its R rows' means out [`MEAN_LATENCY`] + R cycles later.
struct Pooling {
    kh: u64,
    kw: u64,
    /// Conv output width, pooled rows and pooled columns.
    ow: u64,
    ph: u64,
    pw: u64,
    /// Cycles the written pixel spends after its last conv pixel leaves requantization.
    extra: u64,
}

impl Pooling {
    fn of(d: &LayerDescriptor, rows: u32) -> Pooling {
        let (oh, ow) = (u64::from(d.output.h), u64::from(d.output.w));
        let (kh, kw, extra) = match d.global_pool {
            Some(_) => (oh, ow, MEAN_LATENCY + u64::from(rows)),
            None => {
                let k = u64::from(d.max_pool.max(1));
                (k, k, 0)
            }
        };
        Pooling {
            kh,
            kw,
            ow,
            ph: oh / kh,
            pw: ow / kw,
            extra,
        }
    }

    /// The conv pixel (row-major index) that completes written pixel `q`.
    fn pixel_of(&self, q: u64) -> u64 {
        let (py, px) = (q / self.pw, q % self.pw);
        ((py + 1) * self.kh - 1) * self.ow + (px + 1) * self.kw - 1
    }

    /// Written pixels completed by the conv pixels before `p`.
    fn written_before(&self, p: u64) -> u64 {
        let (y, x) = (p / self.ow, p % self.ow);
        let rows = (y / self.kh).min(self.ph);
        let part = if y % self.kh == self.kh - 1 && y / self.kh < self.ph {
            (x / self.kw).min(self.pw)
        } else {
            0
        };
        rows * self.pw + part
    }
}

/// Cycles the router spends on a read of `words` words at `addr`.
fn route_cycles(load: Load, addr: u64, words: u64, shape: &CoreShape) -> u64 {
    let bus = u64::from(shape.bus_words);
    let beats = ((addr / 8) % bus + words).div_ceil(bus);
    match load {
        Load::Descriptor | Load::Bias | Load::Requant => words,
        Load::GroupMult => words * 4,
        Load::Input if shape.abanks < shape.bus_words => words,
        Load::Input | Load::Plane { .. } => beats,
    }
}

impl TimingModel {
    /// The counters a run of `descs` (all valid, in the window, no bus errors) would report on a
    /// device of geometry `shape`, without executing it: what a driver uses to predict a list's
    /// latency. `cycles` counts from START to DONE; `stall_cycles` the cycles a descriptor ran
    /// without a plane-step.
    pub fn estimate(&self, shape: &CoreShape, descs: &[LayerDescriptor]) -> PerfCounters {
        let mut perf = PerfCounters::default();
        let mut e = Engine {
            shape,
            rd: ReadPort {
                latency: self.read_latency,
                bus: Bus::of(shape),
                issue_free: START,
                ar_free: 0,
                data_free: 0,
                inflight: VecDeque::new(),
                bursts: VecDeque::new(),
            },
            wr: Writer {
                latency: self.write_latency,
                bus: Bus::of(shape),
                job_free: 0,
                data_free: 0,
                ends: VecDeque::new(),
                answers: VecDeque::new(),
                answered: 0,
                gate: 0,
            },
            slots: [0; 2],
            next_slot: 0,
            claims: VecDeque::new(),
            exec_free: 0,
            gather_free: 0,
            buf_free: [0; 2],
            blocks: 0,
            queue: VecDeque::new(),
            stage_base: 0,
        };
        let mut done = 0u64;
        let mut fetch_ready = START;
        let mut resident = plan::Resident::default();
        // The descriptor before (when it ran): it, its last step's time and its items staged;
        // and the span its stall cycles are counted over (hand-over to completion, or to the next
        // one's early hand-over).
        let mut prev: Option<(&LayerDescriptor, u64, u64)> = None;
        let mut span: Option<(u64, u64, u64)> = None;
        for (i, d) in descs.iter().enumerate() {
            // The descriptor (the list taken as 128-byte aligned): fetched, routed a word per
            // cycle, checked.
            let desc_in = e.rd.read(fetch_ready, 128 * i as u64, 16, 16);
            perf.bytes_rd += 128;
            let checked = desc_in + DECODE;
            let Ok(s) = shape.schedule(d) else {
                done = done.max(checked) + FINISH;
                fetch_ready = done;
                prev = None;
                continue;
            };
            let steps = plan::steps(d, &s, shape);
            let early = prev.filter(|&(p, _, _)| resident.early_handover(p, d, &s, &steps, shape));
            let handover = match early {
                Some((_, last_step, staged)) => {
                    // Not before the writes of the descriptor before the previous one are
                    // answered; the writer finishes the previous one's runs first; the staging
                    // positions run on behind them; no step before the result stage is free.
                    let handover = checked.max(last_step + EARLY).max(e.wr.gate);
                    e.wr.gate = e.wr.answered + 1;
                    e.stage_base += staged;
                    e.exec_free = e.exec_free.max(last_step + RESULT_TAIL);
                    handover
                }
                None => {
                    e.stage_base = 0;
                    checked.max(done + 1)
                }
            };
            if let Some((from, to, busy)) = span.take() {
                perf.stall_cycles += (to.min(handover).max(from) - from).saturating_sub(busy);
            }
            let input_resident = steps.iter().any(|st| resident.skips(d, st));
            let (end, all_issued) = e.descriptor(d, &s, checked, handover, input_resident);
            for step in &steps {
                match *step {
                    Step::Read { words, .. } if !resident.skips(d, step) => {
                        perf.bytes_rd += 8 * words
                    }
                    Step::Write { bytes, .. } => perf.bytes_wr += bytes,
                    Step::Read { .. } | Step::Compute { .. } => {}
                }
                resident.observe(d, shape, step);
            }
            let busy = s.tiles * s.items * s.chunks * s.planes;
            perf.plane_ops += busy;
            perf.busy_cycles += busy;
            done = end + FINISH;
            span = Some((handover, done, busy));
            prev = (d.op == Opcode::Conv2d).then_some((d, e.exec_free, s.tiles * s.written));
            fetch_ready = all_issued.max(handover);
        }
        if let Some((from, to, busy)) = span {
            perf.stall_cycles += (to - from).saturating_sub(busy);
        }
        perf.cycles = done;
        perf
    }
}

/// The engine's resources across a list.
struct Engine<'a> {
    shape: &'a CoreShape,
    rd: ReadPort,
    wr: Writer,
    /// When each weight slot is free again (its tile has computed), and the next slot a
    /// two-slot tile takes.
    slots: [u64; 2],
    next_slot: usize,
    /// The slots of each tile loaded and not yet computed, in order.
    claims: VecDeque<[bool; 2]>,
    /// When the sequencer can issue its next step.
    exec_free: u64,
    /// Window generator: when it can start the next gather; when each patch buffer is free.
    gather_free: u64,
    buf_free: [u64; 2],
    blocks: u64,
    /// Dense: when each output in the output queue leaves it.
    queue: VecDeque<u64>,
    /// The staging position the running descriptor's first item takes: 0 after a hand-over
    /// to an idle result stage, past the previous descriptor's items after an early one.
    stage_base: u64,
}

impl Engine<'_> {
    /// The events of one descriptor checked at `checked` and handed to the run side at
    /// `handover` (its input map already on chip if `input_resident`): when its last output is
    /// written (or its last step issued) and when its last read was issued.
    fn descriptor(
        &mut self,
        d: &LayerDescriptor,
        s: &Schedule,
        checked: u64,
        handover: u64,
        input_resident: bool,
    ) -> (u64, u64) {
        let shape = self.shape;
        let tiles = s.tiles as usize;
        let steps = plan::steps(d, s, shape);
        // The reads of each tile, in program order (the input after tile 0's).
        let mut tile_reads: Vec<Vec<(Load, u64, u64)>> = vec![Vec::new(); tiles];
        let mut input = (0, 0);
        for st in &steps {
            if let Step::Read {
                load,
                tile,
                addr,
                words,
            } = *st
            {
                if load == Load::Input {
                    input = (addr, words);
                } else {
                    tile_reads[tile as usize].push((load, addr, words));
                }
            }
        }
        self.exec_free = self.exec_free.max(handover);
        self.gather_free = self.gather_free.max(handover);
        let mut loaded = vec![0u64; tiles];
        let mut computed = 0usize;
        let mut input_in = u64::MAX;
        let mut ready = checked;
        for t in 0..tiles {
            // The tile's slot: with two slots, the next one; with one, the whole buffer. Tiles of
            // this descriptor that must compute first to free it are computed now.
            let need = if s.slots == 2 { t.saturating_sub(1) } else { t };
            while computed < need {
                self.tile(d, s, computed, loaded[computed], input_in);
                computed += 1;
            }
            let claim = if s.slots == 2 {
                let slot = self.next_slot;
                self.next_slot ^= 1;
                [slot == 0, slot == 1]
            } else {
                [true, true]
            };
            let free = (0..2)
                .filter(|&i| claim[i])
                .map(|i| self.slots[i])
                .max()
                .unwrap_or(0);
            self.claims.push_back(claim);
            ready = ready.max(free);
            for &(load, addr, words) in &tile_reads[t] {
                let cycles = route_cycles(load, addr, words, shape);
                loaded[t] = self.rd.read(ready, addr, words, cycles);
            }
            if t == 0 {
                input_in = if input_resident {
                    ready.max(handover) + RESIDENT_READY
                } else {
                    let cycles = route_cycles(Load::Input, input.0, input.1, shape);
                    self.rd.read(ready.max(handover), input.0, input.1, cycles)
                };
            }
        }
        let all_issued = self.rd.issue_free;
        while computed < tiles {
            self.tile(d, s, computed, loaded[computed], input_in);
            computed += 1;
        }
        (self.wr.answered.max(self.exec_free), all_issued)
    }

    /// Tile `t` of `d`, its planes in at `loaded`, the input at `input_in`: its steps and its
    /// outputs' writes; frees its weight slot when its last step has issued.
    fn tile(&mut self, d: &LayerDescriptor, s: &Schedule, t: usize, loaded: u64, input_in: u64) {
        let shape = self.shape;
        // An item's plane-steps, or the result stage's phases if it has fewer.
        let per_item = (s.chunks * s.planes).max(u64::from(REQUANT_PHASES));
        let rows = u64::from(shape.rows);
        let o0 = t as u64 * rows;
        let n = rows.min(u64::from(d.output.c) - o0);
        let out = d.output_addr.0;
        let gap = if t == 0 { 0 } else { TILE_GAP };
        let mut at = (self.exec_free + gap).max(loaded + TILE_READY);
        match d.op {
            Opcode::Dense => {
                at = at.max(input_in + TILE_READY);
                for item in 0..s.items {
                    if self.queue.len() >= DENSE_QUEUE {
                        at = at.max(self.queue.pop_front().unwrap_or(0));
                    }
                    let end = at + per_item;
                    let first = out + item * s.out_stride + o0;
                    let formed = self.wr.write(end + OUT_LATENCY, first, n, 1);
                    self.queue.push_back(formed);
                    at = end + UNIT_GAP;
                }
            }
            Opcode::Conv2d => {
                let (oh, ow) = (u64::from(d.output.h), u64::from(d.output.w));
                let gather = caq_spec::shape::gather_cycles(d);
                let run = u64::from(shape.run_bytes);
                let stage = u64::from(shape.stage_bytes);
                let pool = Pooling::of(d, shape.rows);
                // Runs of the tile waiting for their staging to be freed: (past their last
                // written pixel, when freed).
                let mut runs: VecDeque<(u64, u64)> = VecDeque::new();
                let mut pixel = 0u64;
                let mut run_first = 0u64;
                for _ in 0..oh {
                    let mut x = 0;
                    while x < ow {
                        let w = s.block.min(ow - x);
                        // The gather, into the patch buffer of the block before last.
                        let buf = (self.blocks % 2) as usize;
                        let g_end = self.gather_free.max(input_in).max(self.buf_free[buf]) + gather;
                        self.gather_free = g_end;
                        at = at.max(g_end + GATHER_FILL);
                        // Staging room for the pixels the block writes.
                        let staged = pool.written_before(pixel + w);
                        while let Some(&(past, freed)) = runs.front() {
                            if past + stage > staged {
                                break;
                            }
                            at = at.max(freed);
                            runs.pop_front();
                        }
                        // Runs that end within the block: written once their last pixel is out.
                        while run_first < s.written {
                            let past = (run_first + run).min(s.written);
                            let last = pool.pixel_of(past - 1);
                            if last >= pixel + w {
                                break;
                            }
                            let last_out =
                                at + (last + 1 - pixel) * per_item + OUT_LATENCY + pool.extra;
                            let mut formed = 0;
                            for row in 0..n {
                                let first = out + (o0 + row) * s.written + run_first;
                                // The run's staging position against its address: a rotated
                                // run needs one more read.
                                let pos = self.stage_base + t as u64 * s.written + run_first;
                                let extra = u64::from(
                                    !pos.wrapping_sub(first).is_multiple_of(self.wr.bus.bytes),
                                );
                                formed = self.wr.write(last_out, first, past - run_first, extra);
                            }
                            runs.push_back((past, formed));
                            run_first = past;
                        }
                        let end = at + w * per_item;
                        self.buf_free[buf] = end;
                        self.blocks += 1;
                        pixel += w;
                        x += w;
                        at = end + UNIT_GAP;
                    }
                }
            }
        }
        self.exec_free = at - UNIT_GAP;
        // The tile's slots are free once its last step has issued.
        let claim = self.claims.pop_front().unwrap_or([false; 2]);
        for (slot, &held) in self.slots.iter_mut().zip(&claim) {
            if held {
                *slot = self.exec_free;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pooling;

    /// The pixel that completes each written pixel, and the count of written pixels before any
    /// conv pixel, agree with each other and with a direct enumeration of the windows: max
    /// pooling's k×k windows and global pooling's whole map.
    #[test]
    fn pooled_pixels_complete_where_their_window_ends() {
        for (oh, ow) in [(1, 1), (5, 7), (8, 8), (24, 24), (9, 17)] {
            let windows = [(1u64, 1u64), (2, 2), (4, 4), (8, 8), (oh, ow)];
            for (kh, kw) in windows {
                if kh > oh || kw > ow {
                    continue;
                }
                let p = Pooling {
                    kh,
                    kw,
                    ow,
                    ph: oh / kh,
                    pw: ow / kw,
                    extra: 0,
                };
                // Direct: the conv pixels (row-major) whose window they complete.
                let ends: Vec<u64> = (0..oh * ow)
                    .filter(|&i| {
                        let (y, x) = (i / ow, i % ow);
                        y % kh == kh - 1 && x % kw == kw - 1 && y / kh < p.ph && x / kw < p.pw
                    })
                    .collect();
                let what = format!("{oh}x{ow} window {kh}x{kw}");
                assert_eq!(ends.len() as u64, p.ph * p.pw, "{what}");
                for (q, &end) in ends.iter().enumerate() {
                    assert_eq!(p.pixel_of(q as u64), end, "{what} q {q}");
                }
                for i in 0..=oh * ow {
                    let before = ends.iter().filter(|&&e| e < i).count() as u64;
                    assert_eq!(p.written_before(i), before, "{what} pixel {i}");
                }
            }
        }
    }
}
