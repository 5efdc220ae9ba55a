//! `blocks ls`: the blocks the fleet found, newest first, from the stream `P:blocks` the leading
//! jobmanager appends to after submitting each one, with every node's answer.

use serde_json::{json, Value};
use sluice_layout::blocks as field;

use super::Ctx;
use crate::error::Result;
use crate::format;
use crate::output::{self, Align, Table};
use crate::stream::{self, Entry};

fn to_json(e: &Entry) -> Value {
    let results = e.get(field::RESULTS);
    json!({
        "id": e.id,
        "hash": e.get(field::HASH),
        "height": e.get(field::HEIGHT).parse::<u64>().ok(),
        "worker": e.get(field::WORKER),
        "accepted": e.get(field::ACCEPTED) == "1",
        "found_ms": e.get(field::FOUND_MS).parse::<u64>().ok(),
        // Kept as the text it was when it does not parse, rather than lost.
        "results": serde_json::from_str::<Value>(results).unwrap_or_else(|_| json!(results)),
    })
}

/// `node accepted, other rejected (bad-txns)`.
fn results_summary(results: &Value) -> String {
    let Some(list) = results.as_array() else {
        return results.as_str().unwrap_or("").to_owned();
    };
    list.iter()
        .map(|r| {
            let node = r["node"].as_str().unwrap_or("?");
            let result = r["result"].as_str().unwrap_or("?");
            match r["reason"].as_str() {
                Some(reason) if !reason.is_empty() => format!("{node} {result} ({reason})"),
                _ => format!("{node} {result}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ls(ctx: &mut Ctx, limit: usize) -> Result<()> {
    let entries = stream::newest(&mut ctx.redis, &ctx.keys.blocks(), "+", limit)?;
    let blocks: Vec<Value> = entries.iter().map(to_json).collect();
    if ctx.json {
        return output::json(&json!({ "prefix": ctx.keys.prefix(), "blocks": blocks }));
    }
    if blocks.is_empty() {
        return output::print(&format!(
            "no blocks recorded under prefix {:?}\n",
            ctx.keys.prefix()
        ));
    }
    let mut t = Table::new(&[
        ("FOUND", Align::Left),
        ("HEIGHT", Align::Right),
        ("HASH", Align::Left),
        ("WORKER", Align::Left),
        ("ACCEPTED", Align::Left),
        ("RESULTS", Align::Left),
    ]);
    for b in &blocks {
        t.row(vec![
            b["found_ms"].as_u64().map_or("-".into(), format::utc_ms),
            b["height"].as_u64().map_or("-".into(), |h| h.to_string()),
            b["hash"].as_str().unwrap_or("").to_owned(),
            b["worker"].as_str().unwrap_or("").to_owned(),
            if b["accepted"] == true { "yes" } else { "NO" }.to_owned(),
            results_summary(&b["results"]),
        ]);
    }
    output::print(&t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_as_one_line() {
        let r = json!([
            {"node": "a", "result": "accepted", "reason": null},
            {"node": "b", "result": "rejected", "reason": "bad-txns"}
        ]);
        assert_eq!(results_summary(&r), "a accepted, b rejected (bad-txns)");
        assert_eq!(results_summary(&json!("not json")), "not json");
    }
}
