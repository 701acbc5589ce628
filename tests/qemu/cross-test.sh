#!/usr/bin/env bash
# Cross-build Pocket Studio for aarch64 (library, both binaries, the unit and
# integration test binaries) and run under qemu-user, as a Cortex-A72, the
# tests whose outcome depends on the CPU: the engine's operators, the
# diffusers parity tests with the same tolerances, the seeded noise against
# the x86_64 recording, the tokenizer, the upscaler's numerics, the UI
# goldens, the camera conversions, image decoding and the watermark and
# manifest numerics. Tests of pure logic (argument tables, CLI text, gallery
# bookkeeping, error naming, process and file-system handling) run on x86_64
# only: the same Rust gives the same answer on both (list and reasons in
# CPU_INDEPENDENT below). The service (tests/it/service.rs: a hundred
# generations) is checked on arm64 by the booted system test (systest.py).
# Prints "aarch64 tests: N passed, M failed" and exits non-zero on any failure.
# Needs what `./setup.sh --tests` installs (Debian rustc-web + arm64 libstd,
# aarch64 gcc, mold, qemu-user-static, binfmt_misc).
#
# Usage: tests/qemu/cross-test.sh [--build-only] [test binary args, e.g. a filter]
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/qemu/env.sh

build_only=false
if [ "${1:-}" = --build-only ]; then
    build_only=true
    shift
fi

# Left out under qemu-user, each for the reason given; all run on x86_64.
CPU_INDEPENDENT=(
    # Three full 4K generations (two Real-ESRGAN passes each) take most of an
    # hour under emulation (qemu emulates floating point in software). Their
    # sizing logic is the same Rust on both architectures; the upscaler's
    # numerics on aarch64 are checked by
    # real_esrgan_matches_onnxruntime_has_no_seams_and_beats_bicubic_sharpness.
    output::generate_writes_exact_4k_pngs_whose_text_decodes_to_the_request
    # The D-Bus service: the system test covers it on arm64, under systemd.
    service::
)

cargo_aarch64=(cargo --locked --quiet)
targets=(--profile "$AARCH64_PROFILE" --target "$AARCH64_TARGET" --lib --test it)
echo "cross-test: building for $AARCH64_TARGET ($($RUSTC --version))"
start=$SECONDS
# The test binaries, and both binaries (the tests start them; systest.py installs them).
"${cargo_aarch64[@]}" test --no-run "${targets[@]}"
echo "cross-test: build took $((SECONDS - start)) s; pocket-studiod is $(du -h "$AARCH64_OUT/pocket-studiod" | cut -f1)"
if $build_only; then
    exit 0
fi

# Tests start the CLI and the daemon as child processes: the kernel hands
# those aarch64 executables to qemu through binfmt_misc (./setup.sh --tests).
if ! grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    echo "cross-test: binfmt_misc has no enabled qemu-aarch64 handler (run ./setup.sh --tests)" >&2
    exit 1
fi

skips=()
for name in "${CPU_INDEPENDENT[@]}"; do
    skips+=(--skip "$name")
done
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$SECONDS
set +e
# Each test's time is printed (libtest's --report-time), to watch CI's budget.
# RUSTC_BOOTSTRAP unlocks that flag for the test binaries only, through the
# runner: given to cargo it would rebuild every crate (proc-macro2 tracks it).
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="env RUSTC_BOOTSTRAP=1 $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER" \
    "${cargo_aarch64[@]}" test "${targets[@]}" --no-fail-fast -- \
    -Z unstable-options --report-time "${skips[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "aarch64 tests: $passed passed, $failed failed ($((SECONDS - start)) s under qemu-user, cortex-a72)"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
fi
