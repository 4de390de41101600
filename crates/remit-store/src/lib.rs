//! Durable state on SQLite or PostgreSQL, one contract (`Store`), group-committed audit appends.
//!
//! [`open`] picks the backend from the store URL and runs its migrations. Both backends
//! send audit appends and budget charges through one writer task per handle, which
//! drains everything waiting into a single transaction (group commit): one fsync (or
//! one PostgreSQL commit) answers many callers. Sequence numbers are assigned inside
//! that transaction under a lock (`BEGIN IMMEDIATE` on SQLite, an advisory lock on
//! PostgreSQL), so several handles or processes on one database still write one
//! gapless log.

mod budget;
mod error;
mod location;
#[macro_use]
mod pools;
mod postgres;
mod recent;
mod record;
mod sql;
mod sqlite;
mod sqlite_writer;
mod wal_backfill;
mod writer;

use remit_core::ports::{Store, StoreError};
use std::path::Path;
use std::sync::Arc;

pub use location::{Location, PostgresUrl};
pub use postgres::{ChargeClock, PgStore};
pub use sqlite::SqliteStore;

/// Opens the store a URL names (`sqlite://remit.db`, `postgres://user@host/db`) and migrates it.
///
/// A relative SQLite path is taken from `base_dir`; the file and its directory are
/// created when missing. Errors never contain a password.
pub async fn open(url: &str, base_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match Location::parse(url, base_dir)? {
        Location::Sqlite(path) => Ok(Arc::new(SqliteStore::open(&path).await?)),
        Location::Postgres(url) => Ok(Arc::new(PgStore::connect(url.expose_secret()).await?)),
    }
}
