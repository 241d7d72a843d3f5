//! The in-app inbox: listing (keyset-paged by (time, id)), unread counts and the seen
//! watermark.

use sqlx::Row;

use super::{StorageError, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// The publication's id: unique within one member's inbox.
    pub id: String,
    pub community: String,
    pub pipe: String,
    pub item_id: String,
    pub title: String,
    pub text: Option<String>,
    pub url: Option<String>,
    pub indexed_at: i64,
}

impl Store {
    /// Newest first. `before` is the (time, id) of the last row of the previous page; rows that
    /// share a timestamp are ordered by id so none is skipped or repeated across pages.
    pub async fn list_notifications(
        &self,
        recipient: &str,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, StorageError> {
        const SELECT: &str = "SELECT p.id, p.community, p.pipe, p.item_id, p.title, p.text, \
             p.url, n.indexed_at FROM notifications n \
             JOIN publications p ON p.id = n.publication_id WHERE n.recipient = $1";
        let rows = match before {
            None => {
                sqlx::query(&format!(
                    "{SELECT} ORDER BY n.indexed_at DESC, n.publication_id DESC LIMIT $2"
                ))
                .bind(recipient)
                .bind(limit)
                .fetch_all(&self.read)
                .await?
            }
            Some((time, id)) => {
                sqlx::query(&format!(
                    "{SELECT} AND (n.indexed_at < $2 OR (n.indexed_at = $2 AND \
                     n.publication_id < $3)) \
                     ORDER BY n.indexed_at DESC, n.publication_id DESC LIMIT $4"
                ))
                .bind(recipient)
                .bind(time)
                .bind(id)
                .bind(limit)
                .fetch_all(&self.read)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(NotificationRow {
                    id: r.try_get(0)?,
                    community: r.try_get(1)?,
                    pipe: r.try_get(2)?,
                    item_id: r.try_get(3)?,
                    title: r.try_get(4)?,
                    text: r.try_get(5)?,
                    url: r.try_get(6)?,
                    indexed_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    pub async fn seen_at(&self, did: &str) -> Result<Option<i64>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT seen_at FROM notification_seen WHERE did = $1")
                .bind(did)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// Notifications newer than the member's seen watermark.
    pub async fn unread_count(&self, did: &str) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications n WHERE n.recipient = $1 AND n.indexed_at > \
             COALESCE((SELECT seen_at FROM notification_seen s WHERE s.did = $1), -1)",
        )
        .bind(did)
        .fetch_one(&self.read)
        .await?)
    }

    /// Move the seen watermark forward (never back: a stale client cannot resurrect unread
    /// notifications). Returns the watermark now stored.
    pub async fn update_seen(&self, did: &str, seen_at: i64) -> Result<i64, StorageError> {
        let stored: i64 = sqlx::query_scalar(
            "INSERT INTO notification_seen (did, seen_at) VALUES ($1, $2) \
             ON CONFLICT (did) DO UPDATE SET seen_at = CASE \
             WHEN excluded.seen_at > notification_seen.seen_at THEN excluded.seen_at \
             ELSE notification_seen.seen_at END \
             RETURNING seen_at",
        )
        .bind(did)
        .bind(seen_at)
        .fetch_one(&self.write)
        .await?;
        Ok(stored)
    }
}
