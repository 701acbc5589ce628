#!/usr/bin/env bash
# Every test, in the order CI runs them, with the time of each phase:
#   setup     install what is missing (./setup.sh --tests; root or sudo)
#   x86_64    cargo test --release: unit tests, and tests/it (parity, 4K
#             output, D-Bus service, UI goldens, camera, provenance)
#   aarch64   the CPU-dependent tests cross-built and run under qemu-user
#             (tests/qemu/cross-test.sh)
#   guest     arm64 kernel + initramfs + Debian rootfs (build-image.sh, in the
#             background from the start; reused when unchanged)
#   system    boot the guest, check the service under systemd (systest.py)
#   yocto     the layer's crates list, oelint-adv, and `bitbake -g` of the
#             image with oe-core yocto-6.0 and master (yocto-layer/check.sh)
#
# Usage: tests/run.sh [PHASE...]   e.g. `tests/run.sh x86_64` or
# `tests/run.sh aarch64 system`; no argument runs them all, as CI does.
# setup always runs first (quick when nothing is missing); system implies guest
# (and the aarch64 build, when aarch64 is not run).
# Exits non-zero at the first failing phase.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(x86_64 aarch64 guest system yocto)
selected=("$@")
if [ ${#selected[@]} -eq 0 ]; then
    selected=("${all[@]}")
fi
wanted() {
    local phase
    for phase in "${selected[@]}"; do
        [ "$phase" = "$1" ] && return 0
    done
    return 1
}
for phase in "${selected[@]}"; do
    if ! [[ " ${all[*]} " == *" $phase "* ]]; then
        echo "tests/run.sh: unknown phase '$phase' (phases: ${all[*]})" >&2
        exit 2
    fi
done
if wanted system && ! wanted guest; then
    selected+=(guest)
fi

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

phase setup ./setup.sh --tests
# Python scripts and the tests' peers use the packages setup put in .venv.
export PATH="$PWD/.venv/bin:$PATH"
# CI builds from nothing: incremental compilation would only add work.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

# The guest image is mostly downloads and emulated package scripts: it is
# built in the background while the compilers work; "guest" is the wait.
if wanted guest; then
    guest_log="$(mktemp)"
    tests/qemu/build-image.sh > "$guest_log" 2>&1 &
    guest_pid=$!
fi
guest_image() {
    local status=0
    wait "$guest_pid" || status=$?
    cat "$guest_log"
    return "$status"
}

# No doctests exist, and benches are run by hand (README, docs/benchmarks.md);
# the examples are built so that they keep compiling.
# Each test's time is printed (see tests/qemu/cross-test.sh for the runner).
x86_64_tests() {
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env RUSTC_BOOTSTRAP=1" \
        cargo test --release --locked --lib --bins --examples --test it -- -Z unstable-options --report-time
}
if wanted x86_64; then
    phase x86_64 x86_64_tests
fi
if wanted aarch64; then
    phase aarch64 tests/qemu/cross-test.sh
fi
if wanted guest; then
    phase guest guest_image
fi
if wanted system; then
    if ! wanted aarch64; then
        phase aarch64-build tests/qemu/cross-test.sh --build-only
    fi
    # Only AARCH64_OUT is taken from env.sh: its RUSTC must not reach the x86 phase.
    phase system tests/qemu/systest.py --bin "$(source tests/qemu/env.sh && echo "$AARCH64_OUT")"
fi
if wanted yocto; then
    phase yocto yocto-layer/check.sh
fi
