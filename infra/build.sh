#!/usr/bin/env bash
# Build the Lambda artifacts (ingest, rollup, api, notify, score, audit, web) into
#   <repo>/target/lambda/<function>/bootstrap
# for size checks, the init-time bench (`make bench-lambda`, infra/bench-lambda.py) and manual
# uploads. Deployment builds through `sam build` instead (infra/deploy.sh; the template's
# CodeUri is each function's crate, BuildMethod rust-cargolambda).
#
# Profile: `lambda` (Cargo.toml: release + opt-level "s", fat LTO, one codegen unit,
# stripped; panics still unwind, which the SQS consumers rely on to fail one message
# alone). `cargo bench` keeps the `release` profile and its build time. docs/benchmarks.md
# records what each setting bought.
#
#   ARCH        arm64 (default) | x86_64. Must match the Architecture parameter used at deploy
#               (infra/deploy.sh reads the same ARCH and checks the binaries' ELF machine).
#   BUILD_VENV  virtualenv used for cargo-lambda (arm64) when `cargo lambda` is not on PATH
#               (default .venv-build, relative to the repo root; pins in infra/requirements-build.txt)
#   Extra arguments are passed through to cargo (x86_64) or `cargo lambda build` (arm64).
#   PIE     1 keeps position-independent executables. Default 0 on x86_64: the binaries
#           are linked with -no-pie, which drops the ~2 MB of load-time relocations a PIE
#           Rust binary carries (its vtables and other pointer tables in .data.rel.ro) at
#           the cost of address randomisation of the executable's own image (heap, stack
#           and libc stay randomised). docs/benchmarks.md has the figures. Not applied to
#           arm64 (untried through zig).
#
# Architectures:
#   x86_64  plain `cargo build --profile lambda --target x86_64-unknown-linux-gnu` with the
#           host linker, no zig, no cargo-lambda (the explicit --target keeps RUSTFLAGS
#           off build scripts and proc macros): what these 2-core dev/CI machines build
#           reliably, and the only artifacts this machine can run (the init-time bench). Because the host linker
#           links against the host glibc (Debian 12: 2.36) while Lambda's provided.al2023
#           has glibc 2.34, the script checks the GLIBC_x symbol versions the binaries need
#           and fails if any is newer than 2.34.
#   arm64   `cargo lambda build --arm64 --profile lambda`: cross-compiles through
#           cargo-zigbuild, which needs (a) the aarch64-unknown-linux-gnu Rust std (added
#           with rustup if missing; `rustup target add` works on these machines) and (b) zig,
#           from the `ziglang` wheel that the cargo-lambda wheel depends on. What was tried
#           and what works is in docs/deploy.md ("arm64").
#
# CARGO_TARGET_DIR is honoured for compilation (the Makefile sets one outside the clone);
# when unset it is <repo>/target/cargo, so cargo's `lambda` profile directory
# (<target>/lambda/<bin>) cannot collide with the artifacts (<repo>/target/lambda/<fn>/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ARCH="${ARCH:-arm64}"
VENV="${BUILD_VENV:-.venv-build}"
[[ "$VENV" == /* ]] || VENV="$ROOT/$VENV"
REQS="infra/requirements-build.txt"
LAMBDA_DIR="$ROOT/target/lambda"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cargo}"
PROFILE=lambda
FUNCTIONS=(ingest rollup api notify score audit web)
MAX_GLIBC_MINOR=34 # provided.al2023 ships glibc 2.34

case "$ARCH" in
  arm64)  RUST_TARGET=aarch64-unknown-linux-gnu; ELF_MACHINE=b7 ;; # EM_AARCH64
  x86_64) RUST_TARGET=x86_64-unknown-linux-gnu;  ELF_MACHINE=3e ;; # EM_X86_64
  *) echo "build: ARCH must be arm64 or x86_64, got '$ARCH'" >&2; exit 2 ;;
esac

# --- cargo-lambda (arm64 only): the one on PATH, else the pinned wheel in $VENV -------------
if [[ "$ARCH" == arm64 ]] && ! command -v cargo-lambda >/dev/null 2>&1; then
  pinned="$(sed -n 's/^cargo-lambda==\([^[:space:]#]*\).*/\1/p' "$REQS")"
  have="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("cargo-lambda"))' 2>/dev/null || true)"
  if [[ "$have" != "$pinned" ]]; then
    echo "build: installing cargo-lambda $pinned into $VENV" >&2
    [[ -x "$VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
  fi
  # The venv's bin also provides python3 with the ziglang module, which cargo-zigbuild uses.
  export PATH="$VENV/bin:$PATH"
fi

# --- per-architecture build ------------------------------------------------------------------
PKG_FLAGS=()
for fn in "${FUNCTIONS[@]}"; do PKG_FLAGS+=(-p "$fn"); done

if [[ "$ARCH" == arm64 ]]; then
  if ! rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
    echo "build: adding Rust target $RUST_TARGET" >&2
    if ! rustup target add "$RUST_TARGET"; then
      cat >&2 <<MSG
build: cannot install the $RUST_TARGET Rust target on this machine, so arm64 cannot be built here.
       Build and deploy x86_64 instead:   ARCH=x86_64 make build && ARCH=x86_64 make deploy
MSG
      exit 1
    fi
  fi
  echo "build: $(cargo lambda --version) for $ARCH ($RUST_TARGET), profile $PROFILE" >&2
  set -x
  cargo lambda build --arm64 --profile "$PROFILE" --output-format binary \
    --lambda-dir "$LAMBDA_DIR" --locked "${PKG_FLAGS[@]}" "$@"
  { set +x; } 2>/dev/null
else
  if [[ "$(uname -m)" != x86_64 ]]; then
    echo "build: ARCH=x86_64 builds with the host toolchain, and this host is $(uname -m)" >&2
    exit 1
  fi
  if [[ "${PIE:-0}" != 1 ]]; then
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C link-arg=-no-pie"
  fi
  echo "build: cargo for $ARCH (host toolchain), profile $PROFILE, RUSTFLAGS='${RUSTFLAGS:-}'" >&2
  set -x
  cargo build --profile "$PROFILE" --target "$RUST_TARGET" --locked "${PKG_FLAGS[@]}" "$@"
  { set +x; } 2>/dev/null
  for fn in "${FUNCTIONS[@]}"; do
    mkdir -p "$LAMBDA_DIR/$fn"
    cp "$CARGO_TARGET_DIR/$RUST_TARGET/$PROFILE/$fn" "$LAMBDA_DIR/$fn/bootstrap"
  done
fi

# --- check what was produced ----------------------------------------------------------------
status=0
for fn in "${FUNCTIONS[@]}"; do
  bin="$LAMBDA_DIR/$fn/bootstrap"
  if [[ ! -f "$bin" ]]; then
    echo "build: missing $bin" >&2; status=1; continue
  fi
  machine="$(od -An -t x1 -j 18 -N 1 "$bin" | tr -d ' \n')"
  if [[ "$machine" != "$ELF_MACHINE" ]]; then
    echo "build: $bin is not an $ARCH ELF binary (e_machine 0x$machine)" >&2; status=1; continue
  fi
  newest="$(grep -aoE 'GLIBC_2\.[0-9]+' "$bin" | sed 's/GLIBC_2\.//' | sort -n | tail -1 || true)"
  if [[ -n "$newest" ]] && (( newest > MAX_GLIBC_MINOR )); then
    echo "build: $bin needs GLIBC_2.$newest but provided.al2023 has glibc 2.$MAX_GLIBC_MINOR" >&2
    echo "       (build with zig instead: cargo lambda build --profile lambda --x86-64, or on a CI runner)" >&2
    status=1; continue
  fi
  # ELF e_type: 02 = EXEC (linked -no-pie), 03 = DYN (PIE).
  case "$(od -An -t x1 -j 16 -N 1 "$bin" | tr -d ' \n')" in 02) kind=no-pie ;; *) kind=pie ;; esac
  printf 'build: %-7s %s (%s bytes, %s, needs glibc 2.%s)\n' "$fn" "${bin#"$ROOT"/}" "$(stat -c %s "$bin")" "$kind" "${newest:-?}"
done
exit "$status"
