//! Drives the billing and echo servers with rmcp's own client, over stdio
//! (the built binary) and Streamable HTTP, in both protocol eras; checks the
//! raw HTTP wire shapes the gateway relies on; and pins down what rmcp hands
//! a hand-written handler.

#[cfg(test)]
mod billing_http;
#[cfg(test)]
mod billing_stdio;
#[cfg(test)]
mod echo;
#[cfg(test)]
mod handler_context;
#[cfg(test)]
mod script;
#[cfg(test)]
mod support;
#[cfg(test)]
mod wire;
