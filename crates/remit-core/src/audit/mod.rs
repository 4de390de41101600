//! The record: append-only audit events in an RFC 6962 Merkle tree with signed checkpoints.

pub mod checkpoint;
pub mod event;
pub mod proof;
pub mod tree;
pub mod verify;
