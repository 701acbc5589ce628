#!/usr/bin/env bash
# Cross-build Pocket Studio for aarch64 (library, both binaries, every test
# binary) and run the whole test suite under qemu-user as a Cortex-A72: the
# unit tests, the diffusers parity tests with the same tolerances, the seeded
# noise against the x86_64 recording, the 4K output and the D-Bus service
# tests. Prints "aarch64 tests: N passed, M failed" and exits non-zero on any
# failure. Needs what .ci/run installs (Debian rustc-web + arm64 libstd,
# aarch64 gcc, qemu-user-static).
#
# Usage: tests/qemu/cross-test.sh [extra cargo test args, e.g. a test name]
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/qemu/env.sh

# Tests start the CLI and the daemon as child processes: the kernel hands
# those aarch64 executables to qemu through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if ! grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    echo "cross-test: binfmt_misc has no enabled qemu-aarch64 handler" >&2
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
"${cargo_aarch64[@]}" test --profile "$AARCH64_PROFILE" --target "$AARCH64_TARGET" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "aarch64 tests: $passed passed, $failed failed ($((SECONDS - start)) s under qemu-user, cortex-a72)"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
fi
