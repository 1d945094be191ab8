//! Per-inference time of the Rust call (`Accelerator::infer`, the driver itself) and of the C
//! call (`caq_infer`, the exported symbol a C program calls: pointer and length checks, the
//! panic guard, the report conversion) on the same model on the functional device: the digits
//! MLP of the C examples' fixture, every layer at 8 bits. `python/benches/overhead.py` times
//! the Python call on the same fixture.
//!
//!   cargo bench -p caq-capi --bench ffi

#[allow(dead_code)]
#[path = "../examples/fixture.rs"]
mod fixture;

use caq::{
    CaqReport, CaqStatus, caq_close, caq_infer, caq_load_bundle, caq_open_sim, caq_set_bits,
};
use caq_driver::accel::{Accelerator, LoadOptions};
use caq_driver::handle::SIM_REGION;
use criterion::{Criterion, criterion_group, criterion_main};
use std::ffi::CString;
use std::hint::black_box;
use std::path::Path;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_fixture(dir.path(), 1).unwrap();
    let bundle = dir.path().join("mlp.caqb");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim-small.toml");
    let image = std::fs::read(dir.path().join("images.u8")).unwrap();

    let cfg = caq_spec::AccelConfig::load(&config).unwrap();
    let dev = caq_sim::FuncDevice::new(&cfg, SIM_REGION).unwrap();
    let mut acc = Accelerator::open(dev, &cfg).unwrap();
    acc.load_bundle(&bundle, &LoadOptions::default()).unwrap();
    acc.set_bits(&[8, 8, 8]).unwrap();

    let mut g = c.benchmark_group("infer digits MLP 8-bit (sim-small, functional model)");
    g.bench_function("rust Accelerator::infer", |b| {
        b.iter(|| black_box(acc.infer(black_box(&image)).unwrap()))
    });

    let config_c = CString::new(config.to_str().unwrap()).unwrap();
    let bundle_c = CString::new(bundle.to_str().unwrap()).unwrap();
    let mut h = std::ptr::null_mut();
    // SAFETY: valid C strings and out-pointers; the handle is closed below.
    unsafe {
        assert_eq!(caq_open_sim(config_c.as_ptr(), &mut h), CaqStatus::CAQ_OK);
        assert_eq!(caq_load_bundle(h, bundle_c.as_ptr()), CaqStatus::CAQ_OK);
        assert_eq!(caq_set_bits(h, [8u8, 8, 8].as_ptr(), 3), CaqStatus::CAQ_OK);
    }
    let mut out = [0i32; 10];
    let mut report = CaqReport::default();
    g.bench_function("C caq_infer", |b| {
        b.iter(|| {
            // SAFETY: `image` holds the 64 input bytes, `out` 10 codes, `report` is writable.
            let s = unsafe {
                caq_infer(
                    h,
                    image.as_ptr(),
                    64,
                    out.as_mut_ptr(),
                    out.len(),
                    &mut report,
                )
            };
            assert_eq!(s, CaqStatus::CAQ_OK);
            black_box(&out);
        })
    });
    g.finish();
    // SAFETY: the handle from caq_open_sim, closed once.
    unsafe { caq_close(h) };
}

criterion_group!(benches, bench);
criterion_main!(benches);
