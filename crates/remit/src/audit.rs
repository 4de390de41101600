//! `remit audit`: verify, show, tail, export and prove, straight from the store.

use crate::Exit;
use crate::registry::load_for;
use anyhow::Context;
use clap::Subcommand;
use remit_core::audit::checkpoint::Verifier;
use remit_core::audit::event::StoredEvent;
use remit_core::audit::proof::{InclusionProof, PathBuilder};
use remit_core::audit::verify::LogVerifier;
use remit_core::ports::Store;
use remit_core::register::{Register, Strictness};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events read per round trip.
const PAGE: u64 = 10_000;

/// Events read per round trip: [`PAGE`], or `REMIT_AUDIT_PAGE` (for tests of logs of many pages).
fn page_size() -> u64 {
    std::env::var("REMIT_AUDIT_PAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(PAGE)
}

/// A page of events being read.
type Reading = tokio::task::JoinHandle<Result<Vec<StoredEvent>, remit_core::ports::StoreError>>;

/// The log's events, page by page in order, read ahead of the page handed out.
///
/// The log ends at the first empty page past its size at the start. A short or empty page
/// before that is a gap (events deleted there), not the end: what follows is still read,
/// so `verify` reports the gap and `export` prints everything after it. After an empty
/// page, reading goes on from the next event there is, however far (one row stored at a
/// huge seq must not make the reader walk every empty page up to it).
struct Pages {
    store: Arc<dyn Store>,
    size_at_start: u64,
    page: u64,
    ahead: usize,
    next_from: u64,
    reading: std::collections::VecDeque<(u64, Reading)>,
}

impl Pages {
    /// Starts reading `ahead` pages (at least one) from the log's beginning.
    async fn open(store: &Arc<dyn Store>, ahead: usize) -> anyhow::Result<Self> {
        let mut pages = Self {
            store: Arc::clone(store),
            size_at_start: store.event_count().await?,
            page: page_size(),
            ahead: ahead.max(1),
            next_from: 0,
            reading: std::collections::VecDeque::new(),
        };
        for _ in 0..ahead.max(1) {
            pages.read_next();
        }
        Ok(pages)
    }

    /// The log's size (one past its highest sequence number) when reading began.
    fn size_at_start(&self) -> u64 {
        self.size_at_start
    }

    fn read_next(&mut self) {
        let (store, from, limit) = (Arc::clone(&self.store), self.next_from, self.page);
        let reading = tokio::spawn(async move { store.events(from, limit).await });
        self.reading.push_back((from, reading));
        self.next_from += self.page;
    }

    /// The next page (possibly empty, at a gap), or `None` at the end of the log.
    async fn next(&mut self) -> anyhow::Result<Option<Vec<StoredEvent>>> {
        let Some((from, reading)) = self.reading.pop_front() else {
            return Ok(None);
        };
        let batch = reading.await.context("the audit reader stopped")??;
        if batch.is_empty() && from >= self.size_at_start {
            self.stop();
            return Ok(None);
        }
        if batch.is_empty() {
            // a gap: the pages read ahead may be empty too; go on from the next event
            self.stop();
            let Some(next) = self.store.next_seq_from(from).await? else {
                return Ok(None);
            };
            self.next_from = next;
            for _ in 0..self.ahead {
                self.read_next();
            }
            return Ok(Some(batch));
        }
        self.read_next();
        Ok(Some(batch))
    }

    fn stop(&mut self) {
        for (_, reading) in self.reading.drain(..) {
            reading.abort();
        }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pages `audit verify` reads ahead of the one it hashes.
const READ_AHEAD: usize = 3;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the Merkle tree from the store and check every signed checkpoint.
    Verify {
        /// The verifier key (text or a file holding it); default: the `.pub` beside the audit key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Show events, newest last.
    Show {
        /// Only this call's events.
        #[arg(long)]
        call: Option<String>,
        /// Only this agent's events.
        #[arg(long)]
        agent: Option<String>,
        /// Only this action's events.
        #[arg(long)]
        action: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Print the newest events, then follow new ones.
    Tail {
        /// How many to print first.
        #[arg(short = 'n', default_value_t = 10)]
        lines: u64,
        /// Keep printing events as they arrive.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Export every event.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Print an inclusion proof for one event against the latest checkpoint, checkable offline.
    Prove {
        /// The event's sequence number (its id).
        event: u64,
    },
    /// Check a proof printed by `remit audit prove` against the operator's published key, without any store.
    ///
    /// `--key` is required: the proof carries a key of its own, and a proof checked only
    /// against that key shows nothing about who signed its checkpoint. The checkpoint must
    /// also be for this log: its origin must be `--origin`, or the key's name if none is
    /// given. Exit 0: the event is in the log signed by that key; 1: the proof failed;
    /// 2: no `--key`, or it or the proof could not be read.
    CheckProof {
        /// The proof file (`-` for stdin).
        file: PathBuf,
        /// The verifier key the operator published (text or a file holding it); required.
        #[arg(long)]
        key: String,
        /// The log's origin (`audit_origin`); default: the key's name (remit names a key it creates after the origin).
        #[arg(long)]
        origin: Option<String>,
    },
}

/// How `remit audit export` prints the log.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// One event a line: `{"seq":N,"event":{...}}`, the event as it was hashed.
    Jsonl,
}

async fn open(register: &Register) -> anyhow::Result<Arc<dyn Store>> {
    let url = register.gateway.store.expose();
    // reading the audit never creates a store: an empty one made where none was would
    // "verify" as a log with nothing in it
    if let Ok(remit_store::Location::Sqlite(file)) =
        remit_store::Location::parse(url, &register.gateway.base_dir)
        && !file.exists()
    {
        anyhow::bail!(
            "there is no audit store at `{}`: remit creates it when it first serves; check `store` in the register's [gateway] table, or give the register it was served with (-r FILE)",
            file.display()
        );
    }
    Ok(remit_store::open(url, &register.gateway.base_dir).await?)
}

fn read_key(register: Option<&Register>, key: Option<&str>) -> anyhow::Result<Verifier> {
    read_key_from(register, key).map(|(verifier, _)| verifier)
}

/// The verifier key, and where it came from (for the operator to compare with the one published).
fn read_key_from(
    register: Option<&Register>,
    key: Option<&str>,
) -> anyhow::Result<(Verifier, String)> {
    let (text, from) = match key {
        Some(k) if Path::new(k).exists() => (
            std::fs::read_to_string(k).with_context(|| format!("cannot read `{k}`"))?,
            format!("--key {k}"),
        ),
        Some(k) => (k.to_owned(), "--key (given as text)".to_owned()),
        None => {
            let register = register.context("give --key")?;
            let path = register.gateway.audit_key.with_extension("pub");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read the verifier key `{}`; give --key",
                    path.display()
                )
            })?;
            (
                text,
                format!(
                    "{}, the file beside the register's audit key (not --key)",
                    path.display()
                ),
            )
        }
    };
    let verifier =
        Verifier::from_text(text.trim()).map_err(|e| anyhow::anyhow!("bad verifier key: {e}"))?;
    Ok((verifier, from))
}

/// The key's C2SP key ID (key hash), in hex, as in its verifier text.
fn key_id_hex(verifier: &Verifier) -> String {
    verifier
        .key_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn line(e: &StoredEvent) -> String {
    format!("{{\"seq\":{},\"event\":{}}}", e.seq, e.body)
}

fn human(e: &StoredEvent) -> String {
    let v: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let detail = v.get("detail").cloned().unwrap_or(Value::Null);
    let what = match s("stage").as_str() {
        "proposed" => format!(
            "asked {} {}{}",
            detail.get("tool").and_then(Value::as_str).unwrap_or("?"),
            detail
                .get("args")
                .map(ToString::to_string)
                .unwrap_or_default(),
            detail
                .get("reason")
                .and_then(Value::as_str)
                .map(|r| format!(" because \"{r}\""))
                .unwrap_or_default()
        ),
        "refused" => detail
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        "executed" => format!(
            "{} {}",
            if detail.get("is_error") == Some(&Value::Bool(true)) {
                "tool error"
            } else {
                "done"
            },
            detail
                .get("result")
                .and_then(|r| r.get("structuredContent"))
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        _ => detail.to_string(),
    };
    // an agent's words (its reason, its arguments, a tool's result) are shown on this one
    // line: escaped, they cannot forge a line of the log or drive the terminal
    crate::registry::one_line(&format!(
        "{:>6}  {}  {:<9} {:<14} {:<26} {}",
        e.seq,
        s("time"),
        s("stage"),
        s("agent"),
        s("action"),
        what
    ))
}

fn matches(e: &StoredEvent, call: Option<&str>, agent: Option<&str>, action: Option<&str>) -> bool {
    if call.is_none() && agent.is_none() && action.is_none() {
        return true;
    }
    let v: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let is = |k: &str, want: Option<&str>| {
        want.is_none_or(|w| v.get(k).and_then(Value::as_str) == Some(w))
    };
    is("call", call) && is("agent", agent) && is("action", action)
}

pub(crate) async fn run(path: &Path, command: AuditCommand) -> anyhow::Result<Exit> {
    if let AuditCommand::CheckProof { file, key, origin } = &command {
        return check_proof(file, key, origin.as_deref());
    }
    let register = load_for(path, Strictness::Check)?;
    let store = open(&register).await?;
    match command {
        AuditCommand::Verify { key } => verify(&register, &store, key.as_deref()).await,
        AuditCommand::Show {
            call,
            agent,
            action,
            limit,
        } => {
            let mut shown = std::collections::VecDeque::new();
            let mut pages = Pages::open(&store, 1).await?;
            while let Some(batch) = pages.next().await? {
                for e in &batch {
                    if matches(e, call.as_deref(), agent.as_deref(), action.as_deref()) {
                        shown.push_back(human(e));
                        if shown.len() as u64 > limit {
                            shown.pop_front();
                        }
                    }
                }
            }
            for s in shown {
                crate::outln!("{s}");
            }
            Ok(Exit::Ok)
        }
        AuditCommand::Tail { lines, follow } => {
            let mut next = store.event_count().await?.saturating_sub(lines);
            loop {
                let batch = store.events(next, page_size()).await?;
                for e in &batch {
                    crate::outln!("{}", human(e));
                    next = e.seq + 1;
                }
                crate::out::stdout().flush()?;
                if !follow {
                    return Ok(Exit::Ok);
                }
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        AuditCommand::Export { format } => {
            let ExportFormat::Jsonl = format;
            let mut out = std::io::BufWriter::new(crate::out::stdout());
            let mut pages = Pages::open(&store, READ_AHEAD).await?;
            while let Some(batch) = pages.next().await? {
                for e in &batch {
                    writeln!(out, "{}", line(e))?;
                }
            }
            out.flush()?;
            Ok(Exit::Ok)
        }
        AuditCommand::Prove { event } => prove(&register, store.as_ref(), event).await,
        AuditCommand::CheckProof { .. } => Ok(Exit::Error),
    }
}

async fn verify(
    register: &Register,
    store: &Arc<dyn Store>,
    key: Option<&str>,
) -> anyhow::Result<Exit> {
    let (verifier, key_from) = read_key_from(Some(register), key)?;
    let mut checkpoints = store.checkpoints().await?;
    // the last checkpoint signed, kept beside the key, outside the store: checkpoints
    // deleted from the store (and the events they covered edited) still have to match it
    let anchor = remit_server::anchor_path(&register.gateway.audit_key);
    if let Ok(note) = std::fs::read_to_string(&anchor) {
        match verifier.verify(&note) {
            Ok(signed) => {
                if !checkpoints
                    .iter()
                    .any(|c| c.tree_size == signed.size && c.note == note)
                {
                    checkpoints.push(remit_core::audit::event::StoredCheckpoint {
                        tree_size: signed.size,
                        root: signed.root,
                        note,
                        time: format!("kept in {}", anchor.display()),
                    });
                    checkpoints.sort_by_key(|c| c.tree_size);
                }
            }
            Err(e) => crate::outln!(
                "note: {} is not a checkpoint signed by key {}: {e}",
                anchor.display(),
                verifier.name()
            ),
        }
    }
    let mut v = LogVerifier::new(&verifier, &register.gateway.audit_origin, &checkpoints);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut pages = Pages::open(store, READ_AHEAD).await?;
    let total = pages.size_at_start();
    while let Some(batch) = pages.next().await? {
        for e in &batch {
            v.push(e);
        }
        if total > 200_000 && last_report.elapsed() > Duration::from_secs(1) {
            let seen = v.events_seen();
            let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let eta = (total.saturating_sub(seen)) as f64 / rate.max(1.0);
            eprintln!(
                "verifying: {seen} of {total} events ({:.0}%), {rate:.0} events/s, about {eta:.0}s left",
                100.0 * seen as f64 / total as f64
            );
            last_report = Instant::now();
        }
    }
    let report = v.finish();
    let secs = started.elapsed().as_secs_f64();
    // rows below seq 0 are outside the tree: no page reads them, no checkpoint covers them
    let outside = store.events_below_zero().await?;
    let mut problems = Vec::new();
    if outside > 0 {
        problems.push(format!(
            "{outside} event row(s) stored below seq 0, outside the log: no checkpoint covers them"
        ));
    }
    problems.extend(report.problems.iter().map(ToString::to_string));
    // compare it with the key the operator published: a key file swapped along with the
    // checkpoints re-signed passes with it
    let key_line = format!(
        "verified with key `{}`, key ID {}, read from {key_from}",
        verifier.name(),
        key_id_hex(&verifier)
    );
    if problems.is_empty() {
        if report.checkpoints_checked == 0 {
            crate::out::verdict(Exit::Findings);
            crate::outln!(
                "audit log holds {} events but no signed checkpoint covers them yet: nothing could be verified",
                report.events
            );
            crate::outln!("{key_line}");
            return Ok(Exit::Findings);
        }
        crate::outln!(
            "audit log intact: {} events, {} of {} checkpoints verified against key {} ({:.0} events/s)",
            report.events,
            report.checkpoints_checked,
            checkpoints.len(),
            verifier.name(),
            report.events as f64 / secs.max(1e-9)
        );
        crate::outln!("{key_line}");
        let last = checkpoints.iter().map(|c| c.tree_size).max().unwrap_or(0);
        if last < report.events {
            crate::outln!(
                "note: the newest {} events are not yet under a signed checkpoint: nothing vouches for them yet",
                report.events - last
            );
        }
        Ok(Exit::Ok)
    } else {
        crate::out::verdict(Exit::Findings);
        crate::outln!(
            "audit log FAILED verification: {} problem(s)",
            problems.len()
        );
        for p in &problems {
            crate::outln!("  {p}");
        }
        if report.events_unchecked > 0 || report.checkpoints_skipped > 0 {
            crate::outln!(
                "after the first break, {} event(s) and {} checkpoint(s) were not checked against \
                 a signed root (each event's own hash and shape still were): a later edit among \
                 them shows no problem of its own; restore the log or explain the first problem, \
                 then verify again",
                report.events_unchecked,
                report.checkpoints_skipped
            );
        }
        crate::outln!("{key_line}");
        Ok(Exit::Findings)
    }
}

async fn prove(register: &Register, store: &dyn Store, event: u64) -> anyhow::Result<Exit> {
    let size = store.event_count().await?;
    anyhow::ensure!(
        event < size,
        "event {event} does not exist: the audit log holds {size} event(s){}",
        match size {
            0 => String::new(),
            1 => ", numbered 0".to_owned(),
            _ => format!(", numbered 0 to {}", size - 1),
        }
    );
    let verifier = read_key(Some(register), None)?;
    let cp = store
        .latest_checkpoint()
        .await?
        .context("no signed checkpoint yet; wait a second for the gateway to sign one")?;
    anyhow::ensure!(
        event < cp.tree_size,
        "event {event} is not yet under a signed checkpoint (latest covers {} events)",
        cp.tree_size
    );
    let mut builder =
        PathBuilder::inclusion(event, cp.tree_size).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut body = None;
    let mut from = 0;
    while from < cp.tree_size {
        let batch = store
            .events(from, page_size().min(cp.tree_size - from))
            .await?;
        anyhow::ensure!(
            !batch.is_empty(),
            "the store holds fewer events than its checkpoint"
        );
        for e in &batch {
            if e.seq == event {
                body = Some(e.body.clone());
            }
            builder.push(e.leaf_hash);
        }
        from += batch.len() as u64;
    }
    let proof = InclusionProof {
        body: body.with_context(|| format!("event {event} is not in the store (deleted?)"))?,
        index: event,
        tree_size: cp.tree_size,
        path: builder.finish().map_err(|e| anyhow::anyhow!("{e}"))?,
        checkpoint: cp.note,
        verifier: verifier.to_text(),
    };
    proof.check().map_err(|e| {
        anyhow::anyhow!("the proof does not check against the store's own checkpoint: {e}")
    })?;
    crate::outln!("{}", serde_json::to_string_pretty(&proof)?);
    Ok(Exit::Ok)
}

fn check_proof(file: &Path, key: &str, origin: Option<&str>) -> anyhow::Result<Exit> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?
    };
    let proof: InclusionProof =
        serde_json::from_str(&text).context("not a proof printed by `remit audit prove`")?;
    let trusted = read_key(None, Some(key))?;
    let origin = origin.unwrap_or(trusted.name());
    match proof.check_against(&trusted, origin) {
        Ok(()) => {
            crate::outln!(
                "proof ok: event {} is in the log `{origin}` of {} events signed by key {}",
                proof.index,
                proof.tree_size,
                trusted.name()
            );
            Ok(Exit::Ok)
        }
        Err(e) => {
            crate::out::verdict(Exit::Findings);
            crate::outln!("proof FAILED: {e}");
            Ok(Exit::Findings)
        }
    }
}
