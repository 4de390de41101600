//! The MCP server agents talk to: `tools/list` and `tools/call` through the pipeline.

use crate::sessions::AgentSessions;
use remit_core::ids::{AgentId, RunId};
use remit_core::pipeline::{Call, Caller, Credential, Entry, Gateway, Outcome};
use remit_core::ports::Resume;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock as Content,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use std::sync::Arc;

/// Where the agent's identity comes from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// Fixed for the whole connection (`remit stdio --agent NAME`).
    Local(AgentId),
    /// The `Authorization: Bearer` header of each HTTP request.
    BearerHeader,
}

/// The MCP server one agent connection sees.
#[derive(Clone, Debug)]
pub struct AgentServer {
    gateway: Arc<Gateway>,
    source: CredentialSource,
}

impl AgentServer {
    /// A server over the gateway, identifying agents by `source`.
    pub fn new(gateway: Arc<Gateway>, source: CredentialSource) -> Self {
        Self { gateway, source }
    }

    /// One round of a call through the pipeline, relaying progress if the agent asked for it.
    async fn run_round(&self, mut call: Call, ctx: &RequestContext<RoleServer>) -> Outcome {
        match ctx.meta.get_progress_token() {
            None => crate::call_to_the_end(&self.gateway, call).await,
            Some(token) => {
                let (relay, reports) = crate::progress::Relay::new();
                call.progress = Some(Arc::new(relay));
                crate::progress::forward_while(
                    reports,
                    &ctx.peer,
                    token,
                    crate::call_to_the_end(&self.gateway, call),
                )
                .await
            }
        }
    }

    fn credential(&self, ctx: &RequestContext<RoleServer>) -> Credential {
        match &self.source {
            CredentialSource::Local(id) => Credential::Local(id.clone()),
            CredentialSource::BearerHeader => ctx
                .extensions
                .get::<http::request::Parts>()
                .map_or(Credential::None, |p| crate::bearer_in(&p.headers)),
        }
    }
}

/// The credential an `Authorization` header value carries: a bearer token, or none.
pub(crate) fn bearer_credential(authorization: Option<&str>) -> Credential {
    // the scheme is case-insensitive (RFC 9110 §11.1): `BEARER x` is `Bearer x`
    authorization
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(|t| Credential::Bearer(t.trim().to_owned()))
        .unwrap_or(Credential::None)
}

/// The agent's stated reason in a request's `_meta["remit/reason"]` (the pipeline caps it).
pub(crate) fn reason_in(meta: &serde_json::Map<String, Value>) -> Option<String> {
    reason_of(meta.get("remit/reason"))
}

/// The stated reason, from the value of `_meta["remit/reason"]`.
pub(crate) fn reason_of(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(ToOwned::to_owned)
}

/// The run a request's `_meta["remit/run"]` names (the pipeline caps it).
pub(crate) fn run_in(meta: &serde_json::Map<String, Value>) -> Option<RunId> {
    run_of_value(meta.get("remit/run"))
}

/// The run, from the value of `_meta["remit/run"]`.
pub(crate) fn run_of_value(value: Option<&Value>) -> Option<RunId> {
    value.and_then(Value::as_str).map(RunId::new)
}

/// The run a call belongs to: `_meta["remit/run"]`, else the MCP session, else none.
fn run_of(ctx: &RequestContext<RoleServer>) -> Option<RunId> {
    if let Some(run) = run_in(&ctx.meta) {
        return Some(run);
    }
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            RunId::new(format!(
                "session:{}",
                s.chars().take(64).collect::<String>()
            ))
        })
}

/// Maps an outcome of the pipeline to the MCP tool result the agent sees.
///
/// A refusal or failure is a tool error (`isError: true`) whose text says why and whether
/// to retry; `_meta.remit` carries `{code, call, message}` for programs, and for
/// `over_budget` also `retry_after_seconds` (the whole seconds of HTTP's `Retry-After`). It is not put in
/// `structuredContent`, which clients validate against the tool's `outputSchema`.
pub fn outcome_to_mcp(outcome: &Outcome) -> CallToolResult {
    let mut r = match outcome {
        Outcome::Done { result, .. } => {
            match serde_json::from_value::<CallToolResult>(result.clone()) {
                Ok(mut r) => {
                    // the upstream's own identity stays with the upstream: the agent talks to remit
                    if let Some(meta) = r.meta.as_mut() {
                        meta.0
                            .retain(|k, _| !k.starts_with("io.modelcontextprotocol/serverInfo"));
                        if meta.0.is_empty() {
                            r.meta = None;
                        }
                    }
                    r
                }
                Err(e) => error_result(
                    &format!("the upstream answered with a result remit could not read: {e}"),
                    "bad_upstream_result",
                    outcome.call().as_str(),
                ),
            }
        }
        Outcome::Refused { call, refusal } => {
            let mut r = error_result(&refusal.to_string(), refusal.code(), call.as_str());
            // for `over_budget`: the whole seconds HTTP's `Retry-After` would say
            if let (Some(secs), Some(Value::Object(remit))) = (
                refusal.retry_after_seconds(),
                r.meta.as_mut().and_then(|m| m.0.get_mut("remit")),
            ) {
                remit.insert("retry_after_seconds".to_owned(), secs.into());
            }
            r
        }
        Outcome::Rejected {
            call,
            code,
            message,
            ..
        } => error_result(
            &if remit_core::ports::refused_before_running(*code) {
                format!("the upstream rejected the call ({code}): {message}; nothing ran")
            } else {
                format!(
                    "the upstream answered the call with an error ({code}): {message}; it may or may not have run"
                )
            },
            "rejected",
            call.as_str(),
        ),
        Outcome::Failed { call, message } => {
            error_result(&format!("failed: {message}"), "failed", call.as_str())
        }
    };
    r.result_type = Some(rmcp::model::ResultType::COMPLETE);
    r
}

fn error_result(message: &str, code: &str, call: &str) -> CallToolResult {
    let mut r = CallToolResult::error(vec![Content::text(message.to_owned())]);
    let mut meta = serde_json::Map::new();
    meta.insert(
        "remit".to_owned(),
        serde_json::json!({ "code": code, "call": call, "message": message }),
    );
    r.meta = Some(rmcp::model::MetaObject(meta));
    r
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = rmcp::model::Implementation::new("remit", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "remit gateway: the tools listed are exactly what this agent's register allows. \
             Refusals come back as tool errors that say why. Add a `_reason` argument to say why you call."
                .to_owned(),
        );
        info
    }

    /// The exposed definition of a tool, so rmcp can check `Mcp-Param-*` headers against its schema.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        let def = self.gateway.exposed_tool(name)?;
        serde_json::from_value::<Tool>(Value::Object(def)).ok()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let credential = self.credential(&ctx);
        let defs = self
            .gateway
            .list_tools(&credential)
            .map_err(|r| McpError::invalid_request(r.to_string(), None))?;
        let mut tools = Vec::with_capacity(defs.len());
        for def in defs {
            match serde_json::from_value::<Tool>(Value::Object(def)) {
                Ok(t) => tools.push(t),
                Err(e) => {
                    tracing::warn!(error = %e, "an upstream tool definition could not be read; hidden")
                }
            }
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let reason = reason_in(&ctx.meta);
        let capabilities = capabilities_of(&ctx);
        let credential = self.credential(&ctx);
        let run = run_of(&ctx);
        let tool = request.name.to_string();
        let resume = resume_of(&request);
        let args = request
            .arguments
            .take()
            .map(Value::Object)
            .unwrap_or(Value::Null);
        let round = |resume| Call {
            credential: credential.clone(),
            tool: tool.clone(),
            args: args.clone(),
            reason: reason.clone(),
            run: run.clone(),
            entry: Entry::Mcp,
            caller: Caller::waiting(),
            progress: None,
            resume,
            capabilities: capabilities.clone(),
        };
        let mut outcome = self.run_round(round(resume), &ctx).await;
        // a 2025-11-25 session cannot take an InputRequiredResult: remit asks the agent
        // itself, over the session, and resumes the call with its answers
        if !modern(&ctx) {
            let mut rounds = 0;
            while let Some(asked) = input_required(&outcome) {
                rounds += 1;
                let answers = if rounds > MAX_INPUT_ROUNDS {
                    Err(format!(
                        "the upstream asked for input more than {MAX_INPUT_ROUNDS} times; remit stopped the call"
                    ))
                } else {
                    ask_the_agent(&ctx.peer, &asked).await
                };
                let answers = match answers {
                    Ok(answers) => answers,
                    Err(message) => {
                        // the last round's `executed` holds the upstream's question; this
                        // says the call ends there, and why
                        if let Err(e) = self
                            .gateway
                            .record_stopped(
                                outcome.call(),
                                run.as_ref(),
                                &credential,
                                &tool,
                                &message,
                            )
                            .await
                        {
                            tracing::error!(call = %outcome.call(), error = %e, "could not record a call stopped for want of input");
                        }
                        return Ok(CallToolResponse::Complete(error_result(
                            &message,
                            "input_failed",
                            outcome.call().as_str(),
                        )));
                    }
                };
                let resume = Resume {
                    input_responses: Some(answers),
                    request_state: asked.request_state,
                };
                outcome = self.run_round(round(Some(resume)), &ctx).await;
            }
        }
        if let Some(error) = refused_request_state(&outcome) {
            return Err(error);
        }
        if let Outcome::Rejected {
            code,
            message,
            data,
            ..
        } = &outcome
        {
            // the upstream's JSON-RPC error passes through as one: the request, not the tool, failed
            let code = i32::try_from(*code).unwrap_or(-32603);
            return Err(McpError::new(
                rmcp::model::ErrorCode(code),
                message.clone(),
                data.clone(),
            ));
        }
        Ok(outcome_to_response(&outcome))
    }

    /// A request rmcp could not read as one it knows: a `tools/call` with bad params is
    /// answered invalid params (naming the field), anything else method not found.
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, McpError> {
        if request.method == "tools/call" {
            return Err(McpError::invalid_params(
                tools_call_params_error(request.params.as_ref()),
                None,
            ));
        }
        Err(McpError::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            request.method,
            None,
        ))
    }
}

/// What is wrong with the `params` of a `tools/call` rmcp could not read, for the agent.
fn tools_call_params_error(params: Option<&Value>) -> String {
    let Some(Value::Object(params)) = params else {
        return "`params` must be an object, e.g. `{\"name\": \"UPSTREAM.TOOL\", \"arguments\": {}}`"
            .to_owned();
    };
    match params.get("name") {
        None => return "`name` is missing: say which tool to call".to_owned(),
        Some(Value::String(_)) => {}
        Some(_) => return "`name` must be a string, the tool's name".to_owned(),
    }
    match params.get("arguments") {
        None | Some(Value::Object(_) | Value::Null) => {}
        Some(_) => return "`arguments` must be an object".to_owned(),
    }
    match params.get("_meta") {
        None | Some(Value::Object(_) | Value::Null) => {}
        Some(_) => return "`_meta` must be an object".to_owned(),
    }
    "the `params` of `tools/call` could not be read: it takes `name` (a string), \
     `arguments` (an object) and `_meta` (an object)"
        .to_owned()
}

/// Most input rounds remit runs for an agent in a 2025-11-25 session before it stops a call.
const MAX_INPUT_ROUNDS: u32 = 8;

/// Whether the request is of the 2026-07-28 era (its `_meta` names the revision).
fn modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.meta
        .get("io.modelcontextprotocol/protocolVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v >= crate::STATELESS_REVISION)
}

/// The upstream's `InputRequiredResult`, if that is how the call ended (anything else is
/// not parsed: the result says `resultType: "input_required"` first).
fn input_required(outcome: &Outcome) -> Option<rmcp::model::InputRequiredResult> {
    match outcome {
        Outcome::Done { result, .. }
            if result.get("resultType").and_then(Value::as_str) == Some("input_required") =>
        {
            serde_json::from_value(result.clone()).ok()
        }
        _ => None,
    }
}

/// Puts each of the upstream's input requests to the agent over its session; the answers by key.
async fn ask_the_agent(
    peer: &rmcp::service::Peer<RoleServer>,
    asked: &rmcp::model::InputRequiredResult,
) -> Result<serde_json::Map<String, Value>, String> {
    use rmcp::model::{InputRequest, ServerRequest};
    let mut answers = serde_json::Map::new();
    for (key, request) in asked.input_requests.iter().flatten() {
        let request = match request.clone() {
            InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
            InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
            InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
            _ => {
                return Err(format!(
                    "the tool asked for input (`{key}`) of a kind remit cannot ask for"
                ));
            }
        };
        let answer = peer.send_request(request).await.map_err(|e| {
            format!("the tool needs input (`{key}`) that your client could not give: {e}")
        })?;
        let answer = serde_json::to_value(&answer)
            .map_err(|e| format!("your client's answer to `{key}` could not be read: {e}"))?;
        answers.insert(key.clone(), answer);
    }
    Ok(answers)
}

/// The client capabilities the agent declared: in the request's `_meta` (2026-07-28), or
/// when its session began (2025-11-25).
fn capabilities_of(ctx: &RequestContext<RoleServer>) -> Option<serde_json::Map<String, Value>> {
    let declared = match ctx.meta.get("io.modelcontextprotocol/clientCapabilities") {
        Some(declared) => declared.clone(),
        None => serde_json::to_value(&ctx.peer.peer_info()?.capabilities).ok()?,
    };
    match declared {
        Value::Object(declared) => Some(declared),
        _ => None,
    }
}

/// A call refused because its `requestState` did not open, as the JSON-RPC error the
/// protocol asks for (invalid params, -32602, as for a tampered state), with remit's code
/// and the call's id in its `data`; `None` for any other outcome.
///
/// Other refusals are tool errors: they concern the tool call, where this one concerns the
/// request's own `requestState` parameter.
fn refused_request_state(outcome: &Outcome) -> Option<McpError> {
    match outcome {
        Outcome::Refused {
            call,
            refusal: refusal @ remit_core::decision::Refusal::RequestState { .. },
        } => Some(McpError::invalid_params(
            refusal.to_string(),
            Some(serde_json::json!({ "remit": { "code": refusal.code(), "call": call.as_str() } })),
        )),
        _ => None,
    }
}

/// A resuming call's answers and state, as the agent sent them.
fn resume_of(request: &CallToolRequestParams) -> Option<Resume> {
    if request.input_responses.is_none() && request.request_state.is_none() {
        return None;
    }
    Some(Resume {
        input_responses: request
            .input_responses
            .as_ref()
            .map(|r| r.clone().into_iter().collect()),
        request_state: request.request_state.clone(),
    })
}

/// What the agent gets for a call: the outcome as a `CallToolResult`, or the upstream's
/// `InputRequiredResult` (2026-07-28) when the tool needs input before it can finish.
pub(crate) fn outcome_to_response(outcome: &Outcome) -> CallToolResponse {
    match input_required(outcome) {
        Some(asked) => CallToolResponse::InputRequired(asked),
        None => CallToolResponse::Complete(outcome_to_mcp(outcome)),
    }
}

/// The Streamable HTTP service agents reach at `/mcp`, both protocol eras.
pub type McpHttpService =
    rmcp::transport::streamable_http_server::StreamableHttpService<AgentServer, AgentSessions>;

/// Builds the `/mcp` service over a gateway; `allowed_hosts` guards against DNS rebinding,
/// and a body may have up to `max_body` bytes (the short way's limit too).
///
/// Its 2025-11-25 sessions are kept in `sessions`, each owned by the agent that opened it:
/// the caller must handle each request inside [`AgentSessions::serving`] its agent, and
/// let a request name a session only if it [`AgentSessions::belongs_to`] that agent.
pub fn http_service(
    gateway: Arc<Gateway>,
    allowed_hosts: Vec<String>,
    max_body: usize,
    sessions: Arc<AgentSessions>,
) -> McpHttpService {
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    let server = AgentServer::new(gateway, CredentialSource::BearerHeader);
    let config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .with_allowed_hosts(allowed_hosts)
        .with_max_request_body_bytes(max_body);
    McpHttpService::new(move || Ok(server.clone()), sessions, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_nothing_else_is_a_bearer() {
        let token = |v: &str| match bearer_credential(Some(v)) {
            Credential::Bearer(t) => Some(t),
            _ => None,
        };
        for v in ["Bearer tok", "bearer tok", "BEARER tok", "BeArEr  tok "] {
            assert_eq!(token(v).as_deref(), Some("tok"), "{v}");
        }
        for v in ["Basic tok", "Bearertok", "tok", "", "Bearer-x tok"] {
            assert_eq!(token(v), None, "{v}");
        }
        assert!(matches!(bearer_credential(None), Credential::None));
    }
}
