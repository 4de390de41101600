//! The SQLite group-commit writer: a thread of its own that owns the writing connection.
//!
//! Callers queue their appends and charges; the thread takes everything waiting, commits
//! it as one transaction (one fsync in WAL mode with `synchronous=FULL`) and answers each
//! caller. Running SQLite on the thread that gathers the batch means one hand-off per
//! caller each way; going through sqlx's own connection worker from a writer task cost
//! about seven context switches per commit, the largest share of remit's time per call
//! with one agent.
//!
//! There is no timeout on a commit: it waits at most the busy timeout for another
//! process's write lock, then fails, and its callers are refused.

use crate::budget;
use crate::record::EventRow;
use crate::sql;
use crate::writer::{Committed, Job, MAX_BATCH_EVENTS, Writer, answer};
use remit_core::ports::{BudgetCharge, ChargeOutcome, StoreError, StoreErrorKind};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// One event, after the last.
const INSERT_EVENT: &str = "INSERT INTO audit_events \
    (seq, time, stage, call, run, agent, action, body, leaf_hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Opens the writing connection on a migrated database and starts its thread.
pub(crate) fn start(path: &Path, busy_timeout: Duration) -> Result<Writer, StoreError> {
    let conn = Connection::open(path).map_err(|e| {
        StoreError::unavailable(format!(
            "cannot open the sqlite store `{}` for writing: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(busy_timeout)
        .and_then(|()| {
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
            )
        })
        .map_err(|e| error("cannot set up the sqlite writer", &e))?;
    Writer::start_thread("remit-audit-writer", move |queue| run(queue, conn))
}

fn run(mut queue: mpsc::Receiver<Job>, mut conn: Connection) {
    let mut jobs = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let mut weight = first.weight();
        jobs.push(first);
        while weight < MAX_BATCH_EVENTS {
            match queue.try_recv() {
                Ok(job) => {
                    weight += job.weight();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let result = commit(&mut conn, &jobs);
        answer(&mut jobs, result);
    }
}

/// Appends the batch's events and applies its charges in one transaction, or changes nothing.
fn commit(conn: &mut Connection, jobs: &[Job]) -> Result<Committed, StoreError> {
    let doing = "cannot commit audit events";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| error(doing, &e))?;
    let next: i64 = tx
        .query_row(sql::NEXT_SEQ, [], |row| row.get(0))
        .map_err(|e| error(doing, &e))?;
    let first_seq = u64::try_from(next).map_err(|_| {
        StoreError::new(StoreErrorKind::Corrupt, "the audit log has a negative seq")
    })?;
    {
        let mut insert = tx
            .prepare_cached(INSERT_EVENT)
            .map_err(|e| error(doing, &e))?;
        let rows = jobs.iter().flat_map(|job| match job {
            Job::Append { rows, .. } => rows.as_slice(),
            Job::Charge { .. } => &[],
        });
        for (seq, row) in (next..).zip(rows) {
            insert_event(&mut insert, seq, row).map_err(|e| error(doing, &e))?;
        }
    }
    let mut charges = Vec::new();
    for job in jobs {
        if let Job::Charge {
            charges: c, now_ms, ..
        } = job
        {
            charges.push(charge(&tx, c, *now_ms)?);
        }
    }
    tx.commit().map_err(|e| error(doing, &e))?;
    Ok(Committed { first_seq, charges })
}

fn insert_event(
    insert: &mut rusqlite::CachedStatement<'_>,
    seq: i64,
    row: &EventRow,
) -> rusqlite::Result<()> {
    insert.execute(params![
        seq,
        row.time,
        row.stage,
        row.call,
        row.run,
        row.agent,
        row.action,
        row.body,
        &row.leaf_hash[..],
    ])?;
    Ok(())
}

/// The `budget_charges` table through the writer's transaction: each statement runs on this thread.
struct SqliteLedger<'t, 'c>(&'t Transaction<'c>);

impl budget::ChargeTable for SqliteLedger<'_, '_> {
    type Error = rusqlite::Error;

    async fn last_charge(&mut self, key: &str) -> rusqlite::Result<Option<(i64, f64)>> {
        self.0
            .prepare_cached(sql::LAST_CHARGE)?
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    async fn base_cum(&mut self, key: &str, since_ms: i64) -> rusqlite::Result<Option<f64>> {
        self.0
            .prepare_cached(sql::BASE_CUM)?
            .query_row(params![key, since_ms], |r| r.get(0))
            .optional()
    }

    async fn first_reaching(&mut self, key: &str, need: f64) -> rusqlite::Result<Option<i64>> {
        self.0
            .prepare_cached(sql::FIRST_REACHING)?
            .query_row(params![key, need], |r| r.get(0))
            .optional()
    }

    async fn record(
        &mut self,
        key: &str,
        (time_ms, amount, cum): (i64, f64, f64),
        prune_before_ms: i64,
    ) -> rusqlite::Result<()> {
        self.0
            .prepare_cached(sql::INSERT_CHARGE)?
            .execute(params![key, time_ms, amount, cum])?;
        self.0
            .prepare_cached(sql::PRUNE_CHARGES)?
            .execute(params![key, prune_before_ms])?;
        Ok(())
    }
}

/// Checks every budget of one call and charges all of them, or none ([`budget::charge`] on this thread).
fn charge(
    tx: &Transaction<'_>,
    charges: &[BudgetCharge],
    now_ms: i64,
) -> Result<ChargeOutcome, StoreError> {
    use std::task::{Context, Poll, Waker};
    let doing = "cannot charge budgets";
    let mut ledger = SqliteLedger(tx);
    let mut charging = std::pin::pin!(budget::charge(&mut ledger, charges, now_ms));
    // nothing in it waits: every statement runs to its end when polled, so one poll finishes it
    match charging
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(outcome) => outcome.map_err(|e| error(doing, &e)),
        Poll::Pending => Err(StoreError::new(
            StoreErrorKind::Other,
            format!("{doing}: the charge did not finish on the writer thread"),
        )),
    }
}

/// A rusqlite error as a store error saying what was being done.
pub(crate) fn error(doing: &str, e: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let kind = match e.sqlite_error_code() {
        Some(
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::SystemIoFailure
            | C::DiskFull
            | C::CannotOpen
            | C::OutOfMemory,
        ) => StoreErrorKind::Unavailable,
        Some(C::DatabaseCorrupt | C::NotADatabase) => StoreErrorKind::Corrupt,
        Some(C::ConstraintViolation) => StoreErrorKind::Conflict,
        _ => StoreErrorKind::Other,
    };
    StoreError::new(kind, format!("{doing}: {e}"))
}
