#!/usr/bin/env python3
"""Per-inference time of the Python call on the functional model (timeit), to set beside
`cargo bench -p caq-capi --bench ffi` (the Rust call and the C call on the same model):

    CAQ_FIXTURE=DIR python3 python/benches/overhead.py CONFIG

with DIR from `cargo run -p caq-capi --example fixture -- DIR` and the package importable
(`maturin develop`, or tests/python.rs's staging directory on PYTHONPATH)."""

import os
import pathlib
import sys
import timeit

import numpy as np

import caq

fix = pathlib.Path(os.environ["CAQ_FIXTURE"])
acc = caq.Accelerator.sim(sys.argv[1])
acc.load(fix / "mlp.caqb")
acc.bits = [8] * acc.info["weight_layers"]
image = np.fromfile(fix / "images.u8", dtype=np.uint8)[: acc.info["input_len"]]
real = image.astype(np.float32) * acc.info["input_scale"]
for name, call in [("infer(uint8)", lambda: acc.infer(image)), ("infer(float32)", lambda: acc.infer(real))]:
    n = 2000
    best = min(timeit.repeat(call, number=n, repeat=5)) / n
    print(f"python {name}: {best * 1e6:.2f} us per inference")
