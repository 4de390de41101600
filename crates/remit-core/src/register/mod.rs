//! The register: every action each agent may take, on which upstream, on what terms.
//!
//! [`raw`] is the file as written (with spans); [`compile`](mod@compile) resolves names and
//! compiles CEL into a [`Register`] that the rest of remit trusts; [`findings`]
//! adds the risk warnings `remit check` prints.

mod cel_syntax;
pub mod compile;
pub mod findings;
pub mod raw;

use crate::condition::Condition;
use crate::ids::{ActionName, AgentId, RegisterVersion, UpstreamName};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use compile::{EnvLookup, Strictness, compile};

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The register cannot be used.
    Error,
    /// A risk the person accountable should look at.
    Warning,
}

/// Where something is written in the register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl Default for Position {
    /// The start of the file.
    fn default() -> Self {
        Self { line: 1, column: 1 }
    }
}

/// One problem in a register, located in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong, one line.
    pub message: String,
    /// What to write instead, if there is a clear fix.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic about what is written at `at`.
    pub fn at(severity: Severity, at: Position, message: String, help: Option<String>) -> Self {
        Self {
            severity,
            line: at.line,
            column: at.column,
            message,
            help,
        }
    }

    /// Renders `file:line:column: severity: message` plus an indented help line.
    pub fn render(&self, file: &str) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut s = format!(
            "{file}:{}:{}: {sev}: {}",
            self.line, self.column, self.message
        );
        if let Some(help) = &self.help {
            s.push_str("\n  help: ");
            s.push_str(help);
        }
        s
    }
}

/// A secret value (token, credential, store URL) whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String, Origin);

/// Where a [`Secret`]'s value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The environment, or anywhere else outside the register's text.
    Hidden,
    /// Written in the register itself (`env = { MODE = "fast" }`): whoever reads the
    /// register reads it, so it is not scrubbed from what remit says.
    Written,
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into(), Origin::Hidden)
    }

    /// Wraps a value written in the register's own text.
    pub fn written(value: impl Into<String>) -> Self {
        Self(value.into(), Origin::Written)
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is written in the register (and so no secret from its readers).
    pub fn is_written_in_register(&self) -> bool {
        self.1 == Origin::Written
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The compiled register.
#[derive(Debug)]
pub struct Register {
    /// A digest of the file: every decision records it.
    pub version: RegisterVersion,
    /// How the gateway listens and stores.
    pub gateway: Gateway,
    /// The agents, by name.
    pub agents: BTreeMap<AgentId, Agent>,
    /// Approver groups, by name.
    pub approvers: BTreeMap<String, Vec<String>>,
    /// The upstreams, by name.
    pub upstreams: BTreeMap<UpstreamName, Upstream>,
    /// The actions, by `UPSTREAM.TOOL`.
    pub actions: BTreeMap<ActionName, Action>,
    pub(crate) exposed: HashMap<String, ActionName>,
}

/// How many 2025-11-25 sessions one agent may hold open at `/mcp` unless `[gateway]` says otherwise.
pub const DEFAULT_MAX_SESSIONS_PER_AGENT: usize = 64;

/// `[gateway]`, resolved.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// `host:port` to listen on.
    pub listen: String,
    /// The store URL (may hold a password).
    pub store: Secret,
    /// The audit signing key file.
    pub audit_key: PathBuf,
    /// The origin line of checkpoints.
    pub audit_origin: String,
    /// Largest request body accepted.
    pub max_request_bytes: u64,
    /// Most 2025-11-25 sessions one agent may hold open at `/mcp` at once (at least 1).
    pub max_sessions_per_agent: usize,
    /// Host names (or `host:port`) accepted in the `Host` header of `/mcp` besides loopback.
    pub allowed_hosts: Vec<String>,
    /// The folder of the register file; relative paths resolve against it.
    pub base_dir: PathBuf,
}

/// An agent, resolved.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Its name.
    pub id: AgentId,
    /// Who answers for it.
    pub owner: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// SHA-256 of its bearer token, if it may call over HTTP.
    pub token_sha256: Option<[u8; 32]>,
}

/// How to reach an upstream.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A child process speaking MCP over stdio.
    Stdio {
        /// Program and arguments.
        command: Vec<String>,
        /// Environment variables given to it (credentials among them).
        env: Vec<(String, Secret)>,
        /// Working directory.
        cwd: PathBuf,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint URL.
        url: Secret,
        /// Headers sent with every request (credentials among them).
        headers: Vec<(String, Secret)>,
    },
}

/// Which MCP revision to speak to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Try 2026-07-28 `server/discover`, fall back to `initialize`.
    Auto,
    /// 2025-11-25: initialize and a session.
    Legacy,
    /// 2026-07-28: stateless.
    Modern,
}

/// An upstream, resolved.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its name, the namespace of its tools.
    pub name: UpstreamName,
    /// How to reach it.
    pub transport: Transport,
    /// Which revision to speak.
    pub protocol: Protocol,
    /// Whether its tools are exposed as `UPSTREAM.TOOL`.
    pub namespace: bool,
    /// How long a call may take.
    pub timeout: Duration,
    /// Its name in `[upstreams.NAME]`, for diagnostics.
    pub at: Position,
}

/// How much harm an action can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Reads only.
    Read,
    /// Changes state that can be changed back.
    Write,
    /// Cannot be undone.
    Irreversible,
}

impl Tier {
    /// The tier as written in the register.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Irreversible => "irreversible",
        }
    }
}

/// What a budget counts.
#[derive(Debug)]
pub enum BudgetMeasure {
    /// Calls.
    Count,
    /// The sum of an expression over the arguments.
    Sum(Condition),
}

/// A budget per agent over a sliding window.
#[derive(Debug)]
pub struct Budget {
    /// Calls or a sum.
    pub measure: BudgetMeasure,
    /// The most a window may hold.
    pub limit: f64,
    /// The window.
    pub per: Duration,
    /// The window as written (`24h`).
    pub per_text: String,
    /// Where it is written: its sum's expression, or the budget itself.
    pub at: Position,
    /// [`Budget::identity`], made once with the register rather than per call.
    identity: String,
}

impl Budget {
    /// A budget of `measure` up to `limit` per `per` (written `per_text`), written at `at`.
    pub fn new(
        measure: BudgetMeasure,
        limit: f64,
        per: Duration,
        per_text: String,
        at: Position,
    ) -> Self {
        let per_ms = per.as_millis();
        let identity = match &measure {
            BudgetMeasure::Count => format!("count/{per_ms}ms"),
            BudgetMeasure::Sum(expr) => format!("sum({})/{per_ms}ms", expr.source().trim()),
        };
        Self {
            measure,
            limit,
            per,
            per_text,
            at,
            identity,
        }
    }

    /// What the budget is, whatever its place in the list or its limit: what it counts and its
    /// window (`count/3600000ms`, `sum(args.amount)/86400000ms`). Its charges are kept under it.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.measure {
            BudgetMeasure::Count => write!(f, "at most {} calls per {}", self.limit, self.per_text),
            BudgetMeasure::Sum(expr) => write!(
                f,
                "sum of `{}` at most {} per {}",
                expr.source(),
                self.limit,
                self.per_text
            ),
        }
    }
}

/// A block of the register that this version parses but does not yet enforce.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The block as written, for the risk register.
    pub text: String,
    /// Where its value is written.
    pub at: Position,
}

/// A tool that a block not yet enforced names (`verify.probe.tool`, `undo.tool`), for
/// checking against the tools its upstream lists.
#[derive(Debug, Clone)]
pub struct NamedTool {
    /// The entry that names it (`undo.tool`).
    pub key: &'static str,
    /// The upstream it names, one the register declares.
    pub upstream: UpstreamName,
    /// The tool's name on that upstream.
    pub tool: String,
    /// Where the name is written.
    pub at: Position,
}

/// Where the parts of an action are written, so that a finding points at the entry it is about.
#[derive(Debug, Clone, Default)]
pub struct ActionPositions {
    /// Its name in `[actions."..."]`.
    pub name: Position,
    /// Its `tier` (the name when `tier` is not written).
    pub tier: Position,
    /// Each expression of `require`, in the order of [`Action::conditions`].
    pub conditions: Vec<Position>,
    /// Each path of `redact` naming an argument, in the order of [`Action::redact`].
    pub redact: Vec<Position>,
    /// Each path of `redact` naming a result field, in the order of [`Action::redact_result`].
    pub redact_result: Vec<Position>,
}

impl ActionPositions {
    /// The `i`th of `list`, or the action's name if there is none.
    pub fn nth(&self, list: &[Position], i: usize) -> Position {
        list.get(i).copied().unwrap_or(self.name)
    }
}

/// An action, resolved.
#[derive(Debug)]
pub struct Action {
    /// `UPSTREAM.TOOL`.
    pub name: ActionName,
    /// The upstream that serves it.
    pub upstream: UpstreamName,
    /// The tool's name on the upstream.
    pub tool: String,
    /// The name agents see in `tools/list`.
    pub exposed: String,
    /// Who may call it.
    pub agents: BTreeSet<AgentId>,
    /// Its risk tier.
    pub tier: Tier,
    /// What it is for.
    pub description: Option<String>,
    /// Conditions that must all hold.
    pub conditions: Vec<Condition>,
    /// Budgets it must fit in.
    pub budgets: Vec<Budget>,
    /// Argument paths redacted in the audit (without the `args.` prefix).
    pub redact: Vec<Vec<String>>,
    /// Result paths redacted in the audit (without the `result.` prefix): fields of the
    /// result's `structuredContent` and of its text content written as JSON.
    pub redact_result: Vec<Vec<String>>,
    /// `approve`: parsed, not yet enforced; its presence refuses calls (fail closed).
    pub approve: Option<Pending>,
    /// `delay`: parsed, not yet enforced; its presence refuses calls (fail closed).
    pub delay: Option<Pending>,
    /// `verify`: parsed, not yet enforced.
    pub verify: Option<Pending>,
    /// `undo`: parsed, not yet enforced.
    pub undo: Option<Pending>,
    /// The tools `verify.probe` and `undo` name.
    pub named_tools: Vec<NamedTool>,
    /// Where its parts are written, for diagnostics.
    pub at: ActionPositions,
}

impl Register {
    /// The action an agent sees under `exposed`, matched byte for byte.
    pub fn action_exposed_as(&self, exposed: &str) -> Option<&Action> {
        self.exposed.get(exposed).and_then(|n| self.actions.get(n))
    }

    /// Every action granted to `agent`, in name order.
    pub fn actions_for<'a>(&'a self, agent: &'a AgentId) -> impl Iterator<Item = &'a Action> + 'a {
        self.actions
            .values()
            .filter(move |a| a.agents.contains(agent))
    }

    /// The agent whose token hashes to `sha256`, compared in constant time against every agent.
    pub fn agent_by_token_hash(&self, sha256: &[u8; 32]) -> Option<&Agent> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for agent in self.agents.values() {
            if let Some(h) = &agent.token_sha256
                && bool::from(h.ct_eq(sha256))
            {
                found = Some(agent);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
