#!/usr/bin/env bash
# Installs what the worker's `heic` feature builds with, from Debian's packages, when missing:
# cmake (libheif-sys builds libheif from the sources it embeds), libde265-dev (HEVC, for HEIC) and
# libdav1d-dev (AV1, for AVIF). A C++20 compiler (g++ 12) and pkg-config are expected already.
# Idempotent: does nothing when all three are there. Needs root, or sudo.
set -euo pipefail
if command -v cmake >/dev/null 2>&1 && pkg-config --exists libde265 dav1d 2>/dev/null; then
  exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
  cmake pkg-config libde265-dev libdav1d-dev)
echo "heic-deps: installing cmake, libde265-dev and libdav1d-dev (Debian packages)"
"${apt[@]}" >/dev/null 2>&1 || { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null; "${apt[@]}" >&2; }
