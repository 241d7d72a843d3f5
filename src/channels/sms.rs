//! SMS through a gateway speaking Twilio's Messages API (`api.twilio.com` or anything
//! compatible, such as [`crate::sandbox::twilio`]).
//!
//! Owns the request shape — `POST {api}/2010-04-01/Accounts/{Sid}/Messages.json`, form fields
//! `To`, `From`, `Body`, HTTP basic auth `Sid:AuthToken` — and the classification of Twilio's
//! answers into [`SendError`] kinds.
//! Must not touch: numbers' validity or consent (the vault checks E.164 and verification before
//! a number gets here), storage, retries (the caller decides from the error kind).
//!
//! # Invariants
//! - Error reasons never contain the recipient's number, the account SID or the auth token.
//!   Twilio's `message` field often echoes the number ("The 'To' number +1… is not a valid phone
//!   number"), so it is never read: reasons are built from the HTTP status, Twilio's numeric
//!   `code` and a fixed text per code. Transport errors are reduced to their kind (the request
//!   URL, which contains the SID, is dropped).
//! - Redirects are not followed: a Messages API that redirects is misconfigured, and following
//!   a redirect would turn the POST into a GET.
//!
//! # Idempotency
//! Twilio's Messages API has no idempotency key. Its OpenAPI description (`twilio-oai`,
//! `twilio_api_v2010.json`) lists no header and no `IdempotencyKey` field for creating a
//! Message (only Payments and UserDefinedMessages have one); `I-Twilio-Idempotency-Token` is a
//! header Twilio puts on the webhooks *it* sends, not one its REST API honours. So nothing is
//! sent, and a retry after an ambiguous failure (a timeout, a connection cut after the request
//! went out) can deliver the SMS twice. [`SmsSender::send`] still takes the key so that every
//! adapter has the same shape for the dispatcher.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{SendError, Sent, retry_after, transport_error};
use crate::settings::ProviderSettings;

/// Twilio's production API, used when `HERALD_SMS_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.twilio.com";

/// Whole-request timeout. Twilio answers a Messages POST in well under a second (the message is
/// only queued); 10 s leaves room for a slow network without holding a dispatcher lease long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Twilio error 21610: "Attempt to send to unsubscribed recipient" — the number replied STOP.
/// Twilio refuses every message to it until the number replies START, so the contact is gone.
pub const TWILIO_UNSUBSCRIBED: u32 = 21610;

/// Why an SMS sender could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum SmsConfigError {
    /// Some of account SID, auth token and sender are set but not all: a half-configured
    /// channel is refused at startup rather than silently disabled.
    #[error(
        "SMS is partly configured: {0} is missing (set all of account SID, auth token and from, or none)"
    )]
    Incomplete(&'static str),
    #[error("SMS API URL must be an http(s) URL")]
    BadUrl,
    #[error("could not build the HTTP client for SMS")]
    Client(#[source] reqwest::Error),
}

/// Sends SMS through one Twilio account. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct SmsSender {
    client: reqwest::Client,
    /// `{api}/2010-04-01/Accounts/{Sid}/Messages.json`, built once.
    messages_url: Url,
    account_sid: String,
    auth_token: SecretString,
    from: String,
    timeout: Duration,
}

impl std::fmt::Debug for SmsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SID is an account identifier and the token a credential: neither is printed.
        f.debug_struct("SmsSender")
            .field("api", &self.messages_url.origin().ascii_serialization())
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmsSender {
    /// The sender the settings describe: `None` when SMS is not configured at all (none of
    /// account SID, auth token and sender set), an error when it is only partly configured.
    pub fn from_settings(settings: &ProviderSettings) -> Result<Option<Self>, SmsConfigError> {
        let sms = &settings.sms;
        let (sid, token, from) = match (&sms.account_sid, &sms.auth_token, &sms.from) {
            (None, None, None) => return Ok(None),
            (Some(sid), Some(token), Some(from)) => (sid, token, from),
            (None, _, _) => return Err(SmsConfigError::Incomplete("account SID")),
            (_, None, _) => return Err(SmsConfigError::Incomplete("auth token")),
            (_, _, None) => return Err(SmsConfigError::Incomplete("from")),
        };
        let api_url = match &sms.api_url {
            Some(url) => url.clone(),
            None => Url::parse(DEFAULT_API_URL).map_err(|_| SmsConfigError::BadUrl)?,
        };
        Self::new(api_url, sid.clone(), token.clone(), from.clone()).map(Some)
    }

    pub fn new(
        api_url: Url,
        account_sid: impl Into<String>,
        auth_token: SecretString,
        from: impl Into<String>,
    ) -> Result<Self, SmsConfigError> {
        let account_sid = account_sid.into();
        if !matches!(api_url.scheme(), "http" | "https") || api_url.cannot_be_a_base() {
            return Err(SmsConfigError::BadUrl);
        }
        let mut messages_url = api_url;
        messages_url
            .path_segments_mut()
            .map_err(|_| SmsConfigError::BadUrl)?
            .pop_if_empty()
            .extend(["2010-04-01", "Accounts", &account_sid, "Messages.json"]);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SmsConfigError::Client)?;
        Ok(Self {
            client,
            messages_url,
            account_sid,
            auth_token,
            from: from.into(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replace the whole-request timeout (tests use a short one against a hanging server).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send `body` to `to_e164`. On success `provider_id` is the Message SID (`SM…`).
    ///
    /// `idempotency_key` is accepted for symmetry with the other adapters and not sent: the
    /// Messages API has none (see the module documentation), so a retried timeout may
    /// duplicate the SMS.
    pub async fn send(
        &self,
        to_e164: &str,
        body: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Sent, SendError> {
        let _ = idempotency_key;
        let response = self
            .client
            .post(self.messages_url.clone())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&[("To", to_e164), ("From", &self.from), ("Body", body)])
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error("twilio", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            // Twilio has accepted (queued) the message once the status says so: a body that
            // fails to arrive or parse costs only the SID, and reporting a failure here would
            // make the caller send the SMS a second time.
            let sid = match response.bytes().await {
                Ok(bytes) => serde_json::from_slice::<MessageResource>(&bytes)
                    .ok()
                    .and_then(|m| m.sid),
                Err(_) => None,
            };
            return Ok(Sent { provider_id: sid });
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(classify(status, &headers, &body))
    }
}

/// The part of Twilio's Message resource we use.
#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
}

/// Twilio's error body: `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
/// `message` is deliberately not read (it can contain the number).
#[derive(Deserialize)]
struct TwilioError {
    code: Option<u32>,
}

/// Classify a non-2xx answer from the Messages API.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let code = serde_json::from_slice::<TwilioError>(body)
        .ok()
        .and_then(|e| e.code);
    let reason = match code {
        Some(code) => format!(
            "twilio answered HTTP {}, error {code}: {}",
            status.as_u16(),
            describe(code)
        ),
        None => format!("twilio answered HTTP {}", status.as_u16()),
    };
    if code == Some(TWILIO_UNSUBSCRIBED) {
        return SendError::Gone { reason };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || code == Some(20429) || status.is_server_error() {
        return SendError::Transient {
            reason,
            retry_after: retry_after(headers),
        };
    }
    // 4xx (bad number, bad credentials, unknown account…) and anything unexpected (3xx with
    // redirects off, 1xx): sending the same request again will not help.
    SendError::Permanent { reason }
}

/// A fixed description for the Twilio error codes a Messages POST commonly gets. Never the
/// text Twilio sent (it can contain the number).
fn describe(code: u32) -> &'static str {
    match code {
        20003 => "authentication failed (check account SID and auth token)",
        20404 => "resource not found (check the account SID)",
        20429 => "too many requests",
        20500 | 20503 => "twilio internal error",
        21211 => "invalid 'To' phone number",
        21212 => "invalid 'From' phone number",
        21408 => "sending to this region is not enabled",
        21602 => "message body is required",
        21603 => "'From' is required",
        21604 => "'To' is required",
        21606 => "'From' number cannot send SMS",
        21608 => "trial account cannot send to unverified numbers",
        21610 => "recipient unsubscribed (replied STOP)",
        21612 => "'To' number cannot be reached from this 'From'",
        21614 => "'To' number is not a mobile number",
        21617 => "message body exceeds 1600 characters",
        30007 => "message filtered by the carrier",
        _ => "see twilio's error reference",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{SmsSettings, TelegramSettings, VapidSettings};
    use reqwest::header::HeaderValue;

    fn twilio_error(code: u32, status: u16) -> Vec<u8> {
        serde_json::json!({
            "code": code,
            "message": "The 'To' number +15005550001 is not a valid phone number.",
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })
        .to_string()
        .into_bytes()
    }

    fn settings(sid: Option<&str>, token: Option<&str>, from: Option<&str>) -> ProviderSettings {
        ProviderSettings {
            smtp_url: None,
            email_from: "Herald <herald@localhost>".into(),
            sms: SmsSettings {
                api_url: None,
                account_sid: sid.map(str::to_string),
                auth_token: token.map(|t| SecretString::from(t.to_string())),
                from: from.map(str::to_string),
            },
            telegram: TelegramSettings::default(),
            vapid: VapidSettings::default(),
            ..Default::default()
        }
    }

    #[test]
    fn unsubscribed_recipient_is_gone() {
        let err = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            &twilio_error(21610, 400),
        );
        assert!(matches!(err, SendError::Gone { .. }), "{err:?}");
    }

    #[test]
    fn invalid_number_is_permanent_and_the_reason_does_not_echo_it() {
        let err = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            &twilio_error(21211, 400),
        );
        let SendError::Permanent { reason } = &err else {
            panic!("{err:?}")
        };
        assert!(reason.contains("21211"), "{reason}");
        assert!(!reason.contains("+1500"), "{reason}");
    }

    #[test]
    fn rate_limits_are_transient_with_retry_after_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            &twilio_error(20429, 429),
        );
        assert_eq!(
            err,
            SendError::Transient {
                reason: "twilio answered HTTP 429, error 20429: too many requests".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
    }

    #[test]
    fn retry_after_accepts_an_http_date() {
        let mut headers = HeaderMap::new();
        let at = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert("retry-after", HeaderValue::from_str(&at).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
    }

    #[test]
    fn server_errors_are_transient_even_without_a_twilio_body() {
        let err = classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>");
        assert!(err.is_transient(), "{err:?}");
    }

    #[test]
    fn bad_credentials_are_permanent() {
        let err = classify(
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            &twilio_error(20003, 401),
        );
        assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    }

    #[test]
    fn sms_is_unconfigured_without_any_credentials() {
        assert!(
            SmsSender::from_settings(&settings(None, None, None))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sms_partly_configured_is_an_error() {
        let err = SmsSender::from_settings(&settings(Some("AC1"), None, Some("+15005550006")))
            .unwrap_err();
        assert!(matches!(err, SmsConfigError::Incomplete("auth token")));
    }

    #[test]
    fn messages_url_is_built_under_the_api_root_and_debug_hides_credentials() {
        let sender = SmsSender::from_settings(&settings(
            Some("ACsecretsid"),
            Some("tok3n"),
            Some("+15005550006"),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            sender.messages_url.as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/ACsecretsid/Messages.json"
        );
        let debug = format!("{sender:?}");
        assert!(
            !debug.contains("ACsecretsid") && !debug.contains("tok3n"),
            "{debug}"
        );
    }
}
