//! The short way's HTTP/1.1: plain stateless calls read and answered without hyper, the rest handed to it.
//!
//! Under load, hyper and the request and response types around it cost remit more CPU per
//! call than anything else it does (BENCHMARKS.md, run 9). Most calls an agent makes are
//! one shape: a `POST /mcp` with a `Content-Length` body that the short way
//! ([`remit_mcp::StatelessCall`]) answers with one JSON body. [`serve`] reads such requests
//! from a new connection itself and writes their answers in one `write`. The first request
//! of any other shape (another method or path, a chunked body, `Expect`, `Connection:
//! close`, a bad or missing credential, anything the short way leaves to rmcp, anything
//! it cannot parse) is handed to hyper with the connection, bytes already read included,
//! and hyper serves that connection from then on. So every answer that is not a plain
//! call's is hyper's and rmcp's, as before.
//!
//! What hyper did for these requests and this keeps:
//! - a request's head must arrive within [`HEADER_READ_TIMEOUT`] of the connection
//!   waiting for it, idle keep-alive included; the connection is closed otherwise (a head
//!   longer than the short way reads is handed to hyper with that deadline still on it);
//! - a caller who is nobody's agent gets hyper's `401` before any of its body is read
//!   (the short way takes a head only with a known agent's credential), and a body is
//!   read as it arrives, within [`HEADER_READ_TIMEOUT`] of its head, never reserved whole
//!   on the word of its `Content-Length`;
//! - a client that hangs up while its call runs drops the call's future (so a call not
//!   yet sent is not sent: [`remit_mcp::call_to_the_end`]);
//! - pipelined requests are answered in order; a client that half-closes after them
//!   gets the answer to the request running then (hyper's reading: the end of the
//!   stream is not a hang-up while requests it sent are still buffered);
//! - on shutdown, the request being answered finishes and the connection closes.

use crate::api::App;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a connection may take to send a request's head.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request's body may take to arrive after its head, on every way in.
pub(crate) const BODY_READ_TIMEOUT: Duration = HEADER_READ_TIMEOUT;

/// How long a request's body may take: [`BODY_READ_TIMEOUT`], or less with
/// `REMIT_BODY_READ_TIMEOUT_MS` (for tests of bodies that never finish; never more).
pub(crate) fn body_read_timeout() -> Duration {
    static TIMEOUT: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
        std::env::var("REMIT_BODY_READ_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .filter(|t| *t > Duration::ZERO && *t < BODY_READ_TIMEOUT)
            .unwrap_or(BODY_READ_TIMEOUT)
    });
    *TIMEOUT
}

/// Longest request head read here; a longer one is left to hyper.
const MAX_HEAD: usize = 16 * 1024;

/// Most headers in a request read here; more are left to hyper.
const MAX_HEADERS: usize = 48;

/// Most bytes of later (pipelined) requests read while a call runs.
const MAX_AHEAD: usize = 64 * 1024;

/// Most bytes of a body made room for at once, whatever its `Content-Length` says.
const BODY_STEP: usize = 64 * 1024;

/// What becomes of a connection after the short way.
pub(crate) enum After {
    /// It is closed (the client left, its head timed out, or remit is stopping).
    Closed,
    /// Its next request is not for the short way: hyper serves it from here.
    Hyper(Rewound),
}

/// Serves `stream`'s plain stateless calls until a request needs hyper or the connection ends.
pub(crate) async fn serve(
    mut stream: TcpStream,
    app: &App,
    stopped: &mut watch::Receiver<bool>,
) -> After {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // the client closed its side: what it sent before is still answered, nothing more is read
    let mut ended = false;
    loop {
        let deadline = Instant::now() + HEADER_READ_TIMEOUT;
        // the head: parsed at once with the first bytes (usually all of it), then only once
        // its blank line may have come, so a head sent a byte at a time costs a scan of each
        // byte, not a parse of everything so far per byte
        let mut scanned: usize = 0;
        let head = loop {
            let may_end =
                scanned == 0 || ends_head(buf.get(scanned.saturating_sub(3)..).unwrap_or_default());
            scanned = buf.len();
            let read = if may_end {
                read_head(&buf, app.max_body(), |headers| app.authenticates(headers))
            } else {
                Head::Partial
            };
            match read {
                Head::Complete(head) => break head,
                Head::NotOurs => return After::Hyper(Rewound::new(buf, stream)),
                Head::Partial if buf.len() >= MAX_HEAD => {
                    // hyper's own head timeout starts afresh: the rest of this head must
                    // still come by the deadline it had here
                    return After::Hyper(Rewound::new(buf, stream).head_due(deadline));
                }
                Head::Partial => {}
            }
            if (buf.is_empty() && *stopped.borrow()) || ended {
                return After::Closed;
            }
            buf.reserve(4096);
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
                _ = stopped.changed(), if buf.is_empty() => return After::Closed,
            };
            match read {
                Ok(Ok(0) | Err(_)) | Err(_) => return After::Closed,
                Ok(Ok(_)) => {}
            }
        };
        // the body: room made as it comes, within the head's time again
        let end = head.len + head.content_length;
        let deadline = Instant::now() + body_read_timeout();
        while buf.len() < end {
            if ended {
                return After::Closed;
            }
            buf.reserve((end - buf.len()).min(BODY_STEP));
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
                _ = stopped.changed() => return After::Closed,
            };
            match read {
                Ok(Ok(0) | Err(_)) | Err(_) => return After::Closed,
                Ok(Ok(_)) => {}
            }
        }
        // the head again, for its headers as slices of the bytes read (a second parse of a
        // few hundred bytes costs less than copying them into a header map). The call's
        // future (about 3 KB) is pinned where it is made, inside its `Option`: taking it out
        // and pinning it copied it twice per call.
        let mut answer = std::pin::pin!({
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut slots);
            match (
                buf.get(..head.len).map(|h| request.parse(h)),
                buf.get(head.len..end),
            ) {
                (Some(Ok(httparse::Status::Complete(_))), Some(body)) => {
                    app.plain_call(request.headers, body)
                }
                _ => None,
            }
        });
        if answer.as_ref().get_ref().is_none() {
            return After::Hyper(Rewound::new(buf, stream));
        }
        buf.drain(..end);
        if ended && buf.is_empty() {
            // the client closed its side before this request's answer: it has gone
            return After::Closed;
        }
        // the call, while watching for the client hanging up
        let mut call = std::future::poll_fn(|cx| match answer.as_mut().as_pin_mut() {
            Some(call) => call.poll(cx).map(Some),
            None => Poll::Ready(None),
        });
        let (status, body) = loop {
            tokio::select! {
                biased;
                answered = &mut call => match answered {
                    Some(answered) => break answered,
                    None => return After::Closed,
                },
                read = stream.read_buf(&mut buf), if !ended && buf.len() < MAX_AHEAD => match read {
                    // the end of the stream with requests still buffered: they were sent
                    // before it, so this call is answered (as hyper does)
                    Ok(0) if !buf.is_empty() => ended = true,
                    Ok(0) | Err(_) => return After::Closed,
                    Ok(_) => {}
                },
            }
        };
        let response = response(status, &body);
        if stream.write_all(&response).await.is_err() {
            return After::Closed;
        }
        if *stopped.borrow() {
            return After::Closed;
        }
    }
}

/// A request head the short way may take.
struct PlainHead {
    /// Bytes of the head, blank line included.
    len: usize,
    content_length: usize,
}

/// What the bytes read so far hold.
enum Head {
    /// A complete `POST /mcp` head with a body length the short way may read.
    Complete(PlainHead),
    /// Not all of the head yet.
    Partial,
    /// A request for hyper (or bytes hyper will refuse).
    NotOurs,
}

/// Whether `bytes` hold the end of a head: a blank line, after CRLF or a bare LF as httparse allows.
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// Reads a request head from `buf`, if there is a complete one that the short way may take:
/// with a body of at most `max_body` bytes, from a caller `authenticated` accepts.
fn read_head(
    buf: &[u8],
    max_body: usize,
    authenticated: impl FnOnce(&[httparse::Header<'_>]) -> bool,
) -> Head {
    if buf.is_empty() {
        return Head::Partial;
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::NotOurs,
    };
    if request.method != Some("POST") || request.path != Some("/mcp") || request.version != Some(1)
    {
        return Head::NotOurs;
    }
    let mut content_length = None;
    for h in request.headers.iter() {
        let name = h.name.as_bytes();
        // what hyper would refuse or treat apart is its to answer
        if h.value.iter().any(|&b| (b < 32 && b != b'\t') || b == 127) {
            return Head::NotOurs;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            // one, in plain digits; anything else is hyper's to judge
            if content_length.is_some() || h.value.is_empty() {
                return Head::NotOurs;
            }
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return Head::NotOurs;
            };
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
            || (name.eq_ignore_ascii_case(b"connection")
                && !h.value.eq_ignore_ascii_case(b"keep-alive"))
        {
            return Head::NotOurs;
        }
    }
    match content_length {
        // a caller who is nobody's agent gets hyper's 401 before its body is read
        Some(n) if n <= max_body && authenticated(request.headers) => Head::Complete(PlainHead {
            len,
            content_length: n,
        }),
        _ => Head::NotOurs,
    }
}

/// The bytes of an HTTP/1.1 response with a JSON body, as hyper writes it for the short way.
fn response(status: http::StatusCode, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 160);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ndate: ",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if date.0 != secs || date.1.is_empty() {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(date.1.as_bytes());
    });
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

thread_local! {
    /// The `Date` header's value for the current second, per thread.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// A connection with the bytes already read from it put back in front, for hyper.
#[derive(Debug)]
pub(crate) struct Rewound {
    read: Vec<u8>,
    at: usize,
    stream: TcpStream,
    /// A head handed over before its end: when the rest must have come, and the last
    /// bytes of it seen so far (its end may be split between two reads).
    head: Option<(Pin<Box<tokio::time::Sleep>>, [u8; 2])>,
}

impl Rewound {
    fn new(read: Vec<u8>, stream: TcpStream) -> Self {
        Self {
            read,
            at: 0,
            stream,
            head: None,
        }
    }

    /// The bytes put back are the start of a head whose end must come by `deadline`.
    fn head_due(mut self, deadline: Instant) -> Self {
        let tail = match self.read.as_slice() {
            [.., a, b] => [*a, *b],
            [b] => [0, *b],
            [] => [0, 0],
        };
        self.head = Some((Box::pin(tokio::time::sleep_until(deadline)), tail));
        self
    }
}

/// Whether `bytes`, after `tail` (the two bytes before them), hold the blank line that ends a head.
fn ends_head_after(tail: [u8; 2], bytes: &[u8]) -> bool {
    // a blank line split between the two reads starts in the tail and ends in the first two bytes
    let joint: Vec<u8> = tail.iter().chain(bytes.iter().take(2)).copied().collect();
    ends_head(&joint) || ends_head(bytes)
}

impl AsyncRead for Rewound {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.read.get(this.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(out.remaining());
            out.put_slice(rest.get(..n).unwrap_or_default());
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let Some((due, tail)) = this.head.as_mut() else {
            return Pin::new(&mut this.stream).poll_read(cx, out);
        };
        if due.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request's head did not arrive in time",
            )));
        }
        let before = out.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, out);
        let new = out.filled().get(before..).unwrap_or_default();
        if ends_head_after(*tail, new) {
            this.head = None;
        } else {
            *tail = match (*tail, new) {
                (_, [.., a, b]) => [*a, *b],
                ([_, a], [b]) => [a, *b],
                (t, []) => t,
            };
        }
        read
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        read_head(text.as_bytes(), 1000, |_| true)
    }

    const PLAIN: &str = "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}";

    #[test]
    fn a_plain_post_to_mcp_with_a_length_is_read_here() {
        let Head::Complete(h) = head(PLAIN) else {
            panic!("not read");
        };
        assert_eq!(h.len, PLAIN.len() - 2);
        assert_eq!(h.content_length, 2);
        // header names in any case
        let Head::Complete(h) = head("POST /mcp HTTP/1.1\r\nHost: l\r\nContent-LENGTH: 12\r\n\r\n")
        else {
            panic!("not read");
        };
        assert_eq!(h.content_length, 12);
        assert!(matches!(
            head("POST /mcp HTTP/1.1\r\nhost: l"),
            Head::Partial
        ));
        assert!(matches!(
            head("POST /mcp HTTP/1.1\r\nConnection: Keep-Alive\r\ncontent-length: 2\r\n\r\n"),
            Head::Complete(_)
        ));
    }

    #[test]
    fn every_other_shape_of_request_is_left_to_hyper() {
        for text in [
            "GET /mcp HTTP/1.1\r\ncontent-length: 2\r\n\r\n",
            "POST /mcp/ HTTP/1.1\r\ncontent-length: 2\r\n\r\n",
            "POST /mcp?x=1 HTTP/1.1\r\ncontent-length: 2\r\n\r\n",
            "POST /v1/calls HTTP/1.1\r\ncontent-length: 2\r\n\r\n",
            "POST /mcp HTTP/1.0\r\ncontent-length: 2\r\n\r\n",
            "POST /mcp HTTP/1.1\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: +2\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 1001\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\nx: \x01\r\n\r\n",
            "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\nx: a\x7fb\r\n\r\n",
            "POST /mcp HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /mcp HTTP/1.1\r\nContent-Length: 2\r\nCONNECTION: Close\r\n\r\n",
            "BREW /mcp HTCPCP/1.0\r\n\r\n",
            "\u{0}\u{0}\r\n\r\n",
        ] {
            assert!(matches!(head(text), Head::NotOurs), "{text:?}");
        }
    }

    #[test]
    fn the_end_of_a_head_is_seen_with_either_line_ending_and_across_reads() {
        assert!(ends_head(b"POST /mcp HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(ends_head(b"POST /mcp HTTP/1.1\nhost: a\n\n"));
        assert!(!ends_head(b"POST /mcp HTTP/1.1\r\nhost: a\r\n"));
        assert!(!ends_head(b""));
        // the scan of a later read starts three bytes back: a CRLFCRLF split anywhere is seen
        let text = PLAIN.as_bytes();
        let end = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        for split in end - 4..end {
            assert!(!ends_head(&text[..split]), "{split}");
            assert!(ends_head(&text[split.saturating_sub(3)..end]), "{split}");
        }
    }

    #[test]
    fn a_response_has_the_status_type_length_and_date_hyper_would_send() {
        let r = response(http::StatusCode::NOT_FOUND, b"{\"a\":1}");
        let text = String::from_utf8(r).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert_eq!(body, "{\"a\":1}");
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 404 Not Found"));
        assert_eq!(lines.next(), Some("content-type: application/json"));
        assert_eq!(lines.next(), Some("content-length: 7"));
        let date = lines
            .next()
            .and_then(|l| l.strip_prefix("date: "))
            .unwrap_or_default();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert_eq!(lines.next(), None);
    }

    #[tokio::test]
    async fn a_head_handed_over_unfinished_must_still_end_by_its_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // one client trickles its head and never ends it; the other ends it (the blank
        // line split between two writes), then sends its body after the deadline
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static [u8]>(4);
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            while let Some(bytes) = rx.recv().await {
                s.write_all(bytes).await.unwrap();
            }
            s
        });
        let (stream, _) = listener.accept().await.unwrap();
        let due = Instant::now() + Duration::from_millis(300);
        let mut rewound =
            Rewound::new(b"POST /mcp HTTP/1.1\r\nx: y\r".to_vec(), stream).head_due(due);
        tx.send(b"\nz: w\r\n").await.unwrap();
        let mut got = vec![0u8; 64];
        let mut all = Vec::new();
        let err = loop {
            match rewound.read(&mut got).await {
                Ok(n) => all.extend_from_slice(got.get(..n).unwrap()),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(Instant::now() >= due);
        assert_eq!(all, b"POST /mcp HTTP/1.1\r\nx: y\r\nz: w\r\n");
        drop((rewound, tx, client));

        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"\r").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.write_all(b"\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
            s.write_all(b"body").await.unwrap();
            s
        });
        let (stream, _) = listener.accept().await.unwrap();
        let due = Instant::now() + Duration::from_millis(300);
        let mut rewound =
            Rewound::new(b"GET / HTTP/1.1\r\nx: y\r\n".to_vec(), stream).head_due(due);
        let mut all = Vec::new();
        while all.len() < b"GET / HTTP/1.1\r\nx: y\r\n\r\nbody".len() {
            let n = rewound.read(&mut got).await.unwrap();
            assert!(n > 0);
            all.extend_from_slice(got.get(..n).unwrap());
        }
        assert_eq!(all, b"GET / HTTP/1.1\r\nx: y\r\n\r\nbody");
        assert!(
            Instant::now() > due,
            "the body came after the head's deadline"
        );
        client.await.unwrap();
    }

    #[test]
    fn the_blank_line_after_a_head_is_seen_across_reads() {
        assert!(ends_head_after(*b"y\r", b"\n\r\n"));
        assert!(ends_head_after(*b"\r\n", b"\r\n"));
        assert!(ends_head_after(*b"\n\r", b"\nbody"));
        assert!(ends_head_after(*b"y\n", b"\n"));
        assert!(ends_head_after(*b"ab", b"x\r\n\r\ny"));
        assert!(!ends_head_after(*b"y\r", b"\nz: w\r\n"));
        assert!(!ends_head_after(*b"\r\n", b"z"));
        assert!(!ends_head_after(*b"\r\n", b""));
    }

    #[tokio::test]
    async fn bytes_read_before_the_hand_off_come_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b" world").await.unwrap();
            let mut echoed = Vec::new();
            s.read_to_end(&mut echoed).await.unwrap();
            echoed
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut rewound = Rewound::new(b"hello".to_vec(), stream);
        let mut got = vec![0u8; 11];
        rewound.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"hello world");
        rewound.write_all(b"ok").await.unwrap();
        rewound.shutdown().await.unwrap();
        drop(rewound);
        assert_eq!(client.await.unwrap(), b"ok");
    }
}
