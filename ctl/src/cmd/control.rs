//! Commands to one engine (`drain`, `undrain`, `kick`, `reload`) and the wait for its
//! acknowledgement.
//!
//! sluicectl appends `id CMD_ID cmd CMD arg ARG sent_ms MS` to the engine's stream `P:cmd:ENGINE`
//! (MAXLEN ~ 1,000), then polls `GET P:ack:CMD_ID` every 50 ms until the timeout. The engine
//! answers with an `Ack`: `{"cmd","engine","ok":true,"result":{…}}` or
//! `{"cmd","engine","error","ok":false}` (formats in `sluice_layout::command`). An engine reads its stream only from the moment it started,
//! so a command sent while it is down is never carried out: that is the no-acknowledgement case
//! (exit 4), and a later start of the engine does not run it either.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_layout::command::{field, Command, ACK_TTL_SECS, COMMAND_STREAM_MAXLEN};

use super::services::{self, Role};
use super::Ctx;
use crate::error::{CtlError, Result};
use crate::output;

/// How often the acknowledgement is looked for.
const POLL: Duration = Duration::from_millis(50);

/// Acknowledgements live an hour: waiting longer could never see one.
const MAX_TIMEOUT_SECS: f64 = ACK_TTL_SECS as f64;

/// How long to wait for the acknowledgement, as given (the message repeats it).
#[derive(Debug, Clone, Copy)]
pub struct Timeout {
    pub secs: f64,
}

impl Timeout {
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

/// `--timeout SECS`: positive, at most the acknowledgement's lifetime.
pub fn parse_timeout(s: &str) -> std::result::Result<f64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs <= MAX_TIMEOUT_SECS {
        Ok(secs)
    } else {
        Err(format!(
            "{s} is out of range: give more than 0 and at most {MAX_TIMEOUT_SECS} seconds"
        ))
    }
}

/// `<unix ms>-<pid>-<counter>`: unique among the commands this process sends, and across
/// processes unless two with the same pid send in the same millisecond.
fn command_id(now_ms: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{now_ms}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed) + 1
    )
}

/// Sends the command and waits for its acknowledgement. Returns the acknowledgement when the
/// engine carried the command out (`ok: true`). When it refused, prints the acknowledgement with
/// `--json` (so a script sees the engine's own words) and fails with exit 1.
pub fn send(
    ctx: &mut Ctx,
    engine: &str,
    cmd: Command,
    arg: &str,
    timeout: Timeout,
) -> Result<Value> {
    let now = ctx.redis.now_ms()?;
    let id = command_id(now);
    let ack_key = ctx.keys.ack(&id);
    let _: String = ctx.redis.query(
        redis::cmd("XADD")
            .arg(ctx.keys.commands(engine))
            .arg("MAXLEN")
            .arg("~")
            .arg(COMMAND_STREAM_MAXLEN)
            .arg("*")
            .arg(field::ID)
            .arg(&id)
            .arg(field::CMD)
            .arg(cmd.as_str())
            .arg(field::ARG)
            .arg(arg)
            .arg(field::SENT_MS)
            .arg(now),
    )?;
    let deadline = Instant::now() + timeout.duration();
    let text = loop {
        let found: Option<String> = ctx.redis.query(redis::cmd("GET").arg(&ack_key))?;
        if let Some(text) = found {
            break text;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CtlError::NoAck {
                engine: engine.to_owned(),
                cmd: cmd.as_str().to_owned(),
                secs: timeout.secs,
            });
        }
        std::thread::sleep(left.min(POLL));
    };
    let bad = |problem: String| CtlError::BadAck {
        key: ack_key.clone(),
        problem,
    };
    let ack: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    match ack["ok"] {
        Value::Bool(true) => Ok(ack),
        Value::Bool(false) => {
            if ctx.json {
                output::json(&ack)?;
            }
            Err(CtlError::Refused {
                engine: engine.to_owned(),
                cmd: cmd.as_str().to_owned(),
                error: ack["error"]
                    .as_str()
                    .map_or_else(|| ack["error"].to_string(), str::to_owned),
            })
        }
        _ => Err(bad(format!("no boolean \"ok\" in {text}"))),
    }
}

/// The acknowledgement with `--json`, otherwise the one line `summary` makes of its result.
fn report(ctx: &Ctx, ack: &Value, summary: impl FnOnce(&Value) -> Option<String>) -> Result<()> {
    if ctx.json {
        return output::json(ack);
    }
    let result = &ack["result"];
    // A result of another shape (a newer engine) is still shown rather than hidden.
    let line = summary(result).unwrap_or_else(|| format!("{} done: {result}", ack["cmd"]));
    output::print(&format!("{line}\n"))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Refuses an id that is not a live stratum engine: a command to it would never be read.
fn live_engine(ctx: &mut Ctx, id: &str) -> Result<()> {
    let now = ctx.redis.now_ms()?;
    match services::one(ctx, now, id)? {
        Some(s) if s.role == Role::Stratum.as_str() => Ok(()),
        Some(s) => Err(CtlError::Usage(format!(
            "{id:?} is a {} service, not a stratum engine: only engines drain",
            if s.role.is_empty() {
                "roleless"
            } else {
                &s.role
            }
        ))),
        None => Err(CtlError::Usage(format!(
            "no live stratum engine {id:?} under prefix {:?} (see sluicectl engine ls)",
            ctx.keys.prefix()
        ))),
    }
}

/// `engine drain ID`: the engine refuses new connections and moves its miners away.
pub fn drain(ctx: &mut Ctx, id: &str, timeout: Timeout) -> Result<()> {
    live_engine(ctx, id)?;
    let ack = send(ctx, id, Command::Drain, "", timeout)?;
    report(ctx, &ack, |r| {
        let n = r["connections"].as_u64()?;
        Some(format!(
            "engine {id} is draining: new connections are refused, and its {} {} sent client.reconnect in waves",
            plural(n, "connection", "connections"),
            if n == 1 { "is" } else { "are" }
        ))
    })
}

/// `engine undrain ID`: the engine serves new connections again.
pub fn undrain(ctx: &mut Ctx, id: &str, timeout: Timeout) -> Result<()> {
    live_engine(ctx, id)?;
    let ack = send(ctx, id, Command::Undrain, "", timeout)?;
    report(ctx, &ack, |r| {
        (r["draining"] == json!(false))
            .then(|| format!("engine {id} is serving new connections again"))
    })
}

/// `engine reload ID`: the engine re-reads its configuration and applies what can change live.
pub fn reload(ctx: &mut Ctx, id: &str, timeout: Timeout) -> Result<()> {
    live_engine(ctx, id)?;
    let ack = send(ctx, id, Command::Reload, "", timeout)?;
    report(ctx, &ack, |r| {
        let restart: Vec<&str> = r["restart_needed"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        Some(if restart.is_empty() {
            format!("engine {id} reloaded its configuration")
        } else {
            format!(
                "engine {id} reloaded its configuration; these changes need a restart: {}",
                restart.join(", ")
            )
        })
    })
}

/// `session kick ID` once the session's engine is known.
pub fn kick(ctx: &mut Ctx, engine: &str, session: &str, timeout: Timeout) -> Result<()> {
    let ack = send(ctx, engine, Command::Kick, session, timeout)?;
    report(ctx, &ack, |r| {
        Some(match r["kicked"].as_u64()? {
            0 => {
                format!("session {session} is not connected to engine {engine}: nothing was closed")
            }
            n => format!(
                "session {session} kicked from engine {engine}: {} closed",
                plural(n, "connection", "connections")
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_differ_within_a_millisecond() {
        let (a, b) = (command_id(1_700_000_000_000), command_id(1_700_000_000_000));
        assert_ne!(a, b);
        let pid = std::process::id().to_string();
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!((parts[0], parts[1]), ("1700000000000", pid.as_str()));
    }

    #[test]
    fn timeouts_are_positive_and_bounded() {
        assert_eq!(parse_timeout("5"), Ok(5.0));
        assert_eq!(parse_timeout("0.5"), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "3601", "five", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
