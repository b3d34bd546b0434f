#!/usr/bin/env bash
# Runs a command with a private moto server: `with-moto.sh cargo test`.
# Starts moto (the launcher of ADR 0008; MOTO_PLAIN=1: plain moto_server) on MOTO_PORT
# (default: a free port), exports AWS_ENDPOINT_URL and dummy credentials, runs the
# command, and stops moto whatever happens.
# IAM is enforced (MOTO_LAUNCHER_IAM=1, ADR 0010) unless MOTO_LAUNCHER_IAM=0 or MOTO_PLAIN=1:
# each function's calls are checked against its template policy; the exported dummy key
# is the admin (root) identity. MOTO_LAUNCHER_IAM_LOG (default: a temporary file, removed
# at exit) receives every authorisation as a JSON line.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
moto="$("$root/infra/local/moto.sh")"
port="${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
log="${TMPDIR:-/tmp}/moto-$port.log"
export MOTO_LAUNCHER_IAM="${MOTO_LAUNCHER_IAM:-1}" MOTO_LAUNCHER_ADMIN_KEY=testing
# Every authorisation, as JSON lines (tests read the denials; `make test` checks coverage).
own_iam_log=""
if [ -z "${MOTO_LAUNCHER_IAM_LOG:-}" ]; then
  own_iam_log="${TMPDIR:-/tmp}/moto-$port-iam.jsonl"
  export MOTO_LAUNCHER_IAM_LOG="$own_iam_log"
fi
: >"$MOTO_LAUNCHER_IAM_LOG"
"$moto" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
# The emulator's pid, for commands that report its memory (the soak bench).
export MOTO_PID=$moto_pid
trap 'kill $moto_pid 2>/dev/null || true; wait $moto_pid 2>/dev/null || true; [ -z "$own_iam_log" ] || rm -f "$own_iam_log"' EXIT INT TERM
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then break; fi
  if ! kill -0 $moto_pid 2>/dev/null; then cat "$log" >&2; echo "moto failed to start" >&2; exit 1; fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
"$@"
