//! `community.herald.getUnreadCount`: notifications newer than the member's seen watermark.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::{AppState, XrpcError, authenticate};

pub const NSID: &str = "community.herald.getUnreadCount";

#[derive(Serialize)]
pub struct Output {
    count: i64,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Output>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let count = state.store.unread_count(&caller.did).await?;
    Ok(Json(Output { count }))
}
