//! `GET /xrpc/_health`: liveness with the database checked, as ATProto services answer it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub async fn handle(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let version = env!("CARGO_PKG_VERSION");
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"version": version}))),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"version": version, "error": "Service Unavailable"})),
            )
        }
    }
}
