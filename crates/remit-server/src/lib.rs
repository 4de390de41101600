//! The HTTP face of remit: `/mcp`, `/v1` with its OpenAPI document, and health; builds the gateway from the register.
//!
//! Brief overview:
//! - [`Runtime`] opens the store, loads the audit key, starts the upstreams and the
//!   background work (tool lists, kill switch, checkpoints) around one `Gateway`.
//! - [`app`] is the HTTP service: `/mcp` (both MCP eras) behind its guard, `POST /v1/calls`,
//!   `/v1/openapi.json`, `/health`.

mod api;
mod auth_limit;
mod http1;
mod repoll;
mod runtime;
mod short_http;

pub use api::{ApiDoc, ApiError, App, CallRequest, CallResponse, Health, app};
pub use http1::serve;
pub use runtime::{Runtime, RuntimeError, anchor_path, load_or_create_key};
