//! The four small traits core awaits and the other crates implement: store, upstreams, notifier, clock.

use crate::audit::event::{Event, StoredCheckpoint, StoredEvent};
use crate::ids::{ActionName, AgentId, CallId, UpstreamName};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("store {kind}: {message}")]
pub struct StoreError {
    /// What sort of failure it was.
    pub kind: StoreErrorKind,
    /// A message for the operator; never contains secrets.
    pub message: String,
}

impl StoreError {
    /// A store error of the given kind.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The store is down or did not answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Unavailable, message)
    }
}

/// The sort of store failure, after sqlx's `ErrorKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store is down, locked out or timed out.
    Unavailable,
    /// A uniqueness or compare-and-set check failed.
    Conflict,
    /// What the store holds is not what remit wrote (bad row, bad migration).
    Corrupt,
    /// Anything else.
    Other,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "unavailable",
            Self::Conflict => "conflict",
            Self::Corrupt => "corrupt",
            Self::Other => "error",
        })
    }
}

/// One budget a call must fit in: a sliding window per agent and action.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetCharge {
    /// Identifies the budget: agent, action and what the budget is ([`crate::register::Budget::identity`]),
    /// e.g. `support-bot/billing.issue_refund/sum(args.amount)/86400000ms`.
    pub key: String,
    /// Window length in milliseconds.
    pub window_ms: i64,
    /// What this call adds (1 for a count, the argument's value for a sum).
    pub amount: f64,
    /// The most the window may hold.
    pub limit: f64,
}

impl BudgetCharge {
    /// Whether this charge fits on top of `used` under its limit, forgiving float rounding (0.1 + 0.2).
    pub fn fits_on(&self, used: f64) -> bool {
        used + self.amount <= self.limit + self.rounding_slack()
    }

    /// How far over its limit a window may add up to by float rounding alone: a few ULPs of
    /// the limit (`0.1 * 3` against `0.3` fits), never a whole unit however large the limit
    /// (it was `1e-9` of it: 1,000,000,001 fitted a `max` of 1e9).
    pub fn rounding_slack(&self) -> f64 {
        self.limit.abs() * 4.0 * f64::EPSILON
    }
}

/// What the store answered to a budget charge.
#[derive(Clone, Debug, PartialEq)]
pub enum ChargeOutcome {
    /// Every budget had room; all were charged together.
    Charged,
    /// Budget `index` (into the slice given) had no room; nothing was charged.
    Exceeded {
        /// Which budget of the slice.
        index: usize,
        /// What the window already holds.
        used: f64,
        /// When enough of the window expires for this call to fit, epoch milliseconds.
        resets_at_ms: i64,
    },
}

/// What the kill switch can freeze.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum FreezeTarget {
    /// Every call of this agent.
    Agent(AgentId),
    /// Every call of this action, by any agent.
    Action(ActionName),
}

impl fmt::Display for FreezeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent(a) => write!(f, "agent `{a}`"),
            Self::Action(a) => write!(f, "action `{a}`"),
        }
    }
}

/// Durable state: the audit log, checkpoints, budgets and the kill switch.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Appends events durably, in order, group-committed with concurrent appends; returns their sequence numbers.
    ///
    /// Returns only once the events are committed (fsync'd on SQLite). Each event's
    /// `leaf_hash` is `audit::tree::leaf_hash(&event.canonical())`.
    async fn append(&self, events: &[Event]) -> Result<Vec<u64>, StoreError>;
    /// Appends, as [`Store::append`], the events a call must have on disk before it runs.
    ///
    /// While it waits, the caller's task stays free to notice that its client has gone (a
    /// store may commit a plain `append` on the caller's own thread instead).
    async fn append_ahead(&self, events: &[Event]) -> Result<Vec<u64>, StoreError> {
        self.append(events).await
    }
    /// Charges a call's budgets and, only if they all fit, appends the events it must have
    /// on disk before it runs (as [`Store::append_ahead`]), in one transaction: a charge is
    /// never kept for a call whose record could not be written.
    async fn charge_and_append_ahead(
        &self,
        charges: &[BudgetCharge],
        now_ms: i64,
        events: &[Event],
    ) -> Result<ChargeOutcome, StoreError>;
    /// Events with `seq` in `from..from+limit`, in order.
    async fn events(&self, from: u64, limit: u64) -> Result<Vec<StoredEvent>, StoreError>;
    /// The `(seq, leaf_hash)` of events with `seq` in `from..from+limit`, in order, without their bodies.
    async fn leaf_hashes(&self, from: u64, limit: u64) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let events = self.events(from, limit).await?;
        Ok(events.into_iter().map(|e| (e.seq, e.leaf_hash)).collect())
    }
    /// How many events the log holds.
    async fn event_count(&self) -> Result<u64, StoreError>;
    /// The lowest event seq at or after `from`, if there is one (to step over a gap).
    async fn next_seq_from(&self, from: u64) -> Result<Option<u64>, StoreError>;
    /// How many rows the event table holds below seq 0, outside the log (none unless edited).
    async fn events_below_zero(&self) -> Result<u64, StoreError>;
    /// Saves a signed checkpoint; the same one again is a no-op, a different root at a size already signed is a `Conflict` (a forked log).
    async fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;
    /// Every checkpoint, by tree size.
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// The checkpoint with the largest tree size.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// Checks every budget and, when all have room, charges them in one atomic step.
    async fn charge(
        &self,
        charges: &[BudgetCharge],
        now_ms: i64,
    ) -> Result<ChargeOutcome, StoreError>;
    /// Freezes or unfreezes an agent or action.
    async fn set_frozen(&self, target: &FreezeTarget, frozen: bool) -> Result<(), StoreError>;
    /// Everything frozen now.
    async fn frozen(&self) -> Result<Vec<FreezeTarget>, StoreError>;
    /// A cheap round trip that proves the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The count the pipeline keeps of its calls running, for a store that group-commits by it.
    fn calls_running(&self) -> Option<&CallsRunning> {
        None
    }
}

/// How many calls the pipeline is running now, entry to answer.
///
/// A store that sees many calls running can wait a moment before a commit so that one
/// commit takes many of them, as PostgreSQL's `commit_delay` does past `commit_siblings`.
#[derive(Debug, Default)]
pub struct CallsRunning(std::sync::atomic::AtomicUsize);

impl CallsRunning {
    /// Counts one call until the guard drops.
    pub fn enter(&self) -> RunningCall<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RunningCall(self)
    }

    /// How many calls are running.
    pub fn now(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One call counted in [`CallsRunning`] while it lives.
#[derive(Debug)]
pub struct RunningCall<'a>(&'a CallsRunning);

impl Drop for RunningCall<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A tool as an upstream describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The upstream that serves it.
    pub upstream: UpstreamName,
    /// Its name on the upstream (without the namespace).
    pub name: String,
    /// The upstream's tool definition as JSON (`description`, `inputSchema`, `annotations`, ...).
    pub definition: Map<String, Value>,
}

impl ToolSpec {
    /// The tool's input schema, if it declared one.
    pub fn input_schema(&self) -> Option<&Value> {
        self.definition.get("inputSchema")
    }
}

/// Where an upstream's progress reports for one call go: the agent that asked for them.
pub trait Progress: Send + Sync + fmt::Debug {
    /// Passes one report on (`progress` so far, of `total` if known).
    fn report(&self, progress: f64, total: Option<f64>, message: Option<String>);
}

/// A call that resumes after its upstream asked for input (2026-07-28 `InputRequiredResult`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resume {
    /// The agent's answers, by the keys of the upstream's input requests.
    pub input_responses: Option<Map<String, Value>>,
    /// The state: in a [`crate::pipeline::Call`], the sealed token as the agent sent it; in a
    /// [`Cleared`], the upstream's own state, opened from that token.
    pub request_state: Option<String>,
}

/// A call that passed every check; only the pipeline can make one, and it is spent on use.
#[derive(Debug)]
pub struct Cleared {
    pub(crate) call: CallId,
    pub(crate) upstream: UpstreamName,
    pub(crate) tool: String,
    pub(crate) args: Map<String, Value>,
    pub(crate) progress: Option<std::sync::Arc<dyn Progress>>,
    pub(crate) resume: Option<Resume>,
    pub(crate) capabilities: Option<Map<String, Value>>,
}

impl Cleared {
    /// The call this clearance belongs to.
    pub fn call(&self) -> &CallId {
        &self.call
    }

    /// The upstream to run it on.
    pub fn upstream(&self) -> &UpstreamName {
        &self.upstream
    }

    /// The tool name on the upstream.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// The arguments, exactly as cleared.
    pub fn args(&self) -> &Map<String, Value> {
        &self.args
    }

    /// Where the upstream's progress reports go, if the agent asked for them.
    pub fn progress(&self) -> Option<&std::sync::Arc<dyn Progress>> {
        self.progress.as_ref()
    }

    /// For a call that resumes: the agent's answers as they came, and the upstream's own state.
    pub fn resume(&self) -> Option<&Resume> {
        self.resume.as_ref()
    }

    /// The client capabilities the agent declared, if it declared any.
    pub fn capabilities(&self) -> Option<&Map<String, Value>> {
        self.capabilities.as_ref()
    }

    /// Mints a clearance outside the pipeline; for benchmarks and tests of an upstream alone.
    pub fn dangerous_unchecked(
        call: CallId,
        upstream: UpstreamName,
        tool: String,
        args: Map<String, Value>,
    ) -> Self {
        Self {
            call,
            upstream,
            tool,
            args,
            progress: None,
            resume: None,
            capabilities: None,
        }
    }
}

/// Why an upstream could not give a result.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No upstream by that name is configured.
    #[error("no upstream named `{0}`")]
    Unknown(String),
    /// The upstream is down or restarting; the call was not sent.
    #[error("upstream `{upstream}` is unavailable: {message}")]
    Unavailable {
        /// Which upstream.
        upstream: String,
        /// What went wrong.
        message: String,
    },
    /// The call was sent but no answer came in time; it may or may not have run.
    #[error(
        "upstream `{upstream}` did not answer within {seconds}s; the call may or may not have run"
    )]
    Timeout {
        /// Which upstream.
        upstream: String,
        /// How long remit waited.
        seconds: u64,
    },
    /// The connection dropped after the call was sent; it may or may not have run.
    #[error("the connection to upstream `{upstream}` was lost; the call may or may not have run")]
    Lost {
        /// Which upstream.
        upstream: String,
    },
    /// The upstream answered with a JSON-RPC error; the tool did not run if
    /// [`refused_before_running`] says so, and may have otherwise.
    #[error("upstream `{upstream}` rejected the call ({code}): {message}")]
    Rejected {
        /// Which upstream.
        upstream: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The upstream's message.
        message: String,
        /// The error's `data`, passed on to the agent as it came.
        data: Option<Value>,
    },
    /// The upstream answered with something that is not a valid MCP answer.
    #[error("upstream `{upstream}` answered with an error: {message}")]
    Protocol {
        /// Which upstream.
        upstream: String,
        /// The upstream's message.
        message: String,
    },
}

/// Whether an upstream's JSON-RPC error `code` says the request was refused as such
/// (parse error, invalid request, unknown method, invalid params), so the tool did not run;
/// after any other error it may have.
pub fn refused_before_running(code: i64) -> bool {
    matches!(code, -32700 | -32600 | -32601 | -32602)
}

/// The health of one upstream, for `remit status` and `/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamHealth {
    /// Which upstream.
    pub upstream: UpstreamName,
    /// Whether it is connected and answered its last request.
    pub up: bool,
    /// The protocol revision it speaks, when connected.
    pub protocol: Option<String>,
    /// How many tools it lists.
    pub tools: usize,
    /// How many times it was (re)started or reconnected.
    pub restarts: u64,
    /// The last error seen, if any.
    pub last_error: Option<String>,
}

/// The systems agents act on, reached as MCP servers.
#[async_trait]
pub trait Upstreams: Send + Sync + fmt::Debug {
    /// Every tool every upstream lists now.
    async fn tools(&self) -> Vec<ToolSpec>;
    /// Runs a cleared call exactly once; the `CallToolResult` comes back as JSON.
    async fn execute(&self, cleared: Cleared) -> Result<Value, UpstreamError>;
    /// The health of each upstream.
    fn health(&self) -> Vec<UpstreamHealth>;
}

/// Wall-clock time, injected so tests can move it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(amount: f64, limit: f64) -> BudgetCharge {
        BudgetCharge {
            key: "bot/billing.issue_refund/sum(args.amount)/86400000ms".to_owned(),
            window_ms: 86_400_000,
            amount,
            limit,
        }
    }

    #[test]
    fn an_exact_fit_fits_despite_float_rounding() {
        // 0.1 three times is 0.30000000000000004
        assert!(sum(0.1, 0.3).fits_on(0.1 + 0.1));
        assert!(sum(0.7, 1.0).fits_on(0.1 + 0.2));
        assert!(sum(0.01, 0.03).fits_on(0.01 + 0.01));
        assert!(sum(1e9, 1e9).fits_on(0.0));
        assert!(sum(0.0, 2f64.powi(53)).fits_on(2f64.powi(53)));
    }

    #[test]
    fn a_unit_over_a_large_max_does_not_fit() {
        assert!(!sum(1_000_000_001.0, 1e9).fits_on(0.0));
        assert!(!sum(1.0, 1e9).fits_on(1e9));
        assert!(!sum(0.001, 1e9).fits_on(1e9));
        assert!(!sum(0.31, 0.3).fits_on(0.0));
        assert!(!sum(0.1, 0.3).fits_on(0.2000001));
    }

    #[test]
    fn a_call_is_counted_until_its_guard_drops_however_it_ends() {
        let running = CallsRunning::default();
        let first = running.enter();
        let calls = vec![running.enter(), running.enter()];
        assert_eq!(running.now(), 3);
        // a call whose future is dropped midway (its client hung up) drops its guard too
        drop(calls);
        assert_eq!(running.now(), 1);
        drop(first);
        assert_eq!(running.now(), 0);
    }
}
