//! sluice-loadgen: a load generator for any Stratum V1 server.
//!
//! Each simulated miner does the whole handshake (`mining.configure`, `mining.subscribe`,
//! `mining.authorize`), follows the server's difficulty, jobs and extranonce, and sends submits at a
//! fixed total rate in a chosen mix of valid (really hashed), invalid, duplicate and stale shares. The
//! run prints one JSON report: handshakes, answers by kind, submit latency, the spread of clean
//! notifies over the connections, and (given the server's pid) its CPU per submit and memory per
//! connection. See `loadgen/README.md`.

pub mod client;
pub mod mix;
pub mod procstat;
pub mod report;
pub mod work;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

use client::{run_connection, Plan, Shared, Window};
use mix::Mix;
use report::{CpuUse, EngineStats, Machine, Partial};

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "sluice-loadgen",
    version,
    about = "Load generator for any Stratum V1 server; prints one JSON report on stdout"
)]
pub struct Args {
    /// The server, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Connections in total (over all processes).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Source addresses to spread connections over, e.g. 127.0.0.1-127.0.0.40 or a,b,c
    /// (default: the kernel chooses).
    #[arg(long)]
    pub sources: Option<String>,
    /// Generator processes; each holds connections/processes connections (for open-file limits).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Submits per second in total, spread evenly over the connections.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds of the measured window (after every handshake).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Share mix, KIND=WEIGHT for valid, invalid, duplicate, stale.
    #[arg(long, default_value = "valid=70,invalid=20,duplicate=5,stale=5")]
    pub mix: Mix,
    /// Worker name for mining.authorize; `{i}` becomes the connection's index.
    #[arg(long, default_value = "loadgen")]
    pub worker: String,
    #[arg(long, default_value = "x")]
    pub password: String,
    /// The server's pid: report its CPU per submit and memory per connection from /proc. A
    /// comma list (a server of several processes on one port) reports their sums.
    #[arg(long = "engine-pid", value_delimiter = ',')]
    pub engine_pids: Vec<u32>,
    /// CPUs the server is pinned to (e.g. `1` or `2,3`): also report their whole busy time
    /// (softirq network work included) per submit.
    #[arg(long, value_delimiter = ',')]
    pub engine_cpus: Vec<usize>,
    /// Spread the connects over this many seconds (0: as fast as the handshake concurrency allows).
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Connect and handshake only, then hold the connections idle for --duration.
    #[arg(long)]
    pub handshake_only: bool,
    /// Handshakes in flight at once per process.
    #[arg(long, default_value_t = 256)]
    pub handshake_concurrency: usize,
    /// Seconds a connection may take from connect to its first job.
    #[arg(long, default_value_t = 30.0)]
    pub handshake_timeout: f64,
    /// Seconds a submit may wait for its answer.
    #[arg(long, default_value_t = 10.0)]
    pub response_timeout: f64,
    /// Seconds to wait for the last answers after the window.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// A connection the server closes, or that errors, connects again and resumes its session
    /// (`mining.subscribe` naming its subscription id), re-authorizes and goes on; see the
    /// report's `reconnect`.
    #[arg(long)]
    pub reconnect: bool,
    /// Append one line per share answered `true` to FILE: the share's header hash as the share
    /// log writes it (`P:shares`' `hash`), a space, the worker.
    #[arg(long, value_name = "FILE")]
    pub accepted_log: Option<std::path::PathBuf>,
    /// Internal: run as child I of K (I from 0).
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

impl Args {
    /// The options a child process gets (everything but --processes, --engine-pid and --child).
    fn child_args(&self, i: usize, k: usize) -> Vec<String> {
        let mut a = vec![
            "--target".into(),
            self.target.clone(),
            "--connections".into(),
            self.connections.to_string(),
            "--rate".into(),
            self.rate.to_string(),
            "--duration".into(),
            self.duration.to_string(),
            "--mix".into(),
            self.mix.to_string(),
            "--worker".into(),
            self.worker.clone(),
            "--password".into(),
            self.password.clone(),
            "--ramp".into(),
            self.ramp.to_string(),
            "--handshake-concurrency".into(),
            self.handshake_concurrency.to_string(),
            "--handshake-timeout".into(),
            self.handshake_timeout.to_string(),
            "--response-timeout".into(),
            self.response_timeout.to_string(),
            "--drain".into(),
            self.drain.to_string(),
            "--child".into(),
            format!("{i}/{k}"),
        ];
        if let Some(s) = &self.sources {
            a.push("--sources".into());
            a.push(s.clone());
        }
        if self.handshake_only {
            a.push("--handshake-only".into());
        }
        if self.reconnect {
            a.push("--reconnect".into());
        }
        if let Some(f) = &self.accepted_log {
            a.push("--accepted-log".into());
            a.push(f.display().to_string());
        }
        a
    }
}

/// Parses `127.0.0.1-127.0.0.40`, `10.0.0.1,10.0.0.2` or a mix of both.
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad address in `{part}`"))?;
                let b: Ipv4Addr = b
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad address in `{part}`"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a >= 65_536 {
                    return Err(format!("bad range `{part}`"));
                }
                out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
            }
            None => out.push(part.parse().map_err(|_| format!("bad address `{part}`"))?),
        }
    }
    if out.is_empty() {
        return Err("no source addresses".into());
    }
    Ok(out)
}

/// Which connections child `i` of `k` runs: (first global index, count).
pub fn split(connections: usize, i: usize, k: usize) -> (usize, usize) {
    let base = connections / k;
    let extra = connections % k;
    let count = base + usize::from(i < extra);
    let first = i * base + i.min(extra);
    (first, count)
}

fn secs(x: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(x).map_err(|_| format!("--{what} must be a number of seconds >= 0"))
}

fn plan(args: &Args, first_index: usize, connections: usize) -> Result<Plan, String> {
    let target = args
        .target
        .to_socket_addrs()
        .map_err(|e| format!("--target {}: {e}", args.target))?
        .next()
        .ok_or_else(|| format!("--target {}: no address", args.target))?;
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err("--rate must be a number >= 0".into());
    }
    Ok(Plan {
        target,
        sources: match &args.sources {
            Some(s) => parse_sources(s)?,
            None => Vec::new(),
        },
        connections,
        first_index,
        rate_per_connection: args.rate / args.connections as f64,
        duration: secs(args.duration, "duration")?,
        mix: args.mix,
        worker: args.worker.clone(),
        password: args.password.clone(),
        ramp: secs(args.ramp, "ramp")?,
        handshake_only: args.handshake_only,
        handshake_concurrency: args.handshake_concurrency,
        handshake_timeout: secs(args.handshake_timeout, "handshake-timeout")?,
        response_timeout: secs(args.response_timeout, "response-timeout")?,
        drain: secs(args.drain, "drain")?,
        reconnect: args.reconnect,
        accepted_log: match &args.accepted_log {
            Some(path) => Some(std::sync::Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--accepted-log {}: {e}", path.display()))?,
            )),
            None => None,
        },
    })
}

/// Called, blocking, at the two points where a run waits for the outside world.
pub struct Hooks {
    /// Every connection has finished its handshake or failed; return to start the window.
    pub ready: Box<dyn FnOnce() + Send>,
    /// Every connection has drained; return to close the connections.
    pub done: Box<dyn FnOnce(&Partial) + Send>,
}

/// Runs this process's connections through handshake, window, drain and close.
pub fn run_local(plan: Plan, hooks: Hooks) -> Result<Partial, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let duration = plan.duration;
    let connections = plan.connections;
    let rate = plan.rate_per_connection * connections as f64;
    let partial = runtime.block_on(async move {
        let cpu_begin = procstat::self_cpu_us();
        let shared = Arc::new(Shared::new(plan));
        let tasks: Vec<_> = (0..connections)
            .map(|i| tokio::spawn(run_connection(Arc::clone(&shared), i)))
            .collect();
        shared.attempted.wait().await;
        let handshake_cpu = procstat::self_cpu_us().saturating_sub(cpu_begin);
        let _ = tokio::task::spawn_blocking(hooks.ready).await;
        let cpu_start = procstat::self_cpu_us();
        let start = Instant::now();
        let start_ns = client::unix_ns();
        shared.window.send_replace(Some(Window {
            start,
            end: start + duration,
        }));
        shared.drained.wait().await;
        let measured = start.elapsed();
        let mut p = shared.collect();
        p.window_start_ns = Some(start_ns);
        p.measured_secs = measured.as_secs_f64();
        p.generator_cpu_us = procstat::self_cpu_us().saturating_sub(cpu_start);
        p.generator_handshake_cpu_us = handshake_cpu;
        p.connections_target = connections as u64;
        p.offered_rate = rate;
        p.window_secs = duration.as_secs_f64();
        let for_hook = p.clone();
        let _ = tokio::task::spawn_blocking(move || (hooks.done)(&for_hook)).await;
        shared.close.send_replace(true);
        for t in tasks {
            let _ = t.await;
        }
        p
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(partial)
}

/// Reads the server's CPU and memory at the points of a run.
struct EngineProbe {
    /// The server's processes; figures are their sums.
    pids: Vec<u32>,
    stats: Mutex<EngineStats>,
    cpu_connect: Mutex<u64>,
    cpu_go: Mutex<u64>,
    cpus_go: Mutex<Vec<(usize, u64, u64)>>,
    cpus: Mutex<Vec<CpuUse>>,
}

impl EngineProbe {
    fn new(pids: &[u32]) -> EngineProbe {
        let probe = EngineProbe {
            pids: pids.to_vec(),
            stats: Mutex::new(EngineStats::default()),
            cpu_connect: Mutex::new(0),
            cpu_go: Mutex::new(0),
            cpus_go: Mutex::new(Vec::new()),
            cpus: Mutex::new(Vec::new()),
        };
        if !probe.pids.is_empty() {
            probe.stats.lock().expect("probe").rss_before = probe.rss();
            *probe.cpu_connect.lock().expect("probe") = probe.cpu();
        }
        probe
    }

    /// The server's CPU time (us), summed over its processes.
    fn cpu(&self) -> u64 {
        self.pids
            .iter()
            .map(|&p| procstat::cpu_us(p).unwrap_or(0))
            .sum()
    }

    /// The server's resident memory (bytes), summed over its processes.
    fn rss(&self) -> u64 {
        self.pids
            .iter()
            .map(|&p| procstat::rss_bytes(p).unwrap_or(0))
            .sum()
    }

    fn at_go(&self) {
        *self.cpus_go.lock().expect("probe") = procstat::cpu_times();
        if !self.pids.is_empty() {
            let cpu = self.cpu();
            let mut s = self.stats.lock().expect("probe");
            s.handshake_cpu_us = cpu.saturating_sub(*self.cpu_connect.lock().expect("probe"));
            s.rss_connected = self.rss();
            *self.cpu_go.lock().expect("probe") = cpu;
        }
    }

    fn at_end(&self) {
        let go = self.cpus_go.lock().expect("probe").clone();
        *self.cpus.lock().expect("probe") = procstat::cpu_times()
            .into_iter()
            .filter_map(|(cpu, busy, total)| {
                let &(_, b0, t0) = go.iter().find(|g| g.0 == cpu)?;
                Some(CpuUse {
                    cpu,
                    busy_us: busy.saturating_sub(b0),
                    total_us: total.saturating_sub(t0),
                })
            })
            .collect();
        if !self.pids.is_empty() {
            let cpu = self.cpu();
            let mut s = self.stats.lock().expect("probe");
            s.cpu_us = cpu.saturating_sub(*self.cpu_go.lock().expect("probe"));
            s.rss_end = self.rss();
        }
    }

    fn stats(&self) -> Option<EngineStats> {
        (!self.pids.is_empty()).then(|| *self.stats.lock().expect("probe"))
    }

    fn machine(&self, engine_cpus: &[usize]) -> Machine {
        Machine {
            cpus: self.cpus.lock().expect("probe").clone(),
            engine_cpus: engine_cpus.to_vec(),
        }
    }
}

/// Runs a whole load (in this process, or in `--processes` children) and returns the report.
pub fn run(args: &Args) -> Result<Value, String> {
    if args.processes == 0 {
        return Err("--processes must be at least 1".into());
    }
    if args.processes > args.connections {
        return Err("--processes cannot exceed --connections".into());
    }
    if args.processes == 1 {
        let plan = plan(args, 0, args.connections)?;
        let probe = Arc::new(EngineProbe::new(&args.engine_pids));
        let (p1, p2) = (Arc::clone(&probe), Arc::clone(&probe));
        let partial = run_local(
            plan,
            Hooks {
                ready: Box::new(move || p1.at_go()),
                done: Box::new(move |_| p2.at_end()),
            },
        )?;
        return Ok(report::render(
            &partial,
            probe.stats().as_ref(),
            &probe.machine(&args.engine_cpus),
        ));
    }
    run_parent(args)
}

/// `--child I/K`: runs a slice of the connections, talking to the parent over stdin/stdout.
pub fn run_child(args: &Args, spec: &str) -> Result<(), String> {
    let (i, k) = spec
        .split_once('/')
        .and_then(|(i, k)| Some((i.parse::<usize>().ok()?, k.parse::<usize>().ok()?)))
        .filter(|(i, k)| i < k)
        .ok_or_else(|| format!("bad --child {spec}"))?;
    let (first, count) = split(args.connections, i, k);
    let plan = plan(args, first, count)?;
    run_local(
        plan,
        Hooks {
            ready: Box::new(|| {
                println!("READY");
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            }),
            done: Box::new(|p| {
                println!("{}", serde_json::to_string(p).expect("plain data"));
                let _ = std::io::stdout().flush();
                // Hold the connections until the parent has read the server's figures.
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            }),
        },
    )?;
    Ok(())
}

fn run_parent(args: &Args) -> Result<Value, String> {
    let k = args.processes;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let exe = if exe
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("sluice-loadgen"))
    {
        exe
    } else {
        // Run from a test binary: use the generator binary built beside it.
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("sluice-loadgen"));
        dir.filter(|p| p.exists())
            .ok_or("cannot find the sluice-loadgen binary for --processes")?
    };
    let probe = EngineProbe::new(&args.engine_pids);
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children = Vec::new();
    for i in 0..k {
        let mut child = Command::new(&exe)
            .args(args.child_args(i, k))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start child {i}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        let _ = tx.send((i, Some(l)));
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send((i, None));
        });
        children.push(child);
    }
    drop(tx);
    let wait_for = |what: &str| -> Result<Vec<String>, String> {
        let mut got: Vec<Option<String>> = vec![None; k];
        while got.iter().any(Option::is_none) {
            match rx.recv() {
                Ok((i, Some(line))) => {
                    if got[i].is_none() {
                        got[i] = Some(line);
                    }
                }
                Ok((i, None)) => return Err(format!("child {i} ended before {what}")),
                Err(_) => return Err(format!("children ended before {what}")),
            }
        }
        Ok(got.into_iter().map(Option::unwrap_or_default).collect())
    };
    let ready = wait_for("its handshakes");
    let result = ready.and_then(|lines| {
        if let Some(bad) = lines.iter().find(|l| l.as_str() != "READY") {
            return Err(format!("unexpected line from a child: {bad}"));
        }
        probe.at_go();
        for c in &mut children {
            let _ = c.stdin.as_mut().expect("piped").write_all(b"GO\n");
        }
        let reports = wait_for("its report")?;
        probe.at_end();
        let mut merged = Partial::default();
        for r in reports {
            let p: Partial =
                serde_json::from_str(&r).map_err(|e| format!("bad report from a child: {e}"))?;
            merged.merge(&p);
        }
        Ok(merged)
    });
    for c in &mut children {
        // Closing stdin tells each child to close its connections and exit.
        drop(c.stdin.take());
    }
    for mut c in children {
        let _ = c.wait();
    }
    let merged = result?;
    Ok(report::render(
        &merged,
        probe.stats().as_ref(),
        &probe.machine(&args.engine_cpus),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_ranges_and_lists() {
        let s = parse_sources("127.0.0.1-127.0.0.3, 10.0.0.9").unwrap();
        let want: Vec<IpAddr> = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "10.0.0.9"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(s, want);
        assert_eq!(parse_sources("127.0.0.1-127.0.1.0").unwrap().len(), 256);
        for bad in ["", "127.0.0.5-127.0.0.1", "x", "127.0.0.1-y"] {
            assert!(parse_sources(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn split_covers_every_connection_once() {
        for (n, k) in [(10, 3), (20_000, 2), (7, 7), (5, 1)] {
            let mut next = 0;
            for i in 0..k {
                let (first, count) = split(n, i, k);
                assert_eq!(first, next);
                next += count;
            }
            assert_eq!(next, n);
        }
        assert_eq!(split(10, 0, 3), (0, 4));
        assert_eq!(split(10, 2, 3), (7, 3));
    }

    #[test]
    fn child_args_parse_back() {
        let a = Args::parse_from([
            "sluice-loadgen",
            "--target",
            "127.0.0.1:3333",
            "--connections",
            "100",
            "--processes",
            "2",
            "--sources",
            "127.0.0.1-127.0.0.4",
            "--rate",
            "1000",
            "--mix",
            "valid=1,stale=1",
            "--handshake-only",
        ]);
        let mut argv = vec!["sluice-loadgen".to_owned()];
        argv.extend(a.child_args(1, 2));
        let c = Args::parse_from(argv);
        assert_eq!(c.child.as_deref(), Some("1/2"));
        assert_eq!(c.connections, 100);
        assert_eq!(c.rate, 1000.0);
        assert_eq!(c.mix, a.mix);
        assert_eq!(c.sources, a.sources);
        assert!(c.handshake_only);
        assert_eq!(c.processes, 1);
    }
}
