//! `jobmanager ls`: the registered jobmanagers, and which one holds the lease `P:jm:leader`
//! (`ID|TOKEN`) with its fencing token. `jobmanager pause|resume|promote` steer the lease through
//! the hash `P:jm:control` (`engine/src/plane/lease.rs`): a jobmanager with field `pause:ID` neither
//! takes nor keeps the lease, and while `prefer` names a live jobmanager no other takes it and the
//! leader hands it over. Jobmanagers read the hash every quarter of the lease, so pause and
//! promote then wait until the lease shows the change.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::control::Timeout;
use super::services::{self, Role};
use super::Ctx;
use crate::error::{CtlError, Result};
use crate::format;
use crate::output;

/// How often the lease is read while waiting for it to move.
const POLL: Duration = Duration::from_millis(50);

/// Pause: sets `pause:ID` and drops `prefer` when it names ID (a paused jobmanager that is also
/// preferred would keep every other one from leading). Returns whether `prefer` was dropped.
const PAUSE: &str = r#"
redis.call('HSET', KEYS[1], 'pause:' .. ARGV[1], '1')
if redis.call('HGET', KEYS[1], 'prefer') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'prefer')
  return 1
end
return 0
"#;

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

/// The lease holder now, as `(id, token)`.
fn leader(ctx: &mut Ctx) -> Result<Option<(String, Option<u64>)>> {
    let value: Option<String> = ctx.redis.query(redis::cmd("GET").arg(ctx.keys.leader()))?;
    Ok(value.map(|v| parse_leader(&v)))
}

/// What an operator asks of one jobmanager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Promote,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Promote => "promote",
        }
    }

    /// Whether the lease shows the action's effect on `id`: a paused jobmanager does not lead, a
    /// promoted one does; resuming takes nothing back, so it shows at once.
    fn done(self, id: &str, leader: Option<&str>) -> bool {
        match self {
            Action::Pause => leader != Some(id),
            Action::Resume => true,
            Action::Promote => leader == Some(id),
        }
    }
}

/// Refuses an id that is not a live jobmanager: nothing would ever read what is written for it.
fn live_jobmanager(ctx: &mut Ctx, id: &str) -> Result<()> {
    let now = ctx.redis.now_ms()?;
    match services::one(ctx, now, id)? {
        Some(s) if s.role == Role::Jobmanager.as_str() => Ok(()),
        Some(s) => Err(CtlError::Usage(format!(
            "{id:?} is a {} service, not a jobmanager",
            if s.role.is_empty() {
                "roleless"
            } else {
                &s.role
            }
        ))),
        None => Err(CtlError::Usage(format!(
            "no live jobmanager {id:?} under prefix {:?} (see sluicectl jobmanager ls)",
            ctx.keys.prefix()
        ))),
    }
}

/// Whether a live jobmanager other than `id` is not paused, and so may take the lease.
fn another_may_lead(ctx: &mut Ctx, id: &str) -> Result<bool> {
    let now = ctx.redis.now_ms()?;
    let others: Vec<String> = services::live(ctx, now, Some(Role::Jobmanager))?
        .into_iter()
        .map(|s| s.id)
        .filter(|s| s != id)
        .collect();
    if others.is_empty() {
        return Ok(false);
    }
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(ctx.keys.jm_control());
    for other in &others {
        cmd.arg(format!("pause:{other}"));
    }
    let paused: Vec<Option<String>> = ctx.redis.query(&cmd)?;
    Ok(paused.iter().any(Option::is_none))
}

/// `jobmanager pause|resume|promote ID`: writes to `P:jm:control`, then waits up to the timeout
/// for the lease to follow (exit 4 if it does not; what was written stays).
pub fn steer(ctx: &mut Ctx, id: &str, action: Action, timeout: Timeout) -> Result<()> {
    live_jobmanager(ctx, id)?;
    let control = ctx.keys.jm_control();
    let pause_field = format!("pause:{id}");
    let mut unpreferred = false;
    match action {
        Action::Pause => {
            let dropped: i64 = ctx
                .redis
                .query(redis::cmd("EVAL").arg(PAUSE).arg(1).arg(&control).arg(id))?;
            unpreferred = dropped == 1;
        }
        Action::Resume => {
            let _: i64 = ctx
                .redis
                .query(redis::cmd("HDEL").arg(&control).arg(&pause_field))?;
        }
        Action::Promote => {
            let _: () = ctx.redis.query_pipe(
                redis::pipe()
                    .atomic()
                    .cmd("HDEL")
                    .arg(&control)
                    .arg(&pause_field)
                    .ignore()
                    .cmd("HSET")
                    .arg(&control)
                    .arg("prefer")
                    .arg(id)
                    .ignore(),
            )?;
        }
    }
    let deadline = Instant::now() + timeout.duration();
    // After a pause, the lease may be free for a moment before another jobmanager takes it: while
    // one that may lead is running, wait (up to the timeout) to report who leads next.
    let mut successor_expected = None;
    let lease = loop {
        let lease = leader(ctx)?;
        if action.done(id, lease.as_ref().map(|(l, _)| l.as_str())) {
            if action != Action::Pause || lease.is_some() {
                break lease;
            }
            let expected = match successor_expected {
                Some(e) => e,
                None => *successor_expected.insert(another_may_lead(ctx, id)?),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !expected || left.is_zero() {
                break lease;
            }
            std::thread::sleep(left.min(POLL));
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let now = match &lease {
                Some((l, _)) => format!("{l} leads"),
                None => "no jobmanager leads".to_owned(),
            };
            return Err(CtlError::NotInEffect(format!(
                "{} of jobmanager {id} did not take effect within {}s: {now} ({} stays in {control}; is {id} running and connected to this Redis?)",
                action.as_str(),
                timeout.secs,
                match action {
                    Action::Promote => "the preference",
                    _ => "the pause",
                }
            )));
        }
        std::thread::sleep(left.min(POLL));
    };
    if ctx.json {
        return output::json(&json!({
            "jobmanager": id,
            "action": action.as_str(),
            "leader": lease.as_ref().map(|(l, t)| json!({"id": l, "token": t})),
        }));
    }
    let leads = match &lease {
        Some((l, t)) => format!(
            "{} leads (token {})",
            if l == id { "it" } else { l.as_str() },
            t.map_or("?".to_owned(), |t| t.to_string())
        ),
        None => "no jobmanager leads now: engines get no new work until one does".to_owned(),
    };
    let line = match action {
        Action::Pause => format!(
            "jobmanager {id} paused{}: {leads}",
            if unpreferred {
                " (it is no longer the preferred one)"
            } else {
                ""
            }
        ),
        Action::Resume => format!("jobmanager {id} may lead again: {leads}"),
        Action::Promote => format!("jobmanager {id} promoted: {leads}"),
    };
    output::print(&format!("{line}\n"))
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
