//! Each role's `--help` lists the flags that role reads and no other (engine/src/main.rs): the
//! simulated chain's flags belong to the roles that make jobs, the listener's to those that serve
//! miners, and `sluice run`, which does both, lists both. Every role serves the admin listener
//! (`--admin`), so every role lists it.

mod support;

use std::process::Command;

use support::engine::sluice_binary;

fn help(role: &str) -> String {
    let out = Command::new(sluice_binary())
        .args([role, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "sluice {role} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

fn shows(help: &str, flag: &str) -> bool {
    help.split(|c: char| c.is_whitespace() || c == ',')
        .any(|word| word == flag)
}

const CHAIN_FLAGS: &[&str] = &[
    "--network-difficulty",
    "--block-interval",
    "--refresh-interval",
];
const ENGINE_FLAGS: &[&str] = &[
    "--listen",
    "--start-difficulty",
    "--min-difficulty",
    "--threads",
    "--no-vardiff",
];
const PLANE_FLAGS: &[&str] = &["--redis", "--prefix", "--id"];
const COMMON_FLAGS: &[&str] = &["--config", "--payout-address", "--node", "--zmq", "--admin"];

#[test]
fn stratum_help_shows_no_simulated_chain_flag() {
    let help = help("stratum");
    for flag in CHAIN_FLAGS {
        assert!(
            !shows(&help, flag),
            "sluice stratum --help shows {flag}:\n{help}"
        );
    }
    for flag in ENGINE_FLAGS.iter().chain(PLANE_FLAGS).chain(COMMON_FLAGS) {
        assert!(
            shows(&help, flag),
            "sluice stratum --help lacks {flag}:\n{help}"
        );
    }
}

#[test]
fn jobmanager_help_shows_no_listener_or_difficulty_flag() {
    let help = help("jobmanager");
    for flag in ENGINE_FLAGS {
        assert!(
            !shows(&help, flag),
            "sluice jobmanager --help shows {flag}:\n{help}"
        );
    }
    for flag in CHAIN_FLAGS.iter().chain(PLANE_FLAGS).chain(COMMON_FLAGS) {
        assert!(
            shows(&help, flag),
            "sluice jobmanager --help lacks {flag}:\n{help}"
        );
    }
}

#[test]
fn run_help_shows_the_engine_and_the_chain_flags() {
    let help = help("run");
    for flag in CHAIN_FLAGS.iter().chain(ENGINE_FLAGS).chain(COMMON_FLAGS) {
        assert!(
            shows(&help, flag),
            "sluice run --help lacks {flag}:\n{help}"
        );
    }
    for flag in PLANE_FLAGS {
        assert!(
            !shows(&help, flag),
            "sluice run --help shows {flag}:\n{help}"
        );
    }
}

#[test]
fn a_flag_of_another_role_is_refused() {
    let out = Command::new(sluice_binary())
        .args(["jobmanager", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[test]
fn every_role_lists_the_admin_listener() {
    for role in ["run", "stratum", "jobmanager"] {
        let help = help(role);
        assert!(
            shows(&help, "--admin"),
            "sluice {role} --help lacks --admin:\n{help}"
        );
    }
}
