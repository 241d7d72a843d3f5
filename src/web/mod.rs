//! Web: what Herald serves outside `/xrpc/` — its DID document and the metrics endpoint.
//!
//! Owns `/.well-known/did.json` (so a member's PDS can proxy calls here with
//! `atproto-proxy: <service DID>#herald_appview`) and `/metrics` (which counts the outbox by
//! channel and status at each scrape, so dead letters show whichever process is scraped).
//! Must not touch storage beyond what those pages show.

pub mod feed;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::metrics::Metrics;
use crate::storage::Store;

#[derive(Clone)]
pub struct WebState {
    pub service_did: String,
    pub public_url: String,
    pub metrics: Arc<Metrics>,
    pub store: Store,
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/.well-known/did.json", get(did_document))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The service's DID document: the `#herald_appview` service points at the public URL.
pub fn did_document_json(service_did: &str, public_url: &str) -> serde_json::Value {
    json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": service_did,
        "service": [{
            "id": "#herald_appview",
            "type": "HeraldAppView",
            "serviceEndpoint": public_url.trim_end_matches('/'),
        }],
    })
}

async fn did_document(State(state): State<WebState>) -> impl IntoResponse {
    axum::Json(did_document_json(&state.service_did, &state.public_url))
}

async fn metrics(State(state): State<WebState>) -> impl IntoResponse {
    match state.store.outbox_counts().await {
        Ok(counts) => state.metrics.set_outbox(&counts),
        // The counters still render; the gauges keep their last figures.
        Err(e) => tracing::warn!(error = %e, "outbox counts unavailable for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
