//! The HTTP face of remit: `/mcp`, `/v1` with its OpenAPI document, and health; builds the gateway from the register.
//!
//! Brief overview:
//! - [`Runtime`] opens the store, loads the audit key, starts the upstreams and the
//!   background work (tool lists, kill switch, checkpoints) around one `Gateway`.
//! - [`app`] is the axum router: `/mcp` (both MCP eras), `POST /v1/calls`,
//!   `/v1/openapi.json`, `/health`.

mod api;
mod runtime;

pub use api::{ApiDoc, ApiError, CallRequest, CallResponse, Health, app};
pub use runtime::{Runtime, RuntimeError, load_or_create_key};
