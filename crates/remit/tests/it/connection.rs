//! One HTTP/1.1 connection as a client drives it by hand: pipelined calls, a request in pieces,
//! and requests of every other shape on the same connection after plain calls.
//!
//! remit reads plain stateless calls itself and hands a connection to hyper at its first
//! request of another shape (`remit-server`'s `short_http`); these tests check, from the
//! wire, that a client cannot tell where that happens.

use crate::support::{OTHER_TOKEN, Remit, STANDARD, TOKEN, stateless_meta};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The bytes of a stateless `tools/call` of `billing.get_customer` with id `id`.
fn plain_call(r: &Remit, id: u64, token: &str) -> Vec<u8> {
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "billing.get_customer", "arguments": { "id": "cus_001" }, "_meta": stateless_meta()
    }})
    .to_string();
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n\
         mcp-method: tools/call\r\nmcp-name: billing.get_customer\r\n\
         authorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n{body}",
        r.port,
        body.len()
    )
    .into_bytes()
}

/// One response read off the connection: status, headers (names lower-cased), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn read(from: &mut BufReader<TcpStream>) -> Self {
        let mut line = String::new();
        from.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            from.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        from.read_exact(&mut body).unwrap();
        Self {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        names
    }
}

fn connect(r: &Remit) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

/// The customer's record came back, as the answer to request `id`.
fn assert_customer(response: &Response, id: u64) {
    assert_eq!(response.status, 200, "{}", response.body);
    let v = response.json();
    assert_eq!(v["id"], id, "{v}");
    assert_ne!(v["result"]["isError"], true, "{v}");
    assert!(
        v["result"]["content"].to_string().contains("cus_001"),
        "{v}"
    );
}

#[test]
fn pipelined_calls_are_answered_in_order_and_any_other_request_after_them_too() {
    let r = Remit::start(STANDARD);
    let (mut stream, mut reader) = connect(&r);
    // two calls and a health check in one write
    let mut bytes = plain_call(&r, 1, TOKEN);
    bytes.extend(plain_call(&r, 2, TOKEN));
    bytes.extend(format!("GET /health HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n\r\n", r.port).as_bytes());
    stream.write_all(&bytes).unwrap();
    let first = Response::read(&mut reader);
    assert_customer(&first, 1);
    assert_customer(&Response::read(&mut reader), 2);
    let health = Response::read(&mut reader);
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.json()["store"].is_object(), "{}", health.body);
    // the same call again on the same connection, now served by the full service: the
    // client sees the same status, headers and answer
    stream.write_all(&plain_call(&r, 3, TOKEN)).unwrap();
    let later = Response::read(&mut reader);
    assert_customer(&later, 3);
    assert_eq!(first.header_names(), later.header_names());
    assert_eq!(
        first.headers.iter().find(|(k, _)| k == "content-type"),
        later.headers.iter().find(|(k, _)| k == "content-type")
    );
    let (mut a, mut b) = (first.json(), later.json());
    a["id"] = json!(0);
    b["id"] = json!(0);
    assert_eq!(a, b);
    assert_eq!(
        r.ledger()
            .iter()
            .filter(|(tool, _)| tool == "get_customer")
            .count(),
        3
    );
}

#[test]
fn a_call_that_arrives_a_few_bytes_at_a_time_is_answered() {
    let r = Remit::start(STANDARD);
    let (mut stream, mut reader) = connect(&r);
    for round in 1..=2 {
        for piece in plain_call(&r, round, TOKEN).chunks(7) {
            stream.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_customer(&Response::read(&mut reader), round);
    }
}

#[test]
fn a_bad_credential_after_good_calls_on_one_connection_is_refused_and_counted() {
    let r = Remit::start(STANDARD);
    let (mut stream, mut reader) = connect(&r);
    stream.write_all(&plain_call(&r, 1, TOKEN)).unwrap();
    assert_customer(&Response::read(&mut reader), 1);
    stream
        .write_all(&plain_call(&r, 2, "not-a-token-of-anyone-0123456789"))
        .unwrap();
    let refused = Response::read(&mut reader);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer")),
        "{:?}",
        refused.headers
    );
    // its body unread, the answer closes the connection, and says so
    assert!(
        refused
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v == "close"),
        "{:?}",
        refused.headers
    );
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // another agent, not granted this action, is refused by the pipeline
    let (mut stream, mut reader) = connect(&r);
    stream.write_all(&plain_call(&r, 3, OTHER_TOKEN)).unwrap();
    let outside = Response::read(&mut reader);
    assert_eq!(outside.status, 200, "{}", outside.body);
    assert_eq!(
        outside.json()["result"]["isError"],
        true,
        "{}",
        outside.body
    );
    assert_eq!(r.ledger().len(), 1, "{:?}", r.ledger());
}

#[test]
fn a_connection_that_says_close_is_answered_and_closed() {
    let r = Remit::start(STANDARD);
    let (mut stream, mut reader) = connect(&r);
    stream.write_all(&plain_call(&r, 1, TOKEN)).unwrap();
    assert_customer(&Response::read(&mut reader), 1);
    let mut last = plain_call(&r, 2, TOKEN);
    let at = last.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    last.splice(at..at, b"\r\nconnection: close".iter().copied());
    stream.write_all(&last).unwrap();
    let closing = Response::read(&mut reader);
    assert_customer(&closing, 2);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

/// Two `Authorization` headers are no credential, whatever they hold: a plain call, any other
/// MCP request and `/v1/calls` are all refused 401 (as if none were sent), with a message
/// that says to send one, and the upstream sees nothing.
#[test]
fn a_request_with_two_authorization_headers_is_unauthenticated_on_every_way_in() {
    let r = Remit::start(STANDARD);
    let twice = |request: Vec<u8>, second: &str| -> Vec<u8> {
        let text = String::from_utf8(request).unwrap();
        let line = format!("authorization: Bearer {TOKEN}\r\n");
        assert!(text.contains(&line));
        text.replacen(
            &line,
            &format!("{line}Authorization: Bearer {second}\r\n"),
            1,
        )
        .into_bytes()
    };
    // the same valid token twice, and a valid one with another agent's
    for (round, second) in [(1, TOKEN), (2, OTHER_TOKEN)] {
        let (mut stream, mut reader) = connect(&r);
        stream
            .write_all(&twice(plain_call(&r, round, TOKEN), second))
            .unwrap();
        let refused = Response::read(&mut reader);
        assert_eq!(refused.status, 401, "{}", refused.body);
        let message = refused.json()["error"]["message"].to_string();
        assert!(
            message.contains("send one `Authorization: Bearer <token>` header"),
            "{message}"
        );
        // its body unread, the answer closes the connection
        assert!(
            refused
                .headers
                .iter()
                .any(|(k, v)| k == "connection" && v == "close"),
            "{:?}",
            refused.headers
        );
    }
    // one header is served
    let (mut stream, mut reader) = connect(&r);
    stream.write_all(&plain_call(&r, 3, TOKEN)).unwrap();
    assert_customer(&Response::read(&mut reader), 3);
    // a request of another shape (rmcp's way) with two headers
    let list = json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {
        "_meta": stateless_meta()
    }})
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n\
         mcp-method: tools/list\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: {}\r\n\r\n{list}",
        r.port,
        list.len()
    );
    stream
        .write_all(&twice(request.into_bytes(), TOKEN))
        .unwrap();
    let refused = Response::read(&mut reader);
    assert_eq!(refused.status, 401, "{}", refused.body);
    // the HTTP API
    let refused = reqwest::blocking::Client::new()
        .post(r.url("/v1/calls"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({ "tool": "billing.get_customer", "arguments": { "id": "cus_001" } }))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["code"], "unauthenticated", "{body}");
    // only the one call with one header reached the upstream
    assert_eq!(r.ledger().len(), 1, "{:?}", r.ledger());
}

#[test]
fn a_caller_without_a_credential_is_refused_before_its_body_is_sent() {
    let r = Remit::start(STANDARD);
    let (mut stream, mut reader) = connect(&r);
    // a head announcing the largest body remit takes, and no body at all
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\n\
         content-length: 1048576\r\n\r\n",
        r.port
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let refused = Response::read(&mut reader);
    assert_eq!(refused.status, 401, "{}", refused.body);
    // a known agent's head with the same length waits for its body
    let (mut stream, mut reader) = connect(&r);
    let call = plain_call(&r, 1, TOKEN);
    let at = call.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    stream.write_all(&call[..at]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(&call[at..]).unwrap();
    assert_customer(&Response::read(&mut reader), 1);
    assert_eq!(r.ledger().len(), 1, "{:?}", r.ledger());
}

#[test]
fn a_client_that_closes_its_side_after_pipelined_calls_gets_the_answer_to_the_one_running() {
    let r = Remit::start(STANDARD);
    let (mut stream, mut reader) = connect(&r);
    let mut bytes = plain_call(&r, 1, TOKEN);
    bytes.extend(plain_call(&r, 2, TOKEN));
    stream.write_all(&bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // as hyper reads it: the first call was running when the stream ended with the
    // second still buffered, so it is answered; the second counts as hung up
    assert_customer(&Response::read(&mut reader), 1);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // whether the second reached the upstream depends on whether remit read the end of the
    // stream before the first call finished (a loaded machine may finish it first, and then
    // start the second, dropped at the end of the stream): never more than the two sent
    let ledger = r.ledger();
    assert!(matches!(ledger.len(), 1 | 2), "{ledger:?}");
}
