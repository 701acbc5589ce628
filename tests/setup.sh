#!/usr/bin/env bash
# Install what the tests need on a fresh Debian 12 machine (run as root, as
# CI is); only what is missing is installed, so a second run is quick.
#   x86_64 tests: dbus-daemon, systemd-analyze, setpriv, the service's
#                 user/group, the Real-ESRGAN upscaler (numpy + onnx convert it)
#   aarch64:      Debian's rustc-web with the arm64 standard library (rustup
#                 has none on a fresh machine), the aarch64 linker, qemu-user
#                 and qemu-system, mmdebstrap + arch-test for the guest rootfs,
#                 kmod (depmod) and e2fsprogs (mke2fs -d, debugfs)
#   touch UI:     libinput + libudev headers (both architectures), pkgconf
#                 (aarch64-linux-gnu-pkg-config), DejaVu Sans for text
#   camera:       libclang (bindgen generates the v4l crate's V4L2 bindings)
#                 and libturbojpeg (MJPEG frames, JPEG init images), both
#                 architectures for the latter
#   system test:  Pillow (screendumps vs the UI goldens)
#   provenance:   invisible-watermark (without its torch/onnxruntime
#                 dependencies), OpenCV, PyWavelets, c2pa-python and
#                 scikit-image's photos (tests/provenance/peer.py)
#   Yocto layer:  oelint-adv
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed' || need_packages+=("$1"); }
for pkg in dbus systemd util-linux \
    rustc-web gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
    qemu-user-static binfmt-support qemu-system-arm mmdebstrap arch-test kmod e2fsprogs cpio \
    pkgconf libinput-dev libudev-dev fonts-dejavu-core libclang-dev libturbojpeg0-dev; do
    want "$pkg"
done
# (A new architecture always brings missing :arm64 packages, hence an update.)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
fi
want libstd-rust-web-dev:arm64
want libc6:arm64
want libinput-dev:arm64
want libudev-dev:arm64
want libturbojpeg0-dev:arm64
if [ ${#need_packages[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi
systemd-sysusers "$PWD/systemd/pocket-studio.sysusers"

# aarch64 programs (test children, the guest rootfs's package scripts) run
# through binfmt_misc and qemu-user.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true

python3 -m pip install --quiet --disable-pip-version-check -r models/export/requirements-fetch.txt -r yocto-layer/requirements-lint.txt -r tests/qemu/requirements.txt -r tests/provenance/requirements.txt
python3 -m pip install --quiet --disable-pip-version-check --no-deps invisible-watermark==0.2.0
python3 models/export/fetch_upscalers.py --models realesr-animevideov3-x4
