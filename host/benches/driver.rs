//! Driver overhead per inference: host time of `Accelerator::infer` (input upload, register
//! protocol, interrupt handling, counter reads, host steps, output read-back) with the device's
//! own time taken out. The device is caq-sim's functional model, wrapped so that the time spent
//! inside START (where it runs the job) and inside `wait_irq` is measured and subtracted.
//!
//! Models: the digits MLP (trained here, about 1 s) and the MNIST LeNet (one epoch on
//! `../shared/datasets/mnist-t10k`; skipped with a note when that directory is absent), nested
//! 8 ⊃ 6 ⊃ 4 at 8 bits, on the pynq-z2 config. Run: `cargo bench -p caq-host --bench driver`.

use caq_driver::accel::{Accelerator, LoadOptions};
use caq_model::data::{self, Dataset};
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use caq_model::train::{self, Arch, TrainConfig};
use caq_sim::FuncDevice;
use caq_spec::{AccelConfig, Device, DeviceAddr, IrqWait, MemRegion, regmap};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A backend that times the device's own work: the START write (the functional model runs the
/// whole list there) and the interrupt wait.
struct Timed<D> {
    inner: D,
    device: Duration,
}

impl<D: Device> Device for Timed<D> {
    type Error = D::Error;
    fn read_reg(&mut self, offset: u32) -> Result<u32, D::Error> {
        self.inner.read_reg(offset)
    }
    fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), D::Error> {
        if offset == regmap::CTRL.offset && regmap::CTRL_START.is_set(value) {
            let t = Instant::now();
            let r = self.inner.write_reg(offset, value);
            self.device += t.elapsed();
            r
        } else {
            self.inner.write_reg(offset, value)
        }
    }
    fn memory(&self) -> MemRegion {
        self.inner.memory()
    }
    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<(), D::Error> {
        self.inner.mem_write(addr, data)
    }
    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<(), D::Error> {
        self.inner.mem_read(addr, buf)
    }
    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, D::Error> {
        let t = Instant::now();
        let r = self.inner.wait_irq(timeout);
        self.device += t.elapsed();
        r
    }
}

fn config() -> AccelConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/pynq-z2.toml");
    AccelConfig::load(path).expect("shipped config")
}

fn quantized(arch: Arch, set: &Dataset, epochs: usize) -> QModel {
    let mut tc = TrainConfig::default_for(arch);
    tc.epochs = epochs;
    let (model, _) = train::train(set, &tc, false).expect("trains");
    qmodel::quantize(&model, set, &QuantizeConfig::nested(&[8, 6, 4])).expect("quantizes")
}

fn bench_model(c: &mut Criterion, name: &str, q: QModel, set: &Dataset) {
    let cfg = config();
    let dev = Timed {
        inner: FuncDevice::new(
            &cfg,
            MemRegion {
                base: DeviceAddr(0x1000_0000),
                len: 16 << 20,
            },
        )
        .expect("device"),
        device: Duration::ZERO,
    };
    let mut acc = Accelerator::open(dev, &cfg).expect("open");
    let top = q.uniform_bits(8);
    acc.load_model(
        q,
        &LoadOptions {
            bits: Some(top),
            ..LoadOptions::default()
        },
    )
    .expect("load");
    let img = set.image(0).to_vec();
    let mut g = c.benchmark_group("driver_overhead");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut host = Duration::ZERO;
            for _ in 0..iters {
                acc.device().device = Duration::ZERO;
                let t = Instant::now();
                black_box(acc.infer(&img).expect("infer"));
                host += t.elapsed().saturating_sub(acc.device().device);
            }
            host
        })
    });
    g.finish();
    let mut g = c.benchmark_group("infer_total_func_device");
    g.bench_function(name, |b| {
        b.iter(|| black_box(acc.infer(&img).expect("infer")))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let digits = data::digits().expect("the digits the repo carries");
    let q = quantized(Arch::Mlp, &digits, 40);
    bench_model(c, "digits_mlp", q, &digits);
    let mnist = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/datasets/mnist-t10k"
    );
    match data::load_mnist_dir(std::path::Path::new(mnist)) {
        Ok(set) => {
            let q = quantized(Arch::LeNet, &set, 1);
            bench_model(c, "mnist_lenet", q, &set);
        }
        Err(e) => eprintln!("mnist_lenet skipped: {e}"),
    }
}

criterion_group! {
    name = driver;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(driver);
