//! The configuration's checks, each named by the key it refuses.

use super::*;
use crate::node::rpc::Auth;

#[test]
fn defaults_are_valid_and_the_example_file_is_too() {
    FileConfig::default().settings().unwrap();
    let example = include_str!("../../../sluice.example.toml");
    let parsed = FileConfig::from_toml(example).unwrap();
    parsed.settings().unwrap();
    assert_eq!(
        parsed.share_log().unwrap(),
        FileConfig::default().share_log().unwrap(),
        "the example shows the share log's defaults"
    );
}

#[test]
fn the_rollup_cap_is_named_when_refused() {
    let log = |toml: &str| FileConfig::from_toml(toml).unwrap().share_log();
    assert_eq!(
        log("[share_log]\nmax_rollup_workers = 1\n")
            .unwrap()
            .max_rollup_workers,
        1
    );
    let err = log("[share_log]\nmax_rollup_workers = 0\n").unwrap_err();
    assert!(
        err.to_string().starts_with("share_log.max_rollup_workers:"),
        "{err}"
    );
}

#[test]
fn errors_name_the_key() {
    let err = FileConfig::from_toml("[pool]\nnetwrk = \"regtest\"\n").unwrap_err();
    assert!(err.to_string().contains("netwrk"), "{err}");
    let bad = |toml: &str| {
        FileConfig::from_toml(toml)
            .unwrap()
            .settings()
            .unwrap_err()
            .to_string()
    };
    assert!(bad("[pool]\nnetwork = \"mars\"\n").starts_with("pool.network:"));
    assert!(bad("[pool]\nnetwork = \"bitcoin\"\n").starts_with("pool.payout_address:"));
    assert!(
        bad("[pool]\npayout_address = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"\n")
            .contains("not for the regtest network")
    );
    assert!(bad("[[listeners]]\naddress = \"nowhere\"\n").starts_with("listeners[0].address:"));
    assert!(
        bad("[[listeners]]\nstart_difficulty = 0\n").starts_with("listeners[0].start_difficulty:")
    );
    assert!(bad("[limits]\nmax_line_length = 0\n").starts_with("limits.max_line_length:"));
    assert!(bad("[pool]\ncoinbase_tag = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n")
        .starts_with("pool.coinbase_tag:"));
    assert!(bad("[[nodes]]\nurl = \"node:8332\"\n").starts_with("nodes[0].url:"));
    assert!(bad("[[nodes]]\nurl = \"http://n:1\"\nrpc_user = \"u\"\n")
        .starts_with("nodes[0].rpc_user:"));
    assert!(bad(
        "[[nodes]]\nurl = \"http://n:1\"\nrpc_user = \"u\"\nrpc_password = \"p\"\nrpc_cookie_file = \"/c\"\n"
    )
    .starts_with("nodes[0].rpc_cookie_file:"));
    assert!(
        bad("[[nodes]]\nurl = \"http://n:1\"\n[[nodes]]\nurl = \"http://n:2\"\nzmq_hashblock = \"udp://x\"\n")
            .starts_with("nodes[1].zmq_hashblock:")
    );
    assert!(bad("[jobs]\npoll_interval_ms = 0\n").starts_with("jobs.poll_interval_ms:"));
    assert!(bad("[jobs]\nsubmit_attempts = 0\n").starts_with("jobs.submit_attempts:"));
    assert!(bad("[blocks]\nheld_path = \"\"\n").starts_with("blocks.held_path:"));
}

#[test]
fn trusted_proxies_default_to_loopback_and_errors_name_the_key() {
    let settings = |toml: &str| FileConfig::from_toml(toml).unwrap().settings();
    let l = &settings("[[listeners]]\nproxy_protocol = true\n")
        .unwrap()
        .listeners[0];
    assert!(l.trusts("127.0.0.1".parse().unwrap()));
    assert!(l.trusts("::1".parse().unwrap()));
    assert!(l.trusts("::ffff:127.0.0.9".parse().unwrap()));
    assert!(!l.trusts("10.0.0.1".parse().unwrap()));
    let l = &settings(
        "[[listeners]]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/48\"]\n",
    )
    .unwrap()
    .listeners[0];
    assert!(l.trusts("10.1.2.3".parse().unwrap()));
    assert!(l.trusts("2001:db8:0:ffff::1".parse().unwrap()));
    assert!(
        !l.trusts("127.0.0.1".parse().unwrap()),
        "the list replaces the default"
    );
    let bad = |toml: &str| settings(toml).unwrap_err().to_string();
    let e = bad("[[listeners]]\n[[listeners]]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n");
    assert!(e.starts_with("listeners[1].trusted_proxies[1]:"), "{e}");
    let e = bad("[[listeners]]\nproxy_protocol = true\ntrusted_proxies = [\"haproxy.local\"]\n");
    assert!(e.starts_with("listeners[0].trusted_proxies[0]:"), "{e}");
    let e = bad("[[listeners]]\nproxy_protocol = true\ntrusted_proxies = []\n");
    assert!(e.starts_with("listeners[0].trusted_proxies:"), "{e}");
    let e = bad("[[listeners]]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
    assert!(e.starts_with("listeners[0].trusted_proxies:"), "{e}");
}

#[test]
fn the_roles_need_a_fleet_key_of_at_least_32_bytes() {
    let plane = |redis: &str| {
        FileConfig::from_toml(&format!("[redis]\nurl = \"redis://127.0.0.1:1\"\n{redis}"))
            .unwrap()
            .plane("stratum")
    };
    let err = plane("").unwrap_err().to_string();
    assert!(err.starts_with("redis.fleet_key:"), "{err}");
    assert!(err.contains("head -c 32 /dev/urandom"), "{err}");
    // 31 bytes once the whitespace around them is trimmed.
    let short = format!("fleet_key = \"  {}\\n\"", "k".repeat(31));
    let err = plane(&short).unwrap_err().to_string();
    assert!(err.starts_with("redis.fleet_key:"), "{err}");
    assert!(err.contains("31 bytes"), "{err}");
    let exact = format!("fleet_key = \" {} \"", "k".repeat(32));
    assert_eq!(
        plane(&exact).unwrap().fleet_key,
        crate::config::FleetKey::new(vec![b'k'; 32]).unwrap()
    );
    let both = format!("{exact}\nfleet_key_file = \"/nonexistent\"");
    assert!(plane(&both)
        .unwrap_err()
        .to_string()
        .starts_with("redis.fleet_key:"));

    let dir = std::env::temp_dir().join(format!("sluice-fleet-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fleet.key");
    std::fs::write(&file, format!("{}\n", "a".repeat(31))).unwrap();
    let from_file = format!("fleet_key_file = {:?}", file.to_str().unwrap());
    let err = plane(&from_file).unwrap_err().to_string();
    assert!(err.starts_with("redis.fleet_key_file:"), "{err}");
    std::fs::write(&file, format!("{}\n", "a".repeat(64))).unwrap();
    assert_eq!(
        plane(&from_file).unwrap().fleet_key,
        crate::config::FleetKey::new(vec![b'a'; 64]).unwrap()
    );
    let missing = format!("fleet_key_file = {:?}", dir.join("none").to_str().unwrap());
    let err = plane(&missing).unwrap_err().to_string();
    assert!(err.starts_with("redis.fleet_key_file:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    // The secret never prints with the configuration.
    let config = FileConfig::from_toml(&format!("[redis]\n{exact}")).unwrap();
    assert!(!format!("{config:?}").contains("kkkk"));
    assert!(!format!("{:?}", plane(&exact).unwrap()).contains("kkkk"));
}

#[test]
fn nodes_are_ordered_by_priority_then_file_order() {
    let config = FileConfig::from_toml(
        "[[nodes]]\nurl = \"http://a:1\"\npriority = 2\n[[nodes]]\nurl = \"http://u:p@b:1\"\npriority = 1\n[[nodes]]\nurl = \"http://c:1\"\npriority = 2\n",
    )
    .unwrap();
    let nodes = config.settings().unwrap().nodes;
    let order: Vec<_> = nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(order, ["nodes[1]", "nodes[0]", "nodes[2]"]);
    assert_eq!(
        nodes[0].endpoint.auth,
        Auth::UserPassword {
            user: "u".into(),
            password: "p".into()
        }
    );
}

#[test]
fn the_tls_files_are_read_once_and_refused_by_their_key() {
    let pki = sluice_testkit::Pki::new();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let key = format!("fleet_key = \"{}\"\n", "k".repeat(32));
    let plane = |url: &str, tls: &str| {
        FileConfig::from_toml(&format!("[redis]\nurl = \"{url}\"\n{key}{tls}"))
            .unwrap()
            .plane("stratum")
    };
    let err = |url: &str, tls: &str| plane(url, tls).unwrap_err().to_string();
    let ca = format!("tls_ca_file = {:?}\n", path(pki.ca()));
    let client = format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        path(pki.client_cert()),
        path(pki.client_key())
    );

    // rediss:// alone trusts the compiled-in roots; with the files, they are loaded.
    assert_eq!(plane("rediss://h:6380", "").unwrap().url.tls, None);
    let loaded = plane("rediss://h:6380", &format!("{ca}{client}")).unwrap();
    let tls = loaded.url.tls.as_ref().unwrap();
    assert_eq!(tls.ca.as_ref().unwrap().1, std::fs::read(pki.ca()).unwrap());
    assert_eq!(
        tls.client.as_ref().unwrap().key,
        std::fs::read(pki.client_key()).unwrap()
    );
    assert_eq!(&*loaded.url, "rediss://h:6380", "reads as its URL");
    assert!(!format!("{loaded:?}").contains("BEGIN"), "no PEM in Debug");
    let ca_only = plane("rediss://h:6380", &ca).unwrap();
    assert!(ca_only.url.tls.unwrap().client.is_none());

    // A file a plain URL would silently ignore.
    for url in ["redis://h:6379", "unix:///run/redis.sock"] {
        let e = err(url, &ca);
        assert!(e.starts_with("redis.tls_ca_file:"), "{e}");
        assert!(e.contains("rediss://"), "{e}");
        let e = err(url, &client);
        assert!(e.starts_with("redis.tls_cert_file:"), "{e}");
    }
    // Half a client identity.
    let cert_only = format!("tls_cert_file = {:?}\n", path(pki.client_cert()));
    assert!(err("rediss://h:1", &cert_only).starts_with("redis.tls_key_file:"));
    let key_only = format!("tls_key_file = {:?}\n", path(pki.client_key()));
    assert!(err("rediss://h:1", &key_only).starts_with("redis.tls_cert_file:"));

    // Unreadable, empty, not PEM, or PEM of the wrong kind.
    let missing = format!("tls_ca_file = {:?}\n", path(pki.dir().join("none.crt")));
    let e = err("rediss://h:1", &missing);
    assert!(
        e.starts_with("redis.tls_ca_file:") && e.contains("cannot read"),
        "{e}"
    );
    let junk = pki.dir().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk_ca = format!("tls_ca_file = {:?}\n", path(junk.clone()));
    let e = err("rediss://h:1", &junk_ca);
    assert!(
        e.starts_with("redis.tls_ca_file:") && e.contains("no PEM certificate"),
        "{e}"
    );
    let key_as_ca = format!("tls_ca_file = {:?}\n", path(pki.client_key()));
    assert!(err("rediss://h:1", &key_as_ca).starts_with("redis.tls_ca_file:"));
    let cert_as_key = format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        path(pki.client_cert()),
        path(pki.client_cert())
    );
    let e = err("rediss://h:1", &cert_as_key);
    assert!(
        e.starts_with("redis.tls_key_file:") && e.contains("private key"),
        "{e}"
    );
    let junk_cert = format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        path(junk),
        path(pki.client_key())
    );
    assert!(err("rediss://h:1", &junk_cert).starts_with("redis.tls_cert_file:"));
}

/// The prefix is written in braces as Redis Cluster's hash tag: a brace or a space in it would
/// split the fleet's keys over slots, so the check refuses it and names the key.
#[test]
fn a_prefix_that_cannot_be_a_hash_tag_is_refused() {
    let plane = |prefix: &str| {
        FileConfig::from_toml(&format!(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\nprefix = {prefix:?}\nfleet_key = \"{}\"",
            "k".repeat(32)
        ))
        .unwrap()
        .plane("stratum")
    };
    assert_eq!(plane("pool-eu").unwrap().prefix, "pool-eu");
    for bad in ["", "a{b", "a}", "a b", "a\tb"] {
        let err = plane(bad).unwrap_err().to_string();
        assert!(err.starts_with("redis.prefix:"), "{bad:?}: {err}");
    }
}

#[test]
fn durable_ack_is_off_by_default_and_its_bounds_name_their_keys() {
    let log = |toml: &str| FileConfig::from_toml(toml).unwrap().share_log();
    assert_eq!(FileConfig::default().share_log().unwrap().durable_ack, None);
    let on = log("[share_log]\ndurable_ack = true\n").unwrap();
    assert_eq!(
        on.durable_ack,
        Some(DurableAck {
            commit: std::time::Duration::from_millis(2),
            max_held_replies: 256,
        })
    );
    for (toml, key) in [
        ("durable_commit_ms = 0", "share_log.durable_commit_ms:"),
        ("durable_commit_ms = 1001", "share_log.durable_commit_ms:"),
        ("max_held_replies = 0", "share_log.max_held_replies:"),
        ("max_held_replies = 65537", "share_log.max_held_replies:"),
    ] {
        let err = log(&format!("[share_log]\ndurable_ack = true\n{toml}\n")).unwrap_err();
        assert!(err.to_string().starts_with(key), "{toml}: {err}");
    }
}

#[test]
fn durable_replicas_wait_for_none_by_default_and_their_bounds_name_their_keys() {
    let log = |toml: &str| FileConfig::from_toml(toml).unwrap().share_log();
    assert_eq!(
        FileConfig::default().share_log().unwrap().durable_replicas,
        None
    );
    let on = log("[share_log]\ndurable_replicas = 1\n").unwrap();
    assert_eq!(
        on.durable_replicas,
        Some(DurableReplicas {
            replicas: 1,
            timeout: std::time::Duration::from_millis(50),
        })
    );
    assert!(
        log("[share_log]\ndurable_replicas = 16\ndurable_replicas_timeout_ms = 5000\n").is_ok()
    );
    for (toml, key) in [
        ("durable_replicas = 17", "share_log.durable_replicas:"),
        (
            "durable_replicas_timeout_ms = 0",
            "share_log.durable_replicas_timeout_ms:",
        ),
        (
            "durable_replicas_timeout_ms = 5001",
            "share_log.durable_replicas_timeout_ms:",
        ),
    ] {
        let err = log(&format!("[share_log]\n{toml}\n")).unwrap_err();
        assert!(err.to_string().starts_with(key), "{toml}: {err}");
    }
}
