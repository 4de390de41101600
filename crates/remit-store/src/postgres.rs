//! The PostgreSQL store: several remit replicas share one database.
//!
//! Each batch transaction takes transaction-scoped advisory locks, sorted so two
//! replicas never wait on each other in a cycle: one for the audit log when the batch
//! appends (then reads `max(seq)` in a fresh statement, so seqs stay gapless across
//! replicas), and one per budget key it charges.
//!
//! Budget charges are stamped with the database's clock, read after the locks, not with
//! the replica's: a replica whose clock ran ahead would otherwise see the others' recent
//! charges as already out of its window (and one that lags would stamp charges that leave
//! the others' windows early), so replicas with clocks apart could together spend a budget
//! more than once ([`ChargeClock`]).

use crate::budget;
use crate::error::store_error;
use crate::location::redacted;
use crate::record::{self, to_i64};
use crate::sql;
use crate::sqlite::same_root;
use crate::writer::{Batch, Committed, Ledger, Writer};
use async_trait::async_trait;
use remit_core::audit::event::{Event, StoredCheckpoint, StoredEvent};
use remit_core::ports::{
    BudgetCharge, ChargeOutcome, FreezeTarget, Store, StoreError, StoreErrorKind,
};
use sqlx::PgConnection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per handle: the writer's one plus reads.
const CONNECTIONS: u32 = 8;

/// How long a call waits for a connection (or to open one) before the store counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a session of remit's may sit idle inside a transaction before the server ends it.
///
/// remit never leaves a transaction idle: a batch's statements follow each other with
/// nothing between them but building the next one (no upstream call, no wait on a caller),
/// so its longest idle moment is the writer task's scheduling, milliseconds. A replica
/// that stops mid-transaction (paused, its host gone) held the audit log's advisory lock
/// until PostgreSQL noticed, up to ~2 h with its default TCP keepalive, and no replica
/// could write meanwhile; now the server ends its session, and its locks, after this.
pub(crate) const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);

/// How long one statement waits for a lock (the batch's advisory locks) before it fails:
/// longer than [`IDLE_IN_TRANSACTION`], so a stalled holder is ended first, and shorter
/// than the writer's commit timeout, so the wait ends in the database with the error, not
/// with a backend left waiting after its caller gave up.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// The server's TCP keepalive on remit's sessions: first probe after this much silence,
/// then every [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_COUNT`] unanswered probes end the session
/// (about 25 s for a client whose host is gone; the server's defaults are the kernel's, ~2 h).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Between two keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered keepalive probes before the server drops the connection.
const KEEPALIVE_COUNT: u32 = 3;

/// The settings every session of remit's sets when it connects, whatever the server's defaults.
fn session_settings() -> [(&'static str, String); 6] {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let s = |d: Duration| d.as_secs().to_string();
    [
        ("synchronous_commit", "on".to_owned()),
        (
            "idle_in_transaction_session_timeout",
            ms(IDLE_IN_TRANSACTION),
        ),
        ("lock_timeout", ms(LOCK_TIMEOUT)),
        ("tcp_keepalives_idle", s(KEEPALIVE_IDLE)),
        ("tcp_keepalives_interval", s(KEEPALIVE_INTERVAL)),
        ("tcp_keepalives_count", KEEPALIVE_COUNT.to_string()),
    ]
}

/// The database's clock now, in milliseconds since the Unix epoch (`clock_timestamp`, not
/// the transaction's start: the batch may have waited for its locks).
const DB_NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Why a connection to the database cannot be opened, in sqlx's words (which name no
/// password), after a pool gave up with only "pool timed out".
async fn why_not(options: &PgConnectOptions) -> String {
    use sqlx::ConnectOptions;
    // short: the pool has waited its ACQUIRE_TIMEOUT already
    let wait = Duration::from_secs(3);
    match tokio::time::timeout(wait, options.connect()).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => format!(
            "no connection within {}s (one opens now)",
            ACQUIRE_TIMEOUT.as_secs()
        ),
        Err(_) => format!(
            "no answer within {}s (the host may be down, or a firewall drops the connection)",
            ACQUIRE_TIMEOUT.as_secs() + wait.as_secs()
        ),
    }
}

/// Whose clock stamps budget charges, and so decides which charges are in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeClock {
    /// The database's, one clock for every replica (what `remit serve` uses).
    Database,
    /// The time each charge comes with (from its replica's clock): for tests that set
    /// the time, and a single replica.
    Caller,
}

/// Inserts a whole batch of events in one statement.
const INSERT_EVENTS: &str = "INSERT INTO audit_events (seq, body, leaf_hash) \
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])";

/// Takes the batch's advisory locks in the order given (sorted by the caller).
const LOCK: &str = "SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS id";

/// A remit store in a PostgreSQL database, shareable by several replicas.
#[derive(Clone)]
pub struct PgStore {
    shown: Arc<str>,
    pool: PgPool,
    writer: Writer,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database a `postgres://` URL names and migrates it.
    ///
    /// Commits are durable: the connection sets `synchronous_commit = on` whatever
    /// the server's default. A session idle in a transaction for 5 s is ended by the server,
    /// a lock waited for 15 s fails, and the server probes the connection after 10 s of
    /// silence (`idle_in_transaction_session_timeout`, `lock_timeout`, `tcp_keepalives_*`):
    /// a replica that stops mid-transaction cannot hold the others' writes.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, CONNECTIONS).await
    }

    /// Like [`PgStore::connect`], with at most `connections` connections (at least 2).
    pub async fn connect_with(url: &str, connections: u32) -> Result<Self, StoreError> {
        Self::connect_with_clock(url, connections, ChargeClock::Database).await
    }

    /// Like [`PgStore::connect_with`], with budget charges stamped by `clock`.
    pub async fn connect_with_clock(
        url: &str,
        connections: u32,
        clock: ChargeClock,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| {
                StoreError::new(
                    StoreErrorKind::Other,
                    "invalid postgres url: expected `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`",
                )
            })?
            .application_name("remit")
            .options(session_settings());
        let shown: Arc<str> = redacted(&options).into();
        let pool = match PgPoolOptions::new()
            .max_connections(connections.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(e) => {
                let cause = match e {
                    // the pool retries until its deadline and then forgets why: one more
                    // attempt says (connection refused, no such host, a wrong password)
                    sqlx::Error::PoolTimedOut => why_not(&options).await,
                    e => e.to_string(),
                };
                return Err(StoreError::unavailable(format!(
                    "cannot connect to the postgres store `{shown}`: {cause}"
                )));
            }
        };
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("cannot migrate the postgres store `{shown}`: {e}"),
            )
        })?;
        let writer = Writer::start(PgLedger {
            pool: pool.clone(),
            clock,
        });
        Ok(Self {
            shown,
            pool,
            writer,
        })
    }

    /// The database, as `postgres://user@host:port/database` (never with a password).
    pub fn database(&self) -> &str {
        &self.shown
    }

    /// Closes every connection of every clone; later calls fail as unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The events with seq in `start..end`.
    async fn events_between(&self, start: i64, end: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(sql::EVENTS)
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error("cannot read audit events", &e))?;
        rows.into_iter()
            .map(|(seq, body, hash)| record::stored_event(seq, body, &hash))
            .collect()
    }

    /// Seq and leaf hash of the events with seq in `start..end`.
    async fn leaf_hashes_between(
        &self,
        start: i64,
        end: i64,
    ) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(sql::LEAF_HASHES)
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error("cannot read audit leaf hashes", &e))?;
        rows.into_iter()
            .map(|(seq, hash)| record::leaf(seq, &hash))
            .collect()
    }
}

store_over_pools!(PgStore, reads: pool, writes: pool, name: "postgres");

/// The advisory lock of the audit log.
fn audit_lock() -> i64 {
    lock_id(b"remit/audit", b"")
}

/// The advisory lock of one budget key.
fn budget_lock(key: &str) -> i64 {
    lock_id(b"remit/budget/", key.as_bytes())
}

/// FNV-1a (64-bit) of the name: stable across processes, versions and platforms.
fn lock_id(prefix: &[u8], name: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in prefix.iter().chain(name) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_be_bytes(hash.to_be_bytes())
}

/// Commits batches on one pooled connection at a time.
#[derive(Debug)]
struct PgLedger {
    pool: PgPool,
    clock: ChargeClock,
}

#[async_trait]
impl Ledger for PgLedger {
    async fn commit(&self, batch: &Batch<'_>) -> Result<Committed, StoreError> {
        let doing = "cannot commit audit events";
        let mut locks: Vec<i64> = batch
            .charges
            .iter()
            .flat_map(|(charges, _)| charges.iter().map(|c| budget_lock(&c.key)))
            .collect();
        if batch.may_append() {
            locks.push(audit_lock());
        }
        locks.sort_unstable();
        locks.dedup();

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| store_error(doing, &e))?;
        sqlx::query(LOCK)
            .bind(&locks)
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error(doing, &e))?;
        // after the locks: whoever charged these keys before has committed, at an earlier time
        let db_now_ms: Option<i64> =
            if self.clock == ChargeClock::Database && !batch.charges.is_empty() {
                Some(
                    sqlx::query_scalar(DB_NOW_MS)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| store_error("cannot read the database's clock", &e))?,
                )
            } else {
                None
            };
        let mut outcomes = Vec::with_capacity(batch.charges.len());
        for (charges, now_ms) in &batch.charges {
            outcomes.push(
                budget::charge(&mut *tx, charges, db_now_ms.unwrap_or(*now_ms))
                    .await
                    .map_err(|e| store_error("cannot charge budgets", &e))?,
            );
        }
        let events = batch.events(&outcomes);
        let first_seq = if events.is_empty() {
            0
        } else {
            // A statement of its own, after the lock: its snapshot sees every seq
            // committed by whoever held the lock before.
            let next: i64 = sqlx::query_scalar(sql::NEXT_SEQ)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| store_error(doing, &e))?;
            insert_events(&mut tx, next, &events)
                .await
                .map_err(|e| store_error(doing, &e))?;
            u64::try_from(next).map_err(|_| record::corrupt("the audit log has a negative seq"))?
        };
        tx.commit().await.map_err(|e| store_error(doing, &e))?;
        Ok(Committed {
            first_seq,
            charges: outcomes,
        })
    }
}

async fn insert_events(
    conn: &mut PgConnection,
    first_seq: i64,
    rows: &[&record::EventRow],
) -> Result<(), sqlx::Error> {
    let seqs: Vec<i64> = (first_seq..).take(rows.len()).collect();
    sqlx::query(INSERT_EVENTS)
        .bind(seqs)
        .bind(rows.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| &r.leaf_hash[..]).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

impl budget::ChargeTable for PgConnection {
    type Error = sqlx::Error;

    async fn last_charge(&mut self, key: &str) -> Result<Option<(i64, f64)>, sqlx::Error> {
        sqlx::query_as(sql::LAST_CHARGE)
            .bind(key)
            .fetch_optional(self)
            .await
    }

    async fn base_cum(&mut self, key: &str, since_ms: i64) -> Result<Option<f64>, sqlx::Error> {
        sqlx::query_scalar(sql::BASE_CUM)
            .bind(key)
            .bind(since_ms)
            .fetch_optional(self)
            .await
    }

    async fn first_reaching(&mut self, key: &str, need: f64) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(sql::FIRST_REACHING)
            .bind(key)
            .bind(need)
            .fetch_optional(self)
            .await
    }

    async fn record(
        &mut self,
        key: &str,
        (time_ms, amount, cum): (i64, f64, f64),
        prune_before_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql::INSERT_CHARGE)
            .bind(key)
            .bind(time_ms)
            .bind(amount)
            .bind(cum)
            .execute(&mut *self)
            .await?;
        sqlx::query(sql::PRUNE_CHARGES)
            .bind(key)
            .bind(prune_before_ms)
            .execute(self)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable() {
        // FNV-1a of the empty input is its offset basis.
        assert_eq!(
            lock_id(b"", b""),
            i64::from_be_bytes(0xcbf2_9ce4_8422_2325u64.to_be_bytes())
        );
        assert_ne!(budget_lock("a"), budget_lock("b"));
        assert_ne!(audit_lock(), budget_lock(""));
    }

    use remit_core::audit::event::Stage;
    use sqlx::{AssertSqlSafe, Connection};
    use std::time::Instant;

    #[test]
    fn a_stalled_holder_is_ended_before_a_waiter_gives_up_and_before_the_commit_times_out() {
        assert!(IDLE_IN_TRANSACTION < LOCK_TIMEOUT);
        assert!(LOCK_TIMEOUT < crate::writer::COMMIT_TIMEOUT);
    }

    /// A fresh database on the test server (`REMIT_TEST_POSTGRES`), dropped by [`TestDb::drop_it`].
    struct TestDb {
        admin: String,
        name: String,
        url: String,
    }

    impl TestDb {
        /// `None` (skipped, loudly) when the server is unreachable, unless `CI=true`.
        async fn new(test: &str) -> Option<Self> {
            let admin = std::env::var("REMIT_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
            let connected =
                tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin)).await;
            let mut conn = match connected {
                Ok(Ok(conn)) => conn,
                other => {
                    let why = format!("postgres is unreachable at {admin}: {other:?}");
                    assert!(
                        !std::env::var("CI").is_ok_and(|v| v == "true"),
                        "{test}: {why}; CI=true, so this fails"
                    );
                    eprintln!("\n!!!!! SKIPPED {test}: {why} !!!!!\n");
                    return None;
                }
            };
            let name = remit_core::ids::fresh("remit_test");
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await
                .unwrap();
            let _ = conn.close().await;
            let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
            let (server, _) = base.rsplit_once('/').unwrap();
            let url = match query {
                "" => format!("{server}/{name}"),
                q => format!("{server}/{name}?{q}"),
            };
            Some(Self { admin, name, url })
        }

        async fn drop_it(self) {
            let mut conn = PgConnection::connect(&self.admin).await.unwrap();
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await
            .unwrap();
            let _ = conn.close().await;
        }
    }

    fn event(i: usize) -> Event {
        Event {
            time: "2026-08-01T12:00:00.000Z".into(),
            stage: Stage::Proposed,
            call: Some(format!("call_{i:08}").into()),
            run: None,
            agent: Some("support-bot".into()),
            action: Some("billing.issue_refund".into()),
            register: None,
            detail: serde_json::json!({ "args": { "amount": i } }).into(),
        }
    }

    /// Every session of a store shows the settings it connects with.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stores_sessions_end_idle_transactions_time_out_lock_waits_and_probe_the_client() {
        let Some(db) = TestDb::new("a_stores_sessions_end_idle_transactions").await else {
            return;
        };
        let store = PgStore::connect_with(&db.url, 2).await.unwrap();
        let mut shown = Vec::new();
        for name in [
            "idle_in_transaction_session_timeout",
            "lock_timeout",
            "synchronous_commit",
            "tcp_keepalives_idle",
            "tcp_keepalives_interval",
            "tcp_keepalives_count",
        ] {
            let value: String = sqlx::query_scalar(AssertSqlSafe(format!("SHOW {name}")))
                .fetch_one(&store.pool)
                .await
                .unwrap();
            shown.push((name, value));
        }
        store.close().await;
        db.drop_it().await;
        assert_eq!(
            shown,
            [
                ("idle_in_transaction_session_timeout", "5s".to_owned()),
                ("lock_timeout", "15s".to_owned()),
                ("synchronous_commit", "on".to_owned()),
                ("tcp_keepalives_idle", "10".to_owned()),
                ("tcp_keepalives_interval", "5".to_owned()),
                ("tcp_keepalives_count", "3".to_owned()),
            ]
        );
    }

    /// A replica that stops in the middle of its transaction, holding the audit log's lock
    /// (paused, or its host gone with the connection left open), holds another replica's
    /// append for seconds, not until its commit times out after 30 s (and the stalled
    /// replica's backend sat `idle in transaction` for up to ~2 h); the stalled replica's
    /// own store works again once it resumes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_stalled_holding_the_audit_lock_holds_the_others_appends_for_seconds_only() {
        let Some(db) = TestDb::new("a_replica_stalled_holding_the_audit_lock").await else {
            return;
        };
        let stalled = PgStore::connect_with(&db.url, 2).await.unwrap();
        let other = PgStore::connect_with(&db.url, 2).await.unwrap();
        // what its writer does first in a batch that appends, then nothing more
        let mut tx = stalled.pool.begin().await.unwrap();
        sqlx::query(LOCK)
            .bind(vec![audit_lock()])
            .execute(&mut *tx)
            .await
            .unwrap();
        let started = Instant::now();
        let appended =
            tokio::time::timeout(Duration::from_secs(14), other.append(&[event(0)])).await;
        let waited = started.elapsed();
        let committed = tx.commit().await;
        // resumed: its pool drops the ended session and opens another
        let again = stalled.append(&[event(1)]).await;
        stalled.close().await;
        other.close().await;
        db.drop_it().await;
        assert!(
            matches!(appended, Ok(Ok(ref seqs)) if seqs == &[0]),
            "the other replica's append after {waited:?}: {appended:?}"
        );
        assert!(
            waited >= IDLE_IN_TRANSACTION - Duration::from_millis(500),
            "it did wait for the lock: {waited:?}"
        );
        assert!(
            committed.is_err(),
            "the stalled transaction was ended, not committed"
        );
        assert_eq!(again.unwrap(), [1]);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_reported_with_its_cause_and_without_the_password() {
        // nothing listens on port 1
        let error = PgStore::connect("postgres://remit:pw-secret-1@127.0.0.1:1/remit")
            .await
            .err()
            .unwrap_or_else(|| panic!("connected to port 1"));
        let message = error.message.to_lowercase();
        assert!(message.contains("connection refused"), "{message}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(!message.contains("pw-secret-1"), "{message}");
        assert!(!message.contains("pool timed out"), "{message}");
    }
}
