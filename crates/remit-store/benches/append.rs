//! Durable audit appends per second with group commit: 64 concurrent appenders, ~300-byte events.
//!
//! `cargo bench -p remit-store --bench append`. Runs on SQLite (a temp file, WAL,
//! `synchronous=FULL`) and on PostgreSQL (`REMIT_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`, in a fresh database it drops afterwards).
//! `REMIT_BENCH_SECS` sets the measuring time per run (default 5), `REMIT_BENCH_APPENDERS`
//! the number of concurrent appenders (default 64).
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on the terminal"
)]

use remit_core::audit::event::{Event, Stage};
use remit_core::ports::Store;
use remit_store::{PgStore, SqliteStore};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Concurrent appenders unless `REMIT_BENCH_APPENDERS` says otherwise.
const APPENDERS: usize = 64;

fn appenders() -> usize {
    std::env::var("REMIT_BENCH_APPENDERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(APPENDERS)
}

fn main() -> BenchResult<()> {
    let secs = std::env::var("REMIT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let size = event(0, Ids::Ordered).canonical().len();
        println!(
            "{} appenders, one {size}-byte event per append, {secs}s per run",
            appenders()
        );
        let admin = std::env::var("REMIT_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        for ids in [Ids::Ordered, Ids::Random] {
            let dir = tempfile::tempdir()?;
            let sqlite = SqliteStore::open(&dir.path().join("bench.db")).await?;
            measure("sqlite", ids, Arc::new(sqlite.clone()), secs).await?;
            sqlite.close().await;

            let mut conn = match PgConnection::connect(&admin).await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("postgres skipped: cannot connect to {admin}: {e}");
                    continue;
                }
            };
            let name = remit_core::ids::fresh("remit_bench");
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await?;
            let url = format!("{}/{name}", admin.rsplit_once('/').map_or("", |(b, _)| b));
            let outcome = async {
                let pg = PgStore::connect(&url).await?;
                let measured = measure("postgres", ids, Arc::new(pg.clone()), secs).await;
                pg.close().await;
                measured
            }
            .await;
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
            outcome?;
        }
        Ok(())
    })
}

/// How call ids are shaped: that decides how many pages of the `call` index a batch touches.
#[derive(Clone, Copy, Debug)]
enum Ids {
    /// Time-ordered, like UUIDv7: new calls land at the index's right edge.
    Ordered,
    /// Random, like `ids::fresh`: each event lands on its own index page.
    Random,
}

/// Runs the appenders for a warm-up second, then `secs` seconds, and prints events/s.
async fn measure(label: &str, ids: Ids, store: Arc<dyn Store>, secs: u64) -> BenchResult<()> {
    run(&store, ids, Duration::from_secs(1)).await?;
    let before = store.event_count().await?;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (appended, latency) = run(&store, ids, Duration::from_secs(secs)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let after = store.event_count().await?;
    assert_eq!(
        after - before,
        appended,
        "every acknowledged event is in the log"
    );
    let cpu_per_event = cpu.map_or_else(
        || "n/a".to_owned(),
        |cpu| format!("{:.1} µs", cpu * 1e6 / appended.max(1) as f64),
    );
    println!(
        "{label:>8}, {:>7} call ids: {:>6.0} events/s durable ({appended} events in {elapsed:.2}s, mean append {:.2} ms, \
         this process's cpu per event {cpu_per_event})",
        format!("{ids:?}").to_lowercase(),
        appended as f64 / elapsed,
        latency.as_secs_f64() * 1_000.0
    );
    Ok(())
}

/// Appends from every appender until `duration` passes; returns events and mean latency.
async fn run(store: &Arc<dyn Store>, ids: Ids, duration: Duration) -> BenchResult<(u64, Duration)> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..appenders() {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut appended = 0u64;
            let mut waited = Duration::ZERO;
            while Instant::now() < deadline {
                let event = event(NEXT.fetch_add(1, Ordering::Relaxed), ids);
                let started = Instant::now();
                store.append(&[event]).await?;
                waited += started.elapsed();
                appended += 1;
            }
            Ok::<_, remit_core::ports::StoreError>((appended, waited))
        }));
    }
    let mut appended = 0;
    let mut waited = Duration::ZERO;
    for task in tasks {
        let (n, w) = task.await??;
        appended += n;
        waited += w;
    }
    let mean = waited
        .checked_div(u32::try_from(appended.max(1)).unwrap_or(u32::MAX))
        .unwrap_or_default();
    Ok((appended, mean))
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks; 100 per second on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

/// Numbers the events of every run, in the order they are made.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A realistic event of about 300 canonical bytes, the `i`th made.
fn event(i: u64, ids: Ids) -> Event {
    let call = match ids {
        Ids::Ordered => i,
        // splitmix64: a bijection, so ids stay distinct but land anywhere.
        Ids::Random => {
            let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    };
    Event {
        time: "2026-08-01T12:00:00.000Z".into(),
        stage: Stage::Proposed,
        call: Some(format!("call_{call:016x}").into()),
        run: Some("run_7f3a9c".into()),
        agent: Some("support-bot".into()),
        action: Some("billing.issue_refund".into()),
        register: Some("sha256:4be1c0de9a".into()),
        detail: json!({
            "args": { "customer": format!("cus_{:08}", i % 100_000_000), "amount": 42.5, "currency": "EUR" },
            "reason": "customer was charged twice for order 1182; refund the duplicate",
        }).into(),
    }
}
