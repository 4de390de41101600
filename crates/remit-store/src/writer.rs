//! Group commit: one writer task drains every waiting append and charge into one transaction.
//!
//! Callers canonicalise and hash their events on their own task, queue a job and wait
//! for its answer. The writer takes the first job, then everything else already
//! queued (up to [`MAX_BATCH_EVENTS`]), hands the lot to the backend's [`Ledger`] as one
//! transaction, and answers each caller once the commit returned. If the commit fails,
//! every caller of the batch gets the error: nothing of the batch is visible.
//!
//! That is the writer task, PostgreSQL's. SQLite's writer ([`Submit`], in
//! `sqlite_writer`) lets a caller that finds it idle commit on its own thread, and keeps
//! a thread for what queues meanwhile; [`Commit`] says which appends may do that.

use crate::budget;
use crate::error::repeat;
use crate::record::EventRow;
use async_trait::async_trait;
use remit_core::audit::event::Event;
use remit_core::ports::{BudgetCharge, CallsRunning, ChargeOutcome, StoreError, StoreErrorKind};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most events (and budget charges) in one transaction; one larger append still goes whole.
pub(crate) const MAX_BATCH_EVENTS: usize = 256;

/// How many times the writer yields to let answered callers queue again before it commits.
const MAX_LINGER_TURNS: usize = 64;

/// How many jobs may wait for the writer before callers wait to queue.
const QUEUE_DEPTH: usize = 4_096;

/// How long one batch transaction may take before its callers are refused.
pub(crate) const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a batch asks of the backend: calls to charge and events to append, in queue order.
///
/// A backend applies the charges first, then appends [`Batch::events`] given their outcomes.
#[derive(Debug, Default)]
pub(crate) struct Batch<'a> {
    /// Budget charges, each all-or-nothing, checked in order against what precedes them.
    pub(crate) charges: Vec<(&'a [BudgetCharge], i64)>,
    /// Each job's events, in order, with the charge (an index in `charges`) that must fit first, if any.
    appends: Vec<(&'a [EventRow], Option<usize>)>,
}

impl<'a> Batch<'a> {
    /// The batch of these jobs.
    pub(crate) fn of(jobs: &'a [Job]) -> Self {
        let mut batch = Self::default();
        for job in jobs {
            match job {
                Job::Append { rows, .. } => batch.appends.push((rows, None)),
                Job::Charge {
                    charges, now_ms, ..
                } => batch.charges.push((charges, *now_ms)),
                Job::ChargeThenAppend {
                    charges,
                    now_ms,
                    rows,
                    ..
                } => {
                    batch.appends.push((rows, Some(batch.charges.len())));
                    batch.charges.push((charges, *now_ms));
                }
            }
        }
        batch
    }

    /// Whether the batch may append any event, whatever its charges answer.
    pub(crate) fn may_append(&self) -> bool {
        self.appends.iter().any(|(rows, _)| !rows.is_empty())
    }

    /// The events to append, in the order they get their seqs, given the charges' outcomes:
    /// a job's events whose charges did not all fit are left out.
    pub(crate) fn events(&self, outcomes: &[ChargeOutcome]) -> Vec<&'a EventRow> {
        self.appends
            .iter()
            .filter(|(_, gate)| {
                gate.is_none_or(|i| matches!(outcomes.get(i), Some(ChargeOutcome::Charged)))
            })
            .flat_map(|(rows, _)| rows.iter())
            .collect()
    }
}

/// What the backend committed for a batch.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The seq of the batch's first event (meaningless when it had none).
    pub(crate) first_seq: u64,
    /// One outcome per charge of the batch, in order.
    pub(crate) charges: Vec<ChargeOutcome>,
}

/// A backend that can commit a batch in one transaction.
#[async_trait]
pub(crate) trait Ledger: Send + Sync + 'static {
    /// Appends the events and applies the charges in one transaction, or changes nothing.
    async fn commit(&self, batch: &Batch<'_>) -> Result<Committed, StoreError>;
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One caller's request to the writer.
#[derive(Debug)]
pub(crate) enum Job {
    Append {
        rows: Vec<EventRow>,
        reply: Reply<Vec<u64>>,
    },
    Charge {
        charges: Vec<BudgetCharge>,
        now_ms: i64,
        reply: Reply<ChargeOutcome>,
    },
    /// A call's budgets and, only if they all fit, the events it must have before it runs.
    ChargeThenAppend {
        charges: Vec<BudgetCharge>,
        now_ms: i64,
        rows: Vec<EventRow>,
        reply: Reply<ChargeOutcome>,
    },
}

impl Job {
    /// How much of a batch it takes: its events and its charges.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Append { rows, .. } => rows.len(),
            Self::Charge { charges, .. } => charges.len().max(1),
            Self::ChargeThenAppend { charges, rows, .. } => charges.len() + rows.len(),
        }
    }
}

/// The handle callers queue jobs on; clones share one writer (a task or a thread).
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    route: Route,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The pipeline's count of calls running, when the writer waits for them.
    running: Option<std::sync::Arc<CallsRunning>>,
}

/// Where a job goes: a writer task's queue, or a committer a caller may run itself.
#[derive(Clone, Debug)]
enum Route {
    Task(mpsc::Sender<Job>),
    Direct(std::sync::Arc<dyn Submit>),
}

/// A writer that takes jobs without waiting: it commits them now or queues them for later.
pub(crate) trait Submit: Send + Sync + std::fmt::Debug + 'static {
    /// Commits `job` on the caller's thread, or queues it for the commit in progress to take.
    fn submit(&self, job: Job);
    /// Queues `job` for the writer's own thread; the caller awaits its reply.
    fn queue(&self, job: Job);
}

/// Where an append may be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// On the caller's thread when the writer is idle (its task cannot notice a hang-up meanwhile).
    MayRunHere,
    /// By the writer, while the caller's task awaits the answer.
    Awaited,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime; it ends when the last handle drops.
    pub(crate) fn start(ledger: impl Ledger) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(queue, ledger));
        Self {
            route: Route::Task(jobs),
            closed: std::sync::Arc::default(),
            running: None,
        }
    }

    /// A writer whose jobs go to `submit`, which answers each job's reply itself and may
    /// wait for some of the calls `running` counts.
    pub(crate) fn direct(
        submit: std::sync::Arc<dyn Submit>,
        running: std::sync::Arc<CallsRunning>,
    ) -> Self {
        Self {
            route: Route::Direct(submit),
            closed: std::sync::Arc::default(),
            running: Some(running),
        }
    }

    /// The count of calls running that the pipeline keeps for this writer, if it waits for them.
    ///
    /// The writer task (PostgreSQL's) does not: it batches what has queued after a few
    /// scheduler turns, whatever is running.
    pub(crate) fn calls_running(&self) -> Option<&CallsRunning> {
        self.running.as_deref()
    }

    /// Refuses every later append and charge, in every clone.
    pub(crate) fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Appends events durably; returns their seqs once committed.
    pub(crate) async fn append(
        &self,
        events: &[Event],
        commit: Commit,
    ) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rows = rows_of(events)?;
        let (reply, answer) = oneshot::channel();
        self.send(Job::Append { rows, reply }, commit).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Charges every budget or none; returns once committed.
    pub(crate) async fn charge(
        &self,
        charges: &[BudgetCharge],
        now_ms: i64,
    ) -> Result<ChargeOutcome, StoreError> {
        if charges.is_empty() {
            return Ok(ChargeOutcome::Charged);
        }
        budget::check_charges(charges)?;
        let (reply, answer) = oneshot::channel();
        self.send(
            Job::Charge {
                charges: charges.to_vec(),
                now_ms,
                reply,
            },
            Commit::Awaited,
        )
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Charges every budget and, only if all fit, appends `events`, in one transaction.
    pub(crate) async fn charge_then_append(
        &self,
        charges: &[BudgetCharge],
        now_ms: i64,
        events: &[Event],
    ) -> Result<ChargeOutcome, StoreError> {
        if charges.is_empty() {
            return self
                .append(events, Commit::Awaited)
                .await
                .map(|_| ChargeOutcome::Charged);
        }
        budget::check_charges(charges)?;
        let rows = rows_of(events)?;
        let (reply, answer) = oneshot::channel();
        self.send(
            Job::ChargeThenAppend {
                charges: charges.to_vec(),
                now_ms,
                rows,
                reply,
            },
            Commit::Awaited,
        )
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send(&self, job: Job, commit: Commit) -> Result<(), StoreError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::unavailable("the store is closed"));
        }
        match &self.route {
            Route::Task(jobs) => jobs.send(job).await.map_err(|_| stopped()),
            Route::Direct(submit) => {
                match commit {
                    Commit::MayRunHere => submit.submit(job),
                    Commit::Awaited => submit.queue(job),
                }
                Ok(())
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::unavailable("the audit writer has stopped")
}

async fn run(mut queue: mpsc::Receiver<Job>, ledger: impl Ledger) {
    let mut jobs = Vec::new();
    // How many callers the last batch answered: under load they come back together,
    // so the next batch waits (a few scheduler turns, never a timer) to take them all.
    let mut expected = 1;
    while let Some(first) = queue.recv().await {
        let mut weight = first.weight();
        jobs.push(first);
        let mut turns = 0;
        while weight < MAX_BATCH_EVENTS {
            match queue.try_recv() {
                Ok(job) => {
                    weight += job.weight();
                    jobs.push(job);
                }
                Err(_) if jobs.len() < expected && turns < MAX_LINGER_TURNS => {
                    turns += 1;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        expected = jobs.len();
        commit(&ledger, &mut jobs).await;
    }
}

/// Commits one batch and answers (and empties) its jobs.
async fn commit(ledger: &impl Ledger, jobs: &mut Vec<Job>) {
    let batch = Batch::of(jobs);
    let result = match tokio::time::timeout(COMMIT_TIMEOUT, ledger.commit(&batch)).await {
        Ok(Ok(committed)) if committed.charges.len() == batch.charges.len() => Ok(committed),
        Ok(Ok(_)) => Err(StoreError::new(
            StoreErrorKind::Other,
            "the store answered the wrong number of budget charges",
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::unavailable(format!(
            "the store did not commit within {}s",
            COMMIT_TIMEOUT.as_secs()
        ))),
    };
    drop(batch);
    answer(jobs, result);
}

/// Answers (and empties) the jobs of a batch with what its commit did.
pub(crate) fn answer(jobs: &mut Vec<Job>, result: Result<Committed, StoreError>) {
    match result {
        Ok(committed) => {
            let mut next = committed.first_seq;
            let mut outcomes = committed.charges.into_iter();
            for job in jobs.drain(..) {
                match job {
                    Job::Append { rows, reply } => {
                        let seqs: Vec<u64> = (next..).take(rows.len()).collect();
                        next += seqs.len() as u64;
                        // The caller may have gone; its events are committed all the same.
                        let _ = reply.send(Ok(seqs));
                    }
                    Job::Charge { reply, .. } => {
                        let _ = reply.send(next_outcome(&mut outcomes));
                    }
                    Job::ChargeThenAppend { rows, reply, .. } => {
                        let outcome = next_outcome(&mut outcomes);
                        if matches!(outcome, Ok(ChargeOutcome::Charged)) {
                            next += rows.len() as u64;
                        }
                        let _ = reply.send(outcome);
                    }
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, jobs = jobs.len(), "audit batch failed; refusing its callers");
            for job in jobs.drain(..) {
                match job {
                    Job::Append { reply, .. } => {
                        let _ = reply.send(Err(repeat(&error)));
                    }
                    Job::Charge { reply, .. } | Job::ChargeThenAppend { reply, .. } => {
                        let _ = reply.send(Err(repeat(&error)));
                    }
                }
            }
        }
    }
}

/// Events turned into their rows (canonical body and leaf hash), on the caller's task.
fn rows_of(events: &[Event]) -> Result<Vec<EventRow>, StoreError> {
    events.iter().map(EventRow::new).collect()
}

/// The outcome of a batch's next charge.
fn next_outcome(
    outcomes: &mut impl Iterator<Item = ChargeOutcome>,
) -> Result<ChargeOutcome, StoreError> {
    outcomes
        .next()
        .ok_or_else(|| StoreError::new(StoreErrorKind::Other, "the store lost a budget charge"))
}
