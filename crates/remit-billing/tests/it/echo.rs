//! The echo server over stdio and HTTP, in both eras.

use rmcp::{ServiceError, model::CallToolRequestParams};
use serde_json::json;

use crate::support::{
    Client, Era, call, connect, http_transport, object, serve_echo_http, spawn_binary, text,
};

async fn echo_behaves(client: &Client) {
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        ["echo", "sleep", "reject", "ask", "cancelled", "asks"]
    );
    let echo = tools.iter().find(|t| t.name == "echo").unwrap();
    assert_eq!(echo.name, "echo");
    assert_eq!(
        echo.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );

    let result = call(client, "echo", json!({"text": "hello, remit"})).await;
    assert_eq!(result.is_error, Some(false));
    assert_eq!(text(&result), "hello, remit");

    let slept = call(client, "sleep", json!({"ms": 20})).await;
    assert_eq!(text(&slept), "slept 20 ms");

    let missing = call(client, "echo", json!({})).await;
    assert_eq!(missing.is_error, Some(true));

    // `reject` always answers a JSON-RPC error, with data
    match client.call_tool(CallToolRequestParams::new("reject")).await {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code.0, -32021);
            assert_eq!(
                e.data,
                Some(json!({"requiredCapabilities": {"sampling": {}}}))
            );
        }
        other => panic!("{other:?}"),
    }

    // An unknown tool is a protocol error (-32602), not a tool result.
    let unknown = client
        .call_tool(CallToolRequestParams::new("shout").with_arguments(object(json!({}))))
        .await;
    match unknown {
        Err(ServiceError::McpError(error)) => assert_eq!(error.code.0, -32602),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn echo_over_stdio_in_both_eras() {
    for era in Era::ALL {
        let client = connect(spawn_binary(&["--echo"]), era).await;
        echo_behaves(&client).await;
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn echo_over_http_in_both_eras() {
    let url = serve_echo_http().await;
    for era in Era::ALL {
        let client = connect(http_transport(&url), era).await;
        echo_behaves(&client).await;
        client.cancel().await.unwrap();
    }
}
