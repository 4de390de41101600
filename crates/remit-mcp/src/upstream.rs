//! Upstream MCP servers: one supervised client per upstream, restarted or reconnected with backoff.

use async_trait::async_trait;
use remit_core::ids::UpstreamName;
use remit_core::ports::{Cleared, ToolSpec, UpstreamError, UpstreamHealth, Upstreams};
use remit_core::register::{Protocol, Transport, Upstream};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, Peer, RunningService,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

use crate::lean::LeanHttp;

/// Environment variables a child upstream inherits from remit; everything else it gets from the register.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TZ",
    "SYSTEMROOT",
];

/// How long an upstream may take to answer the MCP handshake before it counts as down.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Every upstream of the register, each behind a supervised MCP client.
pub struct McpUpstreams {
    links: BTreeMap<UpstreamName, Arc<Link>>,
    changes: watch::Sender<u64>,
}

impl fmt::Debug for McpUpstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpUpstreams")
            .field("upstreams", &self.links.keys().collect::<Vec<_>>())
            .finish()
    }
}

struct Link {
    config: Upstream,
    state: RwLock<LinkState>,
    reconnect: Notify,
    /// Calls on this upstream whose agents asked for progress.
    progress: Arc<crate::progress::Waiting>,
}

impl LinkState {
    /// Keeps the upstream's tools, and which of them need `Mcp-Param-*` headers.
    fn set_tools(&mut self, tools: Vec<ToolSpec>) {
        self.header_tools = tools
            .iter()
            .filter(|t| {
                t.input_schema()
                    .is_some_and(crate::stateless::mentions_param_headers)
            })
            .map(|t| t.name.clone())
            .collect();
        self.tools = tools;
    }
}

#[derive(Default)]
struct LinkState {
    peer: Option<Peer<RoleClient>>,
    /// Set when the upstream is HTTP and speaks 2026-07-28: calls skip rmcp's client.
    lean: Option<Arc<LeanHttp>>,
    tools: Vec<ToolSpec>,
    /// Tools whose input schema asks for `Mcp-Param-*` headers: their calls go through
    /// rmcp's client, which sends them (the lean client does not).
    header_tools: std::collections::HashSet<String>,
    protocol: Option<String>,
    restarts: u64,
    last_error: Option<String>,
}

/// The client side remit presents to an upstream; it notices tool list changes.
#[derive(Clone)]
struct UpstreamClient {
    info: ClientConfig,
    link: Arc<Link>,
    changes: watch::Sender<u64>,
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.link.progress.deliver(params);
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        let link = Arc::clone(&self.link);
        let changes = self.changes.clone();
        let peer = context.peer;
        tokio::spawn(async move {
            if let Ok(tools) = list_tools(&link.config.name, &peer).await
                && let Ok(mut s) = link.state.write()
            {
                s.set_tools(tools);
            }
            changes.send_modify(|g| *g += 1);
        });
    }
}

impl McpUpstreams {
    /// Starts a supervisor for each upstream; they connect in the background.
    pub fn start(upstreams: impl IntoIterator<Item = Upstream>) -> Arc<Self> {
        let (changes, _) = watch::channel(0u64);
        let mut links = BTreeMap::new();
        for config in upstreams {
            let link = Arc::new(Link {
                config,
                state: RwLock::new(LinkState::default()),
                reconnect: Notify::new(),
                progress: Arc::default(),
            });
            links.insert(link.config.name.clone(), Arc::clone(&link));
            tokio::spawn(supervise(link, changes.clone()));
        }
        Arc::new(Self { links, changes })
    }

    /// A receiver that changes whenever an upstream connects, drops or changes its tools.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Waits until every upstream has connected once or failed, at most `limit`.
    pub async fn settle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let pending = self.links.values().any(|l| {
                l.state
                    .read()
                    .map(|s| s.peer.is_none() && s.last_error.is_none())
                    .unwrap_or(false)
            });
            if !pending || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn client_info(protocol: Protocol) -> ClientConfig {
    let mut info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("remit", env!("CARGO_PKG_VERSION")),
    );
    if protocol == Protocol::Legacy {
        // rmcp's default would put the newest revision in `initialize`; a strict 2025-11-25 server refuses that.
        info.protocol_version = ProtocolVersion::V_2025_11_25;
    }
    info
}

fn lifecycle(protocol: Protocol) -> ClientLifecycleMode {
    match protocol {
        Protocol::Legacy => ClientLifecycleMode::Initialize,
        Protocol::Modern => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        Protocol::Auto => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        },
    }
}

async fn connect(
    link: &Arc<Link>,
    changes: &watch::Sender<u64>,
) -> Result<RunningService<RoleClient, UpstreamClient>, String> {
    let client = UpstreamClient {
        info: client_info(link.config.protocol),
        link: Arc::clone(link),
        changes: changes.clone(),
    };
    let mode = lifecycle(link.config.protocol);
    match &link.config.transport {
        Transport::Stdio { command, env, cwd } => {
            let (program, args) = command.split_first().ok_or("empty command")?;
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .current_dir(cwd)
                .env_clear()
                .kill_on_drop(true);
            for key in INHERITED_ENV {
                if let Ok(v) = std::env::var(key) {
                    cmd.env(key, v);
                }
            }
            for (k, v) in env {
                cmd.env(k, v.expose());
            }
            let transport = TokioChildProcess::new(cmd)
                .map_err(|e| format!("could not start `{program}`: {e}"))?;
            client
                .serve_with_lifecycle(transport, mode)
                .await
                .map_err(|e| format!("handshake failed: {e}"))
        }
        Transport::Http { url, headers } => {
            let mut custom = HashMap::new();
            for (k, v) in headers {
                let name = http::HeaderName::try_from(k.as_str())
                    .map_err(|_| format!("header name `{k}` is invalid"))?;
                let value = http::HeaderValue::try_from(v.expose())
                    .map_err(|_| format!("the value of header `{k}` is invalid"))?;
                custom.insert(name, value);
            }
            let config = StreamableHttpClientTransportConfig::with_uri(url.expose().to_owned())
                .custom_headers(custom);
            let transport = StreamableHttpClientTransport::from_config(config);
            client
                .serve_with_lifecycle(transport, mode)
                .await
                .map_err(|e| format!("handshake failed: {}", scrub(&e.to_string(), url.expose())))
        }
    }
}

/// Removes a URL (which may carry credentials) from a message.
fn scrub(message: &str, url: &str) -> String {
    message.replace(url, "<upstream url>")
}

async fn list_tools(name: &UpstreamName, peer: &Peer<RoleClient>) -> Result<Vec<ToolSpec>, String> {
    let tools = peer.list_all_tools().await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(tools.len());
    for t in tools {
        if let Ok(Value::Object(definition)) = serde_json::to_value(&t) {
            out.push(ToolSpec {
                upstream: name.clone(),
                name: t.name.to_string(),
                definition,
            });
        }
    }
    Ok(out)
}

/// The lean client for an HTTP upstream that negotiated the stateless revision.
fn lean_for(config: &Upstream, protocol: Option<&str>) -> Option<Arc<LeanHttp>> {
    let Transport::Http { url, headers } = &config.transport else {
        return None;
    };
    if protocol != Some(crate::STATELESS_REVISION) {
        return None;
    }
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect();
    match LeanHttp::new(config.name.as_str(), url.expose(), &headers, config.timeout) {
        Ok(l) => Some(Arc::new(l)),
        Err(e) => {
            tracing::warn!(upstream = %config.name, error = %e, "lean HTTP client unavailable; using rmcp");
            None
        }
    }
}

async fn supervise(link: Arc<Link>, changes: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let attempt = tokio::time::timeout(HANDSHAKE, connect(&link, &changes))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer to the MCP handshake within {}s",
                    HANDSHAKE.as_secs()
                ))
            });
        match attempt {
            Ok(running) => {
                let peer = running.peer().clone();
                let protocol = peer.peer_info().map(|i| i.protocol_version.to_string());
                let tools = list_tools(&link.config.name, &peer).await;
                let lean = lean_for(&link.config, protocol.as_deref());
                let ok = tools.is_ok();
                if let Ok(mut s) = link.state.write() {
                    match tools {
                        Ok(t) => {
                            s.set_tools(t);
                            s.last_error = None;
                        }
                        Err(e) => s.last_error = Some(format!("tools/list failed: {e}")),
                    }
                    s.peer = Some(peer);
                    s.lean = lean;
                    s.protocol = protocol;
                    s.restarts += 1;
                }
                changes.send_modify(|g| *g += 1);
                tracing::info!(upstream = %link.config.name, "upstream connected");
                if ok {
                    backoff = Duration::from_millis(250);
                }
                let token = running.cancellation_token();
                tokio::select! {
                    _ = running.waiting() => {}
                    () = link.reconnect.notified() => { token.cancel(); }
                }
                if let Ok(mut s) = link.state.write() {
                    s.peer = None;
                    s.lean = None;
                    s.set_tools(Vec::new());
                    if s.last_error.is_none() {
                        s.last_error = Some("connection closed".to_owned());
                    }
                }
                changes.send_modify(|g| *g += 1);
                tracing::warn!(upstream = %link.config.name, "upstream disconnected; reconnecting");
            }
            Err(e) => {
                tracing::warn!(upstream = %link.config.name, error = %e, "upstream unavailable");
                if let Ok(mut s) = link.state.write() {
                    s.last_error = Some(e);
                }
                changes.send_modify(|g| *g += 1);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[async_trait]
impl Upstreams for McpUpstreams {
    async fn tools(&self) -> Vec<ToolSpec> {
        let mut out = Vec::new();
        for link in self.links.values() {
            if let Ok(s) = link.state.read() {
                out.extend(s.tools.iter().cloned());
            }
        }
        out
    }

    async fn execute(&self, cleared: Cleared) -> Result<Value, UpstreamError> {
        let name = cleared.upstream().to_string();
        let link = self
            .links
            .get(cleared.upstream())
            .ok_or_else(|| UpstreamError::Unknown(name.clone()))?;
        let (peer, lean, modern) = link
            .state
            .read()
            .ok()
            .and_then(|s| {
                let modern = s.protocol.as_deref() == Some(crate::STATELESS_REVISION);
                // a tool whose arguments go in headers too goes through rmcp's client
                let lean = s.lean.clone().filter(|_| {
                    s.header_tools.is_empty() || !s.header_tools.contains(cleared.tool())
                });
                s.peer.clone().map(|p| (p, lean, modern))
            })
            .ok_or_else(|| UpstreamError::Unavailable {
                upstream: name.clone(),
                message: link
                    .state
                    .read()
                    .ok()
                    .and_then(|s| s.last_error.clone())
                    .unwrap_or_else(|| "not connected".to_owned()),
            })?;
        // the lean client reads one answer; a call that wants progress reports goes
        // through rmcp's client, which reads the upstream's stream as it comes
        // (and so does one that resumes after the upstream asked for input)
        if let Some(lean) =
            lean.filter(|_| cleared.progress().is_none() && cleared.resume().is_none())
        {
            let answer = lean
                .call(cleared.tool(), cleared.args(), cleared.capabilities())
                .await;
            if let Err(e) = &answer
                && let Ok(mut s) = link.state.write()
            {
                s.last_error = Some(e.to_string());
            }
            return answer;
        }
        let mut params = CallToolRequestParams::new(cleared.tool().to_owned())
            .with_arguments(cleared.args().clone());
        if let Some(resume) = cleared.resume() {
            params.input_responses = resume
                .input_responses
                .as_ref()
                .map(|m| m.clone().into_iter().collect());
            params.request_state.clone_from(&resume.request_state);
        }
        let timeout = link.config.timeout;
        // a 2026-07-28 upstream hears the agent's capabilities, not remit's own: its input
        // requests go to the agent
        let declared = cleared.capabilities().filter(|_| modern).map(|declared| {
            let mut meta = rmcp::model::RequestMetaObject::default();
            meta.0.0.insert(
                "io.modelcontextprotocol/clientCapabilities".to_owned(),
                Value::Object(declared.clone()),
            );
            meta
        });
        // one way for every call rmcp's client sends: rmcp's own timeout, which also tells
        // the upstream (`notifications/cancelled`) that remit gave up. Boxed: rmcp's call is
        // a large future, and inline it made every call's future (boxed per call, lean or
        // not) as large, a few kilobytes copied each time
        let answer = Box::pin(crate::progress::call_tool(
            &peer,
            cleared
                .progress()
                .map(|to| (&link.progress, Arc::clone(to))),
            params,
            declared,
            timeout,
        ))
        .await;
        match answer {
            Err(rmcp::service::ServiceError::Timeout { .. }) => Err(UpstreamError::Timeout {
                upstream: name,
                seconds: timeout.as_secs(),
            }),
            Ok(response) => {
                let result = match response {
                    CallToolResponse::Complete(result) => serde_json::to_value(&result),
                    // the tool needs the agent's input first: the agent gets the request
                    // and the upstream's sealed state, and resumes with its answers
                    CallToolResponse::InputRequired(asked) => serde_json::to_value(&asked),
                    _ => {
                        return Err(UpstreamError::Protocol {
                            upstream: name,
                            message:
                                "the upstream answered with a task, which remit does not support"
                                    .to_owned(),
                        });
                    }
                };
                result.map_err(|e| UpstreamError::Protocol {
                    upstream: name,
                    message: e.to_string(),
                })
            }
            Err(e) => {
                use rmcp::service::ServiceError;
                let err = match e {
                    ServiceError::McpError(data) => UpstreamError::Rejected {
                        upstream: name,
                        code: i64::from(data.code.0),
                        message: data.message.to_string(),
                        data: data.data,
                    },
                    ServiceError::TransportSend(_) => {
                        link.reconnect.notify_one();
                        UpstreamError::Unavailable {
                            upstream: name,
                            message: "the request could not be sent".to_owned(),
                        }
                    }
                    ServiceError::TransportClosed => {
                        link.reconnect.notify_one();
                        UpstreamError::Lost { upstream: name }
                    }
                    other => UpstreamError::Protocol {
                        upstream: name,
                        message: other.to_string(),
                    },
                };
                if let Ok(mut s) = link.state.write() {
                    s.last_error = Some(err.to_string());
                }
                Err(err)
            }
        }
    }

    fn health(&self) -> Vec<UpstreamHealth> {
        self.links
            .values()
            .filter_map(|l| {
                let s = l.state.read().ok()?;
                Some(UpstreamHealth {
                    upstream: l.config.name.clone(),
                    up: s.peer.is_some(),
                    protocol: s.protocol.clone(),
                    tools: s.tools.len(),
                    restarts: s.restarts.saturating_sub(1),
                    last_error: s.last_error.clone(),
                })
            })
            .collect()
    }
}
