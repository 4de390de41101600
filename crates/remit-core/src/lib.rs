//! What an agent may do, and the record of what it did: register, decisions, budgets, the audit tree, and the pipeline over traits.

pub mod audit;
pub mod ids;
pub mod ports;
pub mod condition;
pub mod register;
pub mod decision;
pub mod pipeline;
pub mod time;
