-- The audit log: one row per event, `seq` gapless from 0; `body` is the Merkle leaf.
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY NOT NULL,
    time TEXT NOT NULL,
    stage TEXT NOT NULL,
    call TEXT,
    run TEXT,
    agent TEXT,
    action TEXT,
    body TEXT NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_call ON audit_events (call);
CREATE INDEX audit_events_run ON audit_events (run);
CREATE INDEX audit_events_agent ON audit_events (agent, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);

-- Signed checkpoints, one per tree size.
CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    time TEXT NOT NULL
);

-- Budget charges: each allowed call's amount against each of its budgets' keys.
CREATE TABLE budget_charges (
    key TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    amount REAL NOT NULL
);
CREATE INDEX budget_charges_key_time ON budget_charges (key, time_ms);

-- The kill switch: every agent or action frozen now.
CREATE TABLE frozen_targets (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
