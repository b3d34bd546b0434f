#!/usr/bin/env bash
# Build (sam build, cargo-lambda) and deploy infra/template.json with the AWS SAM CLI,
# using infra/samconfig.toml's `dev` environment (or `prod` when STAGE=prod). The first
# deployment of a stack runs `sam deploy --guided`, which asks for every parameter.
#
#   ARCH                   arm64 (default) | x86_64 — Architecture parameter; must match the binaries
#   STAGE                  Stage parameter and samconfig environment (default dev; prod → env prod)
#   STACK_NAME             CloudFormation stack (default usage-intel-<stage>; usage-intel for prod)
#   GUIDED=1               always run `sam deploy --guided`
#   LOG_LEVEL              LogLevel parameter / RUST_LOG (default info)
#   LEDGER_RETENTION_DAYS  LedgerRetentionDays parameter (default 120)
#   ALARM_EMAIL            AlarmEmail parameter (default empty: no e-mail subscription)
#   ALERT_EMAIL            AlertEmail parameter: CS alerts by e-mail (default empty: none)
#   AWS_REGION             region (else the profile's / AWS_DEFAULT_REGION)
#   DEPLOY_VENV            virtualenv for aws-sam-cli (default .venv-deploy; pin in infra/requirements-deploy.txt)
#   BUILD_PROFILE          cargo profile whose settings `sam build` uses (default lambda; release = plain release)
#   Extra arguments are passed through to `sam deploy` (e.g. --no-execute-changeset).
#
# `sam build` compiles each function with cargo-lambda for ARCH into infra/.aws-sam/build;
# `sam deploy` uploads them to a SAM-managed S3 bucket (resolve_s3) and applies a change set
# after showing it (confirm_changeset in samconfig.toml; pass --no-confirm-changeset to skip).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ARCH="${ARCH:-arm64}"
STAGE="${STAGE:-dev}"
case "$STAGE" in
  prod) CONFIG_ENV=prod; STACK_NAME="${STACK_NAME:-usage-intel}" ;;
  *)    CONFIG_ENV=dev;  STACK_NAME="${STACK_NAME:-usage-intel-$STAGE}" ;;
esac
LOG_LEVEL="${LOG_LEVEL:-info}"
LEDGER_RETENTION_DAYS="${LEDGER_RETENTION_DAYS:-120}"
ALARM_EMAIL="${ALARM_EMAIL:-}"
ALERT_EMAIL="${ALERT_EMAIL:-}"
VENV="${DEPLOY_VENV:-.venv-deploy}"
[[ "$VENV" == /* ]] || VENV="$ROOT/$VENV"
REQS="infra/requirements-deploy.txt"

die() { echo "deploy: $*" >&2; exit 1; }

case "$ARCH" in
  arm64|x86_64) ;;
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

# --- cargo-lambda for `sam build` (BuildMethod: rust-cargolambda) ----------------------------------
if ! command -v cargo-lambda >/dev/null 2>&1; then
  bvenv="$(infra/pyvenv.sh "${BUILD_VENV:-.venv-build}" infra/requirements-build.txt)"
  export PATH="$bvenv/bin:$PATH"
fi
if [[ "$ARCH" == arm64 ]] && ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu || die "cannot add the aarch64 Rust target; deploy with ARCH=x86_64"
fi

# `sam build` runs `cargo lambda build --release` per function and offers no way to name
# another cargo profile (its rust-cargolambda options are `Binary` only). So the `release`
# profile gets the `lambda` profile's settings (Cargo.toml [profile.lambda]: opt-level "s",
# fat LTO, one codegen unit) through cargo's CARGO_PROFILE_RELEASE_* variables, which SAM
# and cargo-lambda pass on to cargo. BUILD_PROFILE=release keeps the plain release profile
# (faster to build, larger artifacts). Panics unwind either way: [profile.release] says so,
# which stops cargo-lambda from adding panic=abort (docs/deploy.md).
if [[ "${BUILD_PROFILE:-lambda}" != release ]]; then
  profile_env="$("${PYTHON:-python3}" infra/profile-env.py "${BUILD_PROFILE:-lambda}")" ||
    die "cannot read [profile.${BUILD_PROFILE:-lambda}] from Cargo.toml"
  while IFS= read -r assignment; do
    [[ -n "$assignment" ]] && export "${assignment?}"
  done <<<"$profile_env"
  echo "deploy: sam build with the ${BUILD_PROFILE:-lambda} profile's settings: $(echo "$profile_env" | xargs)" >&2
fi

# From infra/, where samconfig.toml (environments dev and prod) and template.json live.
cd infra
set -x
"$VENV/bin/sam" build --config-env "$CONFIG_ENV" "${region_args[@]}" --parameter-overrides "${params[@]}"
{ set +x; } 2>/dev/null

# First deployment of this stack: --guided asks for every parameter (and offers to save the
# answers in infra/samconfig.toml). Later ones apply the saved configuration.
guided=()
if [[ "${GUIDED:-}" == 1 ]] || ! "$VENV/bin/sam" list stack-outputs --stack-name "$STACK_NAME" "${region_args[@]}" >/dev/null 2>&1; then
  echo "deploy: stack $STACK_NAME not found (or GUIDED=1): running sam deploy --guided" >&2
  guided=(--guided)
fi
set -x
"$VENV/bin/sam" deploy --config-env "$CONFIG_ENV" "${guided[@]}" \
  --stack-name "$STACK_NAME" \
  "${region_args[@]}" \
  --parameter-overrides "${params[@]}" \
  "$@"
