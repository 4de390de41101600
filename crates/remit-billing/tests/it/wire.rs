//! The raw Streamable HTTP shapes rmcp 3.11 accepts, pinned with plain HTTP
//! requests so the gateway engineers can rely on them.

use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};

use crate::support::{ledger, serve_billing_http, temp_db};

const ACCEPT: &str = "application/json, text/event-stream";
const V2026: &str = "2026-07-28";

/// The `_meta` every 2026-07-28 request carries.
fn meta_2026() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "curl", "version": "1"}
    })
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    /// The JSON-RPC message: the body itself, or the last `data:` event of an
    /// SSE body.
    fn message(&self) -> Value {
        let is_sse = self
            .headers
            .get("content-type")
            .is_some_and(|value| value.to_str().unwrap().starts_with("text/event-stream"));
        if is_sse {
            let data = self
                .body
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .rfind(|data| data.starts_with('{'))
                .unwrap_or_else(|| panic!("no data event in {}", self.body));
            serde_json::from_str(data).unwrap()
        } else {
            serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not json: {}", self.body))
        }
    }
}

async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn discover_needs_version_header_method_header_and_meta() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;
    let discover = json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": meta_2026()}
    });

    let ok = post(
        &url,
        &[
            ("mcp-protocol-version", V2026),
            ("mcp-method", "server/discover"),
        ],
        &discover,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.headers["content-type"], "application/json");
    assert!(ok.headers.get("mcp-session-id").is_none());
    let result = &ok.message()["result"];
    let versions = result["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!("2025-11-25")) && versions.contains(&json!(V2026)));
    assert!(result["capabilities"]["tools"].is_object());
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "remit-billing"
    );

    // Each missing piece is a 400 before any handler runs.
    let no_method = post(&url, &[("mcp-protocol-version", V2026)], &discover).await;
    assert_eq!(no_method.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_method.message()["error"]["code"], -32020);
    let no_version = post(&url, &[("mcp-method", "server/discover")], &discover).await;
    assert_eq!(no_version.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_version.message()["error"]["code"], -32020);
    let no_caps = json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": V2026}}
    });
    let no_caps = post(
        &url,
        &[
            ("mcp-protocol-version", V2026),
            ("mcp-method", "server/discover"),
        ],
        &no_caps,
    )
    .await;
    assert_eq!(no_caps.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_caps.message()["error"]["code"], -32602);
}

#[tokio::test]
async fn stateless_tool_call_needs_mcp_name_and_a_refused_one_never_arrives() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;
    let refund = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "_meta": meta_2026(),
            "name": "issue_refund",
            "arguments": {"charge_id": "ch_001", "amount": 40, "reason": "duplicate"}
        }
    });
    let headers = [
        ("mcp-protocol-version", V2026),
        ("mcp-method", "tools/call"),
        ("mcp-name", "issue_refund"),
    ];

    let ok = post(&url, &headers, &refund).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.headers["content-type"], "application/json");
    let result = &ok.message()["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["isError"], false);
    assert_eq!(result["structuredContent"]["status"], "issued");
    assert_eq!(result["structuredContent"]["amount"], 40.0);

    // Without Mcp-Name (or with one that disagrees with the body) rmcp
    // refuses at the HTTP layer: the tool never sees the call.
    let no_name = post(&url, &headers[..2], &refund).await;
    assert_eq!(no_name.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_name.message()["error"]["code"], -32020);
    let wrong_name = post(
        &url,
        &[
            ("mcp-protocol-version", V2026),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_refund"),
        ],
        &refund,
    )
    .await;
    assert_eq!(wrong_name.status, StatusCode::BAD_REQUEST);
    let wrong_version = post(
        &url,
        &[
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "issue_refund"),
        ],
        &refund,
    )
    .await;
    assert_eq!(wrong_version.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_version.message()["error"]["code"], -32020);

    let ledger = ledger(&db).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
}

#[tokio::test]
async fn initialize_opens_a_session_that_later_requests_name() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;

    let init = post(
        &url,
        &[],
        &json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "curl", "version": "1"}
            }
        }),
    )
    .await;
    assert_eq!(init.status, StatusCode::OK, "{}", init.body);
    assert!(
        init.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(init.message()["result"]["protocolVersion"], "2025-11-25");
    let session = init.headers["mcp-session-id"].to_str().unwrap().to_owned();

    let in_session = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let initialized = post(
        &url,
        &in_session,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status, StatusCode::ACCEPTED);

    let call = post(
        &url,
        &in_session,
        &json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "issue_refund",
                       "arguments": {"charge_id": "ch_001", "amount": 500, "reason": "too much"}}
        }),
    )
    .await;
    assert_eq!(call.status, StatusCode::OK);
    let result = &call.message()["result"];
    assert_eq!(result["isError"], true);
    assert!(result.get("resultType").is_none(), "legacy shape: {result}");

    // Outside a session, a legacy request is refused.
    let no_session = post(
        &url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .await;
    assert_eq!(no_session.status, StatusCode::BAD_REQUEST);

    // Asking `initialize` for 2026-07-28 gets the newest handshake version.
    let newer = post(
        &url,
        &[],
        &json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": V2026, "capabilities": {},
                       "clientInfo": {"name": "curl", "version": "1"}}
        }),
    )
    .await;
    assert_eq!(newer.message()["result"]["protocolVersion"], "2025-11-25");

    let closed = reqwest::Client::new()
        .delete(&url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::ACCEPTED);
    assert_eq!(ledger(&db).await.len(), 1);
}

#[tokio::test]
async fn a_non_loopback_host_header_is_forbidden() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;
    let reply = post(
        &url,
        &[
            ("host", "billing.internal"),
            ("mcp-protocol-version", V2026),
            ("mcp-method", "server/discover"),
        ],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                "params": {"_meta": meta_2026()}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}
