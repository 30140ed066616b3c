#!/usr/bin/env bash
# The whole test suite: starts moto server, Redis and s3s-fs on loopback when missing, installs what the
# worker's heic feature builds with, runs every test of the workspace (unit, pipeline, end-to-end) with
# HEIC/AVIF input on, as the container image is built, then checks the deploy files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh start
scripts/heic-deps.sh
export IMGFLEET_TEST_AWS_ENDPOINT=${IMGFLEET_TEST_AWS_ENDPOINT:-http://127.0.0.1:${MOTO_PORT:-5000}}
export IMGFLEET_TEST_REDIS_URL=${IMGFLEET_TEST_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT:-6379}}
export IMGFLEET_TEST_POLICY_S3_ENDPOINT=${IMGFLEET_TEST_POLICY_S3_ENDPOINT:-http://127.0.0.1:${S3S_PORT:-5100}}
cargo test --workspace --locked --features imgfleet-worker/heic
scripts/check-deploy.sh
