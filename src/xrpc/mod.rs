//! XRPC: Herald's HTTP API under `/xrpc/`, one file per method named after it.
//!
//! Owns request parsing, authentication of each call (ATProto inter-service JWTs, `lxm` =
//! the method's NSID) and the one mapping from errors to the ATProto error envelope
//! `{"error": "<Name>", "message": "<text>"}`. Handlers are thin: parse, call the domain, map
//! errors. Internal details are logged once here and never shown to clients. Must not write
//! SQL or talk to channel providers.

mod contact_add;
mod contact_list;
mod contact_remove;
mod contact_verify;
mod get_preferences;
mod get_subscribers;
mod get_unread_count;
mod health;
pub mod limits;
mod list_notifications;
mod publish;
mod subscribe_email;
mod update_seen;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::de::DeserializeOwned;

use crate::auth::{AuthError, Caller, ServiceAuth};
use crate::distribute::PublishError;
use crate::metrics::Metrics;
use crate::storage::{StorageError, Store};
use crate::vault::{Vault, VaultError};

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Arc<ServiceAuth>,
    pub metrics: Arc<Metrics>,
    pub vault: Arc<Vault>,
    pub limits: Arc<limits::Limits>,
    /// Wakes this process's dispatcher when a publish queued deliveries.
    pub wake: Arc<tokio::sync::Notify>,
    pub schedule: crate::settings::ScheduleSettings,
    pub clock: Arc<dyn crate::clock::Clock>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/xrpc/_health", get(health::handle))
        .route(&path(publish::NSID), procedure(post(publish::handle)))
        .route(
            &path(get_subscribers::NSID),
            query(get(get_subscribers::handle)),
        )
        .route(
            &path(list_notifications::NSID),
            query(get(list_notifications::handle)),
        )
        .route(
            &path(get_unread_count::NSID),
            query(get(get_unread_count::handle)),
        )
        .route(
            &path(update_seen::NSID),
            procedure(post(update_seen::handle)),
        )
        .route(
            &path(contact_add::NSID),
            procedure(post(contact_add::handle)),
        )
        .route(
            &path(contact_verify::NSID),
            procedure(post(contact_verify::handle)),
        )
        .route(&path(contact_list::NSID), query(get(contact_list::handle)))
        .route(
            &path(contact_remove::NSID),
            procedure(post(contact_remove::handle)),
        )
        .route(
            &path(get_preferences::NSID),
            query(get(get_preferences::handle)),
        )
        .route(
            &path(subscribe_email::NSID),
            procedure(post(subscribe_email::handle)),
        )
        .route("/xrpc/{method}", axum::routing::any(not_implemented))
}

fn path(nsid: &str) -> String {
    format!("/xrpc/{nsid}")
}

fn query(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(|| async {
        XrpcError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "this method is a query: use GET",
        )
    })
}

fn procedure(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(|| async {
        XrpcError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "this method is a procedure: use POST",
        )
    })
}

async fn not_implemented() -> XrpcError {
    XrpcError::new(
        StatusCode::NOT_IMPLEMENTED,
        "MethodNotImplemented",
        "Method Not Implemented",
    )
}

/// Verify the caller of method `nsid`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    nsid: &str,
) -> Result<Caller, XrpcError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    Ok(state.auth.verify(authorization, nsid).await?)
}

/// The ATProto error envelope, with its HTTP status.
#[derive(Debug)]
pub struct XrpcError {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl XrpcError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    /// A 400 with a method-specific error name from the method's lexicon.
    pub fn invalid_request_named(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }

    pub fn forbidden(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error, message)
    }

    /// Something broke inside: logged here with its detail, shown to the client without it.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal Server Error",
        )
    }
}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<AuthError> for XrpcError {
    fn from(e: AuthError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, e.error_name(), e.to_string())
    }
}

impl From<StorageError> for XrpcError {
    fn from(e: StorageError) -> Self {
        Self::internal(&e)
    }
}

impl From<PublishError> for XrpcError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::UnknownCommunity(_) => {
                Self::new(StatusCode::BAD_REQUEST, "UnknownCommunity", e.to_string())
            }
            PublishError::NotPublisher { .. } => Self::forbidden("NotPublisher", e.to_string()),
            PublishError::UnknownPipe { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "UnknownPipe", e.to_string())
            }
            PublishError::Storage(e) => Self::internal(&e),
        }
    }
}

impl From<VaultError> for XrpcError {
    fn from(e: VaultError) -> Self {
        let status = match &e {
            VaultError::Storage(_) | VaultError::Keys(_) => return Self::internal(&e),
            VaultError::Send(_) => {
                tracing::warn!(error = %e, "a verification message could not be sent");
                StatusCode::BAD_GATEWAY
            }
            VaultError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.error_name(), e.to_string())
    }
}

/// `Json` whose rejections are XRPC errors.
pub struct XrpcJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for XrpcJson<T> {
    type Rejection = XrpcError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> XrpcError {
    XrpcError::invalid_request(format!("invalid input: {}", rejection.body_text()))
}

/// `Query` whose rejections are XRPC errors.
pub struct XrpcQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for XrpcQuery<T> {
    type Rejection = XrpcError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> XrpcError {
    XrpcError::invalid_request(format!("invalid parameters: {}", rejection.body_text()))
}

/// `limit` as the lexicons define it: 1–100, default 50.
pub fn page_limit(limit: Option<i64>) -> Result<i64, XrpcError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(n) => Err(XrpcError::invalid_request(format!(
            "limit must be between 1 and 100, got {n}"
        ))),
    }
}
