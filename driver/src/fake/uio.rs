//! Fake UIO devices: the `sys/class/uio/uioN` attributes in the kernel's formats, and `dev/uioN`
//! as a regular file the driver maps like the real device, so a test plays the hardware by reading
//! and writing that file ([`FakeRegs`]).
//!
//! File layout: as on the real device, map K is mmapped at file offset `K * page size`, so the
//! file is sized to hold every map at its offset (whole pages). A map larger than a page overlaps
//! the next map's bytes in this file; give a multi-map device page-sized maps when the maps must
//! be independent.
//!
//! The register file holds values in the CPU's byte order (what a `u32` store through the
//! mapping leaves there).
//!
//! The interrupt file: [`irq_pair`] gives the driver a socket end to read event counts from and
//! write enables to, as it does with `/dev/uioN`, and the other side an [`IrqPeer`] that sends
//! counts with the kernel's semantics (a read returns only the latest count).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::FakeSys;

/// A fake UIO device written by [`FakeSys::uio`].
#[derive(Clone, Debug)]
pub struct FakeUio {
    /// N of `uioN`.
    pub index: u32,
    /// The directory holding the attributes (the class entry itself, or the
    /// `sys/devices/...` directory it links to).
    pub sysfs_dir: PathBuf,
    /// `sys/class/uio/uioN`.
    pub class_entry: PathBuf,
    /// `dev/uioN`.
    pub dev_path: PathBuf,
    page: u64,
}

impl FakeSys {
    /// A UIO device `uio<index>` called `name` with `maps` (`(addr, size)` each, map K at index
    /// K), as `uio_pdrv_genirq` creates it: `version` = `devicetree`, `event` = `0`, `offset`
    /// = `0x0`, and an empty map name.
    pub fn uio(&self, index: u32, name: &str, maps: &[(u64, u64)]) -> std::io::Result<FakeUio> {
        let dir = self.root().join(format!("sys/class/uio/uio{index}"));
        self.uio_in(index, name, maps, dir)
    }

    /// As [`FakeSys::uio`], but the class entry is a symlink into `sys/devices`, as in real
    /// sysfs (`/sys/class/uio/uio0 -> ../../devices/platform/.../uio/uio0`).
    pub fn uio_symlinked(
        &self,
        index: u32,
        name: &str,
        maps: &[(u64, u64)],
    ) -> std::io::Result<FakeUio> {
        let addr = maps.first().map_or(0, |m| m.0);
        let dev_dir = self.root().join(format!(
            "sys/devices/platform/amba/{addr:x}.{name}/uio/uio{index}"
        ));
        let mut uio = self.uio_in(index, name, maps, dev_dir.clone())?;
        let class = self.root().join("sys/class/uio");
        std::fs::create_dir_all(&class)?;
        let entry = class.join(format!("uio{index}"));
        std::os::unix::fs::symlink(&dev_dir, &entry)?;
        uio.class_entry = entry;
        Ok(uio)
    }

    fn uio_in(
        &self,
        index: u32,
        name: &str,
        maps: &[(u64, u64)],
        dir: PathBuf,
    ) -> std::io::Result<FakeUio> {
        let page = crate::uio::page_size().map_err(std::io::Error::other)?;
        let rel = dir
            .strip_prefix(self.root())
            .map_err(std::io::Error::other)?
            .to_path_buf();
        self.write(rel.join("name"), format!("{name}\n"))?;
        self.write(rel.join("version"), "devicetree\n")?;
        self.write(rel.join("event"), "0\n")?;
        let mut file_len = 0u64;
        for (k, &(addr, size)) in maps.iter().enumerate() {
            // `%pa` zero-pads to the width of phys_addr_t (32 bits on Zynq-7000).
            let m = rel.join(format!("maps/map{k}"));
            self.write(m.join("name"), "\n")?;
            self.write(m.join("addr"), format!("{addr:#010x}\n"))?;
            self.write(m.join("size"), format!("{size:#010x}\n"))?;
            self.write(m.join("offset"), "0x0\n")?;
            file_len = file_len.max(k as u64 * page + size.next_multiple_of(page));
        }
        let dev_path = self.write(format!("dev/uio{index}"), b"")?;
        File::options()
            .write(true)
            .open(&dev_path)?
            .set_len(file_len)?;
        let class_entry = self.root().join(format!("sys/class/uio/uio{index}"));
        Ok(FakeUio {
            index,
            sysfs_dir: dir,
            class_entry,
            dev_path,
            page,
        })
    }
}

impl FakeUio {
    /// Overwrites the attribute `rel` (e.g. `maps/map0/size`) with `content` as is, to fake an
    /// odd kernel or garbage.
    pub fn set_attr(&self, rel: impl AsRef<Path>, content: &str) -> std::io::Result<()> {
        std::fs::write(self.sysfs_dir.join(rel), content)
    }

    /// The "hardware" side of map `map`'s registers, starting where the driver finds them
    /// (`K * page size + offset`, with the `offset` attribute as it is now).
    pub fn regs(&self, map: usize) -> std::io::Result<FakeRegs> {
        let off_path = self.sysfs_dir.join(format!("maps/map{map}/offset"));
        let off = std::fs::read_to_string(&off_path)?;
        let off = u64::from_str_radix(off.trim().trim_start_matches("0x"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.dev_path)?;
        Ok(FakeRegs {
            file,
            base: map as u64 * self.page + off,
        })
    }
}

/// The hardware's view of a fake register window: reads see the driver's writes through its
/// mapping, and writes are what the driver's reads return (one page cache behind both).
#[derive(Debug)]
pub struct FakeRegs {
    file: File,
    base: u64,
}

impl FakeRegs {
    /// The register at byte offset `off`.
    pub fn read32(&self, off: u32) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.file
            .read_exact_at(&mut b, self.base + u64::from(off))?;
        Ok(u32::from_ne_bytes(b))
    }

    /// Sets the register at byte offset `off`.
    pub fn write32(&self, off: u32, value: u32) -> std::io::Result<()> {
        self.file
            .write_all_at(&value.to_ne_bytes(), self.base + u64::from(off))
    }
}

/// The hardware's side of a fake interrupt file (see [`irq_pair`]).
#[derive(Debug)]
pub struct IrqPeer {
    /// Reads the driver's enables, writes event counts.
    pub(crate) board: UnixStream,
    /// A second handle on the driver's own end: counts the driver has not read yet are taken
    /// back from it before a newer one is sent.
    driver: UnixStream,
}

impl IrqPeer {
    /// Sends the kernel's total event count `count` as `/dev/uioN` would show it: a `read()`
    /// returns the count at the time of the read, so counts the driver has not read yet are
    /// replaced by this one, not queued behind it (a socket alone would queue every count).
    pub fn send_latest(&mut self, count: i32) -> std::io::Result<()> {
        let mut stale = [0u8; 64];
        loop {
            // SAFETY: recv into a live local buffer of its length, without blocking.
            let n = unsafe {
                libc::recv(
                    std::os::fd::AsRawFd::as_raw_fd(&self.driver),
                    stale.as_mut_ptr().cast(),
                    stale.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                continue;
            }
            let e = std::io::Error::last_os_error();
            if n == 0 || e.kind() == ErrorKind::WouldBlock {
                break;
            }
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        match self.board.write_all(&count.to_ne_bytes()) {
            // The driver closed its end: nobody is left to tell.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// A fake interrupt file: the descriptor the driver reads and writes like `/dev/uioN` (give it
/// to [`crate::irq::UioIrq::new`]) and the [`IrqPeer`] a fake board raises interrupts through.
pub fn irq_pair() -> std::io::Result<(OwnedFd, IrqPeer)> {
    let (driver, board) = UnixStream::pair()?;
    let peer = IrqPeer {
        board,
        driver: driver.try_clone()?,
    };
    Ok((OwnedFd::from(driver), peer))
}
