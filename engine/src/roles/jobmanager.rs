//! `sluice jobmanager`: the fleet's job source. It publishes into Redis while it holds the lease,
//! reads the fleet's found blocks from Redis one at a time, submits them, and records each node's
//! answer there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::chain::sink::JobSink;
use crate::chain::BlockRecord;
use crate::clock::UnixMillis;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::plane::jobs::RedisJobSink;
use crate::plane::lease::{self, Leadership};
use crate::plane::registry::{self, Load, ServiceInfo};
use crate::plane::{blocks, connect, Keys, PlaneSettings};
use crate::source::{self, SourceStatus};

use super::StartError;

/// Block records queued for Redis.
const BLOCK_RECORD_QUEUE: usize = 1024;

/// A running jobmanager.
pub struct Jobmanager {
    pub id: String,
    pub leadership: Arc<Leadership>,
    /// Where the source publishes: it counts what Redis took and what it refused, for `/metrics`.
    pub sink: Arc<RedisJobSink>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<SourceStatus>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Jobmanager {
    /// Checks Redis's layout, starts the job source (checking the nodes), then the lease, the
    /// found-block reader, the block recorder and the registry heartbeat. The reader takes one
    /// fleet block at a time and waits for the recorder to have written its outcome (which moves
    /// `P:blocks:cursor`), so a leader that dies mid-submission leaves the block to the next.
    pub fn start(settings: Settings, plane: PlaneSettings) -> Result<Jobmanager, StartError> {
        let keys = Keys::new(&plane.prefix);
        let mut con = connect(&plane.url).map_err(|source| StartError::Unreachable {
            url: crate::redact::url(&plane.url),
            source,
        })?;
        crate::plane::keys::check_layout(&mut con, &keys).map_err(|source| StartError::Layout {
            prefix: plane.prefix.clone(),
            source,
        })?;
        // Two jobmanagers under one id would renew each other's lease.
        crate::plane::sessions::check_id_is_free(&mut con, &plane)?;

        let stop = Arc::new(AtomicBool::new(false));
        let leadership = Arc::new(Leadership::default());
        let metrics = Arc::new(Metrics::new(1));
        let status = Arc::new(SourceStatus::default());
        let sink = Arc::new(RedisJobSink::new(plane.clone(), Arc::clone(&leadership)));
        let mut threads = Vec::new();

        let (records_tx, records_rx) =
            crossbeam_channel::bounded::<BlockRecord>(BLOCK_RECORD_QUEUE);
        status.set_block_sink(records_tx);
        let (submit_tx, submit_rx) = crossbeam_channel::bounded(BLOCK_RECORD_QUEUE);
        // The recorder names each fleet block whose outcome it wrote; the reader waits for it.
        let (outcomes_tx, outcomes_rx) = crossbeam_channel::bounded::<String>(BLOCK_RECORD_QUEUE);
        threads.push(source::start_source(
            &settings,
            Arc::clone(&sink) as Arc<dyn JobSink>,
            Arc::clone(&metrics),
            Arc::clone(&status),
            submit_rx,
            Arc::clone(&stop),
        )?);
        threads.push(blocks::spawn_reader(
            plane.clone(),
            Arc::clone(&leadership),
            submit_tx,
            outcomes_rx,
            Arc::clone(&stop),
        )?);
        threads.push(blocks::spawn_recorder(
            plane.clone(),
            records_rx,
            outcomes_tx,
            Arc::clone(&stop),
        )?);
        let lease_sink = Arc::clone(&sink);
        threads.push(lease::spawn(
            plane.clone(),
            Arc::clone(&leadership),
            move |token| lease_sink.on_leadership(token),
            Arc::clone(&stop),
        )?);
        let load_leadership = Arc::clone(&leadership);
        threads.push(registry::spawn(
            plane.clone(),
            ServiceInfo {
                role: "jobmanager".into(),
                address: String::new(),
                version: env!("CARGO_PKG_VERSION").into(),
                started_ms: UnixMillis::now().as_millis(),
            },
            move || Load {
                state: match load_leadership.token() {
                    Some(t) => format!("leader token={t}"),
                    None => "standby".into(),
                },
                ..Load::default()
            },
            Arc::clone(&metrics.redis),
            Arc::clone(&stop),
        )?);
        Ok(Jobmanager {
            id: plane.id,
            leadership,
            sink,
            metrics,
            status,
            stop,
            threads,
        })
    }

    /// Gives the lease up, deregisters and stops every thread.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
