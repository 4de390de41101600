//! Runs the example billing (or echo) MCP server over stdio or Streamable HTTP.
//!
//! ```text
//! remit-billing --db billing.db                       # billing over stdio
//! remit-billing --db billing.db --http 127.0.0.1:8471 # billing at http://127.0.0.1:8471/mcp
//! remit-billing --echo [--http ADDR]                  # the echo server
//! ```
//!
//! Logs go to stderr (stdout is the MCP channel in stdio mode); set
//! `RUST_LOG` to see more. In HTTP mode the first stderr line is
//! `listening on http://ADDR/mcp`, with the real port when ADDR ends in `:0`.

#![expect(
    clippy::print_stderr,
    reason = "the listening address is for the operator"
)]

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use tokio::net::TcpListener;

/// Example system of record for remit: a billing MCP server over SQLite.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// SQLite file holding the billing records (created and seeded if missing).
    #[arg(long, value_name = "PATH", required_unless_present = "echo")]
    db: Option<PathBuf>,
    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Serve the minimal echo server instead of billing.
    #[arg(long)]
    echo: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("remit-billing: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), remit_billing::Error> {
    let Some(addr) = args.http else {
        return match (args.echo, args.db) {
            (true, _) => remit_billing::serve_echo_stdio().await,
            (false, Some(db)) => remit_billing::serve_billing_stdio(&db).await,
            (false, None) => Ok(()), // clap requires --db without --echo
        };
    };
    let listener = TcpListener::bind(addr).await?;
    let router = match (args.echo, args.db) {
        (true, _) => remit_billing::echo_router(),
        (false, Some(db)) => remit_billing::billing_router(&db).await?,
        (false, None) => return Ok(()),
    };
    eprintln!("listening on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
