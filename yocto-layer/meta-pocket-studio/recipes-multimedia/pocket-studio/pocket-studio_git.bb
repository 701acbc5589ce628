# nooelint: oelint.var.mandatoryvar.HOMEPAGE,oelint.var.suggestedvar.BUGTRACKER,oelint.var.bbclassextend
# The product has no public homepage or bug tracker to name yet, and this recipe is
# target-only (a system service and its client), so there is nothing to BBCLASSEXTEND.
SUMMARY = "Pocket Studio on-device image generator: D-Bus service and CLI"
DESCRIPTION = "pocket-studiod serves org.pocketstudio.Studio1 on the system bus \
               (a systemd Type=notify service running as the pocketstudio user) and turns \
               prompts into 4K images with a Stable Diffusion class model and a Real-ESRGAN \
               upscaler on the CPU; pocket-studio is its command-line client."
SECTION = "multimedia"
CVE_PRODUCT = "pocket-studio"
# MIT OR Apache-2.0. oe-core after 6.0 reads LICENSE as an SPDX expression and
# warns on the old operators; 6.0 "wrynose" knows only those (there "OR" would
# be taken for a licence of that name), so the spelling follows the oe-core
# in use.
LICENSE = "${@'MIT OR Apache-2.0' if hasattr(oe.license, 'convert_legacy_license_to_spdx') else 'MIT | Apache-2.0'}"
LIC_FILES_CHKSUM = "file://LICENSE-MIT;md5=c40c6bc70a79ec36f0e7cc11651351c8 \
                    file://LICENSE-APACHE;md5=3b83ef96387f14655fc854ddc3c6bd57"

require pocket-studio-source.inc

# The touch UI links libinput (input-sys, found with pkg-config) and reads
# udev for the seat's devices; DRM/KMS needs no C library (the drm crate).
# The camera decodes MJPEG with libjpeg-turbo (turbojpeg-sys, pkg-config), and
# the v4l crate's V4L2 bindings are generated at build time by bindgen, which
# loads libclang (clang-native, part of openembedded-core since 5.2) and
# parses the target's kernel headers.
DEPENDS += "clang-native libinput libjpeg-turbo udev"

PV = "0.1.0+git"
SRC_URI = "${POCKET_STUDIO_SRC_URI}"
SRCREV = "${POCKET_STUDIO_SRCREV}"

S = "${UNPACKDIR}/pocket-studio"

inherit cargo cargo-update-recipe-crates systemd useradd features_check

# crate:// SRC_URI entries and checksums for every package in Cargo.lock, written by
# scripts/gen-crates-inc.py or `bitbake -c update_crates pocket-studio` (same output).
require pocket-studio-crates.inc

REQUIRED_DISTRO_FEATURES = "systemd"

# Cargo.toml's release profile keeps incremental builds for developers; a
# package build is a one-off, so switch them off (this overrides the profile).
export CARGO_INCREMENTAL = "0"

# bindgen: the native libclang, and the target's headers rather than the host's.
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET}"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/pocket-studio.service ${D}${systemd_system_unitdir}/pocket-studio.service

    install -d ${D}${datadir}/dbus-1/system.d ${D}${datadir}/dbus-1/system-services ${D}${datadir}/dbus-1/interfaces
    install -m 0644 ${S}/systemd/org.pocketstudio.Studio1.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${S}/systemd/org.pocketstudio.Studio1.service ${D}${datadir}/dbus-1/system-services/
    install -m 0644 ${S}/systemd/org.pocketstudio.Studio1.xml ${D}${datadir}/dbus-1/interfaces/

    install -d ${D}${nonarch_libdir}/sysusers.d ${D}${nonarch_libdir}/tmpfiles.d ${D}${nonarch_libdir}/modules-load.d
    install -m 0644 ${S}/systemd/pocket-studio.sysusers ${D}${nonarch_libdir}/sysusers.d/pocket-studio.conf
    install -m 0644 ${S}/systemd/pocket-studio.tmpfiles ${D}${nonarch_libdir}/tmpfiles.d/pocket-studio.conf
    install -m 0644 ${S}/systemd/pocket-studio.modules-load ${D}${nonarch_libdir}/modules-load.d/pocket-studio.conf

    # The licences, the product's and those of the third-party works an image
    # carries (third-party/README.md lists them), with the README and the
    # example configuration: everything a user of the device may need to read.
    install -d ${D}${docdir}/${BPN}/third-party
    install -m 0644 ${S}/systemd/config.example.toml ${S}/README.md ${S}/LICENSE-MIT ${S}/LICENSE-APACHE ${D}${docdir}/${BPN}/
    install -m 0644 ${S}/third-party/* ${D}${docdir}/${BPN}/third-party/
}

SYSTEMD_SERVICE:${PN} = "pocket-studio.service"

# The same account as systemd/pocket-studio.sysusers, created at rootfs time so
# that file ownership and the D-Bus policy resolve on a read-only image too.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system pocketstudio; --system video; --system render; --system input"
USERADD_PARAM:${PN} = "--system --gid pocketstudio --groups video,render,input \
                       --home-dir ${localstatedir}/lib/pocket-studio --no-create-home \
                       --shell ${base_sbindir}/nologin pocketstudio"

FILES:${PN} += "${datadir}/dbus-1/system.d/org.pocketstudio.Studio1.conf \
                ${datadir}/dbus-1/system-services/org.pocketstudio.Studio1.service \
                ${nonarch_libdir}/sysusers.d/pocket-studio.conf \
                ${nonarch_libdir}/tmpfiles.d/pocket-studio.conf \
                ${nonarch_libdir}/modules-load.d/pocket-studio.conf"
FILES:${PN}-dev += "${datadir}/dbus-1/interfaces/org.pocketstudio.Studio1.xml"
# The licences and notes in ${docdir}/${BPN} belong on every device, not in
# ${PN}-doc, which an image without the doc-pkgs feature leaves out.
FILES:${PN}-doc:remove = "${docdir}"
FILES:${PN} += "${docdir}/${BPN}"

# The UI's text font: /usr/share/fonts/ttf/LiberationSans-Regular.ttf from
# oe-core's liberation-fonts (2.1.5, the release the golden screenshots are
# drawn with), one of the paths [ui] font = "auto" searches.
RDEPENDS:${PN} += "dbus liberation-fonts libinput"
# videodev is loaded at boot (modules-load.d) so the unit's device policy
# admits cameras plugged in later.
RRECOMMENDS:${PN} += "pocket-studio-models kernel-module-videodev"
