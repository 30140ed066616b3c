#!/usr/bin/env bash
# The worker's resident memory under the churn of large images (docs/reliability.md):
#   96 generated JPEGs (24 at 40 MP, 72 at 1-6 MP, interleaved) through `imgfleet demo --jobs 2`
#   (the real consumer and job runner on the local queue, store and event file), RSS sampled
#   every 0.5 s; prints the peak and the lowest RSS of the last quarter (between large images).
#
#   scripts/memory-churn.sh [--bin PATH] [--jobs N] [--images DIR]
#
#   --bin PATH     the imgfleet binary to measure (default: target/release/imgfleet, built here)
#   --jobs N       jobs at once (default 2)
#   --images DIR   where the 96 images are made once and kept (default target/churn-images)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN="" JOBS=2 IMAGES=$ROOT/target/churn-images
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memory-churn: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  cargo build --release -q -p imgfleet-worker -p imgfleet-loadtest
  BIN=$ROOT/target/release/imgfleet
fi
LOADTEST=$(dirname "$BIN")/imgfleet-loadtest
[ -x "$LOADTEST" ] || LOADTEST=$ROOT/target/release/imgfleet-loadtest
if [ ! -f "$IMAGES/.complete" ]; then
  echo "memory-churn: making 96 images in $IMAGES (once)"
  rm -rf "$IMAGES" && mkdir -p "$IMAGES/large" "$IMAGES/mixed" "$IMAGES/all"
  "$LOADTEST" samples --out "$IMAGES/large" --count 24 --size 7300x5475 >/dev/null
  "$LOADTEST" samples --out "$IMAGES/mixed" --count 72 >/dev/null
  # Interleaved: one 40 MP photo after every three smaller ones.
  n=0
  for i in $(seq 0 23); do
    for j in 0 1 2; do
      cp "$IMAGES/mixed/$(ls "$IMAGES/mixed" | sed -n "$((i * 3 + j + 1))p")" "$IMAGES/all/$(printf '%03d' $n).jpg"
      n=$((n + 1))
    done
    cp "$IMAGES/large/$(ls "$IMAGES/large" | sed -n "$((i + 1))p")" "$IMAGES/all/$(printf '%03d' $n).jpg"
    n=$((n + 1))
  done
  touch "$IMAGES/.complete"
fi

DIR=$(mktemp -d)
SAMPLES=$DIR/rss.txt
"$BIN" demo --dir "$DIR/demo" --jobs "$JOBS" "$IMAGES/all" >"$DIR/demo.log" 2>&1 &
PID=$!
while kill -0 "$PID" 2>/dev/null; do
  awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status" 2>/dev/null >>"$SAMPLES" || true
  sleep 0.5
done
wait "$PID" || { echo "memory-churn: demo failed; see $DIR/demo.log" >&2; exit 1; }
awk '{ v[NR] = $1; if ($1 > peak) peak = $1 }
     END {
       low = -1; for (i = int(NR * 3 / 4) + 1; i <= NR; i++) if (low < 0 || v[i] < low) low = v[i]
       printf "memory-churn: %d samples, peak RSS %.0f MB, lowest RSS in the last quarter %.0f MB\n", NR, peak / 1024, low / 1024
     }' "$SAMPLES"
grep -E "images/s|processed" "$DIR/demo.log" | tail -2 || true
rm -rf "$DIR"
