#!/usr/bin/env bash
# Issue F: the Spacemesh v2 JSON API proxy's CORS headers checked by a real browser. Headless
# Chromium loads a page from one loopback port that fetches the proxy (api_listen) on another,
# including a preflighted POST, plus a control fetch to a listener without CORS that the
# browser must block (tests/spacemesh.rs `cors_from_headless_chromium`). Installs Debian's
# `chromium` when no Chromium is found; set CHROMIUM=/path/to/chrome to use another build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CHROMIUM:-}" ]; then
  for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then CHROMIUM=$(command -v "$candidate"); break; fi
  done
fi
if [ -z "${CHROMIUM:-}" ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  CHROMIUM=$(command -v chromium)
fi
echo "using $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
export CHROMIUM
timeout 600 cargo test --locked --test spacemesh -- --ignored cors_from_headless_chromium --nocapture
