//! Firehose benchmark: frames decoded and commits verified per second, on a recorded stream of
//! real frames from the reference PDS (`scripts/bench/firehose/record.mjs`).
//!
//! Each frame goes through what Herald's relay stage does with it, without the index: decode;
//! `#commit` → [`Verifier::commit`] (CAR read with every block's hash checked, signature against
//! the repo's `#atproto` key resolved through the PLC directory and cached, each
//! `community.herald.*` op proven in the MST, records decoded and checked against their
//! lexicon); `#sync` → [`Verifier::sync`]; `#identity` → the cached DID document dropped.
//! Everything runs on one current-thread Tokio runtime. An *event* is one verified record
//! operation (a create, update or delete), which is what `@atproto/sync`'s `Firehose` hands
//! its `handleEvent` — the figure `scripts/bench/firehose-vs-atproto-sync` compares.
//!
//! Modes (arguments; both by default):
//! - `ws`: frames read from `scripts/bench/firehose/replay.mjs` over a websocket
//!   (`HERALD_BENCH_FIREHOSE_URL=http://127.0.0.1:PORT`, which is also the PLC directory),
//!   timed from the connection until every recorded frame is handled;
//! - `memory`: the same frames from the recording file, already in memory: decode and verify
//!   alone. The PLC directory is the replay server if `HERALD_BENCH_FIREHOSE_URL` is set, else
//!   an in-process server on another thread.
//!
//! `HERALD_BENCH_FIREHOSE_DIR` is the recording (default `target/firehose-bench`). Prints one
//! JSON line per mode to stdout, a summary to stderr. Fails if any commit is refused or the
//! events differ from the recording's count.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald::identity::{Resolver, ResolverConfig};
use herald::ingest::firehose::{self, Frame, MAX_FRAME_BYTES};
use herald::ingest::verify::Verifier;
use herald::lexicon::Lexicons;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::Url;

fn main() -> anyhow::Result<()> {
    let dir = std::env::var("HERALD_BENCH_FIREHOSE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/firehose-bench")
        });
    let modes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "ws" || a == "memory")
        .collect();
    let modes = if modes.is_empty() {
        vec!["ws".to_owned(), "memory".to_owned()]
    } else {
        modes
    };
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (record one with scripts/bench/firehose-vs-atproto-sync)",
                dir.display()
            )
        })?)?;
    let expected_frames = meta["frames"].as_u64().unwrap_or(0) as usize;
    let expected_events = meta["heraldCommits"].as_u64().unwrap_or(0) as usize;
    let replay = std::env::var("HERALD_BENCH_FIREHOSE_URL").ok();

    let mut failed = false;
    for mode in modes {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let report = match mode.as_str() {
            "ws" => {
                let Some(url) = replay.as_deref() else {
                    anyhow::bail!("ws mode needs HERALD_BENCH_FIREHOSE_URL (replay.mjs's URL)");
                };
                let url = Url::parse(url)?;
                runtime.block_on(over_websocket(&url, expected_frames))?
            }
            _ => {
                let recording = std::fs::read(dir.join("frames.bin"))?;
                let frames = read_frames(&recording)?;
                let (plc, _server) = match &replay {
                    Some(url) => (Url::parse(url)?, None),
                    None => {
                        let (url, server) = serve_dids(&dir)?;
                        (url, Some(server))
                    }
                };
                runtime.block_on(in_memory(&plc, &frames))?
            }
        };
        let ok = report.rejected == 0
            && report.events == expected_events
            && report.frames == expected_frames;
        failed |= !ok;
        eprintln!(
            "firehose {mode}: {} frames, {} events in {:.3} s = {:.0} events/s ({:.0} frames/s); \
             {} refused{}; by type {:?}; skipped records {}; VmHWM {:.1} MiB{}",
            report.frames,
            report.events,
            report.seconds,
            report.events as f64 / report.seconds,
            report.frames as f64 / report.seconds,
            report.rejected,
            report
                .first_rejection
                .as_deref()
                .map(|r| format!(" (first: {r})"))
                .unwrap_or_default(),
            report.kinds,
            report.skipped,
            common::peak_rss_mib(),
            if ok {
                String::new()
            } else {
                format!(
                    " — FAILED: expected {expected_frames} frames, {expected_events} events, none refused"
                )
            },
        );
        println!(
            "{}",
            json!({
                "mode": mode,
                "frames": report.frames,
                "events": report.events,
                "seconds": report.seconds,
                "eventsPerSecond": report.events as f64 / report.seconds,
                "rejected": report.rejected,
                "firstRejection": report.first_rejection,
                "skippedRecords": report.skipped,
                "vmHwmMib": common::peak_rss_mib(),
            })
        );
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

#[derive(Default)]
struct Report {
    frames: usize,
    events: usize,
    skipped: usize,
    rejected: usize,
    first_rejection: Option<String>,
    kinds: BTreeMap<&'static str, usize>,
    seconds: f64,
}

/// What Herald's relay stage does with one frame, minus the index.
struct Consumer {
    verifier: Verifier,
    report: Report,
}

impl Consumer {
    fn new(plc: &Url) -> anyhow::Result<Self> {
        let resolver = Resolver::new(ResolverConfig {
            plc_url: plc.clone(),
            cache_ttl: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(10),
        });
        Ok(Self {
            verifier: Verifier {
                resolver: Arc::new(resolver),
                lexicons: Arc::new(Lexicons::embedded()?),
            },
            report: Report::default(),
        })
    }

    fn refuse(&mut self, what: String) {
        self.report.rejected += 1;
        self.report.first_rejection.get_or_insert(what);
    }

    async fn handle(&mut self, bytes: &[u8]) {
        self.report.frames += 1;
        let frame = match firehose::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => return self.refuse(format!("frame {}: {e}", self.report.frames)),
        };
        let kind = match frame {
            Frame::Commit(msg) if msg.too_big => "commit (tooBig)",
            Frame::Commit(msg) => {
                match self.verifier.commit(&msg).await {
                    Ok(verified) => {
                        self.report.events += verified.ops.len();
                        self.report.skipped += verified.skipped.len();
                    }
                    Err(e) => self.refuse(format!("commit seq {} of {}: {e}", msg.seq, msg.repo)),
                }
                "commit"
            }
            Frame::Sync(msg) => {
                if let Err(e) = self.verifier.sync(&msg).await {
                    self.refuse(format!("sync seq {} of {}: {e}", msg.seq, msg.did));
                }
                "sync"
            }
            Frame::Identity(msg) => {
                self.verifier.resolver.invalidate(&msg.did);
                "identity"
            }
            Frame::Account(_) => "account",
            Frame::Info(_) => "info",
            Frame::Error(_) => "error",
            Frame::Unknown { .. } => "unknown",
        };
        *self.report.kinds.entry(kind).or_default() += 1;
    }
}

async fn over_websocket(replay: &Url, expected_frames: usize) -> anyhow::Result<Report> {
    let mut consumer = Consumer::new(replay)?;
    let mut url = replay.clone();
    let _ = url.set_scheme(if replay.scheme() == "https" {
        "wss"
    } else {
        "ws"
    });
    url.set_path("/xrpc/com.atproto.sync.subscribeRepos");
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES + 1024))
        .max_frame_size(Some(MAX_FRAME_BYTES + 1024));
    let started = Instant::now();
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false).await?;
    while consumer.report.frames < expected_frames {
        match tokio::time::timeout(Duration::from_secs(60), socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => consumer.handle(&bytes).await,
            Ok(Some(Ok(Message::Close(_))) | None) => {
                anyhow::bail!("the replay server closed the stream")
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Err(_) => anyhow::bail!("no frame for 60 s after {}", consumer.report.frames),
        }
    }
    consumer.report.seconds = started.elapsed().as_secs_f64();
    let _ = socket.close(None).await;
    Ok(consumer.report)
}

async fn in_memory(plc: &Url, frames: &[&[u8]]) -> anyhow::Result<Report> {
    let mut consumer = Consumer::new(plc)?;
    let started = Instant::now();
    for frame in frames {
        consumer.handle(frame).await;
    }
    consumer.report.seconds = started.elapsed().as_secs_f64();
    Ok(consumer.report)
}

/// u32 big-endian length + bytes, repeated (record.mjs's `frames.bin`).
fn read_frames(mut bytes: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        anyhow::ensure!(bytes.len() >= 4, "truncated recording");
        let len = u32::from_be_bytes(bytes[..4].try_into()?) as usize;
        anyhow::ensure!(bytes.len() >= 4 + len, "truncated recording");
        frames.push(&bytes[4..4 + len]);
        bytes = &bytes[4 + len..];
    }
    Ok(frames)
}

/// Serves the recorded DID documents (`GET /{did}`) from a thread of its own.
fn serve_dids(dir: &std::path::Path) -> anyhow::Result<(Url, std::thread::JoinHandle<()>)> {
    let docs: BTreeMap<String, Value> =
        serde_json::from_slice(&std::fs::read(dir.join("dids.json"))?)?;
    let docs = Arc::new(docs);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the DID server");
        runtime.block_on(async move {
            use axum::extract::{Path, State};
            use axum::http::StatusCode;
            use axum::response::IntoResponse;
            let app = axum::Router::new()
                .route(
                    "/{did}",
                    axum::routing::get(
                        |State(docs): State<Arc<BTreeMap<String, Value>>>,
                         Path(did): Path<String>| async move {
                            match docs.get(&did) {
                                Some(doc) => axum::Json(doc.clone()).into_response(),
                                None => StatusCode::NOT_FOUND.into_response(),
                            }
                        },
                    ),
                )
                .with_state(docs);
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("the DID server's socket");
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok((url, server))
}
