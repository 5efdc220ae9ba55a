//! Miner-chosen strings (worker names, user agents, share reasons) and anything else read from
//! Redis reach the operator's terminal escaped: no ESC, C1 control or bidi override gets through
//! raw, in tables or in `--json`, and the JSON still carries the exact string.

mod support;

use serde_json::{json, Value};
use support::{
    claim_layout, log_shares, record_block, redis_now_ms, register_service, save_session,
    sluicectl, RedisServer, SavedSession, Share,
};

const PREFIX: &str = "pool9";

/// Turns the screen red, starts a CSI through C1, flips the text right to left, and tries to start
/// a row of its own.
const HOSTILE: &str = "\u{1b}[31mevil\u{9b}2J\u{202e}gpj.exe\u{2066}\nFAKE ROW";

/// Whether `text` holds something a terminal would obey, other than the printer's own newlines.
fn raw_control(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

fn assert_safe(args: &[&str], stdout: &str) {
    assert!(
        raw_control(stdout).is_none(),
        "sluicectl {args:?} printed {:?} raw:\n{stdout:?}",
        raw_control(stdout)
    );
    assert!(
        !stdout.contains("\nFAKE ROW"),
        "sluicectl {args:?} let a string add a line"
    );
}

#[test]
fn every_printer_escapes_what_miners_and_redis_writers_chose() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);
    let now = redis_now_ms(&mut con);

    log_shares(
        &mut con,
        PREFIX,
        &[
            Share::accepted(now - 1000, HOSTILE, 1.0),
            Share::rejected(now - 500, HOSTILE, "low-difficulty"),
        ],
    );
    // The agent, client and reason of a share are the miner's (or a Redis writer's) too.
    let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(sluice_layout::Keys::new(PREFIX).shares())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut con)
        .unwrap();
    let mut fields: Vec<(String, String)> = last[0].1.clone();
    for (k, v) in &mut fields {
        if matches!(k.as_str(), "agent" | "client" | "reason") {
            *v = HOSTILE.to_owned();
        }
    }
    let mut add = redis::cmd("XADD");
    add.arg(sluice_layout::Keys::new(PREFIX).shares()).arg("*");
    for (k, v) in &fields {
        add.arg(k).arg(v);
    }
    let _: String = add.query(&mut con).unwrap();

    save_session(
        &mut con,
        PREFIX,
        &SavedSession {
            id: "00aa0001",
            engine: "engine-1",
            extranonce1: "00aa0001",
            difficulty: 1.0,
            version_mask: 0x1fffe000,
            workers: vec![HOSTILE],
            updated_ms: now,
            expires_ms: now + 600_000,
        },
    );
    record_block(
        &mut con,
        PREFIX,
        &"ab".repeat(32),
        840_000,
        HOSTILE,
        now,
        &json!([{"node": HOSTILE, "result": "accepted", "reason": HOSTILE}]),
    );
    register_service(&mut con, PREFIX, "engine-1", "stratum", 60_000);
    let _: () = redis::cmd("HSET")
        .arg(sluice_layout::Keys::new(PREFIX).service("engine-1"))
        .arg("state")
        .arg(HOSTILE)
        .arg("version")
        .arg(HOSTILE)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(sluice_layout::Keys::new(PREFIX).policies())
        .arg(HOSTILE)
        .arg(json!({"worker": HOSTILE, "agent": HOSTILE, "start_difficulty": 2.0}).to_string())
        .query(&mut con)
        .unwrap();

    for args in [
        &["shares", "tail"][..],
        &["session", "ls"],
        &["session", "show", "00aa0001"],
        &["blocks", "ls"],
        &["services", "ls"],
        &["engine", "ls"],
        &["policy", "ls"],
        &["stats"],
    ] {
        let run = sluicectl(&redis, PREFIX, args);
        assert_eq!(run.code, 0, "sluicectl {args:?}: {}", run.stderr);
        assert_safe(args, &run.stdout);
        // The operator still sees what the miner sent, spelled out.
        assert!(
            run.stdout
                .contains("\\x1b[31mevil\\u{9b}2J\\u{202e}gpj.exe\\u{2066}\\x0aFAKE ROW"),
            "sluicectl {args:?}:\n{}",
            run.stdout
        );
    }

    for args in [
        &["shares", "tail", "--json"][..],
        &["session", "ls", "--json"],
        &["blocks", "ls", "--json"],
        &["services", "ls", "--json"],
        &["policy", "ls", "--json"],
        &["stats", "--json"],
    ] {
        let run = sluicectl(&redis, PREFIX, args);
        assert_safe(args, &run.stdout);
        // JSON escapes instead, so a script gets the miner's exact string back.
        assert!(run
            .stdout
            .contains("\\u001b[31mevil\\u009b2J\\u202egpj.exe\\u2066\\nFAKE ROW"));
        let doc: Value = run.json();
        assert!(doc.to_string().contains("evil"), "{doc}");
    }
    let doc = sluicectl(&redis, PREFIX, &["session", "ls", "--json"]).json();
    assert_eq!(doc["sessions"][0]["workers"], json!([HOSTILE]));
}
