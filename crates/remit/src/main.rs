//! The `remit` command line: `serve`, `stdio`, `check`, `register`, `status`, `freeze`, `audit`, `demo`.
#![expect(clippy::print_stderr, reason = "a command line prints its errors")]

/// `println!` for a command's answers: a closed stdout ends the command quietly ([`out`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))?
    };
}

mod audit;
mod demo;
mod log_lines;
mod out;
mod registry;
mod serve;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The allocator: mimalloc, which costs remit about a tenth less CPU per call than glibc's under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// remit: a gateway that lets AI agents act in production safely.
#[derive(Debug, Parser)]
#[command(name = "remit", version, about, long_about = None)]
struct Cli {
    /// The register file.
    #[arg(
        long,
        short = 'r',
        global = true,
        env = "REMIT_REGISTER",
        default_value = "remit.toml"
    )]
    register: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve agents over Streamable HTTP (`/mcp`) and the HTTP API (`/v1`).
    Serve,
    /// Serve one agent over stdin/stdout, for clients that launch their MCP server.
    Stdio {
        /// The agent this connection speaks for.
        #[arg(long)]
        agent: String,
    },
    /// Check a register: every error as file:line:column with a hint, and risk warnings.
    Check {
        /// The register file (default: --register).
        file: Option<PathBuf>,
        /// Do not start the upstreams to compare tools and argument names.
        #[arg(long)]
        offline: bool,
    },
    /// Print the risk register: one row per action, for the person accountable.
    Register {
        /// The register file (default: --register).
        file: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = registry::Format::Text)]
        format: registry::Format,
    },
    /// Report the running gateway's upstreams, store and audit state.
    Status,
    /// Freeze an agent or an action at once, on every replica (the kill switch).
    Freeze {
        /// `agent:NAME`, `action:UPSTREAM.TOOL`, or a bare name found in the register.
        target: String,
        /// Who is freezing, for the audit.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Lift a freeze.
    Unfreeze {
        /// `agent:NAME`, `action:UPSTREAM.TOOL`, or a bare name found in the register.
        target: String,
        /// Who is unfreezing, for the audit.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Read and check the audit trail.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Run the demo: a gateway with its own example register and billing system, and a scripted agent (no `--register`).
    Demo {
        /// Exit after the script instead of serving until Ctrl-C.
        #[arg(long)]
        exit: bool,
        /// Port for the demo gateway (0 picks a free one).
        #[arg(long, default_value_t = 8470)]
        port: u16,
    },
    /// Approvals (not in this version).
    #[command(hide = true)]
    Approvals,
    /// Undo an action (not in this version).
    #[command(hide = true)]
    Undo,
    /// Roll back a run (not in this version).
    #[command(hide = true)]
    Rollback,
    /// Run the example billing MCP server over stdio (used by the demo register).
    #[command(hide = true)]
    BillingServer {
        /// The billing SQLite file.
        #[arg(long)]
        db: PathBuf,
    },
}

/// How a command ended: 0 ok, 1 findings or "no", 2 could not do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Ok,
    Findings,
    Error,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Ok => Self::SUCCESS,
            Exit::Findings => Self::from(1),
            Exit::Error => Self::from(2),
        }
    }
}

/// Logs at `default` (or as `REMIT_LOG` says), with rmcp's own lines left out unless
/// `REMIT_LOG` asks for them: they print Rust type names and `Debug` output, and remit logs
/// what they are about (an upstream down, and why) in its own words.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},rmcp=off")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_lines::Scrubbed)
        .try_init();
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `remit demo` writes and runs its own register: one given on the command line would
    // be silently ignored (one from REMIT_REGISTER is the environment's, not asked for here)
    if matches!(cli.command, Command::Demo { .. })
        && matches.value_source("register") == Some(clap::parser::ValueSource::CommandLine)
    {
        eprintln!(
            "error: `remit demo` runs its own example register and takes no `--register`; to serve `{}`, run `remit serve -r {}`",
            cli.register.display(),
            cli.register.display()
        );
        return Exit::Error.into();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(exit) => exit.into(),
        // the reader of stdout took what it wanted (`remit register | head -1`)
        Err(e) if out::is_closed(&e) => out::verdict_so_far().into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Error.into()
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Serve => {
            init_tracing("info");
            serve::serve(&cli.register).await
        }
        Command::Stdio { agent } => {
            init_tracing("warn");
            serve::stdio(&cli.register, &agent).await
        }
        Command::Check { file, offline } => {
            init_tracing("error");
            registry::check(file.as_ref().unwrap_or(&cli.register), offline).await
        }
        Command::Register { file, format } => {
            registry::print(file.as_ref().unwrap_or(&cli.register), format)
        }
        Command::Status => serve::status(&cli.register).await,
        Command::Freeze { target, by } => {
            init_tracing("warn");
            serve::freeze(&cli.register, &target, true, &by).await
        }
        Command::Unfreeze { target, by } => {
            init_tracing("warn");
            serve::freeze(&cli.register, &target, false, &by).await
        }
        Command::Audit { command } => {
            init_tracing("warn");
            audit::run(&cli.register, command).await
        }
        Command::Demo { exit, port } => {
            init_tracing("warn");
            demo::run(exit, port).await
        }
        Command::Approvals | Command::Undo | Command::Rollback => {
            eprintln!("error: approvals, undo and rollback are not in this version of remit");
            Ok(Exit::Error)
        }
        Command::BillingServer { db } => {
            init_tracing("warn");
            remit_billing::serve_billing_stdio(&db).await?;
            Ok(Exit::Ok)
        }
    }
}
