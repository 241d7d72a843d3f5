//! `community.herald.getPreferences`: what Herald knows of the member's preferences — their
//! indexed records, the subscriptions Herald keeps for them, and their contacts (masked).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{AppState, XrpcError, authenticate};
use crate::model::SUBSCRIPTION;

pub const NSID: &str = "community.herald.getPreferences";

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let records = state.store.member_records(&caller.did).await?;
    let contacts = state.vault.list_contacts(&caller.did).await?;
    let subscriptions: Vec<Value> = records
        .subscriptions
        .into_iter()
        .map(|(rkey, record)| {
            json!({
                "uri": format!("at://{}/{SUBSCRIPTION}/{rkey}", caller.did),
                "record": record,
            })
        })
        .collect();
    let kept: Vec<Value> = records
        .kept
        .into_iter()
        .map(|(community, routes)| json!({ "community": community, "routes": routes }))
        .collect();
    let mut out = json!({
        "subscriptions": subscriptions,
        "keptSubscriptions": kept,
        "contacts": contacts,
    });
    if let Some(preferences) = records.preferences {
        out["preferences"] = preferences;
    }
    Ok(Json(out))
}
