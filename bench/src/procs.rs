//! The processes under test (the echo upstream and remit), and the CPU they spend.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bearer token of the bench agent (loopback only, thrown away with the run).
pub(crate) const TOKEN: &str = "remit-bench-token-8c1f7a";

/// A child process that is killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    /// What it is, for messages.
    pub(crate) name: &'static str,
}

impl Proc {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub(crate) fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release binaries sit next to this one (`cargo build --release` puts them together).
pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("the bench binary has no folder")?
        .join(name);
    if !path.exists() {
        bail!(
            "{} not found; build it first: cargo build --release -p remit -p remit-billing",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `remit-billing --echo --http 127.0.0.1:0` and reads the address it listens on.
pub(crate) fn start_echo(bin: &Path, log: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let (proc, first) = start_announcing(
        bin,
        &["--echo", "--http", "127.0.0.1:0"],
        "echo upstream",
        log,
    )?;
    let addr = first
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .with_context(|| format!("unexpected first line from the echo server: {first}"))?
        .parse()?;
    Ok((proc, addr))
}

/// Starts `remit-bench relay --to UPSTREAM` and reads the address it listens on.
pub(crate) fn start_relay(
    bin: &Path,
    upstream: SocketAddr,
    log: &Path,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let to = upstream.to_string();
    let (proc, first) = start_announcing(bin, &["relay", "--to", &to], "TCP relay", log)?;
    let addr = first
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line from the relay: {first}"))?
        .parse()?;
    Ok((proc, addr))
}

/// Starts `bin ARGS`, returns its first line on stderr and copies the rest to `log`.
fn start_announcing(
    bin: &Path,
    args: &[&str],
    name: &'static str,
    log: &Path,
) -> anyhow::Result<(Proc, String)> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let proc = Proc { child, name };
    let mut lines = BufReader::new(stderr).lines();
    let first = lines
        .next()
        .with_context(|| format!("the {name} printed nothing"))??;
    let mut file = std::fs::File::create(log)?;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    Ok((proc, first))
}

/// The store of the bench's remit unless told otherwise: a SQLite file next to its register.
pub(crate) const SQLITE_STORE: &str = "sqlite://remit.db";

/// The register remit serves in the bench: its one action at `tier`, with `extra` appended (e.g. a budget).
pub(crate) fn register(
    listen: SocketAddr,
    upstream: SocketAddr,
    store: &str,
    tier: &str,
    extra: &str,
) -> String {
    format!(
        r#"# Written by remit-bench: one agent, one action with a CEL condition, on the echo upstream.
[gateway]
listen = "{listen}"
store = "{store}"
audit_key = "remit-audit.key"
audit_origin = "remit-bench"

[agents.bench]
token = {{ env = "REMIT_TOKEN_BENCH" }}

[upstreams.echo]
url = "http://{upstream}/mcp"

[actions."echo.echo"]
agents = ["bench"]
tier = "{tier}"
require = "size(args.text) <= 1000"
{extra}
"#
    )
}

/// Starts `remit serve` on a fresh register and store in `dir`; returns once `/health` answers.
pub(crate) async fn start_remit(
    bin: &Path,
    dir: &Path,
    upstream: SocketAddr,
    env: &[(&str, &str)],
    store: &str,
    tier: &str,
    extra: &str,
) -> anyhow::Result<(Proc, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let listen = free_port()?;
    let file = dir.join("remit.toml");
    std::fs::write(&file, register(listen, upstream, store, tier, extra))?;
    let log = std::fs::File::create(dir.join("remit.log"))?;
    let child = Command::new(bin)
        .arg("--register")
        .arg(&file)
        .arg("serve")
        .env("REMIT_TOKEN_BENCH", TOKEN)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut proc = Proc {
        child,
        name: "remit serve",
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        proc.alive()
            .with_context(|| format!("see {}", dir.join("remit.log").display()))?;
        if health(listen).await {
            return Ok((proc, listen));
        }
        if Instant::now() > deadline {
            bail!("remit did not answer /health within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn health(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut reply)).await;
    matches!(read, Ok(Ok(_))) && reply.starts_with(b"HTTP/1.1 200")
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// CPU time so far, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ticks {
    /// remit's user + system time.
    pub(crate) remit: u64,
    /// The echo upstream's.
    pub(crate) echo: u64,
    /// This process's (the load client).
    pub(crate) client: u64,
    /// The whole machine's busy time (all cores, every process).
    pub(crate) machine: u64,
    /// The whole machine's idle time (all cores; idle and iowait).
    pub(crate) machine_idle: u64,
    /// Context switches of remit's live threads (voluntary and not); not a time.
    pub(crate) remit_switches: u64,
}

impl Ticks {
    /// Reads every figure now.
    pub(crate) fn now(remit: u32, echo: u32) -> anyhow::Result<Self> {
        let (machine, machine_idle) = machine_ticks()?;
        Ok(Self {
            remit: process_ticks(&format!("/proc/{remit}/stat"))?,
            echo: process_ticks(&format!("/proc/{echo}/stat"))?,
            client: process_ticks("/proc/self/stat")?,
            machine,
            machine_idle,
            remit_switches: context_switches(remit),
        })
    }

    /// What was spent between `self` (before) and `after`.
    pub(crate) fn until(self, after: Self) -> Self {
        Self {
            remit: after.remit.saturating_sub(self.remit),
            echo: after.echo.saturating_sub(self.echo),
            client: after.client.saturating_sub(self.client),
            machine: after.machine.saturating_sub(self.machine),
            machine_idle: after.machine_idle.saturating_sub(self.machine_idle),
            remit_switches: after.remit_switches.saturating_sub(self.remit_switches),
        }
    }

    /// Adds another interval.
    pub(crate) fn add(self, other: Self) -> Self {
        Self {
            remit: self.remit + other.remit,
            echo: self.echo + other.echo,
            client: self.client + other.client,
            machine: self.machine + other.machine,
            machine_idle: self.machine_idle + other.machine_idle,
            remit_switches: self.remit_switches + other.remit_switches,
        }
    }

    /// Busy time of everything else on the machine (other engineers' work).
    pub(crate) fn others(self) -> u64 {
        self.machine
            .saturating_sub(self.remit + self.echo + self.client)
    }

    /// The share of all cores' time that nothing ran (idle and iowait), 0..=1.
    pub(crate) fn idle_share(self) -> f64 {
        let all = self.machine + self.machine_idle;
        if all == 0 {
            return 0.0;
        }
        self.machine_idle as f64 / all as f64
    }
}

/// utime + stime (fields 14 and 15 of `/proc/PID/stat`), all threads, live and exited.
fn process_ticks(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let (_, rest) = stat.rsplit_once(')').context("bad stat line")?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next().context("no utime")?.parse()?;
    let stime: u64 = fields.next().context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Context switches of every live thread of `pid` (0 if unreadable).
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut sum = 0;
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                sum += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    sum
}

/// All cores' busy and idle (with iowait) time from the first line of `/proc/stat`.
fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let total: u64 = values.iter().sum();
    // idle and iowait are the 4th and 5th.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Ok((total.saturating_sub(idle), idle))
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 if it cannot be asked.
pub(crate) fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::Ticks;

    #[test]
    fn idle_share_is_idle_time_over_all_time() {
        let ticks = Ticks {
            machine: 300,
            machine_idle: 100,
            ..Ticks::default()
        };
        assert!((ticks.idle_share() - 0.25).abs() < 1e-12);
        assert!(Ticks::default().idle_share().abs() < 1e-12);
    }

    #[test]
    fn an_interval_subtracts_idle_time_too() {
        let before = Ticks {
            machine: 100,
            machine_idle: 50,
            ..Ticks::default()
        };
        let after = Ticks {
            machine: 190,
            machine_idle: 60,
            ..Ticks::default()
        };
        let spent = before.until(after);
        assert_eq!((spent.machine, spent.machine_idle), (90, 10));
        assert!((spent.idle_share() - 0.1).abs() < 1e-12);
    }
}
