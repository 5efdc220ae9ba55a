//! The thread that keeps a subscription alive: connects, reports [`SubscriberEvent`]s, and
//! reconnects with a back-off until told to stop.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::subscriber::STOP_CHECK_INTERVAL;
use super::{Endpoint, HashBlock, Subscriber, ZmqError};

const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Bounds the runner's TCP connect and handshake; a node that answers at all answers in far less.
const RUNNER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the background subscriber reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// Subscribed: new blocks will now be reported. Blocks found while not connected are not
    /// replayed, and one found in the instant the publisher takes to apply the subscription may be
    /// missed, so fetch the tip once now.
    Connected,
    /// The subscription is not live (poll the node instead): a live one ended, or an attempt to
    /// connect failed. Reported for every failed attempt, so at most every 2 s while the node is
    /// down.
    Disconnected(String),
    HashBlock(HashBlock),
}

/// Keeps a subscription to `endpoint` alive on its own thread and reports what happens, until
/// `stop` is set (looked at every 100 ms at the longest). Reconnects with a back-off from 100 ms
/// doubling to 2 s, reset after each successful connection. A malformed endpoint is refused here
/// with `InvalidInput` rather than retried forever.
pub fn spawn_subscriber(
    endpoint: String,
    mut on_event: impl FnMut(SubscriberEvent) + Send + 'static,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let endpoint =
        Endpoint::parse(&endpoint).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    std::thread::Builder::new()
        .name("sluice-zmq".into())
        .spawn(move || {
            let mut backoff = INITIAL_BACKOFF;
            while !stop.load(Ordering::Relaxed) {
                match Subscriber::open(&endpoint, RUNNER_CONNECT_TIMEOUT, Some(&stop)) {
                    Ok(mut sub) => {
                        backoff = INITIAL_BACKOFF;
                        on_event(SubscriberEvent::Connected);
                        let reason = loop {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            match sub.next(STOP_CHECK_INTERVAL) {
                                Ok(Some(block)) => on_event(SubscriberEvent::HashBlock(block)),
                                Ok(None) => {}
                                Err(e) => break e.to_string(),
                            }
                        };
                        on_event(SubscriberEvent::Disconnected(reason));
                    }
                    Err(ZmqError::Cancelled) => return,
                    Err(e) => on_event(SubscriberEvent::Disconnected(e.to_string())),
                }
                let wake = Instant::now() + backoff;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = Instant::now();
                    if now >= wake {
                        break;
                    }
                    std::thread::sleep((wake - now).min(STOP_CHECK_INTERVAL));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        })
}
