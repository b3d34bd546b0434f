#!/usr/bin/env bash
# Installs the pinned moto server into .venv-moto (once) and prints the command that
# serves it: the launcher (infra/local/moto_launcher.py, ADR 0008), which takes the
# same arguments as `moto_server` (-H host -p port) and passes the environment through.
# MOTO_PLAIN=1 prints plain `moto_server` instead (for comparisons and measurements).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${MOTO_VENV:-$root/.venv-moto}"
req="$root/infra/local/requirements.txt"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/moto_server" ] || ! cmp -s "$req" "$stamp"; then
  echo "installing $(cat "$req") into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
if [ "${MOTO_PLAIN:-0}" = 1 ]; then
  echo "$venv/bin/moto_server"
  exit 0
fi
launcher="$venv/bin/moto-launcher"
body="#!/bin/sh
exec \"$venv/bin/python\" \"$root/infra/local/moto_launcher.py\" \"\$@\""
if [ ! -x "$launcher" ] || [ "$(cat "$launcher")" != "$body" ]; then
  printf '%s\n' "$body" >"$launcher.tmp.$$"
  chmod +x "$launcher.tmp.$$"
  mv "$launcher.tmp.$$" "$launcher"
fi
echo "$launcher"
