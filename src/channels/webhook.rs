//! Webhooks: one notification `POST`ed as JSON to an HTTPS endpoint a member registered,
//! signed the way the Standard Webhooks specification (v1.0.0, <https://www.standardwebhooks.com>,
//! `standard-webhooks/standard-webhooks` `spec/standard-webhooks.md`) describes, so that any of
//! its receiver libraries can verify it.
//!
//! Owns the wire format — the three headers `webhook-id`, `webhook-timestamp` (unix seconds)
//! and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`),
//! secrets serialized as `whsec_` + base64 — the check of member-supplied endpoint URLs, the
//! refusal of non-public addresses, and the classification of endpoints' answers into
//! [`SendError`] kinds.
//! Must not touch: storage of endpoints and secrets (the vault keeps them; a secret is shown to
//! its owner once, through [`WebhookSecret::expose`]), what the payload says (the dispatcher
//! renders it), retries (the caller decides from the error kind).
//!
//! # Invariants
//! - The secret never appears in `Debug` output or in an error. Error reasons never contain the
//!   endpoint URL either (its path or query can carry the receiver's own token) nor anything
//!   the endpoint answered: they carry the HTTP status only, and transport errors are reduced
//!   to their kind with the URL dropped. Response bodies are read (to keep the connection
//!   reusable) up to [`MAX_RESPONSE_BYTES`] and then discarded unseen.
//! - The body sent is exactly the bytes signed: the payload is serialized once, compactly.
//! - Redirects are never followed (Standard Webhooks: "3xx: Failure … update the webhook URL
//!   instead"); following one would also let an endpoint bounce the request to an address the
//!   checks below never saw.
//! - With `allow_private = false` (the default setting, `HERALD_WEBHOOK_ALLOW_PRIVATE`), no
//!   request reaches a loopback, private (RFC 1918), link-local, unique-local (`fc00::/7`),
//!   CGNAT (`100.64.0.0/10`), unspecified, multicast or otherwise reserved address: host names
//!   are resolved by a resolver that drops such answers (and the client connects to exactly the
//!   addresses it returned, so a DNS answer that changes between a check and the connection —
//!   DNS rebinding — cannot get through), and IP-literal hosts, for which no resolver is
//!   called, are checked before sending. Environment proxies (`HTTP_PROXY`…) are not used:
//!   a proxy would resolve the member's host itself, out of reach of that check.
//!
//! # Idempotency
//! `webhook-id` is the delivery id the dispatcher passes to [`WebhookSender::send`]; it stays
//! the same on every retry of one delivery while `webhook-timestamp` (and so the signature) is
//! that of the attempt. Standard Webhooks receivers dedupe on `webhook-id` ("Use the
//! `webhook-id` header as an idempotency key"), so a retry after an ambiguous failure (a
//! timeout after the request went out) is delivered at least once and, at a receiver that
//! follows the specification, processed once.
//!
//! # Verifying, for receivers
//! [`verify`] is what a receiver runs (the sandbox uses it): take the three headers and the raw
//! body — before any JSON parsing, since re-serializing changes bytes — and check that the
//! timestamp is within a tolerance of the receiver's clock ([`DEFAULT_TOLERANCE`], five
//! minutes, as the reference libraries use) and that one of the space-separated `v1,`
//! signatures matches, compared in constant time. Any Standard Webhooks library does the same
//! with the `whsec_…` secret.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use url::{Host, Url};

use super::guard::{self, is_public, refused_by_resolver};
use super::{SendError, Sent, retry_after, transport_error};

/// Whole-request timeout. Standard Webhooks suggests receivers get 15–30 s; Herald's
/// deliveries hold a dispatcher lease, so it waits 10 s and retries a slow endpoint later
/// (the retry carries the same `webhook-id`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How far a delivery's `webhook-timestamp` may be from the receiver's clock, either way,
/// before [`verify`] refuses it as a replay: five minutes, as in the reference libraries.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Longest endpoint URL accepted, in bytes (as given and as normalized).
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// Most of an endpoint's answer that is read (and thrown away) before the connection is
/// dropped instead of reused.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// Longest delivery id sent as `webhook-id`.
pub const MAX_ID_LEN: usize = 255;

/// How symmetric secrets are serialized (Standard Webhooks, "Secret serialization").
pub const SECRET_PREFIX: &str = "whsec_";

/// The specification's bounds for an HMAC secret: at least 24 bytes, at most 512 bits.
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;
/// What [`WebhookSecret::generate`] draws.
const GENERATED_SECRET_BYTES: usize = 32;

/// Signatures looked at in one `webhook-signature` header (rotation needs two or three).
const MAX_SIGNATURES: usize = 16;

const HEADER_ID: &str = "webhook-id";
const HEADER_TIMESTAMP: &str = "webhook-timestamp";
const HEADER_SIGNATURE: &str = "webhook-signature";
const SIGNATURE_VERSION: &str = "v1";

/// Why a secret, an endpoint or a received delivery was refused, or the sender could not be
/// built. No variant carries the URL, the secret or a header's value.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook secret must be \"whsec_\" followed by the base64 of 24 to 64 bytes")]
    BadSecret,
    /// The endpoint URL is unusable; the text says why, never what it was.
    #[error("webhook endpoint {0}")]
    BadEndpoint(&'static str),
    /// The endpoint's host is an IP address that is not public (and private ones are not
    /// allowed).
    #[error("webhook endpoint's address is not public")]
    PrivateAddress,
    #[error("webhook delivery has no {0} header")]
    MissingHeader(&'static str),
    #[error("webhook delivery's {0} header is invalid")]
    InvalidHeader(&'static str),
    #[error("webhook timestamp is older than the tolerance")]
    TimestampTooOld,
    #[error("webhook timestamp is further in the future than the tolerance")]
    TimestampInFuture,
    #[error("no webhook signature matches")]
    InvalidSignature,
    #[error("could not build the HTTP client for webhooks")]
    Client(#[source] reqwest::Error),
}

/// A signing secret (24–64 random bytes). `Debug` prints nothing of it; it is zeroed when
/// dropped.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// A new secret of 32 bytes from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes.into())
    }

    /// `whsec_` followed by standard base64 (padded or not) of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(WebhookError::BadSecret)?;
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| WebhookError::BadSecret)?;
        let secret = Self(bytes.into());
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&secret.key().len()) {
            return Err(WebhookError::BadSecret);
        }
        Ok(secret)
    }

    /// The serialized secret, `whsec_…`: shown once to its owner, who configures their
    /// receiver with it.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(self.key()))
    }

    fn key(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// HMAC-SHA256 over `{id}.{timestamp}.{body}`.
fn mac(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `webhook-signature` value, `v1,<base64 signature>`, for delivery `id` attempted at unix
/// `timestamp` with exactly these `body` bytes.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "{SIGNATURE_VERSION},{}",
        STANDARD.encode(mac(secret, id, timestamp, body))
    )
}

/// Check a received delivery: its `webhook-id`, `webhook-timestamp` and `webhook-signature`
/// headers and its raw `body`. The timestamp must be within `tolerance` of `now` (unix
/// seconds) either way; any one of the space-separated signatures may match (secret rotation
/// sends several), compared in constant time; signatures of other versions (`v1a,…`) are
/// skipped. An id containing `.` is refused: the specification asks that ids never hold one,
/// as it would make the signed content ambiguous.
pub fn verify(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let id = header(headers, HEADER_ID)?;
    if id.is_empty() || id.contains('.') {
        return Err(WebhookError::InvalidHeader(HEADER_ID));
    }
    let timestamp: i64 = header(headers, HEADER_TIMESTAMP)?
        .trim()
        .parse()
        .map_err(|_| WebhookError::InvalidHeader(HEADER_TIMESTAMP))?;
    let signatures = header(headers, HEADER_SIGNATURE)?;

    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(timestamp) > tolerance {
        return Err(WebhookError::TimestampTooOld);
    }
    if timestamp.saturating_sub(now) > tolerance {
        return Err(WebhookError::TimestampInFuture);
    }

    let expected = mac(secret, id, timestamp, body);
    let mut matched = subtle::Choice::from(0);
    for candidate in signatures
        .split(' ')
        .filter(|s| !s.is_empty())
        .take(MAX_SIGNATURES)
    {
        let Some((SIGNATURE_VERSION, encoded)) = candidate.split_once(',') else {
            continue;
        };
        let Ok(decoded) = STANDARD.decode(encoded) else {
            continue;
        };
        // `ct_eq` on slices of different lengths is false without looking at the bytes.
        matched |= decoded.as_slice().ct_eq(&expected);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, WebhookError> {
    headers
        .get(name)
        .ok_or(WebhookError::MissingHeader(name))?
        .to_str()
        .map_err(|_| WebhookError::InvalidHeader(name))
}

/// Parse and check a member-supplied endpoint URL: `http` or `https`, a host, no user name or
/// password, no fragment, at most [`MAX_ENDPOINT_LEN`] bytes. When `allow_private` is false
/// it must also be `https`, and a host given as an IP address must be a public one (host names
/// are checked when they are resolved, at every send).
pub fn parse_endpoint(raw: &str, allow_private: bool) -> Result<Url, WebhookError> {
    let raw = raw.trim();
    if raw.len() > MAX_ENDPOINT_LEN {
        return Err(WebhookError::BadEndpoint("is too long"));
    }
    let url = Url::parse(raw).map_err(|_| WebhookError::BadEndpoint("is not a valid URL"))?;
    if url.as_str().len() > MAX_ENDPOINT_LEN {
        return Err(WebhookError::BadEndpoint("is too long"));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err(WebhookError::BadEndpoint("must use https")),
        _ if allow_private => {
            return Err(WebhookError::BadEndpoint("must be an http or https URL"));
        }
        _ => return Err(WebhookError::BadEndpoint("must be an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::BadEndpoint(
            "must not contain a user name or password",
        ));
    }
    if url.fragment().is_some() {
        return Err(WebhookError::BadEndpoint("must not contain a fragment"));
    }
    check_host(&url, allow_private)?;
    Ok(url)
}

/// The host is present and, unless private addresses are allowed, not a non-public IP literal.
fn check_host(url: &Url, allow_private: bool) -> Result<(), WebhookError> {
    let ip = match url.host() {
        None => return Err(WebhookError::BadEndpoint("has no host")),
        Some(Host::Domain("")) => return Err(WebhookError::BadEndpoint("has no host")),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(WebhookError::PrivateAddress)
    }
}

/// The reason given when an endpoint's address is refused.
const REFUSED_REASON: &str = "webhook endpoint refused: its address is not public";

/// A delivery id usable as `webhook-id`: 1 to [`MAX_ID_LEN`] visible ASCII characters, none
/// of them `.`.
fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
}

/// Posts signed deliveries to members' endpoints. Cheap to clone (the HTTP client, and its
/// connection pool, are shared).
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// A sender. With `allow_private = false`, DNS answers that are loopback, private
    /// (RFC 1918), link-local, unique-local (`fc00::/7`), CGNAT, unspecified, multicast or
    /// otherwise reserved are dropped by the client's resolver (a host with no other answer is
    /// refused), and IP-literal hosts, which reqwest connects to without resolving, are checked
    /// before sending. `true` is for tests and single-host setups whose receivers run next to
    /// Herald.
    pub fn new(allow_private: bool) -> Result<Self, WebhookError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION"), " (webhook)"));
        if !allow_private {
            builder = guard::confine(builder);
        }
        let client = builder.build().map_err(WebhookError::Client)?;
        Ok(Self {
            client,
            allow_private,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replace the whole-request timeout (tests use a short one against a hanging endpoint).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// POST `payload`, serialized compactly, to `url` with `Content-Type: application/json`,
    /// `webhook-id: {id}`, `webhook-timestamp: {now}` and `webhook-signature: v1,…` signed
    /// with `secret`.
    ///
    /// `id` is the delivery id: the same on every retry of one delivery, and the key
    /// Standard Webhooks receivers dedupe on. It must be 1 to [`MAX_ID_LEN`] visible ASCII
    /// characters without `.`. On success `provider_id` is `id`.
    pub async fn send(
        &self,
        url: &Url,
        secret: &WebhookSecret,
        id: &str,
        payload: &serde_json::Value,
    ) -> Result<Sent, SendError> {
        if !is_valid_id(id) {
            return Err(SendError::permanent(
                "delivery id is not a valid webhook-id (1 to 255 visible ASCII characters, no '.')",
            ));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SendError::permanent(
                "webhook endpoint is not an http(s) URL",
            ));
        }
        match check_host(url, self.allow_private) {
            Ok(()) => {}
            Err(WebhookError::PrivateAddress) => return Err(SendError::permanent(REFUSED_REASON)),
            Err(_) => return Err(SendError::permanent("webhook endpoint has no host")),
        }
        let body = serde_json::to_vec(payload)
            .map_err(|_| SendError::permanent("webhook payload could not be serialized"))?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(secret, id, timestamp, &body);
        let response = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_ID, id)
            .header(HEADER_TIMESTAMP, timestamp)
            .header(HEADER_SIGNATURE, signature)
            .body(body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|err| {
                if refused_by_resolver(&err) {
                    SendError::permanent(REFUSED_REASON)
                } else {
                    transport_error("webhook", err)
                }
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        discard_body(response).await;
        if status.is_success() {
            return Ok(Sent {
                provider_id: Some(id.to_string()),
            });
        }
        Err(classify(status, &headers))
    }
}

/// Read and drop up to about [`MAX_RESPONSE_BYTES`] of the answer (one more chunk at most), so
/// a short one leaves the connection reusable; a longer one (or one announced as longer), or
/// one that fails, is cut off with the connection. Never looked at: the endpoint's words do
/// not go into reasons.
async fn discard_body(mut response: reqwest::Response) {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
    {
        return;
    }
    let mut read = 0;
    while read <= MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Classify a non-2xx answer from an endpoint (Standard Webhooks, "Delivery success and
/// failure").
fn classify(status: StatusCode, headers: &HeaderMap) -> SendError {
    let code = status.as_u16();
    match code {
        300..=399 => SendError::permanent(format!(
            "webhook endpoint redirected (HTTP {code}); redirects are not followed, the URL \
             must be updated"
        )),
        410 => SendError::Gone {
            reason: "webhook endpoint answered HTTP 410 (gone): it asked to stop receiving".into(),
        },
        408 | 429 | 500..=599 => SendError::Transient {
            reason: format!("webhook endpoint answered HTTP {code}"),
            retry_after: retry_after(headers),
        },
        _ => SendError::permanent(format!("webhook endpoint answered HTTP {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// From the Standard Webhooks reference Rust library's tests
    /// (`libraries/rust/src/lib.rs`, `test_sign`); recomputed with Python's `hmac` module
    /// (`base64.b64encode(hmac.new(base64.b64decode(KEY), b"msg_….1649367553.{…}",
    /// hashlib.sha256).digest())`), which gives the same value.
    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_TIMESTAMP: i64 = 1649367553;
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    const NOW: i64 = 1_700_000_000;

    fn headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ID, HeaderValue::from_str(id).unwrap());
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(signature).unwrap());
        headers
    }

    fn signed(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        headers(id, timestamp, &sign(secret, id, timestamp, body))
    }

    #[test]
    fn the_spec_test_vector_signs_and_verifies() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            sign(&secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        let headers = headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE);
        verify(
            &secret,
            &headers,
            SPEC_BODY,
            SPEC_TIMESTAMP + 10,
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        assert_eq!(secret.expose(), SPEC_SECRET);
    }

    #[test]
    fn a_signature_round_trips_and_any_change_breaks_it() {
        let secret = WebhookSecret::generate();
        let body = br#"{"type":"notification","data":{"text":"hi"}}"#;
        let good = signed(&secret, "dlv_1", NOW, body);
        verify(&secret, &good, body, NOW, DEFAULT_TOLERANCE).unwrap();

        // Tampered body.
        let err = verify(
            &secret,
            &good,
            br#"{"type":"notification","data":{"text":"ho"}}"#,
            NOW,
            DEFAULT_TOLERANCE,
        );
        assert!(
            matches!(err, Err(WebhookError::InvalidSignature)),
            "{err:?}"
        );
        // Timestamp header changed after signing.
        let mut moved = good.clone();
        moved.insert(HEADER_TIMESTAMP, HeaderValue::from(NOW + 1));
        let err = verify(&secret, &moved, body, NOW, DEFAULT_TOLERANCE);
        assert!(
            matches!(err, Err(WebhookError::InvalidSignature)),
            "{err:?}"
        );
        // Id changed after signing.
        let mut renamed = good.clone();
        renamed.insert(HEADER_ID, HeaderValue::from_static("dlv_2"));
        let err = verify(&secret, &renamed, body, NOW, DEFAULT_TOLERANCE);
        assert!(
            matches!(err, Err(WebhookError::InvalidSignature)),
            "{err:?}"
        );
        // Another secret.
        let err = verify(
            &WebhookSecret::generate(),
            &good,
            body,
            NOW,
            DEFAULT_TOLERANCE,
        );
        assert!(
            matches!(err, Err(WebhookError::InvalidSignature)),
            "{err:?}"
        );
        // A truncated signature (a prefix of the right one) does not match.
        let full = sign(&secret, "dlv_1", NOW, body);
        let short = headers("dlv_1", NOW, &full[..full.len() - 8]);
        let err = verify(&secret, &short, body, NOW, DEFAULT_TOLERANCE);
        assert!(
            matches!(err, Err(WebhookError::InvalidSignature)),
            "{err:?}"
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_even_when_signed() {
        let secret = WebhookSecret::generate();
        let tolerance = Duration::from_secs(300);
        let old = signed(&secret, "dlv_1", NOW - 301, b"{}");
        assert!(matches!(
            verify(&secret, &old, b"{}", NOW, tolerance),
            Err(WebhookError::TimestampTooOld)
        ));
        let future = signed(&secret, "dlv_1", NOW + 301, b"{}");
        assert!(matches!(
            verify(&secret, &future, b"{}", NOW, tolerance),
            Err(WebhookError::TimestampInFuture)
        ));
        for edge in [NOW - 300, NOW + 300] {
            let headers = signed(&secret, "dlv_1", edge, b"{}");
            verify(&secret, &headers, b"{}", NOW, tolerance).unwrap();
        }
        let mut garbled = signed(&secret, "dlv_1", NOW, b"{}");
        garbled.insert(HEADER_TIMESTAMP, HeaderValue::from_static("soon"));
        assert!(matches!(
            verify(&secret, &garbled, b"{}", NOW, tolerance),
            Err(WebhookError::InvalidHeader(HEADER_TIMESTAMP))
        ));
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let now = SPEC_TIMESTAMP;
        // The reference library's decoys: well-formed v1 signatures that do not match.
        let decoys = [
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
            "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
            "v1,not-base64!",
            "garbage",
        ];
        let with_match = format!("{} {SPEC_SIGNATURE}  {}", decoys.join(" "), decoys[0]);
        verify(
            &secret,
            &headers(SPEC_ID, now, &with_match),
            SPEC_BODY,
            now,
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        let without = decoys.join(" ");
        assert!(matches!(
            verify(
                &secret,
                &headers(SPEC_ID, now, &without),
                SPEC_BODY,
                now,
                DEFAULT_TOLERANCE
            ),
            Err(WebhookError::InvalidSignature)
        ));
        // The right signature under another version tag is not accepted.
        let relabelled = SPEC_SIGNATURE.replacen("v1,", "v2,", 1);
        assert!(
            verify(
                &secret,
                &headers(SPEC_ID, now, &relabelled),
                SPEC_BODY,
                now,
                DEFAULT_TOLERANCE
            )
            .is_err()
        );
    }

    #[test]
    fn missing_headers_and_dotted_ids_are_refused() {
        let secret = WebhookSecret::generate();
        for name in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut headers = signed(&secret, "dlv_1", NOW, b"{}");
            headers.remove(name);
            let err = verify(&secret, &headers, b"{}", NOW, DEFAULT_TOLERANCE);
            assert!(
                matches!(err, Err(WebhookError::MissingHeader(n)) if n == name),
                "{err:?}"
            );
        }
        let dotted = signed(&secret, "a.1", NOW, b"{}");
        assert!(matches!(
            verify(&secret, &dotted, b"{}", NOW, DEFAULT_TOLERANCE),
            Err(WebhookError::InvalidHeader(HEADER_ID))
        ));
    }

    #[test]
    fn secrets_round_trip_through_whsec_and_are_bounded() {
        let secret = WebhookSecret::generate();
        let text = secret.expose();
        assert!(text.starts_with("whsec_"), "{text}");
        assert_eq!(STANDARD.decode(&text[6..]).unwrap().len(), 32);
        let again = WebhookSecret::parse(&text).unwrap();
        assert_eq!(
            sign(&secret, "x", NOW, b"{}"),
            sign(&again, "x", NOW, b"{}")
        );
        assert_ne!(text, WebhookSecret::generate().expose());

        let b64 = |n: usize| STANDARD.encode(vec![7u8; n]);
        assert!(WebhookSecret::parse(&format!("whsec_{}", b64(24))).is_ok());
        assert!(WebhookSecret::parse(&format!("whsec_{}", b64(64))).is_ok());
        assert!(
            WebhookSecret::parse(&format!("whsec_{}", STANDARD_NO_PAD.encode([7u8; 32]))).is_ok()
        );
        for bad in [
            format!("whsec_{}", b64(23)),
            format!("whsec_{}", b64(65)),
            b64(32),
            format!("whsk_{}", b64(32)),
            "whsec_not base64!".to_string(),
            String::new(),
        ] {
            assert!(
                matches!(WebhookSecret::parse(&bad), Err(WebhookError::BadSecret)),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_and_errors_reveal_nothing_of_the_secret() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let debug = format!("{secret:?}");
        assert!(!debug.contains("C2FVsBQ"), "{debug}");
        let err = WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err();
        assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
        let sender = format!("{:?}", WebhookSender::new(false).unwrap());
        assert!(sender.contains("allow_private: false"), "{sender}");
    }

    #[test]
    fn endpoints_must_be_clean_urls_and_public_unless_allowed() {
        // Accepted either way.
        for ok in [
            "https://hooks.example.com/herald",
            "https://hooks.example.com:8443/h?token=abc",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        ] {
            assert!(parse_endpoint(ok, false).is_ok(), "{ok}");
            assert!(parse_endpoint(ok, true).is_ok(), "{ok}");
        }
        // Only when private endpoints are allowed.
        for (private, err) in [
            ("http://hooks.example.com/herald", "must use https"),
            ("http://127.0.0.1:8080/hook", "must use https"),
            ("https://127.0.0.1/hook", "address"),
            ("https://10.1.2.3/hook", "address"),
            ("https://172.16.0.1/hook", "address"),
            ("https://192.168.1.1/hook", "address"),
            ("https://169.254.169.254/latest/meta-data", "address"),
            ("https://100.64.0.1/hook", "address"),
            ("https://0.0.0.0/hook", "address"),
            ("https://224.0.0.1/hook", "address"),
            ("https://[::1]/hook", "address"),
            ("https://[fd00::1]/hook", "address"),
            ("https://[fe80::1]/hook", "address"),
            ("https://[::ffff:127.0.0.1]/hook", "address"),
            ("https://[64:ff9b::a00:1]/hook", "address"),
            ("https://2130706433/hook", "address"), // 127.0.0.1 as one number
            ("https://0x7f.1/hook", "address"),
        ] {
            let refused = parse_endpoint(private, false).unwrap_err().to_string();
            assert!(refused.contains(err), "{private}: {refused}");
            assert!(!refused.contains("://"), "{refused}");
            assert!(parse_endpoint(private, true).is_ok(), "{private}");
        }
        // Never.
        for (bad, err) in [
            (
                "https://user:pass@hooks.example.com/h",
                "user name or password",
            ),
            ("https://token@hooks.example.com/h", "user name or password"),
            ("https://hooks.example.com/h#frag", "fragment"),
            ("ftp://hooks.example.com/h", "https URL"),
            ("file:///etc/passwd", "https URL"),
            ("hooks.example.com/h", "valid URL"),
            ("https://", "valid URL"),
        ] {
            for allow_private in [false, true] {
                let refused = parse_endpoint(bad, allow_private).unwrap_err().to_string();
                assert!(refused.contains(err), "{bad}: {refused}");
                assert!(!refused.contains("example"), "{refused}");
            }
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(parse_endpoint(&long, true).is_err());
    }

    #[test]
    fn delivery_ids_must_be_header_safe_and_dotless() {
        assert!(is_valid_id("01J9ZQ4S3M6Y2V8K7N5R0T1W3X"));
        assert!(is_valid_id("dlv_42-retry"));
        for bad in ["", "a.b", "has space", "line\nbreak", "é", &"x".repeat(256)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn endpoint_answers_are_classified() {
        let none = HeaderMap::new();
        assert!(matches!(
            classify(StatusCode::GONE, &none),
            SendError::Gone { .. }
        ));
        for status in [301, 302, 303, 307, 308] {
            let err = classify(StatusCode::from_u16(status).unwrap(), &none);
            assert!(
                matches!(&err, SendError::Permanent { reason } if reason.contains("redirected")),
                "{err:?}"
            );
        }
        for status in [408, 429, 500, 502, 503, 504] {
            let err = classify(StatusCode::from_u16(status).unwrap(), &none);
            assert!(err.is_transient(), "{status}: {err:?}");
        }
        for status in [400, 401, 403, 404, 405, 413, 422] {
            let err = classify(StatusCode::from_u16(status).unwrap(), &none);
            assert!(
                matches!(err, SendError::Permanent { .. }),
                "{status}: {err:?}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &headers),
            SendError::Transient {
                reason: "webhook endpoint answered HTTP 503".into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        );
    }
}
