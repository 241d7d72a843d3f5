//! `community.herald.updateSeen`: move the member's seen watermark (as Bluesky's
//! notifications do); notifications at or before it read as seen.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{AppState, XrpcError, XrpcJson, authenticate};
use crate::storage::parse_datetime;

pub const NSID: &str = "community.herald.updateSeen";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    seen_at: String,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    XrpcJson(input): XrpcJson<Input>,
) -> Result<StatusCode, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let seen_at = parse_datetime(&input.seen_at).ok_or_else(|| {
        XrpcError::invalid_request(format!(
            "seenAt is not an RFC 3339 datetime: {:?}",
            input.seen_at
        ))
    })?;
    state.store.update_seen(&caller.did, seen_at).await?;
    Ok(StatusCode::OK)
}
