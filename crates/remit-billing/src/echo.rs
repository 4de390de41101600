//! A minimal MCP server with `echo(text)`, for benchmarks and conformance-style
//! tests, and `sleep(ms)`, an upstream that is slow on purpose (`cancelled` says how
//! many sleeps their client cancelled), and `ask`, one that asks for input mid-call
//! (`asks` says how many `ask` calls this server received, and how many resumed).
//!
//! Written against rmcp's `ServerHandler` by hand, without the `#[tool]`
//! macros: the tool list is plain data and `call_tool` dispatches on the
//! name. That is the shape a gateway needs when its tools are only known at
//! run time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
        Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use serde_json::json;

/// How many `sleep` calls in this process were cancelled by their client before they ended.
static SLEEPS_CANCELLED: AtomicU64 = AtomicU64::new(0);

/// How many `sleep` calls in this process their client cancelled (`notifications/cancelled`,
/// or a request whose handler rmcp dropped) before they ended.
pub fn sleeps_cancelled() -> u64 {
    SLEEPS_CANCELLED.load(Ordering::SeqCst)
}

/// Counts a `sleep` as cancelled if it is dropped before it ended.
struct Sleeping(bool);

impl Drop for Sleeping {
    fn drop(&mut self) {
        if !self.0 {
            SLEEPS_CANCELLED.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The input schema of a tool that takes no arguments: any object.
fn no_arguments() -> Arc<JsonObject> {
    Arc::new(JsonObject::from_iter([(
        "type".to_owned(),
        serde_json::json!("object"),
    )]))
}

/// The echo MCP server: one read-only tool, `echo(text)`, that returns its
/// input. No storage, no ledger, nothing slow.
#[derive(Debug, Clone)]
pub struct Echo {
    tools: Arc<[Tool]>,
    /// The `ask` calls this server (and its clones) received: all, and those that resumed.
    asks: Arc<(AtomicU64, AtomicU64)>,
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl Echo {
    /// Builds the server and its (fixed) tool list.
    pub fn new() -> Self {
        let schema = json!({
            "type": "object",
            "properties": {
                "text": { "type": "string", "description": "Text to send back." }
            },
            "required": ["text"],
            "additionalProperties": false
        });
        let schema: JsonObject = match schema {
            serde_json::Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        let echo = Tool::new("echo", "Return `text` unchanged.", Arc::new(schema))
            .with_annotations(
                ToolAnnotations::with_title("Echo")
                    .read_only(true)
                    .idempotent(true)
                    .open_world(false),
            );
        let sleep_schema: JsonObject = match json!({
            "type": "object",
            "properties": {
                "ms": { "type": "integer", "minimum": 0, "maximum": 60000, "description": "How long to wait." }
            },
            "required": ["ms"],
            "additionalProperties": false
        }) {
            serde_json::Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        let sleep = Tool::new(
            "sleep",
            "Wait `ms` milliseconds, then answer: an upstream that is slow (or hangs) on purpose. \
             Reports progress halfway and at the end when the call asks for it.",
            Arc::new(sleep_schema),
        )
        .with_annotations(ToolAnnotations::with_title("Sleep").read_only(true));
        let reject = Tool::new(
            "reject",
            "Answer every call with a JSON-RPC error (-32021, with data): an upstream that refuses the request itself.",
            no_arguments(),
        )
        .with_annotations(ToolAnnotations::with_title("Reject").read_only(true));
        let ask = Tool::new(
            "ask",
            "Ask the caller for its roots before answering (a 2026-07-28 `InputRequiredResult`), \
             then answer with what it was told: an upstream that needs input mid-call.",
            no_arguments(),
        )
        .with_annotations(ToolAnnotations::with_title("Ask").read_only(true));
        let cancelled = Tool::new(
            "cancelled",
            "Say how many `sleep` calls to this server their client cancelled before they ended.",
            no_arguments(),
        )
        .with_annotations(ToolAnnotations::with_title("Cancelled sleeps").read_only(true));
        let asks = Tool::new(
            "asks",
            "Say how many `ask` calls this server received, and how many of them resumed \
             (carried `inputResponses` or a `requestState`): what an upstream saw of a call.",
            no_arguments(),
        )
        .with_annotations(ToolAnnotations::with_title("Asks received").read_only(true));
        Self {
            tools: Arc::from([echo, sleep, reject, ask, cancelled, asks]),
            asks: Arc::default(),
        }
    }
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("remit-echo", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "sleep" {
            let ms = request
                .arguments
                .as_ref()
                .and_then(|arguments| arguments.get("ms"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
                .min(60_000);
            let token = context.meta.get_progress_token();
            let mut sleeping = Sleeping(false);
            for (step, slept) in [(1u32, ms / 2), (2, ms)] {
                let wait = if step == 1 { ms / 2 } else { ms - ms / 2 };
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                    () = context.ct.cancelled() => {
                        return Err(ErrorData::internal_error("the sleep was cancelled", None));
                    }
                }
                if let Some(token) = &token {
                    let mut progress =
                        rmcp::model::ProgressNotificationParam::new(token.clone(), f64::from(step));
                    progress.total = Some(2.0);
                    progress.message = Some(format!("slept {slept} of {ms} ms"));
                    // the caller may have gone; the sleep still ends as asked
                    let _ = context.peer.notify_progress(progress).await;
                }
            }
            sleeping.0 = true;
            return Ok(
                CallToolResult::success(vec![ContentBlock::text(format!("slept {ms} ms"))]).into(),
            );
        }
        if request.name == "ask" {
            self.asks.0.fetch_add(1, Ordering::SeqCst);
            if request.input_responses.is_some() || request.request_state.is_some() {
                self.asks.1.fetch_add(1, Ordering::SeqCst);
            }
            // an input request must respect what the client declared it can answer
            let roots = context
                .meta
                .get("io.modelcontextprotocol/clientCapabilities")
                .and_then(|declared| declared.get("roots"))
                .is_some()
                || context
                    .peer
                    .peer_info()
                    .is_some_and(|info| info.capabilities.roots.is_some());
            return Ok(ask(&request, roots));
        }
        if request.name == "asks" {
            return Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "ask calls: {}, resumed: {}",
                self.asks.0.load(Ordering::SeqCst),
                self.asks.1.load(Ordering::SeqCst)
            ))])
            .into());
        }
        if request.name == "cancelled" {
            return Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "cancelled sleeps: {}",
                sleeps_cancelled()
            ))])
            .into());
        }
        if request.name == "reject" {
            return Err(ErrorData::new(
                rmcp::model::ErrorCode(-32021),
                "echo rejects this call on purpose",
                Some(serde_json::json!({ "requiredCapabilities": { "sampling": {} } })),
            ));
        }
        if request.name != "echo" {
            // An unknown tool is a protocol error (-32602), as rmcp's router does.
            return Err(ErrorData::invalid_params(
                format!("tool `{}` not found", request.name),
                None,
            ));
        }
        let text = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("text"))
            .and_then(serde_json::Value::as_str);
        let result = match text {
            Some(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            None => CallToolResult::error(vec![ContentBlock::text(
                "argument `text` is required and must be a string",
            )]),
        };
        Ok(result.into())
    }
}

/// The state `ask` hands out with its input request, and expects back unchanged.
const ASK_STATE: &str = "echo-ask-round-1";

/// `ask`: the first round asks for the caller's roots, if it declared it can list them; the
/// second, with the answer and the state unchanged, says what it was told (unless the call
/// says `never_satisfied`: then it asks again every round). A changed state is a tool error.
fn ask(request: &CallToolRequestParams, roots_declared: bool) -> CallToolResponse {
    // `never_satisfied`: ask again whatever the answer (an upstream that would loop forever)
    let never_satisfied = request
        .arguments
        .as_ref()
        .and_then(|a| a.get("never_satisfied"))
        .and_then(serde_json::Value::as_bool)
        == Some(true);
    let told = request
        .input_responses
        .as_ref()
        .and_then(|r| r.get("roots"))
        .filter(|_| !never_satisfied);
    match (told, request.request_state.as_deref()) {
        (None, _) if !roots_declared => CallToolResult::error(vec![ContentBlock::text(
            "the client did not declare `roots`: there is nothing to ask it",
        )])
        .into(),
        (Some(told), Some(ASK_STATE)) => {
            CallToolResult::success(vec![ContentBlock::text(format!("told: {told}"))]).into()
        }
        (Some(_), _) => CallToolResult::error(vec![ContentBlock::text(
            "the request state came back changed",
        )])
        .into(),
        (None, _) => {
            serde_json::from_value::<rmcp::model::InputRequiredResult>(serde_json::json!({
                "resultType": "input_required",
                "inputRequests": { "roots": { "method": "roots/list" } },
                "requestState": ASK_STATE,
            }))
            .map_or_else(
                |e| CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into(),
                Into::into,
            )
        }
    }
}
