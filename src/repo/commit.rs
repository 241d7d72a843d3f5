//! The signed commit at the top of a repository (version 3; version 2 reads the same way).
//!
//! The signature covers the DAG-CBOR encoding of the commit without its `sig` field. Fields
//! are declared in DAG-CBOR's canonical key order (shorter keys first, then bytewise) so the
//! re-encoding is byte-for-byte what the PDS signed.

use cid::Cid;
use serde::{Deserialize, Serialize};

use super::{RepoError, decode};
use crate::identity::PublicKey;

/// A repository commit.
#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub did: String,
    pub version: i64,
    /// Root of the MST holding the records.
    pub data: Cid,
    pub rev: String,
    #[serde(default)]
    pub prev: Option<Cid>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// What was signed: the commit minus `sig`, in canonical key order.
#[derive(Serialize)]
struct Unsigned<'a> {
    did: &'a str,
    rev: &'a str,
    data: &'a Cid,
    prev: &'a Option<Cid>,
    version: i64,
}

impl Commit {
    /// Decodes a commit block and checks it belongs to `did`.
    pub fn decode(block: &[u8], did: &str) -> Result<Self, RepoError> {
        let commit: Self = decode("commit", block)?;
        if commit.did != did {
            return Err(RepoError::WrongRepo {
                expected: did.to_owned(),
                found: commit.did,
            });
        }
        if !(2..=3).contains(&commit.version) {
            return Err(RepoError::Version(commit.version));
        }
        Ok(commit)
    }

    /// The bytes the signature covers.
    pub fn unsigned_bytes(&self) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(&Unsigned {
            did: &self.did,
            rev: &self.rev,
            data: &self.data,
            prev: &self.prev,
            version: self.version,
        })
        .expect("a commit always encodes")
    }

    /// Checks the signature against `key` (low-S, compact, over SHA-256 of the unsigned bytes).
    pub fn verify(&self, key: &PublicKey) -> Result<(), RepoError> {
        key.verify(&self.unsigned_bytes(), &self.sig)
            .map_err(|_| RepoError::BadSignature)
    }

    /// Signs as a PDS would (tests and fixtures only).
    #[cfg(test)]
    pub fn sign(did: &str, rev: &str, data: Cid, key: &k256::ecdsa::SigningKey) -> Self {
        use k256::ecdsa::signature::Signer;
        let mut commit = Self {
            did: did.to_owned(),
            version: 3,
            data,
            rev: rev.to_owned(),
            prev: None,
            sig: Vec::new(),
        };
        let sig: k256::ecdsa::Signature = key.sign(&commit.unsigned_bytes());
        let sig = sig.normalize_s().unwrap_or(sig);
        commit.sig = sig.to_bytes().to_vec();
        commit
    }

    /// The commit as its block (tests and fixtures only).
    #[cfg(test)]
    pub fn to_block(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Signed<'a> {
            did: &'a str,
            rev: &'a str,
            sig: &'a serde_bytes::Bytes,
            data: &'a Cid,
            prev: &'a Option<Cid>,
            version: i64,
        }
        serde_ipld_dagcbor::to_vec(&Signed {
            did: &self.did,
            rev: &self.rev,
            sig: serde_bytes::Bytes::new(&self.sig),
            data: &self.data,
            prev: &self.prev,
            version: self.version,
        })
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::car::cid_of;

    fn key() -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_signed_commit_verifies_and_a_changed_one_does_not() {
        let signing = key();
        let public =
            PublicKey::from_sec1_k256(signing.verifying_key().to_encoded_point(true).as_bytes())
                .unwrap();
        let commit = Commit::sign("did:plc:alice", "3laaaaaaaaaa2", cid_of(b"root"), &signing);
        let read = Commit::decode(&commit.to_block(), "did:plc:alice").unwrap();
        read.verify(&public).unwrap();

        let mut changed = read.clone();
        changed.rev = "3laaaaaaaaaa3".into();
        assert_eq!(
            changed.verify(&public).unwrap_err().reason(),
            "bad_signature"
        );
        assert_eq!(
            Commit::decode(&commit.to_block(), "did:plc:bob")
                .unwrap_err()
                .reason(),
            "wrong_repo"
        );
    }

    #[test]
    fn the_unsigned_encoding_keeps_canonical_key_order_and_a_null_prev() {
        let commit = Commit::sign("did:plc:alice", "3l", cid_of(b"root"), &key());
        let value: ipld_core::ipld::Ipld =
            serde_ipld_dagcbor::from_slice(&commit.unsigned_bytes()).unwrap();
        let ipld_core::ipld::Ipld::Map(map) = value else {
            panic!("not a map")
        };
        assert_eq!(map.get("prev"), Some(&ipld_core::ipld::Ipld::Null));
        assert!(!map.contains_key("sig"));
        // Re-encoding the decoded map (which the encoder sorts canonically) gives the same bytes.
        let reencoded = serde_ipld_dagcbor::to_vec(&ipld_core::ipld::Ipld::Map(map)).unwrap();
        assert_eq!(reencoded, commit.unsigned_bytes());
    }
}
