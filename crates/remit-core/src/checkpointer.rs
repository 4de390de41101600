//! Signs a checkpoint over the audit log whenever it has grown: tree size, root, Ed25519.

use crate::audit::checkpoint::{AuditKey, Checkpoint};
use crate::audit::event::StoredCheckpoint;
use crate::audit::tree::Frontier;
use crate::ports::{Clock, Store, StoreError, StoreErrorKind};
use std::fmt;

/// Keeps the tree's frontier in memory and signs checkpoints as events arrive.
pub struct Checkpointer {
    key: AuditKey,
    origin: String,
    frontier: Frontier,
    signed: u64,
}

impl fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpointer")
            .field("origin", &self.origin)
            .field("size", &self.frontier.size())
            .finish_non_exhaustive()
    }
}

/// Events read from the store per round trip while catching up.
const PAGE: u64 = 10_000;

impl Checkpointer {
    /// A checkpointer signing with `key` under `origin`.
    pub fn new(key: AuditKey, origin: impl Into<String>) -> Self {
        Self {
            key,
            origin: origin.into(),
            frontier: Frontier::new(),
            signed: 0,
        }
    }

    /// Reads the leaf hashes the frontier has not seen, then signs and stores a checkpoint if the log grew.
    ///
    /// A gap or repeat in the sequence stops signing, as does a log whose highest seq lies
    /// past the event it has next (a row stored far ahead, or the events between deleted):
    /// every call goes on being recorded, but nothing more is signed, and the error says
    /// why each second. Bodies are not read back: a body that no longer matches its leaf
    /// hash is what `remit audit verify` finds and locates, and someone able to rewrite
    /// both could rewrite them before any re-check here too.
    pub async fn tick(
        &mut self,
        store: &dyn Store,
        clock: &dyn Clock,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        loop {
            loop {
                let batch = store.leaf_hashes(self.frontier.size(), PAGE).await?;
                let n = batch.len() as u64;
                for (seq, hash) in batch {
                    if seq != self.frontier.size() {
                        return Err(StoreError::new(
                            StoreErrorKind::Corrupt,
                            format!(
                                "the log has event {seq} where event {} belongs; refusing to sign",
                                self.frontier.size()
                            ),
                        ));
                    }
                    self.frontier.push(hash);
                }
                if n < PAGE {
                    break;
                }
            }
            // the end of what was read is the log's end, unless its highest seq says otherwise
            let size = self.frontier.size();
            let count = store.event_count().await?;
            if count <= size {
                break;
            }
            if store.leaf_hashes(size, 1).await?.is_empty() {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!(
                        "the log has no event {size} but holds events up to {}: events are missing \
                         or one is stored out of place; refusing to sign (run `remit audit verify`)",
                        count - 1
                    ),
                ));
            }
            // events committed since the last read: read on
        }
        let size = self.frontier.size();
        if size == 0 || size == self.signed {
            return Ok(None);
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.frontier.root(),
        };
        let stored = StoredCheckpoint {
            tree_size: size,
            root: checkpoint.root,
            note: checkpoint.sign(&self.key),
            time: crate::time::rfc3339(clock.now_ms()),
        };
        store.put_checkpoint(&stored).await?;
        self.signed = size;
        Ok(Some(stored))
    }
}
