//! The UIO interrupt protocol over a file descriptor: drain stale events, re-enable the line,
//! wait for the next event with a timeout.
//!
//! The kernel's side (docs/driver.md, from `drivers/uio/uio.c` and `uio_pdrv_genirq.c`):
//! - `read()` takes exactly 4 bytes and returns the device's total event count (an s32); it
//!   blocks until the count differs from the last one this open file read. A jump of more than
//!   one means interrupts fired that nobody waited for.
//! - `poll()` reports POLLIN while the count differs, so a timeout is a `poll` timeout.
//! - `write()` of a native-endian 4-byte non-zero value re-enables the line, which
//!   `uio_pdrv_genirq` masks on every interrupt; the caller must clear the device's interrupt
//!   cause first or a level-triggered line fires again at once.
//! - EIO from either means the device has no interrupt (or was removed).
//!
//! [`UioIrq`] works on any descriptor that behaves like that: `/dev/uioN` on a board, one end of
//! a `UnixStream::pair()` in tests. It does not know registers or what the interrupt means. The
//! event count belongs to the open file, which a forked child shares: only the process that made
//! the `UioIrq` may use it ([`crate::process::ForkGuard`]).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use caq_spec::IrqStats;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{HostError, Result};
use crate::process::ForkGuard;

/// What [`UioIrq::wait`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqOutcome {
    /// An event arrived: the kernel's total `count`, and how many events before it were `missed`
    /// (fired since the previous read without a read of their own).
    Fired { count: u32, missed: u32 },
    /// The timeout passed without an event.
    TimedOut,
}

/// The interrupt of one UIO device, read through `fd`.
#[derive(Debug)]
pub struct UioIrq {
    fd: OwnedFd,
    path: PathBuf,
    /// The last event count read, when known.
    last: Option<u32>,
    stats: IrqStats,
    owner: ForkGuard,
}

impl UioIrq {
    /// The interrupt read through `fd`; `path` names it in errors. The descriptor is made
    /// non-blocking (on the open file, so a `dup` shares it; mmap does not care), so a read
    /// never blocks past a `poll`'s verdict.
    pub fn new(fd: OwnedFd, path: impl Into<PathBuf>) -> Result<UioIrq> {
        let path = path.into();
        set_nonblocking(&fd).map_err(|e| HostError::io(&path, "uio", e.into()))?;
        Ok(UioIrq {
            fd,
            path,
            last: None,
            stats: IrqStats::default(),
            owner: ForkGuard::new(),
        })
    }

    /// Starts from the kernel's current event count (the `event` attribute read at open), so
    /// the first wait can already tell missed events. Without it, the first count is taken as is.
    pub fn with_count(mut self, count: u32) -> UioIrq {
        self.last = Some(count);
        self
    }

    /// The descriptor's name for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last event count read, if any.
    pub fn last_count(&self) -> Option<u32> {
        self.last
    }

    /// Delivered and missed events so far (`polled` stays 0: polling is the device's business).
    pub fn stats(&self) -> IrqStats {
        self.stats
    }

    /// Consumes every event already pending, without blocking, so a leftover from an earlier
    /// job cannot end the next wait early. Returns how many events were pending (each also
    /// counts as missed: it fired while nobody waited).
    pub fn drain(&mut self) -> Result<u32> {
        self.owner.check(&self.path)?;
        let mut drained = 0u32;
        while self.readable(PollTimeout::ZERO)? {
            let Some(count) = self.read_count()? else {
                break;
            };
            let jump = self.jump(count).max(1);
            drained = drained.saturating_add(jump);
            self.stats.missed += u64::from(jump);
        }
        Ok(drained)
    }

    /// Re-enables the interrupt line: writes exactly 4 bytes, `1u32` in native byte order.
    pub fn enable(&mut self) -> Result<()> {
        self.owner.check(&self.path)?;
        let bytes = 1u32.to_ne_bytes();
        loop {
            match nix::unistd::write(self.fd.as_fd(), &bytes) {
                Ok(4) => return Ok(()),
                Ok(n) => {
                    return Err(HostError::Io {
                        path: self.path.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::WriteZero,
                            format!("wrote {n} of the 4 bytes that re-enable the interrupt"),
                        ),
                    });
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(irq_error(&self.path, e)),
            }
        }
    }

    /// Waits up to `timeout` for the next event. A signal interrupting the wait does not end
    /// it: the wait resumes with the time that is left.
    pub fn wait(&mut self, timeout: Duration) -> Result<IrqOutcome> {
        self.owner.check(&self.path)?;
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let remaining = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            // Readable with nothing to read (another reader of the same open file was faster)
            // keeps the wait going.
            if self.readable(poll_timeout(remaining))?
                && let Some(count) = self.read_count()?
            {
                let missed = self.jump(count).saturating_sub(1);
                self.stats.delivered += 1;
                self.stats.missed += u64::from(missed);
                return Ok(IrqOutcome::Fired { count, missed });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(IrqOutcome::TimedOut);
            }
        }
    }

    /// Events since the last read, and records `count` as the last one (the kernel's count is an
    /// s32 that wraps, so the difference is taken modulo 2^32).
    fn jump(&mut self, count: u32) -> u32 {
        let jump = self.last.map_or(1, |last| count.wrapping_sub(last));
        self.last = Some(count);
        jump
    }

    /// Polls for POLLIN (and the error conditions, which the next read reports). EINTR reads
    /// as "not readable yet"; the caller's deadline loop retries.
    fn readable(&self, timeout: PollTimeout) -> Result<bool> {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => Ok(false),
            Ok(_) => Ok(fds[0].revents().is_some_and(|r| !r.is_empty())),
            Err(e) => Err(irq_error(&self.path, e)),
        }
    }

    /// Reads one 4-byte event count; `None` when nothing is pending (EAGAIN).
    fn read_count(&mut self) -> Result<Option<u32>> {
        let mut buf = [0u8; 4];
        loop {
            match nix::unistd::read(self.fd.as_fd(), &mut buf) {
                Ok(4) => return Ok(Some(u32::from_ne_bytes(buf))),
                Ok(0) => {
                    return Err(HostError::Io {
                        path: self.path.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the interrupt file was closed",
                        ),
                    });
                }
                Ok(n) => {
                    return Err(HostError::Io {
                        path: self.path.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("read {n} bytes; a UIO event count is 4"),
                        ),
                    });
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(e) => return Err(irq_error(&self.path, e)),
            }
        }
    }
}

/// An error reading or writing the interrupt file: EIO is the kernel's "this device has no
/// interrupt" (or it was removed), [`HostError::NoInterrupt`]; anything else is I/O.
pub(crate) fn irq_error(path: &Path, e: Errno) -> HostError {
    let source = std::io::Error::from(e);
    if e == Errno::EIO {
        HostError::NoInterrupt {
            path: path.to_path_buf(),
            source,
        }
    } else {
        HostError::io(path, "uio", source)
    }
}

/// A poll timeout of at least `d`: rounded up to whole milliseconds (rounding down would wake
/// early and spin), capped at poll's largest (~24 days; the caller's deadline loop goes on).
fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eio_means_no_interrupt_and_other_errors_are_io() {
        let p = Path::new("/dev/uio0");
        let e = irq_error(p, Errno::EIO);
        assert!(
            matches!(&e, HostError::NoInterrupt { path, .. } if path == p),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("/dev/uio0 has no interrupt (Input/output error (os error 5)): "),
            "{e}"
        );
        let e = irq_error(p, Errno::ENOSYS);
        assert!(matches!(e, HostError::Io { .. }), "{e:?}");
        let e = irq_error(p, Errno::EACCES);
        assert!(matches!(e, HostError::PermissionDenied { .. }), "{e:?}");
    }

    #[test]
    fn poll_timeouts_round_up_to_a_millisecond() {
        assert_eq!(i32::from(poll_timeout(Duration::ZERO)), 0);
        assert_eq!(i32::from(poll_timeout(Duration::from_micros(1))), 1);
        assert_eq!(i32::from(poll_timeout(Duration::from_micros(1500))), 2);
        assert_eq!(i32::from(poll_timeout(Duration::MAX)), i32::MAX);
    }
}
