//! DMA memory without hardware: u-dma-buf over a fake sysfs tree (packed sync commands, coherence
//! choice, attribute errors), the memfd memory and its incoherence simulator, and the fake board
//! driven at the register level.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use caq_driver::HostError;
use caq_driver::dma::{
    CACHE_LINE, ChipFamily, Coherency, CoherencyChoice, DmaMemory, Mapping, MemfdMemory, SyncDir,
    SyncMethod, UDmaBuf, choose_coherency, sync_command, sync_error, udmabuf_mapping,
};
use caq_driver::fake::FakeSys;
use caq_driver::sys::SysRoot;
use caq_spec::{DeviceAddr, MemRegion};

mod forked;

const PHYS: u64 = 0x3800_0000;
const SIZE: u64 = 1 << 20;

/// A fake tree with one u-dma-buf `udmabuf0` of [`SIZE`] bytes at [`PHYS`].
fn fake_udmabuf(dma_coherent: bool) -> (tempfile::TempDir, FakeSys, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeSys::new(dir.path());
    let sysfs = fake
        .udmabuf("udmabuf0", PHYS, SIZE, dma_coherent)
        .expect("fake u-dma-buf");
    (dir, fake, sysfs)
}

fn choice(chip: ChipFamily, require_cached: bool) -> CoherencyChoice {
    CoherencyChoice {
        chip,
        require_cached,
    }
}

fn open(fake: &FakeSys, chip: ChipFamily) -> UDmaBuf {
    UDmaBuf::open(&SysRoot::new(fake.root()), "udmabuf0", choice(chip, false))
        .unwrap_or_else(|e| panic!("open: {e}"))
}

fn attr(path: &Path) -> String {
    std::fs::read_to_string(path).expect("attribute")
}

/// The command as u-dma-buf.c decodes it, written out independently of the driver.
fn expected_command(off: u64, len: u64, dir: u64) -> String {
    format!("{:#x}", (off << 32) | (len & !0xF) | (dir << 2) | 1)
}

// ---- u-dma-buf ----

#[test]
fn sync_commands_are_packed_with_offset_size_and_direction_rounded_to_lines() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    let mut buf = open(&fake, ChipFamily::ZynqMp);
    assert_eq!(buf.coherency(), Coherency::ManualSync);
    assert_eq!(buf.sync_method(), SyncMethod::Sysfs);
    assert_eq!((buf.device_addr(), buf.len()), (PHYS, SIZE));
    // (off, len, dir) asked -> (off, len) of the whole lines the command must carry.
    let cases = [
        (0, 4096, SyncDir::ToDevice, 0, 4096),
        (100, 10, SyncDir::FromDevice, 64, 64),
        (0x1234, 0x100, SyncDir::Bidirectional, 0x1200, 0x140),
        (0x40, 1, SyncDir::ToDevice, 0x40, 0x40),
        // The last line of the buffer: rounding up stops at the end.
        (SIZE - 10, 10, SyncDir::FromDevice, SIZE - 64, 64),
        (0, SIZE, SyncDir::Bidirectional, 0, SIZE),
    ];
    for (off, len, dir, line_off, line_len) in cases {
        buf.sync_for_device(off, len, dir).unwrap();
        let want = expected_command(line_off, line_len, dir as u64);
        assert_eq!(
            attr(&sysfs.join("sync_for_device")),
            want,
            "sync_for_device({off:#x}, {len:#x}, {dir:?})"
        );
        buf.sync_for_cpu(off, len, dir).unwrap();
        assert_eq!(
            attr(&sysfs.join("sync_for_cpu")),
            want,
            "sync_for_cpu({off:#x}, {len:#x}, {dir:?})"
        );
        assert_ne!(want, "0x1", "never the bare 'sync now' that syncs nothing");
    }
    assert_eq!(
        expected_command(64, 64, 2),
        "0x4000000049",
        "the test's own formula"
    );
}

#[test]
fn sync_command_fields_are_32_bits_and_size_is_a_16_byte_multiple() {
    assert_eq!(sync_command(0, 0x1f, SyncDir::ToDevice), Some(0x15));
    assert_eq!(
        sync_command(0xffff_ffff, 0xffff_ffff, SyncDir::FromDevice),
        Some(0xffff_ffff_ffff_fff9)
    );
    assert_eq!(sync_command(1 << 32, 64, SyncDir::ToDevice), None);
    assert_eq!(sync_command(0, 1 << 32, SyncDir::ToDevice), None);
}

#[test]
fn a_sync_outside_the_buffer_is_refused_before_the_kernel_sees_it() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    let mut buf = open(&fake, ChipFamily::ZynqMp);
    let e = buf
        .sync_for_device(SIZE - 64, 128, SyncDir::ToDevice)
        .unwrap_err();
    match &e {
        HostError::AddressOutOfRange {
            addr,
            end,
            limit_base,
            limit_end,
            why,
            ..
        } => {
            assert_eq!(
                (*addr, *end, *limit_base, *limit_end),
                (PHYS + SIZE - 64, PHYS + SIZE + 64, PHYS, PHYS + SIZE)
            );
            assert_eq!(*why, "outside the DMA buffer");
        }
        other => panic!("expected AddressOutOfRange, got {other}"),
    }
    assert_eq!(
        attr(&sysfs.join("sync_for_device")),
        "0\n",
        "nothing written"
    );
}

#[test]
fn coherent_and_uncached_buffers_send_no_sync_commands() {
    let (_dir, fake, sysfs) = fake_udmabuf(true);
    let mut buf = open(&fake, ChipFamily::ZynqMp);
    assert_eq!(buf.coherency(), Coherency::HwCoherent);
    buf.sync_for_device(0, 4096, SyncDir::ToDevice).unwrap();
    buf.sync_for_cpu(0, 4096, SyncDir::FromDevice).unwrap();
    assert_eq!(attr(&sysfs.join("sync_for_device")), "0\n");
    assert_eq!(attr(&sysfs.join("sync_for_cpu")), "0\n");

    let (_dir, fake, sysfs) = fake_udmabuf(false);
    let mut buf = open(&fake, ChipFamily::Zynq7000);
    assert_eq!(buf.coherency(), Coherency::Uncached);
    buf.sync_for_device(0, 4096, SyncDir::ToDevice).unwrap();
    assert_eq!(attr(&sysfs.join("sync_for_device")), "0\n");
}

#[test]
fn uncached_open_sets_sync_mode_1_and_a_zynq7000_user_may_opt_into_cached_syncs() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    fake.write("sys/class/u-dma-buf/udmabuf0/sync_mode", "2\n")
        .unwrap();
    let buf = open(&fake, ChipFamily::Zynq7000);
    assert_eq!(buf.coherency(), Coherency::Uncached);
    assert_eq!(attr(&sysfs.join("sync_mode")), "1", "set before the mmap");

    fake.write("sys/class/u-dma-buf/udmabuf0/sync_mode", "2\n")
        .unwrap();
    let root = SysRoot::new(fake.root());
    let mut cached = UDmaBuf::open(&root, "udmabuf0", choice(ChipFamily::Zynq7000, true)).unwrap();
    assert_eq!(cached.coherency(), Coherency::ManualSync);
    assert_eq!(
        attr(&sysfs.join("sync_mode")),
        "2\n",
        "left alone when cached"
    );
    cached.sync_for_device(0, 64, SyncDir::ToDevice).unwrap();
    assert_eq!(
        attr(&sysfs.join("sync_for_device")),
        expected_command(0, 64, 1)
    );
}

#[test]
fn coherence_is_chosen_per_chip_port_and_user_choice() {
    use ChipFamily::*;
    use Coherency::*;
    // (dma_coherent, chip, require_cached) -> coherency
    let table = [
        (true, Zynq7000, false, HwCoherent),
        (true, Zynq7000, true, HwCoherent),
        (true, ZynqMp, false, HwCoherent),
        (false, Zynq7000, false, Uncached),
        (false, Zynq7000, true, ManualSync),
        (false, ZynqMp, false, ManualSync),
        (false, ZynqMp, true, ManualSync),
    ];
    for (coherent, chip, cached, want) in table {
        assert_eq!(
            choose_coherency(coherent, chip, cached),
            want,
            "{coherent} {chip:?} {cached}"
        );
        assert_eq!(choice(chip, cached).resolve(coherent), want);
    }
    let default = CoherencyChoice::default();
    assert!(!default.require_cached);
    let target = if cfg!(target_arch = "arm") {
        Zynq7000
    } else {
        ZynqMp
    };
    assert_eq!(default.chip, target);
    assert_eq!(ChipFamily::of_target(), target);
}

/// u-dma-buf.c `udmabuf_object_mmap`, case by case: (O_SYNC, sync_mode, quirk_mmap_mode,
/// dma_coherent) -> cached or not.
#[test]
fn the_mapping_follows_o_sync_sync_mode_and_quirk_mmap() {
    let cached = |o, m, q, c| udmabuf_mapping(o, m, q, c).is_cached();
    let kind = |o, m, q, c| match udmabuf_mapping(o, m, q, c) {
        Mapping::Cached => "cached",
        Mapping::NonCached(_) => "uncached",
        Mapping::Unknown(_) => "unknown",
    };
    // O_SYNC picks the protection by sync_mode & 3; mode 0 keeps the default.
    for m in [1, 2, 3, 5, 6, 7] {
        assert_eq!(
            kind(true, m, Some(2), false),
            "uncached",
            "O_SYNC, sync_mode {m}"
        );
        assert_eq!(
            kind(true, m, Some(2), true),
            "uncached",
            "coherent, O_SYNC {m}"
        );
    }
    assert!(cached(true, 0, Some(2), false));
    // Without O_SYNC only SYNC_ALWAYS (4) applies the protection: modes 5..7 map uncached anyway.
    for m in [5, 6, 7] {
        assert_eq!(kind(false, m, Some(2), false), "uncached", "sync_mode {m}");
    }
    for m in [0, 1, 2, 3, 4] {
        assert!(
            cached(false, m, Some(2), false),
            "sync_mode {m} without O_SYNC"
        );
    }
    // quirk-mmap: 2 and 4 on, 3 on for a non-coherent buffer, 1 off (dma_mmap_coherent).
    assert!(cached(false, 1, Some(3), false) && cached(false, 1, Some(4), false));
    assert_eq!(kind(false, 1, Some(1), false), "uncached");
    assert!(
        cached(false, 1, Some(1), true),
        "a coherent device's buffer maps cached"
    );
    assert_eq!(kind(false, 1, None, false), "unknown");
    assert_eq!(kind(false, 1, Some(0), false), "unknown");
    assert!(cached(false, 1, None, true));
}

#[test]
fn sync_always_maps_uncached_without_o_sync_and_then_needs_no_syncs() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    fake.write("sys/class/u-dma-buf/udmabuf0/sync_mode", "5\n")
        .unwrap();
    let mut buf = open(&fake, ChipFamily::ZynqMp);
    assert!(
        matches!(buf.mapping(), Mapping::NonCached(_)),
        "{:?}",
        buf.mapping()
    );
    assert_eq!(buf.coherency(), Coherency::Uncached);
    buf.write(3, &[1, 2, 3, 4, 5]).unwrap();
    buf.sync_for_device(0, 64, SyncDir::ToDevice).unwrap();
    assert_eq!(attr(&sysfs.join("sync_for_device")), "0\n", "no sync sent");
    let mut back = [0u8; 5];
    buf.read(3, &mut back).unwrap();
    assert_eq!(back, [1, 2, 3, 4, 5]);
    // Without the quirk attribute a non-coherent buffer's mapping is not known: volatile copies
    // and kernel syncs, each right either way.
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    std::fs::remove_file(sysfs.join("quirk_mmap_mode")).unwrap();
    let mut buf = open(&fake, ChipFamily::ZynqMp);
    assert!(
        matches!(buf.mapping(), Mapping::Unknown(_)),
        "{:?}",
        buf.mapping()
    );
    assert_eq!(buf.coherency(), Coherency::ManualSync);
    buf.sync_for_device(0, 64, SyncDir::ToDevice).unwrap();
    assert_eq!(
        attr(&sysfs.join("sync_for_device")),
        expected_command(0, 64, 1)
    );
    // The default: quirk-mmap on, no O_SYNC: cached with syncs.
    let (_dir, fake, _) = fake_udmabuf(false);
    assert!(open(&fake, ChipFamily::ZynqMp).mapping().is_cached());
}

#[test]
fn a_cached_mapping_is_refused_where_u_dma_buf_cannot_give_one() {
    let root_of = |fake: &FakeSys| SysRoot::new(fake.root());
    for (attr_name, value) in [("sync_mode", "5"), ("quirk_mmap_mode", "1")] {
        for chip in [ChipFamily::Zynq7000, ChipFamily::ZynqMp] {
            let (_dir, fake, sysfs) = fake_udmabuf(false);
            std::fs::write(sysfs.join(attr_name), format!("{value}\n")).unwrap();
            let e = UDmaBuf::open(&root_of(&fake), "udmabuf0", choice(chip, true)).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, HostError::NotCacheable { .. }), "{msg}");
            assert!(
                msg.contains("(--cached)") && msg.contains(&format!("{attr_name} = {value}")),
                "{msg}"
            );
            // Without --cached the same buffer opens uncached (volatile copies, no syncs).
            let buf = UDmaBuf::open(&root_of(&fake), "udmabuf0", choice(chip, false)).unwrap();
            assert_eq!(buf.coherency(), Coherency::Uncached, "{chip:?} {attr_name}");
        }
    }
}

#[test]
fn an_uncached_open_keeps_the_sync_always_bit() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    fake.write("sys/class/u-dma-buf/udmabuf0/sync_mode", "6\n")
        .unwrap();
    let buf = open(&fake, ChipFamily::Zynq7000);
    assert_eq!(
        attr(&sysfs.join("sync_mode")),
        "5",
        "SYNC_ALWAYS | NONCACHED"
    );
    assert_eq!(buf.coherency(), Coherency::Uncached);
}

/// Writes at every offset and length within two words, uncached (volatile words) and cached
/// (memcpy), and checks the bytes in the device file and that neighbours are untouched.
#[test]
fn copies_land_in_the_device_file_at_any_alignment() {
    for chip in [ChipFamily::Zynq7000, ChipFamily::ZynqMp] {
        let (_dir, fake, _) = fake_udmabuf(false);
        let mut buf = open(&fake, chip);
        let dev = fake.root().join("dev/udmabuf0");
        let mut shadow = [0u8; 64];
        buf.write(0, &[0xee; 64]).unwrap();
        shadow.fill(0xee);
        for off in 0..17u64 {
            for len in [0usize, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31] {
                let data: Vec<u8> = (0..len)
                    .map(|i| (off as usize * 31 + i * 7) as u8)
                    .collect();
                buf.write(off, &data).unwrap();
                shadow[off as usize..off as usize + len].copy_from_slice(&data);
                let mut back = vec![0u8; len];
                buf.read(off, &mut back).unwrap();
                assert_eq!(back, data, "{chip:?} off {off} len {len}");
                let file = std::fs::read(&dev).unwrap();
                assert_eq!(&file[..64], &shadow[..], "{chip:?} off {off} len {len}");
            }
        }
        let e = buf.write(SIZE - 2, &[0; 4]).unwrap_err();
        assert!(
            e.to_string()
                .contains("write of 4 bytes at offset 0xffffe of udmabuf0"),
            "{e}"
        );
    }
}

#[test]
fn bad_or_missing_attributes_name_the_file() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    let root = SysRoot::new(fake.root());
    let open_err = || {
        UDmaBuf::open(&root, "udmabuf0", choice(ChipFamily::ZynqMp, false))
            .expect_err("a broken attribute")
    };

    fake.write("sys/class/u-dma-buf/udmabuf0/size", "1.5M\n")
        .unwrap();
    match open_err() {
        HostError::SysfsParse {
            path,
            content,
            expected,
        } => {
            assert_eq!(path, sysfs.join("size"));
            assert_eq!((content.as_str(), expected), ("1.5M", "a decimal number"));
        }
        other => panic!("expected SysfsParse, got {other}"),
    }
    fake.write("sys/class/u-dma-buf/udmabuf0/size", "0\n")
        .unwrap();
    let e = open_err();
    assert!(e.to_string().contains("a nonzero buffer size"), "{e}");
    fake.write("sys/class/u-dma-buf/udmabuf0/size", "4096\n")
        .unwrap();

    fake.write("sys/class/u-dma-buf/udmabuf0/dma_coherent", "yes\n")
        .unwrap();
    let e = open_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: expected 0 or 1, found \"yes\"",
            sysfs.join("dma_coherent").display()
        )
    );
    fake.write("sys/class/u-dma-buf/udmabuf0/dma_coherent", "0\n")
        .unwrap();

    std::fs::remove_file(sysfs.join("phys_addr")).unwrap();
    match open_err() {
        HostError::Io { path, source } => {
            assert_eq!(path, sysfs.join("phys_addr"));
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other}"),
    }
    fake.write("sys/class/u-dma-buf/udmabuf0/phys_addr", "0x38000000\n")
        .unwrap();

    std::fs::remove_file(fake.root().join("dev/udmabuf0")).unwrap();
    match open_err() {
        HostError::Io { path, .. } => assert_eq!(path, fake.root().join("dev/udmabuf0")),
        other => panic!("expected Io, got {other}"),
    }

    let e = UDmaBuf::open(&root, "udmabuf7", CoherencyChoice::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("no u-dma-buf named 'udmabuf7'"), "{msg}");
    assert!(msg.contains("sys/class/u-dma-buf/udmabuf7"), "{msg}");
}

#[test]
fn the_legacy_udmabuf_class_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSys::new(dir.path());
    let sysfs = fake.udmabuf_legacy("udmabuf0", PHYS, 8192, false).unwrap();
    let buf = open(&fake, ChipFamily::ZynqMp);
    assert_eq!(buf.sysfs_dir(), sysfs);
    assert_eq!(buf.len(), 8192);
    assert_eq!(
        attr(&sysfs.join("phys_addr")),
        "0x0000000038000000\n",
        "%pad of a 64-bit dma_addr_t"
    );
}

#[test]
fn a_sync_the_kernel_refuses_is_sync_rejected_with_the_command() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    let mut buf = open(&fake, ChipFamily::ZynqMp);
    // A directory where the attribute should be: the write fails with EISDIR.
    let attr_path = sysfs.join("sync_for_device");
    std::fs::remove_file(&attr_path).unwrap();
    std::fs::create_dir(&attr_path).unwrap();
    let e = buf
        .sync_for_device(0x80, 0x40, SyncDir::ToDevice)
        .unwrap_err();
    let msg = e.to_string();
    match e {
        HostError::SyncRejected { path, command, .. } => {
            assert_eq!(path, attr_path);
            assert_eq!(command, (0x80 << 32) | 0x40 | (1 << 2) | 1);
        }
        other => panic!("expected SyncRejected, got {other}"),
    }
    assert!(msg.contains("sync command 0x0000008000000045"), "{msg}");
    assert!(
        msg.contains("sync_for_device of [0x80, 0xc0) of udmabuf0"),
        "{msg}"
    );
}

#[test]
fn sync_errors_map_to_rejected_permission_or_io() {
    let p = Path::new("/sys/class/u-dma-buf/udmabuf0/sync_for_device");
    let err = |errno| {
        sync_error(
            p,
            0x45,
            "x".into(),
            std::io::Error::from_raw_os_error(errno),
        )
    };
    for errno in [libc::EINVAL, libc::EISDIR, libc::ENOTTY, libc::EIO] {
        match err(errno) {
            HostError::SyncRejected {
                path,
                command,
                source,
                ..
            } => {
                assert_eq!((path.as_path(), command), (p, 0x45));
                assert_eq!(source.raw_os_error(), Some(errno));
            }
            other => panic!("errno {errno}: expected SyncRejected, got {other}"),
        }
    }
    for errno in [libc::EACCES, libc::EPERM] {
        match err(errno) {
            HostError::PermissionDenied { path, subsystem } => {
                assert_eq!((path.as_path(), subsystem), (p, "u-dma-buf"));
            }
            other => panic!("errno {errno}: expected PermissionDenied, got {other}"),
        }
    }
    assert!(matches!(err(libc::ENOENT), HostError::Io { .. }));
    let msg = err(libc::EACCES).to_string();
    assert!(msg.contains("SUBSYSTEM==\"u-dma-buf\""), "{msg}");
}

#[test]
fn with_ioctl_version_syncs_go_to_the_device_file_not_sysfs() {
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    fake.write("sys/class/u-dma-buf/udmabuf0/ioctl_version", "2\n")
        .unwrap();
    let mut buf = open(&fake, ChipFamily::ZynqMp);
    assert_eq!(buf.sync_method(), SyncMethod::Ioctl);
    // The fake device is a regular file, which knows no u-dma-buf ioctl: ENOTTY.
    match buf.sync_for_cpu(0, 64, SyncDir::FromDevice).unwrap_err() {
        HostError::SyncRejected {
            path,
            command,
            source,
            ..
        } => {
            assert_eq!(path, fake.root().join("dev/udmabuf0"));
            assert_eq!(command, 0x40 | (2 << 2) | 1);
            assert_eq!(source.raw_os_error(), Some(libc::ENOTTY));
        }
        other => panic!("expected SyncRejected, got {other}"),
    }
    assert_eq!(attr(&sysfs.join("sync_for_cpu")), "0\n");
}

/// As an unprivileged user (a forked child that drops to nobody when the tests run as root): a
/// mode-000 device file is `PermissionDenied`, and so is a sync through a sysfs attribute the user
/// may not write (u-dma-buf's are 0664 root unless a udev rule says otherwise).
#[test]
fn an_unreadable_device_file_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, fake, _) = fake_udmabuf(false);
    let dev = fake.root().join("dev/udmabuf0");
    std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o000)).unwrap();
    let other = fake.udmabuf("udmabuf1", PHYS, SIZE, false).unwrap();
    let other_dev = fake.root().join("dev/udmabuf1");
    std::fs::set_permissions(&other_dev, std::fs::Permissions::from_mode(0o666)).unwrap();
    let root = SysRoot::new(fake.root());
    let zynqmp = choice(ChipFamily::ZynqMp, false);
    forked::as_unprivileged(dir.path(), || {
        match UDmaBuf::open(&root, "udmabuf0", zynqmp) {
            Err(HostError::PermissionDenied { path, subsystem })
                if path == dev && subsystem == "u-dma-buf" => {}
            other => {
                return Err(format!(
                    "mode 000: expected PermissionDenied, got {other:?}"
                ));
            }
        }
        let mut buf = UDmaBuf::open(&root, "udmabuf1", zynqmp)
            .map_err(|e| format!("the mode-0666 device did not open: {e}"))?;
        let attr = other.join("sync_for_device");
        match buf.sync_for_device(0, 64, SyncDir::ToDevice) {
            Err(HostError::PermissionDenied { path, subsystem })
                if path == attr && subsystem == "u-dma-buf" =>
            {
                Ok(())
            }
            other => Err(format!(
                "root-only sysfs sync: expected PermissionDenied, got {other:?}"
            )),
        }
    });
}

/// The two u-dma-buf sync ioctls as u-dma-buf-ioctl.h defines them, worked out here by hand
/// from the kernel's generic `_IOC` layout: `_IOW('U', nr, uint64_t)` is direction write (1)
/// in bits 31:30, the argument size (8) in bits 29:16, the magic 'U' (0x55) in bits 15:8, `nr`
/// in bits 7:0.
const U_DMA_BUF_IOCTL_SET_SYNC_FOR_CPU: u64 = (1 << 30) | (8 << 16) | (0x55 << 8) | 5;
const U_DMA_BUF_IOCTL_SET_SYNC_FOR_DEVICE: u64 = (1 << 30) | (8 << 16) | (0x55 << 8) | 6;

/// Installs, on the calling thread only, a seccomp filter that hands the two u-dma-buf sync
/// ioctls to a supervisor instead of the kernel (user notification); returns the listener.
fn intercept_udmabuf_ioctls() -> std::os::fd::OwnedFd {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_USER_NOTIF, sock_filter, sock_fprog,
    };
    use std::os::fd::FromRawFd;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // seccomp_data: nr at 0, args[i] at 16 + 8 i; the request is args[1]'s low word.
    let request_low = if cfg!(target_endian = "little") {
        24
    } else {
        28
    };
    let prog = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        jeq(libc::SYS_ioctl as u32, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, request_low),
        jeq(U_DMA_BUF_IOCTL_SET_SYNC_FOR_CPU as u32, 2, 0),
        jeq(U_DMA_BUF_IOCTL_SET_SYNC_FOR_DEVICE as u32, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    ];
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: prctl and seccomp with a live, well-formed filter program; without TSYNC the filter
    // applies to this thread only (and threads it creates), not to the rest of the test process.
    let fd = unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog,
        )
    };
    assert!(fd >= 0, "seccomp: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor, owned by nobody else.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// The ioctl sync path (what a u-dma-buf built with ioctls, the default, takes) end to end: the
/// driver's `ioctl(2)` calls are caught on its thread by seccomp and answered by this thread
/// playing the kernel, which checks the request codes against u-dma-buf-ioctl.h, reads the
/// packed command from the caller's memory, and cleans or invalidates the range of an
/// incoherent memory that the u-dma-buf device file maps. A wrong code, a wrong argument or a
/// missing sync leaves the data stale and fails the test. (qemu-user answers unknown ioctls
/// itself, so scripts/cross.sh runs this natively only.)
#[test]
fn the_ioctl_sync_path_reaches_the_kernel_with_the_real_request_codes() {
    use std::os::fd::{AsFd, AsRawFd};
    let (_dir, fake, sysfs) = fake_udmabuf(false);
    fake.write("sys/class/u-dma-buf/udmabuf0/ioctl_version", "2\n")
        .unwrap();
    // The device file is the memfd of an incoherent memory: the CPU view is what the driver
    // maps, the device view changes only through the syncs the "kernel" below makes.
    let (_cpu, device) = MemfdMemory::incoherent(MemRegion {
        base: DeviceAddr(PHYS),
        len: SIZE,
    })
    .unwrap();
    let dev_file = fake.root().join("dev/udmabuf0");
    std::fs::remove_file(&dev_file).unwrap();
    std::os::unix::fs::symlink(device.proc_path(), &dev_file).unwrap();
    device.device_write(0x400, &[0x5a; 48]).unwrap();

    let root = SysRoot::new(fake.root());
    let (tx, rx) = std::sync::mpsc::channel();
    let driver = std::thread::spawn(move || -> Result<(Vec<u8>, Vec<u8>), HostError> {
        tx.send(intercept_udmabuf_ioctls()).unwrap();
        let mut buf = UDmaBuf::open(&root, "udmabuf0", choice(ChipFamily::ZynqMp, false))?;
        assert_eq!(
            (buf.sync_method(), buf.coherency()),
            (SyncMethod::Ioctl, Coherency::ManualSync)
        );
        buf.write(0x100, &[7; 100])?;
        buf.sync_for_device(0x100, 100, SyncDir::ToDevice)?;
        // Written but never synced: the device must not see it.
        buf.write(0x300, &[9; 16])?;
        buf.sync_for_cpu(0x400, 48, SyncDir::FromDevice)?;
        let mut back = vec![0u8; 48];
        buf.read(0x400, &mut back)?;
        let mut unsynced = vec![0u8; 16];
        buf.read(0x300, &mut unsynced)?;
        Ok((back, unsynced))
    });
    let listener = rx.recv().unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !driver.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the driver thread hangs"
        );
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)).unwrap_or(0) == 0 {
            continue;
        }
        // SAFETY: all-zero is a valid seccomp_notif, which the kernel fills in.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the listener and a live struct of the size the request names.
        if unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notif,
            )
        } != 0
        {
            continue;
        }
        let [fd, request, arg, ..] = notif.data.args;
        // The caller's argument, in its own memory (this process): a pointer to the command.
        // SAFETY: the caller is blocked in this ioctl until we answer, so its u64 is alive.
        let command = unsafe { (arg as *const u64).read_volatile() };
        let file = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        seen.push((request, command, file.to_string_lossy().into_owned()));
        let (off, len, dir) = (command >> 32, command & 0xFFFF_FFF0, (command >> 2) & 3);
        let synced = match request {
            U_DMA_BUF_IOCTL_SET_SYNC_FOR_DEVICE => device.kernel_sync_for_device(off, len),
            U_DMA_BUF_IOCTL_SET_SYNC_FOR_CPU => {
                let dir = [
                    SyncDir::Bidirectional,
                    SyncDir::ToDevice,
                    SyncDir::FromDevice,
                ][dir as usize];
                device.kernel_sync_for_cpu(off, len, dir)
            }
            other => panic!("request {other:#x} is not a u-dma-buf sync"),
        };
        let resp = libc::seccomp_notif_resp {
            id: notif.id,
            val: 0,
            error: if synced.is_ok() { 0 } else { -libc::EINVAL },
            flags: 0,
        };
        // SAFETY: the listener and a live response for the notification just received.
        unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    }
    let (back, unsynced) = driver.join().unwrap().unwrap();
    assert_eq!(
        seen.iter().map(|(r, c, _)| (*r, *c)).collect::<Vec<_>>(),
        [
            // [0x100, +100) rounded out to lines: [0x100, 0x180), to the device.
            (
                U_DMA_BUF_IOCTL_SET_SYNC_FOR_DEVICE,
                (0x100 << 32) | 0x80 | (1 << 2) | 1
            ),
            // [0x400, +48) to one line, from the device.
            (
                U_DMA_BUF_IOCTL_SET_SYNC_FOR_CPU,
                (0x400 << 32) | 0x40 | (2 << 2) | 1
            ),
        ]
    );
    assert_eq!(U_DMA_BUF_IOCTL_SET_SYNC_FOR_CPU, 0x4008_5505);
    assert!(
        seen.iter().all(|(_, _, f)| f.contains("memfd:caq-dma")),
        "on the u-dma-buf's device file: {seen:?}"
    );
    let mut on_device = vec![0u8; 100];
    device.device_read(0x100, &mut on_device).unwrap();
    assert_eq!(on_device, vec![7; 100], "the clean reached the device");
    device.device_read(0x300, &mut on_device[..16]).unwrap();
    assert_eq!(&on_device[..16], &[0; 16], "no sync, no data");
    assert_eq!(
        back,
        vec![0x5a; 48],
        "the invalidate brought the device's bytes"
    );
    assert_eq!(
        unsynced,
        vec![9; 16],
        "the CPU's own write stays in its view"
    );
    assert_eq!(
        attr(&sysfs.join("sync_for_device")),
        "0\n",
        "nothing went to sysfs"
    );
}

// ---- memfd ----

const MEM_BASE: u64 = 0x1000_0000;

fn region(len: u64) -> MemRegion {
    MemRegion {
        base: DeviceAddr(MEM_BASE),
        len,
    }
}

#[test]
fn without_sync_for_device_the_device_reads_stale_data() {
    let (mut mem, dev) = MemfdMemory::incoherent(region(0x4000)).unwrap();
    assert_eq!(mem.coherency(), Coherency::ManualSync);
    assert_eq!((mem.device_addr(), mem.len()), (MEM_BASE, 0x4000));
    let input: Vec<u8> = (1..=100).collect();
    mem.write(0x100, &input).unwrap();
    let mut seen = vec![0xffu8; 100];
    dev.device_read(0x100, &mut seen).unwrap();
    assert_eq!(seen, vec![0; 100], "the CPU's bytes are still in its cache");
    mem.sync_for_device(0x100, 100, SyncDir::ToDevice).unwrap();
    dev.device_read(0x100, &mut seen).unwrap();
    assert_eq!(seen, input);
}

#[test]
fn without_sync_for_cpu_the_cpu_reads_stale_data() {
    let (mut mem, dev) = MemfdMemory::incoherent(region(0x4000)).unwrap();
    mem.write(0x200, &[7; 32]).unwrap();
    mem.sync_for_device(0x200, 32, SyncDir::FromDevice).unwrap();
    dev.device_write(0x200, &[9; 32]).unwrap();
    let mut out = [0u8; 32];
    mem.read(0x200, &mut out).unwrap();
    assert_eq!(out, [7; 32], "stale: no invalidate yet");
    mem.sync_for_cpu(0x200, 32, SyncDir::ToDevice).unwrap();
    mem.read(0x200, &mut out).unwrap();
    assert_eq!(
        out, [7; 32],
        "a TO_DEVICE sync_for_cpu invalidates nothing (arm64)"
    );
    mem.sync_for_cpu(0x200, 32, SyncDir::FromDevice).unwrap();
    mem.read(0x200, &mut out).unwrap();
    assert_eq!(out, [9; 32]);
}

#[test]
fn syncs_act_on_whole_lines_so_buffers_sharing_a_line_corrupt_each_other() {
    let (mut mem, dev) = MemfdMemory::incoherent(region(0x1000)).unwrap();
    // Buffer A = [0, 32) written by the CPU, buffer B = [32, 64) by the device: one line.
    mem.write(0, &[0xaa; 32]).unwrap();
    dev.device_write(32, &[0xbb; 32]).unwrap();
    // Reading B invalidates the whole line, and A's unsynced bytes go with it.
    mem.sync_for_cpu(32, 32, SyncDir::FromDevice).unwrap();
    let mut line = [0u8; 64];
    mem.read(0, &mut line).unwrap();
    assert_eq!(&line[..32], &[0; 32], "A lost: it shared B's line");
    assert_eq!(&line[32..], &[0xbb; 32]);

    // A clean writes back dirty lines whole: the neighbour in the same line goes too.
    mem.write(64, &[1; 8]).unwrap();
    mem.sync_for_device(64, 8, SyncDir::ToDevice).unwrap();
    let mut seen = [0u8; 64];
    dev.device_read(64, &mut seen).unwrap();
    assert_eq!(&seen[..8], &[1; 8]);
    // A clean of lines the CPU never wrote leaves the device's data alone.
    dev.device_write(128, &[5; 64]).unwrap();
    mem.sync_for_device(128, 64, SyncDir::ToDevice).unwrap();
    dev.device_read(128, &mut seen).unwrap();
    assert_eq!(seen, [5; 64], "a clean line is not written back");
    assert_eq!(CACHE_LINE, 64);
}

#[test]
fn coherent_memfd_has_one_view() {
    let (mut mem, dev) = MemfdMemory::coherent(region(0x1000)).unwrap();
    assert_eq!(mem.coherency(), Coherency::HwCoherent);
    mem.write(3, b"abc").unwrap();
    let mut seen = [0u8; 3];
    dev.device_read(3, &mut seen).unwrap();
    assert_eq!(&seen, b"abc", "no sync needed");
    dev.device_write(3, b"xyz").unwrap();
    mem.read(3, &mut seen).unwrap();
    assert_eq!(&seen, b"xyz");
    assert_eq!(dev.region(), region(0x1000));
}

#[test]
fn memfd_accesses_outside_the_region_are_errors() {
    let (mut mem, dev) = MemfdMemory::incoherent(region(0x1000)).unwrap();
    let e = mem.write(0xffe, &[0; 4]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "write of 4 bytes at offset 0xffe of memfd at [0x10000ffe, 0x10001002) is outside what the accelerator can address: [0x10000000, 0x10001000) (outside the DMA buffer)"
    );
    assert!(dev.device_read(0x1000, &mut [0; 1]).is_err());
    assert!(mem.sync_for_cpu(0, 0x1001, SyncDir::FromDevice).is_err());
    assert!(MemfdMemory::coherent(region(0)).is_err());
}

// ---- the fake board ----

#[cfg(feature = "sim")]
mod board {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use caq_driver::fake::board::{BoardFaults, BoardWiring, FakeBoard};
    use caq_driver::fake::recorder::Recorder;
    use caq_driver::fake::uio::irq_pair;
    use caq_model::requant::Requant;
    use caq_sim::FuncDevice;
    use caq_sim::layer::{self, Alloc, LayerJob, LayerOp, OUTPUT_FILL, SPARE_BYTES, WeightGroup};
    use caq_spec::regmap::{self, Register};
    use caq_spec::{AccelConfig, Device, IrqWait};
    use memmap2::{MmapOptions, MmapRaw};
    use ndarray::Array2;

    const MEM_LEN: u64 = 1 << 16;
    /// The register window's offset in the fake `dev/uio0` (a second map, one page in).
    const REGS_AT: u64 = 4096;

    fn config() -> AccelConfig {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
        AccelConfig::load(path).expect("shipped config")
    }

    /// The driver's side of a fake board at the register level, as a `caq_spec::Device`:
    /// volatile register accesses in the shared file, the memfd's CPU view, and the raw
    /// interrupt file (enables written as they are, counts read as they come). Wrapped in a
    /// `Recorder` wired to the board, which is how the board sees the writes.
    struct Wire {
        regs: MmapRaw,
        mem: MemfdMemory,
        irq: UnixStream,
        skip_sync_for_device: bool,
    }

    impl Wire {
        fn reg(&self, offset: u32) -> *mut u32 {
            // SAFETY: the mapping covers REGS_AT + the register window and offsets are in it.
            unsafe {
                self.regs
                    .as_mut_ptr()
                    .add((REGS_AT + u64::from(offset)) as usize)
            }
            .cast()
        }

        fn offset(&self, addr: DeviceAddr) -> u64 {
            addr.0 - self.mem.device_addr()
        }

        /// The next count the interrupt file gives, if one comes within `timeout`.
        fn next_event(&mut self, timeout: Duration) -> Option<i32> {
            self.irq.set_read_timeout(Some(timeout)).unwrap();
            let mut b = [0u8; 4];
            match self.irq.read_exact(&mut b) {
                Ok(()) => Some(i32::from_ne_bytes(b)),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
                Err(e) => panic!("irq socket: {e}"),
            }
        }

        /// Reads every count pending, without waiting.
        fn drain(&mut self) -> Vec<i32> {
            let mut counts = Vec::new();
            while let Some(c) = self.next_event(Duration::from_millis(1)) {
                counts.push(c);
            }
            counts
        }
    }

    impl Device for Wire {
        type Error = HostError;

        fn read_reg(&mut self, offset: u32) -> Result<u32, HostError> {
            // SAFETY: an aligned word of the live register mapping.
            Ok(unsafe { self.reg(offset).read_volatile() })
        }

        fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), HostError> {
            // SAFETY: as above.
            unsafe { self.reg(offset).write_volatile(value) };
            Ok(())
        }

        fn memory(&self) -> MemRegion {
            self.mem.region()
        }

        fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<(), HostError> {
            let off = self.offset(addr);
            self.mem.write(off, data)
        }

        fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<(), HostError> {
            let off = self.offset(addr);
            self.mem.read(off, buf)
        }

        fn sync_for_device(&mut self, addr: DeviceAddr, len: u64) -> Result<(), HostError> {
            if self.skip_sync_for_device {
                return Ok(());
            }
            let off = self.offset(addr);
            self.mem.sync_for_device(off, len, SyncDir::ToDevice)
        }

        fn sync_for_cpu(&mut self, addr: DeviceAddr, len: u64) -> Result<(), HostError> {
            let off = self.offset(addr);
            self.mem.sync_for_cpu(off, len, SyncDir::FromDevice)
        }

        /// Writes one enable, raw (no drain).
        fn arm_irq(&mut self) -> Result<(), HostError> {
            self.irq
                .write_all(&1u32.to_ne_bytes())
                .map_err(|e| HostError::Io {
                    path: "irq".into(),
                    source: e,
                })
        }

        fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, HostError> {
            Ok(match self.next_event(timeout) {
                Some(_) => IrqWait::Fired,
                None => IrqWait::TimedOut,
            })
        }
    }

    type Bus = Recorder<Wire>;

    fn get(wire: &mut Bus, r: Register) -> u32 {
        wire.read_reg(r.offset).unwrap()
    }

    /// A board over an incoherent memfd, and the recorded wire to it.
    fn board(faults: BoardFaults) -> (tempfile::TempDir, FakeBoard, Bus) {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSys::new(dir.path());
        let regs_path = fake.write("dev/uio0", vec![0u8; 8192]).unwrap();
        let (mem, device_side) = MemfdMemory::incoherent(region(MEM_LEN)).unwrap();
        let (driver_end, peer) = irq_pair().unwrap();
        let wiring = BoardWiring {
            regs: regs_path.clone(),
            regs_offset: REGS_AT,
            memory: device_side,
            irq: Some(peer),
            bus: dir.path().join("board.sock"),
        };
        let board = FakeBoard::power_up(&config(), wiring, faults)
            .unwrap_or_else(|e| panic!("power up: {e}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&regs_path)
            .unwrap();
        let regs = MmapOptions::new().len(8192).map_raw(&file).unwrap();
        let wire = Wire {
            regs,
            mem,
            irq: UnixStream::from(driver_end),
            skip_sync_for_device: false,
        };
        let bus = Recorder::wired(wire, board.connect().unwrap());
        (dir, board, bus)
    }

    /// Dense, K = 16, four outputs, 8-bit weights.
    fn dense_job() -> LayerJob {
        let (o, k) = (4, 16);
        LayerJob {
            op: LayerOp::Dense { in_c: k, batch: 1 },
            groups: vec![WeightGroup {
                bits: 8,
                shift: 0,
                codes: Array2::from_shape_fn((o, k), |(r, c)| {
                    (r as i32 * 37 + c as i32 * 11) % 255 - 127
                }),
            }],
            active: 1,
            regions: None,
            bias: vec![100, -200, 300, 0],
            requant: (0..o)
                .map(|_| Requant::from_real(1.0 / 64.0).expect("factor"))
                .collect(),
            relu: false,
            in_signed: false,
            in_bits: 8,
            out_signed: true,
            out_bits: 8,
            input: (0..k as i32).map(|i| i * 13 % 256).collect(),
        }
    }

    /// Places the job and its one-descriptor list from the start of memory, runs it with the
    /// interrupt armed, and returns the run and the output bytes (with the spare bytes).
    fn run_job<D: Device>(dev: &mut D, job: &LayerJob) -> (layer::Run, Vec<u8>) {
        run_job_within(dev, job, Duration::from_secs(10))
    }

    fn run_job_within<D: Device>(
        dev: &mut D,
        job: &LayerJob,
        timeout: Duration,
    ) -> (layer::Run, Vec<u8>) {
        let mut alloc = Alloc::new(DeviceAddr(MEM_BASE), MEM_BASE + MEM_LEN);
        let placed = job.place(dev, &mut alloc).unwrap();
        let desc_addr = DeviceAddr(alloc.take(128).unwrap());
        // The last job's cause acknowledged (the line drops) before the interrupt is re-enabled:
        // a level interrupt re-enabled while high fires again at once.
        let causes = regmap::IRQ_STATUS_DONE.mask() | regmap::IRQ_STATUS_ERROR.mask();
        dev.write_reg(regmap::IRQ_STATUS.offset, causes).unwrap();
        dev.arm_irq().unwrap();
        let run = layer::run_list(dev, desc_addr, &[placed.desc], timeout).unwrap();
        (run, layer::read_output(dev, &placed).unwrap())
    }

    fn start(wire: &mut Bus) {
        wire.write_reg(
            regmap::CTRL.offset,
            regmap::CTRL_START.mask() | regmap::CTRL_IRQ_EN.mask(),
        )
        .unwrap();
    }

    fn ack(wire: &mut Bus, causes: u32) {
        wire.write_reg(regmap::IRQ_STATUS.offset, causes).unwrap();
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_board_powers_up_with_the_configs_read_only_registers() {
        let (_dir, _board, mut wire) = board(BoardFaults::default());
        let mut reference = FuncDevice::new(&config(), region(MEM_LEN)).unwrap();
        for r in [
            regmap::ID,
            regmap::VERSION,
            regmap::CONFIG_HASH_LO,
            regmap::CONFIG_HASH_HI,
            regmap::CAPS0,
            regmap::CAPS1,
            regmap::CAPS2,
            regmap::CAPS3,
        ] {
            assert_eq!(
                get(&mut wire, r),
                reference.read_reg(r.offset).unwrap(),
                "{}",
                r.name
            );
        }
        assert_eq!(get(&mut wire, regmap::ID), regmap::ID_VALUE);
        assert_eq!(get(&mut wire, regmap::STATUS), 0);
    }

    #[test]
    fn a_job_runs_through_registers_memory_and_interrupt_like_on_func_device() {
        let (_dir, board, mut wire) = board(BoardFaults::default());
        let job = dense_job();
        let golden = job.golden().unwrap();
        let (run, out) = run_job(&mut wire, &job);
        assert_eq!(run.irq, IrqWait::Fired);
        assert!(run.done(), "STATUS {:#x}", run.status);
        assert_eq!(
            &out[..golden.len()],
            &golden[..],
            "output equals the golden kernel's"
        );
        assert_eq!(&out[golden.len()..], &[OUTPUT_FILL; SPARE_BYTES as usize]);
        // The same job on a FuncDevice directly: the same counters.
        let mut direct = FuncDevice::new(&config(), region(MEM_LEN)).unwrap();
        let (direct_run, _) = run_job(&mut direct, &job);
        assert_eq!(run.perf, direct_run.perf);
        assert!(run.perf.cycles > 0 && run.perf.bytes_wr >= golden.len() as u64);
        assert_eq!(
            get(&mut wire, regmap::IRQ_STATUS),
            regmap::IRQ_STATUS_DONE.mask()
        );
        assert_eq!(
            get(&mut wire, regmap::CTRL),
            regmap::CTRL_IRQ_EN.mask(),
            "START self-cleared"
        );
        assert_eq!((board.jobs(), board.events()), (1, 1));

        // A second job: the line was masked by the first event; the enable unmasks it.
        let (run, _) = run_job(&mut wire, &job);
        assert!(run.done() && run.irq == IrqWait::Fired);
        assert_eq!((board.jobs(), board.events()), (2, 2));
        assert_eq!(board.violations(), Vec::<String>::new());
        board.shut_down().unwrap();
    }

    #[test]
    fn a_driver_that_skips_sync_for_device_feeds_the_board_stale_memory() {
        let (_dir, _board, mut wire) = board(BoardFaults::default());
        wire.inner_mut().skip_sync_for_device = true;
        let (run, _) = run_job(&mut wire, &dense_job());
        assert_eq!(run.irq, IrqWait::Fired, "the error interrupt");
        let (code, desc) = run.error().expect("the board fetched a zero descriptor");
        assert_eq!(desc, 0);
        assert_ne!(code, 0);
    }

    #[test]
    fn never_finish_stays_busy_without_an_event_until_soft_reset() {
        let (_dir, board, mut wire) = board(BoardFaults {
            never_finish: true,
            ..BoardFaults::default()
        });
        let (run, _) = run_job_within(&mut wire, &dense_job(), Duration::from_millis(200));
        assert_eq!(run.irq, IrqWait::TimedOut);
        assert_eq!(run.status, regmap::STATUS_BUSY.mask());
        assert_eq!(board.events(), 0);
        wire.write_reg(regmap::CTRL.offset, regmap::CTRL_SOFT_RESET.mask())
            .unwrap();
        // Applied in order: the next read already sees it.
        assert_eq!(get(&mut wire, regmap::STATUS), 0);
        assert_eq!(get(&mut wire, regmap::CTRL), 0, "SOFT_RESET self-cleared");
        assert_eq!((board.jobs(), board.resets()), (0, 1));
        assert!(!board.busy());
        // A wedged device keeps the hung job through SOFT_RESET.
        board.set_faults(BoardFaults {
            never_finish: true,
            wedged: true,
            ..BoardFaults::default()
        });
        start(&mut wire);
        wire.write_reg(regmap::CTRL.offset, regmap::CTRL_SOFT_RESET.mask())
            .unwrap();
        assert_eq!(get(&mut wire, regmap::STATUS), regmap::STATUS_BUSY.mask());
    }

    #[test]
    fn done_without_irq_shows_done_but_sends_no_event() {
        let (_dir, board, mut wire) = board(BoardFaults {
            done_without_irq: true,
            ..BoardFaults::default()
        });
        let (run, _) = run_job_within(&mut wire, &dense_job(), Duration::from_millis(200));
        assert_eq!(run.irq, IrqWait::TimedOut);
        assert!(run.done(), "STATUS {:#x}", run.status);
        assert_eq!((board.jobs(), board.events()), (1, 0));
    }

    #[test]
    fn double_irq_raises_the_count_by_two() {
        let (_dir, _board, mut wire) = board(BoardFaults {
            double_irq: true,
            ..BoardFaults::default()
        });
        let (run, _) = run_job(&mut wire, &dense_job());
        assert!(run.done());
        ack(&mut wire, regmap::IRQ_STATUS_DONE.mask());
        wire.arm_irq().unwrap();
        start(&mut wire);
        assert_eq!(
            wire.inner_mut().next_event(Duration::from_secs(10)),
            Some(4)
        );
    }

    /// The interrupt is a level: high while IRQ_EN and a cause are set. The kernel masks it at
    /// each event; re-enabling while the line is still high is the next event at once, and an
    /// interrupt that rises while masked arrives with the enable.
    #[test]
    fn a_level_interrupt_fires_again_on_enable_until_it_is_acknowledged() {
        let (_dir, board, mut wire) = board(BoardFaults::default());
        let (run, _) = run_job(&mut wire, &dense_job());
        assert!(run.done());
        assert_eq!(board.events(), 1);
        // Not acknowledged: the line is still high, so the enable is an event at once.
        wire.arm_irq().unwrap();
        assert_eq!(wire.inner_mut().next_event(Duration::from_secs(5)), Some(2));
        // Acknowledged: the line drops, an enable is quiet.
        ack(&mut wire, regmap::IRQ_STATUS_DONE.mask());
        wire.arm_irq().unwrap();
        assert_eq!(wire.inner_mut().next_event(Duration::from_millis(50)), None);
        // The interrupt is enabled: the next job's completion is an event.
        start(&mut wire);
        assert_eq!(wire.inner_mut().next_event(Duration::from_secs(5)), Some(3));
        // Now masked: a third job completes, its event waits for the enable.
        ack(&mut wire, regmap::IRQ_STATUS_DONE.mask());
        start(&mut wire);
        wait_until("job 3 ran", || board.jobs() == 3);
        assert_eq!(
            wire.inner_mut().next_event(Duration::from_millis(50)),
            None,
            "masked"
        );
        wire.arm_irq().unwrap();
        assert_eq!(wire.inner_mut().next_event(Duration::from_secs(5)), Some(4));
        assert_eq!(board.violations(), Vec::<String>::new());
    }

    /// IRQ_STATUS is write-1-to-clear, taken write by write: a write clears exactly the causes it
    /// has ones for (a file-sampling fake could not tell an acknowledge from the value it left).
    #[test]
    fn irq_status_clears_only_the_causes_written_as_ones() {
        let (_dir, _board, mut wire) = board(BoardFaults::default());
        run_job(&mut wire, &dense_job());
        let done = regmap::IRQ_STATUS_DONE.mask();
        assert_eq!(get(&mut wire, regmap::IRQ_STATUS), done);
        ack(&mut wire, regmap::IRQ_STATUS_ERROR.mask());
        assert_eq!(
            get(&mut wire, regmap::IRQ_STATUS),
            done,
            "ERROR's bit cleared nothing"
        );
        ack(&mut wire, 0);
        assert_eq!(get(&mut wire, regmap::IRQ_STATUS), done);
        ack(&mut wire, done);
        assert_eq!(get(&mut wire, regmap::IRQ_STATUS), 0);
    }

    /// A read of `/dev/uioN` returns the kernel's count at the time of the read: two interrupts
    /// before a read are one read of the second count (a socket would queue both).
    #[test]
    fn the_interrupt_file_gives_only_the_latest_count() {
        let (_dir, board, mut wire) = board(BoardFaults::default());
        run_job(&mut wire, &dense_job());
        // The driver reads nothing; the cause is acknowledged and the interrupt re-enabled raw.
        let done = regmap::IRQ_STATUS_DONE.mask();
        ack(&mut wire, done);
        wire.arm_irq().unwrap();
        start(&mut wire);
        wait_until("two events", || board.events() == 2);
        // The driver's UioIrq (on the same interrupt file) reads 2 at once, and counts the jump
        // from 0 as one missed event; nothing else is pending.
        let fd = std::os::fd::OwnedFd::from(wire.inner().irq.try_clone().unwrap());
        let mut irq = caq_driver::irq::UioIrq::new(fd, "fake /dev/uio0")
            .unwrap()
            .with_count(0);
        assert_eq!(
            irq.wait(Duration::from_secs(5)).unwrap(),
            caq_driver::irq::IrqOutcome::Fired {
                count: 2,
                missed: 1
            }
        );
        assert_eq!(
            wire.inner_mut().drain(),
            Vec::<i32>::new(),
            "count 1 is gone"
        );
    }

    /// What a correct driver never does, the board records: a START while BUSY (ignored, so the
    /// running job's interrupt would end the wait for the new one), a list register written
    /// while a job runs, device memory written while a job runs, a write to a read-only register.
    #[test]
    fn the_board_records_what_a_correct_driver_never_does() {
        let (_dir, board, mut wire) = board(BoardFaults {
            job_time: Duration::from_millis(300),
            ..BoardFaults::default()
        });
        let mut alloc = Alloc::new(DeviceAddr(MEM_BASE), MEM_BASE + MEM_LEN);
        let placed = dense_job().place(&mut wire, &mut alloc).unwrap();
        let desc_addr = DeviceAddr(alloc.take(128).unwrap());
        layer::write_list(&mut wire, desc_addr, &[placed.desc]).unwrap();
        let mem = wire.memory();
        caq_spec::device::write_wide(&mut wire, regmap::WIN_BASE, mem.base.0).unwrap();
        caq_spec::device::write_wide(&mut wire, regmap::WIN_LIMIT, mem.end()).unwrap();
        caq_spec::device::write_wide(&mut wire, regmap::DESC_ADDR, desc_addr.0).unwrap();
        wire.write_reg(regmap::DESC_COUNT.offset, 1).unwrap();
        assert_eq!(board.violations(), Vec::<String>::new());
        start(&mut wire);
        assert!(board.busy());
        start(&mut wire);
        wire.write_reg(regmap::DESC_COUNT.offset, 1).unwrap();
        wire.mem_write(DeviceAddr(MEM_BASE), &[0; 16]).unwrap();
        wire.write_reg(regmap::ID.offset, 0).unwrap();
        let v = board.violations();
        assert_eq!(v.len(), 4, "{v:#?}");
        assert!(v[0].starts_with("START while BUSY"), "{}", v[0]);
        assert!(
            v[1].starts_with("DESC_COUNT written while a job runs"),
            "{}",
            v[1]
        );
        assert!(
            v[2].starts_with("the CPU wrote device memory [0x10000000, +16)"),
            "{}",
            v[2]
        );
        assert!(v[3].contains("read-only ID"), "{}", v[3]);
        assert_eq!(board.started(), 1, "the second START was ignored");
        wait_until("the job completes on its own", || board.jobs() == 1);
        assert!(!board.busy());
    }
}
