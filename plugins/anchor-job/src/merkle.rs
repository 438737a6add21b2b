//! SHA-256 Merkle roots of receipt batches.
//!
//! Leaves are `SHA-256(0x00 || receipt)` and inner nodes
//! `SHA-256(0x01 || left || right)` (domain-separated, so a leaf can never
//! pass for a node); a level with an odd count carries its last node up
//! unchanged. The root of one receipt is its leaf hash.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf(receipt: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(receipt);
    h.finalize().into()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of a batch; `None` for an empty one.
pub fn root(receipts: &[Vec<u8>]) -> Option<Hash> {
    let mut level: Vec<Hash> = receipts.iter().map(|r| leaf(r)).collect();
    if level.is_empty() {
        return None;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node(l, r),
                // `chunks(2)` never yields an empty chunk.
                _ => pair[0],
            })
            .collect();
    }
    level.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn small_trees() {
        assert_eq!(root(&[]), None);
        assert_eq!(root(&[r("a")]), Some(leaf(b"a")));
        assert_eq!(
            root(&[r("a"), r("b")]),
            Some(node(&leaf(b"a"), &leaf(b"b")))
        );
        // Odd levels carry the last node up.
        assert_eq!(
            root(&[r("a"), r("b"), r("c")]),
            Some(node(&node(&leaf(b"a"), &leaf(b"b")), &leaf(b"c")))
        );
    }

    #[test]
    fn order_and_content_matter() {
        assert_ne!(root(&[r("a"), r("b")]), root(&[r("b"), r("a")]));
        assert_ne!(root(&[r("a"), r("b")]), root(&[r("a"), r("c")]));
    }

    #[test]
    fn known_vector() {
        // SHA-256(0x00 || "a")
        assert_eq!(
            hex::encode(leaf(b"a")),
            "022a6979e6dab7aa5ae4c3e5e45f7e977112a7e63593820dbec1ec738a24f93c"
        );
    }
}
