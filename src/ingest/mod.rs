//! Ingest: follows Jetstream and keeps the index in step with members' records.
//!
//! ```text
//!  Jetstream ──ws──▶ reader ──frames──▶ parser ──ops──▶ indexer ──▶ Store::apply_batch
//!     ▲                 │ reconnect with backoff                     (ops + cursor, one tx)
//!     └── cursor ◀──────┴──────────── last committed cursor ◀───────────────┘
//! ```
//! The reader asks only for `community.herald.*` and, on every (re)connection, resumes from
//! the last cursor the indexer *committed* — never a cursor it merely received — so a crash
//! or a dropped socket replays events rather than losing them; replays are harmless because
//! every write is ordered by `rev`.
//!
//! Owns the Jetstream client (our own, on `tokio-tungstenite`: see the README for why) and
//! the mapping from events to index operations. Must not touch HTTP serving or delivery.

pub mod event;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::identity::Resolver;
use crate::lexicon::Lexicons;
use crate::metrics::Metrics;
use crate::storage::{IndexOp, Store};
use event::{Parsed, parse};

/// The cursor row's name for Jetstream.
pub const JETSTREAM_SOURCE: &str = "jetstream";
/// Frames waiting between two stages at most; bounds memory when the database lags.
const CHANNEL_CAPACITY: usize = 16_384;
/// Events applied per transaction at most: large enough to amortise the commit and the pages
/// a batch rewrites (records are keyed by DID, so writes land all over the b-tree; measured:
/// 2,000 → 9,500 events/s, 8,000 → 13,000, 16,000 → 18,000–20,000, and 22,500 once parsing
/// moved to its own stage), small enough that
/// SQLite's write lock is held for under a second.
const BATCH_EVENTS: usize = 16_000;
/// Reconnect backoff: from 250 ms doubling to 30 s, with jitter so a fleet does not stampede.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub struct Ingest {
    pub store: Store,
    pub lexicons: Arc<Lexicons>,
    pub resolver: Arc<Resolver>,
    pub metrics: Arc<Metrics>,
    pub jetstream_url: Url,
}

impl Ingest {
    /// Run until `shutdown` is cancelled. Nothing from upstream ends this, and failed writes
    /// are retried; only failing to read the starting cursor is an error.
    pub async fn run(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), crate::storage::StorageError> {
        let committed = Arc::new(AtomicI64::new(
            self.store.cursor(JETSTREAM_SOURCE).await?.unwrap_or(-1),
        ));
        // Three stages on their own tasks, so parsing the next batch overlaps the database
        // writing the current one (the writer is the bottleneck; it should never wait).
        let (frames_tx, frames_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (parsed_tx, parsed_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let reader = tokio::spawn(read_jetstream(
            self.jetstream_url.clone(),
            committed.clone(),
            frames_tx,
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let parser = tokio::spawn(parse_frames(
            frames_rx,
            parsed_tx,
            self.lexicons.clone(),
            self.resolver.clone(),
            self.metrics.clone(),
        ));
        index_frames(&self, parsed_rx, committed, shutdown.clone()).await;
        shutdown.cancel();
        let _ = reader.await;
        let _ = parser.await;
        Ok(())
    }
}

/// The subscribe URL with Herald's collection filter and, when resuming, the cursor.
pub fn subscribe_url(base: &Url, cursor: Option<i64>) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("wantedCollections", "community.herald.*");
    if let Some(cursor) = cursor {
        url.query_pairs_mut()
            .append_pair("cursor", &cursor.to_string());
    }
    url
}

async fn read_jetstream(
    base: Url,
    committed: Arc<AtomicI64>,
    frames: mpsc::Sender<String>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let backoff = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(BACKOFF_MIN)
            .with_max_delay(BACKOFF_MAX)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    loop {
        let cursor = Some(committed.load(Ordering::Acquire)).filter(|c| *c >= 0);
        let url = subscribe_url(&base, cursor);
        let mut received_any = false;
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((mut socket, _)) => {
                tracing::info!(%url, "connected to jetstream");
                loop {
                    let message = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = socket.next() => m,
                    };
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            received_any = true;
                            if frames.send(text.to_string()).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            received_any = true;
                            // Jetstream sends text; a binary frame is either a compressed
                            // stream we did not ask for or garbage. Hand it on as text when
                            // it is UTF-8, so the parser can judge and count it.
                            let text = String::from_utf8_lossy(&bytes).into_owned();
                            if frames.send(text).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            tracing::warn!("jetstream closed the connection");
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "jetstream connection failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(%url, error = %e, "cannot connect to jetstream"),
        }
        if received_any {
            delays = backoff();
        }
        metrics.ingest_reconnect();
        let delay = delays.next().unwrap_or(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// A parsed frame: its time (when readable, so the cursor moves past it even if skipped) and
/// the index change it carries, if any.
type ParsedFrame = (Option<i64>, Option<IndexOp>);

/// Parse, validate and count each frame; identity events refresh the DID cache here.
async fn parse_frames(
    mut frames: mpsc::Receiver<String>,
    parsed: mpsc::Sender<ParsedFrame>,
    lexicons: Arc<Lexicons>,
    resolver: Arc<Resolver>,
    metrics: Arc<Metrics>,
) {
    while let Some(frame) = frames.recv().await {
        let (time, outcome) = parse(&frame, &lexicons);
        let op = match outcome {
            Parsed::Op(op) => {
                metrics.ingest_event(match &op {
                    IndexOp::Account { .. } => "account",
                    _ => "commit",
                });
                Some(op)
            }
            Parsed::Identity(did) => {
                metrics.ingest_event("identity");
                resolver.invalidate(&did);
                None
            }
            Parsed::Skip(skip) => {
                metrics.ingest_skipped(skip.reason);
                tracing::warn!(reason = skip.reason, detail = %skip.detail, "skipped event");
                None
            }
        };
        if parsed.send((time, op)).await.is_err() {
            return;
        }
    }
}

async fn index_frames(
    ingest: &Ingest,
    mut parsed: mpsc::Receiver<ParsedFrame>,
    committed: Arc<AtomicI64>,
    shutdown: CancellationToken,
) {
    let mut buffer = Vec::with_capacity(BATCH_EVENTS);
    let mut ops = Vec::with_capacity(BATCH_EVENTS);
    loop {
        buffer.clear();
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = parsed.recv_many(&mut buffer, BATCH_EVENTS) => n,
        };
        if received == 0 {
            return;
        }
        ops.clear();
        let mut cursor = None;
        for (time, op) in buffer.drain(..) {
            if let Some(t) = time {
                cursor = Some(cursor.map_or(t, |c: i64| c.max(t)));
            }
            ops.extend(op);
        }
        // A failed write is retried, never dropped: the frames are still in hand and the
        // cursor has not moved, so nothing is lost while the database is away.
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(BACKOFF_MIN)
            .with_max_delay(BACKOFF_MAX)
            .with_jitter()
            .without_max_times()
            .build();
        let started = std::time::Instant::now();
        loop {
            match ingest
                .store
                .apply_batch(&ops, cursor.map(|c| (JETSTREAM_SOURCE, c)))
                .await
            {
                Ok(stats) => {
                    tracing::debug!(
                        frames = received,
                        applied = stats.applied,
                        unchanged = stats.unchanged,
                        micros = started.elapsed().as_micros() as u64,
                        "indexed batch"
                    );
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, events = ops.len(), "cannot index batch; retrying");
                    let delay = delays.next().unwrap_or(BACKOFF_MAX);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if let Some(c) = cursor {
            committed.fetch_max(c, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscribe_url_asks_for_herald_collections_and_resumes_from_the_cursor() {
        let base = Url::parse("ws://127.0.0.1:6008/subscribe").unwrap();
        assert_eq!(
            subscribe_url(&base, None).as_str(),
            "ws://127.0.0.1:6008/subscribe?wantedCollections=community.herald.*"
        );
        assert_eq!(
            subscribe_url(&base, Some(1725911162329308)).as_str(),
            "ws://127.0.0.1:6008/subscribe?wantedCollections=community.herald.*&cursor=1725911162329308"
        );
    }
}
