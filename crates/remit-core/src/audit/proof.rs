//! Inclusion and consistency proofs (RFC 6962 §2.1.1–2.1.2, verified as in RFC 9162 §2.1.3–2.1.4).
//!
//! Every hash in either kind of proof is the Merkle Tree Hash of a contiguous range of
//! leaves. [`PathBuilder`] works out those ranges from the sizes alone and hashes them
//! as the leaves stream past, so a proof over millions of events needs O(log n) memory;
//! [`inclusion_path`] and [`consistency_path`] are the same over a slice.
//!
//! [`InclusionProof`] is what `remit audit prove` prints: an event, its path, and the
//! signed checkpoint, checkable offline without remit's store.

use serde::{Deserialize, Serialize};

use super::checkpoint::{CheckpointError, Verifier};
use super::tree::{Frontier, Hash, empty_root, leaf_hash, node_hash, split_point_u64};

/// Why a proof could not be made or does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("event {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("tree size {old} is larger than tree size {new}")]
    SizesOutOfOrder {
        /// The earlier tree size.
        old: u64,
        /// The later tree size.
        new: u64,
    },
    /// Fewer leaves were given than the tree size needs.
    #[error("a tree of size {size} needs {size} leaves but {leaves} were given")]
    TooFewLeaves {
        /// The tree size.
        size: u64,
        /// How many leaves were given.
        leaves: u64,
    },
    /// The checkpoint or the verifier key is bad.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The proof's tree size is not the size the checkpoint signs.
    #[error("the proof is for tree size {proof} but the checkpoint signs size {checkpoint}")]
    SizeMismatch {
        /// The tree size in the proof.
        proof: u64,
        /// The tree size in the checkpoint.
        checkpoint: u64,
    },
    /// The path does not lead from the event to the signed root.
    #[error("event {index} is not included in the signed tree of size {size}")]
    NotIncluded {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof carries a different verifier key from the one trusted.
    #[error("the proof's verifier key is not the trusted key `{0}`")]
    UntrustedKey(String),
    /// The checkpoint is validly signed, but for another log: its origin line is not the one expected.
    #[error("the checkpoint is signed for the log `{found}`, not `{expected}`")]
    OtherOrigin {
        /// The origin line of the checkpoint.
        found: String,
        /// The origin the proof was checked for.
        expected: String,
    },
}

/// Computes the hashes of a proof path from leaves streamed in order, in O(log n) memory.
#[derive(Clone, Debug)]
pub struct PathBuilder {
    // INVARIANT: `ranges` are disjoint, sorted by start, and each `slot` indexes `path`.
    ranges: Vec<Range>,
    path: Vec<Hash>,
    next: usize,
    frontier: Frontier,
    pushed: u64,
    size: u64,
}

/// The leaves `start..end` whose tree hash goes into `path[slot]`.
#[derive(Clone, Copy, Debug)]
struct Range {
    start: u64,
    end: u64,
    slot: usize,
}

impl PathBuilder {
    /// A builder for the inclusion path of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion(index: u64, size: u64) -> Result<Self, ProofError> {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut ranges = Vec::new();
        inclusion_ranges(index, 0, size, &mut ranges);
        Ok(Self::over(ranges, size))
    }

    /// A builder for the consistency proof from the tree of size `old` to size `new`.
    ///
    /// The proof from the empty tree is empty.
    pub fn consistency(old: u64, new: u64) -> Result<Self, ProofError> {
        if old > new {
            return Err(ProofError::SizesOutOfOrder { old, new });
        }
        let mut ranges = Vec::new();
        if old > 0 {
            consistency_ranges(old, 0, new, true, &mut ranges);
        }
        Ok(Self::over(ranges, new))
    }

    fn over(ranges: Vec<(u64, u64)>, size: u64) -> Self {
        let path = vec![[0u8; 32]; ranges.len()];
        let mut ranges: Vec<Range> = ranges
            .into_iter()
            .enumerate()
            .map(|(slot, (start, end))| Range { start, end, slot })
            .collect();
        ranges.sort_unstable_by_key(|r| r.start);
        Self {
            ranges,
            path,
            next: 0,
            frontier: Frontier::new(),
            pushed: 0,
            size,
        }
    }

    /// How many leaves the builder needs: the tree size. Leaves past it are ignored.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Feeds the next leaf hash, starting from leaf 0.
    pub fn push(&mut self, leaf_hash: Hash) {
        if self.pushed >= self.size {
            return;
        }
        if let Some(range) = self.ranges.get(self.next).copied()
            && self.pushed >= range.start
        {
            self.frontier.push(leaf_hash);
            if self.pushed + 1 == range.end {
                if let Some(out) = self.path.get_mut(range.slot) {
                    *out = self.frontier.root();
                }
                self.frontier = Frontier::new();
                self.next += 1;
            }
        }
        self.pushed += 1;
    }

    /// The proof path, leaf side first, once all `size()` leaves have been pushed.
    pub fn finish(self) -> Result<Vec<Hash>, ProofError> {
        if self.pushed < self.size {
            return Err(ProofError::TooFewLeaves {
                size: self.size,
                leaves: self.pushed,
            });
        }
        Ok(self.path)
    }
}

/// The ranges of PATH(m, D[lo:hi]) (RFC 6962 §2.1.1), leaf side first.
fn inclusion_ranges(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let mid = lo + split_point_u64(n);
    if m < mid {
        inclusion_ranges(m, lo, mid, out);
        out.push((mid, hi));
    } else {
        inclusion_ranges(m, mid, hi, out);
        out.push((lo, mid));
    }
}

/// The ranges of SUBPROOF(m, D[lo:hi], b) (RFC 6962 §2.1.2), for `0 < m <= hi - lo`.
fn consistency_ranges(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push((lo, hi));
        }
        return;
    }
    let k = split_point_u64(n);
    let mid = lo + k;
    if m <= k {
        consistency_ranges(m, lo, mid, whole, out);
        out.push((mid, hi));
    } else {
        consistency_ranges(m - k, mid, hi, false, out);
        out.push((lo, mid));
    }
}

/// Streams the first `size` of `leaves` through `builder`.
fn build(mut builder: PathBuilder, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let size = builder.size();
    let have = u64::try_from(leaves.len()).unwrap_or(u64::MAX);
    if have < size {
        return Err(ProofError::TooFewLeaves { size, leaves: have });
    }
    for leaf in leaves
        .iter()
        .take(usize::try_from(size).unwrap_or(usize::MAX))
    {
        builder.push(*leaf);
    }
    builder.finish()
}

/// The inclusion path (RFC 6962 PATH) of leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_path(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    build(PathBuilder::inclusion(index, size)?, leaves)
}

/// The consistency proof (RFC 6962 PROOF) from the tree of size `old` to size `new`.
pub fn consistency_path(leaves: &[Hash], old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
    build(PathBuilder::consistency(old, new)?, leaves)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Checks that the tree of `new_size` with `new_root` extends the one of `old_size` with `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return path.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return path.is_empty() && *old_root == empty_root();
    }
    // When the old tree is a perfect subtree its root is the proof's implicit first hash.
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, path)
    } else {
        match path.split_first() {
            Some(split) => split,
            None => return false,
        }
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

/// A self-contained proof that one event is in the signed log; what `remit audit prove` prints.
///
/// Anyone holding it can check it offline with [`InclusionProof::check_against`], given the
/// operator's published verifier key and the log's origin. [`InclusionProof::check`] alone
/// shows only that the proof is consistent with the key it carries, which proves nothing
/// about who signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The event's canonical JSON text, byte for byte as recorded.
    pub body: String,
    /// The event's leaf index (its sequence number).
    pub index: u64,
    /// The size of the tree the checkpoint signs.
    pub tree_size: u64,
    /// The inclusion path, leaf side first, as lowercase hex.
    #[serde(with = "hex_hashes")]
    pub path: Vec<Hash>,
    /// The signed checkpoint note for `tree_size`.
    pub checkpoint: String,
    /// The verifier key text of the key that signed the checkpoint.
    pub verifier: String,
}

impl InclusionProof {
    /// Checks the checkpoint's signature with the carried key, its size, and the event's path to its root.
    pub fn check(&self) -> Result<(), ProofError> {
        let verifier = Verifier::from_text(&self.verifier)?;
        self.check_with(&verifier)
    }

    /// Like [`check`](Self::check), and also that the carried key is the `trusted` one and the checkpoint is for the log `origin`.
    pub fn check_against(&self, trusted: &Verifier, origin: &str) -> Result<(), ProofError> {
        let carried = Verifier::from_text(&self.verifier)?;
        if carried != *trusted {
            return Err(ProofError::UntrustedKey(trusted.name().to_owned()));
        }
        self.check_with(trusted)?;
        let signed = trusted.verify(&self.checkpoint)?;
        if signed.origin != origin {
            return Err(ProofError::OtherOrigin {
                found: signed.origin,
                expected: origin.to_owned(),
            });
        }
        Ok(())
    }

    fn check_with(&self, verifier: &Verifier) -> Result<(), ProofError> {
        let checkpoint = verifier.verify(&self.checkpoint)?;
        if checkpoint.size != self.tree_size {
            return Err(ProofError::SizeMismatch {
                proof: self.tree_size,
                checkpoint: checkpoint.size,
            });
        }
        let leaf = leaf_hash(self.body.as_bytes());
        if verify_inclusion(
            &leaf,
            self.index,
            self.tree_size,
            &self.path,
            &checkpoint.root,
        ) {
            Ok(())
        } else {
            Err(ProofError::NotIncluded {
                index: self.index,
                size: self.tree_size,
            })
        }
    }
}

/// Serde for a list of hashes as lowercase hex strings.
mod hex_hashes {
    use super::Hash;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(hex::encode))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|text| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(text, &mut hash).map_err(|_| {
                    D::Error::custom(format!("`{text}` is not a 64-digit hex hash"))
                })?;
                Ok(hash)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
