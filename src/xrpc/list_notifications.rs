//! `community.herald.listNotifications`: the member's inbox, newest first, keyset-paged by
//! (time, id) so items sharing a timestamp are neither skipped nor repeated.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{AppState, XrpcError, XrpcQuery, authenticate, page_limit};
use crate::storage::format_micros;

pub const NSID: &str = "community.herald.listNotifications";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    notifications: Vec<Notification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seen_at: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    id: String,
    community: String,
    pipe: String,
    item_id: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    indexed_at: String,
    is_read: bool,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    XrpcQuery(params): XrpcQuery<Params>,
) -> Result<Json<Output>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let limit = page_limit(params.limit)?;
    let before = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let rows = state
        .store
        .list_notifications(&caller.did, before, limit)
        .await?;
    let seen_at = state.store.seen_at(&caller.did).await?;
    let cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| format!("{}::{}", r.indexed_at, r.id)))
        .flatten();
    let notifications = rows
        .into_iter()
        .map(|r| Notification {
            is_read: seen_at.is_some_and(|seen| r.indexed_at <= seen),
            indexed_at: format_micros(r.indexed_at),
            id: r.id,
            community: r.community,
            pipe: r.pipe,
            item_id: r.item_id,
            title: r.title,
            text: r.text,
            url: r.url,
        })
        .collect();
    Ok(Json(Output {
        notifications,
        cursor,
        seen_at: seen_at.map(format_micros),
    }))
}

/// Cursors are `<microseconds>::<id>`, opaque to clients.
fn parse_cursor(cursor: &str) -> Result<(i64, &str), XrpcError> {
    cursor
        .split_once("::")
        .and_then(|(time, id)| Some((time.parse().ok()?, id)))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| XrpcError::invalid_request("malformed cursor"))
}
