//! Email through Resend's HTTP API (`api.resend.com`, or anything speaking its wire format such
//! as [`crate::sandbox::resend`]): the dispatcher's alternative, or failover, to SMTP.
//!
//! Owns the request shape — `POST {api}/emails` with `Authorization: Bearer <key>` and a JSON
//! body `{from, to: [address], subject, text, html?, headers?}`, plus `Idempotency-Key` — and the
//! classification of Resend's answers into [`SendError`] kinds.
//! Must not touch: storage, templates, who receives what, retries and failover (the caller
//! decides from the error kind). Takes the same [`OutgoingEmail`] as the SMTP adapter.
//!
//! ```text
//! OutgoingEmail ──check──▶ JSON body ──POST {api}/emails──▶ Resend
//!                (recipient parses, extra    Idempotency-Key  │
//!                 headers not ours, no CR/LF)                 ▼
//!                         Sent { provider_id: Resend's id } / SendError (status + error name)
//! ```
//!
//! # Invariants
//! - Error reasons never contain the recipient address or the API key. Resend's error body is
//!   `{"statusCode", "message", "name"}`; `message` is never read, because some of Resend's
//!   messages quote addresses ("You can only send testing emails to your own email address
//!   (…)"). Reasons are built from the HTTP status, the error `name` (only when it is a
//!   lowercase snake_case word) and a fixed text per name. Transport errors are reduced to
//!   their kind. The key is held only inside a header value marked sensitive, and `Debug`
//!   prints neither it nor the recipient.
//! - Redirects are not followed: an email API that redirects is misconfigured, and following a
//!   redirect would turn the POST into a GET.
//! - Extra headers cannot replace the ones Resend builds from the body (`From`, `To`,
//!   `Subject`…) nor `Message-ID`, which Resend assigns itself: Resend documents custom headers
//!   for `List-Unsubscribe`, `X-Entity-Ref-ID`, `In-Reply-To` and `References`, not for
//!   overriding its own, so this adapter never sends one. An extra header that would replace
//!   one of these (the same list as the SMTP adapter's), a name given twice, or a value with a
//!   line break is a permanent failure before anything is sent.
//!
//! # Idempotency
//! Resend honours an `Idempotency-Key` header on `POST /emails` for 24 hours: a request
//! repeating a key with the same body gets the first answer (the same email id) and no second
//! email is sent; the same key with a different body is refused (409
//! `invalid_idempotent_request`); a repeat while the first is still being processed is refused
//! (409 `concurrent_idempotent_requests`, safe to retry). [`ResendSender::send`] sends
//! [`OutgoingEmail::idempotency_key`] there, so a delivery retried after an ambiguous failure
//! (a timeout, a connection cut after the request went out) is not delivered twice — as long as
//! the retry comes within 24 hours and renders the same body. Keys Resend would refuse or a
//! header cannot carry (over 256 characters, not printable ASCII) are sent as `sha256-<hex>` of the key, which is
//! stable and distinct; an empty key is treated as no key (a constant key would make every
//! such email a duplicate of the first). Without a key, a retried timeout may send twice.
//!
//! # Classification
//! | Answer                                              | Kind                               |
//! |-----------------------------------------------------|------------------------------------|
//! | 2xx                                                 | `Ok(Sent { provider_id: id })`     |
//! | 429 `rate_limit_exceeded` (or any other 429)        | Transient, `Retry-After`, else `ratelimit-reset` |
//! | 429 `daily_quota_exceeded`                          | Transient, `Retry-After`, else 1 h |
//! | 429 `monthly_quota_exceeded`                        | Transient, `Retry-After`, else 24 h |
//! | 409 `concurrent_idempotent_requests`                | Transient (`Retry-After` if given) |
//! | 408, 5xx (`application_error`, `internal_server_error`, proxies) | Transient (`Retry-After` if given) |
//! | timeout, refused connection, cut connection         | Transient                          |
//! | 400 `validation_error`, `invalid_idempotency_key`   | Permanent                          |
//! | 401 `missing_api_key`, `restricted_api_key`; 403 `invalid_api_key`, `validation_error` (unverified domain, testing-only account) | Permanent |
//! | 409 `invalid_idempotent_request`                    | Permanent                          |
//! | 422 (`missing_required_field`, `invalid_from_address`, …), 451 `security_error` | Permanent |
//! | any other 4xx, 3xx, 1xx                             | Permanent                          |
//!
//! Quotas are transient although they last hours: the message is fine and another provider
//! (SMTP) can send it now, so the caller may fail over, or retry once the quota has reset.
//! Bad credentials are permanent like every adapter's: the same request will not succeed until
//! an operator changes the configuration. Resend never reports a bounce synchronously (bounces
//! arrive later, by webhook), so this adapter never returns [`SendError::Gone`].

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::Mailbox;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::email::{OutgoingEmail, check_headers};
use super::{SendError, Sent, retry_after, transport_error};
use crate::settings::ProviderSettings;

/// Resend's production API, used when `HERALD_RESEND_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.resend.com";

/// Whole-request timeout. Resend answers a send in well under a second (the email is only
/// queued); 10 s leaves room for a slow network without holding a dispatcher lease long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The idempotency header Resend reads on `POST /emails`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Longest idempotency key Resend accepts (longer ones get 400 `invalid_idempotency_key`).
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// Wait after `daily_quota_exceeded` when Resend gives no `Retry-After`. Its daily quota is a
/// rolling 24 hours, so an hour is a fair guess at when room frees up, without retrying often.
const DAILY_QUOTA_WAIT: Duration = Duration::from_secs(60 * 60);

/// Wait after `monthly_quota_exceeded` when Resend gives no `Retry-After`: a day, so a
/// plan upgrade is picked up without hammering the API for weeks.
const MONTHLY_QUOTA_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a Resend sender could not be built. Texts never repeat the API key.
#[derive(Debug, thiserror::Error)]
pub enum ResendConfigError {
    #[error("Resend API URL must be an http(s) URL")]
    BadUrl,
    #[error("invalid HERALD_EMAIL_FROM {0:?}: not an email address")]
    InvalidFrom(String),
    /// Empty, or with characters an HTTP header cannot carry. The key itself is not shown.
    #[error("Resend API key is not usable in an HTTP header (empty or not printable ASCII)")]
    InvalidKey,
    #[error("could not build the HTTP client for Resend")]
    Client(#[source] reqwest::Error),
}

/// Sends email through one Resend account. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct ResendSender {
    client: reqwest::Client,
    /// `{api}/emails`, built once.
    emails_url: Url,
    /// `Bearer <key>`, marked sensitive; the only place the key is kept.
    authorization: HeaderValue,
    /// As configured (`noreply@example.com` or `Herald <noreply@example.com>`), checked to parse.
    from: String,
    timeout: Duration,
}

impl std::fmt::Debug for ResendSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a credential: never printed.
        f.debug_struct("ResendSender")
            .field("api", &self.emails_url.origin().ascii_serialization())
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ResendSender {
    /// The sender the settings describe: `None` when no API key is set (Resend is then not
    /// among the email providers). Sends as `HERALD_EMAIL_FROM`, like the SMTP adapter.
    pub fn from_settings(settings: &ProviderSettings) -> Result<Option<Self>, ResendConfigError> {
        let Some(api_key) = &settings.resend.api_key else {
            return Ok(None);
        };
        let api_url = match &settings.resend.api_url {
            Some(url) => url.clone(),
            None => Url::parse(DEFAULT_API_URL).map_err(|_| ResendConfigError::BadUrl)?,
        };
        Self::new(api_url, api_key.clone(), &settings.email_from).map(Some)
    }

    /// A sender posting to `{api_url}/emails` with `api_key`, as `from`.
    pub fn new(api_url: Url, api_key: SecretString, from: &str) -> Result<Self, ResendConfigError> {
        if !matches!(api_url.scheme(), "http" | "https") || api_url.cannot_be_a_base() {
            return Err(ResendConfigError::BadUrl);
        }
        let mut emails_url = api_url;
        emails_url
            .path_segments_mut()
            .map_err(|_| ResendConfigError::BadUrl)?
            .pop_if_empty()
            .push("emails");
        let from = from.trim();
        if from.parse::<Mailbox>().is_err() {
            return Err(ResendConfigError::InvalidFrom(from.to_string()));
        }
        let key = api_key.expose_secret();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ResendConfigError::InvalidKey);
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| ResendConfigError::InvalidKey)?;
        authorization.set_sensitive(true);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ResendConfigError::Client)?;
        Ok(Self {
            client,
            emails_url,
            authorization,
            from: from.to_string(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replace the whole-request timeout (tests use a short one against a hanging server).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The sender address as configured.
    pub fn from_address(&self) -> &str {
        &self.from
    }

    /// Sends one email: `POST {api}/emails`. On success `provider_id` is Resend's email `id`,
    /// the same on every retry with the same idempotency key and body (within 24 hours).
    pub async fn send(&self, email: &OutgoingEmail) -> Result<Sent, SendError> {
        let payload = self.payload(email)?;
        let mut request = self
            .client
            .post(self.emails_url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .json(&payload)
            .timeout(self.timeout);
        if let Some(key) = idempotency_key(email.idempotency_key.as_deref()) {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error("resend", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            // Resend has accepted the email once the status says so: a body that fails to
            // arrive or parse costs only the id, and reporting a failure here would make the
            // caller send it again (under a new key, after 24 hours, as a duplicate).
            let id = match response.bytes().await {
                Ok(bytes) => serde_json::from_slice::<Created>(&bytes)
                    .ok()
                    .and_then(|c| c.id),
                Err(_) => None,
            };
            tracing::debug!(
                id = id.as_deref().unwrap_or("-"),
                "resend accepted the email"
            );
            return Ok(Sent { provider_id: id });
        }
        let body = response.bytes().await.unwrap_or_default();
        let error = classify(status, &headers, &body);
        tracing::debug!(%error, "resend send failed");
        Err(error)
    }

    /// The JSON body for `email`, or a permanent failure when it cannot be sent as given.
    /// Reasons name a header but never the recipient.
    fn payload<'a>(&'a self, email: &'a OutgoingEmail) -> Result<Payload<'a>, SendError> {
        let to = email.to.trim();
        if to.parse::<Mailbox>().is_err() {
            return Err(SendError::permanent("invalid recipient address"));
        }
        check_headers(&email.headers, "resend")?;
        let mut headers = BTreeMap::new();
        for (name, value) in &email.headers {
            if value.contains(['\r', '\n']) {
                return Err(SendError::permanent(format!(
                    "extra header {name} has a line break in its value"
                )));
            }
            headers.insert(name.as_str(), value.as_str());
        }
        Ok(Payload {
            from: &self.from,
            to: [to],
            subject: &email.subject,
            text: &email.text,
            html: email.html.as_deref(),
            headers,
        })
    }
}

/// The body of `POST /emails`.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    from: &'a str,
    to: [&'a str; 1],
    subject: &'a str,
    /// Always sent: Resend would otherwise derive a text part from the html.
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<&'a str, &'a str>,
}

/// Resend's answer to a successful send: `{"id": "…"}`.
#[derive(Deserialize)]
struct Created {
    id: Option<String>,
}

/// Resend's error body: `{"statusCode": 422, "message": "...", "name": "validation_error"}`.
/// `message` is deliberately not read (it can quote an address).
#[derive(Deserialize)]
struct ResendError {
    name: Option<String>,
}

/// The `Idempotency-Key` to send for the caller's key: as given when Resend accepts it,
/// `sha256-<hex>` of it when it is too long or not printable ASCII, none when empty.
fn idempotency_key(key: Option<&str>) -> Option<String> {
    let key = key.filter(|k| !k.is_empty())?;
    let sendable = key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && key.trim() == key;
    if sendable {
        return Some(key.to_string());
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("sha256-{hex}"))
}

/// `ratelimit-reset`: seconds until Resend's rate-limit window resets.
fn ratelimit_reset(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The error `name` when it looks like one of Resend's (lowercase snake_case, short): anything
/// else is not passed on, in case a proxy or a future API puts free text there.
fn error_name(body: &[u8]) -> Option<String> {
    let name = serde_json::from_slice::<ResendError>(body).ok()?.name?;
    let plausible =
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    plausible.then_some(name)
}

/// Classify a non-2xx answer from `POST /emails` (see the module documentation's table).
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let name = error_name(body);
    let mut reason = format!("resend answered HTTP {}", status.as_u16());
    if let Some(name) = &name {
        reason.push(' ');
        reason.push_str(name);
        if let Some(meaning) = describe(name) {
            reason.push_str(": ");
            reason.push_str(meaning);
        }
    }
    let transient = |retry_after| SendError::Transient {
        reason: reason.clone(),
        retry_after,
    };
    match (status.as_u16(), name.as_deref()) {
        (429, Some("daily_quota_exceeded")) => {
            transient(retry_after(headers).or(Some(DAILY_QUOTA_WAIT)))
        }
        (429, Some("monthly_quota_exceeded")) => {
            transient(retry_after(headers).or(Some(MONTHLY_QUOTA_WAIT)))
        }
        (429, _) => transient(retry_after(headers).or_else(|| ratelimit_reset(headers))),
        (409, Some("concurrent_idempotent_requests")) => transient(retry_after(headers)),
        // 408: the request was not processed in time (by Resend or a proxy in front of it).
        (408, _) | (500..=599, _) => transient(retry_after(headers)),
        // Everything else — 4xx (invalid message, bad or restricted key, unverified domain,
        // key reused with another body, content refused), 3xx with redirects off, 1xx — will
        // not succeed by sending the same request again.
        _ => SendError::Permanent { reason },
    }
}

/// A fixed description of Resend's documented error names. Never the text Resend sent.
fn describe(name: &str) -> Option<&'static str> {
    Some(match name {
        "validation_error" => "the request was refused as invalid",
        "invalid_idempotency_key" => "the idempotency key was refused",
        "missing_api_key" => "no API key was sent",
        "restricted_api_key" => "the API key may not do this",
        "invalid_api_key" => "the API key is invalid (check HERALD_RESEND_API_KEY)",
        "not_found" => "no such endpoint (check HERALD_RESEND_API_URL)",
        "method_not_allowed" => "method not allowed (check HERALD_RESEND_API_URL)",
        "invalid_idempotent_request" => {
            "the idempotency key was already used with a different body (an earlier attempt \
             may have been sent)"
        }
        "concurrent_idempotent_requests" => {
            "a request with the same idempotency key is still in progress"
        }
        "invalid_attachment" => "an attachment was refused",
        "invalid_from_address" => "the from address was refused (check HERALD_EMAIL_FROM)",
        "invalid_access" | "invalid_parameter" | "invalid_region" => "a parameter was refused",
        "missing_required_field" => "a required field is missing",
        "daily_quota_exceeded" => "the daily sending quota is used up",
        "monthly_quota_exceeded" => "the monthly sending quota is used up",
        "rate_limit_exceeded" => "too many requests",
        "security_error" => "refused for security reasons",
        "application_error" | "internal_server_error" => "resend internal error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ResendSettings;

    const KEY: &str = "re_test_5ecretKey";

    fn resend_error(status: u16, name: &str) -> Vec<u8> {
        serde_json::json!({
            "statusCode": status,
            "message": "You can only send testing emails to your own email address (member@example.org).",
            "name": name,
        })
        .to_string()
        .into_bytes()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn sender() -> ResendSender {
        ResendSender::new(
            Url::parse("https://api.resend.com").unwrap(),
            SecretString::from(KEY),
            "Herald <noreply@herald.example>",
        )
        .unwrap()
    }

    fn settings(api_url: Option<&str>, key: Option<&str>) -> ProviderSettings {
        ProviderSettings {
            email_from: "Herald <noreply@herald.example>".into(),
            resend: ResendSettings {
                api_url: api_url.map(|u| Url::parse(u).unwrap()),
                api_key: key.map(|k| SecretString::from(k.to_string())),
            },
            ..Default::default()
        }
    }

    fn email(headers: &[(&str, &str)]) -> OutgoingEmail {
        OutgoingEmail {
            to: "member@example.org".into(),
            subject: "s".into(),
            text: "t".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn rate_limits_are_transient_with_retry_after_or_the_window_reset() {
        let body = resend_error(429, "rate_limit_exceeded");
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "3"), ("ratelimit-reset", "9")]),
            &body,
        );
        assert_eq!(
            err,
            SendError::Transient {
                reason: "resend answered HTTP 429 rate_limit_exceeded: too many requests".into(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("ratelimit-reset", "9")]),
            &body,
        );
        assert!(
            matches!(err, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(9)),
            "{err:?}"
        );
        let err = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"");
        assert_eq!(err, SendError::transient("resend answered HTTP 429"));
    }

    #[test]
    fn quotas_are_transient_with_a_long_wait_unless_resend_gives_one() {
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            // ratelimit-reset is about the per-second window, not the quota: ignored here.
            &headers(&[("ratelimit-reset", "1")]),
            &resend_error(429, "daily_quota_exceeded"),
        );
        assert!(
            matches!(&err, SendError::Transient { retry_after: Some(d), reason }
                if *d == DAILY_QUOTA_WAIT && reason.contains("daily_quota_exceeded")),
            "{err:?}"
        );
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            &resend_error(429, "monthly_quota_exceeded"),
        );
        assert!(
            matches!(err, SendError::Transient { retry_after: Some(d), .. } if d == MONTHLY_QUOTA_WAIT),
            "{err:?}"
        );
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "7200")]),
            &resend_error(429, "daily_quota_exceeded"),
        );
        assert!(
            matches!(err, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(7200)),
            "{err:?}"
        );
    }

    #[test]
    fn server_errors_timeouts_and_concurrent_idempotent_requests_are_transient() {
        for (status, name) in [
            (500, Some("application_error")),
            (500, Some("internal_server_error")),
            (502, None),
            (503, None),
            (504, None),
            (408, None),
            (409, Some("concurrent_idempotent_requests")),
        ] {
            let body = name.map(|n| resend_error(status, n)).unwrap_or_default();
            let err = classify(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                &body,
            );
            assert!(
                matches!(
                    err,
                    SendError::Transient {
                        retry_after: None,
                        ..
                    }
                ),
                "{status} {name:?}: {err:?}"
            );
        }
        let err = classify(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", "30")]),
            b"<html>",
        );
        assert!(
            matches!(err, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(30))
        );
    }

    #[test]
    fn client_errors_are_permanent() {
        for (status, name) in [
            (400, "validation_error"),
            (400, "invalid_idempotency_key"),
            (401, "missing_api_key"),
            (401, "restricted_api_key"),
            (403, "invalid_api_key"),
            (403, "validation_error"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (409, "invalid_idempotent_request"),
            (422, "missing_required_field"),
            (422, "invalid_from_address"),
            (422, "validation_error"),
            (451, "security_error"),
            (418, "something_new"),
        ] {
            let err = classify(
                StatusCode::from_u16(status).unwrap(),
                &headers(&[("retry-after", "5")]),
                &resend_error(status, name),
            );
            let SendError::Permanent { reason } = &err else {
                panic!("{status} {name}: {err:?}")
            };
            assert!(
                reason.starts_with(&format!("resend answered HTTP {status} {name}")),
                "{reason}"
            );
        }
        let err = classify(StatusCode::MOVED_PERMANENTLY, &HeaderMap::new(), b"");
        assert_eq!(err, SendError::permanent("resend answered HTTP 301"));
    }

    #[test]
    fn reasons_never_repeat_resends_message_nor_an_implausible_name() {
        let err = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            &resend_error(403, "validation_error"),
        );
        assert_eq!(
            err,
            SendError::permanent(
                "resend answered HTTP 403 validation_error: the request was refused as invalid"
            )
        );
        let body = serde_json::json!({"statusCode": 422, "name": "bad member@example.org",
                                      "message": "member@example.org"})
        .to_string();
        let err = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            body.as_bytes(),
        );
        assert_eq!(err, SendError::permanent("resend answered HTTP 422"));
        let err = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            &resend_error(422, "new_error_name"),
        );
        assert_eq!(
            err,
            SendError::permanent("resend answered HTTP 422 new_error_name")
        );
    }

    #[test]
    fn idempotency_keys_are_sent_as_given_or_hashed_when_resend_would_refuse_them() {
        assert_eq!(
            idempotency_key(Some("delivery/01J9Z3-7")).as_deref(),
            Some("delivery/01J9Z3-7")
        );
        assert_eq!(idempotency_key(None), None);
        assert_eq!(idempotency_key(Some("")), None);
        let long = "k".repeat(257);
        let hashed = idempotency_key(Some(&long)).unwrap();
        assert!(
            hashed.starts_with("sha256-") && hashed.len() == 7 + 64,
            "{hashed}"
        );
        assert_eq!(idempotency_key(Some(&long)).unwrap(), hashed);
        assert_ne!(idempotency_key(Some(&"k".repeat(258))).unwrap(), hashed);
        let exact = "k".repeat(256);
        assert_eq!(idempotency_key(Some(&exact)).unwrap(), exact);
        for odd in ["clé", "a\nb", " padded "] {
            let key = idempotency_key(Some(odd)).unwrap();
            assert!(key.starts_with("sha256-"), "{odd:?} -> {key}");
            assert!(HeaderValue::from_str(&key).is_ok());
        }
    }

    #[test]
    fn the_payload_carries_every_field_and_the_extra_headers() {
        let s = sender();
        let mut e = email(&[
            ("List-Unsubscribe", "<https://herald.example/u/1>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]);
        e.html = Some("<p>h</p>".into());
        let json = serde_json::to_value(s.payload(&e).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "from": "Herald <noreply@herald.example>",
                "to": ["member@example.org"],
                "subject": "s",
                "text": "t",
                "html": "<p>h</p>",
                "headers": {
                    "List-Unsubscribe": "<https://herald.example/u/1>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            })
        );
        let json = serde_json::to_value(s.payload(&email(&[])).unwrap()).unwrap();
        assert!(
            json.get("html").is_none() && json.get("headers").is_none(),
            "{json}"
        );
    }

    #[test]
    fn extra_headers_may_not_replace_resends_repeat_or_break_lines() {
        let s = sender();
        for headers in [
            vec![("Message-ID", "<x@y>")],
            vec![("bcc", "other@example.org")],
            vec![("Subject", "other")],
            vec![("Bad Name", "v")],
            vec![("Bad:Name", "v")],
            vec![("", "v")],
            vec![("Precedence", "bulk"), ("precedence", "list")],
            vec![("Feedback-Id", "x\r\nBcc: victim@example.org")],
        ] {
            let err = s.payload(&email(&headers)).expect_err("refused");
            assert!(matches!(err, SendError::Permanent { .. }), "{headers:?}");
            assert!(!err.to_string().contains("example.org"), "{err}");
        }
        assert!(s.payload(&email(&[("Precedence", "bulk")])).is_ok());
    }

    #[test]
    fn an_invalid_recipient_is_permanent_and_not_echoed() {
        let s = sender();
        let mut e = email(&[]);
        e.to = "not an address@@example.org".into();
        let err = s.payload(&e).expect_err("refused");
        assert_eq!(err, SendError::permanent("invalid recipient address"));
        e.to = "Member <member@example.org>".into();
        assert_eq!(
            serde_json::to_value(s.payload(&e).unwrap()).unwrap()["to"],
            serde_json::json!(["Member <member@example.org>"])
        );
    }

    #[test]
    fn from_settings_is_none_without_a_key_and_defaults_the_api_url() {
        assert!(
            ResendSender::from_settings(&settings(None, None))
                .unwrap()
                .is_none()
        );
        // A URL alone does not turn Resend on.
        assert!(
            ResendSender::from_settings(&settings(Some("http://127.0.0.1:9"), None))
                .unwrap()
                .is_none()
        );
        let s = ResendSender::from_settings(&settings(None, Some(KEY)))
            .unwrap()
            .unwrap();
        assert_eq!(s.emails_url.as_str(), "https://api.resend.com/emails");
        assert_eq!(s.from_address(), "Herald <noreply@herald.example>");
        let s =
            ResendSender::from_settings(&settings(Some("http://127.0.0.1:8025/v1/"), Some(KEY)))
                .unwrap()
                .unwrap();
        assert_eq!(s.emails_url.as_str(), "http://127.0.0.1:8025/v1/emails");
    }

    #[test]
    fn configuration_errors_name_the_problem_but_never_the_key() {
        let url = || Url::parse("https://api.resend.com").unwrap();
        let from = "noreply@herald.example";
        assert!(matches!(
            ResendSender::new(
                Url::parse("ftp://x").unwrap(),
                SecretString::from(KEY),
                from
            ),
            Err(ResendConfigError::BadUrl)
        ));
        assert!(matches!(
            ResendSender::new(
                Url::parse("mailto:a@b").unwrap(),
                SecretString::from(KEY),
                from
            ),
            Err(ResendConfigError::BadUrl)
        ));
        assert!(matches!(
            ResendSender::new(url(), SecretString::from(KEY), "not-an-address"),
            Err(ResendConfigError::InvalidFrom(f)) if f == "not-an-address"
        ));
        for bad in ["", "re_with space", "re_5ecret\nX-Injected: 1"] {
            let err = ResendSender::new(url(), SecretString::from(bad), from).unwrap_err();
            assert!(matches!(err, ResendConfigError::InvalidKey), "{err:?}");
            assert!(!err.to_string().contains("5ecret"), "{err}");
            assert!(!format!("{err:?}").contains("5ecret"), "{err:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let debug = format!("{:?}", sender());
        assert!(!debug.contains(KEY) && !debug.contains("5ecret"), "{debug}");
        assert!(debug.contains("api.resend.com"), "{debug}");
    }
}
