//! `community.herald.contact.remove`: forget one of the member's contacts (and its address).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, XrpcError, XrpcJson, authenticate};

pub const NSID: &str = "community.herald.contact.remove";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    id: String,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    XrpcJson(input): XrpcJson<Input>,
) -> Result<Json<Value>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    state.vault.remove_contact(&caller.did, &input.id).await?;
    Ok(Json(json!({})))
}
