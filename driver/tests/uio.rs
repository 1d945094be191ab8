//! The UIO backend without a board: discovery and mapping on a fake sysfs tree (the dev file is a
//! regular file the test reads and writes as the hardware), the interrupt protocol over a socket
//! pair, and the polling wait on a register file the test flips.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caq_driver::HostError;
use caq_driver::dma::{Coherency, DmaMemory, SyncDir};
use caq_driver::fake::FakeSys;
use caq_driver::fake::uio::FakeUio;
use caq_driver::irq::{IrqOutcome, UioIrq};
use caq_driver::sys::SysRoot;
use caq_driver::uio::{Mmio, UioMap, find_uio, page_size};
use caq_driver::uio_device::{UioDevice, UioOptions, WaitStrategy};
use caq_spec::device::{read_wide, write_wide};
use caq_spec::{Device, DeviceAddr, IrqStats, IrqWait, regmap};

mod forked;

const WINDOW: u64 = regmap::REGISTER_SPACE_BYTES as u64;
const ACCEL: (u64, u64) = (0x43c0_0000, 0x1_0000);

fn tree() -> (tempfile::TempDir, FakeSys, SysRoot) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSys::new(dir.path());
    let root = SysRoot::new(dir.path());
    (dir, fake, root)
}

/// One accelerator `caq` at uio0 with a 64 KiB window, mapped.
fn mapped() -> (tempfile::TempDir, FakeUio, Mmio) {
    let (dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    let mmio = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW).unwrap();
    (dir, uio, mmio)
}

// ---- discovery ----------------------------------------------------------------------------

#[test]
fn finds_the_device_by_name_among_unordered_and_symlinked_entries() {
    let (_dir, fake, root) = tree();
    fake.uio(10, "gpio", &[(0x4120_0000, 0x1000)]).unwrap();
    fake.uio(2, "axi_dma", &[(0x4040_0000, 0x1_0000)]).unwrap();
    let caq = fake
        .uio_symlinked(3, "caq", &[ACCEL, (0x4_8000_0000, 0x2000)])
        .unwrap();
    fake.uio(0, "other", &[]).unwrap();
    assert!(caq.class_entry.is_symlink());

    let info = find_uio(&root, "caq").unwrap();
    assert_eq!(info.index, 3);
    assert_eq!(info.name, "caq");
    assert_eq!(info.version, "devicetree");
    assert_eq!(info.dev_path, root.path().join("dev/uio3"));
    assert_eq!(info.sysfs_dir, root.path().join("sys/class/uio/uio3"));
    assert_eq!(
        info.maps,
        [
            UioMap {
                index: 0,
                name: String::new(),
                addr: 0x43c0_0000,
                size: 0x1_0000,
                offset: 0,
            },
            UioMap {
                index: 1,
                name: String::new(),
                addr: 0x4_8000_0000,
                size: 0x2000,
                offset: 0,
            },
        ]
    );
    assert_eq!(find_uio(&root, "gpio").unwrap().index, 10);
    assert!(find_uio(&root, "other").unwrap().maps.is_empty());
}

#[test]
fn reads_the_kernel_formats_exactly() {
    let (_dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    let read = |rel: &str| std::fs::read_to_string(uio.sysfs_dir.join(rel)).unwrap();
    assert_eq!(read("maps/map0/addr"), "0x43c00000\n");
    assert_eq!(read("maps/map0/size"), "0x00010000\n");
    assert_eq!(read("maps/map0/offset"), "0x0\n");
    // Newer kernels print `%pa` 16 digits wide on 64-bit phys_addr_t; the name may carry blanks.
    uio.set_attr("maps/map0/addr", "0x00000000a0000000\n")
        .unwrap();
    uio.set_attr("name", "caq \n").unwrap();
    let info = find_uio(&root, "caq").unwrap();
    assert_eq!(info.maps[0].addr, 0xa000_0000);
}

#[test]
fn a_missing_name_lists_the_names_found() {
    let (_dir, fake, root) = tree();
    fake.uio(1, "other", &[ACCEL]).unwrap();
    fake.uio(0, "axi_dma", &[ACCEL]).unwrap();
    let e = find_uio(&root, "caq").unwrap_err();
    assert!(
        matches!(&e, HostError::DeviceNotFound { name, .. } if name == "caq"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.starts_with("no UIO device named 'caq' under "), "{msg}");
    assert!(
        msg.ends_with(" (found: uio0 'axi_dma', uio1 'other')"),
        "{msg}"
    );
}

#[test]
fn no_uio_class_at_all_is_device_not_found() {
    let (_dir, _fake, root) = tree();
    let e = find_uio(&root, "caq").unwrap_err();
    match &e {
        HostError::DeviceNotFound { found, root: r, .. } => {
            assert_eq!(found, "");
            assert_eq!(r, root.path());
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("of_id"), "{e}");
}

#[test]
fn two_devices_with_the_name_are_ambiguous() {
    let (_dir, fake, root) = tree();
    fake.uio(4, "caq", &[ACCEL]).unwrap();
    fake.uio(1, "caq", &[ACCEL]).unwrap();
    fake.uio(2, "gpio", &[ACCEL]).unwrap();
    let e = find_uio(&root, "caq").unwrap_err();
    assert!(
        matches!(&e, HostError::Ambiguous { candidates, .. } if candidates == &["uio1", "uio4"]),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "2 UIO devices are named 'caq' (uio1, uio4): give each node its own linux,uio-name"
    );
}

#[test]
fn garbage_hex_is_a_parse_error_naming_the_file() {
    let (_dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    uio.set_attr("maps/map0/size", "0xzz\n").unwrap();
    let e = find_uio(&root, "caq").unwrap_err();
    let path = uio.sysfs_dir.join("maps/map0/size");
    assert!(
        matches!(&e, HostError::SysfsParse { path: p, content, .. } if p == &path && content == "0xzz"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}: expected a hexadecimal number, found \"0xzz\"",
            path.display()
        )
    );
}

// ---- mapping ------------------------------------------------------------------------------

#[test]
fn a_map_smaller_than_the_register_window_is_refused() {
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[(0x43c0_0000, 0x80)]).unwrap();
    let e = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW).unwrap_err();
    assert!(
        matches!(
            e,
            HostError::MapTooSmall {
                index: 0,
                actual: 0x80,
                required: 0x100,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("map 0 of uio0 is 0x80 bytes; the register window needs 0x100"),
        "{e}"
    );
}

#[test]
fn a_device_file_that_cannot_be_mapped_is_map_rejected() {
    // A FIFO opens read-write and takes the lock, but the kernel refuses to mmap it (ENODEV), as
    // it refuses a UIO map whose address is not page-aligned.
    let (_dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    std::fs::remove_file(&uio.dev_path).unwrap();
    nix::unistd::mkfifo(
        &uio.dev_path,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let e = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW).unwrap_err();
    match &e {
        HostError::MapRejected {
            path,
            index: 0,
            source,
            ..
        } => {
            assert_eq!(path, &uio.dev_path);
            assert_eq!(source.raw_os_error(), Some(libc::ENODEV), "{source}");
        }
        other => panic!("expected MapRejected, got {other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with(&format!("mmap of {}", uio.dev_path.display())),
        "{e}"
    );
}

#[test]
fn a_map_the_device_does_not_have_is_too_small() {
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[ACCEL]).unwrap();
    let e = Mmio::open(&find_uio(&root, "caq").unwrap(), 1, WINDOW).unwrap_err();
    assert!(
        matches!(
            e,
            HostError::MapTooSmall {
                index: 1,
                actual: 0,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_page_rounded_map_is_accepted() {
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[(0x43c0_0000, 0x1000)]).unwrap();
    let m = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW).unwrap();
    assert_eq!(m.span(), 0x1000);
    assert_eq!(m.map_index(), 0);
}

#[test]
fn registers_start_at_the_map_offset() {
    let (_dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[(0x43c0_0000, 0x1000)]).unwrap();
    uio.set_attr("maps/map0/offset", "0x40\n").unwrap();
    let mut m = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW).unwrap();
    assert_eq!(m.span(), 0x1000 - 0x40);
    m.write32(0x4, 0xa5a5_0001).unwrap();
    let raw = std::fs::read(&uio.dev_path).unwrap();
    assert_eq!(raw[0x44..0x48], 0xa5a5_0001u32.to_ne_bytes());
    assert_eq!(uio.regs(0).unwrap().read32(0x4).unwrap(), 0xa5a5_0001);
}

#[test]
fn a_map_with_an_index_is_mapped_at_that_many_pages() {
    let (_dir, fake, root) = tree();
    let uio = fake
        .uio(0, "caq", &[(0x4000_0000, 0x1000), (0x43c0_0000, 0x1000)])
        .unwrap();
    let mut m = Mmio::open(&find_uio(&root, "caq").unwrap(), 1, WINDOW).unwrap();
    m.write32(0x8, 0x1234_5678).unwrap();
    let raw = std::fs::read(&uio.dev_path).unwrap();
    let at = page_size().unwrap() as usize + 0x8;
    assert_eq!(raw[at..at + 4], 0x1234_5678u32.to_ne_bytes());
    assert_eq!(raw[0x8..0xc], [0; 4], "map 0 untouched");
}

#[test]
fn a_second_open_is_busy_while_the_first_lives() {
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[ACCEL]).unwrap();
    let info = find_uio(&root, "caq").unwrap();
    let first = Mmio::open(&info, 0, WINDOW).unwrap();
    let e = Mmio::open(&info, 0, WINDOW).unwrap_err();
    assert!(
        matches!(&e, HostError::DeviceBusy { path } if path == &info.dev_path),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("another process holds the accelerator")
    );
    drop(first);
    Mmio::open(&info, 0, WINDOW).expect("the lock goes with the first mapping");
}

/// As an unprivileged user (a forked child that drops to nobody when the tests run as root):
/// a mode-000 dev file is `PermissionDenied` naming the file and the udev rule, while the same
/// device file with mode 0666 opens, so the denial is the file's mode and nothing else.
#[test]
fn an_unreadable_dev_file_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    let open = fake.uio(1, "open", &[ACCEL]).unwrap();
    std::fs::set_permissions(&uio.dev_path, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(&open.dev_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    forked::as_unprivileged(dir.path(), || {
        Mmio::open(&find_uio(&root, "open").unwrap(), 0, WINDOW)
            .map_err(|e| format!("the control device did not open: {e}"))?;
        let e = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW)
            .err()
            .ok_or("a mode-000 dev file opened")?;
        let ok = matches!(&e, HostError::PermissionDenied { path, subsystem: "uio" } if path == &uio.dev_path)
            && e.to_string().contains("SUBSYSTEM==\"uio\"");
        if ok { Ok(()) } else { Err(format!("{e:?}")) }
    });
}

#[test]
fn unaligned_or_out_of_range_offsets_are_errors() {
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[(0x43c0_0000, 0x100)]).unwrap();
    let mut m = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW).unwrap();
    for off in [0x2, 0x100, 0x101, 0xffff_fffc] {
        let e = m.read32(off).unwrap_err();
        assert!(
            matches!(
                &e,
                HostError::Arg {
                    what: "register offset",
                    ..
                }
            ),
            "{off:#x}: {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("register offset: {off:#x} is not an aligned")),
            "{msg}"
        );
        assert!(msg.contains("0x100-byte window"), "{msg}");
        assert!(m.write32(off, 1).is_err(), "{off:#x}");
    }
    m.write32(0xfc, 7).unwrap();
    assert_eq!(m.read32(0xfc).unwrap(), 7, "the last register is in range");
}

// ---- the device: registers and memory --------------------------------------------------------

/// The syncs a [`VecMem`] saw: (`device` or `cpu`, offset, length, direction).
type SyncLog = Arc<Mutex<Vec<(&'static str, u64, u64, SyncDir)>>>;

/// DMA memory in a Vec, logging the syncs.
struct VecMem {
    base: u64,
    bytes: Vec<u8>,
    syncs: SyncLog,
}

impl DmaMemory for VecMem {
    fn name(&self) -> &str {
        "vec"
    }
    fn device_addr(&self) -> u64 {
        self.base
    }
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn coherency(&self) -> Coherency {
        Coherency::HwCoherent
    }
    fn write(&mut self, off: u64, src: &[u8]) -> caq_driver::Result<()> {
        let o = off as usize;
        self.bytes[o..o + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn read(&mut self, off: u64, dst: &mut [u8]) -> caq_driver::Result<()> {
        let o = off as usize;
        dst.copy_from_slice(&self.bytes[o..o + dst.len()]);
        Ok(())
    }
    fn sync_for_device(&mut self, off: u64, len: u64, dir: SyncDir) -> caq_driver::Result<()> {
        self.syncs.lock().unwrap().push(("device", off, len, dir));
        Ok(())
    }
    fn sync_for_cpu(&mut self, off: u64, len: u64, dir: SyncDir) -> caq_driver::Result<()> {
        self.syncs.lock().unwrap().push(("cpu", off, len, dir));
        Ok(())
    }
}

fn vec_mem() -> (Box<VecMem>, SyncLog) {
    let syncs = SyncLog::default();
    let mem = VecMem {
        base: 0x1000_0000,
        bytes: vec![0; 0x1000],
        syncs: syncs.clone(),
    };
    (Box::new(mem), syncs)
}

/// A device over the fake tree's registers, with a socket pair's end as its interrupt; the
/// other end is returned for the test to raise interrupts.
fn device(wait: WaitStrategy) -> (tempfile::TempDir, FakeUio, UioDevice, UnixStream, SyncLog) {
    let (dir, uio, mmio) = mapped();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let irq = UioIrq::new(OwnedFd::from(ours), "irq-socket").unwrap();
    let (mem, syncs) = vec_mem();
    let dev = UioDevice::from_parts(mmio, irq, mem, wait);
    (dir, uio, dev, theirs, syncs)
}

#[test]
fn register_writes_land_at_their_offsets_and_reads_see_the_hardware() {
    let (_dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    let (mem, _) = vec_mem();
    let mut dev = UioDevice::open(&root, "caq", mem, UioOptions::default()).unwrap();
    let hw = uio.regs(0).unwrap();

    write_wide(&mut dev, regmap::DESC_ADDR, 0x0000_0001_8000_0040).unwrap();
    dev.write_reg(regmap::DESC_COUNT.offset, 12).unwrap();
    assert_eq!(hw.read32(regmap::DESC_ADDR_LO.offset).unwrap(), 0x8000_0040);
    assert_eq!(hw.read32(regmap::DESC_ADDR_HI.offset).unwrap(), 0x0000_0001);
    assert_eq!(hw.read32(regmap::DESC_COUNT.offset).unwrap(), 12);
    let raw = std::fs::read(&uio.dev_path).unwrap();
    let lo = regmap::DESC_ADDR_LO.offset as usize;
    assert_eq!(raw[lo..lo + 4], 0x8000_0040u32.to_ne_bytes());

    hw.write32(regmap::ID.offset, regmap::ID_VALUE).unwrap();
    hw.write32(regmap::CONFIG_HASH_LO.offset, 0xdead_beef)
        .unwrap();
    hw.write32(regmap::CONFIG_HASH_HI.offset, 0x0123_4567)
        .unwrap();
    assert_eq!(dev.read_reg(regmap::ID.offset).unwrap(), regmap::ID_VALUE);
    assert_eq!(
        read_wide(&mut dev, regmap::CONFIG_HASH).unwrap(),
        0x0123_4567_dead_beef
    );
}

#[test]
fn only_registers_of_the_map_reach_the_bus_and_only_as_their_access_allows() {
    let (_dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    let (mem, _) = vec_mem();
    let mut dev = UioDevice::open(&root, "caq", mem, UioOptions::default()).unwrap();
    let hw = uio.regs(0).unwrap();
    // 0x2C lies between IRQ_STATUS and DESC_ADDR_LO: the slave would answer SLVERR.
    for (off, write) in [
        (0x2C, true),
        (0x2C, false),
        (0x0FC, true),
        (regmap::ID.offset, true),
    ] {
        let e = if write {
            dev.write_reg(off, 0xdead_beef).unwrap_err()
        } else {
            dev.read_reg(off).unwrap_err()
        };
        assert!(
            matches!(e, HostError::Spec(caq_spec::SpecError::RegisterAccess { offset, .. }) if offset == off),
            "{off:#x}: {e:?}"
        );
    }
    let raw = std::fs::read(&uio.dev_path).unwrap();
    assert!(raw[..0x100].iter().all(|&b| b == 0), "nothing was written");
    hw.write32(regmap::STATUS.offset, 2).unwrap();
    assert_eq!(dev.read_reg(regmap::STATUS.offset).unwrap(), 2);
}

#[test]
fn the_fpga_manager_must_say_operating_before_the_registers_are_mapped() {
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[ACCEL]).unwrap();
    let mgr = fake.fpga_manager(0, "unknown").unwrap();
    for state in ["unknown", "write", "write error", "power off"] {
        std::fs::write(mgr.join("state"), format!("{state}\n")).unwrap();
        let (mem, _) = vec_mem();
        let e = UioDevice::open(&root, "caq", mem, UioOptions::default()).unwrap_err();
        match &e {
            HostError::FpgaNotOperating { path, state: s } => {
                assert_eq!((path, s.as_str()), (&mgr.join("state"), state));
            }
            other => panic!("{state}: expected FpgaNotOperating, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("reads \"{state}\", not \"operating\""))
                && msg.contains("hang the interconnect"),
            "{msg}"
        );
    }
    std::fs::write(mgr.join("state"), "operating\n").unwrap();
    let (mem, _) = vec_mem();
    UioDevice::open(&root, "caq", mem, UioOptions::default()).expect("operating");
}

#[test]
fn opening_by_name_holds_the_device() {
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[ACCEL]).unwrap();
    let (mem, _) = vec_mem();
    let dev = UioDevice::open(&root, "caq", mem, UioOptions::default()).unwrap();
    let (mem, _) = vec_mem();
    let e = UioDevice::open(&root, "caq", mem, UioOptions::default()).unwrap_err();
    assert!(matches!(e, HostError::DeviceBusy { .. }), "{e:?}");
    drop(dev);
    let (mem, _) = vec_mem();
    let e = UioDevice::open(&root, "nope", mem, UioOptions::default()).unwrap_err();
    assert!(matches!(e, HostError::DeviceNotFound { .. }), "{e:?}");
}

#[test]
fn memory_accesses_are_offsets_into_the_dma_buffer() {
    let (_dir, _uio, mut dev, _peer, syncs) = device(WaitStrategy::Irq);
    assert_eq!(dev.memory().base, DeviceAddr(0x1000_0000));
    assert_eq!(dev.memory().len, 0x1000);
    dev.mem_write(DeviceAddr(0x1000_0010), &[1, 2, 3, 4])
        .unwrap();
    let mut back = [0u8; 6];
    dev.mem_read(DeviceAddr(0x1000_000f), &mut back).unwrap();
    assert_eq!(back, [0, 1, 2, 3, 4, 0]);
    dev.sync_for_device(DeviceAddr(0x1000_0040), 0x80).unwrap();
    dev.sync_for_cpu(DeviceAddr(0x1000_0100), 0x20).unwrap();
    assert_eq!(
        *syncs.lock().unwrap(),
        [
            ("device", 0x40, 0x80, SyncDir::ToDevice),
            ("cpu", 0x100, 0x20, SyncDir::FromDevice)
        ]
    );

    let e = dev.mem_write(DeviceAddr(0x1000_0ffe), &[0; 4]).unwrap_err();
    assert!(
        matches!(
            e,
            HostError::AddressOutOfRange {
                addr: 0x1000_0ffe,
                end: 0x1000_1002,
                limit_base: 0x1000_0000,
                limit_end: 0x1000_1000,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("write of 4 bytes at [0x10000ffe, 0x10001002) is outside"),
        "{e}"
    );
    assert!(dev.mem_read(DeviceAddr(0xfff_fffc), &mut [0; 8]).is_err());
    assert!(dev.sync_for_cpu(DeviceAddr(0x1000_0000), 0x1001).is_err());
    assert_eq!(syncs.lock().unwrap().len(), 2, "no sync for a bad range");
}

// ---- the interrupt protocol ---------------------------------------------------------------

fn irq_pair() -> (UioIrq, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    (
        UioIrq::new(OwnedFd::from(ours), "irq-socket").unwrap(),
        theirs,
    )
}

fn raise(peer: &mut UnixStream, count: u32) {
    peer.write_all(&count.to_ne_bytes()).unwrap();
}

#[test]
fn a_wait_with_no_event_times_out_after_the_timeout() {
    let (mut irq, _peer) = irq_pair();
    let timeout = Duration::from_millis(60);
    let t = Instant::now();
    assert_eq!(irq.wait(timeout).unwrap(), IrqOutcome::TimedOut);
    let took = t.elapsed();
    assert!(took >= timeout, "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(irq.stats(), IrqStats::default());
}

#[test]
fn an_event_ends_the_wait_with_its_count() {
    let (mut irq, mut peer) = irq_pair();
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        raise(&mut peer, 1);
        peer
    });
    let t = Instant::now();
    let got = irq.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(
        got,
        IrqOutcome::Fired {
            count: 1,
            missed: 0
        }
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(irq.last_count(), Some(1));
    assert_eq!(
        irq.stats(),
        IrqStats {
            delivered: 1,
            missed: 0,
            polled: 0
        }
    );
    raiser.join().unwrap();
}

#[test]
fn a_jump_in_the_count_is_counted_as_missed() {
    let (mut irq, mut peer) = irq_pair();
    raise(&mut peer, 1);
    let first = irq.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(
        first,
        IrqOutcome::Fired {
            count: 1,
            missed: 0
        }
    );
    raise(&mut peer, 4);
    let second = irq.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(
        second,
        IrqOutcome::Fired {
            count: 4,
            missed: 2
        }
    );
    assert_eq!(irq.stats().delivered, 2);
    assert_eq!(irq.stats().missed, 2);
}

#[test]
fn a_seeded_count_tells_missed_events_on_the_first_wait() {
    let (irq, mut peer) = irq_pair();
    let mut irq = irq.with_count(7);
    raise(&mut peer, 10);
    let got = irq.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(
        got,
        IrqOutcome::Fired {
            count: 10,
            missed: 2
        }
    );
}

#[test]
fn drain_consumes_stale_events_so_the_next_wait_times_out() {
    let (irq, mut peer) = irq_pair();
    let mut irq = irq.with_count(0);
    assert_eq!(irq.drain().unwrap(), 0, "nothing pending");
    raise(&mut peer, 1);
    raise(&mut peer, 2);
    assert_eq!(irq.drain().unwrap(), 2);
    assert_eq!(irq.last_count(), Some(2));
    assert_eq!(
        irq.wait(Duration::from_millis(30)).unwrap(),
        IrqOutcome::TimedOut
    );
    assert_eq!(
        irq.stats().missed,
        2,
        "drained events fired while nobody waited"
    );
    assert_eq!(irq.stats().delivered, 0);
    raise(&mut peer, 3);
    assert_eq!(
        irq.wait(Duration::from_secs(5)).unwrap(),
        IrqOutcome::Fired {
            count: 3,
            missed: 0
        }
    );
}

#[test]
fn enable_writes_one_as_four_native_endian_bytes() {
    let (mut irq, mut peer) = irq_pair();
    irq.enable().unwrap();
    irq.enable().unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let n = peer.read(&mut buf).unwrap();
    assert_eq!(n, 8, "two writes of exactly 4 bytes");
    assert_eq!(buf[..4], 1u32.to_ne_bytes());
    assert_eq!(buf[4..8], 1u32.to_ne_bytes());
}

/// A pty master whose slave side is closed: poll says hang-up and read fails with EIO, as a UIO
/// file does for a device without an interrupt.
fn eio_fd() -> OwnedFd {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given ints; the name, termios and winsize
    // pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    drop(slave);
    master
}

#[test]
fn eio_from_the_interrupt_file_is_no_interrupt() {
    let mut irq = UioIrq::new(eio_fd(), "/dev/uio7").unwrap();
    let e = irq.wait(Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(&e, HostError::NoInterrupt { path, source } if path.as_os_str() == "/dev/uio7" && source.raw_os_error() == Some(libc::EIO)),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("open with the polling wait strategy"),
        "{e}"
    );
    let e = irq.drain().unwrap_err();
    assert!(matches!(e, HostError::NoInterrupt { .. }), "{e:?}");
}

#[test]
fn a_closed_interrupt_file_is_an_error_not_a_hang() {
    let (mut irq, peer) = irq_pair();
    drop(peer);
    let e = irq.wait(Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(&e, HostError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof),
        "{e:?}"
    );
}

static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_signal(_: libc::c_int) {
    SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn a_signal_does_not_end_the_wait() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::Handler(note_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; no other test
    // uses SIGUSR1.
    unsafe { sigaction(Signal::SIGUSR1, &act) }.unwrap();

    let (mut irq, mut peer) = irq_pair();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        (irq.wait(Duration::from_secs(10)), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: the thread is not joined yet, so its pthread_t is valid.
    let r = unsafe { libc::pthread_kill(waiter.as_pthread_t(), libc::SIGUSR1) };
    assert_eq!(r, 0);
    std::thread::sleep(Duration::from_millis(50));
    assert!(SIGNALLED.load(std::sync::atomic::Ordering::SeqCst));
    raise(&mut peer, 1);
    let (got, took) = waiter.join().unwrap();
    assert_eq!(
        got.unwrap(),
        IrqOutcome::Fired {
            count: 1,
            missed: 0
        }
    );
    assert!(took >= Duration::from_millis(90), "{took:?}");
}

// ---- the device's wait strategies -----------------------------------------------------------

#[test]
fn the_irq_strategy_drains_enables_and_waits() {
    let (_dir, _uio, mut dev, mut peer, _) = device(WaitStrategy::Irq);
    raise(&mut peer, 1); // left over from an earlier job
    dev.arm_irq().unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(peer.read(&mut buf).unwrap(), 4, "one enable");
    assert_eq!(buf[..4], 1u32.to_ne_bytes());
    assert_eq!(
        dev.wait_irq(Duration::from_millis(20)).unwrap(),
        IrqWait::TimedOut,
        "the stale event was drained"
    );
    raise(&mut peer, 2);
    assert_eq!(
        dev.wait_irq(Duration::from_secs(5)).unwrap(),
        IrqWait::Fired
    );
    assert_eq!(
        dev.irq_stats(),
        Some(IrqStats {
            delivered: 1,
            missed: 1,
            polled: 0
        })
    );
}

#[test]
fn polling_ends_when_status_shows_done() {
    let interval = Duration::from_millis(2);
    let (_dir, uio, mut dev, mut peer, _) = device(WaitStrategy::Poll { interval });
    let hw = uio.regs(0).unwrap();
    let busy = regmap::STATUS_BUSY.mask();
    let done = regmap::STATUS_DONE.mask();
    hw.write32(regmap::STATUS.offset, busy | done).unwrap();
    dev.arm_irq().unwrap();
    let hardware = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        hw.write32(regmap::STATUS.offset, done).unwrap();
    });
    let t = Instant::now();
    assert_eq!(
        dev.wait_irq(Duration::from_secs(10)).unwrap(),
        IrqWait::Fired
    );
    assert!(
        t.elapsed() >= Duration::from_millis(50),
        "{:?}",
        t.elapsed()
    );
    hardware.join().unwrap();
    assert_eq!(
        dev.irq_stats(),
        Some(IrqStats {
            delivered: 0,
            missed: 0,
            polled: 1
        })
    );
    // The interrupt file was never touched.
    peer.set_nonblocking(true).unwrap();
    let e = peer.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);

    // ERROR ends a poll too.
    let hw = uio.regs(0).unwrap();
    hw.write32(regmap::STATUS.offset, regmap::STATUS_ERROR.mask())
        .unwrap();
    assert_eq!(
        dev.wait_irq(Duration::from_secs(1)).unwrap(),
        IrqWait::Fired
    );
    assert_eq!(dev.irq_stats().unwrap().polled, 2);
}

#[test]
fn polling_times_out_while_busy() {
    let (_dir, uio, mut dev, _peer, _) = device(WaitStrategy::Poll {
        interval: Duration::from_millis(5),
    });
    // BUSY with a stale DONE from the previous run is still running.
    uio.regs(0)
        .unwrap()
        .write32(
            regmap::STATUS.offset,
            regmap::STATUS_BUSY.mask() | regmap::STATUS_DONE.mask(),
        )
        .unwrap();
    let timeout = Duration::from_millis(40);
    let t = Instant::now();
    assert_eq!(dev.wait_irq(timeout).unwrap(), IrqWait::TimedOut);
    assert!(t.elapsed() >= timeout, "{:?}", t.elapsed());
    assert_eq!(dev.irq_stats().unwrap().polled, 0);
}

// ---- opening a board ------------------------------------------------------------------------

fn config(name: &str) -> caq_spec::AccelConfig {
    let path = format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    caq_spec::AccelConfig::load(path).expect("shipped config")
}

#[test]
fn a_dma_coherent_region_is_refused_for_a_config_whose_traffic_is_not_snooped() {
    use caq_driver::accel::{Accelerator, BoardOptions};
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[ACCEL]).unwrap();
    fake.udmabuf("udmabuf-caq", 0x3800_0000, 1 << 20, true)
        .unwrap();
    let opts = BoardOptions {
        root: root.clone(),
        ..BoardOptions::default()
    };
    let e = Accelerator::open_uio(&config("zcu104"), &opts)
        .err()
        .unwrap();
    assert!(matches!(e, HostError::CoherenceMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("udmabuf-caq/dma_coherent reads 1")
            && msg.contains("config 'zcu104' (axi.coherence = \"none\") drives ARCACHE 4'b0011")
            && msg.contains("devicetree/zcu104.dtso"),
        "{msg}"
    );
    // The coherent variant passes that check and goes on to the device (which answers zeros).
    let e = Accelerator::open_uio(&config("zcu104-hpc"), &opts)
        .err()
        .unwrap();
    assert!(matches!(e, HostError::IdMismatch { found: 0, .. }), "{e:?}");
}

#[test]
fn opening_a_board_locks_the_uio_device_before_it_touches_the_udmabuf() {
    use caq_driver::accel::{Accelerator, BoardOptions};
    use caq_driver::dma::{ChipFamily, CoherencyChoice};
    let (_dir, fake, root) = tree();
    fake.uio(0, "caq", &[ACCEL]).unwrap();
    let sysfs = fake
        .udmabuf("udmabuf-caq", 0x3800_0000, 1 << 20, false)
        .unwrap();
    std::fs::write(sysfs.join("sync_mode"), "2\n").unwrap();
    // Another holder of the accelerator.
    let held = Mmio::open(&find_uio(&root, "caq").unwrap(), 0, WINDOW).unwrap();
    let opts = BoardOptions {
        root: root.clone(),
        // Uncached on a Zynq-7000: the open would set sync_mode to 1.
        coherency: CoherencyChoice {
            chip: ChipFamily::Zynq7000,
            ..CoherencyChoice::default()
        },
        ..BoardOptions::default()
    };
    let e = Accelerator::open_uio(&config("pynq-z2"), &opts)
        .err()
        .unwrap();
    assert!(matches!(e, HostError::DeviceBusy { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_to_string(sysfs.join("sync_mode")).unwrap(),
        "2\n",
        "the u-dma-buf of the process holding the accelerator is untouched"
    );
    drop(held);
    let e = Accelerator::open_uio(&config("pynq-z2"), &opts)
        .err()
        .unwrap();
    assert!(matches!(e, HostError::IdMismatch { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_to_string(sysfs.join("sync_mode")).unwrap(),
        "1"
    );
}

/// A forked child shares the parent's open files (the lock, the interrupt count): every handle
/// refuses to work there, naming both processes.
#[test]
fn a_forked_child_cannot_use_the_parents_device() {
    let (_dir, _uio, mut dev, _peer, _) = device(WaitStrategy::Irq);
    dev.write_reg(regmap::DESC_COUNT.offset, 3).unwrap();
    let parent = std::process::id();
    let verdict = forked::in_child(move || {
        let e = dev
            .read_reg(regmap::ID.offset)
            .err()
            .ok_or("the child read a register")?;
        let ok = matches!(&e, HostError::Forked { opened_by, pid, .. } if *opened_by == parent && *pid != parent);
        if !ok {
            return Err(format!("{e:?}"));
        }
        // The interrupt's event count is the open file's: the child would steal the parent's.
        match dev.arm_irq() {
            Err(HostError::Forked { .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    verdict.unwrap();
}

/// The register and DMA mappings are MADV_DONTFORK: a child has no mapping of the device files.
/// (qemu-user ignores MADV_DONTFORK, so scripts/cross.sh skips this test.)
#[test]
fn a_forked_child_inherits_no_mapping_of_the_device() {
    use caq_driver::dma::{CoherencyChoice, UDmaBuf};
    let (_dir, fake, root) = tree();
    let uio = fake.uio(0, "caq", &[ACCEL]).unwrap();
    fake.udmabuf("udmabuf-caq", 0x3800_0000, 1 << 20, false)
        .unwrap();
    let mem = UDmaBuf::open(&root, "udmabuf-caq", CoherencyChoice::default()).unwrap();
    let dev = UioDevice::open(&root, "caq", Box::new(mem), UioOptions::default()).unwrap();
    let maps = |path: &std::path::Path| -> Result<bool, String> {
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| e.to_string())?;
        Ok(maps.contains(path.to_str().unwrap()))
    };
    let udmabuf = root.path().join("dev/udmabuf-caq");
    assert!(
        maps(&uio.dev_path).unwrap() && maps(&udmabuf).unwrap(),
        "mapped in the parent"
    );
    let verdict = forked::in_child(|| match (maps(&uio.dev_path)?, maps(&udmabuf)?) {
        (false, false) => Ok(()),
        found => Err(format!(
            "the child has mappings (uio, u-dma-buf): {found:?}"
        )),
    });
    verdict.unwrap();
    drop(dev);
}
