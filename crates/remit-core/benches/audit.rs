//! Offline verify throughput: 1,000,000 events of about 300 bytes, a checkpoint every 10,000.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use remit_core::audit::{
    AuditKey, Checkpoint, Event, Frontier, LogVerifier, Stage, StoredCheckpoint, StoredEvent,
    leaf_hash,
};
use std::hint::black_box;
use std::time::Duration;

const EVENTS: u64 = 1_000_000;
const EVERY: u64 = 10_000;
const ORIGIN: &str = "bench.remit/log";

/// A realistic executed event; its canonical body is about 300 bytes.
fn body(i: u64) -> String {
    let event = Event {
        time: format!(
            "2026-03-01T12:{:02}:{:02}.{:03}Z",
            (i / 60) % 60,
            i % 60,
            i % 1000
        )
        .into(),
        stage: Stage::Executed,
        call: Some(format!("01J{i:023}").into()),
        run: Some("run-7".into()),
        agent: Some("support-bot".into()),
        action: Some("billing.issue_refund".into()),
        register: Some("sha256:4f2a".into()),
        detail: serde_json::json!({
            "args": {"amount": i % 500, "order": format!("ord_{i}")},
            "reason": "customer reported a duplicate charge",
            "result": "ok",
        })
        .into(),
    };
    String::from_utf8(event.canonical()).unwrap_or_default()
}

fn log(key: &AuditKey) -> (Vec<StoredEvent>, Vec<StoredCheckpoint>) {
    let mut events = Vec::with_capacity(EVENTS as usize);
    let mut checkpoints = Vec::new();
    let mut frontier = Frontier::new();
    for seq in 0..EVENTS {
        let body = body(seq);
        let leaf_hash = leaf_hash(body.as_bytes());
        frontier.push(leaf_hash);
        events.push(StoredEvent {
            seq,
            body,
            leaf_hash,
        });
        if frontier.size().is_multiple_of(EVERY) {
            let root = frontier.root();
            let note = Checkpoint {
                origin: ORIGIN.to_owned(),
                size: frontier.size(),
                root,
            }
            .sign(key);
            checkpoints.push(StoredCheckpoint {
                tree_size: frontier.size(),
                root,
                note,
                time: String::new(),
            });
        }
    }
    (events, checkpoints)
}

#[expect(clippy::print_stderr, reason = "a bench reports its input on stderr")]
fn verify_throughput(c: &mut Criterion) {
    let Ok(key) = AuditKey::generate(ORIGIN) else {
        return;
    };
    let verifier = key.verifier();
    let (events, checkpoints) = log(&key);
    let bytes: usize = events.iter().map(|e| e.body.len()).sum();
    eprintln!(
        "{} events, mean body {} bytes, {} checkpoints",
        events.len(),
        bytes / events.len(),
        checkpoints.len()
    );

    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("verify_1m_events", |b| {
        b.iter(|| {
            let mut v = LogVerifier::new(&verifier, ORIGIN, &checkpoints);
            for e in &events {
                v.push(black_box(e));
            }
            let report = v.finish();
            assert!(report.is_ok(), "{:?}", report.problems.first());
            report
        });
    });
    group.finish();
}

criterion_group!(benches, verify_throughput);
criterion_main!(benches);
