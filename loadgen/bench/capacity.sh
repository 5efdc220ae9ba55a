#!/usr/bin/env bash
# Capacity of one box (issue 11): a fleet of ENGINES `sluice stratum` processes sharing one port
# (SO_REUSEPORT across processes), one `sluice jobmanager` and a `redis-server`, all release builds,
# then the load generator as several processes through that port.
#   capacity.sh idle   ENGINES CONNECTIONS      hold CONNECTIONS idle; per-engine and total memory
#   capacity.sh submit ENGINES CONNECTIONS RATE  CPU per submit at RATE submits/s
# Prints one JSON line per run (also saved under $OUT); each engine's connection count, RSS and
# CPU come from /proc and its admin /metrics. Environment: OUT (default /tmp/sluice-capacity),
# DURATION (idle: 20 s held; submit: 15 s window), GEN_PROCESSES (idle: 6, submit: 1).
# Build first: cargo build --release -p sluice -p sluice-loadgen
set -euo pipefail
mode=$1; engines=$2; conns=$3; rate=${4:-0}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
out=${OUT:-/tmp/sluice-capacity}; mkdir -p "$out"
run=$(mktemp -d "$out/run.XXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_ready() { # FILE: waits for the role's "sluice ready" line and prints it
  for _ in $(seq 300); do grep -m1 'sluice ready' "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no 'sluice ready' in $1: $(tail -5 "${1%.out}.err")" >&2; return 1; }

redis_port=$(free_port); stratum_port=$(free_port)
redis-server --port "$redis_port" --save '' --appendonly no --dir "$run" >"$run/redis.log" 2>&1 &
pids+=($!); redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url=redis://127.0.0.1:$redis_port

config() { # NAME: one role's configuration file (its own spool)
  cat >"$run/$1.toml" <<EOF
[redis]
fleet_key = "capacity-bench-fleet-key-0123456789abcdef"
[share_log]
spool_path = "$run/$1.spool"
[engine]
threads = 1
pin_threads = false
[vardiff]
enabled = false
[[listeners]]
address = "127.0.0.1:$stratum_port"
start_difficulty = 1e-9
min_difficulty = 1e-9
[limits]
max_connections = 20000
max_connections_per_ip = 2000
[admin]
listen = "127.0.0.1:0"
EOF
  echo "$run/$1.toml"; }

"$bin/sluice" jobmanager --redis "$url" --prefix cap --id jm-1 --config "$(config jm-1)" \
  --block-interval 0 --network-difficulty 1000000 >"$run/jm-1.out" 2>"$run/jm-1.err" &
pids+=($!)
wait_ready "$run/jm-1.out" >/dev/null
engine_pids=(); admins=()
for i in $(seq "$engines"); do
  "$bin/sluice" stratum --redis "$url" --prefix cap --id "e-$i" --config "$(config "e-$i")" \
    >"$run/e-$i.out" 2>"$run/e-$i.err" &
  pids+=($!); engine_pids+=($!)
  line=$(wait_ready "$run/e-$i.out")
  admins+=("$(sed -E 's/.*admin=([^ ]+).*/\1/' <<<"$line")")
done
# Every engine has its first job before the first miner connects.
sleep 2

# Samples each engine's connections and RSS, and every generator process's RSS, every second.
sample() {
  while :; do
    row=$(date +%s)
    for i in "${!engine_pids[@]}"; do
      c=$(curl -s "http://${admins[$i]}/metrics" | awk '$1=="sluice_connections"{print $2}')
      r=$(awk '/VmRSS/{print $2}' "/proc/${engine_pids[$i]}/status" 2>/dev/null || echo 0)
      row="$row e$((i+1)):${c:-0}:${r:-0}"
    done
    g=0; for p in $(pgrep -f 'sluice-loadgen' || true); do
      k=$(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || true); g=$((g + ${k:-0})); done
    m=$(redis-cli -p "$redis_port" info memory 2>/dev/null | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
    echo "$row redis:${m:-0} gen:$g"; sleep 1
  done; }
sample >"$run/samples.txt" &
sampler=$!

pid_list=$(IFS=,; echo "${engine_pids[*]}")
redis_cpu0=$(awk '{print $14+$15}' "/proc/$redis_pid/stat")
if [[ $mode == idle ]]; then
  "$bin/sluice-loadgen" --target "127.0.0.1:$stratum_port" --connections "$conns" \
    --processes "${GEN_PROCESSES:-6}" --sources 127.0.0.1-127.0.0.60 --handshake-only \
    --duration "${DURATION:-20}" --handshake-timeout 300 --handshake-concurrency 128 \
    --engine-pid "$pid_list" >"$run/report.json" 2>"$run/gen.err"
else
  "$bin/sluice-loadgen" --target "127.0.0.1:$stratum_port" --connections "$conns" \
    --processes "${GEN_PROCESSES:-1}" --sources 127.0.0.1-127.0.0.40 --rate "$rate" \
    --duration "${DURATION:-15}" --mix valid=70,invalid=20,duplicate=5,stale=5 \
    --engine-pid "$pid_list" >"$run/report.json" 2>"$run/gen.err"
fi
redis_cpu1=$(awk '{print $14+$15}' "/proc/$redis_pid/stat")
kill "$sampler" 2>/dev/null || true
python3 - "$run" "$mode" "$engines" "$conns" "$rate" "$redis_cpu0" "$redis_cpu1" <<'EOF'
import json, os, sys
run, mode, engines, conns, rate, r0, r1 = sys.argv[1:]
rep = json.load(open(f"{run}/report.json"))
rows = [l.split() for l in open(f"{run}/samples.txt") if l.strip()]
# The sample with the most connections in total: the hold (idle) or the window (submit).
# Columns: time, one e<N>:CONNECTIONS:RSS_KIB per engine, redis:USED_BYTES, gen:RSS_KIB.
def total(row): return sum(int(c.split(":")[1]) for c in row[1:-2])
peak = max(rows, key=total)
# Each engine's RSS is its most over the run (it still grows a little after the peak count).
per = [{"engine": c.split(":")[0], "connections": int(c.split(":")[1]),
        "rss_kib": max(int(r[1 + i].split(":")[2]) for r in rows)}
       for i, c in enumerate(peak[1:-2])]
tick = os.sysconf("SC_CLK_TCK")
out = {
    "mode": mode, "engines": int(engines), "connections_asked": int(conns), "rate": float(rate),
    "established": rep.get("connections", {}).get("established"),
    "per_engine_at_peak": per,
    "connections_at_peak": sum(p["connections"] for p in per),
    "engines_rss_kib_at_peak": sum(p["rss_kib"] for p in per),
    "generator_rss_kib_at_peak": int(peak[-1].split(":")[1]),
    "redis_used_bytes_at_peak": int(peak[-2].split(":")[1]),
    "engine": rep.get("engine"),
    "redis_cpu_s": (int(r1) - int(r0)) / tick,
    "latency_us": rep.get("latency_us"),
    "errors": rep.get("errors"),
    "handshakes_per_sec": rep.get("connections", {}).get("handshakes_per_sec"),
    "submits": rep.get("submits"),
    "run": run,
}
line = json.dumps(out)
print(line)
open(f"{run}/summary.json", "w").write(line + "\n")
EOF
