//! Relay commits and whole repositories → index operations, believed only once proven.
//!
//! A commit is checked in this order, and refused whole at the first failure:
//! 1. its CAR reads and every block hashes to its CID;
//! 2. the commit block is there, names the frame's repo and rev;
//! 3. its signature verifies against the repo's `#atproto` key — with the cached key, then once
//!    more with a freshly resolved one (the key may have rotated);
//! 4. for every `community.herald.*` op, the MST under the commit maps the op's path to the
//!    op's CID (creates and updates) or proves it absent (deletes).
//!
//! A record that is proven but does not match its lexicon is skipped on its own (as on
//! Jetstream); the commit's other records still count. Commits that touch no
//! `community.herald.*` path are dropped before any of this: nothing from them is indexed.

use std::sync::Arc;

use crate::identity::{ResolveError, Resolver};
use crate::lexicon::Lexicons;
use crate::model::{COLLECTIONS, is_did};
use crate::repo::{Car, Cid, Commit, Mst, RepoError, record_json};
use crate::storage::IndexOp;

use super::event::{Parsed, Skip, record_op};
use super::firehose::{CommitMsg, SyncMsg};

/// Every Herald collection shares this prefix; MST walks of whole repos start here.
pub const HERALD_PREFIX: &str = "community.herald.";

/// What a verified commit or repository means for the index.
#[derive(Debug, Default)]
pub struct Verified {
    pub ops: Vec<IndexOp>,
    /// Proven records that do not match their lexicon, skipped one by one.
    pub skipped: Vec<Skip>,
}

/// Why a commit or repository was refused. `reason` is a stable label for metrics.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejected {
    pub reason: &'static str,
    pub detail: String,
}

impl From<RepoError> for Rejected {
    fn from(e: RepoError) -> Self {
        Self {
            reason: e.reason(),
            detail: e.to_string(),
        }
    }
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// Checks commits and repositories against their authors' keys.
#[derive(Clone)]
pub struct Verifier {
    pub resolver: Arc<Resolver>,
    pub lexicons: Arc<Lexicons>,
}

/// Whether a repo path (`collection/rkey`) is one Herald indexes.
pub fn is_herald_path(path: &str) -> bool {
    path.split_once('/')
        .is_some_and(|(collection, _)| COLLECTIONS.contains(&collection))
}

impl Verifier {
    /// A `#commit` message → the index operations it proves.
    pub async fn commit(&self, msg: &CommitMsg<'_>) -> Result<Verified, Rejected> {
        if !msg.ops.iter().any(|op| is_herald_path(&op.path)) {
            return Ok(Verified::default());
        }
        if !is_did(&msg.repo) {
            return Err(reject("bad_did", format!("{:?} is not a DID", msg.repo)));
        }
        let car = Car::read(msg.blocks)?;
        let commit = Commit::decode(car.get(&msg.commit)?, &msg.repo)?;
        if commit.rev != msg.rev {
            return Err(reject(
                "rev_mismatch",
                format!("frame says rev {}, commit says {}", msg.rev, commit.rev),
            ));
        }
        self.check_signature(&commit).await?;
        let mst = Mst::new(&car.blocks, commit.data);
        let mut verified = Verified::default();
        for op in msg.ops.iter().filter(|op| is_herald_path(&op.path)) {
            let (collection, rkey) = op.path.split_once('/').unwrap_or_default();
            if rkey.is_empty() || rkey.len() > 512 {
                return Err(reject("malformed_op", format!("path {:?}", op.path)));
            }
            let proven = mst.get(&op.path)?;
            match op.action.as_str() {
                "create" | "update" => {
                    let Some(cid) = op.cid else {
                        return Err(reject("malformed_op", format!("{} without a CID", op.path)));
                    };
                    if proven != Some(cid) {
                        return Err(reject(
                            "unproven_op",
                            format!("{} is not {cid} in the commit's tree", op.path),
                        ));
                    }
                    let record = record_json(car.get(&cid)?)?;
                    push(
                        &mut verified,
                        record_op(
                            msg.repo.clone(),
                            collection.to_owned(),
                            rkey.to_owned(),
                            commit.rev.clone(),
                            Some(cid.to_string()),
                            record,
                            &self.lexicons,
                        ),
                    );
                }
                "delete" => {
                    if proven.is_some() {
                        return Err(reject(
                            "unproven_op",
                            format!("{} is deleted but still in the commit's tree", op.path),
                        ));
                    }
                    verified.ops.push(IndexOp::Delete {
                        did: msg.repo.clone(),
                        collection: collection.to_owned(),
                        rkey: rkey.to_owned(),
                        rev: commit.rev.clone(),
                    });
                }
                other => return Err(reject("malformed_op", format!("action {other:?}"))),
            }
        }
        Ok(verified)
    }

    /// A `#sync` message: its CAR holds only the signed commit. Returns the verified commit; the
    /// caller then re-reads the repository, which is what `#sync` asks for.
    pub async fn sync(&self, msg: &SyncMsg<'_>) -> Result<Commit, Rejected> {
        if !is_did(&msg.did) {
            return Err(reject("bad_did", format!("{:?} is not a DID", msg.did)));
        }
        let car = Car::read(msg.blocks)?;
        let root = *car
            .roots
            .first()
            .ok_or_else(|| reject("bad_car", "no root"))?;
        let commit = Commit::decode(car.get(&root)?, &msg.did)?;
        self.check_signature(&commit).await?;
        Ok(commit)
    }

    /// A whole repository (`com.atproto.sync.getRepo`'s CAR) → a `Put` for every Herald
    /// record in it, at the commit's rev. Returns the commit too, so the caller can delete
    /// indexed records the repository no longer holds.
    pub async fn repo(&self, did: &str, car: &[u8]) -> Result<(Commit, Verified), Rejected> {
        let car = Car::read(car)?;
        let root: Cid = *car
            .roots
            .first()
            .ok_or_else(|| reject("bad_car", "no root"))?;
        let commit = Commit::decode(car.get(&root)?, did)?;
        self.check_signature(&commit).await?;
        let mut verified = Verified::default();
        Mst::new(&car.blocks, commit.data).walk_prefix(HERALD_PREFIX, &mut |path, cid| {
            let Some((collection, rkey)) = path.split_once('/') else {
                return Ok(());
            };
            if !COLLECTIONS.contains(&collection) {
                return Ok(());
            }
            let record = record_json(car.get(&cid)?)?;
            push(
                &mut verified,
                record_op(
                    did.to_owned(),
                    collection.to_owned(),
                    rkey.to_owned(),
                    commit.rev.clone(),
                    Some(cid.to_string()),
                    record,
                    &self.lexicons,
                ),
            );
            Ok(())
        })?;
        Ok((commit, verified))
    }

    async fn check_signature(&self, commit: &Commit) -> Result<(), Rejected> {
        let unresolved = |e: ResolveError| reject("unresolved_key", e.to_string());
        let key = self
            .resolver
            .signing_key(&commit.did, false)
            .await
            .map_err(unresolved)?;
        if commit.verify(&key).is_ok() {
            return Ok(());
        }
        let key = self
            .resolver
            .signing_key(&commit.did, true)
            .await
            .map_err(unresolved)?;
        Ok(commit.verify(&key)?)
    }
}

fn push(verified: &mut Verified, parsed: Parsed) {
    match parsed {
        Parsed::Op(op) => verified.ops.push(op),
        Parsed::Skip(skip) => verified.skipped.push(skip),
        Parsed::Identity(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_plc::{TestPlc, plc_did, plc_doc};
    use crate::ingest::firehose::{Frame, decode};
    use crate::repo::testing::{
        Op, TestRepo, commit_frame, op, public_key as public, record_block, signing_key as key,
        subscription, sync_frame,
    };
    use serde_json::json;

    const SUB: &str = "community.herald.subscription/3kabc";

    struct Fixture {
        plc: TestPlc,
        verifier: Verifier,
        did: String,
    }

    async fn fixture(signing: &k256::ecdsa::SigningKey) -> Fixture {
        let plc = TestPlc::start().await;
        let did = plc_did("alice");
        plc.put(&did, plc_doc(&did, &public(signing)));
        let verifier = Verifier {
            resolver: Arc::new(plc.resolver()),
            lexicons: Arc::new(Lexicons::embedded().unwrap()),
        };
        Fixture { plc, verifier, did }
    }

    async fn verify(
        f: &Fixture,
        repo: &TestRepo,
        car: &[u8],
        ops: &[Op],
    ) -> Result<Verified, Rejected> {
        let frame = commit_frame(1, repo, car, ops, false);
        let Frame::Commit(msg) = decode(&frame).unwrap() else {
            panic!("not a commit")
        };
        f.verifier.commit(&msg).await
    }

    #[tokio::test]
    async fn a_signed_and_proven_create_becomes_a_put_at_the_commits_rev() {
        let k = key(1);
        let f = fixture(&k).await;
        let repo = TestRepo::build(
            &f.did,
            "3laaaaaaaaaa2",
            &k,
            &[(SUB, subscription("did:plc:c"))],
        );
        let verified = verify(
            &f,
            &repo,
            &repo.car(),
            &[op("create", SUB, Some(repo.cid_of(SUB)))],
        )
        .await
        .unwrap();
        match verified.ops.as_slice() {
            [
                IndexOp::Put {
                    did,
                    collection,
                    rkey,
                    rev,
                    cid,
                    ..
                },
            ] => {
                assert_eq!(did, &f.did);
                assert_eq!(
                    (collection.as_str(), rkey.as_str()),
                    ("community.herald.subscription", "3kabc")
                );
                assert_eq!(rev, "3laaaaaaaaaa2");
                assert_eq!(cid.as_deref(), Some(repo.cid_of(SUB).to_string().as_str()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_commit_signed_by_another_key_is_refused_after_one_fresh_lookup() {
        let f = fixture(&key(1)).await;
        let repo = TestRepo::build(&f.did, "3l", &key(2), &[(SUB, subscription("did:plc:c"))]);
        let before = f.plc.hits();
        let err = verify(
            &f,
            &repo,
            &repo.car(),
            &[op("create", SUB, Some(repo.cid_of(SUB)))],
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason, "bad_signature");
        assert_eq!(
            f.plc.hits() - before,
            2,
            "cached lookup, then one fresh one"
        );
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_by_the_fresh_lookup() {
        let f = fixture(&key(1)).await;
        f.verifier.resolver.resolve(&f.did).await.unwrap();
        f.plc.put(&f.did, plc_doc(&f.did, &public(&key(3))));
        let repo = TestRepo::build(&f.did, "3l", &key(3), &[(SUB, subscription("did:plc:c"))]);
        let verified = verify(
            &f,
            &repo,
            &repo.car(),
            &[op("update", SUB, Some(repo.cid_of(SUB)))],
        )
        .await;
        assert_eq!(verified.unwrap().ops.len(), 1);
    }

    #[tokio::test]
    async fn ops_the_tree_does_not_prove_are_refused_whole() {
        let k = key(1);
        let f = fixture(&k).await;
        let repo = TestRepo::build(&f.did, "3l", &k, &[(SUB, subscription("did:plc:c"))]);
        let other = record_block(&subscription("did:plc:other")).0;
        let err = verify(&f, &repo, &repo.car(), &[op("create", SUB, Some(other))])
            .await
            .unwrap_err();
        assert_eq!(err.reason, "unproven_op");
        let err = verify(&f, &repo, &repo.car(), &[op("delete", SUB, None)])
            .await
            .unwrap_err();
        assert_eq!(
            err.reason, "unproven_op",
            "a deleted record still in the tree"
        );
        let err = verify(
            &f,
            &repo,
            &repo.car_without(&[repo.cid_of(SUB)]),
            &[op("create", SUB, Some(repo.cid_of(SUB)))],
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason, "missing_block");
        let err = verify(
            &f,
            &repo,
            &repo.car_without(&[repo.commit]),
            &[op("create", SUB, Some(repo.cid_of(SUB)))],
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason, "missing_block");
    }

    #[tokio::test]
    async fn a_proven_delete_and_a_bad_record_beside_a_good_one() {
        let k = key(1);
        let f = fixture(&k).await;
        let bad = "community.herald.subscription/3kbad";
        let repo = TestRepo::build(
            &f.did,
            "3l",
            &k,
            &[
                (SUB, subscription("did:plc:c")),
                (bad, json!({"subject": 12})),
            ],
        );
        let gone = "community.herald.subscription/3kgone";
        let verified = verify(
            &f,
            &repo,
            &repo.car(),
            &[
                op("create", SUB, Some(repo.cid_of(SUB))),
                op("create", bad, Some(repo.cid_of(bad))),
                op("delete", gone, None),
            ],
        )
        .await
        .unwrap();
        assert_eq!(verified.skipped.len(), 1);
        assert_eq!(verified.skipped[0].reason, "invalid_record");
        assert!(
            matches!(&verified.ops[..], [IndexOp::Put { .. }, IndexOp::Delete { rkey, .. }] if rkey == "3kgone")
        );
    }

    #[tokio::test]
    async fn commits_without_herald_records_are_dropped_unread() {
        let k = key(1);
        let f = fixture(&k).await;
        let repo = TestRepo::build(
            &f.did,
            "3l",
            &k,
            &[("app.bsky.feed.post/1", json!({"text": "hi"}))],
        );
        let before = f.plc.hits();
        let verified = verify(
            &f,
            &repo,
            b"not even a CAR",
            &[op("create", "app.bsky.feed.post/1", None)],
        )
        .await
        .unwrap();
        assert!(verified.ops.is_empty());
        assert_eq!(
            f.plc.hits(),
            before,
            "no key lookup for a commit Herald does not index"
        );
    }

    #[tokio::test]
    async fn a_whole_repository_yields_only_its_herald_records() {
        let k = key(1);
        let f = fixture(&k).await;
        let repo = TestRepo::build(
            &f.did,
            "3lrepo",
            &k,
            &[
                ("app.bsky.feed.post/1", json!({"text": "hi"})),
                (SUB, subscription("did:plc:c")),
                ("community.herald.zzz/1", json!({})),
            ],
        );
        // Blocks Herald never needs may be absent.
        let car = repo.car_without(&[repo.cid_of("app.bsky.feed.post/1")]);
        let (commit, verified) = f.verifier.repo(&f.did, &car).await.unwrap();
        assert_eq!(commit.rev, "3lrepo");
        assert!(matches!(&verified.ops[..], [IndexOp::Put { rkey, .. }] if rkey == "3kabc"));
        let err = f
            .verifier
            .repo("did:plc:someoneelse", &car)
            .await
            .unwrap_err();
        assert_eq!(err.reason, "wrong_repo");
    }

    #[tokio::test]
    async fn a_sync_frame_is_verified_against_the_key() {
        let k = key(1);
        let f = fixture(&k).await;
        let good = TestRepo::build(&f.did, "3l", &k, &[(SUB, subscription("did:plc:c"))]);
        let frame = sync_frame(4, &good);
        let Frame::Sync(msg) = decode(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(f.verifier.sync(&msg).await.unwrap().rev, "3l");
        let forged = TestRepo::build(&f.did, "3l", &key(5), &[]);
        let frame = sync_frame(5, &forged);
        let Frame::Sync(msg) = decode(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(
            f.verifier.sync(&msg).await.unwrap_err().reason,
            "bad_signature"
        );
    }
}
