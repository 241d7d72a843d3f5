//! Repository data: the CAR files, signed commits and Merkle Search Trees that carry a member's
//! records on the relay firehose and in `com.atproto.sync.getRepo`.
//!
//! Owns decoding those bytes (DAG-CBOR through `serde_ipld_dagcbor`, CIDs through `cid`) and
//! proving what they claim: every block's CID is recomputed from its bytes, a commit's
//! signature is checked against a key the caller supplies, and a record is only believed when
//! the MST under a verified commit maps its path to its CID.
//!
//! Pure: no network, no storage, no clock. Ingest and backfill resolve keys and write the index.
//!
//! # Layout
//! - `car`: CARv1 reading with per-block hash checks ([`Car`], [`Blocks`]).
//! - `commit`: the signed commit object and its signature check ([`Commit`]).
//! - `mst`: lookups and prefix walks over a Merkle Search Tree ([`Mst`]).
//! - `record`: a record block as the JSON the lexicon validator and the index take.

pub(crate) mod car;
mod commit;
pub(crate) mod mst;
mod record;
#[cfg(test)]
pub(crate) mod testing;

pub use car::{Blocks, Car};
pub use cid::Cid;
pub use commit::Commit;
pub use mst::Mst;
pub use record::record_json;

/// Why repository bytes were refused. `reason()` is a stable label for metrics.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("malformed CAR: {0}")]
    Car(String),
    #[error("block {cid} does not hash to its CID")]
    CidMismatch { cid: String },
    #[error("unsupported CID {cid}: {why}")]
    UnsupportedCid { cid: String, why: &'static str },
    #[error("block {0} is missing")]
    MissingBlock(String),
    #[error("malformed DAG-CBOR in {what}: {detail}")]
    Cbor { what: &'static str, detail: String },
    #[error("malformed MST node {cid}: {why}")]
    BadMst { cid: String, why: &'static str },
    #[error("commit is for {found}, not {expected}")]
    WrongRepo { expected: String, found: String },
    #[error("unsupported commit version {0}")]
    Version(i64),
    #[error("commit signature does not verify")]
    BadSignature,
    #[error("{0}")]
    TooLarge(String),
}

impl RepoError {
    /// A stable label for counting refusals.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Car(_) => "bad_car",
            Self::CidMismatch { .. } => "cid_mismatch",
            Self::UnsupportedCid { .. } => "unsupported_cid",
            Self::MissingBlock(_) => "missing_block",
            Self::Cbor { .. } => "bad_cbor",
            Self::BadMst { .. } => "bad_mst",
            Self::WrongRepo { .. } => "wrong_repo",
            Self::Version(_) => "bad_commit",
            Self::BadSignature => "bad_signature",
            Self::TooLarge(_) => "oversize",
        }
    }
}

/// DAG-CBOR's multicodec; every MST node, commit and record block uses it.
pub const DAG_CBOR: u64 = 0x71;
/// The `raw` multicodec (blobs); accepted in a CAR, never decoded.
pub const RAW: u64 = 0x55;
/// sha2-256, the only hash ATProto repositories use.
pub const SHA2_256: u64 = 0x12;

fn cbor_error(
    what: &'static str,
) -> impl Fn(serde_ipld_dagcbor::DecodeError<std::convert::Infallible>) -> RepoError {
    move |e| RepoError::Cbor {
        what,
        detail: e.to_string(),
    }
}

/// Decode one DAG-CBOR block into `T`.
pub(crate) fn decode<'a, T: serde::Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<T, RepoError> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(cbor_error(what))
}
