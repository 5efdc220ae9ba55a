//! How sluicectl fails, by exit code and message: Redis unreachable (2), another layout version
//! (3), no fleet under the prefix or no Redis given (1), usage errors (1); and what works without
//! Redis (completions) or from the environment alone. (An engine's refusal (1) and silence (4)
//! are in `commands.rs`.)

mod support;

use sluice_layout::{Keys, LAYOUT_VERSION};
use support::{claim_layout, free_port, sluicectl, sluicectl_env, RedisServer};

/// Every command that reads the fleet or sends to it.
const COMMANDS: [&[&str]; 19] = [
    &["services", "ls"],
    &["engine", "ls"],
    &["jobmanager", "ls"],
    &["blocks", "ls"],
    &["shares", "tail"],
    &["shares", "tail", "--follow"],
    &["stats"],
    &["session", "ls"],
    &["session", "show", "1a2b"],
    &["session", "kick", "1a2b"],
    &["engine", "drain", "engine-1"],
    &["engine", "undrain", "engine-1"],
    &["engine", "reload", "engine-1"],
    &["policy", "ls"],
    &["policy", "set", "vip", "--min-difficulty", "2"],
    &["policy", "rm", "vip"],
    &["jobmanager", "pause", "jm-a"],
    &["jobmanager", "resume", "jm-a"],
    &["jobmanager", "promote", "jm-a"],
];

#[test]
fn unreachable_redis_exits_2_and_says_how_to_set_it() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    for cmd in COMMANDS {
        let mut args = vec!["--redis", url.as_str()];
        args.extend_from_slice(cmd);
        let run = sluicectl_env(&args, &[]);
        assert_eq!(run.code, 2, "{cmd:?}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("sluicectl: cannot reach Redis at {url}: ")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .trim_end()
                .ends_with("; set --redis or SLUICE_REDIS"),
            "{}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "nothing on stdout, even with --json");
    }
}

#[test]
fn the_password_in_the_url_stays_out_of_the_message() {
    let url = format!("redis://ops:hunter2@127.0.0.1:{}/0", free_port());
    let run = sluicectl_env(&["--redis", &url, "services", "ls", "--json"], &[]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(
        run.stderr.contains("redis://ops:***@127.0.0.1:"),
        "{}",
        run.stderr
    );
}

#[test]
fn another_layout_version_exits_3_and_names_it() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _: () = redis::cmd("SET")
        .arg(Keys::new("v2").layout())
        .arg(1)
        .query(&mut con)
        .unwrap();
    for cmd in COMMANDS {
        let mut args = cmd.to_vec();
        args.push("--json");
        let run = sluicectl(&redis, "v2", &args);
        assert_eq!(run.code, 3, "{cmd:?}: {}", run.stderr);
        assert_eq!(
            run.stderr,
            format!("sluicectl: Redis under prefix \"v2\" holds layout version 1, this sluicectl reads version {LAYOUT_VERSION}: the fleet and sluicectl must be upgraded together\n")
        );
        assert_eq!(run.stdout, "");
    }
    // Nothing was sent to a fleet this build cannot read.
    let sent: u64 = redis::cmd("EXISTS")
        .arg(Keys::new("v2").commands("engine-1"))
        .query(&mut con)
        .unwrap();
    assert_eq!(sent, 0);
    let keys: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(keys, 1, "only v2:layout");
}

/// A layout-3 fleet named its keys `P:name` (no hash tag): sluicectl sees it, and refuses it as
/// layout 3 rather than as no fleet.
#[test]
fn a_layout_3_fleet_exits_3_and_names_its_version() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _: () = redis::cmd("SET")
        .arg(Keys::new("old").layout_v3())
        .arg(3)
        .query(&mut con)
        .unwrap();
    let run = sluicectl(&redis, "old", &["services", "ls"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("holds layout version 3"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_prefix_that_cannot_be_a_hash_tag_exits_1_and_names_the_flag() {
    let redis = RedisServer::start();
    for bad in ["a{b", "a}", "a b"] {
        let run = sluicectl(&redis, bad, &["services", "ls"]);
        assert_eq!(run.code, 1, "{bad:?}: {}", run.stderr);
        assert!(run.stderr.contains("--prefix"), "{}", run.stderr);
    }
}

#[test]
fn a_prefix_without_a_layout_exits_1_and_stays_untouched() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    // Another fleet next door is not this one.
    claim_layout(&mut con, "sluice");
    for cmd in COMMANDS {
        let run = sluicectl(&redis, "nofleet", cmd);
        assert_eq!(run.code, 1, "{cmd:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with(
                "sluicectl: no Sluice fleet under prefix \"nofleet\" ({nofleet}:layout is missing)"
            ),
            "{}",
            run.stderr
        );
    }
    // Unlike a Sluice process, sluicectl never claims a prefix, nor sends to one without a fleet.
    let layout: Option<String> = redis::cmd("GET")
        .arg(Keys::new("nofleet").layout())
        .query(&mut con)
        .unwrap();
    assert_eq!(layout, None);
    let keys: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(keys, 1, "only sluice:layout");
}

#[test]
fn no_redis_given_exits_1_and_says_how_to_give_it() {
    let run = sluicectl_env(&["services", "ls"], &[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "sluicectl: no Redis given: pass --redis redis://HOST:PORT or set SLUICE_REDIS\n"
    );
    let run = sluicectl_env(&["--redis", "http://127.0.0.1:1", "services", "ls"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("is not a Redis URL"), "{}", run.stderr);
}

#[test]
fn the_environment_stands_in_for_the_flags() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, "envpool");
    let url = redis.url();
    let env = [("SLUICE_REDIS", url.as_str()), ("SLUICE_PREFIX", "envpool")];
    let doc = sluicectl_env(&["services", "ls", "--json"], &env).json();
    assert_eq!(doc["prefix"], "envpool");
    assert_eq!(doc["services"], serde_json::json!([]));
    // A flag wins over the environment.
    let run = sluicectl_env(&["--prefix", "other", "services", "ls"], &env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // The default prefix is `sluice`.
    let run = sluicectl_env(&["--redis", &url, "engine", "ls", "--json"], &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("prefix \"sluice\""), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    for args in [
        &["frobnicate"][..],
        &[],
        &["services"],
        &["services", "ls", "--role", "miner"],
        &["shares", "tail", "--follow", "--count", "5"],
        &["completions", "powershell"],
        &["session", "show"],
        &["session", "kick", "1a2b", "--timeout", "0"],
        &["engine", "drain"],
        &["engine", "undrain", "engine-1", "--timeout", "soon"],
    ] {
        let run = sluicectl_env(args, &[]);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
    }
    let run = sluicectl_env(&["--help"], &[]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("Exit codes"), "{}", run.stdout);
    assert!(
        run.stdout.contains("4 no acknowledgement from the engine"),
        "{}",
        run.stdout
    );
    let run = sluicectl_env(&["--version"], &[]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        format!("sluicectl {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_need_no_redis() {
    for (shell, marker) in [
        ("bash", "complete -F _sluicectl"),
        ("zsh", "#compdef sluicectl"),
        ("fish", "complete -c sluicectl"),
    ] {
        let run = sluicectl_env(&["completions", shell], &[]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}:\n{}", run.stdout);
        // The subcommands are in the script.
        assert!(run.stdout.contains("jobmanager") && run.stdout.contains("stats"));
        assert!(run.stdout.contains("session") && run.stdout.contains("undrain"));
    }
}
