//! Real firehose frames from the reference PDS (`@atproto/pds`), verified offline.
//!
//! `tests/fixtures/firehose/` holds a stream recorded by
//! `scripts/bench/firehose/record.mjs tests/fixtures/firehose --fixture`: three accounts
//! created, a community declared, preferences and subscriptions created, updated and deleted,
//! an `app.bsky` post, an account deactivated and reactivated and a handle changed — every
//! frame the PDS's `subscribeRepos` sent (`frames.bin`, u32 big-endian length + bytes), the
//! DID documents its PLC directory served (`dids.json`, keys in the legacy
//! `EcdsaSecp256k1VerificationKey2019` form) and what the PDS answered to each write
//! (`writes.json`). The documents are served here from a local HTTP server.
//!
//! Verifying these frames proves Herald's CAR reading, CID hashing, canonical re-encoding of
//! the signed commit and MST proofs agree with the reference implementation; the tampered
//! copies prove each check bites.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use herald::identity::{Resolver, ResolverConfig};
use herald::ingest::firehose::{Frame, decode};
use herald::ingest::verify::{Rejected, Verified, Verifier};
use herald::lexicon::Lexicons;
use herald::storage::IndexOp;
use ipld_core::ipld::Ipld;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/firehose");

#[derive(Debug, Deserialize)]
struct Write {
    did: String,
    action: String,
    path: String,
    cid: Option<String>,
    commit: String,
    rev: String,
}

struct Fixture {
    frames: Vec<Vec<u8>>,
    writes: Vec<Write>,
    verifier: Verifier,
    _plc: tokio::task::JoinHandle<()>,
}

fn read_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        frames.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    frames
}

async fn fixture() -> Fixture {
    let read = |name: &str| std::fs::read(format!("{FIXTURE}/{name}")).unwrap();
    let docs: HashMap<String, Value> = serde_json::from_slice(&read("dids.json")).unwrap();
    let writes: Vec<Write> = serde_json::from_slice(&read("writes.json")).unwrap();

    // A PLC directory holding the recorded documents.
    use axum::extract::{Path, State};
    use axum::response::IntoResponse;
    let app = axum::Router::new()
        .route(
            "/{did}",
            axum::routing::get(
                |State(docs): State<Arc<HashMap<String, Value>>>, Path(did): Path<String>| async move {
                    match docs.get(&did) {
                        Some(doc) => axum::Json(doc.clone()).into_response(),
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                },
            ),
        )
        .with_state(Arc::new(docs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plc = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let resolver = Resolver::new(ResolverConfig {
        plc_url: format!("http://{addr}").parse().unwrap(),
        cache_ttl: Duration::from_secs(600),
        http_timeout: Duration::from_secs(5),
    });
    Fixture {
        frames: read_frames(&read("frames.bin")),
        writes,
        verifier: Verifier {
            resolver: Arc::new(resolver),
            lexicons: Arc::new(Lexicons::embedded().unwrap()),
        },
        _plc: plc,
    }
}

fn is_herald(path: &str) -> bool {
    path.starts_with("community.herald.")
}

async fn verify_commit(f: &Fixture, frame: &[u8]) -> Result<Verified, Rejected> {
    match decode(frame).expect("the frame decodes") {
        Frame::Commit(msg) => f.verifier.commit(&msg).await,
        other => panic!("not a commit: {other:?}"),
    }
}

#[tokio::test]
async fn every_recorded_frame_decodes_and_every_commit_verifies_into_the_writes_the_pds_reported() {
    let f = fixture().await;
    let by_commit: HashMap<&str, &Write> =
        f.writes.iter().map(|w| (w.commit.as_str(), w)).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut matched = Vec::new();
    let mut last_seq = 0;
    let mut accounts = Vec::new();
    let mut handles = Vec::new();
    for (i, frame) in f.frames.iter().enumerate() {
        let decoded = decode(frame).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        let seq = decoded.seq().expect("every recorded frame has a seq");
        assert!(seq > last_seq, "frame {i}: seq {seq} after {last_seq}");
        last_seq = seq;
        match decoded {
            Frame::Commit(msg) => {
                *seen.entry("commit").or_default() += 1;
                assert!(!msg.too_big);
                let verified = f
                    .verifier
                    .commit(&msg)
                    .await
                    .unwrap_or_else(|e| panic!("commit seq {}: {e}", msg.seq));
                assert!(
                    verified.skipped.is_empty(),
                    "seq {}: {:?}",
                    msg.seq,
                    verified.skipped
                );
                let write = by_commit.get(msg.commit.to_string().as_str());
                match write.filter(|w| is_herald(&w.path)) {
                    None => assert!(
                        verified.ops.is_empty(),
                        "seq {}: nothing of Herald's, yet {:?}",
                        msg.seq,
                        verified.ops
                    ),
                    Some(w) => {
                        let (collection, rkey) = w.path.split_once('/').unwrap();
                        assert_eq!(msg.rev, w.rev);
                        match (w.action.as_str(), verified.ops.as_slice()) {
                            (
                                "create" | "update",
                                [
                                    IndexOp::Put {
                                        did,
                                        collection: c,
                                        rkey: r,
                                        rev,
                                        cid,
                                        body,
                                        ..
                                    },
                                ],
                            ) => {
                                assert_eq!(
                                    (did, c.as_str(), r.as_str(), rev),
                                    (&w.did, collection, rkey, &w.rev)
                                );
                                assert_eq!(cid, &w.cid);
                                let body: Value = serde_json::from_str(body).unwrap();
                                assert_eq!(body["$type"], collection);
                            }
                            (
                                "delete",
                                [
                                    IndexOp::Delete {
                                        did,
                                        collection: c,
                                        rkey: r,
                                        rev,
                                    },
                                ],
                            ) => {
                                assert_eq!(
                                    (did, c.as_str(), r.as_str(), rev),
                                    (&w.did, collection, rkey, &w.rev)
                                );
                            }
                            (action, ops) => {
                                panic!("seq {}: {action} of {} gave {ops:?}", msg.seq, w.path)
                            }
                        }
                        matched.push(w.commit.clone());
                    }
                }
            }
            Frame::Sync(msg) => {
                *seen.entry("sync").or_default() += 1;
                let commit = f
                    .verifier
                    .sync(&msg)
                    .await
                    .unwrap_or_else(|e| panic!("sync seq {}: {e}", msg.seq));
                assert_eq!(commit.rev, msg.rev);
                assert_eq!(commit.did, msg.did);
            }
            Frame::Identity(msg) => {
                *seen.entry("identity").or_default() += 1;
                handles.push((msg.did, msg.handle));
            }
            Frame::Account(msg) => {
                *seen.entry("account").or_default() += 1;
                accounts.push((msg.did, msg.active, msg.status));
            }
            other => panic!("frame {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        BTreeMap::from([("account", 5), ("commit", 12), ("identity", 5), ("sync", 4)])
    );
    let herald_writes: Vec<&String> = f
        .writes
        .iter()
        .filter(|w| is_herald(&w.path))
        .map(|w| &w.commit)
        .collect();
    assert_eq!(herald_writes.len(), 8);
    assert_eq!(
        matched.iter().collect::<Vec<_>>(),
        herald_writes,
        "every Herald write, once, in order"
    );
    let actions: Vec<&str> = f
        .writes
        .iter()
        .filter(|w| is_herald(&w.path))
        .map(|w| w.action.as_str())
        .collect();
    assert!(
        ["create", "update", "delete"]
            .iter()
            .all(|a| actions.contains(a))
    );

    // The account that posted was deactivated, reactivated, then renamed.
    let bob = &f
        .writes
        .iter()
        .find(|w| w.path.starts_with("app.bsky."))
        .unwrap()
        .did;
    let bobs: Vec<_> = accounts
        .iter()
        .filter(|(did, ..)| did == bob)
        .map(|(_, a, s)| (*a, s.as_deref()))
        .collect();
    assert_eq!(
        bobs,
        [(true, None), (false, Some("deactivated")), (true, None)]
    );
    assert_eq!(
        handles.last().unwrap(),
        &(bob.clone(), Some("bob2.test".to_owned()))
    );
}

// ---- tampering ----

/// A frame taken apart: header, body, and the body's CAR as roots + blocks.
struct Parts {
    header: Ipld,
    body: BTreeMap<String, Ipld>,
    roots: Vec<cid::Cid>,
    blocks: Vec<(cid::Cid, Vec<u8>)>,
}

fn take_apart(frame: &[u8]) -> Parts {
    let mut de = serde_ipld_dagcbor::de::Deserializer::from_slice(frame);
    let header = Ipld::deserialize(&mut de).unwrap();
    let Ipld::Map(body) = Ipld::deserialize(&mut de).unwrap() else {
        panic!("body is not a map")
    };
    let Some(Ipld::Bytes(car)) = body.get("blocks") else {
        panic!("no blocks")
    };
    let mut rest = car.as_slice();
    let (len, tail) = unsigned_varint::decode::usize(rest).unwrap();
    #[derive(Deserialize)]
    struct CarHeader {
        roots: Vec<cid::Cid>,
    }
    let car_header: CarHeader = serde_ipld_dagcbor::from_slice(&tail[..len]).unwrap();
    rest = &tail[len..];
    let mut blocks = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = unsigned_varint::decode::usize(rest).unwrap();
        let mut section = &tail[..len];
        let cid = cid::Cid::read_bytes(&mut section).unwrap();
        blocks.push((cid, section.to_vec()));
        rest = &tail[len..];
    }
    Parts {
        header,
        body,
        roots: car_header.roots,
        blocks,
    }
}

fn put_together(parts: &Parts) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct CarHeader<'a> {
        roots: &'a [cid::Cid],
        version: u64,
    }
    let mut car = Vec::new();
    let header = serde_ipld_dagcbor::to_vec(&CarHeader {
        roots: &parts.roots,
        version: 1,
    })
    .unwrap();
    let mut buf = unsigned_varint::encode::usize_buffer();
    car.extend_from_slice(unsigned_varint::encode::usize(header.len(), &mut buf));
    car.extend_from_slice(&header);
    for (cid, data) in &parts.blocks {
        let cid_bytes = cid.to_bytes();
        car.extend_from_slice(unsigned_varint::encode::usize(
            cid_bytes.len() + data.len(),
            &mut buf,
        ));
        car.extend_from_slice(&cid_bytes);
        car.extend_from_slice(data);
    }
    let mut body = parts.body.clone();
    body.insert("blocks".to_owned(), Ipld::Bytes(car));
    let mut frame = serde_ipld_dagcbor::to_vec(&parts.header).unwrap();
    frame.extend(serde_ipld_dagcbor::to_vec(&Ipld::Map(body)).unwrap());
    frame
}

fn cid_of(block: &[u8]) -> cid::Cid {
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &Sha256::digest(block)).unwrap();
    cid::Cid::new_v1(0x71, hash)
}

/// The frame of the PDS's answer to the first Herald write with `action`.
fn frame_of<'f>(f: &'f Fixture, action: &str) -> (&'f [u8], &'f Write) {
    let write = f
        .writes
        .iter()
        .find(|w| w.action == action && is_herald(&w.path))
        .unwrap();
    let frame = f
        .frames
        .iter()
        .find(|frame| matches!(decode(frame), Ok(Frame::Commit(m)) if m.commit.to_string() == write.commit))
        .unwrap();
    (frame.as_slice(), write)
}

fn op_field(parts: &mut Parts) -> &mut BTreeMap<String, Ipld> {
    let Some(Ipld::List(ops)) = parts.body.get_mut("ops") else {
        panic!("no ops")
    };
    let Some(Ipld::Map(op)) = ops.first_mut() else {
        panic!("no op")
    };
    op
}

#[tokio::test]
async fn the_untouched_frames_rebuilt_still_verify() {
    // The tampering below rebuilds frames; a rebuild alone must change nothing.
    let f = fixture().await;
    for action in ["create", "update", "delete"] {
        let (frame, _) = frame_of(&f, action);
        let rebuilt = put_together(&take_apart(frame));
        assert_eq!(
            verify_commit(&f, &rebuilt).await.unwrap().ops.len(),
            1,
            "{action}"
        );
    }
}

#[tokio::test]
async fn a_flipped_signature_byte_is_refused_as_a_bad_signature() {
    let f = fixture().await;
    let (frame, _) = frame_of(&f, "update");
    let mut parts = take_apart(frame);
    let Some(Ipld::Link(commit_cid)) = parts.body.get("commit").cloned() else {
        panic!()
    };
    let at = parts
        .blocks
        .iter()
        .position(|(cid, _)| *cid == commit_cid)
        .unwrap();
    let Ipld::Map(mut commit) =
        serde_ipld_dagcbor::from_slice::<Ipld>(&parts.blocks[at].1).unwrap()
    else {
        panic!()
    };
    let Some(Ipld::Bytes(sig)) = commit.get_mut("sig") else {
        panic!()
    };
    sig[10] ^= 0x01;
    // Re-hash the commit block so the CAR stays consistent: only the signature is wrong.
    let block = serde_ipld_dagcbor::to_vec(&Ipld::Map(commit)).unwrap();
    let cid = cid_of(&block);
    parts.blocks[at] = (cid, block);
    parts.roots = vec![cid];
    parts.body.insert("commit".to_owned(), Ipld::Link(cid));
    let err = verify_commit(&f, &put_together(&parts)).await.unwrap_err();
    assert_eq!(err.reason, "bad_signature", "{err}");
}

#[tokio::test]
async fn a_flipped_byte_in_a_record_block_is_refused_as_a_cid_mismatch() {
    let f = fixture().await;
    let (frame, write) = frame_of(&f, "create");
    let mut parts = take_apart(frame);
    let record: cid::Cid = write.cid.as_deref().unwrap().parse().unwrap();
    let block = &mut parts
        .blocks
        .iter_mut()
        .find(|(cid, _)| *cid == record)
        .unwrap()
        .1;
    let last = block.len() - 1;
    block[last] ^= 0x01;
    let err = verify_commit(&f, &put_together(&parts)).await.unwrap_err();
    assert_eq!(err.reason, "cid_mismatch", "{err}");
}

#[tokio::test]
async fn a_flipped_byte_in_the_signature_in_place_breaks_the_commit_blocks_hash() {
    let f = fixture().await;
    let (frame, _) = frame_of(&f, "delete");
    let parts = take_apart(frame);
    let Some(Ipld::Link(commit_cid)) = parts.body.get("commit") else {
        panic!()
    };
    let commit = &parts
        .blocks
        .iter()
        .find(|(cid, _)| cid == commit_cid)
        .unwrap()
        .1;
    let Ipld::Map(commit) = serde_ipld_dagcbor::from_slice::<Ipld>(commit).unwrap() else {
        panic!()
    };
    let Some(Ipld::Bytes(sig)) = commit.get("sig") else {
        panic!()
    };
    let at = frame.windows(sig.len()).position(|w| w == sig).unwrap();
    let mut tampered = frame.to_vec();
    tampered[at + 5] ^= 0x80;
    let err = verify_commit(&f, &tampered).await.unwrap_err();
    assert_eq!(err.reason, "cid_mismatch", "{err}");
}

#[tokio::test]
async fn ops_the_signed_tree_does_not_hold_are_refused_as_unproven() {
    let f = fixture().await;
    // A create claiming another record than the one the tree holds.
    let (frame, _) = frame_of(&f, "create");
    let mut parts = take_apart(frame);
    op_field(&mut parts).insert("cid".to_owned(), Ipld::Link(cid_of(b"\xa0")));
    let err = verify_commit(&f, &put_together(&parts)).await.unwrap_err();
    assert_eq!(err.reason, "unproven_op", "{err}");
    // A delete of a record the tree still holds.
    let mut parts = take_apart(frame);
    let op = op_field(&mut parts);
    op.insert("action".to_owned(), Ipld::String("delete".to_owned()));
    op.insert("cid".to_owned(), Ipld::Null);
    let err = verify_commit(&f, &put_together(&parts)).await.unwrap_err();
    assert_eq!(err.reason, "unproven_op", "{err}");
    // A delete turned into a create of the record it removed.
    let (frame, _) = frame_of(&f, "delete");
    let mut parts = take_apart(frame);
    let op = op_field(&mut parts);
    let prev = op.get("prev").cloned().unwrap();
    op.insert("action".to_owned(), Ipld::String("create".to_owned()));
    op.insert("cid".to_owned(), prev);
    let err = verify_commit(&f, &put_together(&parts)).await.unwrap_err();
    assert!(
        ["unproven_op", "missing_block"].contains(&err.reason),
        "{err}"
    );
}

#[tokio::test]
async fn a_commit_replayed_under_another_accounts_name_is_refused() {
    let f = fixture().await;
    let (frame, write) = frame_of(&f, "create");
    let other = f.writes.iter().find(|w| w.did != write.did).unwrap();
    let mut parts = take_apart(frame);
    parts
        .body
        .insert("repo".to_owned(), Ipld::String(other.did.clone()));
    let err = verify_commit(&f, &put_together(&parts)).await.unwrap_err();
    assert_eq!(err.reason, "wrong_repo", "{err}");
}
