//! The record: append-only audit events in an RFC 6962 Merkle tree with signed checkpoints.

pub mod checkpoint;
pub mod event;
pub mod proof;
pub mod tree;
pub mod verify;

pub use checkpoint::{AuditKey, Checkpoint, CheckpointError, Verifier};
pub use event::{Detail, DetailWriter, Event, Stage, StoredCheckpoint, StoredEvent};
pub use proof::{
    InclusionProof, PathBuilder, ProofError, consistency_path, inclusion_path, verify_consistency,
    verify_inclusion,
};
pub use tree::{Frontier, Hash, leaf_hash, node_hash, root};
pub use verify::{Location, LogVerifier, Problem, VerifyReport};
