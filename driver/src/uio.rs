//! Linux UIO: finding the accelerator's `/dev/uioN` by name, and mapping its register window.
//!
//! - [`find_uio`] reads `sys/class/uio/*` under a [`SysRoot`] and returns the one device with the
//!   configured name ([`UioInfo`]: its number, dev file and maps). UIO numbers depend on probe
//!   order, so a device is never chosen by number.
//! - [`Mmio`] is one mapped register window (PYNQ's `MMIO`): it holds the dev file open with an
//!   exclusive `flock` for its whole life, and reads and writes 32-bit registers with volatile
//!   accesses through raw pointers (never a Rust reference into device memory).
//!
//! This module knows the kernel's UIO ABI (docs/driver.md, from `drivers/uio/uio.c` and
//! `uio_pdrv_genirq.c`): map N is mmapped at file offset `N * page size`; `size` may be rounded
//! up to whole pages, so it is checked with `>=`; the registers start `offset` bytes into the
//! mapping. It does not know the accelerator's register map (the caller passes the span it needs)
//! nor the interrupt protocol ([`crate::irq`]).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{HostError, Result};
use crate::process::{ForkGuard, dont_fork};
use crate::sys::{SysRoot, read_attr, read_attr_opt, read_hex};

/// One `maps/mapN` of a UIO device, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UioMap {
    /// N of `mapN`: the map is mmapped at file offset `N * page size`.
    pub index: usize,
    /// The map's name (`uio_pdrv_genirq` leaves it empty; other drivers name it).
    pub name: String,
    /// Physical address of the (page-aligned) start of the map.
    pub addr: u64,
    /// Bytes in the map, counted from `addr` (page-rounded by newer kernels).
    pub size: u64,
    /// Where the registers start inside the mapping (non-zero when `reg` is not page-aligned).
    pub offset: u64,
}

/// A UIO device found by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UioInfo {
    /// N of `uioN`.
    pub index: u32,
    /// `sys/class/uio/uioN` under the root (the class entry; on a board a symlink into
    /// `/sys/devices`).
    pub sysfs_dir: PathBuf,
    /// `dev/uioN` under the root.
    pub dev_path: PathBuf,
    /// The `name` attribute (the device-tree node name, or its `linux,uio-name`).
    pub name: String,
    /// The `version` attribute (`devicetree` for `uio_pdrv_genirq`); informational only.
    pub version: String,
    /// The non-empty maps, by index (the kernel creates `mapN` only for maps with a size).
    pub maps: Vec<UioMap>,
}

impl UioInfo {
    /// Map `index`, if the device has it.
    pub fn map(&self, index: usize) -> Option<&UioMap> {
        self.maps.iter().find(|m| m.index == index)
    }

    /// `uioN`, for messages.
    pub fn dev_name(&self) -> String {
        format!("uio{}", self.index)
    }
}

/// Finds the UIO device called `name` (matched exactly against the trimmed `name` attribute)
/// under `root`, and reads its maps.
///
/// Errors: [`HostError::DeviceNotFound`] (listing the names that were found) when none matches,
/// [`HostError::Ambiguous`] when several do, [`HostError::SysfsParse`] naming the attribute that
/// does not hold a hexadecimal number.
pub fn find_uio(root: &SysRoot, name: &str) -> Result<UioInfo> {
    let class = root.class("uio");
    let not_found = |found: String| HostError::DeviceNotFound {
        name: name.to_string(),
        root: root.path().to_path_buf(),
        found,
    };
    let entries = match numbered_entries(&class, "uio") {
        Ok(e) => e,
        // No `sys/class/uio` at all: the UIO core is not loaded, or nothing ever probed.
        Err(HostError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(String::new()));
        }
        Err(e) => return Err(e),
    };

    let mut seen = Vec::new();
    let mut matches = Vec::new();
    for (n, dir) in entries {
        // `metadata` follows the symlink a real class entry is; a dangling one is an error
        // naming it rather than a silently shorter list.
        let meta = std::fs::metadata(&dir).map_err(|e| HostError::io(&dir, "uio", e))?;
        if !meta.is_dir() {
            continue;
        }
        let dev_name = read_attr(&dir.join("name"))?;
        let dev_name = dev_name.trim().to_string();
        if dev_name == name {
            matches.push((n, dir.clone()));
        }
        seen.push(format!("uio{n} '{dev_name}'"));
    }

    match matches.len() {
        0 => Err(not_found(if seen.is_empty() {
            String::new()
        } else {
            format!(" (found: {})", seen.join(", "))
        })),
        1 => {
            let (n, dir) = matches.remove(0);
            read_info(root, n, dir, name)
        }
        _ => Err(HostError::Ambiguous {
            name: name.to_string(),
            candidates: matches.iter().map(|(n, _)| format!("uio{n}")).collect(),
        }),
    }
}

fn read_info(root: &SysRoot, n: u32, dir: PathBuf, name: &str) -> Result<UioInfo> {
    let version = read_attr_opt(&dir.join("version"))?.unwrap_or_default();
    let maps_dir = dir.join("maps");
    let map_dirs = match numbered_entries(&maps_dir, "map") {
        Ok(m) => m,
        // A device without any memory map has no `maps` directory.
        Err(HostError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let mut maps = Vec::with_capacity(map_dirs.len());
    for (k, mdir) in map_dirs {
        maps.push(UioMap {
            index: k as usize,
            name: read_attr_opt(&mdir.join("name"))?.unwrap_or_default(),
            addr: read_hex(&mdir.join("addr"))?,
            size: read_hex(&mdir.join("size"))?,
            offset: read_hex(&mdir.join("offset"))?,
        });
    }
    Ok(UioInfo {
        index: n,
        dev_path: root.dev(&format!("uio{n}")),
        sysfs_dir: dir,
        name: name.to_string(),
        version,
        maps,
    })
}

/// Checks that every FPGA manager under `root` (`sys/class/fpga_manager/fpgaN/state`) reports
/// `operating` (drivers/fpga/fpga-mgr.c `state_str`): the PL holds a finished bitstream, so a read
/// of the accelerator's registers gets an answer. An overlay left applied across a bitstream reload
/// (or a failed one) would otherwise have the first register read hang the interconnect. Called
/// before anything maps the registers.
///
/// A kernel without the FPGA manager class (the bitstream loaded by the boot loader, no manager
/// driver) has nothing to check: the ID register read stays the first check.
pub fn check_fpga_operating(root: &SysRoot) -> Result<()> {
    let class = root.class("fpga_manager");
    let managers = match numbered_entries(&class, "fpga") {
        Ok(m) => m,
        Err(HostError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for (_, dir) in managers {
        let path = dir.join("state");
        let state = read_attr(&path)?;
        if state != "operating" {
            return Err(HostError::FpgaNotOperating { path, state });
        }
    }
    Ok(())
}

/// The entries `<prefix><N>` of `dir`, sorted by N (so `uio10` comes after `uio9`); other
/// names are ignored.
fn numbered_entries(dir: &Path, prefix: &str) -> Result<Vec<(u32, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| HostError::io(dir, "uio", e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| HostError::io(dir, "uio", e))?;
        let file_name = entry.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|s| s.strip_prefix(prefix))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        out.push((n, entry.path()));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// The CPU's page size, from `sysconf(_SC_PAGESIZE)` (4 KiB on Zynq, but arm64 kernels can be
/// built with 16 or 64 KiB pages, so it is never assumed).
pub fn page_size() -> Result<u64> {
    use nix::unistd::{SysconfVar, sysconf};
    let path = || PathBuf::from("sysconf(_SC_PAGESIZE)");
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => Ok(n as u64),
        Ok(_) => Err(HostError::Io {
            path: path(),
            source: std::io::Error::other("no page size"),
        }),
        Err(e) => Err(HostError::Io {
            path: path(),
            source: e.into(),
        }),
    }
}

/// Orders every earlier write to memory (DMA buffers included) before the next device register
/// write, as the kernel's `writel()` does with `__iowmb()`. Rust's `fence(SeqCst)` emits only
/// an inner-shareable `dmb ish`, which does not order against a device's view of the outer
/// shareable domain, so ARM gets the kernel's barrier instruction.
#[inline]
fn dma_wmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier instruction: no operands, no stack, touches no register or flag. It is not
    // `nomem`, so the compiler also keeps memory accesses on their side of it.
    unsafe {
        core::arch::asm!("dmb oshst", options(nostack, preserves_flags));
    }
    // 32-bit ARM means ARMv7 here (Zynq-7000's Cortex-A9; stable Rust cannot test for v7, and an
    // ARMv6 target fails to assemble this rather than silently losing the barrier). The kernel's
    // `wmb()` is `dsb st` followed by the PL310 `outer_sync()`, which user space cannot issue;
    // DMA buffers there are uncached or synced through the kernel, which drains the outer cache.
    #[cfg(target_arch = "arm")]
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("dsb st", options(nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// Orders a device register read before every later memory read, as the kernel's `readl()` does
/// with `__iormb()`. Device memory is strongly ordered only against other device accesses: on a
/// coherent port the DMA buffer is cached Normal memory, and without this a load of the results
/// could be satisfied before the STATUS read that says they are there.
#[inline]
fn dma_rmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier instruction; see `dma_wmb`.
    unsafe {
        core::arch::asm!("dmb oshld", options(nostack, preserves_flags));
    }
    // The kernel's ARMv7 `__iormb()` is `rmb()`, a full `dsb`.
    #[cfg(target_arch = "arm")]
    // SAFETY: a barrier instruction; see `dma_wmb`.
    unsafe {
        core::arch::asm!("dsb sy", options(nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
}

/// One mapped UIO register window (PYNQ's `MMIO`): 32-bit registers at byte offsets.
///
/// The dev file stays open, with an exclusive `flock`, for the object's life: a second process
/// (or a second `Mmio` on the same device) gets [`HostError::DeviceBusy`]. The lock belongs to
/// the open file, so a descriptor cloned with [`Mmio::try_clone_fd`] (the interrupt's) holds it
/// too. The mapping is `MADV_DONTFORK` and every access checks it runs in the process that opened
/// the window ([`crate::process`]): a forked child gets [`HostError::Forked`].
#[derive(Debug)]
pub struct Mmio {
    file: File,
    map: MmapRaw,
    /// Where the registers start in the mapping (`maps/mapN/offset`).
    base: usize,
    /// Bytes of registers from `base` to the end of the mapping.
    span: usize,
    path: PathBuf,
    index: usize,
    owner: ForkGuard,
}

impl Mmio {
    /// Opens `info`'s dev file, locks it, and maps map `map_index`, which must hold at least
    /// `required` bytes of registers.
    pub fn open(info: &UioInfo, map_index: usize, required: u64) -> Result<Mmio> {
        let Some(map) = info.map(map_index) else {
            // The kernel creates `mapN` only for maps with a size: a missing one is empty.
            return Err(HostError::MapTooSmall {
                device: info.dev_name(),
                index: map_index,
                actual: 0,
                required,
            });
        };
        let path = &info.dev_path;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        lock_exclusive(&file, path)?;
        Mmio::map(file, path, &info.dev_name(), map, required)
    }

    fn map(file: File, path: &Path, device: &str, map: &UioMap, required: u64) -> Result<Mmio> {
        let too_small = |actual| HostError::MapTooSmall {
            device: device.to_string(),
            index: map.index,
            actual,
            required,
        };
        // The registers run from `offset` to the end of the map; `size` counts from the map's
        // page-aligned start and may be rounded up to whole pages, so only `>=` is checked.
        let span = map
            .size
            .checked_sub(map.offset)
            .ok_or_else(|| too_small(0))?;
        if span < required {
            return Err(too_small(span));
        }
        let page = page_size()?;
        let file_offset = (map.index as u64).checked_mul(page);
        let rejected = |why: &str| HostError::MapRejected {
            path: path.to_path_buf(),
            index: map.index,
            len: map.size,
            offset: file_offset.unwrap_or(u64::MAX),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string()),
        };
        let file_offset = file_offset.ok_or_else(|| rejected("map index too large"))?;
        let len = usize::try_from(map.size)
            .map_err(|_| rejected("the map is larger than the address space"))?;
        if !map.offset.is_multiple_of(4) {
            return Err(rejected("register offset in the map is not 4-byte aligned"));
        }
        let mapped = MmapOptions::new()
            .len(len)
            .offset(file_offset)
            .map_raw(&file)
            .map_err(|e| map_error(path, map.index, map.size, file_offset, e))?;
        dont_fork(&mapped, path)?;
        Ok(Mmio {
            file,
            map: mapped,
            base: map.offset as usize,
            span: span as usize,
            path: path.to_path_buf(),
            index: map.index,
            owner: ForkGuard::new(),
        })
    }

    /// Bytes of registers in the window.
    pub fn span(&self) -> u64 {
        self.span as u64
    }

    /// The dev file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The map index.
    pub fn map_index(&self) -> usize {
        self.index
    }

    /// The dev file's descriptor (the interrupt is read and re-enabled through it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// A second descriptor of the same open dev file (`dup`): it shares the interrupt event count
    /// the kernel keeps per open file, and the lock.
    pub fn try_clone_fd(&self) -> Result<OwnedFd> {
        self.owner.check(&self.path)?;
        self.file
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| HostError::io(&self.path, "uio", e))
    }

    /// Reads the 32-bit register at byte offset `off`.
    pub fn read32(&mut self, off: u32) -> Result<u32> {
        let p = self.reg_ptr(off)?;
        // SAFETY: `reg_ptr` checked that `p` is 4-byte aligned and inside the live mapping; the
        // access is volatile through a raw pointer, so no reference to device memory exists.
        let v = unsafe { p.read_volatile() };
        dma_rmb();
        Ok(v)
    }

    /// Writes the 32-bit register at byte offset `off`, after the DMA write barrier: memory the
    /// device will read (descriptors, inputs) is ordered before a doorbell.
    pub fn write32(&mut self, off: u32, value: u32) -> Result<()> {
        let p = self.reg_ptr(off)?;
        dma_wmb();
        // SAFETY: as in `read32`.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    fn reg_ptr(&self, off: u32) -> Result<*mut u32> {
        self.owner.check(&self.path)?;
        let o = off as usize;
        if !o.is_multiple_of(4) || o.checked_add(4).is_none_or(|end| end > self.span) {
            return Err(HostError::Arg {
                what: "register offset",
                why: format!(
                    "{off:#x} is not an aligned 32-bit register of the {:#x}-byte window of {} (offsets must be multiples of 4 below {:#x})",
                    self.span,
                    self.path.display(),
                    self.span
                ),
            });
        }
        // SAFETY: `base + span` is the mapping's length (checked at `map`), so `base + o + 4`
        // stays inside the mapping; `base` and `o` are multiples of 4 and the mapping is
        // page-aligned, so the pointer is aligned for u32.
        Ok(unsafe { self.map.as_mut_ptr().add(self.base + o) }.cast::<u32>())
    }
}

/// Takes the exclusive lock without waiting. Never unlocked explicitly: the kernel drops it
/// when the last descriptor of the open file closes (so a failing unlock cannot panic in `Drop`,
/// the `uio` crate's flaw).
fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    // SAFETY: `flock` on a descriptor `file` owns and keeps open for the call.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(HostError::DeviceBusy {
            path: path.to_path_buf(),
        })
    } else {
        Err(HostError::io(path, "uio", e))
    }
}

/// An error opening the dev file: EACCES/EPERM become [`HostError::PermissionDenied`] with the
/// udev hint.
fn open_error(path: &Path, e: std::io::Error) -> HostError {
    HostError::io(path, "uio", e)
}

/// An mmap failure: permission problems as on open, anything else (the kernel's EINVAL for an
/// index or length beyond the map, ENODEV for an unaligned physical address) as
/// [`HostError::MapRejected`].
fn map_error(path: &Path, index: usize, len: u64, offset: u64, e: std::io::Error) -> HostError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return HostError::io(path, "uio", e);
    }
    HostError::MapRejected {
        path: path.to_path_buf(),
        index,
        len,
        offset,
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_name_the_file_and_the_udev_rule() {
        let p = Path::new("/dev/uio3");
        for errno in [libc::EACCES, libc::EPERM] {
            let e = open_error(p, std::io::Error::from_raw_os_error(errno));
            assert!(
                matches!(&e, HostError::PermissionDenied { path, subsystem: "uio" } if path == p),
                "{e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.starts_with("permission denied opening /dev/uio3: "),
                "{msg}"
            );
            assert!(msg.contains("SUBSYSTEM==\"uio\""), "{msg}");
            let e = map_error(p, 0, 0x1000, 0, std::io::Error::from_raw_os_error(errno));
            assert!(matches!(e, HostError::PermissionDenied { .. }), "{e:?}");
        }
    }

    #[test]
    fn a_refused_mmap_names_the_map_and_the_errno() {
        let p = Path::new("/dev/uio0");
        let e = map_error(
            p,
            1,
            0x1000,
            0x1000,
            std::io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert!(
            matches!(e, HostError::MapRejected { index: 1, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "mmap of /dev/uio0 (map 1, 0x1000 bytes at offset 0x1000) failed: Invalid argument (os error 22)"
        );
        let e = open_error(p, std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(matches!(e, HostError::Io { .. }), "{e:?}");
    }

    #[test]
    fn uio_entries_sort_by_number_not_by_text() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["uio10", "uio2", "uio9", "uiox", "uio", "other1"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let got: Vec<u32> = numbered_entries(dir.path(), "uio")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(got, [2, 9, 10]);
    }

    #[test]
    fn the_page_size_is_the_kernels() {
        let p = page_size().unwrap();
        assert!(p.is_power_of_two() && p >= 4096, "{p}");
    }
}
