#!/usr/bin/env bash
# `make run`: installs and starts moto (through infra/local/moto_launcher.py, ADR 0008)
# on 127.0.0.1:4566 (unless one already answers there), builds and starts the local
# runner, and stops what it started on Ctrl-C. IAM is enforced as in `make test`
# (ADR 0010): each function runs with its own key and template policy; the dummy key
# exported here (and used by `usage-local` admin commands) is the admin identity.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
port="${MOTO_PORT:-4566}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:$port}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export MOTO_LAUNCHER_IAM="${MOTO_LAUNCHER_IAM:-1}" MOTO_LAUNCHER_ADMIN_KEY=testing
up() { python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/')" 2>/dev/null; }
moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; echo "moto stopped"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if up; then
  echo "using the emulator already running at $AWS_ENDPOINT_URL"
else
  moto="$(infra/local/moto.sh)"
  "$moto" -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/moto-$port.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 100); do
    up && break
    if ! kill -0 "$moto_pid" 2>/dev/null; then
      cat "${TMPDIR:-/tmp}/moto-$port.log" >&2; moto_pid=""
      echo "moto exited at start; its log is above" >&2; exit 1
    fi
    sleep 0.2
  done
  up || { echo "moto did not start; see ${TMPDIR:-/tmp}/moto-$port.log" >&2; exit 1; }
  echo "moto started at $AWS_ENDPOINT_URL (pid $moto_pid)"
fi
cargo build --quiet -p local --bin usage-local
"${CARGO_TARGET_DIR:-target}/debug/usage-local" serve "$@"
