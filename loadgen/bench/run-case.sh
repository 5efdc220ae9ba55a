#!/usr/bin/env bash
# One measurement: start a fresh release engine pinned to CPU 1, run the generator pinned to CPU 0
# against it, save the generator's JSON report (and the engine's /metrics) under $OUT/NAME.*, stop
# the engine with SIGTERM.
#   run-case.sh NAME "ENGINE FLAGS" "LOADGEN FLAGS"
# Environment: OUT (default /tmp/sluice-bench), ENGINE_CPU (1), GEN_CPU (0), ENGINE_CONFIG (a TOML
# file for `sluice run -c`, optional), NICE (-10: engine and generator run at this nice value so
# that other work on the shared machine, such as fuzzers, yields to them), QUIET_WAIT (60: seconds to
# wait at most for the engine's CPU to be under 10% busy before starting).
set -euo pipefail
name=$1; engine_flags=$2; gen_flags=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/sluice-bench}; mkdir -p "$out"
cpu_busy() { # percent busy of CPU $1 over one second
  local a b; a=$(grep "^cpu$1 " /proc/stat); sleep 1; b=$(grep "^cpu$1 " /proc/stat)
  python3 -c "import sys;a=list(map(int,sys.argv[1].split()[1:9]));b=list(map(int,sys.argv[2].split()[1:9]));d=[y-x for x,y in zip(a,b)];t=sum(d);print(int(100*(t-d[3]-d[4])/max(t,1)))" "$a" "$b"; }
for _ in $(seq "${QUIET_WAIT:-60}"); do [[ $(cpu_busy "${ENGINE_CPU:-1}") -lt 10 ]] && break; done
nice=${NICE:--10}
# With autogroup scheduling (on here), nice acts only inside a session: raise this session's group too.
[[ -w /proc/$$/autogroup ]] && echo "$nice" >"/proc/$$/autogroup" 2>/dev/null || true
config=()
[[ -n "${ENGINE_CONFIG:-}" ]] && config=(-c "$ENGINE_CONFIG")
nice -n "$nice" taskset -c "${ENGINE_CPU:-1}" "$root/target/release/sluice" run "${config[@]}" --listen 127.0.0.1:0 --threads 1 --no-pin \
    --admin 127.0.0.1:0 $engine_flags >"$out/$name.engine.out" 2>"$out/$name.engine.err" &
engine=$!
for _ in $(seq 100); do grep -q 'sluice ready' "$out/$name.engine.out" 2>/dev/null && break; sleep 0.1; done
line=$(grep 'sluice ready' "$out/$name.engine.out")
stratum=$(sed -E 's/.*stratum=([^ ]+).*/\1/' <<<"$line")
admin=$(sed -E 's/.*admin=([^ ]+).*/\1/' <<<"$line")
 nice -n "$nice" taskset -c "${GEN_CPU:-0}" "$root/target/release/sluice-loadgen" --target "$stratum" --engine-pid "$engine" --engine-cpus "${ENGINE_CPU:-1}" $gen_flags \
    >"$out/$name.json" 2>"$out/$name.gen.err" || echo "generator failed: $(cat "$out/$name.gen.err")" >&2
curl -s "http://$admin/metrics" >"$out/$name.metrics" || true
kill -TERM "$engine"; wait "$engine" || true
echo "$out/$name.json"
