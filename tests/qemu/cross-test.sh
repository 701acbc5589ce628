#!/usr/bin/env bash
# Cross-build Pocket Studio for aarch64 (library, both binaries, every test
# binary) and run under qemu-user, as a Cortex-A72, the tests whose outcome
# depends on the CPU: the unit tests, the diffusers parity tests with the same
# tolerances, the seeded noise against the x86_64 recording, the tokenizer,
# the CLI, and the upscaler and gallery tests (tests/pipeline.rs and
# tests/output.rs, all but the three-aspect 4K generation; see below), the UI
# goldens and the camera conversions (tests/ui.rs, tests/camera.rs). The
# service (tests/service.rs: a hundred generations) is checked on arm64 by the
# booted system test instead (systest.py). Prints
# "aarch64 tests: N passed, M failed" and exits non-zero on any failure.
# Needs what tests/setup.sh installs (Debian rustc-web + arm64 libstd,
# aarch64 gcc, qemu-user-static, binfmt_misc).
#
# Usage: tests/qemu/cross-test.sh [test binary args, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/qemu/env.sh

# Tests start the CLI and the daemon as child processes: the kernel hands
# those aarch64 executables to qemu through binfmt_misc (tests/setup.sh).
if ! grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    echo "cross-test: binfmt_misc has no enabled qemu-aarch64 handler (run tests/setup.sh)" >&2
    exit 1
fi

cargo_aarch64=(cargo --locked --quiet)
echo "cross-test: building for $AARCH64_TARGET ($($RUSTC --version))"
start=$SECONDS
"${cargo_aarch64[@]}" build --profile "$AARCH64_PROFILE" --target "$AARCH64_TARGET" --bins --tests
echo "cross-test: build took $((SECONDS - start)) s; pocket-studiod is $(du -h "$AARCH64_OUT/pocket-studiod" | cut -f1)"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$SECONDS
set +e
# Left out here: three full 4K generations (two Real-ESRGAN passes each) take
# most of an hour under emulation (qemu emulates floating point in software).
# Their sizing logic is the same Rust on both architectures; the upscaler's
# numerics on aarch64 are checked by
# real_esrgan_matches_onnxruntime_has_no_seams_and_beats_bicubic_sharpness.
"${cargo_aarch64[@]}" test --profile "$AARCH64_PROFILE" --target "$AARCH64_TARGET" --no-fail-fast \
    --lib --bins --test pipeline --test output --test ui --test camera --test provenance -- \
    --skip generate_writes_exact_4k_pngs_whose_text_decodes_to_the_request "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "aarch64 tests: $passed passed, $failed failed ($((SECONDS - start)) s under qemu-user, cortex-a72)"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
fi
