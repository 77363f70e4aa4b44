#!/usr/bin/env bash
# Install meshd as a systemd service on this host (run as root on the board), or stage the same
# files under a throw-away root with DESTDIR=… (what tests/systemd_check.sh does in CI).
#
#   sudo bash systemd/install.sh --binary ./meshd --datadir ~/meshd-data [--no-start]
#
# --binary   the meshd binary to install as /usr/local/bin/meshd
# --datadir  your data dir: config.json, key/key.json, chains.json, auth/servicer.json and,
#            if present, chains_name_map.json and auth/mesh.json. Only these files are copied
#            to /var/lib/meshd (never README.md, grafana/ or dotfiles); files get mode
#            0600, directories 0700, all owned by the meshd user.
# --unit     the unit file (default: meshd.service next to this script)
# --docs     directory holding README.md and docs/ (default: the repository this script is in,
#            else next to the unit); installed to /usr/local/share/doc/meshd (the unit's
#            Documentation=)
# --no-start install and enable nothing: no daemon-reload, no enable --now
#
# The data dir is checked first (`meshd check-config`, exit 2 names the file and key) and again
# once installed, as the meshd user. Existing files in /var/lib/meshd (the relay queue under
# data/, a token meshd created) are kept; the listed files are replaced.
# With DESTDIR set nothing outside it is touched: no user is created, files are owned by the
# caller, systemctl is not run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
binary="" src="" unit="$here/meshd.service" docs="" start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --datadir) src=${2:?--datadir needs a directory}; shift 2 ;;
    --unit) unit=${2:?--unit needs a path}; shift 2 ;;
    --docs) docs=${2:?--docs needs a directory}; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$binary" ] && [ -f "$binary" ] || { echo "install.sh: --binary FILE is required (got '${binary}')" >&2; exit 2; }
[ -n "$src" ] && [ -d "$src" ] || { echo "install.sh: --datadir DIR is required (got '${src}')" >&2; exit 2; }
[ -f "$unit" ] || { echo "install.sh: unit file $unit not found" >&2; exit 2; }
if [ -z "$docs" ]; then
  if [ -f "$here/../README.md" ]; then docs="$here/.."; else docs="$here"; fi
fi
[ -f "$docs/README.md" ] || { echo "install.sh: $docs/README.md not found (--docs DIR)" >&2; exit 2; }

root=${DESTDIR:-}
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo), or set DESTDIR to stage into a directory" >&2; exit 2
fi

# The files meshd reads, relative to the data dir: required, then optional.
required=(config.json key/key.json chains.json auth/servicer.json)
optional=(chains_name_map.json auth/mesh.json)
for f in "${required[@]}"; do
  [ -f "$src/$f" ] || { echo "install.sh: $src/$f is missing (a data dir needs ${required[*]})" >&2; exit 2; }
done
"$binary" check-config --datadir "$src" >/dev/null || { echo "install.sh: fix $src first (meshd check-config --datadir $src)" >&2; exit 2; }
if grep -Eq '"listen_address"[[:space:]]*:[[:space:]]*"(127\.[0-9.]+|::1|localhost)"' "$src/config.json"; then
  echo "install.sh: warning: $src/config.json: listen_address is a loopback address: no client outside this host can send relays." >&2
  echo "install.sh:          set it to \"0.0.0.0\" (or the LAN address) unless a proxy on this host forwards the relay port." >&2
fi

if [ -n "$root" ]; then
  owner=(-o "$(id -u)" -g "$(id -g)")
else
  if ! id meshd >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/meshd --shell /usr/sbin/nologin meshd
  fi
  owner=(-o meshd -g meshd)
fi

install -D -m 0755 "$binary" "$root/usr/local/bin/meshd"
install -D -m 0644 "$unit" "$root/etc/systemd/system/meshd.service"
install -d -m 0755 "$root/usr/local/share/doc/meshd"
install -m 0644 "$docs/README.md" "$root/usr/local/share/doc/meshd/README.md"
if [ -d "$docs/docs" ]; then
  install -d -m 0755 "$root/usr/local/share/doc/meshd/docs"
  for doc in "$docs"/docs/*.md; do
    [ -f "$doc" ] && install -m 0644 "$doc" "$root/usr/local/share/doc/meshd/docs/"
  done
fi

data="$root/var/lib/meshd"
install -d -m 0700 "${owner[@]}" "$data" "$data/key" "$data/auth"
for f in "${required[@]}" "${optional[@]}"; do
  [ -f "$src/$f" ] || continue
  # Keys and tokens are secrets; the rest gets the same mode (meshd runs with UMask=0077).
  install -m 0600 "${owner[@]}" "$src/$f" "$data/$f"
done

# The installed dir must load as the service will load it.
if [ -n "$root" ]; then
  "$root/usr/local/bin/meshd" check-config --datadir "$data" >/dev/null
else
  runuser -u meshd -- /usr/local/bin/meshd check-config --datadir /var/lib/meshd >/dev/null
fi
echo "install.sh: installed /usr/local/bin/meshd, /etc/systemd/system/meshd.service, /usr/local/share/doc/meshd and /var/lib/meshd${root:+ under $root}"

if [ -z "$root" ] && [ "$start" -eq 1 ]; then
  systemctl daemon-reload
  systemctl enable --now meshd
  echo "install.sh: started; follow it with: journalctl -u meshd -f"
fi
