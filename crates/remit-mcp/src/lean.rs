//! The lean path to a 2026-07-28 HTTP upstream: one JSON-RPC POST per call on a kept-alive connection.
//!
//! rmcp's client costs a few hundred microseconds of CPU per call; the stateless revision
//! needs no session, so once the handshake (done with rmcp) shows the upstream speaks
//! 2026-07-28, `tools/call` goes out as a plain POST with the headers and `_meta` the
//! revision requires.

use remit_core::ports::UpstreamError;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A kept-alive HTTP client for one stateless upstream.
#[derive(Debug)]
pub(crate) struct LeanHttp {
    client: reqwest::Client,
    url: String,
    upstream: String,
    timeout_secs: u64,
    next_id: AtomicU64,
}

impl LeanHttp {
    /// A client for `url` sending `headers` on every request.
    pub(crate) fn new(
        upstream: &str,
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            let name = reqwest::header::HeaderName::try_from(k.as_str())
                .map_err(|_| format!("header name `{k}` is invalid"))?;
            let value = reqwest::header::HeaderValue::try_from(v.as_str())
                .map_err(|_| format!("the value of header `{k}` is invalid"))?;
            map.insert(name, value);
        }
        map.insert(
            "mcp-protocol-version",
            reqwest::header::HeaderValue::from_static("2026-07-28"),
        );
        map.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/json, text/event-stream"),
        );
        let client = reqwest::Client::builder()
            .default_headers(map)
            .timeout(timeout)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url: url.to_owned(),
            upstream: upstream.to_owned(),
            timeout_secs: timeout.as_secs(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Sends one `tools/call` and returns the `CallToolResult` as JSON.
    pub(crate) async fn call(
        &self,
        tool: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": args,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": { "name": "remit", "version": env!("CARGO_PKG_VERSION") }
                }
            }
        });
        let sent = self
            .client
            .post(&self.url)
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool)
            .json(&body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(UpstreamError::Timeout {
                    upstream: self.upstream.clone(),
                    seconds: self.timeout_secs,
                });
            }
            Err(e) if e.is_connect() => {
                return Err(UpstreamError::Unavailable {
                    upstream: self.upstream.clone(),
                    message: "connection refused".to_owned(),
                });
            }
            Err(_) => {
                return Err(UpstreamError::Lost {
                    upstream: self.upstream.clone(),
                });
            }
        };
        let status = resp.status();
        let sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = resp.text().await.map_err(|_| UpstreamError::Timeout {
            upstream: self.upstream.clone(),
            seconds: self.timeout_secs,
        })?;
        let message = if sse {
            find_in_sse(&text, id)
        } else {
            serde_json::from_str::<Value>(&text).ok()
        };
        let Some(message) = message else {
            return Err(self.protocol(format!("HTTP {status} with no JSON-RPC answer")));
        };
        if let Some(result) = message.get("result") {
            return Ok(result.clone());
        }
        let error = message.get("error");
        let text = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("no result");
        match error.and_then(|e| e.get("code")).and_then(Value::as_i64) {
            Some(code) => Err(UpstreamError::Rejected {
                upstream: self.upstream.clone(),
                code,
                message: text.to_owned(),
            }),
            None => Err(self.protocol(format!("HTTP {status}: {text}"))),
        }
    }

    fn protocol(&self, message: String) -> UpstreamError {
        UpstreamError::Protocol {
            upstream: self.upstream.clone(),
            message,
        }
    }
}

/// The JSON-RPC response with `id` among the events of an SSE body.
fn find_in_sse(text: &str, id: u64) -> Option<Value> {
    let mut data = String::new();
    let mut found = None;
    let mut flush = |data: &mut String| {
        if !data.is_empty() {
            if let Ok(v) = serde_json::from_str::<Value>(data)
                && v.get("id").and_then(Value::as_u64) == Some(id)
            {
                found = Some(v);
            }
            data.clear();
        }
    };
    for line in text.lines() {
        if line.is_empty() {
            flush(&mut data);
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    flush(&mut data);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_answer_among_notifications_in_an_sse_body() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\nid: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n";
        assert_eq!(
            find_in_sse(body, 7).unwrap()["result"],
            json!({"content": []})
        );
        assert!(find_in_sse(body, 8).is_none());
    }
}
