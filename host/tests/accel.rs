//! The `Accelerator` API on every backend: identity checks at open, loading a bundle with only the
//! active precision's plane groups resident, switching precision by paging (bytes moved, what stays
//! resident), inference equal to the golden executor byte for byte after every switch, gates, DMA
//! buffers, register debugging and the error paths. The same suite runs on FuncDevice and (feature
//! `rtl`) on the Verilator model of the RTL, and the two give identical observations.

mod common;

use caq_driver::HostError;
use caq_driver::accel::{Accelerator, LoadOptions, Residency};
use caq_model::bundle;
use caq_model::data::Dataset;
use caq_model::qmodel::{Gate, QModel};
use caq_sim::{FaultDir, InjectFaults};
use caq_spec::regmap;
use caq_spec::{AccelConfig, Device, DeviceAddr, IrqWait, MemRegion};
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The digits MLP, nested 8 ⊃ 6 ⊃ 4, with two gates, written as a bundle.
fn mlp_bundle(dir: &Path) -> (QModel, PathBuf, Dataset) {
    let set = digits();
    let mut q = quantize(mlp(), &set, &[8, 6, 4], 7);
    q.set_gates(vec![
        Gate {
            name: "battery-low".into(),
            bits: vec![4, 4, 4],
        },
        Gate {
            name: "mixed".into(),
            bits: vec![8, 4, 8],
        },
    ])
    .unwrap();
    let path = dir.join("mlp.caqb");
    bundle::write(&path, &q).unwrap();
    (q, path, set)
}

fn golden(q: &QModel, bits: &[u8], img: &[u8]) -> Vec<u8> {
    let out = q.executor(bits).unwrap().run(img).unwrap();
    out.last().unwrap().iter().map(|&v| v as u8).collect()
}

/// What the suite saw, for comparing backends.
#[derive(Debug, PartialEq)]
struct Observed {
    /// Per switch: (paged-in bytes, dropped bytes, descriptor bytes, layers changed, resident).
    switches: Vec<(u64, u64, u64, usize, u64)>,
    /// Per inference: output bytes and (bytes read, bytes written, plane-steps).
    runs: Vec<(Vec<u8>, (u64, u64, u64))>,
}

/// Load at the lowest level with minimal residency, then walk through gates and uniform
/// settings; every inference must equal the golden executor at the active bits.
fn suite<D: Device>(dev: D, cfg: &AccelConfig, q: &QModel, path: &Path, set: &Dataset) -> Observed {
    let mut acc = Accelerator::open(dev, cfg).expect("open");
    let load = acc
        .load_bundle(
            path,
            &LoadOptions {
                bits: None,
                residency: Residency::Minimal,
                ..LoadOptions::default()
            },
        )
        .expect("load");
    let p = acc.program().unwrap();
    let g0: u64 = p.layers.iter().map(|l| l.group_bytes[0]).sum();
    let all: u64 = p.layers.iter().flat_map(|l| &l.group_bytes).sum();
    assert_eq!(
        acc.bits().unwrap(),
        vec![4, 4, 4],
        "default start: lowest level"
    );
    assert_eq!(
        load.plane_bytes, g0,
        "only the high plane groups are uploaded"
    );
    assert_eq!(acc.resident_weight_bytes().unwrap(), g0);
    let mut obs = Observed {
        switches: Vec::new(),
        runs: Vec::new(),
    };
    let steps: [(&str, Vec<u8>); 6] = [
        ("8", vec![8, 8, 8]),
        ("gate mixed", vec![8, 4, 8]),
        ("4", vec![4, 4, 4]),
        ("6", vec![6, 6, 6]),
        ("gate battery-low", vec![4, 4, 4]),
        ("8 again", vec![8, 8, 8]),
    ];
    for (name, bits) in &steps {
        let before = acc.bits().unwrap();
        let r = match name.strip_prefix("gate ") {
            Some(g) => acc.apply_gate(g).expect("gate"),
            None => acc.set_bits(bits).expect("set_bits"),
        };
        assert_eq!(&acc.bits().unwrap(), bits, "{name}");
        assert_eq!(r.from, before);
        let changed = before.iter().zip(bits).filter(|(a, b)| a != b).count();
        assert_eq!(r.layers_changed, changed, "{name}");
        assert_eq!(
            r.descriptor_bytes,
            256 * changed as u64,
            "{name}: two copies per layer"
        );
        assert_eq!(
            r.resident_weight_bytes,
            acc.resident_weight_bytes().unwrap()
        );
        obs.switches.push((
            r.paged_in_bytes,
            r.dropped_bytes,
            r.descriptor_bytes,
            r.layers_changed,
            r.resident_weight_bytes,
        ));
        for i in 0..3 {
            let img = set.image(i);
            let inf = acc.infer(img).expect("infer");
            assert_eq!(inf.output, golden(q, bits, img), "{name}: image {i}");
            let d = inf.report.device;
            assert!(d.cycles > 0 && d.plane_ops > 0);
            obs.runs
                .push((inf.output, (d.bytes_rd, d.bytes_wr, d.plane_ops)));
        }
    }
    // Switch costs: up from 4 to 8 pages in both residual groups of both layers, down drops them.
    assert_eq!(
        obs.switches[0].0,
        all - g0,
        "4 -> 8 pages in every residual group"
    );
    assert_eq!(obs.switches[0].4, all);
    assert_eq!(
        obs.switches[1].1 + obs.switches[2].1,
        all - g0,
        "8 -> mixed -> 4 drops what 8 needed"
    );
    assert_eq!(obs.switches[2].4, g0);
    let g01 = obs.switches[3].4;
    assert_eq!(obs.switches[4], (0, g01 - g0, 256 * 3, 3, g0), "6 -> 4");
    // A batch gives the same outputs as single inferences.
    let imgs: Vec<&[u8]> = (0..3).map(|i| set.image(i)).collect();
    let batch = acc.infer_batch(imgs.iter().copied()).unwrap();
    for (b, r) in batch.iter().zip(&obs.runs[15..18]) {
        assert_eq!(b.output, r.0);
    }
    obs
}

#[test]
fn accelerator_suite_on_the_functional_device() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    suite(device(&cfg), &cfg, &q, &path, &set);
}

#[test]
fn a_lowered_depthwise_conv_pages_its_own_planes_in_and_out() {
    // The separable net's depthwise and grouped convs run as dense parts whose planes are not
    // the bundle's: loaded at the lowest level with minimal residency, switched up (page-ins
    // from the program) and down (drops), every inference equals the golden executor.
    let dir = tempfile::tempdir().unwrap();
    let set = digits();
    let q = quantize(separable(), &set, &[8, 4, 2], 5);
    let path = dir.path().join("sep.caqb");
    bundle::write(&path, &q).unwrap();
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(
        &path,
        &LoadOptions {
            bits: Some(vec![2; 5]),
            residency: Residency::Minimal,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let img = set.image(9);
    for bits in [
        [2, 2, 2, 2, 2],
        [8, 8, 4, 8, 8],
        [4, 2, 8, 2, 4],
        [2, 8, 2, 4, 2],
    ] {
        let r = acc.set_bits(&bits).unwrap();
        assert!(r.resident_weight_bytes > 0);
        assert_eq!(
            acc.infer(img).unwrap().output,
            golden(&q, &bits, img),
            "{bits:?}"
        );
    }
    let program = acc.program().unwrap();
    assert!(program.layers[1].expanded && !program.layers[2].expanded);
}

#[test]
fn keep_paged_switching_back_up_moves_only_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    let up = acc.set_bits(&[8, 8, 8]).unwrap();
    assert!(up.paged_in_bytes > 0);
    let down = acc.set_bits(&[4, 4, 4]).unwrap();
    assert_eq!((down.paged_in_bytes, down.dropped_bytes), (0, 0));
    assert_eq!(down.resident_weight_bytes, up.resident_weight_bytes);
    let again = acc.set_bits(&[8, 8, 8]).unwrap();
    assert_eq!(again.paged_in_bytes, 0, "already resident");
    assert_eq!(
        again.bytes_moved(),
        768,
        "two descriptor copies of three layers"
    );
    let img = set.image(5);
    assert_eq!(acc.infer(img).unwrap().output, golden(&q, &[8, 8, 8], img));
}

#[test]
fn groups_above_the_active_level_are_really_absent_from_device_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, _) = mlp_bundle(dir.path());
    let b = bundle::Bundle::open(&path).unwrap();
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    let read = |acc: &mut Accelerator<caq_sim::FuncDevice>, li: usize, g: usize| {
        let buf = acc.program().unwrap().group_buffer(li, g).unwrap();
        let mut v = vec![0u8; buf.len as usize];
        acc.device().mem_read(buf.addr, &mut v).unwrap();
        v
    };
    for li in 0..3 {
        assert_eq!(read(&mut acc, li, 0), b.plane_group_bytes(li, 0).unwrap());
        for g in 1..3 {
            assert!(
                read(&mut acc, li, g).iter().all(|&x| x == 0),
                "layer {li} group {g}"
            );
        }
    }
    acc.set_bits(&[6, 4, 4]).unwrap();
    assert_eq!(read(&mut acc, 0, 1), b.plane_group_bytes(0, 1).unwrap());
    assert!(read(&mut acc, 0, 2).iter().all(|&x| x == 0));
    assert!(read(&mut acc, 1, 1).iter().all(|&x| x == 0));
}

#[test]
fn bad_settings_and_gates_are_bad_config_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, _) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    let e = acc.set_bits(&[8, 5, 8]).unwrap_err();
    assert!(matches!(e, HostError::BadConfig { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "bad config: bits of layer 'fc2' = 5: expected one of its nesting levels [8, 6, 4]"
    );
    let e = acc.set_bits(&[8]).unwrap_err().to_string();
    assert_eq!(
        e,
        "bad config: bits = [8]: expected one bit-width per weight layer (3)"
    );
    let e = acc.apply_gate("turbo").unwrap_err().to_string();
    assert_eq!(
        e,
        "bad config: gate = turbo: expected one of the bundle's gates [\"battery-low\", \"mixed\"]"
    );
    assert_eq!(acc.bits().unwrap(), vec![4, 4, 4], "nothing changed");
    let e = acc
        .load_bundle(
            &path,
            &LoadOptions {
                bits: Some(vec![7, 8, 8]),
                residency: Residency::Minimal,
                ..LoadOptions::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, HostError::BadConfig { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("7 bits is not one of its nesting levels"),
        "{e}"
    );
}

/// A FuncDevice whose identity registers can be overridden: a wrong bitstream.
struct Impostor {
    inner: caq_sim::FuncDevice,
    reg: u32,
    value: u32,
}

impl Device for Impostor {
    type Error = caq_sim::SimError;
    fn read_reg(&mut self, offset: u32) -> Result<u32, Self::Error> {
        if offset == self.reg {
            return Ok(self.value);
        }
        self.inner.read_reg(offset)
    }
    fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), Self::Error> {
        self.inner.write_reg(offset, value)
    }
    fn memory(&self) -> MemRegion {
        self.inner.memory()
    }
    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<(), Self::Error> {
        self.inner.mem_write(addr, data)
    }
    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.mem_read(addr, buf)
    }
    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, Self::Error> {
        self.inner.wait_irq(timeout)
    }
}

/// A FuncDevice whose STATUS reads BUSY while `wedged`: a device hung on the bus, which
/// SOFT_RESET does not bring back. Counts the memory writes it gets.
struct Wedged {
    inner: caq_sim::FuncDevice,
    wedged: bool,
    mem_writes: usize,
}

impl Device for Wedged {
    type Error = caq_sim::SimError;
    fn read_reg(&mut self, offset: u32) -> Result<u32, Self::Error> {
        if self.wedged && offset == regmap::STATUS.offset {
            return Ok(regmap::STATUS_BUSY.mask());
        }
        self.inner.read_reg(offset)
    }
    fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), Self::Error> {
        self.inner.write_reg(offset, value)
    }
    fn memory(&self) -> MemRegion {
        self.inner.memory()
    }
    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<(), Self::Error> {
        self.mem_writes += 1;
        self.inner.mem_write(addr, data)
    }
    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.mem_read(addr, buf)
    }
    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, Self::Error> {
        if self.wedged {
            return Ok(IrqWait::TimedOut);
        }
        self.inner.wait_irq(timeout)
    }
}

#[test]
fn a_reset_that_does_not_take_keeps_every_memory_write_away_until_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let dev = Wedged {
        inner: device(&cfg),
        wedged: false,
        mem_writes: 0,
    };
    let mut acc = Accelerator::open(dev, &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    acc.device().wedged = true;
    let e = acc.infer(set.image(0)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, HostError::ResetFailed { cause: Some(c), .. } if matches!(**c, HostError::Timeout { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("no completion interrupt")
            && msg.contains("then SOFT_RESET did not stop the device (STATUS = 0x00000001 after")
            && msg.contains("touches none until a reset succeeds"),
        "{msg}"
    );
    // Nothing that writes device memory runs while the device may be live.
    let writes = acc.device().mem_writes;
    for e in [
        acc.set_bits(&[8, 8, 8]).err(),
        acc.load_bundle(&path, &LoadOptions::default()).err(),
        acc.infer(set.image(1)).err(),
    ] {
        assert!(
            matches!(e, Some(HostError::ResetFailed { cause: None, .. })),
            "{e:?}"
        );
    }
    assert_eq!(acc.device().mem_writes, writes, "no memory was written");
    assert_eq!(acc.bits().unwrap(), vec![4, 4, 4]);
    // Once a reset takes, everything works again.
    acc.device().wedged = false;
    acc.set_bits(&[8, 8, 8]).unwrap();
    let img = set.image(1);
    assert_eq!(acc.infer(img).unwrap().output, golden(&q, &[8, 8, 8], img));
    // A START written by hand is a job nobody waits for: the next switch resets first.
    acc.mmio_write(
        regmap::CTRL.offset,
        regmap::CTRL_START.mask() | regmap::CTRL_IRQ_EN.mask(),
    )
    .unwrap();
    acc.device().wedged = true;
    assert!(matches!(
        acc.set_bits(&[4, 4, 4]),
        Err(HostError::ResetFailed { .. })
    ));
}

#[test]
fn open_refuses_a_wrong_device_version_or_config() {
    let cfg = config("sim-small");
    let imp = |reg: u32, value: u32| Impostor {
        inner: device(&cfg),
        reg,
        value,
    };
    let e = Accelerator::open(imp(regmap::ID.offset, 0xffff_ffff), &cfg)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "ID = 0xffffffff, expected 0x43415121: no caq accelerator answers here: the bitstream is \
         not loaded, or this is the wrong UIO device or map"
    );
    // A register map one major version on (the device answers 4.0.0 to a 3.x driver), and one
    // a minor version behind (a 3.0 device lacks max_pool): both refused, each with its reason.
    let (maj, min, _) = regmap::REGMAP_VERSION;
    let next_major = u32::from(maj + 1) << 16;
    let older_minor = (u32::from(maj) << 16) | (u32::from(min - 1) << 8);
    for (version, reason) in [
        (next_major, "major version differs"),
        (older_minor, "older"),
    ] {
        let e = Accelerator::open(imp(regmap::VERSION.offset, version), &cfg)
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                HostError::IdMismatch {
                    register: "VERSION",
                    ..
                }
            ) && e.to_string().contains(reason),
            "{e}"
        );
    }
    // A device generated from pynq-z2, opened as sim-small.
    let e = Accelerator::open(device(&config("pynq-z2")), &cfg)
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(matches!(e, HostError::ConfigMismatch { .. }), "{msg}");
    assert!(
        msg.contains("expected 'sim-small'")
            && msg.contains("4x8 array")
            && msg.contains("16x64 array")
            && msg.contains("0xcda2a8f1e2c59d93"),
        "{msg}"
    );
    // The right config opens and reports what it read.
    let acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    assert_eq!(acc.info().id, regmap::ID_VALUE);
    assert_eq!(acc.info().config_hash, 0xcda2_a8f1_e2c5_9d93);
}

/// `caq hdl overlay --bundle` sizes the u-dma-buf with `device_bytes`: it must be what loading
/// the model really takes from the DMA region.
#[test]
fn device_bytes_is_the_region_load_bundle_allocates() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path, _) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    let load = acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    let bytes = caq_driver::compile::device_bytes(&q, &cfg).unwrap();
    assert_eq!(bytes, load.region_len);
    assert!(caq_hdl::devicetree::udmabuf_bytes_for(bytes) >= bytes + (1 << 20));
}

#[test]
fn dma_buffers_and_register_debugging() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, _) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    let load = acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    let a = acc.allocate(1000).unwrap();
    let b = acc.allocate(64).unwrap();
    assert_eq!(a.device_address().0 % 64, 0);
    assert!(
        a.device_address().0 >= load.region_base + load.region_len,
        "not over the model"
    );
    assert!(b.device_address().0 >= a.device_address().0 + 1000);
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    acc.write_buffer(&a, 0, &data).unwrap();
    let mut back = vec![0u8; 1000];
    acc.read_buffer(&a, 0, &mut back).unwrap();
    assert_eq!(back, data);
    let e = acc.write_buffer(&b, 60, &[0; 8]).unwrap_err().to_string();
    assert_eq!(
        e,
        "bad config: buffer range = [60, 60 + 8): expected inside the buffer's 64 bytes"
    );
    let e = acc.allocate(64 << 20).unwrap_err();
    assert!(matches!(e, HostError::DmaAlloc { .. }), "{e}");
    // A buffer belongs to the accelerator that allocated it.
    let mut other = Accelerator::open(device(&cfg), &cfg).unwrap();
    let e = other.write_buffer(&a, 0, &[1]).unwrap_err().to_string();
    assert!(
        e.contains("expected a buffer this accelerator allocated"),
        "{e}"
    );
    acc.free(a).unwrap();
    acc.free(b).unwrap();
    // Register debugging.
    assert_eq!(acc.mmio_read(0).unwrap(), regmap::ID_VALUE);
    acc.mmio_write(regmap::WIN_BASE.lo.offset, 0x1234_0000)
        .unwrap();
    assert_eq!(
        acc.mmio_read(regmap::WIN_BASE.lo.offset).unwrap(),
        0x1234_0000
    );
    let e = acc.mmio_read(0x102).unwrap_err().to_string();
    assert!(
        e.starts_with("read of register offset 0x102: no register there"),
        "{e}"
    );
    // Offsets inside the window that name no register answer SLVERR on the bus: refused too, as
    // are writes to read-only registers.
    assert!(acc.mmio_write(0x02C, 1).is_err());
    let e = acc
        .mmio_write(regmap::STATUS.offset, 0)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "write of register offset 0x24: STATUS is read-only (docs/regmap.md)"
    );
}

#[test]
fn an_accelerator_fault_names_the_failing_layer_and_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    // Planes of the second layer answer with SLVERR.
    let g = acc.program().unwrap().group_buffer(1, 0).unwrap();
    acc.device().inject(
        g.addr.0..g.addr.0 + g.len,
        caq_sim::axi::Resp::SlvErr,
        FaultDir::Reads,
    );
    let e = acc.infer(set.image(0)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HostError::Device { desc: 1, .. }), "{msg}");
    assert!(
        msg.contains("AXI_SLVERR") && msg.contains("layer 'fc2'"),
        "{msg}"
    );
    // The device recovers once the fault is gone.
    acc.device().clear_faults();
    assert!(acc.infer(set.image(0)).is_ok());
}

#[test]
fn a_timeout_says_whether_the_device_is_still_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    // 1 µs at 100 MHz is 100 cycles: far less than a layer.
    acc.set_timeout(Duration::from_micros(1));
    let e = acc.infer(set.image(0)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HostError::Timeout { .. }), "{msg}");
    assert!(
        msg.contains("still BUSY") && msg.ends_with("the device was reset"),
        "{msg}"
    );
}

/// After a timeout the job that was cut off must not finish into the next inference: without the
/// reset, the next START is ignored while BUSY and the old job's interrupt ends the new wait with
/// the old image's output (wrong, no error).
#[test]
fn after_a_timeout_the_next_inference_is_correct() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    let (a, b) = (set.image(0), set.image(1));
    assert_ne!(golden(&q, &[4, 4, 4], a), golden(&q, &[4, 4, 4], b));
    acc.set_timeout(Duration::from_micros(1));
    assert!(matches!(
        acc.infer(a).unwrap_err(),
        HostError::Timeout { .. }
    ));
    acc.set_timeout(Duration::from_secs(10));
    assert_eq!(acc.infer(b).unwrap().output, golden(&q, &[4, 4, 4], b));
    // A switch and a reload after a timeout are safe too (the device is idle).
    acc.set_timeout(Duration::from_micros(1));
    assert!(acc.infer(a).is_err());
    acc.set_timeout(Duration::from_secs(10));
    acc.set_bits(&[8, 8, 8]).unwrap();
    assert_eq!(acc.infer(b).unwrap().output, golden(&q, &[8, 8, 8], b));
}

#[cfg(feature = "rtl")]
#[test]
fn accelerator_suite_on_the_rtl_equals_the_functional_device() {
    let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let want = suite(device(&cfg), &cfg, &q, &path, &set);
    let rtl = caq_sim::RtlDevice::new(
        &cfg,
        3,
        caq_sim::AxiMemOptions {
            base: BASE,
            size: 4 << 20,
            stall_percent: 20,
            seed: 3,
            ..caq_sim::AxiMemOptions::default()
        },
    )
    .expect("RtlDevice");
    let got = suite(rtl, &cfg, &q, &path, &set);
    assert_eq!(
        got, want,
        "RTL vs FuncDevice: switch costs, outputs and DMA counters"
    );
}

/// The board through the real UIO code path: a fake UIO device whose register file a
/// `FakeBoard` serves, DMA memory on an incoherent memfd (a missing sync would feed stale data),
/// the interrupt through a fake `/dev/uioN` socket, and a `Recorder` that logs every access and
/// hands the board each register write in order.
mod board {
    use super::*;
    use caq_driver::dma::MemfdMemory;
    use caq_driver::fake::FakeSys;
    use caq_driver::fake::board::{BoardFaults, BoardWiring, FakeBoard};
    use caq_driver::fake::recorder::Recorder;
    use caq_driver::fake::uio::irq_pair;
    use caq_driver::irq::UioIrq;
    use caq_driver::sys::SysRoot;
    use caq_driver::uio::{Mmio, find_uio};
    use caq_driver::uio_device::{UioDevice, WaitStrategy};

    pub struct Rig {
        pub dev: Recorder<UioDevice>,
        pub board: FakeBoard,
        _dir: tempfile::TempDir,
    }

    pub fn rig(cfg: &AccelConfig, faults: BoardFaults, wait: WaitStrategy) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSys::new(dir.path());
        let uio = fs.uio(3, "caq", &[(0x43c0_0000, 0x1_0000)]).unwrap();
        let region = MemRegion {
            base: DeviceAddr(BASE),
            len: 4 << 20,
        };
        let (mem, side) = MemfdMemory::incoherent(region).unwrap();
        let (driver_end, peer) = irq_pair().unwrap();
        let wiring = BoardWiring {
            regs: uio.dev_path.clone(),
            regs_offset: 0,
            memory: side,
            irq: Some(peer),
            bus: dir.path().join("board.sock"),
        };
        let board = FakeBoard::power_up(cfg, wiring, faults).unwrap();
        let info = find_uio(&SysRoot::new(dir.path()), "caq").unwrap();
        let mmio = Mmio::open(&info, 0, 0x100).unwrap();
        // The board's event count starts at 0, as `UioDevice::open` reads it from sysfs `event`.
        let irq = UioIrq::new(driver_end, "fake /dev/uio3")
            .unwrap()
            .with_count(0);
        let dev = UioDevice::from_parts(mmio, irq, Box::new(mem), wait);
        Rig {
            dev: Recorder::wired(dev, board.connect().unwrap()),
            board,
            _dir: dir,
        }
    }
}

#[test]
fn accelerator_suite_through_uio_on_the_fake_board_equals_the_functional_device() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let want = suite(device(&cfg), &cfg, &q, &path, &set);
    let rig = board::rig(
        &cfg,
        caq_driver::fake::board::BoardFaults::default(),
        caq_driver::uio_device::WaitStrategy::Irq,
    );
    let got = suite(rig.dev, &cfg, &q, &path, &set);
    assert_eq!(got, want, "UIO + fake board vs FuncDevice");
    assert_eq!(rig.board.jobs(), 21, "one START per inference");
    assert_eq!(rig.board.events(), 21, "one interrupt per job");
    assert_eq!(rig.board.violations(), Vec::<String>::new());
}

#[test]
fn a_residual_add_loaded_onto_the_device_runs_in_its_layers_list_through_uio() {
    // LoadOptions::compile moves the add onto the device (the end of conv2's list): through UIO
    // on the fake board, every inference at every setting equals the golden executor.
    let dir = tempfile::tempdir().unwrap();
    let set = digits();
    let q = quantize(residual(), &set, &[8, 6, 4], 3);
    let path = dir.path().join("residual.caqb");
    bundle::write(&path, &q).unwrap();
    let cfg = config("sim-small");
    let rig = board::rig(
        &cfg,
        caq_driver::fake::board::BoardFaults::default(),
        caq_driver::uio_device::WaitStrategy::Irq,
    );
    let mut acc = Accelerator::open(rig.dev, &cfg).unwrap();
    let opts = LoadOptions {
        compile: caq_driver::compile::CompileOptions {
            add_on_device: true,
            ..Default::default()
        },
        ..LoadOptions::default()
    };
    acc.load_bundle(&path, &opts).unwrap();
    let p = acc.program().unwrap();
    let names: Vec<&str> = p.layers[1].after.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["add"], "the add ends conv2's list");
    for bits in [[4, 4, 4], [8, 6, 4], [6, 8, 8]] {
        acc.set_bits(&bits).unwrap();
        for i in [0, 7] {
            let img = set.image(i);
            assert_eq!(
                acc.infer(img).unwrap().output,
                golden(&q, &bits, img),
                "{bits:?}"
            );
        }
    }
    assert_eq!(rig.board.violations(), Vec::<String>::new());
}

#[test]
fn uio_interrupt_faults_are_timeouts_that_say_what_status_shows_and_missed_events_are_counted() {
    use caq_driver::fake::board::BoardFaults;
    use caq_driver::uio_device::WaitStrategy;
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let open = |faults: BoardFaults, wait: WaitStrategy| {
        let rig = board::rig(&cfg, faults, wait);
        let mut acc = Accelerator::open(rig.dev, &cfg).unwrap();
        acc.load_bundle(&path, &LoadOptions::default()).unwrap();
        acc.set_timeout(Duration::from_millis(200));
        (acc, rig.board)
    };
    // The device never finishes: BUSY.
    let (mut acc, _b) = open(
        BoardFaults {
            never_finish: true,
            ..BoardFaults::default()
        },
        WaitStrategy::Irq,
    );
    let e = acc.infer(set.image(0)).unwrap_err().to_string();
    assert!(
        e.contains("no completion interrupt within 200ms") && e.contains("still BUSY"),
        "{e}"
    );
    // The device finishes but the interrupt never comes: a wiring problem.
    let (mut acc, _b) = open(
        BoardFaults {
            done_without_irq: true,
            ..BoardFaults::default()
        },
        WaitStrategy::Irq,
    );
    let e = acc.infer(set.image(0)).unwrap_err().to_string();
    assert!(e.contains("finished but no interrupt arrived"), "{e}");
    // Two events per job: the second is counted as missed by the next wait.
    let (mut acc, _b) = open(
        BoardFaults {
            double_irq: true,
            ..BoardFaults::default()
        },
        WaitStrategy::Irq,
    );
    let first = acc.infer(set.image(0)).unwrap();
    let irq = first.report.irq.expect("the UIO backend counts interrupts");
    assert_eq!((irq.delivered, irq.missed), (1, 1), "{irq:?}");
    assert_eq!(first.output, golden(&q, &[4, 4, 4], set.image(0)));
    // Polling STATUS instead of the interrupt: same outputs, counted as polled.
    let (mut acc, _b) = open(
        BoardFaults {
            done_without_irq: true,
            ..BoardFaults::default()
        },
        WaitStrategy::Poll {
            interval: Duration::from_micros(200),
        },
    );
    let inf = acc.infer(set.image(1)).unwrap();
    assert_eq!(inf.output, golden(&q, &[4, 4, 4], set.image(1)));
    assert_eq!(inf.report.irq.unwrap().polled, 1);
}

#[test]
fn a_page_in_that_fails_leaves_the_old_precision_running() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    // Corrupt the finest residual group of fc1 in the file behind the bundle's memory map.
    let residual = bundle::Bundle::open(&path)
        .unwrap()
        .plane_group_bytes(0, 2)
        .unwrap()
        .to_vec();
    let file = std::fs::read(&path).unwrap();
    let at = file
        .windows(residual.len())
        .position(|w| w == residual.as_slice())
        .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_at(&[file[at] ^ 0xff], at as u64).unwrap();
    let e = acc.set_bits(&[8, 8, 8]).unwrap_err().to_string();
    assert!(e.contains("checksum") || e.contains("CRC"), "{e}");
    assert_eq!(
        acc.bits().unwrap(),
        vec![4, 4, 4],
        "still at the old precision"
    );
    let img = set.image(2);
    assert_eq!(acc.infer(img).unwrap().output, golden(&q, &[4, 4, 4], img));
    // A switch that needs only intact groups still works.
    acc.set_bits(&[6, 6, 6]).unwrap();
    assert_eq!(acc.infer(img).unwrap().output, golden(&q, &[6, 6, 6], img));
}

/// Names for the device addresses of a loaded program, so a transcript reads (and stays valid)
/// whatever the layout: `<input>`, `<fc1 out>`, `<fc1 list>` (its descriptor in the segment's
/// list), `<fc1 single>` (its own one-descriptor list), `<fc1 g2>` (plane group 2); the window
/// registers get `<region>` and `<region end>`.
struct Names {
    buffers: std::collections::HashMap<u64, String>,
    region: MemRegion,
}

fn address_names(p: &caq_driver::Program) -> Names {
    let mut names = std::collections::HashMap::new();
    names.insert(p.input.buf.addr.0, "<input>".to_string());
    for (li, l) in p.layers.iter().enumerate() {
        names.insert(p.nodes[l.node].buf.addr.0, format!("<{} out>", l.name));
        names.insert(l.single_addr.0, format!("<{} single>", l.name));
        for g in 0..l.group_bytes.len() {
            if let Some(b) = p.group_buffer(li, g) {
                names.insert(b.addr.0, format!("<{} g{g}>", l.name));
            }
        }
        names.insert(l.list_addr.0, format!("<{} list>", l.name));
    }
    Names {
        buffers: names,
        region: p.region,
    }
}

/// The transcript with addresses named and the performance counters' values left out (they
/// are the timing model's, not the protocol's).
fn symbolic(log: &[caq_driver::fake::recorder::Access], names: &Names) -> String {
    use caq_driver::fake::recorder::Access;
    let name = |a: u64| {
        names
            .buffers
            .get(&a)
            .cloned()
            .unwrap_or_else(|| format!("{a:#x}"))
    };
    let window = |reg: &str, v: u32| match reg {
        "WIN_BASE_LO" if u64::from(v) == names.region.base.0 => "<region>".to_string(),
        "WIN_LIMIT_LO" if u64::from(v) == names.region.end() => "<region end>".to_string(),
        _ => format!("{v:#010x}"),
    };
    let mut out = String::new();
    for a in log {
        let line = match a {
            Access::Read { reg, .. } if reg.starts_with("PERF_") => format!("read  {reg}"),
            Access::Write { reg, value } if reg.starts_with("WIN_") && reg.ends_with("_LO") => {
                format!("write {reg} <- {}", window(reg, *value))
            }
            Access::Write { reg, value } if *reg == "DESC_ADDR_LO" => {
                format!("write {reg} <- {}", name(u64::from(*value)))
            }
            Access::MemWrite { addr, len } => format!("mem write       {} +{len}", name(*addr)),
            Access::MemRead { addr, len } => format!("mem read        {} +{len}", name(*addr)),
            Access::SyncForDevice { addr, len } => {
                format!("sync for device {} +{len}", name(*addr))
            }
            Access::SyncForCpu { addr, len } => format!("sync for cpu    {} +{len}", name(*addr)),
            other => other.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Compares line by line, naming the first difference.
fn assert_transcript(what: &str, got: &str, want: &str) {
    let want = want.trim_start_matches('\n');
    if got == want {
        return;
    }
    let line = got
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(got.lines().count().min(want.lines().count()));
    panic!(
        "{what}: the recorded sequence differs from the protocol at line {}:\n  recorded: {:?}\n  expected: {:?}\nrecorded:\n{got}",
        line + 1,
        got.lines().nth(line),
        want.lines().nth(line)
    );
}

/// Open: the identity registers, then the reset that stops any job a previous process left.
const OPEN: &str = "
read  ID = 0x43415121
read  VERSION = 0x00030300
read  CONFIG_HASH_LO = 0xe2c59d93
read  CONFIG_HASH_HI = 0xcda2a8f1
read  CAPS0 = 0xc8ff0804
read  CAPS1 = 0x44220408
read  CAPS2 = 0x04000040
read  CAPS3 = 0x00001000
write CTRL <- 0x00000002 (SOFT_RESET)
read  STATUS = 0x00000000 (-)
write IRQ_STATUS <- 0x00000003 (DONE|ERROR)
";

/// One inference of the three-layer MLP (one segment): input in and flushed; window; counters
/// cleared; the list; the interrupt source acknowledged, then stale events drained and the line
/// re-enabled; START; the interrupt; STATUS; acknowledge; counters; outputs invalidated, then
/// read.
const INFER: &str = "
mem write       <input> +64
sync for device <input> +64
write WIN_BASE_LO <- <region>
write WIN_BASE_HI <- 0x00000000
write WIN_LIMIT_LO <- <region end>
write WIN_LIMIT_HI <- 0x00000000
write CTRL <- 0x00000008 (PERF_CLEAR)
write DESC_ADDR_LO <- <fc1 list>
write DESC_ADDR_HI <- 0x00000000
write DESC_COUNT <- 0x00000003
write IRQ_STATUS <- 0x00000003 (DONE|ERROR)
arm irq (drain, enable)
write CTRL <- 0x00000005 (START|IRQ_EN)
wait irq -> Fired
read  STATUS = 0x00000002 (DONE)
write IRQ_STATUS <- 0x00000003 (DONE|ERROR)
read  PERF_CYCLES_LO
read  PERF_CYCLES_HI
read  PERF_BUSY_CYCLES_LO
read  PERF_BUSY_CYCLES_HI
read  PERF_STALL_CYCLES_LO
read  PERF_STALL_CYCLES_HI
read  PERF_PLANE_OPS_LO
read  PERF_PLANE_OPS_HI
read  PERF_BYTES_RD_LO
read  PERF_BYTES_RD_HI
read  PERF_BYTES_WR_LO
read  PERF_BYTES_WR_HI
sync for cpu    <fc1 out> +128
sync for cpu    <fc2 out> +64
sync for cpu    <fc3 out> +10
mem read        <fc3 out> +10
";

/// A switch of fc1 and fc3 from 4 to 8 bits: the plane groups each lacks paged in and flushed,
/// then both copies of each changed descriptor; no register is touched.
const SWITCH: &str = "
mem write       <fc1 g1> +3072
sync for device <fc1 g1> +3072
mem write       <fc1 g2> +3072
sync for device <fc1 g2> +3072
mem write       <fc3 g1> +240
sync for device <fc3 g1> +240
mem write       <fc3 g2> +240
sync for device <fc3 g2> +240
mem write       <fc1 list> +128
sync for device <fc1 list> +128
mem write       <fc1 single> +128
sync for device <fc1 single> +128
mem write       <fc3 list> +128
sync for device <fc3 list> +128
mem write       <fc3 single> +128
sync for device <fc3 single> +128
";

/// A board that never finishes: the wait times out with STATUS BUSY, and before the error is
/// returned the device is reset (SOFT_RESET, STATUS until idle, acknowledge).
const TIMEOUT_AND_RECOVERY: &str = "
mem write       <input> +64
sync for device <input> +64
write WIN_BASE_LO <- <region>
write WIN_BASE_HI <- 0x00000000
write WIN_LIMIT_LO <- <region end>
write WIN_LIMIT_HI <- 0x00000000
write CTRL <- 0x00000008 (PERF_CLEAR)
write DESC_ADDR_LO <- <fc1 list>
write DESC_ADDR_HI <- 0x00000000
write DESC_COUNT <- 0x00000003
write IRQ_STATUS <- 0x00000003 (DONE|ERROR)
arm irq (drain, enable)
write CTRL <- 0x00000005 (START|IRQ_EN)
wait irq -> TimedOut
read  STATUS = 0x00000001 (BUSY)
write CTRL <- 0x00000002 (SOFT_RESET)
read  STATUS = 0x00000000 (-)
write IRQ_STATUS <- 0x00000003 (DONE|ERROR)
";

/// The register protocol as a board sees it, through the real UIO path on the fake board: the
/// exact sequence of open, load, one inference, one precision switch, and a timeout with its
/// recovery, followed by a correct inference. Swapping any two steps of the driver fails here.
#[test]
fn the_register_protocol_of_open_load_inference_switch_timeout_and_recovery() {
    use caq_driver::fake::board::BoardFaults;
    use caq_driver::fake::recorder::Access;
    use caq_driver::uio_device::WaitStrategy;
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let rig = board::rig(&cfg, BoardFaults::default(), WaitStrategy::Irq);
    let board = rig.board;
    let mut acc = Accelerator::open(rig.dev, &cfg).unwrap();
    let open = acc.device().take_log();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    let names = address_names(acc.program().unwrap());
    assert_transcript("open", &symbolic(&open, &names), OPEN);

    // Load: no register is touched; every write of device memory is flushed at once.
    let load = acc.device().take_log();
    assert!(!load.iter().any(Access::is_register), "{load:?}");
    assert!(load.len() >= 2 && load.len().is_multiple_of(2));
    for pair in load.chunks(2) {
        match pair {
            [
                Access::MemWrite { addr, len },
                Access::SyncForDevice { addr: a, len: l },
            ] => {
                assert_eq!((addr, len), (a, l), "{pair:?}");
            }
            other => panic!("load: a write not followed by its flush: {other:?}"),
        }
    }

    let img = set.image(0);
    assert_eq!(acc.infer(img).unwrap().output, golden(&q, &[4, 4, 4], img));
    assert_transcript(
        "inference",
        &symbolic(&acc.device().take_log(), &names),
        INFER,
    );

    acc.set_bits(&[8, 4, 8]).unwrap();
    assert_transcript(
        "switch",
        &symbolic(&acc.device().take_log(), &names),
        SWITCH,
    );

    board.set_faults(BoardFaults {
        never_finish: true,
        ..BoardFaults::default()
    });
    acc.set_timeout(Duration::from_millis(50));
    let e = acc.infer(img).unwrap_err();
    assert!(matches!(e, HostError::Timeout { .. }), "{e}");
    assert_transcript(
        "timeout and recovery",
        &symbolic(&acc.device().take_log(), &names),
        TIMEOUT_AND_RECOVERY,
    );
    assert!(!board.busy(), "the reset stopped the hung job");

    // The board finishes again: the next inference is correct and follows the same protocol.
    board.set_faults(BoardFaults::default());
    acc.set_timeout(Duration::from_secs(10));
    let img = set.image(1);
    assert_eq!(acc.infer(img).unwrap().output, golden(&q, &[8, 4, 8], img));
    assert_transcript(
        "inference after recovery",
        &symbolic(&acc.device().take_log(), &names),
        INFER,
    );
    assert_eq!(board.violations(), Vec::<String>::new());
    assert_eq!((board.started(), board.jobs(), board.resets()), (3, 2, 2));
}

/// On the board, a job that neither finishes nor stops on SOFT_RESET (a wedged device): the
/// failed run reports `ResetFailed`, and nothing writes device memory while the job may run (the
/// board would record it); once a reset takes, the switch and the next inference work.
#[test]
fn on_the_board_no_memory_is_written_while_a_hung_job_may_still_run() {
    use caq_driver::fake::board::BoardFaults;
    use caq_driver::uio_device::WaitStrategy;
    let dir = tempfile::tempdir().unwrap();
    let (q, path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let rig = board::rig(&cfg, BoardFaults::default(), WaitStrategy::Irq);
    let board = rig.board;
    let mut acc = Accelerator::open(rig.dev, &cfg).unwrap();
    acc.load_bundle(&path, &LoadOptions::default()).unwrap();
    board.set_faults(BoardFaults {
        never_finish: true,
        wedged: true,
        ..BoardFaults::default()
    });
    acc.set_timeout(Duration::from_millis(50));
    let e = acc.infer(set.image(0)).unwrap_err();
    assert!(matches!(e, HostError::ResetFailed { .. }), "{e}");
    assert!(board.busy());
    for e in [
        acc.set_bits(&[8, 8, 8]).err(),
        acc.apply_gate("mixed").err(),
        acc.load_bundle(&path, &LoadOptions::default()).err(),
    ] {
        assert!(matches!(e, Some(HostError::ResetFailed { .. })), "{e:?}");
    }
    assert_eq!(
        board.violations(),
        Vec::<String>::new(),
        "no write while the job ran"
    );
    // The device recovers (SOFT_RESET takes again): the switch resets first, then pages in.
    board.set_faults(BoardFaults::default());
    acc.set_timeout(Duration::from_secs(10));
    acc.apply_gate("mixed").unwrap();
    assert!(!board.busy());
    let img = set.image(3);
    assert_eq!(acc.infer(img).unwrap().output, golden(&q, &[8, 4, 8], img));
    assert_eq!(board.violations(), Vec::<String>::new());
}

/// The environment a child process of [`a_process_killed_mid_job_leaves_nothing_for_the_next_one`]
/// reads: the fake tree, the bundle, the image to run.
const CHILD_ROOT: &str = "CAQ_TEST_CHILD_ROOT";
const CHILD_BUNDLE: &str = "CAQ_TEST_CHILD_BUNDLE";
const CHILD_IMAGE: &str = "CAQ_TEST_CHILD_IMAGE";

/// A driver in a process of its own: opens the board of a fake tree the way `open_uio` does
/// (polling STATUS: the fake tree's `/dev/uioN` is a plain file), its register writes reaching
/// the parent's fake board through the bus socket, loads the bundle and runs one image,
/// checking it against the golden executor.
#[test]
#[ignore = "the body of the child processes the kill test starts, not a test of its own"]
fn child_process_runs_one_inference() {
    use caq_driver::accel::{BoardOptions, open_board};
    use caq_driver::fake::recorder::{BusClient, Recorder};
    use caq_driver::sys::SysRoot;
    use caq_driver::uio_device::{UioOptions, WaitStrategy};
    let Ok(root) = std::env::var(CHILD_ROOT) else {
        println!(
            "runs only as a child of a_process_killed_mid_job_leaves_nothing_for_the_next_one"
        );
        return;
    };
    let root = PathBuf::from(root);
    let bundle_path = PathBuf::from(std::env::var(CHILD_BUNDLE).unwrap());
    let image: usize = std::env::var(CHILD_IMAGE).unwrap().parse().unwrap();
    let cfg = config("sim-small");
    let opts = BoardOptions {
        root: SysRoot::new(&root),
        uio: UioOptions {
            map_index: 0,
            wait: WaitStrategy::Poll {
                interval: Duration::from_micros(200),
            },
        },
        ..BoardOptions::default()
    };
    let dev = open_board(&cfg, &opts).unwrap();
    let bus = BusClient::connect(&root.join("board.sock")).unwrap();
    let mut acc = Accelerator::open(Recorder::wired(dev, bus), &cfg).unwrap();
    acc.load_bundle(&bundle_path, &LoadOptions::default())
        .unwrap();
    println!(
        "child {}: loaded, running image {image}",
        std::process::id()
    );
    let q = bundle::Bundle::open(&bundle_path).unwrap().load().unwrap();
    let img = digits().image(image).to_vec();
    let out = acc.infer(&img).unwrap();
    assert_eq!(out.output, golden(&q, &[4, 4, 4], &img), "image {image}");
    println!(
        "child {}: image {image}: output equals the golden executor's",
        std::process::id()
    );
}

/// A process killed while its job runs, then a new process: the new one's open resets the
/// device, so the old job neither finishes into the memory the new process loads nor swallows
/// its START, and the new process's output is right. (Without that reset the new START is
/// ignored while BUSY, and the old job's end, with the old image's output, ends the new wait.)
#[test]
fn a_process_killed_mid_job_leaves_nothing_for_the_next_one() {
    use caq_driver::dma::MemfdMemory;
    use caq_driver::fake::FakeSys;
    use caq_driver::fake::board::{BoardFaults, BoardWiring, FakeBoard};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (q, bundle_path, set) = mlp_bundle(dir.path());
    let cfg = config("sim-small");
    let fs = FakeSys::new(dir.path());
    fs.fpga_manager(0, "operating").unwrap();
    let uio = fs.uio(0, "caq", &[(0x43c0_0000, 0x1_0000)]).unwrap();
    let region = MemRegion {
        base: DeviceAddr(BASE),
        len: 4 << 20,
    };
    fs.udmabuf("udmabuf-caq", BASE, region.len, false).unwrap();
    // One memory for the board here and the driver there: the u-dma-buf's device file is this
    // process's memfd.
    let (_cpu, side) = MemfdMemory::coherent(region).unwrap();
    let dev_file = dir.path().join("dev/udmabuf-caq");
    std::fs::remove_file(&dev_file).unwrap();
    std::os::unix::fs::symlink(side.proc_path(), &dev_file).unwrap();
    let wiring = BoardWiring {
        regs: uio.dev_path.clone(),
        regs_offset: 0,
        memory: side,
        irq: None,
        bus: dir.path().join("board.sock"),
    };
    // Jobs take 3 s: long enough to kill the first process in the middle of one.
    let board = FakeBoard::power_up(
        &cfg,
        wiring,
        BoardFaults {
            job_time: Duration::from_secs(3),
            ..BoardFaults::default()
        },
    )
    .unwrap();
    let child = |image: usize| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "child_process_runs_one_inference",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROOT, dir.path())
            .env(CHILD_BUNDLE, &bundle_path)
            .env(CHILD_IMAGE, image.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (0, 1);
    assert_ne!(
        golden(&q, &[4, 4, 4], set.image(a)),
        golden(&q, &[4, 4, 4], set.image(b))
    );
    let mut first = child(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while board.started() == 0 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first child ended before its job started: {:?}",
            first.wait_with_output()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the first job never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(board.busy(), "the killed process's job is still running");
    board.set_faults(BoardFaults::default());

    let second = child(b).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success() && stdout.contains("output equals the golden executor's"),
        "the second process failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // Each open reset the device; the killed job never completed; nothing touched memory while
    // a job ran.
    assert_eq!((board.resets(), board.started(), board.jobs()), (2, 2, 1));
    assert_eq!(board.violations(), Vec::<String>::new());
}
