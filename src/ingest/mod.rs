//! Ingest: follows Jetstream or a relay's firehose and keeps the index in step with members'
//! records.
//!
//! ```text
//!  Jetstream (JSON) ─┐                      ┌─ event: parse + lexicon ─┐
//!                    ├ws▶ reader ──frames──▶┤                          ├ops▶ indexer ─▶ Store::apply_batch
//!  relay (DAG-CBOR) ─┘     │ reconnect      └─ relay: decode + verify ─┘     (ops + cursor, one tx)
//!     ▲                    │ with backoff        (signature, MST proofs)            │
//!     └── cursor ◀─────────┴──────────── last committed cursor ◀────────────────────┘
//! ```
//! On every (re)connection the reader resumes from the last cursor the indexer *committed* —
//! never one it merely received — so a crash or a dropped socket replays events rather than
//! losing them; replays are harmless because every write is ordered by `rev`. Jetstream's
//! cursor is `time_us`; a relay's is `seq`, kept per relay URL.
//!
//! Owns the Jetstream and firehose clients (our own, on `tokio-tungstenite`: see the README for
//! why) and the mapping from events to index operations. Must not touch HTTP serving or
//! delivery.

pub mod event;
pub mod firehose;
pub mod relay;
pub mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
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
/// The socket refuses messages larger than this (the connection then drops and resumes). Frames
/// up to it are read and judged by the parser, which refuses smaller limits with a reason.
const MAX_SOCKET_MESSAGE: usize = 64 * 1024 * 1024;
/// Reconnect backoff: from 250 ms doubling to 30 s, with jitter so a fleet does not stampede.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where records come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Jetstream's JSON stream (`HERALD_JETSTREAM_URL`).
    Jetstream(Url),
    /// A relay's or PDS's `com.atproto.sync.subscribeRepos` (`HERALD_RELAY_URL`, its base URL).
    Relay(Url),
}

impl Source {
    /// The cursor row's name. A relay's `seq` means nothing to another relay, so each relay
    /// URL keeps its own.
    pub fn cursor_name(&self) -> String {
        match self {
            Self::Jetstream(_) => JETSTREAM_SOURCE.to_owned(),
            Self::Relay(url) => format!("relay {url}"),
        }
    }
}

pub struct Ingest {
    pub store: Store,
    pub lexicons: Arc<Lexicons>,
    pub resolver: Arc<Resolver>,
    pub metrics: Arc<Metrics>,
    pub source: Source,
}

impl Ingest {
    /// Run until `shutdown` is cancelled. Nothing from upstream ends this, and failed writes
    /// are retried; only failing to read the starting cursor is an error.
    pub async fn run(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), crate::storage::StorageError> {
        let cursor_name = self.source.cursor_name();
        let committed = Arc::new(AtomicI64::new(
            self.store.cursor(&cursor_name).await?.unwrap_or(-1),
        ));
        // Three stages on their own tasks, so parsing the next batch overlaps the database
        // writing the current one (the writer is the bottleneck; it should never wait).
        let (frames_tx, frames_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (parsed_tx, parsed_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (subscribe, parser): (Url, tokio::task::JoinHandle<()>) = match &self.source {
            Source::Jetstream(url) => (
                url.clone(),
                tokio::spawn(parse_frames(
                    frames_rx,
                    parsed_tx,
                    self.lexicons.clone(),
                    self.resolver.clone(),
                    self.metrics.clone(),
                )),
            ),
            Source::Relay(url) => (
                relay::subscribe_base(url),
                tokio::spawn({
                    let verifier = verify::Verifier {
                        resolver: self.resolver.clone(),
                        lexicons: self.lexicons.clone(),
                    };
                    let stage = relay::Stage {
                        repos: crate::backfill::RepoReader::new(
                            verifier.clone(),
                            self.store.clone(),
                        ),
                        verifier,
                        metrics: self.metrics.clone(),
                        committed: committed.clone(),
                    };
                    async move { stage.run(frames_rx, parsed_tx).await }
                }),
            ),
        };
        let relay = matches!(self.source, Source::Relay(_));
        let reader = tokio::spawn(read_socket(
            subscribe,
            relay,
            committed.clone(),
            frames_tx,
            self.metrics.clone(),
            shutdown.clone(),
        ));
        index_frames(&self, &cursor_name, parsed_rx, committed, shutdown.clone()).await;
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

/// The URL to (re)connect to: Jetstream's with its collection filter, a relay's with only the
/// cursor (a relay cannot filter; the verifier drops what is not Herald's).
fn connect_url(base: &Url, relay: bool, cursor: Option<i64>) -> Url {
    if !relay {
        return subscribe_url(base, cursor);
    }
    let mut url = base.clone();
    if let Some(cursor) = cursor {
        url.query_pairs_mut()
            .append_pair("cursor", &cursor.to_string());
    }
    url
}

async fn read_socket(
    base: Url,
    relay: bool,
    committed: Arc<AtomicI64>,
    frames: mpsc::Sender<Bytes>,
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
        let url = connect_url(&base, relay, cursor);
        let mut received_any = false;
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_SOCKET_MESSAGE))
            .max_frame_size(Some(MAX_SOCKET_MESSAGE));
        match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false).await
        {
            Ok((mut socket, _)) => {
                tracing::info!(%url, "connected to the event stream");
                loop {
                    let message = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = socket.next() => m,
                    };
                    match message {
                        // Jetstream sends text and a relay binary; each parser judges and counts
                        // what it did not expect.
                        Some(Ok(Message::Text(text))) => {
                            received_any = true;
                            if frames.send(Bytes::from(text)).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            received_any = true;
                            if frames.send(bytes).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            tracing::warn!("the event stream closed the connection");
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the event stream connection failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(%url, error = %e, "cannot connect to the event stream"),
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

/// A parsed frame: its cursor position (when readable, so the cursor moves past it even if
/// skipped) and the index change it carries, if any. A frame with several changes is sent as
/// several of these, with the position on the last only: a batch boundary between them must
/// not commit a cursor past changes still in flight.
pub(crate) type ParsedFrame = (Option<i64>, Option<IndexOp>);

/// Parse, validate and count each frame; identity events refresh the DID cache here.
async fn parse_frames(
    mut frames: mpsc::Receiver<Bytes>,
    parsed: mpsc::Sender<ParsedFrame>,
    lexicons: Arc<Lexicons>,
    resolver: Arc<Resolver>,
    metrics: Arc<Metrics>,
) {
    while let Some(frame) = frames.recv().await {
        let (time, outcome) = parse(&String::from_utf8_lossy(&frame), &lexicons);
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
    cursor_name: &str,
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
                .apply_batch(&ops, cursor.map(|c| (cursor_name, c)))
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
