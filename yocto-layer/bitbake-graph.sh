#!/usr/bin/env bash
# The layer under a real BitBake: `bitbake -g pocket-studio-image` against
# OpenEmbedded-Core with meta-pocket-studio and nothing else, offline, for each
# BitBake + oe-core tree packed in ../shared/yocto (yocto-6.0, the revisions
# kas/qemuarm64.yml pins, and master). -g parses every recipe and resolves
# every DEPENDS and RDEPENDS of the image without building anything.
#
#   yocto-layer/bitbake-graph.sh [TREE...]     TREE: yocto-6.0, master (default: both)
#
# Fails on a non-zero exit, on any ERROR line, on a WARNING line that names
# the layer or one of its recipes, and when the image's task graph lacks the
# service, the models, the upscaler or the UI's font.
#
# BitBake refuses to run as root: as root this runs it as the unprivileged
# user $POCKET_STUDIO_BITBAKE_USER (default "bitbake"; ./setup.sh --tests
# creates it), otherwise as the caller. The work (unpacked trees, a snapshot
# of the product, build directories with their parse caches) lives in
# $POCKET_STUDIO_BITBAKE_DIR (default: that user's ~/bitbake-check),
# outside the repository, so a checkout under root's private home works too.
# The snapshot is a clone of the committed HEAD (what the recipes fetch) with
# the working tree's yocto-layer/ copied over it, so uncommitted layer edits
# are what gets parsed.
#
# Host needs (./setup.sh --tests): python3 >= 3.10, the en_US.UTF-8 locale,
# oe-core's host tools (gawk, chrpath, diffstat, ... : HOSTTOOLS in
# meta/conf/bitbake.conf).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
shared="${POCKET_STUDIO_SHARED:-$repo/../shared}/yocto"
image=pocket-studio-image
# What the image must pull in, as task-depends.dot edges "FROM -> TO": the
# service and the models (IMAGE_INSTALL: the rootfs needs their packages), the
# UI's font (RDEPENDS of the service) and the upscaler (RDEPENDS of the models;
# a package's do_package_write_* waits for the do_packagedata of each package
# it RDEPENDS on).
required_edges=(
    "$image.do_rootfs pocket-studio.do_package_write_"
    "$image.do_rootfs pocket-studio-models.do_package_write_"
    "pocket-studio.do_package_write_ liberation-fonts.do_packagedata"
    "pocket-studio-models.do_package_write_ pocket-studio-upscaler.do_packagedata"
)

trees=("$@")
[ ${#trees[@]} -gt 0 ] || trees=(yocto-6.0 master)
for tree in "${trees[@]}"; do
    if [ ! -f "$shared/bitbake-oecore-$tree.tar.gz" ]; then
        echo "bitbake: no $shared/bitbake-oecore-$tree.tar.gz (trees: yocto-6.0, master)" >&2
        exit 2
    fi
done

if [ "$(id -u)" -eq 0 ]; then
    user="${POCKET_STUDIO_BITBAKE_USER:-bitbake}"
    if ! home="$(getent passwd "$user" | cut -d: -f6)" || [ -z "$home" ]; then
        echo "bitbake: no user '$user' to run BitBake as (it refuses root): ./setup.sh --tests creates it" >&2
        exit 2
    fi
    as_user() { runuser -u "$user" -- "$@"; }
else
    user="$(id -un)"
    home="$HOME"
    as_user() { "$@"; }
fi
if ! locale -a 2>/dev/null | grep -qix 'en_US.utf-\?8'; then
    echo "bitbake: the en_US.UTF-8 locale is missing (BitBake needs it): ./setup.sh --tests" >&2
    exit 2
fi
# (No "pocket-studio" in this path: a WARNING naming it would count as the layer's.)
work="${POCKET_STUDIO_BITBAKE_DIR:-$home/bitbake-check}"
as_user mkdir -p "$work"

# The product snapshot the layer is parsed from (see the header).
src="$work/src"
rm -rf "$src"
git clone --quiet --depth 1 --no-hardlinks "file://$repo" "$src"
rm -rf "$src/yocto-layer"
cp -a "$here" "$src/yocto-layer"
rm -rf "$src/yocto-layer/meta-pocket-studio/scripts/__pycache__"
[ "$(id -u)" -ne 0 ] || chown -R "$user:" "$src"

# Replace a file with stdin only if that changes it: BitBake's parse cache is
# keyed on the configuration files' modification times too.
update_file() {
    as_user tee "$1.new" > /dev/null
    if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else as_user mv "$1.new" "$1"; fi
}

status=0
for tree in "${trees[@]}"; do
    start=$SECONDS
    tarball="$shared/bitbake-oecore-$tree.tar.gz"
    top="$work/$tree"
    # Unpack once per tarball; the build directory (and its parse cache) stays.
    stamp="$(stat -c '%s %Y' "$tarball")"
    if [ "$(cat "$top/.unpacked" 2>/dev/null)" != "$stamp" ]; then
        as_user rm -rf "$top/bitbake" "$top/openembedded-core"
        as_user mkdir -p "$top"
        # Read by this shell: the user may have no access to where ../shared is.
        as_user tar -xzf - -C "$top" < "$tarball"
        echo "$stamp" | as_user tee "$top/.unpacked" > /dev/null
    fi
    build="$top/build"
    as_user mkdir -p "$build/conf"
    update_file "$build/conf/local.conf" <<EOF
# Written by yocto-layer/bitbake-graph.sh: offline, the kas project's machine and distro.
MACHINE ??= "qemuarm64"
DISTRO ??= "nodistro"
CONF_VERSION = "2"
INIT_MANAGER = "systemd"
BB_NO_NETWORK = "1"
CONNECTIVITY_CHECK_URIS = ""
EOF
    update_file "$build/conf/bblayers.conf" <<EOF
# Written by yocto-layer/bitbake-graph.sh: oe-core and meta-pocket-studio only.
BBLAYERS_CONF_VERSION = "2"
BBPATH = "\${TOPDIR}"
BBFILES ?= ""
BBLAYERS = "$top/openembedded-core/meta $src/yocto-layer/meta-pocket-studio"
EOF
    log="$build/bitbake-g.log"
    echo "bitbake ($tree): bitbake -g $image as $user"
    rc=0
    as_user env -i HOME="$home" USER="$user" PATH=/usr/local/bin:/usr/bin:/bin LANG=en_US.UTF-8 \
        bash -c 'cd "$1" && . openembedded-core/oe-init-build-env "$2" > /dev/null && bitbake -g "$3"' \
        _ "$top" "$build" "$image" > "$log" 2>&1 || rc=$?

    problems=()
    [ "$rc" -eq 0 ] || problems+=("exit $rc")
    # Not anchored: without a terminal, BitBake prints a message on the same
    # line as the progress text before it ("Parsing recipes...WARNING: ...").
    errors="$(grep -c 'ERROR:' "$log" || true)"
    [ "$errors" -eq 0 ] || problems+=("$errors ERROR lines")
    ours="$(grep 'WARNING:' "$log" | grep -ci 'pocket-studio' || true)"
    [ "$ours" -eq 0 ] || problems+=("$ours WARNING lines naming the layer")
    buildlist="$build/pn-buildlist" graph="$build/task-depends.dot"
    recipes=0 edges=()
    if [ -f "$buildlist" ] && [ -f "$graph" ]; then
        recipes="$(wc -l < "$buildlist")"
        for pair in "${required_edges[@]}"; do
            read -r from to <<< "$pair"
            line="$(grep -F "\"$from" "$graph" | grep -m1 -F -- "-> \"$to" || true)"
            if [ -n "$line" ]; then edges+=("$line"); else problems+=("no edge $from* -> $to* in task-depends.dot"); fi
        done
    else
        problems+=("no pn-buildlist or task-depends.dot written")
    fi
    grep -E 'ERROR:|WARNING:' "$log" | sed "s/^/bitbake ($tree): /" || true
    if [ ${#problems[@]} -eq 0 ]; then
        for edge in "${edges[@]}"; do echo "bitbake ($tree):   $edge"; done
        echo "bitbake ($tree): PASS: exit 0, no ERROR, no WARNING naming the layer, $recipes recipes in pn-buildlist ($((SECONDS - start)) s)"
    else
        tail -n 30 "$log" | sed "s/^/bitbake ($tree) | /"
        printf -v why '%s; ' "${problems[@]}"
        echo "bitbake ($tree): FAIL: ${why%; } ($((SECONDS - start)) s; log: $log)"
        status=1
    fi
done
exit "$status"
