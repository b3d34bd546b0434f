#!/usr/bin/env bash
# Lint infra/template.json with cfn-lint (SAM-aware 1.53.x, pinned in infra/requirements-lint.txt),
# then prove the linter has teeth: broken copies of the template must be rejected.
# Then validate docs/openapi.json with openapi-spec-validator (infra/requirements-openapi.txt),
# with the same proof of teeth.
#
#   LINT_VENV   virtualenv to use/create, relative to the repo root (default .venv-lint)
#   OPENAPI_VENV  virtualenv of the OpenAPI validator (default .venv-openapi)
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

# 2b. Operational coverage: every function traced, alarmed and on the dashboard; scheduled
#     jobs send failures to an alarmed destination (infra/ops_check.py, with its own teeth).
"$VENV/bin/python" infra/ops_check.py --teeth "$TEMPLATE"

# 2c. The SAM CLI's own check (`sam validate --lint`, pinned aws-sam-cli from infra/requirements-deploy.txt).
svenv="$(infra/pyvenv.sh "${DEPLOY_VENV:-.venv-deploy}" infra/requirements-deploy.txt)"
(cd infra && SAM_CLI_TELEMETRY=0 "$svenv/bin/sam" validate --lint --config-env dev --region us-east-1 >"$tmp/sam.txt" 2>&1) || {
  cat "$tmp/sam.txt" >&2; echo "lint: FAILED — sam validate --lint rejected $TEMPLATE" >&2; exit 1; }
echo "lint: OK — $("$svenv/bin/sam" --version): sam validate --lint passes"

# 3. The HTTP contract: docs/openapi.json must be a valid OpenAPI document, and copies
#    with the mistakes it once had (a 3.1 type array and a numeric exclusiveMinimum in
#    a 3.0 document, a response without a description) must be rejected.
OPENAPI="docs/openapi.json"
ovenv="$(infra/pyvenv.sh "${OPENAPI_VENV:-.venv-openapi}" infra/requirements-openapi.txt)"
"$ovenv/bin/python" - "$OPENAPI" "$tmp" <<'PY'
import copy, json, sys
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from importlib.metadata import version

src, out = sys.argv[1], sys.argv[2]
doc = json.load(open(src))
try:
    validate(doc)
except OpenAPIValidationError as e:
    print(f"lint: FAILED — {src} is not valid OpenAPI {doc.get('openapi')}: {e}", file=sys.stderr)
    sys.exit(1)

mutants = {
    "type-array": lambda d: d["components"]["schemas"]["Error"].__setitem__("type", ["object", "null"]),
    "numeric-exclusive-minimum": lambda d: d["components"]["schemas"]["Error"].__setitem__("exclusiveMinimum", 0),
    "response-without-description": lambda d: d["paths"]["/v1/accounts"]["get"]["responses"]["200"].pop("description"),
}
missed = []
for name, mutate in mutants.items():
    m = copy.deepcopy(doc)
    mutate(m)
    try:
        validate(m)
        missed.append(name)
    except OpenAPIValidationError:
        pass
if missed:
    print(f"lint: FAILED — the OpenAPI validator accepted broken copies: {missed}", file=sys.stderr)
    sys.exit(1)
paths = sum(1 for p in doc["paths"].values() for m in p if m in ("get", "put", "post", "delete", "patch"))
print(f"lint: OK — openapi-spec-validator {version('openapi-spec-validator')}: "
      f"{src} is valid OpenAPI {doc['openapi']} ({paths} operations), {len(mutants)}/{len(mutants)} broken copies rejected")
PY
