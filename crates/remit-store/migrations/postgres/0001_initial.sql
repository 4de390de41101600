-- The audit log: one row per event, `seq` gapless from 0; `body` is the Merkle leaf.
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY NOT NULL,
    time TEXT NOT NULL,
    stage TEXT NOT NULL,
    call TEXT,
    run TEXT,
    agent TEXT,
    action TEXT,
    body TEXT NOT NULL,
    leaf_hash BYTEA NOT NULL
);
-- No secondary indexes yet: each one is another B-tree written for every event (the
-- benchmark found five of them a large share of the audit's cost), and `remit audit show`
-- scans in seq order. Add one with the first query that needs it.

-- Signed checkpoints, one per tree size.
CREATE TABLE audit_checkpoints (
    tree_size BIGINT PRIMARY KEY NOT NULL,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    time TEXT NOT NULL
);

-- Budget charges: each allowed call's amount against each of its budgets' keys.
-- Times never go backwards per key (a charge is stamped no earlier than the key's last one),
-- so `cum` grows with `time_ms` and a window's sum is `cum(last) - cum(last before the window)`.
CREATE TABLE budget_charges (
    key TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    -- running total of the key's charges up to this one: a window's sum is two lookups
    cum DOUBLE PRECISION NOT NULL
);
CREATE INDEX budget_charges_key_time ON budget_charges (key, time_ms);

-- The kill switch: every agent or action frozen now.
CREATE TABLE frozen_targets (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
