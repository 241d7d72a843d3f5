//! `community.herald.contact.verify`: the member enters the code Herald sent.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{AppState, XrpcError, XrpcJson, authenticate};
use crate::vault::VerifiedContact;

pub const NSID: &str = "community.herald.contact.verify";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    id: String,
    code: String,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    XrpcJson(input): XrpcJson<Input>,
) -> Result<Json<VerifiedContact>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    if input.code.len() > 64 {
        return Err(XrpcError::invalid_request("code is too long"));
    }
    Ok(Json(
        state
            .vault
            .verify_code(&caller.did, &input.id, &input.code)
            .await?,
    ))
}
