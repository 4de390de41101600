//! RFC 6962 Merkle tree hashing.

use sha2::{Digest, Sha256};

/// `SHA-256(0x00 || body)`: the hash of one leaf.
pub fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}
