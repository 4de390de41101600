//! The `Store` contract: every test runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `REMIT_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a fresh database and drops
//! it afterwards. When PostgreSQL is unreachable its half of each test is skipped with
//! a loud message, unless `CI=true`, where it fails.

#[cfg(test)]
mod support;

use remit_core::audit::event::{Event, Stage};
use remit_core::audit::tree::leaf_hash;
use remit_core::ids::{ActionName, AgentId};
use remit_core::ports::{ChargeOutcome, FreezeTarget, StoreErrorKind};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use support::{
    HOUR, T0, append_concurrently, assert_one_gapless_log, budget, charge_concurrently, checkpoint,
    event,
};

/// Expands a test into `NAME::sqlite` and `NAME::postgres`.
///
/// `|store| async move { .. }` gets one handle; `|store, db| ..` can also open more
/// handles on the same database with `db.open().await`.
macro_rules! store_test {
    ($name:ident, |$store:ident| $body:expr) => {
        store_test!($name, |$store, _db| $body);
    };
    ($name:ident, |$store:ident, $db:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                support::run(support::Db::sqlite(), |$store, $db| $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let test = concat!(stringify!($name), "::postgres");
                let Some(db) = support::Db::postgres(test).await else {
                    return;
                };
                support::run(db, |$store, $db| $body).await;
            }
        }
    };
}

store_test!(
    seqs_are_consecutive_from_zero_under_concurrent_appends,
    |store| async move {
        let appended = append_concurrently(std::slice::from_ref(&store), 200).await;
        assert_one_gapless_log(&*store, &appended).await;
    }
);

store_test!(
    two_replicas_appending_at_once_write_one_gapless_log,
    |store, db| async move {
        let replica = db.open().await;
        let appended = append_concurrently(&[Arc::clone(&store), Arc::clone(&replica)], 200).await;
        assert_one_gapless_log(&*store, &appended).await;
        assert_one_gapless_log(&*replica, &appended).await;
    }
);

store_test!(
    leaf_hashes_of_an_interleaved_log_are_the_stored_ones_from_either_replica,
    |store, db| async move {
        // each handle keeps the leaves it committed; the other's events fall between them
        let replica = db.open().await;
        for round in 0..4 {
            store
                .append(&(0..3).map(event).collect::<Vec<_>>())
                .await
                .unwrap();
            replica
                .append(&(0..2 + round).map(event).collect::<Vec<_>>())
                .await
                .unwrap();
        }
        let stored = store.events(0, 100).await.unwrap();
        let want: Vec<(u64, [u8; 32])> = stored
            .iter()
            .map(|e| (e.seq, leaf_hash(e.body.as_bytes())))
            .collect();
        assert_eq!(want.len(), 26);
        for handle in [&store, &replica] {
            // read as the checkpointer reads: from where the last read ended, a few at a time
            let mut got = Vec::new();
            loop {
                let page = handle.leaf_hashes(got.len() as u64, 4).await.unwrap();
                if page.is_empty() {
                    break;
                }
                got.extend(page);
            }
            assert_eq!(got, want);
        }
    }
);

store_test!(body_and_leaf_hash_round_trip_exactly, |store| async move {
    let event = Event {
        time: "2026-08-01T12:00:00.123Z".into(),
        stage: Stage::Executed,
        call: Some("call_1".into()),
        run: None,
        agent: Some("support-bot".into()),
        action: Some("billing.issue_refund".into()),
        register: None,
        detail: json!({
            "z": [1, 2.5, -0.0, 1e300, null, true],
            "a": "naïve \u{1F600} \"quoted\" \\ \n \u{0007} </script>",
            "m": { "b": 1, "a": { "d": [], "c": {} } },
        })
        .into(),
    };
    let seqs = store.append(std::slice::from_ref(&event)).await.unwrap();
    assert_eq!(seqs, vec![0]);
    let stored = store.events(0, 1).await.unwrap();
    let row = &stored[0];
    let body = String::from_utf8(event.canonical()).unwrap();
    assert_eq!(row.body, body);
    assert_eq!(row.leaf_hash, leaf_hash(body.as_bytes()));
    assert_eq!(row.event().unwrap(), event);
});

store_test!(events_reads_the_range_asked_for, |store| async move {
    assert_eq!(store.event_count().await.unwrap(), 0);
    assert!(store.events(0, 10).await.unwrap().is_empty());
    assert!(store.append(&[]).await.unwrap().is_empty());
    let seqs = store
        .append(&(0..10).map(event).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(seqs, (0..10).collect::<Vec<u64>>());
    let seqs = store.append(&[event(10)]).await.unwrap();
    assert_eq!(seqs, vec![10]);
    let middle: Vec<u64> = store
        .events(3, 4)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(middle, vec![3, 4, 5, 6]);
    assert_eq!(store.events(9, 100).await.unwrap().len(), 2);
    assert!(store.events(11, 5).await.unwrap().is_empty());
    assert!(store.events(0, 0).await.unwrap().is_empty());
    assert!(store.events(u64::MAX, u64::MAX).await.unwrap().is_empty());
    assert_eq!(store.events(0, u64::MAX).await.unwrap().len(), 11);
});

store_test!(
    checkpoints_are_idempotent_and_ordered_by_tree_size,
    |store| async move {
        assert_eq!(store.latest_checkpoint().await.unwrap(), None);
        assert!(store.checkpoints().await.unwrap().is_empty());
        store
            .put_checkpoint(&checkpoint(10, 1, "ten"))
            .await
            .unwrap();
        store
            .put_checkpoint(&checkpoint(3, 2, "three"))
            .await
            .unwrap();
        store
            .put_checkpoint(&checkpoint(7, 3, "seven"))
            .await
            .unwrap();
        // The same tree again (another replica signed it at another time): a no-op.
        store
            .put_checkpoint(&checkpoint(7, 3, "seven again"))
            .await
            .unwrap();
        let sizes: Vec<(u64, String)> = store
            .checkpoints()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.tree_size, c.note))
            .collect();
        assert_eq!(
            sizes,
            vec![
                (3, "three".to_owned()),
                (7, "seven".to_owned()),
                (10, "ten".to_owned())
            ]
        );
        assert_eq!(
            store.latest_checkpoint().await.unwrap(),
            Some(checkpoint(10, 1, "ten"))
        );
        // Another root for a tree size already checkpointed is a fork: refused, not saved.
        let err = store
            .put_checkpoint(&checkpoint(7, 9, "forked"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Conflict);
        assert_eq!(store.checkpoints().await.unwrap().len(), 3);
    }
);

store_test!(
    count_budget_refuses_the_call_over_its_limit,
    |store| async move {
        let count = [budget("bot/billing.issue_refund/0", HOUR, 1.0, 3.0)];
        for i in 0..3 {
            assert_eq!(
                store.charge(&count, T0 + i * 1_000).await.unwrap(),
                ChargeOutcome::Charged
            );
        }
        assert_eq!(
            store.charge(&count, T0 + 5_000).await.unwrap(),
            ChargeOutcome::Exceeded {
                index: 0,
                used: 3.0,
                resets_at_ms: T0 + HOUR,
            }
        );
    }
);

store_test!(
    sum_budget_resets_when_enough_old_charges_leave,
    |store| async move {
        let key = "bot/billing.issue_refund/1";
        assert_eq!(
            store
                .charge(&[budget(key, HOUR, 40.0, 100.0)], T0)
                .await
                .unwrap(),
            ChargeOutcome::Charged
        );
        assert_eq!(
            store
                .charge(&[budget(key, HOUR, 50.0, 100.0)], T0 + 10)
                .await
                .unwrap(),
            ChargeOutcome::Charged
        );
        // 90 used; 20 more needs the 40 from T0 to leave.
        assert_eq!(
            store
                .charge(&[budget(key, HOUR, 20.0, 100.0)], T0 + 20)
                .await
                .unwrap(),
            ChargeOutcome::Exceeded {
                index: 0,
                used: 90.0,
                resets_at_ms: T0 + HOUR,
            }
        );
        // Exactly 10 still fits.
        assert_eq!(
            store
                .charge(&[budget(key, HOUR, 10.0, 100.0)], T0 + 30)
                .await
                .unwrap(),
            ChargeOutcome::Charged
        );
        // 100 used; 50 needs 40 + 50 to leave: the charge at T0 + 10.
        assert_eq!(
            store
                .charge(&[budget(key, HOUR, 50.0, 100.0)], T0 + 40)
                .await
                .unwrap(),
            ChargeOutcome::Exceeded {
                index: 0,
                used: 100.0,
                resets_at_ms: T0 + 10 + HOUR,
            }
        );
    }
);

store_test!(
    a_sum_fits_its_max_exactly_despite_rounding_and_never_a_unit_over,
    |store| async move {
        // 0.1 three times adds up to 0.30000000000000004: it fits a max of 0.3, a fourth does not
        let cents = [budget("bot/tip/sum(args.amount)/3600000ms", HOUR, 0.1, 0.3)];
        for i in 0..3 {
            assert_eq!(
                store.charge(&cents, T0 + i).await.unwrap(),
                ChargeOutcome::Charged
            );
        }
        assert!(matches!(
            store.charge(&cents, T0 + 3).await.unwrap(),
            ChargeOutcome::Exceeded { index: 0, .. }
        ));
        // a max of 1e9 holds 1e9, not one more (the slack was 1e-9 of the max: a whole unit)
        let key = "bot/wire/sum(args.amount)/3600000ms";
        assert_eq!(
            store
                .charge(&[budget(key, HOUR, 999_999_999.0, 1e9)], T0)
                .await
                .unwrap(),
            ChargeOutcome::Charged
        );
        assert!(matches!(
            store
                .charge(&[budget(key, HOUR, 2.0, 1e9)], T0 + 1)
                .await
                .unwrap(),
            ChargeOutcome::Exceeded { index: 0, used, .. } if used == 999_999_999.0
        ));
        assert_eq!(
            store
                .charge(&[budget(key, HOUR, 1.0, 1e9)], T0 + 2)
                .await
                .unwrap(),
            ChargeOutcome::Charged
        );
    }
);

store_test!(sliding_window_lets_old_charges_expire, |store| async move {
    let window = 1_000;
    let charge = [budget("bot/search/0", window, 1.0, 2.0)];
    assert_eq!(
        store.charge(&charge, T0).await.unwrap(),
        ChargeOutcome::Charged
    );
    assert_eq!(
        store.charge(&charge, T0 + 500).await.unwrap(),
        ChargeOutcome::Charged
    );
    assert_eq!(
        store.charge(&charge, T0 + 999).await.unwrap(),
        ChargeOutcome::Exceeded {
            index: 0,
            used: 2.0,
            resets_at_ms: T0 + window,
        }
    );
    // At T0 + window the first charge has left the window (it is `(now - window, now]`).
    assert_eq!(
        store.charge(&charge, T0 + window).await.unwrap(),
        ChargeOutcome::Charged
    );
    assert_eq!(
        store.charge(&charge, T0 + window + 1).await.unwrap(),
        ChargeOutcome::Exceeded {
            index: 0,
            used: 2.0,
            resets_at_ms: T0 + 500 + window,
        }
    );
    // Long after, everything has expired (and may have been pruned).
    for i in 0..2 {
        assert_eq!(
            store.charge(&charge, T0 + 10 * window + i).await.unwrap(),
            ChargeOutcome::Charged
        );
    }
    assert!(matches!(
        store.charge(&charge, T0 + 10 * window + 2).await.unwrap(),
        ChargeOutcome::Exceeded { used: 2.0, .. }
    ));
});

store_test!(second_budget_exceeded_charges_neither, |store| async move {
    let roomy = budget("bot/refund/count", HOUR, 1.0, 5.0);
    let tight = budget("bot/refund/sum", HOUR, 80.0, 100.0);
    assert_eq!(
        store
            .charge(&[roomy.clone(), tight.clone()], T0)
            .await
            .unwrap(),
        ChargeOutcome::Charged
    );
    assert_eq!(
        store
            .charge(&[roomy.clone(), tight.clone()], T0 + 1)
            .await
            .unwrap(),
        ChargeOutcome::Exceeded {
            index: 1,
            used: 80.0,
            resets_at_ms: T0 + HOUR,
        }
    );
    // The count budget was not charged by the refused call: 4 more fit, not 3.
    for i in 0..4 {
        assert_eq!(
            store
                .charge(std::slice::from_ref(&roomy), T0 + 2 + i)
                .await
                .unwrap(),
            ChargeOutcome::Charged
        );
    }
    assert!(matches!(
        store.charge(&[roomy], T0 + 10).await.unwrap(),
        ChargeOutcome::Exceeded {
            index: 0,
            used: 5.0,
            ..
        }
    ));
});

store_test!(concurrent_charges_never_overshoot, |store| async move {
    assert_eq!(charge_concurrently(&[store], 50).await, 20);
});

store_test!(
    concurrent_charges_on_two_replicas_never_overshoot,
    |store, db| async move {
        let replica = db.open().await;
        assert_eq!(charge_concurrently(&[store, replica], 50).await, 20);
    }
);

store_test!(
    freeze_is_visible_from_another_replica,
    |store, db| async move {
        let replica = db.open().await;
        let agent = FreezeTarget::Agent(AgentId::new("support-bot"));
        let action = FreezeTarget::Action(ActionName::new("billing.issue_refund"));
        assert!(replica.frozen().await.unwrap().is_empty());
        store.set_frozen(&agent, true).await.unwrap();
        store.set_frozen(&action, true).await.unwrap();
        store.set_frozen(&agent, true).await.unwrap();
        let frozen = replica.frozen().await.unwrap();
        assert_eq!(frozen.len(), 2);
        assert!(frozen.contains(&agent) && frozen.contains(&action));
        replica.set_frozen(&agent, false).await.unwrap();
        replica.set_frozen(&agent, false).await.unwrap();
        assert_eq!(store.frozen().await.unwrap(), vec![action]);
    }
);

store_test!(ping_answers, |store| async move {
    store.ping().await.unwrap();
});

store_test!(
    a_charged_append_is_written_only_when_its_budgets_fit,
    |store| async move {
        let count = [budget("bot/billing.issue_refund/0", HOUR, 1.0, 2.0)];
        for i in 0..2 {
            let outcome = store
                .charge_and_append_ahead(&count, T0 + i, &[event(i as usize)])
                .await
                .unwrap();
            assert_eq!(outcome, ChargeOutcome::Charged);
        }
        // over the budget: neither charged nor appended
        let outcome = store
            .charge_and_append_ahead(&count, T0 + 10, &[event(7), event(8)])
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ChargeOutcome::Exceeded {
                index: 0,
                used: 2.0,
                resets_at_ms: T0 + HOUR,
            }
        );
        assert_eq!(store.event_count().await.unwrap(), 2);
        // no budget to charge: a plain append ahead
        let outcome = store
            .charge_and_append_ahead(&[], T0 + 20, &[event(9)])
            .await
            .unwrap();
        assert_eq!(outcome, ChargeOutcome::Charged);
        assert_one_gapless_log(
            &*store,
            &[
                (vec![event(0)], vec![0]),
                (vec![event(1)], vec![1]),
                (vec![event(9)], vec![2]),
            ],
        )
        .await;
    }
);

store_test!(
    a_charge_whose_events_cannot_be_written_is_not_kept,
    |store, db| async move {
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(FAIL, 'the disk refused the write'); END;",
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'the disk refused the write'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON audit_events \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await;
        let count = [budget("bot/billing.issue_refund/0", HOUR, 1.0, 1.0)];
        for i in 0..3 {
            assert!(
                store
                    .charge_and_append_ahead(&count, T0 + i, &[event(0)])
                    .await
                    .is_err(),
                "an append the store refused was acknowledged"
            );
        }
        db.execute(
            "DROP TRIGGER refuse;",
            "DROP TRIGGER refuse ON audit_events; DROP FUNCTION refuse();",
        )
        .await;
        // the failed calls left no charge: the whole budget is still there
        assert_eq!(
            store
                .charge_and_append_ahead(&count, T0 + 10, &[event(1)])
                .await
                .unwrap(),
            ChargeOutcome::Charged
        );
        assert_one_gapless_log(&*store, &[(vec![event(1)], vec![0])]).await;
    }
);

store_test!(
    a_failed_batch_refuses_all_its_callers_and_leaves_no_trace,
    |store, db| async move {
        store.append(&[event(0)]).await.unwrap();
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON audit_events \
         WHEN instr(NEW.body, '\"call\":\"poison\"') > 0 \
         BEGIN SELECT RAISE(ABORT, 'poisoned event'); END;",
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF position('\"call\":\"poison\"' in NEW.body) > 0 THEN RAISE EXCEPTION 'poisoned event'; END IF; RETURN NEW; \
         END $$; CREATE TRIGGER poison BEFORE INSERT ON audit_events \
         FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await;
        // Appends racing with a poisoned one: whoever shares its batch fails with it.
        let mut handles = Vec::new();
        for i in 1..40 {
            let store = Arc::clone(&store);
            handles.push(tokio::spawn(async move {
                let mut events = vec![event(i)];
                if i == 20 {
                    events[0].call = Some("poison".into());
                }
                let appended = store.append(&events).await;
                (events, appended)
            }));
        }
        let mut committed = vec![(vec![event(0)], vec![0])];
        let mut refused = 0;
        for handle in handles {
            let (events, outcome) = handle.await.unwrap();
            match outcome {
                Ok(seqs) => committed.push((events, seqs)),
                Err(_) => refused += 1,
            }
        }
        assert!(refused >= 1, "the poisoned append was refused");
        // The log holds exactly the acknowledged events, gapless.
        assert_one_gapless_log(&*store, &committed).await;
        // And the next append carries on from there.
        let next = committed.iter().map(|(e, _)| e.len() as u64).sum::<u64>();
        assert_eq!(store.append(&[event(99)]).await.unwrap(), vec![next]);
    }
);

store_test!(
    append_after_the_store_is_closed_is_an_error,
    |store, db| async move {
        store.append(&[event(0)]).await.unwrap();
        db.close_all().await;
        let err = store.append(&[event(1)]).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Unavailable, "{err}");
        assert!(store.ping().await.is_err());
        assert!(
            store
                .charge(&[budget("k", HOUR, 1.0, 5.0)], T0)
                .await
                .is_err()
        );
    }
);

store_test!(
    append_after_the_database_is_gone_is_an_error,
    |store, db| async move {
        store.append(&[event(0)]).await.unwrap();
        if !db.drop_database().await {
            return; // a SQLite file cannot be taken away under an open handle
        }
        let err = store.append(&[event(1)]).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Unavailable, "{err}");
        // Later appends fail too, and nothing was half-written.
        assert!(store.append(&[event(2)]).await.is_err());
        assert!(store.event_count().await.is_err());
    }
);

#[tokio::test]
async fn open_creates_a_relative_sqlite_file_under_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = remit_store::open("sqlite://state/remit.db", dir.path())
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.append(&[event(0)]).await.unwrap(), vec![0]);
    assert!(dir.path().join("state/remit.db").is_file());
    drop(store);
    // Reopening finds the log where it was.
    let store = remit_store::open("sqlite://state/remit.db", dir.path())
        .await
        .unwrap();
    assert_eq!(store.event_count().await.unwrap(), 1);
    assert_eq!(store.append(&[event(1)]).await.unwrap(), vec![1]);
}

#[tokio::test]
async fn a_new_sqlite_file_has_16_kib_pages_and_one_with_4_kib_pages_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |name: &str| -> i64 {
        rusqlite::Connection::open(dir.path().join(name))
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let store = remit_store::open("sqlite://new.db", dir.path())
        .await
        .unwrap();
    store.append(&[event(0)]).await.unwrap();
    assert_eq!(page_size("new.db"), 16 * 1024);
    // a file with SQLite's default pages, as remit made them before
    rusqlite::Connection::open(dir.path().join("old.db"))
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x);")
        .unwrap();
    let store = remit_store::open("sqlite://old.db", dir.path())
        .await
        .unwrap();
    store
        .append(&(0..300).map(event).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(store.event_count().await.unwrap(), 300);
    assert_eq!(store.leaf_hashes(0, 1000).await.unwrap().len(), 300);
    assert_eq!(page_size("old.db"), 4096);
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_and_keeps_its_password() {
    let err = remit_store::open("postgres://remit:hunter2@127.0.0.1:1/fleet", Path::new("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Unavailable);
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.contains("postgres://remit@127.0.0.1:1/fleet"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_store_scheme_is_refused() {
    let err = remit_store::open("mysql://u:p@h/db", Path::new("/"))
        .await
        .unwrap_err();
    assert!(err.message.contains("`mysql`"), "{err}");
}

store_test!(
    running_totals_match_a_plain_sum_over_many_windows,
    |store| async move {
        // A sum budget charged at uneven times across many windows (so pruning runs): every
        // answer must be what summing the charges still in the window would give.
        let window = 1_000;
        let limit = 12.0;
        let mut kept: Vec<(i64, f64)> = Vec::new();
        let mut refused = 0;
        let mut now = T0;
        for i in 0..300_i64 {
            now += 37 + (i * 53) % 211;
            let amount = ((i * 7) % 5) as f64 + 0.5;
            let charge = [budget("bot/refund/1", window, amount, limit)];
            let in_window: f64 = kept
                .iter()
                .filter(|(t, _)| *t > now - window)
                .map(|(_, a)| a)
                .sum();
            let answer = store.charge(&charge, now).await.unwrap();
            if in_window + amount <= limit + 1e-9 {
                assert_eq!(
                    answer,
                    ChargeOutcome::Charged,
                    "charge {i} at {now} with {in_window} used"
                );
                kept.push((now, amount));
            } else {
                let ChargeOutcome::Exceeded {
                    used, resets_at_ms, ..
                } = answer
                else {
                    panic!("charge {i} at {now}: expected a refusal, {in_window} used");
                };
                assert!(
                    (used - in_window).abs() < 1e-6,
                    "charge {i}: store says {used}, plain sum {in_window}"
                );
                // room returns when enough of the oldest charges in the window have left
                let mut left = in_window;
                let mut expected = now;
                for (t, a) in kept.iter().filter(|(t, _)| *t > now - window) {
                    left -= a;
                    if left + amount <= limit + 1e-9 {
                        expected = t + window;
                        break;
                    }
                }
                assert_eq!(resets_at_ms, expected.max(now), "charge {i}");
                refused += 1;
            }
        }
        assert!(
            refused > 20 && kept.len() > 100,
            "{refused} refused, {} kept",
            kept.len()
        );
    }
);

store_test!(
    leaf_hashes_are_the_events_hashes_without_their_bodies,
    |store| async move {
        store
            .append(&(0..12).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        let events = store.events(2, 7).await.unwrap();
        let hashes = store.leaf_hashes(2, 7).await.unwrap();
        assert_eq!(hashes.len(), 7);
        for (e, (seq, hash)) in events.iter().zip(&hashes) {
            assert_eq!(e.seq, *seq);
            assert_eq!(leaf_hash(e.body.as_bytes()), *hash);
        }
        assert!(store.leaf_hashes(12, 5).await.unwrap().is_empty());
        assert_eq!(store.leaf_hashes(u64::MAX, 5).await.unwrap(), Vec::new());
    }
);

/// A log written before migration 2, when each event's fields were also copied into columns
/// of their own, opens on either store, keeps every event byte for byte, and takes new
/// events after them (the columns are gone: an insert without them would be refused).
#[cfg(test)]
mod a_log_written_before_the_copied_columns_went_is_kept_whole {
    use super::*;

    async fn check(db: support::Db) {
        let old: Vec<Event> = (0..50).map(event).collect();
        db.as_first_written(&old).await;
        support::run(db, |store, _db| async move {
            let stored = store.events(0, 100).await.unwrap();
            assert_eq!(stored.len(), old.len());
            for (i, (e, s)) in old.iter().zip(&stored).enumerate() {
                let body = String::from_utf8(e.canonical()).unwrap();
                assert_eq!(s.seq, i as u64);
                assert_eq!(s.body, body);
                assert_eq!(s.leaf_hash, leaf_hash(body.as_bytes()));
            }
            let leaves = store.leaf_hashes(0, 100).await.unwrap();
            assert_eq!(leaves.len(), old.len());
            assert_eq!(store.append(&[event(50)]).await.unwrap(), vec![50]);
            assert_eq!(store.event_count().await.unwrap(), 51);
            assert_eq!(
                store.events(50, 1).await.unwrap()[0].event().unwrap(),
                event(50)
            );
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        check(support::Db::sqlite()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let test = "a_log_written_before_the_copied_columns_went_is_kept_whole::postgres";
        let Some(db) = support::Db::postgres(test).await else {
            return;
        };
        check(db).await;
    }
}

/// Replicas whose clocks disagree share one budget: on PostgreSQL each charge is stamped
/// with the database's clock, not the time its replica sends. With each replica's own
/// clock, one running a minute ahead saw the others' charges as out of its 10 s window,
/// and two replicas spent the budget twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_clocks_apart_share_one_budget_on_postgres() {
    let test = "replicas_with_clocks_apart_share_one_budget_on_postgres";
    let Some(db) = support::Db::postgres(test).await else {
        return;
    };
    support::run(db, |_, db| async move {
        let on_time = db.open_on_the_databases_clock().await.unwrap();
        let apart = db.open_on_the_databases_clock().await.unwrap();
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let count = [budget("bot/billing.send_email/0", 10_000, 1.0, 5.0)];
        for _ in 0..5 {
            assert_eq!(
                on_time.charge(&count, now).await.unwrap(),
                ChargeOutcome::Charged
            );
        }
        for skew in [60_000, -60_000] {
            let outcome = apart.charge(&count, now + skew).await.unwrap();
            assert!(
                matches!(outcome, ChargeOutcome::Exceeded { used, .. } if used == 5.0),
                "a replica {skew} ms apart: {outcome:?}"
            );
        }
        // and room comes back by the database's clock, 10 s after the charges
        let Ok(ChargeOutcome::Exceeded { resets_at_ms, .. }) = on_time.charge(&count, 0).await
        else {
            panic!("the sixth charge fitted")
        };
        assert!(
            (now + 10_000 - 2_000..now + 10_000 + 30_000).contains(&resets_at_ms),
            "{resets_at_ms} against {now}"
        );
    })
    .await;
}

store_test!(
    the_next_seq_from_a_point_and_the_rows_below_zero_are_read,
    |store| async move {
        assert_eq!(store.next_seq_from(0).await.unwrap(), None);
        store
            .append(&(0..5).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(store.next_seq_from(0).await.unwrap(), Some(0));
        assert_eq!(store.next_seq_from(3).await.unwrap(), Some(3));
        assert_eq!(store.next_seq_from(5).await.unwrap(), None);
        assert_eq!(store.events_below_zero().await.unwrap(), 0);
    }
);

store_test!(
    a_checkpointer_stops_signing_when_the_store_goes_back_under_it,
    |store, db| async move {
        use remit_core::audit::checkpoint::AuditKey;
        use remit_core::checkpointer::Checkpointer;
        use remit_core::ports::SystemClock;
        let key = AuditKey::generate("remit.test/log").unwrap().to_text();
        let key = || AuditKey::from_text(&key).unwrap();
        let mut signer = Checkpointer::new(key(), "remit.test/log");
        store
            .append(&(0..10).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        let first = signer.tick(&*store, &SystemClock).await.unwrap().unwrap();
        assert_eq!(first.tree_size, 10);
        // a failover to a standby that had only 7 of them
        db.execute(
            "DELETE FROM audit_events WHERE seq >= 7",
            "DELETE FROM audit_events WHERE seq >= 7",
        )
        .await;
        let err = signer.tick(&*store, &SystemClock).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Corrupt);
        assert!(
            err.to_string().contains("no longer holds event 9")
                && err.to_string().contains("remit audit verify"),
            "{err}"
        );
        // new events fill the log past the old size: still nothing signed over the mix
        store
            .append(&(100..105).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        assert!(signer.tick(&*store, &SystemClock).await.is_err());
        assert!(signer.refused().is_some());
        let latest = store.latest_checkpoint().await.unwrap().unwrap();
        assert_eq!(latest.tree_size, 10);

        // a fresh checkpointer (a restart, another replica) is held to the stored checkpoint
        let mut fresh = Checkpointer::new(key(), "remit.test/log");
        let err = fresh.tick(&*store, &SystemClock).await.unwrap_err();
        assert!(
            err.to_string().contains("root at size 10 is not the root"),
            "{err}"
        );
        // and to a checkpoint kept outside the store that this log no longer reaches
        let mut fresh = Checkpointer::new(key(), "remit.test/log");
        fresh.expect(&first.note, "the anchor file");
        db.execute(
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_checkpoints",
        )
        .await;
        let err = fresh.tick(&*store, &SystemClock).await.unwrap_err();
        assert!(err.to_string().contains("(the anchor file)"), "{err}");
        assert!(store.latest_checkpoint().await.unwrap().is_none());
    }
);

/// StoreThatAnswersOneStaleRow: delegates to a real store, except that its first
/// `events(at, 1)` answers with a row as it was before the store went back in time. It makes
/// a timing no real store can be made to show on demand: the checkpointer's check of the last
/// leaf it read passing just before the store goes back, and the new events read after.
#[derive(Debug)]
struct StoreThatAnswersOneStaleRow {
    inner: Arc<dyn remit_core::ports::Store>,
    stale: std::sync::Mutex<Option<Vec<remit_core::audit::event::StoredEvent>>>,
}

#[async_trait::async_trait]
impl remit_core::ports::Store for StoreThatAnswersOneStaleRow {
    async fn append(&self, events: &[Event]) -> Result<Vec<u64>, remit_core::ports::StoreError> {
        self.inner.append(events).await
    }
    async fn charge_and_append_ahead(
        &self,
        charges: &[remit_core::ports::BudgetCharge],
        now_ms: i64,
        events: &[Event],
    ) -> Result<ChargeOutcome, remit_core::ports::StoreError> {
        self.inner
            .charge_and_append_ahead(charges, now_ms, events)
            .await
    }
    async fn events(
        &self,
        from: u64,
        limit: u64,
    ) -> Result<Vec<remit_core::audit::event::StoredEvent>, remit_core::ports::StoreError> {
        let stale = self.stale.lock().ok().and_then(|mut s| s.take());
        match stale {
            Some(rows) => Ok(rows),
            None => self.inner.events(from, limit).await,
        }
    }
    async fn leaf_hashes(
        &self,
        from: u64,
        limit: u64,
    ) -> Result<Vec<(u64, [u8; 32])>, remit_core::ports::StoreError> {
        self.inner.leaf_hashes(from, limit).await
    }
    async fn event_count(&self) -> Result<u64, remit_core::ports::StoreError> {
        self.inner.event_count().await
    }
    async fn next_seq_from(&self, from: u64) -> Result<Option<u64>, remit_core::ports::StoreError> {
        self.inner.next_seq_from(from).await
    }
    async fn events_below_zero(&self) -> Result<u64, remit_core::ports::StoreError> {
        self.inner.events_below_zero().await
    }
    async fn put_checkpoint(
        &self,
        checkpoint: &remit_core::audit::event::StoredCheckpoint,
    ) -> Result<(), remit_core::ports::StoreError> {
        self.inner.put_checkpoint(checkpoint).await
    }
    async fn checkpoints(
        &self,
    ) -> Result<Vec<remit_core::audit::event::StoredCheckpoint>, remit_core::ports::StoreError>
    {
        self.inner.checkpoints().await
    }
    async fn latest_checkpoint(
        &self,
    ) -> Result<Option<remit_core::audit::event::StoredCheckpoint>, remit_core::ports::StoreError>
    {
        self.inner.latest_checkpoint().await
    }
    async fn charge(
        &self,
        charges: &[remit_core::ports::BudgetCharge],
        now_ms: i64,
    ) -> Result<ChargeOutcome, remit_core::ports::StoreError> {
        self.inner.charge(charges, now_ms).await
    }
    async fn set_frozen(
        &self,
        target: &FreezeTarget,
        frozen: bool,
    ) -> Result<(), remit_core::ports::StoreError> {
        self.inner.set_frozen(target, frozen).await
    }
    async fn frozen(&self) -> Result<Vec<FreezeTarget>, remit_core::ports::StoreError> {
        self.inner.frozen().await
    }
    async fn ping(&self) -> Result<(), remit_core::ports::StoreError> {
        self.inner.ping().await
    }
}

store_test!(
    a_checkpointer_signs_nothing_read_onto_a_store_that_went_back_while_it_read,
    |store, db| async move {
        use remit_core::audit::checkpoint::AuditKey;
        use remit_core::checkpointer::Checkpointer;
        use remit_core::ports::SystemClock;
        let key = AuditKey::generate("remit.test/log").unwrap();
        let mut signer = Checkpointer::new(key, "remit.test/log");
        store
            .append(&(0..10).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(
            signer
                .tick(&*store, &SystemClock)
                .await
                .unwrap()
                .unwrap()
                .tree_size,
            10
        );
        let last = store.events(9, 1).await.unwrap();
        // the store goes back to 7 events and new ones fill it past the old size, just
        // after the checkpointer checked that event 9 was still the one it read
        db.execute(
            "DELETE FROM audit_events WHERE seq >= 7",
            "DELETE FROM audit_events WHERE seq >= 7",
        )
        .await;
        store
            .append(&(100..105).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        let racing = StoreThatAnswersOneStaleRow {
            inner: Arc::clone(&store),
            stale: std::sync::Mutex::new(Some(last)),
        };
        // before: events 10 and 11 of the new log were read onto the old tree and signed
        let err = signer.tick(&racing, &SystemClock).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Corrupt);
        assert!(err.to_string().contains("event 9"), "{err}");
        assert_eq!(
            store.latest_checkpoint().await.unwrap().unwrap().tree_size,
            10
        );
    }
);
