//! The SQLite store: one file in WAL mode, every commit fsync'd, one writing connection.
//!
//! Writes go through a pool of one connection, so writers in one process queue on it
//! instead of on SQLite's lock; `BEGIN IMMEDIATE` and a busy timeout keep a second
//! process on the same file correct too. Reads use their own small pool and, in WAL
//! mode, never wait for the writer.

use crate::budget;
use crate::error::store_error;
use crate::record::{self, EventRow, to_i64};
use crate::sql;
use crate::writer::{Batch, Committed, Ledger, Writer};
use async_trait::async_trait;
use remit_core::audit::event::{Event, StoredCheckpoint, StoredEvent};
use remit_core::ports::{
    BudgetCharge, ChargeOutcome, FreezeTarget, Store, StoreError, StoreErrorKind,
};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections for reads; WAL readers do not block the writer or each other.
const READERS: u32 = 4;

/// A remit store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    path: Arc<PathBuf>,
    writes: SqlitePool,
    reads: SqlitePool,
    writer: Writer,
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
            // Statement journals and the rows of `INSERT .. SELECT` stay in memory
            // instead of going through a temp file on every batch.
            .pragma("temp_store", "memory");
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
        let writer = Writer::start(SqliteLedger {
            pool: writes.clone(),
        });
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            writes,
            reads,
            writer,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection of every clone; later calls fail as unavailable.
    pub async fn close(&self) {
        self.writes.close().await;
        self.reads.close().await;
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

/// Commits batches on the single writing connection.
#[derive(Debug)]
struct SqliteLedger {
    pool: SqlitePool,
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn commit(&self, batch: &Batch<'_>) -> Result<Committed, StoreError> {
        let doing = "cannot commit audit events";
        let (json, hashes) = event_params(&batch.events).map_err(|e| store_error(doing, &e))?;
        if batch.charges.is_empty() {
            return self.append_only(json, hashes, batch.events.len()).await;
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| store_error(doing, &e))?;
        let first_seq = if batch.events.is_empty() {
            0
        } else {
            let next: i64 = sqlx::query_scalar(sql::NEXT_SEQ)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| store_error(doing, &e))?;
            sqlx::query(sql::INSERT_EVENTS_SQLITE)
                .bind(json)
                .bind(hashes)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(doing, &e))?;
            u64::try_from(next).map_err(|_| record::corrupt("the audit log has a negative seq"))?
        };
        let mut outcomes = Vec::with_capacity(batch.charges.len());
        for (charges, now_ms) in &batch.charges {
            outcomes.push(
                charge(&mut tx, charges, *now_ms)
                    .await
                    .map_err(|e| store_error("cannot charge budgets", &e))?,
            );
        }
        tx.commit().await.map_err(|e| store_error(doing, &e))?;
        Ok(Committed {
            first_seq,
            charges: outcomes,
        })
    }
}

impl SqliteLedger {
    /// The hot path: a batch of appends in one trip to SQLite's thread, not five.
    async fn append_only(
        &self,
        json: String,
        hashes: Vec<u8>,
        events: usize,
    ) -> Result<Committed, StoreError> {
        let doing = "cannot commit audit events";
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| store_error(doing, &e))?;
        let mut conn = CloseUnlessFinished {
            conn,
            finished: false,
        };
        let done: Result<Vec<i64>, sqlx::Error> = sqlx::query_scalar(sql::APPEND_SQLITE)
            .bind(json)
            .bind(hashes)
            .fetch_all(&mut *conn.conn)
            .await;
        conn.finished = done.is_ok();
        let seqs = done.map_err(|e| store_error(doing, &e))?;
        let first = seqs.first().copied().ok_or_else(|| {
            record::corrupt("the store did not say where the appended events begin")
        })?;
        let first_seq = u64::try_from(first)
            .map_err(|_| record::corrupt("the audit log has a negative seq"))?;
        tracing::trace!(events, first_seq, "audit batch committed");
        Ok(Committed {
            first_seq,
            charges: Vec::new(),
        })
    }
}

/// A connection running `BEGIN ..; COMMIT` as one command: unless that command finished,
/// it may still be inside the transaction, so it is closed (rolling back) instead of going
/// back to the pool, whether the command failed or its future was dropped half way.
struct CloseUnlessFinished {
    conn: PoolConnection<Sqlite>,
    finished: bool,
}

impl Drop for CloseUnlessFinished {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// The batch's events as `insert_events_sqlite!` takes them: rows as JSON, hashes end to end.
fn event_params(rows: &[&EventRow]) -> Result<(String, Vec<u8>), sqlx::Error> {
    let columns: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                &r.time, r.stage, &r.call, &r.run, &r.agent, &r.action, &r.body,
            )
        })
        .collect();
    let json = serde_json::to_string(&columns).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let hashes = rows.iter().flat_map(|r| r.leaf_hash).collect();
    Ok((json, hashes))
}

charge_on!(SqliteConnection);
