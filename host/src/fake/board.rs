//! [`FakeBoard`]: the hardware behind a UIO register window, for end-to-end tests of the real
//! UIO code path without a board. A thread owns a [`caq_sim::FuncDevice`] and plays the
//! accelerator and the kernel's interrupt bookkeeping against the three things the driver
//! touches:
//! - the register window: a file the test created (the fake `dev/uioN`), mapped shared at the
//!   map's byte offset, so the driver's volatile register accesses land in the same bytes;
//! - DMA memory: the device side of a [`MemfdMemory`](crate::dma::MemfdMemory); the FuncDevice's
//!   memory region is the memfd's device-address range;
//! - the interrupt fd: one end of a `UnixStream::pair()`, the driver's `UioIrq` owning the other.
//!
//! # Protocol
//! 1. Power-up (inside [`FakeBoard::power_up`], before it returns): every register of the map
//!    is written into the file with the FuncDevice's reset value, so ID, VERSION,
//!    CONFIG_HASH_LO/HI and CAPS0..3 read as the config's.
//! 2. Then the thread loops, once per tick (it blocks on the socket for at most 1 ms):
//!    - Each 4-byte native-endian message from the driver is a UIO `write()`: non-zero unmasks
//!      the interrupt line (`uio_pdrv_genirq` masks it on every interrupt), zero masks it. The
//!      line starts unmasked, as after `request_irq`.
//!    - CTRL.SOFT_RESET in the file: applied to the FuncDevice; STATUS, IRQ_STATUS and CTRL are
//!      written back (the bit self-clears); a pending interrupt is dropped.
//!    - CTRL.START in the file (ignored while a hung job keeps STATUS.BUSY): STATUS = BUSY and
//!      CTRL without START go to the file at once. Then the file's DESC_ADDR_LO/HI, DESC_COUNT,
//!      WIN_BASE_LO/HI and WIN_LIMIT_LO/HI are written to the FuncDevice, the file's IRQ_STATUS
//!      as a write-1-to-clear (a file cannot tell the driver's acknowledge from an untouched
//!      value, so whatever it holds at START counts as acknowledged), PERF_CLEAR (the counters
//!      count this job only: a separate PERF_CLEAR write is overwritten in the file by START),
//!      the device view of the memory is copied into the FuncDevice, CTRL is written with
//!      START and IRQ_EN as found, the run completes (`wait_irq`), the FuncDevice's memory is
//!      copied back to the device view, and STATUS, IRQ_STATUS, CTRL (readback) and every
//!      PERF_* LO/HI pair are written to the file.
//!    - If IRQ_EN was set and the FuncDevice's line is high, an interrupt is raised: with the
//!      line unmasked, the event count goes up by one and is written to the socket as a
//!      native-endian `i32` (what `read()` on `/dev/uioN` returns), and the line is masked until
//!      the next enable message; with the line masked, the event waits for the next enable, as
//!      a level interrupt does at the GIC.
//! 3. The thread stops when the board is dropped (or [`FakeBoard::shut_down`]), when the driver
//!    closes its end of the socket, or on a failure of the model (returned by `shut_down`).
//!
//! The registers the driver writes are sampled at START only; a self-clearing or W1C bit is
//! emulated by the board writing the register back. A job completes within one tick, so a
//! driver sees the whole job's effect by the time the event arrives.
//!
//! Fault knobs ([`BoardFaults`]): `never_finish` (STATUS stays BUSY, no event, until SOFT_RESET),
//! `done_without_irq` (the job completes, STATUS shows DONE, no event), `double_irq` (the count
//! goes up by two: one event looks missed).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use caq_sim::FuncDevice;
use caq_spec::regmap::{self, Register};
use caq_spec::{AccelConfig, Device};
use memmap2::{MmapOptions, MmapRaw};

use crate::dma::MemfdDeviceSide;
use crate::error::{HostError, Result};

/// How long the board waits on the socket per tick.
const TICK: Duration = Duration::from_millis(1);

/// Faults the board can inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoardFaults {
    /// START sets BUSY and nothing more: no completion, no event (SOFT_RESET recovers).
    pub never_finish: bool,
    /// The job completes (STATUS DONE) but no interrupt event is sent.
    pub done_without_irq: bool,
    /// Every interrupt raises the event count by two.
    pub double_irq: bool,
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
        let needed = offset.checked_add(window);
        let too_small = || HostError::MapTooSmall {
            device: path.display().to_string(),
            index: 0,
            actual: actual.saturating_sub(offset),
            required: window,
        };
        let len = needed
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

    fn word(&self, r: Register) -> &AtomicU32 {
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

    fn read(&self, r: Register) -> u32 {
        self.word(r).load(Ordering::SeqCst)
    }

    fn write(&self, r: Register, value: u32) {
        self.word(r).store(value, Ordering::SeqCst);
    }
}

/// What the board has done, readable while it runs.
#[derive(Debug, Default)]
struct Counters {
    jobs: AtomicU64,
    events: AtomicU64,
}

/// The fake hardware: a thread running a FuncDevice behind a register file, a memfd and a
/// socket (see the module doc for the protocol). Dropping it stops the thread.
pub struct FakeBoard {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl FakeBoard {
    /// Powers up a board of config `cfg`: maps the register window at byte `regs_offset` of
    /// the file `regs` (which must hold the whole window), writes the reset values into it,
    /// and starts the thread on `memory` and `irq`.
    pub fn power_up(
        cfg: &AccelConfig,
        regs: &Path,
        regs_offset: u64,
        memory: MemfdDeviceSide,
        irq: UnixStream,
        faults: BoardFaults,
    ) -> Result<FakeBoard> {
        let regs = RegisterFile::open(regs, regs_offset)?;
        let mut dev = FuncDevice::new(cfg, memory.region()).map_err(HostError::backend)?;
        for r in regmap::REGISTERS {
            regs.write(*r, dev.read_reg(r.offset).map_err(HostError::backend)?);
        }
        irq.set_read_timeout(Some(TICK))
            .map_err(|e| HostError::io("fake irq socket", "uio", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mem = vec![0; memory.region().len as usize];
        let mut board = Board {
            dev,
            regs,
            memory,
            mem,
            irq,
            faults,
            unmasked: true,
            pending: false,
            hung: false,
            count: 0,
            inbox: Vec::new(),
            hung_up: false,
            counters: Arc::clone(&counters),
        };
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("caq-fake-board".into())
            .spawn(move || board.run(&stop_flag))
            .map_err(|e| HostError::io("fake board thread", "uio", e))?;
        Ok(FakeBoard {
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// Jobs the board has run to completion.
    pub fn jobs(&self) -> u64 {
        self.counters.jobs.load(Ordering::SeqCst)
    }

    /// Interrupt events sent (the last count written to the socket).
    pub fn events(&self) -> u64 {
        self.counters.events.load(Ordering::SeqCst)
    }

    /// Stops the thread and returns the model's failure, if it had one.
    pub fn shut_down(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(HostError::Backend("the fake board thread panicked".into())),
        }
    }
}

impl Drop for FakeBoard {
    fn drop(&mut self) {
        // The result was the caller's to take with `shut_down`.
        let _ = self.join();
    }
}

/// The thread's state.
struct Board {
    dev: FuncDevice,
    regs: RegisterFile,
    memory: MemfdDeviceSide,
    /// Staging for copies between the device view and the FuncDevice.
    mem: Vec<u8>,
    irq: UnixStream,
    faults: BoardFaults,
    /// The kernel's interrupt line is unmasked (an enable arrived since the last event).
    unmasked: bool,
    /// An interrupt was raised while masked.
    pending: bool,
    /// A `never_finish` job holds STATUS.BUSY.
    hung: bool,
    /// The kernel's event count.
    count: i32,
    /// Bytes of an incomplete 4-byte message.
    inbox: Vec<u8>,
    /// The driver closed its end of the socket.
    hung_up: bool,
    counters: Arc<Counters>,
}

impl Board {
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::SeqCst) && !self.hung_up {
            self.receive()?;
            let ctrl = self.regs.read(regmap::CTRL);
            if regmap::CTRL_SOFT_RESET.is_set(ctrl) {
                self.soft_reset(ctrl)?;
            } else if regmap::CTRL_START.is_set(ctrl) {
                self.job(ctrl)?;
            }
        }
        Ok(())
    }

    /// Reads the driver's messages for up to one tick.
    fn receive(&mut self) -> Result<()> {
        let mut buf = [0u8; 64];
        match self.irq.read(&mut buf) {
            Ok(0) => self.hung_up = true,
            Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(HostError::io("fake irq socket", "uio", e)),
        }
        let whole = self.inbox.len() - self.inbox.len() % 4;
        let messages: Vec<u32> = self
            .inbox
            .drain(..whole)
            .collect::<Vec<u8>>()
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        for m in messages {
            self.unmasked = m != 0;
            if self.unmasked && self.pending {
                self.pending = false;
                self.raise()?;
            }
        }
        Ok(())
    }

    fn soft_reset(&mut self, ctrl: u32) -> Result<()> {
        self.dev
            .write_reg(regmap::CTRL.offset, ctrl & !regmap::CTRL_START.mask())
            .map_err(HostError::backend)?;
        self.hung = false;
        self.pending = false;
        self.publish(&[regmap::STATUS, regmap::IRQ_STATUS, regmap::CTRL])
    }

    fn job(&mut self, ctrl: u32) -> Result<()> {
        let irq_en = regmap::CTRL_IRQ_EN.mask() & ctrl;
        // START self-clears, and the run shows BUSY until it ends.
        self.regs.write(regmap::CTRL, irq_en);
        if self.hung {
            return Ok(());
        }
        self.regs.write(regmap::STATUS, regmap::STATUS_BUSY.mask());
        if self.faults.never_finish {
            self.hung = true;
            return Ok(());
        }
        let wr = |dev: &mut FuncDevice, r: Register, v: u32| {
            dev.write_reg(r.offset, v).map_err(HostError::backend)
        };
        for r in [
            regmap::DESC_ADDR_LO,
            regmap::DESC_ADDR_HI,
            regmap::DESC_COUNT,
            regmap::WIN_BASE_LO,
            regmap::WIN_BASE_HI,
            regmap::WIN_LIMIT_LO,
            regmap::WIN_LIMIT_HI,
            regmap::IRQ_STATUS,
        ] {
            wr(&mut self.dev, r, self.regs.read(r))?;
        }
        wr(
            &mut self.dev,
            regmap::CTRL,
            regmap::CTRL_PERF_CLEAR.mask() | irq_en,
        )?;
        let base = self.memory.region().base;
        self.memory.device_read(0, &mut self.mem)?;
        self.dev
            .mem_write(base, &self.mem)
            .map_err(HostError::backend)?;
        wr(
            &mut self.dev,
            regmap::CTRL,
            regmap::CTRL_START.mask() | irq_en,
        )?;
        // FuncDevice completes inside the START write; the wait is the completion contract.
        self.dev
            .wait_irq(Duration::from_secs(3600))
            .map_err(HostError::backend)?;
        self.dev
            .mem_read(base, &mut self.mem)
            .map_err(HostError::backend)?;
        self.memory.device_write(0, &self.mem)?;
        let mut results = vec![regmap::STATUS, regmap::IRQ_STATUS, regmap::CTRL];
        for pair in regmap::PERF_COUNTERS {
            // LO first: reading LO snapshots the counter for HI.
            results.extend([pair.lo, pair.hi]);
        }
        self.publish(&results)?;
        self.counters.jobs.fetch_add(1, Ordering::SeqCst);
        if irq_en != 0 && self.dev.irq_line() && !self.faults.done_without_irq {
            if self.unmasked {
                self.raise()?;
            } else {
                self.pending = true;
            }
        }
        Ok(())
    }

    /// Copies the FuncDevice's values of `regs`, in order, into the file.
    fn publish(&mut self, regs: &[Register]) -> Result<()> {
        for r in regs {
            let v = self.dev.read_reg(r.offset).map_err(HostError::backend)?;
            self.regs.write(*r, v);
        }
        Ok(())
    }

    /// One interrupt: the count goes up (by two with `double_irq`), the new total goes to the
    /// driver, and the line is masked until the next enable.
    fn raise(&mut self) -> Result<()> {
        self.count += if self.faults.double_irq { 2 } else { 1 };
        self.unmasked = false;
        // Counted before the driver can see it, so a test reading `events` after its wait
        // returned sees this event.
        self.counters
            .events
            .store(self.count as u64, Ordering::SeqCst);
        match self.irq.write_all(&self.count.to_ne_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => self.hung_up = true,
            Err(e) => return Err(HostError::io("fake irq socket", "uio", e)),
        }
        Ok(())
    }
}
