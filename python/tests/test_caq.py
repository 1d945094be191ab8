"""Tests of the Python package on the functional model of the accelerator. The fixture (a nested
digits MLP bundle with gates, images and the golden model's codes) comes from CAQ_FIXTURE, a
directory written by `cargo run -p caq-capi --example fixture -- DIR`; tests/python.rs sets it
and runs these with the freshly built extension."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import caq

FIX = pathlib.Path(os.environ["CAQ_FIXTURE"])
CONFIG = pathlib.Path(os.environ["CAQ_CONFIG"])
BUNDLE = FIX / "mlp.caqb"


def images():
    return np.fromfile(FIX / "images.u8", dtype=np.uint8).reshape(-1, 1, 8, 8)


def expected(name):
    return np.fromfile(FIX / f"expected-{name}.i32", dtype="<i4").reshape(-1, 10)


@pytest.fixture
def acc():
    a = caq.Accelerator.sim(CONFIG)
    a.load(BUNDLE)
    return a


def test_every_output_equals_golden_at_the_top_level_and_each_gate(acc):
    info = acc.info
    assert info["input_shape"] == (1, 8, 8) and info["output_len"] == 10
    assert info["levels"] == [8, 4, 2] and info["weight_layers"] == 3
    assert [g for g, _ in acc.gates] == ["battery-low", "balanced"]
    acc.bits = [8, 8, 8]
    for i, image in enumerate(images()):
        codes = acc.infer(image)
        assert codes.dtype == np.int32
        assert np.array_equal(codes, expected("top")[i]), i
    for gate, bits in acc.gates:
        acc.apply_gate(gate)
        assert acc.bits == bits
        for i, image in enumerate(images()):
            assert np.array_equal(acc.infer(image), expected(gate)[i]), (gate, i)


def test_each_adaptive_policy_gives_the_golden_outputs_and_settings(acc):
    # The fixture bundle's input-adaptive policies for "battery-low": each image's output codes
    # and final setting are the golden reference's, and both settings of each policy occur.
    for kind in ["cascade", "network"]:
        want_bits = np.fromfile(FIX / f"bits-{kind}-battery-low.u8", dtype=np.uint8).reshape(-1, 3)
        for i, image in enumerate(images()):
            codes, bits = acc.infer_adaptive(image, "battery-low", kind)
            assert np.array_equal(codes, expected(f"{kind}-battery-low")[i]), (kind, i)
            assert bits == list(want_bits[i]), (kind, i)
            assert acc.last_report.cycles > 0
        assert len({tuple(b) for b in want_bits}) == 2, kind
    with pytest.raises(caq.ArgumentError, match="no-such-class"):
        acc.infer_adaptive(images()[0], "no-such-class")
    with pytest.raises(caq.ArgumentError, match="expected"):
        acc.infer_adaptive(images()[0], "battery-low", "lottery")


def test_layouts_and_dtypes_of_the_input_give_the_same_output(acc):
    acc.bits = [8, 8, 8]
    image = images()[3]
    want = expected("top")[3]
    assert np.array_equal(acc.infer(image.reshape(64)), want)
    # Not contiguous: gathered first.
    assert np.array_equal(acc.infer(np.asfortranarray(image.reshape(8, 8))), want)
    assert np.array_equal(acc.infer_codes(image), want)
    # Real values quantize with the input scale: code * scale gives the code back.
    scale = acc.info["input_scale"]
    real = image.astype(np.float64) * scale
    assert np.array_equal(acc.infer(real), want)
    assert np.array_equal(acc.infer_f32(real.astype(np.float32)), want)
    assert np.array_equal(acc.infer(real.tolist()), want)


def test_the_report_has_cycles_and_energy(acc):
    assert acc.last_report is None
    acc.bits = [8, 8, 8]
    acc.infer(images()[0])
    r8 = acc.last_report
    assert r8.cycles > 0 and r8.energy_j is None and r8.energy_source is None
    assert acc.attach_meter("model") == "model"
    acc.infer(images()[0])
    r = acc.last_report
    assert r.energy_source == "model" and r.energy_j > 0
    acc.apply_gate("battery-low")
    acc.infer(images()[0])
    low = acc.last_report
    assert low.cycles < r.cycles and low.energy_j < r.energy_j


def test_errors_are_exceptions_with_caq_messages(tmp_path):
    with pytest.raises(caq.NotFoundError, match="no UIO device named 'nope'"):
        caq.Accelerator.uio(CONFIG, uio_name="nope")
    with pytest.raises(caq.NotFoundError, match="missing.toml"):
        caq.Accelerator.sim(tmp_path / "missing.toml")
    a = caq.Accelerator.sim(CONFIG)
    with pytest.raises(caq.ArgumentError, match="no model is loaded"):
        a.infer(images()[0])
    with pytest.raises(caq.FileFormatError, match="checksum"):
        a.load(FIX / "corrupt.caqb")
    a.load(BUNDLE)
    with pytest.raises(caq.ArgumentError, match="no-such-gate"):
        a.apply_gate("no-such-gate")
    with pytest.raises(caq.ArgumentError):
        a.bits = [8, 8]
    with pytest.raises(caq.ArgumentError, match="input"):
        a.infer(np.zeros(63, dtype=np.uint8))
    with pytest.raises(caq.ArgumentError, match="meter kind"):
        a.attach_meter("solar")
    assert issubclass(caq.ArgumentError, caq.CaqError)


def test_the_context_probe_and_gate_selector_choose_a_gate(tmp_path):
    probe = caq.ContextProbe()
    ctx = probe.read()
    assert isinstance(ctx, dict)
    sel = caq.GateSelector()
    assert "battery-low" in sel.classes
    cls, switched = sel.select({"battery_pct": 5.0, "on_ac": False}, 0.0)
    assert cls == "battery-low" and switched
    cls, switched = sel.select({"battery_pct": 5.0, "on_ac": False}, 1.0)
    assert cls == "battery-low" and not switched
    with pytest.raises(caq.ArgumentError, match="context"):
        sel.select({"batery_pct": 5.0}, 2.0)
    bad = tmp_path / "policy.toml"
    bad.write_text("schema_version = 99\n")
    with pytest.raises(caq.FileFormatError):
        caq.GateSelector(bad)


def test_the_board_example_runs_on_the_functional_model():
    example = pathlib.Path(__file__).parent.parent / "examples" / "board.py"
    out = subprocess.run(
        [sys.executable, str(example), "--sim", "--config", str(CONFIG), "--bundle", str(BUNDLE),
         "--images", str(FIX / "images.u8"), "--raw", "--gate", "balanced",
         "--expected", str(FIX / "expected-balanced.i32")],
        capture_output=True, text=True, check=False)
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stderr
    n = len(images())
    assert f"{n}/{n} outputs equal to the expected codes" in out.stdout
