//! The HTTP service: `/mcp` behind its guard, `POST /v1/calls`, `/v1/openapi.json`, `/health`.

use crate::auth_limit::{AuthFailures, Peer};
use crate::short_http::body_read_timeout;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt as _;
use remit_core::decision::{Refusal, retry_after_seconds};
use remit_core::ids::RunId;
use remit_core::pipeline::{Call, Caller, Credential, Entry, Gateway, Outcome};
use remit_core::wire::check_strict_json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::{OpenApi, ToSchema};

#[derive(Clone)]
struct AppState {
    gateway: Arc<Gateway>,
    upstreams: Arc<remit_mcp::McpUpstreams>,
    max_body: usize,
    short_way: Arc<remit_mcp::ShortWay>,
    auth_failures: Arc<AuthFailures>,
    /// The 2025-11-25 sessions at `/mcp`, each its opening agent's.
    sessions: Arc<remit_mcp::AgentSessions>,
    status_token: remit_core::audit::checkpoint::StatusToken,
    /// Why checkpoints cannot be signed now, if they cannot.
    signing_error: Arc<std::sync::Mutex<Option<String>>>,
}

/// The OpenAPI document of `/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "remit", description = "A gateway that lets AI agents act in production safely: the HTTP API for agents that do not speak MCP."),
    paths(post_call, health),
    components(schemas(CallRequest, CallResponse, ApiError, Health)),
    modifiers(&BearerAuth)
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// remit's HTTP service: `/mcp` behind its guard (with the short way), the rest through the router.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    state: AppState,
    /// `/mcp` (rmcp), `/v1/calls`, `/v1/openapi.json` and `/health`.
    router: Router,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// Builds the HTTP service over a running gateway.
pub fn app(runtime: &crate::Runtime) -> App {
    let gateway = Arc::clone(&runtime.gateway);
    let max_body =
        usize::try_from(gateway.register().gateway.max_request_bytes).unwrap_or(usize::MAX);
    let hosts = allowed_hosts(&gateway.register().gateway);
    let sessions = Arc::new(remit_mcp::AgentSessions::with_limit(
        gateway.register().gateway.max_sessions_per_agent,
    ));
    let state = AppState {
        gateway: Arc::clone(&gateway),
        upstreams: Arc::clone(&runtime.upstreams),
        max_body,
        short_way: Arc::new(remit_mcp::ShortWay::new(&hosts)),
        auth_failures: Arc::default(),
        sessions: Arc::clone(&sessions),
        status_token: runtime.status_token,
        signing_error: Arc::clone(&runtime.signing_error),
    };
    let mcp = remit_mcp::http_service(Arc::clone(&gateway), hosts, max_body, sessions);
    let router = Router::new()
        .nest_service("/mcp", mcp)
        .route("/v1/calls", post(post_call).fallback(method_not_allowed))
        .route("/v1/openapi.json", get(openapi).fallback(get_only))
        .route("/health", get(health).fallback(get_only))
        .fallback(not_found)
        .with_state(state.clone());
    App {
        inner: Arc::new(AppInner { state, router }),
    }
}

impl App {
    /// Largest request body remit reads, in bytes.
    pub(crate) fn max_body(&self) -> usize {
        self.inner.state.max_body
    }

    /// Whether these request headers carry a known agent's credential.
    ///
    /// The short way asks before it reads a body: any other caller's request goes to the
    /// full service, which refuses it (and counts it against the address) unread.
    pub(crate) fn authenticates(&self, headers: &[httparse::Header<'_>]) -> bool {
        self.inner
            .state
            .gateway
            .authenticate(&remit_mcp::bearer_in(headers))
            .is_ok()
    }

    /// The answer to a `POST /mcp` with these headers and body, if it is a plain stateless call.
    ///
    /// For a request whose headers [`App::authenticates`] accepted (the pipeline checks the
    /// credential again, as for every call). `None` leaves the request to the full service,
    /// which gives every other answer.
    pub(crate) fn plain_call(
        &self,
        headers: &[httparse::Header<'_>],
        body: &[u8],
    ) -> Option<impl Future<Output = (StatusCode, Vec<u8>)> + Send + 'static> {
        short_way(&self.inner.state, &http::Method::POST, headers, body)
    }
}

/// The answer to a request the short way takes (a plain stateless `tools/call`), or `None`.
fn short_way<H: remit_mcp::Headers + ?Sized>(
    state: &AppState,
    method: &http::Method,
    headers: &H,
    body: &[u8],
) -> Option<impl Future<Output = (StatusCode, Vec<u8>)> + Send + 'static> {
    let call =
        remit_mcp::StatelessCall::parse(&state.short_way, &state.gateway, method, headers, body)?;
    Some(call.answer(Arc::clone(&state.gateway)))
}

impl tower::Service<Request> for App {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // the guard is called directly, not as a middleware layer: no router clone and
        // no boxed `Next` per request on the path every MCP call takes
        let inner = Arc::clone(&self.inner);
        if req.uri().path().starts_with("/mcp") {
            Box::pin(async move { Ok(guard_mcp(&inner, req).await) })
        } else {
            Box::pin(async move { Ok(forward(&inner, req).await) })
        }
    }
}

fn allowed_hosts(g: &remit_core::register::Gateway) -> Vec<String> {
    let listen = g.listen.as_str();
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some((host, _)) = listen.rsplit_once(':') {
        let host = host.trim_matches(['[', ']']);
        if host != "0.0.0.0" && host != "::" && !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_owned());
        }
    }
    hosts.extend(g.allowed_hosts.iter().cloned());
    hosts
}

/// The credential in a request's one `Authorization` header: two headers are no credential.
fn bearer(headers: &HeaderMap) -> Credential {
    remit_mcp::bearer_in(headers)
}

fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let resp = (
        status,
        Json(
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } }),
        ),
    )
        .into_response();
    challenged(status, resp)
}

/// What an address over its limit of failed authentications is told.
fn too_many_failures(wait: Duration) -> String {
    format!(
        "too many requests without a valid agent credential from this address; \
         retry in {} s with `Authorization: Bearer <token>`",
        wait.as_secs().max(1)
    )
}

/// `resp` with a `Retry-After` of `wait`, in whole seconds (at least one).
fn retry_after(wait: Duration, mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(retry_after_seconds(wait)),
    );
    resp
}

/// Before rmcp sees a request on `/mcp`: size limit, strict JSON (no duplicate keys), agent token;
/// a plain stateless `tools/call` is answered here, the rest by rmcp.
async fn guard_mcp(app: &AppInner, req: Request) -> Response {
    let state = &app.state;
    let agent = match state.gateway.authenticate(&bearer(req.headers())) {
        Ok(agent) => agent.id.clone(),
        Err(_) => return unauthenticated(state, &req),
    };
    // a session is reached only by the agent that opened it: rmcp is served inside the
    // agent's scope, where another agent's session is unknown; a `DELETE` of one that is
    // not the agent's (or of none) is answered here, as rmcp answers an unknown session
    if req.method() == http::Method::DELETE
        && req.headers().get_all("mcp-session-id").iter().any(|id| {
            id.to_str()
                .is_ok_and(|id| !state.sessions.belongs_to(id, &agent))
        })
    {
        return closing((StatusCode::NOT_FOUND, "Not Found: Session not found").into_response());
    }
    remit_mcp::AgentSessions::serving(agent, guarded_mcp(app, req)).await
}

/// The answer to a request on `/mcp` without a valid agent credential, its body unread.
fn unauthenticated(state: &AppState, req: &Request) -> Response {
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    closing(match state.auth_failures.failed(peer, Instant::now()) {
        None => jsonrpc_error(
            StatusCode::UNAUTHORIZED,
            -32001,
            "no valid agent credential; send one `Authorization: Bearer <token>` header",
        ),
        Some(wait) => retry_after(
            wait,
            jsonrpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                -32001,
                &too_many_failures(wait),
            ),
        ),
    })
}

/// `/mcp` for an authenticated agent: size limit, strict JSON, the short way, then rmcp.
async fn guarded_mcp(app: &AppInner, req: Request) -> Response {
    let state = &app.state;
    if req.method() != http::Method::POST {
        // rmcp answers a `GET` or `DELETE` without reading a body it was sent; hyper then
        // closes the connection, which the answer says so the client does not reuse it
        let unread = carries_body(req.headers());
        let answer = forward(app, req).await;
        return if unread { closing(answer) } else { answer };
    }
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, state.max_body).await {
        Ok(bytes) => bytes,
        Err(unread) => {
            let (status, message) = unread.answer(state.max_body);
            return closing(jsonrpc_error(status, -32600, &message));
        }
    };
    // the short way reads the body as strictly as check_strict_json does, in one pass
    if let Some(answer) = short_way(state, &parts.method, &parts.headers, &bytes) {
        let (status, body) = answer.await;
        return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    if let Err(e) = check_strict_json(&bytes) {
        return jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32700,
            &format!("invalid JSON: {e}"),
        );
    }
    let message = match check_jsonrpc_message(&bytes) {
        Ok(message) => message,
        Err(why) => return jsonrpc_error(StatusCode::BAD_REQUEST, -32600, &why),
    };
    // rmcp runs a request whose `_meta` names a revision with sessions without its session,
    // as if it were stateless: such a request is held to its session
    if !parts.headers.contains_key("mcp-session-id")
        && let Some(revision) = sessionless_request_of_a_session_revision(&message)
    {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let why = format!(
            "a {revision} request needs its session: send `initialize` first, then its \
             `Mcp-Session-Id` with each request; or speak {} (stateless)",
            remit_mcp::STATELESS_REVISION
        );
        return challenged(
            StatusCode::BAD_REQUEST,
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32600, "message": why } })),
            )
                .into_response(),
        );
    }
    // an agent at its limit of sessions opens no more: refused before rmcp creates one
    let opening = if parts.headers.contains_key("mcp-session-id") {
        None
    } else {
        opening_session(&message)
    };
    if let Some(id) = &opening
        && state.sessions.serving_agent_is_full()
    {
        return too_many_sessions(id, state.sessions.limit());
    }
    let answer = forward(app, Request::from_parts(parts, Body::from(bytes))).await;
    match opening {
        // one of `initialize`s racing for the last slot, past the check above: rmcp
        // created no session and answered 500; answered as the check would have
        Some(id) if remit_mcp::AgentSessions::serving_agent_was_refused() => {
            too_many_sessions(&id, state.sessions.limit())
        }
        _ => answer,
    }
}

/// Why a request's body was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unread {
    /// It is, or says it is, longer than the limit.
    TooLarge,
    /// It did not all arrive within [`body_read_timeout`].
    TimedOut,
    /// It could not be read as HTTP (a bad chunk, a connection ended midway).
    Malformed,
}

impl Unread {
    /// The status and message an agent is given for a body over `max_body` bytes or otherwise unread.
    fn answer(self, max_body: usize) -> (StatusCode, String) {
        match self {
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {max_body} bytes"),
            ),
            Self::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s of its head; send it whole, \
                     with the `Content-Length` it has",
                    body_read_timeout().as_secs_f64()
                ),
            ),
            Self::Malformed => (
                StatusCode::BAD_REQUEST,
                "malformed request body: it could not be read as HTTP/1.1 \
                 (a bad chunk, or the connection ended before its end)"
                    .to_owned(),
            ),
        }
    }
}

/// A request's body, at most `max_body` bytes, read within [`body_read_timeout`].
///
/// A body over the limit is refused, and the rest of it read and dropped for at most
/// [`DRAIN_TIME`] and [`DRAIN_FACTOR`] times the limit before the answer: a client still
/// sending when the connection closes would see it reset, not the `413` that says why. One
/// that declares more than that (`Content-Length`) is refused before any of it is read.
async fn read_body(mut body: Body, max_body: usize) -> Result<Bytes, Unread> {
    let drain_cap = max_body.saturating_mul(DRAIN_FACTOR);
    let declared = body.size_hint().lower();
    if declared > u64::try_from(drain_cap).unwrap_or(u64::MAX) {
        return Err(Unread::TooLarge);
    }
    let mut kept: Vec<u8> = Vec::new();
    let mut seen: usize = 0;
    let mut over = declared > u64::try_from(max_body).unwrap_or(u64::MAX);
    let started = tokio::time::Instant::now();
    let deadline = started + body_read_timeout();
    loop {
        // past the limit, the rest is only drained, briefly
        let until = if over {
            deadline.min(started + DRAIN_TIME)
        } else {
            deadline
        };
        let frame = match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(_))) if over => return Err(Unread::TooLarge),
            Ok(Some(Err(_))) => return Err(Unread::Malformed),
            Err(_) if over => return Err(Unread::TooLarge),
            Err(_) => return Err(Unread::TimedOut),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > drain_cap {
            return Err(Unread::TooLarge);
        }
        if seen > max_body {
            over = true;
            kept = Vec::new();
        } else if !over {
            kept.extend_from_slice(&data);
        }
    }
    if over {
        Err(Unread::TooLarge)
    } else {
        Ok(Bytes::from(kept))
    }
}

/// How many times the limit a body over it is read (and dropped) to before its `413`.
const DRAIN_FACTOR: usize = 4;

/// How long a body over the limit is read (and dropped) before its `413`.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Whether `body` (strict JSON) is one JSON-RPC 2.0 message: a request, a notification or
/// a response; if not, why, for the agent.
///
/// rmcp answers anything else `415` in plain text; this says what to change.
fn check_jsonrpc_message(body: &[u8]) -> Result<Map<String, Value>, String> {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(message)) => message,
        Ok(Value::Array(_)) => {
            return Err(
                "batches are not supported: send one JSON-RPC message per request".to_owned(),
            );
        }
        Ok(_) | Err(_) => return Err("a JSON-RPC message must be a JSON object".to_owned()),
    };
    check_jsonrpc_shape(&message).map(|()| message)
}

/// [`check_jsonrpc_message`] for a message read as an object.
fn check_jsonrpc_shape(message: &Map<String, Value>) -> Result<(), String> {
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("`jsonrpc` must be \"2.0\"".to_owned());
    }
    match message.get("id") {
        None | Some(Value::String(_)) => {}
        Some(Value::Number(n)) if is_integer(n) => {}
        Some(_) => return Err("`id` must be a string or an integer".to_owned()),
    }
    match message.get("method") {
        Some(Value::String(_)) => match message.get("params") {
            None | Some(Value::Object(_) | Value::Null) => Ok(()),
            Some(_) => Err("`params` must be an object".to_owned()),
        },
        Some(_) => Err("`method` must be a string".to_owned()),
        // a response from the client, to a request remit sent it
        None if message.contains_key("id")
            && (message.contains_key("result") || message.contains_key("error")) =>
        {
            Ok(())
        }
        None => Err(
            "not a JSON-RPC message: a request needs a `method`, a response an `id` and a \
             `result` or `error`"
                .to_owned(),
        ),
    }
}

/// The revision a request (not `initialize`) names in its `_meta`, when that revision has
/// sessions: such a request belongs to one.
fn sessionless_request_of_a_session_revision(message: &Map<String, Value>) -> Option<&'static str> {
    // the revisions that have sessions; any other (the stateless one, a later one, one
    // remit does not know) is left to rmcp, which answers an unsupported one with the list
    const WITH_SESSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
    let method = message.get("method")?.as_str()?;
    if method == "initialize" || message.get("id").is_none() {
        return None;
    }
    let revision = message
        .get("params")?
        .get("_meta")?
        .get("io.modelcontextprotocol/protocolVersion")?
        .as_str()?;
    WITH_SESSIONS.into_iter().find(|r| *r == revision)
}

/// Whether `n` is an integer as a JSON-RPC `id` may be one (an `i64`, or a float form of
/// one that an `f64` holds exactly, such as `1.0`).
fn is_integer(n: &serde_json::Number) -> bool {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    n.is_i64()
        || n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() < MAX_EXACT)
}

/// Whether a request says it has a body (`Content-Length` other than 0, or `Transfer-Encoding`).
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes() != b"0")
}

/// The id of the `initialize` request `message` is, if it is one (which, sent without a
/// session, opens a 2025-11-25 session).
fn opening_session(message: &Map<String, Value>) -> Option<Value> {
    (message.get("method").and_then(Value::as_str) == Some("initialize"))
        .then(|| message.get("id").cloned().unwrap_or(Value::Null))
}

/// The answer to an `initialize` from an agent that holds `limit` sessions: `429`, saying
/// how to free one.
fn too_many_sessions(id: &Value, limit: usize) -> Response {
    let message = format!(
        "this agent already holds {limit} open sessions, the most one agent may hold \
         (`max_sessions_per_agent` in the register's `[gateway]`); end one it no longer uses \
         with `DELETE /mcp` and its `Mcp-Session-Id`, or reuse one it holds (a session no \
         request touches for 5 minutes ends by itself)"
    );
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32000, "message": message } }),
        ),
    )
        .into_response()
}

/// Hands a request to the router (for `/mcp`, rmcp's service).
async fn forward(app: &AppInner, req: Request) -> Response {
    let mut router = app.router.clone();
    match tower::Service::call(&mut router, req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A call to one tool, for agents that do not speak MCP.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// The tool, as it appears in the agent's tool list (`billing.issue_refund`).
    pub tool: String,
    /// The arguments, a JSON object; absent or `null` is no arguments (as MCP's optional `arguments`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub arguments: Value,
    /// Why the agent makes the call; recorded in the audit.
    #[serde(default)]
    pub reason: Option<String>,
    /// The agent's run, to group its calls.
    #[serde(default)]
    pub run: Option<String>,
}

/// The result of a call that ran.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallResponse {
    /// The call's id in the audit.
    pub call: String,
    /// The upstream's MCP `CallToolResult` (a tool error has `isError: true`).
    #[schema(value_type = Object)]
    pub result: Value,
}

/// Why a call was not run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// The call's id in the audit, when one was recorded.
    pub call: Option<String>,
    /// A stable code: `unauthenticated`, `unlisted`, `invalid_arguments`, `condition`, `over_budget`, `frozen`, `not_enforced`, `unavailable`, `rejected`, `failed`, `bad_request` (400, 405, 408, 413, 415).
    pub code: String,
    /// What happened and what to do, for the agent.
    pub message: String,
    /// For `rejected`: the `data` of the upstream's JSON-RPC error, as it sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// For `over_budget`: the whole seconds to wait before retrying, as `Retry-After` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// The body of `POST /v1/calls`, which [`check_strict_json`] has passed, as a [`CallRequest`].
///
/// Only a JSON object is one: serde would also read a struct from an array of its fields in
/// order (`["billing.issue_refund", {..}]`), a body the OpenAPI document does not describe.
fn call_request(bytes: &[u8]) -> Result<CallRequest, String> {
    // INVARIANT: the body is one JSON value, so its first byte after JSON whitespace says its type
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(
            "invalid request: the body must be a JSON object, e.g. `{\"tool\": \"UPSTREAM.TOOL\", \"arguments\": {}}`"
                .to_owned(),
        );
    }
    serde_json::from_slice(bytes).map_err(|e| format!("invalid request: {e}"))
}

/// An [`ApiError`] body with `status`; a `401` says how to authenticate (`WWW-Authenticate`).
fn error(status: StatusCode, call: Option<String>, code: &str, message: String) -> Response {
    let resp = (
        status,
        Json(ApiError {
            call,
            code: code.to_owned(),
            message,
            data: None,
            retry_after_seconds: None,
        }),
    )
        .into_response();
    challenged(status, resp)
}

/// Whether a request has one `Content-Type` and it is JSON.
///
/// `application/json` in any case, with any parameters (`; charset=utf-8`) but a charset
/// other than UTF-8, the only encoding of JSON (RFC 8259).
fn is_json(headers: &HeaderMap) -> bool {
    let mut all = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|param| match param.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

/// The answer to a body that is not declared JSON: `415`, naming what to send.
fn unsupported_media_type() -> Response {
    let mut resp = error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        None,
        "bad_request",
        "the body must be JSON, sent with one `Content-Type: application/json` header \
         (parameters such as `; charset=utf-8` are allowed)"
            .to_owned(),
    );
    resp.headers_mut().insert(
        header::HeaderName::from_static("accept-post"),
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `resp` with `Connection: close`, for an answer given with the body (or its rest) unread.
///
/// hyper closes such a connection after the answer unless the unread rest has already
/// arrived (it cannot tell where the next request starts); said in the answer, a client
/// does not send its next request on a connection about to close.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// The answer to any method but `POST` on `/v1/calls`: `405`, with `Allow: POST` (any body unread).
async fn method_not_allowed(method: http::Method) -> Response {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "bad_request",
        format!("{method} is not allowed on /v1/calls; send a POST"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    closing(resp)
}

/// The answer to any method but `GET` (or `HEAD`) on a `GET` endpoint: `405`, with `Allow`
/// (any body unread).
async fn get_only(method: http::Method, uri: http::Uri) -> Response {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "bad_request",
        format!("{method} is not allowed on {}; send a GET", uri.path()),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    closing(resp)
}

/// The answer to a path remit does not serve: `404` (any body unread).
async fn not_found() -> Response {
    closing(error(
        StatusCode::NOT_FOUND,
        None,
        "not_found",
        "no such endpoint: calls go to POST /v1/calls or to /mcp; see /v1/openapi.json".to_owned(),
    ))
}

fn refusal_status(r: &Refusal) -> StatusCode {
    match r {
        Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
        Refusal::InvalidArguments { .. }
        | Refusal::ConditionError { .. }
        | Refusal::RequestState { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::Unavailable { .. } | Refusal::Unusable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::OverBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
        Refusal::Unlisted { .. }
        | Refusal::Condition { .. }
        | Refusal::BeyondBudget { .. }
        | Refusal::Frozen { .. }
        | Refusal::NotYetEnforced { .. } => StatusCode::FORBIDDEN,
    }
}

/// Run one tool call through the gateway's pipeline.
#[utoipa::path(
    post,
    path = "/v1/calls",
    request_body(content = CallRequest, content_type = "application/json", description = "sent with `Content-Type: application/json` (parameters such as `; charset=utf-8` allowed)"),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "the upstream ran the call (a tool error is still 200, with `isError`)", body = CallResponse),
        (status = 400, description = "malformed body (not readable as HTTP, not JSON, duplicate keys, not an object, unknown fields, no `tool`); nothing ran", body = ApiError),
        (status = 401, description = "no valid agent token; nothing ran", body = ApiError,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"remit\"`: send `Authorization: Bearer <token>`"))),
        (status = 403, description = "outside the agent's remit, a condition is false, or frozen", body = ApiError),
        (status = 405, description = "a method other than `POST`; nothing ran", body = ApiError,
            headers(("Allow" = String, description = "`POST`"))),
        (status = 408, description = "the body did not all arrive within 30 s of the request's head; nothing ran, and the connection is closed", body = ApiError),
        (status = 413, description = "body larger than the register's `max_request_bytes`, or a `Content-Length` that says so (refused before the body is read); nothing ran", body = ApiError),
        (status = 415, description = "the body is not declared JSON (no `Content-Type: application/json`, or a charset other than UTF-8); nothing ran", body = ApiError,
            headers(("Accept-Post" = String, description = "`application/json`"))),
        (status = 422, description = "arguments fail validation", body = ApiError),
        (status = 429, description = "a budget is exhausted, or this address sent too many requests without a valid agent token", body = ApiError,
            headers(("Retry-After" = u64, description = "seconds to wait, rounded up: until the budget has room for the call (the time the message gives), or until an address over its limit of requests without a valid agent token may try again"))),
        (status = 502, description = "cleared, but the upstream or the audit failed; may or may not have run", body = ApiError),
        (status = 503, description = "remit could not decide the call safely, or record it before it ran (store or upstream unavailable); nothing ran", body = ApiError),
    )
)]
async fn post_call(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let credential = bearer(&headers);
    // as on `/mcp`: no body is read for a caller who is nobody's agent (so the answer closes)
    if state.gateway.authenticate(&credential).is_err() {
        let peer = peer.map(|axum::Extension(p)| p.0);
        if let Some(wait) = state.auth_failures.failed(peer, Instant::now()) {
            let refused = error(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "unauthenticated",
                too_many_failures(wait),
            );
            return closing(retry_after(wait, refused));
        }
        let refusal = Refusal::Unauthenticated;
        return closing(error(
            refusal_status(&refusal),
            None,
            "unauthenticated",
            refusal.to_string(),
        ));
    }
    // declared before it is read: no body is read that is not said to be JSON
    if !is_json(&headers) {
        return closing(unsupported_media_type());
    }
    let bytes = match read_body(body, state.max_body).await {
        Ok(bytes) => bytes,
        Err(unread) => {
            let (status, message) = unread.answer(state.max_body);
            return closing(error(status, None, "bad_request", message));
        }
    };
    if let Err(e) = check_strict_json(&bytes) {
        return error(
            StatusCode::BAD_REQUEST,
            None,
            "bad_request",
            format!("invalid JSON: {e}"),
        );
    }
    let req = match call_request(&bytes) {
        Ok(r) => r,
        Err(message) => {
            return error(StatusCode::BAD_REQUEST, None, "bad_request", message);
        }
    };
    let call = Call {
        credential,
        tool: req.tool,
        args: req.arguments,
        // capped by the pipeline, as on every entry
        reason: req.reason,
        run: req.run.map(RunId::new),
        entry: Entry::Http,
        caller: Caller::waiting(),
        progress: None,
        resume: None,
        capabilities: None,
    };
    // a client that hangs up does not cut the call off before its outcome is recorded
    match remit_mcp::call_to_the_end(&state.gateway, call).await {
        Outcome::Done { call, result } => Json(CallResponse {
            call: call.to_string(),
            result,
        })
        .into_response(),
        Outcome::Refused { call, refusal } => {
            let status = refusal_status(&refusal);
            let body = ApiError {
                // an unauthenticated call is not recorded, so it has no id to look up
                call: (!matches!(refusal, Refusal::Unauthenticated)).then(|| call.to_string()),
                code: refusal.code().to_owned(),
                message: refusal.to_string(),
                data: None,
                // when the budget has room again, as the message says
                retry_after_seconds: refusal.retry_after_seconds(),
            };
            let refused = challenged(status, (status, Json(body)).into_response());
            match refusal {
                Refusal::OverBudget { retry_in, .. } => retry_after(retry_in, refused),
                _ => refused,
            }
        }
        Outcome::Rejected {
            call,
            code,
            message,
            data,
        } => (
            StatusCode::BAD_GATEWAY,
            Json(ApiError {
                call: Some(call.to_string()),
                code: "rejected".to_owned(),
                message: if remit_core::ports::refused_before_running(code) {
                    format!("the upstream rejected the call ({code}): {message}; nothing ran")
                } else {
                    format!(
                        "the upstream answered the call with an error ({code}): {message}; it may or may not have run"
                    )
                },
                data,
                retry_after_seconds: None,
            }),
        )
            .into_response(),
        Outcome::Failed { call, message } => error(
            StatusCode::BAD_GATEWAY,
            Some(call.to_string()),
            "failed",
            message,
        ),
    }
}

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The state of the gateway: store, audit, upstreams.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the store answers and every upstream is up; `degraded` otherwise.
    pub status: String,
    /// The register version in force.
    pub register: String,
    /// The store.
    #[schema(value_type = Object)]
    pub store: Value,
    /// The audit log: events, the latest checkpoint, whether checkpoints are being signed (and, for the operator, why not).
    #[schema(value_type = Object)]
    pub audit: Value,
    /// Each upstream.
    #[schema(value_type = Vec<Object>)]
    pub upstreams: Vec<Value>,
}

/// Report store, audit and upstream state; the errors behind a failure only to the operator.
///
/// An error's text can name hosts, paths and users inside the deployment, and anyone who
/// reaches remit (an agent, say) can ask for `/health`; so the store's `error` and each
/// upstream's `last_error` are given only with the operator's token (`Authorization:
/// Bearer`, derived from the audit signing key; `remit status` sends it).
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    use remit_core::ports::Upstreams;
    let operator = match bearer(&headers) {
        Credential::Bearer(token) => state.status_token.admits(&token),
        Credential::Local(_) | Credential::None => false,
    };
    let store = state.gateway.store();
    let store_ok = store.ping().await;
    let events = store.event_count().await.ok();
    let checkpoint = store.latest_checkpoint().await.ok().flatten();
    let ups = state.upstreams.health();
    let all_up = ups.iter().all(|u| u.up);
    let signing = state.signing_error.lock().ok().and_then(|e| e.clone());
    let h = Health {
        status: if store_ok.is_ok() && all_up && signing.is_none() {
            "ok"
        } else {
            "degraded"
        }
        .to_owned(),
        register: state.gateway.register().version.to_string(),
        store: match &store_ok {
            Ok(()) => json!({ "ok": true }),
            Err(e) if operator => json!({ "ok": false, "error": e.to_string() }),
            Err(_) => json!({ "ok": false }),
        },
        audit: {
            let mut audit = json!({
                "events": events,
                "checkpoint": checkpoint.map(|c| json!({ "tree_size": c.tree_size, "time": c.time })),
                "signing": signing.is_none(),
            });
            if operator
                && let Some(error) = &signing
                && let Some(fields) = audit.as_object_mut()
            {
                fields.insert("signing_error".to_owned(), json!(error));
            }
            audit
        },
        upstreams: ups
            .iter()
            .map(|u| {
                let mut u = serde_json::to_value(u).unwrap_or(Value::Null);
                if !operator && let Some(u) = u.as_object_mut() {
                    u.remove("last_error");
                }
                u
            })
            .collect(),
    };
    let status = if store_ok.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(h)).into_response()
}

/// `resp` with the `WWW-Authenticate` challenge a `401` carries (RFC 9110), as is otherwise.
fn challenged(status: StatusCode, mut resp: Response) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"remit\""),
        );
    }
    resp
}
