//! MCP to agents (stdio, Streamable HTTP service) and to upstreams (child process, HTTP), both eras.
//!
//! Brief overview:
//! - [`AgentServer`] is the MCP server agents talk to; it turns `tools/list` and
//!   `tools/call` into calls of the one pipeline, `remit_core::pipeline::Gateway`.
//! - [`McpUpstreams`] implements core's `Upstreams` port: one supervised MCP client per
//!   upstream, restarted (stdio) or reconnected (HTTP) with backoff.
//!
//! rmcp speaks both protocol revisions on both sides: 2025-11-25 (`initialize` and a
//! session) and 2026-07-28 (stateless, `server/discover`, per-request `_meta`).

mod agent;
mod finish;
mod group;
mod lean;
mod progress;
mod sessions;
mod stateless;
mod stderr;
mod stdio;
mod unreached;
mod upstream;

pub use agent::{AgentServer, CredentialSource, McpHttpService, http_service, outcome_to_mcp};
pub use finish::call_to_the_end;
pub use sessions::{AgentSessions, SessionError};
pub use stateless::{Headers, ShortWay, StatelessCall, bearer_in};
pub use stdio::serve_stdio;
pub use upstream::{McpUpstreams, redact_secrets, secret_words};

/// The stateless protocol revision (no sessions, `server/discover`, per-request `_meta`).
pub const STATELESS_REVISION: &str = "2026-07-28";
