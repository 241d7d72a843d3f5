//! `community.herald.publish`: a community (or one of its publishers) publishes an item on a
//! pipe; Herald fans it out to every subscribed member. Idempotent per (community, item id).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{AppState, XrpcError, XrpcJson, authenticate};
use crate::distribute::{self, Item};
use crate::model::is_did;
use crate::schedule::{ScheduleError, Urgency};
use crate::storage::parse_datetime;

pub const NSID: &str = "community.herald.publish";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    community: String,
    pipe: String,
    item: InputItem,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputItem {
    id: String,
    title: String,
    text: Option<String>,
    url: Option<String>,
    urgency: Option<String>,
    #[serde(rename = "expiresAt")]
    expires_at: Option<String>,
}

#[derive(Serialize)]
pub struct Output {
    id: String,
    recipients: i64,
    duplicate: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

// Limits mirror lexicons/community/herald/publish.json.
const MAX_PIPE: usize = 64;
const MAX_ITEM_ID: usize = 512;
const MAX_TITLE: usize = 300;
const MAX_TEXT: usize = 3_000;
const MAX_URL: usize = 2_048;

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    XrpcJson(input): XrpcJson<Input>,
) -> Result<Json<Output>, XrpcError> {
    let caller = authenticate(&state, &headers, NSID).await?;
    let (urgency, expires_at) = validate(&input, state.clock.now_micros())?;
    let item = Item {
        id: &input.item.id,
        title: &input.item.title,
        text: input.item.text.as_deref(),
        url: input.item.url.as_deref(),
        urgency,
        expires_at,
    };
    let outcome = distribute::publish(
        &state.store,
        state.vault.store(),
        &caller.did,
        &input.community,
        &input.pipe,
        item,
        &state.schedule,
        state.clock.now(),
    )
    .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            state.metrics.publication("refused");
            return Err(e.into());
        }
    };
    if !outcome.duplicate {
        state.wake.notify_one();
    }
    state.metrics.publication(if outcome.duplicate {
        "duplicate"
    } else {
        "published"
    });
    Ok(Json(Output {
        id: outcome.id,
        recipients: outcome.recipients,
        duplicate: outcome.duplicate,
        warnings: outcome.warnings,
    }))
}

/// Checks the input against the lexicon's limits; returns the item's urgency and expiry.
fn validate(input: &Input, now: i64) -> Result<(Urgency, Option<i64>), XrpcError> {
    let bad = |m: String| Err(XrpcError::invalid_request(m));
    if !is_did(&input.community) {
        return bad(format!(
            "community must be a DID, got {:?}",
            input.community
        ));
    }
    let pipe_ok = !input.pipe.is_empty()
        && input.pipe.len() <= MAX_PIPE
        && input
            .pipe
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !pipe_ok {
        return bad(format!(
            "pipe must be 1–{MAX_PIPE} letters, digits, '-' or '_', got {:?}",
            input.pipe
        ));
    }
    let item = &input.item;
    if item.id.is_empty() || item.id.len() > MAX_ITEM_ID {
        return bad(format!("item.id must be 1–{MAX_ITEM_ID} bytes"));
    }
    if item.title.trim().is_empty() || item.title.chars().count() > MAX_TITLE {
        return bad(format!("item.title must be 1–{MAX_TITLE} characters"));
    }
    if item
        .text
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TEXT)
    {
        return bad(format!("item.text must be at most {MAX_TEXT} characters"));
    }
    if let Some(u) = &item.url {
        let parsed = url::Url::parse(u);
        if u.len() > MAX_URL || !matches!(parsed.as_ref().map(|u| u.scheme()), Ok("http" | "https"))
        {
            return bad("item.url must be an http(s) URL".into());
        }
    }
    let urgency = match item.urgency.as_deref() {
        None => Urgency::Normal,
        Some(u) => u
            .parse()
            .map_err(|e: ScheduleError| XrpcError::invalid_request(format!("item.urgency: {e}")))?,
    };
    let expires_at = match item.expires_at.as_deref() {
        None => None,
        Some(t) => Some(parse_datetime(t).ok_or_else(|| {
            XrpcError::invalid_request(format!(
                "item.expiresAt must be an RFC 3339 datetime, got {t:?}"
            ))
        })?),
    };
    if expires_at.is_some_and(|at| at <= now) {
        return Err(XrpcError::invalid_request_named(
            "Expired",
            "item.expiresAt has already passed: nothing would be sent",
        ));
    }
    Ok((urgency, expires_at))
}
