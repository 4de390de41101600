//! What an agent may do, and the record of what it did: register, decisions, budgets, the audit tree, and the pipeline over traits.

pub mod audit;
pub mod checkpointer;
pub mod condition;
pub mod decision;
pub mod ids;
pub mod pipeline;
pub mod ports;
pub mod register;
pub mod request_state;
pub mod time;
pub mod wire;

/// Re-exported so the ports can be implemented outside core with the same macro.
pub use async_trait::async_trait;
