#!/usr/bin/env bash
# Fetch the wallpaper packages with apt-get download (nothing installed system-wide) and
# prepare the bundled LIIF's training photographs (and the mate-backgrounds test set) with scripts/get_photos.py.
#   scripts/get_photos.sh [OUT]          (default OUT: /work/data/photos; SKIP_APT_UPDATE=1 skips apt-get update)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/work/data/photos}
PACKAGES="lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 plasma-workspace-wallpapers mate-backgrounds"
WORK=$(mktemp -d -t fastliif-debs-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# apt writes downloads as the _apt user when it can; a world-writable folder avoids its warning.
chmod 0777 "$WORK"
[ "${SKIP_APT_UPDATE:-0}" = 1 ] || apt-get update -qq
(cd "$WORK" && apt-get download $PACKAGES)
DEBS=()
for deb in "$WORK"/*.deb; do DEBS+=(--deb "$deb"); done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 scripts/get_photos.py "$OUT" "${DEBS[@]}"
# stage 2 of the bundled model (configs/liif-photos-finetune.yaml) trains on OUT/train_smooth
python3 scripts/make_smooth_photos.py "$OUT/train" "$OUT/train_smooth"
