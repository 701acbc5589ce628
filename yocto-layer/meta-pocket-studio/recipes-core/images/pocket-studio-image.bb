# nooelint: oelint.var.suggestedvar.BUGTRACKER,oelint.var.suggestedvar.CVE_PRODUCT,oelint.var.suggestedvar.SECTION
# An image is no package: it has no section, CVE product or tracker of its own (its
# packages do).
SUMMARY = "Pocket Studio image: systemd, D-Bus, the service, its CLI and models"
DESCRIPTION = "A minimal systemd image that boots into the Pocket Studio service \
               (org.pocketstudio.Studio1 on the system bus, started on first call or \
               at boot), with the pocket-studio CLI, the default text-to-image bundle and \
               the Real-ESRGAN upscaler. Built for MACHINE = qemuarm64 by kas/qemuarm64.yml."
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot dbus pocket-studio pocket-studio-models ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_LINGUAS = ""

inherit core-image features_check

# The service is a systemd Type=notify unit with sysusers/tmpfiles snippets;
# INIT_MANAGER = "systemd" (the default since 6.0) provides this.
REQUIRED_DISTRO_FEATURES = "systemd"

# Room for the gallery (/var/lib/pocket-studio/images; a 4K PNG is ~10-25 MB).
IMAGE_ROOTFS_EXTRA_SPACE = "524288"

# runqemu: the 512 px class models need far more than the machine's default.
QB_MEM = "-m 2048"
