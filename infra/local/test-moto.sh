#!/usr/bin/env bash
# Tests of the moto launcher (ADR 0008): the same TransactWriteItems cases against plain
# moto_server and infra/local/moto_launcher.py, each on a private free port. Installs
# pytest (pinned in requirements-test.txt) into the moto venv once. Extra args go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${MOTO_VENV:-$root/.venv-moto}"
"$root/infra/local/moto.sh" >/dev/null
req="$root/infra/local/requirements-test.txt"
stamp="$venv/.installed-test"
if ! cmp -s "$req" "$stamp"; then
  echo "installing $(cat "$req") into $venv ..." >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
cd "$root/infra/local"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the tree
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider test_moto_launcher.py "$@"
