#!/usr/bin/env bash
# Shannon relays against a real EVM node (tests/shannon_evm.rs): start ganache from
# tests/e2e/node_modules (the Morse end-to-end suite's EVM node; `npm ci` first if missing) on a
# free loopback port, run the ignored test with MESHD_GANACHE_URL set, stop ganache.
# Called by tests/run.sh after the e2e `npm ci`; runnable alone from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ganache=tests/e2e/node_modules/.bin/ganache
if [ ! -x "$ganache" ]; then
  ( cd tests/e2e && npm ci --no-audit --no-fund )
fi
port="$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')"
log="$(mktemp)"
"$ganache" --server.host 127.0.0.1 --server.port "$port" --wallet.deterministic --wallet.totalAccounts 3 \
  --chain.chainId 1337 --logging.quiet >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
# Bounded: 600 tries of 0.1 s.
up=0
for _ in $(seq 1 600); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "ganache exited at start:" >&2; cat "$log" >&2; exit 1; fi
  sleep 0.1
done
if [ "$up" != 1 ]; then echo "ganache did not listen on 127.0.0.1:$port within 60 s:" >&2; cat "$log" >&2; exit 1; fi
echo "ganache on 127.0.0.1:$port (pid $pid)"
MESHD_GANACHE_URL="http://127.0.0.1:$port" cargo test --locked --test shannon_evm -- --ignored
