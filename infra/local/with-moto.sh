#!/usr/bin/env bash
# Runs a command with a private moto server: `with-moto.sh cargo test`.
# Starts moto (the launcher of ADR 0008; MOTO_PLAIN=1: plain moto_server) on MOTO_PORT
# (default: a free port), exports AWS_ENDPOINT_URL and dummy credentials, runs the
# command, and stops moto whatever happens.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
moto="$("$root/infra/local/moto.sh")"
port="${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
log="${TMPDIR:-/tmp}/moto-$port.log"
"$moto" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true; wait $moto_pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then break; fi
  if ! kill -0 $moto_pid 2>/dev/null; then cat "$log" >&2; echo "moto failed to start" >&2; exit 1; fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
"$@"
