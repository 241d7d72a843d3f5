//! Web Push: one encrypted message to one browser push subscription, through whatever push
//! service the browser chose (FCM, Mozilla autopush, Apple, or [`crate::sandbox::push`]).
//!
//! Owns the three standards involved: the push request itself (RFC 8030: `POST` to the
//! subscription's endpoint with `TTL` and `Urgency`), payload encryption (RFC 8291,
//! `Content-Encoding: aes128gcm`, done by `web-push-native`), and application-server
//! identification (RFC 8292 VAPID: an ES256 JWT signed here with `p256`), plus the
//! classification of push-service answers into [`SendError`] kinds.
//! Must not touch: subscription validation and storage (the vault), what the payload says (the
//! dispatcher renders it), retries.
//!
//! # Invariants
//! - A push goes only to public addresses unless the operator allows private ones
//!   (`HERALD_PUSH_ALLOW_PRIVATE`): an IP-literal host that is not public is refused before
//!   anything is sent, and host names resolve through [`super::guard`], which drops
//!   non-public answers at connect time (DNS rebinding included).
//! - The VAPID private key is held only as a `p256` signing key; `Debug` shows the public key.
//! - The JWT's `aud` is the origin of the endpoint (scheme, host, port — never its path), `exp`
//!   is [`VAPID_VALIDITY`] ahead (RFC 8292 allows at most 24 h), `sub` is the configured
//!   contact.
//! - Error reasons never contain the endpoint (its path is the subscription's capability) or
//!   the subscription keys: they carry the HTTP status and, for autopush-style JSON errors,
//!   the numeric `errno`. Transport errors are reduced to their kind with the URL dropped.
//! - Plaintext is limited to [`MAX_PAYLOAD`] bytes so the encrypted body stays within the
//!   4096 bytes every push service must accept (RFC 8030 §7.2).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::json;
use url::Url;

use super::guard;
use super::{SendError, Sent, retry_after, transport_error};
use crate::model::PushSubscription;
use crate::settings::ProviderSettings;

/// Whole-request timeout. Push services answer at once (delivery to the browser is
/// asynchronous); 10 s leaves room for a slow network.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How far ahead the VAPID JWT expires. RFC 8292 §2 caps it at 24 h; 12 h is what the common
/// libraries use and leaves a margin for a push service whose clock runs ahead of ours.
pub const VAPID_VALIDITY: Duration = Duration::from_secs(12 * 60 * 60);

/// Largest plaintext sent: 4096 (the body size push services must accept) − 86 (aes128gcm
/// header: 16 salt, 4 record size, 1 key-id length, 65 key id) − 16 (AEAD tag) − 1 (padding
/// delimiter).
pub const MAX_PAYLOAD: usize = 4096 - 86 - 16 - 1;

/// Longest `TTL` asked for: 28 days, the most FCM keeps a message; longer is clamped by
/// services anyway.
pub const MAX_TTL: Duration = Duration::from_secs(28 * 24 * 60 * 60);

/// RFC 8030 §5.3 `Urgency`: lets the browser's platform decide whether to wake the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// Why a web push sender could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum WebPushConfigError {
    /// Key without subject or subject without key: refused at startup, never silently off.
    #[error(
        "web push is partly configured: {0} is missing (set both VAPID private key and subject, or neither)"
    )]
    Incomplete(&'static str),
    /// Deliberately without the key: this error is logged.
    #[error("VAPID private key must be the base64url of a 32-byte P-256 scalar")]
    BadKey,
    #[error("VAPID subject must be a mailto: or https: URL")]
    BadSubject,
    #[error("could not build the HTTP client for web push")]
    Client(#[source] reqwest::Error),
}

/// The reason given when an endpoint's address is refused.
const REFUSED_REASON: &str = "push endpoint refused: its address is not public";

/// The HTTP client for push services: no redirects, and unless `allow_private`, DNS answers
/// confined to public addresses.
fn client(allow_private: bool) -> Result<reqwest::Client, WebPushConfigError> {
    let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    let builder = if allow_private {
        builder
    } else {
        guard::confine(builder)
    };
    builder.build().map_err(WebPushConfigError::Client)
}

/// Sends web push messages as one application server (one VAPID key). Cheap to clone.
#[derive(Clone)]
pub struct WebPushSender {
    client: reqwest::Client,
    /// Whether endpoints may be loopback or private addresses (tests, single-host setups).
    allow_private: bool,
    key: SigningKey,
    /// The uncompressed public key, base64url: the browsers' `applicationServerKey` and the
    /// `k=` of every request.
    public_key: String,
    subject: String,
    timeout: Duration,
}

impl std::fmt::Debug for WebPushSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushSender")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .field("timeout", &self.timeout)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl WebPushSender {
    /// The sender the settings describe: `None` when neither VAPID key nor subject is set.
    pub fn from_settings(settings: &ProviderSettings) -> Result<Option<Self>, WebPushConfigError> {
        use secrecy::ExposeSecret;
        let vapid = &settings.vapid;
        match (&vapid.private_key, &vapid.subject) {
            (None, None) => Ok(None),
            (Some(key), Some(subject)) => Self::new(key.expose_secret(), subject)
                .and_then(|sender| sender.allowing_private(settings.push_allow_private))
                .map(Some),
            (None, Some(_)) => Err(WebPushConfigError::Incomplete("VAPID private key")),
            (Some(_), None) => Err(WebPushConfigError::Incomplete("VAPID subject")),
        }
    }

    /// A sender that refuses endpoints on loopback, private or otherwise non-public
    /// addresses, whether written as IP addresses or reached through DNS (see
    /// [`Self::allowing_private`]).
    pub fn new(private_key_b64url: &str, subject: &str) -> Result<Self, WebPushConfigError> {
        let bytes = decode_b64url(private_key_b64url).ok_or(WebPushConfigError::BadKey)?;
        if bytes.len() != 32 {
            return Err(WebPushConfigError::BadKey);
        }
        let key = SigningKey::from_slice(&bytes).map_err(|_| WebPushConfigError::BadKey)?;
        let subject = subject.trim();
        if !is_subject(subject) {
            return Err(WebPushConfigError::BadSubject);
        }
        let public_key =
            URL_SAFE_NO_PAD.encode(key.verifying_key().to_encoded_point(false).as_bytes());
        Ok(Self {
            client: client(false)?,
            allow_private: false,
            key,
            public_key,
            subject: subject.to_string(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Let endpoints be loopback or private addresses (`HERALD_PUSH_ALLOW_PRIVATE`): for tests
    /// and single-host setups with a push service next to Herald. Real push services are on
    /// the public internet, and a member's subscription must not become a way into the
    /// operator's network.
    pub fn allowing_private(self, allow: bool) -> Result<Self, WebPushConfigError> {
        Ok(Self {
            client: client(allow)?,
            allow_private: allow,
            ..self
        })
    }

    /// Replace the whole-request timeout (tests use a short one against a hanging server).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `applicationServerKey` browsers subscribe with: the uncompressed P-256 public key,
    /// base64url without padding.
    pub fn public_key_b64url(&self) -> String {
        self.public_key.clone()
    }

    /// Encrypt `payload` for `sub` and post it to its push service, without an `Urgency`
    /// header (services then assume `normal`). On success `provider_id` is the message's
    /// `Location` on the push service.
    ///
    /// `ttl` is how long the push service may hold the message for an offline browser (0:
    /// deliver now or drop), clamped to [`MAX_TTL`].
    pub async fn send(
        &self,
        sub: &PushSubscription,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<Sent, SendError> {
        self.post(sub, payload, ttl, None).await
    }

    /// [`send`](Self::send) with an explicit `Urgency` (RFC 8030 §5.3).
    pub async fn send_with_urgency(
        &self,
        sub: &PushSubscription,
        payload: &[u8],
        ttl: Duration,
        urgency: Urgency,
    ) -> Result<Sent, SendError> {
        self.post(sub, payload, ttl, Some(urgency)).await
    }

    async fn post(
        &self,
        sub: &PushSubscription,
        payload: &[u8],
        ttl: Duration,
        urgency: Option<Urgency>,
    ) -> Result<Sent, SendError> {
        let endpoint = Url::parse(&sub.endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| SendError::permanent("push endpoint is not an http(s) URL"))?;
        if !self.allow_private && guard::is_private_literal(&endpoint) {
            return Err(SendError::permanent(REFUSED_REASON));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(SendError::permanent(format!(
                "push payload is {} bytes, more than the {MAX_PAYLOAD} a push service must accept",
                payload.len()
            )));
        }
        let ua_public = decode_b64url(&sub.keys.p256dh)
            .filter(|k| k.len() == 65)
            .and_then(|k| p256::PublicKey::from_sec1_bytes(&k).ok())
            .ok_or_else(|| SendError::permanent("push subscription p256dh key is invalid"))?;
        let auth: [u8; 16] = decode_b64url(&sub.keys.auth)
            .and_then(|a| a.try_into().ok())
            .ok_or_else(|| SendError::permanent("push subscription auth secret is invalid"))?;
        let auth = web_push_native::Auth::from(auth);
        let body = web_push_native::encrypt(payload.to_vec(), &ua_public, &auth)
            .map_err(|_| SendError::permanent("push payload could not be encrypted"))?;

        let mut request = self
            .client
            .post(endpoint.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                self.vapid_authorization(&endpoint, chrono::Utc::now().timestamp()),
            )
            .header("TTL", ttl.min(MAX_TTL).as_secs())
            .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .timeout(self.timeout);
        if let Some(urgency) = urgency {
            request = request.header("Urgency", urgency.as_str());
        }
        let response = request.send().await.map_err(|e| {
            if guard::refused_by_resolver(&e) {
                SendError::permanent(REFUSED_REASON)
            } else {
                transport_error("push", e)
            }
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            let location = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Ok(Sent {
                provider_id: location,
            });
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(classify(status, &headers, &body))
    }

    /// `vapid t=<jwt>, k=<public key>` for a request to `endpoint` (RFC 8292 §3).
    fn vapid_authorization(&self, endpoint: &Url, now: i64) -> String {
        let header = json!({"typ": "JWT", "alg": "ES256"});
        let claims = json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": now + VAPID_VALIDITY.as_secs() as i64,
            "sub": self.subject,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "vapid t={signing_input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            self.public_key
        )
    }
}

/// A new VAPID private key (base64url of the 32-byte scalar) for `HERALD_VAPID_PRIVATE_KEY`.
pub fn generate_vapid_key() -> String {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    URL_SAFE_NO_PAD.encode(key.to_bytes())
}

/// Base64url with or without padding, as browsers and key generators produce it.
fn decode_b64url(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(value.trim().trim_end_matches('='))
        .ok()
}

/// RFC 8292 §2.1: a `mailto:` address or an `https:` URL.
fn is_subject(subject: &str) -> bool {
    match subject.strip_prefix("mailto:") {
        Some(address) => address.contains('@'),
        None => Url::parse(subject).is_ok_and(|u| u.scheme() == "https" && u.host().is_some()),
    }
}

/// Mozilla autopush's error body carries a numeric `errno`; other services send text.
#[derive(serde::Deserialize)]
struct AutopushError {
    errno: Option<u32>,
}

/// Classify a non-2xx answer from a push service.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let errno = serde_json::from_slice::<AutopushError>(body)
        .ok()
        .and_then(|e| e.errno);
    let what = match status.as_u16() {
        404 => "subscription not found",
        410 => "subscription expired or unsubscribed",
        413 => "payload too large",
        429 => "too many requests",
        400 => "request refused",
        401 | 403 => "VAPID authorization refused",
        _ => "push service error",
    };
    let reason = match errno {
        Some(errno) => format!(
            "push service answered {} ({what}, errno {errno})",
            status.as_u16()
        ),
        None => format!("push service answered {} ({what})", status.as_u16()),
    };
    match status.as_u16() {
        404 | 410 => SendError::Gone { reason },
        429 | 500..=599 => SendError::Transient {
            reason,
            retry_after: retry_after(headers),
        },
        _ => SendError::Permanent { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;
    use serde_json::Value;

    fn sender() -> WebPushSender {
        WebPushSender::new(&generate_vapid_key(), "mailto:ops@herald.example").unwrap()
    }

    fn decode_json(segment: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    #[test]
    fn vapid_jwt_claims_name_the_endpoint_origin_and_expire_within_12_hours() {
        let sender = sender();
        let now = 1_700_000_000;
        for (endpoint, aud) in [
            (
                "https://fcm.googleapis.com/fcm/send/abc:def",
                "https://fcm.googleapis.com",
            ),
            (
                "http://127.0.0.1:8080/push/xyz?x=1",
                "http://127.0.0.1:8080",
            ),
            (
                "https://push.example.net:443/wpush/v2/secret",
                "https://push.example.net",
            ),
        ] {
            let header = sender.vapid_authorization(&Url::parse(endpoint).unwrap(), now);
            let (t, k) = header
                .strip_prefix("vapid t=")
                .and_then(|rest| rest.split_once(", k="))
                .unwrap();
            assert_eq!(k, sender.public_key_b64url());
            let parts: Vec<&str> = t.split('.').collect();
            assert_eq!(parts.len(), 3);
            assert_eq!(decode_json(parts[0]), json!({"typ": "JWT", "alg": "ES256"}));
            let claims = decode_json(parts[1]);
            assert_eq!(claims["aud"], aud);
            assert_eq!(claims["exp"], now + 12 * 3600);
            assert_eq!(claims["sub"], "mailto:ops@herald.example");

            let key = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
            let signature =
                Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
            let input = format!("{}.{}", parts[0], parts[1]);
            key.verify(input.as_bytes(), &signature).unwrap();
        }
    }

    #[test]
    fn public_key_is_the_uncompressed_point() {
        let key = URL_SAFE_NO_PAD
            .decode(sender().public_key_b64url())
            .unwrap();
        assert_eq!(key.len(), 65);
        assert_eq!(key[0], 0x04);
    }

    #[test]
    fn keys_and_subjects_are_checked() {
        let key = generate_vapid_key();
        assert!(matches!(
            WebPushSender::new("c2hvcnQ", "mailto:a@b.c"),
            Err(WebPushConfigError::BadKey)
        ));
        assert!(matches!(
            WebPushSender::new(&URL_SAFE_NO_PAD.encode([0u8; 32]), "mailto:a@b.c"),
            Err(WebPushConfigError::BadKey)
        ));
        for subject in ["ops@herald.example", "http://herald.example", "mailto:"] {
            assert!(
                matches!(
                    WebPushSender::new(&key, subject),
                    Err(WebPushConfigError::BadSubject)
                ),
                "{subject}"
            );
        }
        assert!(WebPushSender::new(&key, "https://herald.example/contact").is_ok());
        assert!(WebPushSender::new(&format!("{key}="), "mailto:a@b.c").is_ok());
        let debug = format!("{:?}", WebPushSender::new(&key, "mailto:a@b.c").unwrap());
        assert!(!debug.contains(&key), "{debug}");
    }

    #[test]
    fn push_service_answers_are_classified() {
        let none = HeaderMap::new();
        assert!(matches!(
            classify(StatusCode::GONE, &none, b""),
            SendError::Gone { .. }
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &none, b""),
            SendError::Gone { .. }
        ));
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, &none, b""),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &none, b""),
            SendError::Permanent { .. }
        ));
        assert!(classify(StatusCode::SERVICE_UNAVAILABLE, &none, b"").is_transient());
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "30".parse().unwrap());
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                br#"{"code":429,"errno":999,"error":"Too Many Requests"}"#
            ),
            SendError::Transient {
                reason: "push service answered 429 (too many requests, errno 999)".into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        );
    }
}
