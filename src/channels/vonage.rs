//! SMS through Vonage's SMS API (`rest.nexmo.com`, or [`crate::sandbox::vonage`]): the
//! provider the dispatcher fails over to after the Twilio-shaped gateway ([`super::sms`]).
//!
//! Owns the request shape — `POST {api}/sms/json` with form fields `api_key`, `api_secret`,
//! `from`, `to` (the E.164 number without its `+`, as Vonage expects), `text`, `type=unicode`
//! when the text is not GSM-7, and `client-ref` — and the classification of Vonage's answers
//! into [`SendError`] kinds.
//! Must not touch: numbers' validity or consent (the vault checks E.164 and verification before
//! a number gets here), storage, retries and failover (the caller decides from the error kind).
//!
//! # Answers
//! Vonage answers HTTP 200 for nearly everything, including rejected messages, with one entry
//! per SMS part: `{"message-count":"1","messages":[{"to":"…","message-id":"…","status":"0",
//! "remaining-balance":"…","message-price":"…","network":"…"}]}`, or `{"status":"N",
//! "error-text":"…"}` for a part that was refused. A text longer than one SMS is split by
//! Vonage into several parts, each with its own `message-id` and `status`. A send succeeds only
//! if *every* part's status is `"0"`; `provider_id` is then the first part's `message-id` (the
//! other parts' ids are not kept). Otherwise the first refused part decides the kind.
//!
//! Per-message `status` (Vonage's "SMS API error codes" table, developer.vonage.com
//! `messaging/sms/guides/troubleshooting-sms`):
//!
//! | status | Vonage's meaning | kind |
//! |---|---|---|
//! | 1 | Throttled | Transient |
//! | 5 | Internal Error | Transient |
//! | 9 | Partner Quota Violation (out of credit) | Transient |
//! | 10 | Too Many Existing Binds | Transient |
//! | 7 | Number Barred | Gone |
//! | 33 | Number De-activated | Gone |
//! | 2, 3, 6, 12, 15, 22, 23, 29 | missing/invalid parameters, unroutable message, too long, sender not allowed, network code, callback URL, demo-account destination | Permanent |
//! | 4, 8, 11, 14, 32 | bad credentials, account suspended, account not enabled for HTTP, signature problems | Permanent |
//! | anything else | (undocumented) | Permanent |
//!
//! Quota (9) is transient on purpose: the message is fine and Vonage's own advice is "top up and
//! retry", so the dispatcher retries later (or fails over) instead of dropping the delivery.
//! Credentials and account problems (4, 8, 11) are permanent, as Twilio's 401 is: retrying
//! the same request cannot help until an operator acts. Transient per-message statuses carry
//! the answer's `Retry-After` when it has one (Vonage normally sends none).
//!
//! At the HTTP level (a gateway in front of the API, or the API's own rate limiter): 429 and
//! 5xx are transient with `Retry-After` honoured, any other non-2xx is permanent, timeouts and
//! refused connections are transient. A 2xx whose body cannot be read or holds no readable
//! status is transient: Vonage may or may not have taken the message, as after a timeout.
//!
//! # Invariants
//! - Error reasons never contain the recipient's number, the API key or the API secret.
//!   Vonage's `error-text` can quote a parameter's value and each entry echoes `to`, so
//!   neither is ever read: reasons are built from the HTTP status, the numeric `status`, the
//!   part's position and a fixed text per status. Transport errors are reduced to their kind.
//! - The credentials travel in the POST body, never in the URL; `Debug` prints neither.
//! - Redirects are not followed: an SMS API that redirects is misconfigured, and following a
//!   redirect would turn the POST into a GET.
//!
//! # Idempotency
//! Vonage's SMS API has no idempotency key. Its OpenAPI description (`sms` API, `NewMessage`)
//! has no such field or header; the `client-ref` field is only a tag ("your own reference")
//! that Vonage copies into the answer and into delivery receipts — two requests with the same
//! `client-ref` send two SMS. [`VonageSender::send`] sends the caller's idempotency key as
//! `client-ref` so a delivery can be matched with Vonage's receipts and dashboard, but a retry
//! after an ambiguous failure (a timeout, a connection cut after the request went out) can
//! still deliver the SMS twice. Keys longer than Vonage's documented `client-ref` limit
//! ([`MAX_CLIENT_REF`] characters) are sent as their SHA-256 in hex, which is stable across
//! retries and short enough.

use std::borrow::Cow;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::{SendError, Sent, retry_after, transport_error};
use crate::settings::ProviderSettings;

/// Vonage's production SMS API, used when `HERALD_VONAGE_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://rest.nexmo.com";

/// Whole-request timeout. Vonage answers an SMS POST in well under a second (the message is
/// only queued); 10 s leaves room for a slow network without holding a dispatcher lease long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `client-ref` Vonage accepts ("your own reference of up to 100 characters").
pub const MAX_CLIENT_REF: usize = 100;

/// Vonage status 7, "Number Barred": the number is on Vonage's block list (opted out or
/// blacklisted) and may not receive messages, so the contact is gone.
pub const VONAGE_NUMBER_BARRED: u32 = 7;

/// Vonage status 33, "Number De-activated": the number no longer exists at its carrier.
pub const VONAGE_NUMBER_DEACTIVATED: u32 = 33;

/// Why a Vonage sender could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum VonageConfigError {
    /// Some of API key, API secret and sender are set but not all: a half-configured provider
    /// is refused at startup rather than silently disabled.
    #[error(
        "Vonage is partly configured: {0} is missing (set all of API key, API secret and from, or none)"
    )]
    Incomplete(&'static str),
    #[error("Vonage API URL must be an http(s) URL")]
    BadUrl,
    #[error("could not build the HTTP client for Vonage")]
    Client(#[source] reqwest::Error),
}

/// Sends SMS through one Vonage account. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct VonageSender {
    client: reqwest::Client,
    /// `{api}/sms/json`, built once.
    sms_url: Url,
    api_key: String,
    api_secret: SecretString,
    from: String,
    timeout: Duration,
}

impl std::fmt::Debug for VonageSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key identifies the account and the secret is a credential: neither is printed.
        f.debug_struct("VonageSender")
            .field("api", &self.sms_url.origin().ascii_serialization())
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl VonageSender {
    /// The sender the settings describe: `None` when Vonage is not configured at all (none of
    /// API key, API secret and sender set), an error when it is only partly configured.
    pub fn from_settings(settings: &ProviderSettings) -> Result<Option<Self>, VonageConfigError> {
        let vonage = &settings.vonage;
        let (key, secret, from) = match (&vonage.api_key, &vonage.api_secret, &vonage.from) {
            (None, None, None) => return Ok(None),
            (Some(key), Some(secret), Some(from)) => (key, secret, from),
            (None, _, _) => return Err(VonageConfigError::Incomplete("API key")),
            (_, None, _) => return Err(VonageConfigError::Incomplete("API secret")),
            (_, _, None) => return Err(VonageConfigError::Incomplete("from")),
        };
        let api_url = match &vonage.api_url {
            Some(url) => url.clone(),
            None => Url::parse(DEFAULT_API_URL).map_err(|_| VonageConfigError::BadUrl)?,
        };
        Self::new(api_url, key.clone(), secret.clone(), from.clone()).map(Some)
    }

    /// `from` is a sender number or an alphanumeric sender ID; a number given as `+<digits>`
    /// is sent without its `+`, the international format Vonage documents.
    pub fn new(
        api_url: Url,
        api_key: impl Into<String>,
        api_secret: SecretString,
        from: impl Into<String>,
    ) -> Result<Self, VonageConfigError> {
        if !matches!(api_url.scheme(), "http" | "https") || api_url.cannot_be_a_base() {
            return Err(VonageConfigError::BadUrl);
        }
        let mut sms_url = api_url;
        sms_url
            .path_segments_mut()
            .map_err(|_| VonageConfigError::BadUrl)?
            .pop_if_empty()
            .extend(["sms", "json"]);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(VonageConfigError::Client)?;
        let from = from.into();
        let from = match from.strip_prefix('+') {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.to_string()
            }
            _ => from,
        };
        Ok(Self {
            client,
            sms_url,
            api_key: api_key.into(),
            api_secret,
            from,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replace the whole-request timeout (tests use a short one against a hanging server).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send `body` to `to_e164`. On success `provider_id` is Vonage's `message-id` — the first
    /// part's when Vonage split the text into several SMS.
    ///
    /// `idempotency_key` is sent as `client-ref`, which only tags the message in Vonage's
    /// answers and receipts: the SMS API does not deduplicate (see the module documentation),
    /// so a retried timeout may duplicate the SMS.
    pub async fn send(
        &self,
        to_e164: &str,
        body: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Sent, SendError> {
        let to = to_e164.strip_prefix('+').unwrap_or(to_e164);
        let client_ref = idempotency_key.map(client_ref);
        let mut form: Vec<(&str, &str)> = vec![
            ("api_key", &self.api_key),
            ("api_secret", self.api_secret.expose_secret()),
            ("from", &self.from),
            ("to", to),
            ("text", body),
        ];
        if !is_gsm7(body) {
            form.push(("type", "unicode"));
        }
        if let Some(client_ref) = &client_ref {
            form.push(("client-ref", client_ref));
        }
        let response = self
            .client
            .post(self.sms_url.clone())
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error("vonage", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            return Err(classify_http(status, &headers));
        }
        match response.bytes().await {
            Ok(bytes) => classify_answer(&bytes, &headers),
            Err(_) => Err(SendError::transient(format!(
                "vonage answered HTTP {} but the body could not be read",
                status.as_u16()
            ))),
        }
    }
}

/// The `client-ref` sent for an idempotency key: the key itself, or its SHA-256 in hex when
/// it is longer than Vonage accepts.
fn client_ref(key: &str) -> Cow<'_, str> {
    if key.chars().count() <= MAX_CLIENT_REF {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{:x}", Sha256::digest(key.as_bytes())))
    }
}

/// Vonage's answer to `POST /sms/json`. `error-text` and `to` are deliberately not read (they
/// can contain the number).
#[derive(Deserialize)]
struct SmsAnswer {
    #[serde(default)]
    messages: Vec<Part>,
}

/// One SMS part's outcome. Vonage sends `status` as a string; a number is accepted too.
#[derive(Deserialize)]
struct Part {
    status: Option<Value>,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
}

impl Part {
    fn status(&self) -> Option<u32> {
        match self.status.as_ref()? {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        }
    }
}

/// Classify a 2xx answer: sent if every part's status is 0, otherwise the first refused part
/// decides.
fn classify_answer(body: &[u8], headers: &HeaderMap) -> Result<Sent, SendError> {
    let unreadable = || SendError::transient("vonage answered without a readable message status");
    let answer: SmsAnswer = serde_json::from_slice(body).map_err(|_| unreadable())?;
    let Some(first) = answer.messages.first() else {
        return Err(unreadable());
    };
    let parts = answer.messages.len();
    for (index, part) in answer.messages.iter().enumerate() {
        match part.status() {
            Some(0) => {}
            Some(code) => return Err(classify_status(code, index + 1, parts, headers)),
            None => return Err(unreadable()),
        }
    }
    Ok(Sent {
        provider_id: first.message_id.clone(),
    })
}

/// What should happen after a refused part, by Vonage's per-message status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transient,
    Permanent,
    Gone,
}

fn kind(code: u32) -> Kind {
    match code {
        1 | 5 | 9 | 10 => Kind::Transient,
        VONAGE_NUMBER_BARRED | VONAGE_NUMBER_DEACTIVATED => Kind::Gone,
        _ => Kind::Permanent,
    }
}

/// The error for part `part` of `parts` refused with status `code`.
fn classify_status(code: u32, part: usize, parts: usize, headers: &HeaderMap) -> SendError {
    let reason = if parts == 1 {
        format!(
            "vonage refused the message, status {code}: {}",
            describe(code)
        )
    } else {
        format!(
            "vonage refused part {part} of {parts}, status {code}: {}",
            describe(code)
        )
    };
    match kind(code) {
        Kind::Transient => SendError::Transient {
            reason,
            retry_after: retry_after(headers),
        },
        Kind::Gone => SendError::Gone { reason },
        Kind::Permanent => SendError::Permanent { reason },
    }
}

/// Classify a non-2xx answer (the SMS API itself answers 200; these come from its rate limiter
/// or from whatever is in front of it).
fn classify_http(status: StatusCode, headers: &HeaderMap) -> SendError {
    let reason = format!("vonage answered HTTP {}", status.as_u16());
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return SendError::Transient {
            reason,
            retry_after: retry_after(headers),
        };
    }
    // 4xx and anything unexpected (3xx with redirects off, 1xx): sending the same request again
    // will not help.
    SendError::Permanent { reason }
}

/// A fixed description for each documented status. Never the `error-text` Vonage sent.
fn describe(code: u32) -> &'static str {
    match code {
        1 => "throttled (sending faster than the account's limit)",
        2 => "missing parameters",
        3 => "invalid parameters",
        4 => "invalid credentials (check API key and secret)",
        5 => "vonage internal error",
        6 => "invalid message (for example an unrecognised number prefix)",
        7 => "number barred",
        8 => "account barred (suspended)",
        9 => "quota exceeded (not enough credit)",
        10 => "too many existing binds",
        11 => "account not enabled for the HTTP SMS API",
        12 => "message too long",
        14 => "invalid signature",
        15 => "sender address not allowed",
        22 => "invalid network code",
        23 => "invalid callback URL",
        29 => "destination not whitelisted (demo account)",
        32 => "signature and API secret both given",
        33 => "number de-activated",
        _ => "see vonage's SMS API error codes",
    }
}

/// The GSM 03.38 default alphabet (3GPP TS 23.038 §6.2.1) in table order, without 0x1B (the
/// escape to the extension table, not a character of its own).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table (each costs two septets): form feed, `^ { } \ [ ~ ] |` and €.
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Whether `text` can be sent as Vonage's `type=text`: every character is in the GSM standard
/// or extended character set. Anything else (emoji, CJK, most accented letters outside the
/// table, a backtick) needs `type=unicode`, or it arrives mangled.
pub fn is_gsm7(text: &str) -> bool {
    text.chars()
        .all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENSION.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::VonageSettings;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn settings(key: Option<&str>, secret: Option<&str>, from: Option<&str>) -> ProviderSettings {
        ProviderSettings {
            vonage: VonageSettings {
                api_url: None,
                api_key: key.map(str::to_string),
                api_secret: secret.map(|s| SecretString::from(s.to_string())),
                from: from.map(str::to_string),
            },
            ..Default::default()
        }
    }

    fn refused(status: &str) -> Vec<u8> {
        json!({"message-count": "1", "messages": [{
            "to": "447700900000",
            "status": status,
            "error-text": "Invalid to param 447700900000",
        }]})
        .to_string()
        .into_bytes()
    }

    fn accepted(ids: &[&str]) -> Vec<u8> {
        let parts: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"to": "447700900000", "message-id": id, "status": "0",
                       "remaining-balance": "15.53590000", "message-price": "0.03330000",
                       "network": "23410"})
            })
            .collect();
        json!({"message-count": ids.len().to_string(), "messages": parts})
            .to_string()
            .into_bytes()
    }

    fn classify(body: &[u8]) -> Result<Sent, SendError> {
        classify_answer(body, &HeaderMap::new())
    }

    #[test]
    fn every_documented_status_has_its_kind() {
        let expected = [
            (1, Kind::Transient),
            (2, Kind::Permanent),
            (3, Kind::Permanent),
            (4, Kind::Permanent),
            (5, Kind::Transient),
            (6, Kind::Permanent),
            (7, Kind::Gone),
            (8, Kind::Permanent),
            (9, Kind::Transient),
            (10, Kind::Transient),
            (11, Kind::Permanent),
            (12, Kind::Permanent),
            (14, Kind::Permanent),
            (15, Kind::Permanent),
            (22, Kind::Permanent),
            (23, Kind::Permanent),
            (29, Kind::Permanent),
            (32, Kind::Permanent),
            (33, Kind::Gone),
            (99, Kind::Permanent),
        ];
        for (code, want) in expected {
            assert_eq!(kind(code), want, "status {code}");
            let err = classify(&refused(&code.to_string())).unwrap_err();
            let got = match err {
                SendError::Transient { .. } => Kind::Transient,
                SendError::Permanent { .. } => Kind::Permanent,
                SendError::Gone { .. } => Kind::Gone,
                SendError::Unavailable(_) => panic!("{err:?}"),
            };
            assert_eq!(got, want, "status {code}: {err:?}");
            let text = format!("{err} {err:?}");
            assert!(text.contains(&format!("status {code}")), "{text}");
            assert!(!text.contains("447700900000"), "{text}");
            assert!(!text.contains("Invalid to param"), "{text}");
        }
    }

    #[test]
    fn a_barred_number_is_gone_with_a_fixed_reason() {
        assert_eq!(
            classify(&refused("7")),
            Err(SendError::Gone {
                reason: "vonage refused the message, status 7: number barred".into()
            })
        );
    }

    #[test]
    fn throttling_in_a_200_honours_retry_after_when_given() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        let err = classify_answer(&refused("1"), &headers).unwrap_err();
        assert!(
            matches!(&err, SendError::Transient { retry_after: Some(d), .. } if *d == Duration::from_secs(3)),
            "{err:?}"
        );
        let err = classify(&refused("1")).unwrap_err();
        assert!(
            matches!(
                err,
                SendError::Transient {
                    retry_after: None,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn accepted_is_the_first_parts_id_and_numeric_statuses_are_read() {
        assert_eq!(
            classify(&accepted(&["0C000000217B7F02", "0C000000217B7F03"])),
            Ok(Sent {
                provider_id: Some("0C000000217B7F02".into())
            })
        );
        let numeric = json!({"message-count": "1",
                             "messages": [{"message-id": "ABC", "status": 0}]});
        assert_eq!(
            classify(numeric.to_string().as_bytes()),
            Ok(Sent {
                provider_id: Some("ABC".into())
            })
        );
    }

    #[test]
    fn one_refused_part_fails_the_whole_message() {
        let body = json!({"message-count": "3", "messages": [
            {"to": "447700900000", "message-id": "A1", "status": "0"},
            {"to": "447700900000", "message-id": "A2", "status": "0"},
            {"to": "447700900000", "status": "1", "error-text": "Throttled"},
        ]});
        let err = classify(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            err,
            SendError::Transient {
                reason: "vonage refused part 3 of 3, status 1: throttled (sending faster than \
                         the account's limit)"
                    .into(),
                retry_after: None,
            }
        );
    }

    #[test]
    fn unreadable_answers_are_transient() {
        for body in [
            &b"<html>gateway</html>"[..],
            br#"{"message-count":"0","messages":[]}"#,
            br#"{"message-count":"1","messages":[{"message-id":"A"}]}"#,
            br#"{"message-count":"1","messages":[{"status":"ok"}]}"#,
        ] {
            let err = classify(body).unwrap_err();
            assert_eq!(
                err,
                SendError::transient("vonage answered without a readable message status"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn http_rate_limits_and_server_errors_are_transient_others_permanent() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("9"));
        assert_eq!(
            classify_http(StatusCode::TOO_MANY_REQUESTS, &headers),
            SendError::Transient {
                reason: "vonage answered HTTP 429".into(),
                retry_after: Some(Duration::from_secs(9)),
            }
        );
        assert!(classify_http(StatusCode::BAD_GATEWAY, &HeaderMap::new()).is_transient());
        assert_eq!(
            classify_http(StatusCode::UNAUTHORIZED, &HeaderMap::new()),
            SendError::permanent("vonage answered HTTP 401")
        );
        assert!(matches!(
            classify_http(StatusCode::MOVED_PERMANENTLY, &HeaderMap::new()),
            SendError::Permanent { .. }
        ));
    }

    #[test]
    fn gsm7_covers_the_default_alphabet_and_its_extension() {
        // 128 table positions, less the escape.
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
        assert!(is_gsm7("Your code is 123456. Reply STOP to opt out."));
        assert!(is_gsm7(
            "Café à 5€ [ok] {x} ~ ^ | \\ @£$¥ ÆØÅ ÄÖÑÜ ¿¡ §\r\n"
        ));
        assert!(is_gsm7("ΔΦΓΛΩΠΨΣΘΞ"));
        assert!(is_gsm7(""));
    }

    #[test]
    fn text_outside_gsm7_needs_unicode() {
        for text in [
            "こんにちは世界",
            "party 🎉",
            "façade", // ç is not in the table (only Ç is)
            "`code`",
            "naïve",
            "Zürich – Genève", // en dash
            "\u{1b}",
        ] {
            assert!(!is_gsm7(text), "{text:?}");
        }
    }

    #[test]
    fn long_idempotency_keys_become_a_stable_hash() {
        assert_eq!(client_ref("delivery-1"), "delivery-1");
        let exact = "k".repeat(MAX_CLIENT_REF);
        assert_eq!(client_ref(&exact), exact.as_str());
        let long = "k".repeat(MAX_CLIENT_REF + 1);
        let hashed = client_ref(&long);
        assert_eq!(hashed.len(), 64);
        assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(hashed, client_ref(&long));
        assert_ne!(hashed, client_ref(&"k".repeat(MAX_CLIENT_REF + 2)));
    }

    #[test]
    fn vonage_is_unconfigured_without_any_credentials() {
        assert!(
            VonageSender::from_settings(&settings(None, None, None))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn vonage_partly_configured_is_an_error_naming_what_is_missing() {
        let cases = [
            (settings(None, Some("s3cret"), Some("Herald")), "API key"),
            (
                settings(Some("abcd1234"), None, Some("Herald")),
                "API secret",
            ),
            (settings(Some("abcd1234"), Some("s3cret"), None), "from"),
        ];
        for (settings, missing) in cases {
            let err = VonageSender::from_settings(&settings).unwrap_err();
            assert!(
                matches!(err, VonageConfigError::Incomplete(m) if m == missing),
                "{err:?}"
            );
        }
    }

    #[test]
    fn sms_url_is_built_under_the_api_root_and_debug_hides_credentials() {
        let sender = VonageSender::from_settings(&settings(
            Some("abcd1234"),
            Some("s3cretvalue"),
            Some("+15005550006"),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(sender.sms_url.as_str(), "https://rest.nexmo.com/sms/json");
        assert_eq!(sender.from, "15005550006");
        let debug = format!("{sender:?}");
        assert!(
            !debug.contains("abcd1234") && !debug.contains("s3cretvalue"),
            "{debug}"
        );

        let under_path = VonageSender::new(
            Url::parse("http://127.0.0.1:9/vonage/").unwrap(),
            "k",
            SecretString::from("s".to_string()),
            "Herald",
        )
        .unwrap();
        assert_eq!(
            under_path.sms_url.as_str(),
            "http://127.0.0.1:9/vonage/sms/json"
        );
        assert_eq!(under_path.from, "Herald");
    }

    #[test]
    fn non_http_api_urls_are_refused() {
        let err = VonageSender::new(
            Url::parse("ftp://rest.nexmo.com").unwrap(),
            "k",
            SecretString::from("s".to_string()),
            "Herald",
        )
        .unwrap_err();
        assert!(matches!(err, VonageConfigError::BadUrl), "{err:?}");
    }
}
