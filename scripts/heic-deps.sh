#!/usr/bin/env bash
# Installs what the worker's `heic` feature builds with, from Debian's packages, when missing:
# cmake (libheif-sys builds libheif from the sources it embeds), libde265-dev (HEVC, for HEIC),
# libdav1d-dev (AV1 decoding, for AVIF input) and libaom-dev (AV1 encoding, for AVIF renditions; libheif
# builds its AOM encoder when it finds it), and libavif-bin, whose avifdec the tests decode AVIF
# renditions with (a decoder independent of libheif). A C++20 compiler (g++ 12) and pkg-config are
# expected already.
#
# libaom must be 3.12 or later: from 3.12 libaom has `tune=iq`, its tuning for still images, which imgfleet
# uses (as sharp does) and which makes AVIF renditions about 10 % smaller at the same quality and several
# times faster at the same size (docs/performance.md, "AVIF renditions"). Debian 12 has 3.6, so on Debian 12
# libaom3 and libaom-dev 3.12.1 are taken from Debian 13 (trixie), downloaded by apt from a trixie source
# list kept in a temporary folder (apt checks the archive's signature and the packages' checksums) and
# installed with dpkg; libaom3 needs only libc6 >= 2.34, and its soname is the one Debian 12's libavif
# links. Nothing is added to the system's apt sources.
#
# Idempotent: does nothing when all are there. Needs root, or sudo.
set -euo pipefail
aom_ok() { pkg-config --atleast-version=3.12 aom 2>/dev/null; }
if command -v cmake >/dev/null 2>&1 && command -v avifdec >/dev/null 2>&1 \
  && pkg-config --exists libde265 dav1d aom 2>/dev/null && aom_ok; then
  exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
  cmake pkg-config libde265-dev libdav1d-dev libaom-dev libavif-bin)
echo "heic-deps: installing cmake, libde265-dev, libdav1d-dev, libaom-dev and libavif-bin (Debian packages)"
"${apt[@]}" >/dev/null 2>&1 || { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null; "${apt[@]}" >&2; }
if ! aom_ok; then
  echo "heic-deps: libaom $(pkg-config --modversion aom) is older than 3.12: installing Debian 13's libaom3 and libaom-dev"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"
  mkdir -p "$tmp/lists/partial" "$tmp/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$tmp/trixie.list"
  opts=(-q -o "Dir::Etc::SourceList=$tmp/trixie.list" -o Dir::Etc::SourceParts=- -o "Dir::State::Lists=$tmp/lists"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
  "${sudo[@]}" apt-get "${opts[@]}" update >/dev/null
  (cd "$tmp/debs" && "${sudo[@]}" apt-get "${opts[@]}" download libaom3 libaom-dev >/dev/null)
  "${sudo[@]}" dpkg -i "$tmp"/debs/*.deb >/dev/null
  aom_ok || { echo "heic-deps: libaom is still $(pkg-config --modversion aom)" >&2; exit 1; }
fi
