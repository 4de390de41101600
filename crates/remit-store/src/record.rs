//! Rows of the audit log and the kill switch, as both backends write and read them.

use remit_core::audit::event::{Event, StoredCheckpoint, StoredEvent};
use remit_core::audit::tree::leaf_hash;
use remit_core::ports::{FreezeTarget, StoreError, StoreErrorKind};
use serde_json::{Value, json};

/// An event turned into its row: the canonical body and its leaf hash, all the log keeps.
#[derive(Debug)]
pub(crate) struct EventRow {
    pub(crate) body: String,
    pub(crate) leaf_hash: [u8; 32],
}

impl EventRow {
    /// Canonicalises and hashes an event; done by the caller's task, not the writer.
    pub(crate) fn new(event: &Event) -> Result<Self, StoreError> {
        let body = String::from_utf8(event.canonical())
            .map_err(|_| StoreError::new(StoreErrorKind::Other, "event body is not utf-8 text"))?;
        let leaf_hash = leaf_hash(body.as_bytes());
        Ok(Self { body, leaf_hash })
    }
}

/// A stored event from its columns.
///
/// A leaf hash of the wrong length (an edited row) reads as all zeros, which no body hashes
/// to: `remit audit verify` then reports that event and goes on, where an error here ended
/// the whole read without naming it. The checkpointer reads leaf hashes through [`leaf`],
/// which refuses such a row, so nothing is signed over it.
pub(crate) fn stored_event(
    seq: i64,
    body: String,
    leaf_hash: &[u8],
) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: to_u64(seq, "event seq")?,
        body,
        leaf_hash: <[u8; 32]>::try_from(leaf_hash).unwrap_or([0; 32]),
    })
}

/// The seqs `from..from+limit` as the store's columns hold them; `None` when `from` is beyond them (no events).
pub(crate) fn seq_range(from: u64, limit: u64) -> Option<(i64, i64)> {
    let start = i64::try_from(from).ok()?;
    Some((
        start,
        start.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX)),
    ))
}

/// An event's seq and leaf hash from their columns.
pub(crate) fn leaf(seq: i64, leaf_hash: &[u8]) -> Result<(u64, [u8; 32]), StoreError> {
    Ok((
        to_u64(seq, "event seq")?,
        hash32(leaf_hash, "event leaf hash")?,
    ))
}

/// A stored checkpoint from its columns.
///
/// A root of the wrong length (an edited row) reads as all zeros, which differs from the
/// root in the checkpoint's signed note: `remit audit verify` then reports that checkpoint
/// and goes on, and a gateway starting on the store refuses it against its kept checkpoint.
pub(crate) fn stored_checkpoint(
    tree_size: i64,
    root: &[u8],
    note: String,
    time: String,
) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tree_size: to_u64(tree_size, "checkpoint tree size")?,
        root: <[u8; 32]>::try_from(root).unwrap_or([0; 32]),
        note,
        time,
    })
}

/// A count, size or seq as the store's signed integer.
pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| {
        StoreError::new(
            StoreErrorKind::Other,
            format!("{what} {n} is beyond what the store can hold"),
        )
    })
}

fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(format!("{what} is negative ({n})")))
}

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| corrupt(format!("{what} has {} bytes, not 32", bytes.len())))
}

/// The kill switch columns for a target: its kind and name.
pub(crate) fn freeze_columns(target: &FreezeTarget) -> Result<(String, String), StoreError> {
    let value = serde_json::to_value(target)
        .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("freeze target: {e}")))?;
    match (
        value.get("kind").and_then(Value::as_str),
        value.get("name").and_then(Value::as_str),
    ) {
        (Some(kind), Some(name)) => Ok((kind.to_owned(), name.to_owned())),
        _ => Err(StoreError::new(
            StoreErrorKind::Other,
            format!("freeze target {target} has no kind and name"),
        )),
    }
}

/// A freeze target from its kind and name columns.
pub(crate) fn freeze_target(kind: &str, name: &str) -> Result<FreezeTarget, StoreError> {
    serde_json::from_value(json!({ "kind": kind, "name": name }))
        .map_err(|_| corrupt(format!("unknown frozen target kind `{kind}`")))
}

/// The store holds something remit did not write.
pub(crate) fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use remit_core::ids::{ActionName, AgentId};

    #[test]
    fn freeze_targets_round_trip_through_columns() {
        for target in [
            FreezeTarget::Agent(AgentId::new("support-bot")),
            FreezeTarget::Action(ActionName::new("billing.issue_refund")),
        ] {
            let (kind, name) = freeze_columns(&target).unwrap();
            assert_eq!(freeze_target(&kind, &name).unwrap(), target);
        }
        assert_eq!(
            freeze_columns(&FreezeTarget::Agent(AgentId::new("a"))).unwrap(),
            ("agent".to_owned(), "a".to_owned())
        );
    }

    #[test]
    fn a_short_leaf_hash_is_corrupt_to_the_checkpointer_and_matches_no_body_for_verify() {
        // the checkpointer's read refuses it: nothing is signed over such a row
        let err = leaf(0, &[0u8; 31]).unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Corrupt);
        // verify's read keeps the row, with a hash its body cannot have: it is reported there
        let event = stored_event(0, "{}".to_owned(), &[0u8; 31]).unwrap();
        assert_ne!(event.leaf_hash, leaf_hash(event.body.as_bytes()));
    }
}
