#!/usr/bin/env bash
# Installs the pinned moto server into .venv-moto (once) and prints its path.
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
echo "$venv/bin/moto_server"
