//! Signs a checkpoint over the audit log whenever it has grown: tree size, root, Ed25519.

use crate::audit::checkpoint::{AuditKey, Checkpoint};
use crate::audit::event::StoredCheckpoint;
use crate::audit::tree::{Frontier, leaf_hash};
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

    /// Reads events the frontier has not seen, then signs and stores a checkpoint if the log grew.
    ///
    /// A stored event whose body no longer matches its recorded leaf hash stops signing:
    /// remit never signs over a log it cannot vouch for.
    pub async fn tick(
        &mut self,
        store: &dyn Store,
        clock: &dyn Clock,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        loop {
            let batch = store.events(self.frontier.size(), PAGE).await?;
            let n = batch.len() as u64;
            for e in &batch {
                if e.seq != self.frontier.size() || leaf_hash(e.body.as_bytes()) != e.leaf_hash {
                    return Err(StoreError::new(
                        StoreErrorKind::Corrupt,
                        format!("event {} does not match the log; refusing to sign", e.seq),
                    ));
                }
                self.frontier.push(e.leaf_hash);
            }
            if n < PAGE {
                break;
            }
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
