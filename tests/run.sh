#!/usr/bin/env bash
# The test command (README "Run the tests"): Rust unit + integration tests, then the
# end-to-end suite with the real pocket-js client and a real EVM node (ganache, from npm).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked
cargo test --locked
( cd tests/e2e && npm ci --no-audit --no-fund )
cd tests/e2e
MESHD_BIN="$(cd ../.. && pwd)/target/debug/meshd" node --test
