//! The record: verify passes on an honest log and locates each kind of tampering; a crash loses nothing acknowledged.

use crate::support::{Remit, STANDARD, seqs_of, sqlite_exec, with_sqlite};
use serde_json::{Value, json};

fn busy_log(r: &Remit) {
    for i in 0..4 {
        let (status, _) = r.call(
            "billing.get_customer",
            json!({ "id": format!("cus_00{}", 1 + i % 3) }),
        );
        assert_eq!(status, 200);
    }
    let (status, _) = r.call("billing.delete_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 403);
    r.wait_for_checkpoint();
}

fn verify(r: &Remit) -> (i32, String) {
    let (code, out, err) = r.audit(&["verify"]);
    (code, format!("{out}{err}"))
}

/// Edits event `seq` (`cus_002` becomes `cus_009`) and recomputes its leaf hash, as an
/// attacker knowing the store's rule (SHA-256 of 0x00 and the body) would; then runs `more` SQL.
fn edit_event_and_its_hash(r: &Remit, seq: u64, more: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body: String = rt.block_on(async {
        use sqlx::{ConnectOptions, Row};
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(r.db())
            .connect()
            .await
            .unwrap();
        sqlx::query("SELECT body FROM audit_events WHERE seq = ?")
            .bind(i64::try_from(seq).unwrap())
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0)
    });
    let edited = body.replace("cus_002", "cus_009");
    assert_ne!(edited, body);
    let hash = remit_core::audit::tree::leaf_hash(edited.as_bytes());
    sqlite_exec(
        &r.db(),
        &format!(
            "UPDATE audit_events SET body = '{}', leaf_hash = X'{}' WHERE seq = {seq}; {more}",
            edited.replace('\'', "''"),
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    );
}

#[test]
fn an_honest_log_verifies() {
    let r = Remit::start(STANDARD);
    busy_log(&r);
    let (code, out) = verify(&r);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit log intact"), "{out}");
}

#[test]
fn an_edited_event_is_located() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    sqlite_exec(
        &r.db(),
        "UPDATE audit_events SET body = replace(body, 'cus_002', 'cus_009') WHERE seq = 4",
    );
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 4"), "{out}");
}

#[test]
fn an_edit_with_a_recomputed_hash_is_caught_by_the_signed_checkpoint() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    edit_event_and_its_hash(&r, 4, "");
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("root does not match"), "{out}");
}

#[test]
fn a_deleted_event_is_located() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    sqlite_exec(&r.db(), "DELETE FROM audit_events WHERE seq = 3");
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 3 is missing"), "{out}");
}

/// `remit audit` as a user runs it, reading the log 3 events per page.
fn audit_in_pages_of_3(r: &Remit, args: &[&str]) -> (i32, String) {
    let out = r
        .command(&[&["audit"], args].concat())
        .env("REMIT_AUDIT_PAGE", "3")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_log_of_many_pages_is_read_to_its_end_and_past_a_gap() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    let all = r.events();
    let size = all.len();
    assert!(size > 12, "{size} events: not enough pages");
    let (code, out) = audit_in_pages_of_3(&r, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("intact: {size} events")), "{out}");
    let (code, out) = audit_in_pages_of_3(&r, &["export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), size, "{out}");

    // a short page (seq 4 gone) and a whole empty page (6, 7, 8) in the middle of the log
    r.kill9();
    sqlite_exec(
        &r.db(),
        "DELETE FROM audit_events WHERE seq = 4 OR seq BETWEEN 6 AND 8",
    );
    let (code, out) = audit_in_pages_of_3(&r, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 4 is missing"), "{out}");
    assert!(out.contains("events 6..9 are missing"), "{out}");
    assert!(
        !out.contains("checkpoint at size"),
        "not taken for a truncation: {out}"
    );
    let (code, out) = audit_in_pages_of_3(&r, &["export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{out}");
    let seqs = seqs_of(&out);
    let want: Vec<u64> = (0..size as u64)
        .filter(|s| *s != 4 && !(6..=8).contains(s))
        .collect();
    assert_eq!(
        seqs, want,
        "export prints every event left, after the gaps too"
    );
}

#[test]
fn reordered_events_are_detected() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    sqlite_exec(
        &r.db(),
        "UPDATE audit_events SET seq = -1 WHERE seq = 5; UPDATE audit_events SET seq = 5 WHERE seq = 6; UPDATE audit_events SET seq = 6 WHERE seq = -1;",
    );
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("root does not match"), "{out}");
}

#[test]
fn an_inserted_event_is_detected() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    // shift the tail up by one and insert a forged event at 3, with a correct leaf hash
    let forged = r#"{"agent":"support-bot","stage":"proposed","time":"2026-01-01T00:00:00.000Z"}"#;
    let hash = remit_core::audit::tree::leaf_hash(forged.as_bytes());
    sqlite_exec(
        &r.db(),
        &format!(
            "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3; UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1003; \
             INSERT INTO audit_events (seq, body, leaf_hash) VALUES (3, '{forged}', X'{}');",
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    );
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("root does not match") || out.contains("event 3"),
        "{out}"
    );
}

#[test]
fn truncating_the_tail_is_detected() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    sqlite_exec(&r.db(), "DELETE FROM audit_events WHERE seq >= 8");
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint at size"), "{out}");
}

#[test]
fn an_inclusion_proof_checks_offline_and_fails_when_edited() {
    let r = Remit::start(STANDARD);
    busy_log(&r);
    let (code, proof, err) = r.audit(&["prove", "3"]);
    assert_eq!(code, 0, "{err}");
    let path = r.dir.path().join("proof.json");
    std::fs::write(&path, &proof).unwrap();
    let key = r.dir.path().join("remit-audit.pub");
    let out = std::process::Command::new(crate::support::remit())
        .args(["audit", "check-proof"])
        .arg(&path)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_str(&proof).unwrap();
    v["body"] = Value::String(v["body"].as_str().unwrap().replace("cus_00", "cus_99"));
    std::fs::write(&path, v.to_string()).unwrap();
    let out = std::process::Command::new(crate::support::remit())
        .args(["audit", "check-proof"])
        .arg(&path)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A proof checked only against the key it carries proves nothing about who signed its
/// checkpoint: without `--key`, check-proof checks nothing, says why, and exits 2 (it used
/// to print "proof ok" and exit 0).
#[test]
fn check_proof_without_a_key_checks_nothing_and_says_so() {
    let r = Remit::start(STANDARD);
    busy_log(&r);
    let (code, proof, err) = r.audit(&["prove", "3"]);
    assert_eq!(code, 0, "{err}");
    let path = r.dir.path().join("proof.json");
    std::fs::write(&path, &proof).unwrap();
    let out = std::process::Command::new(crate::support::remit())
        .args(["audit", "check-proof"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(!stdout.contains("proof ok"), "{stdout}");
    assert!(stderr.contains("--key"), "{stderr}");
    let help = std::process::Command::new(crate::support::remit())
        .args(["audit", "check-proof", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--key <KEY>"), "{help}");
    assert!(help.contains("required"), "{help}");
}

/// A log whose checkpoints were all signed with the right key but for another log (another
/// `audit_origin`, as when one key serves two deployments and one's store is put in place
/// of the other's): `audit verify` reports each such checkpoint (it accepted them when they
/// all agreed with each other), and `check-proof` refuses a proof under one.
#[test]
fn checkpoints_signed_with_the_right_key_for_another_log_are_reported() {
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("remit-audit.key");
    let key = remit_core::audit::checkpoint::AuditKey::generate("remit/audit").unwrap();
    std::fs::write(&key_path, key.to_text()).unwrap();
    std::fs::write(
        key_path.with_extension("pub"),
        format!("{}\n", key.verifier().to_text()),
    )
    .unwrap();
    let gateway = format!(
        "store = \"sqlite://remit.db\"\naudit_key = \"{}\"",
        key_path.display()
    );
    let mut r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "store = \"sqlite://remit.db\"",
            &format!("{gateway}\naudit_origin = \"remit/other-log\""),
        )
    });
    busy_log(&r);
    let (code, proof, err) = r.audit(&["prove", "3"]);
    assert_eq!(code, 0, "{err}");
    r.kill9();
    // the same store and key, read as the log `remit/audit` (the default origin)
    let register = std::fs::read_to_string(r.path()).unwrap();
    std::fs::write(
        r.path(),
        register.replace("\naudit_origin = \"remit/other-log\"", ""),
    )
    .unwrap();
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED verification"), "{out}");
    assert!(
        out.contains("origin `remit/other-log` differs from the log's origin `remit/audit`"),
        "{out}"
    );
    let path = r.dir.path().join("proof.json");
    std::fs::write(&path, &proof).unwrap();
    let check = |origin: Option<&str>| {
        let mut c = std::process::Command::new(crate::support::remit());
        c.args(["audit", "check-proof"])
            .arg(&path)
            .arg("--key")
            .arg(key_path.with_extension("pub"));
        if let Some(origin) = origin {
            c.args(["--origin", origin]);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = check(None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("signed for the log `remit/other-log`, not `remit/audit`"),
        "{out}"
    );
    let (code, out) = check(Some("remit/other-log"));
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn kill_9_during_a_stream_of_calls_loses_no_acknowledged_event() {
    let mut r = Remit::start(STANDARD);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        let ack = acknowledged.clone();
        let url = r.url("/v1/calls");
        threads.push(std::thread::spawn(move || {
            let c = reqwest::blocking::Client::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(resp) = c
                    .post(&url)
                    .bearer_auth(crate::support::TOKEN)
                    .json(&json!({ "tool": "billing.get_customer", "arguments": { "id": "cus_001" } }))
                    .send()
                else {
                    break;
                };
                if resp.status() == 200
                    && let Ok(v) = resp.json::<Value>()
                {
                    ack.lock().unwrap().push(v["call"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    r.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "too few calls before the kill: {}",
        acked.len()
    );
    r.spawn();
    r.wait_for_checkpoint();
    let (_, export, _) = r.audit(&["export", "--format", "jsonl"]);
    let executed: std::collections::HashSet<String> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["stage"] == "executed")
        .map(|e| e["call"].as_str().unwrap().to_owned())
        .collect();
    for call in &acked {
        assert!(
            executed.contains(call),
            "acknowledged call {call} has no executed event after the crash"
        );
    }
    let (code, out) = verify(&r);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_row_stored_far_ahead_stops_signing_for_all_to_see_and_verify_finds_the_gap_at_once() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    // one forged row at a huge seq: the writer numbers later events after it
    sqlite_exec(
        &r.db(),
        "INSERT INTO audit_events (seq, body, leaf_hash) VALUES (4611686018427387904, '{}', zeroblob(32))",
    );
    let (status, _) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200);
    // nothing past the gap is signed, and the gateway says so
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let health = loop {
        let h = r.health();
        if h["audit"]["signing"] == json!(false) || std::time::Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(health["audit"]["signing"], json!(false), "{health}");
    assert_eq!(health["status"], json!("degraded"), "{health}");
    let status = r.command(&["status"]).output().unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("NOT SIGNING") && shown.contains("refusing to sign"),
        "{shown}"
    );
    r.kill9();
    // verify steps over the gap instead of reading every empty page up to it
    let started = std::time::Instant::now();
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("are missing"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{out}"
    );
}

#[test]
fn an_event_stored_below_seq_zero_fails_verify() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    let body = r#"{"stage":"started","time":"x","agent":"evil"}"#;
    let hash = remit_core::audit::tree::leaf_hash(body.as_bytes());
    sqlite_exec(
        &r.db(),
        &format!(
            "INSERT INTO audit_events (seq, body, leaf_hash) VALUES (-5, '{body}', X'{}')",
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    );
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("below seq 0"), "{out}");
}

/// Runs `remit serve` on `r`'s register and waits for it to exit (at most 20 s); its code and stderr.
fn serve_exits(r: &Remit) -> (Option<i32>, String) {
    use std::io::Read as _;
    let mut child = r
        .command(&["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, err)
}

#[test]
fn a_signed_log_gets_no_new_key_and_refuses_another() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    let key = r.dir.path().join("remit-audit.key");
    let original = std::fs::read(&key).unwrap();
    // the key deleted: remit does not make a new one to sign over the log
    std::fs::remove_file(&key).unwrap();
    let (code, err) = serve_exits(&r);
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {err}");
    assert!(
        err.contains("is missing") && err.contains("restore"),
        "{err}"
    );
    assert!(!key.exists(), "a new key was written");
    // another key in its place: refused too
    let other = Remit::start(STANDARD);
    std::fs::copy(other.dir.path().join("remit-audit.key"), &key).unwrap();
    let (code, err) = serve_exits(&r);
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {err}");
    assert!(err.contains("did not sign"), "{err}");
    // the right key back: remit starts and the log verifies
    std::fs::write(&key, original).unwrap();
    r.spawn();
    let (code, out) = verify(&r);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn deleted_checkpoints_hide_no_edit_from_verify_and_no_restart_signs_over_it() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    // the last checkpoint signed is also kept beside the key, outside the store
    wait_for_anchor_at_the_logs_end(&r);
    r.kill9();
    // an edit with its hash recomputed, and the checkpoints that would show it deleted
    edit_event_and_its_hash(&r, 4, "DELETE FROM audit_checkpoints;");
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    // and remit will not start on it, so it cannot sign the edited log afresh
    let (code, err) = serve_exits(&r);
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {err}");
    assert!(
        err.contains("no signed checkpoint") && err.contains("remit-audit.checkpoint"),
        "{err}"
    );
}

#[test]
fn rows_edited_out_of_shape_are_located_and_the_rest_of_the_log_still_checked() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    r.kill9();
    // a hash cut short, a body that is not text, and an ordinary edit after them
    sqlite_exec(
        &r.db(),
        "UPDATE audit_events SET leaf_hash = substr(leaf_hash, 1, 31) WHERE seq = 3; \
         UPDATE audit_events SET body = X'7BFF7D' WHERE seq = 6; \
         UPDATE audit_events SET body = replace(body, 'cus_002', 'cus_009') WHERE seq = 4; \
         UPDATE audit_checkpoints SET root = substr(root, 1, 5) \
           WHERE tree_size = (SELECT min(tree_size) FROM audit_checkpoints);",
    );
    let first: i64 = with_sqlite(&r.db(), async |conn| {
        sqlx::query_scalar("SELECT min(tree_size) FROM audit_checkpoints")
            .fetch_one(conn)
            .await
            .unwrap()
    });
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    for seq in ["event 3:", "event 4:", "event 6:"] {
        assert!(out.contains(seq), "{seq} not reported:\n{out}");
    }
    let checkpoint = format!("checkpoint at size {first}:");
    assert!(
        out.contains(&checkpoint),
        "{checkpoint} not reported:\n{out}"
    );
}

#[test]
fn export_ends_quietly_when_its_reader_closes_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remit.toml");
    std::fs::write(&path, crate::support::register(STANDARD, 1)).unwrap();
    let command = |args: &[&str]| {
        let mut c = std::process::Command::new(crate::support::remit());
        c.args(args).arg("--register").arg(&path);
        c
    };
    // a store with one event (reading the audit creates none), then 20,000 events (about
    // 2 MB exported) written straight into it
    assert!(
        command(&["freeze", "support-bot"])
            .output()
            .unwrap()
            .status
            .success()
    );
    sqlite_exec(
        &dir.path().join("remit.db"),
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO audit_events (seq, body, leaf_hash) \
         SELECT i, '{\"stage\":\"started\",\"pad\":\"' || hex(randomblob(40)) || '\"}', randomblob(32) FROM n",
    );
    for args in [
        &["audit", "export"][..],
        &["audit", "show", "--limit", "20000"],
        &["audit", "tail", "-n", "20000"],
    ] {
        let (status, stderr) = crate::support::with_stdout_closed_early(command(args));
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn a_failed_verification_fails_even_when_its_reader_stops_after_the_first_line() {
    // `remit audit verify | head -1` on a tampered log exited 0: the closed pipe ended the
    // report, and the command, as a success
    let mut r = Remit::start(STANDARD);
    let (status, _) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200);
    r.wait_for_checkpoint();
    r.kill9();
    sqlite_exec(
        &r.db(),
        "UPDATE audit_events SET body = replace(body, 'cus_001', 'cus_009')",
    );
    let (code, report, _) = r.audit(&["verify"]);
    assert_eq!(code, 1, "{report}");
    // the reader is gone before the first line is written
    let mut verify = r.command(&["audit", "verify"]);
    verify
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = verify.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn export_lists_the_formats_it_takes() {
    let help = std::process::Command::new(crate::support::remit())
        .args(["audit", "export", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Possible values:") && help.contains("jsonl"),
        "{help}"
    );
    // another format is refused before the register is even read, naming the one there is
    let out = std::process::Command::new(crate::support::remit())
        .args([
            "audit",
            "export",
            "--format",
            "csv",
            "--register",
            "/nonexistent.toml",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'csv'") && err.contains("jsonl"),
        "{err}"
    );
}

#[test]
fn proving_an_event_that_does_not_exist_says_so_and_gives_the_logs_size() {
    let r = Remit::start(STANDARD);
    busy_log(&r);
    let size = seqs_of(&r.audit(&["export"]).1).len();
    let (code, out, err) = r.audit(&["prove", "99999"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "event 99999 does not exist: the audit log holds {size} event(s), numbered 0 to {}",
            size - 1
        )),
        "{err}"
    );
    // an event that does exist is still proved
    let (code, out, err) = r.audit(&["prove", "0"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// `remit audit show` prints an agent's stated reason on its event's one line, escaped: a
/// reason with a line break and a terminal escape cannot forge a line of the log (a fake
/// `executed` refund) or colour the operator's terminal (before: both reached the terminal).
#[test]
fn audit_show_escapes_an_agents_words_so_they_cannot_forge_a_line() {
    let r = Remit::start(STANDARD);
    let forged = "checking\n    99  2026-11-28T11:59:59.000Z  executed  support-bot     billing.issue_refund       done {\"amount\":500}\u{1b}[31m\u{202e}";
    let answer = r.post_call(
        "billing.get_customer",
        &json!({ "id": "cus_001", "_reason": forged }),
    );
    assert_eq!(answer.status(), 200);
    let (code, shown, _) = r.audit(&["show"]);
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown}");
    assert!(!shown.contains('\u{202e}'), "{shown}");
    assert!(
        !shown.lines().any(|l| l.trim_start().starts_with("99 ")),
        "{shown}"
    );
    let asked = shown
        .lines()
        .find(|l| l.contains("because"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(asked.contains("checking\\n    99"), "{asked}");
}

/// Reading the audit of a register whose store does not exist says so and creates nothing
/// (before: `audit verify` made an empty database there and reported a log with nothing in
/// it, exit 1 with no word of why; `show` printed nothing at all).
#[test]
fn reading_the_audit_where_there_is_no_store_says_so_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let register = dir.path().join("remit.toml");
    std::fs::write(&register, crate::support::register(STANDARD, 9)).unwrap();
    for command in [["audit", "verify"], ["audit", "show"]] {
        let out = std::process::Command::new(crate::support::remit())
            .args(command)
            .arg("-r")
            .arg(&register)
            .env_remove("REMIT_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?}: {stderr}");
        assert!(stderr.contains("there is no audit store at"), "{stderr}");
        assert!(
            !dir.path().join("remit.db").exists(),
            "{command:?} created it"
        );
    }
}

#[test]
fn a_restart_after_a_signed_event_was_edited_signs_nothing_over_it_and_health_says_so() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    let (anchor, events) = wait_for_anchor_at_the_logs_end(&r);
    r.kill9();
    let kept = std::fs::read_to_string(&anchor).unwrap();
    // a DB-only attacker edits a signed event and recomputes its hash; checkpoints stay
    edit_event_and_its_hash(&r, 4, "");
    let before = checkpoints_in(&r);
    r.spawn();
    // new events arrive: the old checkpointer signed them, and the edit under them, within a second
    let (status, _) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200);
    let health = wait_until_not_signing(&r);
    assert_eq!(health["status"], "degraded", "{health}");
    let error = health["audit"]["signing_error"].as_str().unwrap();
    assert!(
        error.contains("remit audit verify") && error.contains(&format!("size {events}")),
        "{error}"
    );
    // two more signing rounds: still nothing signed, the anchor untouched
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(r.health()["audit"]["signing"], json!(false));
    assert_eq!(
        checkpoints_in(&r),
        before,
        "a checkpoint was signed over the edit"
    );
    assert_eq!(std::fs::read_to_string(&anchor).unwrap(), kept);
    let log = r.stop_and_read_log();
    assert!(
        log.contains("is not the root of the checkpoint") && log.contains("remit audit verify"),
        "{log}"
    );
}

#[test]
fn verify_says_what_it_left_unchecked_after_a_break_and_which_key_it_trusted() {
    let mut r = Remit::start(STANDARD);
    busy_log(&r);
    let events = r.health()["audit"]["events"].as_u64().unwrap();
    assert!(events > 8, "{events}");
    r.kill9();
    let published = std::fs::read_to_string(r.dir.path().join("remit-audit.pub")).unwrap();
    let id = published.trim().split('+').nth(1).unwrap().to_owned();
    let (code, out) = verify(&r);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("key ID {id}")) && out.contains("remit-audit.pub"),
        "{out}"
    );
    // a deletion, then an edit with its hash rewritten after it: one problem shows
    edit_event_and_its_hash(&r, 6, "DELETE FROM audit_events WHERE seq = 2;");
    let (code, out) = verify(&r);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 problem(s)") && out.contains("event 2 is missing"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "after the first break, {} event(s) and",
            events - 3
        )),
        "{out}"
    );
    assert!(out.contains(&format!("key ID {id}")), "{out}");
    let key = r.dir.path().join("remit-audit.pub");
    let (_, out, err) = r.audit(&["verify", "--key", key.to_str().unwrap()]);
    assert!(
        out.contains(&format!("key ID {id}, read from --key")),
        "{out}{err}"
    );
}

/// A gateway that finds the store's latest checkpoint signed by another key (a replica
/// started beside it with a key of its own, as two replicas each making the default key on a
/// fresh store do) signs nothing more, and says why (before: both signed, alternately, and
/// the log then verified with neither key).
#[test]
fn a_gateway_that_finds_another_keys_checkpoint_signs_nothing_more() {
    let r = Remit::start(STANDARD);
    let (status, _) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200);
    r.wait_for_checkpoint();
    // another gateway's checkpoint, as its replica would write it into this store
    let other = Remit::start(STANDARD);
    let (status, _) = other.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200);
    other.wait_for_checkpoint();
    let note: String = with_sqlite(&other.db(), async |conn| {
        sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
            .fetch_one(conn)
            .await
            .unwrap()
    });
    sqlite_exec(
        &r.db(),
        &format!(
            "INSERT INTO audit_checkpoints (tree_size, root, note, time) VALUES (100000, zeroblob(32), '{}', '2026-11-28T00:00:00Z')",
            note.replace('\'', "''")
        ),
    );
    let before = checkpoints_in(&r);
    let (status, _) = r.call("billing.get_customer", json!({ "id": "cus_002" }));
    assert_eq!(status, 200);
    let health = wait_until_not_signing(&r);
    assert_eq!(health["status"], "degraded", "{health}");
    let error = health["audit"]["signing_error"].as_str().unwrap();
    assert!(
        error.contains("is not signed by this gateway's key") && error.contains("same key file"),
        "{error}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        checkpoints_in(&r),
        before,
        "a checkpoint was signed beside another key's"
    );
}

/// How many checkpoints `r`'s store holds.
fn checkpoints_in(r: &Remit) -> i64 {
    with_sqlite(&r.db(), async |conn| {
        sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
            .fetch_one(conn)
            .await
            .unwrap()
    })
}

/// Waits (at most 10 s) until `/health` says the audit is not signing; gives the operator's
/// view of health then.
fn wait_until_not_signing(r: &Remit) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let h = r.health_as_operator();
        if h["audit"]["signing"] == json!(false) {
            return h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health still says the audit is signing: {h}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits (at most 5 s) until the checkpoint kept beside the key (the anchor file) covers
/// every event in the log; gives the file's path and the log's size.
fn wait_for_anchor_at_the_logs_end(r: &Remit) -> (std::path::PathBuf, u64) {
    let anchor = r.dir.path().join("remit-audit.checkpoint");
    let events = r.health()["audit"]["events"].as_u64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(&anchor)
        .is_ok_and(|note| note.lines().nth(1) == Some(&events.to_string()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint kept beside the key"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (anchor, events)
}
