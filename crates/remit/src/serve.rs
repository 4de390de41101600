//! `remit serve`, `remit stdio`, `remit status`, `remit freeze`: running the gateway and steering it.

use crate::Exit;
use crate::registry::load_for;
use anyhow::Context;
use none::NoUpstreams;
use remit_core::audit::AuditKey;
use remit_core::audit::event::{Event, Stage};
use remit_core::ids::{ActionName, AgentId};
use remit_core::pipeline::Gateway;
use remit_core::ports::{Clock, FreezeTarget, SystemClock};
use remit_core::register::{Register, Strictness};
use remit_server::Runtime;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod none {
    use remit_core::ports::{Cleared, ToolSpec, UpstreamError, UpstreamHealth, Upstreams};
    use serde_json::Value;

    /// No upstreams at all: for commands that steer the gateway but never execute a call.
    #[derive(Debug)]
    pub(crate) struct NoUpstreams;

    #[remit_core::async_trait]
    impl Upstreams for NoUpstreams {
        async fn tools(&self) -> Vec<ToolSpec> {
            Vec::new()
        }
        async fn execute(&self, cleared: Cleared) -> Result<Value, UpstreamError> {
            Err(UpstreamError::Unknown(cleared.upstream().to_string()))
        }
        fn health(&self) -> Vec<UpstreamHealth> {
            Vec::new()
        }
    }
}

/// Records that a gateway started, and under which register.
async fn record_start(runtime: &Runtime, entry: &str) -> anyhow::Result<()> {
    let g = &runtime.gateway;
    let event = Event {
        time: remit_core::time::rfc3339(SystemClock.now_ms()).into(),
        stage: Stage::Started,
        call: None,
        run: None,
        agent: None,
        action: None,
        register: Some(g.register().version.as_str().into()),
        detail: json!({ "entry": entry, "actions": g.register().actions.len(), "version": env!("CARGO_PKG_VERSION") }).into(),
    };
    g.store()
        .append(&[event])
        .await
        .context("cannot write to the audit log")?;
    Ok(())
}

/// SIGINT and SIGTERM, caught from the moment this is made: one that arrives while the
/// gateway starts (up to a few seconds: upstreams, the first checkpoint) is kept, and the
/// orderly shutdown follows as soon as the start is done, instead of the process ending at
/// once with its upstreams' children left running.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Ends when either signal has arrived (at once if one came before).
    async fn received(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: Option<&mut tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.interrupt.as_mut()) => {}
                () = next(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts a gateway over a compiled register and serves HTTP until the future `until` ends.
pub(crate) async fn serve_register(
    register: Register,
    listener: tokio::net::TcpListener,
    until: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Runtime> {
    let runtime = Runtime::start(register).await?;
    record_start(&runtime, "serve").await?;
    runtime.settle(Duration::from_secs(5)).await;
    let app = remit_server::app(&runtime);
    tokio::spawn(remit_server::serve(listener, app, until));
    Ok(runtime)
}

pub(crate) async fn serve(path: &Path) -> anyhow::Result<Exit> {
    let register = load_for(path, Strictness::Serve)?;
    let listen = register.gateway.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut signal = ShutdownSignal::install();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = serve_register(register, listener, async {
        let _ = rx.await;
    })
    .await?;
    tracing::info!(register = %runtime.gateway.register().version, "remit listening on http://{addr} (agents: /mcp, API: /v1, health: /health)");
    signal.received().await;
    tracing::info!("shutting down");
    let _ = tx.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Err(e) = runtime.checkpoint_now().await {
        tracing::error!(error = %e, "the final audit checkpoint failed");
    }
    // children end with remit: stdin closed, then SIGTERM and SIGKILL to their groups
    runtime.upstreams.shutdown().await;
    Ok(Exit::Ok)
}

pub(crate) async fn stdio(path: &Path, agent: &str) -> anyhow::Result<Exit> {
    let register = load_for(path, Strictness::Local)?;
    let id = AgentId::new(agent);
    if !register.agents.contains_key(&id) {
        let names: Vec<&str> = register.agents.keys().map(AgentId::as_str).collect();
        anyhow::bail!(
            "no agent `{agent}` in the register (agents: {})",
            names.join(", ")
        );
    }
    let mut signal = ShutdownSignal::install();
    let runtime = Runtime::start(register).await?;
    record_start(&runtime, "stdio").await?;
    runtime.settle(Duration::from_secs(5)).await;
    // the client ends a session by closing remit's stdin, or with a signal: either way the
    // last checkpoint is signed and the upstreams' children end with remit
    let session = tokio::select! {
        // a signal that came while remit started wins over whatever stdin did meanwhile
        biased;
        () = signal.received() => {
            tracing::info!("shutting down");
            Ok(())
        }
        session = remit_mcp::serve_stdio(Arc::clone(&runtime.gateway), id) => session,
    };
    if let Err(e) = runtime.checkpoint_now().await {
        tracing::error!(error = %e, "the final audit checkpoint failed");
    }
    runtime.upstreams.shutdown().await;
    session.map_err(|e| anyhow::anyhow!("stdio session ended: {e}"))?;
    Ok(Exit::Ok)
}

pub(crate) async fn status(path: &Path) -> anyhow::Result<Exit> {
    let register = load_for(path, Strictness::Check)?;
    let url = format!("http://{}/health", register.gateway.listen);
    // the operator's token, made from the audit signing key, has the errors shown too;
    // without the key the status is shown without them
    let token = std::fs::read_to_string(&register.gateway.audit_key)
        .map_err(|e| e.to_string())
        .and_then(|text| AuditKey::from_text(text.trim()).map_err(|e| e.to_string()))
        .map(|key| key.status_token());
    let token = match token {
        Ok(token) => Some(token),
        Err(why) => {
            eprintln!(
                "note: cannot read the audit key {} ({why}): errors are not shown",
                register.gateway.audit_key.display()
            );
            None
        }
    };
    let mut request = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(5));
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let resp = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("remit is not answering at {url}: {e}");
            return Ok(Exit::Error);
        }
    };
    let body: Value = resp.json().await.context("the health answer is not JSON")?;
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let exit = crate::out::verdict(if at(&body, "/status") == &Value::from("ok") {
        Exit::Ok
    } else {
        Exit::Findings
    });
    crate::outln!("gateway   {} ({})", s(at(&body, "/status")), url);
    crate::outln!("register  {}", s(at(&body, "/register")));
    crate::outln!(
        "store     {}",
        if at(&body, "/store/ok") == &Value::Bool(true) {
            "ok".to_owned()
        } else {
            format!("DOWN: {}", s(at(&body, "/store/error")))
        }
    );
    crate::outln!(
        "audit     {} events, latest checkpoint at size {} ({}){}",
        at(&body, "/audit/events"),
        at(&body, "/audit/checkpoint/tree_size"),
        s(at(&body, "/audit/checkpoint/time")),
        if at(&body, "/audit/signing") == &Value::Bool(false) {
            format!(", NOT SIGNING: {}", s(at(&body, "/audit/signing_error")))
        } else {
            String::new()
        }
    );
    for u in at(&body, "/upstreams").as_array().into_iter().flatten() {
        crate::outln!(
            "upstream  {:<12} {} {} tools, protocol {}, restarts {}{}",
            s(at(u, "/upstream")),
            if at(u, "/up") == &Value::Bool(true) {
                "up  "
            } else {
                "DOWN"
            },
            at(u, "/tools"),
            s(at(u, "/protocol")),
            at(u, "/restarts"),
            at(u, "/last_error")
                .as_str()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(exit)
}

/// The value at a JSON pointer, or null.
fn at<'v>(v: &'v Value, pointer: &str) -> &'v Value {
    static NULL: Value = Value::Null;
    v.pointer(pointer).unwrap_or(&NULL)
}

fn target_of(register: &Register, text: &str) -> anyhow::Result<FreezeTarget> {
    if let Some(name) = text.strip_prefix("agent:") {
        let id = AgentId::new(name);
        anyhow::ensure!(
            register.agents.contains_key(&id),
            "no agent `{name}` in the register"
        );
        return Ok(FreezeTarget::Agent(id));
    }
    if let Some(name) = text.strip_prefix("action:") {
        let id = ActionName::new(name);
        anyhow::ensure!(
            register.actions.contains_key(&id),
            "no action `{name}` in the register"
        );
        return Ok(FreezeTarget::Action(id));
    }
    let agent = register.agents.contains_key(&AgentId::new(text));
    let action = register.actions.contains_key(&ActionName::new(text));
    match (agent, action) {
        (true, false) => Ok(FreezeTarget::Agent(AgentId::new(text))),
        (false, true) => Ok(FreezeTarget::Action(ActionName::new(text))),
        (true, true) => anyhow::bail!(
            "`{text}` is both an agent and an action; write `agent:{text}` or `action:{text}`"
        ),
        (false, false) => {
            anyhow::bail!("`{text}` is neither an agent nor an action in the register")
        }
    }
}

pub(crate) async fn freeze(
    path: &Path,
    target: &str,
    frozen: bool,
    by: &str,
) -> anyhow::Result<Exit> {
    let register = load_for(path, Strictness::Check)?;
    let target = target_of(&register, target)?;
    let store =
        remit_store::open(register.gateway.store.expose(), &register.gateway.base_dir).await?;
    // this gateway runs no call, so it hands out no request state: a key of its own will do
    let request_states = remit_core::request_state::RequestStateKey::random()
        .map_err(|e| anyhow::anyhow!("cannot make a random key: {e}"))?;
    let gateway = Gateway::new(
        Arc::new(register),
        Arc::clone(&store),
        Arc::new(NoUpstreams),
        Arc::new(SystemClock),
        request_states,
    );
    if let Err(e) = gateway.set_frozen(target.clone(), frozen, by).await {
        // a freeze takes effect before it is recorded: say which of the two failed
        let in_force = frozen
            && store
                .frozen()
                .await
                .is_ok_and(|list| list.contains(&target));
        if in_force {
            anyhow::bail!(
                "{target} is frozen (every gateway on this store applies it within a second), but the freeze could not be recorded in the audit: {e}; run this command again once the store answers, to record it"
            );
        }
        anyhow::bail!(
            "{target} was not {}: {e}",
            if frozen { "frozen" } else { "unfrozen" }
        );
    }
    crate::outln!(
        "{target} is {}; every gateway on this store applies it within a second",
        if frozen { "frozen" } else { "unfrozen" }
    );
    Ok(Exit::Ok)
}
