#!/usr/bin/env bash
# Issue E: static musl release binaries for x86_64 and aarch64 (cargo zigbuild), checked with
# `file`, and an aarch64 smoke test under qemu-user (tests/arm_smoke.rs). Installs what it needs.
# The emulated variant builds LMDB with -DMDB_USE_ROBUST=0 (qemu-user has no get_robust_list);
# that flag is set only here, in its own target dir, never for release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=""
command -v qemu-aarch64-static >/dev/null 2>&1 || need_apt="$need_apt qemu-user-static"
command -v file >/dev/null 2>&1 || need_apt="$need_apt file"
if [ -n "$need_apt" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $need_apt; fi
# The same interpreter that runs ziglang installs it; a Debian system Python refuses plain pip
# (PEP 668), hence the second form.
python3 -m ziglang version >/dev/null 2>&1 || python3 -m pip install ziglang || python3 -m pip install --break-system-packages ziglang
command -v cargo-zigbuild >/dev/null 2>&1 || cargo install cargo-zigbuild --locked
rustup target add aarch64-unknown-linux-musl x86_64-unknown-linux-musl

# The board build: without the `tools` feature (simulators, demos), as docs/deploy.md ships it.
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  cargo zigbuild --release --locked --no-default-features --target "$target"
  bin="target/$target/release/meshd"
  description=$(file -b "$bin")
  echo "$bin: $description"
  case "$description" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) echo "FAIL: $bin is not statically linked" >&2; exit 1 ;;
  esac
  size=$(stat -c %s "$bin")
  echo "size $target $size bytes"
done
# The size budget for a Pi (docs/deploy.md): 3,000,000 bytes for the aarch64 board build.
if [ "$size" -gt 3000000 ]; then
  echo "FAIL: the aarch64 binary is $size bytes, over the 3,000,000-byte budget" >&2
  exit 1
fi

CFLAGS_aarch64_unknown_linux_musl=-DMDB_USE_ROBUST=0 \
  cargo zigbuild --release --locked --no-default-features --target aarch64-unknown-linux-musl --target-dir target-qemu
arm_bin="$PWD/target-qemu/aarch64-unknown-linux-musl/release/meshd"
qemu-aarch64-static "$arm_bin" --version
MESHD_BIN="$arm_bin" MESHD_RUNNER=qemu-aarch64-static \
  cargo test --locked --test arm_smoke -- --ignored --nocapture
