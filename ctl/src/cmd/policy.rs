//! `policy ls|set|rm`: the per-connection policies in the hash `P:policies` (name → JSON), which
//! every engine reads each second (`engine/src/plane/policies.rs`). A policy matches on the listen
//! port, the user (the worker name before its first dot), the whole worker name and a user-agent
//! prefix, and overrides the start, minimum and maximum difficulty, the vardiff target and the
//! version mask. `set` checks a policy exactly as the engine's `Policy::parse` does, so the
//! engines never ignore one that sluicectl wrote.

use serde_json::{json, Map, Value};

use super::Ctx;
use crate::error::{CtlError, Result};
use crate::format;
use crate::output::{self, Align, Table};

/// Policies the engines read, at most (the engine's `MAX_POLICIES`): `set` refuses a new name
/// beyond it.
pub const MAX_POLICIES: usize = 1_000;

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

/// One policy, with the engine's field names; every field optional.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct Policy {
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

impl Policy {
    /// Reads a stored policy as the engine's `Policy::parse` does (serde, unknown fields refused),
    /// then checks it.
    pub fn parse(text: &str) -> std::result::Result<Policy, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(fields) = value else {
            return Err("not a JSON object".to_owned());
        };
        let mut p = Policy::default();
        for (name, v) in &fields {
            if v.is_null() {
                continue;
            }
            let text = || {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{name} must be a string"))
            };
            let number = || v.as_f64().ok_or_else(|| format!("{name} must be a number"));
            match name.as_str() {
                "port" => {
                    p.port = Some(
                        v.as_u64()
                            .and_then(|n| u16::try_from(n).ok())
                            .ok_or_else(|| "port must be a whole number up to 65535".to_owned())?,
                    )
                }
                "user" => p.user = Some(text()?),
                "worker" => p.worker = Some(text()?),
                "agent" => p.agent = Some(text()?),
                "start_difficulty" => p.start_difficulty = Some(number()?),
                "min_difficulty" => p.min_difficulty = Some(number()?),
                "max_difficulty" => p.max_difficulty = Some(number()?),
                "vardiff_target_shares_per_minute" => {
                    p.vardiff_target_shares_per_minute = Some(number()?)
                }
                "version_mask" => p.version_mask = Some(text()?),
                other => return Err(format!("unknown field `{other}`")),
            }
        }
        p.check()?;
        Ok(p)
    }

    /// The engine's checks: numbers above 0, min not above max, the mask 1 to 8 hex digits.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("start_difficulty", self.start_difficulty),
            ("min_difficulty", self.min_difficulty),
            ("max_difficulty", self.max_difficulty),
            (
                "vardiff_target_shares_per_minute",
                self.vardiff_target_shares_per_minute,
            ),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{name} must be a number above 0"));
                }
            }
        }
        if let (Some(min), Some(max)) = (self.min_difficulty, self.max_difficulty) {
            if min > max {
                return Err("min_difficulty must not exceed max_difficulty".into());
            }
        }
        if let Some(m) = &self.version_mask {
            if m.is_empty() || m.len() > 8 || !m.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("version_mask must be up to 8 hex digits".to_owned());
            }
        }
        Ok(())
    }

    fn has_override(&self) -> bool {
        self.start_difficulty.is_some()
            || self.min_difficulty.is_some()
            || self.max_difficulty.is_some()
            || self.vardiff_target_shares_per_minute.is_some()
            || self.version_mask.is_some()
    }

    /// The stored JSON: the engine's field names, absent fields left out.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put("port", self.port.map(Value::from));
        put("user", self.user.clone().map(Value::from));
        put("worker", self.worker.clone().map(Value::from));
        put("agent", self.agent.clone().map(Value::from));
        put("start_difficulty", self.start_difficulty.map(Value::from));
        put("min_difficulty", self.min_difficulty.map(Value::from));
        put("max_difficulty", self.max_difficulty.map(Value::from));
        put(
            "vardiff_target_shares_per_minute",
            self.vardiff_target_shares_per_minute.map(Value::from),
        );
        put("version_mask", self.version_mask.clone().map(Value::from));
        Value::Object(m)
    }

    /// `port=3333 user=alice`, or `any connection`.
    fn match_text(&self) -> String {
        let v = self.to_json();
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
    fn overrides_text(&self) -> String {
        let parts: Vec<String> = OVERRIDE_FIELDS
            .iter()
            .filter_map(|(k, short)| {
                self.to_json().get(*k).map(|x| match (*k, x.as_f64()) {
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
                Policy::parse(&text)
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
            Ok(p) => t.row(vec![name.clone(), p.match_text(), p.overrides_text()]),
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
pub fn set(ctx: &mut Ctx, name: &str, policy: &Policy) -> Result<()> {
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
    policy
        .check()
        .map_err(|e| CtlError::Usage(format!("policy {name:?}: {}", as_flags(&e))))?;
    let stored = policy.to_json();
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
        policy.match_text(),
        policy.overrides_text(),
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
    fn the_bound_is_the_engines() {
        assert_eq!(MAX_POLICIES, sluice::plane::policies::MAX_POLICIES);
    }

    /// Both parsers agree on what is valid, and sluicectl's JSON reads back the same in the engine.
    #[test]
    fn policies_are_judged_as_the_engine_judges_them() {
        for text in [
            r#"{"port":3333,"min_difficulty":2}"#,
            r#"{"user":"alice","worker":"alice.r1","agent":"cg","start_difficulty":0.5,"max_difficulty":8,"vardiff_target_shares_per_minute":20,"version_mask":"1FFFE000"}"#,
            r#"{"version_mask":"e000","min_difficulty":null}"#,
            r#"{}"#,
            r#"{"min_difficulty":0}"#,
            r#"{"max_difficulty":-1}"#,
            r#"{"min_difficulty":5,"max_difficulty":1}"#,
            r#"{"version_mask":"xyz"}"#,
            r#"{"version_mask":"123456789"}"#,
            r#"{"version_mask":""}"#,
            r#"{"prot":1}"#,
            r#"{"port":70000}"#,
            r#"{"port":"3333"}"#,
            r#"[1]"#,
            r#"not json"#,
        ] {
            let ours = Policy::parse(text);
            let theirs = sluice::plane::policies::Policy::parse(text);
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{text}: {ours:?} vs {theirs:?}"
            );
            if let (Ok(ours), Err(e)) = (&ours, &theirs) {
                panic!("{text}: {ours:?} but the engine says {e}");
            }
            if let Ok(p) = ours {
                let back = sluice::plane::policies::Policy::parse(&p.to_json().to_string())
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(back, theirs.unwrap(), "{text}");
            }
        }
    }

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
        assert_eq!(p.match_text(), "port=3333 user=alice");
        assert_eq!(
            p.overrides_text(),
            "start=1.000e-4 vardiff=20/min mask=1fffe000"
        );
        assert_eq!(Policy::default().match_text(), "any connection");
    }
}
