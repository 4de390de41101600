//! The scripted support agent `remit demo` runs: a real MCP client that lists
//! its tools, then makes the billing calls a support agent would, some inside
//! its remit and some not, and reports each call as a [`Step`].

use rmcp::{
    ClientLifecycleMode, ClientServiceExt, RoleClient,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
        ProtocolVersion,
    },
    service::{ClientInitializeError, RunningService, ServiceError},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

/// How the agent reaches the billing tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through remit: tools are named `billing.<tool>` and every call states
    /// a `_reason` argument, which the gateway strips and records.
    Gateway,
    /// Straight at the billing server: bare tool names, no `_reason` (the
    /// billing tools reject unknown arguments).
    Direct,
}

impl Route {
    /// The prefix the agent puts before each billing tool name.
    fn prefix(self) -> &'static str {
        match self {
            Self::Gateway => "billing.",
            Self::Direct => "",
        }
    }
}

/// What the script expects of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The call goes through and the tool answers without error.
    Allowed,
    /// Remit refuses the call with this code (`condition`, `unlisted`, ...).
    Refused(&'static str),
}

impl Expect {
    /// Whether `outcome` is what this expectation describes.
    fn is_met_by(self, outcome: &StepOutcome) -> bool {
        match (self, outcome) {
            (Self::Allowed, StepOutcome::Result(_)) => true,
            (Self::Refused(expected), StepOutcome::Refused { code, .. }) => code == expected,
            (Self::Allowed | Self::Refused(_), _) => false,
        }
    }
}

/// What happened when the agent made a call.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// The tool answered: its `structuredContent`, else its text as a string.
    /// For `tools/list`, `{"tools": [names]}`.
    Result(Value),
    /// The call failed without a remit code: the tool answered `isError:
    /// true`, or the server answered with a JSON-RPC error.
    ToolError(String),
    /// Remit answered instead of the tool: `_meta.remit.code` and
    /// its message.
    Refused {
        /// The remit code, e.g. `condition`, `unlisted`, `over_budget`.
        code: String,
        /// The message the agent was shown.
        message: String,
    },
}

/// One step of the scripted agent: what it tried, what it expected, what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the agent is doing, in a few words.
    pub title: String,
    /// The tool called, as the agent named it, or `tools/list`.
    pub tool: String,
    /// The arguments as sent, `_reason` included; `null` for `tools/list`.
    pub arguments: Value,
    /// What the script expected.
    pub expect: Expect,
    /// What happened.
    pub outcome: StepOutcome,
    /// Whether the outcome met the expectation.
    pub as_expected: bool,
}

/// Why the scripted agent could not finish its run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The MCP client could not connect or discover the server.
    #[error("could not connect to the mcp server: {0}")]
    Connect(#[source] Box<ClientInitializeError>),
    /// The server did not list its tools.
    #[error("could not list tools: {0}")]
    ListTools(#[source] Box<ServiceError>),
    /// A call got no answer at all (the connection failed or closed).
    #[error("`{tool}` got no answer: {source}")]
    Call {
        /// The tool that was being called.
        tool: String,
        /// What went wrong.
        #[source]
        source: Box<ServiceError>,
    },
}

/// One scripted call, before it is made.
struct Plan {
    title: &'static str,
    tool: &'static str,
    arguments: Value,
    reason: &'static str,
    expect: Expect,
}

/// The support agent's calls, in order. The expectations are those of the
/// demo register: refunds up to 500 and three an hour, no customer deletion.
fn plan() -> Vec<Plan> {
    let refund_of_10 = |title, expect| Plan {
        title,
        tool: "issue_refund",
        arguments: json!({"charge_id": "ch_002", "amount": 10, "reason": "goodwill credit"}),
        reason: "goodwill credit for the outage the customer reported",
        expect,
    };
    vec![
        Plan {
            title: "look up customer cus_001",
            tool: "get_customer",
            arguments: json!({"id": "cus_001"}),
            reason: "customer cus_001 wrote in about a duplicate charge",
            expect: Expect::Allowed,
        },
        Plan {
            title: "list the charges of cus_001",
            tool: "list_charges",
            arguments: json!({"customer": "cus_001"}),
            reason: "find the duplicate charge",
            expect: Expect::Allowed,
        },
        Plan {
            title: "refund 40 of ch_001 (within the limit)",
            tool: "issue_refund",
            arguments: json!({"charge_id": "ch_001", "amount": 40, "reason": "duplicate charge"}),
            reason: "the customer was charged twice for the same seats",
            expect: Expect::Allowed,
        },
        Plan {
            title: "refund 700 of ch_003 (over the 500 limit)",
            tool: "issue_refund",
            arguments: json!({"charge_id": "ch_003", "amount": 700, "reason": "customer asked"}),
            reason: "the customer asked for most of their onboarding fee back",
            expect: Expect::Refused("condition"),
        },
        Plan {
            title: "delete customer cus_002 (outside the remit)",
            tool: "delete_customer",
            arguments: json!({"id": "cus_002"}),
            reason: "the customer asked to close their account",
            expect: Expect::Refused("unlisted"),
        },
        refund_of_10(
            "refund 10 of ch_002 (second refund this hour)",
            Expect::Allowed,
        ),
        refund_of_10(
            "refund 10 of ch_002 (third refund this hour)",
            Expect::Allowed,
        ),
        refund_of_10(
            "refund 10 of ch_002 (fourth this hour, over the budget)",
            Expect::Refused("over_budget"),
        ),
    ]
}

/// Runs the scripted support agent against the MCP endpoint at `mcp_url`
/// (e.g. `http://127.0.0.1:8080/mcp`), sending `Authorization: Bearer
/// {token}` and speaking the `2026-07-28` protocol. Calls `on_step` as each
/// step completes and returns them all: first the `tools/list`, then eight
/// tool calls. Refusals and tool errors are steps, not errors.
pub async fn run_support_agent(
    mcp_url: &str,
    token: &str,
    route: Route,
    on_step: &mut (dyn FnMut(&Step) + Send),
) -> Result<Vec<Step>, ScriptError> {
    let config = StreamableHttpClientTransportConfig::with_uri(mcp_url).auth_header(token);
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("remit-support-agent", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::V_2026_07_28)
    .serve_with_lifecycle(
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .map_err(|error| ScriptError::Connect(Box::new(error)))?;

    let steps = run_steps(&client, route, on_step).await;
    if let Err(error) = client.cancel().await {
        tracing::debug!(%error, "support agent client did not shut down cleanly");
    }
    steps
}

async fn run_steps(
    client: &RunningService<RoleClient, ClientConfig>,
    route: Route,
    on_step: &mut (dyn FnMut(&Step) + Send),
) -> Result<Vec<Step>, ScriptError> {
    let plan = plan();
    let mut steps = Vec::with_capacity(plan.len() + 1);
    // every call of this walk-through is one run in remit's audit log
    let run = format!(
        "demo-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );

    let tools = client
        .list_all_tools()
        .await
        .map_err(|error| ScriptError::ListTools(Box::new(error)))?;
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    let listed = Step {
        title: format!("list the tools it may call ({} listed)", names.len()),
        tool: "tools/list".to_owned(),
        arguments: Value::Null,
        expect: Expect::Allowed,
        outcome: StepOutcome::Result(json!({ "tools": names })),
        as_expected: true,
    };
    on_step(&listed);
    steps.push(listed);

    for Plan {
        title,
        tool,
        mut arguments,
        reason,
        expect,
    } in plan
    {
        let tool = format!("{}{tool}", route.prefix());
        if route == Route::Gateway
            && let Value::Object(map) = &mut arguments
        {
            map.insert("_reason".to_owned(), Value::from(reason));
        }
        let mut params = CallToolRequestParams::new(tool.clone());
        if let Value::Object(map) = &arguments {
            params = params.with_arguments(map.clone());
        }
        if route == Route::Gateway {
            let mut meta = serde_json::Map::new();
            meta.insert("remit/run".to_owned(), Value::from(run.as_str()));
            params.meta = Some(meta.into());
        }
        let outcome = match client.call_tool(params).await {
            Ok(result) => outcome_of(&result),
            Err(ServiceError::McpError(error)) => StepOutcome::ToolError(format!(
                "json-rpc error {}: {}",
                error.code.0, error.message
            )),
            Err(source) => {
                return Err(ScriptError::Call {
                    tool,
                    source: Box::new(source),
                });
            }
        };
        let step = Step {
            title: title.to_owned(),
            tool,
            arguments,
            expect,
            as_expected: expect.is_met_by(&outcome),
            outcome,
        };
        on_step(&step);
        steps.push(step);
    }
    Ok(steps)
}

/// Reads a tool result as the agent sees it: a remit refusal carries
/// `_meta.remit.code`; any other error is the tool's own.
fn outcome_of(result: &CallToolResult) -> StepOutcome {
    let text = result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    if result.is_error != Some(true) {
        return StepOutcome::Result(
            result
                .structured_content
                .clone()
                .unwrap_or(Value::String(text)),
        );
    }
    let remit = result.meta.as_ref().and_then(|meta| meta.0.get("remit"));
    match remit
        .and_then(|remit| remit.get("code"))
        .and_then(Value::as_str)
    {
        Some(code) => StepOutcome::Refused {
            code: code.to_owned(),
            message: remit
                .and_then(|remit| remit.get("message"))
                .and_then(Value::as_str)
                .map_or(text, str::to_owned),
        },
        None => StepOutcome::ToolError(text),
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::ContentBlock;

    use super::*;

    #[test]
    fn a_gateway_refusal_reads_as_refused_with_its_code() {
        let mut result = CallToolResult::error(vec![ContentBlock::text(
            "refused: condition `args.amount <= 500` is false",
        )]);
        let Value::Object(meta) = json!({"remit": {
            "code": "condition",
            "call": "call_1",
            "message": "condition `args.amount <= 500` is false",
        }}) else {
            unreachable!()
        };
        result.meta = Some(rmcp::model::MetaObject(meta));
        let outcome = outcome_of(&result);
        assert_eq!(
            outcome,
            StepOutcome::Refused {
                code: "condition".to_owned(),
                message: "condition `args.amount <= 500` is false".to_owned(),
            }
        );
        assert!(Expect::Refused("condition").is_met_by(&outcome));
        assert!(!Expect::Refused("unlisted").is_met_by(&outcome));
        assert!(!Expect::Allowed.is_met_by(&outcome));
    }

    #[test]
    fn a_tool_error_without_a_remit_code_is_the_tools_own() {
        let result = CallToolResult::error(vec![ContentBlock::text("charge `ch_9` not found")]);
        let outcome = outcome_of(&result);
        assert_eq!(
            outcome,
            StepOutcome::ToolError("charge `ch_9` not found".to_owned())
        );
        assert!(!Expect::Allowed.is_met_by(&outcome));
    }

    #[test]
    fn a_result_without_structured_content_is_its_text() {
        let result = CallToolResult::success(vec![ContentBlock::text("ok")]);
        assert_eq!(outcome_of(&result), StepOutcome::Result(json!("ok")));
    }
}
