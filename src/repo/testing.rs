//! Builds signed repositories and firehose frames for tests: one MST node holding every key
//! (a valid tree for reading, whatever its layering), blocks in a CAR, frames as a relay sends.

use cid::Cid;
use serde::Serialize;
use serde_json::Value;

use super::Commit;
use super::car::{cid_of, write};
use super::mst::node_block;

/// A repository at one commit.
pub struct TestRepo {
    pub did: String,
    pub rev: String,
    pub commit: Cid,
    /// Every block: commit, MST node, records.
    pub blocks: Vec<(Cid, Vec<u8>)>,
    /// Each record's path and CID.
    pub records: Vec<(String, Cid)>,
}

/// JSON → DAG-CBOR, as a PDS stores a record (no floats or links in Herald's records).
pub fn record_block(record: &Value) -> (Cid, Vec<u8>) {
    let ipld: ipld_core::ipld::Ipld =
        serde_json::from_value(record.clone()).expect("JSON maps onto IPLD");
    let bytes = serde_ipld_dagcbor::to_vec(&ipld).unwrap();
    (cid_of(&bytes), bytes)
}

impl TestRepo {
    /// Signs a repository holding `records` (path → JSON) with `key`.
    pub fn build(
        did: &str,
        rev: &str,
        key: &k256::ecdsa::SigningKey,
        records: &[(&str, Value)],
    ) -> Self {
        let mut sorted: Vec<(String, Cid, Vec<u8>)> = records
            .iter()
            .map(|(path, record)| {
                let (cid, bytes) = record_block(record);
                (path.to_string(), cid, bytes)
            })
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let entries: Vec<(&str, Cid, Option<Cid>)> = sorted
            .iter()
            .map(|(p, c, _)| (p.as_str(), *c, None))
            .collect();
        let (root, node) = node_block(None, &entries);
        let commit = Commit::sign(did, rev, root, key);
        let commit_block = commit.to_block();
        let commit_cid = cid_of(&commit_block);
        let mut blocks = vec![(commit_cid, commit_block), (root, node)];
        let mut paths = Vec::new();
        for (path, cid, bytes) in sorted {
            paths.push((path, cid));
            blocks.push((cid, bytes));
        }
        Self {
            did: did.to_owned(),
            rev: rev.to_owned(),
            commit: commit_cid,
            blocks,
            records: paths,
        }
    }

    pub fn cid_of(&self, path: &str) -> Cid {
        self.records
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| *c)
            .expect("path in repo")
    }

    /// The whole repository as `getRepo` serves it.
    pub fn car(&self) -> Vec<u8> {
        write(&[self.commit], &self.blocks)
    }

    /// The repository's CAR without the blocks `drop` names.
    pub fn car_without(&self, drop: &[Cid]) -> Vec<u8> {
        let kept: Vec<_> = self
            .blocks
            .iter()
            .filter(|(c, _)| !drop.contains(c))
            .cloned()
            .collect();
        write(&[self.commit], &kept)
    }
}

#[derive(Serialize)]
struct Header<'a> {
    op: i64,
    t: &'a str,
}

/// One `repoOp` of a `#commit` frame.
#[derive(Serialize, Clone)]
pub struct Op {
    pub action: String,
    pub path: String,
    pub cid: Option<Cid>,
}

pub fn op(action: &str, path: &str, cid: Option<Cid>) -> Op {
    Op {
        action: action.into(),
        path: path.into(),
        cid,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommitBody<'a> {
    seq: i64,
    rebase: bool,
    too_big: bool,
    repo: &'a str,
    commit: Cid,
    rev: &'a str,
    since: Option<&'a str>,
    #[serde(with = "serde_bytes")]
    blocks: &'a [u8],
    ops: &'a [Op],
    blobs: Vec<Cid>,
    time: &'a str,
}

/// A header followed by a body, as one websocket message.
pub fn frame(t: &str, body: &impl Serialize) -> Vec<u8> {
    let mut out = serde_ipld_dagcbor::to_vec(&Header { op: 1, t }).unwrap();
    out.extend(serde_ipld_dagcbor::to_vec(body).unwrap());
    out
}

/// A `#commit` frame carrying `car` and `ops`.
pub fn commit_frame(seq: i64, repo: &TestRepo, car: &[u8], ops: &[Op], too_big: bool) -> Vec<u8> {
    frame(
        "#commit",
        &CommitBody {
            seq,
            rebase: false,
            too_big,
            repo: &repo.did,
            commit: repo.commit,
            rev: &repo.rev,
            since: None,
            blocks: car,
            ops,
            blobs: Vec::new(),
            time: "2026-11-21T00:00:00.000Z",
        },
    )
}

/// A `#sync` frame carrying only the signed commit.
pub fn sync_frame(seq: i64, repo: &TestRepo) -> Vec<u8> {
    #[derive(Serialize)]
    struct SyncBody<'a> {
        seq: i64,
        did: &'a str,
        #[serde(with = "serde_bytes")]
        blocks: &'a [u8],
        rev: &'a str,
        time: &'a str,
    }
    let commit = repo
        .blocks
        .iter()
        .find(|(c, _)| *c == repo.commit)
        .unwrap()
        .clone();
    let car = write(&[repo.commit], &[commit]);
    frame(
        "#sync",
        &SyncBody {
            seq,
            did: &repo.did,
            blocks: &car,
            rev: &repo.rev,
            time: "2026-11-21T00:00:00.000Z",
        },
    )
}

/// A deterministic secp256k1 signing key.
pub fn signing_key(seed: u8) -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("a valid scalar")
}

pub fn public_key(key: &k256::ecdsa::SigningKey) -> crate::identity::PublicKey {
    crate::identity::PublicKey::from_sec1_k256(
        key.verifying_key().to_encoded_point(true).as_bytes(),
    )
    .expect("a valid point")
}

/// A valid `community.herald.subscription` record.
pub fn subscription(community: &str) -> Value {
    serde_json::json!({"$type": "community.herald.subscription", "subject": community,
        "createdAt": "2026-01-01T00:00:00Z",
        "routes": [{"pipe": "digest", "channels": ["email"]}]})
}

/// Registers `did` with `key` as its `#atproto` key, and `pds` as its PDS when given.
pub fn register(
    plc: &crate::identity::test_plc::TestPlc,
    did: &str,
    key: &k256::ecdsa::SigningKey,
    pds: Option<&str>,
) {
    let mut doc = crate::identity::test_plc::plc_doc(did, &public_key(key));
    if let Some(pds) = pds {
        doc["service"][0]["serviceEndpoint"] = serde_json::json!(pds);
    }
    plc.put(did, doc);
}

/// A fresh SQLite index in a temporary folder (kept alive by the returned guard).
pub async fn temp_store() -> (tempfile::TempDir, crate::storage::Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("index.db").display());
    let store = crate::storage::Store::connect(&url).await.expect("index");
    (dir, store)
}
