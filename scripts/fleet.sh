#!/usr/bin/env bash
# A whole fleet on this box, as the fault tests run it (docs/DEPLOY.md, "One box in one command"):
# redis-server over TLS with the shipped ACL users, HAProxy on the shipped haproxy.cfg, 3 engines
# and 2 jobmanagers on the simulated chain. Prints where miners connect and the sluicectl command
# line (with its environment), and runs until Ctrl-C, which stops every process.
# Arguments go to sluice-fleet: --engines N, --dir DIR (default /tmp/sluice-fleet), --durable-ack,
# --sentinels (a replica and 3 Sentinels on the shipped sentinel.conf; the roles follow the master).
# Needs redis-server, haproxy and openssl (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p sluice --bin sluice -p sluicectl --bin sluicectl \
    -p sluice-loadgen --bin sluice-loadgen -p sluice-testkit --bin sluice-fleet
export PATH="$PWD/target/release:$PATH"
if [ "$#" -eq 0 ]; then
    set -- --engines 3 --dir /tmp/sluice-fleet
fi
exec target/release/sluice-fleet "$@"
