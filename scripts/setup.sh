#!/usr/bin/env bash
# Installs what caq's tests need on a fresh Debian machine: Verilator (co-simulation), Yosys
# (synthesis checks) and dtc (the board overlays compile). Idempotent: does nothing when all are
# present.
set -euo pipefail
missing=()
command -v verilator >/dev/null 2>&1 || missing+=(verilator)
command -v yosys >/dev/null 2>&1 || missing+=(yosys)
command -v dtc >/dev/null 2>&1 || missing+=(device-tree-compiler)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
verilator --version
yosys -V
dtc --version
