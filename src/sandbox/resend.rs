//! A local stand-in for Resend's email API: `POST /emails` with a bearer API key and a JSON
//! body, answering `200 {"id": "…"}` or Resend's error JSON
//! (`{"statusCode", "message", "name"}`).
//!
//! Owns nothing of Herald's: it records what it received so tests can assert on the wire, and
//! injects faults (one per request, in order) so tests can drive every failure the Resend
//! adapter classifies. Binds loopback only. Must not be used by the serving path.
//!
//! What it checks, like Resend:
//! - the key: no `Authorization: Bearer …` is 401 `missing_api_key`, another key 403
//!   `invalid_api_key`;
//! - the body: JSON, `from`, `to` (a string or 1–50 strings) and `subject` present (422
//!   `missing_required_field`), `text` or `html` present, `from` and every `to` an address
//!   or `Name <address>` (422 `invalid_from_address` / `validation_error`), `headers` an
//!   object of strings (422 `validation_error`);
//! - `Idempotency-Key`: 1–256 characters (400 `invalid_idempotency_key`). A key seen on an
//!   accepted email answers a repeat with the same body with the same id, recording no second
//!   email; with a different body it answers 409 `invalid_idempotent_request`; while the
//!   first request with that key is still being handled, 409 `concurrent_idempotent_requests`.
//!   Keys are kept for the server's lifetime (Resend keeps them 24 hours); only accepted
//!   requests are remembered, so a refused one may be retried with its key.
//!
//! Some error messages quote addresses, as some of Resend's do, so tests can check that the
//! adapter never passes them on. Every answer carries Resend's `ratelimit-*` headers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use url::Url;

/// Requests per second the sandbox advertises in `ratelimit-limit` (Resend's default).
const RATE_LIMIT: u64 = 5;

/// A failure the next `POST /emails` gets instead of the normal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with Resend's error body for it (`name` as Resend uses it for that status:
    /// 400 `validation_error`, 401 `missing_api_key`, 403 `invalid_api_key`, 404 `not_found`,
    /// 409 `concurrent_idempotent_requests`, 422 `validation_error`, 429 `rate_limit_exceeded`,
    /// 451 `security_error`, 500 `internal_server_error`, other 5xx `application_error`).
    Status(u16),
    /// 429 `rate_limit_exceeded` with `Retry-After: <secs>` and `ratelimit-reset: <secs>`.
    RateLimited { retry_after_secs: u64 },
    /// 429 `daily_quota_exceeded`, without `Retry-After` (Resend gives none for quotas).
    DailyQuota,
    /// 429 `monthly_quota_exceeded`, without `Retry-After`.
    MonthlyQuota,
    /// Wait this long, then handle the request normally (a client with a shorter timeout has
    /// given up by then; the email is still accepted, as Resend would).
    Hang(Duration),
    /// 422 `validation_error` whose message quotes the recipient.
    Validation,
}

/// An email Resend accepted (answered 200), recorded once however often it was retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEmail {
    pub id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The `headers` object, by name as sent.
    pub headers: BTreeMap<String, String>,
    /// The `Idempotency-Key` header, when sent.
    pub idempotency_key: Option<String>,
}

/// Any request the server received, accepted or not.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The body parsed as JSON (`Null` when it was not JSON).
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

struct Remembered {
    body: Value,
    id: String,
}

struct ResendState {
    api_key: String,
    faults: Mutex<VecDeque<Fault>>,
    emails: Mutex<Vec<ReceivedEmail>>,
    requests: Mutex<Vec<Request>>,
    /// Idempotency keys of accepted emails.
    keys: Mutex<HashMap<String, Remembered>>,
    /// Idempotency keys whose first request is being handled.
    in_flight: Mutex<HashSet<String>>,
}

/// The local Resend. Clones share the same server.
#[derive(Clone)]
pub struct Resend {
    addr: SocketAddr,
    state: Arc<ResendState>,
}

impl Resend {
    /// Serve one account, authenticated by `api_key` (`re_…`).
    pub async fn start(api_key: &str) -> std::io::Result<Self> {
        let state = Arc::new(ResendState {
            api_key: api_key.to_string(),
            faults: Mutex::default(),
            emails: Mutex::default(),
            requests: Mutex::default(),
            keys: Mutex::default(),
            in_flight: Mutex::default(),
        });
        let router = Router::new()
            .route("/emails", post(send_email).fallback(method_not_allowed))
            .fallback(not_found)
            .with_state(state.clone());
        Ok(Self {
            addr: super::serve(router).await?,
            state,
        })
    }

    /// The API root, as `HERALD_RESEND_API_URL` expects it.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("valid loopback URL")
    }

    /// Queue a fault for the next request that has none yet.
    pub fn fail_next(&self, fault: Fault) {
        self.state
            .faults
            .lock()
            .expect("resend faults lock")
            .push_back(fault);
    }

    /// Emails accepted, in order; a repeated idempotent request is not a second email.
    pub fn emails(&self) -> Vec<ReceivedEmail> {
        self.state
            .emails
            .lock()
            .expect("resend emails lock")
            .clone()
    }

    /// Every request received, in the order they were answered, with the status each got.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .expect("resend requests lock")
            .clone()
    }

    /// Requests with an idempotency key that are being handled right now (tests wait for one
    /// before sending a concurrent repeat).
    pub fn in_progress(&self) -> usize {
        self.state
            .in_flight
            .lock()
            .expect("resend in-flight lock")
            .len()
    }
}

async fn send_email(
    State(state): State<Arc<ResendState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let fault = state.faults.lock().expect("resend faults lock").pop_front();
    let delay = match fault {
        Some(Fault::Hang(delay)) => Some(delay),
        _ => None,
    };
    let mut response = match fault.and_then(|f| fault_response(f, &json)) {
        Some(response) => response,
        None => handle(&state, &headers, &body, delay).await,
    };
    add_rate_limit_headers(response.headers_mut());
    state
        .requests
        .lock()
        .expect("resend requests lock")
        .push(Request {
            method: Method::POST.to_string(),
            path: uri.path().to_string(),
            headers,
            body: json,
            status: response.status().as_u16(),
        });
    response
}

/// The answer a fault replaces the normal handling with (`None` for `Hang`).
fn fault_response(fault: Fault, body: &Value) -> Option<Response> {
    Some(match fault {
        Fault::Status(status) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (name, message) = name_for(code);
            error(code, name, message)
        }
        Fault::RateLimited { retry_after_secs } => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Too many requests. You can only make 5 requests per second. See rate limit \
                 response headers for more information. Or contact support to increase rate \
                 limit.",
            );
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, retry_after_secs.into());
            headers.insert("ratelimit-reset", retry_after_secs.into());
            headers.insert("ratelimit-remaining", 0.into());
            response
        }
        Fault::DailyQuota => error(
            StatusCode::TOO_MANY_REQUESTS,
            "daily_quota_exceeded",
            "You have reached your daily email sending quota.",
        ),
        Fault::MonthlyQuota => error(
            StatusCode::TOO_MANY_REQUESTS,
            "monthly_quota_exceeded",
            "You have reached your monthly email sending quota.",
        ),
        Fault::Validation => {
            // Quotes the recipient, as Resend's messages sometimes quote an address, so the
            // adapter's refusal to pass messages on is tested.
            let to = match body.get("to") {
                Some(Value::Array(items)) => items.first().and_then(Value::as_str),
                Some(Value::String(s)) => Some(s.as_str()),
                _ => None,
            };
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                &format!(
                    "Invalid `to` field. The email address needs to follow the \
                     `email@example.com` or `Name <email@example.com>` format. Got: {}",
                    to.unwrap_or("nothing")
                ),
            )
        }
        Fault::Hang(_) => return None,
    })
}

/// Resend's error name and message for a status, as `Fault::Status` answers it.
fn name_for(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => (
            "validation_error",
            "We found an error with one or more fields in the request.",
        ),
        401 => (
            "missing_api_key",
            "Missing API key in the authorization header.",
        ),
        403 => ("invalid_api_key", "API key is invalid"),
        404 => ("not_found", "The requested endpoint does not exist."),
        405 => (
            "method_not_allowed",
            "Method is not allowed for the requested path.",
        ),
        409 => (
            "concurrent_idempotent_requests",
            "Same idempotency key used while original request is still in progress.",
        ),
        422 => (
            "validation_error",
            "We found an error with one or more fields in the request.",
        ),
        429 => (
            "rate_limit_exceeded",
            "Too many requests. Please limit the number of requests per second.",
        ),
        451 => (
            "security_error",
            "We may have found a security issue with the request.",
        ),
        500 => ("internal_server_error", "An unexpected error occurred."),
        501..=599 => ("application_error", "An unexpected error occurred."),
        _ => (
            "validation_error",
            "We found an error with one or more fields in the request.",
        ),
    }
}

/// Removes an idempotency key from the in-flight set when the request is done, however it ends
/// (including a client that hung up while the server waited).
struct InFlight<'a> {
    state: &'a ResendState,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state
            .in_flight
            .lock()
            .expect("resend in-flight lock")
            .remove(&self.key);
    }
}

/// The normal handling of `POST /emails`, after `delay` (a `Hang` fault).
async fn handle(
    state: &ResendState,
    headers: &HeaderMap,
    body: &[u8],
    delay: Option<Duration>,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = bearer else {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        return error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "Missing API key in the authorization header. Include the following header \
             Authorization: Bearer YOUR_API_KEY in the request.",
        );
    };
    if key != state.api_key {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        return error(
            StatusCode::FORBIDDEN,
            "invalid_api_key",
            "API key is invalid",
        );
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str() {
            Ok(k) if (1..=256).contains(&k.chars().count()) => Some(k.to_string()),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "The key must be between 1-256 chars.",
                );
            }
        },
    };
    let payload: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                "Invalid JSON body.",
            );
        }
    };
    let mut email = match validate(&payload) {
        Ok(email) => email,
        Err(refusal) => return error(refusal.status, refusal.name, &refusal.message),
    };

    let _in_flight = match &idempotency_key {
        None => None,
        Some(k) => {
            if let Some(seen) = state.keys.lock().expect("resend keys lock").get(k) {
                return if seen.body == payload {
                    created(&seen.id)
                } else {
                    error(
                        StatusCode::CONFLICT,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.",
                    )
                };
            }
            if !state
                .in_flight
                .lock()
                .expect("resend in-flight lock")
                .insert(k.clone())
            {
                return error(
                    StatusCode::CONFLICT,
                    "concurrent_idempotent_requests",
                    "Same idempotency key used while original request is still in progress.",
                );
            }
            Some(InFlight {
                state,
                key: k.clone(),
            })
        }
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }

    let id = uuid::Uuid::new_v4().to_string();
    if let Some(k) = &idempotency_key {
        state.keys.lock().expect("resend keys lock").insert(
            k.clone(),
            Remembered {
                body: payload.clone(),
                id: id.clone(),
            },
        );
    }
    email.id = id.clone();
    email.idempotency_key = idempotency_key;
    state.emails.lock().expect("resend emails lock").push(email);
    created(&id)
}

/// The body's fields (without id and key yet), or Resend's 422 for the first thing wrong.
fn validate(payload: &Value) -> Result<ReceivedEmail, Refusal> {
    let missing = |field: &str| {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_required_field",
            format!("Missing `{field}` field."),
        )
    };
    let string = |field: &str| payload.get(field).and_then(Value::as_str);
    let Some(from) = string("from").filter(|s| !s.is_empty()) else {
        return Err(missing("from"));
    };
    let to: Vec<String> = match payload.get("to") {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut to = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(s) => to.push(s.to_string()),
                    None => {
                        return Err(refuse(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "validation_error",
                            "The `to` field must be a `string` or an `array` of strings.",
                        ));
                    }
                }
            }
            to
        }
        _ => return Err(missing("to")),
    };
    let Some(subject) = string("subject") else {
        return Err(missing("subject"));
    };
    let text = string("text").map(str::to_string);
    let html = string("html").map(str::to_string);
    if text.is_none() && html.is_none() {
        return Err(missing("html` or `text"));
    }
    if !is_address(from) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_from_address",
            "Invalid `from` field. The email address needs to follow the `email@example.com` \
             or `Name <email@example.com>` format.",
        ));
    }
    if to.len() > 50 {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Too many recipients. The maximum is 50.",
        ));
    }
    if let Some(bad) = to.iter().find(|t| !is_address(t)) {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            format!(
                "Invalid `to` field. The email address needs to follow the \
                 `email@example.com` or `Name <email@example.com>` format. Got: {bad}"
            ),
        ));
    }
    let mut extra = BTreeMap::new();
    match payload.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let Some(value) = value.as_str() else {
                    return Err(refuse(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_error",
                        "The `headers` field values must be strings.",
                    ));
                };
                extra.insert(name.clone(), value.to_string());
            }
        }
        Some(_) => {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                "The `headers` field must be an object.",
            ));
        }
    }
    Ok(ReceivedEmail {
        id: String::new(),
        from: from.to_string(),
        to,
        subject: subject.to_string(),
        text,
        html,
        headers: extra,
        idempotency_key: None,
    })
}

/// A 422 (or other) answer `validate` gives, turned into Resend's error body by [`error`].
struct Refusal {
    status: StatusCode,
    name: &'static str,
    message: String,
}

fn refuse(status: StatusCode, name: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        name,
        message: message.into(),
    }
}

/// `address` or `Name <address>`, with one `@` and something on each side.
fn is_address(value: &str) -> bool {
    let value = value.trim();
    let address = match (value.rfind('<'), value.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        (None, None) => value,
        _ => return false,
    };
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn created(id: &str) -> Response {
    (StatusCode::OK, axum::Json(json!({ "id": id }))).into_response()
}

/// Resend's error body.
fn error(status: StatusCode, name: &str, message: &str) -> Response {
    let body = json!({
        "statusCode": status.as_u16(),
        "message": message,
        "name": name,
    });
    (status, axum::Json(body)).into_response()
}

/// The `ratelimit-*` headers Resend puts on every answer (a fault may have set its own).
fn add_rate_limit_headers(headers: &mut HeaderMap) {
    headers
        .entry("ratelimit-limit")
        .or_insert(HeaderValue::from(RATE_LIMIT));
    headers
        .entry("ratelimit-remaining")
        .or_insert(HeaderValue::from(RATE_LIMIT - 1));
    headers
        .entry("ratelimit-reset")
        .or_insert(HeaderValue::from(1u64));
}

async fn not_found(
    State(state): State<Arc<ResendState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The requested endpoint does not exist.",
    );
    add_rate_limit_headers(response.headers_mut());
    record(&state, "?", &uri, headers, &response);
    response
}

async fn method_not_allowed(
    State(state): State<Arc<ResendState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method is not allowed for the requested path.",
    );
    add_rate_limit_headers(response.headers_mut());
    record(&state, method.as_str(), &uri, headers, &response);
    response
}

fn record(state: &ResendState, method: &str, uri: &Uri, headers: HeaderMap, response: &Response) {
    state
        .requests
        .lock()
        .expect("resend requests lock")
        .push(Request {
            method: method.to_string(),
            path: uri.path().to_string(),
            headers,
            body: Value::Null,
            status: response.status().as_u16(),
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "re_sandbox_key";

    async fn post(
        resend: &Resend,
        key: Option<&str>,
        idempotency_key: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}emails", resend.url()))
            .json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    fn body() -> Value {
        json!({"from": "Herald <noreply@herald.test>", "to": ["member@example.org"],
               "subject": "hi", "text": "hello"})
    }

    #[test]
    fn addresses_may_carry_a_display_name() {
        assert!(is_address("member@example.org"));
        assert!(is_address("Member <member@example.org>"));
        assert!(!is_address("member"));
        assert!(!is_address("a@b@c"));
        assert!(!is_address("Member <member@example.org"));
        assert!(!is_address("a b@example.org"));
    }

    #[tokio::test]
    async fn keys_are_checked_like_resend() {
        let resend = Resend::start(KEY).await.unwrap();
        let (status, answer) = post(&resend, None, None, body()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (401, Some("missing_api_key"))
        );
        let (status, answer) = post(&resend, Some("re_other"), None, body()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (403, Some("invalid_api_key"))
        );
        assert_eq!(answer["statusCode"], 403);
        assert!(resend.emails().is_empty());
        assert_eq!(resend.requests().len(), 2);
    }

    #[tokio::test]
    async fn missing_and_malformed_fields_get_422() {
        let resend = Resend::start(KEY).await.unwrap();
        for (field, name) in [
            ("from", "missing_required_field"),
            ("to", "missing_required_field"),
            ("subject", "missing_required_field"),
            ("text", "missing_required_field"),
        ] {
            let mut b = body();
            b.as_object_mut().unwrap().remove(field);
            let (status, answer) = post(&resend, Some(KEY), None, b).await;
            assert_eq!(
                (status, answer["name"].as_str()),
                (422, Some(name)),
                "{field}"
            );
        }
        let mut b = body();
        b["to"] = json!(["not-an-address"]);
        let (status, answer) = post(&resend, Some(KEY), None, b).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (422, Some("validation_error"))
        );
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("not-an-address")
        );
        let mut b = body();
        b["headers"] = json!({"X-Count": 1});
        assert_eq!(post(&resend, Some(KEY), None, b).await.0, 422);
        assert!(resend.emails().is_empty());
    }

    #[tokio::test]
    async fn idempotency_keys_replay_or_conflict() {
        let resend = Resend::start(KEY).await.unwrap();
        let (status, first) = post(&resend, Some(KEY), Some("k1"), body()).await;
        assert_eq!(status, 200);
        let (status, again) = post(&resend, Some(KEY), Some("k1"), body()).await;
        assert_eq!((status, &again), (200, &first));
        let mut other = body();
        other["subject"] = json!("changed");
        let (status, answer) = post(&resend, Some(KEY), Some("k1"), other).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (409, Some("invalid_idempotent_request"))
        );
        let (status, answer) = post(&resend, Some(KEY), Some(&"k".repeat(257)), body()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (400, Some("invalid_idempotency_key"))
        );
        assert_eq!(resend.emails().len(), 1);
        assert_eq!(resend.emails()[0].id, first["id"].as_str().unwrap());
        assert_eq!(resend.requests().len(), 4);
    }

    #[tokio::test]
    async fn faults_are_consumed_one_per_request() {
        let resend = Resend::start(KEY).await.unwrap();
        resend.fail_next(Fault::Status(503));
        resend.fail_next(Fault::DailyQuota);
        let (status, answer) = post(&resend, Some(KEY), None, body()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (503, Some("application_error"))
        );
        let (status, answer) = post(&resend, Some(KEY), None, body()).await;
        assert_eq!(
            (status, answer["name"].as_str()),
            (429, Some("daily_quota_exceeded"))
        );
        assert_eq!(post(&resend, Some(KEY), None, body()).await.0, 200);
        let statuses: Vec<u16> = resend.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![503, 429, 200]);
    }

    #[tokio::test]
    async fn other_paths_and_methods_get_resends_errors() {
        let resend = Resend::start(KEY).await.unwrap();
        let client = reqwest::Client::new();
        let response = client
            .get(format!("{}emails", resend.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        let response = client
            .post(format!("{}v1/emails", resend.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["name"], "not_found");
    }
}
