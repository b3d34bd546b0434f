#!/usr/bin/env bash
# Fetches the `lifetimes` wheel from PyPI (no install, no dependencies) into a venv's
# cache, extracts CDNOW_master.txt and converts it for `usage-local backtest`.
# Usage: infra/data/cdnow.sh [OUT_DIR=target/cdnow]
set -euo pipefail
out="${1:-target/cdnow}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" download --quiet --no-deps --disable-pip-version-check lifetimes==0.11.3 -d "$work"
python3 - "$work" <<'PY'
import glob, sys, zipfile
work = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0]) as z:
    with open(f"{work}/CDNOW_master.txt", "wb") as f:
        f.write(z.read("lifetimes/datasets/CDNOW_master.txt"))
PY
python3 "$here/cdnow.py" "$work/CDNOW_master.txt" "$out" "${LAPSE_DAYS:-90}"
