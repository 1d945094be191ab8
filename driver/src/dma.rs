//! DMA memory the accelerator masters: one physically contiguous region, seen by the CPU through a
//! mapping and by the accelerator at a device (bus) address.
//!
//! - [`DmaMemory`] is what the UIO backend needs from such a region: copies in and out, and the
//!   cache maintenance around the device's accesses.
//! - Its implementations: the u-dma-buf kernel driver on a board, and a memfd for tests and
//!   simulation (optionally incoherent: a separate device view that only the sync calls update,
//!   so a test that forgets a sync reads stale data and fails).
//!
//! Rules from docs/driver.md: never a Rust reference into uncached or device memory (raw
//! pointers, aligned volatile copies); the copy routine follows what the mapping really is
//! ([`udmabuf_mapping`]: `sync_mode` and quirk-mmap decide it, not what was asked for); a sync
//! always passes offset, size and direction (a bare "1" syncs nothing).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use caq_spec::MemRegion;
use memmap2::{MmapOptions, MmapRaw};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::error::{HostError, Result};
use crate::process::{ForkGuard, dont_fork};
use crate::sys::{SysRoot, read_attr_opt, read_dec, read_hex};

/// How CPU and device views of the memory are kept consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coherency {
    /// The port snoops the CPU caches (ZynqMP HPC with `dma-coherent`, Zynq-7000 ACP): syncs are
    /// no-ops.
    HwCoherent,
    /// The CPU maps the memory uncached (u-dma-buf `O_SYNC`, `sync_mode=1`): no syncs needed,
    /// but copies are aligned volatile word loops (memcpy may fault on device memory).
    Uncached,
    /// Cached mapping on a non-coherent port: every device access is bracketed by a kernel sync.
    ManualSync,
}

/// Direction of a cache-maintenance operation (the kernel's `dma_data_direction` numbering as
/// u-dma-buf takes it: 0 bidirectional, 1 to the device, 2 from the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDir {
    Bidirectional = 0,
    ToDevice = 1,
    FromDevice = 2,
}

/// A DMA region: `len()` bytes at device address `device_addr()`.
pub trait DmaMemory: Send {
    /// For messages: the u-dma-buf device name, or `memfd`.
    fn name(&self) -> &str;
    /// The device (bus) address of byte 0.
    fn device_addr(&self) -> u64;
    /// Bytes in the region.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn coherency(&self) -> Coherency;
    /// CPU-side copy into the region at byte offset `off`.
    fn write(&mut self, off: u64, src: &[u8]) -> Result<()>;
    /// CPU-side copy out of the region at byte offset `off`.
    fn read(&mut self, off: u64, dst: &mut [u8]) -> Result<()>;
    /// Makes CPU writes to `[off, off + len)` visible to the device (clean).
    fn sync_for_device(&mut self, off: u64, len: u64, dir: SyncDir) -> Result<()>;
    /// Makes device writes to `[off, off + len)` visible to the CPU (invalidate).
    fn sync_for_cpu(&mut self, off: u64, len: u64, dir: SyncDir) -> Result<()>;
}

// ---------------------------------------------------------------------------------------------
// Shared helpers: cache lines, range checks, copies
// ---------------------------------------------------------------------------------------------

/// The cache-line granule of every sync and of the sub-allocator: 64 bytes, the Cortex-A53 line
/// (ZynqMP) and a multiple of the Cortex-A9 / PL310 32-byte line (Zynq-7000), so a line-aligned
/// range is whole lines on both chips.
pub const CACHE_LINE: u64 = 64;

/// `[off, off + len)` widened to whole cache lines (offset rounded down, end rounded up) and
/// clamped to a buffer of `size` bytes: what a clean or invalidate really touches. Returns
/// `(offset, len)`.
pub fn line_range(off: u64, len: u64, size: u64) -> (u64, u64) {
    let start = off - off % CACHE_LINE;
    let end = off
        .saturating_add(len)
        .div_ceil(CACHE_LINE)
        .saturating_mul(CACHE_LINE)
        .min(size);
    (start.min(end), end.saturating_sub(start))
}

/// Checks that `[off, off + n)` lies in a region of `size` bytes at device address `base`;
/// returns `off` as a `usize` for pointer arithmetic.
fn check_range(name: &str, base: u64, size: u64, off: u64, n: u64, op: &str) -> Result<usize> {
    let end = off.checked_add(n).filter(|e| *e <= size);
    match (end, usize::try_from(off)) {
        (Some(_), Ok(at)) => Ok(at),
        _ => Err(HostError::AddressOutOfRange {
            what: format!("{op} of {n} bytes at offset {off:#x} of {name}"),
            addr: base.saturating_add(off),
            end: base.saturating_add(off).saturating_add(n),
            limit_base: base,
            limit_end: base.saturating_add(size),
            why: "outside the DMA buffer",
        }),
    }
}

/// The widest word a plain load or store moves on the target: 64 bits on aarch64 (and test
/// hosts), 32 bits on ARMv7 (Zynq-7000), where a 64-bit access would be two instructions anyway.
#[cfg(target_pointer_width = "64")]
type Word = u64;
#[cfg(not(target_pointer_width = "64"))]
type Word = u32;
const WORD: usize = std::mem::size_of::<Word>();

/// Copies `src` to `base + off` with aligned volatile word stores only: memcpy may use unaligned
/// or multi-register accesses that fault on uncached (Device / strongly-ordered) memory
/// (u-dma-buf's README reports a bus error from memset). A partial word at the head or tail is
/// read, merged and written back whole.
///
/// # Safety
/// `base` is the page-aligned start of a live mapping covering `off + src.len()` bytes (rounded
/// up to whole pages, so every aligned word holding one of those bytes is mapped).
unsafe fn volatile_write(base: *mut u8, off: usize, src: &[u8]) {
    let mut done = 0;
    while done < src.len() {
        let at = off + done;
        let word_at = at - at % WORD;
        let in_word = at - word_at;
        let n = (WORD - in_word).min(src.len() - done);
        // SAFETY: `word_at` is WORD-aligned (base is page-aligned) and the word holds byte `at`,
        // which lies in the mapping, so the whole word lies in the same mapped page.
        let p = unsafe { base.add(word_at) }.cast::<Word>();
        let mut bytes = if n < WORD {
            // SAFETY: as above; a read of the word we are about to rewrite.
            unsafe { p.read_volatile() }.to_ne_bytes()
        } else {
            [0; WORD]
        };
        bytes[in_word..in_word + n].copy_from_slice(&src[done..done + n]);
        // SAFETY: as above.
        unsafe { p.write_volatile(Word::from_ne_bytes(bytes)) };
        done += n;
    }
}

/// Copies `dst.len()` bytes from `base + off` with aligned volatile word loads only (see
/// [`volatile_write`]).
///
/// # Safety
/// As for [`volatile_write`].
unsafe fn volatile_read(base: *const u8, off: usize, dst: &mut [u8]) {
    let mut done = 0;
    while done < dst.len() {
        let at = off + done;
        let word_at = at - at % WORD;
        let in_word = at - word_at;
        let n = (WORD - in_word).min(dst.len() - done);
        // SAFETY: `word_at` is WORD-aligned and holds byte `at`, which is mapped (see above).
        let word = unsafe { base.add(word_at).cast::<Word>().read_volatile() };
        dst[done..done + n].copy_from_slice(&word.to_ne_bytes()[in_word..in_word + n]);
        done += n;
    }
}

/// Copies into cached memory: a plain memcpy through raw pointers (no reference into the mapping).
///
/// # Safety
/// `base + off .. base + off + src.len()` lies in a live, writable mapping that `src` does not
/// overlap.
unsafe fn cached_write(base: *mut u8, off: usize, src: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(off), src.len()) }
}

/// Copies out of cached memory (see [`cached_write`]).
///
/// # Safety
/// `base + off .. base + off + dst.len()` lies in a live mapping that `dst` does not overlap.
unsafe fn cached_read(base: *const u8, off: usize, dst: &mut [u8]) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(base.add(off), dst.as_mut_ptr(), dst.len()) }
}

// ---------------------------------------------------------------------------------------------
// u-dma-buf
// ---------------------------------------------------------------------------------------------

/// The Zynq family the driver runs on: it decides how a non-coherent buffer is mapped (§2.4 of
/// the driver research: ARMv7 user space cannot clean or invalidate to the point of coherency,
/// arm64 relies on kernel syncs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipFamily {
    /// Zynq-7000 (Cortex-A9, ARMv7, PL310 outer cache).
    Zynq7000,
    /// Zynq UltraScale+ MPSoC (Cortex-A53, aarch64).
    ZynqMp,
}

impl ChipFamily {
    /// The family this binary was built for: 32-bit ARM is Zynq-7000; everything else (aarch64,
    /// and test hosts) behaves as ZynqMP.
    pub const fn of_target() -> ChipFamily {
        if cfg!(target_arch = "arm") {
            ChipFamily::Zynq7000
        } else {
            ChipFamily::ZynqMp
        }
    }
}

/// How to map a u-dma-buf: the chip family and the user's override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoherencyChoice {
    pub chip: ChipFamily,
    /// Map cached and bracket every device access with kernel syncs ([`Coherency::ManualSync`]),
    /// and refuse ([`HostError::NotCacheable`]) when u-dma-buf cannot map the buffer cached
    /// (`sync_mode` with SYNC_ALWAYS, quirk-mmap off). On a non-coherent Zynq-7000 port this
    /// replaces the default uncached mapping: faster CPU copies (the u-dma-buf README measures
    /// ~5x), at the price of a sync syscall per buffer and per job. Elsewhere cached is already
    /// the default, and this turns its quiet fallback to an uncached mapping into an error.
    pub require_cached: bool,
}

impl Default for CoherencyChoice {
    fn default() -> Self {
        CoherencyChoice {
            chip: ChipFamily::of_target(),
            require_cached: false,
        }
    }
}

impl CoherencyChoice {
    /// The coherency asked for a buffer whose `dma_coherent` attribute reads `dma_coherent`
    /// (what the mapping then really is decides the rest: [`udmabuf_mapping`]).
    pub fn resolve(&self, dma_coherent: bool) -> Coherency {
        choose_coherency(dma_coherent, self.chip, self.require_cached)
    }
}

/// The coherence rule of docs/driver.md (research §6.5.1), one line per case:
/// - `dma-coherent` in the device tree (ZynqMP HPC through the CCI, Zynq-7000 ACP): cached, the
///   hardware snoops, syncs are no-ops;
/// - Zynq-7000 otherwise: uncached (`O_SYNC` + `sync_mode=1`), unless the user asks for cached
///   mapping with kernel syncs;
/// - ZynqMP otherwise: cached with kernel syncs (uncached is ~3x slower and memcpy-hostile).
pub fn choose_coherency(dma_coherent: bool, chip: ChipFamily, require_cached: bool) -> Coherency {
    match (dma_coherent, chip) {
        (true, _) => Coherency::HwCoherent,
        (false, ChipFamily::Zynq7000) if require_cached => Coherency::ManualSync,
        (false, ChipFamily::Zynq7000) => Coherency::Uncached,
        (false, ChipFamily::ZynqMp) => Coherency::ManualSync,
    }
}

/// `sync_mode`'s SYNC_ALWAYS bit: the `O_SYNC` page protection applies to every open.
pub const SYNC_ALWAYS: u64 = 4;

/// What the CPU's mapping of a u-dma-buf really is. It decides the copy routine: only
/// [`Mapping::Cached`] memory takes `memcpy`; anything else gets aligned volatile words, because an
/// unaligned or multi-register access to Device memory faults on arm64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// Normal cacheable memory.
    Cached,
    /// Not cacheable, and why (which page protection u-dma-buf chose).
    NonCached(&'static str),
    /// Not known (a driver without the `quirk_mmap_mode` attribute, an undefined mode): copies
    /// are volatile words and a non-coherent buffer still gets kernel syncs, each right for
    /// either kind of mapping.
    Unknown(&'static str),
}

impl Mapping {
    pub fn is_cached(&self) -> bool {
        matches!(self, Mapping::Cached)
    }
}

/// The mapping u-dma-buf gives an `mmap` of its device file (u-dma-buf.c v5,
/// `udmabuf_object_mmap`): with `O_SYNC` or `sync_mode`'s [`SYNC_ALWAYS`] bit, `sync_mode & 3`
/// picks non-cached (1, `pgprot_noncached`: Device memory on arm64), write-combine (2) or
/// DMA-coherent (3; write-combine on arm64), and 0 keeps the default. Then, with quirk-mmap on
/// (`quirk_mmap_mode` 2 or 4, or 3 for a non-coherent buffer) the pages are mapped with that
/// protection, cacheable by default; with quirk-mmap off (1, or 3 for a coherent buffer) the kernel's
/// `dma_mmap_coherent` maps them, cacheable only for a coherent device. A missing
/// `quirk_mmap_mode` (a driver built without quirk-mmap, or an older one) leaves a non-coherent
/// buffer's mapping [`Mapping::Unknown`].
pub fn udmabuf_mapping(
    o_sync: bool,
    sync_mode: u64,
    quirk_mmap_mode: Option<u64>,
    dma_coherent: bool,
) -> Mapping {
    if o_sync || sync_mode & SYNC_ALWAYS != 0 {
        match sync_mode & 3 {
            1 => return Mapping::NonCached("sync_mode 1: pgprot_noncached"),
            2 => return Mapping::NonCached("sync_mode 2: write-combine"),
            3 => return Mapping::NonCached("sync_mode 3: pgprot_dmacoherent"),
            _ => {}
        }
    }
    if dma_coherent {
        // Both paths map a coherent device's buffer cacheable.
        return Mapping::Cached;
    }
    match quirk_mmap_mode {
        Some(2..=4) => Mapping::Cached,
        Some(1) => Mapping::NonCached(
            "quirk_mmap_mode 1: dma_mmap_coherent maps a non-coherent device's buffer uncached",
        ),
        Some(_) => Mapping::Unknown("quirk_mmap_mode is not one u-dma-buf defines"),
        None => Mapping::Unknown(
            "no quirk_mmap_mode attribute: cached with quirk-mmap, uncached without",
        ),
    }
}

/// How a u-dma-buf takes its sync commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMethod {
    /// `ioctl(U_DMA_BUF_IOCTL_SET_SYNC_FOR_*)` on the `/dev` file (the driver has
    /// `ioctl_version`): works for whoever may open the device file.
    Ioctl,
    /// A write to the `sync_for_*` sysfs attribute (older drivers; the attributes are mode 0664
    /// root, so this usually needs root).
    Sysfs,
}

/// Which way a sync goes: picks the ioctl and the sysfs attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncOp {
    ForDevice,
    ForCpu,
}

impl SyncOp {
    fn attr(self) -> &'static str {
        match self {
            SyncOp::ForDevice => "sync_for_device",
            SyncOp::ForCpu => "sync_for_cpu",
        }
    }
}

// u-dma-buf-ioctl.h: _IOW('U', 5, uint64_t) and _IOW('U', 6, uint64_t).
nix::ioctl_write_ptr!(udmabuf_set_sync_for_cpu, b'U', 5, u64);
nix::ioctl_write_ptr!(udmabuf_set_sync_for_device, b'U', 6, u64);

/// The packed u-dma-buf sync command for `[off, off + len)` in direction `dir`:
/// `(off << 32) | (len & !0xF) | (dir << 2) | 1` (u-dma-buf.c, `udmabuf_sync_command_argments`:
/// offset in bits 63:32, size in bits 31:4, direction in bits 3:2, bit 0 "sync now"). Any bit
/// but bit 0 set means "use these arguments", so the command never degenerates into a bare `1`
/// (which would sync the stored `sync_size`, 0 by default). `None` when `off` or `len` does not
/// fit its 32-bit field.
pub fn sync_command(off: u64, len: u64, dir: SyncDir) -> Option<u64> {
    if off > u64::from(u32::MAX) || len > u64::from(u32::MAX) {
        return None;
    }
    Some((off << 32) | (len & 0xFFFF_FFF0) | ((dir as u64) << 2) | 1)
}

/// Maps the OS error of a sync command: no permission is [`HostError::PermissionDenied`] (fix
/// with a udev rule), a missing attribute or device file is [`HostError::Io`], and anything
/// else (EINVAL for a range past the buffer, ENOTTY for an unknown ioctl, EISDIR, ...) is the
/// kernel rejecting the command, [`HostError::SyncRejected`].
pub fn sync_error(path: &Path, command: u64, what: String, e: std::io::Error) -> HostError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => HostError::PermissionDenied {
            path: path.to_path_buf(),
            subsystem: "u-dma-buf",
        },
        std::io::ErrorKind::NotFound => HostError::Io {
            path: path.to_path_buf(),
            source: e,
        },
        _ => HostError::SyncRejected {
            path: path.to_path_buf(),
            command,
            what,
            source: e,
        },
    }
}

/// A u-dma-buf (ikwzm/udmabuf, v5) buffer: one physically contiguous region reserved by the
/// kernel module, mapped whole into this process.
///
/// Attribute formats are from u-dma-buf.c: `phys_addr` `%pad` (hex), `size` `%zu` (decimal),
/// `sync_mode` and `dma_coherent` `%d`; `ioctl_version` exists when the module was built with
/// ioctls.
#[derive(Debug)]
pub struct UDmaBuf {
    name: String,
    sysfs: PathBuf,
    dev: PathBuf,
    file: File,
    map: MmapRaw,
    phys_addr: u64,
    size: u64,
    coherency: Coherency,
    mapping: Mapping,
    sync_method: SyncMethod,
    dma_coherent: bool,
    owner: ForkGuard,
}

impl UDmaBuf {
    /// Opens the u-dma-buf `name` found under `root` (`sys/class/u-dma-buf/<name>`, or the
    /// pre-v2 `sys/class/udmabuf/<name>`), maps it whole with the coherency `choice` gives for its
    /// `dma_coherent` attribute (setting `sync_mode=1` first when it must be uncached).
    pub fn open(root: &SysRoot, name: &str, choice: CoherencyChoice) -> Result<UDmaBuf> {
        let sysfs = Self::find(root, name)?;
        let phys_addr = read_hex(&sysfs.join("phys_addr"))?;
        let size_path = sysfs.join("size");
        let size = read_dec(&size_path)?;
        if size == 0 {
            return Err(HostError::SysfsParse {
                path: size_path,
                content: "0".into(),
                expected: "a nonzero buffer size",
            });
        }
        let len = usize::try_from(size).map_err(|_| HostError::SysfsParse {
            path: size_path.clone(),
            content: size.to_string(),
            expected: "a size this process can map",
        })?;
        // Modules built for kernels without `dev_is_dma_coherent` have no attribute: treat the
        // buffer as non-coherent, which is always safe (the kernel's syncs are then real).
        let coherent_path = sysfs.join("dma_coherent");
        let dma_coherent = match read_attr_opt(&coherent_path)? {
            None => false,
            Some(s) => match s.as_str() {
                "0" => false,
                "1" => true,
                _ => {
                    return Err(HostError::SysfsParse {
                        path: coherent_path,
                        content: s,
                        expected: "0 or 1",
                    });
                }
            },
        };
        let sync_method = if sysfs.join("ioctl_version").exists() {
            SyncMethod::Ioctl
        } else {
            SyncMethod::Sysfs
        };
        // What the open asks for; what the mapping then is comes from sync_mode and quirk-mmap.
        let wanted = choice.resolve(dma_coherent);
        let o_sync = wanted == Coherency::Uncached;
        let sync_mode = if o_sync {
            Self::set_sync_mode_uncached(&sysfs)?
        } else {
            read_dec(&sysfs.join("sync_mode"))?
        };
        let quirk_path = sysfs.join("quirk_mmap_mode");
        let quirk = match read_attr_opt(&quirk_path)? {
            Some(s) => Some(crate::sys::parse_dec(&quirk_path, &s)?),
            None => None,
        };
        let mapping = udmabuf_mapping(o_sync, sync_mode, quirk, dma_coherent);
        if choice.require_cached && !mapping.is_cached() {
            return Err(HostError::NotCacheable {
                path: sysfs.clone(),
                sync_mode,
                quirk_mmap_mode: quirk,
                why: match mapping {
                    Mapping::NonCached(why) | Mapping::Unknown(why) => why,
                    Mapping::Cached => "",
                },
            });
        }
        // Syncs follow what the mapping is: none for a coherent device or an uncached mapping,
        // kernel syncs for a cached one and whenever the mapping is not known.
        let coherency = match mapping {
            Mapping::NonCached(_) => Coherency::Uncached,
            _ if dma_coherent => Coherency::HwCoherent,
            Mapping::Cached | Mapping::Unknown(_) => Coherency::ManualSync,
        };

        let dev = root.dev(name);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if o_sync {
            // With O_SYNC, u-dma-buf maps by `sync_mode` (1 = uncached); without, cached.
            opts.custom_flags(libc::O_SYNC);
        }
        let file = opts
            .open(&dev)
            .map_err(|e| HostError::io(&dev, "u-dma-buf", e))?;
        let map =
            MmapOptions::new()
                .len(len)
                .map_raw(&file)
                .map_err(|e| HostError::MapRejected {
                    path: dev.clone(),
                    index: 0,
                    len: size,
                    offset: 0,
                    source: e,
                })?;
        dont_fork(&map, &dev)?;
        Ok(UDmaBuf {
            name: name.to_string(),
            sysfs,
            dev,
            file,
            map,
            phys_addr,
            size,
            coherency,
            mapping,
            sync_method,
            dma_coherent,
            owner: ForkGuard::new(),
        })
    }

    fn find(root: &SysRoot, name: &str) -> Result<PathBuf> {
        let current = root.class("u-dma-buf").join(name);
        let legacy = root.class("udmabuf").join(name);
        for dir in [&current, &legacy] {
            if dir.is_dir() {
                return Ok(dir.clone());
            }
        }
        Err(HostError::Io {
            path: current,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no u-dma-buf named '{name}' (nor under {}): is the u-dma-buf module loaded and its device-tree node (compatible \"ikwzm,u-dma-buf\", device-name \"{name}\") present?",
                    legacy.display()
                ),
            ),
        })
    }

    /// Makes `sync_mode & 3` 1 (uncached under `O_SYNC`; write-combine is not verified on the
    /// Zynq-7000's PL310), keeping the SYNC_ALWAYS bit, unless it already is: the attribute is
    /// writable by root only, and the module's default (and the DT `sync-mode` property) is
    /// already 1, so the common case needs no privilege. Returns the mode now in force.
    fn set_sync_mode_uncached(sysfs: &Path) -> Result<u64> {
        let path = sysfs.join("sync_mode");
        let current = read_dec(&path)?;
        if current & 3 == 1 {
            return Ok(current);
        }
        let mode = (current & SYNC_ALWAYS) | 1;
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(mode.to_string().as_bytes()))
            .map_err(|e| HostError::io(&path, "u-dma-buf", e))?;
        Ok(mode)
    }

    /// The buffer's physical (DMA) address, as `phys_addr` reports it.
    pub fn phys_addr(&self) -> u64 {
        self.phys_addr
    }

    /// The buffer's sysfs directory.
    pub fn sysfs_dir(&self) -> &Path {
        &self.sysfs
    }

    /// The device file mapped.
    pub fn dev_path(&self) -> &Path {
        &self.dev
    }

    /// How sync commands reach the kernel.
    pub fn sync_method(&self) -> SyncMethod {
        self.sync_method
    }

    /// What the CPU's mapping really is ([`udmabuf_mapping`]): it picks the copy routine.
    pub fn mapping(&self) -> Mapping {
        self.mapping
    }

    /// The `dma_coherent` attribute: the device tree marks the region `dma-coherent`, so the
    /// kernel's syncs do nothing.
    pub fn dma_coherent(&self) -> bool {
        self.dma_coherent
    }

    fn sync(&mut self, op: SyncOp, off: u64, len: u64, dir: SyncDir) -> Result<()> {
        self.owner.check(&self.dev)?;
        check_range(&self.name, self.phys_addr, self.size, off, len, op.attr())?;
        if self.coherency != Coherency::ManualSync || len == 0 {
            return Ok(());
        }
        let (start, n) = line_range(off, len, self.size);
        let what = format!(
            "{} of [{start:#x}, {:#x}) of {}, {dir:?}",
            op.attr(),
            start + n,
            self.name
        );
        let Some(command) = sync_command(start, n, dir) else {
            return Err(HostError::Arg {
                what: "u-dma-buf sync range",
                why: format!(
                    "{what}: offset and size must each be below 4 GiB (32-bit fields of the sync command)"
                ),
            });
        };
        match self.sync_method {
            SyncMethod::Ioctl => {
                let fd = self.file.as_raw_fd();
                // SAFETY: `fd` is the open u-dma-buf device file; the ioctl reads one u64 from
                // the pointer, which points at a live local.
                let r = unsafe {
                    match op {
                        SyncOp::ForDevice => udmabuf_set_sync_for_device(fd, &command),
                        SyncOp::ForCpu => udmabuf_set_sync_for_cpu(fd, &command),
                    }
                };
                r.map(drop).map_err(|errno| {
                    let e = std::io::Error::from_raw_os_error(errno as i32);
                    sync_error(&self.dev, command, what, e)
                })
            }
            SyncMethod::Sysfs => {
                let path = self.sysfs.join(op.attr());
                // One write of the whole value: sysfs parses each write(2) on its own
                // (kstrtoull(buf, 0) accepts the 0x prefix).
                OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(format!("{command:#x}").as_bytes()))
                    .map_err(|e| sync_error(&path, command, what, e))
            }
        }
    }
}

impl DmaMemory for UDmaBuf {
    fn name(&self) -> &str {
        &self.name
    }

    fn device_addr(&self) -> u64 {
        self.phys_addr
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn coherency(&self) -> Coherency {
        self.coherency
    }

    fn write(&mut self, off: u64, src: &[u8]) -> Result<()> {
        self.owner.check(&self.dev)?;
        let at = check_range(
            &self.name,
            self.phys_addr,
            self.size,
            off,
            src.len() as u64,
            "write",
        )?;
        let base = self.map.as_mut_ptr();
        if !self.mapping.is_cached() {
            // SAFETY: `base` is the page-aligned start of our live mapping of `size` bytes and
            // `[at, at + len)` was checked to lie inside it.
            unsafe { volatile_write(base, at, src) }
        } else {
            // SAFETY: as above; `src` is caller memory, not the mapping.
            unsafe { cached_write(base, at, src) }
        }
        Ok(())
    }

    fn read(&mut self, off: u64, dst: &mut [u8]) -> Result<()> {
        self.owner.check(&self.dev)?;
        let at = check_range(
            &self.name,
            self.phys_addr,
            self.size,
            off,
            dst.len() as u64,
            "read",
        )?;
        let base = self.map.as_ptr();
        if !self.mapping.is_cached() {
            // SAFETY: `base` is the page-aligned start of our live mapping of `size` bytes and
            // `[at, at + len)` was checked to lie inside it.
            unsafe { volatile_read(base, at, dst) }
        } else {
            // SAFETY: as above; `dst` is caller memory, not the mapping.
            unsafe { cached_read(base, at, dst) }
        }
        Ok(())
    }

    fn sync_for_device(&mut self, off: u64, len: u64, dir: SyncDir) -> Result<()> {
        self.sync(SyncOp::ForDevice, off, len, dir)
    }

    fn sync_for_cpu(&mut self, off: u64, len: u64, dir: SyncDir) -> Result<()> {
        self.sync(SyncOp::ForCpu, off, len, dir)
    }
}

// ---------------------------------------------------------------------------------------------
// memfd: DMA memory without a kernel driver, optionally incoherent
// ---------------------------------------------------------------------------------------------

/// The state a [`MemfdMemory`] shares with its [`MemfdDeviceSide`].
#[derive(Debug)]
struct MemfdShared {
    region: MemRegion,
    /// The memfd, kept open so another process can open it through `/proc/<pid>/fd`.
    file: File,
    /// The CPU view: a shared mapping of the memfd.
    cpu: MmapRaw,
    /// The device view of an incoherent region (`None`: the device sees the CPU view).
    device: Option<Mutex<DeviceView>>,
}

/// What the device sees of an incoherent region, and which CPU cache lines hold data the
/// device has not seen (dirty): a clean writes back dirty lines only, as a real cache does, so a
/// sync on a range the device has since written does not clobber it with stale CPU data.
#[derive(Debug)]
struct DeviceView {
    bytes: Vec<u8>,
    dirty: Vec<bool>,
}

impl MemfdShared {
    fn len(&self) -> u64 {
        self.region.len
    }

    fn name(&self) -> &'static str {
        "memfd"
    }

    fn check(&self, off: u64, n: usize, op: &str) -> Result<usize> {
        check_range(
            self.name(),
            self.region.base.0,
            self.len(),
            off,
            n as u64,
            op,
        )
    }

    fn view(&self) -> Option<MutexGuard<'_, DeviceView>> {
        // A poisoned lock only means another thread panicked mid-copy; the bytes are still
        // bytes, and a fake must not turn one failure into a cascade.
        self.device
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn cpu_write(&self, off: u64, src: &[u8]) -> Result<()> {
        let at = self.check(off, src.len(), "write")?;
        let view = self.view();
        // SAFETY: `[at, at + len)` lies in the live mapping of `len()` bytes; `src` is caller
        // memory. The device side never touches the CPU view of an incoherent region, and on a
        // coherent one the driver and the fake hardware take turns (START / interrupt).
        unsafe { cached_write(self.cpu.as_mut_ptr(), at, src) };
        if let Some(mut view) = view {
            mark_dirty(&mut view.dirty, at, src.len());
        }
        Ok(())
    }

    fn cpu_read(&self, off: u64, dst: &mut [u8]) -> Result<()> {
        let at = self.check(off, dst.len(), "read")?;
        // SAFETY: `[at, at + len)` lies in the live mapping; `dst` is caller memory.
        unsafe { cached_read(self.cpu.as_ptr(), at, dst) };
        Ok(())
    }

    fn device_write(&self, off: u64, src: &[u8]) -> Result<()> {
        let at = self.check(off, src.len(), "device write")?;
        match self.view() {
            Some(mut view) => view.bytes[at..at + src.len()].copy_from_slice(src),
            // SAFETY: as in `cpu_write`.
            None => unsafe { cached_write(self.cpu.as_mut_ptr(), at, src) },
        }
        Ok(())
    }

    fn device_read(&self, off: u64, dst: &mut [u8]) -> Result<()> {
        let at = self.check(off, dst.len(), "device read")?;
        match self.view() {
            Some(view) => dst.copy_from_slice(&view.bytes[at..at + dst.len()]),
            // SAFETY: as in `cpu_read`.
            None => unsafe { cached_read(self.cpu.as_ptr(), at, dst) },
        }
        Ok(())
    }

    /// Clean: dirty CPU lines of the range are written to the device view (whole lines, as a
    /// cache writes back). arm64 cleans for every direction (arch_sync_dma_for_device in
    /// arch/arm64/mm/dma-mapping.c).
    fn clean(&self, off: u64, len: u64) -> Result<()> {
        self.check_sync(off, len, "sync_for_device")?;
        if len == 0 {
            return Ok(());
        }
        let Some(mut view) = self.view() else {
            return Ok(());
        };
        let (start, n) = line_range(off, len, self.len());
        for line in (start..start + n).step_by(CACHE_LINE as usize) {
            let i = (line / CACHE_LINE) as usize;
            if !view.dirty[i] {
                continue;
            }
            let at = line as usize;
            let end = (at + CACHE_LINE as usize).min(view.bytes.len());
            // SAFETY: `[at, end)` lies in the live CPU mapping (the view has the same length).
            unsafe { cached_read(self.cpu.as_ptr(), at, &mut view.bytes[at..end]) };
            view.dirty[i] = false;
        }
        Ok(())
    }

    /// Clean of every line of the range, dirty or not: for a CPU view written through another
    /// mapping of the memfd, which no dirty bit saw.
    fn clean_all(&self, off: u64, len: u64) -> Result<()> {
        self.check_sync(off, len, "sync_for_device")?;
        let Some(mut view) = self.view() else {
            return Ok(());
        };
        let (start, n) = line_range(off, len, self.len());
        let (at, n) = (start as usize, n as usize);
        // SAFETY: `[at, at + n)` lies in the live CPU mapping (line_range clamps to the length).
        unsafe { cached_read(self.cpu.as_ptr(), at, &mut view.bytes[at..at + n]) };
        let first = at / CACHE_LINE as usize;
        view.dirty[first..first + n.div_ceil(CACHE_LINE as usize)].fill(false);
        Ok(())
    }

    /// Invalidate: the range's lines are reloaded from the device view, dropping CPU data in
    /// them. Nothing happens for `ToDevice` (arm64's arch_sync_dma_for_cpu returns early).
    fn invalidate(&self, off: u64, len: u64, dir: SyncDir) -> Result<()> {
        self.check_sync(off, len, "sync_for_cpu")?;
        if len == 0 || dir == SyncDir::ToDevice {
            return Ok(());
        }
        let Some(mut view) = self.view() else {
            return Ok(());
        };
        let (start, n) = line_range(off, len, self.len());
        let (at, n) = (start as usize, n as usize);
        // SAFETY: `[at, at + n)` lies in the live CPU mapping (line_range clamps to the length).
        unsafe { cached_write(self.cpu.as_mut_ptr(), at, &view.bytes[at..at + n]) };
        let first = at / CACHE_LINE as usize;
        let lines = n.div_ceil(CACHE_LINE as usize);
        view.dirty[first..first + lines].fill(false);
        Ok(())
    }

    fn check_sync(&self, off: u64, len: u64, op: &str) -> Result<()> {
        check_range(self.name(), self.region.base.0, self.len(), off, len, op).map(drop)
    }
}

fn mark_dirty(dirty: &mut [bool], at: usize, n: usize) {
    if n == 0 {
        return;
    }
    let line = CACHE_LINE as usize;
    let (first, last) = (at / line, (at + n - 1) / line);
    dirty[first..=last].fill(true);
}

/// DMA memory in a memfd, at a made-up device address: the backend of tests and of simulated
/// boards. Coherent, the device sees the CPU's bytes; incoherent, the device has its own view
/// that only the syncs update, like a non-coherent port behind a write-back cache:
/// - [`DmaMemory::sync_for_device`] writes the range's dirty CPU lines to the device view;
/// - [`DmaMemory::sync_for_cpu`] reloads the range's lines from the device view;
///
/// both on whole 64-byte lines, so a driver that forgets a sync, or lets two buffers share a
/// line, reads stale data and fails its test. There is no spontaneous eviction: a missing sync
/// is always caught, a missing clean before a device write is not.
///
/// The device side (the fake hardware) holds a [`MemfdDeviceSide`] to the same memory.
#[derive(Debug)]
pub struct MemfdMemory {
    shared: Arc<MemfdShared>,
}

/// The device's end of a [`MemfdMemory`]: what a DMA engine reads and writes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemfdDeviceSide {
    shared: Arc<MemfdShared>,
}

impl MemfdMemory {
    /// Coherent memory over `region` (device address and length): syncs are no-ops.
    pub fn coherent(region: MemRegion) -> Result<(MemfdMemory, MemfdDeviceSide)> {
        Self::new(region, false)
    }

    /// Incoherent memory over `region`: the device sees only what syncs copied.
    pub fn incoherent(region: MemRegion) -> Result<(MemfdMemory, MemfdDeviceSide)> {
        Self::new(region, true)
    }

    fn new(region: MemRegion, incoherent: bool) -> Result<(MemfdMemory, MemfdDeviceSide)> {
        let len = usize::try_from(region.len)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| HostError::Arg {
                what: "memfd DMA memory",
                why: format!(
                    "a length of {} bytes (must be nonzero and mappable)",
                    region.len
                ),
            })?;
        let path = PathBuf::from("memfd:caq-dma");
        let fd = memfd_create(c"caq-dma", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| HostError::io(&path, "memfd", std::io::Error::from(e)))?;
        let file = File::from(fd);
        file.set_len(region.len)
            .map_err(|e| HostError::io(&path, "memfd", e))?;
        let cpu =
            MmapOptions::new()
                .len(len)
                .map_raw(&file)
                .map_err(|e| HostError::MapRejected {
                    path,
                    index: 0,
                    len: region.len,
                    offset: 0,
                    source: e,
                })?;
        let device = incoherent.then(|| {
            Mutex::new(DeviceView {
                bytes: vec![0; len],
                dirty: vec![false; len.div_ceil(CACHE_LINE as usize)],
            })
        });
        let shared = Arc::new(MemfdShared {
            region,
            file,
            cpu,
            device,
        });
        Ok((
            MemfdMemory {
                shared: Arc::clone(&shared),
            },
            MemfdDeviceSide { shared },
        ))
    }

    /// The device-address range.
    pub fn region(&self) -> MemRegion {
        self.shared.region
    }
}

impl DmaMemory for MemfdMemory {
    fn name(&self) -> &str {
        self.shared.name()
    }

    fn device_addr(&self) -> u64 {
        self.shared.region.base.0
    }

    fn len(&self) -> u64 {
        self.shared.len()
    }

    fn coherency(&self) -> Coherency {
        if self.shared.device.is_some() {
            Coherency::ManualSync
        } else {
            Coherency::HwCoherent
        }
    }

    fn write(&mut self, off: u64, src: &[u8]) -> Result<()> {
        self.shared.cpu_write(off, src)
    }

    fn read(&mut self, off: u64, dst: &mut [u8]) -> Result<()> {
        self.shared.cpu_read(off, dst)
    }

    fn sync_for_device(&mut self, off: u64, len: u64, _dir: SyncDir) -> Result<()> {
        self.shared.clean(off, len)
    }

    fn sync_for_cpu(&mut self, off: u64, len: u64, dir: SyncDir) -> Result<()> {
        self.shared.invalidate(off, len, dir)
    }
}

impl MemfdDeviceSide {
    /// The device-address range.
    pub fn region(&self) -> MemRegion {
        self.shared.region
    }

    /// A path through which another process opens this memory (`/proc/<pid>/fd/<n>`): a fake
    /// u-dma-buf device file can be a symlink to it, so a driver in a child process maps the
    /// same bytes as the fake board in this one. Only a coherent memfd has one view to share.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.shared.file.as_raw_fd()
        ))
    }

    /// What the kernel's `dma_sync_single_for_device` does to `[off, off + len)` when the CPU
    /// view was written through another mapping of the memfd (a u-dma-buf device file that is
    /// this memfd, in a test that plays the kernel): every line of the range reaches the device
    /// view (the writes bypassed [`MemfdMemory`], so no dirty bit saw them).
    pub fn kernel_sync_for_device(&self, off: u64, len: u64) -> Result<()> {
        self.shared.clean_all(off, len)
    }

    /// What the kernel's `dma_sync_single_for_cpu` does: the range's lines are reloaded from the
    /// device view (nothing for `ToDevice`).
    pub fn kernel_sync_for_cpu(&self, off: u64, len: u64, dir: SyncDir) -> Result<()> {
        self.shared.invalidate(off, len, dir)
    }

    /// A device (DMA) read at byte offset `off`.
    pub fn device_read(&self, off: u64, dst: &mut [u8]) -> Result<()> {
        self.shared.device_read(off, dst)
    }

    /// A device (DMA) write at byte offset `off`.
    pub fn device_write(&self, off: u64, src: &[u8]) -> Result<()> {
        self.shared.device_write(off, src)
    }
}
