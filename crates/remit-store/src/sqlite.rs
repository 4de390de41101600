//! The SQLite store: one file in WAL mode, every commit fsync'd, one writing connection.
//!
//! Audit appends and budget charges go to one writer thread that owns its connection
//! (`sqlite_writer`); the rare other writes (checkpoints, the kill switch) use a pool of
//! one connection. `BEGIN IMMEDIATE` and a busy timeout keep them, and a second process
//! on the same file, correct. Reads use their own small pool and, in WAL mode, never
//! wait for a writer. A thread of its own copies the write-ahead log into the file
//! (`wal_backfill`), so the writer seldom stops for it.

use crate::error::store_error;
use crate::recent::RecentLeaves;
use crate::record::{self, to_i64};
use crate::sql;
use crate::sqlite_writer;
use crate::writer::Writer;
use remit_core::audit::event::{Event, StoredCheckpoint, StoredEvent};
use remit_core::ports::{
    BudgetCharge, ChargeOutcome, FreezeTarget, Store, StoreError, StoreErrorKind,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The page size of a new database file, in bytes.
const PAGE_SIZE: u32 = 16 * 1024;

/// Connections for reads; WAL readers do not block the writer or each other.
const READERS: u32 = 4;

/// A remit store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    path: Arc<PathBuf>,
    writes: SqlitePool,
    reads: SqlitePool,
    writer: Writer,
    /// Leaf hashes the writer committed, until the checkpointer has read them.
    recent: Arc<RecentLeaves>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::unavailable(format!(
                    "cannot create the directory of the sqlite store `{shown}`: {e}"
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Temporary tables and indexes stay in memory: migration 2's `INSERT .. SELECT`
            // copy of the log goes through no temp file. (Audit batches go through the
            // rusqlite writer, which sets this pragma on its own connection.)
            .pragma("temp_store", "memory")
            // A new file's pages are 16 KiB, not 4: a commit writes each page it touches to
            // the WAL as a frame (two writes each), so fewer, larger pages mean fewer system
            // calls per commit. Side by side at 64 clients: 48.7 against 51.5 µs of CPU per
            // call (BENCHMARKS.md, run 10). An existing file keeps its page size.
            .page_size(PAGE_SIZE);
        let unavailable = |e: sqlx::Error| {
            StoreError::unavailable(format!("cannot open the sqlite store `{shown}`: {e}"))
        };
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        MIGRATOR.run(&writes).await.map_err(|e| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("cannot migrate the sqlite store `{shown}`: {e}"),
            )
        })?;
        let reads = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        let recent = Arc::new(RecentLeaves::default());
        let writer = sqlite_writer::start(path, BUSY_TIMEOUT, Arc::clone(&recent))?;
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            writes,
            reads,
            writer,
            recent,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection of every clone; later calls fail as unavailable.
    pub async fn close(&self) {
        self.writer.close();
        self.writes.close().await;
        self.reads.close().await;
    }

    /// Seq and leaf hash of the events with seq in `start..end`: as this process committed
    /// them when it still keeps them from `start` on, else read on a blocking thread.
    ///
    /// sqlx hands each row of a result from its worker thread to the caller on its own; for
    /// the checkpointer's tens of thousands of rows a second that cost more than the rest of
    /// its work, so these go through rusqlite in one pass.
    async fn leaf_hashes_between(
        &self,
        start: i64,
        end: i64,
    ) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        if self.reads.is_closed() {
            return Err(StoreError::unavailable("the store is closed"));
        }
        if let (Ok(s), Ok(e)) = (u64::try_from(start), u64::try_from(end))
            && let Some(kept) = self.recent.from(s, e)
        {
            return Ok(kept);
        }
        self.read_rows(
            "cannot read audit leaf hashes",
            sql::LEAF_HASHES,
            (start, end),
            |r| Ok(record::leaf(r.get(0)?, &r.get::<_, Vec<u8>>(1)?)),
        )
        .await
    }

    /// The events with seq in `start..end`, read on a blocking thread through rusqlite in one
    /// pass (for `remit audit verify`, which reads the whole log: through sqlx it read
    /// about 250,000 events a second, less than the verifier checks).
    async fn events_between(&self, start: i64, end: i64) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_rows("cannot read audit events", sql::EVENTS, (start, end), |r| {
            Ok(record::stored_event(
                r.get(0)?,
                String::from_utf8_lossy(bytes_of(r.get_ref(1)?)).into_owned(),
                bytes_of(r.get_ref(2)?),
            ))
        })
        .await
    }

    /// Runs `query` over the range `(start, end)` on a read-only connection of its own, on a
    /// blocking thread; `row` turns each row into a value or a store error.
    async fn read_rows<T: Send + 'static>(
        &self,
        doing: &'static str,
        query: &'static str,
        (start, end): (i64, i64),
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
    ) -> Result<Vec<T>, StoreError> {
        if self.reads.is_closed() {
            return Err(StoreError::unavailable("the store is closed"));
        }
        let path = Arc::clone(&self.path);
        let read = move || -> Result<Vec<T>, StoreError> {
            let fail = |e: rusqlite::Error| sqlite_writer::error(doing, &e);
            let conn = rusqlite::Connection::open_with_flags(
                path.as_path(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(fail)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
            let mut statement = conn.prepare(query).map_err(fail)?;
            let rows = statement
                .query_map(rusqlite::params![start, end], row)
                .map_err(fail)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r.map_err(fail)??);
            }
            Ok(out)
        };
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|_| StoreError::unavailable(format!("{doing}: the reader stopped")))?
    }
}

/// A column's bytes whatever SQLite stored it as (an edited row may hold a blob where text
/// belongs): the body of such an event then fails its hash in `verify`, located, instead of
/// ending the read.
fn bytes_of(value: rusqlite::types::ValueRef<'_>) -> &[u8] {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
        ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => &[],
    }
}

store_over_pools!(SqliteStore, reads: reads, writes: writes, name: "sqlite");

/// A checkpoint for a tree size already saved must name the same root.
pub(crate) fn same_root(saved: &[u8], checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
    if saved == checkpoint.root {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Conflict,
            format!(
                "a checkpoint with a different root is already saved for tree size {}",
                checkpoint.tree_size
            ),
        ))
    }
}
