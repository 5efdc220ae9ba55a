//! What one generator process measured ([`Partial`]), how partials from several processes merge
//! (exactly: histograms travel as their recorded (value, count) pairs), and the final JSON report.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::mix::{Kind, Outcome};

/// An hdrhistogram (three significant figures) that serializes as its recorded (value, count)
/// pairs, where each value is the highest value equivalent to its bucket: recording the pairs into
/// another histogram puts every count back into the same bucket, so merging is exact.
#[derive(Debug, Clone)]
pub struct Hist(pub Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(Histogram::new(3).expect("3 significant figures is valid"))
    }
}

impl PartialEq for Hist {
    fn eq(&self, other: &Self) -> bool {
        self.pairs() == other.pairs()
    }
}

impl Hist {
    pub fn record(&mut self, value: u64) {
        // `record` grows the histogram as needed (`saturating_record` would clamp to its current top).
        if self.0.record(value).is_err() {
            self.0.saturating_record(value);
        }
    }

    pub fn pairs(&self) -> Vec<(u64, u64)> {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    pub fn from_pairs(pairs: &[(u64, u64)]) -> Hist {
        let mut h = Hist::default();
        for &(value, count) in pairs {
            if h.0.record_n(value, count).is_err() {
                h.0.saturating_record_n(value, count);
            }
        }
        h
    }

    pub fn merge(&mut self, other: &Hist) {
        self.0
            .add(&other.0)
            .expect("auto-resizing histograms always add");
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at a quantile (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    pub fn max(&self) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.max()
        }
    }
}

impl Serialize for Hist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.pairs().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(d)?;
        Ok(Hist::from_pairs(&pairs))
    }
}

/// Submits of one kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindCounts {
    pub sent: u64,
    pub answered: u64,
    pub accepted: u64,
    /// By answer: `"false"` or the error code.
    pub rejected: BTreeMap<String, u64>,
}

impl KindCounts {
    pub fn count(&mut self, outcome: Outcome, n: u64) {
        self.answered += n;
        match outcome {
            Outcome::Accepted => self.accepted += n,
            other => *self.rejected.entry(other.key()).or_default() += n,
        }
    }

    fn merge(&mut self, o: &KindCounts) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.accepted += o.accepted;
        merge_map(&mut self.rejected, &o.rejected);
    }
}

/// When the connections got one clean job (`clean_jobs = true`): the first and last arrival, in Unix
/// nanoseconds, by the kernel's receive timestamp (`SO_TIMESTAMPNS`) and by the time the generator
/// read it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Arrivals {
    pub first_ns: u64,
    pub last_ns: u64,
    pub first_read_ns: u64,
    pub last_read_ns: u64,
    pub receivers: u64,
}

impl Arrivals {
    pub fn one(kernel_ns: u64, read_ns: u64) -> Arrivals {
        Arrivals {
            first_ns: kernel_ns,
            last_ns: kernel_ns,
            first_read_ns: read_ns,
            last_read_ns: read_ns,
            receivers: 1,
        }
    }

    pub fn merge(&mut self, o: &Arrivals) {
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.first_read_ns = self.first_read_ns.min(o.first_read_ns);
        self.last_read_ns = self.last_read_ns.max(o.last_read_ns);
        self.receivers += o.receivers;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    /// connect() failed or timed out.
    pub connect: u64,
    /// The server refused configure/subscribe/authorize, or sent no job within the handshake timeout.
    pub handshake: u64,
    /// Established connections the server closed before the end.
    pub disconnects: u64,
    /// Submits unanswered within the response timeout.
    pub timeouts: u64,
    /// Submits still unanswered when the drain time ran out.
    pub unanswered_at_end: u64,
    /// Lines that were not JSON, answers to ids never sent, malformed notifies.
    pub protocol: u64,
    /// Answers other than the expected one, as `"kind:answer"` (e.g. `"valid:23"`).
    pub mismatches: BTreeMap<String, u64>,
    /// Batches of `--accepted-log` lines that could not be written.
    #[serde(default)]
    pub accepted_log: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect
            + self.handshake
            + self.disconnects
            + self.timeouts
            + self.unanswered_at_end
            + self.protocol
            + self.accepted_log
            + self.mismatches.values().sum::<u64>()
    }

    fn merge(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.handshake += o.handshake;
        self.disconnects += o.disconnects;
        self.timeouts += o.timeouts;
        self.unanswered_at_end += o.unanswered_at_end;
        self.protocol += o.protocol;
        self.accepted_log += o.accepted_log;
        merge_map(&mut self.mismatches, &o.mismatches);
    }
}

fn merge_map(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_default() += v;
    }
}

/// What `--reconnect` did: connections lost and connected again, and what their resumes gave back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconnects {
    /// Connections lost (closed by the server or errored) and connected again.
    pub reconnects: u64,
    /// Reconnects whose subscribe got back the extranonce1 the connection had (the session
    /// resumed), and those that got another (a fresh session).
    pub resumed_same_extranonce1: u64,
    pub resumed_fresh_extranonce1: u64,
    /// Resumed connections told the difficulty they had before, and those told another.
    pub resumed_same_difficulty: u64,
    pub resumed_other_difficulty: u64,
    /// Reconnects that gave up (no connection or handshake within the handshake timeout).
    pub failed: u64,
    /// Submits in flight when their connection was lost: never answered.
    pub unanswered: u64,
}

impl Reconnects {
    fn merge(&mut self, o: &Reconnects) {
        self.reconnects += o.reconnects;
        self.resumed_same_extranonce1 += o.resumed_same_extranonce1;
        self.resumed_fresh_extranonce1 += o.resumed_fresh_extranonce1;
        self.resumed_same_difficulty += o.resumed_same_difficulty;
        self.resumed_other_difficulty += o.resumed_other_difficulty;
        self.failed += o.failed;
        self.unanswered += o.unanswered;
    }
}

/// Everything one generator process measured; several merge into one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub connections_target: u64,
    pub established: u64,
    /// Unix ns of the first connect() and of the last completed handshake.
    pub first_connect_ns: Option<u64>,
    pub last_handshake_ns: Option<u64>,
    /// Connect to first `mining.notify`, in microseconds.
    pub handshake_us: Hist,
    pub offered_rate: f64,
    pub window_secs: f64,
    /// By kind name.
    pub kinds: BTreeMap<String, KindCounts>,
    /// Duplicates due before the connection had an accepted share on current work, sent as valid.
    pub duplicates_sent_as_valid: u64,
    /// Valid, invalid or duplicate shares answered 21 because a clean notify made their job stale
    /// while they were on their way (the notify had arrived when the answer did): right, not errors.
    pub stale_after_clean: u64,
    /// Write to answer, in microseconds.
    pub latency_us: Hist,
    /// Write to the kernel's receive timestamp of the answer, in microseconds: the latency without
    /// the generator's own delay in reading it.
    pub latency_rx_us: Hist,
    /// Clean jobs that arrived during the measured window, by job id.
    pub clean_jobs: BTreeMap<String, Arrivals>,
    pub errors: Errors,
    #[serde(default)]
    pub reconnect: Reconnects,
    /// CPU (user + system) this process used in the measured window.
    pub generator_cpu_us: u64,
    /// CPU this process used from start to the last handshake.
    pub generator_handshake_cpu_us: u64,
    /// Unix ns of the window's start, and of the last answer read.
    pub window_start_ns: Option<u64>,
    pub last_answer_ns: u64,
    /// Seconds from the window's start until every connection had drained (the span over which the
    /// CPU figures are taken).
    pub measured_secs: f64,
    pub hashes: u64,
}

impl Partial {
    pub fn kind(&mut self, kind: Kind) -> &mut KindCounts {
        self.kinds.entry(kind.name().to_owned()).or_default()
    }

    pub fn merge(&mut self, o: &Partial) {
        self.connections_target += o.connections_target;
        self.established += o.established;
        self.first_connect_ns = min_opt(self.first_connect_ns, o.first_connect_ns);
        self.last_handshake_ns = self.last_handshake_ns.max(o.last_handshake_ns);
        self.handshake_us.merge(&o.handshake_us);
        self.offered_rate += o.offered_rate;
        self.window_secs = self.window_secs.max(o.window_secs);
        for (k, v) in &o.kinds {
            self.kinds.entry(k.clone()).or_default().merge(v);
        }
        self.duplicates_sent_as_valid += o.duplicates_sent_as_valid;
        self.stale_after_clean += o.stale_after_clean;
        self.generator_handshake_cpu_us += o.generator_handshake_cpu_us;
        self.window_start_ns = min_opt(self.window_start_ns, o.window_start_ns);
        self.last_answer_ns = self.last_answer_ns.max(o.last_answer_ns);
        self.measured_secs = self.measured_secs.max(o.measured_secs);
        self.latency_us.merge(&o.latency_us);
        self.latency_rx_us.merge(&o.latency_rx_us);
        for (id, a) in &o.clean_jobs {
            self.clean_jobs
                .entry(id.clone())
                .and_modify(|x| x.merge(a))
                .or_insert(*a);
        }
        self.errors.merge(&o.errors);
        self.reconnect.merge(&o.reconnect);
        self.generator_cpu_us += o.generator_cpu_us;
        self.hashes += o.hashes;
    }

    pub fn sent(&self) -> u64 {
        self.kinds.values().map(|k| k.sent).sum()
    }

    pub fn answered(&self) -> u64 {
        self.kinds.values().map(|k| k.answered).sum()
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What was read from `/proc` about the server process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// CPU used in the measured window, in microseconds.
    pub cpu_us: u64,
    /// CPU used while connections were opened (connect to the last handshake), in microseconds.
    pub handshake_cpu_us: u64,
    /// Resident set before the first connection, after the handshakes, and at the end.
    pub rss_before: u64,
    pub rss_connected: u64,
    pub rss_end: u64,
}

/// One CPU's busy and total time over the measured window, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub cpu: usize,
    pub busy_us: u64,
    pub total_us: u64,
}

/// Whole-machine figures over the window: every CPU's use, and which CPUs the server runs on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Machine {
    pub cpus: Vec<CpuUse>,
    pub engine_cpus: Vec<usize>,
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

fn round(x: f64, places: i32) -> f64 {
    let p = 10f64.powi(places);
    (x * p).round() / p
}

/// The final report.
pub fn render(p: &Partial, engine: Option<&EngineStats>, machine: &Machine) -> Value {
    let handshake_secs = match (p.first_connect_ns, p.last_handshake_ns) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let answered = p.answered();
    let sent = p.sent();
    // Answers that come in the drain were still served: the rate is over the window or up to the
    // last answer, whichever is longer.
    let answer_span = match p.window_start_ns {
        Some(start) if p.last_answer_ns > start => {
            ((p.last_answer_ns - start) as f64 / 1e9).max(p.window_secs)
        }
        _ => p.window_secs,
    };
    let mut by_kind = serde_json::Map::new();
    for kind in Kind::ALL {
        if let Some(k) = p.kinds.get(kind.name()) {
            by_kind.insert(
                kind.name().into(),
                serde_json::to_value(k).expect("plain data"),
            );
        }
    }
    let mut spreads = Hist::default();
    let mut read_spreads = Hist::default();
    let mut min_receivers = u64::MAX;
    for a in p.clean_jobs.values() {
        spreads.record((a.last_ns - a.first_ns).max(1));
        read_spreads.record((a.last_read_ns - a.first_read_ns).max(1));
        min_receivers = min_receivers.min(a.receivers);
    }
    let jobs = p.clean_jobs.len();
    let engine_json = engine.map(|e| {
        let conns = p.established.max(1) as f64;
        json!({
            "cpu_us_per_submit": if answered > 0 { round(e.cpu_us as f64 / answered as f64, 2) } else { 0.0 },
            "cpu_us_per_handshake": round(e.handshake_cpu_us as f64 / conns, 2),
            "cpu_us": e.cpu_us,
            "rss_bytes": e.rss_end,
            "rss_before_bytes": e.rss_before,
            "rss_connected_bytes": e.rss_connected,
            "rss_per_connection": round(e.rss_connected.saturating_sub(e.rss_before) as f64 / conns, 1),
            "rss_per_connection_end": round(e.rss_end.saturating_sub(e.rss_before) as f64 / conns, 1),
        })
    });
    let cpus: Vec<Value> = machine
        .cpus
        .iter()
        .map(|c| {
            json!({
                "cpu": c.cpu,
                "busy_pct": if c.total_us > 0 { round(100.0 * c.busy_us as f64 / c.total_us as f64, 1) } else { 0.0 },
            })
        })
        .collect();
    let engine_cores_busy: u64 = machine
        .cpus
        .iter()
        .filter(|c| machine.engine_cpus.contains(&c.cpu))
        .map(|c| c.busy_us)
        .sum();
    let mut engine_json = engine_json;
    if let Some(e) = engine_json.as_mut() {
        if !machine.engine_cpus.is_empty() {
            e["cores_busy_us_per_submit"] = json!(if answered > 0 {
                round(engine_cores_busy as f64 / answered as f64, 2)
            } else {
                0.0
            });
        }
    }
    let mut errors = serde_json::to_value(&p.errors).expect("plain data");
    errors["total"] = json!(p.errors.total());
    json!({
        "connections": {
            "target": p.connections_target,
            "established": p.established,
            "handshakes_per_sec": if handshake_secs > 0.0 { round(p.established as f64 / handshake_secs, 1) } else { 0.0 },
            "handshake_secs": round(handshake_secs, 3),
            "handshake_ms": {
                "p50": p.handshake_us.quantile(0.5) as f64 / 1e3,
                "p99": p.handshake_us.quantile(0.99) as f64 / 1e3,
                "max": p.handshake_us.max() as f64 / 1e3,
            },
        },
        "submits": {
            "offered_rate": round(p.offered_rate, 1),
            "window_secs": p.window_secs,
            "sent": sent,
            "answered": answered,
            "per_sec": if answer_span > 0.0 { round(answered as f64 / answer_span, 1) } else { 0.0 },
            "sent_per_sec": if p.window_secs > 0.0 { round(sent as f64 / p.window_secs, 1) } else { 0.0 },
            "answer_span_secs": round(answer_span, 3),
            "measured_secs": round(p.measured_secs, 3),
            "duplicates_sent_as_valid": p.duplicates_sent_as_valid,
            "stale_after_clean": p.stale_after_clean,
            "by_kind": by_kind,
        },
        "latency_us": {
            "p50": p.latency_us.quantile(0.5),
            "p90": p.latency_us.quantile(0.9),
            "p99": p.latency_us.quantile(0.99),
            "p999": p.latency_us.quantile(0.999),
            "max": p.latency_us.max(),
            "samples": p.latency_us.len(),
        },
        "latency_rx_us": {
            "p50": p.latency_rx_us.quantile(0.5),
            "p99": p.latency_rx_us.quantile(0.99),
            "p999": p.latency_rx_us.quantile(0.999),
            "max": p.latency_rx_us.max(),
        },
        "clean_notify_spread_ms": {
            "jobs": jobs,
            "p50": if jobs > 0 { ms(spreads.quantile(0.5)) } else { 0.0 },
            "max": if jobs > 0 { ms(spreads.max()) } else { 0.0 },
            "read_p50": if jobs > 0 { ms(read_spreads.quantile(0.5)) } else { 0.0 },
            "read_max": if jobs > 0 { ms(read_spreads.max()) } else { 0.0 },
            "min_receivers": if jobs > 0 { min_receivers } else { 0 },
        },
        "engine": engine_json,
        "cpus": cpus,
        "errors": errors,
        "reconnect": p.reconnect,
        "generator_cpu_us_per_submit": if sent > 0 { round(p.generator_cpu_us as f64 / sent as f64, 2) } else { 0.0 },
        "generator_cpu_us_per_handshake": round(p.generator_handshake_cpu_us as f64 / p.established.max(1) as f64, 2),
        "generator_hashes": p.hashes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(seed: u64) -> Partial {
        let mut p = Partial {
            connections_target: 10,
            established: 9,
            first_connect_ns: Some(1_000 + seed),
            last_handshake_ns: Some(5_000 + seed),
            offered_rate: 50.0,
            window_secs: 3.0,
            duplicates_sent_as_valid: 1,
            generator_cpu_us: 100,
            hashes: 40,
            ..Partial::default()
        };
        for v in 1..=100 {
            p.latency_us.record(v * (seed + 1) * 37);
            p.handshake_us.record(v * 1000 + seed);
        }
        p.kind(Kind::Valid).sent = 7;
        p.kind(Kind::Valid).count(Outcome::Accepted, 6);
        p.kind(Kind::Valid).count(Outcome::Error(23), 1);
        p.kind(Kind::Stale).sent = 2;
        p.kind(Kind::Stale).count(Outcome::Error(21), 2);
        p.errors.mismatches.insert("valid:23".into(), 1);
        p.errors.timeouts = seed;
        p.clean_jobs
            .insert("a".into(), Arrivals::one(100 + seed, 200 + seed));
        p.clean_jobs
            .insert(format!("only{seed}"), Arrivals::one(7, 9));
        p
    }

    #[test]
    fn histograms_survive_serialization_exactly() {
        let mut h = Hist::default();
        for v in [
            1u64,
            2,
            3,
            999,
            1000,
            1001,
            123_456,
            9_999_999,
            3_600_000_000,
        ] {
            h.record(v);
            h.record(v);
        }
        assert_eq!(
            h.max(),
            h.0.highest_equivalent(3_600_000_000),
            "large values are kept"
        );
        assert_eq!(h.quantile(0.0), 1);
        let text = serde_json::to_string(&h).unwrap();
        let back: Hist = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(back.quantile(q), h.quantile(q));
        }
        assert_eq!(back.len(), 18);
    }

    #[test]
    fn merged_partials_equal_one_process_seeing_everything() {
        let (a, b) = (partial(1), partial(2));
        // Through JSON, as children send them.
        let a2: Partial = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let b2: Partial = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        let mut merged = Partial::default();
        merged.merge(&a2);
        merged.merge(&b2);

        let mut direct = Hist::default();
        for v in 1..=100u64 {
            direct.record(v * 2 * 37);
            direct.record(v * 3 * 37);
        }
        assert_eq!(merged.latency_us, direct, "histogram merge is exact");
        assert_eq!(merged.latency_us.quantile(0.99), direct.quantile(0.99));
        assert_eq!(merged.connections_target, 20);
        assert_eq!(merged.established, 18);
        assert_eq!(merged.first_connect_ns, Some(1_001));
        assert_eq!(merged.last_handshake_ns, Some(5_002));
        assert_eq!(merged.offered_rate, 100.0);
        assert_eq!(merged.window_secs, 3.0);
        assert_eq!(merged.kinds["valid"].sent, 14);
        assert_eq!(merged.kinds["valid"].accepted, 12);
        assert_eq!(merged.kinds["valid"].rejected["23"], 2);
        assert_eq!(merged.kinds["stale"].rejected["21"], 4);
        assert_eq!(merged.errors.mismatches["valid:23"], 2);
        assert_eq!(merged.errors.timeouts, 3);
        assert_eq!(merged.sent(), 18);
        assert_eq!(merged.answered(), 18);
        let a = merged.clean_jobs["a"];
        assert_eq!((a.first_ns, a.last_ns, a.receivers), (101, 102, 2));
        assert_eq!((a.first_read_ns, a.last_read_ns), (201, 202));
        assert_eq!(merged.clean_jobs.len(), 3);
        assert_eq!(merged.generator_cpu_us, 200);
        assert_eq!(merged.hashes, 80);
    }

    #[test]
    fn render_has_the_documented_shape() {
        let mut p = partial(0);
        p.merge(&partial(1));
        let engine = EngineStats {
            cpu_us: 360,
            handshake_cpu_us: 1800,
            rss_before: 1_000_000,
            rss_connected: 1_018_000,
            rss_end: 1_036_000,
        };
        let machine = Machine {
            cpus: vec![
                CpuUse {
                    cpu: 0,
                    busy_us: 500,
                    total_us: 1000,
                },
                CpuUse {
                    cpu: 1,
                    busy_us: 900,
                    total_us: 1000,
                },
            ],
            engine_cpus: vec![1],
        };
        let r = render(&p, Some(&engine), &machine);
        assert_eq!(r["engine"]["cores_busy_us_per_submit"], 50.0);
        assert_eq!(r["cpus"][0]["busy_pct"], 50.0);
        assert_eq!(r["cpus"][1]["busy_pct"], 90.0);
        assert_eq!(r["connections"]["target"], 20);
        assert_eq!(r["connections"]["established"], 18);
        assert!(r["connections"]["handshakes_per_sec"].as_f64().unwrap() > 0.0);
        assert!(r["connections"]["handshake_ms"]["p99"].as_f64().unwrap() > 0.0);
        assert_eq!(r["submits"]["sent"], 18);
        assert_eq!(r["submits"]["answered"], 18);
        assert_eq!(r["submits"]["per_sec"], 6.0);
        assert_eq!(r["submits"]["by_kind"]["valid"]["accepted"], 12);
        assert_eq!(r["submits"]["by_kind"]["valid"]["rejected"]["23"], 2);
        assert!(
            r["latency_us"]["p999"].as_u64().unwrap() >= r["latency_us"]["p50"].as_u64().unwrap()
        );
        assert_eq!(r["clean_notify_spread_ms"]["jobs"], 3);
        assert_eq!(r["engine"]["cpu_us_per_submit"], 20.0);
        assert_eq!(r["engine"]["rss_per_connection"], 1000.0);
        assert_eq!(r["engine"]["rss_bytes"], 1_036_000);
        assert_eq!(r["errors"]["mismatches"]["valid:23"], 2);
        assert_eq!(r["errors"]["total"], 3);
        assert!(r["generator_cpu_us_per_submit"].as_f64().unwrap() > 0.0);
        assert!(render(&Partial::default(), None, &Machine::default())["engine"].is_null());
    }
}
