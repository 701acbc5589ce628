# Sourced by the aarch64 scripts: cross-compile with Debian's rustc (it ships
# the aarch64 standard library as libstd-rust-web-dev:arm64; rustup's
# toolchain has none on a fresh machine) and run aarch64 programs under
# qemu-user as a Cortex-A76, the big core of the boards we target (RK3588,
# Raspberry Pi 5): ARMv8.2 with half-precision arithmetic (FEAT_FP16) and
# dot products, which the kernel's HWCAP reports under qemu-user too
# (/proc/cpuinfo stays the host's).
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_AARCH64:-$PWD/target/cross}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# mold links the large test binary in a fraction of GNU ld's time; the cross
# gcc finds it as the `ld` in mold's libexec folder (./setup.sh --tests).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-B/usr/libexec/mold"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -cpu cortex-a76"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export PKG_CONFIG_aarch64_unknown_linux_gnu=aarch64-linux-gnu-pkg-config
export PKG_CONFIG_ALLOW_CROSS=1
# bindgen (the v4l crate's V4L2 bindings) parses the arm64 kernel headers.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu"
# Child processes (the CLI and daemon spawned by tests) start through
# binfmt_misc; QEMU_CPU gives them the same CPU model.
export QEMU_CPU=cortex-a76
AARCH64_TARGET=aarch64-unknown-linux-gnu
AARCH64_PROFILE=aarch64
AARCH64_OUT="$CARGO_TARGET_DIR/$AARCH64_TARGET/$AARCH64_PROFILE"
