use super::*;
use crate::audit::checkpoint::{AuditKey, Checkpoint};
use crate::audit::event::Event;

const ORIGIN: &str = "remit.example/log";

fn body(i: u64) -> String {
    let event = Event {
        time: format!("2026-03-01T12:00:{:02}.{:03}Z", i % 60, i % 1000).into(),
        stage: Stage::Executed,
        call: Some(format!("01J{i:023}").into()),
        run: Some("run-7".into()),
        agent: Some("support-bot".into()),
        action: Some("billing.issue_refund".into()),
        register: Some("sha256:4f2a".into()),
        detail:
            serde_json::json!({"args": {"amount": i, "order": format!("ord_{i}")}, "result": "ok"})
                .into(),
    };
    String::from_utf8(event.canonical()).unwrap()
}

fn stored(seq: u64, body: String) -> StoredEvent {
    let leaf_hash = leaf_hash(body.as_bytes());
    StoredEvent {
        seq,
        body,
        leaf_hash,
    }
}

fn log(n: u64) -> Vec<StoredEvent> {
    (0..n).map(|i| stored(i, body(i))).collect()
}

fn key() -> AuditKey {
    AuditKey::generate(ORIGIN).unwrap()
}

/// Signed checkpoints at each of `sizes` over the leaf hashes of `events`.
fn checkpoints(events: &[StoredEvent], sizes: &[u64], key: &AuditKey) -> Vec<StoredCheckpoint> {
    let mut f = Frontier::new();
    let mut out = Vec::new();
    for &size in sizes {
        while f.size() < size {
            f.push(events[f.size() as usize].leaf_hash);
        }
        out.push(signed(size, f.root(), key));
    }
    out
}

fn signed(size: u64, root: Hash, key: &AuditKey) -> StoredCheckpoint {
    let note = Checkpoint {
        origin: ORIGIN.to_owned(),
        size,
        root,
    }
    .sign(key);
    StoredCheckpoint {
        tree_size: size,
        root,
        note,
        time: "2026-03-01T12:00:00.000Z".to_owned(),
    }
}

fn every_ten(n: u64) -> Vec<u64> {
    (1..=n / 10).map(|i| i * 10).collect()
}

fn verify(events: &[StoredEvent], cps: &[StoredCheckpoint], key: &AuditKey) -> VerifyReport {
    let mut v = LogVerifier::new(&key.verifier(), ORIGIN, cps);
    for e in events {
        v.push(e);
    }
    v.finish()
}

fn messages(report: &VerifyReport) -> Vec<&str> {
    report.problems.iter().map(|p| p.message.as_str()).collect()
}

#[test]
fn intact_log_verifies() {
    let key = key();
    let events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    let report = verify(&events, &cps, &key);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.events, 100);
    assert_eq!(report.checkpoints_checked, 10);
    assert_eq!(report.checkpoints_skipped, 0);
}

#[test]
fn uncheckpointed_tail_is_still_checked_event_by_event() {
    let key = key();
    let mut events = log(105);
    let cps = checkpoints(&events, &every_ten(100), &key);
    assert!(verify(&events, &cps, &key).is_ok());
    events[103].body.push(' ');
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        ["event 103: body does not match its recorded hash"]
    );
}

#[test]
fn edited_body_is_located_to_its_event() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    events[37].body = events[37].body.replace("\"amount\":37", "\"amount\":3700");
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Event(37),
            message: "event 37: body does not match its recorded hash".to_owned(),
        }]
    );
    // The recorded hash is what the tree uses, so every checkpoint still checks.
    assert_eq!(report.checkpoints_checked, 10);
}

#[test]
fn edited_body_with_rewritten_hash_is_located_to_its_checkpoint_range() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    let forged = events[37].body.replace("\"amount\":37", "\"amount\":3700");
    events[37] = stored(37, forged);
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Events { from: 30, to: 40 },
            message: "events 30..40 (between checkpoints at sizes 30 and 40): root does not match the signed checkpoint".to_owned(),
        }]
    );
    assert_eq!(report.checkpoints_checked, 4);
    assert_eq!(report.checkpoints_skipped, 6);
    // the events after the failed range were not checked against any root
    assert_eq!(report.events_unchecked, 60);
}

#[test]
fn rewrite_before_the_first_checkpoint_names_the_range_from_zero() {
    let key = key();
    let mut events = log(30);
    let cps = checkpoints(&events, &[10, 20], &key);
    events[3] = stored(3, body(1000));
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        [
            "events 0..10 (up to the checkpoint at size 10): root does not match the signed checkpoint"
        ]
    );
}

#[test]
fn reordered_events_are_located_to_their_checkpoint_range() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    // Swap the contents of two rows, keeping `seq` in order.
    let (a, b) = (events[52].clone(), events[57].clone());
    events[52] = StoredEvent { seq: 52, ..b };
    events[57] = StoredEvent { seq: 57, ..a };
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Events { from: 50, to: 60 },
            message: "events 50..60 (between checkpoints at sizes 50 and 60): root does not match the signed checkpoint".to_owned(),
        }]
    );
}

#[test]
fn deleted_event_is_missing() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    events.remove(37);
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Event(37),
            message: "event 37 is missing".to_owned(),
        }]
    );
    assert_eq!(report.checkpoints_checked, 3);
    assert_eq!(report.checkpoints_skipped, 7);
    assert_eq!(report.events_unchecked, 62);
}

#[test]
fn an_edit_after_a_deletion_is_not_a_problem_of_its_own_but_counted_unchecked() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    let forged = events[77].body.replace("\"amount\":77", "\"amount\":7700");
    assert_ne!(forged, events[77].body);
    events[77] = stored(77, forged);
    events.remove(37);
    let report = verify(&events, &cps, &key);
    assert_eq!(messages(&report), ["event 37 is missing"]);
    assert_eq!(report.events_unchecked, 62);
    assert_eq!(report.checkpoints_skipped, 7);
}

#[test]
fn deleted_run_of_events_is_missing() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    events.drain(37..45);
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Events { from: 37, to: 45 },
            message: "events 37..45 are missing".to_owned(),
        }]
    );
}

#[test]
fn deleted_first_event_is_missing() {
    let key = key();
    let mut events = log(20);
    let cps = checkpoints(&events, &[10, 20], &key);
    events.remove(0);
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        ["event 0 is missing"]
    );
}

#[test]
fn duplicated_event_appears_twice() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    let copy = events[37].clone();
    events.insert(38, copy);
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Event(37),
            message: "event 37 appears twice".to_owned(),
        }]
    );
    assert_eq!(report.events, 101);
    assert_eq!(report.checkpoints_checked, 10);
}

#[test]
fn inserted_event_under_a_used_seq_appears_twice() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    events.insert(38, stored(37, body(5000)));
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        ["event 37 appears twice"]
    );
}

#[test]
fn event_out_of_order_is_reported() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    let early = stored(12, body(12));
    events.insert(50, early);
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        ["event 12 is out of order"]
    );
}

#[test]
fn swapped_rows_are_missing_then_out_of_order() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    events.swap(37, 38);
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        ["event 37 is missing", "event 37 is out of order"]
    );
}

#[test]
fn inserted_and_renumbered_events_fail_their_checkpoint_range() {
    let key = key();
    let events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    let mut bodies: Vec<String> = events.iter().map(|e| e.body.clone()).collect();
    bodies.insert(64, body(9999));
    let tampered: Vec<StoredEvent> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| stored(i as u64, b))
        .collect();
    assert_eq!(
        messages(&verify(&tampered, &cps, &key)),
        [
            "events 60..70 (between checkpoints at sizes 60 and 70): root does not match the signed checkpoint"
        ]
    );
}

#[test]
fn truncated_tail_is_reported() {
    let key = key();
    let mut events = log(100);
    let cps = checkpoints(&events, &every_ten(100), &key);
    events.truncate(85);
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Events { from: 85, to: 100 },
            message: "log holds 85 events but checkpoint at size 100 was signed".to_owned(),
        }]
    );
    assert_eq!(report.checkpoints_checked, 8);
    assert_eq!(report.checkpoints_skipped, 2);
}

#[test]
fn emptied_log_is_reported() {
    let key = key();
    let events = log(20);
    let cps = checkpoints(&events, &[0, 10, 20], &key);
    assert_eq!(
        messages(&verify(&[], &cps, &key)),
        ["log holds 0 events but checkpoint at size 20 was signed"]
    );
    let cps = checkpoints(&events, &[0], &key);
    let report = verify(&[], &cps, &key);
    assert!(report.is_ok());
    assert_eq!(report.checkpoints_checked, 1);
}

#[test]
fn bodies_that_are_not_events_are_reported() {
    let key = key();
    let mut events = log(30);
    events[4] = stored(4, "not json".to_owned());
    events[5] = stored(5, r#"{"time":"t","stage":"exploded"}"#.to_owned());
    events[6] = stored(6, r#"{"stage":"proposed"}"#.to_owned());
    events[7] = stored(7, r#"{"time":"t","stage":"proposed","agent":7}"#.to_owned());
    events[8] = stored(8, r#"{"time":"t","stage":"proposed"} trailing"#.to_owned());
    // Written like this at append time: the checkpoints sign these leaves.
    let cps = checkpoints(&events, &[10, 20, 30], &key);
    let report = verify(&events, &cps, &key);
    let located: Vec<Location> = report.problems.iter().map(|p| p.location).collect();
    assert_eq!(
        located,
        (4..=8).map(Location::Event).collect::<Vec<_>>(),
        "{:?}",
        report.problems
    );
    for p in &report.problems {
        assert!(
            p.message.contains(": body is not a valid event: "),
            "{}",
            p.message
        );
    }
    assert_eq!(report.checkpoints_checked, 3);
}

#[test]
fn event_shape_accepts_exactly_what_event_accepts() {
    let bodies = [
        body(1),
        r#"{"time":"t","stage":"started"}"#.to_owned(),
        r#"{"time":"t","stage":"started","detail":null,"call":null}"#.to_owned(),
        r#"{"time":"t\u00e9\"","stage":"frozen","extra":[1,{"a":[]}],"detail":{"x":[[[1]]]}}"#
            .to_owned(),
        r#"{"time":"t","time":"u","stage":"started"}"#.to_owned(),
        r#"{"time":1,"stage":"started"}"#.to_owned(),
        r#"{"time":"t","stage":"Started"}"#.to_owned(),
        r#"{"time":"t","stage":"started","run":["x"]}"#.to_owned(),
        r#"[]"#.to_owned(),
        r#"{"time":"t","stage":"started""#.to_owned(),
        String::new(),
    ];
    for b in &bodies {
        let event = serde_json::from_str::<Event>(b).is_ok();
        let shape = serde_json::from_str::<EventShape>(b).is_ok();
        assert_eq!(event, shape, "{b}");
    }
}

#[test]
fn checkpoint_signed_by_another_key_is_reported_at_its_size() {
    let key = key();
    let events = log(100);
    let mut cps = checkpoints(&events, &every_ten(100), &key);
    let forger = AuditKey::generate(ORIGIN).unwrap();
    cps[4] = signed(50, [0; 32], &forger);
    let report = verify(&events, &cps, &key);
    assert_eq!(
        report.problems,
        [Problem {
            location: Location::Checkpoint(50),
            message: format!("checkpoint at size 50: checkpoint is not signed by key `{ORIGIN}`"),
        }]
    );
    // The other checkpoints still check the whole tree.
    assert_eq!(report.checkpoints_checked, 9);
}

#[test]
fn edited_and_unsigned_checkpoints_are_reported() {
    let key = key();
    let events = log(100);
    let mut cps = checkpoints(&events, &every_ten(100), &key);
    cps[2].note = cps[2].note.replacen("\n30\n", "\n31\n", 1);
    cps[5].note = cps[5].note.split_once("\n\n").unwrap().0.to_owned();
    let report = verify(&events, &cps, &key);
    let located: Vec<Location> = report.problems.iter().map(|p| p.location).collect();
    assert_eq!(
        located,
        [Location::Checkpoint(30), Location::Checkpoint(60)]
    );
    assert_eq!(
        report.problems[0].message,
        format!("checkpoint at size 30: signature by key `{ORIGIN}` does not verify")
    );
    assert!(
        report.problems[1]
            .message
            .starts_with("checkpoint at size 60: malformed signed note")
    );
}

#[test]
fn signed_checkpoint_over_another_tree_fails_its_range() {
    let key = key();
    let events = log(100);
    let mut cps = checkpoints(&events, &every_ten(100), &key);
    cps[6] = signed(70, [9; 32], &key);
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        [
            "events 60..70 (between checkpoints at sizes 60 and 70): root does not match the signed checkpoint"
        ]
    );
}

#[test]
fn stored_columns_must_agree_with_the_signed_note() {
    let key = key();
    let events = log(40);
    let mut cps = checkpoints(&events, &[10, 20, 30, 40], &key);
    cps[1].root = [1; 32];
    let report = verify(&events, &cps, &key);
    assert_eq!(
        messages(&report),
        ["checkpoint at size 20: the stored size or root differs from the signed note (size 20)"]
    );
    assert_eq!(report.checkpoints_checked, 4);
}

#[test]
fn two_roots_signed_at_one_size_are_reported() {
    let key = key();
    let events = log(40);
    let mut cps = checkpoints(&events, &[10, 20, 30, 40], &key);
    cps.push(signed(20, [3; 32], &key));
    let report = verify(&events, &cps, &key);
    assert_eq!(
        messages(&report),
        ["two checkpoints are signed at size 20 with different roots"]
    );
    assert_eq!(report.checkpoints_checked, 5);
}

#[test]
fn checkpoints_from_another_origin_are_reported() {
    let key = key();
    let events = log(20);
    let mut cps = checkpoints(&events, &[10], &key);
    let mut f = Frontier::new();
    for e in &events {
        f.push(e.leaf_hash);
    }
    let note = Checkpoint {
        origin: "other.example/log".to_owned(),
        size: 20,
        root: f.root(),
    }
    .sign(&key);
    cps.push(StoredCheckpoint {
        tree_size: 20,
        root: f.root(),
        note,
        time: String::new(),
    });
    assert_eq!(
        messages(&verify(&events, &cps, &key)),
        [format!(
            "checkpoint at size 20: origin `other.example/log` differs from the log's origin `{ORIGIN}`"
        )]
    );
}

/// A checkpoint signed with the log's own key for another log (another origin) says nothing
/// about this one, even when every checkpoint agrees and its root matches: each is
/// reported at its size, and none counts as checked.
#[test]
fn checkpoints_signed_with_the_right_key_for_another_log_are_reported() {
    let key = key();
    let events = log(20);
    let mut f = Frontier::new();
    let mut cps = Vec::new();
    for (i, e) in events.iter().enumerate() {
        f.push(e.leaf_hash);
        if (i + 1) % 10 == 0 {
            let size = i as u64 + 1;
            let note = Checkpoint {
                origin: "other.example/log".to_owned(),
                size,
                root: f.root(),
            }
            .sign(&key);
            cps.push(StoredCheckpoint {
                tree_size: size,
                root: f.root(),
                note,
                time: String::new(),
            });
        }
    }
    let report = verify(&events, &cps, &key);
    assert_eq!(
        messages(&report),
        [10, 20].map(|at| format!(
            "checkpoint at size {at}: origin `other.example/log` differs from the log's origin `{ORIGIN}`"
        ))
    );
    assert_eq!(report.checkpoints_checked, 0);
}

#[test]
fn unsorted_checkpoints_are_sorted() {
    let key = key();
    let events = log(50);
    let mut cps = checkpoints(&events, &every_ten(50), &key);
    cps.reverse();
    let report = verify(&events, &cps, &key);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints_checked, 5);
}

#[test]
fn problems_are_capped() {
    let key = key();
    let mut events = log(1500);
    let cps = checkpoints(&events, &[1500], &key);
    for e in &mut events {
        e.body.push(' ');
    }
    let report = verify(&events, &cps, &key);
    assert_eq!(report.problems.len(), MAX_PROBLEMS + 1);
    assert_eq!(
        report.problems.last().unwrap(),
        &Problem {
            location: Location::Log,
            message: "500 more problems not listed".to_owned(),
        }
    );
}

#[test]
fn progress_is_visible_while_streaming() {
    let key = key();
    let events = log(30);
    let mut v = LogVerifier::new(&key.verifier(), ORIGIN, &[]);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(v.events_seen(), i as u64);
        v.push(e);
    }
    assert_eq!(v.events_seen(), 30);
    assert!(v.problems().is_empty());
    let report = v.finish();
    assert!(report.is_ok());
    assert_eq!(report.checkpoints_checked, 0);
}

#[test]
fn bodies_are_about_300_bytes() {
    // The benchmark's figure assumes bodies of this size.
    let len = body(123_456).len();
    assert!((250..=350).contains(&len), "{len}");
}
