//! The one call pipeline every entry point goes through: authenticate, look up, validate, decide, execute, record.

use crate::audit::event::{Detail, DetailWriter, Event, Stage};
use crate::condition::Bindings;
use crate::decision::{Decision, Refusal, decide, frozen_refusal};
use crate::ids::{AgentId, CallId, RunId, fresh};
use crate::ports::{
    CallsRunning, ChargeOutcome, Cleared, Clock, FreezeTarget, Resume, Store, ToolSpec,
    UpstreamError, Upstreams,
};
use crate::register::compile::did_you_mean;
use crate::register::{Action, Agent, Register, Tier};
use crate::request_state::{RequestStateKey, StateBinding, StateFault, args_digest};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

/// Who is calling.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token presented over HTTP.
    Bearer(String),
    /// An agent named by the local process that launched `remit stdio --agent NAME`.
    Local(AgentId),
    /// No credential.
    None,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Local(a) => f.debug_tuple("Local").field(a).finish(),
            Self::None => f.write_str("None"),
        }
    }
}

/// Which entry point a call came through, for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// MCP `tools/call`.
    Mcp,
    /// `POST /v1/calls`.
    Http,
    /// The command line.
    Cli,
}

impl Entry {
    fn as_str(self) -> &'static str {
        match self {
            Self::Mcp => "mcp",
            Self::Http => "http",
            Self::Cli => "cli",
        }
    }
}

/// One request to run a tool.
#[derive(Debug)]
pub struct Call {
    /// Who is calling.
    pub credential: Credential,
    /// The tool name as the agent sent it.
    pub tool: String,
    /// The arguments as the agent sent them (an object, or null for none).
    pub args: Value,
    /// The agent's stated reason (`_meta["remit/reason"]`); `_reason` in the arguments also counts.
    pub reason: Option<String>,
    /// The run or session the call belongs to.
    pub run: Option<RunId>,
    /// Where it came from.
    pub entry: Entry,
    /// Whether whoever made the call is still waiting for its answer.
    pub caller: Caller,
    /// Where the upstream's progress reports go, if the caller asked for them.
    pub progress: Option<Arc<dyn crate::ports::Progress>>,
    /// A call that resumes after the upstream asked for input: the agent's answers, and the
    /// sealed `requestState` remit gave it (opened before the upstream gets its own state).
    pub resume: Option<Resume>,
    /// The client capabilities the agent declared, passed on to a 2026-07-28 upstream (whose
    /// input requests must respect them).
    pub capabilities: Option<Map<String, Value>>,
}

/// Whether whoever made a call is still waiting for its answer; clones share one flag.
#[derive(Clone, Debug, Default)]
pub struct Caller(Arc<std::sync::atomic::AtomicBool>);

impl Caller {
    /// A caller that is waiting.
    pub fn waiting() -> Self {
        Self::default()
    }

    /// Marks the caller as gone: a call not yet sent to its upstream will not be.
    pub fn leave(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the caller has gone.
    pub fn is_gone(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What happened to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The upstream ran it; its `CallToolResult` as JSON (a tool error has `isError: true`).
    Done {
        /// The call.
        call: CallId,
        /// The upstream's result.
        result: Value,
    },
    /// Not executed.
    Refused {
        /// The call.
        call: CallId,
        /// Why.
        refusal: Refusal,
    },
    /// Cleared, but the upstream refused the request with a JSON-RPC error; the tool did not run.
    Rejected {
        /// The call.
        call: CallId,
        /// The upstream's JSON-RPC error code.
        code: i64,
        /// The upstream's message.
        message: String,
        /// The error's `data`, as the upstream sent it.
        data: Option<Value>,
    },
    /// Cleared, but the upstream or the audit failed; the message says whether it may have run.
    Failed {
        /// The call.
        call: CallId,
        /// What went wrong, for the agent.
        message: String,
    },
}

impl Outcome {
    /// The call's id.
    pub fn call(&self) -> &CallId {
        match self {
            Self::Done { call, .. }
            | Self::Refused { call, .. }
            | Self::Rejected { call, .. }
            | Self::Failed { call, .. } => call,
        }
    }
}

struct CatalogEntry {
    spec: ToolSpec,
    /// The input schema's validator; `Err` with why when the schema does not compile
    /// (its calls are refused: nothing goes unchecked).
    validator: Option<Result<jsonschema::Validator, String>>,
}

/// The upstream tools the gateway knows now, keyed by `UPSTREAM.TOOL`.
#[derive(Default)]
struct Catalog {
    tools: HashMap<String, CatalogEntry>,
    /// The upstreams that list at least one tool (up, and answering `tools/list`).
    listing: HashSet<String>,
}

/// The gateway: a register, a store and upstreams, and the pipeline over them.
pub struct Gateway {
    register: Arc<Register>,
    store: Arc<dyn Store>,
    upstreams: Arc<dyn Upstreams>,
    clock: Arc<dyn Clock>,
    catalog: RwLock<Arc<Catalog>>,
    frozen: RwLock<Arc<HashSet<FreezeTarget>>>,
    /// Seals the `requestState` an upstream hands out and opens the one an agent sends back.
    request_states: RequestStateKey,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("register", &self.register.version)
            .finish_non_exhaustive()
    }
}

/// Largest result kept in an audit event before it is truncated.
const MAX_AUDITED_RESULT: usize = 64 * 1024;

impl Gateway {
    /// A gateway over a compiled register and its ports; `request_states` seals the state of
    /// upstreams that ask for input (gateways sharing a store must share it:
    /// [`AuditKey::request_state_key`](crate::audit::checkpoint::AuditKey::request_state_key)).
    pub fn new(
        register: Arc<Register>,
        store: Arc<dyn Store>,
        upstreams: Arc<dyn Upstreams>,
        clock: Arc<dyn Clock>,
        request_states: RequestStateKey,
    ) -> Self {
        Self {
            register,
            store,
            upstreams,
            clock,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            frozen: RwLock::new(Arc::new(HashSet::new())),
            request_states,
        }
    }

    /// The register in force.
    pub fn register(&self) -> &Arc<Register> {
        &self.register
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &Arc<dyn Upstreams> {
        &self.upstreams
    }

    /// Reloads the upstreams' tool lists and compiles their input schemas.
    pub async fn refresh_tools(&self) {
        let specs = self.upstreams.tools().await;
        let mut tools = HashMap::new();
        for spec in specs {
            let validator = spec.input_schema().map(|s| {
                jsonschema::validator_for(s).map_err(|e| {
                    tracing::warn!(upstream = %spec.upstream, tool = %spec.name, error = %e.masked(), "a tool's input schema does not compile: its calls will be refused");
                    e.masked().to_string()
                })
            });
            tools.insert(
                format!("{}.{}", spec.upstream, spec.name),
                CatalogEntry { spec, validator },
            );
        }
        let listing: HashSet<String> = tools
            .values()
            .map(|entry| entry.spec.upstream.to_string())
            .collect();
        // an action whose upstream is up but does not list its tool is refused until it
        // does: said once per change of the lists, for the operator
        for action in self.register.actions.values() {
            if !tools.contains_key(action.name.as_str())
                && listing.contains(action.upstream.as_str())
            {
                tracing::warn!(action = %action.name, upstream = %action.upstream, tool = %action.tool, "the upstream does not list the action's tool: its calls are refused until it does");
            }
        }
        if let Ok(mut c) = self.catalog.write() {
            *c = Arc::new(Catalog { tools, listing });
        }
    }

    /// Reloads the kill switch from the store (so a freeze on another replica applies here).
    pub async fn refresh_frozen(&self) -> Result<(), crate::ports::StoreError> {
        let list = self.store.frozen().await?;
        if let Ok(mut f) = self.frozen.write() {
            *f = Arc::new(list.into_iter().collect());
        }
        Ok(())
    }

    /// Freezes or unfreezes an agent or action, records it, and applies it here at once.
    ///
    /// The two steps fail closed: a freeze takes effect before it is recorded (if the
    /// record then fails, the agent stays frozen and the operator is told), an unfreeze is
    /// recorded before it takes effect (if the record fails, the agent stays frozen).
    pub async fn set_frozen(
        &self,
        target: FreezeTarget,
        frozen: bool,
        by: &str,
    ) -> Result<(), crate::ports::StoreError> {
        if frozen {
            self.store.set_frozen(&target, true).await?;
        }
        let (agent, action) = match &target {
            FreezeTarget::Agent(a) => (Some(a.as_str().into()), None),
            FreezeTarget::Action(a) => (None, Some(a.as_str().into())),
        };
        let event = Event {
            time: crate::time::rfc3339(self.clock.now_ms()).into(),
            stage: if frozen {
                Stage::Frozen
            } else {
                Stage::Unfrozen
            },
            call: None,
            run: None,
            agent,
            action,
            register: Some(self.register.version.as_str().into()),
            detail: json!({ "by": by }).into(),
        };
        self.store.append(&[event]).await?;
        if !frozen {
            self.store.set_frozen(&target, false).await?;
        }
        self.refresh_frozen().await
    }

    fn frozen(&self) -> Arc<HashSet<FreezeTarget>> {
        // a lock poisoned by a panic still holds the frozen set: an empty one would let
        // frozen agents through
        match self.frozen.read() {
            Ok(f) => Arc::clone(&f),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_default()
    }

    /// Lends `f` the action exposed as `exposed` and its upstream tool, if the upstream listed it.
    fn with_exposed<R>(&self, exposed: &str, f: impl FnOnce(&Action, &ToolSpec) -> R) -> Option<R> {
        let action = self.register.action_exposed_as(exposed)?;
        let catalog = self.catalog();
        let entry = catalog.tools.get(action.name.as_str())?;
        Some(f(action, &entry.spec))
    }

    /// Whether the tool exposed as `exposed` has an input schema for which `test` holds.
    pub fn input_schema_is(&self, exposed: &str, test: impl FnOnce(&Value) -> bool) -> bool {
        self.with_exposed(exposed, |_, spec| spec.input_schema().is_some_and(test))
            .unwrap_or(false)
    }

    /// The definition of the tool exposed as `exposed`, as agents granted it see it.
    pub fn exposed_tool(&self, exposed: &str) -> Option<Map<String, Value>> {
        self.with_exposed(exposed, exposed_definition)
    }

    /// The agent a credential proves, if any.
    pub fn authenticate(&self, credential: &Credential) -> Result<&Agent, Refusal> {
        match credential {
            Credential::Bearer(token) => {
                let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                self.register
                    .agent_by_token_hash(&hash)
                    .ok_or(Refusal::Unauthenticated)
            }
            Credential::Local(id) => self.register.agents.get(id).ok_or(Refusal::Unauthenticated),
            Credential::None => Err(Refusal::Unauthenticated),
        }
    }

    /// The tools an agent may see: only what its register grants and its upstream lists, under their exposed names.
    pub fn list_tools(&self, credential: &Credential) -> Result<Vec<Map<String, Value>>, Refusal> {
        let agent = self.authenticate(credential)?;
        let catalog = self.catalog();
        let mut out = Vec::new();
        for action in self.register.actions_for(&agent.id) {
            let Some(entry) = catalog.tools.get(action.name.as_str()) else {
                continue;
            };
            out.push(exposed_definition(action, &entry.spec));
        }
        Ok(out)
    }

    /// Runs one call through the pipeline; every path records its events and fails closed.
    pub async fn call(&self, call: Call) -> Outcome {
        let _running = self.store.calls_running().map(CallsRunning::enter);
        let id = CallId::new(fresh("call"));
        let mut trail = Trail::new(self, &id, &call);
        let mut call = call;
        match self.run(&mut call, &id, &mut trail).await {
            Ok(result) => Outcome::Done { call: id, result },
            // nobody's agent: not an action of anyone's, so not in the audit (where each
            // request would cost an fsync); the log has it
            Err(Stop::Refused(refusal @ Refusal::Unauthenticated)) => {
                tracing::warn!(call = %id, entry = call.entry.as_str(), "refused a call with no valid agent credential");
                Outcome::Refused { call: id, refusal }
            }
            Err(Stop::Refused(refusal)) => {
                let event = trail.event(
                    Stage::Refused,
                    json!({ "code": refusal.code(), "reason": refusal.to_string() }),
                );
                let mut events = trail.take_pending();
                events.push(event);
                if let Err(e) = self.store.append(&events).await {
                    tracing::error!(call = %id, error = %e, "audit append failed for a refused call");
                }
                Outcome::Refused { call: id, refusal }
            }
            Err(Stop::Failed(message)) => Outcome::Failed { call: id, message },
            Err(Stop::Rejected(code, message, data)) => Outcome::Rejected {
                call: id,
                code,
                message,
                data,
            },
        }
    }

    async fn run<'g>(
        &'g self,
        call: &mut Call,
        id: &CallId,
        trail: &mut Trail<'g>,
    ) -> Result<Value, Stop> {
        // 1 authenticate
        let agent = self.authenticate(&call.credential)?;
        trail.agent = Some(agent.id.as_str().into());
        // 2 look up: byte-exact, only among what this agent is granted
        let action = self.look_up(agent, &call.tool)?;
        trail.action = Some(action.name.as_str().into());
        // 3 validate: the arguments object, minus `_reason`, against the tool's schema
        let (mut args, reason) =
            split_reason(std::mem::take(&mut call.args)).map_err(|message| {
                Refusal::InvalidArguments {
                    action: action.name.clone(),
                    message,
                }
            })?;
        trail.reason = call
            .reason
            .as_deref()
            .or(reason.as_deref())
            .map(|r| capped(r, MAX_REASON_CHARS).to_owned());
        // what a sealed `requestState` is bound to: this agent, this action, these arguments
        // (without `_reason`, remit's own, which may change between rounds)
        let binding = StateBinding {
            agent: agent.id.as_str(),
            action: action.name.as_str(),
            args: args_digest(&args),
        };
        // a resuming call's state is opened before anything else of it is believed: what the
        // upstream gets, and what `proposed` records the digest of, is the upstream's own
        let (resume, unopened) = self.open_resume(call.resume.take(), &binding);
        // one redacted copy serves the audit's arguments and the values to scrub from results
        let audit_args = match redact_with_values(&args, &action.redact) {
            Some((copy, found)) => {
                trail.secrets = found;
                AuditArgs::Redacted(copy)
            }
            None => AuditArgs::Whole(&args),
        };
        trail.redact_result.clone_from(&action.redact_result);
        let detail = trail.proposed_detail(resume.as_ref(), Some(&audit_args));
        drop(audit_args);
        let proposed = trail.event(Stage::Proposed, detail);
        trail.pending.push(proposed);
        if let Some(fault) = unopened {
            return Err(Refusal::RequestState {
                action: action.name.clone(),
                fault,
            }
            .into());
        }
        let catalog = self.catalog();
        let Some(entry) = catalog.tools.get(action.name.as_str()) else {
            // an upstream that lists other tools is up and does not have this one; one that
            // lists none may be starting or restarting
            if catalog.listing.contains(action.upstream.as_str()) {
                return Err(Refusal::Unusable {
                    action: action.name.clone(),
                    why: format!(
                        "upstream `{}` does not list a tool `{}`",
                        action.upstream, action.tool
                    ),
                }
                .into());
            }
            return Err(Refusal::Unavailable {
                message: format!(
                    "upstream `{}` has not listed `{}`",
                    action.upstream, action.tool
                ),
            }
            .into());
        };
        if let Some(v) = &entry.validator {
            let v = v.as_ref().map_err(|why| Refusal::Unusable {
                action: action.name.clone(),
                why: format!("its input schema cannot be checked ({why})"),
            })?;
            // lend the map to the validator as a Value, without copying it
            let instance = Value::Object(std::mem::take(&mut args));
            // the value itself is left out (`/id: value is not of type "string"`): the
            // message goes into the audit, where a redacted argument must not be written
            let checked = v.validate(&instance).map_err(|e| {
                let at = e.instance_path().to_string();
                let what = e.masked();
                if at.is_empty() {
                    what.to_string()
                } else {
                    format!("{at}: {what}")
                }
            });
            if let Value::Object(map) = instance {
                args = map;
            }
            if let Err(message) = checked {
                return Err(Refusal::InvalidArguments {
                    action: action.name.clone(),
                    message,
                }
                .into());
            }
        }
        // 4 decide: kill switch, controls not yet enforced, conditions, budgets
        let bindings = Bindings::for_args(&args);
        let charges = match decide(action, agent.id.as_str(), &bindings, &self.frozen()) {
            Decision::Allow(charges) => charges,
            Decision::Deny(refusal) => return Err(refusal.into()),
        };
        let decided = {
            let mut d = DetailWriter::new();
            d.text("decision", "allow");
            d.text("tier", action.tier.as_str());
            trail.event(Stage::Decided, d.finish())
        };
        // 5 record, write-ahead: an action that can change something is on disk before the
        // upstream sees it, in one transaction with its budget charges (a charge is never
        // kept for a call that could not be recorded). A read changes nothing, so its
        // events are committed together with its result, and its answer is released only
        // once they are durable.
        let write_ahead = action.tier != Tier::Read;
        let now = self.clock.now_ms();
        let charged = if write_ahead {
            trail.pending.push(decided);
            let result = self
                .store
                .charge_and_append_ahead(&charges, now, &trail.pending)
                .await;
            if matches!(result, Ok(ChargeOutcome::Charged)) {
                trail.pending.clear();
                trail.proposed_written = true;
            } else {
                // neither was written: a refusal is recorded with `proposed` alone
                trail.pending.pop();
            }
            result.map_err(|e| Refusal::Unavailable {
                message: format!(
                    "the call could not be recorded before it ran: store {}",
                    e.kind
                ),
            })?
        } else {
            let charged = if charges.is_empty() {
                ChargeOutcome::Charged
            } else {
                self.store
                    .charge(&charges, now)
                    .await
                    .map_err(Refusal::from)?
            };
            if charged == ChargeOutcome::Charged {
                trail.pending.push(decided);
            }
            charged
        };
        if let ChargeOutcome::Exceeded {
            index,
            used,
            resets_at_ms,
        } = charged
        {
            let budget = action
                .budgets
                .get(index)
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(Refusal::OverBudget {
                action: action.name.clone(),
                budget,
                used,
                resets_at: crate::time::rfc3339(resets_at_ms),
                retry_in: std::time::Duration::from_millis(
                    u64::try_from(resets_at_ms.saturating_sub(self.clock.now_ms())).unwrap_or(0),
                ),
            }
            .into());
        }
        // the kill switch once more: a freeze that arrived while the call waited for the
        // store (its charges, its write-ahead events) stops it before the upstream sees it
        if let Some(refusal) = frozen_refusal(action, agent.id.as_str(), &self.frozen()) {
            return Err(refusal.into());
        }
        // 6 execute, exactly once; not at all if the caller has gone: nobody would get the answer
        let cleared = Cleared {
            call: id.clone(),
            upstream: action.upstream.clone(),
            tool: action.tool.clone(),
            args,
            progress: call.progress.clone(),
            resume,
            capabilities: call.capabilities.clone(),
        };
        let outcome = if call.caller.is_gone() {
            None
        } else {
            Some(self.upstreams.execute(cleared).await)
        };
        // 8 record
        let (event, reply) = match outcome {
            None => {
                let message = "the caller stopped waiting before the call was sent; nothing ran";
                (
                    trail.event(Stage::Failed, json!({ "error": message, "sent": false })),
                    Err(Stop::Failed(message.to_owned())),
                )
            }
            Some(Ok(mut result)) => {
                let is_error = result
                    .get("isError")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                // The result is written into the event from where it is (the usual case);
                // one too large for the audit gets a summary in its place, and one with
                // redacted fields or echoes of redacted arguments a redacted copy. The agent
                // gets the result as it came.
                let mut detail = DetailWriter::new();
                detail.flag("is_error", is_error);
                match cap(&result) {
                    None if trail.secrets.is_empty() && trail.redact_result.is_empty() => {
                        detail.value("result", &result);
                    }
                    None => {
                        let mut recorded = result.clone();
                        redact_result(&mut recorded, &trail.redact_result, &trail.secrets);
                        detail.value("result", &recorded);
                    }
                    Some(summary) => detail.value("result", &summary),
                }
                // the audit has the upstream's state as it came; the agent gets it sealed
                let reply = self
                    .seal_request_state(&mut result, &binding)
                    .map(|()| result)
                    .map_err(Stop::Failed);
                (trail.event(Stage::Executed, detail.finish()), reply)
            }
            Some(Err(UpstreamError::Rejected {
                code,
                message,
                data,
                ..
            })) => {
                // the upstream's words may echo a redacted argument: the audit keeps them
                // scrubbed (the agent, who sent it, gets them as they came)
                let mut error = Value::String(message.clone());
                scrub(&mut error, &trail.secrets);
                // only a request refused as such is known not to have run: another error
                // (`-32603`, or the tool's own code) may come after the tool acted
                let detail = if crate::ports::refused_before_running(code) {
                    json!({ "error": error, "code": code, "sent": true, "ran": false })
                } else {
                    json!({ "error": error, "code": code, "sent": true })
                };
                (
                    trail.event(Stage::Failed, detail),
                    Err(Stop::Rejected(code, message, data)),
                )
            }
            Some(Err(e)) => {
                let sent = !matches!(
                    e,
                    UpstreamError::Unavailable { .. } | UpstreamError::Unknown(_)
                );
                let mut error = Value::String(e.to_string());
                scrub(&mut error, &trail.secrets);
                let detail = json!({ "error": error, "sent": sent });
                (
                    trail.event(Stage::Failed, detail),
                    Err(Stop::Failed(e.to_string())),
                )
            }
        };
        // a read's `proposed` and `decided` are still pending; a write's are on disk
        let mut events = std::mem::take(&mut trail.pending);
        events.push(event);
        if let Err(e) = self.store.append(&events).await {
            tracing::error!(call = %id, error = %e, "audit append failed after execution");
            return Err(Stop::Failed(if write_ahead {
                format!(
                    "the action ran but remit could not record its result ({}); do not retry, ask an operator to check call {id}",
                    e.kind
                )
            } else {
                format!(
                    "remit could not record this read ({}), so its answer is withheld; nothing was changed, try again later",
                    e.kind
                )
            }));
        }
        reply
    }

    /// Records that remit stopped a call whose upstream wanted input the agent could not
    /// give (a 2025-11-25 session, asked by remit): a `failed` event on the call's last
    /// round, with why. Nothing more of the call runs.
    pub async fn record_stopped(
        &self,
        call: &CallId,
        run: Option<&RunId>,
        credential: &Credential,
        tool: &str,
        why: &str,
    ) -> Result<(), crate::ports::StoreError> {
        // the round was allowed, so both resolve; were they not, the event still names the call
        let agent = self.authenticate(credential).ok();
        let action = agent.and_then(|a| self.look_up(a, tool).ok());
        let event = Event {
            time: crate::time::rfc3339(self.clock.now_ms()).into(),
            stage: Stage::Failed,
            call: Some(call.as_str().into()),
            run: run.map(|r| capped(r.as_str(), MAX_RUN_CHARS).into()),
            agent: agent.map(|a| a.id.as_str().into()),
            action: action.map(|a| a.name.as_str().into()),
            register: Some(self.register.version.as_str().into()),
            detail: json!({ "error": why, "code": "input_failed", "sent": false }).into(),
        };
        self.store.append(&[event]).await.map(drop)
    }

    /// A resuming call's answers with the upstream's own state, opened from the token the
    /// agent sent; and why the token did not open, if it did not (its state is then left out).
    fn open_resume(
        &self,
        resume: Option<Resume>,
        binding: &StateBinding<'_>,
    ) -> (Option<Resume>, Option<StateFault>) {
        let Some(mut resume) = resume else {
            return (None, None);
        };
        let Some(token) = resume.request_state.take() else {
            return (Some(resume), None);
        };
        match self
            .request_states
            .open(binding, self.clock.now_ms(), &token)
        {
            Ok(state) => {
                resume.request_state = Some(state);
                (Some(resume), None)
            }
            Err(fault) => (Some(resume), Some(fault)),
        }
    }

    /// Seals the `requestState` of an upstream's result for the call's agent, action and
    /// arguments, so that only the same call can resume with it, for [`LIFETIME`].
    ///
    /// A `requestState` that is not text cannot be passed on: the call ends there, with why.
    ///
    /// [`LIFETIME`]: crate::request_state::LIFETIME
    fn seal_request_state(
        &self,
        result: &mut Value,
        binding: &StateBinding<'_>,
    ) -> Result<(), String> {
        let Some(state) = result.get_mut("requestState") else {
            return Ok(());
        };
        let Value::String(text) = state else {
            return Err(
                "the upstream answered with a `requestState` that is not text, which remit cannot pass on; the call may have run as far as that answer"
                    .to_owned(),
            );
        };
        let lifetime =
            i64::try_from(crate::request_state::LIFETIME.as_millis()).unwrap_or(i64::MAX);
        let expires_at = self.clock.now_ms().saturating_add(lifetime);
        *text = self.request_states.seal(binding, expires_at, text);
        Ok(())
    }

    fn look_up<'r>(&'r self, agent: &Agent, tool: &str) -> Result<&'r Action, Refusal> {
        match self.register.action_exposed_as(tool) {
            Some(action) if action.agents.contains(&agent.id) => Ok(action),
            _ => {
                let granted = self
                    .register
                    .actions_for(&agent.id)
                    .map(|a| a.exposed.as_str());
                // no hint for a name far longer than any granted one: the distance costs
                // its length times theirs, per granted action, on the caller's worker
                let hint = if tool.len() <= MAX_HINTED_NAME {
                    did_you_mean(tool, granted.collect::<Vec<_>>())
                } else {
                    None
                };
                Err(Refusal::Unlisted {
                    tool: printable(tool),
                    hint,
                })
            }
        }
    }
}

/// The longest requested tool name a refusal suggests a granted one for.
const MAX_HINTED_NAME: usize = 256;

enum Stop {
    Refused(Refusal),
    Rejected(i64, String, Option<Value>),
    Failed(String),
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// The events of one call, built up as it goes.
struct Trail<'g> {
    gateway: &'g Gateway,
    /// The call's id, the run, the agent and the action as each event records them (made once per call).
    call: Arc<str>,
    run: Option<Arc<str>>,
    agent: Option<Arc<str>>,
    action: Option<Arc<str>>,
    register: Arc<str>,
    /// The last event's time, kept for the next event of the same millisecond.
    time: std::cell::RefCell<Option<(i64, Arc<str>)>>,
    tool: String,
    entry: Entry,
    reason: Option<String>,
    /// Values of redacted arguments, scrubbed from anything else recorded (an upstream may echo them).
    secrets: Vec<String>,
    /// Result paths redacted in the audit.
    redact_result: Vec<Vec<String>>,
    pending: Vec<Event>,
    /// Whether `proposed` is on disk already (a write's, ahead of the upstream).
    proposed_written: bool,
}

impl<'g> Trail<'g> {
    fn new(gateway: &'g Gateway, call: &'g CallId, c: &Call) -> Self {
        Self {
            gateway,
            call: call.as_str().into(),
            register: gateway.register.version.as_str().into(),
            // every entry's reason and run are capped here, the one place all calls pass
            run: c
                .run
                .as_ref()
                .map(|r| capped(r.as_str(), MAX_RUN_CHARS).into()),
            agent: None,
            action: None,
            time: std::cell::RefCell::new(None),
            tool: printable(&c.tool),
            entry: c.entry,
            reason: c
                .reason
                .as_deref()
                .map(|r| capped(r, MAX_REASON_CHARS).to_owned()),
            secrets: Vec::new(),
            redact_result: Vec::new(),
            pending: Vec::new(),
            proposed_written: false,
        }
    }

    /// The detail of `proposed`: what was asked, with the arguments as the audit keeps them
    /// (redacted along `redact_paths`), written straight from the call's parts. Without
    /// arguments (a refusal before they were read), only the tool, entry and reason.
    fn proposed_detail(&self, resume: Option<&Resume>, args: Option<&AuditArgs<'_>>) -> Detail {
        // fields in code-point order: args, entry, reason, resume, tool
        let mut d = DetailWriter::new();
        match args {
            Some(AuditArgs::Whole(args)) => d.object("args", args),
            Some(AuditArgs::Redacted(copy)) => d.value("args", copy),
            None => {}
        }
        d.text("entry", self.entry.as_str());
        if let Some(r) = &self.reason {
            d.text("reason", r);
        }
        if let Some(resume) = resume {
            // the agent's answers as sent; the upstream's opaque state by its digest
            let mut r = Map::new();
            if let Some(answers) = &resume.input_responses {
                // an answer may repeat a redacted argument: scrubbed as results are
                let mut answers = Value::Object(answers.clone());
                scrub(&mut answers, &self.secrets);
                r.insert("inputResponses".into(), answers);
            }
            if let Some(state) = &resume.request_state {
                r.insert(
                    "requestStateSha256".into(),
                    Value::String(hex::encode(Sha256::digest(state.as_bytes()))),
                );
            }
            d.value("resume", &Value::Object(r));
        }
        d.text("tool", &self.tool);
        d.finish()
    }

    fn event(&self, stage: Stage, detail: impl Into<Detail>) -> Event {
        let now = self.gateway.clock.now_ms();
        let mut last = self.time.borrow_mut();
        let time = match &*last {
            Some((ms, text)) if *ms == now => Arc::clone(text),
            _ => {
                let text: Arc<str> = crate::time::rfc3339(now).into();
                *last = Some((now, Arc::clone(&text)));
                text
            }
        };
        Event {
            time,
            stage,
            call: Some(self.call.clone()),
            run: self.run.clone(),
            agent: self.agent.clone(),
            action: self.action.clone(),
            register: Some(self.register.clone()),
            detail: detail.into(),
        }
    }

    /// Events not yet written; a refusal before `proposed` was built still records what was asked.
    fn take_pending(&mut self) -> Vec<Event> {
        if self.pending.is_empty() && !self.proposed_written {
            return vec![self.event(Stage::Proposed, self.proposed_detail(None, None))];
        }
        std::mem::take(&mut self.pending)
    }
}

/// Longest stated reason the audit keeps, in characters; the rest is cut.
pub const MAX_REASON_CHARS: usize = 2000;

/// Longest run id the audit keeps, in characters; it is on every event of the call.
pub const MAX_RUN_CHARS: usize = 128;

/// The first `max` characters of `text`.
fn capped(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

/// Splits `_reason` out of the arguments; anything but an object (or null) is invalid.
fn split_reason(args: Value) -> Result<(Map<String, Value>, Option<String>), String> {
    match args {
        Value::Null => Ok((Map::new(), None)),
        Value::Object(mut map) => {
            let reason = match map.remove("_reason") {
                None => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err("`_reason` must be a string".to_owned()),
            };
            Ok((map, reason))
        }
        _ => Err("arguments must be a JSON object".to_owned()),
    }
}

/// A call's arguments as the audit's `proposed` event writes them.
enum AuditArgs<'a> {
    /// As the agent sent them: the action redacts nothing.
    Whole(&'a Map<String, Value>),
    /// A copy with the action's redacted paths replaced.
    Redacted(Value),
}

/// A copy of the arguments with each listed path replaced by `"[redacted]"` (in every
/// element of an array on the way).
pub fn redact(args: &Map<String, Value>, paths: &[Vec<String>]) -> Value {
    redact_with_values(args, paths).map_or_else(|| Value::Object(args.clone()), |(v, _)| v)
}

/// A copy of the arguments redacted as [`redact`] does, with the values replaced (as text,
/// for scrubbing echoes of them); `None` when there is nothing to redact.
fn redact_with_values(
    args: &Map<String, Value>,
    paths: &[Vec<String>],
) -> Option<(Value, Vec<String>)> {
    if paths.is_empty() {
        return None;
    }
    let mut v = Value::Object(args.clone());
    let mut found = Vec::new();
    for path in paths {
        redact_in_place(&mut v, path, &mut found);
    }
    Some((v, found))
}

/// A redacted value as the text its echoes would show; `None` for one too short to
/// scrub without scrubbing everything else (under 3 characters), `null` and booleans.
fn secret_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.chars().count() >= 3 => Some(s.clone()),
        Value::Number(_) | Value::Object(_) | Value::Array(_) => {
            Some(v.to_string()).filter(|t| t.len() >= 3)
        }
        _ => None,
    }
}

/// Replaces the value at `path` in `v` with `"[redacted]"`, in every element of each
/// array on the way, keeping the values replaced (as [`secret_text`]) in `found`.
/// Whether anything was replaced.
fn redact_in_place(v: &mut Value, path: &[String], found: &mut Vec<String>) -> bool {
    match v {
        Value::Array(items) => {
            // every element, not only up to the first that matches
            let mut any = false;
            for item in items {
                any |= redact_in_place(item, path, found);
            }
            any
        }
        Value::Object(map) => {
            let Some((key, rest)) = path.split_first() else {
                return false;
            };
            let Some(next) = map.get_mut(key) else {
                return false;
            };
            if rest.is_empty() {
                let old = std::mem::replace(next, Value::String("[redacted]".into()));
                found.extend(secret_text(&old));
                true
            } else {
                redact_in_place(next, rest, found)
            }
        }
        _ => false,
    }
}

/// A tool result as the audit keeps it: each of `paths` redacted in its
/// `structuredContent` and in each text content item written as JSON, then every echo of
/// a value redacted there or of a redacted argument (`secrets`) scrubbed from the rest.
fn redact_result(result: &mut Value, paths: &[Vec<String>], secrets: &[String]) {
    let mut found = secrets.to_vec();
    if !paths.is_empty() {
        if let Some(structured) = result.get_mut("structuredContent") {
            for path in paths {
                redact_in_place(structured, path, &mut found);
            }
        }
        let items = result.get_mut("content").and_then(Value::as_array_mut);
        for item in items.into_iter().flatten() {
            if item.get("type").and_then(Value::as_str) != Some("text") {
                continue;
            }
            let Some(Value::String(text)) = item.get_mut("text") else {
                continue;
            };
            let Ok(mut parsed) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let mut any = false;
            for path in paths {
                any |= redact_in_place(&mut parsed, path, &mut found);
            }
            if any {
                *text = parsed.to_string();
            }
        }
    }
    scrub(result, &found);
}

/// Replaces every occurrence of a redacted value inside the strings of `v`, as written and
/// as it reads inside JSON text (`"` as `\"`), and every number equal to a redacted number
/// (an amount echoed as `45.50` for `45.5`).
fn scrub(v: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match v {
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "[redacted]");
                }
                // a redacted text quoted in a tool's JSON text has its quotes and
                // backslashes escaped there
                if secret.contains(['"', '\\']) || secret.chars().any(char::is_control) {
                    let quoted = Value::String(secret.clone()).to_string();
                    let escaped = quoted
                        .strip_prefix('"')
                        .and_then(|q| q.strip_suffix('"'))
                        .unwrap_or(&quoted);
                    if s.contains(escaped) {
                        *s = s.replace(escaped, "[redacted]");
                    }
                }
                // and as an encoder that writes only ASCII has it (Python's `json.dumps`:
                // `José` as `Jos\u00e9`)
                if !secret.is_ascii() {
                    let ascii = ascii_escaped(secret);
                    if s.contains(&ascii) {
                        *s = s.replace(&ascii, "[redacted]");
                    }
                }
            }
        }
        Value::Number(n) => {
            let redacted = n.as_f64().is_some_and(|n| {
                secrets
                    .iter()
                    .any(|secret| secret.parse::<f64>().is_ok_and(|s| s == n))
            });
            if redacted {
                *v = Value::String("[redacted]".into());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, secrets)),
        Value::Object(map) => map.values_mut().for_each(|i| scrub(i, secrets)),
        _ => {}
    }
}

/// `text` as a JSON encoder that writes only ASCII has it inside a string: each character
/// past ASCII as `\uXXXX` (lower-case hex, a pair of them past U+FFFF), `"` and `\` escaped.
fn ascii_escaped(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out
}

/// What the audit keeps in place of a result larger than it keeps whole (its size and
/// digest); `None` when the result is recorded as it is.
fn cap(result: &Value) -> Option<Value> {
    /// Counts the bytes of the JSON text without keeping them.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // the usual result is far below the limit: a bound on its size says so without writing it
    if most_bytes(result) <= MAX_AUDITED_RESULT {
        return None;
    }
    let mut count = Count(0);
    if serde_json::to_writer(&mut count, result).is_ok() && count.0 <= MAX_AUDITED_RESULT {
        return None;
    }
    let text = result.to_string();
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    Some(json!({ "truncated": true, "bytes": text.len(), "sha256": digest }))
}

/// The most bytes `value`'s JSON text can take: never less than serde_json writes, often more.
fn most_bytes(value: &Value) -> usize {
    // a string's bytes may each be escaped as `\u00XX`; a number is at most 24 characters
    let string = |s: &str| s.len().saturating_mul(6).saturating_add(2);
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => string(s),
        Value::Array(items) => items
            .iter()
            .fold(2, |n, v| n.saturating_add(most_bytes(v)).saturating_add(1)),
        Value::Object(map) => map.iter().fold(2, |n, (k, v)| {
            n.saturating_add(string(k))
                .saturating_add(most_bytes(v))
                .saturating_add(2)
        }),
    }
}

/// A tool name as it may be shown: control characters escaped, length capped.
fn printable(name: &str) -> String {
    // the usual name (plain ASCII, nothing `escape_debug` would change) is copied as it is
    let plain = |b: &u8| (b.is_ascii_graphic() || *b == b' ') && !matches!(b, b'\\' | b'\'' | b'"');
    if name.len() <= 200 && name.as_bytes().iter().all(plain) {
        return name.to_owned();
    }
    let mut s: String = name
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn exposed_definition(action: &Action, spec: &ToolSpec) -> Map<String, Value> {
    let mut def = spec.definition.clone();
    def.insert("name".into(), Value::String(action.exposed.clone()));
    // Annotations are the upstream's hints: they may tighten what the agent is told, never loosen it.
    let mut ann = def
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if action.tier != Tier::Read {
        ann.insert("readOnlyHint".into(), Value::Bool(false));
    }
    if action.tier == Tier::Irreversible {
        ann.insert("destructiveHint".into(), Value::Bool(true));
    }
    def.insert("annotations".into(), Value::Object(ann));
    def
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn redaction_replaces_nested_paths_and_leaves_the_rest() {
        let args = obj(json!({
            "card": {"number": "4242", "exp": "12/30"},
            "amount": 5,
            "payees": [{"iban": "DE89 3704"}, {"iban": "FR76 3000", "name": "Bo"}, 7]
        }));
        let paths = vec![
            vec!["card".to_owned(), "number".to_owned()],
            vec!["missing".to_owned()],
            vec!["payees".to_owned(), "iban".to_owned()],
        ];
        assert_eq!(
            redact(&args, &paths),
            json!({
                "card": {"number": "[redacted]", "exp": "12/30"},
                "amount": 5,
                "payees": [{"iban": "[redacted]"}, {"iban": "[redacted]", "name": "Bo"}, 7]
            })
        );
        assert_eq!(
            redact_with_values(&args, &paths)
                .map(|(_, found)| found)
                .unwrap(),
            vec![
                "4242".to_owned(),
                "DE89 3704".to_owned(),
                "FR76 3000".to_owned()
            ]
        );
    }

    #[test]
    fn result_fields_are_redacted_in_structured_content_and_json_text_and_their_echoes_scrubbed() {
        let mut result = json!({
            "content": [
                {"type": "text", "text": "{\"customers\":[{\"id\":\"cus_001\",\"card_number\":\"4242424242424242\",\"pin\":7},{\"id\":\"cus_002\"}]}"},
                {"type": "text", "text": "Ada's card 4242424242424242 is on file"},
                {"type": "text", "text": "not json: card_number"},
                {"type": "image", "data": "4242424242424242", "mimeType": "image/png"}
            ],
            "structuredContent": {"customers": [
                {"id": "cus_001", "card_number": "4242424242424242", "pin": 7},
                {"id": "cus_002"}
            ]},
            "isError": false
        });
        let paths = vec![
            vec!["customers".to_owned(), "card_number".to_owned()],
            vec!["customers".to_owned(), "pin".to_owned()],
        ];
        redact_result(&mut result, &paths, &["secret-arg".to_owned()]);
        assert_eq!(
            result["structuredContent"],
            json!({"customers": [
                {"id": "cus_001", "card_number": "[redacted]", "pin": "[redacted]"},
                {"id": "cus_002"}
            ]})
        );
        let text: Value =
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, result["structuredContent"]);
        assert_eq!(
            result["content"][1]["text"],
            "Ada's card [redacted] is on file"
        );
        assert_eq!(result["content"][2]["text"], "not json: card_number");
        assert_eq!(result["content"][3]["data"], "[redacted]");
        assert!(!result.to_string().contains("4242"), "{result}");
    }

    #[test]
    fn echoes_of_redacted_values_are_scrubbed_from_results() {
        let args = obj(json!({"card_number": "4242 4242 4242 4242"}));
        let (_, secrets) = redact_with_values(&args, &[vec!["card_number".to_owned()]]).unwrap();
        let mut result = json!({"content": [{"type": "text", "text": "charged card 4242 4242 4242 4242"}], "structuredContent": {"card": "4242 4242 4242 4242"}});
        scrub(&mut result, &secrets);
        assert!(!result.to_string().contains("4242 4242"), "{result}");
    }

    #[test]
    fn echoes_of_redacted_numbers_and_quoted_text_are_scrubbed_from_results() {
        // an amount echoed as a number, and a reason with quotes echoed inside JSON text:
        // both stayed in the audit in clear (the audit probe)
        let args = obj(json!({"amount": 45.5, "note": "card \"4111-1111\" was stolen"}));
        let (_, secrets) =
            redact_with_values(&args, &[vec!["amount".to_owned()], vec!["note".to_owned()]])
                .unwrap();
        let text = json!({"note": "card \"4111-1111\" was stolen", "amount": 45.5}).to_string();
        let mut result = json!({
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"amount": 45.50, "total": 45.51, "count": 3}
        });
        scrub(&mut result, &secrets);
        let shown = result.to_string();
        assert!(!shown.contains("4111"), "{shown}");
        assert!(
            !shown.contains("45.5,") && !shown.contains("45.5}"),
            "{shown}"
        );
        assert_eq!(result["structuredContent"]["amount"], "[redacted]");
        // a name past ASCII, quoted by an encoder that writes only ASCII (Python's default)
        let args = obj(json!({"name": "José García 🙂"}));
        let (_, secrets) = redact_with_values(&args, &[vec!["name".to_owned()]]).unwrap();
        let mut echoed = json!({"content": [{"type": "text", "text": "{\"name\": \"Jos\\u00e9 Garc\\u00eda \\ud83d\\ude42\"}"}]});
        scrub(&mut echoed, &secrets);
        assert_eq!(echoed["content"][0]["text"], "{\"name\": \"[redacted]\"}");
        assert_eq!(result["structuredContent"]["total"], 45.51);
        assert_eq!(result["structuredContent"]["count"], 3);
    }

    #[test]
    fn a_reason_or_run_is_cut_at_a_character_not_a_byte() {
        assert_eq!(capped("ab", 5), "ab");
        assert_eq!(capped("aéb", 2), "aé");
        assert_eq!(
            capped(&"é".repeat(3000), MAX_REASON_CHARS).chars().count(),
            2000
        );
        assert_eq!(capped("", 0), "");
    }

    #[test]
    fn reason_is_split_out_of_the_arguments() {
        let (args, reason) = split_reason(json!({"id": "c1", "_reason": "asked"})).unwrap();
        assert_eq!(Value::Object(args), json!({"id": "c1"}));
        assert_eq!(reason.as_deref(), Some("asked"));
        assert!(split_reason(json!({"_reason": 5})).is_err());
        assert!(split_reason(json!([1])).is_err());
        assert_eq!(split_reason(Value::Null).unwrap().0.len(), 0);
    }

    #[test]
    fn results_larger_than_the_audit_keeps_are_recorded_as_size_and_digest() {
        let small = json!({"content": [{"type": "text", "text": "ok"}]});
        assert_eq!(cap(&small), None, "a small result is recorded whole");
        let text = "x".repeat(MAX_AUDITED_RESULT);
        let big = json!({"content": [{"type": "text", "text": text}]});
        let capped = cap(&big).expect("a large result is summed up");
        assert_eq!(capped["truncated"], json!(true), "{capped}");
        assert_eq!(capped["bytes"], json!(big.to_string().len()));
        assert_eq!(
            capped["sha256"],
            json!(hex::encode(Sha256::digest(big.to_string().as_bytes())))
        );
        // within the limit, though the bound on its size is not: counted exactly, kept whole
        let text = "\n".repeat(MAX_AUDITED_RESULT / 4);
        let escaped = json!({"content": [{"type": "text", "text": text}]});
        assert!(most_bytes(&escaped) > MAX_AUDITED_RESULT);
        assert_eq!(cap(&escaped), None);
    }

    #[test]
    fn the_bound_on_a_results_size_is_never_below_its_size() {
        let cases = [
            json!(null),
            json!(true),
            json!(false),
            json!(-1.0e-300),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1 + 0.2),
            json!("\u{0}\u{1f}\"\\é"),
            json!([]),
            json!({}),
            json!({"\u{1}k": [1, "two", {"three": [null, 3.5]}], "": ""}),
        ];
        for case in cases {
            let written = serde_json::to_vec(&case).unwrap().len();
            assert!(most_bytes(&case) >= written, "{case}: {written}");
        }
    }

    #[test]
    fn tool_names_are_shown_escaped_and_capped() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(300)).chars().count(), 201);
        // the copy taken for plain names gives what escaping every character gives
        let escaped = |n: &str| n.chars().flat_map(char::escape_debug).collect::<String>();
        for name in [
            "billing.get_customer",
            "a b",
            "say \"hi\"",
            "it's",
            "back\\slash",
            "tab\there",
            "caf\u{e9}",
            "zero\u{200b}width",
            "",
        ] {
            assert_eq!(printable(name), escaped(name), "{name:?}");
        }
    }
}
