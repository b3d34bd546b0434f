#!/usr/bin/env bash
# Deploy infra/template.json with the AWS SAM CLI. Run infra/build.sh first with the same ARCH.
#
#   ARCH                   arm64 (default) | x86_64 — Architecture parameter; must match the binaries
#   STACK_NAME             CloudFormation stack (default usage-intel)
#   STAGE                  Stage parameter (default prod)
#   LOG_LEVEL              LogLevel parameter / RUST_LOG (default info)
#   LEDGER_RETENTION_DAYS  LedgerRetentionDays parameter (default 400)
#   ALARM_EMAIL            AlarmEmail parameter (default empty: no e-mail subscription)
#   ALERT_EMAIL            AlertEmail parameter: CS alerts by e-mail (default empty: none)
#   AWS_REGION             region (else the profile's / AWS_DEFAULT_REGION)
#   DEPLOY_VENV            virtualenv for aws-sam-cli (default .venv-deploy; pin in infra/requirements-deploy.txt)
#   Extra arguments are passed through to `sam deploy` (e.g. --no-execute-changeset).
#
# `sam deploy` packages the CodeUri directories (target/lambda/<fn>/, holding `bootstrap`),
# uploads them to a SAM-managed S3 bucket (--resolve-s3) and applies a change set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ARCH="${ARCH:-arm64}"
STACK_NAME="${STACK_NAME:-usage-intel}"
STAGE="${STAGE:-prod}"
LOG_LEVEL="${LOG_LEVEL:-info}"
LEDGER_RETENTION_DAYS="${LEDGER_RETENTION_DAYS:-400}"
ALARM_EMAIL="${ALARM_EMAIL:-}"
ALERT_EMAIL="${ALERT_EMAIL:-}"
VENV="${DEPLOY_VENV:-.venv-deploy}"
[[ "$VENV" == /* ]] || VENV="$ROOT/$VENV"
REQS="infra/requirements-deploy.txt"
TEMPLATE="infra/template.json"
FUNCTIONS=(ingest rollup api notify score audit web)

die() { echo "deploy: $*" >&2; exit 1; }

case "$ARCH" in
  arm64)  ELF_MACHINE=b7 ;;
  x86_64) ELF_MACHINE=3e ;;
  *) die "ARCH must be arm64 or x86_64, got '$ARCH'" ;;
esac

# --- refuse early without AWS credentials (checked statically: no network calls) -------------
if [[ -n "${AWS_ENDPOINT_URL:-}${AWS_ENDPOINT_URL_DYNAMODB:-}${AWS_ENDPOINT_URL_SQS:-}${AWS_ENDPOINT_URL_SNS:-}" ]]; then
  die "AWS_ENDPOINT_URL* is set (the local emulator's environment?). Unset it to deploy to AWS."
fi
has_credentials() {
  [[ -n "${AWS_ACCESS_KEY_ID:-}" && -n "${AWS_SECRET_ACCESS_KEY:-}" ]] && return 0
  [[ -n "${AWS_PROFILE:-}" || -n "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ]] && return 0
  [[ -n "${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}" ]] && return 0
  [[ -s "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]] && return 0
  grep -qsE '^[[:space:]]*(sso_|credential_process|role_arn|aws_access_key_id)' "${AWS_CONFIG_FILE:-$HOME/.aws/config}" && return 0
  # EC2 instance roles are not probed (no metadata-service call); opt in explicitly.
  [[ "${DEPLOY_USE_INSTANCE_ROLE:-}" == 1 ]] && return 0
  return 1
}
if ! has_credentials; then
  die "no AWS credentials configured. Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), \
AWS_PROFILE, or ~/.aws/credentials / ~/.aws/config (SSO, role_arn, credential_process); \
on EC2 with an instance role set DEPLOY_USE_INSTANCE_ROLE=1. Nothing was deployed."
fi

# --- the artifacts must exist and match ARCH ----------------------------------------------------
for fn in "${FUNCTIONS[@]}"; do
  bin="target/lambda/$fn/bootstrap"
  [[ -f "$bin" ]] || die "$bin is missing: run 'ARCH=$ARCH make build' first."
  machine="$(od -An -t x1 -j 18 -N 1 "$bin" | tr -d ' \n')"
  [[ "$machine" == "$ELF_MACHINE" ]] || die "$bin was not built for $ARCH (ELF e_machine 0x$machine): rebuild with 'ARCH=$ARCH make build' or deploy with the matching ARCH."
done

# --- SAM CLI -------------------------------------------------------------------------------------
pinned="$(sed -n 's/^aws-sam-cli==\([^[:space:]#]*\).*/\1/p' "$REQS")"
have="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aws-sam-cli"))' 2>/dev/null || true)"
if [[ "$have" != "$pinned" ]]; then
  echo "deploy: installing aws-sam-cli $pinned into $VENV" >&2
  [[ -x "$VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
fi
export SAM_CLI_TELEMETRY=0

params=(
  "Architecture=$ARCH"
  "Stage=$STAGE"
  "LogLevel=$LOG_LEVEL"
  "LedgerRetentionDays=$LEDGER_RETENTION_DAYS"
)
[[ -n "$ALARM_EMAIL" ]] && params+=("AlarmEmail=$ALARM_EMAIL")
[[ -n "$ALERT_EMAIL" ]] && params+=("AlertEmail=$ALERT_EMAIL")
region_args=()
[[ -n "${AWS_REGION:-}" ]] && region_args=(--region "$AWS_REGION")

set -x
"$VENV/bin/sam" deploy \
  --template-file "$TEMPLATE" \
  --stack-name "$STACK_NAME" \
  --capabilities CAPABILITY_IAM \
  --resolve-s3 \
  --no-confirm-changeset \
  --no-fail-on-empty-changeset \
  "${region_args[@]}" \
  --parameter-overrides "${params[@]}" \
  "$@"
