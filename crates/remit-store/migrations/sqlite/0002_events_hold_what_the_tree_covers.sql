-- The audit log keeps what the Merkle tree covers and nothing else: `seq`, the canonical
-- `body` and its `leaf_hash`. The columns copied out of the body (time, stage, call, run,
-- agent, action) were read by nothing in remit, cost about a quarter of SQLite's work per
-- event, and could be edited without `remit audit verify` noticing: a query on them could
-- be told a different story than the signed bodies. Query the body instead:
-- `json_extract(body, '$.agent')`.
CREATE TABLE audit_events_body_only (
    seq INTEGER PRIMARY KEY NOT NULL,
    body TEXT NOT NULL,
    leaf_hash BLOB NOT NULL
);
INSERT INTO audit_events_body_only (seq, body, leaf_hash)
    SELECT seq, body, leaf_hash FROM audit_events ORDER BY seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_body_only RENAME TO audit_events;
