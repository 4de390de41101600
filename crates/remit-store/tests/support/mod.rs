//! Databases for the contract tests: a SQLite file in a temp dir, or a fresh PostgreSQL database.

use remit_core::audit::event::{Event, Stage, StoredCheckpoint};
use remit_core::audit::tree::leaf_hash;
use remit_core::ports::{BudgetCharge, ChargeOutcome, Store};
use remit_store::{ChargeClock, PgStore, SqliteStore};
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where PostgreSQL is, unless `REMIT_TEST_POSTGRES` says otherwise.
pub(crate) const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Connections per PostgreSQL handle in tests; many tests share the server's 100.
const PG_CONNECTIONS: u32 = 3;

/// One database under test, shared by every handle a test opens on it.
#[derive(Clone)]
pub(crate) struct Db(Arc<Inner>);

enum Inner {
    Sqlite {
        dir: tempfile::TempDir,
        handles: Mutex<Vec<SqliteStore>>,
    },
    Postgres {
        admin: String,
        name: String,
        url: String,
        handles: Mutex<Vec<PgStore>>,
    },
}

impl Db {
    /// A fresh SQLite file in a temp dir.
    pub(crate) fn sqlite() -> Self {
        Self(Arc::new(Inner::Sqlite {
            dir: tempfile::tempdir().unwrap(),
            handles: Mutex::new(Vec::new()),
        }))
    }

    /// A fresh PostgreSQL database, or `None` (loudly) when PostgreSQL cannot be reached.
    ///
    /// With `CI=true` an unreachable PostgreSQL fails the test instead.
    pub(crate) async fn postgres(test: &str) -> Option<Self> {
        let admin =
            std::env::var("REMIT_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        let connected =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin)).await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return unreachable(test, &e.to_string()),
            Err(_) => return unreachable(test, "timed out"),
        };
        let name = remit_core::ids::fresh("remit_test");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = with_database(&admin, &name);
        Some(Self(Arc::new(Inner::Postgres {
            admin,
            name,
            url,
            handles: Mutex::new(Vec::new()),
        })))
    }

    /// Opens another handle on the database (another "replica").
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        match &*self.0 {
            Inner::Sqlite { dir, handles } => {
                let store = SqliteStore::open(&dir.path().join("remit.db"))
                    .await
                    .unwrap();
                handles.lock().unwrap().push(store.clone());
                Arc::new(store)
            }
            Inner::Postgres { url, handles, .. } => {
                // the tests set each charge's time; `remit serve` uses the database's clock
                let store = PgStore::connect_with_clock(url, PG_CONNECTIONS, ChargeClock::Caller)
                    .await
                    .unwrap();
                handles.lock().unwrap().push(store.clone());
                Arc::new(store)
            }
        }
    }

    /// Opens another handle on a PostgreSQL database stamping charges with the database's
    /// clock, as `remit serve` does; `None` for SQLite.
    pub(crate) async fn open_on_the_databases_clock(&self) -> Option<Arc<dyn Store>> {
        match &*self.0 {
            Inner::Sqlite { .. } => None,
            Inner::Postgres { url, handles, .. } => {
                let store = PgStore::connect_with(url, PG_CONNECTIONS).await.unwrap();
                handles.lock().unwrap().push(store.clone());
                Some(Arc::new(store))
            }
        }
    }

    /// Runs SQL on the database behind the store's back: the SQLite or the PostgreSQL text.
    pub(crate) async fn execute(&self, sqlite: &str, postgres: &str) {
        match &*self.0 {
            Inner::Sqlite { dir, .. } => {
                let options = SqliteConnectOptions::new().filename(dir.path().join("remit.db"));
                let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(sqlite.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
            Inner::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(postgres.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Brings the fresh database to migration 1's schema only, as remit 0.1.0 before the log
    /// kept bodies alone left it, and writes `events` there as that remit did.
    pub(crate) async fn as_first_written(&self, events: &[Event]) {
        static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
        static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
        match &*self.0 {
            Inner::Sqlite { dir, .. } => {
                let options = SqliteConnectOptions::new()
                    .filename(dir.path().join("remit.db"))
                    .create_if_missing(true);
                let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
                SQLITE.run_to(1, &mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Inner::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                POSTGRES.run_to(1, &mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
        let hex = |h: [u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        // the statement on either store, given how it writes a blob from its hex digits
        let rows = |blob: &dyn Fn(String) -> String| -> String {
            let values: Vec<String> = events
                .iter()
                .enumerate()
                .map(|(seq, e)| {
                    let body = String::from_utf8(e.canonical()).unwrap();
                    format!(
                        "({seq}, '{}', '{}', '{}', '{}', '{}', '{}', '{}', {})",
                        e.time,
                        e.stage.as_str(),
                        e.call.as_deref().unwrap_or(""),
                        e.run.as_deref().unwrap_or(""),
                        e.agent.as_deref().unwrap_or(""),
                        e.action.as_deref().unwrap_or(""),
                        body.replace('\'', "''"),
                        blob(hex(leaf_hash(body.as_bytes())))
                    )
                })
                .collect();
            format!(
                "INSERT INTO audit_events \
                 (seq, time, stage, call, run, agent, action, body, leaf_hash) VALUES {}",
                values.join(", ")
            )
        };
        self.execute(
            &rows(&|h| format!("X'{h}'")),
            &rows(&|h| format!("'\\x{h}'::bytea")),
        )
        .await;
    }

    /// Closes every handle opened on the database.
    pub(crate) async fn close_all(&self) {
        match &*self.0 {
            Inner::Sqlite { handles, .. } => {
                let handles = handles.lock().unwrap().clone();
                for store in handles {
                    store.close().await;
                }
            }
            Inner::Postgres { handles, .. } => {
                let handles = handles.lock().unwrap().clone();
                for store in handles {
                    store.close().await;
                }
            }
        }
    }

    /// Drops the PostgreSQL database under the open handles' feet; `false` on SQLite.
    pub(crate) async fn drop_database(&self) -> bool {
        match &*self.0 {
            Inner::Sqlite { .. } => false,
            Inner::Postgres { admin, name, .. } => {
                drop_database(admin, name).await;
                true
            }
        }
    }

    /// Closes the handles and drops the PostgreSQL database.
    pub(crate) async fn finish(&self) {
        self.close_all().await;
        if let Inner::Postgres { admin, name, .. } = &*self.0 {
            drop_database(admin, name).await;
        }
    }
}

async fn drop_database(admin: &str, name: &str) {
    let mut conn = PgConnection::connect(admin).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
}

fn unreachable(test: &str, why: &str) -> Option<Db> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let message = format!(
        "postgres is unreachable at REMIT_TEST_POSTGRES (default {DEFAULT_POSTGRES}): {why}"
    );
    assert!(!ci, "{test}: {message}; CI=true, so this fails");
    eprintln!("\n!!!!! SKIPPED {test} on postgres: {message} !!!!!\n");
    None
}

/// The same URL naming another database (keeps user, host, port and `?options`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A realistic event, about 300 bytes once canonical, numbered `i`.
pub(crate) fn event(i: usize) -> Event {
    Event {
        time: "2026-08-01T12:00:00.000Z".into(),
        stage: Stage::Proposed,
        call: Some(format!("call_{i:08}").into()),
        run: Some("run_7f3a".into()),
        agent: Some("support-bot".into()),
        action: Some("billing.issue_refund".into()),
        register: Some("sha256:4be1c0de".into()),
        detail: json!({
            "args": { "customer": format!("cus_{i:06}"), "amount": 42.5, "currency": "EUR" },
            "reason": "customer was charged twice for order 1182; refund the duplicate",
        })
        .into(),
    }
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://u@h:5432/test", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

/// Runs one contract test on a database, then drops it, even when the test panics.
pub(crate) async fn run<F, Fut>(db: Db, test: F)
where
    F: FnOnce(Arc<dyn Store>, Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = db.open().await;
    let outcome = tokio::spawn(test(store, db.clone())).await;
    db.finish().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// Appends from `tasks` tasks at once, each `per_task(i)` events; returns each task's events and seqs.
pub(crate) async fn append_concurrently(
    stores: &[Arc<dyn Store>],
    tasks: usize,
) -> Vec<(Vec<Event>, Vec<u64>)> {
    let mut handles = Vec::new();
    for i in 0..tasks {
        let store = Arc::clone(&stores[i % stores.len()]);
        handles.push(tokio::spawn(async move {
            let events: Vec<Event> = (0..1 + i % 3).map(|k| event(i * 10 + k)).collect();
            let seqs = store.append(&events).await.unwrap();
            (events, seqs)
        }));
    }
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// Every seq from 0 once, each append's seqs consecutive, each body where its seq says.
pub(crate) async fn assert_one_gapless_log(store: &dyn Store, appended: &[(Vec<Event>, Vec<u64>)]) {
    let total: usize = appended.iter().map(|(events, _)| events.len()).sum();
    let mut seen = BTreeSet::new();
    for (events, seqs) in appended {
        assert_eq!(seqs.len(), events.len());
        for pair in seqs.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "one append's seqs are consecutive");
        }
        for seq in seqs {
            assert!(seen.insert(*seq), "seq {seq} given twice");
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (0..total as u64).collect::<Vec<_>>()
    );
    assert_eq!(store.event_count().await.unwrap(), total as u64);
    let stored = store.events(0, total as u64 + 10).await.unwrap();
    assert_eq!(stored.len(), total);
    for (events, seqs) in appended {
        for (event, seq) in events.iter().zip(seqs) {
            let row = &stored[*seq as usize];
            assert_eq!(row.seq, *seq);
            assert_eq!(row.body.as_bytes(), event.canonical().as_slice());
            assert_eq!(row.leaf_hash, leaf_hash(row.body.as_bytes()));
        }
    }
}

/// A checkpoint whose root is `root` repeated.
pub(crate) fn checkpoint(tree_size: u64, root: u8, note: &str) -> StoredCheckpoint {
    StoredCheckpoint {
        tree_size,
        root: [root; 32],
        note: note.to_owned(),
        time: "2026-08-01T12:00:00Z".to_owned(),
    }
}

/// A budget charge.
pub(crate) fn budget(key: &str, window_ms: i64, amount: f64, limit: f64) -> BudgetCharge {
    BudgetCharge {
        key: key.to_owned(),
        window_ms,
        amount,
        limit,
    }
}

/// An hour in milliseconds.
pub(crate) const HOUR: i64 = 3_600_000;
/// Some instant in 2026, epoch milliseconds.
pub(crate) const T0: i64 = 1_785_000_000_000;

/// Charges 1 against a limit of 20, `n` times at once over the handles; returns how many fit.
pub(crate) async fn charge_concurrently(stores: &[Arc<dyn Store>], n: usize) -> usize {
    let mut handles = Vec::new();
    for i in 0..n {
        let store = Arc::clone(&stores[i % stores.len()]);
        handles.push(tokio::spawn(async move {
            let charge = [budget("bot/billing.issue_refund/0", HOUR, 1.0, 20.0)];
            store.charge(&charge, T0 + i as i64).await.unwrap()
        }));
    }
    let mut charged = 0;
    for handle in handles {
        match handle.await.unwrap() {
            ChargeOutcome::Charged => charged += 1,
            ChargeOutcome::Exceeded { used, .. } => assert_eq!(used, 20.0),
        }
    }
    charged
}
