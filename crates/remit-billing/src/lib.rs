//! The example system of record that remit's demo and tests put behind the
//! gateway: a billing MCP server over SQLite, and a minimal echo MCP server.
//!
//! # Brief overview
//!
//! - [`Billing`]: the billing server (customers, charges, refunds, outbound
//!   email). Every `tools/call` it receives is written to the
//!   `received_calls` table of its SQLite file *before* the tool runs, so a
//!   test can prove from the upstream's side that a refused call never
//!   arrived ([`received_calls`]).
//! - [`Echo`]: one tool, `echo(text)`, nothing slow in its path; written as a
//!   hand-made `ServerHandler` without macros.
//! - [`serve_billing_stdio`], [`serve_billing_http`], [`serve_echo_stdio`],
//!   [`serve_echo_http`]: serve either over stdio or Streamable HTTP at
//!   `/mcp`. Both MCP eras work on both transports: `2025-11-25` with
//!   `initialize`, and `2026-07-28` with `server/discover` and per-request
//!   `_meta`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), remit_billing::Error> {
//! let db = std::path::Path::new("billing.db");
//! remit_billing::seed(db).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(remit_billing::serve_echo_http(listener));
//! let calls = remit_billing::received_calls(db).await?;
//! assert!(calls.is_empty());
//! # Ok(()) }
//! ```

mod billing;
mod echo;
mod script;
mod store;

use std::{path::Path, sync::Arc};

use rmcp::{
    ServiceExt,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use tokio::net::TcpListener;

pub use billing::Billing;
pub use echo::{Echo, sleeps_cancelled};
pub use script::{Expect, Route, ScriptError, Step, StepOutcome, run_support_agent};
pub use store::ReceivedCall;

/// What can go wrong opening the billing file or serving MCP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQLite file could not be opened, migrated or read.
    #[error("billing database: {0}")]
    Storage(#[source] sqlx::Error),
    /// A ledger row holds arguments that are not JSON.
    #[error("ledger row is not json: {0}")]
    Ledger(#[source] serde_json::Error),
    /// The MCP session could not start (for stdio: no valid first message).
    #[error("mcp session did not start: {0}")]
    Start(#[source] Box<rmcp::service::ServerInitializeError>),
    /// The MCP session task ended abnormally.
    #[error("mcp session ended abnormally: {0}")]
    Session(#[source] tokio::task::JoinError),
    /// The HTTP listener failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rmcp::service::ServerInitializeError> for Error {
    fn from(error: rmcp::service::ServerInitializeError) -> Self {
        Self::Start(Box::new(error))
    }
}

/// Creates the schema in the SQLite file at `db` and inserts the demo
/// customers and charges, once: reopening a file never duplicates them nor
/// brings back a deleted customer.
pub async fn seed(db: &Path) -> Result<(), Error> {
    let pool = store::open(db).await?;
    store::seed(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Every `tools/call` the billing server using `db` has received, oldest
/// first, read straight from its `received_calls` table.
pub async fn received_calls(db: &Path) -> Result<Vec<ReceivedCall>, Error> {
    let pool = store::open(db).await?;
    let calls = store::received_calls(&pool).await;
    pool.close().await;
    calls
}

/// Serves the billing server on stdin/stdout until the client closes stdin.
pub async fn serve_billing_stdio(db: &Path) -> Result<(), Error> {
    let billing = Billing::open(db).await?;
    let running = billing.serve(rmcp::transport::stdio()).await?;
    running.waiting().await.map_err(Error::Session)?;
    Ok(())
}

/// Serves the echo server on stdin/stdout until the client closes stdin.
pub async fn serve_echo_stdio() -> Result<(), Error> {
    let running = Echo::new().serve(rmcp::transport::stdio()).await?;
    running.waiting().await.map_err(Error::Session)?;
    Ok(())
}

/// The Streamable HTTP configuration both servers use: legacy sessions for
/// `initialize` clients, stateless handling for `2026-07-28` requests, and
/// plain JSON replies where no stream is needed. Only loopback `Host`
/// headers are accepted (rmcp's DNS-rebinding default).
fn http_config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default().with_json_response(true)
}

/// An axum router serving the billing server over Streamable HTTP at `/mcp`.
pub async fn billing_router(db: &Path) -> Result<axum::Router, Error> {
    let billing = Billing::open(db).await?;
    // INVARIANT: the factory runs once per stateless request and per legacy
    // session, so it must stay a cheap clone of shared state.
    let service: StreamableHttpService<Billing, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(billing.clone()), Arc::default(), http_config());
    Ok(axum::Router::new().nest_service("/mcp", service))
}

/// An axum router serving the echo server over Streamable HTTP at `/mcp`.
pub fn echo_router() -> axum::Router {
    let echo = Echo::new();
    let service: StreamableHttpService<Echo, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(echo.clone()), Arc::default(), http_config());
    axum::Router::new().nest_service("/mcp", service)
}

/// Serves the billing server over Streamable HTTP at `/mcp` on `listener`,
/// until the task is dropped or the listener fails.
pub async fn serve_billing_http(listener: TcpListener, db: &Path) -> Result<(), Error> {
    let router = billing_router(db).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// Serves the echo server over Streamable HTTP at `/mcp` on `listener`,
/// until the task is dropped or the listener fails.
pub async fn serve_echo_http(listener: TcpListener) -> Result<(), Error> {
    axum::serve(listener, echo_router()).await?;
    Ok(())
}
