//! A raw TCP relay in front of the echo upstream: the floor of any proxy's cost here.
//!
//! It parses nothing, decides nothing and records nothing; it copies bytes both ways on a
//! tokio runtime like remit's (one worker per core). What it costs per call is what any
//! gateway between the same client and upstream pays at the least on this machine, so
//! the ratio it reaches bounds the ratio any gateway can reach.

use anyhow::Context;
use std::net::SocketAddr;

/// Relays every connection to `127.0.0.1:PORT` on to `to`, until killed.
pub(crate) fn run(to: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!(
            "listening on {}",
            listener.local_addr().context("no local address")?
        );
        loop {
            let (mut inbound, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    })
}
