//! remit's HTTP server: HTTP/1.1 connections served by hyper, each request handed to [`App`].
//!
//! Agents and people reach remit over HTTP/1.1 (the MCP SDKs, the Inspector, browsers
//! behind a TLS proxy all do). Serving only that, on hyper's HTTP/1 connection directly,
//! skips the protocol sniffing and upgrade wrapping a general server puts around every
//! connection.

use crate::api::App;
use crate::auth_limit::Peer;
use crate::repoll::Repoll;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

/// How long a connection may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `until` ends, then lets open requests finish.
pub async fn serve(listener: TcpListener, app: App, until: impl Future<Output = ()> + Send) {
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(until);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut until => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: wait, do not spin
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stopped = stopped.clone();
        // the connection's own wakes (a request body read, an upstream answer read on the
        // same task) must not send it through the run queue to the other worker
        tokio::spawn(Repoll::new(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut app = app.clone();
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(Peer(peer));
                app.call(request)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended");
                    }
                    return;
                }
                _ = stopped.changed() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _: Result<(), hyper::Error> = conn.await;
        }));
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(true);
    // the connections finish their requests in their own tasks; dropping the sender
    // after the signal is what they wait on
    stop.closed().await;
}
