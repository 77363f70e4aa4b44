#!/usr/bin/env bash
# The test command (README "Run the tests"): Rust unit + integration tests, static musl builds
# and the aarch64 smoke test under qemu, then the end-to-end suite with the real pocket-js
# client and a real EVM node (ganache, from npm). Each step installs what it lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked
cargo test --locked
bash tests/arm_smoke.sh
( cd tests/e2e && npm ci --no-audit --no-fund )
cd tests/e2e
MESHD_BIN="$(cd ../.. && pwd)/target/debug/meshd" node --test
