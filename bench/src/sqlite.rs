//! SQLite's floor: the CPU one audit event and one transaction cost, by events per transaction.
//!
//! remit's SQLite writer commits whatever calls are waiting as one transaction, so its cost
//! per call depends on how many calls share a commit. This measures that curve on its own,
//! with remit's own schema (its migrations), page size and settings (WAL,
//! `synchronous=FULL`): the same number of events inserted in transactions of 3 (one read
//! call's events) up to 480 (160 calls), each size in a new file. CPU is the inserting
//! thread's own time on the CPU (`/proc/thread-self/schedstat`), which includes the
//! kernel's work for the thread's `fsync` but not the file system's journal threads.

use std::path::Path;
use std::time::Instant;

/// Events per transaction measured: one read call's three events up to 160 calls' worth.
pub(crate) const BATCHES: [usize; 6] = [3, 12, 36, 120, 240, 480];

/// The bytes of one event's body, about what an allowed echo call's events hold.
pub(crate) const BODY_BYTES: usize = 400;

/// The cost of appending events in transactions of one size.
#[derive(Debug)]
pub(crate) struct Floor {
    /// Events per transaction.
    pub(crate) batch: usize,
    /// CPU per event, µs.
    pub(crate) cpu_per_event_us: f64,
    /// Wall time per event, µs.
    pub(crate) wall_per_event_us: f64,
    /// CPU per transaction, µs.
    pub(crate) cpu_per_txn_us: f64,
}

/// On-CPU time of the calling thread so far, in seconds.
fn thread_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: f64 = stat
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow::anyhow!("empty /proc/thread-self/schedstat"))?
        .parse()?;
    Ok(ns / 1e9)
}

/// Appends `events` events in `dir` for each of [`BATCHES`], in a new store file each time.
pub(crate) fn measure(dir: &Path, events: usize) -> anyhow::Result<Vec<Floor>> {
    let schema = [
        include_str!("../../crates/remit-store/migrations/sqlite/0001_initial.sql"),
        include_str!(
            "../../crates/remit-store/migrations/sqlite/0002_events_hold_what_the_tree_covers.sql"
        ),
    ];
    let body = "x".repeat(BODY_BYTES);
    let mut out = Vec::new();
    for batch in BATCHES {
        let path = dir.join(format!("remit-bench-sqlite-{batch}.db"));
        let files = [
            path.clone(),
            path.with_extension("db-wal"),
            path.with_extension("db-shm"),
        ];
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
        let conn = rusqlite::Connection::open(&path)?;
        // as remit opens a new store: 16 KiB pages, WAL, every commit synced
        conn.execute_batch(
            "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
        )?;
        for migration in schema {
            conn.execute_batch(migration)?;
        }
        let txns = events.div_ceil(batch);
        let (wall, cpu) = (Instant::now(), thread_cpu()?);
        let mut seq = 0_i64;
        for _ in 0..txns {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO audit_events (seq, body, leaf_hash) VALUES (?, ?, ?)",
            )?;
            for _ in 0..batch {
                insert.execute(rusqlite::params![seq, body, [0x5a_u8; 32]])?;
                seq += 1;
            }
            drop(insert);
            conn.execute_batch("COMMIT")?;
        }
        let (cpu, wall) = (thread_cpu()? - cpu, wall.elapsed().as_secs_f64());
        let n = seq as f64;
        out.push(Floor {
            batch,
            cpu_per_event_us: cpu * 1e6 / n,
            wall_per_event_us: wall * 1e6 / n,
            cpu_per_txn_us: cpu * 1e6 / txns as f64,
        });
        drop(conn);
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
    }
    Ok(out)
}

/// The measurements as a markdown table.
pub(crate) fn table(floors: &[Floor]) -> String {
    let mut s = String::from(
        "| events per transaction (read calls) | CPU per event | CPU per read call (3 events) | wall per event | CPU per transaction |\n\
         |---|---|---|---|---|\n",
    );
    for f in floors {
        s += &format!(
            "| {} ({}) | {:.2} µs | {:.1} µs | {:.2} µs | {:.0} µs |\n",
            f.batch,
            f.batch / 3,
            f.cpu_per_event_us,
            f.cpu_per_event_us * 3.0,
            f.wall_per_event_us,
            f.cpu_per_txn_us
        );
    }
    s
}
