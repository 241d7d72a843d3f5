//! `community.herald.subscribeEmail`: subscribe an email address to a community without an
//! account. Unauthenticated, so rate limited per address and per client; the answer is the
//! same whatever happened, so it never tells whether an account owns the address.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, XrpcError, XrpcJson};
use crate::vault::address::parse_email;

pub const NSID: &str = "community.herald.subscribeEmail";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    community: String,
    email: String,
    #[serde(default)]
    pipes: Vec<String>,
}

pub async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    XrpcJson(input): XrpcJson<Input>,
) -> Result<Json<Value>, XrpcError> {
    if !crate::model::is_did(&input.community) {
        return Err(XrpcError::invalid_request("community must be a DID"));
    }
    if input.pipes.len() > 20 || input.pipes.iter().any(|p| p.is_empty() || p.len() > 64) {
        return Err(XrpcError::invalid_request(
            "pipes: at most 20 names of 1 to 64 characters",
        ));
    }
    let email = parse_email(&input.email).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    state.limits.check_subscribe(peer.ip(), &email)?;
    let outcome = state
        .vault
        .subscribe_email(&input.community, &email, &input.pipes)
        .await?;
    tracing::debug!(?outcome, "standalone subscription requested");
    Ok(Json(json!({ "status": "accepted" })))
}
