//! The brief's bad-input list: each is refused precisely and the upstream receives nothing.

use crate::support::{Remit, STANDARD, TOKEN, register, stateless_meta};
use serde_json::json;

#[test]
fn rejects_duplicate_json_keys() {
    let r = Remit::start(STANDARD);
    let body = br#"{"tool":"billing.issue_refund","arguments":{"charge_id":"ch_003","amount":10,"amount":900,"reason":"x"}}"#;
    let (status, text) = r.post_raw("/v1/calls", body.to_vec(), &[]);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("duplicate key `amount`"), "{text}");
    let mcp = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"billing.get_customer","name":"billing.delete_customer","arguments":{"id":"cus_001"}}}"#;
    let (status, text) = r.post_raw(
        "/mcp",
        mcp.to_vec(),
        &[("mcp-protocol-version", "2026-07-28")],
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("duplicate key `name`"), "{text}");
    assert!(r.ledger().is_empty());
}

#[test]
fn rejects_look_alike_tool_names() {
    let r = Remit::start(STANDARD);
    for name in [
        "Billing.get_customer",
        "billing.GET_CUSTOMER",
        "billing.get_customer ",
        " billing.get_customer",
        "billing.get\u{200b}_customer",
        "bіlling.get_customer", // Cyrillic і
        "billing.get_customеr", // Cyrillic е
        "other.get_customer",
        "get_customer",
        "billing..get_customer",
        "billing.get_customer\n",
    ] {
        let (status, body) = r.call(
            "billing.get_customer"
                .replace("billing.get_customer", name)
                .as_str(),
            json!({ "id": "cus_001" }),
        );
        assert_eq!(status, 403, "{name:?} was not refused: {body}");
        assert_eq!(body["code"], "unlisted", "{name:?}: {body}");
    }
    assert!(r.ledger().is_empty(), "{:?}", r.ledger());
}

#[test]
fn rejects_oversized_payloads() {
    let r = Remit::start(STANDARD);
    let big = "x".repeat(2 << 20);
    let body =
        serde_json::to_vec(&json!({ "tool": "billing.get_customer", "arguments": { "id": big } }))
            .unwrap();
    let (status, _) = r.post_raw("/v1/calls", body, &[]);
    assert_eq!(status, 413);
    let mcp = serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "billing.get_customer", "arguments": { "id": big } } })).unwrap();
    let (status, _) = r.post_raw("/mcp", mcp, &[]);
    assert_eq!(status, 413);
    assert!(r.ledger().is_empty());
}

#[test]
fn rejects_malformed_json_rpc() {
    let r = Remit::start(STANDARD);
    for body in [
        &b"{"[..],
        b"[]",
        b"not json",
        b"{\"jsonrpc\":\"2.0\",\"id\":1}",
        b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"tools/call\"}",
    ] {
        let (status, text) = r.post_raw(
            "/mcp",
            body.to_vec(),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
            ],
        );
        assert!(
            (400..500).contains(&status),
            "{:?} got {status}: {text}",
            String::from_utf8_lossy(body)
        );
    }
    // a batch (JSON-RPC batching no longer exists)
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
    let (status, _) = r.post_raw(
        "/mcp",
        batch.to_vec(),
        &[("mcp-protocol-version", "2026-07-28")],
    );
    assert!((400..500).contains(&status));
    assert!(r.ledger().is_empty());
}

#[test]
fn rejects_arguments_that_are_not_an_object() {
    let r = Remit::start(STANDARD);
    for args in [json!([1, 2]), json!("cus_001"), json!(7)] {
        let (status, body) = r.call("billing.get_customer", args.clone());
        assert_eq!(status, 422, "{args}: {body}");
    }
    assert!(r.ledger().is_empty());
    let _ = TOKEN;
}

#[test]
fn a_call_within_the_registers_body_limit_is_read_on_either_way_in() {
    // a limit above rmcp's own (4 MiB): the plain short way and rmcp's way both take it
    let r = Remit::start_with(|port| {
        register(STANDARD, port).replace("[gateway]", "[gateway]\nmax_request_bytes = 8388608")
    });
    let pad = "x".repeat(5 << 20);
    for progress in [false, true] {
        let mut meta = stateless_meta();
        meta["pad"] = json!(pad);
        if progress {
            // a progress token sends the call the long way, through rmcp
            meta["progressToken"] = json!("p1");
        }
        let body = serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "billing.get_customer", "arguments": { "id": "cus_001" }, "_meta": meta } }))
        .unwrap();
        let (status, text) = r.post_raw(
            "/mcp",
            body,
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "billing.get_customer"),
            ],
        );
        assert_eq!(status, 200, "progress {progress}: {text}");
        assert!(text.contains("cus_001"), "progress {progress}: {text}");
    }
    assert_eq!(r.ledger().len(), 2, "{:?}", r.ledger());
}
