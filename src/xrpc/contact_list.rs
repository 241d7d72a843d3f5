//! `community.herald.contact.list`: the member's contacts, addresses masked.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{AppState, XrpcError, authenticate};

pub const NSID: &str = "community.herald.contact.list";

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let contacts = state.vault.list_contacts(&caller.did).await?;
    Ok(Json(json!({ "contacts": contacts })))
}
