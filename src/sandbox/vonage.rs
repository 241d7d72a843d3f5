//! A local stand-in for Vonage's SMS API: `POST /sms/json` with form fields, answering HTTP 200
//! with Vonage's per-part status list — `{"message-count":"N","messages":[{"to","message-id",
//! "status":"0","remaining-balance","message-price","network"},…]}` when accepted,
//! `{"message-count":"1","messages":[{"status":"N","error-text":"…"}]}` when refused.
//!
//! Owns nothing of Herald's: it records what it received so tests can assert on the wire, and
//! injects faults (one per request, in order) so tests can drive every failure the Vonage
//! adapter classifies. Binds loopback only. Must not be used by the serving path.
//!
//! What it checks, like Vonage (statuses from Vonage's "SMS API error codes" table):
//! `api_key` and `api_secret` present (status 2) — as form fields, or as HTTP basic auth as
//! Vonage also accepts — and matching the configured account (status 4, "Bad Credentials");
//! `from`, `to` and `text` present (status 2); `to` 7 to 15 digits without a `+` (status 3);
//! `type` absent, `text` or `unicode` (status 3; binary, WAP push and vCard are not modelled);
//! `client-ref` at most 100 characters (status 3). An accepted text is split into parts as
//! Vonage splits it — 160 GSM-7 septets in one SMS and 153 per part beyond (extension-table
//! characters take two), or 70 UTF-16 units and 67 per part with `type=unicode` — and each part
//! gets its own `message-id`. Refusals that concern the number echo it, in `to` and in
//! `error-text`, so tests can check that the adapter never passes them on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use url::Url;

/// Longest `client-ref` Vonage documents.
const MAX_CLIENT_REF: usize = 100;

/// A failure the next SMS request gets instead of the normal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This HTTP status with a short plain-text body, as a gateway in front of the API would
    /// answer (the SMS API itself answers 200).
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then handle the request normally (a client with a shorter timeout has
    /// given up by then).
    Hang(Duration),
    /// HTTP 200 with one refused entry: this `status` and Vonage's `error-text` for it (and
    /// the number in `to`, as Vonage echoes it). Status 0 means no fault.
    VonageStatus(u32),
    /// The text is split and accepted as usual except part `part` (counted from 1), which is
    /// refused with `status`: a partial failure. Nothing is recorded as accepted.
    PartStatus { part: usize, status: u32 },
}

/// A message Vonage accepted (every part answered status 0).
#[derive(Debug, Clone)]
pub struct SmsMessage {
    /// One per SMS part, in order.
    pub message_ids: Vec<String>,
    /// As sent: digits without `+`.
    pub to: String,
    pub from: String,
    pub text: String,
    /// The `type` field, when sent (`unicode` for non-GSM-7 text).
    pub message_type: Option<String>,
    pub client_ref: Option<String>,
    /// The request's headers, for asserting on content type.
    pub headers: HeaderMap,
}

/// Any request to the SMS endpoint, accepted or not.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    /// Form fields in the order sent.
    pub form: Vec<(String, String)>,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// Vonage's per-part statuses in the answer (empty when the answer was an HTTP error).
    pub statuses: Vec<u32>,
}

struct VonageState {
    api_key: String,
    api_secret: String,
    faults: Mutex<VecDeque<Fault>>,
    messages: Mutex<Vec<SmsMessage>>,
    requests: Mutex<Vec<Request>>,
}

/// The local Vonage. Clones share the same server.
#[derive(Clone)]
pub struct Vonage {
    addr: SocketAddr,
    state: Arc<VonageState>,
}

impl Vonage {
    /// Serve one account, `api_key` authenticated by `api_secret`.
    pub async fn start(api_key: &str, api_secret: &str) -> std::io::Result<Self> {
        let state = Arc::new(VonageState {
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
            faults: Mutex::default(),
            messages: Mutex::default(),
            requests: Mutex::default(),
        });
        let router = Router::new()
            .route("/sms/json", post(send_sms))
            .fallback(not_found)
            .with_state(state.clone());
        Ok(Self {
            addr: super::serve(router).await?,
            state,
        })
    }

    /// The API root, as `HERALD_VONAGE_API_URL` expects it.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("valid loopback URL")
    }

    /// Queue a fault for the next request that has none yet.
    pub fn fail_next(&self, fault: Fault) {
        self.state
            .faults
            .lock()
            .expect("vonage faults lock")
            .push_back(fault);
    }

    /// Messages accepted, in order.
    pub fn messages(&self) -> Vec<SmsMessage> {
        self.state
            .messages
            .lock()
            .expect("vonage messages lock")
            .clone()
    }

    /// Every request to the SMS endpoint, in order, with what it was answered.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .expect("vonage requests lock")
            .clone()
    }
}

async fn send_sms(
    State(state): State<Arc<VonageState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let fault = state.faults.lock().expect("vonage faults lock").pop_front();
    if let Some(Fault::Hang(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let (response, statuses) = answer(&state, &headers, &form, fault);
    state
        .requests
        .lock()
        .expect("vonage requests lock")
        .push(Request {
            path: uri.path().to_string(),
            headers,
            form,
            status: response.status().as_u16(),
            statuses,
        });
    response
}

fn answer(
    state: &VonageState,
    headers: &HeaderMap,
    form: &[(String, String)],
    fault: Option<Fault>,
) -> (Response, Vec<u32>) {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let to = field("to").unwrap_or_default();
    let mut failing_part = None;
    match fault {
        Some(Fault::Status(status)) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text = code.canonical_reason().unwrap_or("Error");
            return ((code, text.to_string()).into_response(), Vec::new());
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            return (response, Vec::new());
        }
        Some(Fault::VonageStatus(status)) if status != 0 => {
            return refused(status, &error_text(status, to), Some(to));
        }
        Some(Fault::PartStatus { part, status }) => failing_part = Some((part, status)),
        Some(Fault::Hang(_) | Fault::VonageStatus(_)) | None => {}
    }

    let (basic_key, basic_secret) = basic_auth(headers).unzip();
    let Some(api_key) = field("api_key").or(basic_key.as_deref()) else {
        return refused(2, "Missing api_key", None);
    };
    let Some(api_secret) = field("api_secret").or(basic_secret.as_deref()) else {
        return refused(2, "Missing api_secret", None);
    };
    if api_key != state.api_key || api_secret != state.api_secret {
        return refused(4, "Bad Credentials", None);
    }
    let Some(from) = field("from") else {
        return refused(2, "Missing from param", None);
    };
    let Some(to) = field("to") else {
        return refused(2, "Missing to param", None);
    };
    let message_type = field("type");
    let unicode = match message_type {
        None | Some("text") => false,
        Some("unicode") => true,
        Some(_) => return refused(3, "Invalid message type", Some(to)),
    };
    let Some(text) = field("text") else {
        return refused(2, "Missing text param", Some(to));
    };
    if !(7..=15).contains(&to.len()) || !to.bytes().all(|b| b.is_ascii_digit()) {
        return refused(3, &error_text(3, to), Some(to));
    }
    let client_ref = field("client-ref");
    if client_ref.is_some_and(|r| r.chars().count() > MAX_CLIENT_REF) {
        return refused(3, "Invalid client-ref param", Some(to));
    }

    let parts = parts(text, unicode);
    let mut statuses = Vec::with_capacity(parts);
    let mut entries = Vec::with_capacity(parts);
    let mut message_ids = Vec::with_capacity(parts);
    for part in 1..=parts {
        let mut entry = match failing_part {
            Some((failing, status)) if failing == part && status != 0 => {
                statuses.push(status);
                json!({"to": to, "status": status.to_string(),
                       "error-text": error_text(status, to)})
            }
            _ => {
                let id = message_id();
                message_ids.push(id.clone());
                statuses.push(0);
                json!({"to": to, "message-id": id, "status": "0",
                       "remaining-balance": "15.53590000", "message-price": "0.03330000",
                       "network": "23410"})
            }
        };
        if let Some(client_ref) = client_ref {
            entry["client-ref"] = json!(client_ref);
        }
        entries.push(entry);
    }
    if statuses.iter().all(|s| *s == 0) {
        state
            .messages
            .lock()
            .expect("vonage messages lock")
            .push(SmsMessage {
                message_ids,
                to: to.to_string(),
                from: from.to_string(),
                text: text.to_string(),
                message_type: message_type.map(str::to_string),
                client_ref: client_ref.map(str::to_string),
                headers: headers.clone(),
            });
    }
    let body = json!({"message-count": parts.to_string(), "messages": entries});
    ((StatusCode::OK, axum::Json(body)).into_response(), statuses)
}

/// HTTP 200 with one refused entry, as Vonage answers a message it did not take.
fn refused(status: u32, error_text: &str, to: Option<&str>) -> (Response, Vec<u32>) {
    let mut entry = json!({"status": status.to_string(), "error-text": error_text});
    if let Some(to) = to.filter(|to| !to.is_empty()) {
        entry["to"] = json!(to);
    }
    let body = json!({"message-count": "1", "messages": [entry]});
    (
        (StatusCode::OK, axum::Json(body)).into_response(),
        vec![status],
    )
}

/// Vonage's `error-text` for a status. Those about the number name it, as Vonage's
/// parameter errors quote the value.
fn error_text(status: u32, to: &str) -> String {
    match status {
        1 => "Throttled".into(),
        2 => "Missing to param".into(),
        3 => format!("Invalid to param: {to}"),
        4 => "Bad Credentials".into(),
        5 => "Internal Error".into(),
        6 => format!("Invalid Message: unrecognised prefix for {to}"),
        7 => format!("Number barred: {to}"),
        8 => "Partner Account Barred".into(),
        9 => "Quota Exceeded - rejected".into(),
        10 => "Too Many Existing Binds".into(),
        11 => "Account Not Enabled For HTTP".into(),
        12 => "Message Too Long".into(),
        14 => "Invalid Signature".into(),
        15 => "Illegal Sender Address - rejected".into(),
        22 => format!("Invalid Network Code for {to}"),
        23 => "Invalid Callback Url".into(),
        29 => format!("Non White-listed Destination - rejected: {to}"),
        32 => "Signature And API Secret Disallowed".into(),
        33 => format!("Number De-activated: {to}"),
        _ => "Error".into(),
    }
}

/// `Authorization: Basic key:secret`, which Vonage accepts instead of the form fields.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (key, secret) = decoded.split_once(':')?;
    Some((key.to_string(), secret.to_string()))
}

/// GSM 03.38 extension-table characters: two septets each in `type=text`.
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// The SMS parts Vonage splits a text into.
fn parts(text: &str, unicode: bool) -> usize {
    let (length, single, per_part) = if unicode {
        (text.encode_utf16().count(), 70, 67)
    } else {
        let septets = text
            .chars()
            .map(|c| if GSM7_EXTENSION.contains(c) { 2 } else { 1 })
            .sum();
        (septets, 160, 153)
    };
    if length <= single {
        1
    } else {
        length.div_ceil(per_part)
    }
}

/// An id shaped like Vonage's (`0C000000217B7F02`: 16 upper-case hex digits).
fn message_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const KEY: &str = "abcd1234";
    const SECRET: &str = "s3cretvalue";

    async fn post(vonage: &Vonage, form: &[(&str, &str)]) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}sms/json", vonage.url()))
            .form(form)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    fn message(to: &'static str, text: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("api_key", KEY),
            ("api_secret", SECRET),
            ("from", "Herald"),
            ("to", to),
            ("text", text),
        ]
    }

    #[test]
    fn texts_are_split_like_vonage_splits_them() {
        assert_eq!(parts(&"a".repeat(160), false), 1);
        assert_eq!(parts(&"a".repeat(161), false), 2);
        assert_eq!(parts(&"a".repeat(306), false), 2);
        assert_eq!(parts(&"a".repeat(307), false), 3);
        // Extension characters take two septets.
        assert_eq!(parts(&"€".repeat(80), false), 1);
        assert_eq!(parts(&"€".repeat(81), false), 2);
        assert_eq!(parts(&"世".repeat(70), true), 1);
        assert_eq!(parts(&"世".repeat(71), true), 2);
        // An emoji is two UTF-16 units.
        assert_eq!(parts(&"🎉".repeat(35), true), 1);
        assert_eq!(parts(&"🎉".repeat(36), true), 2);
    }

    #[tokio::test]
    async fn wrong_credentials_get_status_4_in_a_200() {
        let vonage = Vonage::start(KEY, SECRET).await.unwrap();
        let mut form = message("447700900000", "hi");
        form[1].1 = "nope";
        let (status, body) = post(&vonage, &form).await;
        assert_eq!(status, 200);
        assert_eq!(body["message-count"], "1");
        assert_eq!(body["messages"][0]["status"], "4");
        assert_eq!(body["messages"][0]["error-text"], "Bad Credentials");
        assert!(vonage.messages().is_empty());
        assert_eq!(vonage.requests()[0].statuses, vec![4]);
    }

    #[tokio::test]
    async fn basic_auth_is_accepted_instead_of_form_credentials() {
        let vonage = Vonage::start(KEY, SECRET).await.unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}sms/json", vonage.url()))
            .basic_auth(KEY, Some(SECRET))
            .form(&[("from", "Herald"), ("to", "447700900000"), ("text", "hi")])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["messages"][0]["status"], "0");
        assert_eq!(vonage.messages().len(), 1);
    }

    #[tokio::test]
    async fn missing_fields_and_bad_numbers_get_vonages_statuses() {
        let vonage = Vonage::start(KEY, SECRET).await.unwrap();
        let status = |body: &Value| body["messages"][0]["status"].as_str().unwrap().to_owned();

        let (_, body) = post(&vonage, &[("api_secret", SECRET)]).await;
        assert_eq!(status(&body), "2");
        let mut form = message("447700900000", "hi");
        form.retain(|(k, _)| *k != "from");
        assert_eq!(status(&post(&vonage, &form).await.1), "2");
        let mut form = message("447700900000", "hi");
        form.retain(|(k, _)| *k != "text");
        assert_eq!(status(&post(&vonage, &form).await.1), "2");

        for bad in ["+447700900000", "4479", "4477-009-0000"] {
            let (code, body) = post(&vonage, &message(bad, "hi")).await;
            assert_eq!((code, status(&body)), (200, "3".into()), "{bad}");
            assert!(
                body["messages"][0]["error-text"]
                    .as_str()
                    .unwrap()
                    .contains(bad)
            );
        }
        let mut form = message("447700900000", "hi");
        form.push(("type", "binary"));
        assert_eq!(status(&post(&vonage, &form).await.1), "3");
        assert!(vonage.messages().is_empty());
    }

    #[tokio::test]
    async fn accepted_messages_look_like_vonages_answer() {
        let vonage = Vonage::start(KEY, SECRET).await.unwrap();
        let mut form = message("447700900000", "hello");
        form.push(("client-ref", "delivery-7"));
        let (status, body) = post(&vonage, &form).await;
        assert_eq!(status, 200);
        assert_eq!(body["message-count"], "1");
        let entry = &body["messages"][0];
        assert_eq!(entry["status"], "0");
        assert_eq!(entry["to"], "447700900000");
        assert_eq!(entry["client-ref"], "delivery-7");
        let id = entry["message-id"].as_str().unwrap();
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        let accepted = &vonage.messages()[0];
        assert_eq!(accepted.message_ids, vec![id.to_string()]);
        assert_eq!(accepted.client_ref.as_deref(), Some("delivery-7"));
        assert_eq!(accepted.message_type, None);
    }

    #[tokio::test]
    async fn long_texts_are_answered_part_by_part() {
        let vonage = Vonage::start(KEY, SECRET).await.unwrap();
        let text: &'static str = "x".repeat(400).leak();
        let (_, body) = post(&vonage, &message("447700900000", text)).await;
        assert_eq!(body["message-count"], "3");
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
        assert_eq!(vonage.messages()[0].message_ids.len(), 3);
    }

    #[tokio::test]
    async fn faults_are_consumed_one_per_request() {
        let vonage = Vonage::start(KEY, SECRET).await.unwrap();
        vonage.fail_next(Fault::VonageStatus(7));
        vonage.fail_next(Fault::RateLimited {
            retry_after_secs: 3,
        });
        vonage.fail_next(Fault::PartStatus { part: 2, status: 1 });
        let form = message("447700900000", "x");
        let (status, body) = post(&vonage, &form).await;
        assert_eq!((status, &body["messages"][0]["status"]), (200, &json!("7")));
        assert_eq!(post(&vonage, &form).await.0, 429);
        // A one-part text has no part 2 to refuse.
        assert_eq!(post(&vonage, &form).await.1["messages"][0]["status"], "0");
        assert_eq!(post(&vonage, &form).await.0, 200);
        let statuses: Vec<Vec<u32>> = vonage.requests().into_iter().map(|r| r.statuses).collect();
        assert_eq!(statuses, vec![vec![7], vec![], vec![0], vec![0]]);
        assert_eq!(vonage.messages().len(), 2);
    }
}
