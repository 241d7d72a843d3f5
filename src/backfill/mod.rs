//! Backfill: indexes the Herald records already in members' repositories, for a new Herald or
//! one that was away longer than the relay keeps events.
//!
//! ```text
//!  relay: listReposByCollection (or listRepos) ──dids──▶ backfill_repos (pending)
//!                                                             │ per PDS ≤ N at once
//!  DID document ─▶ PDS ─▶ com.atproto.sync.getRepo (CAR) ─▶ Verifier::repo ─▶ Store::apply_batch
//!                                                             │
//!                                      backfill_repos: done / unavailable / failed
//! ```
//! Resumable: progress is kept per repository, so a second run reads only what the first did
//! not finish (`--restart` starts over). Safe beside a running firehose consumer: every write
//! is ordered by `rev`, so whichever of the two saw the newer commit wins. The same
//! [`RepoReader`] re-reads one repository when the firehose sends `#sync` or a `tooBig` commit.
//!
//! Owns listing repositories, fetching them over HTTP (rate limits, retries) and progress
//! reporting. Must not touch serving or delivery; verification lives in `ingest::verify`.

mod list;
mod progress;
mod reader;
mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

pub use list::list_repos;
pub use progress::Progress;
pub use reader::{RepoOutcome, RepoReader};

use crate::metrics::Metrics;
use crate::storage::{StorageError, Store};

/// Why a repository, or the whole backfill, could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot resolve {did}: {source}")]
    Resolve {
        did: String,
        #[source]
        source: crate::identity::ResolveError,
    },
    #[error("{0} names no PDS in its DID document")]
    NoPds(String),
    /// The PDS says the repository cannot be served: deactivated, taken down, not found.
    #[error("{did} is unavailable: {error}")]
    Unavailable { did: String, error: String },
    #[error("{what} failed: {detail}")]
    Http { what: String, detail: String },
    #[error("{did} was refused: {source}")]
    Rejected {
        did: String,
        #[source]
        source: crate::ingest::verify::Rejected,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl BackfillError {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Resolve { .. } => "unresolved",
            Self::NoPds(_) => "no_pds",
            Self::Unavailable { .. } => "unavailable",
            Self::Http { .. } => "http",
            Self::Rejected { source, .. } => source.reason,
            Self::Storage(_) => "storage",
        }
    }
}

/// How a backfill run is set up.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// The relay (or PDS) to list repositories from, as an HTTP base URL.
    pub relay: Url,
    /// Repositories read at once from one PDS.
    pub per_pds: usize,
    /// Repositories read at once in all.
    pub concurrency: usize,
    /// Forget earlier progress and read everything again.
    pub restart: bool,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub listed: usize,
    pub done: u64,
    pub records: u64,
    pub unavailable: u64,
    pub failed: u64,
}

pub struct Backfill {
    pub reader: RepoReader,
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

impl Backfill {
    /// Lists, then reads every repository not yet done.
    pub async fn run(
        &self,
        options: &BackfillOptions,
        progress: &Progress,
    ) -> Result<Summary, BackfillError> {
        if options.restart {
            self.store.backfill_reset().await?;
        }
        let listed = list_repos(self.reader.http(), &options.relay).await?;
        self.store.backfill_enqueue(&listed).await?;
        let todo = self.store.backfill_todo().await?;
        progress.start(todo.len() as u64);
        let mut summary = Summary {
            listed: listed.len(),
            ..Summary::default()
        };

        let all = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let per_pds = PerPds::new(options.per_pds);
        let mut running = JoinSet::new();
        let started = Instant::now();
        for did in todo {
            let permit = all.clone().acquire_owned().await.expect("never closed");
            let reader = self.reader.clone();
            let store = self.store.clone();
            let per_pds = per_pds.clone();
            running.spawn(async move {
                let outcome = read_one(&reader, &store, &per_pds, &did).await;
                drop(permit);
                (did, outcome)
            });
            while let Some(done) = running.try_join_next() {
                self.tally(done, &mut summary, progress, started).await?;
            }
        }
        while let Some(done) = running.join_next().await {
            self.tally(done, &mut summary, progress, started).await?;
        }
        progress.finish(&summary, started.elapsed());
        Ok(summary)
    }

    async fn tally(
        &self,
        done: Result<(String, Result<RepoOutcome, BackfillError>), tokio::task::JoinError>,
        summary: &mut Summary,
        progress: &Progress,
        started: Instant,
    ) -> Result<(), BackfillError> {
        let (did, outcome) = match done {
            Ok(done) => done,
            Err(e) => {
                // A panicking task is a bug; count it and let the next run retry the repo.
                tracing::error!(error = %e, "backfill task failed");
                summary.failed += 1;
                return Ok(());
            }
        };
        match outcome {
            Ok(outcome) => {
                summary.done += 1;
                summary.records += outcome.records as u64;
                self.metrics.backfill_repo("done");
                self.store
                    .backfill_mark(
                        &did,
                        "done",
                        Some(&outcome.rev),
                        outcome.records as i64,
                        None,
                    )
                    .await?;
            }
            Err(BackfillError::Storage(e)) => return Err(BackfillError::Storage(e)),
            Err(e) => {
                let status = match e {
                    BackfillError::Unavailable { .. } => {
                        summary.unavailable += 1;
                        "unavailable"
                    }
                    _ => {
                        summary.failed += 1;
                        "failed"
                    }
                };
                self.metrics.backfill_repo(status);
                tracing::warn!(%did, reason = e.reason(), error = %e, "repository not read");
                self.store
                    .backfill_mark(&did, status, None, 0, Some(&e.to_string()))
                    .await?;
            }
        }
        progress.advance(summary, started.elapsed());
        Ok(())
    }
}

/// One semaphore per PDS host, made on first use.
#[derive(Clone)]
struct PerPds {
    limit: usize,
    hosts: Arc<std::sync::Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl PerPds {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            hosts: Arc::default(),
        }
    }

    fn of(&self, pds: &Url) -> Arc<Semaphore> {
        let host = pds.host_str().unwrap_or_default().to_owned();
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }
}

/// Reads one repository, at most `per_pds` at once from its PDS, and writes what it holds.
async fn read_one(
    reader: &RepoReader,
    store: &Store,
    per_pds: &PerPds,
    did: &str,
) -> Result<RepoOutcome, BackfillError> {
    let pds = reader.pds_of(did).await?;
    let _turn = per_pds
        .of(&pds)
        .acquire_owned()
        .await
        .expect("never closed");
    let outcome = reader.read_from(did, &pds).await?;
    store.apply_batch(&outcome.ops, None).await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_plc::{TestPlc, plc_did};
    use crate::ingest::verify::Verifier;
    use crate::lexicon::Lexicons;
    use crate::repo::testing::{TestRepo, register, signing_key, subscription, temp_store};
    use axum::Router;
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stand-in relay + PDS: lists repositories and serves them, with a rate limit first.
    #[derive(Clone)]
    struct Pds {
        by_collection: bool,
        alice: String,
        bob: String,
        car: Arc<Vec<u8>>,
        get_repo_calls: Arc<AtomicUsize>,
    }

    async fn by_collection(
        State(pds): State<Pds>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        if !pds.by_collection {
            // What the reference PDS answers: it lacks the method and its proxy wants auth.
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "AuthMissing", "message": "Authentication Required"})),
            )
                .into_response();
        }
        let repos = match (q.get("collection").map(String::as_str), q.get("cursor")) {
            (Some("community.herald.subscription"), None) => {
                json!({"repos": [{"did": pds.alice}], "cursor": "page2"})
            }
            (Some("community.herald.subscription"), Some(_)) => {
                json!({"repos": [{"did": pds.bob}], "cursor": "page3"})
            }
            _ => json!({"repos": []}),
        };
        axum::Json(repos).into_response()
    }

    async fn list_repos(State(pds): State<Pds>) -> Response {
        axum::Json(json!({"repos": [
            {"did": pds.alice, "head": "x", "rev": "3l", "active": true},
            {"did": pds.bob, "head": "x", "rev": "3l"},
            {"did": plc_did("carol"), "head": "x", "rev": "3l", "active": false, "status": "deactivated"},
        ]}))
        .into_response()
    }

    async fn get_repo(
        State(pds): State<Pds>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let call = pds.get_repo_calls.fetch_add(1, Ordering::SeqCst);
        if q.get("did") == Some(&pds.bob) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "RepoDeactivated", "message": "deactivated"})),
            )
                .into_response();
        }
        if call == 0 {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                "slow down",
            )
                .into_response();
        }
        (
            [("content-type", "application/vnd.ipld.car")],
            pds.car.as_ref().clone(),
        )
            .into_response()
    }

    async fn run(by: bool) {
        let key = signing_key(6);
        let (alice, bob) = (plc_did("alice"), plc_did("bob"));
        let repo = TestRepo::build(
            &alice,
            "3lnew",
            &key,
            &[
                (
                    "community.herald.subscription/3kabc",
                    subscription("did:plc:c"),
                ),
                (
                    "community.herald.preferences/self",
                    json!({
                    "$type": "community.herald.preferences", "pausedAll": false,
                    "updatedAt": "2026-01-01T00:00:00Z"}),
                ),
                ("app.bsky.feed.post/1", json!({"text": "hi"})),
            ],
        );
        let pds = Pds {
            by_collection: by,
            alice: alice.clone(),
            bob: bob.clone(),
            car: Arc::new(repo.car()),
            get_repo_calls: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/xrpc/com.atproto.sync.listReposByCollection",
                get(by_collection),
            )
            .route("/xrpc/com.atproto.sync.listRepos", get(list_repos))
            .route("/xrpc/com.atproto.sync.getRepo", get(get_repo))
            .with_state(pds.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let plc = TestPlc::start().await;
        for did in [&alice, &bob] {
            register(&plc, did, &key, Some(base.as_str()));
        }
        let (_dir, store) = temp_store().await;
        // Indexed earlier, gone from the repository since: the backfill deletes it.
        let lexicons = Arc::new(Lexicons::embedded().unwrap());
        let stale = crate::ingest::event::record_op(
            alice.clone(),
            "community.herald.subscription".into(),
            "3kold".into(),
            "3kaaaaaaaaaa2".into(),
            None,
            json!({"$type": "community.herald.subscription", "subject": "did:plc:c",
                   "createdAt": "2026-01-01T00:00:00Z", "routes": []}),
            &lexicons,
        );
        let crate::ingest::event::Parsed::Op(stale) = stale else {
            panic!("{stale:?}")
        };
        // Written on the firehose after the commit backfill reads: the newer rev must win.
        let newer = crate::ingest::event::record_op(
            alice.clone(),
            "community.herald.preferences".into(),
            "self".into(),
            "3lzzzzzzzzzz2".into(),
            None,
            json!({"$type": "community.herald.preferences", "pausedAll": true,
                   "updatedAt": "2026-02-01T00:00:00Z"}),
            &lexicons,
        );
        let crate::ingest::event::Parsed::Op(newer) = newer else {
            panic!("{newer:?}")
        };
        store.apply_batch(&[stale, newer], None).await.unwrap();

        let verifier = Verifier {
            resolver: Arc::new(plc.resolver()),
            lexicons,
        };
        let backfill = Backfill {
            reader: RepoReader::new(verifier, store.clone()),
            store: store.clone(),
            metrics: Arc::new(Metrics::new()),
        };
        let options = BackfillOptions {
            relay: base.clone(),
            per_pds: 2,
            concurrency: 4,
            restart: false,
        };
        let summary = backfill.run(&options, &Progress::Quiet).await.unwrap();
        assert_eq!(
            summary,
            Summary {
                listed: 2,
                done: 1,
                records: 2,
                unavailable: 1,
                failed: 0
            }
        );
        for (collection, rkey) in [
            ("community.herald.subscription", "3kabc"),
            ("community.herald.preferences", "self"),
        ] {
            assert!(
                store
                    .record_body(&alice, collection, rkey)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        let prefs = store
            .record_body(&alice, "community.herald.preferences", "self")
            .await
            .unwrap()
            .unwrap();
        assert!(prefs.contains(r#""pausedAll":true"#), "{prefs}");
        assert!(
            store
                .record_body(&alice, "community.herald.subscription", "3kold")
                .await
                .unwrap()
                .is_none()
        );
        // A second run has nothing left to read.
        let calls = pds.get_repo_calls.load(Ordering::SeqCst);
        let again = backfill.run(&options, &Progress::Quiet).await.unwrap();
        assert_eq!((again.done, again.unavailable), (0, 0));
        assert_eq!(pds.get_repo_calls.load(Ordering::SeqCst), calls);
        let counts = store.backfill_counts().await.unwrap();
        assert_eq!((counts.done, counts.unavailable, counts.pending), (1, 1, 0));
    }

    #[tokio::test]
    async fn backfill_lists_by_collection_reads_verifies_resumes_and_deletes_what_is_gone() {
        run(true).await;
    }

    #[tokio::test]
    async fn backfill_falls_back_to_list_repos_and_skips_inactive_accounts() {
        run(false).await;
    }

    /// Serves each DID's own repository slowly, counting how many requests overlap.
    #[derive(Clone, Default)]
    struct SlowPds {
        cars: Arc<HashMap<String, Vec<u8>>>,
        in_flight: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    async fn slow_get_repo(
        State(pds): State<SlowPds>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let now = pds.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        pds.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        pds.in_flight.fetch_sub(1, Ordering::SeqCst);
        let car = pds.cars[q["did"].as_str()].clone();
        ([("content-type", "application/vnd.ipld.car")], car).into_response()
    }

    async fn slow_list(State(pds): State<SlowPds>) -> Response {
        let repos: Vec<_> = pds.cars.keys().map(|did| json!({"did": did})).collect();
        axum::Json(json!({"repos": repos})).into_response()
    }

    #[tokio::test]
    async fn backfill_reads_at_most_per_pds_repositories_at_once_from_one_pds() {
        let key = signing_key(7);
        let dids: Vec<String> = ["ma", "mb", "mc", "md", "me"].map(plc_did).to_vec();
        let cars = dids
            .iter()
            .map(|did| {
                let repo = TestRepo::build(
                    did,
                    "3lrev",
                    &key,
                    &[(
                        "community.herald.subscription/3kabc",
                        subscription("did:plc:c"),
                    )],
                );
                (did.clone(), repo.car())
            })
            .collect();
        let pds = SlowPds {
            cars: Arc::new(cars),
            ..SlowPds::default()
        };
        let app = Router::new()
            .route(
                "/xrpc/com.atproto.sync.listReposByCollection",
                get(slow_list),
            )
            .route("/xrpc/com.atproto.sync.getRepo", get(slow_get_repo))
            .with_state(pds.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let plc = TestPlc::start().await;
        for did in &dids {
            register(&plc, did, &key, Some(base.as_str()));
        }
        let (_dir, store) = temp_store().await;
        let backfill = Backfill {
            reader: RepoReader::new(
                Verifier {
                    resolver: Arc::new(plc.resolver()),
                    lexicons: Arc::new(Lexicons::embedded().unwrap()),
                },
                store.clone(),
            ),
            store: store.clone(),
            metrics: Arc::new(Metrics::new()),
        };
        let options = BackfillOptions {
            relay: base,
            per_pds: 2,
            concurrency: 8,
            restart: false,
        };
        let summary = backfill.run(&options, &Progress::Quiet).await.unwrap();
        assert_eq!((summary.done, summary.records), (5, 5));
        assert_eq!(
            pds.most.load(Ordering::SeqCst),
            2,
            "per-PDS limit reached, never passed"
        );
        assert_eq!(
            store
                .count_records("community.herald.subscription")
                .await
                .unwrap(),
            5
        );
    }
}
