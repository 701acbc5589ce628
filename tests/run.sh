#!/usr/bin/env bash
# Every test, in the order CI runs them, with the time of each phase:
#   setup     install what is missing (tests/setup.sh; root)
#   x86_64    cargo test --release (unit, parity, 4K output, D-Bus service)
#   aarch64   the same suite cross-built and run under qemu-user (cross-test.sh)
#   guest     arm64 kernel + initramfs + Debian rootfs (build-image.sh, in the
#             background from the start; reused when unchanged)
#   system    boot the guest, check the service under systemd (systest.py)
#   yocto     the layer's crates list and oelint-adv (yocto-layer/check.sh)
# Exits non-zero at the first failing phase.
set -euo pipefail
cd "$(dirname "$0")/.."
times=()
total=$SECONDS
phase() {
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*"
    "$@"
    times+=("$name $((SECONDS - start)) s")
    echo "== $name: ok in $((SECONDS - start)) s"
}
report() {
    local IFS=,
    echo "== phase times: ${times[*]}; total $((SECONDS - total)) s"
}
trap report EXIT

phase setup tests/setup.sh

# The guest image is mostly downloads and emulated package scripts: it is
# built in the background while the compilers work; "guest" is the wait.
guest_log="$(mktemp)"
tests/qemu/build-image.sh > "$guest_log" 2>&1 &
guest_pid=$!
guest_image() {
    local status=0
    wait "$guest_pid" || status=$?
    cat "$guest_log"
    return "$status"
}

phase x86_64 cargo test --release --locked
phase aarch64 tests/qemu/cross-test.sh
phase guest guest_image
# Only AARCH64_OUT is taken from env.sh: its RUSTC must not reach the x86 phase.
phase system tests/qemu/systest.py --bin "$(source tests/qemu/env.sh && echo "$AARCH64_OUT")"
phase yocto yocto-layer/check.sh
