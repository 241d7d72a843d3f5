//! Index writes from ingest: record upserts ordered by `rev`, deletions, account status, and the
//! ingest cursor — all of one batch in one transaction.

use std::collections::HashMap;

use sqlx::{Any, Row, Transaction};

use super::{StorageError, Store, now_micros, values_placeholders};
use crate::model::{CommunityRecord, Record, Visibility};
use crate::settings::Backend;

/// One change to the index, already validated and typed by ingest.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every op is a Put; boxing its record would cost an allocation per event"
)]
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
    ///
    /// Within a batch only the newest `rev` per record key is written — the same outcome as
    /// applying every event in turn, since older revs lose anyway — which lets records and
    /// their derived rows be written with one multi-row statement per chunk instead of one
    /// statement per event. Account changes are applied after the records, in order.
    pub async fn apply_batch(
        &self,
        ops: &[IndexOp],
        cursor: Option<(&str, i64)>,
    ) -> Result<ApplyStats, StorageError> {
        let mut newest: HashMap<(&str, &str, &str), usize> = HashMap::new();
        let mut accounts = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match record_key(op) {
                Some((key, rev)) => {
                    let superseded = newest
                        .get(&key)
                        .is_some_and(|&j| record_key(&ops[j]).is_some_and(|(_, r)| r > rev));
                    if !superseded {
                        newest.insert(key, i);
                    }
                }
                None => accounts.push(op),
            }
        }
        // In key order: consecutive rows then land on the same or neighbouring b-tree pages.
        let mut records: Vec<((&str, &str, &str), usize)> = newest.into_iter().collect();
        records.sort_unstable();
        let records: Vec<usize> = records.into_iter().map(|(_, i)| i).collect();
        let mut stats = ApplyStats {
            applied: 0,
            unchanged: (ops.len() - accounts.len() - records.len()) as u64,
        };

        let now = now_micros();
        let mut tx = self.begin_write().await?;
        for chunk in records.chunks(RECORD_CHUNK) {
            let chunk: Vec<&IndexOp> = chunk.iter().map(|&i| &ops[i]).collect();
            let won = upsert_records(&mut tx, self.backend, &chunk, now).await?;
            stats.applied += won.len() as u64;
            stats.unchanged += (chunk.len() - won.len()) as u64;
            let winners: Vec<&IndexOp> = won.into_iter().map(|i| chunk[i]).collect();
            apply_derived(&mut tx, self.backend, &winners).await?;
        }
        for op in accounts {
            if let IndexOp::Account {
                did,
                active,
                status,
                seq,
            } = op
            {
                if set_account(&mut tx, did, *active, status.as_deref(), *seq, now).await? {
                    stats.applied += 1;
                } else {
                    stats.unchanged += 1;
                }
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

/// Rows per multi-row record upsert (8 columns each: far below both backends' bind limits).
const RECORD_CHUNK: usize = 500;

type RecordKey<'a> = (&'a str, &'a str, &'a str);

/// (did, collection, rkey) and rev of a record operation; `None` for account changes.
fn record_key(op: &IndexOp) -> Option<(RecordKey<'_>, &str)> {
    match op {
        IndexOp::Put {
            did,
            collection,
            rkey,
            rev,
            ..
        }
        | IndexOp::Delete {
            did,
            collection,
            rkey,
            rev,
        } => Some(((did, collection, rkey), rev)),
        IndexOp::Account { .. } => None,
    }
}

/// Insert or replace records (tombstones for deletes) unless the stored row carries a newer
/// or equal `rev`. Returns the positions in `ops` whose write won. Keys must be unique within
/// `ops` (PostgreSQL refuses to upsert one row twice in a statement).
async fn upsert_records(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    ops: &[&IndexOp],
    now: i64,
) -> Result<Vec<usize>, StorageError> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO records (did, collection, rkey, rev, cid, deleted, body, indexed_at) \
         VALUES {} \
         ON CONFLICT (did, collection, rkey) DO UPDATE SET rev = excluded.rev, cid = excluded.cid, \
         deleted = excluded.deleted, body = excluded.body, indexed_at = excluded.indexed_at \
         WHERE excluded.rev > records.rev \
         RETURNING did, collection, rkey",
        values_placeholders(backend, ops.len(), 8)
    );
    let mut query = sqlx::query(&sql);
    for op in ops {
        let (cid, body) = match op {
            IndexOp::Put { cid, body, .. } => (cid.as_deref(), Some(body.as_str())),
            _ => (None, None),
        };
        let ((did, collection, rkey), rev) = record_key(op)
            .ok_or_else(|| StorageError::Corrupt("account change among record writes".into()))?;
        query = query
            .bind(did)
            .bind(collection)
            .bind(rkey)
            .bind(rev)
            .bind(cid)
            .bind(i64::from(body.is_none()))
            .bind(body)
            .bind(now);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let position: HashMap<RecordKey<'_>, usize> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| record_key(op).map(|(key, _)| (key, i)))
        .collect();
    let mut won = Vec::with_capacity(rows.len());
    for row in &rows {
        let (did, collection, rkey): (&str, &str, &str) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if let Some(&i) = position.get(&(did, collection, rkey)) {
            won.push(i);
        }
    }
    won.sort_unstable();
    Ok(won)
}

/// Bring the derived tables in line with records whose write won: subscriptions and
/// preferences in multi-row upserts, the rarer communities and deletions one by one.
async fn apply_derived(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    winners: &[&IndexOp],
) -> Result<(), StorageError> {
    let mut subscriptions = Vec::new();
    let mut preferences = Vec::new();
    for op in winners {
        match op {
            IndexOp::Put {
                did,
                rkey,
                record: Record::Subscription(s),
                ..
            } => subscriptions.push((did.as_str(), rkey.as_str(), s)),
            IndexOp::Put {
                did,
                record: Record::Preferences(p),
                ..
            } => preferences.push((did.as_str(), p)),
            IndexOp::Put {
                did,
                record: Record::Community(c),
                ..
            } => put_community(tx, did, c).await?,
            IndexOp::Delete {
                did,
                collection,
                rkey,
                ..
            } => delete_derived(tx, did, collection, rkey).await?,
            IndexOp::Account { .. } => {}
        }
    }
    for chunk in subscriptions.chunks(RECORD_CHUNK) {
        let sql = format!(
            "INSERT INTO subscriptions (did, rkey, subject, muted, routes) VALUES {} \
             ON CONFLICT (did, rkey) DO UPDATE SET subject = excluded.subject, \
             muted = excluded.muted, routes = excluded.routes",
            values_placeholders(backend, chunk.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for (did, rkey, s) in chunk {
            query = query
                .bind(*did)
                .bind(*rkey)
                .bind(&s.subject)
                .bind(i64::from(s.muted))
                .bind(to_json(&s.routes)?);
        }
        query.execute(&mut **tx).await?;
    }
    // A record for a community replaces the subscription Herald kept for the member there
    // (see `Store::keep_subscription`): from now on the member's own record decides.
    for chunk in subscriptions.chunks(RECORD_CHUNK) {
        let sql = format!(
            "DELETE FROM subscriptions WHERE (did, rkey) IN (VALUES {})",
            values_placeholders(backend, chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (did, _, s) in chunk {
            query = query.bind(*did).bind(kept_rkey(&s.subject));
        }
        query.execute(&mut **tx).await?;
    }
    for chunk in preferences.chunks(RECORD_CHUNK) {
        let sql = format!(
            "INSERT INTO preferences (did, default_routes, paused_all, language, timezone, \
             digest_hour, quiet_start, quiet_end, channel_limits, channel_cadences) VALUES {} \
             ON CONFLICT (did) DO UPDATE SET default_routes = excluded.default_routes, \
             paused_all = excluded.paused_all, language = excluded.language, \
             timezone = excluded.timezone, digest_hour = excluded.digest_hour, \
             quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, \
             channel_limits = excluded.channel_limits, \
             channel_cadences = excluded.channel_cadences",
            values_placeholders(backend, chunk.len(), 10)
        );
        let mut query = sqlx::query(&sql);
        for (did, p) in chunk {
            query = query
                .bind(*did)
                .bind(to_json(&p.default_routes)?)
                .bind(i64::from(p.paused_all))
                .bind(p.language.as_deref())
                .bind(p.timezone.as_deref())
                .bind(p.digest_hour)
                .bind(p.quiet_hours.as_ref().map(|q| q.start.as_str()))
                .bind(p.quiet_hours.as_ref().map(|q| q.end.as_str()))
                .bind(to_json(&p.channel_limits)?)
                .bind(to_json(&p.channel_cadences)?);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// A community's row and its publisher and admin roles, replaced as a whole.
async fn put_community(
    tx: &mut Transaction<'static, Any>,
    did: &str,
    community: &CommunityRecord,
) -> Result<(), StorageError> {
    let CommunityRecord {
        name,
        pipes,
        publishers,
        admins,
        visibility,
    } = community;
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
         seq = excluded.seq, updated_at = excluded.updated_at, vault_forgotten_at = NULL \
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

impl Store {
    /// Deleted accounts whose vault contacts have not been forgotten yet, at most `limit`.
    pub async fn accounts_to_forget(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT did FROM accounts WHERE status = 'deleted' AND vault_forgotten_at IS NULL \
             ORDER BY did LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?)
    }

    /// Note that the vault forgot `did`, unless its status changed meanwhile (a status
    /// change clears the mark, and the account is looked at again).
    pub async fn mark_forgotten(&self, did: &str, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE accounts SET vault_forgotten_at = $2 WHERE did = $1 AND status = 'deleted'",
        )
        .bind(did)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StorageError> {
    serde_json::to_string(value).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// Record key of a subscription Herald keeps for a member (a converted standalone email
/// subscription). Record keys from repos are TIDs, which never contain `:`, so these cannot
/// collide with an indexed record.
pub(crate) fn kept_rkey(community: &str) -> String {
    format!("{KEPT_PREFIX}{community}")
}

pub(crate) const KEPT_PREFIX: &str = "kept:";

impl Store {
    /// Keep a subscription for `did` to `community` on Herald's side — what a member's
    /// standalone email subscription becomes when their account verifies that address. It
    /// lives beside indexed subscriptions, so preference resolution treats it like one, until
    /// the member publishes a record for that community (which replaces it).
    pub async fn keep_subscription(
        &self,
        did: &str,
        community: &str,
        routes: &[crate::model::Route],
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        let has_record: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM subscriptions WHERE did = $1 AND subject = $2 AND rkey NOT LIKE 'kept:%'",
        )
        .bind(did)
        .bind(community)
        .fetch_optional(&mut *tx)
        .await?;
        if has_record.is_none() {
            sqlx::query(
                "INSERT INTO subscriptions (did, rkey, subject, muted, routes) \
                 VALUES ($1, $2, $3, 0, $4) ON CONFLICT (did, rkey) DO UPDATE SET routes = excluded.routes",
            )
            .bind(did)
            .bind(kept_rkey(community))
            .bind(community)
            .bind(to_json(&routes)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The member's indexed records for `getPreferences`: the preferences record, subscription
    /// records as `(rkey, body)`, and the subscriptions Herald keeps as `(community, routes)`.
    pub async fn member_records(&self, did: &str) -> Result<MemberRecords, StorageError> {
        let rows = sqlx::query(
            "SELECT collection, rkey, body FROM records WHERE did = $1 AND deleted = 0 \
             AND collection IN ($2, $3) ORDER BY collection, rkey",
        )
        .bind(did)
        .bind(crate::model::PREFERENCES)
        .bind(crate::model::SUBSCRIPTION)
        .fetch_all(&self.read)
        .await?;
        let mut out = MemberRecords::default();
        for row in rows {
            let collection: String = row.try_get(0)?;
            let rkey: String = row.try_get(1)?;
            let Some(body) = row.try_get::<Option<String>, _>(2)? else {
                continue;
            };
            let body: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| StorageError::Corrupt(format!("record body: {e}")))?;
            if collection == crate::model::PREFERENCES {
                out.preferences = Some(body);
            } else {
                out.subscriptions.push((rkey, body));
            }
        }
        let kept = sqlx::query(
            "SELECT subject, routes FROM subscriptions WHERE did = $1 AND rkey LIKE 'kept:%' \
             ORDER BY subject",
        )
        .bind(did)
        .fetch_all(&self.read)
        .await?;
        for row in kept {
            let routes: String = row.try_get(1)?;
            out.kept.push((
                row.try_get(0)?,
                serde_json::from_str(&routes)
                    .map_err(|e| StorageError::Corrupt(format!("kept routes: {e}")))?,
            ));
        }
        Ok(out)
    }
}

/// See [`Store::member_records`].
#[derive(Debug, Default, Clone)]
pub struct MemberRecords {
    pub preferences: Option<serde_json::Value>,
    pub subscriptions: Vec<(String, serde_json::Value)>,
    pub kept: Vec<(String, Vec<crate::model::Route>)>,
}
