//! Whole flows through the built `remit` binary, in front of the real example billing MCP server.

#[cfg(test)]
mod support;

mod audit;
mod examples;
mod hostile;
mod pipeline;
mod register;
