#!/usr/bin/env bash
# Installs what caq's tests need on a fresh Debian machine: Verilator (co-simulation), Yosys
# (synthesis checks), dtc (the board overlays compile), a C and C++ compiler (libcaq's examples,
# capi/tests/examples.rs) and Python's onnx + numpy + pytest packages (the caq-onnx tests,
# onnx/tests/python.rs; the Python package's tests, python/tests/python.rs). Idempotent: does
# nothing when all are present.
set -euo pipefail
missing=()
command -v verilator >/dev/null 2>&1 || missing+=(verilator)
command -v yosys >/dev/null 2>&1 || missing+=(yosys)
command -v dtc >/dev/null 2>&1 || missing+=(device-tree-compiler)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Checked from / so that the repo's onnx/ folder does not pass for the Python package.
if ! (cd / && python3 -c 'import onnx, numpy, pytest') >/dev/null 2>&1; then
  echo "== installing: onnx==1.17.0 numpy==2.4.6 pytest==9.2.0 (pip)"
  python3 -m pip install --quiet onnx==1.17.0 numpy==2.4.6 pytest==9.2.0
fi
verilator --version
yosys -V
dtc --version
(cd / && python3 -c 'import onnx; print("onnx", onnx.__version__)')
