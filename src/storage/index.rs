//! Index writes from ingest: record upserts ordered by `rev`, deletions, account status, and the
//! ingest cursor — all of one batch in one transaction.

use sqlx::{Any, Transaction};

use super::{StorageError, Store, now_micros};
use crate::model::{CommunityRecord, PreferencesRecord, Record, SubscriptionRecord, Visibility};

/// One change to the index, already validated and typed by ingest.
#[derive(Debug, Clone)]
pub enum IndexOp {
    Put {
        did: String,
        collection: String,
        rkey: String,
        rev: String,
        cid: Option<String>,
        record: Record,
        /// The record as received, kept for `getPreferences` and re-derivation.
        body: String,
    },
    Delete {
        did: String,
        collection: String,
        rkey: String,
        rev: String,
    },
    Account {
        did: String,
        active: bool,
        status: Option<String>,
        seq: i64,
    },
}

/// What a batch changed; replays of events already indexed count as `unchanged`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub applied: u64,
    pub unchanged: u64,
}

impl Store {
    /// Apply a batch of index changes and move `source`'s cursor, atomically.
    pub async fn apply_batch(
        &self,
        ops: &[IndexOp],
        cursor: Option<(&str, i64)>,
    ) -> Result<ApplyStats, StorageError> {
        let mut tx = self.begin_write().await?;
        let mut stats = ApplyStats::default();
        let now = now_micros();
        for op in ops {
            let changed = match op {
                IndexOp::Put {
                    did,
                    collection,
                    rkey,
                    rev,
                    cid,
                    record,
                    body,
                } => {
                    let won = upsert_record(
                        &mut tx,
                        (did, collection, rkey, rev),
                        cid.as_deref(),
                        Some(body),
                        now,
                    )
                    .await?;
                    if won {
                        put_derived(&mut tx, did, rkey, record).await?;
                    }
                    won
                }
                IndexOp::Delete {
                    did,
                    collection,
                    rkey,
                    rev,
                } => {
                    let won = upsert_record(&mut tx, (did, collection, rkey, rev), None, None, now)
                        .await?;
                    if won {
                        delete_derived(&mut tx, did, collection, rkey).await?;
                    }
                    won
                }
                IndexOp::Account {
                    did,
                    active,
                    status,
                    seq,
                } => set_account(&mut tx, did, *active, status.as_deref(), *seq, now).await?,
            };
            if changed {
                stats.applied += 1;
            } else {
                stats.unchanged += 1;
            }
        }
        if let Some((source, position)) = cursor {
            sqlx::query(
                "INSERT INTO ingest_cursor (source, cursor, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, \
                 updated_at = excluded.updated_at",
            )
            .bind(source)
            .bind(position)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stats)
    }

    pub async fn cursor(&self, source: &str) -> Result<Option<i64>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT cursor FROM ingest_cursor WHERE source = $1")
                .bind(source)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// The stored JSON of a live record, if any.
    pub async fn record_body(
        &self,
        did: &str,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<String>, StorageError> {
        let body: Option<Option<String>> = sqlx::query_scalar(
            "SELECT body FROM records WHERE did = $1 AND collection = $2 AND rkey = $3 \
             AND deleted = 0",
        )
        .bind(did)
        .bind(collection)
        .bind(rkey)
        .fetch_optional(&self.read)
        .await?;
        Ok(body.flatten())
    }

    /// Number of live records, by collection (operations and tests).
    pub async fn count_records(&self, collection: &str) -> Result<i64, StorageError> {
        Ok(
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM records WHERE collection = $1 AND deleted = 0",
            )
            .bind(collection)
            .fetch_one(&self.read)
            .await?,
        )
    }
}

/// Insert or replace a record (or its tombstone when `body` is `None`) unless the stored row
/// carries a newer or equal `rev`. Returns whether this write won.
async fn upsert_record(
    tx: &mut Transaction<'static, Any>,
    (did, collection, rkey, rev): (&str, &str, &str, &str),
    cid: Option<&str>,
    body: Option<&str>,
    now: i64,
) -> Result<bool, StorageError> {
    let row: Option<i64> = sqlx::query_scalar(
        "INSERT INTO records (did, collection, rkey, rev, cid, deleted, body, indexed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (did, collection, rkey) DO UPDATE SET rev = excluded.rev, cid = excluded.cid, \
         deleted = excluded.deleted, body = excluded.body, indexed_at = excluded.indexed_at \
         WHERE excluded.rev > records.rev \
         RETURNING deleted",
    )
    .bind(did)
    .bind(collection)
    .bind(rkey)
    .bind(rev)
    .bind(cid)
    .bind(i64::from(body.is_none()))
    .bind(body)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.is_some())
}

async fn put_derived(
    tx: &mut Transaction<'static, Any>,
    did: &str,
    rkey: &str,
    record: &Record,
) -> Result<(), StorageError> {
    match record {
        Record::Subscription(SubscriptionRecord {
            subject,
            routes,
            muted,
            ..
        }) => {
            sqlx::query(
                "INSERT INTO subscriptions (did, rkey, subject, muted, routes) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (did, rkey) DO UPDATE SET \
                 subject = excluded.subject, muted = excluded.muted, routes = excluded.routes",
            )
            .bind(did)
            .bind(rkey)
            .bind(subject)
            .bind(i64::from(*muted))
            .bind(to_json(routes)?)
            .execute(&mut **tx)
            .await?;
        }
        Record::Preferences(PreferencesRecord {
            default_routes,
            paused_all,
        }) => {
            sqlx::query(
                "INSERT INTO preferences (did, default_routes, paused_all) \
                 VALUES ($1, $2, $3) ON CONFLICT (did) DO UPDATE SET \
                 default_routes = excluded.default_routes, paused_all = excluded.paused_all",
            )
            .bind(did)
            .bind(to_json(default_routes)?)
            .bind(i64::from(*paused_all))
            .execute(&mut **tx)
            .await?;
        }
        Record::Community(CommunityRecord {
            name,
            pipes,
            publishers,
            admins,
            visibility,
        }) => {
            sqlx::query(
                "INSERT INTO communities (did, name, visibility, pipes) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (did) DO UPDATE SET \
                 name = excluded.name, visibility = excluded.visibility, pipes = excluded.pipes",
            )
            .bind(did)
            .bind(name)
            .bind(Visibility::parse(visibility.as_deref()).as_str())
            .bind(to_json(pipes)?)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM community_roles WHERE community = $1")
                .bind(did)
                .execute(&mut **tx)
                .await?;
            let roles = publishers
                .iter()
                .map(|p| (p, "publisher"))
                .chain(admins.iter().map(|a| (a, "admin")));
            for (member, role) in roles {
                sqlx::query(
                    "INSERT INTO community_roles (community, did, role) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(did)
                .bind(member)
                .bind(role)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

async fn delete_derived(
    tx: &mut Transaction<'static, Any>,
    did: &str,
    collection: &str,
    rkey: &str,
) -> Result<(), StorageError> {
    use crate::model::{COMMUNITY, PREFERENCES, SUBSCRIPTION};
    match collection {
        SUBSCRIPTION => {
            sqlx::query("DELETE FROM subscriptions WHERE did = $1 AND rkey = $2")
                .bind(did)
                .bind(rkey)
                .execute(&mut **tx)
                .await?;
        }
        PREFERENCES => {
            sqlx::query("DELETE FROM preferences WHERE did = $1")
                .bind(did)
                .execute(&mut **tx)
                .await?;
        }
        COMMUNITY => {
            for sql in [
                "DELETE FROM communities WHERE did = $1",
                "DELETE FROM community_roles WHERE community = $1",
            ] {
                sqlx::query(sql).bind(did).execute(&mut **tx).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Record an account's hosting status (ordered by the firehose `seq`). A deleted account's
/// records are purged from the index; the account row stays so nothing reaches it.
async fn set_account(
    tx: &mut Transaction<'static, Any>,
    did: &str,
    active: bool,
    status: Option<&str>,
    seq: i64,
    now: i64,
) -> Result<bool, StorageError> {
    let won: Option<i64> = sqlx::query_scalar(
        "INSERT INTO accounts (did, active, status, seq, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (did) DO UPDATE SET active = excluded.active, status = excluded.status, \
         seq = excluded.seq, updated_at = excluded.updated_at \
         WHERE excluded.seq > accounts.seq \
         OR (excluded.seq = accounts.seq AND (excluded.active <> accounts.active \
             OR COALESCE(excluded.status, '') <> COALESCE(accounts.status, ''))) \
         RETURNING active",
    )
    .bind(did)
    .bind(i64::from(active))
    .bind(status)
    .bind(seq)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if won.is_some() && status == Some("deleted") {
        for sql in [
            "DELETE FROM records WHERE did = $1",
            "DELETE FROM subscriptions WHERE did = $1",
            "DELETE FROM preferences WHERE did = $1",
            "DELETE FROM communities WHERE did = $1",
            "DELETE FROM community_roles WHERE community = $1 OR did = $1",
            "DELETE FROM memberships WHERE community = $1 OR did = $1",
        ] {
            sqlx::query(sql).bind(did).execute(&mut **tx).await?;
        }
    }
    Ok(won.is_some())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StorageError> {
    serde_json::to_string(value).map_err(|e| StorageError::Corrupt(e.to_string()))
}
