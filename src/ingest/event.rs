//! Jetstream events → index operations. Pure: every malformed or unwanted event becomes a
//! `Skip` with a reason instead of an error, so one bad frame never stops ingest.

use serde::Deserialize;

use crate::lexicon::{Lexicons, RecordError};
use crate::model::{COLLECTIONS, Record, is_did};
use crate::storage::IndexOp;

/// Herald's records are small; anything larger is refused before parsing (a community record
/// listing a few thousand publishers stays well below this).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// What one Jetstream frame means for Herald.
#[derive(Debug, Clone)]
// Parsed values move straight into a batch; boxing the large variant would cost an allocation
// per event on the hot path.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Op(IndexOp),
    /// An identity change: the DID's cached document must be refreshed.
    Identity(String),
    Skip(Skip),
}

/// Why a frame was skipped. `reason` is a stable label for metrics; `detail` is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: &'static str,
    pub detail: String,
}

pub(crate) fn skip(reason: &'static str, detail: impl Into<String>) -> Parsed {
    Parsed::Skip(Skip {
        reason,
        detail: detail.into(),
    })
}

#[derive(Deserialize)]
struct Event {
    did: String,
    time_us: i64,
    kind: String,
    commit: Option<Commit>,
    account: Option<Account>,
}

#[derive(Deserialize)]
struct Commit {
    rev: String,
    operation: String,
    collection: String,
    rkey: String,
    record: Option<serde_json::Value>,
    cid: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    active: bool,
    #[serde(default)]
    status: Option<String>,
    seq: i64,
}

/// The `time_us` of a frame, if it can be read at all: lets the cursor move past a frame that
/// is otherwise malformed.
#[derive(Deserialize)]
struct TimeOnly {
    time_us: i64,
}

/// Parse one frame. Returns the frame's `time_us` (when readable) and what it means.
pub fn parse(frame: &str, lexicons: &Lexicons) -> (Option<i64>, Parsed) {
    if frame.len() > MAX_EVENT_BYTES {
        return (
            None,
            skip(
                "oversize",
                format!("{} bytes > {MAX_EVENT_BYTES}", frame.len()),
            ),
        );
    }
    let event: Event = match serde_json::from_str(frame) {
        Ok(e) => e,
        Err(e) => {
            let time = serde_json::from_str::<TimeOnly>(frame)
                .ok()
                .map(|t| t.time_us);
            let reason = if serde_json::from_str::<serde_json::Value>(frame).is_ok() {
                "malformed_event"
            } else {
                "not_json"
            };
            return (time, skip(reason, e.to_string()));
        }
    };
    let time = Some(event.time_us);
    if !is_did(&event.did) {
        return (
            time,
            skip("bad_did", format!("{:?} is not a DID", event.did)),
        );
    }
    let parsed = match event.kind.as_str() {
        "commit" => match event.commit {
            Some(commit) => parse_commit(event.did, commit, lexicons),
            None => skip("malformed_event", "commit event without a commit"),
        },
        "identity" => Parsed::Identity(event.did),
        "account" => match event.account {
            Some(account) => Parsed::Op(IndexOp::Account {
                did: event.did,
                active: account.active,
                status: account.status,
                seq: account.seq,
            }),
            None => skip("malformed_event", "account event without an account"),
        },
        other => skip("unknown_kind", format!("event kind {other:?}")),
    };
    (time, parsed)
}

fn parse_commit(did: String, commit: Commit, lexicons: &Lexicons) -> Parsed {
    if !COLLECTIONS.contains(&commit.collection.as_str()) {
        return skip(
            "unindexed_collection",
            format!("collection {}", commit.collection),
        );
    }
    if commit.rkey.is_empty() || commit.rkey.len() > 512 || commit.rev.is_empty() {
        return skip("malformed_event", "empty or oversize rkey, or empty rev");
    }
    match commit.operation.as_str() {
        "create" | "update" => {
            let Some(record) = commit.record else {
                return skip("malformed_event", "create/update without a record");
            };
            record_op(
                did,
                commit.collection,
                commit.rkey,
                commit.rev,
                commit.cid,
                record,
                lexicons,
            )
        }
        "delete" => Parsed::Op(IndexOp::Delete {
            did,
            collection: commit.collection,
            rkey: commit.rkey,
            rev: commit.rev,
        }),
        other => skip("malformed_event", format!("operation {other:?}")),
    }
}

/// A created or updated record → a `Put`, once it matches its lexicon; shared by Jetstream
/// (JSON records) and the relay firehose (DAG-CBOR records turned into JSON).
pub(crate) fn record_op(
    did: String,
    collection: String,
    rkey: String,
    rev: String,
    cid: Option<String>,
    record: serde_json::Value,
    lexicons: &Lexicons,
) -> Parsed {
    if let Err(e) = lexicons.validate_record(&collection, &record) {
        let detail = match e {
            RecordError::Invalid { reason, .. } => reason,
            other => other.to_string(),
        };
        return skip(
            "invalid_record",
            format!("{did}/{collection}/{rkey}: {detail}"),
        );
    }
    let typed = match Record::from_json(&collection, &rkey, &record) {
        Ok(t) => t,
        Err(detail) => return skip("invalid_record", detail),
    };
    Parsed::Op(IndexOp::Put {
        did,
        collection,
        rkey,
        rev,
        cid,
        body: record.to_string(),
        record: typed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lex() -> Lexicons {
        Lexicons::embedded().unwrap()
    }

    fn commit(op: &str, collection: &str, rkey: &str, record: serde_json::Value) -> String {
        json!({"did": "did:plc:alice", "time_us": 42, "kind": "commit",
               "commit": {"rev": "3laaaaaaaaaa2", "operation": op, "collection": collection,
                          "rkey": rkey, "record": record, "cid": "bafyx"}})
        .to_string()
    }

    fn reason(parsed: &Parsed) -> &'static str {
        match parsed {
            Parsed::Skip(s) => s.reason,
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_subscription_becomes_a_put() {
        let frame = commit(
            "create",
            "community.herald.subscription",
            "3kabc",
            json!({"$type": "community.herald.subscription", "subject": "did:plc:c",
                   "createdAt": "2026-01-01T00:00:00Z",
                   "routes": [{"pipe": "digest", "channels": ["email"]}]}),
        );
        let (time, parsed) = parse(&frame, &lex());
        assert_eq!(time, Some(42));
        assert!(
            matches!(parsed, Parsed::Op(IndexOp::Put { .. })),
            "{parsed:?}"
        );
    }

    #[test]
    fn malformed_frames_are_skipped_with_a_reason() {
        let l = lex();
        assert_eq!(reason(&parse("{not json", &l).1), "not_json");
        assert_eq!(
            reason(&parse(r#"{"did":"did:plc:a","time_us":7,"kind":"commit"}"#, &l).1),
            "malformed_event"
        );
        let (time, p) = parse(r#"{"did":"did:plc:a","time_us":7,"kind":5}"#, &l);
        assert_eq!((time, reason(&p)), (Some(7), "malformed_event"));
        let huge = "x".repeat(MAX_EVENT_BYTES + 1);
        assert_eq!(reason(&parse(&huge, &l).1), "oversize");
        assert_eq!(
            reason(&parse(r#"{"did":"nope","time_us":1,"kind":"identity"}"#, &l).1),
            "bad_did"
        );
    }

    #[test]
    fn a_record_that_does_not_match_its_lexicon_is_skipped() {
        let frame = commit(
            "create",
            "community.herald.subscription",
            "3kabc",
            json!({"subject": 12, "createdAt": "2026-01-01T00:00:00Z"}),
        );
        assert_eq!(reason(&parse(&frame, &lex()).1), "invalid_record");
    }

    #[test]
    fn preferences_under_another_rkey_are_skipped() {
        let frame = commit(
            "create",
            "community.herald.preferences",
            "notself",
            json!({"pausedAll": true, "updatedAt": "2026-01-01T00:00:00Z"}),
        );
        assert_eq!(reason(&parse(&frame, &lex()).1), "invalid_record");
    }

    #[test]
    fn account_and_identity_events_are_understood() {
        let l = lex();
        let account = r#"{"did":"did:plc:a","time_us":9,"kind":"account",
            "account":{"active":false,"status":"deactivated","did":"did:plc:a","seq":3,"time":"x"}}"#;
        assert!(matches!(
            parse(account, &l).1,
            Parsed::Op(IndexOp::Account { active: false, .. })
        ));
        let identity = r#"{"did":"did:plc:a","time_us":9,"kind":"identity",
            "identity":{"did":"did:plc:a","handle":"a.test","seq":4,"time":"x"}}"#;
        assert!(matches!(parse(identity, &l).1, Parsed::Identity(d) if d == "did:plc:a"));
    }
}
