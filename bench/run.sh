#!/usr/bin/env bash
# meshd benchmarks: bench/run.sh <scenario> [--option value …]   (see bench/README.md)
# Builds meshd as shipped (target/release) and the harness build (target/bench-fast: same
# sources, everything at opt-level 3), then runs the scenario in bench/bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
  echo "usage: bench/run.sh <startup|crypto|latency|durability|maxrate|drain|backlog|load500|slowloris|burst|chainlat|shstartup|shcrypto|shmaxrate|shload500|all> [--option value …]" >&2
  exit 2
fi
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  # The product exactly as Cargo.toml builds it (opt-level z, LTO, panic=abort, strip).
  cargo build --release --bins --example loadgen
  # The harness build: the simulators and the load generator must never be the bottleneck. All of
  # it at opt-level 3: the servicer simulator's JSON and HTTP at "z" capped the drain scenario
  # (bench/RESULTS.md, "executor pacing, backend pool, read buffers").
  cargo build --release --bins --example loadgen --target-dir target/bench-fast \
    --config 'profile.release.opt-level=3'
fi
exec python3 bench/bench.py "$@"
