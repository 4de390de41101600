//! The load client: raw 2026-07-28 stateless `tools/call` POSTs over kept-alive HTTP/1.1.
//!
//! One hyper connection per simulated agent, no pool, no retries, the request
//! body built once. The same code calls the echo upstream directly and remit in
//! front of it; only the address, the tool name and the bearer token differ.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The text every call echoes; a reply without it is counted as an error.
pub(crate) const PAYLOAD: &str = "remit-bench: the quick brown fox jumps over the lazy dog";

/// Where calls go, and the exact request they send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `direct` or `remit`.
    pub(crate) label: &'static str,
    addr: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
}

impl Target {
    /// A target serving MCP at `http://addr/mcp`, called as `tool`, with an optional bearer token.
    pub(crate) fn new(
        label: &'static str,
        addr: SocketAddr,
        tool: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": { "text": PAYLOAD },
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": { "name": "remit-bench", "version": "1" }
                }
            }
        });
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2026-07-28"),
        );
        headers.insert("mcp-method", HeaderValue::from_static("tools/call"));
        headers.insert("mcp-name", HeaderValue::from_str(tool)?);
        if let Some(token) = token {
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
        }
        Ok(Self {
            label,
            addr,
            headers,
            body: Bytes::from(serde_json::to_vec(&body)?),
        })
    }
}

/// What one round of calls did.
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// Calls answered with the echoed text.
    pub(crate) ok: u64,
    /// Wall time from the first request to the last reply.
    pub(crate) elapsed: Duration,
    /// Per-call latency in nanoseconds, in no particular order.
    pub(crate) latencies: Vec<u64>,
}

/// One kept-alive connection that sends the target's request.
struct Agent {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Agent {
    async fn connect(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("cannot connect to {}", target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped; an error then is expected.
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// Sends one call and checks that the tool's answer came back.
    async fn call(&mut self, target: &Target) -> anyhow::Result<()> {
        self.sender.ready().await?;
        let mut request = Request::post("/mcp").body(Full::new(target.body.clone()))?;
        *request.headers_mut() = target.headers.clone();
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() || !is_echo(&body) {
            bail!(
                "{} answered {status}: {}",
                target.label,
                String::from_utf8_lossy(body.get(..body.len().min(400)).unwrap_or_default())
            );
        }
        Ok(())
    }
}

/// Whether a reply (JSON or SSE) carries the echoed text and is not a tool error.
fn is_echo(body: &[u8]) -> bool {
    contains(body, PAYLOAD.as_bytes()) && !contains(body, b"\"isError\":true")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends one call and returns the whole reply, to show what the wire carries.
pub(crate) async fn sample(target: &Target) -> anyhow::Result<String> {
    let mut agent = Agent::connect(target).await?;
    agent.sender.ready().await?;
    let mut request = Request::post("/mcp").body(Full::new(target.body.clone()))?;
    *request.headers_mut() = target.headers.clone();
    let response = agent.sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(format!("{status} {}", String::from_utf8_lossy(&body)))
}

/// Runs `calls` calls over `clients` connections (opened before the clock starts).
///
/// Stops with an error at the first failed call or once `limit` has passed.
pub(crate) async fn round(
    target: &Target,
    clients: usize,
    calls: u64,
    limit: Duration,
) -> anyhow::Result<Round> {
    let mut agents = Vec::with_capacity(clients);
    for _ in 0..clients {
        agents.push(Agent::connect(target).await?);
    }
    let left = Arc::new(AtomicU64::new(calls));
    let started = Instant::now();
    let deadline = started + limit;
    let mut tasks = Vec::with_capacity(clients);
    for mut agent in agents {
        let target = target.clone();
        let left = Arc::clone(&left);
        let per_client = usize::try_from(calls).unwrap_or(0) / clients + 1;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            while take_one(&left) {
                let t = Instant::now();
                if t > deadline {
                    bail!("{}: round took longer than {limit:?}", target.label);
                }
                agent.call(&target).await?;
                latencies.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut out = Round::default();
    for task in tasks {
        let latencies = task.await??;
        out.ok += latencies.len() as u64;
        out.latencies.extend(latencies);
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

fn take_one(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_reply_is_recognised_in_json_and_sse() {
        let json = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{PAYLOAD}"}}],"isError":false}}}}"#
        );
        assert!(is_echo(json.as_bytes()));
        assert!(is_echo(format!("data: {json}\n\n").as_bytes()));
        assert!(!is_echo(json.replace("false", "true").as_bytes()));
        assert!(!is_echo(b"{\"error\":{}}"));
    }
}
