//! `community.herald.contact.add`: a member adds a private contact; Herald sends its
//! verification (email link and code, SMS code, Telegram pairing link, first push, a signed
//! POST to a webhook), or creates their private feed.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{AppState, XrpcError, XrpcJson, authenticate};
use crate::model::PushSubscription;
use crate::vault::{AddContact, AddedContact};

pub const NSID: &str = "community.herald.contact.add";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    channel: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    subscription: Option<PushSubscription>,
    #[serde(default)]
    prevalidation: Option<String>,
    #[serde(default)]
    secret: Option<String>,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    XrpcJson(input): XrpcJson<Input>,
) -> Result<Json<AddedContact>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let added = state
        .vault
        .add_contact(
            &caller.did,
            AddContact {
                channel: input.channel,
                address: input.address,
                subscription: input.subscription,
                prevalidation: input.prevalidation,
                secret: input.secret,
            },
        )
        .await?;
    Ok(Json(added))
}
