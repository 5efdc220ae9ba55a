//! `stats`: per-worker share counts and hash rate over the last minutes, from the share log's
//! per-minute rollups `P:roll:MINUTE` (fields `WORKER|accepted`, `WORKER|rejected`,
//! `WORKER|difficulty`), and rejects by reason from the newest entries of `P:shares`. A minute's
//! workers past the share log's cap (`share_log.max_rollup_workers`) are summed under
//! [`OTHER_WORKERS`], shown as one row of its own. Accepted shares an engine's share log lost
//! (`shares_dropped` in its service hash) are shown first, as an error.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use sluice_layout::registry;
use sluice_layout::shares::{OTHER_WORKERS, ROLLUP_WORKER_COUNT};

use super::Ctx;
use crate::error::Result;
use crate::format;
use crate::output::{self, Align, Table};
use crate::stream;

/// Rollups live two days (the share log's script sets that TTL): no window can be longer.
pub const MAX_MINUTES: u64 = 2 * 24 * 60;

/// Shares read to count rejects by reason: enough for minutes of a busy pool, bounded so a
/// `stats` never reads the whole stream.
const REASON_SAMPLE: usize = 10_000;

#[derive(Debug, Default, Clone, PartialEq)]
struct Worker {
    accepted: u64,
    rejected: u64,
    /// The sum of accepted shares' assigned difficulty.
    difficulty: f64,
}

/// A share at difficulty D takes D * 2^32 hashes on average.
fn hashrate(difficulty: f64, seconds: f64) -> f64 {
    difficulty * 4_294_967_296.0 / seconds
}

/// Adds one rollup hash. The worker name is everything before the last `|`: a name may hold a
/// `|`, the counter's name never does. Fields without a `|` (the hash's worker count) are not
/// workers.
fn add_rollup(workers: &mut HashMap<String, Worker>, rollup: HashMap<String, String>) {
    for (field, value) in rollup {
        if field == ROLLUP_WORKER_COUNT {
            continue;
        }
        let Some((name, counter)) = field.rsplit_once('|') else {
            continue;
        };
        let w = workers.entry(name.to_owned()).or_default();
        match counter {
            "accepted" => w.accepted += value.parse::<u64>().unwrap_or(0),
            "rejected" => w.rejected += value.parse::<u64>().unwrap_or(0),
            "difficulty" => w.difficulty += value.parse::<f64>().unwrap_or(0.0),
            _ => {}
        }
    }
}

/// Live stratum engines whose share log lost accepted shares since they started, by id, with
/// the count (from the registry: `P:services` by score, then each `P:svc:ID`).
fn engines_that_dropped(ctx: &mut Ctx, now_ms: u64) -> Result<Vec<(String, u64)>> {
    let ids: Vec<String> = ctx.redis.query(
        redis::cmd("ZRANGEBYSCORE")
            .arg(ctx.keys.services())
            .arg(format!("({now_ms}"))
            .arg("+inf"),
    )?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("HMGET")
            .arg(ctx.keys.service(id))
            .arg(registry::field::ROLE)
            .arg(registry::field::SHARES_DROPPED);
    }
    let found: Vec<(Option<String>, Option<String>)> = ctx.redis.query_pipe(&pipe)?;
    let mut dropped: Vec<(String, u64)> = ids
        .into_iter()
        .zip(found)
        .filter(|(_, (role, _))| role.as_deref() == Some(registry::ROLE_STRATUM))
        .filter_map(|(id, (_, n))| Some((id, n?.parse::<u64>().ok()?)))
        .filter(|(_, n)| *n > 0)
        .collect();
    dropped.sort();
    Ok(dropped)
}

pub fn show(ctx: &mut Ctx, minutes: u64) -> Result<()> {
    let now = ctx.redis.now_ms()?;
    let dropped = engines_that_dropped(ctx, now)?;
    let dropped_total: u64 = dropped.iter().map(|(_, n)| n).sum();
    let this_minute = now / 60_000;
    let first_minute = this_minute + 1 - minutes;
    // The window runs from the start of its first minute to now, so it includes the minute under
    // way (shares just written show at once) and rates divide by the time the rollups really
    // cover: between M-1 and M minutes, not a flat M.
    let start_ms = first_minute * 60_000;
    let seconds = ((now - start_ms) as f64 / 1000.0).max(1.0);

    let mut pipe = redis::pipe();
    for minute in first_minute..=this_minute {
        pipe.cmd("HGETALL").arg(ctx.keys.rollup(minute));
    }
    let rollups: Vec<HashMap<String, String>> = ctx.redis.query_pipe(&pipe)?;
    let mut workers = HashMap::new();
    for r in rollups {
        add_rollup(&mut workers, r);
    }
    let mut workers: Vec<(String, Worker)> = workers.into_iter().collect();
    // The biggest contributors first; the name breaks ties so the order is stable.
    // `~ other` last, after the named workers it is not one of.
    workers.sort_by(|a, b| {
        (a.0 == OTHER_WORKERS)
            .cmp(&(b.0 == OTHER_WORKERS))
            .then(b.1.difficulty.total_cmp(&a.1.difficulty))
            .then(b.1.accepted.cmp(&a.1.accepted))
            .then(a.0.cmp(&b.0))
    });
    let total = workers.iter().fold(Worker::default(), |mut t, (_, w)| {
        t.accepted += w.accepted;
        t.rejected += w.rejected;
        t.difficulty += w.difficulty;
        t
    });
    let shares_per_second = (total.accepted + total.rejected) as f64 / seconds;

    let sample = stream::newest(&mut ctx.redis, &ctx.keys.shares(), "+", REASON_SAMPLE)?;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_window = 0usize;
    for e in &sample {
        if e.get("ts").parse::<u64>().map_or(true, |ts| ts < start_ms) {
            continue;
        }
        in_window += 1;
        if e.get("verdict") == "rejected" {
            let reason = match e.get("reason") {
                "" => "unknown",
                r => r,
            };
            *reasons.entry(reason.to_owned()).or_default() += 1;
        }
    }
    // The sample covers the window unless every entry read was inside it: then older shares of
    // the window may lie beyond the sample.
    let covers_window = sample.len() < REASON_SAMPLE || in_window < sample.len();

    if ctx.json {
        let list: Vec<Value> = workers
            .iter()
            .map(|(name, w)| {
                json!({
                    "worker": name,
                    "other": name == OTHER_WORKERS,
                    "accepted": w.accepted,
                    "rejected": w.rejected,
                    "difficulty": w.difficulty,
                    "hashrate": hashrate(w.difficulty, seconds),
                })
            })
            .collect();
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "minutes": minutes,
            "window": { "start_ms": start_ms, "end_ms": now, "seconds": seconds },
            "workers": list,
            "totals": {
                "accepted": total.accepted,
                "rejected": total.rejected,
                "difficulty": total.difficulty,
                "hashrate": hashrate(total.difficulty, seconds),
                "shares_per_second": shares_per_second,
            },
            "rejects_by_reason": reasons,
            "rejects_sample": { "entries": sample.len(), "in_window": in_window, "covers_window": covers_window },
            "shares_dropped": {
                "accepted": dropped_total,
                "engines": dropped.iter().map(|(id, n)| json!({"engine": id, "accepted": n})).collect::<Vec<_>>(),
            },
        }));
    }

    let mut text = String::new();
    if dropped_total > 0 {
        let engines: Vec<String> = dropped.iter().map(|(id, n)| format!("{id}: {n}")).collect();
        text.push_str(&format!(
            "!! SHARES LOST: {dropped_total} accepted shares never reached the share log since their engines started ({}); see those engines' error log\n\n",
            engines.join(", ")
        ));
    }
    text.push_str(&format!(
        "last {minutes} min ({} to now, {}): {:.2} shares/s, {}\n\n",
        format::utc_ms(start_ms),
        format::duration_ms((seconds * 1000.0) as u64),
        shares_per_second,
        format::hashrate(hashrate(total.difficulty, seconds)),
    ));
    if workers.is_empty() {
        text.push_str("no shares in this window\n");
        return output::print(&text);
    }
    let mut t = Table::new(&[
        ("WORKER", Align::Left),
        ("ACCEPTED", Align::Right),
        ("REJECTED", Align::Right),
        ("REJECT%", Align::Right),
        ("DIFFICULTY", Align::Right),
        ("HASHRATE", Align::Right),
    ]);
    let reject_pct = |w: &Worker| {
        let all = w.accepted + w.rejected;
        if all == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", 100.0 * w.rejected as f64 / all as f64)
        }
    };
    let total_row = ("TOTAL".to_owned(), total.clone());
    for (name, w) in workers.iter().chain([&total_row]) {
        t.row(vec![
            name.clone(),
            w.accepted.to_string(),
            w.rejected.to_string(),
            reject_pct(w),
            format::difficulty(w.difficulty),
            format::hashrate(hashrate(w.difficulty, seconds)),
        ]);
    }
    text.push_str(&t.render());
    if workers.iter().any(|(name, _)| name == OTHER_WORKERS) {
        text.push_str(&format!(
            "({OTHER_WORKERS}: the workers of a minute past share_log.max_rollup_workers, summed)\n"
        ));
    }
    if !reasons.is_empty() {
        let mut r = Table::new(&[("REJECT REASON", Align::Left), ("COUNT", Align::Right)]);
        for (reason, n) in &reasons {
            r.row(vec![reason.clone(), n.to_string()]);
        }
        text.push('\n');
        text.push_str(&r.render());
    }
    if !covers_window {
        text.push_str(&format!(
            "(reasons from the newest {REASON_SAMPLE} shares, which cover only part of the window)\n"
        ));
    }
    output::print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_fields_split_at_the_last_bar() {
        let mut workers = HashMap::new();
        let rollup = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        add_rollup(
            &mut workers,
            rollup(&[("a|b.1|accepted", "2"), ("a|b.1|difficulty", "0.5")]),
        );
        add_rollup(
            &mut workers,
            rollup(&[
                ("a|b.1|accepted", "1"),
                ("a|b.1|rejected", "4"),
                ("junk", "9"),
                (ROLLUP_WORKER_COUNT, "1"),
            ]),
        );
        assert_eq!(
            workers["a|b.1"],
            Worker {
                accepted: 3,
                rejected: 4,
                difficulty: 0.5
            }
        );
        assert_eq!(workers.len(), 1);
    }

    #[test]
    fn one_difficulty_one_share_a_second_is_2_pow_32() {
        assert_eq!(hashrate(60.0, 60.0), 4_294_967_296.0);
    }
}
