#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (stock kubectl), and the
# official Python client's tests, each against real `skiff` processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

step() { echo; echo "==> $*"; }
start=$(date +%s)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo build (the skiff binary the integration tests run)"
cargo build --workspace --bins --quiet

step "cargo test (unit and kubectl integration tests)"
cargo test --workspace --quiet 2>&1 | tee target/cargo-test.log | grep -v '^running 0 tests$' | grep -v '^$' || true
if grep -q -E '^test result: FAILED|error: test failed|could not compile' target/cargo-test.log; then
  echo "cargo test failed" >&2
  exit 1
fi

step "pytest (official Python client)"
python3 -m pytest -q tests/python

echo
echo "all tests passed in $(( $(date +%s) - start )) s"
