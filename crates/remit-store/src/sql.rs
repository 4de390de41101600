//! The SQL both backends run: one dialect (`$N` parameters work on SQLite too), except where noted.

/// The seq the next event gets: one past the largest, 0 for an empty log (it is gapless).
pub(crate) const NEXT_SEQ: &str = "SELECT coalesce(max(seq) + 1, 0) FROM audit_events";

/// Inserts a batch of events after the last (SQLite), in one statement whatever its size.
///
/// `$1` is a JSON array of `[time, stage, call, run, agent, action, body]`, `$2` the
/// leaf hashes laid end to end. The seqs continue the log: the uncorrelated subquery
/// runs once, and SQLite materialises the rows before inserting because the `SELECT`
/// reads the table it inserts into.
macro_rules! insert_events_sqlite {
    () => {
        "INSERT INTO audit_events (seq, time, stage, call, run, agent, action, body, leaf_hash) \
         SELECT (SELECT coalesce(max(seq) + 1, 0) FROM audit_events) + key, \
         value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
         substr($2, 32 * key + 1, 32) \
         FROM json_each($1) ORDER BY key"
    };
}

/// See [`insert_events_sqlite`].
pub(crate) const INSERT_EVENTS_SQLITE: &str = insert_events_sqlite!();

/// A batch of appends alone, as one trip to SQLite's thread: begin, first seq, insert, commit.
pub(crate) const APPEND_SQLITE: &str = concat!(
    "BEGIN IMMEDIATE; SELECT coalesce(max(seq) + 1, 0) FROM audit_events; ",
    insert_events_sqlite!(),
    "; COMMIT"
);

/// Events with seq in `$1..$2`, in order.
pub(crate) const EVENTS: &str = "SELECT seq, body, leaf_hash FROM audit_events \
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

/// What a budget's window holds: charges of key `$1` stamped after `$2`.
pub(crate) const WINDOW_SUM: &str = "SELECT coalesce(sum(amount), 0.0) FROM budget_charges \
    WHERE key = $1 AND time_ms > $2";

/// The window's charges in time order, to tell when room returns.
pub(crate) const WINDOW_CHARGES: &str = "SELECT time_ms, amount FROM budget_charges \
    WHERE key = $1 AND time_ms > $2 ORDER BY time_ms";

/// One charge against a budget.
pub(crate) const INSERT_CHARGE: &str =
    "INSERT INTO budget_charges (key, time_ms, amount) VALUES ($1, $2, $3)";

/// Forgets charges long out of their window.
pub(crate) const PRUNE_CHARGES: &str =
    "DELETE FROM budget_charges WHERE key = $1 AND time_ms <= $2";

/// Freezes a target (a no-op when frozen already).
pub(crate) const FREEZE: &str =
    "INSERT INTO frozen_targets (kind, name) VALUES ($1, $2) ON CONFLICT (kind, name) DO NOTHING";

/// Unfreezes a target.
pub(crate) const UNFREEZE: &str = "DELETE FROM frozen_targets WHERE kind = $1 AND name = $2";

/// Everything frozen now.
pub(crate) const FROZEN: &str = "SELECT kind, name FROM frozen_targets ORDER BY kind, name";
