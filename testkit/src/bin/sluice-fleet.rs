//! `sluice-fleet`: the fleet harness of the tests ([`sluice_testkit::Fleet`]) for an operator on
//! one box (`scripts/fleet.sh`, docs/DEPLOY.md "One box"): Redis over TLS with the shipped ACL
//! file, HAProxy on the shipped haproxy.cfg, N engines and 2 jobmanagers; with `--sentinels`, a
//! replica and 3 Sentinels on the shipped sentinel.conf, which every role asks for the master. It
//! prints where miners connect and how to run `sluicectl`, then waits for Ctrl-C and stops
//! everything.
//!
//! ```text
//! sluice-fleet [--engines N] [--dir DIR] [--durable-ack] [--sentinels]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sluice_testkit::loadgen_binary;
use sluice_testkit::{sluicectl_binary, Fleet, FleetSpec};

fn usage() -> ExitCode {
    eprintln!("usage: sluice-fleet [--engines N] [--dir DIR] [--durable-ack] [--sentinels]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut spec = FleetSpec {
        dir: Some(PathBuf::from("/tmp/sluice-fleet")),
        ..FleetSpec::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--engines" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n >= 1 => spec.engines = n,
                _ => return usage(),
            },
            "--dir" => match args.next() {
                Some(d) => spec.dir = Some(PathBuf::from(d)),
                None => return usage(),
            },
            "--durable-ack" => spec.durable_ack = true,
            "--sentinels" => spec.sentinels = true,
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    // SIGINT and SIGTERM wait for sigwait below rather than killing this process, so the fleet's
    // processes are stopped on the way out. Blocked before any thread starts: they inherit it.
    // SAFETY: plain libc calls on a sigset of our own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let fleet = Fleet::start(spec);
    let env: Vec<String> = fleet
        .sluicectl_env()
        .into_iter()
        .map(|(k, v)| format!("{k}='{v}'"))
        .collect();
    println!("sluice fleet up in {}", fleet.dir().display());
    println!("miners: stratum+tcp://{}", fleet.haproxy_addr());
    if let Some((addrs, name)) = fleet.sentinels() {
        println!("sentinels (TLS, master {name}): {}", addrs.join(" "));
    }
    println!(
        "sluicectl: env {} {} services ls",
        env.join(" "),
        sluicectl_binary().display()
    );
    println!(
        "load: {} --target {} --connections 30 --rate 100 --duration 30 --mix valid=100 --reconnect",
        loadgen_binary().display(),
        fleet.haproxy_addr()
    );
    println!(
        "logs: {}/*.log (written every second); Ctrl-C stops the fleet",
        fleet.dir().display()
    );
    // A thread keeps the logs on disk while this one waits for the signal.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fleet.write_logs();
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let mut sig = 0;
        // SAFETY: waiting on the signals blocked above.
        unsafe {
            libc::sigwait(&set, &mut sig);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    println!("stopping the fleet");
    drop(fleet);
    ExitCode::SUCCESS
}
