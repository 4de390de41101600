//! The `Store` contract over a pair of sqlx pools, written once for both backends.

/// Implements `Store` for a backend type whose reads and writes go to the named pool fields.
///
/// Appends and budget charges go through the backend's group-commit `writer`; everything
/// else is one statement of `sql` on a pool.
macro_rules! store_over_pools {
    ($store:ty, reads: $reads:ident, writes: $writes:ident, name: $name:literal) => {
        #[async_trait::async_trait]
        impl Store for $store {
            async fn append(&self, events: &[Event]) -> Result<Vec<u64>, StoreError> {
                self.writer
                    .append(events, crate::writer::Commit::MayRunHere)
                    .await
            }

            async fn append_ahead(&self, events: &[Event]) -> Result<Vec<u64>, StoreError> {
                self.writer
                    .append(events, crate::writer::Commit::Awaited)
                    .await
            }

            async fn charge_and_append_ahead(
                &self,
                charges: &[BudgetCharge],
                now_ms: i64,
                events: &[Event],
            ) -> Result<ChargeOutcome, StoreError> {
                self.writer
                    .charge_then_append(charges, now_ms, events)
                    .await
            }

            async fn events(&self, from: u64, limit: u64) -> Result<Vec<StoredEvent>, StoreError> {
                let Some((start, end)) = record::seq_range(from, limit) else {
                    return Ok(Vec::new());
                };
                self.events_between(start, end).await
            }

            async fn leaf_hashes(
                &self,
                from: u64,
                limit: u64,
            ) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
                let Some((start, end)) = record::seq_range(from, limit) else {
                    return Ok(Vec::new());
                };
                self.leaf_hashes_between(start, end).await
            }

            async fn event_count(&self) -> Result<u64, StoreError> {
                let next: i64 = sqlx::query_scalar(sql::NEXT_SEQ)
                    .fetch_one(&self.$reads)
                    .await
                    .map_err(|e| store_error("cannot count audit events", &e))?;
                u64::try_from(next).map_err(|_| record::corrupt("the audit log has a negative seq"))
            }

            async fn next_seq_from(&self, from: u64) -> Result<Option<u64>, StoreError> {
                let from = to_i64(from, "seq")?;
                let next: Option<i64> = sqlx::query_scalar(sql::NEXT_SEQ_FROM)
                    .bind(from)
                    .fetch_one(&self.$reads)
                    .await
                    .map_err(|e| store_error("cannot read audit seqs", &e))?;
                next.map(|n| {
                    u64::try_from(n)
                        .map_err(|_| record::corrupt("the audit log has a negative seq"))
                })
                .transpose()
            }

            async fn events_below_zero(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar(sql::EVENTS_BELOW_ZERO)
                    .fetch_one(&self.$reads)
                    .await
                    .map_err(|e| store_error("cannot count audit events", &e))?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn put_checkpoint(
                &self,
                checkpoint: &StoredCheckpoint,
            ) -> Result<(), StoreError> {
                let tree_size = to_i64(checkpoint.tree_size, "checkpoint tree size")?;
                let doing = "cannot save a checkpoint";
                let saved = sqlx::query(sql::INSERT_CHECKPOINT)
                    .bind(tree_size)
                    .bind(&checkpoint.root[..])
                    .bind(&checkpoint.note)
                    .bind(&checkpoint.time)
                    .execute(&self.$writes)
                    .await
                    .map_err(|e| store_error(doing, &e))?;
                if saved.rows_affected() > 0 {
                    return Ok(());
                }
                let root: Vec<u8> = sqlx::query_scalar(sql::CHECKPOINT_ROOT)
                    .bind(tree_size)
                    .fetch_one(&self.$writes)
                    .await
                    .map_err(|e| store_error(doing, &e))?;
                same_root(&root, checkpoint)
            }

            async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
                let rows: Vec<(i64, Vec<u8>, String, String)> = sqlx::query_as(sql::CHECKPOINTS)
                    .fetch_all(&self.$reads)
                    .await
                    .map_err(|e| store_error("cannot read checkpoints", &e))?;
                rows.into_iter()
                    .map(|(size, root, note, time)| {
                        record::stored_checkpoint(size, &root, note, time)
                    })
                    .collect()
            }

            async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
                let row: Option<(i64, Vec<u8>, String, String)> =
                    sqlx::query_as(sql::LATEST_CHECKPOINT)
                        .fetch_optional(&self.$reads)
                        .await
                        .map_err(|e| store_error("cannot read the latest checkpoint", &e))?;
                row.map(|(size, root, note, time)| {
                    record::stored_checkpoint(size, &root, note, time)
                })
                .transpose()
            }

            async fn charge(
                &self,
                charges: &[BudgetCharge],
                now_ms: i64,
            ) -> Result<ChargeOutcome, StoreError> {
                self.writer.charge(charges, now_ms).await
            }

            async fn set_frozen(
                &self,
                target: &FreezeTarget,
                frozen: bool,
            ) -> Result<(), StoreError> {
                let (kind, name) = record::freeze_columns(target)?;
                sqlx::query(if frozen { sql::FREEZE } else { sql::UNFREEZE })
                    .bind(kind)
                    .bind(name)
                    .execute(&self.$writes)
                    .await
                    .map_err(|e| store_error("cannot change the kill switch", &e))?;
                Ok(())
            }

            async fn frozen(&self) -> Result<Vec<FreezeTarget>, StoreError> {
                let rows: Vec<(String, String)> = sqlx::query_as(sql::FROZEN)
                    .fetch_all(&self.$reads)
                    .await
                    .map_err(|e| store_error("cannot read the kill switch", &e))?;
                rows.iter()
                    .map(|(kind, name)| record::freeze_target(kind, name))
                    .collect()
            }

            fn calls_running(&self) -> Option<&remit_core::ports::CallsRunning> {
                self.writer.calls_running()
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1")
                    .execute(&self.$reads)
                    .await
                    .map_err(|e| {
                        store_error(concat!("the ", $name, " store does not answer"), &e)
                    })?;
                Ok(())
            }
        }
    };
}
