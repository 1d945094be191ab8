//! [`Recorder`]: a [`Device`] wrapper that logs, in order, every call the driver makes (register
//! reads and writes by name, memory copies, cache syncs, interrupt arming and waits), so tests can
//! assert the exact register protocol of open, load, inference, precision switch, timeout and
//! recovery; and, when wired to a [`FakeBoard`](crate::fake::board::FakeBoard) through its bus
//! socket ([`BusClient`]), hands the board every register write, every interrupt re-enable and
//! every CPU write of device memory at the moment it happens, which is how the board models the
//! hardware write by write (write-1-to-clear, START ignored while BUSY, the level-triggered
//! interrupt).
//!
//! The bus protocol (both ends are here, so the board and the recorder cannot drift): each
//! message is 16 bytes, four native-endian u32 `[kind, a, b_lo, b_hi]`; the board answers every
//! message with one u32, 0 when it took it. Kinds: 1 register write (`a` = offset, `b` = value),
//! 2 interrupt re-enabled (the driver's `arm_irq` wrote its enable to the interrupt file), 3 CPU
//! write of device memory (`a` = length, `b` = address).
//!
//! This module knows the `Device` trait and the register names of `caq_spec::regmap`; it does not
//! know what the driver should do (the tests say that) nor how the board models it.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use caq_spec::regmap::{self, Register};
use caq_spec::{Device, DeviceAddr, IrqStats, IrqWait, MemRegion};

use crate::error::{HostError, Result};

/// One call the driver made, in the order made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A register read and the value it returned.
    Read {
        reg: &'static str,
        value: u32,
    },
    /// A register write.
    Write {
        reg: &'static str,
        value: u32,
    },
    MemWrite {
        addr: u64,
        len: u64,
    },
    MemRead {
        addr: u64,
        len: u64,
    },
    SyncForDevice {
        addr: u64,
        len: u64,
    },
    SyncForCpu {
        addr: u64,
        len: u64,
    },
    /// `arm_irq`: stale events drained, the interrupt line re-enabled.
    ArmIrq,
    /// `wait_irq` and how it ended.
    WaitIrq(IrqWait),
}

impl Access {
    /// True for register reads and writes.
    pub fn is_register(&self) -> bool {
        matches!(self, Access::Read { .. } | Access::Write { .. })
    }
}

/// The named fields of `reg` set in `value`, e.g. `START|IRQ_EN`.
fn flags(reg: &str, value: u32) -> Option<String> {
    let r = regmap::register(reg)?;
    if !matches!(r.name, "CTRL" | "IRQ_STATUS" | "STATUS") {
        return None;
    }
    let set: Vec<String> = r
        .fields
        .iter()
        .filter(|f| f.is_set(value))
        .map(|f| {
            if f.width == 1 {
                f.name.to_string()
            } else {
                format!("{}={}", f.name, f.get(value))
            }
        })
        .collect();
    Some(if set.is_empty() {
        "-".into()
    } else {
        set.join("|")
    })
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Read { reg, value } => match flags(reg, *value) {
                Some(fl) => write!(f, "read  {reg} = {value:#010x} ({fl})"),
                None => write!(f, "read  {reg} = {value:#010x}"),
            },
            Access::Write { reg, value } => match flags(reg, *value) {
                Some(fl) => write!(f, "write {reg} <- {value:#010x} ({fl})"),
                None => write!(f, "write {reg} <- {value:#010x}"),
            },
            Access::MemWrite { addr, len } => write!(f, "mem write      {addr:#x} +{len}"),
            Access::MemRead { addr, len } => write!(f, "mem read       {addr:#x} +{len}"),
            Access::SyncForDevice { addr, len } => write!(f, "sync for device {addr:#x} +{len}"),
            Access::SyncForCpu { addr, len } => write!(f, "sync for cpu   {addr:#x} +{len}"),
            Access::ArmIrq => f.write_str("arm irq (drain, enable)"),
            Access::WaitIrq(w) => write!(f, "wait irq -> {w:?}"),
        }
    }
}

/// Accesses as text, one per line (what tests compare with their expected sequence).
pub fn transcript<'a>(log: impl IntoIterator<Item = &'a Access>) -> String {
    log.into_iter().map(|a| format!("{a}\n")).collect()
}

fn reg_name(offset: u32) -> &'static str {
    regmap::register_at(offset).map_or("<unmapped>", |r: &Register| r.name)
}

/// The recorder's end of a fake board's bus (see the module doc for the protocol).
#[derive(Debug)]
pub struct BusClient {
    stream: UnixStream,
}

/// Message kinds on the bus.
pub(crate) const BUS_WRITE: u32 = 1;
pub(crate) const BUS_ARMED: u32 = 2;
pub(crate) const BUS_MEM_WRITE: u32 = 3;
/// Bytes of one bus message.
pub(crate) const BUS_MESSAGE: usize = 16;

impl BusClient {
    /// Connects to the board listening at `path` (`FakeBoard::bus_path`).
    pub fn connect(path: &Path) -> Result<BusClient> {
        let stream = UnixStream::connect(path).map_err(|e| HostError::io(path, "fake bus", e))?;
        // A board that stops answering is a failed test, not a hang.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| HostError::io(path, "fake bus", e))?;
        Ok(BusClient { stream })
    }

    fn send(&mut self, kind: u32, a: u32, b: u64) -> Result<()> {
        let mut msg = [0u8; BUS_MESSAGE];
        for (i, w) in [kind, a, b as u32, (b >> 32) as u32].iter().enumerate() {
            msg[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let io = |e| HostError::io("fake board bus", "fake bus", e);
        self.stream.write_all(&msg).map_err(io)?;
        let mut ack = [0u8; 4];
        self.stream.read_exact(&mut ack).map_err(io)?;
        match u32::from_ne_bytes(ack) {
            0 => Ok(()),
            code => Err(HostError::Backend(
                format!("the fake board failed handling bus message {kind} (code {code})").into(),
            )),
        }
    }
}

/// A [`Device`] that records every call into a log and, when wired, tells a fake board about
/// each register write, interrupt re-enable and memory write as it happens.
pub struct Recorder<D> {
    inner: D,
    log: Vec<Access>,
    bus: Option<BusClient>,
}

impl<D> fmt::Debug for Recorder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("accesses", &self.log.len())
            .field("wired", &self.bus.is_some())
            .finish()
    }
}

impl<D: Device> Recorder<D> {
    /// Records `inner`'s accesses.
    pub fn new(inner: D) -> Recorder<D> {
        Recorder {
            inner,
            log: Vec::new(),
            bus: None,
        }
    }

    /// Records `inner`'s accesses and hands them to the board at the other end of `bus`.
    pub fn wired(inner: D, bus: BusClient) -> Recorder<D> {
        Recorder {
            inner,
            log: Vec::new(),
            bus: Some(bus),
        }
    }

    /// Everything recorded so far.
    pub fn log(&self) -> &[Access] {
        &self.log
    }

    /// Everything recorded since the last call, which starts a new log.
    pub fn take_log(&mut self) -> Vec<Access> {
        std::mem::take(&mut self.log)
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    fn tell(&mut self, kind: u32, a: u32, b: u64) -> Result<()> {
        match self.bus.as_mut() {
            Some(bus) => bus.send(kind, a, b),
            None => Ok(()),
        }
    }
}

impl<D: Device> Device for Recorder<D> {
    type Error = HostError;

    fn read_reg(&mut self, offset: u32) -> Result<u32> {
        let value = self.inner.read_reg(offset).map_err(HostError::backend)?;
        self.log.push(Access::Read {
            reg: reg_name(offset),
            value,
        });
        Ok(value)
    }

    fn write_reg(&mut self, offset: u32, value: u32) -> Result<()> {
        self.inner
            .write_reg(offset, value)
            .map_err(HostError::backend)?;
        self.log.push(Access::Write {
            reg: reg_name(offset),
            value,
        });
        self.tell(BUS_WRITE, offset, u64::from(value))
    }

    fn memory(&self) -> MemRegion {
        self.inner.memory()
    }

    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<()> {
        // Told first: the board sees the write the moment the CPU makes it.
        self.tell(BUS_MEM_WRITE, data.len() as u32, addr.0)?;
        self.inner
            .mem_write(addr, data)
            .map_err(HostError::backend)?;
        self.log.push(Access::MemWrite {
            addr: addr.0,
            len: data.len() as u64,
        });
        Ok(())
    }

    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<()> {
        self.inner.mem_read(addr, buf).map_err(HostError::backend)?;
        self.log.push(Access::MemRead {
            addr: addr.0,
            len: buf.len() as u64,
        });
        Ok(())
    }

    fn sync_for_device(&mut self, addr: DeviceAddr, len: u64) -> Result<()> {
        self.inner
            .sync_for_device(addr, len)
            .map_err(HostError::backend)?;
        self.log.push(Access::SyncForDevice { addr: addr.0, len });
        Ok(())
    }

    fn sync_for_cpu(&mut self, addr: DeviceAddr, len: u64) -> Result<()> {
        self.inner
            .sync_for_cpu(addr, len)
            .map_err(HostError::backend)?;
        self.log.push(Access::SyncForCpu { addr: addr.0, len });
        Ok(())
    }

    fn arm_irq(&mut self) -> Result<()> {
        self.inner.arm_irq().map_err(HostError::backend)?;
        self.log.push(Access::ArmIrq);
        self.tell(BUS_ARMED, 0, 0)
    }

    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait> {
        let w = self.inner.wait_irq(timeout).map_err(HostError::backend)?;
        self.log.push(Access::WaitIrq(w));
        Ok(w)
    }

    fn irq_stats(&self) -> Option<IrqStats> {
        self.inner.irq_stats()
    }
}
