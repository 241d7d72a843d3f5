//! `community.herald.getSubscribers`: a community (or its publisher) lists who would receive
//! what — DIDs and channel names, never a contact detail.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{AppState, XrpcError, XrpcQuery, authenticate, page_limit};
use crate::distribute::route_channels;
use crate::model::{Channel, is_did};

pub const NSID: &str = "community.herald.getSubscribers";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    community: String,
    pipe: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct Output {
    subscribers: Vec<Subscriber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Subscriber {
    did: String,
    channels: Vec<Channel>,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    XrpcQuery(params): XrpcQuery<Params>,
) -> Result<Json<Output>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let limit = page_limit(params.limit)?;
    if !is_did(&params.community) {
        return Err(XrpcError::invalid_request("community must be a DID"));
    }
    if params.cursor.as_deref().is_some_and(|c| !is_did(c)) {
        return Err(XrpcError::invalid_request("malformed cursor"));
    }
    let community = state
        .store
        .community(&params.community)
        .await?
        .ok_or_else(|| {
            XrpcError::invalid_request(format!("unknown community {}", params.community))
        })?;
    if !state.store.may_publish(&community.did, &caller.did).await? {
        return Err(XrpcError::forbidden(
            "NotPublisher",
            "only the community or its publishers may list its subscribers",
        ));
    }
    let pipes: Vec<&str> = match &params.pipe {
        Some(p) => vec![p.as_str()],
        None if !community.pipes.is_empty() => {
            community.pipes.iter().map(|p| p.id.as_str()).collect()
        }
        None => crate::model::KNOWN_PIPES.to_vec(),
    };
    let page = state
        .store
        .subscribers_page(&community.did, params.cursor.as_deref(), limit as usize)
        .await?;
    let subscribers = page
        .members
        .iter()
        .filter_map(|member| {
            let mut channels: Vec<Channel> = pipes
                .iter()
                .flat_map(|pipe| route_channels(member, community.visibility, pipe))
                .collect();
            channels.sort();
            channels.dedup();
            (!channels.is_empty()).then(|| Subscriber {
                did: member.did.clone(),
                channels,
            })
        })
        .collect();
    Ok(Json(Output {
        subscribers,
        cursor: page.cursor,
    }))
}
