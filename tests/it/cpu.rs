//! What runs on the boards' CPUs: `pocket-studio cpu` with each committed
//! /proc/cpuinfo sample (`tests/fixtures/cpuinfo`) mounted over the real one
//! in a private mount namespace, so tract chooses its arm64 kernels from the
//! board's `CPU part` and `Features` lines exactly as it would there. Needs
//! root (`unshare --mount`), as CI and the system tests run. On x86_64 tract
//! does not read those lines: the tests here run on aarch64 (qemu-user as a
//! Cortex-A76, tests/qemu/cross-test.sh, or a board).

#![cfg(target_arch = "aarch64")]

use std::path::Path;
use std::process::Command;

/// `pocket-studio cpu`'s report with `board`'s /proc/cpuinfo in place.
fn report_on(board: &str) -> String {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cpuinfo")
        .join(format!("{board}.txt"));
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" /proc/cpuinfo && exec "$2" cpu"#)
        .arg("sh")
        .arg(&sample)
        .arg(env!("CARGO_BIN_EXE_pocket-studio"))
        .output()
        .expect("unshare runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{board}: `unshare --mount` + `pocket-studio cpu` failed (needs root): {stderr}"
    );
    String::from_utf8(output.stdout).expect("utf-8 report")
}

/// The kernel the report names for one product line.
fn kernel<'a>(report: &'a str, precision: &str, product: &str) -> &'a str {
    let prefix = format!("tract {precision} {product}: ");
    report
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{report}"))
}

/// An RK3588 (4x A55 + 4x A76) and a Pi 5 (4x A76): tract's process-wide
/// choice is its `Generic` tuning, whose `_gen` kernels are the ones written
/// for out-of-order cores such as the A76 (tract has no A76-specific ones;
/// on the RK3588 the string-largest part, 0xd0b, decides), and `asimdhp`
/// gives its fp16 kernels. Our NEON kernels run on both.
#[test]
fn a76_boards_get_the_out_of_order_kernels_and_f16() {
    for board in ["rk3588", "raspberry-pi-5"] {
        let report = report_on(board);
        assert!(report.contains("0xd0b Cortex-A76"), "{board}:\n{report}");
        assert!(
            report.contains("tract kind: Generic\n"),
            "{board}:\n{report}"
        );
        assert!(
            report.contains("engine kernels: NEON\n"),
            "{board}:\n{report}"
        );
        assert!(
            report.contains("half-precision arithmetic: yes\n"),
            "{board}:\n{report}"
        );
        for precision in ["f32", "f16"] {
            for product in [
                "3x3 convolution 320x2880 by 4096",
                "projection 320x320 by 4096",
            ] {
                let name = kernel(&report, precision, product);
                assert!(
                    name.starts_with("arm64") && name.ends_with("_gen"),
                    "{board} {precision} {product}: {name}"
                );
            }
        }
        assert!(
            kernel(&report, "f16", "3x3 convolution 320x2880 by 4096").contains("fp16_mmm_f16"),
            "{board}:\n{report}"
        );
    }
}

/// A board of Cortex-A55 cores only (RK3566): tract's A55 tuning and its
/// kernels scheduled for that in-order core.
#[test]
fn an_a55_board_gets_the_a55_kernels() {
    let report = report_on("rk3566");
    assert!(report.contains("4x 0xd05 Cortex-A55"), "{report}");
    assert!(report.contains("tract kind: CortexA55\n"), "{report}");
    for precision in ["f32", "f16"] {
        let name = kernel(&report, precision, "3x3 convolution 320x2880 by 4096");
        assert!(name.ends_with("_a55"), "{precision}: {name}\n{report}");
    }
}
