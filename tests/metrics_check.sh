#!/usr/bin/env bash
# Prometheus exposition check: scrape a live meshd stack (simulators + the meshd
# binary, via tests/ops.rs, which writes the scrape to target/tmp/metrics-scrape.txt) and run
# the real `promtool check metrics` (Debian package `prometheus`, installed if missing) on it.
# The same for a Spacemesh gateway's scrape (tests/spacemesh.rs) and a Shannon edge's
# (tests/shannon.rs). Then check that every metric
# the Grafana dashboard (config/grafana/meshd.json) queries is in one of the scrapes and that
# every query honours the `region` template variable.
#
# promtool's linter flags exactly two families, on purpose: `pocketcore_geo_mesh_relay_count`
# and `pocketcore_geo_mesh_error_count` are counters without a `_total` suffix. Those are the
# incumbent Geo-Mesh names (its Go client exposes the very same lines) and existing dashboards
# query them, so they are kept. The script accepts exactly those lint lines and nothing else,
# and checks the rest of the scrape with no lint finding at all.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "metrics_check: installing promtool (Debian package prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -1

cargo test --locked --test ops metrics_scrape_has_the_incumbent_families_and_meshd_gauges -- --exact
scrape=target/tmp/metrics-scrape.txt
test -s "$scrape" || { echo "metrics_check: no scrape at $scrape"; exit 1; }
echo "metrics_check: scrape has $(grep -vc '^#' "$scrape") samples"

# 1. The whole scrape: parses (exit 0 or 3 = lint findings only), and the only findings are
#    the two incumbent counter names.
set +e
findings=$(promtool check metrics < "$scrape" 2>&1)
code=$?
set -e
expected='pocketcore_geo_mesh_error_count counter metrics should have "_total" suffix
pocketcore_geo_mesh_error_count non-histogram and non-summary metrics should not have "_count" suffix
pocketcore_geo_mesh_relay_count counter metrics should have "_total" suffix
pocketcore_geo_mesh_relay_count non-histogram and non-summary metrics should not have "_count" suffix'
if [ "$code" -ne 0 ] && [ "$code" -ne 3 ]; then
  echo "metrics_check: promtool could not parse the scrape (exit $code):"; echo "$findings"; exit 1
fi
if [ "$(printf '%s\n' "$findings" | sort)" != "$(printf '%s\n' "$expected" | sort)" ]; then
  echo "metrics_check: unexpected promtool findings (exit $code):"; echo "$findings"; exit 1
fi
echo "metrics_check: promtool on the full scrape: only the 4 expected lint lines for the incumbent counter names"

# 2. Everything else must be lint-clean.
filtered=$(grep -Ev '^(# (HELP|TYPE) )?pocketcore_geo_mesh_(relay|error)_count[ {]' "$scrape")
if ! out=$(printf '%s\n' "$filtered" | promtool check metrics 2>&1); then
  echo "metrics_check: promtool findings on meshd's own metrics:"; echo "$out"; exit 1
fi
[ -z "$out" ] || { echo "metrics_check: promtool printed: $out"; exit 1; }
echo "metrics_check: promtool on the rest of the scrape: clean"

# 2b. A Spacemesh gateway's scrape (meshd_spacemesh_*), from tests/spacemesh.rs: lint-clean too.
cargo test --locked --test spacemesh publishes_survive_a_node_outage -- --exact
sm_scrape=target/tmp/metrics-scrape-spacemesh.txt
grep -q '^meshd_spacemesh_publishes_total' "$sm_scrape" || { echo "metrics_check: no Spacemesh families in $sm_scrape"; exit 1; }
if ! out=$(promtool check metrics < "$sm_scrape" 2>&1); then
  echo "metrics_check: promtool findings on the Spacemesh scrape:"; echo "$out"; exit 1
fi
[ -z "$out" ] || { echo "metrics_check: promtool printed on the Spacemesh scrape: $out"; exit 1; }
echo "metrics_check: promtool on the Spacemesh gateway scrape: clean ($(grep -c '^meshd_spacemesh_' "$sm_scrape") samples)"

# 2c. A Shannon edge's scrape (meshd_shannon_*), from tests/shannon.rs (needs redis-server):
#     lint-clean apart from the same two incumbent counter names.
cargo test --locked --test shannon relays_are_verified_signed_mined_committed_and_handed_to_redis_streams -- --exact
sh_scrape=target/tmp/metrics-scrape-shannon.txt
grep -q '^meshd_shannon_relays_served_total' "$sh_scrape" || { echo "metrics_check: no Shannon families in $sh_scrape"; exit 1; }
sh_filtered=$(grep -Ev '^(# (HELP|TYPE) )?pocketcore_geo_mesh_(relay|error)_count[ {]' "$sh_scrape")
if ! out=$(printf '%s\n' "$sh_filtered" | promtool check metrics 2>&1); then
  echo "metrics_check: promtool findings on the Shannon scrape:"; echo "$out"; exit 1
fi
[ -z "$out" ] || { echo "metrics_check: promtool printed on the Shannon scrape: $out"; exit 1; }
echo "metrics_check: promtool on the Shannon edge scrape: clean ($(grep -c '^meshd_shannon_' "$sh_scrape") samples)"

# 3. The dashboard.
python3 - "$scrape" config/grafana/meshd.json "$sm_scrape" <<'PY'
import json, re, sys
scrape, path, sm_scrape = sys.argv[1], sys.argv[2], sys.argv[3]
families = set()
for f in (scrape, sm_scrape):  # the relay node's scrape and a Spacemesh gateway's
    for line in open(f):
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            families.add(m.group(1))
dash = json.load(open(path))
variables = {v["name"]: v for v in dash["templating"]["list"]}
assert "region" in variables, "the dashboard needs a region template variable"
assert "region" in variables["region"]["query"]["query"], variables["region"]
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "no queries"
problems = []
used = set()
for e in exprs:
    if 'region=~"$region"' not in e:
        problems.append(f"query ignores $region: {e}")
    for name in re.findall(r"\b((?:pocketcore_geo_mesh|meshd)_[a-z_]*[a-z])\b", e):
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
        used.add(base)
        if base not in families:
            problems.append(f"{name} is not in the scrape")
if problems:
    print("\n".join(problems)); sys.exit(1)
print(f"metrics_check: dashboard OK: {len(dash['panels'])} panels, {len(exprs)} queries, {len(used)} metric families, all filtered by region")
PY
echo "metrics_check: 4 passed, 0 failed"
