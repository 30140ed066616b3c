#!/usr/bin/env bash
# The end-to-end load test on this machine, in one command:
#   moto (S3 + SQS) and Redis on loopback  ->  a fresh bucket + queue + DLQ + bucket notification
#   ->  W `imgfleet run` workers  ->  `imgfleet-loadtest e2e` uploads N images and times each event
#   ->  SIGTERM the workers  ->  table on the terminal, report.json and chart.svg in the run's folder.
#
#   scripts/loadtest-local.sh [--workers W] [--count N] [--rate R | --burst] [--images DIR]
#                             [--concurrency C] [--timeout SECS] [--out DIR] [--keep] [--bin DIR]
#
#   --workers W       imgfleet run processes (default 1)
#   --count N         uploads (default 200)
#   --rate R          uploads started per second (default 5); --burst uploads them all at once
#   --images DIR      images to cycle through (default: ../shared/corpus/photos beside the checkout if
#                     it exists, else 12 generated samples)
#   --concurrency C   IMGFLEET_CONCURRENCY of each worker (default 1)
#   --timeout SECS    an upload with no event this long after it is lost (default 120)
#   --out DIR         where the report goes (default target/loadtest/<run id>)
#   --keep            keep the run's bucket, queues and event stream (default: deleted at the end,
#                     so repeated runs do not pile objects up in moto's memory)
#   --bin DIR         take imgfleet and imgfleet-loadtest from DIR (e.g. an earlier build, to compare
#                     side by side) instead of building target/release
#
# Before stopping the workers it prints the CPU seconds each one used (worker-cpu.txt in the run's
# folder): completed jobs over that is the worker's images per CPU-second.
#
# Exit status: that of the e2e run (0 clean, 1 lost jobs or failed uploads, 2 error).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

WORKERS=1 COUNT=200 RATE=5 BURST=0 IMAGES="" CONCURRENCY=1 TIMEOUT=120 OUT="" KEEP=0 BIN=""
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --rate) RATE=$2; BURST=0; shift 2 ;;
    --burst) BURST=1; shift ;;
    --images) IMAGES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --bin) BIN=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "loadtest-local: unknown argument $1" >&2; usage ;;
  esac
done

MOTO_PORT=${MOTO_PORT:-5000}
REDIS_PORT=${REDIS_PORT:-6379}
RUN_ID=$(date -u +%Y%m%d-%H%M%S)-$$
OUT=${OUT:-$ROOT/target/loadtest/$RUN_ID}
mkdir -p "$OUT"

scripts/services.sh start
if [ -z "$BIN" ]; then
  echo "loadtest-local: building release binaries"
  cargo build --release -q -p imgfleet-worker -p imgfleet-loadtest
  BIN=$ROOT/target/release
fi

export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
STREAM=imgfleet:loadtest:$RUN_ID
NAME=imgfleet-lt-$RUN_ID
BUCKET=$NAME QUEUE=$NAME

if [ -z "$IMAGES" ]; then
  if [ -d "$ROOT/../shared/corpus/photos" ]; then
    IMAGES=$(cd "$ROOT/../shared/corpus/photos" && pwd)
  else
    IMAGES=$OUT/samples
    "$BIN/imgfleet-loadtest" samples --out "$IMAGES" --count 12
  fi
fi

PIDS=()
cpu_seconds() { # user + system CPU of a live process, in seconds (fields 14 and 15 of /proc/PID/stat)
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo "?"
}
stop_workers() { # SIGTERM, then the drain gets its grace period (25 s) plus 10 s before SIGKILL
  [ ${#PIDS[@]} -gt 0 ] || return 0
  for i in "${!PIDS[@]}"; do
    echo "loadtest-local: worker $((i + 1)) used $(cpu_seconds "${PIDS[$i]}") CPU seconds" | tee -a "$OUT/worker-cpu.txt"
  done
  echo "loadtest-local: stopping ${#PIDS[@]} worker(s) (SIGTERM)"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 350); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && { echo "loadtest-local: worker $pid did not drain: SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || echo "loadtest-local: worker $pid exited with status $?" >&2
  done
  PIDS=()
}
cleanup() {
  stop_workers
  if [ "$KEEP" = 0 ]; then
    "$BIN/imgfleet-loadtest" teardown --bucket "$BUCKET" --queue "$QUEUE" || true
    command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DEL "$STREAM" >/dev/null || true
  fi
}
trap cleanup EXIT
QUEUE_URL=$("$BIN/imgfleet-loadtest" setup --bucket "$BUCKET" --queue "$QUEUE" --prefix uploads/)

for i in $(seq 1 "$WORKERS"); do
  IMGFLEET_QUEUE_URL=$QUEUE_URL IMGFLEET_DLQ_URL=$QUEUE_URL-dlq IMGFLEET_REDIS_URL=$REDIS_URL \
  IMGFLEET_EVENTS_STREAM=$STREAM IMGFLEET_METRICS_ADDR=127.0.0.1:0 IMGFLEET_CONCURRENCY=$CONCURRENCY \
  IMGFLEET_WORKER_ID=$NAME-w$i RUST_LOG=${RUST_LOG:-warn} \
    "$BIN/imgfleet" run >"$OUT/worker-$i.log" 2>&1 &
  PIDS+=($!)
done
sleep 1
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "loadtest-local: a worker died at start-up; see $OUT/worker-*.log" >&2; exit 2; }
done
echo "loadtest-local: $WORKERS worker(s) on $QUEUE_URL, events on $STREAM"

PACE=(--rate "$RATE")
[ "$BURST" = 1 ] && PACE=(--burst)
status=0
"$BIN/imgfleet-loadtest" e2e --images "$IMAGES" --count "$COUNT" "${PACE[@]}" --timeout "$TIMEOUT" \
  --bucket "$BUCKET" --prefix "uploads/loadtest/$RUN_ID/" --redis-url "$REDIS_URL" --stream "$STREAM" \
  --run-id "$RUN_ID" --out "$OUT" || status=$?

# The workers' own CPU time (user + system), to compare with `imgfleet-loadtest pipeline`'s images
# per CPU-second: what the queue, S3 and Redis round trips cost the worker, apart from the emulator.
ticks=0
for pid in "${PIDS[@]}"; do
  [ -r "/proc/$pid/stat" ] && ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
done
awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$COUNT" \
  'BEGIN { s = t / hz; printf "loadtest-local: workers used %.2f CPU-s for %d uploads: %.2f images per worker CPU-second\n", s, n, (s > 0 ? n / s : 0) }' \
  | tee "$OUT/worker-cpu.txt"

cleanup
trap - EXIT
echo "loadtest-local: report in $OUT (report.json, chart.svg, worker-*.log)"
exit "$status"
