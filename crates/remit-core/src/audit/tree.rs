//! RFC 6962 Merkle tree hashing.
//!
//! Leaves are `SHA-256(0x00 || body)` and interior nodes `SHA-256(0x01 || left || right)`
//! (RFC 6962 §2.1). [`root`] is the Merkle Tree Hash of a list of leaf hashes held in
//! memory; [`Frontier`] computes the same root while streaming leaves one at a time,
//! keeping only the O(log n) perfect subtrees that make up the tree so far.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf, an interior node or a tree root.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || body)`: the hash of one leaf.
pub fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The Merkle Tree Hash (RFC 6962 §2.1) of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split_point(leaves.len());
            match leaves.split_at_checked(k) {
                Some((left, right)) => node_hash(&root(left), &root(right)),
                None => empty_root(),
            }
        }
    }
}

/// The largest power of two strictly smaller than `n`, for `n >= 2` (RFC 6962's `k`).
pub(crate) fn split_point(n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The largest power of two strictly smaller than `n`, for `n >= 2`, over `u64`.
pub(crate) fn split_point_u64(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    1u64 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// A compact range: the perfect subtrees covering the leaves pushed so far, for streaming roots.
///
/// Holds one hash per set bit of the size (at most 64), so memory stays O(log n)
/// however many leaves go through it. `push` costs one leaf-to-frontier merge, on
/// average one node hash per leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    // INVARIANT: `subtrees[i]` is the root of a perfect subtree whose height is the
    // i-th highest set bit of `size`, ordered left (oldest, largest) to right.
    subtrees: Vec<Hash>,
    size: u64,
}

impl Default for Frontier {
    fn default() -> Self {
        Self::new()
    }
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            subtrees: Vec::with_capacity(64),
            size: 0,
        }
    }

    /// Appends one leaf hash at index `size()`.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut bits = self.size;
        // Each trailing one bit of the old size is a perfect subtree of the same
        // height as the one being carried: merge them, as in binary addition.
        while bits & 1 == 1 {
            match self.subtrees.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                None => break,
            }
            bits >>= 1;
        }
        self.subtrees.push(hash);
        self.size += 1;
    }

    /// How many leaves have been pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of the leaves pushed so far; equal to [`root`] over them.
    pub fn root(&self) -> Hash {
        let mut iter = self.subtrees.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The eight leaves of the certificate-transparency reference tests.
    fn ct_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
    }

    /// Roots of the first 1..=8 CT leaves (merkle_tree_test.cc, RFC 6962 test vectors).
    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            root(&[]),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(Frontier::new().root(), root(&[]));
    }

    #[test]
    fn leaf_hash_of_empty_body_matches_ct_vector() {
        assert_eq!(leaf_hash(b""), h(CT_ROOTS[0]));
    }

    #[test]
    fn roots_match_certificate_transparency_vectors() {
        let leaves = ct_leaves();
        for (n, want) in CT_ROOTS.iter().enumerate() {
            assert_eq!(root(&leaves[..=n]), h(want), "size {}", n + 1);
        }
    }

    #[test]
    fn frontier_matches_certificate_transparency_vectors() {
        let mut f = Frontier::new();
        for (leaf, want) in ct_leaves().into_iter().zip(CT_ROOTS) {
            f.push(leaf);
            assert_eq!(f.root(), h(want), "size {}", f.size());
        }
    }

    #[test]
    fn frontier_root_equals_tree_root_for_every_size_to_70() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), root(&[]));
        for n in 1..=70 {
            f.push(leaves[n - 1]);
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.root(), root(&leaves[..n]), "size {n}");
        }
    }

    #[test]
    fn frontier_keeps_one_subtree_per_set_bit() {
        let mut f = Frontier::new();
        for i in 0u32..1000 {
            f.push(leaf_hash(&i.to_le_bytes()));
            assert_eq!(f.subtrees.len() as u32, f.size().count_ones());
        }
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512)] {
            assert_eq!(split_point(n), k);
            assert_eq!(split_point_u64(n as u64), k as u64);
        }
    }
}
