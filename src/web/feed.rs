//! `/feed/{token}` — a member's private Atom feed (RFC 4287): the items delivered to their
//! `feed` channel, newest first.
//!
//! The token in the URL is the only credential (feed readers cannot sign requests); it is
//! stored as a keyed hash, so the URL cannot be rebuilt from the database, and adding the feed
//! again replaces it. An unknown token gets the same 404 as a malformed one. Must not touch
//! SQL or anyone else's items: the vault says whose feed a token opens, the store lists that
//! member's feed rows only.

use std::sync::Arc;

use atom_syndication::{Entry, Feed, FixedDateTime, Link, Person, Text};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::storage::{FeedEntry, Store};
use crate::vault::Vault;

/// Entries a feed shows: feed readers poll, so the newest are what matter.
pub const FEED_ENTRIES: i64 = 50;

#[derive(Clone)]
pub struct FeedState {
    pub vault: Arc<Vault>,
    pub store: Store,
    pub public_url: String,
}

pub fn router(state: FeedState) -> Router {
    Router::new()
        .route("/feed/{token}", get(feed))
        .with_state(state)
}

async fn feed(State(state): State<FeedState>, Path(token): Path<String>) -> Response {
    let owner = if token.len() > 128 {
        None
    } else {
        match state.vault.feed_owner(&token).await {
            Ok(owner) => owner,
            Err(e) => {
                tracing::error!(error = %e, "feed lookup failed");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    };
    let Some(owner) = owner else {
        return (StatusCode::NOT_FOUND, "no such feed").into_response();
    };
    let entries = match state.store.feed_entries(&owner, FEED_ENTRIES).await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(error = %e, "feed entries unavailable");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let self_url = format!("{}/feed/{token}", state.public_url.trim_end_matches('/'));
    (
        [
            (header::CONTENT_TYPE, "application/atom+xml; charset=utf-8"),
            // The URL is a secret: keep it and the items out of shared caches.
            (header::CACHE_CONTROL, "private, max-age=60"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        atom(&self_url, &owner, &entries).to_string(),
    )
        .into_response()
}

/// The Atom document. Entry ids are `urn:uuid:` of the publication, stable across fetches.
pub fn atom(self_url: &str, owner: &str, entries: &[FeedEntry]) -> Feed {
    let time = |micros: i64| -> FixedDateTime {
        chrono::DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .fixed_offset()
    };
    let updated = entries
        .iter()
        .map(|e| e.sent_at)
        .max()
        .map(time)
        .unwrap_or_else(|| time(0));
    let items = entries
        .iter()
        .map(|e| {
            let p = &e.publication;
            let community = p
                .community_name
                .clone()
                .unwrap_or_else(|| p.community.clone());
            let mut entry = Entry {
                id: format!("urn:uuid:{}", p.id),
                title: Text::plain(p.title.clone()),
                updated: time(e.sent_at),
                published: Some(time(p.created_at)),
                authors: vec![Person {
                    name: community,
                    uri: Some(format!("at://{}", p.community)),
                    ..Default::default()
                }],
                summary: p.text.clone().map(Text::plain),
                ..Default::default()
            };
            if let Some(url) = &p.url {
                entry.links = vec![Link {
                    href: url.clone(),
                    rel: "alternate".into(),
                    ..Default::default()
                }];
            }
            entry
        })
        .collect();
    Feed {
        id: format!("urn:herald:feed:{owner}"),
        title: Text::plain("Herald notifications"),
        updated,
        links: vec![Link {
            href: self_url.to_string(),
            rel: "self".into(),
            mime_type: Some("application/atom+xml".into()),
            ..Default::default()
        }],
        entries: items,
        ..Default::default()
    }
}
