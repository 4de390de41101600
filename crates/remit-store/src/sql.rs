//! The SQL both backends run: one dialect (`$N` parameters work on SQLite too), except where noted.

/// The seq the next event gets: one past the largest, 0 for an empty log (it is gapless).
pub(crate) const NEXT_SEQ: &str = "SELECT coalesce(max(seq) + 1, 0) FROM audit_events";

/// The lowest seq at or after `$1` (NULL past the end).
pub(crate) const NEXT_SEQ_FROM: &str = "SELECT min(seq) FROM audit_events WHERE seq >= $1";

/// How many rows have a seq below 0.
pub(crate) const EVENTS_BELOW_ZERO: &str = "SELECT count(*) FROM audit_events WHERE seq < 0";

/// Events with seq in `$1..$2`, in order.
pub(crate) const EVENTS: &str = "SELECT seq, body, leaf_hash FROM audit_events \
    WHERE seq >= $1 AND seq < $2 ORDER BY seq";

/// Seq and leaf hash of events with seq in `$1..$2`, in order (no bodies: for the checkpointer).
pub(crate) const LEAF_HASHES: &str = "SELECT seq, leaf_hash FROM audit_events \
    WHERE seq >= $1 AND seq < $2 ORDER BY seq";

/// Saves a checkpoint unless its tree size has one.
pub(crate) const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints \
    (tree_size, root, note, time) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (tree_size) DO NOTHING";

/// The root already saved for a tree size.
pub(crate) const CHECKPOINT_ROOT: &str = "SELECT root FROM audit_checkpoints WHERE tree_size = $1";

/// Every checkpoint, by tree size.
pub(crate) const CHECKPOINTS: &str =
    "SELECT tree_size, root, note, time FROM audit_checkpoints ORDER BY tree_size";

/// The checkpoint with the largest tree size.
pub(crate) const LATEST_CHECKPOINT: &str = "SELECT tree_size, root, note, time \
    FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1";

/// The key's latest charge: its time and running total.
pub(crate) const LAST_CHARGE: &str = "SELECT time_ms, cum FROM budget_charges \
    WHERE key = $1 ORDER BY time_ms DESC, cum DESC LIMIT 1";

/// The running total just before a window: of the latest charge at or before `$2`.
pub(crate) const BASE_CUM: &str = "SELECT cum FROM budget_charges \
    WHERE key = $1 AND time_ms <= $2 ORDER BY time_ms DESC, cum DESC LIMIT 1";

/// The oldest charge whose running total reaches `$2`: when it leaves, room returns.
pub(crate) const FIRST_REACHING: &str = "SELECT time_ms FROM budget_charges \
    WHERE key = $1 AND cum >= $2 ORDER BY time_ms, cum LIMIT 1";

/// One charge against a budget, with the key's running total after it.
pub(crate) const INSERT_CHARGE: &str =
    "INSERT INTO budget_charges (key, time_ms, amount, cum) VALUES ($1, $2, $3, $4)";

/// Forgets charges long out of their window, keeping the newest of them as the base of later sums.
pub(crate) const PRUNE_CHARGES: &str = "DELETE FROM budget_charges WHERE key = $1 AND time_ms < \
    (SELECT max(time_ms) FROM budget_charges WHERE key = $1 AND time_ms <= $2)";

/// Freezes a target (a no-op when frozen already).
pub(crate) const FREEZE: &str =
    "INSERT INTO frozen_targets (kind, name) VALUES ($1, $2) ON CONFLICT (kind, name) DO NOTHING";

/// Unfreezes a target.
pub(crate) const UNFREEZE: &str = "DELETE FROM frozen_targets WHERE kind = $1 AND name = $2";

/// Everything frozen now.
pub(crate) const FROZEN: &str = "SELECT kind, name FROM frozen_targets ORDER BY kind, name";
