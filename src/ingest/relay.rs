//! The relay stage: firehose frames → verified index operations, in stream order.
//!
//! Each frame is decoded, then by type:
//! - `#commit`: verified ([`Verifier::commit`]); its Herald ops go to the indexer, or the whole
//!   commit is refused and counted. A `tooBig` commit cannot be verified from the frame, so the
//!   repository is re-read instead.
//! - `#sync`: the signed commit is verified and the repository re-read from its PDS: Herald's
//!   records in it replace what the index holds for that account.
//! - `#identity`: the cached DID document is dropped, so the next key lookup fetches it.
//! - `#account`: the account's status goes to the index, ordered by `seq`.
//! - `#info` (`OutdatedCursor`) and error frames are logged and counted; a `FutureCursor`
//!   error forgets the cursor so the next connection starts live.
//! - anything else is skipped and counted.
//!
//! Every frame's `seq` moves the cursor, refused ones included, so a bad frame is never asked
//! for again. Re-reading a repository runs on its own task and never holds up the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use url::Url;

use super::ParsedFrame;
use super::firehose::{self, Frame};
use super::verify::{Verifier, is_herald_path};
use crate::metrics::Metrics;
use crate::storage::IndexOp;

/// The NSID Herald appends to `HERALD_RELAY_URL`.
pub const SUBSCRIBE_REPOS: &str = "xrpc/com.atproto.sync.subscribeRepos";

/// `{base}/xrpc/com.atproto.sync.subscribeRepos`, with `http(s)` turned into `ws(s)`.
pub fn subscribe_base(base: &Url) -> Url {
    let mut url = with_scheme(base, &[("http", "ws"), ("https", "wss")]);
    let path = format!("{}/{SUBSCRIBE_REPOS}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url
}

/// The HTTP base of a relay URL (for backfill's listing calls): `ws(s)` turned into `http(s)`.
pub fn http_base(base: &Url) -> Url {
    with_scheme(base, &[("ws", "http"), ("wss", "https")])
}

/// `url` with its scheme swapped by `map`; other schemes are kept.
fn with_scheme(url: &Url, map: &[(&str, &str)]) -> Url {
    let mut url = url.clone();
    if let Some((_, to)) = map.iter().find(|(from, _)| *from == url.scheme()) {
        // Between special schemes (http, https, ws, wss) the swap cannot fail.
        let _ = url.set_scheme(to);
    }
    url
}

pub struct Stage {
    pub verifier: Verifier,
    /// Re-reads a repository after `#sync` or a `tooBig` commit.
    pub repos: crate::backfill::RepoReader,
    pub metrics: Arc<Metrics>,
    /// Reset on `FutureCursor`, so the reader's next connection starts live.
    pub committed: Arc<AtomicI64>,
}

impl Stage {
    pub async fn run(&self, mut frames: mpsc::Receiver<Bytes>, parsed: mpsc::Sender<ParsedFrame>) {
        while let Some(frame) = frames.recv().await {
            if self.handle(&frame, &parsed).await.is_err() {
                return;
            }
        }
    }

    /// Handles one frame; fails only when the indexer is gone.
    async fn handle(
        &self,
        frame: &[u8],
        parsed: &mpsc::Sender<ParsedFrame>,
    ) -> Result<(), mpsc::error::SendError<ParsedFrame>> {
        let frame = match firehose::decode(frame) {
            Ok(frame) => frame,
            Err(e) => {
                self.metrics.ingest_skipped(e.reason);
                tracing::warn!(reason = e.reason, detail = %e.detail, seq = ?e.seq, "refused frame");
                return parsed.send((e.seq, None)).await;
            }
        };
        let seq = frame.seq();
        match frame {
            // A commit too big to carry its blocks cannot be verified from the frame; when it may
            // touch Herald's records, read the repository instead.
            Frame::Commit(msg)
                if msg.too_big
                    && (msg.ops.is_empty()
                        || msg.ops.iter().any(|op| is_herald_path(&op.path))) =>
            {
                self.metrics.ingest_event("commit");
                self.resync(msg.repo, parsed.clone());
            }
            Frame::Commit(msg) => match self.verifier.commit(&msg).await {
                Ok(verified) => {
                    for skip in &verified.skipped {
                        self.metrics.ingest_skipped(skip.reason);
                        tracing::warn!(reason = skip.reason, detail = %skip.detail, "skipped record");
                    }
                    if verified.ops.is_empty() {
                        return parsed.send((seq, None)).await;
                    }
                    self.metrics.ingest_event("commit");
                    let last = verified.ops.len() - 1;
                    for (i, op) in verified.ops.into_iter().enumerate() {
                        parsed
                            .send(((i == last).then_some(seq).flatten(), Some(op)))
                            .await?;
                    }
                    return Ok(());
                }
                Err(rejected) => {
                    self.metrics.ingest_rejected(rejected.reason);
                    tracing::warn!(repo = %msg.repo, seq = msg.seq, reason = rejected.reason,
                        detail = %rejected.detail, "refused commit");
                }
            },
            Frame::Sync(msg) => match self.verifier.sync(&msg).await {
                Ok(_) => {
                    self.metrics.ingest_event("sync");
                    self.resync(msg.did, parsed.clone());
                }
                Err(rejected) => {
                    self.metrics.ingest_rejected(rejected.reason);
                    tracing::warn!(repo = %msg.did, reason = rejected.reason,
                        detail = %rejected.detail, "refused sync");
                }
            },
            Frame::Identity(msg) => {
                self.metrics.ingest_event("identity");
                self.verifier.resolver.invalidate(&msg.did);
            }
            Frame::Account(msg) => {
                self.metrics.ingest_event("account");
                let op = IndexOp::Account {
                    did: msg.did,
                    active: msg.active,
                    status: msg.status,
                    seq: msg.seq,
                };
                return parsed.send((seq, Some(op))).await;
            }
            Frame::Info(info) => {
                self.metrics.ingest_event("info");
                tracing::warn!(name = %info.name, message = ?info.message, "relay info");
            }
            Frame::Error(error) => {
                self.metrics.ingest_skipped("error_frame");
                tracing::error!(error = %error.error, message = ?error.message, "relay error");
                if error.error == "FutureCursor" {
                    self.committed.store(-1, Ordering::Release);
                }
            }
            Frame::Unknown { kind, .. } => {
                self.metrics.ingest_skipped("unknown_kind");
                tracing::debug!(%kind, "skipped frame of an unknown type");
            }
        }
        parsed.send((seq, None)).await
    }

    /// Re-reads `did`'s repository from its PDS on a task of its own and sends what it holds.
    /// Only accounts with records in the index are re-read: on the whole network a `#sync`
    /// for anyone else would download a repository to find nothing (backfill covers accounts
    /// whose first Herald records arrived while Herald was not listening).
    fn resync(&self, did: String, parsed: mpsc::Sender<ParsedFrame>) {
        let fetcher = self.repos.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            match fetcher.holds_records(&did).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(%did, error = %e, "cannot tell whether to re-read; re-reading")
                }
            }
            match fetcher.read(&did).await {
                Ok(outcome) => {
                    metrics.backfill_repo("done");
                    for op in outcome.ops {
                        if parsed.send((None, Some(op))).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    metrics.backfill_repo("failed");
                    tracing::warn!(%did, error = %e, "cannot re-read the repository");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_url_gets_the_subscribe_path_and_a_websocket_scheme() {
        let url = |s| subscribe_base(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            url("wss://bsky.network"),
            "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos"
        );
        assert_eq!(
            url("http://127.0.0.1:2583/"),
            "ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos"
        );
        assert_eq!(
            http_base(&Url::parse("ws://127.0.0.1:2583").unwrap()).as_str(),
            "http://127.0.0.1:2583/"
        );
    }
}

#[cfg(test)]
mod stage_tests {
    use super::*;
    use crate::identity::test_plc::{TestPlc, plc_did};
    use crate::ingest::verify::Verifier;
    use crate::lexicon::Lexicons;
    use crate::repo::testing::{
        TestRepo, commit_frame, frame, op, register, signing_key, subscription, temp_store,
    };
    use serde_json::json;

    const SUB: &str = "community.herald.subscription/3kabc";
    const PREFS: &str = "community.herald.preferences/self";

    #[tokio::test]
    async fn bad_frames_are_counted_and_passed_over_and_good_ones_still_index() {
        let key = signing_key(4);
        let plc = TestPlc::start().await;
        let did = plc_did("alice");
        register(&plc, &did, &key, None);
        let (_dir, store) = temp_store().await;
        let verifier = Verifier {
            resolver: Arc::new(plc.resolver()),
            lexicons: Arc::new(Lexicons::embedded().unwrap()),
        };
        let metrics = Arc::new(Metrics::new());
        let stage = Stage {
            repos: crate::backfill::RepoReader::new(verifier.clone(), store.clone()),
            verifier,
            metrics: metrics.clone(),
            committed: Arc::new(AtomicI64::new(41)),
        };

        let prefs = json!({"$type": "community.herald.preferences", "pausedAll": false,
                           "updatedAt": "2026-01-01T00:00:00Z"});
        let repo = TestRepo::build(
            &did,
            "3l2",
            &key,
            &[(SUB, subscription("did:plc:c")), (PREFS, prefs)],
        );
        let both = [
            op("create", SUB, Some(repo.cid_of(SUB))),
            op("create", PREFS, Some(repo.cid_of(PREFS))),
        ];
        let good = commit_frame(1, &repo, &repo.car(), &both, false);
        let mut tampered_car = repo.car();
        let last = tampered_car.len() - 1;
        tampered_car[last] ^= 1;
        let frames: Vec<Vec<u8>> = vec![
            good[..good.len() / 2].to_vec(),
            commit_frame(3, &repo, &tampered_car, &both, false),
            commit_frame(
                4,
                &repo,
                &repo.car_without(&[repo.cid_of(PREFS)]),
                &both,
                false,
            ),
            frame(
                "#commit",
                &json!({"seq": 5, "pad": "x".repeat(firehose::MAX_FRAME_BYTES)}),
            ),
            frame(
                "#account",
                &json!({"seq": 6, "did": did, "time": "t", "active": false, "status": "deactivated"}),
            ),
            frame("#identity", &json!({"seq": 7, "did": did, "time": "t"})),
            frame("#labels", &json!({"seq": 8})),
            good.clone(),
        ];
        let (frames_tx, frames_rx) = mpsc::channel(16);
        let (parsed_tx, mut parsed_rx) = mpsc::channel(16);
        for f in frames {
            frames_tx.send(Bytes::from(f)).await.unwrap();
        }
        drop(frames_tx);
        stage.run(frames_rx, parsed_tx).await;
        let mut out = Vec::new();
        while let Some(p) = parsed_rx.recv().await {
            out.push(p);
        }
        let seqs: Vec<Option<i64>> = out.iter().map(|(s, _)| *s).collect();
        // The cut frame has no readable seq; the good commit's two ops carry its seq on the last.
        assert_eq!(
            seqs,
            [
                None,
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                None,
                Some(1)
            ]
        );
        let ops: Vec<&str> = out
            .iter()
            .filter_map(|(_, op)| op.as_ref())
            .map(|op| match op {
                IndexOp::Put { collection, .. } => collection.as_str(),
                IndexOp::Account { .. } => "account",
                IndexOp::Delete { .. } => "delete",
            })
            .collect();
        assert_eq!(
            ops,
            [
                "account",
                "community.herald.subscription",
                "community.herald.preferences"
            ]
        );
        assert_eq!(metrics.skipped_count("bad_body"), 1);
        assert_eq!(metrics.rejected_count("cid_mismatch"), 1);
        assert_eq!(metrics.rejected_count("missing_block"), 1);
        assert_eq!(metrics.skipped_count("oversize"), 1);
        assert_eq!(metrics.skipped_count("unknown_kind"), 1);
        // A FutureCursor error forgets the cursor, so the next connection starts live.
        let mut error = serde_ipld_dagcbor::to_vec(&json!({"op": -1})).unwrap();
        error.extend(serde_ipld_dagcbor::to_vec(&json!({"error": "FutureCursor"})).unwrap());
        let (tx, _rx) = mpsc::channel(1);
        stage.handle(&error, &tx).await.unwrap();
        assert_eq!(stage.committed.load(Ordering::Acquire), -1);
    }
}

#[cfg(test)]
mod sync_tests {
    use super::*;
    use crate::identity::test_plc::{TestPlc, plc_did};
    use crate::ingest::event::{Parsed, record_op};
    use crate::ingest::verify::Verifier;
    use crate::lexicon::Lexicons;
    use crate::repo::testing::{
        TestRepo, register, signing_key, subscription, sync_frame, temp_store,
    };

    /// `#sync` re-reads a known account's repository: what it holds is indexed, what it no
    /// longer holds is deleted; an account the index does not know is left alone.
    #[tokio::test]
    async fn a_sync_frame_re_reads_the_repository_of_a_known_account() {
        let key = signing_key(8);
        let (alice, bob) = (plc_did("alice"), plc_did("bob"));
        let repo = TestRepo::build(
            &alice,
            "3lsync",
            &key,
            &[(
                "community.herald.subscription/3knew",
                subscription("did:plc:c"),
            )],
        );
        let car = repo.car();
        let app = axum::Router::new().route(
            "/xrpc/com.atproto.sync.getRepo",
            axum::routing::get(move || async move { car }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pds = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let plc = TestPlc::start().await;
        for did in [&alice, &bob] {
            register(&plc, did, &key, Some(&pds));
        }
        let (_dir, store) = temp_store().await;
        let lexicons = Arc::new(Lexicons::embedded().unwrap());
        let Parsed::Op(old) = record_op(
            alice.clone(),
            "community.herald.subscription".into(),
            "3kold".into(),
            "3kaaaaaaaaaa2".into(),
            None,
            subscription("did:plc:c"),
            &lexicons,
        ) else {
            panic!()
        };
        store.apply_batch(&[old], None).await.unwrap();
        let verifier = Verifier {
            resolver: Arc::new(plc.resolver()),
            lexicons,
        };
        let stage = Stage {
            repos: crate::backfill::RepoReader::new(verifier.clone(), store.clone()),
            verifier,
            metrics: Arc::new(Metrics::new()),
            committed: Arc::new(AtomicI64::new(0)),
        };
        let (tx, mut rx) = mpsc::channel(16);
        let unknown = TestRepo::build(&bob, "3lsync", &key, &[]);
        stage.handle(&sync_frame(20, &unknown), &tx).await.unwrap();
        stage.handle(&sync_frame(21, &repo), &tx).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("the re-read arrives")
                .unwrap();
            got.push(next);
        }
        let seqs: Vec<Option<i64>> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(&seqs[..2], [Some(20), Some(21)]);
        let keys: Vec<String> = got[2..]
            .iter()
            .map(|(_, op)| match op {
                Some(IndexOp::Put { rkey, rev, .. }) => format!("put {rkey} {rev}"),
                Some(IndexOp::Delete { rkey, rev, .. }) => format!("delete {rkey} {rev}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, ["put 3knew 3lsync", "delete 3kold 3lsync"]);
        // Nothing was read for bob, whom the index does not know.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv())
                .await
                .is_err()
        );
    }
}
