#!/usr/bin/env bash
# Installs a pinned requirements file into its own virtualenv (once, and again when the
# file changes) and prints the venv's path: `venv="$(infra/pyvenv.sh .venv-x infra/requirements-x.txt)"`.
# Paths are relative to the repo root. PYTHON picks the interpreter (default python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$1" req="$2"
[[ "$venv" = /* ]] || venv="$root/$venv"
[[ "$req" = /* ]] || req="$root/$req"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
  echo "installing $(grep -v '^#' "$req" | xargs) into $venv ..." >&2
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
echo "$venv"
