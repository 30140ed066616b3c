#!/usr/bin/env bash
# Starts, stops or reports the services the end-to-end tests talk to, on loopback:
#   moto server (S3 + SQS, with real S3 -> SQS notifications) on 127.0.0.1:${MOTO_PORT:-5000}
#   Redis on 127.0.0.1:${REDIS_PORT:-6379}
#   s3s-fs on 127.0.0.1:${S3S_PORT:-5100}: an S3 server that checks signatures and POST policies
#     (moto accepts any POST upload), for the presigned-upload tests; keys imgfleet / imgfleet-secret
# and installs (never starts) Debian's `prometheus` package: tests/tests/prometheus.rs runs its own
# Prometheus server against a live worker, and scripts/check-deploy.sh uses its promtool.
# Idempotent: a service that already answers is left alone; whatever is missing is installed
# (moto into a virtualenv, redis-server and prometheus from Debian's packages, s3s-fs with cargo
# install) and started in the background.
#   scripts/services.sh start | stop | status | install-prometheus
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${IMGFLEET_STATE:-$ROOT/.services}
TOOLS=${IMGFLEET_TOOLS:-$HOME/.cache/imgfleet-tools}
MOTO_PORT=${MOTO_PORT:-5000}
REDIS_PORT=${REDIS_PORT:-6379}
S3S_PORT=${S3S_PORT:-5100}
MOTO_VERSION=5.2.5
S3S_VERSION=0.14.1
mkdir -p "$STATE" "$TOOLS"

moto_up() {
  python3 - "$MOTO_PORT" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2).read()
PY
}

s3s_up() { # any HTTP answer (an anonymous request is refused) means it is up
  python3 - "$S3S_PORT" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2)
except urllib.error.HTTPError:
    pass
PY
}

s3s_healthy() { # a signed ListBuckets works: a server whose data folder was deleted answers 500
  command -v curl >/dev/null || return 0
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user imgfleet:imgfleet-secret -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "http://127.0.0.1:$S3S_PORT/")" = 200 ]
}

redis_up() {
  command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

wait_for() { # name check
  for _ in $(seq 1 300); do "$2" && return 0; sleep 0.1; done
  echo "services: $1 did not come up" >&2; return 1
}

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  echo "services: installing redis-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }
}

# /usr/bin/prometheus and /usr/bin/promtool from Debian's `prometheus` package. The package's own
# service is never started (policy-rc.d forbids it during the install; an existing policy file is
# left alone), so nothing is left running. Needs root, or sudo.
install_prometheus() {
  [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] && return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then # exit 101 = "action forbidden"
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)
  echo "services: installing prometheus (Debian package; its service is not started)"
  local ok=0
  if "${apt[@]}" >/dev/null 2>&1; then
    ok=1
  else
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || true
    if "${apt[@]}" >&2; then ok=1; fi
  fi
  [ "$made_policy" = 1 ] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  # Belt and braces: if an init system started the server anyway, stop it by the service's own
  # controls, so only that service is touched.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    "${sudo[@]}" systemctl disable --now prometheus >&2 || true
  elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    "${sudo[@]}" /etc/init.d/prometheus stop >&2 || true
  fi
  [ "$ok" = 1 ] && [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] \
    || { echo "services: could not install the prometheus package" >&2; return 1; }
}

start_moto() {
  if moto_up; then echo "services: moto already up on 127.0.0.1:$MOTO_PORT"; return; fi
  local venv=$TOOLS/moto-$MOTO_VERSION
  if ! "$venv/bin/python" -c 'import moto.server' 2>/dev/null; then
    echo "services: installing moto[server]==$MOTO_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$STATE/moto.log" 2>&1 &
  echo $! >"$STATE/moto.pid"
  wait_for moto moto_up
  echo "services: moto started on 127.0.0.1:$MOTO_PORT (pid $(cat "$STATE/moto.pid"))"
}

start_redis() {
  install_redis
  if redis_up; then echo "services: redis already up on 127.0.0.1:$REDIS_PORT"; return; fi
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --dir "$STATE"
  wait_for redis redis_up
  echo "services: redis started on 127.0.0.1:$REDIS_PORT"
}

start_s3s() {
  if s3s_up && s3s_healthy; then echo "services: s3s-fs already up on 127.0.0.1:$S3S_PORT"; return; fi
  if s3s_up; then # left by an earlier checkout whose data folder is gone: replace it
    echo "services: s3s-fs on 127.0.0.1:$S3S_PORT cannot list buckets; restarting it"
    pkill -f "s3s-fs --host 127.0.0.1 --port $S3S_PORT" || true
    for _ in $(seq 50); do s3s_up || break; sleep 0.1; done
  fi
  local root=$TOOLS/s3s-fs-$S3S_VERSION
  if [ ! -x "$root/bin/s3s-fs" ]; then
    echo "services: building s3s-fs $S3S_VERSION into $root (a few minutes)"
    cargo install -q s3s-fs --version "$S3S_VERSION" --locked --features binary --root "$root" 2>"$STATE/s3s-install.log" \
      || { cat "$STATE/s3s-install.log" >&2; return 1; }
  fi
  mkdir -p "$STATE/s3s-data"
  nohup "$root/bin/s3s-fs" --host 127.0.0.1 --port "$S3S_PORT" --access-key imgfleet --secret-key imgfleet-secret \
    "$STATE/s3s-data" >"$STATE/s3s.log" 2>&1 &
  echo $! >"$STATE/s3s.pid"
  wait_for s3s-fs s3s_up
  echo "services: s3s-fs started on 127.0.0.1:$S3S_PORT (pid $(cat "$STATE/s3s.pid"))"
}

stop_pid() { # name pidfile: stops only what this script started
  [ -f "$2" ] || return 0
  local pid; pid=$(cat "$2")
  kill "$pid" 2>/dev/null && echo "services: stopped $1 (pid $pid)" || true
  rm -f "$2"
}

case "${1:-start}" in
  start) start_moto; start_redis; start_s3s; install_prometheus ;;
  install-prometheus) install_prometheus ;;
  stop) stop_pid moto "$STATE/moto.pid"; stop_pid redis "$STATE/redis.pid"; stop_pid s3s-fs "$STATE/s3s.pid" ;;
  status)
    moto_up && echo "moto: up (127.0.0.1:$MOTO_PORT)" || echo "moto: down"
    s3s_up && echo "s3s-fs: up (127.0.0.1:$S3S_PORT)" || echo "s3s-fs: down"
    redis_up && echo "redis: up (127.0.0.1:$REDIS_PORT)" || echo "redis: down" ;;
  *) echo "usage: $0 start|stop|status|install-prometheus" >&2; exit 2 ;;
esac
