//! Backfill bookkeeping: which repositories are still to read, and the index keys an account
//! holds (so a re-read repository can delete what it no longer has).

use super::{StorageError, Store, now_micros};

/// Progress counts by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackfillCounts {
    pub pending: i64,
    pub done: i64,
    pub unavailable: i64,
    pub failed: i64,
}

impl Store {
    /// Adds repositories to read; ones already known keep their status.
    pub async fn backfill_enqueue(&self, dids: &[String]) -> Result<(), StorageError> {
        let now = now_micros();
        let mut tx = self.begin_write().await?;
        for did in dids {
            sqlx::query(
                "INSERT INTO backfill_repos (did, status, updated_at) VALUES ($1, 'pending', $2) \
                 ON CONFLICT (did) DO NOTHING",
            )
            .bind(did)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Repositories to read now: pending ones, and ones that failed last time.
    pub async fn backfill_todo(&self) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT did FROM backfill_repos WHERE status IN ('pending', 'failed') ORDER BY did",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Records how reading a repository ended.
    pub async fn backfill_mark(
        &self,
        did: &str,
        status: &str,
        rev: Option<&str>,
        records: i64,
        error: Option<&str>,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE backfill_repos SET status = $1, rev = $2, records = $3, error = $4, \
             updated_at = $5 WHERE did = $6",
        )
        .bind(status)
        .bind(rev)
        .bind(records)
        .bind(error)
        .bind(now_micros())
        .bind(did)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Starts over: every known repository is read again on the next run.
    pub async fn backfill_reset(&self) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM backfill_repos")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn backfill_counts(&self) -> Result<BackfillCounts, StorageError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM backfill_repos GROUP BY status")
                .fetch_all(&self.read)
                .await?;
        let mut counts = BackfillCounts::default();
        for (status, n) in rows {
            match status.as_str() {
                "pending" => counts.pending = n,
                "done" => counts.done = n,
                "unavailable" => counts.unavailable = n,
                "failed" => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// The (collection, rkey) of every live record indexed for `did`.
    pub async fn record_keys_of(&self, did: &str) -> Result<Vec<(String, String)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT collection, rkey FROM records WHERE did = $1 AND deleted = 0")
                .bind(did)
                .fetch_all(&self.read)
                .await?,
        )
    }
}
