//! The lean path to a 2026-07-28 HTTP upstream: one JSON-RPC POST per call on a kept-alive connection.
//!
//! rmcp's client costs a few hundred microseconds of CPU per call; the stateless revision
//! needs no session, so once the handshake (done with rmcp) shows the upstream speaks
//! 2026-07-28, `tools/call` goes out as a plain POST with the headers and `_meta` the
//! revision requires.

use bytes::Bytes;
use remit_core::ports::UpstreamError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A kept-alive HTTP client for one stateless upstream.
#[derive(Debug)]
pub(crate) struct LeanHttp {
    way: Way,
    upstream: String,
    /// The upstream URL, parsed: a relative `Location` is read against it.
    base: Option<reqwest::Url>,
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
                client: reqwest_client(map, timeout)
                    .build()
                    .map_err(|e| e.to_string())?,
                url: url.to_owned(),
                max_answer: MAX_ANSWER_BYTES,
            },
        };
        Ok(Self {
            way,
            upstream: upstream.to_owned(),
            base: reqwest::Url::parse(url).ok(),
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
        let body = call_body(id, tool, args, capabilities);
        let sent = match &self.way {
            Way::Raw(raw) => {
                let deadline = tokio::time::Instant::now() + self.timeout;
                match tokio::time::timeout_at(deadline, raw.post(tool, &body, deadline)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(Sent::TimedOut),
                }
            }
            Way::Reqwest {
                client,
                url,
                max_answer,
            } => post_reqwest(client, url, tool, body, *max_answer).await,
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
            Err(Sent::Redirected { status, location }) => {
                let target = self
                    .base
                    .as_ref()
                    .and_then(|base| base.join(&location).ok());
                return Err(self.protocol(format!(
                    "the call was sent and {}; it may or may not have run",
                    Redirected::new(status, target.as_ref())
                )));
            }
        };
        let reply = if sse {
            find_in_sse(&String::from_utf8_lossy(&text), id)
                .and_then(|message| Reply::deserialize(message).ok())
        } else {
            // one UTF-8 check of the whole body: serde_json then checks no string again
            std::str::from_utf8(&text)
                .ok()
                .and_then(|text| serde_json::from_str::<Reply>(text).ok())
        };
        let Some(reply) = reply else {
            return Err(self.protocol(format!("HTTP {status} with no JSON-RPC answer")));
        };
        if !reply.answers(id) {
            return Err(self.protocol(format!(
                "HTTP {status} with a JSON-RPC message that does not answer this call (id {id})"
            )));
        }
        if let Some(result) = reply.result {
            return Ok(result);
        }
        let error = reply.error.as_ref();
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

/// The reqwest client of the lean way: the upstream's `headers` on every request, no redirect followed.
fn reqwest_client(
    headers: reqwest::header::HeaderMap,
    timeout: Duration,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(refuse_redirects())
        .timeout(timeout)
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
}

/// One POST through reqwest (`https://` upstreams, or any behind a proxy); an answer over `max` bytes is not read.
async fn post_reqwest(
    client: &reqwest::Client,
    url: &str,
    tool: &str,
    body: Vec<u8>,
    max: usize,
) -> Result<(http::StatusCode, bool, Bytes), Sent> {
    let mut resp = match client
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
        Err(e) => {
            return Err(match redirect_in(&e) {
                Some(r) => Sent::Redirected {
                    status: r.status,
                    location: r.target.clone(),
                },
                None => Sent::Lost,
            });
        }
    };
    let status = resp.status();
    let sse = is_sse(resp.headers());
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(Sent::TooLarge(max));
    }
    // read piece by piece: an answer with no length, or a lying one, stops at the limit
    let mut text = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(piece)) if text.len().saturating_add(piece.len()) > max => {
                return Err(Sent::TooLarge(max));
            }
            Ok(Some(piece)) => text.extend_from_slice(&piece),
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(Sent::TimedOut),
            Err(_) => return Err(Sent::Lost),
        }
    }
    Ok((status, sse, Bytes::from(text)))
}

/// A JSON-RPC answer as the lean client reads it: its `id`, its `result` (`null` included)
/// or its `error`, and whether it has a `method` (then it is a request, not an answer);
/// nothing else of it is kept, and a repeated key counts once, the last, as in a `Value`.
#[derive(Debug, Default)]
struct Reply {
    id: Option<Value>,
    result: Option<Value>,
    error: Option<Value>,
    request: bool,
}

impl Reply {
    /// Whether it answers the request `id`: its id, or, for an error, `null` (an upstream
    /// that could not read the request's id says so).
    fn answers(&self, id: u64) -> bool {
        if self.request {
            return false;
        }
        match &self.id {
            Some(Value::Number(n)) => n.as_u64() == Some(id),
            Some(Value::Null) => self.error.is_some() && self.result.is_none(),
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The keys of an answer that matter, read without copying them.
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Id,
            Result,
            Error,
            Method,
            #[serde(other)]
            Other,
        }
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = Reply;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC answer object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Reply, A::Error> {
                let mut reply = Reply::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Id => reply.id = Some(map.next_value()?),
                        Key::Result => reply.result = Some(map.next_value()?),
                        Key::Error => reply.error = Some(map.next_value()?),
                        Key::Method => {
                            reply.request = true;
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                        Key::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(reply)
            }
        }
        d.deserialize_map(Object)
    }
}

/// A `tools/call` request's JSON-RPC body as it goes out.
///
/// Written straight from its parts by the audit's canonical writer (one buffer, strings
/// checked eight bytes at a time); the same bytes serde_json wrote for the struct this
/// replaced, which a test holds.
fn call_body(
    id: u64,
    tool: &str,
    args: &Map<String, Value>,
    capabilities: Option<&Map<String, Value>>,
) -> Vec<u8> {
    use remit_core::audit::event::{write_canonical_object, write_json_string};
    use std::io::Write as _;
    let mut body = Vec::with_capacity(384 + tool.len());
    body.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    // writing to a Vec cannot fail
    let _ = write!(body, "{id}");
    body.extend_from_slice(b",\"method\":\"tools/call\",\"params\":{\"name\":");
    write_json_string(tool, &mut body);
    body.extend_from_slice(b",\"arguments\":");
    write_canonical_object(args, &mut body);
    body.extend_from_slice(b",\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":");
    write_json_string(crate::STATELESS_REVISION, &mut body);
    // the agent's capabilities: the upstream's input requests go to it
    body.extend_from_slice(b",\"io.modelcontextprotocol/clientCapabilities\":");
    match capabilities {
        Some(capabilities) => write_canonical_object(capabilities, &mut body),
        None => body.extend_from_slice(b"{}"),
    }
    body.extend_from_slice(
        b",\"io.modelcontextprotocol/clientInfo\":{\"name\":\"remit\",\"version\":",
    );
    write_json_string(env!("CARGO_PKG_VERSION"), &mut body);
    body.extend_from_slice(b"}}}}");
    body
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
    /// `https://`, a proxy, or credentials in the URL: reqwest, which does TLS, follows the
    /// proxy and sends the URL's user and password as basic authentication.
    Reqwest {
        /// The client, with the upstream's headers.
        client: reqwest::Client,
        /// The upstream's URL.
        url: String,
        /// The largest answer read.
        max_answer: usize,
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
    /// The upstream answered with a redirect, which remit does not follow.
    Redirected {
        /// The redirect's status.
        status: http::StatusCode,
        /// Its `Location`, as sent (read against the upstream's URL).
        location: String,
    },
}

/// An upstream's answer redirecting a request elsewhere, which remit never follows.
///
/// An MCP Streamable HTTP endpoint has no reason to redirect, and following one would
/// send the upstream's credentials (its `headers`, which reqwest keeps across origins
/// unless they are `Authorization`) and the agent's arguments wherever the answer
/// points. Its message names the status and the target's origin, never a header or a path.
#[derive(Debug)]
pub(crate) struct Redirected {
    /// The redirect's status.
    pub(crate) status: http::StatusCode,
    /// Where it pointed, as a URL (empty if it could not be read).
    target: String,
}

impl Redirected {
    /// A redirect with `status` to `target`, if it could be read.
    pub(crate) fn new(status: http::StatusCode, target: Option<&reqwest::Url>) -> Self {
        Self {
            status,
            target: target.map(|t| t.as_str().to_owned()).unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Redirected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = reqwest::Url::parse(&self.target)
            .ok()
            .map(|t| t.origin().ascii_serialization())
            .filter(|o| o != "null");
        write!(
            f,
            "the upstream answered HTTP {} redirecting to {}, which remit does not follow (give the endpoint itself as the upstream's url)",
            self.status.as_u16(),
            origin
                .as_deref()
                .unwrap_or("a location remit could not read")
        )
    }
}

impl std::error::Error for Redirected {}

/// The redirect policy of every reqwest client that calls an upstream: none is followed;
/// the request fails with [`Redirected`].
pub(crate) fn refuse_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let refused = Redirected::new(attempt.status(), Some(attempt.url()));
        attempt.error(refused)
    })
}

/// The redirect an error comes from, if it does (searched along its sources).
pub(crate) fn redirect_in<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e Redirected> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<Redirected>() {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// Whether an answer's headers say it is an SSE stream.
fn is_sse(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_sse_type)
}

/// Whether a `Content-Type` value is SSE's (media types are case-insensitive).
fn is_sse_type(content_type: &str) -> bool {
    content_type
        .get(.."text/event-stream".len())
        .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
}

/// One kept-alive HTTP/1.1 connection to the upstream, read and written by the call that uses it.
///
/// No connection task and no request types: the call writes its request in one `write`
/// and reads the answer on its own task (hyper's client, driven the same way, cost about
/// a tenth of remit's CPU per call; BENCHMARKS.md, run 9).
#[derive(Debug)]
struct Conn {
    stream: tokio::net::TcpStream,
    /// Bytes read past the last answer (none, on a connection fit to pool).
    buf: Vec<u8>,
    /// When it went back to the pool.
    idle_since: std::time::Instant,
}

/// How long a pooled connection may sit idle before it is checked on the socket itself.
///
/// A check is a system call, about a microsecond per call under load (with 1 ms, 45 % of
/// the calls at 64 clients made one), so a connection used again sooner is checked
/// against what tokio's event loop has seen. What that may miss in so short a time is an
/// upstream misbehaving: bytes nobody asked for (a call reading them fails, since an
/// answer must carry its call's id) or a close it did not announce (the call is reported
/// as possibly run). An upstream's idle close, the usual case, comes after seconds (5 s
/// in Node's and uvicorn's servers, 75 s in nginx) and is always seen.
const CHECK_AFTER: Duration = Duration::from_millis(100);

impl Conn {
    /// Whether the connection can take a request: the upstream has not closed it or sent anything unasked.
    ///
    /// After [`CHECK_AFTER`] idle, asks the socket itself (a peek, which consumes nothing):
    /// tokio's `try_read` answers from the readiness its event loop last saw, so bytes or a
    /// close that arrived since (while the runtime was busy) would go unnoticed, and the next
    /// call could be sent on a closed connection.
    fn is_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let would_block = |read: std::io::Result<usize>| matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        if self.idle_since.elapsed() < CHECK_AFTER {
            return would_block(self.stream.try_read(&mut [0u8; 1]));
        }
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        would_block(socket2::SockRef::from(&self.stream).peek(&mut probe))
    }

    /// Writes `bytes`; how many went out before an error, if one came.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), usize> {
        use tokio::io::AsyncWriteExt;
        let mut written = 0;
        while let Some(rest) = bytes.get(written..).filter(|r| !r.is_empty()) {
            match self.stream.write(rest).await {
                Ok(0) | Err(_) => return Err(written),
                Ok(n) => written += n,
            }
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; false at the end of the stream or on an error.
    async fn fill(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        self.buf.reserve(16 * 1024);
        matches!(self.stream.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Reads one answer: its status, whether it is SSE, its body, and whether the connection may be kept.
    async fn answer(&mut self, max: usize) -> Result<Answer, Sent> {
        let head = loop {
            match response_head(&self.buf)? {
                // a POST is not upgraded: the upstream speaks something else from here on
                Some(head) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(Sent::Lost);
                }
                Some(head) if head.status.is_informational() => {
                    self.buf.drain(..head.len);
                }
                Some(head) => break head,
                None if self.buf.len() > MAX_ANSWER_HEAD => return Err(Sent::Lost),
                None => {
                    if !self.fill().await {
                        return Err(Sent::Lost);
                    }
                }
            }
        };
        self.buf.drain(..head.len);
        // a redirect is not followed; the connection, its body unread, is not used again
        if let Some(location) = head.location {
            return Err(Sent::Redirected {
                status: head.status,
                location,
            });
        }
        let body = match head.framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) if n > max => return Err(Sent::TooLarge(max)),
            Framing::Length(n) => {
                while self.buf.len() < n {
                    if !self.fill().await {
                        return Err(Sent::Lost);
                    }
                }
                self.buf.drain(..n).collect()
            }
            Framing::Chunked => {
                let mut chunks = Dechunk::default();
                loop {
                    let done = chunks.step(&self.buf, max)?;
                    // what was decoded leaves the buffer: it holds at most a line or a fill
                    self.buf.drain(..chunks.at);
                    chunks.read += chunks.at;
                    chunks.at = 0;
                    if done {
                        break;
                    }
                    if !self.fill().await {
                        return Err(Sent::Lost);
                    }
                }
                chunks.out
            }
            Framing::ToEnd => {
                while self.fill().await {
                    if self.buf.len() > max {
                        return Err(Sent::TooLarge(max));
                    }
                }
                std::mem::take(&mut self.buf)
            }
        };
        Ok(Answer {
            status: head.status,
            sse: head.sse,
            body: Bytes::from(body),
            keep: head.keep && head.framing != Framing::ToEnd,
        })
    }
}

/// An answer read off a connection.
struct Answer {
    status: http::StatusCode,
    sse: bool,
    body: Bytes,
    /// The connection may take another request.
    keep: bool,
}

/// The largest answer head read (hyper's client, used before, read up to about as much).
const MAX_ANSWER_HEAD: usize = 400 * 1024;

/// Most headers an answer may have (as hyper's client allowed).
const MAX_ANSWER_HEADERS: usize = 100;

/// How an answer's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// It has none (`204`, `304`).
    Empty,
    /// After `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// When the upstream closes the connection.
    ToEnd,
}

/// The head of an answer.
#[derive(Debug)]
struct ResponseHead {
    /// Its bytes, blank line included.
    len: usize,
    status: http::StatusCode,
    sse: bool,
    framing: Framing,
    /// HTTP/1.1 without `Connection: close`.
    keep: bool,
    /// A redirect's `Location` (read only for a 3xx answer).
    location: Option<String>,
}

/// The answer head at the start of `buf`, if all of it is there; `Lost` if it is not HTTP.
fn response_head(buf: &[u8]) -> Result<Option<ResponseHead>, Sent> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_ANSWER_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Sent::Lost),
    };
    let status = response
        .code
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .ok_or(Sent::Lost)?;
    let mut keep = response.version == Some(1);
    let (mut sse, mut length, mut chunked) = (false, None, false);
    let (mut has_length, mut has_coding) = (false, false);
    let mut location = None;
    for h in response.headers.iter() {
        // only the headers read below must be text; any other is passed over as it is
        let value = || {
            std::str::from_utf8(h.value)
                .map(str::trim)
                .map_err(|_| Sent::Lost)
        };
        if h.name.eq_ignore_ascii_case("content-type") {
            let value = value()?;
            sse = is_sse_type(value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            let n: usize = value()?.parse().map_err(|_| Sent::Lost)?;
            if length.is_some_and(|l| l != n) {
                return Err(Sent::Lost);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_coding = true;
            // the last coding decides; remit asks for no other
            chunked = value()?
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(Sent::Lost);
            }
        } else if status.is_redirection() && h.name.eq_ignore_ascii_case("location") {
            location = Some(String::from_utf8_lossy(h.value).trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep &= !value()?
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    // both: the coding decides, and the connection is not used again (RFC 9112, 6.3)
    if has_length && has_coding {
        keep = false;
    }
    let framing = if status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::ToEnd
    };
    Ok(Some(ResponseHead {
        len,
        status,
        sse,
        framing,
        keep,
        location,
    }))
}

/// A chunked body decoded as its bytes arrive.
#[derive(Debug, Default)]
struct Dechunk {
    /// The next byte of the buffer to read.
    at: usize,
    /// Bytes read off the wire in earlier steps (before `at` was last reset).
    read: usize,
    /// The body so far.
    out: Vec<u8>,
    /// Bytes of the current chunk still to come.
    left: usize,
    state: Chunk,
}

/// Where the decoder is in the chunked body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    #[default]
    Size,
    /// In a chunk's data.
    Data,
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// In the trailer, after the last chunk.
    Trailer,
}

/// The longest chunk-size or trailer line read.
const MAX_CHUNK_LINE: usize = 4096;

impl Dechunk {
    /// Reads on from `buf`; true once the whole body is in.
    ///
    /// The bytes on the wire count against the limit too (at most twice `max`, and 64 KiB):
    /// chunk extensions and trailer lines carry no body, and without a bound an upstream
    /// could send them for ever.
    fn step(&mut self, buf: &[u8], max: usize) -> Result<bool, Sent> {
        let most_read = max.saturating_mul(2).saturating_add(64 * 1024);
        loop {
            if self.read.saturating_add(self.at) > most_read {
                return Err(Sent::TooLarge(max));
            }
            let rest = buf.get(self.at..).unwrap_or_default();
            match self.state {
                Chunk::Size | Chunk::Trailer => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return if rest.len() > MAX_CHUNK_LINE {
                            Err(Sent::Lost)
                        } else {
                            Ok(false)
                        };
                    };
                    let line = rest.get(..end).unwrap_or_default();
                    self.at += end + 2;
                    if self.state == Chunk::Trailer {
                        if line.is_empty() {
                            return Ok(true);
                        }
                        continue;
                    }
                    let size = std::str::from_utf8(line)
                        .ok()
                        .and_then(|l| l.split(';').next())
                        .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                        .ok_or(Sent::Lost)?;
                    if size == 0 {
                        self.state = Chunk::Trailer;
                    } else if self.out.len().saturating_add(size) > max {
                        return Err(Sent::TooLarge(max));
                    } else {
                        self.left = size;
                        self.state = Chunk::Data;
                    }
                }
                Chunk::Data => {
                    let n = self.left.min(rest.len());
                    self.out
                        .extend_from_slice(rest.get(..n).unwrap_or_default());
                    self.at += n;
                    self.left -= n;
                    if self.left > 0 {
                        return Ok(false);
                    }
                    self.state = Chunk::DataEnd;
                }
                Chunk::DataEnd => match rest.get(..2) {
                    None => return Ok(false),
                    Some(b"\r\n") => {
                        self.at += 2;
                        self.state = Chunk::Size;
                    }
                    Some(_) => return Err(Sent::Lost),
                },
            }
        }
    }
}

/// Kept-alive HTTP/1.1 connections to one `http://` upstream, written and read by remit itself.
///
/// An idle connection is taken from the pool (or a new one opened), one request is sent,
/// and the connection goes back once its answer is read. A pooled connection the upstream
/// closed is noticed before the request is written, and the request goes out on a new
/// one; a request that may have been written, even in part, is never sent twice.
#[derive(Debug)]
struct RawHttp {
    /// `host:port` to connect to.
    addr: String,
    /// The request line and every header but `mcp-name` and `content-length`.
    head: Vec<u8>,
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
        // `user:password@`: reqwest sends it as basic authentication; the raw way would put
        // it in the `Host` header
        if authority.as_str().contains('@') {
            return None;
        }
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
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = format!("POST {path} HTTP/1.1\r\n").into_bytes();
        for (name, value) in &headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        Some(Self {
            addr: format!("{host}:{port}"),
            head,
            idle: std::sync::Mutex::new(Vec::new()),
            max_answer: MAX_ANSWER_BYTES,
        })
    }

    fn take_idle(&self) -> Option<Conn> {
        loop {
            let conn = self.idle.lock().ok()?.pop()?;
            if conn.is_usable() {
                return Some(conn);
            }
        }
    }

    fn put_idle(&self, mut conn: Conn) {
        // bytes past the answer: not reusable; anything arriving later is seen when it is taken
        if !conn.buf.is_empty() {
            return;
        }
        conn.idle_since = std::time::Instant::now();
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
        Ok(Conn {
            stream,
            buf: Vec::new(),
            idle_since: std::time::Instant::now(),
        })
    }

    /// The bytes of the request for `tool` with `body`.
    fn request(&self, tool: &str, body: &[u8]) -> Result<Vec<u8>, Sent> {
        use std::io::Write as _;
        if http::HeaderValue::from_str(tool).is_err() {
            return Err(Sent::Unreached(format!(
                "tool name `{tool}` cannot be sent in a header"
            )));
        }
        let mut request = Vec::with_capacity(self.head.len() + tool.len() + body.len() + 48);
        request.extend_from_slice(&self.head);
        request.extend_from_slice(b"mcp-name: ");
        request.extend_from_slice(tool.as_bytes());
        request.extend_from_slice(b"\r\ncontent-length: ");
        // writing to a Vec cannot fail
        let _ = write!(request, "{}", body.len());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        Ok(request)
    }

    /// One POST; the status, whether the answer is SSE, and its body.
    ///
    /// A connection not made by `deadline` (the call's timeout) leaves the call unsent:
    /// the upstream is unreachable, which the caller's own timeout would report as a call
    /// that may have run.
    async fn post(
        &self,
        tool: &str,
        body: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<(http::StatusCode, bool, Bytes), Sent> {
        let request = self.request(tool, body)?;
        let mut conn = loop {
            let (mut conn, fresh) = match self.take_idle() {
                Some(c) => (c, false),
                None => match tokio::time::timeout_at(deadline, self.connect()).await {
                    Ok(conn) => (conn?, true),
                    Err(_) => {
                        return Err(Sent::Unreached(
                            "cannot connect: no connection within the call's timeout".to_owned(),
                        ));
                    }
                },
            };
            match conn.write(&request).await {
                Ok(()) => break conn,
                // nothing went out: the upstream has not seen the call
                Err(0) if !fresh => {}
                Err(0) => return Err(Sent::Unreached("the connection closed at once".to_owned())),
                Err(_) => return Err(Sent::Lost),
            }
        };
        let answer = conn.answer(self.max_answer).await?;
        if answer.keep {
            self.put_idle(conn);
        }
        Ok((answer.status, answer.sse, answer.body))
    }
}

/// The JSON-RPC response with `id` among the events of an SSE body.
fn find_in_sse(text: &str, id: u64) -> Option<Value> {
    let mut data = String::new();
    let mut found = None;
    let mut flush = |data: &mut String| {
        if !data.is_empty() {
            // an answer with this id; a request from the upstream may carry the same number
            if let Ok(v) = serde_json::from_str::<Value>(data)
                && v.get("id").and_then(Value::as_u64) == Some(id)
                && v.get("method").is_none()
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

    #[test]
    fn a_call_body_is_the_json_serde_writes_for_its_parts() {
        #[derive(serde::Serialize)]
        struct CallBody<'a> {
            jsonrpc: &'static str,
            id: u64,
            method: &'static str,
            params: CallParams<'a>,
        }
        #[derive(serde::Serialize)]
        struct CallParams<'a> {
            name: &'a str,
            arguments: &'a Map<String, Value>,
            #[serde(rename = "_meta")]
            meta: CallMeta<'a>,
        }
        #[derive(serde::Serialize)]
        struct CallMeta<'a> {
            #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
            protocol_version: &'static str,
            #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
            client_capabilities: &'a Map<String, Value>,
            #[serde(rename = "io.modelcontextprotocol/clientInfo")]
            client_info: ClientInfo,
        }
        #[derive(serde::Serialize)]
        struct ClientInfo {
            name: &'static str,
            version: &'static str,
        }
        let object = |v: Value| v.as_object().unwrap().clone();
        let none = Map::new();
        let args = [
            object(json!({})),
            object(json!({ "text": "plain" })),
            object(
                json!({ "z\"q": "line\nbreak \u{1} é", "a": [1, -2.5, true, null, { "y": 1, "b": "\\" }], "m": 18446744073709551615u64 }),
            ),
        ];
        let capabilities = [
            None,
            Some(object(
                json!({ "elicitation": { "form": {} }, "sampling": {} }),
            )),
        ];
        for (i, args) in args.iter().enumerate() {
            for capabilities in &capabilities {
                let id = [0, 7, u64::MAX][i];
                let tool = ["echo", "weird \"tool\"\t", "get-sum"][i];
                let theirs = serde_json::to_vec(&CallBody {
                    jsonrpc: "2.0",
                    id,
                    method: "tools/call",
                    params: CallParams {
                        name: tool,
                        arguments: args,
                        meta: CallMeta {
                            protocol_version: crate::STATELESS_REVISION,
                            client_capabilities: capabilities.as_ref().unwrap_or(&none),
                            client_info: ClientInfo {
                                name: "remit",
                                version: env!("CARGO_PKG_VERSION"),
                            },
                        },
                    },
                })
                .unwrap();
                let ours = call_body(id, tool, args, capabilities.as_ref());
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(theirs).unwrap()
                );
            }
        }
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_reply_keeps_its_result_or_error_as_a_value_would() {
        let read = |text: &str| serde_json::from_str::<Reply>(text).map(|r| (r.result, r.error));
        assert_eq!(
            read(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#).unwrap(),
            (Some(json!({"content": []})), None)
        );
        // a null result is a result, not a missing one
        assert_eq!(
            read(r#"{"id":1,"result":null}"#).unwrap(),
            (Some(Value::Null), None)
        );
        assert_eq!(
            read(r#"{"id":1,"error":{"code":-32602,"message":"no"}}"#).unwrap(),
            (None, Some(json!({"code": -32602, "message": "no"})))
        );
        // a repeated key counts once, the last; an escaped key is the same key
        assert_eq!(
            read(r#"{"result":1,"res\u0075lt":2,"other":[1,{"a":2}]}"#).unwrap(),
            (Some(json!(2)), None)
        );
        assert_eq!(read(r#"{"id":1}"#).unwrap(), (None, None));
        assert!(
            read(r#"[{"content":[]},null]"#).is_err(),
            "an array is no answer"
        );
        assert!(read("2").is_err());
        assert_eq!(
            Reply::deserialize(json!({"result": {"a": 1}}))
                .unwrap()
                .result,
            Some(json!({"a": 1}))
        );
    }

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
        raw_upstream(|request| {
            let body = echo_answer(request);
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        })
        .await
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

    /// An upstream that keeps connections alive and answers each request with the raw
    /// bytes `respond(request)`; it counts the connections it accepted.
    async fn raw_upstream(respond: fn(&Value) -> String) -> (String, std::sync::Arc<AtomicU64>) {
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
                        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let n = stream.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..n]);
                            continue;
                        };
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while got.len() < end + 4 + len {
                            let n = stream.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                        let request: Value =
                            serde_json::from_slice(&got[end + 4..end + 4 + len]).unwrap();
                        got.drain(..end + 4 + len);
                        if stream
                            .write_all(respond(&request).as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (url, connections)
    }

    /// The JSON-RPC answer echoing a request's `text` argument.
    fn echo_answer(request: &Value) -> String {
        json!({"jsonrpc": "2.0", "id": request["id"], "result": {
            "content": [{"type": "text", "text": request["params"]["arguments"]["text"]}]
        }})
        .to_string()
    }

    /// `text` as chunks of at most 7 bytes, with an extension and a trailer.
    fn chunked(text: &str) -> String {
        let mut out = String::new();
        for piece in text.as_bytes().chunks(7) {
            out.push_str(&format!("{:x};x=1\r\n", piece.len()));
            out.push_str(std::str::from_utf8(piece).unwrap());
            out.push_str("\r\n");
        }
        out.push_str("0\r\nx-trailer: 1\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn chunked_sse_answers_after_an_interim_one_are_read_and_the_connection_kept() {
        let (url, connections) = raw_upstream(|request| {
            let event = format!("event: message\ndata: {}\n\n", echo_answer(request));
            format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                 transfer-encoding: chunked\r\n\r\n{}",
                chunked(&event)
            )
        })
        .await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        if !matches!(lean.way, Way::Raw(_)) {
            return; // a proxy is configured
        }
        for i in 0..3 {
            let text = format!("chunk me, call {i}, with some length to it");
            let result = lean.call("echo", &args(&text), None).await.unwrap();
            assert_eq!(result["content"][0]["text"], json!(text));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_that_says_close_or_has_no_length_is_read_and_its_connection_not_pooled() {
        let (url, connections) = raw_upstream(|request| {
            let body = echo_answer(request);
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        })
        .await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        if !matches!(lean.way, Way::Raw(_)) {
            return;
        }
        for i in 0..3 {
            let text = format!("call {i}");
            let result = lean.call("echo", &args(&text), None).await.unwrap();
            assert_eq!(result["content"][0]["text"], json!(text));
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            3,
            "a connection per call"
        );
        // HTTP/1.0 with no length: the body ends when the upstream closes
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let n = stream.read(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let id: u64 = text
                .split("\"id\":")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let body = json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}).to_string();
            let _ = stream
                .write_all(
                    format!("HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{body}")
                        .as_bytes(),
                )
                .await;
        });
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        let result = lean.call("echo", &args("x"), None).await.unwrap();
        assert_eq!(result, json!({"content": []}));
    }

    #[tokio::test]
    async fn an_answer_with_many_headers_is_read() {
        let (url, _) = raw_upstream(|request| {
            let body = echo_answer(request);
            let extra: String = (0..90).map(|i| format!("x-h{i}: {}\r\n", "v".repeat(200))).collect();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
                body.len()
            )
        })
        .await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        let result = lean.call("echo", &args("many"), None).await.unwrap();
        assert_eq!(result["content"][0]["text"], json!("many"));
    }

    #[tokio::test]
    async fn an_upstream_that_switches_protocols_fails_the_call_at_once() {
        let (url, _) = raw_upstream(|_| {
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
                .to_owned()
        })
        .await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(30)).unwrap();
        if !matches!(lean.way, Way::Raw(_)) {
            return; // a proxy is configured
        }
        let started = std::time::Instant::now();
        let failed = lean.call("echo", &args("up"), None).await.unwrap_err();
        // not left to wait out the timeout for an answer that will not come
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(failed, UpstreamError::Lost { .. }), "{failed:?}");
    }

    #[test]
    fn a_chunked_body_is_decoded_whatever_the_pieces_it_arrives_in() {
        let wire = chunked("Wikipedia in chunks, with a trailer");
        let body = format!("{wire}NEXT");
        for split in 1..body.len() {
            let mut d = Dechunk::default();
            let mut done = false;
            for end in (split..body.len()).step_by(split).chain([body.len()]) {
                if d.step(&body.as_bytes()[..end], 1000).unwrap() {
                    done = true;
                    break;
                }
            }
            assert!(done, "split {split}");
            assert_eq!(
                d.out, b"Wikipedia in chunks, with a trailer",
                "split {split}"
            );
            assert_eq!(&body[d.at..], "NEXT", "split {split}");
        }
        let mut d = Dechunk::default();
        assert!(matches!(
            d.step(wire.as_bytes(), 10),
            Err(Sent::TooLarge(10))
        ));
        for bad in ["zz\r\n", "3\r\nabcX\r\n", "-1\r\n"] {
            let mut d = Dechunk::default();
            assert!(
                matches!(d.step(bad.as_bytes(), 1000), Err(Sent::Lost)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_answer_head_says_how_its_body_ends() {
        let framing = |head: &str| {
            response_head(head.as_bytes()).map(|h| h.map(|h| (h.framing, h.keep, h.sse)))
        };
        assert!(matches!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            Ok(Some((Framing::Length(5), true, false)))
        ));
        assert!(matches!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"
            ),
            Ok(Some((Framing::Chunked, true, true)))
        ));
        assert!(matches!(
            framing("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"),
            Ok(Some((Framing::ToEnd, false, false)))
        ));
        assert!(matches!(
            framing("HTTP/1.1 204 No Content\r\n\r\n"),
            Ok(Some((Framing::Empty, true, false)))
        ));
        assert!(matches!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
            Ok(Some((Framing::Length(1), false, false)))
        ));
        assert!(matches!(framing("HTTP/1.1 200 OK\r\ncontent-le"), Ok(None)));
        // media types are case-insensitive
        assert!(matches!(
            framing(
                "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream\r\ncontent-length: 1\r\n\r\n"
            ),
            Ok(Some((Framing::Length(1), true, true)))
        ));
        // a length beside a coding: the coding decides and the connection is not used again
        assert!(matches!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"),
            Ok(Some((Framing::Chunked, false, false)))
        ));
        // a header remit does not read may hold any bytes; one it reads must be text
        assert!(matches!(
            response_head(b"HTTP/1.1 200 OK\r\nx-note: caf\xe9\r\ncontent-length: 2\r\n\r\n")
                .map(|h| h.map(|h| h.framing)),
            Ok(Some(Framing::Length(2)))
        ));
        assert!(matches!(
            response_head(b"HTTP/1.1 200 OK\r\nconnection: clos\xe9\r\ncontent-length: 2\r\n\r\n"),
            Err(Sent::Lost)
        ));
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(matches!(framing(bad), Err(Sent::Lost)), "{bad:?}");
        }
    }

    #[test]
    fn finds_the_answer_among_notifications_in_an_sse_body() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\nid: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n";
        assert_eq!(
            find_in_sse(body, 7).unwrap()["result"],
            json!({"content": []})
        );
        assert!(find_in_sse(body, 8).is_none());
        // a request from the upstream numbered like the call is not its answer
        let body = "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n";
        assert_eq!(
            find_in_sse(body, 7).unwrap()["result"],
            json!({"content": []})
        );
    }

    /// Reads one request off a blocking stream into `got`; its head and JSON body, or None at the end.
    fn read_request(
        stream: &mut std::net::TcpStream,
        got: &mut Vec<u8>,
    ) -> Option<(String, Value)> {
        use std::io::Read as _;
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if got.len() >= end + 4 + len {
                    let body = serde_json::from_slice(&got[end + 4..end + 4 + len]).unwrap();
                    got.drain(..end + 4 + len);
                    return Some((head, body));
                }
            }
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// An answer with `text` for the request `id`.
    fn text_answer(id: &Value, text: &str) -> Vec<u8> {
        let body = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
            .to_string();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// An upstream on a thread of its own: `serve` gets each accepted connection.
    fn thread_upstream(serve: fn(std::net::TcpStream)) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            while let Ok((stream, _)) = listener.accept() {
                std::thread::spawn(move || serve(stream));
            }
        });
        url
    }

    #[tokio::test]
    async fn an_answer_nobody_asked_for_on_a_pooled_connection_never_answers_the_next_call() {
        static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        let url = thread_upstream(|mut stream| {
            use std::io::Write as _;
            let mut got = Vec::new();
            let Some((_, first)) = read_request(&mut stream, &mut got) else {
                return;
            };
            if !FIRST.swap(false, Ordering::SeqCst) {
                // a later connection: every call is answered as asked
                let _ = stream.write_all(&text_answer(&first["id"], "fresh"));
                while let Some((_, request)) = read_request(&mut stream, &mut got) {
                    let _ = stream.write_all(&text_answer(&request["id"], "fresh"));
                }
                return;
            }
            stream
                .write_all(&text_answer(&first["id"], "first"))
                .unwrap();
            // then an answer to nothing (a misbehaving upstream; a 408 before an idle close)
            std::thread::sleep(Duration::from_millis(30));
            let _ = stream.write_all(&text_answer(&json!(999), "stale"));
            while let Some((_, request)) = read_request(&mut stream, &mut got) {
                let _ = stream.write_all(&text_answer(&request["id"], "fresh"));
            }
        });
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        if !matches!(lean.way, Way::Raw(_)) {
            return; // a proxy is configured
        }
        let first = lean.call("echo", &args("a"), None).await.unwrap();
        assert_eq!(first["content"][0]["text"], json!("first"));
        // the runtime busy elsewhere: its event loop does not see the stale bytes arrive
        std::thread::sleep(Duration::from_millis(200));
        let next = lean.call("echo", &args("b"), None).await.unwrap();
        assert_eq!(next["content"][0]["text"], json!("fresh"));
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_while_the_runtime_was_busy_is_replaced_not_reported() {
        static SERVED: AtomicU64 = AtomicU64::new(0);
        let url = thread_upstream(|mut stream| {
            use std::io::Write as _;
            let mut got = Vec::new();
            if let Some((_, request)) = read_request(&mut stream, &mut got) {
                SERVED.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(&text_answer(&request["id"], "ok"));
            }
            // an idle timeout: the connection closes a moment later, unannounced
            std::thread::sleep(Duration::from_millis(30));
        });
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        if !matches!(lean.way, Way::Raw(_)) {
            return;
        }
        lean.call("echo", &args("a"), None).await.unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let next = lean.call("echo", &args("b"), None).await;
        assert!(next.is_ok(), "{next:?}");
        // each call ran once: the second went out on a new connection
        assert_eq!(SERVED.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_answer_to_another_request_fails_the_call_instead_of_answering_it() {
        let (url, _) = one_shot_upstream_answering(|_| {
            json!({"jsonrpc": "2.0", "id": 999, "result": {"content": [{"type": "text", "text": "not yours"}]}})
        })
        .await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        match lean.call("echo", &args("x"), None).await {
            Err(UpstreamError::Protocol { message, .. }) => {
                assert!(message.contains("does not answer this call"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // an error the upstream could not tie to a request (id null) still reaches the agent
        let (url, _) = one_shot_upstream_answering(|_| {
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "bad request"}})
        })
        .await;
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        assert!(matches!(
            lean.call("echo", &args("x"), None).await,
            Err(UpstreamError::Rejected { code: -32600, .. })
        ));
    }

    #[tokio::test]
    async fn chunk_extensions_and_trailer_lines_count_against_the_limit() {
        for tail in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/mcp", listener.local_addr().unwrap());
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                // one byte of body per 4 KB on the wire, or an endless trailer: written until the client stops reading
                let piece = if tail {
                    let _ = stream.write_all(b"1\r\n{\r\n0\r\n").await;
                    b"x-trailer: 1\r\n".repeat(4096)
                } else {
                    let mut chunk = b"1;".to_vec();
                    chunk.extend(std::iter::repeat_n(b'a', 4000));
                    chunk.extend_from_slice(b"\r\nX\r\n");
                    chunk.repeat(16)
                };
                while stream.write_all(&piece).await.is_ok() {}
            });
            let raw = RawHttp::new(&url, &http::HeaderMap::new()).unwrap();
            let mut conn = raw.connect().await.ok().unwrap();
            conn.write(&raw.request("t", b"{}").ok().unwrap())
                .await
                .unwrap();
            let max = 64 * 1024;
            let answer = tokio::time::timeout(Duration::from_secs(10), conn.answer(max))
                .await
                .expect("the read stops at the limit, not at the timeout");
            assert!(
                matches!(answer, Err(Sent::TooLarge(m)) if m == max),
                "trailer {tail}: {:?}",
                answer.as_ref().map(|a| a.body.len())
            );
            assert!(conn.buf.len() < 64 * 1024, "{} bytes held", conn.buf.len());
        }
    }

    #[tokio::test]
    async fn an_upstream_that_accepts_no_connection_is_unreachable_not_possibly_called() {
        // a listener whose queue of one is full: the next connection hangs
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let lean = LeanHttp::new(
            "echo",
            &format!("http://{addr}/mcp"),
            &[],
            Duration::from_millis(300),
        )
        .unwrap();
        if !matches!(lean.way, Way::Raw(_)) {
            return;
        }
        match lean.call("echo", &args("x"), None).await {
            Err(UpstreamError::Unavailable { message, .. }) => {
                assert!(message.contains("no connection"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Two listeners: the upstream, which answers every request with a redirect (307) to
    /// the other, and that other, which records the head of every request it gets. Gives
    /// the upstream's URL, the other's origin and what it got.
    fn redirect_to_a_recorder() -> (
        String,
        String,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use std::io::{Read as _, Write as _};
        let recorder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", recorder.local_addr().unwrap());
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&got);
        std::thread::spawn(move || {
            while let Ok((mut stream, _)) = recorder.accept() {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", upstream.local_addr().unwrap());
        let location = format!("{origin}/elsewhere?from=remit");
        std::thread::spawn(move || {
            while let Ok((mut stream, _)) = upstream.accept() {
                let location = location.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while read_request(&mut stream, &mut got).is_some() {
                        let answer = format!(
                            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n"
                        );
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, origin, got)
    }

    /// An upstream that redirects elsewhere: neither the raw way nor reqwest's follows it
    /// (reqwest did, up to 10 times, and kept every header but `Authorization` across
    /// origins), and the call fails naming the status and the target's origin only.
    #[tokio::test]
    async fn a_redirect_is_followed_by_neither_way_and_the_credential_goes_nowhere_else() {
        let (url, origin, got) = redirect_to_a_recorder();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-api-key",
            reqwest::header::HeaderValue::from_static("key-that-must-stay-home"),
        );
        let mut raw = LeanHttp::new("shop", &url, &[], Duration::from_secs(5)).unwrap();
        raw.way = Way::Raw(RawHttp::new(&url, &headers).unwrap());
        let mut via_reqwest = LeanHttp::new("shop", &url, &[], Duration::from_secs(5)).unwrap();
        via_reqwest.way = Way::Reqwest {
            client: reqwest_client(headers, Duration::from_secs(5))
                .no_proxy()
                .build()
                .unwrap(),
            url: url.clone(),
            max_answer: MAX_ANSWER_BYTES,
        };
        for lean in [&raw, &via_reqwest] {
            match lean.call("buy", &args("x"), None).await {
                Err(UpstreamError::Protocol { message, .. }) => {
                    assert!(
                        message.contains(&format!("HTTP 307 redirecting to {origin},")),
                        "{message}"
                    );
                    assert!(message.contains("does not follow"), "{message}");
                    assert!(!message.contains("elsewhere"), "{message}");
                    assert!(!message.contains("key-that-must-stay-home"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        let got = got.lock().unwrap();
        assert!(got.is_empty(), "the redirect was followed: {got:?}");
    }

    #[tokio::test]
    async fn the_reqwest_way_stops_reading_an_answer_at_the_limit() {
        let url = thread_upstream(|mut stream| {
            use std::io::Write as _;
            let mut got = Vec::new();
            while let Some((_, request)) = read_request(&mut stream, &mut got) {
                let text = request["params"]["arguments"]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let answer = text_answer(&request["id"], &text);
                if text.starts_with("close") {
                    // no length: the answer ends when the connection does
                    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    let head = String::from_utf8_lossy(&answer[..head_end]).replace(
                        &format!("content-length: {}", answer.len() - head_end - 4),
                        "connection: close",
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&answer[head_end..]);
                    return;
                }
                let _ = stream.write_all(&answer);
            }
        });
        let mut lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        lean.way = Way::Reqwest {
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            url: url.clone(),
            max_answer: 1000,
        };
        let small = lean.call("echo", &args("small"), None).await.unwrap();
        assert_eq!(small["content"][0]["text"], json!("small"));
        for text in ["x".repeat(2000), format!("close{}", "x".repeat(2000))] {
            match lean.call("echo", &args(&text), None).await {
                Err(UpstreamError::Protocol { message, .. }) => {
                    assert!(message.contains("the call ran"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn credentials_in_the_url_go_as_basic_authentication_never_in_the_host_header() {
        static HEAD: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
        let url = thread_upstream(|mut stream| {
            use std::io::Write as _;
            let mut got = Vec::new();
            while let Some((head, request)) = read_request(&mut stream, &mut got) {
                *HEAD.lock().unwrap() = head;
                let _ = stream.write_all(&text_answer(&request["id"], "ok"));
            }
        });
        let url = url.replace("http://", "http://user:secret@");
        assert!(RawHttp::new(&url, &http::HeaderMap::new()).is_none());
        let lean = LeanHttp::new("echo", &url, &[], Duration::from_secs(5)).unwrap();
        assert!(matches!(lean.way, Way::Reqwest { .. }));
        if proxy_configured(|name| std::env::var(name).ok()) {
            return;
        }
        lean.call("echo", &args("x"), None).await.unwrap();
        let head = HEAD.lock().unwrap().clone();
        // base64 of `user:secret`
        assert!(
            head.contains("authorization: basic dxnlcjpzzwnyzxq="),
            "{head}"
        );
        let host = head.lines().find(|l| l.starts_with("host:")).unwrap();
        assert!(!host.contains("secret"), "{host}");
    }
}
