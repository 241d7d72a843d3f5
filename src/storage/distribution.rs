//! Publications and their fan-out: communities, subscriber paging, inbox rows and the outbox.
//!
//! The preference rules themselves live in `distribute`; this file only gathers the facts
//! (paged, never the whole community at once) and writes what the rules decided, in the same
//! transaction as the publication row that makes publishing idempotent.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};

use super::{StorageError, Store, VaultStore, now_micros, values_placeholders};
use crate::model::{Channel, MemberFacts, PipeDecl, Route, Visibility};
use crate::settings::Backend;

/// A community as the index knows it.
#[derive(Debug, Clone)]
pub struct CommunityInfo {
    pub did: String,
    pub name: String,
    pub visibility: Visibility,
    pub pipes: Vec<PipeDecl>,
}

pub struct NewPublication<'a> {
    pub community: &'a str,
    pub pipe: &'a str,
    pub item_id: &'a str,
    pub title: &'a str,
    pub text: Option<&'a str>,
    pub url: Option<&'a str>,
    pub publisher: &'a str,
    /// `normal` or `urgent`.
    pub urgency: &'a str,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationOutcome {
    pub id: String,
    pub recipients: i64,
    pub duplicate: bool,
    /// Limits the publication runs into (filled in by `distribute`).
    pub warnings: Vec<String>,
}

/// A page of complete members and the cursor to continue after, if any.
#[derive(Debug, Clone)]
pub struct SubscriberPage {
    pub members: Vec<MemberFacts>,
    pub cursor: Option<String>,
}

/// Rows read per query while paging subscribers. Bounds memory per step of a fan-out.
const PAGE_ROWS: i64 = 2_000;
/// Rows per multi-row INSERT: 500 × 7 columns stays far below both backends' bind limits.
const INSERT_CHUNK: usize = 500;

const MEMBER_COLUMNS: &str = "SELECT s.did, s.rkey, s.muted, s.routes, p.default_routes, \
     p.paused_all, a.active, \
     CASE WHEN m.did IS NOT NULL OR r.did IS NOT NULL THEN 1 ELSE 0 END AS admitted \
     FROM subscriptions s \
     LEFT JOIN preferences p ON p.did = s.did \
     LEFT JOIN accounts a ON a.did = s.did \
     LEFT JOIN memberships m ON m.community = s.subject AND m.did = s.did \
     LEFT JOIN community_roles r ON r.community = s.subject AND r.did = s.did AND r.role = 'admin' \
     WHERE s.subject = $1 ";

impl Store {
    pub async fn community(&self, did: &str) -> Result<Option<CommunityInfo>, StorageError> {
        let row =
            sqlx::query("SELECT did, name, visibility, pipes FROM communities WHERE did = $1")
                .bind(did)
                .fetch_optional(&self.read)
                .await?;
        row.map(|row| {
            let pipes: String = row.try_get("pipes")?;
            let visibility: String = row.try_get("visibility")?;
            Ok(CommunityInfo {
                did: row.try_get("did")?,
                name: row.try_get("name")?,
                visibility: Visibility::parse(Some(&visibility)),
                pipes: serde_json::from_str(&pipes)
                    .map_err(|e| StorageError::Corrupt(format!("community pipes: {e}")))?,
            })
        })
        .transpose()
    }

    /// Whether `did` is the community itself or one of the publishers its record names.
    pub async fn may_publish(&self, community: &str, did: &str) -> Result<bool, StorageError> {
        if community == did {
            return Ok(true);
        }
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM community_roles WHERE community = $1 AND did = $2 AND role = 'publisher'",
        )
        .bind(community)
        .bind(did)
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }

    /// Admit `did` to a community (private communities deliver only to admitted members).
    pub async fn admit_member(
        &self,
        community: &str,
        did: &str,
        role: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO memberships (community, did, role, joined_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (community, did) DO UPDATE SET role = excluded.role",
        )
        .bind(community)
        .bind(did)
        .bind(role)
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// One page of a community's subscribers, `limit` complete members after `after` (a DID).
    pub async fn subscribers_page(
        &self,
        community: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubscriberPage, StorageError> {
        let mut conn = self.read.acquire().await?;
        let mut pager = MemberPager::new(community, after.map(str::to_string));
        let mut members = Vec::with_capacity(limit);
        while members.len() < limit {
            let Some(batch) = pager.next(&mut conn).await? else {
                break;
            };
            members.extend(batch);
        }
        let cursor = if members.len() > limit || !pager.finished() {
            members.truncate(limit);
            members.last().map(|m| m.did.clone())
        } else {
            None
        };
        Ok(SubscriberPage { members, cursor })
    }

    /// Record a publication and fan it out, atomically: the publication row (unique per
    /// community and item id), one inbox row per member whose channels include `inbox`, and one
    /// pending outbox row per other channel. `resolve` decides each member's channels, after
    /// each page of members learns from the vault which contacts can be delivered to.
    /// Then the community's email-only subscribers, whose pipes `standalone` accepts, get one
    /// email outbox row each (recipient `email:<address id>`).
    /// A publication already recorded is answered as a duplicate and changes nothing.
    pub async fn publish(
        &self,
        publication: NewPublication<'_>,
        vault: &VaultStore,
        mut resolve: impl FnMut(&MemberFacts) -> Vec<Channel>,
        mut standalone: impl FnMut(&[String]) -> bool,
    ) -> Result<PublicationOutcome, StorageError> {
        let now = now_micros();
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO publications (id, community, pipe, item_id, title, text, url, publisher, \
             recipients, created_at, urgency, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11) \
             ON CONFLICT (community, item_id) DO NOTHING RETURNING id",
        )
        .bind(&id)
        .bind(publication.community)
        .bind(publication.pipe)
        .bind(publication.item_id)
        .bind(publication.title)
        .bind(publication.text)
        .bind(publication.url)
        .bind(publication.publisher)
        .bind(now)
        .bind(publication.urgency)
        .bind(publication.expires_at)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            let row = sqlx::query(
                "SELECT id, recipients FROM publications WHERE community = $1 AND item_id = $2",
            )
            .bind(publication.community)
            .bind(publication.item_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(PublicationOutcome {
                id: row.try_get("id")?,
                recipients: row.try_get("recipients")?,
                duplicate: true,
                warnings: Vec::new(),
            });
        }

        let mut pager = MemberPager::new(publication.community, None);
        let mut recipients = 0i64;
        let mut inbox_rows: Vec<String> = Vec::with_capacity(INSERT_CHUNK);
        let mut outbox_rows: Vec<(String, Channel)> = Vec::with_capacity(INSERT_CHUNK);
        while let Some(mut members) = pager.next(&mut tx).await? {
            let dids: Vec<String> = members.iter().map(|m| m.did.clone()).collect();
            let mut reachable: std::collections::HashMap<String, Vec<Channel>> =
                std::collections::HashMap::new();
            for (owner, channel) in vault.reachable(&dids).await? {
                if let Some(channel) = Channel::parse(&channel) {
                    reachable.entry(owner).or_default().push(channel);
                }
            }
            for member in &mut members {
                member.reachable = reachable.remove(&member.did).unwrap_or_default();
            }
            for member in members {
                let channels = resolve(&member);
                if channels.is_empty() {
                    continue;
                }
                recipients += 1;
                for channel in channels {
                    if channel == Channel::Inbox {
                        inbox_rows.push(member.did.clone());
                    } else {
                        outbox_rows.push((member.did.clone(), channel));
                    }
                }
                if inbox_rows.len() >= INSERT_CHUNK {
                    insert_inbox(&mut tx, self.backend, &id, &inbox_rows, now).await?;
                    inbox_rows.clear();
                }
                if outbox_rows.len() >= INSERT_CHUNK {
                    insert_outbox(&mut tx, self.backend, &id, &outbox_rows, now).await?;
                    outbox_rows.clear();
                }
            }
        }
        insert_inbox(&mut tx, self.backend, &id, &inbox_rows, now).await?;
        insert_outbox(&mut tx, self.backend, &id, &outbox_rows, now).await?;
        outbox_rows.clear();
        let mut after = String::new();
        loop {
            let page = vault
                .standalone_page(publication.community, &after, PAGE_ROWS)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.address_id.clone();
            for sub in &page {
                if standalone(&sub.pipes) {
                    recipients += 1;
                    outbox_rows.push((format!("email:{}", sub.address_id), Channel::Email));
                }
            }
            insert_outbox(&mut tx, self.backend, &id, &outbox_rows, now).await?;
            outbox_rows.clear();
            if (page.len() as i64) < PAGE_ROWS {
                break;
            }
        }
        sqlx::query("UPDATE publications SET recipients = $1 WHERE id = $2")
            .bind(recipients)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PublicationOutcome {
            id,
            recipients,
            duplicate: false,
            warnings: Vec::new(),
        })
    }

    /// Outbox rows by status, for operations and tests: `(recipient, channel, status)`.
    pub async fn outbox_for(
        &self,
        publication_id: &str,
    ) -> Result<Vec<(String, String, String)>, StorageError> {
        let rows = sqlx::query(
            "SELECT recipient, channel, status FROM outbox WHERE publication_id = $1 \
             ORDER BY recipient, channel",
        )
        .bind(publication_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

async fn insert_inbox(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    publication_id: &str,
    recipients: &[String],
    now: i64,
) -> Result<(), StorageError> {
    for chunk in recipients.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO notifications (recipient, publication_id, indexed_at) VALUES {} \
             ON CONFLICT DO NOTHING",
            values_placeholders(backend, chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for did in chunk {
            query = query.bind(did).bind(publication_id).bind(now);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_outbox(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    publication_id: &str,
    rows: &[(String, Channel)],
    now: i64,
) -> Result<(), StorageError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO outbox (id, publication_id, recipient, channel, status, next_attempt_at, \
             created_at) VALUES {} ON CONFLICT DO NOTHING",
            values_placeholders(backend, chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for (did, channel) in chunk {
            query = query
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(publication_id)
                .bind(did)
                .bind(channel.as_str())
                .bind("pending")
                .bind(now)
                .bind(now);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Walks a community's subscribers in (did, rkey) order, a bounded page at a time, and hands
/// out complete members: a member whose rows straddle a page boundary is held back until the
/// next page completes it.
struct MemberPager {
    community: String,
    /// Keyset position: the last (did, rkey) read, or a DID to start after.
    after: Option<(String, Option<String>)>,
    pending: Option<MemberFacts>,
    finished: bool,
}

impl MemberPager {
    fn new(community: &str, after_did: Option<String>) -> Self {
        Self {
            community: community.to_string(),
            after: after_did.map(|did| (did, None)),
            pending: None,
            finished: false,
        }
    }

    fn finished(&self) -> bool {
        self.finished && self.pending.is_none()
    }

    async fn next(
        &mut self,
        conn: &mut AnyConnection,
    ) -> Result<Option<Vec<MemberFacts>>, StorageError> {
        if self.finished {
            return Ok(self.pending.take().map(|m| vec![m]));
        }
        let rows = match &self.after {
            None => {
                sqlx::query(&format!("{MEMBER_COLUMNS} ORDER BY s.did, s.rkey LIMIT $2"))
                    .bind(&self.community)
                    .bind(PAGE_ROWS)
                    .fetch_all(&mut *conn)
                    .await?
            }
            Some((did, None)) => {
                sqlx::query(&format!(
                    "{MEMBER_COLUMNS} AND s.did > $2 ORDER BY s.did, s.rkey LIMIT $3"
                ))
                .bind(&self.community)
                .bind(did)
                .bind(PAGE_ROWS)
                .fetch_all(&mut *conn)
                .await?
            }
            Some((did, Some(rkey))) => {
                sqlx::query(&format!(
                    "{MEMBER_COLUMNS} AND (s.did > $2 OR (s.did = $2 AND s.rkey > $3)) \
                     ORDER BY s.did, s.rkey LIMIT $4"
                ))
                .bind(&self.community)
                .bind(did)
                .bind(rkey)
                .bind(PAGE_ROWS)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        if (rows.len() as i64) < PAGE_ROWS {
            self.finished = true;
        }
        let mut complete = Vec::new();
        for row in &rows {
            let (rkey, facts) = decode_row(row)?;
            self.after = Some((facts.did.clone(), Some(rkey)));
            match &mut self.pending {
                Some(member) if member.did == facts.did => {
                    member.muted |= facts.muted;
                    member.subscription_routes.extend(facts.subscription_routes);
                }
                _ => {
                    if let Some(done) = self.pending.replace(facts) {
                        complete.push(done);
                    }
                }
            }
        }
        if self.finished {
            complete.extend(self.pending.take());
        }
        if complete.is_empty() && self.finished {
            return Ok(None);
        }
        Ok(Some(complete))
    }
}

/// One subscriber row: its record key (for the keyset) and the member facts it carries.
fn decode_row(row: &AnyRow) -> Result<(String, MemberFacts), StorageError> {
    let routes: String = row.try_get("routes")?;
    let defaults: Option<String> = row.try_get("default_routes")?;
    let parse = |s: &str| -> Result<Vec<Route>, StorageError> {
        serde_json::from_str(s).map_err(|e| StorageError::Corrupt(format!("routes: {e}")))
    };
    let facts = MemberFacts {
        did: row.try_get("did")?,
        active: row.try_get::<Option<i64>, _>("active")?.unwrap_or(1) == 1,
        paused_all: row.try_get::<Option<i64>, _>("paused_all")?.unwrap_or(0) == 1,
        muted: row.try_get::<i64, _>("muted")? == 1,
        admitted: row.try_get::<i64, _>("admitted")? == 1,
        subscription_routes: vec![parse(&routes)?],
        default_routes: defaults
            .as_deref()
            .map(parse)
            .transpose()?
            .unwrap_or_default(),
        reachable: Vec::new(),
    };
    Ok((row.try_get("rkey")?, facts))
}
