//! remit's HTTP server: HTTP/1.1 connections, plain stateless calls answered by the short way, the rest by hyper and [`App`].
//!
//! Agents and people reach remit over HTTP/1.1 (the MCP SDKs, the Inspector, browsers
//! behind a TLS proxy all do). A connection starts on the short way's own reader
//! ([`crate::short_http`]); at its first request of another shape it goes to hyper's HTTP/1
//! connection directly, which skips the protocol sniffing and upgrade wrapping a general
//! server puts around every connection.

use crate::api::App;
use crate::auth_limit::Peer;
use crate::repoll::Repoll;
use crate::short_http::{self, After, HEADER_READ_TIMEOUT};
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

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
            // plain stateless calls are read and answered without hyper, until the first
            // request that is not one
            let stream = match short_http::serve(stream, &app, &mut stopped).await {
                After::Closed => return,
                After::Hyper(stream) => stream,
            };
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
