//! Two `remit serve` processes on one PostgreSQL store share budgets, the kill switch and one audit log.

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
