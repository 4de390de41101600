//! The short way for the commonest request: a well-formed 2026-07-28 stateless `tools/call`.
//!
//! rmcp's Streamable HTTP service builds a server, a transport and a task for every
//! stateless request; for `tools/call` that costs more CPU than the rest of the gateway.
//! [`StatelessCall::parse`] recognises a request that needs none of it: POST, no session,
//! `MCP-Protocol-Version: 2026-07-28`, `Mcp-Method`/`Mcp-Name` headers that agree with
//! the body, the required `_meta`, an allowed `Host`, no `Origin` and no `Mcp-Param-*`.
//! Such a call goes straight to the pipeline and its answer is written here, in the same
//! JSON rmcp would write. Anything else, including every malformed or unusual request,
//! is left to rmcp, which gives the protocol's errors: this path never refuses a request
//! on protocol grounds, so it cannot answer differently from the full service.

use crate::agent::{bearer_credential, outcome_to_mcp, reason_in, run_in};
use remit_core::pipeline::{Call, Caller, Credential, Entry, Gateway, Outcome};
use remit_core::wire::StrictValue;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// The one protocol revision this path serves.
const REVISION: &str = crate::STATELESS_REVISION;

/// The hosts a request may name in `Host` to take the short way (the rest go to rmcp's check).
#[derive(Clone, Debug, Default)]
pub struct ShortWay {
    hosts: HashSet<String>,
}

impl ShortWay {
    /// Allows the short way for requests naming one of `allowed_hosts` (entries with a port are left to rmcp).
    pub fn new(allowed_hosts: &[String]) -> Self {
        let hosts = allowed_hosts
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .filter(|h| http::uri::Authority::try_from(*h).map_or(true, |a| a.port_u16().is_none()))
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
            .collect();
        Self { hosts }
    }

    fn host_allowed<H: Headers + ?Sized>(&self, headers: &H) -> bool {
        let Some(host) = one(headers, "host") else {
            return false;
        };
        let Ok(authority) = http::uri::Authority::try_from(host) else {
            return false;
        };
        let name = authority.host().trim_matches(['[', ']']);
        // hosts are kept lower-case; a mixed-case Host goes the long way
        self.hosts.contains(name)
    }
}

/// A stateless `tools/call` ready for the pipeline.
#[derive(Debug)]
pub struct StatelessCall {
    id: Value,
    call: Call,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request<'a> {
    jsonrpc: &'a str,
    #[serde(deserialize_with = "strict_id")]
    id: Value,
    method: &'a str,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default, deserialize_with = "strict_arguments")]
    arguments: Option<Map<String, Value>>,
    #[serde(rename = "_meta", deserialize_with = "strict_meta")]
    meta: Map<String, Value>,
}

// The request's open-ended parts are read as strictly as `check_strict_json` reads a body
// (no repeated key, no deeper nesting), so a body this path accepts is one the check passes;
// the struct fields themselves refuse a repeated field.

fn strict_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    use serde::de::DeserializeSeed as _;
    StrictValue::at(1).deserialize(d)
}

fn strict_object<'de, D: serde::Deserializer<'de>>(
    d: D,
    what: &str,
) -> Result<Option<Map<String, Value>>, D::Error> {
    use serde::de::{DeserializeSeed as _, Error as _};
    match StrictValue::at(2).deserialize(d)? {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        _ => Err(D::Error::custom(format!("{what} is not an object"))),
    }
}

fn strict_arguments<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    strict_object(d, "arguments")
}

fn strict_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    use serde::de::Error as _;
    strict_object(d, "_meta")?.ok_or_else(|| D::Error::custom("_meta is null"))
}

/// A request's headers as the short way reads them: hyper's map, or httparse's slice of
/// the bytes read off the wire (no map, no copies: `short_http` in remit-server).
pub trait Headers {
    /// Every value of the header `name` (given in lower case; names match in any case), in
    /// order; `None` for a value that is not visible ASCII text.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a str>> + 'a;

    /// Whether any header's name starts with `prefix` (given in lower case), in any case.
    fn has_name_starting(&self, prefix: &str) -> bool;
}

impl Headers for http::HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a str>> + 'a {
        self.get_all(name).iter().map(|v| v.to_str().ok())
    }

    fn has_name_starting(&self, prefix: &str) -> bool {
        self.keys().any(|k| k.as_str().starts_with(prefix))
    }
}

impl Headers for [httparse::Header<'_>] {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a str>> + 'a {
        self.iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| visible_ascii(h.value))
    }

    fn has_name_starting(&self, prefix: &str) -> bool {
        self.iter().any(|h| {
            h.name
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
        })
    }
}

/// A header value as text, if it is what `HeaderValue::to_str` accepts: visible ASCII and tabs.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The single value of a header, if it has exactly one and it is text.
fn one<'a, H: Headers + ?Sized>(headers: &'a H, name: &'a str) -> Option<&'a str> {
    let mut all = headers.values(name);
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first
}

/// The credential in a request's one `Authorization` header (none when it has two).
pub fn bearer_in<H: Headers + ?Sized>(headers: &H) -> Credential {
    bearer_credential(one(headers, "authorization"))
}

/// Whether the client's capabilities read as rmcp reads them (a malformed set is rmcp's to refuse).
fn capabilities_read(value: &Value) -> bool {
    use serde::Deserialize as _;
    value.is_object() && rmcp::model::ClientCapabilities::deserialize(value).is_ok()
}

/// Whether `Accept` plainly names both `application/json` and `text/event-stream` (no weights).
fn accepts_both<H: Headers + ?Sized>(headers: &H) -> bool {
    let mut json = false;
    let mut sse = false;
    for value in headers.values("accept") {
        let Some(value) = value else {
            return false;
        };
        for item in value.split(',') {
            let item = item.trim();
            if item.contains(';') {
                return false;
            }
            json |= item.eq_ignore_ascii_case("application/json");
            sse |= item.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

impl StatelessCall {
    /// The call, if this request can take the short way; `None` leaves it to rmcp.
    ///
    /// A body it accepts passes [`remit_core::wire::check_strict_json`]; one it does not
    /// is for the caller to check before rmcp reads it.
    pub fn parse<H: Headers + ?Sized>(
        way: &ShortWay,
        gateway: &Gateway,
        method: &http::Method,
        headers: &H,
        body: &[u8],
    ) -> Option<Self> {
        Self::parse_with(way, method, headers, body, |name| {
            gateway.input_schema_is(name, mentions_param_headers)
        })
    }

    /// [`Self::parse`], with `param_headers` saying whether a tool's schema asks for `Mcp-Param-*`.
    fn parse_with<H: Headers + ?Sized>(
        way: &ShortWay,
        method: &http::Method,
        headers: &H,
        body: &[u8],
        param_headers: impl FnOnce(&str) -> bool,
    ) -> Option<Self> {
        if method != http::Method::POST
            || headers.values("mcp-session-id").next().is_some()
            || headers.values("origin").next().is_some()
            || one(headers, "mcp-protocol-version") != Some(REVISION)
            || one(headers, "mcp-method") != Some("tools/call")
            || !one(headers, "content-type").is_some_and(|c| {
                c.split(';')
                    .next()
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
            })
            || !accepts_both(headers)
            || headers.has_name_starting("mcp-param-")
            || !way.host_allowed(headers)
        {
            return None;
        }
        let name = one(headers, "mcp-name")?;
        let mut request: Request<'_> = serde_json::from_slice(body).ok()?;
        if request.jsonrpc != "2.0"
            || request.method != "tools/call"
            || request.params.name != name
            || !matches!(request.id, Value::String(_) | Value::Number(_))
            || request
                .params
                .meta
                .get("io.modelcontextprotocol/protocolVersion")
                .and_then(Value::as_str)
                != Some(REVISION)
            || !request
                .params
                .meta
                .get("io.modelcontextprotocol/clientCapabilities")
                .is_some_and(capabilities_read)
            || request.params.meta.keys().any(|k| {
                k.starts_with("io.modelcontextprotocol/")
                    && !matches!(
                        k.as_str(),
                        "io.modelcontextprotocol/protocolVersion"
                            | "io.modelcontextprotocol/clientCapabilities"
                            | "io.modelcontextprotocol/clientInfo"
                    )
            })
            // progress reports make rmcp answer as an SSE stream: its path does that
            || request.params.meta.contains_key("progressToken")
            || param_headers(name)
        {
            return None;
        }
        let reason = reason_in(&request.params.meta);
        let run = run_in(&request.params.meta);
        let capabilities = match request
            .params
            .meta
            .remove("io.modelcontextprotocol/clientCapabilities")
        {
            Some(Value::Object(declared)) => Some(declared),
            _ => None,
        };
        let credential = bearer_in(headers);
        if credential == Credential::None {
            return None;
        }
        Some(Self {
            id: request.id,
            call: Call {
                credential,
                tool: request.params.name,
                args: request
                    .params
                    .arguments
                    .map(Value::Object)
                    .unwrap_or(Value::Null),
                reason,
                run,
                entry: Entry::Mcp,
                caller: Caller::waiting(),
                progress: None,
                resume: None,
                capabilities,
            },
        })
    }

    /// Runs the call through the pipeline and returns the HTTP status and JSON body to send.
    ///
    /// A caller that hangs up does not cut a call off between its upstream request and
    /// the audit event that records the result ([`crate::call_to_the_end`]).
    pub async fn answer(self, gateway: Arc<Gateway>) -> (http::StatusCode, Vec<u8>) {
        let Self { id, call } = self;
        let outcome = crate::call_to_the_end(&gateway, call).await;
        match outcome {
            Outcome::Rejected {
                code,
                message,
                data,
                ..
            } => {
                let status = match code {
                    -32022..=-32020 => http::StatusCode::BAD_REQUEST,
                    -32601 => http::StatusCode::NOT_FOUND,
                    _ => http::StatusCode::OK,
                };
                let mut error = Map::new();
                error.insert("code".to_owned(), code.into());
                error.insert("message".to_owned(), message.into());
                if let Some(data) = data {
                    error.insert("data".to_owned(), data);
                }
                reply(status, &id, "error", &Value::Object(error))
            }
            Outcome::Done { result, call } => match plain_result(result) {
                Ok(result) => reply(http::StatusCode::OK, &id, "result", &result),
                Err(result) => {
                    let outcome = Outcome::Done { call, result };
                    let r = serde_json::to_value(rmcp::model::ServerResult::from(
                        crate::agent::outcome_to_response(&outcome),
                    ))
                    .unwrap_or(Value::Null);
                    reply(http::StatusCode::OK, &id, "result", &r)
                }
            },
            other => {
                let r = serde_json::to_value(outcome_to_mcp(&other)).unwrap_or(Value::Null);
                reply(http::StatusCode::OK, &id, "result", &r)
            }
        }
    }
}

/// The HTTP status and the JSON-RPC message carrying `value` under `key` (`result` or `error`).
fn reply(
    status: http::StatusCode,
    id: &Value,
    key: &str,
    value: &Value,
) -> (http::StatusCode, Vec<u8>) {
    // the JSON-RPC message, written straight from its parts: `id`, `jsonrpc`, then `key`
    // (the bytes serde_json would write, as the answers' test against rmcp holds)
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(b"{\"id\":");
    remit_core::audit::event::write_canonical_json(id, &mut body);
    body.extend_from_slice(b",\"jsonrpc\":\"2.0\",");
    // `result` or `error`: nothing to escape
    body.push(b'"');
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(b"\":");
    remit_core::audit::event::write_canonical_json(value, &mut body);
    body.push(b'}');
    (status, body)
}

/// The upstream's result as the agent gets it, if it is a plain `CallToolResult`
/// (known keys, content blocks with a type); otherwise it goes back for rmcp to read.
fn plain_result(result: Value) -> Result<Value, Value> {
    let Value::Object(mut map) = result else {
        return Err(result);
    };
    let plain = map.iter().all(|(k, v)| match k.as_str() {
        "content" => v.as_array().is_some_and(|items| {
            items
                .iter()
                .all(|i| i.get("type").is_some_and(Value::is_string))
        }),
        "structuredContent" => true,
        "isError" => v.is_boolean(),
        "_meta" => v.is_object(),
        "resultType" => v.as_str() == Some("complete"),
        _ => false,
    }) && map.contains_key("content");
    if !plain {
        return Err(Value::Object(map));
    }
    if let Some(Value::Object(meta)) = map.get_mut("_meta") {
        // the upstream's own identity stays with the upstream: the agent talks to remit
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/serverInfo"));
        if meta.is_empty() {
            map.remove("_meta");
        }
    }
    map.insert(
        "resultType".to_owned(),
        Value::String("complete".to_owned()),
    );
    Ok(Value::Object(map))
}

/// Whether a tool's input schema asks for `Mcp-Param-*` headers (`x-mcp-header` anywhere).
fn mentions_param_headers(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k == "x-mcp-header" || mentions_param_headers(v)),
        Value::Array(items) => items.iter().any(mentions_param_headers),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_reply_is_the_json_rpc_message_with_the_callers_id() {
        let (status, body) = reply(
            http::StatusCode::OK,
            &json!("a\"1"),
            "result",
            &json!({"content": [{"type": "text", "text": "é\n"}], "isError": false}),
        );
        assert_eq!(status, http::StatusCode::OK);
        let mut as_map = Map::new();
        as_map.insert("jsonrpc".to_owned(), json!("2.0"));
        as_map.insert("id".to_owned(), json!("a\"1"));
        as_map.insert(
            "result".to_owned(),
            json!({"content": [{"type": "text", "text": "é\n"}], "isError": false}),
        );
        // a result reads as the same message built as a map would (sorted keys)
        assert_eq!(body, serde_json::to_vec(&as_map).unwrap());
        let (_, body) = reply(
            http::StatusCode::NOT_FOUND,
            &json!(7),
            "error",
            &json!({"code": 1}),
        );
        assert_eq!(body, br#"{"id":7,"jsonrpc":"2.0","error":{"code":1}}"#);
    }

    #[test]
    fn a_plain_result_keeps_its_content_and_loses_the_upstream_identity() {
        let r = plain_result(json!({
            "content": [{"type": "text", "text": "hi"}],
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "echo"}}
        }))
        .unwrap();
        assert_eq!(
            r,
            json!({"content": [{"type": "text", "text": "hi"}], "resultType": "complete"})
        );
    }

    #[test]
    fn an_unusual_result_goes_the_long_way() {
        assert!(plain_result(json!({"content": [{"text": "no type"}]})).is_err());
        assert!(plain_result(json!({"content": [], "extra": 1})).is_err());
        assert!(plain_result(json!({"isError": true})).is_err());
        assert!(plain_result(json!({"content": [], "resultType": "input_required"})).is_err());
    }

    #[test]
    fn param_headers_are_found_anywhere_in_the_schema() {
        assert!(mentions_param_headers(&json!({
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}
        })));
        assert!(!mentions_param_headers(
            &json!({"type": "object", "properties": {"region": {"type": "string"}}})
        ));
    }

    #[test]
    fn accept_must_name_both_types_without_weights() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json, text/event-stream"),
        );
        assert!(accepts_both(&h));
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json;q=0, text/event-stream"),
        );
        assert!(!accepts_both(&h));
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        assert!(!accepts_both(&h));
    }

    fn request() -> (http::HeaderMap, Value) {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "billing.get_customer"),
            ("authorization", "Bearer t0k3n"),
        ] {
            h.insert(k, http::HeaderValue::from_static(v));
        }
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "billing.get_customer", "arguments": {"id": "c1"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "remit/reason": "the customer asked", "remit/run": "r1"
            }
        }});
        (h, body)
    }

    /// The short way's reading of a request, from hyper's header map; the same headers as
    /// httparse reads them off the wire (names in title case) must read the same.
    fn parse(h: &http::HeaderMap, body: &Value) -> Option<StatelessCall> {
        let way = ShortWay::new(&["127.0.0.1".to_owned()]);
        let bytes = serde_json::to_vec(body).unwrap();
        let from_map = StatelessCall::parse_with(&way, &http::Method::POST, h, &bytes, |_| false);
        let mut head = String::from("POST /mcp HTTP/1.1\r\n");
        for (name, value) in h {
            let title: Vec<String> = name
                .as_str()
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect();
            head += &format!("{}: {}\r\n", title.join("-"), value.to_str().unwrap());
        }
        head += "\r\n";
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut wire = httparse::Request::new(&mut slots);
        assert!(wire.parse(head.as_bytes()).unwrap().is_complete(), "{head}");
        let from_wire =
            StatelessCall::parse_with(&way, &http::Method::POST, wire.headers, &bytes, |_| false);
        assert_eq!(
            format!("{from_map:?}"),
            format!("{from_wire:?}"),
            "read from the wire:\n{head}"
        );
        assert_eq!(
            from_map.as_ref().map(|c| &c.call.credential),
            from_wire.as_ref().map(|c| &c.call.credential)
        );
        from_map
    }

    #[test]
    fn a_plain_stateless_call_takes_the_short_way_with_its_reason_and_run() {
        let (h, body) = request();
        let c = parse(&h, &body).expect("short way");
        assert_eq!(c.id, json!(7));
        assert_eq!(c.call.tool, "billing.get_customer");
        assert_eq!(c.call.args, json!({"id": "c1"}));
        assert_eq!(c.call.reason.as_deref(), Some("the customer asked"));
        assert_eq!(
            c.call.run.as_ref().map(ToString::to_string).as_deref(),
            Some("r1")
        );
        assert_eq!(c.call.credential, Credential::Bearer("t0k3n".to_owned()));
    }

    #[test]
    fn anything_unusual_is_left_to_rmcp() {
        let (h, body) = request();
        let header_variants: [(&str, Option<&'static str>); 8] = [
            ("mcp-name", Some("billing.list_charges")),
            ("mcp-method", Some("tools/list")),
            ("mcp-protocol-version", Some("2025-11-25")),
            ("mcp-session-id", Some("s1")),
            ("origin", Some("http://127.0.0.1:8080")),
            ("host", Some("evil.example")),
            ("mcp-param-region", Some("eu")),
            ("content-type", Some("text/plain")),
        ];
        for (k, v) in header_variants {
            let mut h = h.clone();
            h.insert(k, http::HeaderValue::from_static(v.unwrap_or_default()));
            assert!(parse(&h, &body).is_none(), "{k}: {v:?}");
        }
        for k in ["mcp-name", "authorization", "host"] {
            let mut h = h.clone();
            h.remove(k);
            assert!(parse(&h, &body).is_none(), "without {k}");
        }
        let mut twice = h.clone();
        twice.append("mcp-method", http::HeaderValue::from_static("tools/call"));
        assert!(parse(&twice, &body).is_none(), "two Mcp-Method values");
        let body_variants = [
            (
                "/params/_meta/io.modelcontextprotocol~1protocolVersion",
                json!("2025-11-25"),
            ),
            (
                "/params/_meta/io.modelcontextprotocol~1clientCapabilities",
                json!(null),
            ),
            ("/params/task", json!({})),
            ("/id", json!(null)),
            ("/jsonrpc", json!("1.0")),
            ("/extra", json!(1)),
        ];
        for (path, value) in body_variants {
            let mut b = body.clone();
            match b.pointer_mut(path) {
                Some(slot) => *slot = value,
                None => {
                    let (parent, key) = path.rsplit_once('/').unwrap();
                    b.pointer_mut(parent)
                        .unwrap()
                        .as_object_mut()
                        .unwrap()
                        .insert(key.to_owned(), value);
                }
            }
            assert!(parse(&h, &b).is_none(), "{path}");
        }
        for (key, value) in [
            (
                "io.modelcontextprotocol~1clientCapabilities",
                json!({"sampling": 5}),
            ),
            ("io.modelcontextprotocol~1logLevel", json!("debug")),
        ] {
            let mut b = body.clone();
            let meta = b
                .pointer_mut("/params/_meta")
                .unwrap()
                .as_object_mut()
                .unwrap();
            meta.insert(key.replace("~1", "/"), value);
            assert!(parse(&h, &b).is_none(), "{key}");
        }
        let mut sampling = body.clone();
        sampling["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
            json!({"sampling": {}, "elicitation": {}});
        assert!(parse(&h, &sampling).is_some(), "well-formed capabilities");
        let mut no_meta = body.clone();
        no_meta["params"].as_object_mut().unwrap().remove("_meta");
        assert!(parse(&h, &no_meta).is_none(), "no _meta");
        let mut with_progress = body.clone();
        with_progress["params"]["_meta"]["progressToken"] = json!(7);
        assert!(
            parse(&h, &with_progress).is_none(),
            "progress asked for: rmcp streams it"
        );
        let way = ShortWay::new(&["127.0.0.1".to_owned()]);
        let bytes = serde_json::to_vec(&body).unwrap();
        assert!(
            StatelessCall::parse_with(&way, &http::Method::POST, &h, &bytes, |_| true).is_none(),
            "a tool whose schema asks for Mcp-Param-* headers"
        );
    }

    #[test]
    fn a_body_the_strict_check_refuses_never_takes_the_short_way() {
        let (h, body) = request();
        let way = ShortWay::new(&["127.0.0.1".to_owned()]);
        let plain = serde_json::to_string(&body).unwrap();
        assert!(
            StatelessCall::parse_with(&way, &http::Method::POST, &h, plain.as_bytes(), |_| false)
                .is_some()
        );
        let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
        let variants = [
            plain.replace(r#""id":"c1""#, r#""id":"c1","id":"c2""#),
            plain.replace(r#""remit/reason""#, r#""remit/run":"r0","remit/reason""#),
            plain.replace(r#""id":7"#, r#""id":7,"id":8"#),
            plain.replace(
                r#""name":"billing.get_customer""#,
                r#""name":"billing.get_customer","name":"billing.get_customer""#,
            ),
            plain.replace(
                r#""arguments":{"id":"c1"}"#,
                &format!(r#""arguments":{{"id":"c1","deep":{deep}}}"#),
            ),
        ];
        for v in variants {
            assert_ne!(v, plain);
            assert!(
                remit_core::wire::check_strict_json(v.as_bytes()).is_err(),
                "{v}"
            );
            assert!(
                StatelessCall::parse_with(&way, &http::Method::POST, &h, v.as_bytes(), |_| false)
                    .is_none(),
                "{v}"
            );
        }
    }

    #[test]
    fn hosts_with_a_port_are_left_to_the_full_check() {
        let way = ShortWay::new(&[
            "localhost".to_owned(),
            "[::1]".to_owned(),
            "remit.internal:8443".to_owned(),
        ]);
        let host = |h: &'static str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::HOST, http::HeaderValue::from_static(h));
            m
        };
        assert!(way.host_allowed(&host("localhost:8080")));
        assert!(way.host_allowed(&host("[::1]:8080")));
        assert!(!way.host_allowed(&host("remit.internal:8443")));
        assert!(!way.host_allowed(&host("evil.example")));
    }
}
