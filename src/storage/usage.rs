//! What the delivery policy reads and counts: members' timing preferences, messages sent per
//! member, channel and local day (the daily cap), SMS per community and UTC day (the
//! operator's cap), the held items a digest folds together, and notices to a community's
//! maintainers.
//!
//! Counters are reserved before a send in one atomic statement (`INSERT … ON CONFLICT DO
//! UPDATE … WHERE sent < cap`), so concurrent dispatchers never exceed a cap, and given back
//! when the send fails.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;

use super::{Claimed, StorageError, Store};

/// A daily message counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Messages to a member on a channel per local day (the member's cap).
    Member,
    /// Messages for a community on a channel per UTC day (the operator's cap).
    Community,
}

impl Counter {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Counter::Member => ("channel_usage", "recipient"),
            Counter::Community => ("community_usage", "community"),
        }
    }
}

/// A member's timing preferences as indexed: raw, to be read leniently by the schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberTiming {
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub digest_hour: Option<i64>,
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    /// JSON array of `{channel, maxPerDay}`.
    pub channel_limits: Option<String>,
    /// JSON array of `{channel, cadence}`.
    pub channel_cadences: Option<String>,
}

impl Store {
    /// Timing preferences of the members among `dids` who published a preferences record.
    pub async fn member_timing(
        &self,
        dids: &[String],
    ) -> Result<HashMap<String, MemberTiming>, StorageError> {
        let sql = format!(
            "SELECT did, language, timezone, digest_hour, quiet_start, quiet_end, \
             channel_limits, channel_cadences FROM preferences WHERE did IN {}",
            super::json_list(self.backend, 1)
        );
        let rows = super::fetch_listed(&self.read, &sql, dids).await?;
        rows.iter()
            .map(|row| {
                let timing = MemberTiming {
                    language: row.try_get(1)?,
                    timezone: row.try_get(2)?,
                    digest_hour: row.try_get(3)?,
                    quiet_start: row.try_get(4)?,
                    quiet_end: row.try_get(5)?,
                    channel_limits: row.try_get(6)?,
                    channel_cadences: row.try_get(7)?,
                };
                Ok((row.try_get(0)?, timing))
            })
            .collect()
    }

    /// Take one of the `cap` messages `counter` allows `key` on `channel` on `day`: the count
    /// after taking it, or `None` when they are all taken.
    pub async fn reserve_send(
        &self,
        counter: Counter,
        key: &str,
        channel: &str,
        day: &str,
        cap: u64,
    ) -> Result<Option<u64>, StorageError> {
        let (table, column) = counter.table();
        let sent: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {table} ({column}, channel, day, sent) VALUES ($1, $2, $3, 1) \
             ON CONFLICT ({column}, channel, day) DO UPDATE SET sent = {table}.sent + 1 \
             WHERE {table}.sent < $4 RETURNING sent"
        ))
        .bind(key)
        .bind(channel)
        .bind(day)
        .bind(cap as i64)
        .fetch_optional(&self.write)
        .await?;
        Ok(sent.map(|n| n.max(0) as u64))
    }

    /// Give back a reservation whose send did not happen.
    pub async fn release_send(
        &self,
        counter: Counter,
        key: &str,
        channel: &str,
        day: &str,
    ) -> Result<(), StorageError> {
        let (table, column) = counter.table();
        sqlx::query(&format!(
            "UPDATE {table} SET sent = sent - 1 \
             WHERE {column} = $1 AND channel = $2 AND day = $3 AND sent > 0"
        ))
        .bind(key)
        .bind(channel)
        .bind(day)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Messages sent for `community` on `channel` on `day`.
    pub async fn community_usage(
        &self,
        community: &str,
        channel: crate::model::Channel,
        day: &str,
    ) -> Result<u64, StorageError> {
        let sent: Option<i64> = sqlx::query_scalar(
            "SELECT sent FROM community_usage WHERE community = $1 AND channel = $2 AND day = $3",
        )
        .bind(community)
        .bind(channel.as_str())
        .bind(day)
        .fetch_optional(&self.read)
        .await?;
        Ok(sent.unwrap_or(0).max(0) as u64)
    }

    /// Claim, under `lease_token`, the held items of `recipient` on `channel` that are due:
    /// the rest of a digest, or what a daily cap held back, to go out in one message with a
    /// row already claimed.
    pub async fn claim_folded(
        &self,
        recipient: &str,
        channel: &str,
        lease_token: &str,
        lease: Duration,
        now: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let until = now + lease.as_micros() as i64;
        self.claim_held(channel, vec![recipient], lease_token, until, now)
            .await
    }

    /// Put a notice from Herald in the inbox of each of `community`'s admins, once per
    /// `item_id` (a later call with the same id changes nothing). Returns whether it was new.
    pub async fn notify_admins(
        &self,
        community: &str,
        item_id: &str,
        title: &str,
        text: &str,
        publisher: &str,
        now: i64,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let id = uuid::Uuid::now_v7().to_string();
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO publications (id, community, pipe, item_id, title, text, url, publisher, \
             recipients, created_at, urgency) VALUES ($1, $2, 'announcement', $3, $4, $5, NULL, \
             $6, 0, $7, 'normal') ON CONFLICT (community, item_id) DO NOTHING RETURNING id",
        )
        .bind(&id)
        .bind(community)
        .bind(item_id)
        .bind(title)
        .bind(text)
        .bind(publisher)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            tx.commit().await?;
            return Ok(false);
        }
        let admitted = sqlx::query(
            "INSERT INTO notifications (recipient, publication_id, indexed_at) \
             SELECT did, $1, $2 FROM community_roles WHERE community = $3 AND role = 'admin' \
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(now)
        .bind(community)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE publications SET recipients = $1 WHERE id = $2")
            .bind(admitted as i64)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
