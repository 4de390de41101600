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

use crate::agent::{bearer_credential, outcome_to_mcp, reason_of, run_of_value};
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

    /// Whether the request's one `Host` header names an allowed host.
    fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
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
    #[serde(deserialize_with = "object_only")]
    params: Params,
}

/// Reads `T` from a JSON object only.
///
/// serde's derived structs also read an array, its items taken as the fields in order,
/// which rmcp refuses as no JSON-RPC message at all: `[..., "tools/call", ["billing.refund",
/// {...}]]` must not run here what the other way would not.
fn object_only<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Object(std::marker::PhantomData))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default, deserialize_with = "strict_arguments")]
    arguments: Option<Map<String, Value>>,
    #[serde(rename = "_meta", deserialize_with = "strict_meta")]
    meta: Meta,
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

fn strict_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Meta, D::Error> {
    d.deserialize_map(MetaReader)
}

/// What the short way reads of a request's `_meta`; the rest is read as strictly and dropped.
#[derive(Debug, Default)]
struct Meta {
    /// `io.modelcontextprotocol/protocolVersion` names this path's revision.
    revision: bool,
    /// `io.modelcontextprotocol/clientCapabilities`, as sent.
    capabilities: Option<Value>,
    /// `remit/reason`, as sent.
    reason: Option<Value>,
    /// `remit/run`, as sent.
    run: Option<Value>,
    /// A key the short way leaves to rmcp: `progressToken` (rmcp answers it as a stream),
    /// or a protocol key other than the three it reads.
    unusual: bool,
}

/// Most keys the short way reads in a `_meta` (more go the long way).
const MAX_META_KEYS: usize = 32;

/// Reads `_meta` into a [`Meta`] without building the map.
struct MetaReader;

impl<'de> serde::de::Visitor<'de> for MetaReader {
    type Value = Meta;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a _meta object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
        use serde::de::Error as _;
        // `_meta` is at depth 2 of the document, its values at 3 (as `StrictValue::at(2)` reads them)
        let value = StrictValue::at(3);
        let mut meta = Meta::default();
        let mut seen: Vec<Key<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if seen.contains(&key) {
                return Err(A::Error::custom("duplicate key in _meta"));
            }
            if seen.len() == MAX_META_KEYS {
                return Err(A::Error::custom("more _meta keys than the short way reads"));
            }
            match key.0.as_ref() {
                "io.modelcontextprotocol/protocolVersion" => {
                    // not a string: not this revision (and not the short way)
                    meta.revision = map.next_value::<Key<'de>>()?.0 == REVISION;
                }
                "io.modelcontextprotocol/clientCapabilities" => {
                    meta.capabilities = Some(map.next_value_seed(value)?);
                }
                "io.modelcontextprotocol/clientInfo" => {
                    map.next_value_seed(value)?;
                }
                "remit/reason" => meta.reason = Some(map.next_value_seed(value)?),
                "remit/run" => meta.run = Some(map.next_value_seed(value)?),
                other => {
                    meta.unusual |=
                        other == "progressToken" || other.starts_with("io.modelcontextprotocol/");
                    map.next_value_seed(value)?;
                }
            }
            seen.push(key);
        }
        Ok(meta)
    }
}

/// A JSON string, borrowed from the body when it has no escapes.
#[derive(Debug, PartialEq, Eq)]
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
        }
        d.deserialize_str(Text)
    }
}

/// A request's headers as the short way reads them: hyper's map, or httparse's slice of
/// the bytes read off the wire (no map, no copies: `short_http` in remit-server).
pub trait Headers {
    /// Calls `f` with every header's name (in any case) and value, in order.
    fn each<'a>(&'a self, f: impl FnMut(&'a str, &'a [u8]));
}

impl Headers for http::HeaderMap {
    fn each<'a>(&'a self, mut f: impl FnMut(&'a str, &'a [u8])) {
        for (name, value) in self {
            f(name.as_str(), value.as_bytes());
        }
    }
}

impl Headers for [httparse::Header<'_>] {
    fn each<'a>(&'a self, mut f: impl FnMut(&'a str, &'a [u8])) {
        for header in self {
            f(header.name, header.value);
        }
    }
}

/// A header value as text, if it is what `HeaderValue::to_str` accepts: visible ASCII and tabs.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // eight bytes at a time: none below a space (the tab is checked byte by byte), none at or above DEL
    let visible = |w: u64| {
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let del_or_above = ((w & !HIGHS) + ONES) | w;
        (below_space | del_or_above) & HIGHS == 0
    };
    let byte = |b: &u8| *b == b'\t' || (32..127).contains(b);
    let words = value.chunks_exact(8);
    let tail = words.remainder();
    let plain = tail.iter().all(byte)
        && words
            .map(|w| <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes))
            .all(visible);
    if plain || value.iter().all(byte) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The values a header had: none, one, or more than one.
#[derive(Clone, Copy, Debug, Default)]
enum Slot<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    Many,
}

impl<'a> Slot<'a> {
    fn put(&mut self, value: &'a [u8]) {
        *self = match self {
            Self::Absent => Self::One(value),
            Self::One(_) | Self::Many => Self::Many,
        };
    }

    /// The single value, if the header came exactly once and its value is text.
    fn one(self) -> Option<&'a str> {
        match self {
            Self::One(value) => visible_ascii(value),
            Self::Absent | Self::Many => None,
        }
    }
}

/// What the short way reads of a request's headers, in one pass over them.
#[derive(Debug, Default)]
struct Seen<'a> {
    host: Slot<'a>,
    content_type: Slot<'a>,
    protocol_version: Slot<'a>,
    method: Slot<'a>,
    name: Slot<'a>,
    authorization: Slot<'a>,
    /// An `Mcp-Session-Id`, an `Origin` or an `Mcp-Param-*` header: the long way.
    unusual: bool,
    /// `Accept` named `application/json`.
    accept_json: bool,
    /// `Accept` named `text/event-stream`.
    accept_sse: bool,
    /// `Accept` had a value that is not text, or a weight (`;`).
    accept_unusual: bool,
}

impl<'a> Seen<'a> {
    fn of<H: Headers + ?Sized>(headers: &'a H) -> Self {
        let mut seen = Self::default();
        headers.each(|name, value| seen.take(name, value));
        seen
    }

    fn take(&mut self, name: &str, value: &'a [u8]) {
        // names usually come in lower case: compared as bytes first
        let is = |known: &str| name == known || name.eq_ignore_ascii_case(known);
        let slot = match name.len() {
            4 if is("host") => &mut self.host,
            6 if is("accept") => {
                self.accept(value);
                return;
            }
            6 | 14 if is("origin") || is("mcp-session-id") => {
                self.unusual = true;
                return;
            }
            8 if is("mcp-name") => &mut self.name,
            10 if is("mcp-method") => &mut self.method,
            12 if is("content-type") => &mut self.content_type,
            13 if is("authorization") => &mut self.authorization,
            20 if is("mcp-protocol-version") => &mut self.protocol_version,
            _ => {
                self.unusual |= name
                    .as_bytes()
                    .get(..b"mcp-param-".len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(b"mcp-param-"));
                return;
            }
        };
        slot.put(value);
    }

    fn accept(&mut self, value: &[u8]) {
        let Some(value) = visible_ascii(value) else {
            self.accept_unusual = true;
            return;
        };
        // a quoted string may hold a comma, which rmcp's split passes over: left to rmcp
        if value.contains('"') {
            self.accept_unusual = true;
            return;
        }
        for item in value.split(',') {
            let item = item.trim();
            if item.contains(';') {
                self.accept_unusual = true;
                return;
            }
            self.accept_json |= item.eq_ignore_ascii_case("application/json");
            self.accept_sse |= item.eq_ignore_ascii_case("text/event-stream");
        }
    }

    /// Whether `Accept` plainly names both `application/json` and `text/event-stream` (no weights).
    fn accepts_both(&self) -> bool {
        self.accept_json && self.accept_sse && !self.accept_unusual
    }

    /// Whether the JSON body is all the request says: `application/json`, whatever its parameters.
    fn json_body(&self) -> bool {
        self.content_type.one().is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        })
    }
}

/// The credential in a request's one `Authorization` header (none when it has two).
pub fn bearer_in<H: Headers + ?Sized>(headers: &H) -> Credential {
    let mut authorization = Slot::Absent;
    headers.each(|name, value| {
        if name.eq_ignore_ascii_case("authorization") {
            authorization.put(value);
        }
    });
    bearer_credential(authorization.one())
}

/// Whether the client's capabilities read as rmcp reads them (a malformed set is rmcp's to refuse).
fn capabilities_read(value: &Value) -> bool {
    use serde::Deserialize as _;
    // none declared, the usual case, reads as the empty set without rmcp's deserializer
    value.as_object().is_some_and(Map::is_empty)
        || value.is_object() && rmcp::model::ClientCapabilities::deserialize(value).is_ok()
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
        let seen = Seen::of(headers);
        if method != http::Method::POST
            || seen.unusual
            || seen.protocol_version.one() != Some(REVISION)
            || seen.method.one() != Some("tools/call")
            || !seen.json_body()
            || !seen.accepts_both()
            || !way.host_allowed(seen.host.one())
        {
            return None;
        }
        let name = seen.name.one()?;
        // an encoded header (`=?base64?...?=`) is rmcp's to decode and judge
        if name.starts_with("=?") {
            return None;
        }
        // one UTF-8 check of the whole body: serde_json then checks no string again
        let mut json = serde_json::Deserializer::from_str(std::str::from_utf8(body).ok()?);
        let request: Request<'_> = object_only(&mut json).ok()?;
        json.end().ok()?;
        if request.jsonrpc != "2.0"
            || request.method != "tools/call"
            || request.params.name != name
            // rmcp's ids are strings and 64-bit integers, which it writes back as it read
            // them; any other number (`1.5`, `1.0`, `1e2`, `-0`, past `i64`) is its to judge
            || !(request.id.is_string() || request.id.is_i64())
            || !request.params.meta.revision
            || !request
                .params
                .meta
                .capabilities
                .as_ref()
                .is_some_and(capabilities_read)
            || request.params.meta.unusual
            || param_headers(name)
        {
            return None;
        }
        let reason = reason_of(request.params.meta.reason.as_ref());
        let run = run_of_value(request.params.meta.run.as_ref());
        let capabilities = match request.params.meta.capabilities {
            Some(Value::Object(declared)) => Some(declared),
            _ => None,
        };
        let credential = bearer_credential(seen.authorization.one());
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
pub(crate) fn mentions_param_headers(schema: &Value) -> bool {
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
    fn a_header_value_is_text_exactly_when_hyper_reads_it_as_text() {
        for len in [1, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for b in 0..=255_u8 {
                    let mut value = vec![b'a'; len];
                    value[at] = b;
                    let ours = visible_ascii(&value);
                    let hypers = http::HeaderValue::from_bytes(&value)
                        .ok()
                        .and_then(|v| v.to_str().ok().map(str::to_owned));
                    // bytes hyper refuses outright (NUL, CR, LF) are not text either way
                    assert_eq!(
                        ours.map(str::to_owned),
                        hypers,
                        "byte {b:#04x} at {at} of {len}"
                    );
                }
            }
        }
        // UTF-8 text beyond ASCII is not what hyper calls text, wherever it falls
        for text in [
            "é",
            "aaaaaaé",
            "aaaaaaaé",
            "aaaaaaaaaaaé",
            "tools/call\u{7f}",
        ] {
            assert_eq!(visible_ascii(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn accept_must_name_both_types_without_weights() {
        let cases: [(&[&[u8]], bool); 5] = [
            (&[b"application/json, text/event-stream"], true),
            (&[b"application/json;q=0, text/event-stream"], false),
            (&[b"application/json"], false),
            // the two named across two headers
            (&[b"application/json", b"text/event-stream"], true),
            (
                &[b"application/json, text/event-stream", b"text/\xffhtml"],
                false,
            ),
        ];
        for (values, both) in cases {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(
                    http::header::ACCEPT,
                    http::HeaderValue::from_bytes(v).unwrap(),
                );
            }
            assert_eq!(Seen::of(&h).accepts_both(), both, "{h:?}");
        }
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
        let mut head = b"POST /mcp HTTP/1.1\r\n".to_vec();
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
            head.extend_from_slice(title.join("-").as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let shown = String::from_utf8_lossy(&head).into_owned();
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut wire = httparse::Request::new(&mut slots);
        assert!(wire.parse(&head).unwrap().is_complete(), "{shown}");
        let from_wire =
            StatelessCall::parse_with(&way, &http::Method::POST, wire.headers, &bytes, |_| false);
        assert_eq!(
            format!("{from_map:?}"),
            format!("{from_wire:?}"),
            "read from the wire:\n{shown}"
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
    fn a_request_rmcp_would_read_otherwise_or_refuse_is_left_to_it() {
        let (h, body) = request();
        // serde's structs read arrays too; rmcp reads no JSON-RPC message in them
        let mut params_array = body.clone();
        params_array["params"] = json!([
            "billing.get_customer", {"id": "c1"},
            {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
             "io.modelcontextprotocol/clientCapabilities": {}}
        ]);
        assert!(parse(&h, &params_array).is_none());
        let whole_array = json!(["2.0", 7, "tools/call", params_array["params"]]);
        assert!(parse(&h, &whole_array).is_none());
        // ids: strings and 64-bit integers only, as rmcp reads and writes them back
        for id in [
            json!(1.5),
            json!(1.0),
            json!(-0.0),
            json!(1e2),
            json!(u64::MAX),
        ] {
            let mut b = body.clone();
            b["id"] = id.clone();
            assert!(parse(&h, &b).is_none(), "id {id}");
        }
        for id in [json!("a-1"), json!(-3), json!(i64::MAX)] {
            let mut b = body.clone();
            b["id"] = id.clone();
            assert_eq!(parse(&h, &b).map(|c| c.id), Some(id));
        }
        // a quoted comma in `Accept`, which rmcp's split passes over
        let mut quoted = h.clone();
        quoted.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("x\"y, application/json, z\"w, text/event-stream"),
        );
        assert!(parse(&quoted, &body).is_none());
        // an encoded `Mcp-Name`, which rmcp decodes before it compares
        let (mut encoded, mut b) = (h, body);
        let name = "=?base64?YmlsbGluZy5nZXRfY3VzdG9tZXI=?=";
        encoded.insert("mcp-name", http::HeaderValue::from_static(name));
        b["params"]["name"] = json!(name);
        assert!(parse(&encoded, &b).is_none());
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
        for (k, v) in [
            ("mcp-method", "tools/call"),
            ("mcp-name", "billing.get_customer"),
            ("mcp-protocol-version", "2026-07-28"),
            ("content-type", "application/json"),
            ("host", "127.0.0.1:8080"),
            ("authorization", "Bearer t0k3n"),
        ] {
            let mut twice = h.clone();
            twice.append(k, http::HeaderValue::from_static(v));
            assert!(parse(&twice, &body).is_none(), "two {k} values");
        }
        for k in ["mcp-method", "mcp-name", "host", "authorization"] {
            let mut not_text = h.clone();
            not_text.insert(k, http::HeaderValue::from_bytes(b"tools/\xffcall").unwrap());
            assert!(parse(&not_text, &body).is_none(), "{k} not text");
        }
        for k in ["mcp-param-", "Mcp-Param-Region", "mcp-session-id", "origin"] {
            let mut unusual = h.clone();
            unusual.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_static(""),
            );
            assert!(parse(&unusual, &body).is_none(), "with {k}, even empty");
        }
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
    fn meta_is_read_key_by_key_within_bounds() {
        let (h, body) = request();
        let with_extra = |n: usize| {
            let mut b = body.clone();
            let meta = b["params"]["_meta"].as_object_mut().unwrap();
            for i in 0..n {
                meta.insert(format!("x/{i}"), json!({"nested": [i]}));
            }
            b
        };
        // the request's four keys plus 28 of the agent's own: read, and dropped
        let c = parse(&h, &with_extra(28)).expect("32 keys take the short way");
        assert_eq!(c.call.reason.as_deref(), Some("the customer asked"));
        assert!(
            parse(&h, &with_extra(29)).is_none(),
            "33 keys go the long way"
        );
        // a key or value written with escapes reads as its text
        let way = ShortWay::new(&["127.0.0.1".to_owned()]);
        let plain = serde_json::to_string(&body).unwrap();
        let escaped = plain
            .replace(r#""2026-07-28""#, r#""2026\u002d07-28""#)
            .replace(r#""remit/reason""#, r#""remit\/reason""#);
        assert_ne!(escaped, plain);
        let c =
            StatelessCall::parse_with(&way, &http::Method::POST, &h, escaped.as_bytes(), |_| false)
                .expect("escapes are text");
        assert_eq!(c.call.reason.as_deref(), Some("the customer asked"));
        let not_a_string = plain.replace(r#""2026-07-28""#, "20260728");
        assert!(
            StatelessCall::parse_with(
                &way,
                &http::Method::POST,
                &h,
                not_a_string.as_bytes(),
                |_| false
            )
            .is_none()
        );
    }

    #[test]
    fn hosts_with_a_port_are_left_to_the_full_check() {
        let way = ShortWay::new(&[
            "localhost".to_owned(),
            "[::1]".to_owned(),
            "remit.internal:8443".to_owned(),
        ]);
        assert!(way.host_allowed(Some("localhost:8080")));
        assert!(way.host_allowed(Some("[::1]:8080")));
        assert!(!way.host_allowed(Some("remit.internal:8443")));
        assert!(!way.host_allowed(Some("evil.example")));
        assert!(!way.host_allowed(None));
    }
}
