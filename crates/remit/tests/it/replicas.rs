//! remit on PostgreSQL: two `remit serve` processes share budgets, the kill switch and one
//! audit log; a database that goes away fails calls closed, and remit heals when it returns.

use crate::support::{OTHER_TOKEN, Remit, TOKEN, fresh_postgres, seqs_of};
use serde_json::json;

fn register_on(url: &str, key: &std::path::Path, port: u16) -> String {
    crate::support::register(crate::support::STANDARD, port).replace(
        "store = \"sqlite://remit.db\"",
        &format!("store = \"{url}\"\naudit_key = \"{}\"", key.display()),
    )
}

#[test]
fn two_replicas_on_postgres_share_budgets_freezes_and_one_log() {
    let Some(url) = fresh_postgres() else { return };
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("shared-audit.key");
    let a = Remit::start_with(|port| register_on(&url, &key, port));
    let b = Remit::start_with(|port| register_on(&url, &key, port));

    // budget: 3 refunds an hour for the agent, whichever replica it reaches
    let refund = json!({ "charge_id": "ch_003", "amount": 5, "reason": "x" });
    assert_eq!(a.call("billing.issue_refund", refund.clone()).0, 200);
    assert_eq!(b.call("billing.issue_refund", refund.clone()).0, 200);
    assert_eq!(a.call("billing.issue_refund", refund.clone()).0, 200);
    let (status, body) = b.call("billing.issue_refund", refund);
    assert_eq!(
        status, 429,
        "the second replica did not see the first one's charges: {body}"
    );

    // kill switch: frozen through one, refused by the other within a second
    let out = a.command(&["freeze", "other-bot"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (status, body) = b.call_as(
        OTHER_TOKEN,
        "billing.list_charges",
        &json!({ "customer": "cus_001" }),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "frozen");

    // one audit log, gapless, verified from either side
    for i in 0..5 {
        let r = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            r.call("billing.get_customer", json!({ "id": "cus_001" })).0,
            200
        );
    }
    a.wait_for_checkpoint();
    b.wait_for_checkpoint();
    let (code, out, err) = b.audit(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, export, _) = a.audit(&["export", "--format", "jsonl"]);
    let seqs = seqs_of(&export);
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let _ = TOKEN;
}

/// Runs SQL on the server's maintenance connection (the test database's own is what goes away).
fn on_server(url: &str, sql: &str) {
    let base = format!("{}/postgres", url.rsplit_once('/').unwrap().0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap();
    });
}

#[test]
fn a_database_that_goes_away_fails_calls_closed_and_remit_heals_when_it_returns() {
    let Some(url) = fresh_postgres() else { return };
    let name = url.rsplit_once('/').unwrap().1.to_owned();
    let keys = tempfile::tempdir().unwrap();
    let r = Remit::start_with(|port| register_on(&url, &keys.path().join("audit.key"), port));
    let read = json!({ "id": "cus_001" });
    assert_eq!(r.call("billing.get_customer", read.clone()).0, 200);

    // the database goes away: no new connection is allowed and every open one is cut
    on_server(
        &url,
        &format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ),
    );
    let refused = crate::support::assert_calls_fail_closed(&r);
    assert!(
        !refused.to_string().contains("postgres://"),
        "the store's address reached the agent: {refused}"
    );
    let health = r.client.get(r.url("/health")).send().unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let health: serde_json::Value = health.json().unwrap();
    assert_eq!(health["store"]["ok"], json!(false), "{health}");

    // it comes back: remit reconnects by itself, and its log is whole
    on_server(
        &url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true;"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = r.call("billing.get_customer", read.clone());
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "remit did not recover: {status} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(r.health()["store"]["ok"], json!(true));
    r.wait_for_checkpoint();
    let (code, out, err) = r.audit(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        r.stages_of("billing.issue_refund").is_empty(),
        "the refused write left events behind"
    );
}

/// The advisory lock under which the PostgreSQL store appends to the audit log (FNV-1a of
/// `remit/audit`, as `remit-store` computes it).
const AUDIT_LOCK: i64 = -2_770_287_007_141_832_330;

/// Holds the audit log's lock from another connection until `release` is sent, as a slow or
/// busy database would: every append and write-ahead charge waits meanwhile.
fn hold_the_audit_lock(
    url: &str,
    release: std::sync::mpsc::Receiver<()>,
) -> (std::thread::JoinHandle<()>, std::sync::mpsc::Receiver<()>) {
    let url = url.to_owned();
    let (held, is_held) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = c.begin().await.unwrap();
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(AUDIT_LOCK)
                .execute(&mut *tx)
                .await
                .unwrap();
            held.send(()).unwrap();
            tokio::task::spawn_blocking(move || release.recv())
                .await
                .unwrap()
                .unwrap();
            tx.commit().await.unwrap();
        });
    });
    (thread, is_held)
}

#[test]
fn a_write_held_up_by_a_slow_store_does_not_run_after_a_freeze() {
    let Some(url) = fresh_postgres() else { return };
    let keys = tempfile::tempdir().unwrap();
    let r = Remit::start_with(|port| register_on(&url, &keys.path().join("audit.key"), port));

    // the database is slow: the write-ahead commit of the next write waits
    let (release, released) = std::sync::mpsc::channel();
    let (holder, held) = hold_the_audit_lock(&url, released);
    held.recv().unwrap();
    let refund = std::thread::scope(|s| {
        let call = s.spawn(|| {
            r.call(
                "billing.issue_refund",
                json!({ "charge_id": "ch_003", "amount": 5, "reason": "x" }),
            )
        });
        // decided (not frozen yet), now waiting for the store
        std::thread::sleep(std::time::Duration::from_millis(300));
        // the operator freezes the agent: the kill switch row is committed at once (the
        // command's own audit event waits for the lock like everything else)
        let mut freeze = r.command(&["freeze", "support-bot"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1_500));
        release.send(()).unwrap();
        assert!(freeze.wait().unwrap().success());
        call.join().unwrap()
    });
    holder.join().unwrap();

    let (status, body) = refund;
    assert_eq!(
        status, 403,
        "a write ran 1.5 s after its agent was frozen: {body}"
    );
    assert_eq!(body["code"], "frozen", "{body}");
    assert!(
        !r.ledger().iter().any(|(tool, _)| tool == "issue_refund"),
        "the upstream received a call after the freeze: {:?}",
        r.ledger()
    );
    assert_eq!(
        r.stages_of("billing.issue_refund"),
        ["proposed", "decided", "refused"]
    );
}
