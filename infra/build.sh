#!/usr/bin/env bash
# Build the Lambda artifacts (ingest, rollup, api, notify, score, audit) with cargo-lambda into
#   <repo>/target/lambda/<function>/bootstrap
# for size checks and manual uploads. Deployment builds through `sam build` instead
# (infra/deploy.sh; the template's CodeUri is each function's crate, BuildMethod rust-cargolambda).
#
#   ARCH        arm64 (default) | x86_64. Must match the Architecture parameter used at deploy
#               (infra/deploy.sh reads the same ARCH and checks the binaries' ELF machine).
#   BUILD_VENV  virtualenv used for cargo-lambda when `cargo lambda` is not on PATH
#               (default .venv-build, relative to the repo root; pins in infra/requirements-build.txt)
#   Extra arguments are passed through to `cargo lambda build`.
#
# Architectures:
#   x86_64  `cargo lambda build --release --x86-64 --compiler cargo`: plain cargo and the host
#           linker, no zig. This is what these 2-core dev/CI machines build reliably. Because the
#           host linker links against the host glibc (Debian 12: 2.36) while Lambda's
#           provided.al2023 has glibc 2.34, the script checks the GLIBC_x symbol versions the
#           binaries need and fails if any is newer than 2.34.
#   arm64   `cargo lambda build --release --arm64 --output-format binary`: cross-compiles through
#           cargo-zigbuild, which needs (a) the aarch64-unknown-linux-gnu Rust std and (b) zig.
#           zig comes from the `ziglang` wheel (`pip install ziglang`; the cargo-lambda wheel
#           depends on it, so the venv has it). The Rust target is added with rustup if missing.
#           DESIGN.md §9 records that the aarch64 target cannot be installed on these machines,
#           i.e. that they build x86_64 only; treat arm64 as a CI-runner / laptop build. If
#           `rustup target add` fails, the script stops and says to use ARCH=x86_64 (and to deploy
#           with the same ARCH). Observed 2026-11-25 on a dev machine: `rustup target add` did
#           succeed and a dependency-free test workspace linked for aarch64 with zig; the real
#           workspace (aws-lc-sys, ring: C code compiled through zig cc) was not tried for arm64.
#
# CARGO_TARGET_DIR is honoured for compilation (e.g. a shared, incremental dir outside the clone);
# --lambda-dir pins the copied bootstrap binaries to <repo>/target/lambda regardless.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ARCH="${ARCH:-arm64}"
VENV="${BUILD_VENV:-.venv-build}"
[[ "$VENV" == /* ]] || VENV="$ROOT/$VENV"
REQS="infra/requirements-build.txt"
LAMBDA_DIR="$ROOT/target/lambda"
FUNCTIONS=(ingest rollup api notify score audit web)
MAX_GLIBC_MINOR=34 # provided.al2023 ships glibc 2.34

case "$ARCH" in
  arm64)  RUST_TARGET=aarch64-unknown-linux-gnu; ELF_MACHINE=b7 ;; # EM_AARCH64
  x86_64) RUST_TARGET=x86_64-unknown-linux-gnu;  ELF_MACHINE=3e ;; # EM_X86_64
  *) echo "build: ARCH must be arm64 or x86_64, got '$ARCH'" >&2; exit 2 ;;
esac

# --- cargo-lambda: use the one on PATH, else the pinned wheel in $VENV -----------------------
if ! command -v cargo-lambda >/dev/null 2>&1; then
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
echo "build: $(cargo lambda --version) for $ARCH ($RUST_TARGET)" >&2

# --- per-architecture flags -----------------------------------------------------------------
if [[ "$ARCH" == arm64 ]]; then
  if ! rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
    echo "build: adding Rust target $RUST_TARGET" >&2
    if ! rustup target add "$RUST_TARGET"; then
      cat >&2 <<MSG
build: cannot install the $RUST_TARGET Rust target on this machine, so arm64 cannot be built here.
       Build and deploy x86_64 instead:   ARCH=x86_64 make build && ARCH=x86_64 make deploy
       or build arm64 on a CI runner / machine that has the aarch64 target and zig.
MSG
      exit 1
    fi
  fi
  ARCH_FLAGS=(--arm64)
else
  ARCH_FLAGS=(--x86-64 --compiler cargo)
fi

PKG_FLAGS=()
for fn in "${FUNCTIONS[@]}"; do PKG_FLAGS+=(-p "$fn"); done

set -x
cargo lambda build --release "${ARCH_FLAGS[@]}" --output-format binary \
  --lambda-dir "$LAMBDA_DIR" --locked "${PKG_FLAGS[@]}" "$@"
{ set +x; } 2>/dev/null

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
    echo "       (build with zig instead: cargo lambda build --release --x86-64, or on a CI runner)" >&2
    status=1; continue
  fi
  printf 'build: %-7s %s (%s bytes, needs glibc 2.%s)\n' "$fn" "${bin#"$ROOT"/}" "$(stat -c %s "$bin")" "${newest:-?}"
done
exit "$status"
