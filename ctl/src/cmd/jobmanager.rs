//! `jobmanager ls`: the registered jobmanagers, and which one holds the lease `P:jm:leader`
//! (`ID|TOKEN`) with its fencing token.

use serde_json::{json, Value};

use super::services::{self, Role};
use super::Ctx;
use crate::error::Result;
use crate::format;
use crate::output;

/// The lease as Redis holds it now.
struct Lease {
    id: String,
    /// None when the value is not `ID|TOKEN` (shown raw as the id, so nothing is hidden).
    token: Option<u64>,
    ttl_ms: Option<u64>,
}

/// The id may itself hold a `|`: the token is what follows the last one, as the lease script reads.
fn parse_leader(value: &str) -> (String, Option<u64>) {
    match value.rsplit_once('|') {
        Some((id, token)) => match token.parse() {
            Ok(t) => (id.to_owned(), Some(t)),
            Err(_) => (value.to_owned(), None),
        },
        None => (value.to_owned(), None),
    }
}

pub fn ls(ctx: &mut Ctx) -> Result<()> {
    let now = ctx.redis.now_ms()?;
    let jobmanagers = services::live(ctx, now, Some(Role::Jobmanager))?;
    let (leader, pttl, last_token): (Option<String>, i64, Option<u64>) = ctx.redis.query_pipe(
        redis::pipe()
            .cmd("GET")
            .arg(ctx.keys.leader())
            .cmd("PTTL")
            .arg(ctx.keys.leader())
            .cmd("GET")
            .arg(ctx.keys.token()),
    )?;
    let lease = leader.map(|v| {
        let (id, token) = parse_leader(&v);
        Lease {
            id,
            token,
            ttl_ms: u64::try_from(pttl).ok(),
        }
    });
    if ctx.json {
        let list: Vec<Value> = jobmanagers
            .iter()
            .map(|s| {
                let mut v = s.to_json(now);
                v["leading"] = json!(lease.as_ref().is_some_and(|l| l.id == s.id));
                v
            })
            .collect();
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "now_ms": now,
            "leader": lease.as_ref().map(|l| json!({
                "id": l.id,
                "token": l.token,
                "lease_ttl_ms": l.ttl_ms,
            })),
            "last_token": last_token,
            "jobmanagers": list,
        }));
    }
    let mut text = match &lease {
        Some(l) => format!(
            "leader: {} (token {}, lease {} left; last token handed out: {})\n",
            l.id,
            l.token.map_or("?".to_owned(), |t| t.to_string()),
            l.ttl_ms.map_or("?".to_owned(), format::duration_ms),
            last_token.map_or("none".to_owned(), |t| t.to_string()),
        ),
        // Without a leader no job reaches the engines: say so first.
        None => {
            "leader: none (no jobmanager holds the lease: engines get no new work)\n".to_owned()
        }
    };
    if let Some(l) = &lease {
        if !jobmanagers.iter().any(|s| s.id == l.id) {
            text.push_str(&format!(
                "warning: the lease holder {} is not among the registered jobmanagers\n",
                l.id
            ));
        }
    }
    if jobmanagers.is_empty() {
        text.push_str(&format!(
            "no live jobmanager services under prefix {:?}\n",
            ctx.keys.prefix()
        ));
    } else {
        // An empty holder still adds the column, so the table shape does not depend on a leader.
        let holder = lease.as_ref().map_or("", |l| l.id.as_str());
        text.push_str(&services::table(&jobmanagers, now, Some(holder)).render());
    }
    output::print(&text)
}

#[cfg(test)]
mod tests {
    use super::parse_leader;

    #[test]
    fn the_token_follows_the_last_bar() {
        assert_eq!(parse_leader("jm-a|7"), ("jm-a".into(), Some(7)));
        assert_eq!(parse_leader("odd|id|12"), ("odd|id".into(), Some(12)));
        assert_eq!(parse_leader("garbled"), ("garbled".into(), None));
        assert_eq!(parse_leader("jm|x"), ("jm|x".into(), None));
    }
}
