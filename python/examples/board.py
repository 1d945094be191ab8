#!/usr/bin/env python3
"""Runs a caq bundle on a PYNQ board (or, with --sim, on the functional model) from plain Python:
no Jupyter, no pynq package. The context probe picks the gate, which is re-chosen as the battery
or memory changes; every output's class, cycles and energy are printed.

On the board, after the bitstream and the overlay are loaded (docs/deploy.md):

    python3 board.py --config pynq-z2.toml --bundle lenet.caqb --images images.npy

Images are a .npy array of N inputs (uint8 codes, or floats in the model's input range) or a
raw file of N × input_len bytes (--raw).
"""

import argparse
import sys
import time

import numpy as np

import caq


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the accelerator config (TOML)")
    ap.add_argument("--bundle", required=True, help="the nested bundle (.caqb)")
    ap.add_argument("--images", required=True, help=".npy array, or raw bytes with --raw")
    ap.add_argument("--raw", action="store_true", help="--images is raw uint8 codes")
    ap.add_argument("--count", type=int, default=None, help="run only the first COUNT inputs")
    ap.add_argument("--sim", action="store_true", help="the functional model instead of the board")
    ap.add_argument("--policy", default=None, help="context policy (TOML); default policy if absent")
    ap.add_argument("--gate", default=None, help="a fixed gate instead of the context's")
    ap.add_argument("--expected", default=None, help="int32 codes to compare with (raw file)")
    args = ap.parse_args(argv)

    try:
        acc = caq.Accelerator.sim(args.config) if args.sim else caq.Accelerator.uio(args.config)
        acc.load(args.bundle)
    except caq.CaqError as e:
        print(f"caq: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    info = acc.info
    print(f"{acc.backend} accelerator '{acc.config_name}': input {info['input_shape']}, "
          f"{info['output_len']} outputs, levels {info['levels']}, gates {[g for g, _ in acc.gates]}")
    print("energy from:", acc.attach_meter("auto", idle_window=1.0))

    if args.raw:
        images = np.fromfile(args.images, dtype=np.uint8).reshape(-1, info["input_len"])
    else:
        images = np.load(args.images)
    if args.count is not None:
        images = images[: args.count]
    expected = None
    if args.expected:
        expected = np.fromfile(args.expected, dtype="<i4").reshape(-1, info["output_len"])

    probe, selector = caq.ContextProbe(), caq.GateSelector(args.policy)
    gate_names = {g for g, _ in acc.gates}
    t0 = time.monotonic()
    equal = 0
    for i, image in enumerate(images):
        if args.gate:
            if i == 0:
                acc.apply_gate(args.gate)
        else:
            cls, switched = selector.select(probe.read(), time.monotonic() - t0)
            if switched and cls in gate_names:
                acc.apply_gate(cls)
                print(f"context class {cls}: gate applied, bits {acc.bits}")
        codes = acc.infer(image)
        r = acc.last_report
        same = expected is None or np.array_equal(codes, expected[i])
        equal += same
        energy = "n/a" if r.energy_j is None else f"{r.energy_j * 1e6:.2f} uJ"
        print(f"input {i}: class {int(codes.argmax())}, {r.cycles} cycles, {energy}"
              f"{'' if same else '  MISMATCH'}")
    if expected is not None:
        print(f"{equal}/{len(images)} outputs equal to the expected codes")
        return 0 if equal == len(images) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
