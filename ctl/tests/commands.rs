//! `session ls|show|kick` and `engine drain|undrain` against a real Redis: sessions written in the
//! engine's format (`support::save_session`), and a fake engine (`support::FakeEngine`) that reads
//! its command stream and acknowledges as `engine/src/plane/commands.rs` does, or stays silent.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    claim_layout, redis_now_ms, register_service, save_session, sluicectl, FakeEngine, RedisServer,
    SavedSession,
};

const PREFIX: &str = "pool9";

/// A fleet under PREFIX with engine-1 and engine-2 registered, and jm-a.
fn fleet() -> (RedisServer, redis::Connection) {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);
    register_service(&mut con, PREFIX, "engine-1", "stratum", 10_000);
    register_service(&mut con, PREFIX, "engine-2", "stratum", 10_000);
    register_service(&mut con, PREFIX, "jm-a", "jobmanager", 10_000);
    (redis, con)
}

/// The fields of one received command, by name.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or_else(|| panic!("no field {name} in {fields:?}"), |(_, v)| v)
}

fn stream_len(con: &mut redis::Connection, engine: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(sluice_layout::Keys::new(PREFIX).commands(engine))
        .query(con)
        .unwrap()
}

/// drain → `{"draining":true,"connections":3}`, undrain → `{"draining":false}`, kick of
/// `1a2b3c` → `{"kicked":1}`, any other kick → `{"kicked":0}`.
fn obliging(cmd: &str, arg: &str) -> Option<Result<Value, String>> {
    Some(Ok(match cmd {
        "drain" => json!({"draining": true, "connections": 3}),
        "undrain" => json!({"draining": false}),
        "kick" if arg == "1a2b3c" => json!({"kicked": 1}),
        "kick" => json!({"kicked": 0}),
        other => return Some(Err(format!("unknown command {other:?}"))),
    }))
}

#[test]
fn drain_and_undrain_send_one_command_each_and_print_the_acknowledgement() {
    let (redis, mut con) = fleet();
    let engine = FakeEngine::start(&redis, PREFIX, "engine-1", obliging);

    let before = redis_now_ms(&mut con);
    let run = sluicectl(&redis, PREFIX, &["engine", "drain", "engine-1", "--json"]);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "drain", "ok": true,
               "result": {"draining": true, "connections": 3}})
    );

    // The command as the engine reads it: id, cmd, arg, sent_ms, in that order.
    let received = engine.received();
    assert_eq!(received.len(), 1);
    let names: Vec<&str> = received[0].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["id", "cmd", "arg", "sent_ms"]);
    assert_eq!(field(&received[0], "cmd"), "drain");
    assert_eq!(field(&received[0], "arg"), "");
    let sent_ms: u64 = field(&received[0], "sent_ms").parse().unwrap();
    assert!(sent_ms >= before && sent_ms < before + 5000, "{sent_ms}");
    // <unix ms>-<pid>-<counter>
    let id = field(&received[0], "id").to_owned();
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 3, "{id}");
    assert_eq!(parts[0], sent_ms.to_string());
    assert!(parts[1..].iter().all(|p| p.parse::<u64>().is_ok()), "{id}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(sluice_layout::Keys::new(PREFIX).ack(&id))
        .query(&mut con)
        .unwrap();
    assert!(ttl > 3500, "{ttl}");

    // The table is one line.
    let run = sluicectl(&redis, PREFIX, &["engine", "drain", "engine-1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "engine engine-1 is draining: new connections are refused, and its 3 connections are sent client.reconnect in waves\n"
    );

    let run = sluicectl(&redis, PREFIX, &["engine", "undrain", "engine-1", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "undrain", "ok": true, "result": {"draining": false}})
    );
    let run = sluicectl(&redis, PREFIX, &["engine", "undrain", "engine-1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "engine engine-1 is serving new connections again\n"
    );

    // Every command has its own id; only engine-1's stream was written.
    let received = engine.received();
    assert_eq!(received.len(), 4);
    let mut ids: Vec<&str> = received.iter().map(|f| field(f, "id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(stream_len(&mut con, "engine-1"), 4);
    assert_eq!(stream_len(&mut con, "engine-2"), 0);
}

#[test]
fn kick_goes_to_the_engine_that_saved_the_session() {
    let (redis, mut con) = fleet();
    let now = redis_now_ms(&mut con);
    for (id, engine) in [("1a2b3c", "engine-2"), ("1a2b3d", "engine-2")] {
        save_session(
            &mut con,
            PREFIX,
            &SavedSession {
                id,
                engine,
                extranonce1: "001a2b3c",
                difficulty: 0.5,
                version_mask: 0x1fffe000,
                workers: vec!["alice.rig1"],
                updated_ms: now - 1000,
                expires_ms: now + 600_000,
            },
        );
    }
    let engine_1 = FakeEngine::start(&redis, PREFIX, "engine-1", obliging);
    let engine_2 = FakeEngine::start(&redis, PREFIX, "engine-2", obliging);

    // Upper case as a person may type it: session ids are saved in lower case.
    let run = sluicectl(&redis, PREFIX, &["session", "kick", "1A2B3C", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-2", "cmd": "kick", "ok": true, "result": {"kicked": 1}})
    );
    let received = engine_2.received();
    assert_eq!(received.len(), 1);
    assert_eq!(field(&received[0], "cmd"), "kick");
    assert_eq!(field(&received[0], "arg"), "1a2b3c");
    assert!(engine_1.received().is_empty());

    let run = sluicectl(&redis, PREFIX, &["session", "kick", "1a2b3c"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "session 1a2b3c kicked from engine engine-2: 1 connection closed\n"
    );
    // Saved but not connected there: the engine closes nothing, which is not an error.
    let run = sluicectl(&redis, PREFIX, &["session", "kick", "1a2b3d"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "session 1a2b3d is not connected to engine engine-2: nothing was closed\n"
    );

    // A session Redis does not hold: exit 1, and no engine is asked.
    let run = sluicectl(&redis, PREFIX, &["session", "kick", "ffff", "--json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!("sluicectl: no session \"ffff\" under prefix \"{PREFIX}\": it expired or never existed (see sluicectl session ls)\n")
    );
    assert_eq!(engine_2.received().len(), 3);
    assert!(engine_1.received().is_empty());
}

#[test]
fn a_refusal_exits_1_with_the_engines_error() {
    let (redis, mut con) = fleet();
    let now = redis_now_ms(&mut con);
    save_session(
        &mut con,
        PREFIX,
        &SavedSession {
            id: "2b",
            engine: "engine-1",
            extranonce1: "0000002b",
            difficulty: 1.0,
            version_mask: 0,
            workers: vec![],
            updated_ms: now,
            expires_ms: now + 600_000,
        },
    );
    let _engine = FakeEngine::start(&redis, PREFIX, "engine-1", |cmd, _| {
        Some(Err(format!("cannot {cmd} now: too many kicks pending")))
    });

    for (args, cmd) in [
        (&["engine", "drain", "engine-1"][..], "drain"),
        (&["engine", "undrain", "engine-1"], "undrain"),
        (&["session", "kick", "2b"], "kick"),
    ] {
        let error = format!("cannot {cmd} now: too many kicks pending");
        let run = sluicectl(&redis, PREFIX, args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "");
        assert_eq!(
            run.stderr,
            format!("sluicectl: engine engine-1 refused {cmd}: {error}\n")
        );
        // With --json, the engine's own document too, for scripts.
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let run = sluicectl(&redis, PREFIX, &with_json);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            doc,
            json!({"engine": "engine-1", "cmd": cmd, "ok": false, "error": error})
        );
        assert!(run.stderr.contains("refused"), "{}", run.stderr);
    }
}

#[test]
fn no_acknowledgement_exits_4_once_the_timeout_has_passed() {
    let (redis, mut con) = fleet();
    let now = redis_now_ms(&mut con);
    save_session(
        &mut con,
        PREFIX,
        &SavedSession {
            id: "3c",
            engine: "engine-2",
            extranonce1: "0000003c",
            difficulty: 1.0,
            version_mask: 0,
            workers: vec!["bob.s9"],
            updated_ms: now,
            expires_ms: now + 600_000,
        },
    );
    // engine-1 is registered but nothing reads its stream (it is down, or on another Redis);
    // engine-2 reads its stream but never answers (hung).
    let silent = FakeEngine::start(&redis, PREFIX, "engine-2", |_, _| None);
    for (args, engine, cmd) in [
        (&["engine", "drain", "engine-1"][..], "engine-1", "drain"),
        (&["engine", "undrain", "engine-1"], "engine-1", "undrain"),
        (&["session", "kick", "3c"], "engine-2", "kick"),
    ] {
        let mut args = args.to_vec();
        args.extend_from_slice(&["--timeout", "0.5", "--json"]);
        let started = Instant::now();
        let run = sluicectl(&redis, PREFIX, &args);
        let took = started.elapsed();
        assert_eq!(run.code, 4, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "");
        assert_eq!(
            run.stderr,
            format!("sluicectl: engine {engine} did not acknowledge {cmd} within 0.5s (is it running and connected to this Redis?)\n")
        );
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    assert_eq!(stream_len(&mut con, "engine-1"), 2);
    assert_eq!(silent.received().len(), 1);

    // The default is 5 s; an acknowledgement written late (here after ~1 s) is still taken.
    let _late = FakeEngine::start(&redis, PREFIX, "engine-1", |cmd, _| {
        std::thread::sleep(Duration::from_millis(1000));
        obliging(cmd, "")
    });
    let run = sluicectl(&redis, PREFIX, &["engine", "undrain", "engine-1", "--json"]);
    assert_eq!(run.json()["result"], json!({"draining": false}));
}

#[test]
fn drain_refuses_what_is_not_a_live_engine_and_sends_nothing() {
    let (redis, mut con) = fleet();
    register_service(&mut con, PREFIX, "engine-old", "stratum", -1000);
    let cases = [
        (
            "engine-9",
            format!("sluicectl: no live stratum engine \"engine-9\" under prefix \"{PREFIX}\" (see sluicectl engine ls)\n"),
        ),
        (
            "engine-old",
            format!("sluicectl: no live stratum engine \"engine-old\" under prefix \"{PREFIX}\" (see sluicectl engine ls)\n"),
        ),
        (
            "jm-a",
            "sluicectl: \"jm-a\" is a jobmanager service, not a stratum engine: only engines drain\n"
                .to_owned(),
        ),
    ];
    for (id, message) in cases {
        for cmd in ["drain", "undrain"] {
            let run = sluicectl(&redis, PREFIX, &["engine", cmd, id, "--json"]);
            assert_eq!(run.code, 1, "{cmd} {id}: {}", run.stderr);
            assert_eq!(run.stderr, message);
            assert_eq!(run.stdout, "");
        }
        assert_eq!(stream_len(&mut con, id), 0, "{id}");
    }
    // A timeout that is not a positive number of seconds is a usage error.
    for bad in ["0", "-1", "soon", "4000"] {
        let timeout = format!("--timeout={bad}");
        let run = sluicectl(&redis, PREFIX, &["engine", "drain", "engine-1", &timeout]);
        assert_eq!(run.code, 1, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    }
    assert_eq!(stream_len(&mut con, "engine-1"), 0);
}

#[test]
fn session_ls_and_show_read_the_saved_sessions() {
    let (redis, mut con) = fleet();
    let run = sluicectl(&redis, PREFIX, &["session", "ls", "--json"]);
    assert_eq!(run.json()["sessions"], json!([]));
    let run = sluicectl(&redis, PREFIX, &["session", "ls"]);
    assert_eq!(
        run.stdout,
        format!("no live sessions under prefix \"{PREFIX}\"\n")
    );

    let now = redis_now_ms(&mut con);
    let sessions = [
        SavedSession {
            id: "100000b",
            engine: "engine-1",
            extranonce1: "0100000b",
            difficulty: 65536.0,
            version_mask: 0x1fffe000,
            workers: vec!["alice.rig1", "alice.rig2"],
            updated_ms: now - 3000,
            expires_ms: now + 597_000,
        },
        SavedSession {
            id: "100000a",
            engine: "engine-1",
            extranonce1: "0100000a",
            difficulty: 0.001,
            version_mask: 0,
            workers: vec!["bob.s9"],
            updated_ms: now - 65_000,
            expires_ms: now + 535_000,
        },
        SavedSession {
            id: "2000001",
            engine: "engine-2",
            extranonce1: "02000001",
            difficulty: 1024.0,
            version_mask: 0x1fffe000,
            workers: vec!["alice.rig1", "w2", "w3", "w4", "w5"],
            updated_ms: now - 500,
            expires_ms: now + 599_500,
        },
        // Expired in the index (the hash lingers until its own TTL): not live.
        SavedSession {
            id: "100000c",
            engine: "engine-1",
            extranonce1: "0100000c",
            difficulty: 1.0,
            version_mask: 0,
            workers: vec!["carol.l7"],
            updated_ms: now - 600_000,
            expires_ms: now - 1,
        },
    ];
    for s in &sessions {
        save_session(&mut con, PREFIX, s);
    }
    // An index entry whose hash is gone (expired between a save and a prune): skipped.
    let _: () = redis::cmd("ZADD")
        .arg(sluice_layout::Keys::new(PREFIX).sessions())
        .arg(now + 1000)
        .arg("dead")
        .query(&mut con)
        .unwrap();

    let doc = sluicectl(&redis, PREFIX, &["session", "ls", "--json"]).json();
    assert_eq!(doc["prefix"], PREFIX);
    let now_ms = doc["now_ms"].as_u64().unwrap();
    assert!(now_ms >= now);
    let list = doc["sessions"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|s| s["id"].as_str().unwrap()).collect();
    // By engine, then extranonce1.
    assert_eq!(ids, ["100000a", "100000b", "2000001"]);
    let b = &list[1];
    assert_eq!(b["engine"], "engine-1");
    assert_eq!(b["workers"], json!(["alice.rig1", "alice.rig2"]));
    assert_eq!(b["difficulty"], 65536.0);
    assert_eq!(b["extranonce1"], "0100000b");
    assert_eq!(b["version_mask"], "1fffe000");
    assert_eq!(b["updated_ms"], now - 3000);
    assert_eq!(b["updated_age_ms"], now_ms - (now - 3000));
    assert_eq!(b["expires_ms"], now + 597_000);
    assert_eq!(b["expires_in_ms"], now + 597_000 - now_ms);
    assert_eq!(list[0]["version_mask"], "00000000");
    assert_eq!(list[0]["difficulty"], 0.001);

    // Filters.
    let ids_of = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["session", "ls", "--json"];
        all.extend_from_slice(args);
        sluicectl(&redis, PREFIX, &all).json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids_of(&["--engine", "engine-2"]), ["2000001"]);
    assert_eq!(ids_of(&["--worker", "alice.rig1"]), ["100000b", "2000001"]);
    assert_eq!(
        ids_of(&["--worker", "alice.rig1", "--engine", "engine-1"]),
        ["100000b"]
    );
    assert_eq!(ids_of(&["--worker", "alice"]), Vec::<String>::new());
    let run = sluicectl(&redis, PREFIX, &["session", "ls", "--worker", "nobody"]);
    assert_eq!(
        run.stdout,
        format!("no live sessions matching the filters under prefix \"{PREFIX}\"\n")
    );

    // The table.
    let run = sluicectl(&redis, PREFIX, &["session", "ls"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    let header: Vec<&str> = lines[0].split("  ").filter(|c| !c.is_empty()).collect();
    let header: Vec<&str> = header.iter().map(|c| c.trim()).collect();
    assert_eq!(
        header,
        [
            "ID",
            "ENGINE",
            "WORKERS",
            "DIFFICULTY",
            "EXTRANONCE1",
            "VERSION MASK",
            "UPDATED",
            "EXPIRES IN"
        ]
    );
    // Ages move with the clock between writing and reading: their shape is what is checked.
    let row = |i: usize| -> Vec<&str> { lines[i].split_whitespace().collect() };
    assert_eq!(
        row(2)[..6],
        [
            "100000b",
            "engine-1",
            "alice.rig1,alice.rig2",
            "65536",
            "0100000b",
            "1fffe000",
        ]
    );
    assert!(
        row(2)[6].starts_with("3.") && row(2)[6].ends_with('s'),
        "{}",
        run.stdout
    );
    assert_eq!(row(2)[7], "ago");
    assert!(row(2)[8].starts_with("9m5"), "{}", run.stdout);
    assert_eq!(
        row(1)[..6],
        ["100000a", "engine-1", "bob.s9", "0.001", "0100000a", "00000000"]
    );
    assert!(row(1)[6].starts_with("1m0"), "{}", run.stdout);
    assert!(row(1)[8].starts_with("8m5"), "{}", run.stdout);
    assert!(
        lines[3].contains("alice.rig1,w2,w3 (+2 more)"),
        "{}",
        run.stdout
    );

    // show: one session, every worker; its id as typed or in upper case.
    let doc = sluicectl(&redis, PREFIX, &["session", "show", "2000001", "--json"]).json();
    assert_eq!(doc["prefix"], PREFIX);
    assert_eq!(doc["session"]["id"], "2000001");
    assert_eq!(
        doc["session"]["workers"],
        json!(["alice.rig1", "w2", "w3", "w4", "w5"])
    );
    assert_eq!(doc["session"]["engine"], "engine-2");
    let doc = sluicectl(&redis, PREFIX, &["session", "show", "100000B", "--json"]).json();
    // As listed, but for the ages, which moved with the clock between the two reads.
    let mut listed = list[1].clone();
    for k in ["updated_age_ms", "expires_in_ms"] {
        listed[k] = doc["session"][k].clone();
    }
    assert_eq!(doc["session"], listed);
    let run = sluicectl(&redis, PREFIX, &["session", "show", "2000001"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{}", run.stdout);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["id", "2000001"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["workers", "alice.rig1,w2,w3,w4,w5"]
    );
    assert!(lines[5].starts_with("version mask  "), "{}", run.stdout);
    assert!(
        lines[6].starts_with("updated ") && lines[6].contains("Z (") && lines[6].ends_with(" ago)"),
        "{}",
        run.stdout
    );
    assert!(lines[7].starts_with("expires in "), "{}", run.stdout);
    // The expired one is still shown while Redis holds it, as expired.
    let run = sluicectl(&redis, PREFIX, &["session", "show", "100000c"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.lines().last().unwrap().ends_with(" expired"),
        "{}",
        run.stdout
    );

    // An absent session: exit 1, nothing on stdout.
    for id in ["dead", "abc"] {
        let run = sluicectl(&redis, PREFIX, &["session", "show", id, "--json"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(run.stdout, "");
        assert_eq!(
            run.stderr,
            format!("sluicectl: no session \"{id}\" under prefix \"{PREFIX}\": it expired or never existed (see sluicectl session ls)\n")
        );
    }
}
