#!/usr/bin/env python3
"""Medians of the sluice-loadgen reports in a directory, per case (files CASE.N.json), with how busy
each CPU was with other work during the window (CPU busy minus the engine's or generator's share)."""
import json, statistics, sys, glob, os, re

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/sluice-bench"
cases = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    m = re.match(r"(.*)\.(\d+)\.json$", os.path.basename(f))
    if not m:
        continue
    try:
        r = json.load(open(f))
    except Exception:
        continue
    cases.setdefault(m.group(1), []).append((int(m.group(2)), r, f))

def g(r, path):
    for p in path.split("."):
        if r is None:
            return None
        r = r.get(p) if isinstance(r, dict) else None
    return r

fields = [
    ("est", "connections.established"),
    ("hs/s", "connections.handshakes_per_sec"),
    ("hs_p50ms", "connections.handshake_ms.p50"),
    ("hs_p99ms", "connections.handshake_ms.p99"),
    ("sent/s", None),
    ("ans/s", "submits.per_sec"),
    ("lat_p50", "latency_us.p50"),
    ("lat_p99", "latency_us.p99"),
    ("rx_p50", "latency_rx_us.p50"),
    ("rx_p99", "latency_rx_us.p99"),
    ("eng_us", "engine.cpu_us_per_submit"),
    ("core1_us", "engine.cores_busy_us_per_submit"),
    ("eng_us_hs", "engine.cpu_us_per_handshake"),
    ("rss/conn", "engine.rss_per_connection"),
    ("gen_us", "generator_cpu_us_per_submit"),
    ("spread_p50", "clean_notify_spread_ms.p50"),
    ("spread_max", "clean_notify_spread_ms.max"),
    ("jobs", "clean_notify_spread_ms.jobs"),
    ("errors", "errors.total"),
]
for case, runs in sorted(cases.items()):
    print(f"== {case} ({len(runs)} runs)")
    rows = []
    for i, r, f in sorted(runs):
        w = g(r, "submits.window_secs") or 1
        sent = g(r, "submits.sent") or 0
        row = {}
        for name, path in fields:
            row[name] = sent / w if name == "sent/s" else g(r, path)
        row["span_s"] = g(r, "submits.answer_span_secs")
        cpus = {c["cpu"]: c["busy_pct"] for c in (r.get("cpus") or [])}
        # Others' share of each CPU: busy minus the generator (CPU 0) or engine (CPU 1) process.
        total_win = g(r, "submits.measured_secs") or w
        gen = (g(r, "generator_cpu_us_per_submit") or 0) * sent / 1e6
        eng = (g(r, "engine.cpu_us") or 0) / 1e6
        row["cpu0%"] = cpus.get(0)
        row["cpu1%"] = cpus.get(1)
        row["others0%"] = round(cpus.get(0, 0) - 100 * gen / total_win, 0) if sent else None
        row["others1%"] = round(cpus.get(1, 0) - 100 * eng / total_win, 0) if sent else None
        rows.append(row)
        print(f"  run {i}: " + " ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    med = {}
    for k in rows[0]:
        vals = [x[k] for x in rows if isinstance(x.get(k), (int, float))]
        if vals:
            med[k] = round(statistics.median(vals), 2)
    print("  median: " + " ".join(f"{k}={v}" for k, v in med.items()))
