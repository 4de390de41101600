//! Copies committed pages from SQLite's write-ahead log into the database file on a thread
//! of its own, so the audit writer's commits seldom stop for that copy.
//!
//! SQLite copies the log into the database (a WAL checkpoint; not remit's signed audit
//! checkpoints) on the committing connection once the log holds 1,000 pages: the commit
//! that crosses that line copies them all and syncs the database file before it returns.
//! Under load that is a few milliseconds every second during which no audit event is
//! committed, every call waits and the cores stand idle (BENCHMARKS.md, "Run 19").
//!
//! This thread copies, in SQLite's `PASSIVE` mode (it never blocks the writer or a
//! reader), whenever about a mebibyte of events has been committed since its last pass,
//! and once more when commits stop for a second with less than that left. When the writer's own copy comes due, little is left
//! to copy and little to sync; if it finds this thread copying, SQLite skips it for that
//! commit and the next commit tries again. The log restarts from its beginning at the
//! first commit after everything in it was copied, by either; under sustained load the
//! writer's own copy makes sure that happens, so the log's size stays bounded as before.
//!
//! A pass that fails (another process copying, an I/O error) changes nothing that is
//! committed: the log still holds every page, and the writer's own copy still runs. It is
//! logged and the next pass tries again.

use crate::sqlite_writer::error;
use remit_core::ports::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Event bytes committed between two passes.
const EVERY_BYTES: u64 = 1 << 20;

/// With fewer bytes than that waiting, a pass once commits have stopped this long.
const AFTER_QUIET: Duration = Duration::from_secs(1);

/// The handle the writer holds; dropping it ends the thread after its pass in progress.
#[derive(Debug)]
pub(crate) struct Backfill {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Event bytes committed since the last pass began.
    pending: u64,
    /// The writer has gone.
    stopped: bool,
    /// Passes finished (for tests).
    passes: u64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backfill {
    /// Opens a connection of its own on the database at `path` and starts the thread.
    pub(crate) fn start(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        Self::start_quiet(path, busy_timeout, AFTER_QUIET, 0)
    }

    /// [`Backfill::start`] with a pass once commits have stopped for `quiet`, and `pending`
    /// bytes already counted.
    fn start_quiet(
        path: &Path,
        busy_timeout: Duration,
        quiet: Duration,
        pending: u64,
    ) -> Result<Self, StoreError> {
        let doing = "cannot start copying the sqlite store's write-ahead log";
        let conn = Connection::open(path)
            .and_then(|conn| {
                conn.busy_timeout(busy_timeout)?;
                // FULL: a pass syncs the log before it copies and the database file after.
                conn.execute_batch("PRAGMA synchronous = FULL;")?;
                Ok(conn)
            })
            .map_err(|e| error(doing, &e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending,
                ..State::default()
            }),
            wake: Condvar::new(),
        });
        let thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("remit-wal-copy".to_owned())
            .spawn(move || run(&thread, &conn, quiet))
            .map_err(|e| StoreError::unavailable(format!("{doing}: {e}")))?;
        Ok(Self { shared })
    }

    /// Counts `bytes` of events just committed; wakes the thread when a pass is due.
    pub(crate) fn committed(&self, bytes: u64) {
        let mut state = self.shared.state();
        let before = state.pending;
        state.pending = before.saturating_add(bytes);
        if before < EVERY_BYTES && state.pending >= EVERY_BYTES {
            self.shared.wake.notify_one();
        }
    }

    /// Passes finished so far.
    #[cfg(test)]
    pub(crate) fn passes(&self) -> u64 {
        self.shared.state().passes
    }
}

impl Drop for Backfill {
    fn drop(&mut self) {
        self.shared.state().stopped = true;
        self.shared.wake.notify_one();
    }
}

/// The thread: a pass whenever enough is committed, or commits have stopped with some left.
fn run(shared: &Shared, conn: &Connection, quiet_for: Duration) {
    let mut state = shared.state();
    loop {
        if state.stopped {
            return;
        }
        // a mebibyte that came during the last pass is due at once: its wake-up came then
        if state.pending < EVERY_BYTES {
            let before = state.pending;
            let (next, waited) = shared
                .wake
                .wait_timeout(state, quiet_for)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            let commits_stopped = waited.timed_out() && before > 0 && state.pending == before;
            if state.stopped || (state.pending < EVERY_BYTES && !commits_stopped) {
                continue;
            }
        }
        state.pending = 0;
        drop(state);
        if let Err(e) = pass(conn) {
            tracing::warn!(error = %e, "copying the audit store's write-ahead log into its file failed; the writer's own copy still runs");
        }
        state = shared.state();
        state.passes += 1;
    }
}

/// One `PASSIVE` copy: as many committed pages as no reader still needs from the log.
fn pass(conn: &Connection) -> Result<(), StoreError> {
    let doing = "cannot copy the write-ahead log";
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(0)
    })
    .map_err(|e| error(doing, &e))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated store file, and a writing connection on it that never copies the log itself.
    async fn store_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, Connection) {
        let path = dir.path().join("remit.db");
        crate::sqlite::SqliteStore::open(&path)
            .await
            .unwrap()
            .close()
            .await;
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA synchronous = FULL;")
            .unwrap();
        // the schema into the file, so a copy of the file alone can be read
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap();
        (path, writer)
    }

    /// Commits `rows` events of `size` bytes; their bytes, to tell the copier.
    fn commit(writer: &Connection, rows: usize, size: usize) -> u64 {
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let next: i64 = writer
            .query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_events",
                [],
                |r| r.get(0),
            )
            .unwrap();
        for seq in next..next + rows as i64 {
            writer
                .execute(
                    "INSERT INTO audit_events (seq, body, leaf_hash) VALUES (?, ?, ?)",
                    rusqlite::params![seq, "x".repeat(size), vec![0u8; 32]],
                )
                .unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
        (rows * size) as u64
    }

    /// The events in the database file itself: a copy of the file alone, without its log, read.
    fn events_in_the_file(path: &Path) -> i64 {
        let copy = path.with_extension("file-only.db");
        std::fs::copy(path, &copy).unwrap();
        let count = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM audit_events", [], |r| r.get(0))
            .unwrap();
        for end in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{end}", copy.display()));
        }
        count
    }

    async fn until_passes(backfill: &Backfill, n: u64) {
        for _ in 0..500 {
            if backfill.passes() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the copier made {} passes, not {n}", backfill.passes());
    }

    #[tokio::test]
    async fn a_mebibyte_committed_is_copied_into_the_file_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = store_file(&dir).await;
        let hour = Duration::from_secs(3600);
        let backfill = Backfill::start_quiet(&path, Duration::from_secs(5), hour, 0).unwrap();
        // below the mark, nothing is copied: the events are in the log only
        backfill.committed(commit(&writer, 100, 1_000));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(backfill.passes(), 0);
        assert_eq!(events_in_the_file(&path), 0);
        // across it, one pass copies everything committed
        backfill.committed(commit(&writer, 1_000, 1_000));
        until_passes(&backfill, 1).await;
        assert_eq!(events_in_the_file(&path), 1_100);
    }

    #[tokio::test]
    async fn a_mebibyte_counted_while_the_thread_was_copying_is_copied_without_a_wake_up() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = store_file(&dir).await;
        let hour = Duration::from_secs(3600);
        commit(&writer, 10, 1_000);
        // as if the mark was crossed during a pass: its wake-up came while nobody waited
        let counted = 2 * EVERY_BYTES;
        let backfill = Backfill::start_quiet(&path, Duration::from_secs(5), hour, counted).unwrap();
        until_passes(&backfill, 1).await;
        assert_eq!(events_in_the_file(&path), 10);
    }

    #[tokio::test]
    async fn what_is_left_below_the_mark_is_copied_once_commits_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = store_file(&dir).await;
        let quiet = Duration::from_millis(50);
        let backfill = Backfill::start_quiet(&path, Duration::from_secs(5), quiet, 0).unwrap();
        backfill.committed(commit(&writer, 10, 500));
        until_passes(&backfill, 1).await;
        assert_eq!(events_in_the_file(&path), 10);
        // with nothing more committed, no pass follows
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(backfill.passes(), 1);
    }

    #[tokio::test]
    async fn a_readers_older_snapshot_holds_the_copy_back_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = store_file(&dir).await;
        let quiet = Duration::from_millis(50);
        let backfill = Backfill::start_quiet(&path, Duration::from_millis(10), quiet, 0).unwrap();
        // a reader still on the snapshot before the commit needs the log's pages as they were
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        other
            .execute_batch("BEGIN; SELECT COUNT(*) FROM audit_events;")
            .unwrap();
        backfill.committed(commit(&writer, 10, 500));
        until_passes(&backfill, 1).await;
        // the pass did not wait for the reader, and copied nothing it still needs
        assert_eq!(events_in_the_file(&path), 0);
        other.execute_batch("COMMIT").unwrap();
        backfill.committed(commit(&writer, 5, 500));
        until_passes(&backfill, 2).await;
        assert_eq!(events_in_the_file(&path), 15);
    }
}
