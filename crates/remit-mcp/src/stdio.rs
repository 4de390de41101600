//! `remit stdio`: one agent's MCP session over stdin/stdout, read as strictly as `/mcp`.
//!
//! rmcp reads stdin line by line with serde, which keeps the last of two equal keys and
//! takes a line of any length. Over HTTP, `/mcp` refuses both before rmcp sees the body
//! (`check_strict_json`, `max_request_bytes`); here each line is held to the same rules on
//! its way to rmcp, and a refused line is answered with a JSON-RPC error instead. stdout has
//! one writer, which takes whole lines from rmcp and from this check, so nothing but
//! JSON-RPC messages, one per line, ever reaches it.

use crate::agent::{AgentServer, CredentialSource};
use remit_core::ids::AgentId;
use remit_core::pipeline::Gateway;
use remit_core::wire::check_strict_json;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Bytes buffered between the checks and rmcp, each way.
const PIPE: usize = 64 * 1024;

/// Serves one agent over stdin/stdout until the client closes.
pub async fn serve_stdio(gateway: Arc<Gateway>, agent: AgentId) -> Result<(), String> {
    let max_line =
        usize::try_from(gateway.register().gateway.max_request_bytes).unwrap_or(usize::MAX);
    let server = AgentServer::new(gateway, CredentialSource::Local(agent));
    serve_lines(
        server,
        BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
        max_line,
    )
    .await
}

/// Serves `server` over lines read from `input`, answering on `output`.
async fn serve_lines<R, W>(
    server: AgentServer,
    input: R,
    output: W,
    max_line: usize,
) -> Result<(), String>
where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    use rmcp::ServiceExt;
    let (session_in, to_session) = tokio::io::duplex(PIPE);
    let (session_out, from_session) = tokio::io::duplex(PIPE);
    let (lines, out) = mpsc::channel::<Vec<u8>>(64);
    let checks = tokio::spawn(check_lines(input, to_session, lines.clone(), max_line));
    let relay = tokio::spawn(relay_lines(BufReader::new(from_session), lines));
    let writer = tokio::spawn(write_lines(out, output));
    let served = match server.serve((session_in, session_out)).await {
        Ok(running) => running
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // rmcp has stopped: its output ends, so the relay and then the writer finish once every
    // answer is out; the checks may still wait on a stdin nobody closes
    checks.abort();
    let _ = relay.await;
    let _ = writer.await;
    served
}

/// Passes each line of `input` that reads as strict JSON to rmcp; answers the others.
async fn check_lines<R, W>(
    mut input: R,
    mut to_session: W,
    answers: mpsc::Sender<Vec<u8>>,
    max: usize,
) where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = match next_line(&mut input, max, &mut line).await {
            Ok(Some(read)) => read,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stdin; the session ends");
                break;
            }
        };
        let refusal = match read {
            Line::TooLong => Some((
                -32600,
                format!("request is larger than {max} bytes"),
                Value::Null,
            )),
            Line::Complete if line.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Complete => check_strict_json(&line)
                .err()
                .map(|e| (-32700, format!("invalid JSON: {e}"), id_in(&line))),
        };
        match refusal {
            None => {
                line.push(b'\n');
                if to_session.write_all(&line).await.is_err() {
                    break;
                }
            }
            Some((code, message, id)) => {
                tracing::warn!(%message, "refused a request on stdin");
                let answer = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } });
                let Ok(mut bytes) = serde_json::to_vec(&answer) else {
                    continue;
                };
                bytes.push(b'\n');
                if answers.send(bytes).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_session.shutdown().await;
}

/// The request id a lenient reading of a refused line finds, so the client can match the
/// answer to its request (null when there is none to read).
fn id_in(line: &[u8]) -> Value {
    serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .filter(|id| id.is_string() || id.is_number())
        .unwrap_or(Value::Null)
}

/// How a line of input ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Read whole, without its `\n`.
    Complete,
    /// Longer than the limit: read to its end and dropped.
    TooLong,
}

/// Reads the next line into `line` (empty when it is too long); `None` at the end of input.
async fn next_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    max: usize,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Line>> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            }));
        }
        any = true;
        let (chunk, used, end) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (buf.get(..at).unwrap_or_default(), at + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if line.len().saturating_add(chunk.len()) > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        input.consume(used);
        if end {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            }));
        }
    }
}

/// Passes rmcp's output on to the writer, a whole line at a time.
async fn relay_lines<R: AsyncBufRead + Unpin>(mut from_session: R, lines: mpsc::Sender<Vec<u8>>) {
    loop {
        let mut line = Vec::new();
        match from_session.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if lines.send(line).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The one writer of the output.
async fn write_lines<W: AsyncWrite + Unpin>(mut lines: mpsc::Receiver<Vec<u8>>, mut output: W) {
    while let Some(line) = lines.recv().await {
        if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            match next_line(&mut r, max, &mut line).await.unwrap() {
                Some(l) => out.push((l, line)),
                None => return out,
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_a_long_one_is_dropped_whole() {
        let got = lines_of(b"{\"a\":1}\n0123456789abc\n\n{}", 10).await;
        assert_eq!(
            got,
            vec![
                (Line::Complete, b"{\"a\":1}".to_vec()),
                (Line::TooLong, Vec::new()),
                (Line::Complete, Vec::new()),
                (Line::Complete, b"{}".to_vec()),
            ]
        );
        assert!(lines_of(b"", 10).await.is_empty());
    }

    #[tokio::test]
    async fn a_line_with_a_duplicate_key_is_answered_and_not_passed_on() {
        let input: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"name\":\"b\"}}\n{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}\nnot json\n";
        let (to_session, mut session) = tokio::io::duplex(PIPE);
        let (tx, mut rx) = mpsc::channel(8);
        check_lines(input, to_session, tx, 1000).await;
        let mut passed = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut session, &mut passed)
            .await
            .unwrap();
        assert_eq!(
            passed,
            "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}\n"
        );
        let first: Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(first["id"], 7);
        assert_eq!(first["error"]["code"], -32700);
        assert!(
            first["error"]["message"]
                .as_str()
                .unwrap()
                .contains("duplicate key `name`"),
            "{first}"
        );
        let second: Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(second["id"], Value::Null);
        assert_eq!(second["error"]["code"], -32700);
    }
}
