# nooelint: oelint.var.mandatoryvar.HOMEPAGE,oelint.var.suggestedvar.BUGTRACKER,oelint.var.suggestedvar.CVE_PRODUCT,oelint.var.bbclassextend
# The product has no public homepage or bug tracker yet; model data has no CVE
# product of its own, and a data-only allarch recipe has nothing to BBCLASSEXTEND.
SUMMARY = "Model bundles for Pocket Studio: text-to-image bundle and upscaler"
DESCRIPTION = "Installs the text-to-image bundle that pocket-studiod loads by default \
               (${datadir}/pocket-studio/models/default), checked against its manifest at \
               build time, and pulls in the Real-ESRGAN upscaler bundle (pocket-studio-upscaler). \
               Without POCKET_STUDIO_DIFFUSION_BUNDLE_URI the bundle is the tiny, randomly \
               initialised test bundle committed in the product repository (models/tiny-sd)."
SECTION = "multimedia"
LICENSE = "${POCKET_STUDIO_DIFFUSION_BUNDLE_LICENSE}"
LIC_FILES_CHKSUM = "${POCKET_STUDIO_DIFFUSION_BUNDLE_LIC_FILES_CHKSUM}"

DEPENDS = "python3-native"

require pocket-studio-source.inc

# A real text-to-image bundle (diffusers ONNX layout + pocket-studio.toml, see the
# layer README), as an archive URL or a local directory (file:///abs/path). It may
# hold the bundle at its top or in one folder below. For a remote archive also set
# POCKET_STUDIO_DIFFUSION_BUNDLE_SHA256, and set the bundle's own licence below
# (its LIC_FILES_CHKSUM may name a file inside it, relative to ${S}).
POCKET_STUDIO_DIFFUSION_BUNDLE_URI ?= ""
POCKET_STUDIO_DIFFUSION_BUNDLE_SHA256 ?= ""
# tiny-sd: random weights and OpenAI CLIP's vocabulary, both MIT, as the licence
# line of its manifest says (the line checked here).
POCKET_STUDIO_TINY_SD_LIC_FILES_CHKSUM = "file://models/tiny-sd/pocket-studio.toml;beginline=3;endline=3;md5=3ff6403d26f671e58d7ade333697a55b"
POCKET_STUDIO_DIFFUSION_BUNDLE_LICENSE ?= "MIT"
POCKET_STUDIO_DIFFUSION_BUNDLE_LIC_FILES_CHKSUM ?= "${POCKET_STUDIO_TINY_SD_LIC_FILES_CHKSUM}"

PV = "0.1.0+git"
SRC_URI = "${POCKET_STUDIO_SRC_URI} \
           file://stage-bundle.py \
           ${@pocket_studio_bundle_uri(d)}"
SRC_URI[diffusion-bundle.sha256sum] = "${POCKET_STUDIO_DIFFUSION_BUNDLE_SHA256}"
SRCREV = "${POCKET_STUDIO_SRCREV}"

S = "${UNPACKDIR}/pocket-studio"

inherit allarch

def pocket_studio_bundle_uri(d):
    uri = (d.getVar('POCKET_STUDIO_DIFFUSION_BUNDLE_URI') or '').strip()
    return '%s;name=diffusion-bundle;subdir=diffusion-bundle' % uri if uri else ''

def pocket_studio_bundle_root(d):
    if (d.getVar('POCKET_STUDIO_DIFFUSION_BUNDLE_URI') or '').strip():
        return d.expand('${UNPACKDIR}/diffusion-bundle')
    return d.expand('${S}/models/tiny-sd')

B = "${WORKDIR}/build"

do_compile() {
    if [ -n "${POCKET_STUDIO_DIFFUSION_BUNDLE_URI}" ] && [ "${LIC_FILES_CHKSUM}" = "${POCKET_STUDIO_TINY_SD_LIC_FILES_CHKSUM}" ]; then
        bbfatal "POCKET_STUDIO_DIFFUSION_BUNDLE_URI is set: also set POCKET_STUDIO_DIFFUSION_BUNDLE_LICENSE and POCKET_STUDIO_DIFFUSION_BUNDLE_LIC_FILES_CHKSUM to that bundle's own licence"
    fi
    nativepython3 ${UNPACKDIR}/stage-bundle.py ${@pocket_studio_bundle_root(d)} ${B}/default --kind text-to-image
}

do_install() {
    install -d ${D}${datadir}/pocket-studio/models/default
    for f in $(find ${B}/default -type f -printf '%P\n' | sort); do
        install -D -m 0644 ${B}/default/$f ${D}${datadir}/pocket-studio/models/default/$f
    done
}

FILES:${PN} += "${datadir}/pocket-studio/models/default"
RDEPENDS:${PN} += "pocket-studio-upscaler"
