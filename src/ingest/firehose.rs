//! Relay firehose frames (`com.atproto.sync.subscribeRepos`) → typed messages. Pure.
//!
//! A frame is two DAG-CBOR values back to back: a header `{op, t}` and a body. `op: 1` is a
//! message whose `t` names its type (`#commit`, `#sync`, `#identity`, `#account`, `#info`);
//! `op: -1` is an error, after which the server closes the stream. Byte fields (`blocks`) are
//! borrowed from the frame, never copied.

use serde::Deserialize;
use serde_ipld_dagcbor::de::Deserializer;

use crate::repo::Cid;

/// Larger frames are refused unread. The reference relay caps a commit's blocks at 2 MB and
/// its ops at 200, so a real frame stays well under this.
pub const MAX_FRAME_BYTES: usize = 5 * 1024 * 1024;

/// One decoded frame.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "frames are handled one at a time; boxing commits would allocate per frame"
)]
pub enum Frame<'a> {
    Commit(CommitMsg<'a>),
    Sync(SyncMsg<'a>),
    Identity(IdentityMsg),
    Account(AccountMsg),
    Info(InfoMsg),
    Error(ErrorMsg),
    /// A message type Herald does not know; skipped, but its `seq` (when it has one) still
    /// moves the cursor.
    Unknown {
        kind: String,
        seq: Option<i64>,
    },
}

impl Frame<'_> {
    /// The sequence number the cursor moves to once this frame is handled.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Self::Commit(m) => Some(m.seq),
            Self::Sync(m) => Some(m.seq),
            Self::Identity(m) => Some(m.seq),
            Self::Account(m) => Some(m.seq),
            Self::Info(_) | Self::Error(_) => None,
            Self::Unknown { seq, .. } => *seq,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitMsg<'a> {
    pub seq: i64,
    pub repo: String,
    pub commit: Cid,
    pub rev: String,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(with = "serde_bytes", borrow)]
    pub blocks: &'a [u8],
    pub ops: Vec<RepoOp>,
    #[serde(default)]
    pub too_big: bool,
    #[serde(default)]
    pub prev_data: Option<Cid>,
    pub time: String,
}

#[derive(Debug, Deserialize)]
pub struct RepoOp {
    pub action: String,
    pub path: String,
    pub cid: Option<Cid>,
    #[serde(default)]
    pub prev: Option<Cid>,
}

#[derive(Debug, Deserialize)]
pub struct SyncMsg<'a> {
    pub seq: i64,
    pub did: String,
    #[serde(with = "serde_bytes", borrow)]
    pub blocks: &'a [u8],
    pub rev: String,
    pub time: String,
}

#[derive(Debug, Deserialize)]
pub struct IdentityMsg {
    pub seq: i64,
    pub did: String,
    #[serde(default)]
    pub handle: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AccountMsg {
    pub seq: i64,
    pub did: String,
    pub active: bool,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InfoMsg {
    pub name: String,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorMsg {
    pub error: String,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    op: i64,
    #[serde(default)]
    t: Option<String>,
}

#[derive(Deserialize)]
struct SeqOnly {
    #[serde(default)]
    seq: Option<i64>,
}

/// Why a frame could not be used. `seq` is set when it could still be read, so the cursor moves
/// past a bad frame instead of asking for it again after a reconnect.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct FrameError {
    pub reason: &'static str,
    pub detail: String,
    pub seq: Option<i64>,
}

fn refuse(reason: &'static str, detail: impl std::fmt::Display) -> FrameError {
    FrameError {
        reason,
        detail: detail.to_string(),
        seq: None,
    }
}

/// Decodes one frame.
pub fn decode(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        // Reading the sequence number means decoding the frame, which is bounded by its size.
        let seq = read_two::<SeqOnly>(frame).ok().and_then(|(_, b)| b.seq);
        return Err(FrameError {
            seq,
            ..refuse(
                "oversize",
                format!("{} bytes > {MAX_FRAME_BYTES}", frame.len()),
            )
        });
    }
    let mut de = Deserializer::from_slice(frame);
    let header = Header::deserialize(&mut de).map_err(|e| refuse("bad_header", e))?;
    let decoded = match (header.op, header.t.as_deref()) {
        (-1, _) => body(&mut de).map(Frame::Error),
        (1, Some("#commit")) => body(&mut de).map(Frame::Commit),
        (1, Some("#sync")) => body(&mut de).map(Frame::Sync),
        (1, Some("#identity")) => body(&mut de).map(Frame::Identity),
        (1, Some("#account")) => body(&mut de).map(Frame::Account),
        (1, Some("#info")) => body(&mut de).map(Frame::Info),
        (1, Some(kind)) => body::<SeqOnly>(&mut de).map(|b| Frame::Unknown {
            kind: kind.to_owned(),
            seq: b.seq,
        }),
        (op, t) => return Err(refuse("bad_header", format!("op {op} with type {t:?}"))),
    };
    decoded.map_err(|mut e| {
        // The body did not fit its type; its sequence number may still be readable.
        e.seq = read_two::<SeqOnly>(frame).ok().and_then(|(_, b)| b.seq);
        e
    })
}

/// The body: the second and last value of the frame.
fn body<'a, T: Deserialize<'a>>(
    de: &mut Deserializer<cbor4ii::core::utils::SliceReader<'a>>,
) -> Result<T, FrameError> {
    let value = T::deserialize(&mut *de).map_err(|e| refuse("bad_body", e))?;
    de.end().map_err(|e| refuse("trailing_data", e))?;
    Ok(value)
}

fn read_two<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<(Header, T), FrameError> {
    let mut de = Deserializer::from_slice(frame);
    let header = Header::deserialize(&mut de).map_err(|e| refuse("bad_header", e))?;
    let body = T::deserialize(&mut de).map_err(|e| refuse("bad_body", e))?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testing::{TestRepo, commit_frame, frame, op, sync_frame};
    use serde_json::json;

    fn repo() -> TestRepo {
        let key = k256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        TestRepo::build(
            "did:plc:alice",
            "3laaaaaaaaaa2",
            &key,
            &[(
                "community.herald.preferences/self",
                json!({"pausedAll": false}),
            )],
        )
    }

    #[test]
    fn every_message_type_decodes() {
        let repo = repo();
        let car = repo.car();
        let commit = commit_frame(7, &repo, &car, &[op("create", "a/b", None)], false);
        match decode(&commit).unwrap() {
            Frame::Commit(m) => {
                assert_eq!(
                    (m.seq, m.repo.as_str(), m.rev.as_str()),
                    (7, "did:plc:alice", "3laaaaaaaaaa2")
                );
                assert_eq!(m.blocks, car.as_slice());
                assert_eq!(m.ops[0].path, "a/b");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(&sync_frame(8, &repo)).unwrap(), Frame::Sync(m) if m.seq == 8));
        let identity = frame(
            "#identity",
            &json!({"seq": 9, "did": "did:plc:alice", "time": "t", "handle": "a.test"}),
        );
        assert!(
            matches!(decode(&identity).unwrap(), Frame::Identity(m) if m.did == "did:plc:alice")
        );
        let account = frame(
            "#account",
            &json!({"seq": 10, "did": "did:plc:alice", "time": "t", "active": false, "status": "deactivated"}),
        );
        assert!(matches!(decode(&account).unwrap(), Frame::Account(m) if !m.active && m.seq == 10));
        let info = frame(
            "#info",
            &json!({"name": "OutdatedCursor", "message": "too old"}),
        );
        assert!(matches!(decode(&info).unwrap(), Frame::Info(m) if m.name == "OutdatedCursor"));
        let future = frame("#labels", &json!({"seq": 11, "labels": []}));
        assert!(matches!(
            decode(&future).unwrap(),
            Frame::Unknown { seq: Some(11), .. }
        ));
        let mut error = serde_ipld_dagcbor::to_vec(&json!({"op": -1})).unwrap();
        error.extend(
            serde_ipld_dagcbor::to_vec(&json!({"error": "FutureCursor", "message": "no"})).unwrap(),
        );
        assert!(matches!(decode(&error).unwrap(), Frame::Error(m) if m.error == "FutureCursor"));
    }

    #[test]
    fn malformed_frames_are_refused_with_a_reason_and_keep_their_seq_when_readable() {
        let repo = repo();
        let car = repo.car();
        let commit = commit_frame(7, &repo, &car, &[], false);
        // Every truncation is refused, none panics.
        for len in 0..commit.len() {
            let err = decode(&commit[..len]).unwrap_err();
            assert!(
                ["bad_header", "bad_body"].contains(&err.reason),
                "cut at {len}: {err}"
            );
        }
        let mut trailing = commit.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing).unwrap_err().reason, "trailing_data");
        // A body that is not a commit still gives up its seq, so the cursor moves past it.
        let wrong = frame("#commit", &json!({"seq": 12, "repo": 5}));
        let err = decode(&wrong).unwrap_err();
        assert_eq!((err.reason, err.seq), ("bad_body", Some(12)));
        let odd_header = frame("", &json!({}));
        assert!(decode(&odd_header).is_ok_and(|f| matches!(f, Frame::Unknown { seq: None, .. })));
        let big = frame(
            "#commit",
            &json!({"seq": 13, "pad": "x".repeat(MAX_FRAME_BYTES)}),
        );
        let err = decode(&big).unwrap_err();
        assert_eq!((err.reason, err.seq), ("oversize", Some(13)));
        let mut not_a_message =
            serde_ipld_dagcbor::to_vec(&json!({"op": 2, "t": "#commit"})).unwrap();
        not_a_message.extend(serde_ipld_dagcbor::to_vec(&json!({})).unwrap());
        assert_eq!(decode(&not_a_message).unwrap_err().reason, "bad_header");
    }
}
