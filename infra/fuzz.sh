#!/usr/bin/env bash
# `make fuzz`: installs cargo-fuzz (from crates.io, cached) and runs every fuzz target in
# tests/fuzz for a bounded time. Fails on any crash, panic, leak or timeout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-60}"
tools="${USAGE_TOOLS_DIR:-$HOME/.cache/usage-intel/tools}"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $tools (once)"
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$tools" --quiet
fi
# The stable compiler ships the sanitizer runtimes; this unlocks the -Z flags cargo-fuzz passes.
export RUSTC_BOOTSTRAP=1
cd "$root/tests/fuzz"
corpus_root="${FUZZ_CORPUS_DIR:-$HOME/.cache/usage-intel/fuzz-corpus}"
for target in $(cargo fuzz list --fuzz-dir .); do
  corpus="$corpus_root/$target"
  mkdir -p "$corpus"
  echo "fuzzing $target for ${seconds}s (corpus $corpus)"
  cargo fuzz run --fuzz-dir . -O "$target" "$corpus" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 2>&1 |
    grep -E "^(INFO: |#|Done|stat::number_of_executed_units|stat::peak_rss|==|SUMMARY|thread|panicked)" | grep -v "^#[0-9]*\s*\(NEW\|REDUCE\|pulse\)" || true
  test "${PIPESTATUS[0]}" -eq 0
done
