//! `policy ls|set|rm`: the per-connection policies in the hash `P:policies` (name → JSON), which
//! every engine reads each second (`engine/src/plane/policies.rs`). A policy matches on the listen
//! port, the user (the worker name before its first dot), the whole worker name and a user-agent
//! prefix, and overrides the start, minimum and maximum difficulty, the vardiff target and the
//! version mask. The document and its check are `sluice_layout::policy`'s, the engines' own, so
//! the engines never ignore a policy that sluicectl wrote.

use serde_json::{json, Value};
use sluice_layout::policy::{Policy, PolicyError, MAX_POLICIES};

use super::Ctx;
use crate::error::{CtlError, Result};
use crate::format;
use crate::output::{self, Align, Table};

/// Replaces an existing policy, or adds a new one while there are fewer than ARGV[3]; returns 0
/// (replaced), 1 (added) or -1 (full). One script, so two operators cannot both add the 1,000th.
const SET: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#;

/// The match fields, in the order they are shown.
const MATCH_FIELDS: [&str; 4] = ["port", "user", "worker", "agent"];

/// The overrides: the stored field, and its short name in the table.
const OVERRIDE_FIELDS: [(&str, &str); 5] = [
    ("start_difficulty", "start"),
    ("min_difficulty", "min"),
    ("max_difficulty", "max"),
    ("vardiff_target_shares_per_minute", "vardiff"),
    ("version_mask", "mask"),
];

/// `policy set`'s flags: one per field of the stored policy, every one optional.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct PolicyFlags {
    /// Match connections to this listen port
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Match workers of this user (the worker name before its first dot)
    #[arg(long, value_name = "U")]
    pub user: Option<String>,
    /// Match this worker (the full name, as the miner authorizes)
    #[arg(long, value_name = "W")]
    pub worker: Option<String>,
    /// Match user agents that start with this
    #[arg(long, value_name = "PREFIX")]
    pub agent: Option<String>,
    /// Difficulty a matching connection starts at
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub start_difficulty: Option<f64>,
    /// Lowest difficulty vardiff may set
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub min_difficulty: Option<f64>,
    /// Highest difficulty vardiff may set
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub max_difficulty: Option<f64>,
    /// Shares a minute vardiff aims at
    #[arg(
        long = "vardiff-target",
        value_name = "SHARES_PER_MIN",
        allow_negative_numbers = true
    )]
    pub vardiff_target_shares_per_minute: Option<f64>,
    /// Version-rolling mask, up to 8 hex digits (e.g. 1fffe000)
    #[arg(long, value_name = "HEX")]
    pub version_mask: Option<String>,
}

impl PolicyFlags {
    /// The policy these flags describe.
    pub fn policy(&self) -> Policy {
        Policy {
            port: self.port,
            user: self.user.clone(),
            worker: self.worker.clone(),
            agent: self.agent.clone(),
            start_difficulty: self.start_difficulty,
            min_difficulty: self.min_difficulty,
            max_difficulty: self.max_difficulty,
            vardiff_target_shares_per_minute: self.vardiff_target_shares_per_minute,
            version_mask: self.version_mask.clone(),
        }
    }
}

/// The stored JSON: the engine's field names, absent fields left out.
fn to_json(p: &Policy) -> Value {
    // A struct of numbers and strings always serializes.
    serde_json::to_value(p).unwrap_or_default()
}

/// `port=3333 user=alice`, or `any connection`.
fn match_text(p: &Policy) -> String {
    let v = to_json(p);
    let parts: Vec<String> = MATCH_FIELDS
        .iter()
        .filter_map(|k| v.get(*k).map(|x| format!("{k}={}", show(x))))
        .collect();
    if parts.is_empty() {
        "any connection".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `start=0.0001 vardiff=20/min mask=1fffe000`, or `-`.
fn overrides_text(p: &Policy) -> String {
    let parts: Vec<String> = OVERRIDE_FIELDS
        .iter()
        .filter_map(|(k, short)| {
            to_json(p).get(*k).map(|x| match (*k, x.as_f64()) {
                ("vardiff_target_shares_per_minute", Some(n)) => {
                    format!("{short}={}/min", format::difficulty(n))
                }
                (_, Some(n)) => format!("{short}={}", format::difficulty(n)),
                _ => format!("{short}={}", show(x)),
            })
        })
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// A JSON value as a table cell: strings without quotes (quoted when empty or spaced).
fn show(v: &Value) -> String {
    match v.as_str() {
        Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.to_owned(),
        Some(s) => format!("{s:?}"),
        None => v.to_string(),
    }
}

/// Translates the engine's field names into the flags that set them, for `set`'s messages.
fn as_flags(message: &str) -> String {
    [
        ("vardiff_target_shares_per_minute", "--vardiff-target"),
        ("start_difficulty", "--start-difficulty"),
        ("min_difficulty", "--min-difficulty"),
        ("max_difficulty", "--max-difficulty"),
        ("version_mask", "--version-mask"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (field, flag)| {
        m.replace(field, flag)
    })
}

/// Every stored policy, by name (the engines' order), as text and as read.
fn read_all(ctx: &mut Ctx) -> Result<Vec<(String, String)>> {
    let mut all: Vec<(String, String)> = ctx
        .redis
        .query(redis::cmd("HGETALL").arg(ctx.keys.policies()))?;
    all.sort();
    Ok(all)
}

/// `policy ls`.
pub fn ls(ctx: &mut Ctx) -> Result<()> {
    let all = read_all(ctx)?;
    // What the engines make of each: the first MAX_POLICIES by name are read, invalid ones ignored.
    let read: Vec<(String, String, std::result::Result<Policy, String>)> = all
        .into_iter()
        .enumerate()
        .map(|(i, (name, text))| {
            let parsed = if i < MAX_POLICIES {
                Policy::parse(&text).map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "beyond the first {MAX_POLICIES} policies by name: engines ignore it"
                ))
            };
            (name, text, parsed)
        })
        .collect();
    if ctx.json {
        let list: Vec<Value> = read
            .iter()
            .map(|(name, text, parsed)| {
                json!({
                    "name": name,
                    // The stored document as it is, or its raw text when it is not JSON.
                    "policy": serde_json::from_str::<Value>(text)
                        .unwrap_or_else(|_| Value::from(text.as_str())),
                    "error": parsed.as_ref().err(),
                })
            })
            .collect();
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "policies": list,
        }));
    }
    if read.is_empty() {
        return output::print(&format!(
            "no policies under prefix {:?}\n",
            ctx.keys.prefix()
        ));
    }
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("MATCH", Align::Left),
        ("OVERRIDES", Align::Left),
    ]);
    for (name, text, parsed) in &read {
        match parsed {
            Ok(p) => t.row(vec![name.clone(), match_text(p), overrides_text(p)]),
            Err(e) => t.row(vec![
                name.clone(),
                format!("INVALID, ignored by engines: {e}"),
                text.clone(),
            ]),
        }
    }
    output::print(&t.render())
}

/// `policy set NAME ...`: checks, then writes the policy whole.
pub fn set(ctx: &mut Ctx, name: &str, flags: &PolicyFlags) -> Result<()> {
    let policy = &flags.policy();
    if name.is_empty() {
        return Err(CtlError::Usage(
            "a policy needs a non-empty name".to_owned(),
        ));
    }
    if !policy.has_override() {
        return Err(CtlError::Usage(format!(
            "policy {name:?} overrides nothing: give at least one of --start-difficulty, --min-difficulty, --max-difficulty, --vardiff-target, --version-mask"
        )));
    }
    policy.check().map_err(|e: PolicyError| {
        CtlError::Usage(format!("policy {name:?}: {}", as_flags(&e.to_string())))
    })?;
    let stored = to_json(policy);
    let outcome: i64 = ctx.redis.query(
        redis::cmd("EVAL")
            .arg(SET)
            .arg(1)
            .arg(ctx.keys.policies())
            .arg(name)
            .arg(stored.to_string())
            .arg(MAX_POLICIES),
    )?;
    if outcome < 0 {
        return Err(CtlError::Usage(format!(
            "policy {name:?} not added: prefix {:?} already holds {MAX_POLICIES} policies, the most engines read (remove one first, or replace an existing name)",
            ctx.keys.prefix()
        )));
    }
    let created = outcome == 1;
    if ctx.json {
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "name": name,
            "created": created,
            "policy": stored,
        }));
    }
    output::print(&format!(
        "policy {name} {}: match {}; set {} (engines apply it within a second)\n",
        if created { "added" } else { "replaced" },
        match_text(policy),
        overrides_text(policy),
    ))
}

/// `policy rm NAME`.
pub fn rm(ctx: &mut Ctx, name: &str) -> Result<()> {
    let removed: u64 = ctx
        .redis
        .query(redis::cmd("HDEL").arg(ctx.keys.policies()).arg(name))?;
    if removed == 0 {
        return Err(CtlError::Usage(format!(
            "no policy {name:?} under prefix {:?} (see sluicectl policy ls)",
            ctx.keys.prefix()
        )));
    }
    if ctx.json {
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "name": name,
            "removed": true,
        }));
    }
    output::print(&format!(
        "policy {name} removed (engines drop it within a second)\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_flags() {
        assert_eq!(
            as_flags("vardiff_target_shares_per_minute must be a number above 0"),
            "--vardiff-target must be a number above 0"
        );
        assert_eq!(
            as_flags("min_difficulty must not exceed max_difficulty"),
            "--min-difficulty must not exceed --max-difficulty"
        );
    }

    #[test]
    fn table_cells() {
        let p = Policy::parse(
            r#"{"port":3333,"user":"alice","start_difficulty":0.0001,"vardiff_target_shares_per_minute":20,"version_mask":"1fffe000"}"#,
        )
        .unwrap();
        assert_eq!(match_text(&p), "port=3333 user=alice");
        assert_eq!(
            overrides_text(&p),
            "start=1.000e-4 vardiff=20/min mask=1fffe000"
        );
        assert_eq!(match_text(&Policy::default()), "any connection");
    }
}
