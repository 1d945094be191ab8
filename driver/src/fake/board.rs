//! [`FakeBoard`]: the hardware behind a UIO register window, for end-to-end tests of the real UIO
//! code path without a board. A thread owns a [`caq_sim::FuncDevice`] and plays the accelerator
//! and the kernel's interrupt bookkeeping against what the driver touches:
//! - the register window: a file (the fake `dev/uioN`) the driver maps; the board maps it too and
//!   writes there every value the driver reads (ID, CAPS, STATUS, IRQ_STATUS, CTRL's readback, the
//!   counters);
//! - the register writes themselves, in the order the driver makes them: a
//!   [`Recorder`](super::recorder::Recorder) wired to the board's bus socket hands over each one
//!   (and each interrupt re-enable and CPU write of device memory) and waits until the board has
//!   applied it, the way an AXI4-Lite slave sees its writes one by one. A file alone cannot show
//!   them: it keeps only the last value of each word, so it can tell neither an acknowledge from
//!   an untouched IRQ_STATUS nor which of two writes came first;
//! - DMA memory: the device side of a [`MemfdMemory`](crate::dma::MemfdMemory) (incoherent in most
//!   tests, so a missing sync feeds the board stale bytes);
//! - the interrupt: an [`IrqPeer`] from [`super::uio::irq_pair`], whose driver end the driver's
//!   `UioIrq` reads like `/dev/uioN`.
//!
//! # What the board models
//! - Every register write as `caq_axil_regs` takes it, in order: DESC_*/WIN_* stored, IRQ_STATUS
//!   write-1-to-clear, CTRL's SOFT_RESET (abort, STATUS and IRQ_STATUS cleared), PERF_CLEAR and
//!   START (taken only while idle: a START while BUSY is ignored, as the RTL ignores it). At START
//!   the device view of the memory is what the DMA reads; the job runs on the FuncDevice and its
//!   output reaches the device view when it completes: at once, or [`BoardFaults::job_time`]
//!   later (the thread completes it on its own), or never ([`BoardFaults::never_finish`], until a
//!   SOFT_RESET).
//! - The interrupt as a level: the line is high while CTRL.IRQ_EN and an IRQ_STATUS cause are set.
//!   The kernel's side as `uio_pdrv_genirq` does it: a high line with the interrupt enabled counts
//!   one event and masks the interrupt until the driver re-enables it; re-enabling while the line
//!   is still high counts the next event at once. Events go to the driver as the kernel's total
//!   count, and like a read of `/dev/uioN` the driver gets only the latest: a count it has not
//!   read yet is taken back before the next is written.
//! - What no hardware would complain about but a correct driver never does, recorded as
//!   [`FakeBoard::violations`]: a START while BUSY, DESC_*/WIN_* written while a job runs, the CPU
//!   writing device memory while a job runs, a write to a read-only or unmapped register, a write
//!   that did not land in the register file at its offset.
//!
//! The bus is a Unix socket the board listens on ([`FakeBoard::bus_path`]): one connection at a
//! time, from this process or another (a test can kill that process mid-job and connect a new
//! one; the board and its running job carry on).
//!
//! Fault knobs ([`BoardFaults`], changeable while the board runs with [`FakeBoard::set_faults`]):
//! `never_finish`, `done_without_irq` (the job completes, STATUS shows DONE, no event),
//! `double_irq` (the count goes up by two: one event looks missed), `wedged` (SOFT_RESET does not
//! stop a job that never finishes), `job_time`.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use caq_sim::FuncDevice;
use caq_spec::regmap::{self, Access, Register};
use caq_spec::{AccelConfig, Device};
use memmap2::{MmapOptions, MmapRaw};

use super::recorder::{BUS_ARMED, BUS_MEM_WRITE, BUS_MESSAGE, BUS_WRITE, BusClient};
use super::uio::IrqPeer;
use crate::dma::MemfdDeviceSide;
use crate::error::{HostError, Result};

/// How long the thread blocks on the bus per tick.
const TICK: Duration = Duration::from_millis(1);

/// Faults the board can inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoardFaults {
    /// START sets BUSY and nothing more: no completion, no event, until SOFT_RESET.
    pub never_finish: bool,
    /// The job completes (STATUS DONE) but no interrupt reaches the CPU.
    pub done_without_irq: bool,
    /// Every interrupt raises the event count by two.
    pub double_irq: bool,
    /// SOFT_RESET does not stop a job that never finishes (a device hung on the bus).
    pub wedged: bool,
    /// How long a job runs before it completes (zero: within its START).
    pub job_time: Duration,
}

/// Where the board is wired.
#[derive(Debug)]
pub struct BoardWiring {
    /// The fake `dev/uioN` file and the byte offset of the register window in it (which must
    /// hold the whole window).
    pub regs: PathBuf,
    pub regs_offset: u64,
    /// The device side of the DMA memory.
    pub memory: MemfdDeviceSide,
    /// The interrupt, or none for a driver that polls STATUS.
    pub irq: Option<IrqPeer>,
    /// Where the board listens for the recorder's bus connection.
    pub bus: PathBuf,
}

/// The register window in the shared file.
struct RegisterFile {
    map: MmapRaw,
    at: usize,
}

impl RegisterFile {
    fn open(path: &Path, offset: u64) -> Result<RegisterFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| HostError::io(path, "uio", e))?;
        let window = u64::from(regmap::REGISTER_SPACE_BYTES);
        let actual = file
            .metadata()
            .map_err(|e| HostError::io(path, "uio", e))?
            .len();
        let too_small = || HostError::MapTooSmall {
            device: path.display().to_string(),
            index: 0,
            actual: actual.saturating_sub(offset),
            required: window,
        };
        let len = offset
            .checked_add(window)
            .filter(|n| *n <= actual && offset.is_multiple_of(4))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(too_small)?;
        // Mapped from the start of the file, so the map's offset need not be page-aligned.
        let map =
            MmapOptions::new()
                .len(len)
                .map_raw(&file)
                .map_err(|e| HostError::MapRejected {
                    path: path.to_path_buf(),
                    index: 0,
                    len: window,
                    offset,
                    source: e,
                })?;
        Ok(RegisterFile {
            map,
            at: offset as usize,
        })
    }

    fn word(&self, r: &Register) -> &AtomicU32 {
        // SAFETY: the mapping is page-aligned and `at` and every register offset are multiples
        // of 4, so the pointer is aligned; `at + offset + 4 <= at + REGISTER_SPACE_BYTES`, which
        // lies in the mapping, alive as long as `self`. This is a file mapping, not device
        // memory, and atomics are the defined way for this thread to share it with the
        // driver's (single-word, aligned, so untorn) volatile accesses.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_mut_ptr()
                    .add(self.at + r.offset as usize)
                    .cast(),
            )
        }
    }

    fn read(&self, r: &Register) -> u32 {
        self.word(r).load(Ordering::SeqCst)
    }

    fn write(&self, r: &Register, value: u32) {
        self.word(r).store(value, Ordering::SeqCst);
    }
}

/// What the board has done, readable while it runs.
#[derive(Debug, Default)]
struct Shared {
    started: AtomicU64,
    jobs: AtomicU64,
    events: AtomicU64,
    resets: AtomicU64,
    busy: AtomicBool,
    faults: Mutex<BoardFaults>,
    violations: Mutex<Vec<String>>,
}

impl Shared {
    fn faults(&self) -> BoardFaults {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake hardware: a thread running a FuncDevice behind a register file, a bus socket, a
/// memfd and an interrupt socket (see the module doc). Dropping it stops the thread.
pub struct FakeBoard {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    bus: PathBuf,
    thread: Option<JoinHandle<Result<()>>>,
}

impl FakeBoard {
    /// Powers up a board of config `cfg` on `wiring`: writes the registers' reset values into
    /// the register file, listens on the bus path and starts the thread.
    pub fn power_up(
        cfg: &AccelConfig,
        wiring: BoardWiring,
        faults: BoardFaults,
    ) -> Result<FakeBoard> {
        let regs = RegisterFile::open(&wiring.regs, wiring.regs_offset)?;
        let mut dev = FuncDevice::new(cfg, wiring.memory.region()).map_err(HostError::backend)?;
        for r in regmap::REGISTERS {
            regs.write(r, dev.read_reg(r.offset).map_err(HostError::backend)?);
        }
        let bus_io = |e| HostError::io(&wiring.bus, "fake bus", e);
        let listener = UnixListener::bind(&wiring.bus).map_err(bus_io)?;
        listener.set_nonblocking(true).map_err(bus_io)?;
        if let Some(irq) = &wiring.irq {
            irq.board
                .set_nonblocking(true)
                .map_err(|e| HostError::io("fake irq socket", "uio", e))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            ..Shared::default()
        });
        let mem = vec![0; wiring.memory.region().len as usize];
        let mut board = Board {
            dev,
            regs,
            memory: wiring.memory,
            mem,
            irq: wiring.irq,
            listener,
            conn: None,
            inbox: Vec::new(),
            irq_inbox: Vec::new(),
            unmasked: true,
            count: 0,
            job: Job::Idle,
            shared: Arc::clone(&shared),
        };
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("caq-fake-board".into())
            .spawn(move || board.run(&stop_flag))
            .map_err(|e| HostError::io("fake board thread", "uio", e))?;
        Ok(FakeBoard {
            stop,
            shared,
            bus: wiring.bus,
            thread: Some(thread),
        })
    }

    /// Where the board listens for a [`BusClient`].
    pub fn bus_path(&self) -> &Path {
        &self.bus
    }

    /// A bus connection for a [`Recorder`](super::recorder::Recorder) in this process.
    pub fn connect(&self) -> Result<BusClient> {
        BusClient::connect(&self.bus)
    }

    /// STARTs the board took (ignored ones not counted).
    pub fn started(&self) -> u64 {
        self.shared.started.load(Ordering::SeqCst)
    }

    /// Jobs the board has run to completion.
    pub fn jobs(&self) -> u64 {
        self.shared.jobs.load(Ordering::SeqCst)
    }

    /// The kernel's event count (the last count sent to the driver).
    pub fn events(&self) -> u64 {
        self.shared.events.load(Ordering::SeqCst)
    }

    /// SOFT_RESETs written.
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::SeqCst)
    }

    /// A job is running (or hung).
    pub fn busy(&self) -> bool {
        self.shared.busy.load(Ordering::SeqCst)
    }

    /// Changes the faults; a running job keeps the completion time it started with.
    pub fn set_faults(&self, faults: BoardFaults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// What a correct driver never does, as the board saw it (see the module doc).
    pub fn violations(&self) -> Vec<String> {
        self.shared
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the thread and returns the model's failure, if it had one.
    pub fn shut_down(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let result = match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(HostError::Backend("the fake board thread panicked".into())),
        };
        let _ = std::fs::remove_file(&self.bus);
        result
    }
}

impl Drop for FakeBoard {
    fn drop(&mut self) {
        // The result was the caller's to take with `shut_down`.
        let _ = self.join();
    }
}

/// The job the board is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Idle,
    /// Completes at `until` (its outputs are computed; they reach memory then).
    Running {
        until: Instant,
    },
    /// `never_finish`: BUSY until SOFT_RESET.
    Hung,
}

/// The thread's state.
struct Board {
    dev: FuncDevice,
    regs: RegisterFile,
    memory: MemfdDeviceSide,
    /// Staging for copies between the device view and the FuncDevice.
    mem: Vec<u8>,
    irq: Option<IrqPeer>,
    listener: UnixListener,
    conn: Option<UnixStream>,
    /// Bytes of an incomplete bus message / interrupt-file write.
    inbox: Vec<u8>,
    irq_inbox: Vec<u8>,
    /// The kernel's interrupt is enabled (not masked since the last event).
    unmasked: bool,
    /// The kernel's event count.
    count: i32,
    job: Job,
    shared: Arc<Shared>,
}

impl Board {
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::SeqCst) {
            if self.conn.is_none() {
                self.accept()?;
            }
            if self.conn.is_some() {
                self.serve()?;
            } else {
                std::thread::sleep(TICK);
            }
            self.receive_enables()?;
            self.tick()?;
        }
        Ok(())
    }

    fn accept(&mut self) -> Result<()> {
        match self.listener.accept() {
            Ok((stream, _)) => {
                let io = |e| HostError::io("fake board bus", "fake bus", e);
                stream.set_nonblocking(false).map_err(io)?;
                stream.set_read_timeout(Some(TICK)).map_err(io)?;
                self.inbox.clear();
                self.conn = Some(stream);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(HostError::io("fake board bus", "fake bus", e)),
        }
    }

    /// Reads the bus for up to one tick and handles every whole message, in order.
    fn serve(&mut self) -> Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 256];
        match conn.read(&mut buf) {
            // The driver's process closed the connection (or died): the board carries on.
            Ok(0) => {
                self.conn = None;
                return Ok(());
            }
            Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.conn = None;
                return Ok(());
            }
            Err(e) => return Err(HostError::io("fake board bus", "fake bus", e)),
        }
        while self.inbox.len() >= BUS_MESSAGE {
            let msg: Vec<u8> = self.inbox.drain(..BUS_MESSAGE).collect();
            let w = |i: usize| u32::from_ne_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
            let (kind, a, b) = (w(0), w(4), u64::from(w(8)) | u64::from(w(12)) << 32);
            let result = self.handle(kind, a, b);
            let ack = u32::from(result.is_err());
            if let Some(conn) = self.conn.as_mut()
                && conn.write_all(&ack.to_ne_bytes()).is_err()
            {
                self.conn = None;
            }
            result?;
        }
        Ok(())
    }

    fn handle(&mut self, kind: u32, a: u32, b: u64) -> Result<()> {
        match kind {
            BUS_WRITE => self.write_register(a, b as u32)?,
            BUS_ARMED => self.receive_enables()?,
            BUS_MEM_WRITE if self.job != Job::Idle => self.violation(format!(
                "the CPU wrote device memory [{b:#x}, +{a}) while a job ran (STATUS BUSY)"
            )),
            BUS_MEM_WRITE => {}
            other => {
                return Err(HostError::Backend(
                    format!("fake board: unknown bus message {other}").into(),
                ));
            }
        }
        self.update_irq()
    }

    fn violation(&self, what: String) {
        self.shared
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    fn write_register(&mut self, offset: u32, value: u32) -> Result<()> {
        let Some(r) = regmap::register_at(offset) else {
            self.violation(format!(
                "a write of {value:#x} to {offset:#x}, which names no register (SLVERR)"
            ));
            return Ok(());
        };
        if r.access == Access::Rw && self.regs.read(r) != value {
            self.violation(format!(
                "the write of {value:#x} to {} is not in the register file at {offset:#x} (found {:#x})",
                r.name,
                self.regs.read(r)
            ));
        }
        let busy = self.job != Job::Idle;
        match r.name {
            "CTRL" => self.ctrl(value)?,
            "IRQ_STATUS" => {
                self.dev_write(regmap::IRQ_STATUS, value)?;
                self.publish(&[regmap::IRQ_STATUS])?;
            }
            _ if r.access == Access::Ro => {
                self.violation(format!("a write of {value:#x} to read-only {}", r.name));
            }
            name => {
                if busy {
                    self.violation(format!(
                        "{name} written while a job runs (the job latched the old value at START)"
                    ));
                }
                self.dev_write(*r, value)?;
            }
        }
        Ok(())
    }

    fn dev_write(&mut self, r: Register, value: u32) -> Result<()> {
        self.dev
            .write_reg(r.offset, value)
            .map_err(HostError::backend)
    }

    fn ctrl(&mut self, value: u32) -> Result<()> {
        let start = regmap::CTRL_START.mask();
        if regmap::CTRL_SOFT_RESET.is_set(value) {
            self.shared.resets.fetch_add(1, Ordering::SeqCst);
            if self.job == Job::Hung && self.shared.faults().wedged {
                return self.publish(&[regmap::CTRL]);
            }
            self.set_job(Job::Idle);
            self.dev_write(regmap::CTRL, value & !start)?;
            return self.publish_all_results();
        }
        // IRQ_EN and PERF_CLEAR as written; START below, after the memory is in place.
        self.dev_write(regmap::CTRL, value & !start)?;
        if value & start != 0 {
            if self.job == Job::Idle {
                self.start(value)?;
            } else {
                self.violation(
                    "START while BUSY: the device ignores it, and the running job's interrupt \
                     will end the wait for this one"
                        .into(),
                );
            }
        }
        self.publish(&[regmap::CTRL, regmap::STATUS])
    }

    /// Takes a START: the job runs (or hangs); `started` counts it once its state is set, so
    /// a test that sees the count sees the board busy.
    fn start(&mut self, ctrl: u32) -> Result<()> {
        let faults = self.shared.faults();
        if faults.never_finish {
            self.set_job(Job::Hung);
        } else {
            let base = self.memory.region().base;
            self.memory.device_read(0, &mut self.mem)?;
            self.dev
                .mem_write(base, &self.mem)
                .map_err(HostError::backend)?;
            self.dev_write(regmap::CTRL, ctrl)?;
            self.set_job(Job::Running {
                until: Instant::now() + faults.job_time,
            });
        }
        self.shared.started.fetch_add(1, Ordering::SeqCst);
        if faults.job_time.is_zero() && !faults.never_finish {
            self.complete()?;
        }
        Ok(())
    }

    /// The running job ends: its memory reaches the device view, its STATUS, IRQ_STATUS and
    /// counters the register file.
    fn complete(&mut self) -> Result<()> {
        // FuncDevice ran the list at START; its wait lets the run's cycles pass.
        self.dev
            .wait_irq(Duration::from_secs(3600))
            .map_err(HostError::backend)?;
        let base = self.memory.region().base;
        self.dev
            .mem_read(base, &mut self.mem)
            .map_err(HostError::backend)?;
        self.memory.device_write(0, &self.mem)?;
        self.set_job(Job::Idle);
        self.shared.jobs.fetch_add(1, Ordering::SeqCst);
        self.publish_all_results()
    }

    fn set_job(&mut self, job: Job) {
        self.job = job;
        self.shared.busy.store(job != Job::Idle, Ordering::SeqCst);
    }

    /// Completes a job whose time has come.
    fn tick(&mut self) -> Result<()> {
        if let Job::Running { until } = self.job
            && Instant::now() >= until
        {
            self.complete()?;
            self.update_irq()?;
        }
        Ok(())
    }

    fn publish_all_results(&mut self) -> Result<()> {
        let mut results = vec![regmap::STATUS, regmap::IRQ_STATUS, regmap::CTRL];
        for pair in regmap::PERF_COUNTERS {
            // LO first: reading LO snapshots the counter for HI.
            results.extend([pair.lo, pair.hi]);
        }
        self.publish(&results)
    }

    /// Copies the device's values of `regs`, in order, into the file (a hung job shows BUSY).
    fn publish(&mut self, regs: &[Register]) -> Result<()> {
        for r in regs {
            let v = if r.name == "STATUS" && self.job == Job::Hung {
                regmap::STATUS_BUSY.mask()
            } else {
                self.dev.read_reg(r.offset).map_err(HostError::backend)?
            };
            self.regs.write(r, v);
        }
        Ok(())
    }

    /// The driver's writes to the interrupt file: non-zero re-enables the interrupt.
    fn receive_enables(&mut self) -> Result<()> {
        let Some(irq) = self.irq.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 64];
        loop {
            match irq.board.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.irq_inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(HostError::io("fake irq socket", "uio", e)),
            }
        }
        let whole = self.irq_inbox.len() - self.irq_inbox.len() % 4;
        let enables: Vec<u8> = self.irq_inbox.drain(..whole).collect();
        for m in enables.chunks_exact(4) {
            self.unmasked = u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) != 0;
        }
        self.update_irq()
    }

    /// A high line with the interrupt enabled is one event (the level stays high until
    /// IRQ_STATUS is acknowledged; the kernel masks the interrupt until the next enable).
    fn update_irq(&mut self) -> Result<()> {
        let line = self.dev.irq_line() && !self.shared.faults().done_without_irq;
        if line && self.unmasked {
            self.raise()?;
        }
        Ok(())
    }

    fn raise(&mut self) -> Result<()> {
        self.count += if self.shared.faults().double_irq {
            2
        } else {
            1
        };
        self.unmasked = false;
        // Counted before the driver can see it, so a test reading `events` after its wait
        // returned sees this event.
        self.shared
            .events
            .store(self.count as u64, Ordering::SeqCst);
        if let Some(irq) = self.irq.as_mut() {
            irq.send_latest(self.count)
                .map_err(|e| HostError::io("fake irq socket", "uio", e))?;
        }
        Ok(())
    }
}
