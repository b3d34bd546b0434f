#!/usr/bin/env bash
# Lint infra/template.json with cfn-lint (SAM-aware 1.53.x, pinned in infra/requirements-lint.txt),
# then prove the linter has teeth: broken copies of the template must be rejected.
#
#   LINT_VENV   virtualenv to use/create, relative to the repo root (default .venv-lint)
#   PYTHON      interpreter used to create the venv (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${LINT_VENV:-.venv-lint}"
REQS="infra/requirements-lint.txt"
TEMPLATE="infra/template.json"
PINNED="$(sed -n 's/^cfn-lint==\([^[:space:]#]*\).*/\1/p' "$REQS")"
[[ -n "$PINNED" ]] || { echo "lint: no cfn-lint==X pin found in $REQS" >&2; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
installed="$("$VENV/bin/cfn-lint" --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$installed" != "$PINNED" ]]; then
  echo "lint: installing cfn-lint $PINNED into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
fi
CFN_LINT="$VENV/bin/cfn-lint"
translator="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aws-sam-translator"))')"

# 1. The real template: any error or warning fails.
if ! "$CFN_LINT" -- "$TEMPLATE"; then
  echo "lint: FAILED — cfn-lint $PINNED reported problems in $TEMPLATE" >&2
  exit 1
fi

# 2. Teeth: each broken copy must produce at least one error (cfn-lint exit code bit 2).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/python" - "$TEMPLATE" "$tmp" <<'PY'
import copy, json, sys
src, out = sys.argv[1], sys.argv[2]
t = json.load(open(src))
fn = t["Resources"]["RollupFunction"]["Properties"]
mutants = {
    # A misspelt runtime: only caught when SAM is translated (cfn-lint <= 1.53).
    "bad-runtime": lambda p: p.__setitem__("Runtime", "provided.al2032"),
    # An SQS event property SAM does not know (MaximumBatchingWindow vs ...InSeconds).
    "bad-sqs-event-property": lambda p: p["Events"]["EventsQueue"]["Properties"].__setitem__("MaximumBatchingWindow", 1),
    # An architecture Lambda does not have.
    "bad-architecture": lambda p: p.__setitem__("Architectures", ["arm65"]),
}
for name, mutate in mutants.items():
    m = copy.deepcopy(t)
    mutate(m["Resources"]["RollupFunction"]["Properties"])
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(m, f, indent=2)
PY

caught=0 total=0
for broken in "$tmp"/*.json; do
  total=$((total + 1))
  rc=0
  "$CFN_LINT" -- "$broken" >"$tmp/out.txt" 2>&1 || rc=$?
  if (( rc & 2 )); then
    caught=$((caught + 1))
  else
    echo "lint: FAILED — cfn-lint did not report an error for $(basename "$broken" .json) (exit $rc):" >&2
    cat "$tmp/out.txt" >&2
  fi
done
if (( caught != total )); then
  echo "lint: FAILED — the linter has no teeth ($caught/$total broken templates rejected)" >&2
  exit 1
fi

echo "lint: OK — cfn-lint $PINNED (aws-sam-translator $translator): $TEMPLATE clean, $caught/$total broken copies rejected"
