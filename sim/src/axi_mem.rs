//! [`AxiMem`]: DDR behind the accelerator's AXI4 master port `m_axi_*`, with a protocol checker
//! on everything the master does.
//!
//! The memory is a flat byte array at [`AxiMemOptions::base`]. Reads are answered in order after
//! a configurable latency, several bursts may be in flight, and every channel's READY (AR, AW, W)
//! and VALID (R, B) is dropped at random (seeded) to exercise back-pressure. Address ranges can be
//! made to answer SLVERR or DECERR on reads, writes or both (`caq_sim::fault`).
//!
//! The checker ([`AxiChecker`]) fails the run with [`SimError::AxiProtocol`] — naming the rule,
//! the channel and the cycle — on any AXI4 rule (IHI 0022) the master breaks: a VALID dropped or
//! its payload changed before READY, a burst crossing 4 KiB or longer than `axi.max_burst`, a
//! size other than the bus width, a burst type other than INCR, an unaligned address, an access
//! outside the memory, a misplaced WLAST (write data count != AxLEN + 1), more reads in flight
//! than `axi.max_outstanding_reads`, write data or a response the master leaves waiting too long.
//! It is independent of the model's ports, so it is tested with wrong stimulus directly.
//!
//! This module knows AXI4 and the `m_axi_*` port names; it knows nothing of the core or the
//! register map.

use std::collections::VecDeque;
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::axi::Resp;
use crate::error::SimError;
use crate::fault::{Fault, FaultDir, InjectFaults};
use crate::rtl::{AxiPorts, RtlModel};

/// Where the memory sits unless told otherwise.
pub const DEFAULT_BASE: u64 = 0x1000_0000;
/// Its default size.
pub const DEFAULT_SIZE: u64 = 4 << 20;
/// AXI's boundary no burst may cross.
const PAGE: u64 = 4096;

/// How the memory behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct AxiMemOptions {
    pub base: u64,
    pub size: u64,
    /// Cycles from the AR handshake to the burst's first R beat (at least 1).
    pub read_latency: u32,
    /// Cycles from a burst's last W beat (and its AW) to its B (at least 1).
    pub write_latency: u32,
    /// Chance in percent that a READY (AR, AW, W) or a VALID (R, B) the memory could raise is
    /// held low in a given cycle.
    pub stall_percent: u8,
    /// Seeds the stalls.
    pub seed: u64,
    /// Address ranges answering errors.
    pub faults: Vec<Fault>,
    /// Cycles the master may leave accepted write data missing or a response unaccepted.
    pub stuck_cycles: u64,
    /// Keep every accepted AR and AW ([`AxiMem::bursts`]), for tests that look at the split.
    pub log_bursts: bool,
}

impl Default for AxiMemOptions {
    fn default() -> Self {
        AxiMemOptions {
            base: DEFAULT_BASE,
            size: DEFAULT_SIZE,
            read_latency: 8,
            write_latency: 4,
            stall_percent: 0,
            seed: 0,
            faults: Vec::new(),
            stuck_cycles: 100_000,
            log_bursts: false,
        }
    }
}

/// The bus shape the checker enforces (from the config the model was built from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusShape {
    /// Bytes per beat: 8 or 16.
    pub bytes: u32,
    pub max_burst: u32,
    pub max_outstanding_reads: u32,
}

/// An AR or AW request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrReq {
    pub id: u64,
    pub addr: u64,
    pub len: u8,
    pub size: u8,
    pub burst: u8,
}

impl AddrReq {
    fn beats(&self) -> u64 {
        u64::from(self.len) + 1
    }
}

/// A W beat: up to 128 bits of data as two words (the second is 0 on a 64-bit bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WBeat {
    pub data: [u64; 2],
    pub strb: u16,
    pub last: bool,
}

/// An R beat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RBeat {
    pub id: u64,
    pub data: [u64; 2],
    pub resp: Resp,
    pub last: bool,
}

/// A B response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BResp {
    pub id: u64,
    pub resp: Resp,
}

/// What the master drives in one cycle: a channel's payload when its VALID is high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MasterOut {
    pub ar: Option<AddrReq>,
    pub aw: Option<AddrReq>,
    pub w: Option<WBeat>,
    pub rready: bool,
    pub bready: bool,
}

/// What the slave drives in one cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlaveOut {
    pub arready: bool,
    pub awready: bool,
    pub wready: bool,
    pub r: Option<RBeat>,
    pub b: Option<BResp>,
}

/// An AXI channel, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Ar,
    Aw,
    W,
    R,
    B,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Ar => "AR",
            Channel::Aw => "AW",
            Channel::W => "W",
            Channel::R => "R",
            Channel::B => "B",
        })
    }
}

/// The AXI4 rule a master broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// VALID fell before its handshake (A3.2.1).
    ValidDropped,
    /// The payload changed while VALID waited for READY (A3.2.1).
    PayloadChanged,
    /// A burst crosses a 4 KiB boundary (A3.4.1).
    Crosses4k,
    /// AxLEN + 1 beyond the configured max_burst.
    BurstTooLong,
    /// AxSIZE is not the bus width.
    WrongSize,
    /// AxBURST is not INCR.
    WrongBurstType,
    /// The address is not aligned to the beat.
    Unaligned,
    /// The burst reaches outside the memory.
    OutsideMemory,
    /// More read bursts in flight than max_outstanding_reads.
    TooManyReads,
    /// WLAST not on beat AxLEN + 1 (the write data count differs from the burst length).
    WlastMisplaced,
    /// An accepted AW's data did not arrive in time, or W data arrived for no AW in time.
    WriteDataMissing,
    /// An R beat or a B response waited for READY too long.
    ResponseNotAccepted,
    /// A burst was still in flight when the bus should have been idle.
    InFlight,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::ValidDropped => "VALID dropped before READY",
            Rule::PayloadChanged => "payload changed while VALID waited for READY",
            Rule::Crosses4k => "burst crosses a 4 KiB boundary",
            Rule::BurstTooLong => "burst longer than axi.max_burst",
            Rule::WrongSize => "AxSIZE is not the bus width",
            Rule::WrongBurstType => "AxBURST is not INCR",
            Rule::Unaligned => "address not aligned to the beat",
            Rule::OutsideMemory => "burst outside the memory",
            Rule::TooManyReads => "more read bursts in flight than axi.max_outstanding_reads",
            Rule::WlastMisplaced => "WLAST not on beat AxLEN + 1",
            Rule::WriteDataMissing => "write data missing",
            Rule::ResponseNotAccepted => "response never accepted",
            Rule::InFlight => "burst still in flight",
        })
    }
}

/// Checks the master's side of AXI4, one cycle at a time.
#[derive(Debug, Clone)]
pub struct AxiChecker {
    shape: BusShape,
    /// Memory `[base, end)`.
    base: u64,
    end: u64,
    stuck_cycles: u64,
    /// Last cycle's master outputs and whether each channel's VALID was left waiting.
    prev: MasterOut,
    ar_waiting: bool,
    aw_waiting: bool,
    w_waiting: bool,
    /// Read bursts accepted whose RLAST has not been accepted.
    reads_in_flight: u32,
    /// AW bursts (beats, accepted at cycle) whose WLAST has not been accepted.
    aw_open: VecDeque<(u64, u64)>,
    /// W beats of the burst in progress.
    w_beats: u64,
    /// Complete W bursts (beats, at cycle) sent ahead of their AW.
    w_ahead: VecDeque<(u64, u64)>,
    /// Cycles the slave's R / B VALID has waited.
    r_wait: u64,
    b_wait: u64,
}

impl AxiChecker {
    pub fn new(shape: BusShape, base: u64, size: u64, stuck_cycles: u64) -> AxiChecker {
        AxiChecker {
            shape,
            base,
            end: base + size,
            stuck_cycles,
            prev: MasterOut::default(),
            ar_waiting: false,
            aw_waiting: false,
            w_waiting: false,
            reads_in_flight: 0,
            aw_open: VecDeque::new(),
            w_beats: 0,
            w_ahead: VecDeque::new(),
            r_wait: 0,
            b_wait: 0,
        }
    }

    /// Checks one cycle: what the master and the slave drove before the rising edge.
    pub fn cycle(&mut self, cycle: u64, m: &MasterOut, s: &SlaveOut) -> Result<(), SimError> {
        let fail = |channel, rule, detail: String| SimError::AxiProtocol {
            channel,
            cycle,
            rule,
            detail,
        };
        // Handshake stability (A3.2.1).
        if self.ar_waiting {
            stable(Channel::Ar, m.ar, self.prev.ar).map_err(|(r, d)| fail(Channel::Ar, r, d))?;
        }
        if self.aw_waiting {
            stable(Channel::Aw, m.aw, self.prev.aw).map_err(|(r, d)| fail(Channel::Aw, r, d))?;
        }
        if self.w_waiting {
            stable(Channel::W, m.w, self.prev.w).map_err(|(r, d)| fail(Channel::W, r, d))?;
        }
        if let Some(ar) = &m.ar {
            self.check_burst(ar)
                .map_err(|(r, d)| fail(Channel::Ar, r, d))?;
        }
        if let Some(aw) = &m.aw {
            self.check_burst(aw)
                .map_err(|(r, d)| fail(Channel::Aw, r, d))?;
        }
        let ar_fire = m.ar.is_some() && s.arready;
        let aw_fire = m.aw.is_some() && s.awready;
        let w_fire = m.w.is_some() && s.wready;
        let r_fire = s.r.is_some() && m.rready;
        if ar_fire {
            if self.reads_in_flight >= self.shape.max_outstanding_reads {
                return Err(fail(
                    Channel::Ar,
                    Rule::TooManyReads,
                    format!(
                        "{} bursts already in flight, max_outstanding_reads = {}",
                        self.reads_in_flight, self.shape.max_outstanding_reads
                    ),
                ));
            }
            self.reads_in_flight += 1;
        }
        if r_fire && s.r.is_some_and(|r| r.last) {
            self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
        }
        if let (true, Some(aw)) = (aw_fire, m.aw) {
            match self.w_ahead.pop_front() {
                Some((beats, _)) if beats != aw.beats() => {
                    return Err(fail(
                        Channel::W,
                        Rule::WlastMisplaced,
                        format!(
                            "the burst's data (sent before its AW) had {beats} beats, AWLEN + 1 = {}",
                            aw.beats()
                        ),
                    ));
                }
                Some(_) => {}
                None => self.aw_open.push_back((aw.beats(), cycle)),
            }
        }
        if let (true, Some(w)) = (w_fire, m.w) {
            self.w_beats += 1;
            match self.aw_open.front() {
                Some(&(beats, _)) => {
                    if w.last != (self.w_beats == beats) {
                        return Err(fail(
                            Channel::W,
                            Rule::WlastMisplaced,
                            format!(
                                "beat {} of a {beats}-beat burst has WLAST = {}",
                                self.w_beats, w.last
                            ),
                        ));
                    }
                    if w.last {
                        self.aw_open.pop_front();
                        self.w_beats = 0;
                    }
                }
                None => {
                    if u64::from(self.shape.max_burst) < self.w_beats {
                        return Err(fail(
                            Channel::W,
                            Rule::WlastMisplaced,
                            format!(
                                "{} beats without WLAST and no AW (max_burst {})",
                                self.w_beats, self.shape.max_burst
                            ),
                        ));
                    }
                    if w.last {
                        self.w_ahead.push_back((self.w_beats, cycle));
                        self.w_beats = 0;
                    }
                }
            }
        }
        // Liveness: nothing the master owes may wait forever.
        for (queue, what) in [
            (&self.aw_open, "the data of an accepted AW"),
            (&self.w_ahead, "the AW of write data already sent"),
        ] {
            if let Some(&(_, at)) = queue.front()
                && cycle - at > self.stuck_cycles
            {
                return Err(fail(
                    Channel::W,
                    Rule::WriteDataMissing,
                    format!(
                        "{what} (cycle {at}) has not arrived in {} cycles",
                        self.stuck_cycles
                    ),
                ));
            }
        }
        self.r_wait = if s.r.is_some() && !m.rready {
            self.r_wait + 1
        } else {
            0
        };
        self.b_wait = if s.b.is_some() && !m.bready {
            self.b_wait + 1
        } else {
            0
        };
        for (wait, ch) in [(self.r_wait, Channel::R), (self.b_wait, Channel::B)] {
            if wait > self.stuck_cycles {
                return Err(fail(
                    ch,
                    Rule::ResponseNotAccepted,
                    format!("{ch}VALID has waited {wait} cycles for {ch}READY"),
                ));
            }
        }
        self.ar_waiting = m.ar.is_some() && !ar_fire;
        self.aw_waiting = m.aw.is_some() && !aw_fire;
        self.w_waiting = m.w.is_some() && !w_fire;
        self.prev = *m;
        Ok(())
    }

    /// An error unless no burst is in flight on the master's side (reads without their RLAST,
    /// writes without all their data).
    pub fn check_idle(&self, cycle: u64) -> Result<(), SimError> {
        let fail = |channel, detail: String| SimError::AxiProtocol {
            channel,
            cycle,
            rule: Rule::InFlight,
            detail,
        };
        if self.reads_in_flight != 0 {
            return Err(fail(
                Channel::R,
                format!("{} read bursts without their RLAST", self.reads_in_flight),
            ));
        }
        if !self.aw_open.is_empty() || self.w_beats != 0 || !self.w_ahead.is_empty() {
            return Err(fail(
                Channel::W,
                format!(
                    "{} AW bursts without all their data, {} W beats of an open burst, {} W bursts \
                     without an AW",
                    self.aw_open.len(),
                    self.w_beats,
                    self.w_ahead.len()
                ),
            ));
        }
        Ok(())
    }

    fn check_burst(&self, a: &AddrReq) -> Result<(), (Rule, String)> {
        let bytes = u64::from(self.shape.bytes);
        let total = a.beats() * bytes;
        let at = format!("addr {:#x}, len {}", a.addr, a.len);
        if a.burst != 1 {
            return Err((Rule::WrongBurstType, format!("{at}: burst {}", a.burst)));
        }
        if 1u64 << a.size != bytes {
            return Err((
                Rule::WrongSize,
                format!(
                    "{at}: size {} ({} bytes), bus {bytes} bytes",
                    a.size,
                    1u64 << a.size
                ),
            ));
        }
        if a.beats() > u64::from(self.shape.max_burst) {
            return Err((
                Rule::BurstTooLong,
                format!(
                    "{at}: {} beats, max_burst {}",
                    a.beats(),
                    self.shape.max_burst
                ),
            ));
        }
        if !a.addr.is_multiple_of(bytes) {
            return Err((Rule::Unaligned, format!("{at}: {bytes}-byte beats")));
        }
        if a.addr / PAGE != (a.addr + total - 1) / PAGE {
            return Err((
                Rule::Crosses4k,
                format!("{at}: {total} bytes end at {:#x}", a.addr + total),
            ));
        }
        if a.addr < self.base || a.addr + total > self.end {
            return Err((
                Rule::OutsideMemory,
                format!("{at}: memory is [{:#x}, {:#x})", self.base, self.end),
            ));
        }
        Ok(())
    }
}

/// A VALID that waited must still be high with the same payload.
fn stable<T: PartialEq + fmt::Debug>(
    ch: Channel,
    now: Option<T>,
    before: Option<T>,
) -> Result<(), (Rule, String)> {
    match (now, before) {
        (None, _) => Err((
            Rule::ValidDropped,
            format!("{ch}VALID fell without {ch}READY"),
        )),
        (Some(n), Some(b)) if n != b => {
            Err((Rule::PayloadChanged, format!("was {b:?}, now {n:?}")))
        }
        _ => Ok(()),
    }
}

/// A read burst being answered.
#[derive(Debug, Clone, Copy)]
struct ReadBurst {
    req: AddrReq,
    /// Beats already sent.
    sent: u64,
    /// First cycle its first beat may appear.
    ready_at: u64,
}

/// The memory and its checker.
#[derive(Debug)]
pub struct AxiMem {
    options: AxiMemOptions,
    shape: BusShape,
    bytes: Vec<u8>,
    rng: ChaCha8Rng,
    checker: AxiChecker,
    reads: VecDeque<ReadBurst>,
    aws: VecDeque<AddrReq>,
    w_data: VecDeque<WBeat>,
    /// B responses and the first cycle each may appear.
    bs: VecDeque<(BResp, u64)>,
    /// The R beat / B response presented and not yet accepted (held, as AXI requires).
    r_hold: Option<RBeat>,
    b_hold: Option<BResp>,
    cycle: u64,
    log: Vec<(Channel, AddrReq)>,
}

impl AxiMem {
    /// A memory for the bus of `cfg`'s accelerator, zero-filled.
    pub fn new(cfg: &caq_spec::AccelConfig, options: AxiMemOptions) -> AxiMem {
        let shape = BusShape {
            bytes: cfg.axi.data_width / 8,
            max_burst: cfg.axi.max_burst,
            max_outstanding_reads: cfg.axi.max_outstanding_reads,
        };
        AxiMem::with_shape(shape, options)
    }

    /// A memory for a given bus shape (for tests of the checker and the memory without a model).
    pub fn with_shape(shape: BusShape, options: AxiMemOptions) -> AxiMem {
        eprintln!(
            "AxiMem: seed {}, stall {}%, latency rd {} wr {}",
            options.seed, options.stall_percent, options.read_latency, options.write_latency
        );
        AxiMem {
            shape,
            bytes: vec![0; options.size as usize],
            rng: ChaCha8Rng::seed_from_u64(options.seed ^ 0xa71_3e3),
            checker: AxiChecker::new(shape, options.base, options.size, options.stuck_cycles),
            options,
            reads: VecDeque::new(),
            aws: VecDeque::new(),
            w_data: VecDeque::new(),
            bs: VecDeque::new(),
            r_hold: None,
            b_hold: None,
            cycle: 0,
            log: Vec::new(),
        }
    }

    pub fn options(&self) -> &AxiMemOptions {
        &self.options
    }

    /// The bus shape the checker enforces.
    pub fn shape(&self) -> BusShape {
        self.shape
    }

    /// The AR and AW bursts accepted so far, in order (with [`AxiMemOptions::log_bursts`]).
    pub fn bursts(&self) -> &[(Channel, AddrReq)] {
        &self.log
    }

    /// Forgets the logged bursts.
    pub fn clear_bursts(&mut self) {
        self.log.clear();
    }

    /// Stalls from now on.
    pub fn set_stall_percent(&mut self, percent: u8) {
        self.options.stall_percent = percent;
    }

    /// `[base, base + size)`.
    pub fn region(&self) -> (u64, u64) {
        (self.options.base, self.options.size)
    }

    fn offset(&self, addr: u64, len: usize) -> Result<usize, SimError> {
        let end = self.options.base + self.options.size;
        match addr.checked_sub(self.options.base) {
            Some(off) if addr.checked_add(len as u64).is_some_and(|e| e <= end) => Ok(off as usize),
            _ => Err(SimError::Memory {
                addr,
                len: len as u64,
                base: self.options.base,
                end,
            }),
        }
    }

    /// Backdoor write (no bus cycles).
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), SimError> {
        let o = self.offset(addr, data.len())?;
        self.bytes[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// Backdoor read (no bus cycles).
    pub fn read(&self, addr: u64, len: usize) -> Result<&[u8], SimError> {
        let o = self.offset(addr, len)?;
        Ok(&self.bytes[o..o + len])
    }

    /// An error unless the bus is idle: nothing in flight on either side.
    pub fn check_idle(&self) -> Result<(), SimError> {
        self.checker.check_idle(self.cycle)?;
        if self.r_hold.is_some()
            || !self.reads.is_empty()
            || self.b_hold.is_some()
            || !self.bs.is_empty()
        {
            return Err(SimError::AxiProtocol {
                channel: if self.bs.is_empty() && self.b_hold.is_none() {
                    Channel::R
                } else {
                    Channel::B
                },
                cycle: self.cycle,
                rule: Rule::InFlight,
                detail: "responses not yet accepted".into(),
            });
        }
        Ok(())
    }

    fn coin(&mut self) -> bool {
        let p = self.options.stall_percent;
        p == 0 || self.rng.random_range(0..100u8) >= p
    }

    fn error_at(&self, addr: u64, len: u64, write: bool) -> Resp {
        self.options
            .faults
            .iter()
            .find_map(|f| f.answer(addr, len, write))
            .unwrap_or(Resp::Okay)
    }

    /// What the memory drives this cycle (before the master's outputs are known).
    pub fn slave_out(&mut self) -> SlaveOut {
        let arready = self.coin();
        let awready = self.coin();
        let wready = self.coin();
        if self.r_hold.is_none()
            && let Some(rb) = self.reads.front().copied()
            && rb.ready_at <= self.cycle
            && self.coin()
        {
            let bytes = u64::from(self.shape.bytes);
            let addr = rb.req.addr + rb.sent * bytes;
            let resp = self.error_at(addr, bytes, false);
            let mut data = [0u64; 2];
            if resp == Resp::Okay {
                for (i, w) in data
                    .iter_mut()
                    .enumerate()
                    .take(self.shape.bytes as usize / 8)
                {
                    // The checker keeps bursts inside the memory.
                    let o = (addr - self.options.base) as usize + 8 * i;
                    *w = u64::from_le_bytes(self.bytes[o..o + 8].try_into().unwrap_or([0; 8]));
                }
            }
            self.r_hold = Some(RBeat {
                id: rb.req.id,
                data,
                resp,
                last: rb.sent + 1 == rb.req.beats(),
            });
        }
        if self.b_hold.is_none()
            && let Some(&(b, at)) = self.bs.front()
            && at <= self.cycle
            && self.coin()
        {
            self.b_hold = Some(b);
            self.bs.pop_front();
        }
        SlaveOut {
            arready,
            awready,
            wready,
            r: self.r_hold,
            b: self.b_hold,
        }
    }

    /// The rising edge: checks the cycle and performs its handshakes.
    pub fn edge(&mut self, m: &MasterOut, s: &SlaveOut) -> Result<(), SimError> {
        self.checker.cycle(self.cycle, m, s)?;
        let now = self.cycle;
        self.cycle += 1;
        if self.options.log_bursts {
            if let (Some(ar), true) = (m.ar, s.arready) {
                self.log.push((Channel::Ar, ar));
            }
            if let (Some(aw), true) = (m.aw, s.awready) {
                self.log.push((Channel::Aw, aw));
            }
        }
        if let (Some(ar), true) = (m.ar, s.arready) {
            self.reads.push_back(ReadBurst {
                req: ar,
                sent: 0,
                ready_at: now + u64::from(self.options.read_latency.max(1)),
            });
        }
        if s.r.is_some() && m.rready {
            self.r_hold = None;
            if let Some(front) = self.reads.front_mut() {
                front.sent += 1;
                if front.sent == front.req.beats() {
                    self.reads.pop_front();
                }
            }
        }
        if s.b.is_some() && m.bready {
            self.b_hold = None;
        }
        if let (Some(aw), true) = (m.aw, s.awready) {
            self.aws.push_back(aw);
        }
        if let (Some(w), true) = (m.w, s.wready) {
            self.w_data.push_back(w);
        }
        while let Some(&aw) = self.aws.front() {
            if (self.w_data.len() as u64) < aw.beats() {
                break;
            }
            self.aws.pop_front();
            let bytes = u64::from(self.shape.bytes);
            let resp = self.error_at(aw.addr, aw.beats() * bytes, true);
            for beat in 0..aw.beats() {
                let Some(w) = self.w_data.pop_front() else {
                    break;
                };
                if resp != Resp::Okay {
                    continue;
                }
                let o = (aw.addr + beat * bytes - self.options.base) as usize;
                for lane in 0..bytes as usize {
                    if w.strb >> lane & 1 == 1 {
                        self.bytes[o + lane] = (w.data[lane / 8] >> (8 * (lane % 8))) as u8;
                    }
                }
            }
            self.bs.push_back((
                BResp { id: aw.id, resp },
                now + u64::from(self.options.write_latency.max(1)),
            ));
        }
        Ok(())
    }

    /// Drives the memory's side of `m_axi_*` for this cycle, settles the model, checks and
    /// records the handshakes. The caller then clocks the model (AxiLite does, through
    /// [`crate::axil::CycleHook`]), or use [`AxiMem::cycle`].
    pub fn before_edge(&mut self, model: &mut RtlModel) -> Result<(), SimError> {
        let ports = &model.top_ports()?.axi;
        let s = self.slave_out();
        drive(model, ports, &s)?;
        model.eval();
        let m = sample(model, ports);
        self.edge(&m, &s)
    }

    /// One clock cycle of the model with the memory serving it.
    pub fn cycle(&mut self, model: &mut RtlModel) -> Result<(), SimError> {
        self.before_edge(model)?;
        model.tick();
        Ok(())
    }
}

impl InjectFaults for AxiMem {
    fn inject(&mut self, range: std::ops::Range<u64>, resp: Resp, dir: FaultDir) {
        self.options.faults.push(Fault { range, resp, dir });
    }

    fn clear_faults(&mut self) {
        self.options.faults.clear();
    }
}

impl crate::axil::CycleHook for AxiMem {
    fn before_edge(&mut self, model: &mut RtlModel) -> Result<(), SimError> {
        AxiMem::before_edge(self, model)
    }
}

fn drive(m: &mut RtlModel, p: &AxiPorts, s: &SlaveOut) -> Result<(), SimError> {
    m.set(p.arready, u64::from(s.arready))?;
    m.set(p.awready, u64::from(s.awready))?;
    m.set(p.wready, u64::from(s.wready))?;
    let r = s.r.unwrap_or(RBeat {
        id: 0,
        data: [0; 2],
        resp: Resp::Okay,
        last: false,
    });
    m.set(p.rvalid, u64::from(s.r.is_some()))?;
    m.set(p.rid, r.id)?;
    m.set_any(p.rdata, r.data)?;
    m.set(p.rresp, resp_bits(r.resp))?;
    m.set(p.rlast, u64::from(r.last))?;
    let b = s.b.unwrap_or(BResp {
        id: 0,
        resp: Resp::Okay,
    });
    m.set(p.bvalid, u64::from(s.b.is_some()))?;
    m.set(p.bid, b.id)?;
    m.set(p.bresp, resp_bits(b.resp))?;
    Ok(())
}

fn resp_bits(r: Resp) -> u64 {
    match r {
        Resp::Okay => 0,
        Resp::ExOkay => 1,
        Resp::SlvErr => 2,
        Resp::DecErr => 3,
    }
}

fn sample(m: &RtlModel, p: &AxiPorts) -> MasterOut {
    let ar = m.is_high(p.arvalid).then(|| AddrReq {
        id: m.get(p.arid),
        addr: m.get(p.araddr),
        len: m.get(p.arlen) as u8,
        size: m.get(p.arsize) as u8,
        burst: m.get(p.arburst) as u8,
    });
    let aw = m.is_high(p.awvalid).then(|| AddrReq {
        id: m.get(p.awid),
        addr: m.get(p.awaddr),
        len: m.get(p.awlen) as u8,
        size: m.get(p.awsize) as u8,
        burst: m.get(p.awburst) as u8,
    });
    let w = m.is_high(p.wvalid).then(|| WBeat {
        data: m.get_any(p.wdata),
        strb: m.get(p.wstrb) as u16,
        last: m.is_high(p.wlast),
    });
    MasterOut {
        ar,
        aw,
        w,
        rready: m.is_high(p.rready),
        bready: m.is_high(p.bready),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: BusShape = BusShape {
        bytes: 8,
        max_burst: 16,
        max_outstanding_reads: 2,
    };

    fn checker() -> AxiChecker {
        AxiChecker::new(SHAPE, DEFAULT_BASE, DEFAULT_SIZE, 50)
    }

    fn req(addr: u64, len: u8) -> AddrReq {
        AddrReq {
            id: 0,
            addr,
            len,
            size: 3,
            burst: 1,
        }
    }

    fn beat(last: bool) -> WBeat {
        WBeat {
            data: [0x1234, 0],
            strb: 0xff,
            last,
        }
    }

    fn rule_of(e: SimError) -> (Channel, Rule) {
        match e {
            SimError::AxiProtocol { channel, rule, .. } => (channel, rule),
            other => panic!("not a protocol error: {other}"),
        }
    }

    /// Runs master/slave cycles through a checker; returns the first violation.
    fn run(cycles: &[(MasterOut, SlaveOut)]) -> Result<(), (Channel, Rule)> {
        let mut c = checker();
        for (i, (m, s)) in cycles.iter().enumerate() {
            c.cycle(i as u64, m, s).map_err(rule_of)?;
        }
        Ok(())
    }

    fn ar(a: AddrReq) -> MasterOut {
        MasterOut {
            ar: Some(a),
            ..MasterOut::default()
        }
    }

    fn aw(a: AddrReq) -> MasterOut {
        MasterOut {
            aw: Some(a),
            ..MasterOut::default()
        }
    }

    fn w(b: WBeat) -> MasterOut {
        MasterOut {
            w: Some(b),
            ..MasterOut::default()
        }
    }

    fn ready() -> SlaveOut {
        SlaveOut {
            arready: true,
            awready: true,
            wready: true,
            r: None,
            b: None,
        }
    }

    #[test]
    fn a_well_formed_write_and_read_pass() {
        let mut seq = vec![(aw(req(DEFAULT_BASE, 2)), ready())];
        seq.extend((0..3).map(|i| (w(beat(i == 2)), ready())));
        seq.push((ar(req(DEFAULT_BASE + 4096 - 128, 15)), ready()));
        assert_eq!(run(&seq), Ok(()));
    }

    #[test]
    fn bursts_across_4k_too_long_unaligned_or_outside_memory_fail() {
        let bad = [
            (req(DEFAULT_BASE + 4096 - 8, 1), Rule::Crosses4k),
            (req(DEFAULT_BASE, 16), Rule::BurstTooLong),
            (req(DEFAULT_BASE + 4, 0), Rule::Unaligned),
            (req(DEFAULT_BASE - 8, 0), Rule::OutsideMemory),
            (req(DEFAULT_BASE + DEFAULT_SIZE, 0), Rule::OutsideMemory),
            (
                AddrReq {
                    size: 2,
                    ..req(DEFAULT_BASE, 0)
                },
                Rule::WrongSize,
            ),
            (
                AddrReq {
                    burst: 2,
                    ..req(DEFAULT_BASE, 0)
                },
                Rule::WrongBurstType,
            ),
        ];
        for (r, rule) in bad {
            assert_eq!(run(&[(ar(r), ready())]), Err((Channel::Ar, rule)), "{r:?}");
            assert_eq!(run(&[(aw(r), ready())]), Err((Channel::Aw, rule)), "{r:?}");
        }
    }

    #[test]
    fn valid_dropped_or_payload_changed_before_ready_fails() {
        let stall = SlaveOut::default();
        let r = req(DEFAULT_BASE, 0);
        assert_eq!(
            run(&[(ar(r), stall), (MasterOut::default(), ready())]),
            Err((Channel::Ar, Rule::ValidDropped))
        );
        assert_eq!(
            run(&[(aw(r), stall), (aw(req(DEFAULT_BASE + 8, 0)), ready())]),
            Err((Channel::Aw, Rule::PayloadChanged))
        );
        let mut other = beat(true);
        other.strb = 0x0f;
        assert_eq!(
            run(&[(w(beat(true)), stall), (w(other), ready())]),
            Err((Channel::W, Rule::PayloadChanged))
        );
        // Held until READY, then free to change: fine.
        assert_eq!(
            run(&[
                (ar(r), stall),
                (ar(r), ready()),
                (ar(req(DEFAULT_BASE + 8, 0)), ready())
            ]),
            Ok(())
        );
    }

    #[test]
    fn wlast_early_late_or_missing_fails() {
        let aw2 = (aw(req(DEFAULT_BASE, 1)), ready());
        assert_eq!(
            run(&[aw2, (w(beat(true)), ready())]),
            Err((Channel::W, Rule::WlastMisplaced))
        );
        assert_eq!(
            run(&[aw2, (w(beat(false)), ready()), (w(beat(false)), ready())]),
            Err((Channel::W, Rule::WlastMisplaced))
        );
        // Data ahead of its address with the wrong count.
        assert_eq!(
            run(&[(w(beat(true)), ready()), aw2]),
            Err((Channel::W, Rule::WlastMisplaced))
        );
        // Data ahead of its address with the right count is allowed.
        assert_eq!(
            run(&[(w(beat(false)), ready()), (w(beat(true)), ready()), aw2]),
            Ok(())
        );
    }

    #[test]
    fn too_many_outstanding_reads_fail() {
        let r = (ar(req(DEFAULT_BASE, 0)), ready());
        assert_eq!(run(&[r, r]), Ok(()));
        assert_eq!(run(&[r, r, r]), Err((Channel::Ar, Rule::TooManyReads)));
    }

    #[test]
    fn write_data_never_sent_and_responses_never_accepted_fail() {
        let mut seq = vec![(aw(req(DEFAULT_BASE, 0)), ready())];
        seq.extend(std::iter::repeat_n((MasterOut::default(), ready()), 60));
        assert_eq!(run(&seq), Err((Channel::W, Rule::WriteDataMissing)));
        let b = SlaveOut {
            b: Some(BResp {
                id: 0,
                resp: Resp::Okay,
            }),
            ..SlaveOut::default()
        };
        let seq = vec![(MasterOut::default(), b); 60];
        assert_eq!(run(&seq), Err((Channel::B, Rule::ResponseNotAccepted)));
    }

    #[test]
    fn idle_check_sees_open_bursts() {
        let mut c = checker();
        c.cycle(0, &aw(req(DEFAULT_BASE, 1)), &ready()).unwrap();
        c.cycle(1, &w(beat(false)), &ready()).unwrap();
        assert_eq!(rule_of(c.check_idle(2).unwrap_err()).1, Rule::InFlight);
        c.cycle(2, &w(beat(true)), &ready()).unwrap();
        c.check_idle(3).unwrap();
    }

    /// The memory itself: a write burst lands with its strobes, a read returns it in order, and
    /// an injected range answers its error.
    #[test]
    fn memory_writes_with_strobes_reads_back_and_injects_errors() {
        let opts = AxiMemOptions {
            stall_percent: 30,
            seed: 7,
            ..AxiMemOptions::default()
        };
        let mut mem = AxiMem::with_shape(SHAPE, opts);
        mem.inject(
            DEFAULT_BASE + 0x100..DEFAULT_BASE + 0x108,
            Resp::DecErr,
            FaultDir::Reads,
        );
        let data = [0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888];
        // Master: AW of 2 beats, then the beats (second with half strobes), then read 0x100 and
        // the burst just written.
        let mut script: VecDeque<MasterOut> = VecDeque::new();
        script.push_back(aw(req(DEFAULT_BASE, 1)));
        script.push_back(w(WBeat {
            data: [data[0], 0],
            strb: 0xff,
            last: false,
        }));
        script.push_back(w(WBeat {
            data: [data[1], 0],
            strb: 0x0f,
            last: true,
        }));
        script.push_back(ar(req(DEFAULT_BASE, 1)));
        script.push_back(ar(req(DEFAULT_BASE + 0x100, 0)));
        let mut got = Vec::new();
        let mut bresp = None;
        for _ in 0..500 {
            let s = mem.slave_out();
            let mut m = script.front().copied().unwrap_or_default();
            m.rready = true;
            m.bready = true;
            let fired = (m.ar.is_some() && s.arready)
                || (m.aw.is_some() && s.awready)
                || (m.w.is_some() && s.wready);
            if let Some(r) = s.r {
                got.push((r.data[0], r.resp));
            }
            if let Some(b) = s.b {
                bresp = Some(b.resp);
            }
            mem.edge(&m, &s).unwrap();
            if fired {
                script.pop_front();
            }
        }
        assert_eq!(bresp, Some(Resp::Okay));
        assert_eq!(
            got,
            [
                (data[0], Resp::Okay),
                (0x7777_8888, Resp::Okay),
                (0, Resp::DecErr)
            ]
        );
        mem.check_idle().unwrap();
        assert!(mem.read(DEFAULT_BASE + DEFAULT_SIZE - 4, 8).is_err());
    }
}
