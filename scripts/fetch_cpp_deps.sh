#!/usr/bin/env bash
# Fetch the C++ runtime's header-only / header dependencies into third_party/ (git-ignored).
#
# Debian packages, downloaded (not installed) with a PRIVATE apt configuration so the system's
# apt sources and state are untouched:
#   libonnxruntime-dev (trixie: ONNX Runtime C/C++ API headers; the library itself is dlopen'ed at
#   run time, e.g. from the onnxruntime wheel), libstb-dev (image decode/encode), nlohmann-json3-dev.
# The mirror is the one the system's own apt configuration already uses.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${EDGERAIN_THIRD_PARTY:-$REPO/third_party}"
STAMP="$DEST/.deps-v1"
PACKAGES=(libonnxruntime-dev libstb-dev nlohmann-json3-dev)
SUITE="${EDGERAIN_DEB_SUITE:-trixie}"

if [[ -f "$STAMP" ]]; then
  exit 0
fi

# The mirror the system already uses (first URIs: line of a deb822 source, else a one-line source).
mirror=""
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
  mirror="$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
fi
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror="$(grep -E '^deb ' /etc/apt/sources.list | grep -v security | awk '{print $2}' | head -n1 || true)"
fi
if [[ -z "$mirror" ]]; then
  echo "error: no Debian mirror found in the system's apt configuration; set up apt first" >&2
  exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [[ ! -f "$keyring" ]]; then
  echo "error: $keyring is missing (install the debian-archive-keyring package)" >&2
  exit 1
fi

work="$DEST/.apt"
rm -rf "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$DEST"
echo "deb [signed-by=$keyring] $mirror $SUITE main" >"$work/sources.list"
: >"$work/status"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::State::status=$work/status"
  -o "Dir::Cache=$work/cache"
  -o "APT::Sandbox::User=root"
  -o "Debug::NoLocking=1"
)
echo "fetching ${PACKAGES[*]} ($SUITE) into $DEST" >&2
apt-get -q "${apt_opts[@]}" update >"$work/update.log" 2>&1 || {
  cat "$work/update.log" >&2
  echo "error: could not read the $SUITE package index" >&2
  exit 1
}
(cd "$work/debs" && apt-get -q "${apt_opts[@]}" download "${PACKAGES[@]}" >"$work/download.log" 2>&1) || {
  cat "$work/download.log" >&2
  echo "error: could not download ${PACKAGES[*]}" >&2
  exit 1
}
rm -rf "$DEST/root"
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$DEST/root"
done
for header in onnxruntime/onnxruntime_c_api.h stb/stb_image.h nlohmann/json.hpp; do
  if ! find "$DEST/root/usr/include" -path "*$header" | grep -q .; then
    echo "error: $header not found in the downloaded packages" >&2
    exit 1
  fi
done
rm -rf "$work/lists" "$work/cache"
touch "$STAMP"
echo "C++ dependencies ready in $DEST/root/usr/include" >&2
