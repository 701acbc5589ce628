#!/usr/bin/env bash
# Install what Pocket Studio needs on a Debian 12 machine that has only the
# Rust toolchain; only what is missing is installed, so a second run is quick.
#
#   ./setup.sh           building and running (the README's first command):
#                        the -dev packages the crates link against (libudev
#                        and libinput for the touch UI, libclang for the v4l
#                        crate's bindgen, libturbojpeg for MJPEG frames and
#                        JPEG init images), pkgconf, python3-venv; a Python
#                        virtual environment in .venv (Debian's python3
#                        refuses `pip install` outside one, PEP 668) with numpy
#                        and onnx; the Real-ESRGAN upscaler, converted to
#                        models/.cache/upscalers (models/export/fetch_upscalers.py)
#   ./setup.sh --tests   also what every test needs (tests/run.sh runs this):
#     x86_64 tests:  dbus-daemon, systemd-analyze, setpriv, the service's
#                    user and group, Liberation Sans for the UI's text
#     aarch64:       Debian's rustc-web with the arm64 standard library
#                    (rustup has none on a fresh machine), the aarch64 linker
#                    and mold, qemu-user and qemu-system, mmdebstrap + arch-test
#                    for the guest rootfs, kmod (depmod), e2fsprogs (mke2fs -d,
#                    debugfs), the arm64 -dev packages, binfmt_misc
#     Yocto layer:   BitBake's host needs (oe-core's HOSTTOOLS a fresh Debian
#                    lacks, the en_US.UTF-8 locale) and the unprivileged user
#                    "bitbake" it runs as (it refuses root)
#     Python (.venv): Pillow (screendumps vs the UI goldens), invisible-watermark
#                    (without its torch/onnxruntime dependencies), OpenCV,
#                    PyWavelets, c2pa-python and scikit-image's photos
#                    (tests/provenance/peer.py), oelint-adv (yocto-layer/check.sh)
#
# Root installs directly; another user needs sudo for the Debian packages.
set -euo pipefail
cd "$(dirname "$0")"

tests=false
case "${1:-}" in
    "") ;;
    --tests) tests=true ;;
    *) echo "usage: ./setup.sh [--tests]" >&2; exit 2 ;;
esac

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "setup: '$*' needs root, and sudo is not installed" >&2
        exit 1
    fi
}

need_packages=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed' || need_packages+=("$1"); }
# Qualified with the build machine's architecture: once arm64 is added
# (--tests), an unqualified name would also match the arm64 -dev package.
native="$(dpkg --print-architecture)"
for pkg in pkgconf libudev-dev libinput-dev libclang-dev libturbojpeg0-dev python3-venv; do
    want "$pkg:$native"
done
if $tests; then
    for pkg in dbus systemd util-linux fonts-liberation2 \
        rustc-web gcc-aarch64-linux-gnu libc6-dev-arm64-cross mold \
        qemu-user-static binfmt-support qemu-system-arm mmdebstrap arch-test kmod e2fsprogs cpio \
        gawk chrpath diffstat locales file wget patch bzip2 xz-utils zstd rpcsvc-proto; do
        want "$pkg"
    done
    # (A new architecture always brings missing :arm64 packages, hence an update.)
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        as_root dpkg --add-architecture arm64
    fi
    for pkg in libstd-rust-web-dev libc6 libinput-dev libudev-dev libturbojpeg0-dev; do
        want "$pkg:arm64"
    done
fi
if [ ${#need_packages[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_packages[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

# Python packages live in .venv; the scripts and tests find them there
# (tests/run.sh puts .venv/bin first on PATH).
if [ ! -x .venv/bin/python3 ]; then
    echo "setup: python3 -m venv .venv ($(command -v python3))"
    python3 -m venv .venv
fi
pip=(.venv/bin/python3 -m pip install --quiet --disable-pip-version-check)
requirements=(-r models/export/requirements-fetch.txt)
if $tests; then
    requirements+=(-r yocto-layer/requirements-lint.txt -r tests/qemu/requirements.txt -r tests/provenance/requirements.txt)
fi
"${pip[@]}" "${requirements[@]}"
if $tests; then
    "${pip[@]}" --no-deps invisible-watermark==0.2.0
fi
.venv/bin/python3 models/export/fetch_upscalers.py --models realesr-animevideov3-x4

if $tests; then
    as_root systemd-sysusers "$PWD/systemd/pocket-studio.sysusers"
    # aarch64 programs (test children, the guest rootfs's package scripts) run
    # through binfmt_misc and qemu-user.
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    as_root update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    # yocto-layer/bitbake-graph.sh: BitBake stops without this locale, and
    # runs as this user when started by root.
    if ! locale -a | grep -qix 'en_US.utf-\?8'; then
        as_root localedef -i en_US -f UTF-8 en_US.UTF-8
    fi
    if ! getent passwd bitbake > /dev/null; then
        as_root useradd --system --create-home --home-dir /home/bitbake --shell /bin/bash bitbake
    fi
fi
echo "setup: ready"
