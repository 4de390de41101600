-- The audit log keeps what the Merkle tree covers and nothing else: `seq`, the canonical
-- `body` and its `leaf_hash`. The columns copied out of the body (time, stage, call, run,
-- agent, action) were read by nothing in remit, cost work on every append, and could be
-- edited without `remit audit verify` noticing: a query on them could be told a different
-- story than the signed bodies. Query the body instead: `body::jsonb ->> 'agent'`.
ALTER TABLE audit_events
    DROP COLUMN time,
    DROP COLUMN stage,
    DROP COLUMN call,
    DROP COLUMN run,
    DROP COLUMN agent,
    DROP COLUMN action;
