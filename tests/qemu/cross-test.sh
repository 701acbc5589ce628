#!/usr/bin/env bash
# Cross-build Pocket Studio for aarch64 (library, both binaries, the unit and
# integration test binaries) and run under qemu-user, as a Cortex-A76, the
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
    # Pure logic: the same Rust decides the same way on any CPU. Config and
    # manifest parsing, touch gestures and key codes, the UI's screen flow
    # (its drawing is checked by the golden tests, which stay), CLI text and
    # exit codes, error naming for missing, corrupt or changed files (the
    # hashing itself runs in every bundle open that stays), cancellation
    # bookkeeping, the gallery's index, quota, atomic saves under SIGKILL and
    # a full disk (file-system behaviour, not the CPU's), provenance switches.
    config::tests::
    ui::gesture::tests::
    ui::input::tests::us_key_codes_type_text
    camera::tests::the_smallest_size_that_covers_the_target_is_picked
    camera::convert::tests::the_standard_tables_are_one_well_formed_segment
    camera::init_image_reads_stop_at_the_size_cap
    provenance::watermark::tests::payloads_parse_only_bits
    pipeline::upscale::tests::tiles_cover_the_axis_with_equal_size_and_overlap
    pipeline::truncation_names_the_dropped_text
    pipeline::a_corrupted_byte_in_any_model_file_names_that_file
    pipeline::a_missing_file_is_named
    pipeline::an_unverified_optimum_folder_loads_and_a_broken_onnx_is_named
    pipeline::bad_input_exits_non_zero_with_one_line_and_writes_nothing
    pipeline::a_corrupt_model_makes_the_cli_fail_naming_the_file
    pipeline::tokenize_prints_77_ids_as_json
    pipeline::cancellation_stops_between_steps
    pipeline::a_model_file_changed_after_opening_is_refused_when_read_again
    output::cancelling_stops_between_tiles
    output::a_corrupt_upscaler_is_named
    output::gallery_lists_newest_first_deletes_and_enforces_its_quota
    output::a_corrupt_or_missing_index_is_rebuilt_from_the_pngs
    output::sigkill_while_saving_never_leaves_a_partial_png
    output::a_full_disk_gives_no_space_and_leaves_nothing_behind
    ui::the_system_tests_camera_taps_are_current
    ui::glyphs_used_by_the_ui_exist_in_the_font
    ui::tapping_keys_types_and_generate_runs_a_job_the_ui_follows_to_the_gallery
    ui::swiping_scrolls_the_gallery_long_press_and_delete_remove_the_file
    ui::holding_backspace_repeats
    ui::jobs_from_other_clients_show_and_cancel_returns_to_compose
    ui::the_camera_screen_says_why_there_is_no_camera_and_queues_nothing
    ui::no_storage_shows_an_error_that_leads_to_the_gallery
    provenance::switches_and_bad_keys
)

targets=(--profile "$AARCH64_PROFILE" --target "$AARCH64_TARGET" --lib --test it)
echo "cross-test: building for $AARCH64_TARGET ($($RUSTC --version))"
start=$SECONDS
# The test binaries, and both binaries (the tests start them; systest.py installs them).
cargo --locked --quiet test --no-run "${targets[@]}"
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
# Each test's time is printed (libtest's --report-time; cargo's --quiet would
# hide it), to watch CI's budget.
# RUSTC_BOOTSTRAP unlocks that flag for the test binaries only, through the
# runner: given to cargo it would rebuild every crate (proc-macro2 tracks it).
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="env RUSTC_BOOTSTRAP=1 $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER" \
    cargo --locked test "${targets[@]}" --no-fail-fast -- \
    -Z unstable-options --report-time "${skips[@]}" --skip f16_ "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The f16 tests (names with `f16_`), run on their own with tract's fp16
# kernels on the A76's half-precision arithmetic: tract looks for `asimdhp`
# in /proc/cpuinfo, which under qemu-user is the host's, so TRACT_CPU_ISA
# tells it (the CPU model has FEAT_FP16).
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="env RUSTC_BOOTSTRAP=1 TRACT_CPU_ISA=+fp16 $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER" \
    cargo --locked test "${targets[@]}" -- \
    -Z unstable-options --report-time --nocapture f16_ 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
set -e
# Summed over libtest's summary lines only (test names may say "passed").
passed=$(grep '^test result:' "$log" | grep -o '[0-9]* passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep '^test result:' "$log" | grep -o '[0-9]* failed' | awk '{s += $1} END {print s + 0}')
echo "aarch64 tests: $passed passed, $failed failed ($((SECONDS - start)) s under qemu-user, $QEMU_CPU)"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
fi
