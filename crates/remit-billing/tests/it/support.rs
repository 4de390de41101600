//! Shared pieces: temp databases, client start-up in either era, the ledger
//! read straight from SQLite, and the billing scenario every transport runs.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
        JsonObject, ProtocolVersion,
    },
    service::RunningService,
    transport::{
        ConfigureCommandExt, IntoTransport, StreamableHttpClientTransport, TokioChildProcess,
    },
};
use serde_json::{Value, json};
use sqlx::{Connection, Row, SqliteConnection, sqlite::SqliteConnectOptions};
use tempfile::TempDir;

/// A running rmcp client.
pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

/// The two MCP lifecycles rmcp 3.11 speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// `2025-11-25`: `initialize` + `notifications/initialized`, then a session.
    Initialize,
    /// `2026-07-28`: `server/discover`, then self-contained requests whose
    /// `_meta` carries the protocol version and client capabilities.
    Discover,
}

impl Era {
    pub(crate) const ALL: [Self; 2] = [Self::Initialize, Self::Discover];

    pub(crate) fn version(self) -> ProtocolVersion {
        match self {
            Self::Initialize => ProtocolVersion::V_2025_11_25,
            Self::Discover => ProtocolVersion::V_2026_07_28,
        }
    }
}

/// A fresh SQLite path in its own temp dir (kept alive by the `TempDir`).
pub(crate) fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("billing.db");
    (dir, db)
}

/// The client configuration for `era`.
pub(crate) fn client_config(era: Era) -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("remit-billing-tests", "0"),
    )
    .with_protocol_version(era.version())
}

/// Starts an rmcp client on `transport` in `era`.
pub(crate) async fn connect<T, E, A>(transport: T, era: Era) -> Client
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    connect_with(client_config(era), transport, era).await
}

/// Starts `handler` as an rmcp client on `transport` in `era`. The handler's
/// `get_info` should come from [`client_config`].
pub(crate) async fn connect_with<H, T, E, A>(
    handler: H,
    transport: T,
    era: Era,
) -> RunningService<RoleClient, H>
where
    H: ClientHandler,
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let client = match era {
        // `serve` is the legacy `initialize` handshake.
        Era::Initialize => handler.serve(transport).await.unwrap(),
        Era::Discover => handler
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .unwrap(),
    };
    let negotiated = client.peer_info().unwrap().protocol_version.clone();
    assert_eq!(negotiated, era.version(), "negotiated version in {era:?}");
    client
}

/// Spawns the built binary with `args` and returns its stdio transport.
pub(crate) fn spawn_binary(args: &[&str]) -> TokioChildProcess {
    let command =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_remit-billing")).configure(|command| {
            command.args(args);
        });
    let (child, _stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
}

/// Serves billing over HTTP on a loopback port; returns `http://ADDR/mcp`.
pub(crate) async fn serve_billing_http(db: &Path) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let db = db.to_owned();
    remit_billing::seed(&db).await.unwrap();
    tokio::spawn(async move { remit_billing::serve_billing_http(listener, &db).await });
    format!("http://{addr}/mcp")
}

/// Serves echo over HTTP on a loopback port; returns `http://ADDR/mcp`.
pub(crate) async fn serve_echo_http() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(remit_billing::serve_echo_http(listener));
    format!("http://{addr}/mcp")
}

pub(crate) fn http_transport(url: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::from_uri(url.to_owned())
}

pub(crate) fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Calls `tool` with `arguments` and returns the tool result.
pub(crate) async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(object(arguments)))
        .await
        .unwrap()
}

/// The text of a result's first content block.
pub(crate) fn text(result: &CallToolResult) -> String {
    let block = result.content.first().expect("no content");
    block.as_text().expect("not text").text.clone()
}

/// One row of the upstream's own `received_calls` ledger.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LedgerRow {
    pub(crate) tool: String,
    pub(crate) arguments: Value,
    pub(crate) protocol_version: Option<String>,
}

/// Reads the `received_calls` ledger straight from the SQLite file, as a
/// gateway test would.
pub(crate) async fn ledger(db: &Path) -> Vec<LedgerRow> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(db)
        .read_only(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    let rows =
        sqlx::query("SELECT tool, arguments, protocol_version FROM received_calls ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    rows.iter()
        .map(|row| LedgerRow {
            tool: row.get("tool"),
            arguments: serde_json::from_str(row.get::<&str, _>("arguments")).unwrap(),
            protocol_version: row.get("protocol_version"),
        })
        .collect()
}

/// The billing scenario every transport and era runs: list the tools, issue
/// a refund, read it, cancel it, get refused for over-refunding and for an
/// unknown charge, and find each call in the upstream's ledger.
pub(crate) async fn billing_scenario(client: &Client, db: &Path, era: Era) {
    // The tool list, with annotations and schemas.
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cancel_refund",
            "delete_customer",
            "get_customer",
            "get_refund",
            "issue_refund",
            "list_charges",
            "send_email"
        ]
    );
    let tool = |name: &str| tools.iter().find(|tool| tool.name == name).unwrap();
    let hints = |name: &str| tool(name).annotations.clone().unwrap();
    assert_eq!(hints("get_customer").read_only_hint, Some(true));
    assert_eq!(hints("get_refund").read_only_hint, Some(true));
    assert_eq!(hints("list_charges").read_only_hint, Some(true));
    assert_eq!(hints("delete_customer").destructive_hint, Some(true));
    assert_eq!(hints("send_email").destructive_hint, Some(true));
    assert_eq!(hints("cancel_refund").idempotent_hint, Some(true));
    assert_eq!(hints("issue_refund").idempotent_hint, Some(false));
    let schema = Value::Object((*tool("issue_refund").input_schema).clone());
    assert_eq!(schema["properties"]["amount"]["type"], "number");
    assert_eq!(
        schema["required"],
        json!(["charge_id", "amount", "reason"]),
        "{schema}"
    );
    assert!(tool("issue_refund").output_schema.is_some());

    // Issue a refund: JSON text and the same object as structuredContent.
    let issued = call(
        client,
        "issue_refund",
        json!({"charge_id": "ch_001", "amount": 40, "reason": "duplicate charge"}),
    )
    .await;
    assert_eq!(issued.is_error, Some(false), "{issued:?}");
    let refund = issued.structured_content.clone().unwrap();
    assert_eq!(refund["status"], "issued");
    assert_eq!(refund["amount"], 40.0);
    assert_eq!(refund["charge_id"], "ch_001");
    let refund_id = refund["refund_id"].as_str().unwrap().to_owned();
    assert!(refund_id.starts_with("r_"), "{refund_id}");
    assert_eq!(
        serde_json::from_str::<Value>(&text(&issued)).unwrap(),
        refund
    );

    // Read it back, cancel it, read it again.
    let fetched = call(client, "get_refund", json!({"id": refund_id})).await;
    assert_eq!(fetched.structured_content.unwrap()["status"], "issued");
    let cancelled = call(client, "cancel_refund", json!({"id": refund_id})).await;
    assert_eq!(cancelled.is_error, Some(false));
    assert_eq!(cancelled.structured_content.unwrap()["status"], "cancelled");
    let fetched = call(client, "get_refund", json!({"id": refund_id})).await;
    assert_eq!(fetched.structured_content.unwrap()["status"], "cancelled");

    // Over-refund and unknown charge: tool errors, not protocol errors.
    let over = call(
        client,
        "issue_refund",
        json!({"charge_id": "ch_002", "amount": 40.01, "reason": "too much"}),
    )
    .await;
    assert_eq!(over.is_error, Some(true));
    assert!(text(&over).contains("exceeds"), "{}", text(&over));
    let missing = call(
        client,
        "issue_refund",
        json!({"charge_id": "ch_999", "amount": 1, "reason": "no such charge"}),
    )
    .await;
    assert_eq!(missing.is_error, Some(true));
    assert_eq!(text(&missing), "charge `ch_999` not found");

    // The upstream's own ledger saw every call, in order, with its era.
    let ledger = ledger(db).await;
    let tools: Vec<&str> = ledger.iter().map(|row| row.tool.as_str()).collect();
    assert_eq!(
        tools,
        [
            "issue_refund",
            "get_refund",
            "cancel_refund",
            "get_refund",
            "issue_refund",
            "issue_refund"
        ]
    );
    assert_eq!(
        ledger.first().unwrap().arguments,
        json!({"charge_id": "ch_001", "amount": 40, "reason": "duplicate charge"})
    );
    for row in &ledger {
        assert_eq!(
            row.protocol_version.as_deref(),
            Some(era.version().as_str())
        );
    }
}
