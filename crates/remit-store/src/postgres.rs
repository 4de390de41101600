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
    /// the server's default.
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
            .options([("synchronous_commit", "on")]);
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
