//! The MCP server agents talk to: `tools/list` and `tools/call` through the pipeline.

use remit_core::ids::{AgentId, RunId};
use remit_core::pipeline::{Call, Credential, Entry, Gateway, Outcome};
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

    fn credential(&self, ctx: &RequestContext<RoleServer>) -> Credential {
        match &self.source {
            CredentialSource::Local(id) => Credential::Local(id.clone()),
            CredentialSource::BearerHeader => ctx
                .extensions
                .get::<http::request::Parts>()
                .and_then(|p| p.headers.get(http::header::AUTHORIZATION))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(|t| Credential::Bearer(t.trim().to_owned()))
                .unwrap_or(Credential::None),
        }
    }
}

/// The run a call belongs to: `_meta["remit/run"]`, else the MCP session, else none.
fn run_of(ctx: &RequestContext<RoleServer>) -> Option<RunId> {
    if let Some(run) = ctx.meta.get("remit/run").and_then(Value::as_str) {
        return Some(RunId::new(run.chars().take(128).collect::<String>()));
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
/// A refusal or failure is a tool error (`isError: true`) whose text says why and
/// whether to retry, with `structuredContent.remit` carrying the code for programs.
pub fn outcome_to_mcp(outcome: &Outcome) -> CallToolResult {
    match outcome {
        Outcome::Done { result, .. } => {
            match serde_json::from_value::<CallToolResult>(result.clone()) {
                Ok(r) => r,
                Err(e) => {
                    let mut r = CallToolResult::error(vec![Content::text(format!(
                        "the upstream answered with a result remit could not read: {e}"
                    ))]);
                    r.structured_content =
                        Some(serde_json::json!({ "remit": { "code": "bad_upstream_result" } }));
                    r
                }
            }
        }
        Outcome::Refused { call, refusal } => {
            let mut r = CallToolResult::error(vec![Content::text(refusal.to_string())]);
            r.structured_content = Some(serde_json::json!({
                "remit": { "code": refusal.code(), "call": call.as_str(), "message": refusal.to_string() }
            }));
            r
        }
        Outcome::Failed { call, message } => {
            let mut r = CallToolResult::error(vec![Content::text(format!("failed: {message}"))]);
            r.structured_content = Some(serde_json::json!({
                "remit": { "code": "failed", "call": call.as_str(), "message": message }
            }));
            r
        }
    }
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
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let reason = ctx
            .meta
            .get("remit/reason")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(2000).collect::<String>());
        let call = Call {
            credential: self.credential(&ctx),
            tool: request.name.to_string(),
            args: request.arguments.map(Value::Object).unwrap_or(Value::Null),
            reason,
            run: run_of(&ctx),
            entry: Entry::Mcp,
        };
        let outcome = self.gateway.call(call).await;
        Ok(CallToolResponse::Complete(outcome_to_mcp(&outcome)))
    }
}

/// The Streamable HTTP service agents reach at `/mcp`, both protocol eras.
pub type McpHttpService = rmcp::transport::streamable_http_server::StreamableHttpService<
    AgentServer,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
>;

/// Builds the `/mcp` service over a gateway; `allowed_hosts` guards against DNS rebinding.
pub fn http_service(gateway: Arc<Gateway>, allowed_hosts: Vec<String>) -> McpHttpService {
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    let server = AgentServer::new(gateway, CredentialSource::BearerHeader);
    let config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .with_allowed_hosts(allowed_hosts);
    McpHttpService::new(move || Ok(server.clone()), Arc::default(), config)
}

/// Serves one agent over stdin/stdout until the client closes.
pub async fn serve_stdio(gateway: Arc<Gateway>, agent: AgentId) -> Result<(), String> {
    use rmcp::ServiceExt;
    let server = AgentServer::new(gateway, CredentialSource::Local(agent));
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| e.to_string())?;
    running.waiting().await.map_err(|e| e.to_string())?;
    Ok(())
}
