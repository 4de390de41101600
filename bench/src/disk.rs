//! The disk's floor: how long one durable write takes, back to back and after short idle gaps.
//!
//! remit makes every call's audit events durable before it answers, so no call can be
//! faster than one durable write on the store's disk. This measures that write on its
//! own, shaped like a SQLite WAL commit of one call (two 4,120-byte frames appended,
//! then synced, as SQLite does with `synchronous=FULL`), first back to back and then
//! with the idle gap that one client's calls leave between commits. Some virtual disks
//! answer a flush that follows an idle moment many times slower than one in a stream.
//! Both syncs are measured: `fsync` also commits the file's metadata (its mtime changes
//! with every write), `fdatasync` only what reading the data back needs.
//!
//! It also measures what a durable write costs the CPU (the thread's own time on a core,
//! from `/proc/thread-self/schedstat`): in a virtual machine each request to the disk is
//! a trap to the host, and the time the core spends on it is time no call can use.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// One WAL frame: a 24-byte header and a 4,096-byte page.
const FRAME: usize = 24 + 4_096;

/// Where the file wraps, as a WAL does after a checkpoint (SQLite's default is 1,000 pages).
const WRAP: u64 = 4 * 1024 * 1024;

/// How a write is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sync {
    /// `fsync`: data and all metadata.
    All,
    /// `fdatasync`: data and the metadata needed to read it (size), not times.
    Data,
}

/// Durable-write latencies for one idle gap.
#[derive(Debug)]
pub(crate) struct Floor {
    /// The sync call.
    pub(crate) sync: Sync,
    /// The idle gap asked for between writes.
    pub(crate) gap: Duration,
    /// Writes measured.
    pub(crate) writes: usize,
    /// Median, 90th and 99th percentile of write + fsync, in µs.
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    /// The thread's CPU time per write + sync, in µs (`None`: the kernel does not say).
    pub(crate) cpu_us: Option<f64>,
}

/// The calling thread's time on a core so far, in ns (Linux's `schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Measures write + sync in `dir` for `secs` seconds per gap and sync call.
pub(crate) fn measure(dir: &Path, gaps: &[Duration], secs: f64) -> anyhow::Result<Vec<Floor>> {
    let path = dir.join("remit-bench-disk.bin");
    let frames = vec![0x5a_u8; 2 * FRAME];
    let mut out = Vec::new();
    for (sync, &gap) in [Sync::All, Sync::Data]
        .into_iter()
        .flat_map(|s| gaps.iter().map(move |g| (s, g)))
    {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let mut offset = 32;
        let mut took = Vec::new();
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let cpu_before = thread_cpu_ns();
        while Instant::now() < until {
            let t = Instant::now();
            file.write_all_at(&frames, offset)?;
            match sync {
                Sync::All => file.sync_all()?,
                Sync::Data => file.sync_data()?,
            }
            took.push(t.elapsed().as_secs_f64() * 1e6);
            offset += frames.len() as u64;
            if offset > WRAP {
                offset = 32;
            }
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
        let cpu_us = cpu_before.zip(thread_cpu_ns()).map(|(before, after)| {
            after.saturating_sub(before) as f64 / 1e3 / took.len().max(1) as f64
        });
        took.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1));
            took.get(i).copied().unwrap_or(f64::NAN)
        };
        out.push(Floor {
            sync,
            gap,
            writes: took.len(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            cpu_us,
        });
    }
    std::fs::remove_file(&path)?;
    Ok(out)
}

/// The measurements as a markdown table.
pub(crate) fn table(floors: &[Floor]) -> String {
    let mut s = String::from(
        "| sync | idle gap before each write | writes | p50 | p90 | p99 | CPU per write |\n|---|---|---|---|---|---|---|\n",
    );
    for f in floors {
        s += &format!(
            "| {} | {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {} |\n",
            match f.sync {
                Sync::All => "`fsync`",
                Sync::Data => "`fdatasync`",
            },
            if f.gap.is_zero() {
                "none (back to back)".to_owned()
            } else {
                format!("{} µs", f.gap.as_micros())
            },
            f.writes,
            f.p50_us,
            f.p90_us,
            f.p99_us,
            f.cpu_us
                .map_or_else(|| "—".to_owned(), |us| format!("{us:.0} µs"))
        );
    }
    s
}
