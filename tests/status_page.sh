#!/usr/bin/env bash
# Status page check: meshd with its simulators, the page driven by Debian's headless
# Chromium through playwright-core (tests/status/, no browser download). Installs chromium
# (apt) and the npm package when missing. Leaves a screenshot per state under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "status_page: installing chromium (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
/usr/bin/chromium --version
( cd tests/status && npm ci --no-audit --no-fund --loglevel=error )

cargo test --locked --test status_page -- --ignored --nocapture
for png in status-page status-dead-letters status-servicer-down; do
  test -s "target/$png.png"
done
echo "status_page: screenshots at target/status-page.png (healthy), target/status-dead-letters.png, target/status-servicer-down.png"
