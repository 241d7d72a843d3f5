//! Merkle Search Tree lookups and prefix walks.
//!
//! A node is `{l: CID?, e: [{p, k, v, t?}]}`: `l` holds the keys below the first entry, each
//! entry's `t` the keys between it and the next, and each key is stored as `p` bytes shared
//! with the previous key plus the suffix `k`. A lookup follows one path from the root, so a
//! firehose commit's CAR (which carries exactly the nodes on the paths it changed) proves both
//! presence and absence; a node the path needs but the CAR lacks is an error, never "absent".
//!
//! Node layering (key depth from leading zeros of the key hash) is not re-checked: a
//! mis-layered tree from a PDS whose signature verifies changes no answer this module gives.

use cid::Cid;
use serde::Deserialize;

use super::{Blocks, RepoError, decode};

/// Bounds the walk: real repositories are a few levels deep; a hostile CAR could chain nodes.
const MAX_DEPTH: usize = 64;

#[derive(Deserialize)]
struct Node<'a> {
    #[serde(default)]
    l: Option<Cid>,
    #[serde(borrow)]
    e: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    p: usize,
    #[serde(with = "serde_bytes", borrow)]
    k: &'a [u8],
    v: Cid,
    #[serde(default)]
    t: Option<Cid>,
}

/// A tree rooted at `root` over the blocks at hand.
pub struct Mst<'b, 'a> {
    blocks: &'b Blocks<'a>,
    root: Cid,
}

impl<'b, 'a> Mst<'b, 'a> {
    pub fn new(blocks: &'b Blocks<'a>, root: Cid) -> Self {
        Self { blocks, root }
    }

    fn node(&self, cid: &Cid) -> Result<Node<'a>, RepoError> {
        let block = self
            .blocks
            .get(cid)
            .ok_or_else(|| RepoError::MissingBlock(cid.to_string()))?;
        decode("MST node", block)
    }

    /// The CID stored under `key`, or `None` when the tree proves it absent.
    pub fn get(&self, key: &str) -> Result<Option<Cid>, RepoError> {
        let key = key.as_bytes();
        let mut at = self.root;
        for _ in 0..MAX_DEPTH {
            let node = self.node(&at)?;
            let mut next = node.l;
            let mut full = Vec::new();
            for entry in &node.e {
                extend_key(&mut full, entry, &at)?;
                match full.as_slice().cmp(key) {
                    std::cmp::Ordering::Equal => return Ok(Some(entry.v)),
                    std::cmp::Ordering::Less => next = entry.t,
                    std::cmp::Ordering::Greater => break,
                }
            }
            match next {
                Some(child) => at = child,
                None => return Ok(None),
            }
        }
        Err(bad(&at, "deeper than any real repository"))
    }

    /// Calls `visit(key, cid)` for every key starting with `prefix`, in key order. Subtrees
    /// that cannot hold such keys are not read, so they may be missing from the blocks.
    pub fn walk_prefix(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, Cid) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        self.walk(self.root, prefix.as_bytes(), None, None, 0, visit)
    }

    fn walk(
        &self,
        at: Cid,
        prefix: &[u8],
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
        depth: usize,
        visit: &mut dyn FnMut(&str, Cid) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        // Keys in this subtree lie strictly between `lower` and `upper`.
        if upper.is_some_and(|u| u <= prefix)
            || lower.is_some_and(|l| l > prefix && !l.starts_with(prefix))
        {
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            return Err(bad(&at, "deeper than any real repository"));
        }
        let node = self.node(&at)?;
        let mut keys = Vec::with_capacity(node.e.len());
        let mut full = Vec::new();
        for entry in &node.e {
            extend_key(&mut full, entry, &at)?;
            if keys.last().is_some_and(|last: &Vec<u8>| *last >= full) {
                return Err(bad(&at, "keys out of order"));
            }
            keys.push(full.clone());
        }
        let first = keys.first().map(Vec::as_slice).or(upper);
        if let Some(l) = node.l {
            self.walk(l, prefix, lower, first, depth + 1, visit)?;
        }
        for (i, entry) in node.e.iter().enumerate() {
            let key = keys[i].as_slice();
            if key.starts_with(prefix) {
                let key = std::str::from_utf8(key).map_err(|_| bad(&at, "key is not UTF-8"))?;
                visit(key, entry.v)?;
            }
            if let Some(t) = entry.t {
                let next = keys.get(i + 1).map(Vec::as_slice).or(upper);
                self.walk(t, prefix, Some(key), next, depth + 1, visit)?;
            }
        }
        Ok(())
    }
}

fn extend_key(full: &mut Vec<u8>, entry: &Entry<'_>, at: &Cid) -> Result<(), RepoError> {
    if entry.p > full.len() {
        return Err(bad(at, "prefix longer than the previous key"));
    }
    full.truncate(entry.p);
    full.extend_from_slice(entry.k);
    Ok(())
}

fn bad(cid: &Cid, why: &'static str) -> RepoError {
    RepoError::BadMst {
        cid: cid.to_string(),
        why,
    }
}

/// Builds MST node blocks (tests only): one node per call, entries given with full keys.
#[cfg(test)]
pub fn node_block(l: Option<Cid>, entries: &[(&str, Cid, Option<Cid>)]) -> (Cid, Vec<u8>) {
    #[derive(serde::Serialize)]
    struct E<'a> {
        k: &'a serde_bytes::Bytes,
        p: usize,
        t: Option<Cid>,
        v: Cid,
    }
    #[derive(serde::Serialize)]
    struct N<'a> {
        e: Vec<E<'a>>,
        l: Option<Cid>,
    }
    let mut prev: &[u8] = &[];
    let mut e = Vec::new();
    for (key, v, t) in entries {
        let key = key.as_bytes();
        let p = prev.iter().zip(key).take_while(|(a, b)| a == b).count();
        e.push(E {
            k: serde_bytes::Bytes::new(&key[p..]),
            p,
            t: *t,
            v: *v,
        });
        prev = key;
    }
    let bytes = serde_ipld_dagcbor::to_vec(&N { e, l }).unwrap();
    (super::car::cid_of(&bytes), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::car::cid_of;
    use std::collections::HashMap;

    /// root: l → [a/1], entries [c/1 (t → [c/2, c/3]), e/1]
    fn tree() -> (HashMap<Cid, Vec<u8>>, Cid) {
        let v = |s: &str| cid_of(s.as_bytes());
        let left = node_block(None, &[("a/1", v("a1"), None)]);
        let mid = node_block(None, &[("c/2", v("c2"), None), ("c/3", v("c3"), None)]);
        let root = node_block(
            Some(left.0),
            &[("c/1", v("c1"), Some(mid.0)), ("e/1", v("e1"), None)],
        );
        let root_cid = root.0;
        (HashMap::from([left, mid, root]), root_cid)
    }

    fn borrowed(blocks: &HashMap<Cid, Vec<u8>>) -> Blocks<'_> {
        blocks.iter().map(|(c, b)| (*c, b.as_slice())).collect()
    }

    #[test]
    fn lookups_prove_presence_and_absence() {
        let (blocks, root) = tree();
        let blocks = borrowed(&blocks);
        let mst = Mst::new(&blocks, root);
        assert_eq!(mst.get("c/3").unwrap(), Some(cid_of(b"c3")));
        assert_eq!(mst.get("a/1").unwrap(), Some(cid_of(b"a1")));
        assert_eq!(mst.get("e/1").unwrap(), Some(cid_of(b"e1")));
        assert_eq!(mst.get("c/25").unwrap(), None);
        assert_eq!(mst.get("z").unwrap(), None);
    }

    #[test]
    fn a_path_through_a_missing_node_is_an_error_not_an_absence() {
        let (mut blocks, root) = tree();
        let left = node_block(None, &[("a/1", cid_of(b"a1"), None)]).0;
        blocks.remove(&left);
        let blocks = borrowed(&blocks);
        let mst = Mst::new(&blocks, root);
        assert_eq!(mst.get("a/0").unwrap_err().reason(), "missing_block");
        // Keys whose path avoids the missing node still answer.
        assert_eq!(mst.get("e/1").unwrap(), Some(cid_of(b"e1")));
    }

    fn walk(
        blocks: &HashMap<Cid, Vec<u8>>,
        root: Cid,
        prefix: &str,
    ) -> Result<Vec<String>, RepoError> {
        let blocks = borrowed(blocks);
        let mut seen = Vec::new();
        Mst::new(&blocks, root).walk_prefix(prefix, &mut |k, _| {
            seen.push(k.to_owned());
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn a_prefix_walk_visits_only_matching_keys_and_skips_other_subtrees() {
        let (mut blocks, root) = tree();
        assert_eq!(walk(&blocks, root, "c/").unwrap(), ["c/1", "c/2", "c/3"]);
        assert_eq!(
            walk(&blocks, root, "").unwrap(),
            ["a/1", "c/1", "c/2", "c/3", "e/1"]
        );
        // Everything under c/1's subtree sorts after "c/1", so an "a/" walk must not need it.
        let mid = node_block(
            None,
            &[("c/2", cid_of(b"c2"), None), ("c/3", cid_of(b"c3"), None)],
        )
        .0;
        blocks.remove(&mid);
        assert_eq!(walk(&blocks, root, "a/").unwrap(), ["a/1"]);
        // A walk that does need it says so.
        assert_eq!(
            walk(&blocks, root, "c/").unwrap_err().reason(),
            "missing_block"
        );
    }
}
