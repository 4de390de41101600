//! The brief's bad-input list: each is refused precisely and the upstream receives nothing.

use crate::support::{OTHER_TOKEN, Remit, STANDARD, TOKEN, register, stateless_meta};
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
fn rejects_a_call_body_that_is_not_an_object() {
    // serde reads a struct from an array of its fields in order: this one ran before
    let r = Remit::start(STANDARD);
    for body in [
        r#"["billing.get_customer", {"id": "cus_001"}]"#,
        r#" ["billing.get_customer", {"id": "cus_001"}, "why", "run-1"]"#,
        r#""billing.get_customer""#,
        "null",
    ] {
        let (status, text) = r.post_raw("/v1/calls", body.as_bytes().to_vec(), &[]);
        assert_eq!(status, 400, "{body}: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["code"], "bad_request", "{body}: {text}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("must be a JSON object"),
            "{body}: {text}"
        );
    }
    assert!(r.ledger().is_empty(), "{:?}", r.ledger());
    assert!(r.stages_of("billing.get_customer").is_empty());
}

#[test]
fn a_reason_and_a_run_over_http_are_capped_as_over_mcp() {
    // the audit keeps 2,000 characters of a stated reason and 128 of a run on every entry;
    // `/v1/calls` kept them whole, and the run is written on every event of the call
    let r = Remit::start(STANDARD);
    let body = json!({
        "tool": "billing.get_customer", "arguments": { "id": "cus_001" },
        "reason": "r".repeat(100_000), "run": "u".repeat(50_000)
    });
    let (status, text) = r.post_raw("/v1/calls", serde_json::to_vec(&body).unwrap(), &[]);
    assert_eq!(status, 200, "{text}");
    let events: Vec<_> = r
        .events()
        .into_iter()
        .filter(|l| l["event"]["action"] == "billing.get_customer")
        .collect();
    assert!(!events.is_empty());
    for l in &events {
        assert_eq!(l["event"]["run"], "u".repeat(128), "{l}");
    }
    let proposed = events
        .iter()
        .find(|l| l["event"]["stage"] == "proposed")
        .unwrap();
    assert_eq!(
        proposed["event"]["detail"]["reason"],
        "r".repeat(2000),
        "{proposed}"
    );
    // and a reason given as the `_reason` argument, cut at a character, not a byte
    let body = json!({
        "tool": "billing.list_charges",
        "arguments": { "customer": "cus_001", "_reason": "é".repeat(5_000) }
    });
    let (status, text) = r.post_raw("/v1/calls", serde_json::to_vec(&body).unwrap(), &[]);
    assert_eq!(status, 200, "{text}");
    let proposed = r
        .events()
        .into_iter()
        .find(|l| {
            l["event"]["action"] == "billing.list_charges" && l["event"]["stage"] == "proposed"
        })
        .unwrap();
    assert_eq!(
        proposed["event"]["detail"]["reason"],
        "é".repeat(2000),
        "{proposed}"
    );
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

/// A 2025-11-25 request on `/mcp` as the agent whose token is `token`, in session `session` if any.
fn in_session(
    r: &Remit,
    method: reqwest::Method,
    token: &str,
    session: Option<&str>,
    body: Option<&serde_json::Value>,
) -> reqwest::blocking::Response {
    let mut req = r
        .client
        .request(method, r.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = session {
        req = req.header("mcp-session-id", session);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().unwrap()
}

#[test]
fn another_agents_token_cannot_use_read_or_end_a_session() {
    use reqwest::Method;
    let r = Remit::start(STANDARD);
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "it", "version": "1" } } });
    let opened = in_session(&r, Method::POST, TOKEN, None, Some(&init));
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(opened);
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let status = in_session(&r, Method::POST, TOKEN, Some(&session), Some(&initialized)).status();
    assert_eq!(status, 202);

    // other-bot, which may call `billing.list_charges` itself, names support-bot's session
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "billing.list_charges", "arguments": { "customer": "cus_001" } } });
    let list = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" });
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": { "requestId": 2 } });
    for (method, body) in [
        (Method::POST, Some(&call)),
        (Method::POST, Some(&list)),
        (Method::POST, Some(&cancel)),
        (Method::GET, None),
        (Method::DELETE, None),
    ] {
        let answer = in_session(&r, method.clone(), OTHER_TOKEN, Some(&session), body);
        assert_eq!(
            answer.status(),
            404,
            "{method} {body:?} reached another agent's session"
        );
    }
    assert!(r.ledger().is_empty(), "{:?}", r.ledger());

    // the session is still its agent's, whole, until it ends it
    let answer = in_session(&r, Method::POST, TOKEN, Some(&session), Some(&list));
    assert_eq!(answer.status(), 200);
    assert!(answer.text().unwrap().contains("billing.get_customer"));
    assert_eq!(
        in_session(&r, Method::GET, TOKEN, Some(&session), None).status(),
        200
    );
    assert_eq!(
        in_session(&r, Method::DELETE, TOKEN, Some(&session), None).status(),
        202
    );
    // ended: the spec's answer, so the client starts again
    for method in [Method::DELETE, Method::GET] {
        assert_eq!(
            in_session(&r, method, TOKEN, Some(&session), None).status(),
            404
        );
    }
    assert_eq!(
        in_session(&r, Method::POST, TOKEN, Some(&session), Some(&list)).status(),
        404
    );
}

/// A 2025-11-25 `initialize` with JSON-RPC id `id`.
fn session_init(id: u32) -> serde_json::Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "it", "version": "1" } } })
}

/// Sends an `initialize` without a session as `token`'s agent: the status, the session it
/// opened (if any) and the JSON-RPC body (JSON, or one SSE event carrying it).
fn open_session(r: &Remit, token: &str, id: u32) -> (u16, Option<String>, serde_json::Value) {
    let answer = in_session(
        r,
        reqwest::Method::POST,
        token,
        None,
        Some(&session_init(id)),
    );
    let status = answer.status().as_u16();
    let session = answer
        .headers()
        .get("mcp-session-id")
        .map(|s| s.to_str().unwrap().to_owned());
    let text = answer.text().unwrap();
    let json = text
        .find('{')
        .zip(text.rfind('}'))
        .map_or("null", |(from, to)| &text[from..=to]);
    let body = serde_json::from_str(json).unwrap_or_else(|e| panic!("{status} {e}: {text}"));
    (status, session, body)
}

/// `initialize`s that race for an agent's last session slot: one opens a session, every
/// other is answered as an agent at its limit is (429 with the JSON-RPC error), not with
/// rmcp's 500, and opens none.
#[test]
fn racing_initializes_past_the_limit_of_sessions_are_refused_with_429() {
    use reqwest::Method;
    let r = Remit::start_with(|port| {
        register(STANDARD, port).replace("[gateway]", "[gateway]\nmax_sessions_per_agent = 1")
    });
    const RACERS: u32 = 8;
    for round in 0..6 {
        let start = std::sync::Barrier::new(RACERS as usize);
        let answers: Vec<_> = std::thread::scope(|s| {
            let racers: Vec<_> = (1..=RACERS)
                .map(|id| {
                    let (r, start) = (&r, &start);
                    s.spawn(move || {
                        start.wait();
                        (id, open_session(r, TOKEN, id))
                    })
                })
                .collect();
            racers.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut opened = Vec::new();
        for (id, (status, session, body)) in answers {
            match status {
                200 => opened.push(session.expect("a session opened without an id")),
                429 => {
                    assert_eq!(session, None, "round {round}: {body}");
                    assert_eq!(body["jsonrpc"], "2.0", "round {round}: {body}");
                    assert_eq!(body["id"], id, "round {round}: {body}");
                    assert_eq!(body["error"]["code"], -32000, "round {round}: {body}");
                    let message = body["error"]["message"].as_str().unwrap();
                    assert!(
                        message.contains("1 open sessions"),
                        "round {round}: {message}"
                    );
                }
                _ => panic!("round {round}: initialize {id} answered {status}: {body}"),
            }
        }
        assert_eq!(opened.len(), 1, "round {round}: {opened:?}");
        // no more was created than the one: the agent is at its limit, and ending that
        // one frees the slot for the next round
        let (status, _, body) = open_session(&r, TOKEN, 99);
        assert_eq!(status, 429, "round {round}: {body}");
        let status = in_session(&r, Method::DELETE, TOKEN, Some(&opened[0]), None).status();
        assert_eq!(status, 202, "round {round}");
    }
}

#[test]
fn an_agent_at_its_limit_of_sessions_opens_no_more_until_it_ends_one() {
    // an agent (or a leaked token) could open sessions in a loop, each kept in memory
    use reqwest::Method;
    let r = Remit::start_with(|port| {
        register(STANDARD, port).replace("[gateway]", "[gateway]\nmax_sessions_per_agent = 3")
    });
    let init = session_init;
    let open = |token: &str, id: u32| open_session(&r, token, id);
    let mut held = Vec::new();
    for id in 1..=3 {
        let (status, session, body) = open(TOKEN, id);
        assert_eq!(status, 200, "{body}");
        held.push(session.unwrap());
    }
    // the fourth is refused before a session is created, saying how to recover
    for id in 4..=5 {
        let (status, session, body) = open(TOKEN, id);
        assert_eq!(status, 429, "{body}");
        assert_eq!(session, None, "{body}");
        assert_eq!(body["id"], id, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("3 open sessions")
                && message.contains("DELETE")
                && message.contains("max_sessions_per_agent"),
            "{message}"
        );
    }
    // the method's name written with an escape is the same `initialize`: refused the same way
    let escaped = init(8)
        .to_string()
        .replace("\"initialize\"", "\"initi\\u0061lize\"");
    assert!(escaped.contains("initi\\u0061lize"), "{escaped}");
    let answer = r
        .client
        .post(r.url("/mcp"))
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("content-type", "application/json")
        .body(escaped)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 429);
    assert!(answer.headers().get("mcp-session-id").is_none());
    // the sessions held still work, and another agent is unaffected
    let list = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/list" });
    let status = in_session(&r, Method::POST, TOKEN, Some(&held[0]), Some(&list)).status();
    assert_eq!(status, 200);
    let (status, session, body) = open(OTHER_TOKEN, 1);
    assert_eq!(status, 200, "{body}");
    assert!(session.is_some());
    // a stateless 2026-07-28 call needs no session and is not refused
    let (status, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.get_customer", "arguments": { "id": "cus_001" } }),
    );
    assert_eq!(status, 200, "{v}");
    // a session ended frees its slot
    let status = in_session(&r, Method::DELETE, TOKEN, Some(&held[1]), None).status();
    assert_eq!(status, 202);
    let (status, session, body) = open(TOKEN, 6);
    assert_eq!(status, 200, "{body}");
    assert!(session.is_some());
    let (status, _, body) = open(TOKEN, 7);
    assert_eq!(status, 429, "{body}");
}

#[test]
fn a_call_body_not_declared_json_is_refused_with_415_before_it_is_read() {
    // a body sent as text/plain or form-encoded was read as JSON and ran
    let r = Remit::start(STANDARD);
    let body = br#"{"tool":"billing.get_customer","arguments":{"id":"cus_001"}}"#;
    let send = |types: &[&str]| {
        let mut req = r
            .client
            .post(r.url("/v1/calls"))
            .bearer_auth(TOKEN)
            .body(body.to_vec());
        for t in types {
            req = req.header("content-type", *t);
        }
        req.send().unwrap()
    };
    for types in [
        &["text/plain"][..],
        &["text/plain; charset=utf-8"],
        &["application/x-www-form-urlencoded"],
        &["multipart/form-data; boundary=x"],
        &["application/octet-stream"],
        &["application/jsonx"],
        &["application/json-seq"],
        &["application/json; charset=iso-8859-1"],
        &[],
        &["application/json", "text/plain"],
    ] {
        let answer = send(types);
        assert_eq!(answer.status().as_u16(), 415, "{types:?}");
        assert_eq!(answer.headers()["accept-post"], "application/json");
        assert_eq!(answer.headers()["content-type"], "application/json");
        let refused: serde_json::Value = answer.json().unwrap();
        assert_eq!(refused["code"], "bad_request", "{types:?}: {refused}");
        assert_eq!(refused["call"], serde_json::Value::Null, "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("`Content-Type: application/json`"),
            "{types:?}: {refused}"
        );
    }
    assert!(r.ledger().is_empty(), "{:?}", r.ledger());
    assert!(r.stages_of("billing.get_customer").is_empty());
    // JSON in any case, with parameters, is read
    for t in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
    ] {
        let answer = send(&[t]);
        assert_eq!(answer.status().as_u16(), 200, "{t}");
    }
    assert_eq!(r.ledger().len(), 4, "{:?}", r.ledger());
}

#[test]
fn every_answer_given_with_the_body_unread_closes_the_connection() {
    // a 401 (and a 405, and a 413 or 401 on /mcp, and rmcp's answers to a GET or DELETE
    // with a body) left the body unread without saying `Connection: close`: hyper closed
    // the connection and the client, reusing it, got no answer
    let r = Remit::start(STANDARD);
    // larger than one TCP segment, small enough to arrive whole: a larger rest, unread when
    // the connection closes, can reset it before the client reads the answer
    let big = vec![b' '; 64 << 10];
    let call = br#"{"tool":"billing.get_customer","arguments":{"id":"cus_001"}}"#;
    let oversized = serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "billing.get_customer", "arguments": { "id": "x".repeat(2 << 20) } } }))
    .unwrap();
    for round in 0..3 {
        let refused = [
            r.client
                .post(r.url("/v1/calls"))
                .bearer_auth("not-a-token")
                .header("content-type", "application/json")
                .body(big.clone()),
            r.client.post(r.url("/v1/calls")).body(big.clone()),
            r.client
                .put(r.url("/v1/calls"))
                .bearer_auth(TOKEN)
                .body(big.clone()),
            r.client
                .post(r.url("/mcp"))
                .bearer_auth("not-a-token")
                .header("content-type", "application/json")
                .body(big.clone()),
            r.client
                .post(r.url("/mcp"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(oversized.clone()),
            // a path remit does not serve, and a method its GET endpoints do not take
            r.client
                .post(r.url("/v1/call"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(big.clone()),
            r.client.post(r.url("/health")).body(big.clone()),
            // rmcp's own answers on `/mcp`, to a `GET` and a `DELETE` sent with a body
            r.client
                .get(r.url("/mcp"))
                .bearer_auth(TOKEN)
                .header("accept", "text/event-stream")
                .body(big.clone()),
            r.client
                .delete(r.url("/mcp"))
                .bearer_auth(TOKEN)
                .body(big.clone()),
        ];
        for (req, status) in refused
            .into_iter()
            .zip([401, 401, 405, 401, 413, 404, 405, 400, 400])
        {
            let answer = req.send().unwrap();
            assert_eq!(answer.status().as_u16(), status, "round {round}");
            assert_eq!(
                answer
                    .headers()
                    .get("connection")
                    .map(|v| v.to_str().unwrap()),
                Some("close"),
                "round {round}: {status}"
            );
            // the client's next request, on a connection of its pool, is answered
            let next = r
                .client
                .post(r.url("/v1/calls"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(call.to_vec())
                .send()
                .unwrap();
            assert_eq!(next.status().as_u16(), 200, "round {round}: after {status}");
        }
    }
}

#[test]
fn null_arguments_are_no_arguments_over_http_as_over_mcp_and_documented_so() {
    // the endpoint read `"arguments": null` as no arguments, as MCP does, and its OpenAPI
    // document said `arguments` is an object, never null
    let r = Remit::start(STANDARD);
    let mut messages = Vec::new();
    for body in [
        r#"{"tool":"billing.get_customer","arguments":null}"#,
        r#"{"tool":"billing.get_customer"}"#,
        r#"{"tool":"billing.get_customer","arguments":{}}"#,
    ] {
        let (status, text) = r.post_raw("/v1/calls", body.as_bytes().to_vec(), &[]);
        assert_eq!(status, 422, "{body}: {text}");
        let refused: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(refused["code"], "invalid_arguments", "{body}: {refused}");
        messages.push(refused["message"].as_str().unwrap().to_owned());
    }
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    let (status, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.get_customer", "arguments": null }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["_meta"]["remit"]["code"], "invalid_arguments",
        "{v}"
    );
    assert!(r.ledger().is_empty(), "{:?}", r.ledger());
    let doc: serde_json::Value = r
        .client
        .get(r.url("/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let request = &doc["components"]["schemas"]["CallRequest"];
    let arguments = &request["properties"]["arguments"];
    let types: Vec<&str> = match &arguments["type"] {
        serde_json::Value::Array(all) => all.iter().filter_map(|t| t.as_str()).collect(),
        one => one.as_str().into_iter().collect(),
    };
    assert!(
        types.contains(&"object") && (types.contains(&"null") || arguments["nullable"] == true),
        "{arguments}"
    );
    assert!(
        !request["required"]
            .as_array()
            .unwrap()
            .contains(&json!("arguments")),
        "{request}"
    );
}

/// What remit answered `request` sent whole on a new connection, read until it closes:
/// the status, the head and the body (`None` if it closed without an answer), and how
/// long it took.
fn exchange(r: &Remit, request: &[u8]) -> (Option<(u16, String, String)>, std::time::Duration) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let start = std::time::Instant::now();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .unwrap_or_else(|e| panic!("no answer or closure within 10 s: {e}"));
    let took = start.elapsed();
    if answer.is_empty() {
        return (None, took);
    }
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        Some((status, head.to_ascii_lowercase(), body.to_owned())),
        took,
    )
}

/// A `POST` head to `path` with the support-bot token and `more` headers.
fn head(path: &str, more: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         mcp-protocol-version: 2026-07-28\r\n{more}\r\n"
    )
}

#[test]
fn a_body_that_never_finishes_arriving_is_answered_408_or_closed_at_the_deadline() {
    // on /v1/calls and on /mcp past the short way, such a body was waited for forever
    // (one agent held 500 connections open); the short way closed it after 30 s
    let r = Remit::start_with_env(STANDARD, &[("REMIT_BODY_READ_TIMEOUT_MS", "500")]);
    for (path, more, body) in [
        ("/v1/calls", "content-length: 100\r\n", &b"{\"tool\""[..]),
        // hyper's, not the short way's: chunked, or said to close
        ("/mcp", "transfer-encoding: chunked\r\n", b"64\r\n{\"jsonr"),
        (
            "/mcp",
            "content-length: 100\r\nconnection: close\r\n",
            b"{\"jsonr",
        ),
    ] {
        let mut request = head(path, more).into_bytes();
        request.extend_from_slice(body);
        let (answer, took) = exchange(&r, &request);
        let (status, head, body) = answer.unwrap_or_else(|| panic!("{path} {more:?}: no answer"));
        assert_eq!(status, 408, "{path} {more:?}: {head}{body}");
        assert!(head.contains("connection: close"), "{path}: {head}");
        assert!(took < std::time::Duration::from_secs(5), "{path}: {took:?}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let message = if path == "/mcp" {
            assert_eq!(body["error"]["code"], -32600, "{body}");
            &body["error"]["message"]
        } else {
            assert_eq!(body["code"], "bad_request", "{body}");
            &body["message"]
        };
        assert!(
            message
                .as_str()
                .unwrap()
                .contains("did not arrive within 0.5 s"),
            "{body}"
        );
    }
    // the short way's plain call closes the connection at the same deadline
    let mut request = head("/mcp", "content-length: 100\r\n").into_bytes();
    request.extend_from_slice(b"{\"jsonr");
    let (answer, took) = exchange(&r, &request);
    assert!(answer.is_none(), "{answer:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert!(r.ledger().is_empty());
}

#[test]
fn a_declared_length_over_the_limit_is_refused_413_before_the_body_is_read() {
    // a 2 MiB `Content-Length` with 2 bytes sent got no answer: the body was waited for
    let r = Remit::start(STANDARD);
    for path in ["/v1/calls", "/mcp"] {
        let mut request = head(path, "content-length: 2097152\r\n").into_bytes();
        request.extend_from_slice(b"{}");
        let (answer, took) = exchange(&r, &request);
        let (status, head, body) = answer.unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(status, 413, "{path}: {head}{body}");
        assert!(head.contains("connection: close"), "{path}: {head}");
        assert!(took < std::time::Duration::from_secs(5), "{path}: {took:?}");
        assert!(
            body.contains("request body is larger than 1048576 bytes"),
            "{path}: {body}"
        );
    }
    assert!(r.ledger().is_empty());
}

#[test]
fn a_body_that_is_not_valid_http_is_malformed_not_too_large() {
    // a bad chunk size was answered 413 `request body is larger than 1048576 bytes`
    let r = Remit::start(STANDARD);
    for path in ["/v1/calls", "/mcp"] {
        let mut request = head(path, "transfer-encoding: chunked\r\n").into_bytes();
        request.extend_from_slice(b"zz\r\n{}\r\n0\r\n\r\n");
        let (answer, _) = exchange(&r, &request);
        let (status, head, body) = answer.unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(status, 400, "{path}: {head}{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let message = if path == "/mcp" {
            assert_eq!(body["error"]["code"], -32600, "{body}");
            &body["error"]["message"]
        } else {
            assert_eq!(body["code"], "bad_request", "{body}");
            &body["message"]
        };
        assert!(
            message
                .as_str()
                .unwrap()
                .starts_with("malformed request body"),
            "{path}: {body}"
        );
    }
    assert!(r.ledger().is_empty());
}

/// `tools/call` params rmcp cannot read, and the field the answer must name.
fn bad_tools_call_params() -> Vec<(serde_json::Value, &'static str)> {
    vec![
        (
            json!({ "name": "billing.get_customer", "arguments": "cus_001" }),
            "`arguments` must be an object",
        ),
        (
            json!({ "name": "billing.get_customer", "arguments": 7 }),
            "`arguments` must be an object",
        ),
        (
            json!({ "name": 7, "arguments": {} }),
            "`name` must be a string",
        ),
        (
            json!({ "name": null, "arguments": {} }),
            "`name` must be a string",
        ),
        (json!({ "arguments": {} }), "`name` is missing"),
    ]
}

#[test]
fn a_tools_call_with_bad_params_is_invalid_params_naming_the_field_in_either_era() {
    // it was answered -32601 `tools/call` (method not found)
    use reqwest::Method;
    let r = Remit::start(STANDARD);
    let (status, session, _) = open_session(&r, TOKEN, 1);
    assert_eq!(status, 200);
    let session = session.unwrap();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let status = in_session(&r, Method::POST, TOKEN, Some(&session), Some(&initialized)).status();
    assert_eq!(status, 202);
    for (params, says) in bad_tools_call_params() {
        let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params });
        let text = in_session(&r, Method::POST, TOKEN, Some(&session), Some(&call))
            .text()
            .unwrap();
        let answer = crate::support::parse_jsonrpc(&text);
        assert_eq!(answer["error"]["code"], -32602, "{params}: {text}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(says),
            "{params}: {text}"
        );

        let mut params = params;
        params["_meta"] = stateless_meta();
        let (_, answer) = r.mcp(TOKEN, "tools/call", params.clone());
        assert_eq!(answer["error"]["code"], -32602, "{params}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(says),
            "{params}: {answer}"
        );
    }
    assert!(r.ledger().is_empty());
}

#[test]
fn json_that_is_not_a_json_rpc_message_is_an_invalid_request_saying_why() {
    // rmcp answered these `415 fail to deserialize request body` in plain text
    use reqwest::Method;
    let r = Remit::start(STANDARD);
    let call = r#""method":"tools/call","params":{"name":"billing.get_customer","arguments":{"id":"cus_001"}}"#;
    for (body, says) in [
        (
            format!(r#"[{{"jsonrpc":"2.0","id":1,{call}}}]"#),
            "batches are not supported",
        ),
        ("[]".to_owned(), "batches are not supported"),
        ("7".to_owned(), "must be a JSON object"),
        (
            format!(r#"{{"jsonrpc":"2.0","id":{{"a":1}},{call}}}"#),
            "`id` must be a string or an integer",
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1.5,{call}}}"#),
            "`id` must be a string or an integer",
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":null,{call}}}"#),
            "`id` must be a string or an integer",
        ),
        (
            format!(r#"{{"jsonrpc":"1.0","id":1,{call}}}"#),
            "`jsonrpc` must be \"2.0\"",
        ),
        (format!(r#"{{"id":1,{call}}}"#), "`jsonrpc` must be \"2.0\""),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#.to_owned(),
            "`params` must be an object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":"x"}"#.to_owned(),
            "`params` must be an object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#.to_owned(),
            "`method` must be a string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1}"#.to_owned(),
            "not a JSON-RPC message",
        ),
    ] {
        let answer = r
            .client
            .post(r.url("/mcp"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(answer.status().as_u16(), 400, "{body}");
        assert_eq!(
            answer.headers()["content-type"],
            "application/json",
            "{body}"
        );
        let answer: serde_json::Value = answer.json().unwrap();
        assert_eq!(answer["error"]["code"], -32600, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    assert!(r.ledger().is_empty());
    // a notification and a response from the client still reach rmcp
    let (status, session, _) = open_session(&r, TOKEN, 1);
    assert_eq!(status, 200);
    let session = session.unwrap();
    for message in [
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        json!({ "jsonrpc": "2.0", "id": 9, "result": {} }),
        json!({ "jsonrpc": "2.0", "id": "x", "error": { "code": -32601, "message": "no" } }),
    ] {
        let status = in_session(&r, Method::POST, TOKEN, Some(&session), Some(&message)).status();
        assert_eq!(status, 202, "{message}");
    }
    // and an `id` written as a float that is an integer is still an id, as rmcp reads it
    let list = json!({ "jsonrpc": "2.0", "id": 2.0, "method": "tools/list" });
    let text = in_session(&r, Method::POST, TOKEN, Some(&session), Some(&list))
        .text()
        .unwrap();
    let answer = crate::support::parse_jsonrpc(&text);
    assert!(answer["result"]["tools"].is_array(), "{text}");
}

#[test]
fn a_request_of_the_2025_11_25_revision_without_its_session_is_refused() {
    // rmcp ran a tools/call whose `_meta` said 2025-11-25 without a session, as a stateless one
    let r = Remit::start(STANDARD);
    for revision in ["2025-11-25", "2025-06-18"] {
        let mut meta = stateless_meta();
        meta["io.modelcontextprotocol/protocolVersion"] = json!(revision);
        let answer = r
            .client
            .post(r.url("/mcp"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", revision)
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "billing.get_customer", "arguments": { "id": "cus_001" }, "_meta": meta } }))
            .send()
            .unwrap();
        assert_eq!(answer.status().as_u16(), 400, "{revision}");
        let body: serde_json::Value = answer.json().unwrap();
        assert_eq!(body["error"]["code"], -32600, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message
                .contains("needs its session: send `initialize` first, then its `Mcp-Session-Id`"),
            "{message}"
        );
        assert_eq!(body["id"], 1, "{body}");
    }
    // a revision remit does not know is rmcp's to answer (with the revisions it supports),
    // not a session's
    let mut meta = stateless_meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let answer = r
        .client
        .post(r.url("/mcp"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "v999.0.0")
        .json(&json!({ "jsonrpc": "2.0", "id": 7, "method": "server/discover", "params": { "_meta": meta } }))
        .send()
        .unwrap();
    let text = answer.text().unwrap();
    assert!(!text.contains("needs its session"), "{text}");
    assert!(r.ledger().is_empty(), "{:?}", r.ledger());
    // the stateless revision needs none
    let (status, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.get_customer", "arguments": { "id": "cus_001" } }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(r.ledger().len(), 1);
}
