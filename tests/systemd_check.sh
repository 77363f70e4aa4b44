#!/usr/bin/env bash
# systemd unit check: `systemd-analyze verify` and the offline security review of
# systemd/meshd.service (installs systemd's tools with apt-get when missing), then the install
# script (systemd/install.sh) run into a throw-away root with the sample data dir: the files it
# installs, their modes, and the installed unit verified again. verify needs
# ExecStart's binary to exist, so a copy of the unit pointing at the freshly built binary is
# checked. verify reports unknown keys and bad values as warnings with exit code 0, so any
# line it prints about the unit is a failure here. The notify protocol itself (READY=1,
# WATCHDOG=1, STOPPING=1) is tested against the real binary in tests/ops.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd_check: installing systemd (for systemd-analyze)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
systemd-analyze --version | head -1

cargo build --locked
binary="$PWD/target/debug/meshd"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|^ExecStart=/usr/local/bin/meshd |ExecStart=$binary |" systemd/meshd.service > "$work/meshd.service"
grep -q "^ExecStart=$binary start --datadir /var/lib/meshd$" "$work/meshd.service" || { echo "systemd_check: ExecStart not found"; exit 1; }

passed=0
# 1. verify: exit 0 and nothing to say.
set +e
out=$(cd "$work" && systemd-analyze verify --man=no "$work/meshd.service" 2>&1)
code=$?
set -e
if [ "$code" -ne 0 ] || [ -n "$out" ]; then
  echo "systemd_check: systemd-analyze verify (exit $code):"; echo "$out"; exit 1
fi
echo "systemd_check: systemd-analyze verify: clean"; passed=$((passed + 1))

# 2. The directives the service relies on are there.
for directive in '^Type=notify$' '^WatchdogSec=' '^NotifyAccess=main$' '^Restart=on-failure$' '^StateDirectory=meshd$' \
  '^(User=|DynamicUser=yes)' '^NoNewPrivileges=yes$' '^ProtectSystem=strict$' '^MemoryMax=' '^TasksMax=' \
  '^Environment=.*RUST_MIN_STACK=' '^Environment=.*BLOCKING_MAX_THREADS=' '^ExecReload=.*-HUP' '^TimeoutStopSec='; do
  grep -Eq "$directive" systemd/meshd.service || { echo "systemd_check: missing $directive"; exit 1; }
done
echo "systemd_check: required directives present"; passed=$((passed + 1))

# 3. Offline security review: exposure must stay at or below 3.0 (0 = locked down, 10 = unsafe; --threshold counts tenths).
if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  if ! summary=$(cd "$work" && systemd-analyze security --offline=true --threshold=30 --no-pager "$work/meshd.service" 2>&1); then
    echo "$summary" | tail -30; echo "systemd_check: exposure above 3.0"; exit 1
  fi
  echo "systemd_check: $(echo "$summary" | grep 'Overall exposure')"; passed=$((passed + 1))
else
  echo "systemd_check: this systemd-analyze has no --offline security review; not counted"
fi
# 4. systemd/install.sh into a throw-away root (DESTDIR), with the sample data dir config/.
root="$work/root"
install_log=$(DESTDIR="$root" bash systemd/install.sh --binary "$binary" --datadir config --no-start 2>&1) || {
  echo "$install_log"; echo "systemd_check: install.sh failed"; exit 1
}
echo "$install_log" | grep -q 'listen_address is a loopback address' || { echo "$install_log"; echo "systemd_check: no listen_address warning"; exit 1; }
fail() { echo "systemd_check: install.sh: $*"; exit 1; }
[ -x "$root/usr/local/bin/meshd" ] || fail "binary not installed"
[ -f "$root/etc/systemd/system/meshd.service" ] || fail "unit not installed"
doc=$(sed -n 's|^Documentation=file://||p' systemd/meshd.service)
[ -n "$doc" ] && [ -f "$root$doc" ] || fail "the unit's Documentation= ($doc) is not installed"
[ -f "$root/usr/local/share/doc/meshd/docs/deploy.md" ] || fail "docs/*.md not installed"
[ "$(stat -c %a "$root/var/lib/meshd")" = 700 ] || fail "/var/lib/meshd is not 0700"
for d in key auth; do [ "$(stat -c %a "$root/var/lib/meshd/$d")" = 700 ] || fail "$d/ is not 0700"; done
for f in config.json key/key.json chains.json chains_name_map.json auth/servicer.json; do
  [ -f "$root/var/lib/meshd/$f" ] || fail "$f not copied"
  [ "$(stat -c %a "$root/var/lib/meshd/$f")" = 600 ] || fail "$f is not 0600"
done
extra=$(cd "$root/var/lib/meshd" && find . -mindepth 1 | sort | grep -Ev '^\./(key|auth|config\.json|chains\.json|chains_name_map\.json|key/key\.json|auth/servicer\.json)$' || true)
[ -z "$extra" ] || fail "copied files meshd does not read: $extra"
"$root/usr/local/bin/meshd" check-config --datadir "$root/var/lib/meshd" >/dev/null || fail "the installed data dir does not pass check-config"
sed -i "s|^ExecStart=/usr/local/bin/meshd |ExecStart=$root/usr/local/bin/meshd |" "$root/etc/systemd/system/meshd.service"
set +e
out=$(cd "$work" && systemd-analyze verify --man=no "$root/etc/systemd/system/meshd.service" 2>&1)
code=$?
set -e
[ "$code" -eq 0 ] && [ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify of the installed unit (exit $code)"; }
echo "systemd_check: install.sh into a throw-away root: files, modes and the installed unit verified"; passed=$((passed + 1))
echo "systemd_check: $passed passed, 0 failed"
