//! `shares tail`: share verdicts from the share log `P:shares`, the newest few or, with
//! `--follow`, each one as the engines write it.

use serde_json::{json, Map, Value};

use super::Ctx;
use crate::error::Result;
use crate::format;
use crate::output::{self, Align, Table};
use crate::stream::{self, Entry};
use sluice_layout::shares::FIELDS as SHARE_FIELDS;

/// Entries read per step when filters may skip most of them.
const PAGE: usize = 1000;

/// How far back a filtered tail looks: the stream holds up to a million entries by default, and a
/// worker that has not shared lately must not make a tail read all of them.
pub const SCAN_LIMIT: usize = 100_000;

/// How long one `XREAD` waits; below the connection's read timeout, so a quiet pool is not taken
/// for a hung Redis.
const FOLLOW_BLOCK_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdict {
    Accepted,
    Rejected,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub worker: Option<String>,
    pub verdict: Option<Verdict>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.worker.is_none() && self.verdict.is_none()
    }

    fn matches(&self, e: &Entry) -> bool {
        self.worker.as_ref().is_none_or(|w| e.get("worker") == w)
            && self.verdict.is_none_or(|v| {
                e.get("verdict")
                    == match v {
                        Verdict::Accepted => "accepted",
                        Verdict::Rejected => "rejected",
                    }
            })
    }
}

/// A share with its numbers as numbers and empty optional fields as null. Every documented field
/// is present (null when an entry lacks it), so a consumer's schema holds; fields the engine adds
/// later come through as text.
pub fn to_json(e: &Entry) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    for k in SHARE_FIELDS {
        m.insert(k.to_owned(), Value::Null);
    }
    for (k, v) in &e.fields {
        let value = match k.as_str() {
            "ts" => v.parse::<u64>().map_or_else(|_| json!(v), |n| json!(n)),
            "assigned" | "actual" => v.parse::<f64>().map_or_else(|_| json!(v), |n| json!(n)),
            "height" => v.parse::<u64>().map_or(Value::Null, |n| json!(n)),
            "block" => json!(v == "1"),
            "reason" | "job" | "agent" | "hash" if v.is_empty() => Value::Null,
            _ => json!(v),
        };
        m.insert(k.clone(), value);
    }
    Value::Object(m)
}

fn table() -> Table {
    Table::new(&[
        ("TIME", Align::Left),
        ("ENGINE", Align::Left),
        ("WORKER", Align::Left),
        ("VERDICT", Align::Left),
        ("REASON", Align::Left),
        ("ASSIGNED", Align::Right),
        ("ACTUAL", Align::Right),
        ("HEIGHT", Align::Right),
        ("CLIENT", Align::Left),
        ("BLOCK", Align::Left),
    ])
}

fn row(e: &Entry) -> Vec<String> {
    let number = |k: &str| {
        e.get(k)
            .parse::<f64>()
            .map_or_else(|_| e.get(k).to_owned(), format::difficulty)
    };
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    vec![
        e.get("ts")
            .parse::<u64>()
            .map_or_else(|_| e.get("ts").to_owned(), format::utc_ms_precise),
        e.get("engine").to_owned(),
        e.get("worker").to_owned(),
        e.get("verdict").to_owned(),
        or_dash(e.get("reason")),
        number("assigned"),
        number("actual"),
        or_dash(e.get("height")),
        e.get("client").to_owned(),
        if e.get("block") == "1" { "BLOCK" } else { "" }.to_owned(),
    ]
}

/// The newest `count` matching shares, printed oldest first like `tail`.
pub fn tail(ctx: &mut Ctx, filter: &Filter, count: usize) -> Result<()> {
    let key = ctx.keys.shares();
    // Unfiltered, the newest `count` entries are the answer: one read.
    let page = if filter.is_empty() { count } else { PAGE };
    let mut matched = Vec::new();
    let mut scanned = 0usize;
    let mut end = "+".to_owned();
    'scan: loop {
        let want = page.min(SCAN_LIMIT.saturating_sub(scanned));
        if want == 0 {
            break;
        }
        let entries = stream::newest(&mut ctx.redis, &key, &end, want)?;
        scanned += entries.len();
        let exhausted = entries.len() < want;
        if let Some(last) = entries.last() {
            end = format!("({}", last.id);
        }
        for e in entries {
            if filter.matches(&e) {
                matched.push(e);
                if matched.len() == count {
                    break 'scan;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    matched.reverse();
    let limit_reached = scanned >= SCAN_LIMIT && matched.len() < count;
    if ctx.json {
        let shares: Vec<Value> = matched.iter().map(to_json).collect();
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "shares": shares,
            "scanned": scanned,
            "scan_limit_reached": limit_reached,
        }));
    }
    let mut text = if matched.is_empty() {
        format!("no matching shares under prefix {:?}\n", ctx.keys.prefix())
    } else {
        let mut t = table();
        for e in &matched {
            t.row(row(e));
        }
        t.render()
    };
    if limit_reached {
        text.push_str(&format!(
            "(looked at the newest {SCAN_LIMIT} shares only; older ones were not searched)\n"
        ));
    }
    output::print(&text)
}

/// Every matching share written from now on, until interrupted.
pub fn follow(ctx: &mut Ctx, filter: &Filter) -> Result<()> {
    let key = ctx.keys.shares();
    // Start from the newest id now rather than passing `$` to each XREAD: `$` means "the newest at
    // the time of this call", so entries written between two calls would be skipped.
    let mut last = stream::newest(&mut ctx.redis, &key, "+", 1)?
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
    const WIDTHS: [usize; 10] = [24, 10, 16, 8, 12, 8, 8, 7, 15, 5];
    if !ctx.json {
        output::print(&table().min_widths(&WIDTHS).render())?;
    }
    loop {
        let entries = stream::after(&mut ctx.redis, &key, &last, FOLLOW_BLOCK_MS)?;
        let Some(newest) = entries.last() else {
            continue;
        };
        last = newest.id.clone();
        if ctx.json {
            for e in entries.iter().filter(|e| filter.matches(e)) {
                output::json_line(&to_json(e))?;
            }
        } else {
            let mut t = table().min_widths(&WIDTHS);
            for e in entries.iter().filter(|e| filter.matches(e)) {
                t.row(row(e));
            }
            if !t.is_empty() {
                output::print(&t.render_rows())?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn shares_read_typed_and_every_field_is_present() {
        let e = entry(&[
            ("ts", "1700000000123"),
            ("verdict", "rejected"),
            ("reason", "stale"),
            ("worker", "w.1"),
            ("assigned", "0.5"),
            ("actual", "0"),
            ("height", ""),
            ("block", "0"),
            ("hash", ""),
            ("extra", "later"),
        ]);
        let v = to_json(&e);
        assert_eq!(v["ts"], 1_700_000_000_123u64);
        assert_eq!(v["assigned"], 0.5);
        assert_eq!(v["height"], Value::Null);
        assert_eq!(v["block"], false);
        assert_eq!(v["hash"], Value::Null);
        assert_eq!(
            v["engine"],
            Value::Null,
            "missing fields are null, not absent"
        );
        assert_eq!(v["extra"], "later");
    }

    #[test]
    fn filters() {
        let e = entry(&[("worker", "w.1"), ("verdict", "accepted")]);
        let f = |worker: Option<&str>, verdict| Filter {
            worker: worker.map(str::to_owned),
            verdict,
        };
        assert!(f(None, None).matches(&e));
        assert!(f(Some("w.1"), Some(Verdict::Accepted)).matches(&e));
        assert!(!f(Some("w.2"), None).matches(&e));
        assert!(!f(None, Some(Verdict::Rejected)).matches(&e));
    }
}
