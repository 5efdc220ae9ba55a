//! `policy ls|set|rm` against a real Redis, with what is stored read back by the engine's own
//! parser (`sluice_layout::policy::Policy::parse`, the one the engine's poller runs); and `jobmanager pause|resume|promote`
//! refusals, which need no running jobmanager.

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::{claim_layout, register_service, sluicectl, RedisServer};

const PREFIX: &str = "pol3";

fn fleet() -> (RedisServer, redis::Connection) {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);
    (redis, con)
}

fn stored(con: &mut redis::Connection) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(sluice_layout::Keys::new(PREFIX).policies())
        .query(con)
        .unwrap()
}

#[test]
fn policies_round_trip_and_the_engine_reads_what_was_stored() {
    let (redis, mut con) = fleet();

    let run = sluicectl(&redis, PREFIX, &["policy", "ls", "--json"]);
    assert_eq!(run.json(), json!({"prefix": PREFIX, "policies": []}));
    let run = sluicectl(&redis, PREFIX, &["policy", "ls"]);
    assert_eq!(
        run.stdout,
        format!("no policies under prefix \"{PREFIX}\"\n")
    );

    let run = sluicectl(
        &redis,
        PREFIX,
        &[
            "policy",
            "set",
            "vip",
            "--worker",
            "alice.rig1",
            "--start-difficulty",
            "0.0001",
            "--json",
        ],
    );
    assert_eq!(
        run.json(),
        json!({"prefix": PREFIX, "name": "vip", "created": true,
               "policy": {"worker": "alice.rig1", "start_difficulty": 0.0001}})
    );
    let run = sluicectl(
        &redis,
        PREFIX,
        &[
            "policy",
            "set",
            "asic",
            "--port",
            "3333",
            "--user",
            "bob",
            "--agent",
            "cgminer",
            "--start-difficulty",
            "512",
            "--min-difficulty",
            "256",
            "--max-difficulty",
            "65536",
            "--vardiff-target",
            "20",
            "--version-mask",
            "1fffe000",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "policy asic added: match port=3333 user=bob agent=cgminer; set start=512 min=256 max=65536 vardiff=20/min mask=1fffe000 (engines apply it within a second)\n"
    );

    // Stored with the engine's field names, absent fields left out, and valid to the engine.
    let all = stored(&mut con);
    assert_eq!(all.len(), 2);
    let vip = sluice_layout::policy::Policy::parse(&all["vip"]).unwrap();
    assert_eq!(
        vip,
        sluice_layout::policy::Policy {
            worker: Some("alice.rig1".into()),
            start_difficulty: Some(0.0001),
            ..Default::default()
        }
    );
    let asic = sluice_layout::policy::Policy::parse(&all["asic"]).unwrap();
    assert_eq!(
        asic,
        sluice_layout::policy::Policy {
            port: Some(3333),
            user: Some("bob".into()),
            agent: Some("cgminer".into()),
            start_difficulty: Some(512.0),
            min_difficulty: Some(256.0),
            max_difficulty: Some(65536.0),
            vardiff_target_shares_per_minute: Some(20.0),
            version_mask: Some("1fffe000".into()),
            ..Default::default()
        }
    );
    let raw: serde_json::Value = serde_json::from_str(&all["vip"]).unwrap();
    assert_eq!(
        raw,
        json!({"worker": "alice.rig1", "start_difficulty": 0.0001})
    );

    // ls: by name, the stored documents; the table has one line each.
    let doc = sluicectl(&redis, PREFIX, &["policy", "ls", "--json"]).json();
    assert_eq!(
        doc["policies"],
        json!([
            {"name": "asic", "error": null, "policy": {"port": 3333, "user": "bob", "agent": "cgminer",
             "start_difficulty": 512.0, "min_difficulty": 256.0, "max_difficulty": 65536.0,
             "vardiff_target_shares_per_minute": 20.0, "version_mask": "1fffe000"}},
            {"name": "vip", "error": null, "policy": {"worker": "alice.rig1", "start_difficulty": 0.0001}},
        ])
    );
    let run = sluicectl(&redis, PREFIX, &["policy", "ls"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("MATCH")
            && lines[0].ends_with("OVERRIDES")
    );
    assert!(
        lines[1].starts_with("asic ") && lines[1].contains("port=3333 user=bob agent=cgminer"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("vip ") && lines[2].ends_with("start=1.000e-4"),
        "{}",
        run.stdout
    );

    // Set again: replaced whole (no field of the old one is kept).
    let run = sluicectl(
        &redis,
        PREFIX,
        &[
            "policy",
            "set",
            "vip",
            "--user",
            "alice",
            "--min-difficulty",
            "2",
            "--json",
        ],
    );
    assert_eq!(
        run.json(),
        json!({"prefix": PREFIX, "name": "vip", "created": false,
               "policy": {"user": "alice", "min_difficulty": 2.0}})
    );
    sluice_layout::policy::Policy::parse(&stored(&mut con)["vip"]).unwrap();

    // A hand-written policy the engines ignore is shown, with the engine's reason.
    let _: () = redis::cmd("HSET")
        .arg(sluice_layout::Keys::new(PREFIX).policies())
        .arg("broken")
        .arg(r#"{"min_difficulty":0}"#)
        .query(&mut con)
        .unwrap();
    let doc = sluicectl(&redis, PREFIX, &["policy", "ls", "--json"]).json();
    assert_eq!(doc["policies"][1]["name"], "broken");
    assert_eq!(
        doc["policies"][1]["error"],
        "min_difficulty must be a number above 0"
    );
    let run = sluicectl(&redis, PREFIX, &["policy", "ls"]);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("broken ") && l.contains("INVALID")),
        "{}",
        run.stdout
    );

    // rm: gone; a second rm exits 1.
    let run = sluicectl(&redis, PREFIX, &["policy", "rm", "vip", "--json"]);
    assert_eq!(
        run.json(),
        json!({"prefix": PREFIX, "name": "vip", "removed": true})
    );
    let run = sluicectl(&redis, PREFIX, &["policy", "rm", "asic"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "policy asic removed (engines drop it within a second)\n"
    );
    let run = sluicectl(&redis, PREFIX, &["policy", "rm", "vip"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("no policy \"vip\""), "{}", run.stderr);
    assert_eq!(stored(&mut con).keys().collect::<Vec<_>>(), ["broken"]);
}

#[test]
fn bad_policies_exit_1_and_write_nothing() {
    let (redis, mut con) = fleet();
    let cases: &[(&[&str], &str)] = &[
        (&["--worker", "w"], "overrides nothing"),
        (
            &["--start-difficulty", "0"],
            "--start-difficulty must be a number above 0",
        ),
        (
            &["--min-difficulty", "-1"],
            "--min-difficulty must be a number above 0",
        ),
        (
            &["--max-difficulty", "inf"],
            "--max-difficulty must be a number above 0",
        ),
        (
            &["--vardiff-target", "nan"],
            "--vardiff-target must be a number above 0",
        ),
        (
            &["--min-difficulty", "8", "--max-difficulty", "2"],
            "--min-difficulty must not exceed --max-difficulty",
        ),
        (
            &["--version-mask", "xyz"],
            "--version-mask must be up to 8 hex digits",
        ),
        (
            &["--version-mask", "1fffe0000"],
            "--version-mask must be up to 8 hex digits",
        ),
        (
            &["--version-mask", ""],
            "--version-mask must be up to 8 hex digits",
        ),
        (&["--start-difficulty", "lots"], "invalid value"),
        (
            &["--port", "70000", "--min-difficulty", "1"],
            "invalid value",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["policy", "set", "p"];
        args.extend_from_slice(flags);
        let run = sluicectl(&redis, PREFIX, &args);
        assert_eq!(run.code, 1, "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{flags:?}: {}", run.stderr);
        assert_eq!(run.stdout, "");
    }
    assert!(stored(&mut con).is_empty());
}

#[test]
fn the_1001st_policy_is_refused_but_existing_ones_can_still_be_replaced() {
    let (redis, mut con) = fleet();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("HSET")
            .arg(sluice_layout::Keys::new(PREFIX).policies())
            .arg(format!("p{i:04}"))
            .arg(r#"{"min_difficulty":1}"#)
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();

    let run = sluicectl(
        &redis,
        PREFIX,
        &["policy", "set", "one-more", "--min-difficulty", "1"],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("already holds 1000 policies"),
        "{}",
        run.stderr
    );
    assert_eq!(stored(&mut con).len(), 1000);

    let run = sluicectl(
        &redis,
        PREFIX,
        &["policy", "set", "p0007", "--min-difficulty", "3", "--json"],
    );
    assert_eq!(run.json()["created"], false);
    assert_eq!(stored(&mut con)["p0007"], r#"{"min_difficulty":3.0}"#);
}

#[test]
fn steering_refuses_what_is_not_a_live_jobmanager_and_writes_nothing() {
    let (redis, mut con) = fleet();
    register_service(&mut con, PREFIX, "engine-1", "stratum", 10_000);
    register_service(&mut con, PREFIX, "jm-old", "jobmanager", -1_000);
    for action in ["pause", "resume", "promote"] {
        for (id, message) in [
            ("engine-1", "not a jobmanager"),
            ("jm-old", "no live jobmanager \"jm-old\""),
            ("jm-x", "no live jobmanager \"jm-x\""),
        ] {
            let run = sluicectl(&redis, PREFIX, &["jobmanager", action, id]);
            assert_eq!(run.code, 1, "{action} {id}: {}", run.stderr);
            assert!(
                run.stderr.contains(message),
                "{action} {id}: {}",
                run.stderr
            );
        }
    }
    let exists: bool = redis::cmd("EXISTS")
        .arg(sluice_layout::Keys::new(PREFIX).jm_control())
        .query(&mut con)
        .unwrap();
    assert!(!exists);
}

/// A registered jobmanager that is not running never takes the lease: promote writes its
/// preference, waits, and exits 4; pause of a jobmanager that does not lead is in effect at once.
#[test]
fn a_lease_that_does_not_follow_exits_4() {
    let (redis, mut con) = fleet();
    register_service(&mut con, PREFIX, "jm-a", "jobmanager", 10_000);
    register_service(&mut con, PREFIX, "jm-b", "jobmanager", 10_000);
    let _: () = redis::cmd("SET")
        .arg(sluice_layout::Keys::new(PREFIX).leader())
        .arg("jm-b|7")
        .query(&mut con)
        .unwrap();
    let control = sluice_layout::Keys::new(PREFIX).jm_control();

    let started = std::time::Instant::now();
    let run = sluicectl(
        &redis,
        PREFIX,
        &["jobmanager", "promote", "jm-a", "--timeout", "0.5"],
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(started.elapsed().as_secs_f64() >= 0.5);
    assert!(
        run.stderr
            .contains("promote of jobmanager jm-a did not take effect within 0.5s: jm-b leads"),
        "{}",
        run.stderr
    );
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(&control).query(&mut con).unwrap();
    assert_eq!(
        fields,
        HashMap::from([("prefer".to_owned(), "jm-a".to_owned())])
    );

    // Pausing the preferred one drops the preference too; jm-a does not lead, so it is at once.
    let run = sluicectl(&redis, PREFIX, &["jobmanager", "pause", "jm-a", "--json"]);
    assert_eq!(
        run.json(),
        json!({"jobmanager": "jm-a", "action": "pause", "leader": {"id": "jm-b", "token": 7}})
    );
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(&control).query(&mut con).unwrap();
    assert_eq!(
        fields,
        HashMap::from([("pause:jm-a".to_owned(), "1".to_owned())])
    );

    // Pausing the leader, which does not hand over (nothing runs): exit 4.
    let run = sluicectl(
        &redis,
        PREFIX,
        &["jobmanager", "pause", "jm-b", "--timeout", "0.3"],
    );
    assert_eq!(run.code, 4, "{}", run.stderr);

    let run = sluicectl(&redis, PREFIX, &["jobmanager", "resume", "jm-a"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "jobmanager jm-a may lead again: jm-b leads (token 7)\n"
    );
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(&control).query(&mut con).unwrap();
    assert_eq!(
        fields,
        HashMap::from([("pause:jm-b".to_owned(), "1".to_owned())])
    );
}
