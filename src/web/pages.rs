//! Server-rendered pages reached from links in emails, and the providers' webhooks.
//!
//! - `/verify?token=` — an email verification (or transfer) link;
//! - `/manage?token=` — the manage page of one email address (seed 001's settings page);
//! - `/unsubscribe?token=` — one-click unsubscribe (RFC 8058);
//! - `/subscribe/confirm?token=` — double opt-in confirmation of a standalone subscription;
//! - `/hooks/telegram` — Telegram's webhook, authenticated by its secret-token header.
//!
//! Link scanners follow links in mail, so a GET never changes anything: it shows a page whose
//! button POSTs. Tokens are the only credential here; pages never show an address to anyone
//! but the holder of that address's manage token. Must not touch SQL or provider formats.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use minijinja::{Environment, context};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::channels::telegram::Update;
use crate::metrics::Metrics;
use crate::vault::{ManageAction, Vault, VaultError};

#[derive(Clone)]
pub struct PagesState {
    pub vault: Arc<Vault>,
    pub telegram_secret: Option<SecretString>,
    pub metrics: Arc<Metrics>,
    templates: Arc<Environment<'static>>,
}

impl PagesState {
    pub fn new(
        vault: Arc<Vault>,
        telegram_secret: Option<SecretString>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            (
                "web/base.html",
                include_str!("../../templates/web/base.html"),
            ),
            (
                "web/message.html",
                include_str!("../../templates/web/message.html"),
            ),
            (
                "web/confirm.html",
                include_str!("../../templates/web/confirm.html"),
            ),
            (
                "web/manage.html",
                include_str!("../../templates/web/manage.html"),
            ),
        ] {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
        }
        Self {
            vault,
            telegram_secret,
            metrics,
            templates: Arc::new(env),
        }
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, template = name, "page failed to render");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        let mut response = self.render("web/message.html", context! { title, text });
        *response.status_mut() = status;
        response
    }

    fn confirm(
        &self,
        title: &str,
        text: &str,
        action: &str,
        token: &str,
        button: &str,
    ) -> Response {
        self.render(
            "web/confirm.html",
            context! { title, text, action, token, button },
        )
    }

    /// The page for a vault refusal; internal failures are logged, not shown.
    fn failure(&self, e: VaultError) -> Response {
        match e {
            VaultError::InvalidCode | VaultError::ContactNotFound => self.message(
                StatusCode::BAD_REQUEST,
                "This link is not valid",
                "It may have been used already, or copied incompletely.",
            ),
            VaultError::ExpiredCode => self.message(
                StatusCode::BAD_REQUEST,
                "This link has expired",
                "Ask for a new one from the app: validation links are short-lived.",
            ),
            other => {
                tracing::error!(error = %other, "page action failed");
                self.message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Please try again later.",
                )
            }
        }
    }
}

pub fn router(state: PagesState) -> Router {
    Router::new()
        .route("/verify", get(verify_page).post(verify_submit))
        .route("/manage", get(manage_page).post(manage_submit))
        .route(
            "/unsubscribe",
            get(unsubscribe_page).post(unsubscribe_submit),
        )
        .route(
            "/subscribe/confirm",
            get(confirm_subscription_page).post(confirm_subscription_submit),
        )
        .route("/hooks/telegram", post(telegram_hook))
        .with_state(state)
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
    #[serde(default)]
    done: Option<String>,
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
}

async fn verify_page(State(state): State<PagesState>, Query(q): Query<TokenQuery>) -> Response {
    match state.vault.link_is_live(&q.token).await {
        Ok(true) => state.confirm(
            "Confirm your email address",
            "Press the button to confirm this address for your account.",
            "/verify",
            &q.token,
            "Confirm",
        ),
        Ok(false) => state.failure(VaultError::InvalidCode),
        Err(e) => state.failure(e),
    }
}

async fn verify_submit(State(state): State<PagesState>, Form(f): Form<TokenForm>) -> Response {
    match state.vault.verify_link(&f.token).await {
        Ok(account) => state.message(
            StatusCode::OK,
            "Email address confirmed",
            &format!("This address is now verified for the account {account}."),
        ),
        Err(e) => state.failure(e),
    }
}

async fn manage_page(State(state): State<PagesState>, Query(q): Query<TokenQuery>) -> Response {
    match state.vault.manage_view(&q.token).await {
        Ok(view) => {
            let done = q.done.as_deref().map(done_text);
            state.render("web/manage.html", context! { view, token => q.token, done })
        }
        Err(e) => state.failure(e),
    }
}

#[derive(Deserialize)]
struct ManageForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    community: String,
}

async fn manage_submit(State(state): State<PagesState>, Form(f): Form<ManageForm>) -> Response {
    let action = match f.action.as_str() {
        "unsubscribe_all" => ManageAction::UnsubscribeAll,
        "resubscribe_all" => ManageAction::ResubscribeAll,
        "not_me" => ManageAction::NotMe,
        "choose" => ManageAction::ChooseAccount(f.contact),
        "leave" => ManageAction::Leave(f.community),
        _ => {
            return state.message(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "Go back and use one of the page's buttons.",
            );
        }
    };
    match state.vault.manage(&f.token, action).await {
        Ok(()) => {
            let mut to = url::form_urlencoded::Serializer::new(String::new());
            to.append_pair("token", &f.token)
                .append_pair("done", &f.action);
            Redirect::to(&format!("/manage?{}", to.finish())).into_response()
        }
        Err(e) => state.failure(e),
    }
}

fn done_text(action: &str) -> &'static str {
    match action {
        "unsubscribe_all" => "You are unsubscribed from all email.",
        "resubscribe_all" => "Email is enabled again.",
        "not_me" => "The address was detached and will receive no more email.",
        "choose" => "The address is confirmed for the account you chose.",
        "leave" => "You are unsubscribed from that community.",
        _ => "Done.",
    }
}

async fn unsubscribe_page(
    State(state): State<PagesState>,
    Query(q): Query<TokenQuery>,
) -> Response {
    if state.vault.manage_token_address(&q.token).is_none() {
        return state.failure(VaultError::InvalidCode);
    }
    state.confirm(
        "Unsubscribe from all email?",
        "Press the button and Herald sends this address no more email. You can undo this from the manage page.",
        "/unsubscribe",
        &q.token,
        "Unsubscribe",
    )
}

/// RFC 8058 one-click: mail clients POST `List-Unsubscribe=One-Click` to the header's URL
/// (token in the query); the confirmation page's form posts the token in the body.
async fn unsubscribe_submit(
    State(state): State<PagesState>,
    Query(q): Query<TokenQuery>,
    Form(f): Form<TokenForm>,
) -> Response {
    let token = if f.token.is_empty() { q.token } else { f.token };
    match state.vault.unsubscribe_all(&token).await {
        Ok(()) => state.message(
            StatusCode::OK,
            "You are unsubscribed",
            "Herald will send this address no more email.",
        ),
        Err(e) => state.failure(e),
    }
}

async fn confirm_subscription_page(
    State(state): State<PagesState>,
    Query(q): Query<TokenQuery>,
) -> Response {
    state.confirm(
        "Confirm your subscription",
        "Press the button to start receiving this community's updates by email.",
        "/subscribe/confirm",
        &q.token,
        "Confirm",
    )
}

async fn confirm_subscription_submit(
    State(state): State<PagesState>,
    Form(f): Form<TokenForm>,
) -> Response {
    match state.vault.confirm_subscription(&f.token).await {
        Ok(community) => state.message(
            StatusCode::OK,
            "Subscription confirmed",
            &format!("You will receive updates from {community} by email."),
        ),
        Err(e) => state.failure(e),
    }
}

/// Telegram's webhook. Requests without the configured secret token are refused with 403
/// (and an unconfigured secret refuses everything). Anything else is answered 200, even an
/// update we ignore, since Telegram redelivers on errors.
async fn telegram_hook(
    State(state): State<PagesState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let authentic = state
        .telegram_secret
        .as_ref()
        .is_some_and(|secret| bool::from(secret.expose_secret().as_bytes().ct_eq(given)));
    if !authentic {
        state.metrics.inbound("telegram", "other", "bad_secret");
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": "Forbidden", "message": "bad webhook secret"})),
        )
            .into_response();
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => {
            // Position only: the message text is the sender's and may hold anything.
            tracing::info!(
                line = e.line(),
                column = e.column(),
                "ignored a malformed Telegram update"
            );
            return StatusCode::OK.into_response();
        }
    };
    match state.vault.telegram_update(&update).await {
        Ok(outcome) => {
            state
                .metrics
                .inbound("telegram", outcome.kind(), outcome.as_str());
            StatusCode::OK.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "Telegram update failed");
            state.metrics.inbound("telegram", "other", "failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
