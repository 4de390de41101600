//! The SQLite group-commit writer: the caller commits when the writer is idle, a thread when not.
//!
//! A caller that finds nobody committing commits its own job on its own thread, at once:
//! with one agent that is every call, and it saves the two thread hand-offs (to a writer
//! thread and back) that cost about a tenth of a millisecond per call in a VM, where
//! waking an idle vCPU is a virtual interrupt. Callers that come while a commit is in
//! progress queue their jobs; when it ends, the writer thread takes everything queued,
//! commits it as one transaction (one fsync in WAL mode with `synchronous=FULL`) and
//! answers each caller, until the queue is empty. So under load the commits are batched
//! as before and callers are answered by the thread, never by one another.
//!
//! With many calls running (the pipeline counts them, [`CallsRunning`]), the thread waits
//! a bounded moment before each commit until half of them have queued, as PostgreSQL's
//! `commit_delay` does past `commit_siblings`: fewer, larger commits when the CPU, not the
//! disk, is what the calls wait for. With few calls running it never waits.
//!
//! Only the append that records a call's end may run on the caller's thread. The
//! write-ahead append and budget charges, which come before a call runs, always go to the
//! thread: the caller's task awaits them, so it can notice that its client hung up and
//! not send the call.
//!
//! The cost is that a caller's commit blocks its runtime worker for the commit (an
//! fsync, tens of microseconds to a few milliseconds on the disks measured); the other
//! workers go on. There is no timeout on a commit: it waits at most the busy timeout for
//! another process's write lock, then fails, and its callers are refused.

use crate::budget;
use crate::recent::RecentLeaves;
use crate::record::EventRow;
use crate::sql;
use crate::wal_backfill::Backfill;
use crate::writer::{Batch, Committed, Job, MAX_BATCH_EVENTS, Submit, Writer, answer};
use remit_core::ports::{BudgetCharge, CallsRunning, ChargeOutcome, StoreError, StoreErrorKind};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// When, and how long at most, the thread waits for more calls before a commit.
#[derive(Clone, Copy, Debug)]
struct Linger {
    /// Only with at least this many calls running.
    siblings: usize,
    /// At most this long per commit.
    wait: Duration,
}

/// From 16 calls running, a commit waits up to 1 ms for half of them (at most a batch's
/// worth, [`Shared::linger`]). Side by side at 64 clients: 10 % less CPU per call and
/// 0.42× against 0.39× (BENCHMARKS.md, run 14); no change at 8 clients, where an
/// unconditional 1 ms wait had cost a third of the throughput.
const LINGER: Linger = Linger {
    siblings: 16,
    wait: Duration::from_millis(1),
};

/// Most events one `INSERT` statement writes (a read's three, a batch's in eights).
const ROWS_PER_INSERT: usize = 8;

/// The statement inserting `rows` events (1..=[`ROWS_PER_INSERT`]).
///
/// `OR FAIL`: a failing row ends the statement without undoing the rows before it, so
/// SQLite keeps no statement journal (with the default `ABORT`, a statement of several
/// rows inside a transaction first copies each page it changes, as it was, into one).
/// Nothing of a failed batch stays anyway: `commit` rolls the whole transaction back.
fn insert_events(rows: usize) -> Option<&'static str> {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        (1..=ROWS_PER_INSERT)
            .map(|n| {
                let values = vec!["(?, ?, ?)"; n].join(", ");
                format!("INSERT OR FAIL INTO audit_events (seq, body, leaf_hash) VALUES {values}")
            })
            .collect()
    });
    sql.get(rows.checked_sub(1)?).map(String::as_str)
}

/// Opens the writing connection on a migrated database and starts its thread; what it
/// commits, it also keeps in `recent`.
pub(crate) fn start(
    path: &Path,
    busy_timeout: Duration,
    recent: Arc<RecentLeaves>,
) -> Result<Writer, StoreError> {
    let shared = start_shared(path, busy_timeout, recent, LINGER)?;
    let running = Arc::clone(&shared.running);
    Ok(Writer::direct(Arc::new(Committer(shared)), running))
}

/// Opens the writing connection and starts the thread; the committer's state, for `start` and tests.
fn start_shared(
    path: &Path,
    busy_timeout: Duration,
    recent: Arc<RecentLeaves>,
    linger: Linger,
) -> Result<Arc<Shared>, StoreError> {
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
    // BEGIN, COMMIT, the next seq, the budget statements and an insert per row count
    conn.set_prepared_statement_cache_capacity(32);
    let backfill = Backfill::start(path, busy_timeout)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        conn: Mutex::new(conn),
        recent,
        running: Arc::default(),
        linger,
        backfill,
    });
    let thread = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("remit-audit-writer".to_owned())
        .spawn(move || run(&thread))
        .map_err(|e| StoreError::unavailable(format!("cannot start the audit writer: {e}")))?;
    Ok(shared)
}

/// What the callers and the writer thread share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the thread when it is to take over the queue, or to stop.
    wake: Condvar,
    /// The writing connection; held by whoever commits (one at a time: see `State::busy`).
    conn: Mutex<Connection>,
    /// The leaves committed, for the checkpointer.
    recent: Arc<RecentLeaves>,
    /// The pipeline's count of calls running.
    running: Arc<CallsRunning>,
    /// When the thread waits for more of them before a commit.
    linger: Linger,
    /// Copies the committed log into the database file off this thread.
    backfill: Backfill,
}

/// Who commits, and what waits.
#[derive(Debug, Default)]
struct State {
    /// Jobs queued while a commit was in progress.
    jobs: Vec<Job>,
    /// The thread waits for this many jobs (0: it does not wait); the job that makes it wakes the thread.
    want: usize,
    /// A caller or the thread is committing; new jobs queue.
    busy: bool,
    /// The thread is (to be) committing the queue.
    thread_leads: bool,
    /// Every handle has gone: the thread commits what is queued and ends.
    stopped: bool,
    /// The thread died: jobs are refused (their callers hear that the writer stopped).
    dead: bool,
}

impl State {
    /// Queues a job; wakes the thread if it waits for this many jobs, or now has a batch.
    fn push(&mut self, job: Job, wake: &Condvar) {
        self.jobs.push(job);
        if self.want != 0 && (self.jobs.len() >= self.want || self.holds_a_batch()) {
            self.want = 0;
            wake.notify_one();
        }
    }

    /// Whether the jobs queued make a full batch.
    fn holds_a_batch(&self) -> bool {
        self.jobs.iter().map(Job::weight).sum::<usize>() >= MAX_BATCH_EVENTS
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// With many calls running, waits (a bounded moment) until half of them have queued,
    /// or a batch's worth.
    fn linger<'s>(&'s self, mut state: MutexGuard<'s, State>) -> MutexGuard<'s, State> {
        let running = self.running.now();
        // a read's end is three events: a batch holds this many of them
        let want = (running / 2).min(MAX_BATCH_EVENTS / 3);
        if running < self.linger.siblings
            || state.stopped
            || state.jobs.len() >= want
            || state.holds_a_batch()
        {
            return state;
        }
        let deadline = Instant::now() + self.linger.wait;
        state.want = want;
        while state.want != 0 && !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.want = 0;
        state
    }

    /// Commits `jobs` and answers (and empties) them.
    fn commit(&self, jobs: &mut Vec<Job>) {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let result = commit(&mut conn, jobs).map(|(committed, appended)| {
            let bytes = appended.iter().map(|row| row.body.len() as u64).sum();
            // kept while the connection is held, so batches arrive in commit order
            self.recent.committed(
                committed.first_seq,
                appended.into_iter().map(|row| row.leaf_hash),
            );
            self.backfill.committed(bytes);
            committed
        });
        drop(conn);
        answer(jobs, result);
    }
}

/// The handle the store's `Writer` holds; dropping the last one stops the thread.
#[derive(Debug)]
struct Committer(Arc<Shared>);

impl Submit for Committer {
    fn submit(&self, job: Job) {
        let shared = &self.0;
        let mut state = shared.state();
        if state.dead {
            return; // the job's reply drops: its caller hears the writer stopped
        }
        if state.busy {
            state.push(job, &shared.wake);
            return;
        }
        state.busy = true;
        drop(state);
        // Hands the queue to the thread (or frees the writer) however the commit ends.
        let _leading = Leading(shared);
        shared.commit(&mut vec![job]);
    }

    fn queue(&self, job: Job) {
        let shared = &self.0;
        let mut state = shared.state();
        if state.dead {
            return;
        }
        state.push(job, &shared.wake);
        if !state.busy {
            state.busy = true;
            state.thread_leads = true;
            drop(state);
            shared.wake.notify_one();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.0.state().stopped = true;
        self.0.wake.notify_one();
    }
}

/// A caller's commit in progress: when it ends, the thread takes what queued meanwhile.
struct Leading<'a>(&'a Shared);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if state.jobs.is_empty() {
            state.busy = false;
        } else {
            state.thread_leads = true;
            drop(state);
            self.0.wake.notify_one();
        }
    }
}

/// The thread: waits to be handed a queue, commits it batch by batch until it is empty.
fn run(shared: &Shared) {
    // If a commit panics, later jobs are refused instead of waiting for ever.
    struct Dies<'a>(&'a Shared);
    impl Drop for Dies<'_> {
        fn drop(&mut self) {
            let mut state = self.0.state();
            state.dead = true;
            state.jobs.clear();
        }
    }
    let _dies = Dies(shared);
    let mut batch = Vec::new();
    let mut state = shared.state();
    loop {
        if !state.thread_leads {
            if state.stopped && !state.busy {
                return;
            }
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        state = shared.linger(state);
        let mut weight = 0;
        let take = state
            .jobs
            .iter()
            .take_while(|job| {
                let take = weight == 0 || weight + job.weight() <= MAX_BATCH_EVENTS;
                weight += job.weight();
                take
            })
            .count();
        if take == 0 {
            state.thread_leads = false;
            state.busy = false;
            continue;
        }
        batch.extend(state.jobs.drain(..take));
        drop(state);
        shared.commit(&mut batch);
        state = shared.state();
    }
}

/// Applies the batch's charges and appends its events in one transaction, or changes nothing; gives the events appended.
fn commit<'j>(
    conn: &mut Connection,
    jobs: &'j [Job],
) -> Result<(Committed, Vec<&'j EventRow>), StoreError> {
    let doing = "cannot commit audit events";
    // BEGIN and COMMIT as cached statements: `Connection::transaction` parses them per call.
    conn.prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut begin| begin.execute([]))
        .map_err(|e| error(doing, &e))?;
    let result = write(conn, jobs).and_then(|committed| {
        conn.prepare_cached("COMMIT")
            .and_then(|mut commit| commit.execute([]))
            .map_err(|e| error(doing, &e))?;
        Ok(committed)
    });
    if result.is_err() && !conn.is_autocommit() {
        // Nothing of the batch stays; if even the rollback fails, the connection is
        // closed with the transaction open, which SQLite rolls back too.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// The batch's statements, inside the open transaction: its charges, then the events they let through.
fn write<'j>(
    conn: &Connection,
    jobs: &'j [Job],
) -> Result<(Committed, Vec<&'j EventRow>), StoreError> {
    let doing = "cannot commit audit events";
    let batch = Batch::of(jobs);
    let mut charges = Vec::with_capacity(batch.charges.len());
    for (c, now_ms) in &batch.charges {
        charges.push(charge(conn, c, *now_ms)?);
    }
    let rows = batch.events(&charges);
    if rows.is_empty() {
        let committed = Committed {
            first_seq: 0,
            charges,
        };
        return Ok((committed, rows));
    }
    let next: i64 = conn
        .prepare_cached(sql::NEXT_SEQ)
        .and_then(|mut next| next.query_row([], |row| row.get(0)))
        .map_err(|e| error(doing, &e))?;
    let first_seq = u64::try_from(next).map_err(|_| {
        StoreError::new(StoreErrorKind::Corrupt, "the audit log has a negative seq")
    })?;
    // several events per statement (the append bench: 6.7 against 7.1 µs of CPU per event)
    for (i, chunk) in rows.chunks(ROWS_PER_INSERT).enumerate() {
        let first = next + (i * ROWS_PER_INSERT) as i64;
        insert_events_at(conn, first, chunk).map_err(|e| error(doing, &e))?;
    }
    Ok((Committed { first_seq, charges }, rows))
}

/// Inserts `rows` with the seqs from `first` on, in one statement.
fn insert_events_at(conn: &Connection, first: i64, rows: &[&EventRow]) -> rusqlite::Result<()> {
    let sql = insert_events(rows.len()).ok_or(rusqlite::Error::InvalidParameterCount(
        rows.len(),
        ROWS_PER_INSERT,
    ))?;
    let mut insert = conn.prepare_cached(sql)?;
    for (i, (seq, row)) in (first..).zip(rows).enumerate() {
        let at = i * 3;
        insert.raw_bind_parameter(at + 1, seq)?;
        insert.raw_bind_parameter(at + 2, &row.body)?;
        insert.raw_bind_parameter(at + 3, &row.leaf_hash[..])?;
    }
    insert.raw_execute()?;
    Ok(())
}

/// The `budget_charges` table through the writer's transaction: each statement runs on this thread.
struct SqliteLedger<'c>(&'c Connection);

impl budget::ChargeTable for SqliteLedger<'_> {
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
    tx: &Connection,
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

#[cfg(test)]
mod tests {
    use super::*;
    use remit_core::audit::event::{Event, Stage};
    use tokio::sync::oneshot;

    fn append(n: usize) -> (Job, oneshot::Receiver<Result<Vec<u64>, StoreError>>) {
        append_padded(n, 0)
    }

    /// `n` events, each with `pad` more bytes in its detail.
    fn append_padded(
        n: usize,
        pad: usize,
    ) -> (Job, oneshot::Receiver<Result<Vec<u64>, StoreError>>) {
        let rows = (0..n)
            .map(|i| {
                EventRow::new(&Event {
                    time: "2026-11-26T10:00:00.000Z".into(),
                    stage: Stage::Proposed,
                    call: Some(format!("call_{n}_{i}").into()),
                    run: None,
                    agent: Some("support-bot".into()),
                    action: Some("billing.read".into()),
                    register: None,
                    detail: serde_json::json!({ "i": i, "pad": "p".repeat(pad) }).into(),
                })
                .unwrap()
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        (Job::Append { rows, reply }, answer)
    }

    /// A migrated store file, and a committer of its own on it.
    async fn committer(dir: &tempfile::TempDir, busy: Duration) -> Committer {
        committer_lingering(dir, busy, LINGER).await
    }

    /// A committer whose thread waits for calls running as `linger` says.
    async fn committer_lingering(
        dir: &tempfile::TempDir,
        busy: Duration,
        linger: Linger,
    ) -> Committer {
        let path = dir.path().join("remit.db");
        let store = crate::sqlite::SqliteStore::open(&path).await.unwrap();
        store.close().await;
        Committer(start_shared(&path, busy, Arc::default(), linger).unwrap())
    }

    /// Submits `n` events to an idle writer: answered before `submit` returned, with no
    /// hand-off to another thread and back.
    fn commit_here(committer: &Committer, n: usize) -> Result<Vec<u64>, StoreError> {
        let (job, mut answer) = append(n);
        committer.submit(job);
        answer
            .try_recv()
            .expect("an idle writer answers before submit returns")
    }

    /// Submits jobs of `sizes` events while a commit is in progress (they queue), then ends
    /// that commit as `Leading` does, handing the queue to the thread; their answers.
    fn submitted_during_a_commit(
        committer: &Committer,
        sizes: &[usize],
    ) -> Vec<oneshot::Receiver<Result<Vec<u64>, StoreError>>> {
        committer.0.state().busy = true;
        let answers: Vec<_> = sizes
            .iter()
            .map(|&n| {
                let (job, answer) = append(n);
                committer.submit(job);
                answer
            })
            .collect();
        assert_eq!(committer.0.state().jobs.len(), sizes.len(), "they queued");
        drop(Leading(&committer.0));
        answers
    }

    /// Waits (at most a second) for the thread to finish the queue it was handed.
    async fn until_idle(committer: &Committer) {
        for _ in 0..100 {
            if !committer.0.state().busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the writer thread did not finish its queue within a second");
    }

    #[tokio::test]
    async fn an_idle_writer_commits_on_the_callers_thread_before_submit_returns() {
        let dir = tempfile::tempdir().unwrap();
        let committer = committer(&dir, Duration::from_secs(5)).await;
        for expected in [vec![0, 1, 2], vec![3]] {
            assert_eq!(commit_here(&committer, expected.len()).unwrap(), expected);
            assert!(!committer.0.state().busy);
        }
    }

    #[tokio::test]
    async fn the_write_ahead_log_stays_bounded_while_it_is_copied_off_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let committer = committer(&dir, Duration::from_secs(5)).await;
        let wal = dir.path().join("remit.db-wal");
        let mut largest = 0;
        // 200 commits of 64 events of about 2 KB: 26 MB in all
        for i in 0..200 {
            let (job, mut answer) = append_padded(64, 2_000);
            committer.submit(job);
            let seqs = answer.try_recv().unwrap().unwrap();
            assert_eq!(seqs.first(), Some(&(i * 64)));
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        for _ in 0..500 {
            if committer.0.backfill.passes() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(committer.0.backfill.passes() > 0, "the copier never ran");
        // the log restarts from its beginning once all of it was copied (between these
        // commits by the copier, else by the writer's own copy at 1,000 pages of 16 KiB)
        assert!(
            largest < 20 << 20,
            "the log grew to {largest} bytes: it was never restarted"
        );
    }

    #[tokio::test]
    async fn jobs_queued_during_a_commit_are_committed_by_the_thread_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let committer = committer(&dir, Duration::from_secs(5)).await;
        let answers = submitted_during_a_commit(&committer, &[2, 1, 3]);
        let mut seqs = Vec::new();
        for answer in answers {
            seqs.push(answer.await.unwrap().unwrap());
        }
        assert_eq!(seqs, vec![vec![0, 1], vec![2], vec![3, 4, 5]]);
        // once the queue is empty the writer is idle again and a caller commits at once
        until_idle(&committer).await;
        assert_eq!(commit_here(&committer, 1).unwrap(), vec![6]);
    }

    #[tokio::test]
    async fn a_failed_commit_refuses_its_caller_keeps_nothing_and_the_next_commit_works() {
        let dir = tempfile::tempdir().unwrap();
        let committer = committer(&dir, Duration::from_millis(50)).await;
        // another process holds the write lock past the busy timeout
        let other = Connection::open(dir.path().join("remit.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let refused = commit_here(&committer, 2).unwrap_err();
        assert_eq!(refused.kind, StoreErrorKind::Unavailable, "{refused}");
        assert!(refused.to_string().contains("locked"), "{refused}");
        assert!(!committer.0.state().busy);
        other.execute_batch("COMMIT").unwrap();
        // nothing of the refused batch was kept: the next events start at seq 0
        assert_eq!(commit_here(&committer, 1).unwrap(), vec![0]);
    }

    #[tokio::test]
    async fn a_batch_that_fails_midway_keeps_none_of_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let committer = committer(&dir, Duration::from_secs(5)).await;
        Connection::open(dir.path().join("remit.db"))
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER poison BEFORE INSERT ON audit_events \
                 WHEN instr(NEW.body, '\"call\":\"call_3_2\"') > 0 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
            )
            .unwrap();
        for answer in submitted_during_a_commit(&committer, &[2, 3]) {
            let refused = answer.await.unwrap().unwrap_err();
            assert!(refused.to_string().contains("poisoned"), "{refused}");
        }
        until_idle(&committer).await;
        assert_eq!(commit_here(&committer, 1).unwrap(), vec![0]);
    }

    #[tokio::test]
    async fn a_queued_job_is_committed_by_the_thread_even_when_the_writer_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let committer = committer(&dir, Duration::from_secs(5)).await;
        let (job, answer) = append(2);
        committer.queue(job);
        assert_eq!(answer.await.unwrap().unwrap(), vec![0, 1]);
        until_idle(&committer).await;
        assert_eq!(commit_here(&committer, 1).unwrap(), vec![2]);
    }

    /// A committer whose thread waits up to `wait` for half the calls running once at least 4 run.
    async fn lingering(dir: &tempfile::TempDir, wait: Duration) -> Committer {
        let linger = Linger { siblings: 4, wait };
        committer_lingering(dir, Duration::from_secs(5), linger).await
    }

    /// `n` calls counted as running until the guards drop.
    fn calls(running: &CallsRunning, n: usize) -> Vec<remit_core::ports::RunningCall<'_>> {
        (0..n).map(|_| running.enter()).collect()
    }

    /// The seqs a job was answered with, within five seconds (`why` says what should have ended the wait).
    async fn answered(
        answer: oneshot::Receiver<Result<Vec<u64>, StoreError>>,
        why: &str,
    ) -> Vec<u64> {
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect(why)
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn with_many_calls_running_the_thread_waits_until_half_of_them_queued() {
        let dir = tempfile::tempdir().unwrap();
        let committer = lingering(&dir, Duration::from_secs(30)).await;
        let running = Arc::clone(&committer.0.running);
        let _calls = calls(&running, 10);
        let mut first = submitted_during_a_commit(&committer, &[1]).remove(0);
        // five of the ten running are wanted; one has queued, so the thread waits
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            first.try_recv().is_err(),
            "the thread committed one job of ten running"
        );
        let rest: Vec<_> = (0..4)
            .map(|_| {
                let (job, answer) = append(1);
                committer.submit(job);
                answer
            })
            .collect();
        // the fifth wakes it well before its wait ends, and one commit takes all five
        let mut all = vec![answered(first, "the fifth job woke the thread").await];
        for answer in rest {
            all.push(answered(answer, "the fifth job woke the thread").await);
        }
        assert_eq!(all, vec![vec![0], vec![1], vec![2], vec![3], vec![4]]);
    }

    /// The seqs of one job of `events` handed to a thread that may wait `wait` with `running` calls running.
    async fn one_job_while_running(
        running: usize,
        wait: Duration,
        events: usize,
        why: &str,
    ) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let committer = lingering(&dir, wait).await;
        let count = Arc::clone(&committer.0.running);
        let _calls = calls(&count, running);
        let answer = submitted_during_a_commit(&committer, &[events]).remove(0);
        let seqs = answered(answer, why).await;
        until_idle(&committer).await;
        seqs
    }

    #[tokio::test]
    async fn a_lingering_thread_commits_what_it_has_when_its_wait_ends() {
        // calls running that never queue (a slow upstream) hold a commit back only for the wait
        let seqs = one_job_while_running(
            10,
            Duration::from_millis(20),
            2,
            "committed once the wait ended",
        );
        assert_eq!(seqs.await, vec![0, 1]);
    }

    #[tokio::test]
    async fn with_few_calls_running_the_thread_commits_at_once() {
        let seqs =
            one_job_while_running(3, Duration::from_secs(30), 1, "no wait below the siblings");
        assert_eq!(seqs.await, vec![0]);
    }

    #[tokio::test]
    async fn a_writer_dropped_while_its_thread_waits_still_commits_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let committer = lingering(&dir, Duration::from_secs(30)).await;
        let running = Arc::clone(&committer.0.running);
        let _calls = calls(&running, 10);
        let answer = submitted_during_a_commit(&committer, &[1]).remove(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(committer);
        let seqs = answered(answer, "the last handle's drop ends the wait").await;
        assert_eq!(seqs, vec![0]);
    }

    #[tokio::test]
    async fn with_more_calls_running_than_a_batch_holds_the_thread_waits_for_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let committer = lingering(&dir, Duration::from_secs(30)).await;
        let running = Arc::clone(&committer.0.running);
        let _calls = calls(&running, 1_000);
        // a batch's worth of reads (85 of three events) queues: the thread takes them at once
        let answers = submitted_during_a_commit(&committer, &[3; MAX_BATCH_EVENTS / 3]);
        for (i, answer) in answers.into_iter().enumerate() {
            let seqs = answered(answer, "a full batch was not held back").await;
            assert_eq!(seqs[0], 3 * i as u64);
        }
        // one job of a batch's weight wakes a thread that waits for 85 jobs
        let answer = submitted_during_a_commit(&committer, &[1]).remove(0);
        let (job, heavy) = append(MAX_BATCH_EVENTS);
        committer.submit(job);
        assert_eq!(
            answered(answer, "a batch's weight woke the thread").await,
            vec![255]
        );
        answered(heavy, "a batch's weight was not held back").await;
    }
}
