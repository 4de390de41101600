//! Whole flows through the built `remit` binary, in front of the real example billing MCP server.

#[cfg(test)]
mod support;

#[cfg(test)]
mod audit;
#[cfg(test)]
mod connection;
#[cfg(test)]
mod examples;
#[cfg(test)]
mod hostile;
#[cfg(test)]
mod pipeline;
#[cfg(test)]
mod register;
#[cfg(test)]
mod replicas;
#[cfg(test)]
mod stdio;
#[cfg(test)]
mod upstreams;
