//! A local push service (the server side of RFC 8030 that FCM or Mozilla autopush run) and a
//! [`Browser`] that subscribes to it with a real user-agent key pair and decrypts what arrives.
//!
//! Owns nothing of Herald's: the service checks each push the way real services do, records
//! what it accepted (still encrypted, as a push service holds it), and injects faults (one per
//! push, in order) so tests can drive every failure the web push adapter classifies. Binds
//! loopback only. Must not be used by the serving path.
//!
//! What the service checks on `POST /push/<id>`, in order (errors in autopush's JSON shape,
//! `{"code","errno","error","message","more_info"}`):
//!
//! | check | refusal |
//! | --- | --- |
//! | the subscription exists / has not been unsubscribed | 404 / 410 |
//! | `Authorization: vapid t=<jwt>, k=<key>`: ES256 JWT whose signature verifies with `k`, `aud` = this service's origin, `exp` in the future and at most 24 h ahead, `sub` a `mailto:` or `https:` URL (RFC 8292) | 401 (403 for a subscription restricted to an application server key, also when `k` is another key) |
//! | a `TTL` header with a number of seconds | 400 |
//! | `Urgency`, if present, one of `very-low`, `low`, `normal`, `high` | 400 |
//! | a body is `Content-Encoding: aes128gcm` | 400 |
//! | the body is at most 4096 bytes | 413 |
//!
//! Accepted pushes get 201 with a `Location` and the `TTL` kept. Decryption (RFC 8291) is done
//! by the browser side with its private key, deriving the key independently of the sender's
//! library and using `ece-native` for the aes128gcm records.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::Sha256;
use url::Url;

use crate::model::{PushKeys, PushSubscription};

/// RFC 8030 §7.2: the payload size every push service must accept.
const MAX_BODY: usize = 4096;

/// RFC 8292 §2: a VAPID token valid for more than 24 hours must be refused.
const MAX_VAPID_VALIDITY_SECS: i64 = 24 * 60 * 60;

/// A failure the next push gets instead of the normal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with an autopush-style error body.
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then handle the push normally.
    Hang(Duration),
    /// 410: the subscription expired or the user revoked it.
    Gone,
    /// 404: no such subscription.
    NotFound,
}

/// The VAPID claims of an accepted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VapidClaims {
    pub aud: String,
    pub exp: i64,
    pub sub: String,
    /// The `k=` public key, base64url.
    pub key: String,
}

/// A push the service accepted, as it holds it: encrypted.
#[derive(Debug, Clone)]
pub struct PushMessage {
    /// The `<id>` of `/push/<id>`, the browser's subscription.
    pub subscription_id: String,
    pub ttl: u64,
    pub urgency: Option<String>,
    pub topic: Option<String>,
    pub vapid: VapidClaims,
    pub headers: HeaderMap,
    /// The aes128gcm body, undecrypted.
    pub body: Vec<u8>,
    /// The `Location` the service answered.
    pub location: String,
}

/// Any push request, accepted or not.
#[derive(Debug, Clone)]
pub struct Request {
    pub subscription_id: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub status: u16,
    /// Why it was refused (the error body's `message`), `None` when accepted.
    pub refusal: Option<String>,
}

struct Registration {
    /// RFC 8292 §4: a subscription made with an `applicationServerKey` only takes pushes
    /// signed by that key.
    application_server_key: Option<String>,
    unsubscribed: bool,
}

struct PushState {
    /// `http://127.0.0.1:<port>`: the `aud` VAPID tokens must name. Set once bound.
    origin: OnceLock<String>,
    registrations: Mutex<HashMap<String, Registration>>,
    faults: Mutex<VecDeque<Fault>>,
    messages: Mutex<Vec<PushMessage>>,
    requests: Mutex<Vec<Request>>,
}

/// The local push service. Clones share the same server.
#[derive(Clone)]
pub struct PushService {
    addr: SocketAddr,
    state: Arc<PushState>,
}

impl PushService {
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(PushState {
            origin: OnceLock::new(),
            registrations: Mutex::default(),
            faults: Mutex::default(),
            messages: Mutex::default(),
            requests: Mutex::default(),
        });
        let router = Router::new()
            .route("/push/{id}", post(push))
            .with_state(state.clone());
        let addr = super::serve(router).await?;
        let _ = state.origin.set(format!("http://{addr}"));
        Ok(Self { addr, state })
    }

    pub fn url(&self) -> Url {
        Url::parse(&self.origin()).expect("valid loopback URL")
    }

    /// `http://127.0.0.1:<port>`, the audience VAPID tokens for this service must name.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue a fault for the next push that has none yet.
    pub fn fail_next(&self, fault: Fault) {
        self.state
            .faults
            .lock()
            .expect("push faults lock")
            .push_back(fault);
    }

    /// The browser revoked its subscription: later pushes to it get 410 Gone.
    pub fn unsubscribe(&self, browser: &Browser) {
        if let Some(registration) = self
            .state
            .registrations
            .lock()
            .expect("push registrations lock")
            .get_mut(&browser.id)
        {
            registration.unsubscribed = true;
        }
    }

    /// Pushes accepted, in order, still encrypted.
    pub fn messages(&self) -> Vec<PushMessage> {
        self.state
            .messages
            .lock()
            .expect("push messages lock")
            .clone()
    }

    /// Every push request, in order, with the status it got.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .expect("push requests lock")
            .clone()
    }

    /// The payloads accepted for `browser`, in order, decrypted with its keys.
    pub fn try_received_for(&self, browser: &Browser) -> Result<Vec<Vec<u8>>, DecryptError> {
        self.messages()
            .iter()
            .filter(|m| m.subscription_id == browser.id)
            .map(|m| browser.decrypt(&m.body))
            .collect()
    }

    /// [`try_received_for`](Self::try_received_for) for tests.
    ///
    /// # Panics
    /// When a payload does not decrypt: the sender broke RFC 8291, which is what the test is
    /// for.
    pub fn received_for(&self, browser: &Browser) -> Vec<Vec<u8>> {
        match self.try_received_for(browser) {
            Ok(payloads) => payloads,
            Err(e) => panic!("a push to this browser does not decrypt: {e}"),
        }
    }

    fn register(&self, browser: &Browser, application_server_key: Option<String>) {
        self.state
            .registrations
            .lock()
            .expect("push registrations lock")
            .insert(
                browser.id.clone(),
                Registration {
                    application_server_key,
                    unsubscribed: false,
                },
            );
    }
}

// ---------------------------------------------------------------------------------------
// The browser side
// ---------------------------------------------------------------------------------------

/// A browser's push registration: the user agent's P-256 key pair and 16-byte auth secret
/// (RFC 8291 §2), and the subscription id the service knows it by.
pub struct Browser {
    id: String,
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let mut auth = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut auth);
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            secret: p256::SecretKey::random(&mut rand::rngs::OsRng),
            auth,
        }
    }

    /// Subscribe to `service` without an application server key and give the subscription
    /// as `PushSubscription.toJSON()` would.
    pub fn subscription(&self, service: &PushService) -> PushSubscription {
        service.register(self, None);
        self.as_subscription(service)
    }

    /// Subscribe with `applicationServerKey` (base64url, as browsers require today): the
    /// service then refuses pushes whose VAPID key is another one, with 403.
    pub fn subscription_with_key(
        &self,
        service: &PushService,
        application_server_key: &str,
    ) -> PushSubscription {
        service.register(
            self,
            Some(application_server_key.trim_end_matches('=').into()),
        );
        self.as_subscription(service)
    }

    fn as_subscription(&self, service: &PushService) -> PushSubscription {
        PushSubscription {
            endpoint: format!("{}/push/{}", service.origin(), self.id),
            keys: PushKeys {
                p256dh: URL_SAFE_NO_PAD.encode(self.public_key_bytes()),
                auth: URL_SAFE_NO_PAD.encode(self.auth),
            },
        }
    }

    fn public_key_bytes(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// Decrypt an aes128gcm push body (RFC 8291 §3.4, RFC 8188).
    pub fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, DecryptError> {
        // Header: salt (16) ‖ record size (4) ‖ key id length (1) ‖ key id (the sender's
        // ephemeral public key, 65 bytes uncompressed in Web Push).
        if body.len() < 21 + 65 {
            return Err(DecryptError::Malformed(
                "body shorter than the aes128gcm header",
            ));
        }
        let record_size = u32::from_be_bytes([body[16], body[17], body[18], body[19]]);
        // RFC 8188 §2.1: a record holds at least the 16-byte tag and one delimiter octet
        // (checked here too because a record size of 0 would stop ece-native).
        if record_size < 18 {
            return Err(DecryptError::Malformed("record size below 18"));
        }
        if body[20] != 65 {
            return Err(DecryptError::Malformed(
                "key id is not a 65-byte public key",
            ));
        }
        let sender_key = &body[21..86];
        let sender = p256::PublicKey::from_sec1_bytes(sender_key)
            .map_err(|_| DecryptError::Malformed("key id is not a P-256 point"))?;

        // ecdh_secret = ECDH(ua_private, as_public); IKM = HKDF(salt = auth_secret,
        // ecdh_secret, "WebPush: info" ‖ 0x00 ‖ ua_public ‖ as_public, 32).
        let shared = (sender.to_projective() * *self.secret.to_nonzero_scalar()).to_affine();
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.public_key_bytes());
        info.extend_from_slice(sender_key);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), &shared.x())
            .expand(&info, &mut ikm)
            .map_err(|_| DecryptError::Malformed("HKDF output length"))?;
        ece_native::decrypt(ikm, body.to_vec()).map_err(|_| DecryptError::Decrypt)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("malformed aes128gcm body: {0}")]
    Malformed(&'static str),
    #[error("aes128gcm records do not decrypt with this browser's keys")]
    Decrypt,
}

// ---------------------------------------------------------------------------------------
// The service's handler
// ---------------------------------------------------------------------------------------

/// A refused push, answered in autopush's error shape.
struct Refusal {
    status: StatusCode,
    /// Autopush's error number (102 no such subscription, 103 expired, 104 too large, 109
    /// bad authorization, 110 bad encryption headers, 111/112 missing/bad TTL, 999 other).
    errno: u16,
    message: String,
    retry_after_secs: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, errno: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            errno,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    fn into_response(self) -> Response {
        let body = json!({
            "code": self.status.as_u16(),
            "errno": self.errno,
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
            "more_info": "http://autopush.readthedocs.io/en/latest/http.html#error-codes",
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

async fn push(
    State(state): State<Arc<PushState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = state.faults.lock().expect("push faults lock").pop_front();
    if let Some(Fault::Hang(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let (response, refusal) = match accept(&state, &id, &headers, &body, fault) {
        Ok(response) => (response, None),
        Err(refusal) => {
            let message = refusal.message.clone();
            (refusal.into_response(), Some(message))
        }
    };
    state
        .requests
        .lock()
        .expect("push requests lock")
        .push(Request {
            subscription_id: id,
            headers,
            body: body.to_vec(),
            status: response.status().as_u16(),
            refusal,
        });
    response
}

fn accept(
    state: &PushState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    fault: Option<Fault>,
) -> Result<Response, Refusal> {
    match fault {
        Some(Fault::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let errno = match status.as_u16() {
                404 => 102,
                410 => 103,
                413 => 104,
                _ => 999,
            };
            return Err(Refusal::new(status, errno, "injected failure"));
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            return Err(Refusal {
                retry_after_secs: Some(retry_after_secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    999,
                    "Too many messages for this subscription",
                )
            });
        }
        Some(Fault::Gone) => {
            return Err(Refusal::new(StatusCode::GONE, 103, "Subscription expired"));
        }
        Some(Fault::NotFound) => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                102,
                "No such subscription",
            ));
        }
        Some(Fault::Hang(_)) | None => {}
    }

    let restricted_to = {
        let registrations = state.registrations.lock().expect("push registrations lock");
        match registrations.get(id) {
            None => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    102,
                    "No such subscription",
                ));
            }
            Some(r) if r.unsubscribed => {
                return Err(Refusal::new(StatusCode::GONE, 103, "Subscription expired"));
            }
            Some(r) => r.application_server_key.clone(),
        }
    };

    let origin = state.origin.get().map(String::as_str).unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refused_status = match restricted_to {
        Some(_) => StatusCode::FORBIDDEN,
        None => StatusCode::UNAUTHORIZED,
    };
    let vapid = match authorization {
        None => Err("Missing Authorization header".to_string()),
        Some(value) => verify_vapid(value, origin, now).map_err(|e| e.to_string()),
    }
    .map_err(|message| Refusal::new(refused_status, 109, message))?;
    if let Some(key) = restricted_to
        && key != vapid.key.trim_end_matches('=')
    {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            109,
            "VAPID key does not match the subscription's application server key",
        ));
    }

    let ttl = match headers.get("ttl").map(|v| v.to_str().map(str::trim)) {
        None => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                111,
                "Missing TTL header",
            ));
        }
        Some(Ok(ttl)) => ttl
            .parse::<u64>()
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, 112, "Invalid TTL header"))?,
        Some(Err(_)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                112,
                "Invalid TTL header",
            ));
        }
    };
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let urgency = text("urgency");
    if let Some(u) = &urgency
        && !matches!(u.as_str(), "very-low" | "low" | "normal" | "high")
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            114,
            "Invalid Urgency header",
        ));
    }
    if !body.is_empty() {
        let encoding = text("content-encoding").unwrap_or_default();
        if !encoding.trim().eq_ignore_ascii_case("aes128gcm") {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                110,
                "Content-Encoding must be aes128gcm",
            ));
        }
    }
    if body.len() > MAX_BODY {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            104,
            format!("Body is {} bytes, more than {MAX_BODY}", body.len()),
        ));
    }

    let location = format!("{origin}/m/{}", uuid::Uuid::new_v4().simple());
    state
        .messages
        .lock()
        .expect("push messages lock")
        .push(PushMessage {
            subscription_id: id.to_string(),
            ttl,
            urgency,
            topic: text("topic"),
            vapid,
            headers: headers.clone(),
            body: body.to_vec(),
            location: location.clone(),
        });
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert("ttl", ttl.into());
    Ok(response)
}

/// Why a VAPID `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VapidError {
    #[error("Authorization scheme is not vapid")]
    Scheme,
    #[error("Authorization lacks t= or k=")]
    MissingParameter,
    #[error("k= is not an uncompressed P-256 public key")]
    BadKey,
    #[error("t= is not a JWT")]
    Malformed,
    #[error("JWT alg is not ES256")]
    Algorithm,
    #[error("JWT signature does not verify with k=")]
    Signature,
    #[error("JWT aud is not this push service's origin")]
    Audience,
    #[error("JWT has expired")]
    Expired,
    #[error("JWT expires more than 24 hours ahead")]
    TooLong,
    #[error("JWT sub is not a mailto: or https: URL")]
    Subject,
}

/// Check `vapid t=<jwt>, k=<key>` (RFC 8292 §3) for a push service at `origin` at time `now`.
pub fn verify_vapid(
    authorization: &str,
    origin: &str,
    now: i64,
) -> Result<VapidClaims, VapidError> {
    let (scheme, params) = authorization
        .trim()
        .split_once(' ')
        .ok_or(VapidError::Scheme)?;
    if !scheme.eq_ignore_ascii_case("vapid") {
        return Err(VapidError::Scheme);
    }
    let (mut token, mut key) = (None, None);
    for param in params.split(',') {
        match param.trim().split_once('=') {
            Some(("t", value)) => token = Some(value.trim()),
            Some(("k", value)) => key = Some(value.trim()),
            _ => {}
        }
    }
    let (token, key) = token.zip(key).ok_or(VapidError::MissingParameter)?;
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    let verifying_key = decode(key)
        .ok()
        .filter(|k| k.len() == 65)
        .and_then(|k| VerifyingKey::from_sec1_bytes(&k).ok())
        .ok_or(VapidError::BadKey)?;

    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VapidError::Malformed);
    };
    let json = |s: &str| -> Result<Value, VapidError> {
        decode(s)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(VapidError::Malformed)
    };
    let header_json = json(header)?;
    if header_json["alg"] != "ES256" {
        return Err(VapidError::Algorithm);
    }
    match header_json.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(VapidError::Malformed),
    }
    let signature = decode(signature)
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or(VapidError::Signature)?;
    verifying_key
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| VapidError::Signature)?;

    let claims = json(claims)?;
    if claims["aud"].as_str() != Some(origin) {
        return Err(VapidError::Audience);
    }
    let exp = claims["exp"].as_i64().ok_or(VapidError::Malformed)?;
    if exp <= now {
        return Err(VapidError::Expired);
    }
    if exp > now + MAX_VAPID_VALIDITY_SECS {
        return Err(VapidError::TooLong);
    }
    let sub = claims["sub"].as_str().unwrap_or_default();
    let sub_ok = sub.strip_prefix("mailto:").is_some_and(|a| a.contains('@'))
        || Url::parse(sub).is_ok_and(|u| u.scheme() == "https");
    if !sub_ok {
        return Err(VapidError::Subject);
    }
    Ok(VapidClaims {
        aud: origin.to_string(),
        exp,
        sub: sub.to_string(),
        key: key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;

    const ORIGIN: &str = "http://127.0.0.1:9999";

    fn token(key: &SigningKey, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = key.sign(input.as_bytes());
        let public = URL_SAFE_NO_PAD.encode(key.verifying_key().to_encoded_point(false).as_bytes());
        format!(
            "vapid t={input}.{}, k={public}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    fn claims(aud: &str, exp: i64, sub: &str) -> Value {
        json!({"aud": aud, "exp": exp, "sub": sub})
    }

    #[test]
    fn a_well_formed_vapid_token_is_accepted() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let header = token(
            &key,
            json!({"typ": "JWT", "alg": "ES256"}),
            claims(ORIGIN, 2_000, "mailto:ops@example.org"),
        );
        let vapid = verify_vapid(&header, ORIGIN, 1_000).unwrap();
        assert_eq!(vapid.aud, ORIGIN);
        assert_eq!(vapid.sub, "mailto:ops@example.org");
    }

    #[test]
    fn bad_vapid_tokens_are_refused_for_the_right_reason() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let es256 = json!({"typ": "JWT", "alg": "ES256"});
        let sub = "mailto:ops@example.org";
        let cases = [
            (
                token(&key, es256.clone(), claims("http://elsewhere", 2_000, sub)),
                VapidError::Audience,
            ),
            (
                token(&key, es256.clone(), claims(ORIGIN, 999, sub)),
                VapidError::Expired,
            ),
            (
                token(&key, es256.clone(), claims(ORIGIN, 1_000 + 86_401, sub)),
                VapidError::TooLong,
            ),
            (
                token(
                    &key,
                    es256.clone(),
                    claims(ORIGIN, 2_000, "ops@example.org"),
                ),
                VapidError::Subject,
            ),
            (
                token(&key, json!({"alg": "ES384"}), claims(ORIGIN, 2_000, sub)),
                VapidError::Algorithm,
            ),
            ("Bearer abc".to_string(), VapidError::Scheme),
            ("vapid t=a.b.c".to_string(), VapidError::MissingParameter),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify_vapid(&header, ORIGIN, 1_000),
                Err(expected),
                "{header}"
            );
        }
        // Signed by one key, presented with another.
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        let signed = token(&key, es256.clone(), claims(ORIGIN, 2_000, sub));
        let presented = token(&other, es256, claims(ORIGIN, 2_000, sub));
        let swapped = format!(
            "{}, k={}",
            signed.split(", k=").next().unwrap(),
            presented.split(", k=").nth(1).unwrap()
        );
        assert_eq!(
            verify_vapid(&swapped, ORIGIN, 1_000),
            Err(VapidError::Signature)
        );
    }

    #[test]
    fn a_browser_decrypts_what_web_push_native_encrypts_for_it() {
        let browser = Browser::new();
        let public = p256::PublicKey::from_sec1_bytes(&browser.public_key_bytes()).unwrap();
        let body = web_push_native::encrypt(
            b"hello browser".to_vec(),
            &public,
            &web_push_native::Auth::from(browser.auth),
        )
        .unwrap();
        assert_eq!(browser.decrypt(&body).unwrap(), b"hello browser");
        assert_eq!(Browser::new().decrypt(&body), Err(DecryptError::Decrypt));
        assert!(matches!(
            browser.decrypt(&body[..40]),
            Err(DecryptError::Malformed(_))
        ));
    }
}
