#!/usr/bin/env bash
# Installs what the worker's `heic` feature builds with, from Debian's packages, when missing:
# cmake (libheif-sys builds libheif from the sources it embeds), libde265-dev (HEVC, for HEIC),
# libdav1d-dev (AV1 decoding, for AVIF input) and libaom-dev (AV1 encoding, for AVIF renditions; libheif
# builds its AOM encoder when it finds it), and libavif-bin, whose avifdec the tests decode AVIF
# renditions with (a decoder independent of libheif). A C++20 compiler (g++ 12) and pkg-config are
# expected already. Idempotent: does nothing when all are there. Needs root, or sudo.
set -euo pipefail
if command -v cmake >/dev/null 2>&1 && command -v avifdec >/dev/null 2>&1 && pkg-config --exists libde265 dav1d aom 2>/dev/null; then
  exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
  cmake pkg-config libde265-dev libdav1d-dev libaom-dev libavif-bin)
echo "heic-deps: installing cmake, libde265-dev, libdav1d-dev, libaom-dev and libavif-bin (Debian packages)"
"${apt[@]}" >/dev/null 2>&1 || { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null; "${apt[@]}" >&2; }
