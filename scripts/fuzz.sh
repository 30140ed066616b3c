#!/usr/bin/env bash
# Fuzzes the message parser (envelope) and the whole pipeline on arbitrary bytes (render) with
# cargo fuzz (libFuzzer, nightly toolchain), each for a bounded time, from a seed corpus made by
# the tests: the envelope fixtures and the adversarial image set.
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 300)] [TARGET...]
# Crashes land in fuzz/artifacts/<target>/; each one found becomes a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-300}
shift || true
TARGETS=${*:-envelope render}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || { echo "fuzz: cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 2; }
CORPUS=fuzz/corpus
mkdir -p "$CORPUS/envelope" "$CORPUS/render"
cp shared/tests/fixtures/*.json "$CORPUS/envelope/"
IMGFLEET_FUZZ_SEEDS=$PWD/$CORPUS/render cargo test -q -p imgfleet-worker --test adversarial >/dev/null
for target in $TARGETS; do
  echo "fuzz: $target for ${SECS}s"
  cargo +nightly fuzz run "$target" "$CORPUS/$target" -- \
    -max_total_time="$SECS" -timeout=30 -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::|==|SUMMARY|INFO: (seed corpus|-max_len))|Done|crash|deadly|timeout|panicked" || true
done
if [ -n "$(find fuzz/artifacts -type f 2>/dev/null)" ]; then
  find fuzz/artifacts -type f
  echo "fuzz: findings above: turn each into a regression test"
  exit 1
fi
echo "fuzz: no findings"
