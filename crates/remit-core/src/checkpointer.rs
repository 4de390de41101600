//! Signs a checkpoint over the audit log whenever it has grown: tree size, root, Ed25519.

use crate::audit::checkpoint::{AuditKey, Checkpoint};
use crate::audit::event::StoredCheckpoint;
use crate::audit::tree::{Frontier, Hash};
use crate::ports::{Clock, Store, StoreError, StoreErrorKind};
use std::fmt;

/// Keeps the tree's frontier in memory and signs checkpoints as events arrive.
pub struct Checkpointer {
    key: AuditKey,
    origin: String,
    frontier: Frontier,
    signed: u64,
    /// The leaf hash at index `frontier.size() - 1`, as read: the store must still hold it.
    last_leaf: Option<Hash>,
    /// Checkpoints this key signed before (the store's latest, the anchor file's) that
    /// the rebuilt tree must match before anything is signed; removed once matched.
    pins: Vec<Pin>,
    /// Whether the store's latest checkpoint has been pinned (on the first tick).
    started: bool,
    /// Why signing stopped for good: the log disagrees with a checkpoint already signed.
    refused: Option<String>,
}

/// A signed checkpoint the log must still reach, and where it came from (for the error).
#[derive(Clone, Debug)]
struct Pin {
    size: u64,
    root: Hash,
    from: String,
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
            last_leaf: None,
            pins: Vec::new(),
            started: false,
            refused: None,
        }
    }

    /// Adds a checkpoint this gateway signed before, kept outside the store (the anchor file,
    /// named by `from`): nothing is signed until the log's root at its size is its root.
    ///
    /// A note not signed by this checkpointer's key, or for another origin, is ignored.
    pub fn expect(&mut self, note: &str, from: impl Into<String>) {
        if let Ok(signed) = self.key.verifier().verify(note)
            && signed.origin == self.origin
        {
            self.pins.push(Pin {
                size: signed.size,
                root: signed.root,
                from: from.into(),
            });
        }
    }

    /// Why signing has stopped for good, if it has.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Stops signing for good with `why`, and returns it as the error.
    fn refuse(&mut self, why: &str) -> StoreError {
        let why = format!(
            "{why}; refusing to sign any checkpoint over it (the anchor file is left as it is): \
             run `remit audit verify` to find what changed, restore the store from a backup \
             or investigate, then restart remit"
        );
        self.refused = Some(why.clone());
        StoreError::new(StoreErrorKind::Corrupt, why)
    }

    /// Checks the root at the size just reached against any checkpoint signed at that size.
    fn check_pins(&mut self) -> Result<(), StoreError> {
        let size = self.frontier.size();
        if !self.pins.iter().any(|p| p.size == size) {
            return Ok(());
        }
        let root = self.frontier.root();
        if let Some(bad) = self.pins.iter().find(|p| p.size == size && p.root != root) {
            let why = format!(
                "the audit log's root at size {size} is not the root of the checkpoint this key \
                 signed at that size ({}): events under it were edited, removed or replaced",
                bad.from
            );
            return Err(self.refuse(&why));
        }
        self.pins.retain(|p| p.size != size);
        Ok(())
    }

    /// Checks that the store still holds the last leaf read, where it was read.
    ///
    /// A store that went back in time (a failover to a lagging standby, a restore) is
    /// shorter than the tree, or holds another event at that index.
    async fn check_last_leaf(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        let Some(held) = self.last_leaf else {
            return Ok(());
        };
        let at = self.frontier.size().saturating_sub(1);
        self.check_leaf(store, at, held).await
    }

    /// Checks that the store still holds the leaf `held` as event `at`.
    async fn check_leaf(
        &mut self,
        store: &dyn Store,
        at: u64,
        held: [u8; 32],
    ) -> Result<(), StoreError> {
        // the row itself, not a leaf hash the store kept in memory when it committed it
        let stored = store.events(at, 1).await?;
        match stored.first() {
            Some(event) if event.seq == at && event.leaf_hash == held => Ok(()),
            Some(_) => Err(self.refuse(&format!(
                "the audit log's event {at} is no longer the one this gateway read and signed \
                 (the store went back in time, e.g. a failover to a lagging standby or a restore, \
                 or the event was replaced)"
            ))),
            None => Err(self.refuse(&format!(
                "the audit log no longer holds event {at}, which this gateway read and signed: \
                 the store went back in time (a failover to a lagging standby or a restore) or \
                 events were deleted"
            ))),
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
    ///
    /// Nothing is signed over a log that disagrees with what this key signed before: on
    /// the first call the store's latest checkpoint joins those given to [`Self::expect`],
    /// and the rebuilt tree's root at each one's size must be its root; each call also
    /// re-reads the stored row of the last event read, which must still hold the leaf hash
    /// read (a store gone back in time fails it); and the store's latest checkpoint must be
    /// this key's (two keys signing one log leave it verifiable by neither). Any failure
    /// stops signing for good ([`Self::refused`]); a restart checks again.
    pub async fn tick(
        &mut self,
        store: &dyn Store,
        clock: &dyn Clock,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        if let Some(why) = &self.refused {
            return Err(StoreError::new(StoreErrorKind::Corrupt, why.clone()));
        }
        // what was signed last (here, on another replica, or by another key): a checkpoint
        // of another key means two keys sign one log, which no one key then verifies (a
        // replica that made its own key, a key file replaced); checked each round, since a
        // replica started beside this one may sign after this one has started
        if let Some(latest) = store.latest_checkpoint().await? {
            let at = latest.tree_size;
            let verifier = self.key.verifier();
            let ours = verifier
                .verify(&latest.note)
                .is_ok_and(|signed| signed.origin == self.origin);
            if !ours {
                let why = format!(
                    "the store's latest checkpoint (size {at}) is not signed by this gateway's \
                     key `{}` (key ID {}) for origin `{}`: another gateway signs this audit log \
                     with another key, or this key file replaced the one that signed it; give \
                     every gateway on this store the same key file (`audit_key`) and origin, or \
                     restore the key that signed it, then restart remit; nothing is signed with \
                     a second key",
                    verifier.name(),
                    hex::encode(verifier.key_id()),
                    self.origin
                );
                self.refused = Some(why.clone());
                return Err(StoreError::new(StoreErrorKind::Corrupt, why));
            }
            if !self.started {
                // the rebuilt tree must match what this key signed last
                self.expect(
                    &latest.note,
                    format!("the store's latest checkpoint, size {at}"),
                );
            }
        }
        self.started = true;
        self.check_last_leaf(store).await?;
        // the leaf the new ones are read onto: checked again once they are read, so a store
        // that went back while they were read (new events on a shorter log) is not signed
        let read_onto = self
            .last_leaf
            .map(|held| (self.frontier.size().saturating_sub(1), held));
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
                    self.last_leaf = Some(hash);
                    self.check_pins()?;
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
        if let Some(short) = self.pins.iter().find(|p| p.size > size) {
            let why = format!(
                "the audit log holds {size} events, but this key signed a checkpoint at size {} \
                 ({}): events under it were removed",
                short.size, short.from
            );
            return Err(self.refuse(&why));
        }
        if size == 0 || size == self.signed {
            return Ok(None);
        }
        if let Some((at, held)) = read_onto {
            self.check_leaf(store, at, held).await?;
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
