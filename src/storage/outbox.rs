//! The outbox as the dispatcher sees it: claiming due deliveries under a lease, recording
//! their outcomes, dead letters and their re-queueing, counts for metrics, and what a
//! delivery needs to be rendered (its publication, the community's name, the member's
//! language) and the rows a member's private feed lists.
//!
//! A claim is one statement (`UPDATE … RETURNING`; on PostgreSQL its inner `SELECT` takes
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait for or take each other's rows)
//! and commits at once: no transaction is open while a delivery is sent. Each claim carries a
//! fresh token and an outcome is recorded only under the token that claimed the row, so a
//! worker whose lease expired (and whose row another worker claimed again) cannot overwrite
//! the newer claim's outcome.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{StorageError, Store};
use crate::settings::Backend;

/// A delivery claimed by one worker until `lease_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub publication_id: String,
    /// A member's DID, or `email:<address id>` for an email-only subscriber.
    pub recipient: String,
    pub channel: String,
    /// Sends tried before this claim.
    pub attempts: i64,
    /// Times claimed, this claim included: more than `attempts + 1` means an earlier claimer
    /// died holding the row (and may have sent it).
    pub claims: i64,
    pub lease_token: String,
    /// Held for a digest or past a daily cap: goes out folded with the member's other such
    /// items on the channel.
    pub fold: bool,
}

/// What became of one claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        provider: String,
        provider_id: Option<String>,
    },
    /// Try again at `at` (microseconds).
    Retry { at: i64, error: String },
    /// Given up: attempts exhausted or a permanent failure.
    Dead { error: String },
    /// Not sendable any more, and not a failure: the contact was removed, unsubscribed or
    /// reported gone by the provider, or the item expired while held.
    Cancelled { reason: String },
    /// Not sent yet, by policy (quiet hours, the digest hour, a daily cap): pending again at
    /// `at`, with no attempt counted; `fold` makes it part of the member's next message on
    /// the channel.
    Held { at: i64, fold: bool },
}

impl Outcome {
    /// The outcome's name in metrics (`herald_deliveries_total{outcome}`).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
            Outcome::Cancelled { .. } => "cancelled",
            Outcome::Held { .. } => "held",
        }
    }

    /// The row's status once the outcome is recorded.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Retry { .. } | Outcome::Held { .. } => "pending",
            Outcome::Dead { .. } => "dead",
            Outcome::Cancelled { .. } => "cancelled",
        }
    }
}

/// An outcome for the row claimed under `lease_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub id: String,
    pub lease_token: String,
    pub outcome: Outcome,
}

/// A dead letter, as `herald deliveries dead` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub publication_id: String,
    pub recipient: String,
    pub channel: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Which dead letters `herald deliveries retry` re-queues.
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    pub ids: Vec<String>,
    pub channel: Option<String>,
}

/// What a delivery of one publication is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationContext {
    pub id: String,
    pub community: String,
    pub community_name: Option<String>,
    pub pipe: String,
    pub item_id: String,
    pub title: String,
    pub text: Option<String>,
    pub url: Option<String>,
    pub created_at: i64,
    /// `normal` or `urgent`.
    pub urgency: String,
    pub expires_at: Option<i64>,
}

/// One entry of a member's private feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub publication: PublicationContext,
    /// When it was delivered to the feed.
    pub sent_at: i64,
}

/// `UPDATE outbox … FROM v` for outcomes given as the JSON array of arrays in `$1` (see
/// [`super::json_rows`]): `fields` names each array's fields after the row id and the lease
/// token, as `v`'s columns, and `set` is what the outcome sets besides ending the lease. One
/// statement per kind of outcome, whatever the number of rows, so it is prepared once.
fn settle_sql(backend: Backend, fields: &[(&str, &str)], set: &str) -> String {
    let columns: String = fields
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| format!(", CAST(value ->> {} AS {ty}) AS {name}", i + 2))
        .collect();
    // Materialized: SQLite otherwise evaluated `v` again for each row it joined, parsing the
    // whole JSON list again for every outcome.
    format!(
        "WITH v AS MATERIALIZED (SELECT value ->> 0 AS id, value ->> 1 AS token{columns} \
         FROM {rows}) UPDATE outbox SET {set}, lease_until = NULL, lease_token = NULL \
         FROM v WHERE outbox.id = v.id AND outbox.lease_token = v.token \
         AND outbox.status = 'leased'",
        rows = super::json_rows(backend, 1),
    )
}

/// PostgreSQL: takes, for the claiming transaction, the advisory lock on the member and
/// channel of the row (or group) at hand, or answers false when another transaction holds it.
/// Every claim of held rows takes it, so one member's digest is never split between two
/// processes claiming at once. Transaction-scoped: released at commit.
const FOLD_LOCK: &str =
    "pg_try_advisory_xact_lock(hashtextextended(recipient || chr(31) || channel, 4242))";

/// What a claim does to each row it takes ($1: the lease token, $2: when the lease ends).
const LEASE: &str = "UPDATE outbox SET status = 'leased', lease_token = $1, lease_until = $2, \
     next_attempt_at = $2, claims = claims + 1";

/// What a claim gives back of each row it took, in [`decode_claimed`]'s order.
const CLAIMED_COLUMNS: &str =
    "id, publication_id, recipient, channel, attempts, claims, lease_token, fold";

impl Store {
    /// Claim up to `limit` deliveries due at `now` (never claimed, due for a retry, or whose
    /// lease expired), leased for `lease` — plus, for every held row among them, the other
    /// due held rows of the same member and channel, which go out in the same message (so a
    /// claim may return more than `limit` rows).
    pub async fn claim_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        now: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease.as_micros() as i64;
        match self.backend {
            Backend::Sqlite => self.claim_sqlite(limit, &token, until, now).await,
            Backend::Postgres => self.claim_postgres(limit, &token, until, now).await,
        }
    }

    /// SQLite has one writer, so a claim is never concurrent with another: held rows are
    /// claimed in due order with the rest, and then their members' other due held rows.
    async fn claim_sqlite(
        &self,
        limit: usize,
        token: &str,
        until: i64,
        now: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        // The planner otherwise picks `outbox_by_status` and sorts every pending row (7 ms a
        // claim at 45,000 pending rows, against 0.4 ms through the partial index). By rowid,
        // not id: each row is then found in the table itself rather than through the id's
        // index first (about 40 % of the claim's time).
        let sql = format!(
            "{LEASE} WHERE rowid IN (SELECT rowid FROM outbox INDEXED BY outbox_claimable \
             WHERE status IN ('pending', 'leased') \
             AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT $4)"
        );
        let leased = sqlx::query(&sql)
            .bind(token)
            .bind(until)
            .bind(now)
            .bind(limit as i64)
            .execute(&self.write)
            .await?
            .rows_affected();
        if leased == 0 {
            return Ok(Vec::new());
        }
        // The leased rows are read back through a reader, not returned by the UPDATE: the
        // driver hands a statement's rows over 50 at a time, each batch waiting for the
        // claiming task to be scheduled, and the one writer stayed held meanwhile (most of a
        // claim's time under load). Committed, they are visible to any reader; the claim's
        // end and token find them through the claimable index.
        let rows = sqlx::query(&format!(
            "SELECT {CLAIMED_COLUMNS} FROM outbox INDEXED BY outbox_claimable \
             WHERE status IN ('pending', 'leased') AND next_attempt_at = $1 \
             AND lease_token = $2"
        ))
        .bind(until)
        .bind(token)
        .fetch_all(&self.read)
        .await?;
        let mut claimed = rows
            .iter()
            .map(decode_claimed)
            .collect::<Result<Vec<_>, _>>()?;
        // A held row goes out folded with its member's other due held rows on the channel:
        // take those now, under this claim, or the next claim could take some of them while
        // this one is sending and split one digest into two messages.
        let mut by_channel: HashMap<&str, Vec<&str>> = HashMap::new();
        for c in claimed.iter().filter(|c| c.fold) {
            by_channel
                .entry(c.channel.as_str())
                .or_default()
                .push(c.recipient.as_str());
        }
        let mut rest = Vec::new();
        for (channel, recipients) in by_channel {
            rest.extend(
                self.claim_held(channel, recipients, token, until, now)
                    .await?,
            );
        }
        claimed.extend(rest);
        Ok(claimed)
    }

    /// Any number of processes claim at once on PostgreSQL. Rows that go out alone are
    /// claimed with `SKIP LOCKED`; rows held for folding are claimed a whole member and
    /// channel at a time, under a transaction-scoped advisory lock on that pair, so two
    /// claims can never each take part of one digest. Up to half the claim goes to held rows
    /// when both kinds are due.
    async fn claim_postgres(
        &self,
        limit: usize,
        token: &str,
        until: i64,
        now: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let groups = format!(
            "WITH candidates AS MATERIALIZED (\
                 SELECT id, recipient, channel FROM outbox \
                 WHERE status IN ('pending', 'leased') AND fold = 1 AND next_attempt_at <= $3 \
                 ORDER BY next_attempt_at LIMIT $4), \
             mine AS MATERIALIZED (\
                 SELECT recipient, channel FROM (SELECT DISTINCT recipient, channel \
                 FROM candidates) g WHERE {FOLD_LOCK}), \
             targets AS (\
                 SELECT o.id FROM outbox o JOIN mine USING (recipient, channel) \
                 WHERE o.status = 'pending' AND o.fold = 1 AND o.next_attempt_at <= $3 \
                 UNION SELECT c.id FROM candidates c JOIN mine USING (recipient, channel)) \
             {LEASE} WHERE id IN (SELECT id FROM targets) AND status IN ('pending', 'leased') \
             AND next_attempt_at <= $3 RETURNING {CLAIMED_COLUMNS}"
        );
        let mut claimed = self
            .lease(&groups, token, until, now, limit.div_ceil(2))
            .await?;
        let alone = format!(
            "{LEASE} WHERE id IN (SELECT id FROM outbox WHERE status IN ('pending', 'leased') \
             AND fold = 0 AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT $4 \
             FOR UPDATE SKIP LOCKED) RETURNING {CLAIMED_COLUMNS}"
        );
        let rest = limit.saturating_sub(claimed.len()).max(limit / 2).max(1);
        claimed.extend(self.lease(&alone, token, until, now, rest).await?);
        Ok(claimed)
    }

    /// Runs a claim statement whose parameters are the lease token ($1), its end ($2), the
    /// time rows must be due by ($3) and a limit ($4).
    async fn lease(
        &self,
        sql: &str,
        token: &str,
        until: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StorageError> {
        let rows = sqlx::query(sql)
            .bind(token)
            .bind(until)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.write)
            .await?;
        rows.iter().map(decode_claimed).collect()
    }

    /// Claim, under `token` until `until`, the held rows of `recipients` on `channel` that
    /// are due at `now`: what goes out folded with a row already claimed.
    pub(super) async fn claim_held(
        &self,
        channel: &str,
        mut recipients: Vec<&str>,
        token: &str,
        until: i64,
        now: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        // On PostgreSQL a member's held rows are taken only under the lock every claim of
        // them takes: a member another process is folding right now is left to it.
        let (index, lock, fold_lock) = match self.backend {
            Backend::Sqlite => ("INDEXED BY outbox_folded", "", String::new()),
            Backend::Postgres => ("", "FOR UPDATE SKIP LOCKED", format!("AND {FOLD_LOCK}")),
        };
        recipients.sort_unstable();
        recipients.dedup();
        // The partial index of held rows, by recipient with the channel fixed: SQLite's
        // planner otherwise reads every pending row of the channel (300,000 in the digest
        // benchmark) for each claim.
        let sql = format!(
            "{LEASE} WHERE id IN (SELECT id FROM outbox {index} WHERE status = 'pending' \
             AND fold = 1 AND channel = $3 AND recipient IN {} \
             AND next_attempt_at <= $4 {fold_lock} {lock}) \
             RETURNING {CLAIMED_COLUMNS}",
            super::json_list(self.backend, 5)
        );
        let rows = sqlx::query(&sql)
            .bind(token)
            .bind(until)
            .bind(channel)
            .bind(now)
            .bind(super::json_param(&recipients)?)
            .fetch_all(&self.write)
            .await?;
        rows.iter().map(decode_claimed).collect()
    }

    /// Record outcomes in one transaction (one statement when they are all of one kind).
    /// Returns how many were recorded; an outcome whose claim is no longer current (its
    /// lease expired and the row was claimed again, or it was re-queued by an operator) is
    /// not recorded.
    ///
    /// Outcomes of a kind are written by one `UPDATE … FROM` over all of them rather than a
    /// statement per row: on SQLite every statement is a round trip to the connection's
    /// worker thread while the single writer is held.
    pub async fn settle_deliveries(
        &self,
        settled: &[Settled],
        now: i64,
    ) -> Result<usize, StorageError> {
        if settled.is_empty() {
            return Ok(0);
        }
        // Each kind of outcome as the arrays its statement reads: id, token, then its fields.
        let (mut sent, mut retry, mut ended, mut held) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in settled {
            let (id, token) = (&s.id, &s.lease_token);
            match &s.outcome {
                Outcome::Sent {
                    provider,
                    provider_id,
                } => sent.push((id, token, provider, provider_id)),
                Outcome::Retry { at, error } => retry.push((id, token, at, error)),
                Outcome::Dead { error: reason } | Outcome::Cancelled { reason } => {
                    ended.push((id, token, s.outcome.status(), reason))
                }
                Outcome::Held { at, fold } => held.push((id, token, at, i64::from(*fold))),
            }
        }
        let backend = self.backend;
        // One statement per kind present: its SQL, its rows and whether it binds `now`.
        let mut statements: Vec<(String, String, bool)> = Vec::with_capacity(4);
        if !sent.is_empty() {
            let sql = settle_sql(
                backend,
                &[("provider", "TEXT"), ("provider_id", "TEXT")],
                "status = 'sent', provider = v.provider, provider_id = v.provider_id, \
                 sent_at = $2, last_error = NULL, fold = 0, attempts = attempts + 1",
            );
            statements.push((sql, super::json_param(&sent)?, true));
        }
        if !retry.is_empty() {
            let sql = settle_sql(
                backend,
                &[("at", "BIGINT"), ("error", "TEXT")],
                "status = 'pending', next_attempt_at = v.at, last_error = v.error, \
                 attempts = attempts + 1",
            );
            statements.push((sql, super::json_param(&retry)?, false));
        }
        if !ended.is_empty() {
            let sql = settle_sql(
                backend,
                &[("status", "TEXT"), ("error", "TEXT")],
                "status = v.status, last_error = v.error, attempts = attempts + 1",
            );
            statements.push((sql, super::json_param(&ended)?, false));
        }
        if !held.is_empty() {
            // A hold is policy, not an attempt: `attempts` stays as it was.
            let sql = settle_sql(
                backend,
                &[("at", "BIGINT"), ("fold", "BIGINT")],
                "status = 'pending', next_attempt_at = v.at, fold = v.fold",
            );
            statements.push((sql, super::json_param(&held)?, false));
        }
        fn query(
            (sql, rows, binds_now): &(String, String, bool),
            now: i64,
        ) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
            let query = sqlx::query(sql).bind(rows.as_str());
            if *binds_now { query.bind(now) } else { query }
        }
        // A single statement is atomic on its own: no BEGIN and COMMIT, each a round trip
        // while the one writer is held, in the common case of a batch of one kind.
        if let [only] = statements.as_slice() {
            return Ok(query(only, now).execute(&self.write).await?.rows_affected() as usize);
        }
        let mut tx = self.begin_write().await?;
        let mut recorded = 0;
        for statement in &statements {
            recorded += query(statement, now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(recorded as usize)
    }

    /// Dead letters, oldest first, optionally of one channel.
    pub async fn dead_letters(
        &self,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, publication_id, recipient, channel, attempts, last_error, created_at \
             FROM outbox WHERE status = 'dead' AND ($1 IS NULL OR channel = $1) \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(channel)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get(0)?,
                    publication_id: r.try_get(1)?,
                    recipient: r.try_get(2)?,
                    channel: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Put dead letters back in the queue, due at `now`, with their attempts reset (the
    /// operator fixed what killed them). With no ids and no channel, every dead letter.
    pub async fn retry_dead_letters(
        &self,
        filter: &DeadFilter,
        now: i64,
    ) -> Result<u64, StorageError> {
        const REQUEUE: &str = "UPDATE outbox SET status = 'pending', attempts = 0, \
             next_attempt_at = $1, lease_until = NULL, lease_token = NULL \
             WHERE status = 'dead'";
        if filter.ids.is_empty() {
            let done = sqlx::query(&format!("{REQUEUE} AND ($2 IS NULL OR channel = $2)"))
                .bind(now)
                .bind(filter.channel.as_deref())
                .execute(&self.write)
                .await?;
            return Ok(done.rows_affected());
        }
        let mut tx = self.begin_write().await?;
        let mut requeued = 0;
        for id in &filter.ids {
            requeued += sqlx::query(&format!(
                "{REQUEUE} AND id = $2 AND ($3 IS NULL OR channel = $3)"
            ))
            .bind(now)
            .bind(id)
            .bind(filter.channel.as_deref())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(requeued)
    }

    /// `(channel, status, count)` over the whole outbox, for the metrics gauges.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StorageError> {
        let rows = sqlx::query(
            "SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status \
             ORDER BY channel, status",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// One delivery's row, for tests and operations: `(status, attempts, claims, provider,
    /// provider_id, last_error)`.
    #[allow(clippy::type_complexity)]
    pub async fn delivery(
        &self,
        id: &str,
    ) -> Result<
        Option<(
            String,
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
        )>,
        StorageError,
    > {
        let row = sqlx::query(
            "SELECT status, attempts, claims, provider, provider_id, last_error \
             FROM outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ))
        })
        .transpose()
    }

    /// Publications by id, with their community's name, for rendering.
    pub async fn publication_contexts(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, PublicationContext>, StorageError> {
        let sql = format!(
            "{PUBLICATION_COLUMNS} WHERE p.id IN {}",
            super::json_list(self.backend, 1)
        );
        let rows = super::fetch_listed(&self.read, &sql, ids).await?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let context = decode_publication(&row)?;
            out.insert(context.id.clone(), context);
        }
        Ok(out)
    }

    /// Members' languages (from their preferences record), for those who set one.
    pub async fn languages(
        &self,
        dids: &[String],
    ) -> Result<HashMap<String, String>, StorageError> {
        let sql = format!(
            "SELECT did, language FROM preferences WHERE language IS NOT NULL AND did IN {}",
            super::json_list(self.backend, 1)
        );
        let rows = super::fetch_listed(&self.read, &sql, dids).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// The newest `limit` items delivered to `did`'s private feed.
    pub async fn feed_entries(
        &self,
        did: &str,
        limit: i64,
    ) -> Result<Vec<FeedEntry>, StorageError> {
        let rows = sqlx::query(&format!(
            "{PUBLICATION_SELECT}, o.sent_at FROM outbox o JOIN publications p ON p.id = \
             o.publication_id LEFT JOIN communities c ON c.did = p.community \
             WHERE o.recipient = $1 AND o.channel = 'feed' AND o.status = 'sent' \
             ORDER BY o.created_at DESC, o.id DESC LIMIT $2"
        ))
        .bind(did)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(FeedEntry {
                    publication: decode_publication(row)?,
                    sent_at: row
                        .try_get::<Option<i64>, _>("sent_at")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

const PUBLICATION_SELECT: &str = "SELECT p.id, p.community, c.name AS community_name, p.pipe, \
     p.item_id, p.title, p.text, p.url, p.created_at, p.urgency, p.expires_at";
const PUBLICATION_COLUMNS: &str = "SELECT p.id, p.community, c.name AS community_name, p.pipe, \
     p.item_id, p.title, p.text, p.url, p.created_at, p.urgency, p.expires_at \
     FROM publications p LEFT JOIN communities c ON c.did = p.community";

fn decode_publication(row: &AnyRow) -> Result<PublicationContext, StorageError> {
    Ok(PublicationContext {
        id: row.try_get("id")?,
        community: row.try_get("community")?,
        community_name: row.try_get("community_name")?,
        pipe: row.try_get("pipe")?,
        item_id: row.try_get("item_id")?,
        title: row.try_get("title")?,
        text: row.try_get("text")?,
        url: row.try_get("url")?,
        created_at: row.try_get("created_at")?,
        urgency: row.try_get("urgency")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn decode_claimed(row: &AnyRow) -> Result<Claimed, StorageError> {
    Ok(Claimed {
        id: row.try_get("id")?,
        publication_id: row.try_get("publication_id")?,
        recipient: row.try_get("recipient")?,
        channel: row.try_get("channel")?,
        // Counted before this claim's send.
        attempts: row.try_get("attempts")?,
        claims: row.try_get("claims")?,
        lease_token: row.try_get("lease_token")?,
        fold: row.try_get::<i64, _>("fold")? != 0,
    })
}
