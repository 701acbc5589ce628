#!/usr/bin/env bash
# Build the arm64 guest for the system test, without emulating a whole build:
#   vmlinuz           Debian's arm64 kernel (its virtio_pci, virtio_blk and
#                     ext4 are modules, so the initramfs loads them)
#   initramfs.cpio.gz busybox-static (arm64) + those modules; it mounts the
#                     disk labelled psroot and switch_roots into systemd
#   rootfs.tar        a minbase Debian bookworm arm64 tree from mmdebstrap
#                     (systemd, dbus, udev, libinput, libturbojpeg, v4l-utils, Liberation fonts), docs left
#                     out, with only the kernel modules the tests use
# The product (binaries, units, models) is added per run by systest.py, so
# this is rebuilt only when this script or the kernel package changes.
#
# Usage: tests/qemu/build-image.sh [OUT_DIR]   (default target/qemu/image)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$(realpath -m "${1:-target/qemu/image}")"

kernel_pkg="$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
kernel_pkg="${kernel_pkg%:arm64}"
[ -n "$kernel_pkg" ] || { echo "cannot resolve Debian's arm64 kernel package (dpkg --add-architecture arm64?)" >&2; exit 1; }
# Two keys: the kernel + initramfs are quick to remake, the rootfs is not,
# so it depends only on the part of this script between the ROOTFS markers.
key="$(sha256sum "$0" | cut -d' ' -f1) $kernel_pkg"
rootfs_key="$(sed -n '/^# ROOTFS BEGIN/,/^# ROOTFS END/p' "$0" | sha256sum | cut -d' ' -f1) $kernel_pkg"
if [ -f "$out/key" ] && [ "$(cat "$out/key")" = "$key" ]; then
    echo "guest image: reusing $out ($kernel_pkg)"
    exit 0
fi
mkdir -p "$out"
rm -f "$out/key"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "guest image: kernel $kernel_pkg and busybox"
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kernel_pkg:arm64" busybox-static:arm64 >/dev/null)
dpkg -x "$work"/linux-image-*.deb "$work/kernel"
dpkg -x "$work"/busybox-static_*.deb "$work/busybox"
kver="$(ls "$work/kernel/lib/modules")"
cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"
moddir="$work/kernel/lib/modules/$kver"
# The package leaves modules.dep to its postinst; the host's kmod writes it.
depmod -b "$work/kernel" "$kver"

# The closure of some modules under modules.dep, dependencies first.
module_closure() {
    python3 - "$moddir/modules.dep" "$@" <<'EOF'
import sys
deps = {}
for line in open(sys.argv[1]):
    path, _, rest = line.partition(":")
    deps[path.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_")] = (path, rest.split())
by_path = {p: n for n, (p, _) in deps.items()}
order, seen = [], set()
def visit(name):
    if name in seen:
        return
    seen.add(name)
    path, needs = deps[name]
    for need in needs:
        visit(by_path[need])
    order.append(path)
for name in sys.argv[2:]:
    if name.replace("-", "_") not in deps:
        sys.exit(f"module {name} not in this kernel")
    visit(name.replace("-", "_"))
print("\n".join(order))
EOF
}

echo "guest image: initramfs"
init="$work/initramfs"
mkdir -p "$init"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$work/busybox/bin/busybox" "$init/bin/busybox"
for applet in sh mount umount insmod sleep seq findfs switch_root mkdir echo cat; do
    ln -s busybox "$init/bin/$applet"
done
# ext4 asks for crc32c only as a soft dependency, which modules.dep omits.
module_closure virtio_pci virtio_blk crc32c_generic ext4 > "$work/boot-modules"
while read -r path; do
    cp "$moddir/$path" "$init/lib/modules/"
    echo "${path##*/}" >> "$init/lib/modules/order"
done < "$work/boot-modules"
cat > "$init/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /lib/modules/order); do insmod "/lib/modules/$module"; done
root=""
for _ in $(seq 100); do
    root="$(findfs LABEL=psroot 2>/dev/null)" && break
    sleep 0.1
done
# Exiting init panics the kernel; with panic=-1 and -no-reboot QEMU quits.
[ -n "$root" ] || { echo "initramfs: no disk labelled psroot"; exit 1; }
mount -t ext4 -o rw "$root" /newroot || exit 1
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
EOF
chmod +x "$init/init"
(cd "$init" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initramfs.cpio.gz"

# ROOTFS BEGIN
if [ -f "$out/rootfs.key" ] && [ "$(cat "$out/rootfs.key")" = "$rootfs_key" ]; then
    echo "guest image: reusing the rootfs"
else
echo "guest image: rootfs (mmdebstrap, arm64 minbase)"
rm -f "$out/rootfs.key"
rootfs_modules="$(module_closure virtio_pci virtio_blk crc32c_generic ext4 virtio_gpu virtio_input virtio_rng \
    evdev uinput vivid | tr '\n' ' ')"
mmdebstrap --quiet --arch=arm64 --variant=minbase \
    --include=systemd,systemd-sysv,dbus,udev,kmod,libinput10,libturbojpeg0,v4l-utils,fonts-liberation2 \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="mkdir -p \"\$1/lib/modules/$kver\" && cp $moddir/modules.* \"\$1/lib/modules/$kver/\" && cd $moddir && for m in $rootfs_modules; do mkdir -p \"\$1/lib/modules/$kver/\$(dirname \$m)\" && cp \$m \"\$1/lib/modules/$kver/\$m\"; done" \
    --customize-hook='echo pocket-studio-test > "$1/etc/hostname"' \
    --customize-hook='ln -sf /dev/null "$1/etc/systemd/system/serial-getty@ttyAMA0.service"' \
    --customize-hook='ln -sf /dev/null "$1/etc/systemd/system/getty@tty1.service"' \
    --customize-hook='printf "LABEL=psresults /mnt/results ext4 defaults,nofail 0 0\n" > "$1/etc/fstab"' \
    --customize-hook='mkdir -p "$1/mnt/results"' \
    --customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists"; mkdir -p "$1/var/cache/apt" "$1/var/lib/apt/lists"' \
    bookworm "$out/rootfs.tar"
echo "$rootfs_key" > "$out/rootfs.key"
fi
# ROOTFS END
echo "$key" > "$out/key"
echo "guest image: done in $SECONDS s ($(du -sh "$out" | cut -f1))"
