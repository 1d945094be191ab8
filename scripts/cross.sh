#!/usr/bin/env bash
# Cross builds of the board build (the `caq` tool of caq-host without simulation, training, C++ or the
# Verilog generator, over the driver crate caq-driver) for the Zynq boards,
# linked with Debian's cross linkers as set in .cargo/config.toml. See docs/cross.md.
#
#   scripts/cross.sh build   release `caq` and libcaq for every board triple:
#                            target-cross/<triple>/release/{caq,libcaq.so,libcaq.a}, the files to
#                            copy to the board (with capi/include/caq.h)
#   scripts/cross.sh ci      unoptimized build (profile cross-ci) for every board triple, then its
#                            hardware-free tests and libcaq's C example under qemu-user (what
#                            .ci/run runs)
#
# Installs only what is missing (cross gcc and libc, qemu-user for `ci`, the rustup targets); apt is
# not touched when everything is present. Exits non-zero when an install, a build or a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# ZynqMP (ZCU104, KV260, Ultra96) and Zynq-7000 (PYNQ-Z2). `ci` tests both: the armv7 tests cost
# about half a minute more (docs/cross.md) and exercise what differs on a 32-bit target (usize, the
# Cortex-A9 barriers).
TRIPLES=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
# The hardware-free tests (fake sysfs in a temp dir, file-backed mmap, socket pairs, memfd; the context
# probe on fake power_supply/meminfo/cgroup trees). The energy tests stay native: their sampler runs in
# real time, which an emulated CPU on a loaded machine cannot keep. The other integration tests drive
# the simulator (feature sim), which the board build leaves out.
TESTS=(--lib --test uio --test dma --test context)
# qemu-user answers an ioctl it does not emulate with ENOSYS (`qemu-aarch64 -d unimp` logs "Unsupported
# ioctl: cmd=0x40085505"), where the kernel answers ENOTTY for the u-dma-buf sync ioctl on the fake's
# regular file. That test checks the kernel's answer, so it runs natively only, as does the test
# that plays the kernel for the sync ioctls through a seccomp user-notification filter (qemu-user
# would answer them itself). qemu-user also treats most madvise advice as hints it may drop
# (linux-user/mmap.c, target_madvise), so the test that a forked child inherits no device mapping
# (MADV_DONTFORK) runs natively only too.
QEMU_SKIP=(with_ioctl_version_syncs_go_to_the_device_file_not_sysfs
  the_ioctl_sync_path_reaches_the_kernel_with_the_real_request_codes
  a_forked_child_inherits_no_mapping_of_the_device)
BOARD_BUILD=(-p caq-host --no-default-features --locked)
# The driver's own hardware-free tests (the driver crate, as the board build compiles it).
DRIVER=(-p caq-driver --locked)

# Apart from target/ so that a cross build never evicts or rebuilds the native one.
export CARGO_TARGET_DIR="${CAQ_CROSS_TARGET_DIR:-$PWD/target-cross}"

usage() {
  sed -n '6,11p' "$0" | sed 's/^# //' >&2
  exit 2
}

# For a Rust triple: the GNU triple (prefix of the cross gcc, sysroot under /usr), the Debian
# architecture (libc6-dev-<arch>-cross) and the qemu-user binary.
gnu_triple() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
    *) echo "cross.sh: no cross toolchain known for $1" >&2; exit 1 ;;
  esac
}
debian_arch() {
  case "$1" in
    aarch64-*) echo arm64 ;;
    armv7-*) echo armhf ;;
  esac
}
qemu_binary() {
  case "$1" in
    aarch64-*) echo qemu-aarch64 ;;
    armv7-*) echo qemu-arm ;;
  esac
}

# Installs the cross gcc, the target libc and (with_qemu=yes) qemu-user; apt only if one is missing.
install_tools() {
  local with_qemu="$1" t gnu missing=()
  for t in "${TRIPLES[@]}"; do
    gnu="$(gnu_triple "$t")"
    command -v "$gnu-gcc" >/dev/null 2>&1 || missing+=("gcc-$gnu")
    [ -e "/usr/$gnu/lib/crt1.o" ] || missing+=("libc6-dev-$(debian_arch "$t")-cross")
  done
  if [ "$with_qemu" = yes ]; then
    for t in "${TRIPLES[@]}"; do
      # qemu-user-static installs qemu-aarch64-static, not the name the runner in .cargo/config.toml uses
      command -v "$(qemu_binary "$t")" >/dev/null 2>&1 || { missing+=(qemu-user); break; }
    done
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
  for t in "${TRIPLES[@]}"; do
    gnu="$(gnu_triple "$t")"
    echo "== $t: linker $("$gnu-gcc" --version | head -n1)"
  done
  if [ "$with_qemu" = yes ]; then
    for t in "${TRIPLES[@]}"; do
      echo "== $t: runner $("$(qemu_binary "$t")" --version | head -n1)"
    done
  fi

  local installed
  installed="$(rustup target list --installed)"
  for t in "${TRIPLES[@]}"; do
    if ! grep -qx "$t" <<<"$installed"; then
      echo "== rustup target add $t"
      rustup target add "$t"
    fi
  done
}

# Runs a command after printing it, then prints how long it took.
step() {
  local start=$SECONDS
  echo "== $*"
  "$@"
  echo "== done in $((SECONDS - start)) s"
}

mode="${1:-}"
[ $# -eq 1 ] || usage
case "$mode" in
  build)
    install_tools no
    for t in "${TRIPLES[@]}"; do
      step cargo build "${BOARD_BUILD[@]}" --release --target "$t" --bin caq
      step cargo build -p caq-capi --locked --release --target "$t" --lib
    done
    for t in "${TRIPLES[@]}"; do
      for f in caq libcaq.so libcaq.a; do
        bin="$CARGO_TARGET_DIR/$t/release/$f"
        echo "== $t: $bin ($(du -h "$bin" | cut -f1))"
      done
    done
    ;;
  ci)
    install_tools yes
    for t in "${TRIPLES[@]}"; do
      step cargo build "${BOARD_BUILD[@]}" --profile cross-ci --target "$t"
    done
    skip=()
    for name in "${QEMU_SKIP[@]}"; do skip+=(--skip "$name"); done
    for t in "${TRIPLES[@]}"; do
      step cargo test "${DRIVER[@]}" --profile cross-ci --target "$t" --no-fail-fast \
        "${TESTS[@]}" -- "${skip[@]}"
    done
    # The CPU backend (caq run --backend cpu) is what the ARM cores run: its bit-exactness tests
    # against the golden model, on a 32- and a 64-bit target.
    for t in "${TRIPLES[@]}"; do
      # (all 1,797 digits natively only: the random graphs cover every level and shape here)
      step cargo test -p caq-cpu --locked --profile cross-ci --target "$t" --no-fail-fast --lib --test golden \
        -- --skip digits_mlp_equals_golden_on_every_image
    done
    # libcaq, the C ABI: built for the target, the C example compiled with the cross gcc against
    # it and run under qemu-user on a fixture the cross-built fixture writer made, every output
    # checked against the golden model's codes (docs/bindings.md).
    for t in "${TRIPLES[@]}"; do
      gnu="$(gnu_triple "$t")"
      fix="$CARGO_TARGET_DIR/$t/capi-fixture"
      lib="$CARGO_TARGET_DIR/$t/cross-ci"
      step cargo build -p caq-capi --locked --profile cross-ci --target "$t" --lib --example fixture
      step cargo run -q -p caq-capi --locked --profile cross-ci --target "$t" --example fixture -- "$fix" 12
      step "$gnu-gcc" -std=c99 -Wall -Wextra -Werror -O1 -Icapi/include capi/examples/digits.c \
        -L"$lib" -Wl,-rpath,"$lib" -lcaq -o "$fix/digits"
      for setting in top:- battery-low:battery-low cascade-battery-low:cascade=battery-low \
        network-battery-low:network=battery-low; do
        step "$(qemu_binary "$t")" -L "/usr/$gnu" "$fix/digits" sim configs/sim-small.toml \
          "$fix/mlp.caqb" "$fix/images.u8" "$fix/expected-${setting%%:*}.i32" 12 "${setting#*:}"
      done
    done
    for t in "${TRIPLES[@]}"; do
      echo "== $t: built, tests passed under $(qemu_binary "$t") (skipped: ${QEMU_SKIP[*]}); libcaq's C example equal to golden (top level, a gate, both adaptive policies)"
    done
    ;;
  *) usage ;;
esac
