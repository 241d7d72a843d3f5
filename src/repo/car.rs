//! CARv1: `varint(len) header` then `varint(len) CID block` sections until the end.
//!
//! Blocks are borrowed from the input, never copied. Each block's CID is recomputed from its
//! bytes as it is read, so everything later code looks up is what its CID says it is.

use std::collections::HashMap;

use cid::Cid;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{DAG_CBOR, RAW, RepoError, SHA2_256, decode};

/// The blocks of a CAR, by CID, borrowed from the bytes they were read from.
pub type Blocks<'a> = HashMap<Cid, &'a [u8]>;

/// A read and hash-checked CAR.
#[derive(Debug)]
pub struct Car<'a> {
    pub roots: Vec<Cid>,
    pub blocks: Blocks<'a>,
}

#[derive(Deserialize)]
struct Header {
    version: u64,
    roots: Vec<Cid>,
}

impl<'a> Car<'a> {
    /// Reads a whole CARv1, checking every block against its CID.
    pub fn read(bytes: &'a [u8]) -> Result<Self, RepoError> {
        let mut rest = bytes;
        let header_len = read_varint(&mut rest, "header length")?;
        let header_bytes = take(&mut rest, header_len, "header")?;
        let header: Header = decode("CAR header", header_bytes)?;
        if header.version != 1 {
            return Err(RepoError::Car(format!(
                "version {} (only 1 is read)",
                header.version
            )));
        }
        let mut blocks = HashMap::new();
        while !rest.is_empty() {
            let len = read_varint(&mut rest, "section length")?;
            let mut section = take(&mut rest, len, "section")?;
            let before = section.len();
            let cid = Cid::read_bytes(&mut section)
                .map_err(|e| RepoError::Car(format!("bad CID in a section: {e}")))?;
            debug_assert!(section.len() < before);
            check(&cid, section)?;
            blocks.insert(cid, section);
        }
        Ok(Self {
            roots: header.roots,
            blocks,
        })
    }

    pub fn get(&self, cid: &Cid) -> Result<&'a [u8], RepoError> {
        self.blocks
            .get(cid)
            .copied()
            .ok_or_else(|| RepoError::MissingBlock(cid.to_string()))
    }
}

/// Checks that `block` hashes to `cid` (CIDv1, dag-cbor or raw, sha2-256).
pub fn check(cid: &Cid, block: &[u8]) -> Result<(), RepoError> {
    let unsupported = |why| RepoError::UnsupportedCid {
        cid: cid.to_string(),
        why,
    };
    if cid.version() != cid::Version::V1 {
        return Err(unsupported("not CIDv1"));
    }
    if cid.codec() != DAG_CBOR && cid.codec() != RAW {
        return Err(unsupported("codec is neither dag-cbor nor raw"));
    }
    let hash = cid.hash();
    if hash.code() != SHA2_256 || hash.size() != 32 {
        return Err(unsupported("hash is not sha2-256"));
    }
    if hash.digest() != &Sha256::digest(block)[..] {
        return Err(RepoError::CidMismatch {
            cid: cid.to_string(),
        });
    }
    Ok(())
}

/// The CID a DAG-CBOR block would have (tests and fixtures: Herald never writes blocks).
#[cfg(test)]
pub fn cid_of(block: &[u8]) -> Cid {
    let digest = Sha256::digest(block);
    let hash = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest)
        .expect("a 32-byte digest fits a 64-byte multihash");
    Cid::new_v1(DAG_CBOR, hash)
}

fn take<'a>(rest: &mut &'a [u8], len: u64, what: &str) -> Result<&'a [u8], RepoError> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > rest.len() {
        return Err(RepoError::Car(format!(
            "{what} of {len} bytes runs past the end ({} left)",
            rest.len()
        )));
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

fn read_varint(rest: &mut &[u8], what: &str) -> Result<u64, RepoError> {
    let (value, tail) = unsigned_varint::decode::u64(rest)
        .map_err(|e| RepoError::Car(format!("bad {what}: {e}")))?;
    *rest = tail;
    Ok(value)
}

/// Writes a CARv1 (tests and fixtures only: Herald never serves repositories).
#[cfg(test)]
pub fn write(roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Header<'a> {
        roots: &'a [Cid],
        version: u64,
    }
    let header = serde_ipld_dagcbor::to_vec(&Header { roots, version: 1 }).unwrap();
    let mut out = Vec::new();
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(header.len() as u64, &mut buf));
    out.extend_from_slice(&header);
    for (cid, block) in blocks {
        let cid = cid.to_bytes();
        let len = (cid.len() + block.len()) as u64;
        out.extend_from_slice(unsigned_varint::encode::u64(len, &mut buf));
        out.extend_from_slice(&cid);
        out.extend_from_slice(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(value: &str) -> (Cid, Vec<u8>) {
        let bytes = serde_ipld_dagcbor::to_vec(&value).unwrap();
        (cid_of(&bytes), bytes)
    }

    #[test]
    fn a_car_is_read_with_every_block_checked() {
        let (a, b) = (block("a"), block("b"));
        let car = write(&[a.0], &[a.clone(), b.clone()]);
        let read = Car::read(&car).unwrap();
        assert_eq!(read.roots, vec![a.0]);
        assert_eq!(read.get(&b.0).unwrap(), b.1.as_slice());
        assert!(matches!(
            read.get(&cid_of(b"nope")),
            Err(RepoError::MissingBlock(_))
        ));
    }

    #[test]
    fn a_block_that_does_not_match_its_cid_is_refused() {
        let (a, _) = block("a");
        let car = write(
            &[a],
            &[(a, serde_ipld_dagcbor::to_vec(&"tampered").unwrap())],
        );
        let err = Car::read(&car).unwrap_err();
        assert_eq!(err.reason(), "cid_mismatch", "{err}");
    }

    #[test]
    fn truncated_cars_are_refused_at_any_length() {
        let (a, b) = (block("a"), block("b"));
        let car = write(&[a.0], &[a, b]);
        for len in 0..car.len() {
            let err = Car::read(&car[..len]);
            // A cut exactly between two sections is a valid, shorter CAR.
            if let Ok(read) = err {
                assert!(read.blocks.len() < 2, "cut at {len} still read both blocks");
                continue;
            }
            assert_eq!(err.unwrap_err().reason(), "bad_car", "cut at {len}");
        }
    }
}
