#!/usr/bin/env bash
# Status page check (issue D): meshd with its simulators, the page driven by Debian's headless
# Chromium through playwright-core (tests/status/, no browser download). Installs chromium
# (apt) and the npm package when missing. Leaves target/status-page.png as an artifact.
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
test -s target/status-page.png
echo "status_page: screenshot at target/status-page.png"
