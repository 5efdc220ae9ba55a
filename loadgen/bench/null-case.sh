#!/usr/bin/env bash
# The floor: the do-nothing responder (examples/null_pool.rs: plain tokio, answers every submit
# `true`, no hashing) on CPU 1 under the same generator on CPU 0.
#   null-case.sh NAME "LOADGEN FLAGS"     (build: cargo build --release -p sluice-loadgen --example null_pool)
set -euo pipefail
name=$1; gen=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/sluice-bench}; mkdir -p "$out"
nice=${NICE:--10}
[[ -w /proc/$$/autogroup ]] && echo "$nice" >"/proc/$$/autogroup" 2>/dev/null || true
nice -n "$nice" taskset -c "${ENGINE_CPU:-1}" "$root/target/release/examples/null_pool" 127.0.0.1:0 >"$out/$name.null.out" &
pool=$!
for _ in $(seq 50); do grep -q 'null-pool ready' "$out/$name.null.out" 2>/dev/null && break; sleep 0.1; done
stratum=$(sed -E 's/.*stratum=([^ ]+).*/\1/' "$out/$name.null.out")
nice -n "$nice" taskset -c "${GEN_CPU:-0}" "$root/target/release/sluice-loadgen" --target "$stratum" --engine-pid "$pool" \
    --engine-cpus "${ENGINE_CPU:-1}" $gen >"$out/$name.json" 2>"$out/$name.gen.err"
kill "$pool"; wait "$pool" 2>/dev/null || true
echo "$out/$name.json"
