//! Inbound: what providers post back to Herald — Resend's bounce and complaint webhooks,
//! Twilio's and Vonage's inbound SMS — checked (signature, timestamp), read, and turned into
//! suppression and opt-out decisions recorded in the vault. (Telegram's `/stop` arrives on
//! the bot's own webhook and is handled with the rest of the bot, in the vault.)
//!
//! ```text
//! POST /hooks/resend ─────── svix-signature ───▶ event ─┬▶ complaint, hard bounce ─▶ suppress
//!                                                       └▶ soft bounce ─▶ Mailman score ─▶ suppress at 5.0
//! POST /hooks/twilio/sms ── X-Twilio-Signature ─┐
//! POST /hooks/vonage/sms ── sig (HMAC-SHA256) ──┴▶ sender (E.164) + keyword ─▶ opt out / in ─▶ answer
//! ```
//!
//! Owns the providers' callback formats and signatures, the keyword table and Mailman's bounce
//! rule. Must not touch the dispatcher, the outbox or the index: suppression and opt-outs are
//! recorded in the vault, which every later delivery consults. The one thing sent from here is
//! the answer to a keyword texted to a Vonage number, straight through the Vonage adapter
//! (Twilio takes its answer as TwiML in the HTTP response).
//!
//! # Invariants
//! - Nothing is read beyond the signature, and nothing changes, until the signature holds. An
//!   endpoint whose secret is not configured answers 404 and does nothing.
//! - Answers: 401 with `{"error", "message"}` for a missing, forged or stale signature; 400 for
//!   a signed request that cannot be read (a malformed sender number, a body that is not an
//!   event), with nothing changed; 200 for everything else, events Herald ignores and addresses
//!   it does not know included (a provider retries anything but 2xx).
//! - Logs and metrics carry kinds and outcomes only, never an address, a number or a message
//!   body; error messages shown to callers never echo the request.

pub mod bounces;
pub mod keywords;
pub mod resend;
pub mod twilio;
pub mod vonage;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::channels::vonage::{VonageConfigError, VonageSender};
use crate::channels::webhook::{WebhookError, WebhookSecret};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::vault::{BounceState, ComplianceReply, Vault, VaultError};
use bounces::{Bounce, Registered, Score};
use keywords::{Action, Keyword};
use resend::Feedback;

/// The paths providers are configured to call.
pub const RESEND_PATH: &str = "/hooks/resend";
pub const TWILIO_SMS_PATH: &str = "/hooks/twilio/sms";
pub const VONAGE_SMS_PATH: &str = "/hooks/vonage/sms";

/// Times a soft bounce is scored again after another bounce for the same address was counted
/// in between (each retry reads fresh figures; more than a couple means a storm of events for
/// one address, and dropping one soft bounce then costs nothing).
const SCORE_ATTEMPTS: usize = 4;

/// A callback secret is set but unusable.
#[derive(Debug, thiserror::Error)]
pub enum InboundConfigError {
    #[error("HERALD_RESEND_WEBHOOK_SECRET: {0}")]
    ResendSecret(#[source] WebhookError),
    #[error("Vonage (to answer keywords texted to it): {0}")]
    Vonage(#[from] VonageConfigError),
}

#[derive(Clone)]
pub struct InboundState {
    vault: Arc<Vault>,
    metrics: Arc<Metrics>,
    /// Twilio signs the URL it called, which is this plus the path.
    public_url: Url,
    resend_secret: Option<WebhookSecret>,
    /// The Twilio account's auth token (`HERALD_SMS_AUTH_TOKEN`) signs its webhooks.
    twilio_token: Option<SecretString>,
    vonage_secret: Option<SecretString>,
    /// Sends the answer to a keyword texted to a Vonage number.
    vonage: Option<VonageSender>,
}

impl InboundState {
    pub fn from_settings(
        settings: &Settings,
        vault: Arc<Vault>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, InboundConfigError> {
        let callbacks = &settings.providers.callbacks;
        let resend_secret = callbacks
            .resend_webhook_secret
            .as_ref()
            .map(|s| WebhookSecret::parse(s.expose_secret()))
            .transpose()
            .map_err(InboundConfigError::ResendSecret)?;
        Ok(Self {
            vault,
            metrics,
            public_url: settings.public_url.clone(),
            resend_secret,
            twilio_token: settings.providers.sms.auth_token.clone(),
            vonage_secret: callbacks.vonage_signature_secret.clone(),
            vonage: VonageSender::from_settings(&settings.providers)?,
        })
    }

    /// The URL a provider called: the public URL with the request's path and query.
    fn called_url(&self, uri: &Uri) -> String {
        let mut url = self.public_url.clone();
        url.set_path(uri.path());
        url.set_query(uri.query());
        url.to_string()
    }
}

pub fn router(state: InboundState) -> Router {
    Router::new()
        .route(RESEND_PATH, post(resend_hook))
        .route(TWILIO_SMS_PATH, post(twilio_hook))
        .route(VONAGE_SMS_PATH, post(vonage_hook))
        .with_state(state)
}

/// Why a callback was refused. Messages name the problem, never the request's content.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("{0} callbacks are not configured on this Herald")]
    NotConfigured(&'static str),
    #[error("{0}")]
    Unsigned(String),
    #[error("{0}")]
    BadSignature(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl InboundError {
    fn from_webhook(e: WebhookError) -> Self {
        match e {
            WebhookError::MissingHeader(_) => Self::Unsigned(e.to_string()),
            _ => Self::BadSignature(e.to_string()),
        }
    }

    fn from_vonage(e: vonage::SignatureError) -> Self {
        match e {
            vonage::SignatureError::Missing(_) => Self::Unsigned(e.to_string()),
            _ => Self::BadSignature(e.to_string()),
        }
    }

    /// For metrics.
    fn outcome(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "not_configured",
            Self::Unsigned(_) | Self::BadSignature(_) => "rejected",
            Self::InvalidRequest(_) => "invalid",
            Self::Vault(_) => "failed",
        }
    }
}

impl IntoResponse for InboundError {
    fn into_response(self) -> Response {
        let (status, error) = match &self {
            Self::NotConfigured(_) => (StatusCode::NOT_FOUND, "NotFound"),
            Self::Unsigned(_) => (StatusCode::UNAUTHORIZED, "AuthenticationRequired"),
            Self::BadSignature(_) => (StatusCode::UNAUTHORIZED, "InvalidSignature"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            Self::Vault(e) => {
                tracing::error!(error = %e, "a provider callback failed");
                let body = serde_json::json!({
                    "error": "InternalServerError",
                    "message": "Internal Server Error",
                });
                return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
            }
        };
        let body = serde_json::json!({"error": error, "message": self.to_string()});
        (status, axum::Json(body)).into_response()
    }
}

/// Count a refused callback and answer it.
fn refuse(metrics: &Metrics, source: &str, e: InboundError) -> Response {
    metrics.inbound(source, "other", e.outcome());
    if !matches!(e, InboundError::Vault(_)) {
        tracing::info!(source, error = %e, "a provider callback was refused");
    }
    e.into_response()
}

// ---------------------------------------------------------------------------------------
// Email: Resend
// ---------------------------------------------------------------------------------------

/// What a bounce or complaint did to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailOutcome {
    Suppressed,
    AlreadySuppressed,
    /// A soft bounce raised the score, below the threshold.
    Scored,
    /// A soft bounce on a day that already counted.
    NotCounted,
    /// An address Herald never had.
    UnknownAddress,
    /// Not a bounce or a complaint.
    Ignored,
}

impl EmailOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suppressed => "suppressed",
            Self::AlreadySuppressed => "already_suppressed",
            Self::Scored => "scored",
            Self::NotCounted => "not_counted",
            Self::UnknownAddress => "unknown_address",
            Self::Ignored => "ignored",
        }
    }
}

async fn resend_hook(
    State(state): State<InboundState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The checks below take the time as a parameter (tests pass their own); here it is now.
    let now = Utc::now();
    let event = match read_resend(&state, &headers, &body, now) {
        Ok(event) => event,
        Err(e) => return refuse(&state.metrics, "resend", e),
    };
    match email_feedback(&state.vault, &event, now).await {
        Ok(outcome) => {
            state
                .metrics
                .inbound("resend", event.feedback.kind(), outcome.as_str());
            tracing::info!(
                kind = event.feedback.kind(),
                outcome = outcome.as_str(),
                "Resend event"
            );
            StatusCode::OK.into_response()
        }
        Err(e) => refuse(&state.metrics, "resend", e.into()),
    }
}

fn read_resend(
    state: &InboundState,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<resend::Event, InboundError> {
    let secret = state
        .resend_secret
        .as_ref()
        .ok_or(InboundError::NotConfigured("Resend"))?;
    resend::verify(secret, headers, body, now.timestamp()).map_err(InboundError::from_webhook)?;
    resend::parse(body).map_err(|e| InboundError::InvalidRequest(e.to_string()))
}

/// Apply one (verified) Resend event at `now`: a complaint or a hard bounce suppresses its
/// address; a soft bounce is scored on the event's day (`now`'s when the event has none).
pub async fn email_feedback(
    vault: &Vault,
    event: &resend::Event,
    now: DateTime<Utc>,
) -> Result<EmailOutcome, VaultError> {
    let reason = match event.feedback {
        Feedback::Other => return Ok(EmailOutcome::Ignored),
        Feedback::Complaint => "complaint",
        Feedback::Bounced(Bounce::Hard) => "bounce",
        Feedback::Bounced(Bounce::Soft) => "bounces",
    };
    let Some(recipient) = &event.recipient else {
        return Ok(EmailOutcome::UnknownAddress);
    };
    let mut state = match vault.bounce_state(recipient).await {
        Ok(Some(state)) => state,
        // Not an address Herald could have written to.
        Ok(None) | Err(VaultError::InvalidAddress(_)) => return Ok(EmailOutcome::UnknownAddress),
        Err(e) => return Err(e),
    };
    for _ in 0..SCORE_ATTEMPTS {
        if state.suppressed {
            return Ok(EmailOutcome::AlreadySuppressed);
        }
        if event.feedback != Feedback::Bounced(Bounce::Soft) {
            return suppress(vault, &state, reason).await;
        }
        let at = event.at.unwrap_or(now);
        let registered = bounces::register(score_of(&state), Bounce::Soft, at.date_naive());
        let Registered::Counted {
            score,
            suppress: over,
            ..
        } = registered
        else {
            return Ok(EmailOutcome::NotCounted);
        };
        if vault
            .record_bounce_score(&state, score, at.timestamp_micros())
            .await?
        {
            return Ok(if over {
                suppress(vault, &state, reason).await?
            } else {
                EmailOutcome::Scored
            });
        }
        // Another bounce for this address was counted meanwhile: score on fresh figures.
        state = match vault.bounce_state(recipient).await? {
            Some(state) => state,
            None => return Ok(EmailOutcome::UnknownAddress),
        };
    }
    Ok(EmailOutcome::NotCounted)
}

async fn suppress(
    vault: &Vault,
    state: &BounceState,
    reason: &str,
) -> Result<EmailOutcome, VaultError> {
    Ok(
        if vault.suppress_address(&state.address_id, reason).await? {
            EmailOutcome::Suppressed
        } else {
            EmailOutcome::AlreadySuppressed
        },
    )
}

fn score_of(state: &BounceState) -> Score {
    Score {
        score: state.score,
        last: (state.last_at != 0)
            .then(|| DateTime::from_timestamp_micros(state.last_at))
            .flatten()
            .map(|at| at.date_naive()),
    }
}

// ---------------------------------------------------------------------------------------
// SMS: Twilio and Vonage
// ---------------------------------------------------------------------------------------

/// The form fields of a callback, in order, repeated names kept.
fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

async fn twilio_hook(
    State(state): State<InboundState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let checked = (|| {
        let token = state
            .twilio_token
            .as_ref()
            .ok_or(InboundError::NotConfigured("Twilio"))?;
        let given = headers
            .get(twilio::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                InboundError::Unsigned("the request has no X-Twilio-Signature header".into())
            })?;
        let url = state.called_url(&uri);
        if twilio::verify(token.expose_secret().as_bytes(), &url, &params, given) {
            Ok(())
        } else {
            Err(InboundError::BadSignature(
                "X-Twilio-Signature does not match".into(),
            ))
        }
    })();
    if let Err(e) = checked {
        return refuse(&state.metrics, "twilio", e);
    }
    match sms_keyword(
        &state,
        "twilio",
        field(&params, "From"),
        field(&params, "Body"),
    )
    .await
    {
        Ok(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            twilio::twiml(answer.as_ref().map(|a| a.text.as_str())),
        )
            .into_response(),
        Err(e) => refuse(&state.metrics, "twilio", e),
    }
}

async fn vonage_hook(State(state): State<InboundState>, body: Bytes) -> Response {
    let params = form(&body);
    let checked = (|| {
        let secret = state
            .vonage_secret
            .as_ref()
            .ok_or(InboundError::NotConfigured("Vonage"))?;
        let now = Utc::now().timestamp();
        vonage::verify(secret.expose_secret().as_bytes(), &params, now)
            .map_err(InboundError::from_vonage)
    })();
    if let Err(e) = checked {
        return refuse(&state.metrics, "vonage", e);
    }
    // Vonage gives the sender as digits without the `+`.
    let msisdn = field(&params, "msisdn");
    let sender = if msisdn.starts_with('+') {
        msisdn.to_string()
    } else {
        format!("+{msisdn}")
    };
    match sms_keyword(&state, "vonage", &sender, field(&params, "text")).await {
        Ok(Some(answer)) => {
            match state.vonage.clone() {
                // Answered apart from the webhook, which Vonage wants acknowledged quickly.
                Some(vonage) => {
                    tokio::spawn(async move {
                        if let Err(e) = vonage.send(&answer.to, &answer.text, None).await {
                            tracing::warn!(error = %e, "could not answer a keyword texted to Vonage");
                        }
                    });
                }
                None => tracing::warn!(
                    "a keyword texted to Vonage is not answered: Vonage sending is not configured"
                ),
            }
            StatusCode::OK.into_response()
        }
        Ok(None) => StatusCode::OK.into_response(),
        Err(e) => refuse(&state.metrics, "vonage", e),
    }
}

/// An answer to send back.
struct Answer {
    /// The sender, E.164.
    to: String,
    text: String,
}

/// Act on a (verified) text from `sender`: a leave word opts the number out, a join word
/// opts it back in, help is answered; anything else is left unanswered.
async fn sms_keyword(
    state: &InboundState,
    source: &str,
    sender: &str,
    text: &str,
) -> Result<Option<Answer>, InboundError> {
    let number = crate::vault::address::parse_phone(sender)
        .map_err(|e| InboundError::InvalidRequest(format!("sender: {e}")))?;
    let Some(keyword) = keywords::parse(text).filter(Keyword::acts) else {
        state.metrics.inbound(source, "other", "ignored");
        return Ok(None);
    };
    let (reply, outcome) = match keyword.action {
        Action::Leave => {
            state.vault.sms_opt_out(&number).await?;
            (ComplianceReply::SmsStopped, "opted_out")
        }
        Action::Join => {
            state.vault.sms_opt_in(&number).await?;
            (ComplianceReply::SmsStarted, "opted_in")
        }
        Action::Help => (ComplianceReply::SmsHelp, "answered"),
    };
    let kind = keyword.action.as_str();
    state.metrics.inbound(source, kind, outcome);
    tracing::info!(
        source,
        kind,
        outcome,
        language = keyword.language.code(),
        "SMS keyword"
    );
    Ok(Some(Answer {
        to: number,
        text: state.vault.compliance_reply(reply, keyword.language.code()),
    }))
}
