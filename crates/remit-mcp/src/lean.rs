//! The lean path to a 2026-07-28 HTTP upstream: one JSON-RPC POST per call on a kept-alive connection.
//!
//! rmcp's client costs a few hundred microseconds of CPU per call; the stateless revision
//! needs no session, so once the handshake (done with rmcp) shows the upstream speaks
//! 2026-07-28, `tools/call` goes out as a plain POST with the headers and `_meta` the
//! revision requires.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use remit_core::ports::UpstreamError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A kept-alive HTTP client for one stateless upstream.
#[derive(Debug)]
pub(crate) struct LeanHttp {
    way: Way,
    upstream: String,
    timeout: Duration,
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
            reqwest::header::HeaderValue::from_static(crate::STATELESS_REVISION),
        );
        map.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/json, text/event-stream"),
        );
        // reqwest honours the proxy variables (as rmcp's own client does); the raw way does not
        let proxied = proxy_configured(|name| std::env::var(name).ok());
        let raw = if proxied {
            None
        } else {
            RawHttp::new(url, &map)
        };
        let way = match raw {
            Some(raw) => Way::Raw(raw),
            None => Way::Reqwest {
                client: reqwest::Client::builder()
                    .default_headers(map)
                    .timeout(timeout)
                    .pool_max_idle_per_host(256)
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| e.to_string())?,
                url: url.to_owned(),
            },
        };
        Ok(Self {
            way,
            upstream: upstream.to_owned(),
            timeout,
            timeout_secs: timeout.as_secs(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Sends one `tools/call` and returns the `CallToolResult` as JSON.
    pub(crate) async fn call(
        &self,
        tool: &str,
        args: &Map<String, Value>,
        capabilities: Option<&Map<String, Value>>,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let none = Map::new();
        let body = serde_json::to_vec(&CallBody {
            jsonrpc: "2.0",
            id,
            method: "tools/call",
            params: CallParams {
                name: tool,
                arguments: args,
                meta: CallMeta {
                    protocol_version: crate::STATELESS_REVISION,
                    // the agent's: the upstream's input requests go to it
                    client_capabilities: capabilities.unwrap_or(&none),
                    client_info: ClientInfo {
                        name: "remit",
                        version: env!("CARGO_PKG_VERSION"),
                    },
                },
            },
        })
        .map_err(|e| self.protocol(format!("cannot encode the call: {e}")))?;
        let sent = match &self.way {
            Way::Raw(raw) => {
                match tokio::time::timeout(self.timeout, raw.post(tool, Bytes::from(body))).await {
                    Ok(answer) => answer,
                    Err(_) => Err(Sent::TimedOut),
                }
            }
            Way::Reqwest { client, url } => post_reqwest(client, url, tool, body).await,
        };
        let (status, sse, text) = match sent {
            Ok(answer) => answer,
            Err(Sent::TimedOut) => {
                return Err(UpstreamError::Timeout {
                    upstream: self.upstream.clone(),
                    seconds: self.timeout_secs,
                });
            }
            Err(Sent::Unreached(message)) => {
                return Err(UpstreamError::Unavailable {
                    upstream: self.upstream.clone(),
                    message,
                });
            }
            Err(Sent::Lost) => {
                return Err(UpstreamError::Lost {
                    upstream: self.upstream.clone(),
                });
            }
            Err(Sent::TooLarge(limit)) => {
                return Err(self.protocol(format!(
                    "answered with more than {} MiB, which remit does not read; the call ran",
                    limit / (1024 * 1024)
                )));
            }
        };
        let message = if sse {
            find_in_sse(&String::from_utf8_lossy(&text), id)
        } else {
            serde_json::from_slice::<Value>(&text).ok()
        };
        let Some(mut message) = message else {
            return Err(self.protocol(format!("HTTP {status} with no JSON-RPC answer")));
        };
        if let Some(result) = message.as_object_mut().and_then(|m| m.remove("result")) {
            return Ok(result);
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
                data: error.and_then(|e| e.get("data")).cloned(),
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

/// One POST through reqwest (`https://` upstreams, or any behind a proxy).
async fn post_reqwest(
    client: &reqwest::Client,
    url: &str,
    tool: &str,
    body: Vec<u8>,
) -> Result<(http::StatusCode, bool, Bytes), Sent> {
    let resp = match client
        .post(url)
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err(Sent::TimedOut),
        Err(e) if e.is_connect() => {
            return Err(Sent::Unreached("connection refused".to_owned()));
        }
        Err(_) => return Err(Sent::Lost),
    };
    let status = resp.status();
    let sse = is_sse(resp.headers());
    let text = resp.bytes().await.map_err(|e| {
        if e.is_timeout() {
            Sent::TimedOut
        } else {
            Sent::Lost
        }
    })?;
    Ok((status, sse, text))
}

/// A `tools/call` request as it goes out, borrowing the call's arguments.
#[derive(Serialize)]
struct CallBody<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'static str,
    params: CallParams<'a>,
}

#[derive(Serialize)]
struct CallParams<'a> {
    name: &'a str,
    arguments: &'a Map<String, Value>,
    #[serde(rename = "_meta")]
    meta: CallMeta<'a>,
}

#[derive(Serialize)]
struct CallMeta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: &'static str,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    client_capabilities: &'a Map<String, Value>,
    #[serde(rename = "io.modelcontextprotocol/clientInfo")]
    client_info: ClientInfo,
}

#[derive(Serialize)]
struct ClientInfo {
    name: &'static str,
    version: &'static str,
}

/// Whether the environment names an HTTP proxy, which only the reqwest way follows.
fn proxy_configured(var: impl Fn(&str) -> Option<String>) -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.trim().is_empty()))
}

/// How calls reach the upstream.
#[derive(Debug)]
enum Way {
    /// `http://` without a proxy: hyper connections of remit's own, no reqwest layers.
    Raw(RawHttp),
    /// `https://`, or a proxy is configured: reqwest, which does TLS and follows the proxy.
    Reqwest {
        /// The client, with the upstream's headers.
        client: reqwest::Client,
        /// The upstream's URL.
        url: String,
    },
}

/// Why a POST got no answer.
#[derive(Debug)]
enum Sent {
    /// Nothing reached the upstream (no connection): the call did not run.
    Unreached(String),
    /// The upstream took longer than the timeout: the call may or may not have run.
    TimedOut,
    /// The connection broke after the request was written: the call may or may not have run.
    Lost,
    /// The answer was larger than the limit (bytes): the call ran, its answer was not read.
    TooLarge(usize),
}

fn is_sse(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type Connection = hyper::client::conn::http1::Connection<
    hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    Full<Bytes>,
>;

/// One kept-alive HTTP/1.1 connection, driven by the task of the call that uses it.
///
/// hyper's connection future does the reading and writing; instead of running it on a
/// task of its own (a second task woken for every request and every answer), the call
/// polls it alongside its own request until the answer is read. Between calls nobody
/// polls it; it is polled once when taken from the pool, which notices an upstream that
/// closed it meanwhile.
struct Conn {
    sender: Sender,
    drive: Drive,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

/// hyper's connection future, and whether it has ended (it must not be polled after).
struct Drive {
    connection: std::pin::Pin<Box<Connection>>,
    ended: bool,
}

/// The connection ended before the future being driven alongside it did.
struct Ended;

impl Conn {
    /// Whether the connection can take a request: polls it once, without waiting.
    fn is_usable(&mut self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.drive.poll(&mut cx);
        !self.drive.ended && !self.sender.is_closed()
    }
}

impl Drive {
    /// Polls the connection unless it has ended; whether it has ended now.
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        if !self.ended && self.connection.as_mut().poll(cx).is_ready() {
            self.ended = true;
        }
        self.ended
    }

    /// Runs `work` to its end while driving the connection from this task.
    async fn run<F: Future>(&mut self, work: F) -> Result<F::Output, Ended> {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
                return std::task::Poll::Ready(Ok(out));
            }
            if self.ended {
                return std::task::Poll::Ready(Err(Ended));
            }
            if self.poll(cx) {
                // an answer (or hyper's error for the request) may have come with the end
                if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
                    return std::task::Poll::Ready(Ok(out));
                }
                return std::task::Poll::Ready(Err(Ended));
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Kept-alive HTTP/1.1 connections to one `http://` upstream, on hyper directly.
///
/// An idle connection is taken from the pool (or a new one opened), one request is sent,
/// and the connection goes back once its answer is read. A request hyper hands back
/// unsent (the upstream closed an idle connection) is sent again on a new connection;
/// a request that may have been written is never sent twice.
#[derive(Debug)]
struct RawHttp {
    /// `host:port` to connect to.
    addr: String,
    path: http::uri::PathAndQuery,
    headers: http::HeaderMap,
    idle: std::sync::Mutex<Vec<Conn>>,
    /// The largest answer read.
    max_answer: usize,
}

/// The largest answer read from an upstream (64 MiB); a larger one fails the call as lost.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Most idle connections kept per upstream.
const MAX_IDLE: usize = 256;

impl RawHttp {
    /// The raw client for a plain `http://` URL; `None` for anything else (reqwest serves it).
    fn new(url: &str, headers: &http::HeaderMap) -> Option<Self> {
        let uri: http::Uri = url.parse().ok()?;
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let authority = uri.authority()?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        let mut headers = headers.clone();
        headers.insert(
            http::header::HOST,
            http::HeaderValue::from_str(authority.as_str()).ok()?,
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert("mcp-method", http::HeaderValue::from_static("tools/call"));
        Some(Self {
            addr: format!("{host}:{port}"),
            path: uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            headers,
            idle: std::sync::Mutex::new(Vec::new()),
            max_answer: MAX_ANSWER_BYTES,
        })
    }

    fn take_idle(&self) -> Option<Conn> {
        loop {
            let mut conn = self.idle.lock().ok()?.pop()?;
            if conn.is_usable() {
                return Some(conn);
            }
        }
    }

    fn put_idle(&self, mut conn: Conn) {
        if !conn.is_usable() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, Sent> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| Sent::Unreached(format!("cannot connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| Sent::Unreached(format!("cannot connect: {e}")))?;
        Ok(Conn {
            sender,
            drive: Drive {
                connection: Box::pin(connection),
                ended: false,
            },
        })
    }

    fn request(&self, tool: &str, body: Bytes) -> Result<http::Request<Full<Bytes>>, Sent> {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = http::Uri::from(self.path.clone());
        *request.headers_mut() = self.headers.clone();
        let name = http::HeaderValue::from_str(tool).map_err(|_| {
            Sent::Unreached(format!("tool name `{tool}` cannot be sent in a header"))
        })?;
        request.headers_mut().insert("mcp-name", name);
        Ok(request)
    }

    /// One POST; the status, whether the answer is SSE, and its body.
    async fn post(&self, tool: &str, body: Bytes) -> Result<(http::StatusCode, bool, Bytes), Sent> {
        let mut request = self.request(tool, body)?;
        // a pooled connection may have been closed by the upstream meanwhile: then hyper
        // hands the request back unsent, and it goes out once more on a new connection
        let mut fresh = false;
        let (mut conn, response) = loop {
            let mut conn = match self.take_idle() {
                Some(c) => c,
                None => {
                    fresh = true;
                    self.connect().await?
                }
            };
            let ready = conn.drive.run(conn.sender.ready()).await;
            if !matches!(ready, Ok(Ok(()))) {
                if fresh {
                    return Err(Sent::Unreached("the connection closed at once".to_owned()));
                }
                continue;
            }
            let sent = conn.sender.try_send_request(request);
            match conn.drive.run(sent).await {
                Ok(Ok(response)) => break (conn, response),
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    Some(_) => return Err(Sent::Unreached(format!("cannot send: {}", e.error()))),
                    None => return Err(Sent::Lost),
                },
                Err(Ended) => return Err(Sent::Lost),
            }
        };
        let status = response.status();
        let sse = is_sse(response.headers());
        // an answer larger than the limit is not read: the connection is dropped, not pooled
        let limited = http_body_util::Limited::new(response.into_body(), self.max_answer);
        let body = match conn.drive.run(limited.collect()).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Sent::TooLarge(self.max_answer));
            }
            Ok(Err(_)) | Err(Ended) => return Err(Sent::Lost),
        };
        self.put_idle(conn);
        Ok((status, sse, body))
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
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that answers one request per connection and then hangs up without saying so.
    async fn one_shot_upstream() -> (String, std::sync::Arc<AtomicU64>) {
        one_shot_upstream_answering(|request| {
            json!({"jsonrpc": "2.0", "id": request["id"], "result": {"content": [{"type": "text", "text": request["params"]["arguments"]["text"]}]}})
        })
        .await
    }

    /// Like [`one_shot_upstream`], answering each request with `answer(request)`.
    async fn one_shot_upstream_answering(
        answer: fn(&Value) -> Value,
    ) -> (String, std::sync::Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(AtomicU64::new(0));
        let count = std::sync::Arc::clone(&served);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let count = std::sync::Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    // headers, then a Content-Length body
                    loop {
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len: usize = text
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse().unwrap())
                                })
                                .unwrap_or(0);
                            if got.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let request: Value = {
                        let text = String::from_utf8_lossy(&got).to_string();
                        let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
                        serde_json::from_str(&body).unwrap()
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = answer(&request).to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    // no `Connection: close`: the client finds out when it next uses the connection
                });
            }
        });
        (url, served)
    }

    /// An upstream that keeps connections alive and serves any number of requests on each;
    /// it counts the connections it accepted.
    async fn keep_alive_upstream() -> (String, std::sync::Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let connections = std::sync::Arc::new(AtomicU64::new(0));
        let count = std::sync::Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut got: Vec<u8> = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        // one request: headers, then a Content-Length body
                        let (end, len) = loop {
                            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head =
                                    String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                                let len: usize = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .map_or(0, |v| v.trim().parse().unwrap());
                                if got.len() >= end + 4 + len {
                                    break (end, len);
                                }
                            }
                            let n = stream.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..n]);
                        };
                        let request: Value =
                            serde_json::from_slice(&got[end + 4..end + 4 + len]).unwrap();
                        got.drain(..end + 4 + len);
                        let body = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
                            "content": [{"type": "text", "text": request["params"]["arguments"]["text"]}]
                        }})
                        .to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, connections)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_reuse_kept_alive_connections_and_each_gets_its_own_answer() {
        let (url, connections) = keep_alive_upstream().await;
        let lean =
            std::sync::Arc::new(LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap());
        if !matches!(lean.way, Way::Raw(_)) {
            return; // a proxy is configured: reqwest pools its own way
        }
        for i in 0..20 {
            let text = format!("one after another {i}");
            let result = lean.call("echo", &args(&text), None).await.unwrap();
            assert_eq!(result["content"][0]["text"], json!(text));
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "one connection, kept alive"
        );
        let calls = (0..16).map(|client| {
            let lean = std::sync::Arc::clone(&lean);
            tokio::spawn(async move {
                for i in 0..25 {
                    let text = format!("client {client} call {i}");
                    let result = lean.call("echo", &args(&text), None).await.unwrap();
                    assert_eq!(result["content"][0]["text"], json!(text));
                }
            })
        });
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap();
        }
        let opened = connections.load(Ordering::SeqCst);
        assert!(
            opened <= 17,
            "{opened} connections for 16 concurrent clients"
        );
    }

    fn args(text: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("text".to_owned(), json!(text));
        m
    }

    #[test]
    fn a_configured_proxy_sends_calls_the_reqwest_way() {
        assert!(!proxy_configured(|_| None));
        assert!(!proxy_configured(|_| Some(" ".to_owned())));
        assert!(proxy_configured(|name| {
            (name == "http_proxy").then(|| "http://proxy:3128".to_owned())
        }));
    }

    #[tokio::test]
    async fn a_pooled_connection_the_upstream_closed_is_replaced_not_reported() {
        let (url, served) = one_shot_upstream().await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        if !proxy_configured(|name| std::env::var(name).ok()) {
            assert!(matches!(lean.way, Way::Raw(_)), "http:// goes the raw way");
        }
        for i in 0..5 {
            let text = format!("call {i}");
            let result = lean.call("echo", &args(&text), None).await.unwrap();
            assert_eq!(result["content"][0]["text"], json!(text));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // each call ran exactly once
        assert_eq!(served.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn an_upstreams_json_rpc_error_keeps_its_code_message_and_data() {
        let (url, _) = one_shot_upstream_answering(|request| {
            json!({"jsonrpc": "2.0", "id": request["id"], "error": {
                "code": -32021, "message": "missing capability",
                "data": {"requiredCapabilities": {"sampling": {}}}
            }})
        })
        .await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        match lean.call("echo", &args("x"), None).await {
            Err(UpstreamError::Rejected {
                code,
                message,
                data,
                ..
            }) => {
                assert_eq!(code, -32021);
                assert_eq!(message, "missing capability");
                assert_eq!(
                    data,
                    Some(json!({"requiredCapabilities": {"sampling": {}}}))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_fails_the_call_and_says_it_ran() {
        let (url, served) = one_shot_upstream().await;
        let mut lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        let Way::Raw(raw) = &mut lean.way else {
            return; // a proxy is configured: reqwest has no such limit
        };
        raw.max_answer = 100;
        match lean.call("echo", &args(&"x".repeat(200)), None).await {
            Err(UpstreamError::Protocol { message, .. }) => {
                assert!(message.contains("the call ran"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(served.load(Ordering::SeqCst), 1);
        // small answers still come through
        let result = lean.call("echo", &args("ok"), None).await.unwrap();
        assert_eq!(result["content"][0]["text"], json!("ok"));
    }

    #[tokio::test]
    async fn an_upstream_that_is_down_is_unavailable_and_one_that_hangs_times_out() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let down = LeanHttp::new(
            "echo",
            &format!("http://127.0.0.1:{port}/mcp"),
            &[],
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(matches!(
            down.call("echo", &args("x"), None).await,
            Err(UpstreamError::Unavailable { .. })
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move {
            // accepts and never answers
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let hung = LeanHttp::new("echo", &url, &[], Duration::from_millis(300)).unwrap();
        assert!(matches!(
            hung.call("echo", &args("x"), None).await,
            Err(UpstreamError::Timeout { .. })
        ));
    }

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
