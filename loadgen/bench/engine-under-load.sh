#!/usr/bin/env bash
# The measurements of BENCHMARKS.md "Engine under load (sluice-loadgen)": engine on CPU 1, generator
# on CPU 0, release builds. Each case runs RUNS times (default 3) on a fresh engine; reports go to
# $OUT (default /tmp/sluice-bench). Build first: cargo build --release -p sluice -p sluice-loadgen
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-3}
case_=${1:-all}
S="--sources 127.0.0.1-127.0.0.40"
# Tiny share difficulty (about 1 hash in 4 meets it), no vardiff, blocks practically never found by
# the generator, no simulated network blocks unless asked.
E="--start-difficulty 1e-9 --min-difficulty 1e-9 --no-vardiff --network-difficulty 1000000"
M="--mix valid=70,invalid=20,duplicate=5,stale=5"
run() { for i in $(seq "$runs"); do top -bn1 | head -12 >"${OUT:-/tmp/sluice-bench}/$1.$i.top" 2>/dev/null || true
        "$here/run-case.sh" "$1.$i" "$2" "$3"; done; }
want() { [[ $case_ == all || $case_ == "$1" ]]; }
if want rate; then
  run rate-1k  "$E --block-interval 0" "--connections 1000  $S --rate 10000 --duration 15 $M"
  run rate-10k "$E --block-interval 0" "--connections 10000 $S --rate 10000 --duration 15 $M"
fi
if want saturation; then
  run sat-1k-100k "$E --block-interval 0 --refresh-interval 5" "--connections 1000 $S --rate 100000 --duration 10 $M"
  run sat-200-100k "$E --block-interval 0 --refresh-interval 5" "--connections 200 $S --rate 100000 --duration 10 $M"
fi
if want spread; then
  run spread-idle-10k "$E --block-interval 5" "--connections 10000 $S --handshake-only --duration 30"
  run spread-load-10k "$E --block-interval 5" "--connections 10000 $S --rate 10000 --duration 30 $M"
fi
if want handshake; then
  run handshake-10k "$E --block-interval 0" "--connections 10000 $S --handshake-only --duration 2"
  run handshake-10k-c1024 "$E --block-interval 0" "--connections 10000 $S --handshake-only --duration 2 --handshake-concurrency 1024"
fi
if want max; then
  ENGINE_CONFIG="$here/max-connections.toml" run max-conns "$E --block-interval 0" \
    "--connections 19995 --processes 2 $S --handshake-only --duration 3 --handshake-timeout 20"
fi
