//! remit-bench: what remit costs, measured side by side with a direct call to the same upstream.
//!
//! `cargo run --release -p remit-bench -- all` starts the echo upstream
//! (`remit-billing --echo --http`) and `remit serve` in front of it, then
//! alternates rounds of identical raw 2026-07-28 `tools/call` POSTs straight to
//! the echo server and through remit:
//!
//! - latency with one client (p50, p99, and what remit adds);
//! - throughput with 64 clients (calls/s, through / direct);
//! - CPU per call of remit, of the echo server and of this client, from
//!   `/proc/PID/stat` before and after each round of a fixed number of calls.
//!
//! Everything runs on loopback; every round is bounded in calls and in time.
//! `bench/run` adds the criterion and store benches and keeps the output.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on the terminal: results on stdout, progress on stderr"
)]

mod client;
mod disk;
mod procs;
mod relay;
mod sqlite;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use client::{Round, Target};
use procs::{Ticks, sibling};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Load harness for remit: through remit vs straight to the same upstream.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the echo upstream and remit, and measure latency, throughput and CPU per call.
    All(AllArgs),
    /// Drive calls at an address you started yourself (e.g. remit under a profiler).
    Load(LoadArgs),
    /// Start the echo upstream and remit, print their addresses and pids, and keep them up a while.
    Serve(ServeArgs),
    /// Measure the disk's floor: one WAL-sized write + fsync, back to back and after idle gaps.
    Disk(DiskArgs),
    /// Relay TCP connections to an address, copying bytes (the floor of any proxy; `all --relay`).
    Relay(RelayArgs),
    /// Measure SQLite's floor: CPU per audit event and per transaction, by events per transaction.
    Sqlite(SqliteArgs),
}

#[derive(Debug, Args)]
struct RelayArgs {
    /// Where to relay to (`HOST:PORT`).
    #[arg(long)]
    to: SocketAddr,
}

#[derive(Debug, Args)]
struct DiskArgs {
    /// The directory to write in: the store's disk (default: `bench/out`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds per gap.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
}

#[derive(Debug, Args)]
struct SqliteArgs {
    /// The directory to write in: the store's disk (default: `bench/out`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events appended per batch size.
    #[arg(long, default_value_t = 60_000)]
    events: usize,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// How long to keep them up.
    #[arg(long, default_value_t = 120)]
    secs: u64,
    /// Extra environment for remit, `KEY=VALUE` (e.g. `REMIT_LOG=warn`).
    #[arg(long)]
    env: Vec<String>,
    /// Where the register, the store and the logs go (default: `bench/out/serve`).
    #[arg(long)]
    work: Option<PathBuf>,
    /// TOML lines added to the `echo.echo` action, e.g. `budget = [{ count = 1000000000, per = "1h" }]`.
    #[arg(long)]
    action: Option<String>,
    /// remit's store URL, e.g. `postgres://postgres@127.0.0.1:5432/remit_bench_verify`.
    #[arg(long, default_value = procs::SQLITE_STORE)]
    store: String,
}

#[derive(Debug, Args)]
struct AllArgs {
    /// Rounds per figure; each round calls every target once, in an order that rotates.
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// Calls per target per latency round (one client).
    #[arg(long, default_value_t = 1_000)]
    latency_calls: u64,
    /// Calls per target per throughput round.
    #[arg(long, default_value_t = 20_000)]
    load_calls: u64,
    /// Concurrent clients in the throughput rounds.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Longest a single round may take before the run fails.
    #[arg(long, default_value_t = 120)]
    round_limit_secs: u64,
    /// Where the register, the store and the logs of this run go (default: `bench/out/run`).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Also run a second remit with `REMIT_LOG=warn`, to show what the default `info` logging costs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    quiet_variant: bool,
    /// Also measure a raw TCP relay in front of the echo upstream (no HTTP, no audit): the floor of any proxy here.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    relay: bool,
    /// The environment of the second remit, `KEY=VALUE` (repeat; default `REMIT_LOG=warn`).
    #[arg(long = "variant-env", default_value = "REMIT_LOG=warn")]
    variant_env: Vec<String>,
    /// The second remit's binary, to compare two builds side by side (default: the same `remit`).
    #[arg(long)]
    variant_bin: Option<PathBuf>,
    /// The tier of the second remit's action: `read` commits a call's events once, with its
    /// answer; `write` adds the write-ahead commit before the upstream is called.
    #[arg(long, default_value = "read", value_parser = ["read", "write", "irreversible"])]
    variant_tier: String,
    /// TOML lines added to the second remit's `echo.echo` action, e.g. `budget = [{ count = 1000000000, per = "1h" }]`.
    #[arg(long)]
    variant_action: Option<String>,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// `HOST:PORT` serving MCP at `/mcp`.
    #[arg(long)]
    addr: SocketAddr,
    /// The tool name to call (`echo` direct, `echo.echo` through remit).
    #[arg(long)]
    tool: String,
    /// Bearer token (remit-bench's own when `--remit-token` is given).
    #[arg(long)]
    token: Option<String>,
    /// Use the token of the register `all` writes.
    #[arg(long)]
    remit_token: bool,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Calls in all.
    #[arg(long, default_value_t = 1_000)]
    calls: u64,
    /// Longest the run may take.
    #[arg(long, default_value_t = 600)]
    limit_secs: u64,
    /// Write each call's latency in µs to this file, one per line, in each client's call order.
    #[arg(long)]
    latencies: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::Relay(args) = &cli.command {
        return relay::run(args.to);
    }
    // The client is one thread: lean, and it leaves the second core to the servers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // On Ctrl-C or SIGTERM the run stops and drops its child processes, which kills them.
        tokio::select! {
            done = async {
                match cli.command {
                    Cmd::All(args) => all(args).await,
                    Cmd::Load(args) => load(args).await,
                    Cmd::Serve(args) => serve(args).await,
                    Cmd::Disk(args) => disk(args),
                    Cmd::Sqlite(args) => sqlite(args),
                    Cmd::Relay(_) => unreachable!("served above, on a runtime of its own"),
                }
            } => done,
            signal = stopped() => {
                signal?;
                eprintln!("stopped by a signal; the servers were stopped too");
                Ok(())
            }
        }
    })
}

async fn stopped() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn disk(args: DiskArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out"));
    std::fs::create_dir_all(&dir)?;
    let gaps = [0, 100, 300, 1_000].map(Duration::from_micros);
    let floors = disk::measure(&dir, &gaps, args.secs)?;
    println!(
        "## The disk's floor: one call's WAL commit (2 × 4,120 bytes written, wrapping at 4 MiB as a WAL does, then synced) in `{}`\n\n{}",
        dir.display(),
        disk::table(&floors)
    );
    Ok(())
}

fn sqlite(args: SqliteArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out"));
    std::fs::create_dir_all(&dir)?;
    let floors = sqlite::measure(&dir, args.events)?;
    println!(
        "## SQLite's floor: {} audit events of {} bytes appended with remit's schema and settings, in `{}`\n\n{}",
        args.events,
        sqlite::BODY_BYTES,
        dir.display(),
        sqlite::table(&floors)
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let work = args
        .work
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out/serve"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let work = std::fs::canonicalize(&work)?;
    let env = args
        .env
        .iter()
        .map(|kv| kv.split_once('=').context("--env takes KEY=VALUE"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (echo, echo_addr) = procs::start_echo(&sibling("remit-billing")?, &work.join("echo.log"))?;
    let (remit, addr) = procs::start_remit(
        &sibling("remit")?,
        &work.join("remit"),
        echo_addr,
        &env,
        &args.store,
        "read",
        args.action.as_deref().unwrap_or_default(),
    )
    .await?;
    println!("echo {echo_addr} {}", echo.pid());
    println!("remit {addr} {}", remit.pid());
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    drop((echo, remit));
    Ok(())
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let token = match (args.remit_token, args.token.as_deref()) {
        (true, _) => Some(procs::TOKEN),
        (false, t) => t,
    };
    let target = Target::new("target", args.addr, &args.tool, token)?;
    eprintln!("{}", client::sample(&target).await?);
    let cpu_before = Ticks::now(std::process::id(), std::process::id())?;
    let round = client::round(
        &target,
        args.clients,
        args.calls,
        Duration::from_secs(args.limit_secs),
    )
    .await?;
    let cpu = cpu_before.until(Ticks::now(std::process::id(), std::process::id())?);
    if let Some(path) = &args.latencies {
        let lines: String = round
            .latencies
            .iter()
            .map(|ns| format!("{:.1}\n", *ns as f64 / 1e3))
            .collect();
        std::fs::write(path, lines)?;
    }
    let mut lat = round.latencies.clone();
    lat.sort_unstable();
    println!(
        "{} calls in {:.2}s: {:.0} calls/s, p50 {:.3} ms, p99 {:.3} ms, client cpu {:.1} µs/call",
        round.ok,
        round.elapsed.as_secs_f64(),
        round.ok as f64 / round.elapsed.as_secs_f64(),
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.99)),
        cpu.client as f64 * 1e6 / procs::ticks_per_second() / round.ok.max(1) as f64,
    );
    Ok(())
}

/// One round's measurements for one target.
#[derive(Debug)]
struct Measured {
    round: Round,
    cpu: Ticks,
}

/// A target and the remit process behind it (none for the direct calls).
struct Leg {
    target: Target,
    remit: Option<procs::Proc>,
    /// What is different about it, for the report.
    note: String,
}

struct Bench {
    legs: Vec<Leg>,
    echo: procs::Proc,
    tick_hz: f64,
    limit: Duration,
    clients: usize,
}

impl Bench {
    async fn measure(
        &mut self,
        leg: usize,
        clients: usize,
        calls: u64,
    ) -> anyhow::Result<Measured> {
        self.echo.alive()?;
        for l in &mut self.legs {
            if let Some(p) = l.remit.as_mut() {
                p.alive()?;
            }
        }
        let l = self.legs.get(leg).context("no such target")?;
        // The direct leg reads the first remit's CPU too: it should stay at zero.
        let remit_pid = l
            .remit
            .as_ref()
            .or_else(|| self.legs.iter().find_map(|l| l.remit.as_ref()))
            .map_or(std::process::id(), procs::Proc::pid);
        let echo_pid = self.echo.pid();
        let before = Ticks::now(remit_pid, echo_pid)?;
        let round = client::round(&l.target, clients, calls, self.limit).await?;
        let cpu = before.until(Ticks::now(remit_pid, echo_pid)?);
        Ok(Measured { round, cpu })
    }

    /// `rounds` rounds; each calls every target once, the first target rotating.
    async fn phase(
        &mut self,
        name: &str,
        rounds: usize,
        clients: usize,
        calls: u64,
    ) -> anyhow::Result<Vec<Vec<Measured>>> {
        let n = self.legs.len();
        let mut phase: Vec<Vec<Measured>> = (0..n).map(|_| Vec::new()).collect();
        for r in 0..rounds {
            for k in 0..n {
                let leg = (r + k) % n;
                let m = self.measure(leg, clients, calls).await?;
                let label = self.legs.get(leg).map_or("", |l| l.target.label);
                eprintln!(
                    "  {name} {}/{rounds} {label:<12} {}",
                    r + 1,
                    self.describe(&m)
                );
                if let Some(v) = phase.get_mut(leg) {
                    v.push(m);
                }
            }
        }
        Ok(phase)
    }

    fn describe(&self, m: &Measured) -> String {
        let mut lat = m.round.latencies.clone();
        lat.sort_unstable();
        let n = m.round.ok.max(1) as f64;
        let us = |ticks: u64| ticks as f64 * 1e6 / self.tick_hz / n;
        let secs = m.round.elapsed.as_secs_f64();
        format!(
            "{:>6.0} calls/s  p50 {:.3} ms  p99 {:.3} ms  cpu/call remit {:>6.1} echo {:>5.1} client {:>5.1} µs  remit ctx switches/call {:.1}  others busy {:.2} cores  idle {:.1} %",
            n / secs,
            ms(pct(&lat, 0.50)),
            ms(pct(&lat, 0.99)),
            us(m.cpu.remit),
            us(m.cpu.echo),
            us(m.cpu.client),
            m.cpu.remit_switches as f64 / n,
            m.cpu.others() as f64 / self.tick_hz / secs,
            m.cpu.idle_share() * 100.0,
        )
    }
}

async fn all(args: AllArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.rounds == 0 {
        bail!("--clients and --rounds must be at least 1");
    }
    let work = match args.work.clone() {
        Some(w) => w,
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out/run"),
    };
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot clear {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let work = std::fs::canonicalize(&work)?;
    let remit_bin = sibling("remit")?;
    let echo_bin = sibling("remit-billing")?;
    let load_start = loadavg();

    eprintln!("starting the echo upstream and remit in {}", work.display());
    let (echo, echo_addr) = procs::start_echo(&echo_bin, &work.join("echo.log"))?;
    let mut legs = vec![Leg {
        target: Target::new("direct", echo_addr, "echo", None)?,
        remit: None,
        note: String::new(),
    }];
    let (proc, addr) = procs::start_remit(
        &remit_bin,
        &work.join("remit"),
        echo_addr,
        &[],
        procs::SQLITE_STORE,
        "read",
        "",
    )
    .await?;
    legs.push(Leg {
        target: Target::new("remit", addr, "echo.echo", Some(procs::TOKEN))?,
        remit: Some(proc),
        note: "as shipped (log level `info`)".to_owned(),
    });
    if args.quiet_variant {
        let env = args
            .variant_env
            .iter()
            .map(|kv| kv.split_once('=').context("--variant-env takes KEY=VALUE"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let variant_bin = args
            .variant_bin
            .clone()
            .unwrap_or_else(|| remit_bin.clone());
        let (proc, addr) = procs::start_remit(
            &variant_bin,
            &work.join("remit-quiet"),
            echo_addr,
            &env,
            procs::SQLITE_STORE,
            &args.variant_tier,
            args.variant_action.as_deref().unwrap_or_default(),
        )
        .await?;
        let mut note = args
            .variant_env
            .iter()
            .map(|kv| format!("`{kv}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if args.variant_tier != "read" {
            note.push_str(&format!(", the action at tier `{}`", args.variant_tier));
        }
        if let Some(extra) = &args.variant_action {
            note.push_str(&format!(", with `{}`", extra.trim()));
        }
        if let Some(bin) = &args.variant_bin {
            note.push_str(&format!(", binary `{}`", bin.display()));
        }
        legs.push(Leg {
            target: Target::new("remit-quiet", addr, "echo.echo", Some(procs::TOKEN))?,
            remit: Some(proc),
            note,
        });
    }
    if args.relay {
        let (proc, addr) =
            procs::start_relay(&sibling("remit-bench")?, echo_addr, &work.join("relay.log"))?;
        legs.push(Leg {
            target: Target::new("tcp-relay", addr, "echo", None)?,
            remit: Some(proc),
            note: "a raw TCP relay (`remit-bench relay`): copies bytes, no HTTP, no policy, no audit; \
                   the floor of any gateway's cost on this machine, not a target"
                .to_owned(),
        });
    }
    for leg in &legs {
        eprintln!(
            "{} reply: {}",
            leg.target.label,
            client::sample(&leg.target).await?
        );
    }
    let mut bench = Bench {
        legs,
        echo,
        tick_hz: procs::ticks_per_second(),
        limit: Duration::from_secs(args.round_limit_secs),
        clients: args.clients,
    };

    eprintln!("warming up");
    for leg in 0..bench.legs.len() {
        bench
            .measure(leg, args.clients, args.load_calls / 4)
            .await?;
        bench.measure(leg, 1, args.latency_calls / 2).await?;
    }
    eprintln!(
        "latency: {} rounds x {} calls per target, 1 client",
        args.rounds, args.latency_calls
    );
    let latency = bench
        .phase("latency", args.rounds, 1, args.latency_calls)
        .await?;
    eprintln!(
        "throughput: {} rounds x {} calls per target, {} clients",
        args.rounds, args.load_calls, args.clients
    );
    let load = bench
        .phase("throughput", args.rounds, args.clients, args.load_calls)
        .await?;
    let load_end = loadavg();

    let mut out = String::new();
    writeln!(
        out,
        "## Load harness: through remit vs direct to the echo upstream\n"
    )?;
    writeln!(
        out,
        "{}. Load average at start {load_start}, at end {load_end}.\n",
        args_line(&args)
    )?;
    for (i, leg) in bench.legs.iter().enumerate().skip(1) {
        let (Some(lat_d), Some(lat_r), Some(load_d), Some(load_r)) =
            (latency.first(), latency.get(i), load.first(), load.get(i))
        else {
            continue;
        };
        report(
            &mut out,
            &bench,
            leg,
            [lat_d.as_slice(), lat_r.as_slice()],
            [load_d.as_slice(), load_r.as_slice()],
        )?;
        if let Some(events) = audit_events(&work.join(leg.target.label)) {
            writeln!(
                out,
                "Its audit log at the end, events by stage: {events}.\n"
            )?;
        }
    }
    println!("{out}");
    Ok(())
}

fn args_line(args: &AllArgs) -> String {
    format!(
        "{} rounds, each calling every target in a rotating order; latency: {} calls per target per round, 1 client; throughput: {} calls per target per round, {} clients",
        args.rounds, args.latency_calls, args.load_calls, args.clients
    )
}

/// Events in a remit's audit log, by stage (best effort: needs the `sqlite3` program).
fn audit_events(dir: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("sqlite3")
        .arg(dir.join("remit.db"))
        .arg("SELECT stage || ' ' || count(*) FROM audit_events GROUP BY stage")
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace('\n', ", ")
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn pooled(ms: &[Measured]) -> Vec<u64> {
    let mut all: Vec<u64> = ms
        .iter()
        .flat_map(|m| m.round.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    all
}

fn total(ms: &[Measured]) -> (u64, f64, Ticks) {
    ms.iter().fold((0, 0.0, Ticks::default()), |(n, s, t), m| {
        (
            n + m.round.ok,
            s + m.round.elapsed.as_secs_f64(),
            t.add(m.cpu),
        )
    })
}

fn per_round_p(ms: &[Measured], q: f64) -> Vec<u64> {
    ms.iter()
        .map(|m| {
            let mut l = m.round.latencies.clone();
            l.sort_unstable();
            pct(&l, q)
        })
        .collect()
}

fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// The figures of one remit leg against the direct leg: `[direct, remit]` for each phase.
fn report(
    out: &mut String,
    bench: &Bench,
    leg: &Leg,
    latency: [&[Measured]; 2],
    load: [&[Measured]; 2],
) -> anyhow::Result<()> {
    let hz = bench.tick_hz;
    let [lat_d, lat_r] = latency;
    let [load_d, load_r] = load;
    writeln!(out, "### `{}`: {}\n", leg.target.label, leg.note)?;

    let (d, r) = (pooled(lat_d), pooled(lat_r));
    let (d50, d99, r50, r99) = (pct(&d, 0.5), pct(&d, 0.99), pct(&r, 0.5), pct(&r, 0.99));
    let add50 = ms(r50) - ms(d50);
    let add99 = ms(r99) - ms(d99);
    let deltas = |q| -> Vec<f64> {
        per_round_p(lat_r, q)
            .iter()
            .zip(per_round_p(lat_d, q))
            .map(|(r, d)| ms(*r) - ms(d))
            .collect()
    };
    let (lo50, hi50) = spread(&deltas(0.5));
    let (lo99, hi99) = spread(&deltas(0.99));

    let (dn, ds, dcpu) = total(load_d);
    let (rn, rs, rcpu) = total(load_r);
    let (dtp, rtp) = (dn as f64 / ds, rn as f64 / rs);
    let ratio = rtp / dtp;
    let ratios: Vec<f64> = load_r
        .iter()
        .zip(load_d)
        .map(|(r, d)| {
            (r.round.ok as f64 / r.round.elapsed.as_secs_f64())
                / (d.round.ok as f64 / d.round.elapsed.as_secs_f64())
        })
        .collect();
    let (rlo, rhi) = spread(&ratios);
    let (dl, rl) = (pooled(load_d), pooled(load_r));

    let us = |ticks: u64, n: u64| ticks as f64 * 1e6 / hz / n.max(1) as f64;
    let remit_cpu = us(rcpu.remit, rn);
    let echo_direct = us(dcpu.echo, dn);
    let echo_through = us(rcpu.echo, rn);
    let client_direct = us(dcpu.client, dn);
    let client_through = us(rcpu.client, rn);
    let (ln, _, lcpu) = total(lat_r);
    let (ldn, _, ldcpu) = total(lat_d);
    let remit_cpu_1 = us(lcpu.remit, ln);
    let predicted = (echo_direct + client_direct) / (remit_cpu + echo_through + client_through);
    let others = |cpu: Ticks, secs: f64| cpu.others() as f64 / hz / secs;
    let c = bench.clients;

    writeln!(
        out,
        "| figure | direct | through remit | remit adds / ratio | target | verdict |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "| latency p50, 1 client | {:.3} ms | {:.3} ms | +{add50:.3} ms (rounds {lo50:+.3}…{hi50:+.3}) | ≤ +0.25 ms | {} |",
        ms(d50),
        ms(r50),
        verdict(add50 <= 0.25)
    )?;
    writeln!(
        out,
        "| latency p99, 1 client | {:.3} ms | {:.3} ms | +{add99:.3} ms (rounds {lo99:+.3}…{hi99:+.3}) | ≤ +0.5 ms | {} |",
        ms(d99),
        ms(r99),
        verdict(add99 <= 0.5)
    )?;
    writeln!(
        out,
        "| throughput, {c} clients | {dtp:.0} calls/s | {rtp:.0} calls/s | {ratio:.2}× (rounds {rlo:.2}…{rhi:.2}) | ≥ 0.6× | {} |",
        verdict(ratio >= 0.6)
    )?;
    writeln!(
        out,
        "| remit CPU per allowed call, {c} clients | — | {remit_cpu:.1} µs | — | ≤ 70 µs | {} |",
        verdict(remit_cpu <= 70.0)
    )?;
    writeln!(
        out,
        "| remit CPU per allowed call, 1 client | — | {remit_cpu_1:.1} µs | — | (≤ 70 µs) | {} |",
        verdict(remit_cpu_1 <= 70.0)
    )?;
    writeln!(out)?;
    writeln!(out, "CPU per call (user + system, from /proc/PID/stat):\n")?;
    writeln!(
        out,
        "| process | direct, {c} clients | through, {c} clients | direct, 1 client | through, 1 client |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    writeln!(
        out,
        "| remit | — | {remit_cpu:.1} µs | — | {remit_cpu_1:.1} µs |"
    )?;
    writeln!(
        out,
        "| (remit context switches per call) | — | {:.1} | — | {:.1} |",
        rcpu.remit_switches as f64 / rn.max(1) as f64,
        lcpu.remit_switches as f64 / ln.max(1) as f64
    )?;
    writeln!(
        out,
        "| echo upstream | {echo_direct:.1} µs | {echo_through:.1} µs | {:.1} µs | {:.1} µs |",
        us(ldcpu.echo, ldn),
        us(lcpu.echo, ln)
    )?;
    writeln!(
        out,
        "| load client | {client_direct:.1} µs | {client_through:.1} µs | {:.1} µs | {:.1} µs |",
        us(ldcpu.client, ldn),
        us(lcpu.client, ln)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "With both cores saturated, CPU per call predicts a ratio of {predicted:.2}× \
         ((echo + client) / (remit + echo + client)); measured {ratio:.2}×. \
         Under load, p50 / p99 latency: direct {:.2} / {:.2} ms, through remit {:.2} / {:.2} ms. \
         Other processes kept {:.2} cores busy on average during the direct throughput rounds, {:.2} during these remit rounds. \
         The cores stood idle (idle and iowait in /proc/stat) {:.1} % of the direct throughput rounds and {:.1} % of these remit rounds.\n",
        ms(pct(&dl, 0.5)),
        ms(pct(&dl, 0.99)),
        ms(pct(&rl, 0.5)),
        ms(pct(&rl, 0.99)),
        others(dcpu, ds),
        others(rcpu, rs),
        dcpu.idle_share() * 100.0,
        rcpu.idle_share() * 100.0
    )?;
    Ok(())
}
