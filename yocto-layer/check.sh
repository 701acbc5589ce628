#!/usr/bin/env bash
# Checks for the Yocto layer (meta-pocket-studio):
#   1. pocket-studio-crates.inc is what Cargo.lock says (scripts/gen-crates-inc.py --check)
#   2. onnx-lite writes the same upscaler model.onnx as the onnx package
#      (scripts/check-onnx-lite.py; skipped when onnx or the wheel is not installed)
#   3. oelint-adv over every .bb/.bbappend/.inc/.conf, for wrynose and blacksail:
#      any finding of any severity fails.
#   4. a real BitBake: `bitbake -g pocket-studio-image` with oe-core yocto-6.0
#      and master, offline (bitbake-graph.sh; --no-bitbake skips it).
# Needs: python3 >= 3.11 with yocto-layer/requirements-lint.txt (./setup.sh --tests puts it in .venv);
# for 4, ../shared/yocto beside the repository and what ./setup.sh --tests installs.
set -uo pipefail

bitbake=true
case "${1:-}" in
    "") ;;
    --no-bitbake) bitbake=false ;;
    *) echo "usage: yocto-layer/check.sh [--no-bitbake]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
layer="$here/meta-pocket-studio"
releases=(wrynose blacksail)
export PYTHONDONTWRITEBYTECODE=1
# The packages ./setup.sh --tests installs live in the repository's .venv.
if [ -x "$here/../.venv/bin/python3" ]; then
    export PATH="$here/../.venv/bin:$PATH"
fi
status=0

python3 "$layer/scripts/gen-crates-inc.py" --check || status=1
python3 "$layer/scripts/check-onnx-lite.py" --skip-missing || status=1

if ! python3 -c 'import oelint_adv' 2>/dev/null; then
    echo "oelint-adv is not installed: ./setup.sh --tests" >&2
    exit 2
fi

mapfile -t files < <(find "$layer" -type f \( -name '*.bb' -o -name '*.bbappend' -o -name '*.inc' -o -name '*.conf' \) | sort)

# The one finding excused here, not inline: the crates .inc must stay byte for byte
# what `bitbake -c update_crates` writes, and that output opens with `SRC_URI += " \`,
# which oelint.vars.inconspaces (and the info oelint.vars.notneededspace) reject. An
# inline `# nooelint:` comment would be dropped by the next update_crates run.
crates_inc="$layer/recipes-multimedia/pocket-studio/pocket-studio-crates.inc"
excused() {  # path line id
    [ "$1" = "$crates_inc" ] || return 1
    case "$3" in oelint.vars.inconspaces|oelint.vars.notneededspace) ;; *) return 1 ;; esac
    [ "$(sed -n "${2}p" "$1")" = 'SRC_URI += " \' ]
}

findings=0
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for release in "${releases[@]}"; do
    # oelint.vars.homepageping fetches each HOMEPAGE over the network; CI has none,
    # so it is left out rather than run (an inline suppression would still fetch).
    python3 -m oelint_adv --quiet --mode all --release "$release" --exit-zero \
        --suppress oelint.vars.homepageping \
        --messageformat '{path}:{line}:{severity}:{id}:{msg}' \
        --output "$out" "${files[@]}" || { echo "oelint-adv failed to run" >&2; exit 2; }
    while IFS=: read -r path line severity id msg; do
        [ -n "$path" ] || continue
        excused "$path" "$line" "$id" && continue
        echo "$release: ${path#"$here"/}:$line: $severity: $id: $msg"
        findings=$((findings + 1))
    done < "$out"
done

echo "oelint-adv: ${#files[@]} files, $findings findings (releases: ${releases[*]})"
[ "$findings" -eq 0 ] || status=1

if $bitbake; then
    "$here/bitbake-graph.sh" || status=1
fi
exit "$status"
