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
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How long an upstream may take to answer the MCP handshake (and then `tools/list`) before
/// it counts as down.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How long an upstream whose call timed out has to answer a `ping` before it counts as hung
/// (and is restarted or reconnected); one that answers was only slow with that call.
const PING: Duration = Duration::from_secs(5);

/// How long a connection must last for the next reconnection to start again from the
/// shortest backoff: an upstream that keeps dying right after it connects backs off.
const STEADY: Duration = Duration::from_secs(10);

/// How long a call through rmcp's client may take past its timeout before remit ends it
/// itself: rmcp's own timeout starts only once the request is written.
const SEND_GRACE: Duration = Duration::from_secs(1);

/// How long [`McpUpstreams::shutdown`] waits for the upstreams to close: a child that ignores
/// its stdin closing is sent `SIGTERM` after 3 s and `SIGKILL` 3 s later (rmcp's sequence).
const SHUTDOWN: Duration = Duration::from_secs(10);

/// Every upstream of the register, each behind a supervised MCP client.
pub struct McpUpstreams {
    links: BTreeMap<UpstreamName, Arc<Link>>,
    changes: watch::Sender<u64>,
    /// Set once by [`McpUpstreams::shutdown`]: every supervisor closes its upstream and ends.
    stop: watch::Sender<bool>,
    supervisors: std::sync::Mutex<Vec<(UpstreamName, tokio::task::JoinHandle<()>)>>,
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
    /// Its credentials as text, scrubbed from every error kept or logged ([`secret_words`]).
    secrets: Vec<String>,
    /// Set when a call timed out and the upstream has not answered anything since: it is
    /// not reported up, and a `ping` decides whether it is hung ([`Link::suspect`]).
    unanswered: AtomicBool,
    state: RwLock<LinkState>,
    reconnect: Notify,
    /// Calls on this upstream whose agents asked for progress.
    progress: Arc<crate::progress::Waiting>,
    /// The endings of process groups its children left ([`crate::group::end`]), which a
    /// shutdown waits for.
    ends: tokio_util::task::TaskTracker,
    /// The process groups its children lead, until each has been ended: what a shutdown
    /// that runs out of time kills.
    groups: crate::group::Groups,
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
        mut params: rmcp::model::ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // a report's words reach the agent as a result's do: without the upstream's credentials
        if let Some(message) = &mut params.message {
            redact_secrets_in(message, &self.link.secrets);
        }
        self.link.progress.deliver(params);
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        let link = Arc::clone(&self.link);
        let changes = self.changes.clone();
        let peer = context.peer;
        tokio::spawn(async move {
            if let Ok(Ok(tools)) = tokio::time::timeout(
                HANDSHAKE,
                list_tools(&link.config.name, &peer, http_url(&link.config)),
            )
            .await
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
        let (stop, _) = watch::channel(false);
        let mut links = BTreeMap::new();
        let mut supervisors = Vec::new();
        for config in upstreams {
            let link = Arc::new(Link {
                secrets: secret_words(&config),
                unanswered: AtomicBool::new(false),
                config,
                state: RwLock::new(LinkState::default()),
                reconnect: Notify::new(),
                progress: Arc::default(),
                ends: tokio_util::task::TaskTracker::new(),
                groups: crate::group::Groups::default(),
            });
            links.insert(link.config.name.clone(), Arc::clone(&link));
            supervisors.push((
                link.config.name.clone(),
                tokio::spawn(supervise(link, changes.clone(), stop.subscribe())),
            ));
        }
        Arc::new(Self {
            links,
            changes,
            stop,
            supervisors: std::sync::Mutex::new(supervisors),
        })
    }

    /// Closes every upstream and waits (at most 10 s) until each is closed: a child's stdin
    /// is closed, and its process group is sent `SIGTERM` after 3 s and `SIGKILL` 3 s later
    /// if it has not exited. If the 10 s run out, every child's process group still alive is
    /// sent `SIGKILL`. Upstreams are not started again after this.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let mut supervisors = match self.supervisors.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return,
        };
        let all = async {
            // they run at once; each is awaited in turn
            for (_, supervisor) in &mut supervisors {
                let _ = supervisor.await;
            }
            // and what a child that exited on its own just before left in its group
            for link in self.links.values() {
                link.ends.close();
                link.ends.wait().await;
            }
        };
        if tokio::time::timeout(SHUTDOWN, all).await.is_ok() {
            return;
        }
        // rmcp's close can wait forever (for a write to a child that stopped reading its
        // stdin), and then never signals the child: what is left would outlive remit
        let open: Vec<&str> = supervisors
            .iter()
            .filter(|(_, s)| !s.is_finished())
            .map(|(name, _)| name.as_str())
            .chain(
                self.links
                    .values()
                    .filter(|l| !l.ends.is_empty())
                    .map(|l| l.config.name.as_str()),
            )
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let killed: Vec<&str> = self
            .links
            .values()
            .filter(|l| l.groups.kill())
            .map(|l| l.config.name.as_str())
            .collect();
        if killed.is_empty() {
            tracing::warn!(
                "upstreams not closed within {}s: {}; none of them had a child process left to kill",
                SHUTDOWN.as_secs(),
                open.join(", ")
            );
        } else {
            tracing::warn!(
                "upstreams not closed within {}s: {}; sent SIGKILL to the process groups of {}",
                SHUTDOWN.as_secs(),
                open.join(", "),
                killed.join(", ")
            );
        }
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

/// What a failed POST of a call to an HTTP upstream means for the call.
///
/// rmcp's HTTP client reports as one error everything from a connection that could not be
/// opened (the call was never sent) to an HTTP 500 or a connection dropped after the POST
/// went out (the upstream may well have run the call). Only a failure that certainly came
/// before the upstream took the call is reported as not sent; everything else may have run.
/// The message names no URL or header (an HTTP client's errors print the URL, which may
/// carry a credential).
fn post_failure(upstream: String, error: &rmcp::transport::DynamicTransportError) -> UpstreamError {
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    let known = error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>();
    let what = match known {
        Some(StreamableHttpError::Client(e)) if e.is_redirect() => match redirect_of(e) {
            Some(redirect) => redirect.to_string(),
            None => "a redirect, which remit does not follow".to_owned(),
        },
        Some(StreamableHttpError::Client(e)) if e.is_connect() => {
            return UpstreamError::Unavailable {
                upstream,
                message: "could not connect; the call was not sent".to_owned(),
            };
        }
        Some(StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_)) => {
            return UpstreamError::Unavailable {
                upstream,
                message: "the upstream refused remit's credentials; the call did not run"
                    .to_owned(),
            };
        }
        Some(StreamableHttpError::HttpStatus(status)) => format!("HTTP {}", status.status),
        Some(StreamableHttpError::Client(e)) if e.is_timeout() => "no answer in time".to_owned(),
        Some(StreamableHttpError::Client(_) | StreamableHttpError::Io(_)) => {
            return UpstreamError::Lost { upstream };
        }
        Some(_) | None => "an answer remit could not read".to_owned(),
    };
    UpstreamError::Protocol {
        upstream,
        message: format!("the call was sent and failed ({what}); it may or may not have run"),
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

/// An open connection to an upstream, and for a stdio one the process group its child leads.
type Connection = (
    RunningService<RoleClient, UpstreamClient>,
    Option<crate::group::Group>,
);

async fn connect(link: &Arc<Link>, changes: &watch::Sender<u64>) -> Result<Connection, String> {
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
            let mut cmd = process_wrap::tokio::CommandWrap::from(cmd);
            // its own process group: rmcp's SIGTERM and SIGKILL then reach whatever the
            // child started too (a wrapper script's server), not the child alone
            #[cfg(unix)]
            cmd.wrap(process_wrap::tokio::ProcessGroup::leader());
            // its stderr goes to remit's log, line by line, named and scrubbed; inherited, it
            // reached remit's own stderr (a `remit stdio` client's log) as the child wrote it
            let (transport, stderr) = TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("could not start `{program}`: {e}"))?;
            let group = transport
                .id()
                .map(|pid| crate::group::Group::started(pid, &link.groups));
            if let Some(stderr) = stderr {
                tokio::spawn(crate::stderr::relay(
                    stderr,
                    link.config.name.clone(),
                    link.secrets.clone(),
                ));
            }
            let running = client
                .serve_with_lifecycle(transport, mode)
                .await
                .map_err(|e| crate::unreached::handshake(&e, None))?;
            Ok((running, group))
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
            // rmcp's own client follows a same-origin 307 or 308; remit follows none (see
            // `lean::Redirected`), and keeps rmcp's other default: no idle connections
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .redirect(crate::lean::refuse_redirects())
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
            let transport = StreamableHttpClientTransport::with_client(http, config);
            client
                .serve_with_lifecycle(transport, mode)
                .await
                .map(|running| (running, None))
                .map_err(|e| crate::unreached::handshake(&e, Some(url.expose())))
        }
    }
}

/// The redirect an error of rmcp's HTTP client comes from, if it does (rmcp's
/// `StreamableHttpError::Client` does not name the reqwest error as its source).
pub(crate) fn redirect_of<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::lean::Redirected> {
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(StreamableHttpError::Client(client)) =
            e.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            return crate::lean::redirect_in(client);
        }
        if let Some(redirect) = e.downcast_ref::<crate::lean::Redirected>() {
            return Some(redirect);
        }
        next = e.source();
    }
    None
}

/// The shortest value counted as a secret when scrubbing text; shorter ones would blank
/// out ordinary words.
const SHORTEST_SECRET: usize = 4;

/// The parts of an upstream URL that may be credentials: the URL itself (as written and as
/// parsed) when `whole`, its query, each query value, and the password of its user info.
fn secret_words_of_url(url: &str, whole: bool) -> Vec<String> {
    let mut words = Vec::new();
    let parsed = reqwest::Url::parse(url);
    if whole || parsed.is_err() {
        words.push(url.to_owned());
    }
    if let Ok(parsed) = parsed {
        if whole {
            words.push(parsed.as_str().to_owned());
        }
        if let Some(password) = parsed.password() {
            words.push(password.to_owned());
        }
        if let Some(query) = parsed.query() {
            words.push(query.to_owned());
            for (_, value) in parsed.query_pairs() {
                words.push(value.into_owned());
            }
        }
    }
    words
}

/// Every credential an upstream is given, as text that must not appear in a log or an
/// error: its URL and the parts of it that may be credentials, its headers' values (and
/// the value after a scheme such as `Bearer `), its environment's values.
pub fn secret_words(upstream: &Upstream) -> Vec<String> {
    let mut words = Vec::new();
    // a value written in the register (`MODE = "fast"`) is no credential: scrubbing it
    // would turn an upstream's "fast" into "[redacted]" wherever it appears
    match &upstream.transport {
        Transport::Stdio { env, .. } => {
            words.extend(
                env.iter()
                    .filter(|(_, v)| !v.is_written_in_register())
                    .map(|(_, v)| v.expose().to_owned()),
            );
        }
        Transport::Http { url, headers } => {
            // an address written in the register is no credential, only its password and
            // query may be: scrubbing the address itself would cut links to the upstream
            // out of its results
            words.extend(secret_words_of_url(
                url.expose(),
                !url.is_written_in_register(),
            ));
            for (_, v) in headers.iter().filter(|(_, v)| !v.is_written_in_register()) {
                let value = v.expose();
                words.push(value.to_owned());
                if let Some((_, credential)) = value.split_once(' ') {
                    words.push(credential.trim().to_owned());
                }
            }
        }
    }
    words.retain(|w| w.len() >= SHORTEST_SECRET);
    // longest first: a secret that contains another is replaced whole
    words.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    words.dedup();
    words
}

/// `text` with every one of `secrets` (at least 4 bytes long) replaced by `[redacted]`.
pub fn redact_secrets(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    redact_secrets_in(&mut out, secrets);
    out
}

/// [`redact_secrets`] in place: `text` is rewritten only where one of `secrets` occurs.
fn redact_secrets_in(text: &mut String, secrets: &[String]) {
    for secret in secrets {
        if secret.len() >= SHORTEST_SECRET && text.contains(secret.as_str()) {
            *text = text.replace(secret.as_str(), "[redacted]");
        }
    }
}

async fn list_tools(
    name: &UpstreamName,
    peer: &Peer<RoleClient>,
    url: Option<&str>,
) -> Result<Vec<ToolSpec>, String> {
    let tools = peer
        .list_all_tools()
        .await
        .map_err(|e| crate::unreached::request(&e, url, "tools/list"))?;
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

/// An HTTP upstream's URL; `None` for a child process.
fn http_url(config: &Upstream) -> Option<&str> {
    match &config.transport {
        Transport::Http { url, .. } => Some(url.expose()),
        Transport::Stdio { .. } => None,
    }
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

/// Ends once a shutdown is asked (or the upstreams are dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn supervise(link: Arc<Link>, changes: watch::Sender<u64>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        // an attempt cut short by a shutdown drops its child, which rmcp then kills
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(HANDSHAKE, connect(&link, &changes)) => attempt,
            () = stopped(&mut stop) => return,
        };
        let attempt = attempt.unwrap_or_else(|_| {
            Err(format!(
                "no answer to the MCP handshake within {}s",
                HANDSHAKE.as_secs()
            ))
        });
        // an upstream that answers the handshake but never its `tools/list` is down too:
        // dropping its connection ends the child, and it is tried again like any other
        let attempt = match attempt {
            Ok((running, group)) => {
                let peer = running.peer().clone();
                let listed = tokio::select! {
                    listed = tokio::time::timeout(HANDSHAKE, list_tools(&link.config.name, &peer, http_url(&link.config))) => listed,
                    () = stopped(&mut stop) => {
                        // a shutdown waits for this connection to close like any other
                        running.cancellation_token().cancel();
                        let _ = running.waiting().await;
                        crate::group::end(group).await;
                        return;
                    }
                };
                match listed {
                    Ok(tools) => Ok((running, group, peer, tools)),
                    Err(_) => Err(format!(
                        "no answer to tools/list within {}s",
                        HANDSHAKE.as_secs()
                    )),
                }
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok((running, group, peer, tools)) => {
                let protocol = peer.peer_info().map(|i| i.protocol_version.to_string());
                let lean = lean_for(&link.config, protocol.as_deref());
                let ok = tools.is_ok();
                if let Ok(mut s) = link.state.write() {
                    // a restart asked for before this connection is published was about an
                    // older one (a call that failed as its child exited): dropped, or it would
                    // end this connection as soon as it is up. Under the lock, which a call
                    // holds while it asks (`Link::reconnect_if_current`). The `Notified` is
                    // dropped at once: one left waiting would take the next request.
                    {
                        let stale = link.reconnect.notified();
                        tokio::pin!(stale);
                        stale.as_mut().enable();
                    }
                    match tools {
                        Ok(t) => {
                            s.set_tools(t);
                            s.last_error = None;
                        }
                        Err(e) => {
                            s.last_error = Some(redact_secrets(&e, &link.secrets));
                        }
                    }
                    s.peer = Some(peer);
                    link.progress.new_connection();
                    s.lean = lean;
                    s.protocol = protocol;
                    s.restarts += 1;
                    link.unanswered.store(false, Ordering::Relaxed);
                }
                changes.send_modify(|g| *g += 1);
                tracing::info!(upstream = %link.config.name, "upstream connected");
                let connected = tokio::time::Instant::now();
                let token = running.cancellation_token();
                let mut ended = Box::pin(running.waiting());
                let stopping = tokio::select! {
                    _ = &mut ended => {
                        // the child exited on its own (or the server dropped the
                        // connection): what it started may still run in its group
                        link.ends.spawn(crate::group::end(group));
                        false
                    }
                    () = link.reconnect.notified() => {
                        // rmcp closes the connection in the background; what is left of
                        // the group once it is closed is ended then, the restart goes on
                        token.cancel();
                        link.ends.spawn(async move {
                            let _ = ended.await;
                            crate::group::end(group).await;
                        });
                        false
                    }
                    () = stopped(&mut stop) => {
                        // rmcp closes the connection: for a child, stdin closed, then
                        // SIGTERM and SIGKILL to its group; wait for it to be done, and
                        // for what a child that exited at once left in its group
                        token.cancel();
                        let _ = (&mut ended).await;
                        crate::group::end(group).await;
                        true
                    }
                };
                if stopping {
                    return;
                }
                // only a connection that lasted resets the backoff: a child that exits (or a
                // server that drops the connection) right after connecting is not restarted
                // four times a second forever
                if ok && connected.elapsed() >= STEADY {
                    backoff = Duration::from_millis(250);
                }
                if let Ok(mut s) = link.state.write() {
                    s.peer = None;
                    s.lean = None;
                    s.set_tools(Vec::new());
                    link.unanswered.store(false, Ordering::Relaxed);
                    if s.last_error.is_none() {
                        s.last_error = Some("connection closed".to_owned());
                    }
                }
                changes.send_modify(|g| *g += 1);
                tracing::warn!(upstream = %link.config.name, "upstream disconnected; reconnecting");
            }
            Err(e) => {
                let e = redact_secrets(&e, &link.secrets);
                tracing::warn!(upstream = %link.config.name, error = %e, "upstream unavailable");
                if let Ok(mut s) = link.state.write() {
                    s.last_error = Some(e);
                }
                changes.send_modify(|g| *g += 1);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

impl Link {
    /// After a call timed out: the upstream is not reported up until it answers again, and
    /// if it does not answer a `ping` within [`PING`] it is hung, and its connection is
    /// dropped (a child is ended and started again; an HTTP upstream is reconnected), so
    /// calls stop waiting on it. One that answers the ping was only slow with that call.
    fn suspect(self: &Arc<Self>, peer: Peer<RoleClient>, error: &UpstreamError) {
        let generation = match self.state.write() {
            Ok(mut s) => {
                s.last_error = Some(error.to_string());
                self.unanswered.store(true, Ordering::Relaxed);
                s.restarts
            }
            Err(_) => return,
        };
        let link = Arc::clone(self);
        tokio::spawn(async move {
            let ping = rmcp::model::ClientRequest::PingRequest(rmcp::model::PingRequest::default());
            let answered = match tokio::time::timeout(PING, peer.send_request(ping)).await {
                // an error answer is an answer too: the upstream is alive
                Ok(Ok(_) | Err(rmcp::service::ServiceError::McpError(_))) => true,
                Ok(Err(_)) | Err(_) => false,
            };
            let Ok(mut s) = link.state.write() else {
                return;
            };
            // a newer connection is none of this ping's business
            if s.restarts != generation || s.peer.is_none() {
                return;
            }
            if answered {
                link.unanswered.store(false, Ordering::Relaxed);
            } else if link.unanswered.load(Ordering::Relaxed) {
                s.last_error = Some(format!(
                    "a call timed out and a ping had no answer within {}s: the upstream hangs; restarting it",
                    PING.as_secs()
                ));
                // asked under the lock, as `reconnect_if_current` does
                link.reconnect.notify_one();
                drop(s);
                tracing::warn!(upstream = %link.config.name, "upstream hangs; restarting it");
            }
        });
    }

    /// Asks the supervisor to drop the connection and connect again, if the connection a
    /// failed call used (`generation`, its [`LinkState::restarts`]) is still the current one:
    /// a late failure on an older connection does not end a newer one.
    fn reconnect_if_current(&self, generation: u64) {
        if let Ok(s) = self.state.read()
            && s.restarts == generation
        {
            // asked while the lock is held: the supervisor drops requests from before a
            // connection is published under the same lock (so one asked between two
            // connections is dropped too)
            self.reconnect.notify_one();
        }
    }

    /// The upstream answered a call: it is up.
    fn answered(&self) {
        if self.unanswered.load(Ordering::Relaxed) {
            self.unanswered.store(false, Ordering::Relaxed);
        }
    }
}

impl Link {
    /// Sends one call to this upstream, by the lean client when it can, else rmcp's.
    async fn call(self: &Arc<Self>, cleared: Cleared) -> Result<Value, UpstreamError> {
        let link = self;
        let name = cleared.upstream().to_string();
        let (peer, lean, modern, generation) = link
            .state
            .read()
            .ok()
            .and_then(|s| {
                let modern = s.protocol.as_deref() == Some(crate::STATELESS_REVISION);
                // a tool whose arguments go in headers too goes through rmcp's client
                let lean = s.lean.clone().filter(|_| {
                    s.header_tools.is_empty() || !s.header_tools.contains(cleared.tool())
                });
                s.peer.clone().map(|p| (p, lean, modern, s.restarts))
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
            match &answer {
                Ok(_) => link.answered(),
                Err(e @ UpstreamError::Timeout { .. }) => link.suspect(peer, e),
                // a call's own rejection says nothing of the connection (and may quote the
                // agent's arguments): only the connection's errors are kept for health
                Err(UpstreamError::Rejected { .. }) => {}
                Err(e) => link.failed(e),
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
        let call = Box::pin(crate::progress::call_tool(
            &peer,
            cleared
                .progress()
                .map(|to| (&link.progress, Arc::clone(to))),
            params,
            declared,
            timeout,
        ));
        // rmcp's timeout counts from the request's send: a child that stopped reading its
        // stdin holds the send (and rmcp's cancellation behind it) for ever. The call ends
        // at its timeout and a moment's grace whatever rmcp is waiting for, and the upstream
        // is suspected as for any timeout
        let answer = tokio::time::timeout(timeout.saturating_add(SEND_GRACE), call)
            .await
            .unwrap_or(Err(rmcp::service::ServiceError::Timeout { timeout }));
        match answer {
            Err(rmcp::service::ServiceError::Timeout { .. }) => {
                let err = UpstreamError::Timeout {
                    upstream: name,
                    seconds: timeout.as_secs(),
                };
                link.suspect(peer, &err);
                Err(err)
            }
            Ok(response) => {
                link.answered();
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
                    ServiceError::TransportSend(e) => {
                        link.reconnect_if_current(generation);
                        match &link.config.transport {
                            // the child's stdin could not be written: it never got the call
                            Transport::Stdio { .. } => UpstreamError::Unavailable {
                                upstream: name,
                                message: "the request could not be sent".to_owned(),
                            },
                            // over HTTP the "send" is the whole POST, answer included
                            Transport::Http { .. } => post_failure(name, &e),
                        }
                    }
                    ServiceError::TransportClosed => {
                        link.reconnect_if_current(generation);
                        UpstreamError::Lost { upstream: name }
                    }
                    other => UpstreamError::Protocol {
                        upstream: name,
                        message: other.to_string(),
                    },
                };
                if !matches!(err, UpstreamError::Rejected { .. }) {
                    link.failed(&err);
                }
                Err(err)
            }
        }
    }

    /// Keeps `e`, without the upstream's credentials, as the upstream's last error.
    fn failed(&self, e: &UpstreamError) {
        if let Ok(mut s) = self.state.write() {
            s.last_error = Some(redact_secrets(&e.to_string(), &self.secrets));
        }
    }
}

/// `e` with each of `secrets` replaced in its message (and a rejection's `data`).
fn without_secrets(e: UpstreamError, secrets: &[String]) -> UpstreamError {
    match e {
        UpstreamError::Rejected {
            upstream,
            code,
            message,
            data,
        } => UpstreamError::Rejected {
            upstream,
            code,
            message: redact_secrets(&message, secrets),
            data: data.map(|mut data| {
                redact_value(&mut data, secrets);
                data
            }),
        },
        UpstreamError::Unavailable { upstream, message } => UpstreamError::Unavailable {
            upstream,
            message: redact_secrets(&message, secrets),
        },
        UpstreamError::Protocol { upstream, message } => UpstreamError::Protocol {
            upstream,
            message: redact_secrets(&message, secrets),
        },
        other => other,
    }
}

/// Every string value in `value` through [`redact_secrets_in`] (keys are names, left as they are).
fn redact_value(value: &mut Value, secrets: &[String]) {
    match value {
        // most strings hold none, and are left as they are
        Value::String(s) => redact_secrets_in(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_value(v, secrets)),
        _ => {}
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
        let link = self
            .links
            .get(cleared.upstream())
            .ok_or_else(|| UpstreamError::Unknown(cleared.upstream().to_string()))?;
        // an upstream's error or result may quote its own credentials ("invalid key
        // sk-...", a config tool that shows its key): the agent, and the audit, get it
        // without them
        match link.call(cleared).await {
            Ok(mut result) => {
                if !link.secrets.is_empty() {
                    redact_value(&mut result, &link.secrets);
                }
                Ok(result)
            }
            Err(e) => Err(without_secrets(e, &link.secrets)),
        }
    }

    fn health(&self) -> Vec<UpstreamHealth> {
        self.links
            .values()
            .filter_map(|l| {
                let s = l.state.read().ok()?;
                Some(UpstreamHealth {
                    upstream: l.config.name.clone(),
                    up: s.peer.is_some() && !l.unanswered.load(Ordering::Relaxed),
                    protocol: s.protocol.clone(),
                    tools: s.tools.len(),
                    restarts: s.restarts.saturating_sub(1),
                    last_error: s.last_error.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remit_core::register::{Position, Secret};

    fn link() -> Link {
        Link {
            config: Upstream {
                name: UpstreamName::new("u"),
                transport: Transport::Stdio {
                    command: vec!["true".to_owned()],
                    env: Vec::new(),
                    cwd: std::path::PathBuf::from("/"),
                },
                protocol: Protocol::Legacy,
                namespace: true,
                timeout: Duration::from_secs(1),
                at: Position::default(),
            },
            secrets: Vec::new(),
            unanswered: AtomicBool::new(false),
            state: RwLock::new(LinkState::default()),
            reconnect: Notify::new(),
            progress: Arc::default(),
            ends: tokio_util::task::TaskTracker::new(),
            groups: crate::group::Groups::default(),
        }
    }

    #[test]
    fn values_written_in_the_register_are_not_scrubbed_as_credentials() {
        // `MODE = "fast"` was a secret word: an upstream's "fast" became "[redacted]" in the
        // errors agents and the audit get
        let mut link = link();
        link.config.transport = Transport::Stdio {
            command: vec!["true".to_owned()],
            env: vec![
                ("MODE".to_owned(), Secret::written("information")),
                ("API_KEY".to_owned(), Secret::new("sk-live-0123456789")),
            ],
            cwd: std::path::PathBuf::from("/"),
        };
        assert_eq!(secret_words(&link.config), ["sk-live-0123456789"]);
        link.config.transport = Transport::Http {
            url: Secret::written("http://127.0.0.1:1/mcp"),
            headers: vec![
                ("X-Tenant".to_owned(), Secret::written("acme-information")),
                (
                    "Authorization".to_owned(),
                    Secret::new("Bearer tok-0123456789"),
                ),
            ],
        };
        let words = secret_words(&link.config);
        assert!(words.contains(&"tok-0123456789".to_owned()), "{words:?}");
        assert!(
            words.contains(&"Bearer tok-0123456789".to_owned()),
            "{words:?}"
        );
        assert!(!words.iter().any(|w| w.contains("acme")), "{words:?}");
        // an address written in the register is no credential either (a result that links
        // to the upstream keeps its links); a password or query in it still is
        assert!(!words.iter().any(|w| w.contains("127.0.0.1")), "{words:?}");
        for (url, word) in [
            (
                "http://remit:pw-0123456789@127.0.0.1:1/mcp",
                "pw-0123456789",
            ),
            ("http://127.0.0.1:1/mcp?key=q-0123456789", "q-0123456789"),
        ] {
            link.config.transport = Transport::Http {
                url: Secret::written(url),
                headers: Vec::new(),
            };
            let words = secret_words(&link.config);
            assert!(words.contains(&word.to_owned()), "{words:?}");
            assert!(!words.contains(&url.to_owned()), "{words:?}");
        }
        // one read from the environment may be a credential in itself, path and all
        link.config.transport = Transport::Http {
            url: Secret::new("https://hooks.example/T0123/s3cr3t-path"),
            headers: Vec::new(),
        };
        let env_words = secret_words(&link.config);
        assert!(
            env_words.contains(&"https://hooks.example/T0123/s3cr3t-path".to_owned()),
            "{env_words:?}"
        );
        let error = without_secrets(
            UpstreamError::Rejected {
                upstream: "u".to_owned(),
                code: -32603,
                message: "no information for key tok-0123456789".to_owned(),
                data: Some(serde_json::json!({ "information": "tok-0123456789" })),
            },
            &words,
        );
        let UpstreamError::Rejected { message, data, .. } = error else {
            panic!("{error:?}")
        };
        assert_eq!(message, "no information for key [redacted]");
        assert_eq!(
            data,
            Some(serde_json::json!({ "information": "[redacted]" }))
        );
    }

    /// Whether a restart was asked for (taking the request).
    fn asked(link: &Link) -> bool {
        let request = link.reconnect.notified();
        tokio::pin!(request);
        request.as_mut().enable()
    }

    #[tokio::test]
    async fn a_failure_on_an_older_connection_asks_no_restart_of_the_current_one() {
        let link = link();
        link.state.write().unwrap().restarts = 2;
        link.reconnect_if_current(1);
        assert!(
            !asked(&link),
            "an older connection's failure restarted the current one"
        );
        link.reconnect_if_current(2);
        assert!(
            asked(&link),
            "the current connection's failure asked for no restart"
        );
        assert!(!asked(&link), "one request, taken once");
    }
}
