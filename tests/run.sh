#!/usr/bin/env bash
# The test command (README "The two commands"): Rust unit + integration tests; checks with real
# tools (promtool, systemd-analyze, headless Chromium); static musl builds and the aarch64 smoke
# test under qemu; then Shannon relays to a real EVM node and the end-to-end suite with the real
# pocket-js client and that EVM node (ganache, from npm). Each step installs what it lacks
# (apt-get, pip, cargo install, npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
# faketime drives the clock-before-1970 test (tests/queue_integrity.rs).
if ! command -v faketime >/dev/null 2>&1; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y faketime
fi
# redis-server receives the Shannon hand-off (tests/shannon.rs).
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi
cargo build --locked
cargo test --locked
bash tests/metrics_check.sh      # promtool check metrics on a live scrape
bash tests/systemd_check.sh      # systemd-analyze verify of the unit
bash tests/status_page.sh        # status page in headless Chromium (screenshot: target/status-page.png)
bash tests/spacemesh_cors.sh     # Spacemesh v2 proxy CORS from headless Chromium
bash tests/arm_smoke.sh          # static musl builds; aarch64 binary under qemu
( cd tests/e2e && npm ci --no-audit --no-fund )
bash tests/shannon_evm.sh        # Shannon relays through meshd to that suite's ganache (tests/shannon_evm.rs)
cd tests/e2e
MESHD_BIN="$(cd ../.. && pwd)/target/debug/meshd" node --test
