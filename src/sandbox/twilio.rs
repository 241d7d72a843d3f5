//! A local stand-in for Twilio's Messages API: `POST /2010-04-01/Accounts/{Sid}/Messages.json`
//! with form fields and HTTP basic auth, answering with Twilio's message resource or Twilio's
//! error JSON (`{"code","message","more_info","status"}`).
//!
//! Owns nothing of Herald's: it records what it received so tests can assert on the wire, and
//! injects faults (one per request, in order) so tests can drive every failure the SMS adapter
//! classifies. Binds loopback only. Must not be used by the serving path.
//!
//! What it checks, like Twilio: basic auth against the configured SID and token (and the SID in
//! the path), `To`, `From` and `Body` present, `To` in E.164 (`+` and 9–15 digits), `Body` at
//! most 1600 characters. Error messages echo the number as Twilio's do, so tests can check
//! that the adapter never passes them on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use url::Url;

/// A failure the next Messages request gets instead of the normal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with Twilio's error body for it (code `20000 + status`, which is Twilio's
    /// own code for 404, 429, 500 and 503).
    Status(u16),
    /// 429, code 20429, with `Retry-After: <secs>`.
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then handle the request normally (a client with a shorter timeout has
    /// given up by then).
    Hang(Duration),
    /// 400, code 21610: the recipient replied STOP.
    Unsubscribed,
}

/// A message Twilio accepted (answered 201).
#[derive(Debug, Clone)]
pub struct SmsMessage {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    /// The request's headers, for asserting on authentication and content type.
    pub headers: HeaderMap,
}

/// Any request to the Messages endpoint, accepted or not.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    /// Form fields in the order sent.
    pub form: Vec<(String, String)>,
    /// The status it was answered with.
    pub status: u16,
}

struct TwilioState {
    account_sid: String,
    auth_token: String,
    faults: Mutex<VecDeque<Fault>>,
    messages: Mutex<Vec<SmsMessage>>,
    requests: Mutex<Vec<Request>>,
}

/// The local Twilio. Clones share the same server.
#[derive(Clone)]
pub struct Twilio {
    addr: SocketAddr,
    state: Arc<TwilioState>,
}

impl Twilio {
    /// Serve one account, `account_sid` authenticated by `auth_token`.
    pub async fn start(account_sid: &str, auth_token: &str) -> std::io::Result<Self> {
        let state = Arc::new(TwilioState {
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            faults: Mutex::default(),
            messages: Mutex::default(),
            requests: Mutex::default(),
        });
        let router = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(create_message),
            )
            .fallback(not_found)
            .with_state(state.clone());
        Ok(Self {
            addr: super::serve(router).await?,
            state,
        })
    }

    /// The API root, as `HERALD_SMS_API_URL` expects it.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("valid loopback URL")
    }

    pub fn account_sid(&self) -> &str {
        &self.state.account_sid
    }

    /// Queue a fault for the next request that has none yet.
    pub fn fail_next(&self, fault: Fault) {
        self.state
            .faults
            .lock()
            .expect("twilio faults lock")
            .push_back(fault);
    }

    /// Messages accepted, in order.
    pub fn messages(&self) -> Vec<SmsMessage> {
        self.state
            .messages
            .lock()
            .expect("twilio messages lock")
            .clone()
    }

    /// Every request to the Messages endpoint, in order, with the status it got.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .expect("twilio requests lock")
            .clone()
    }
}

async fn create_message(
    State(state): State<Arc<TwilioState>>,
    Path(sid): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let fault = state.faults.lock().expect("twilio faults lock").pop_front();
    if let Some(Fault::Hang(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let response = answer(&state, &sid, &headers, &form, fault);
    state
        .requests
        .lock()
        .expect("twilio requests lock")
        .push(Request {
            path: uri.path().to_string(),
            headers,
            form,
            status: response.status().as_u16(),
        });
    response
}

fn answer(
    state: &TwilioState,
    sid: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
    fault: Option<Fault>,
) -> Response {
    match fault {
        Some(Fault::Status(status)) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text = code.canonical_reason().unwrap_or("Error");
            return error(code, 20_000 + u32::from(code.as_u16()), text);
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            return response;
        }
        Some(Fault::Unsubscribed) => {
            return error(
                StatusCode::BAD_REQUEST,
                21610,
                "Attempt to send to unsubscribed recipient",
            );
        }
        Some(Fault::Hang(_)) | None => {}
    }

    if !authenticated(state, sid, headers) {
        let mut response = error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        return response;
    }
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let Some(to) = field("To") else {
        return error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    let Some(from) = field("From") else {
        return error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        );
    };
    let Some(body) = field("Body") else {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    if !is_e164(to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if body.chars().count() > 1600 {
        return error(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }

    let message_sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    state
        .messages
        .lock()
        .expect("twilio messages lock")
        .push(SmsMessage {
            sid: message_sid.clone(),
            to: to.to_string(),
            from: from.to_string(),
            body: body.to_string(),
            headers: headers.clone(),
        });
    let now = chrono::Utc::now().to_rfc2822();
    let uri = format!("/2010-04-01/Accounts/{sid}/Messages/{message_sid}");
    let resource = json!({
        "account_sid": sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": now,
        "date_sent": null,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": null,
        "num_media": "0",
        "num_segments": segments(body).to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": message_sid,
        "status": "queued",
        "subresource_uris": {"media": format!("{uri}/Media.json")},
        "to": to,
        "uri": format!("{uri}.json"),
    });
    (StatusCode::CREATED, axum::Json(resource)).into_response()
}

/// Basic auth matching the configured account, for the account named in the path.
fn authenticated(state: &TwilioState, sid: &str, headers: &HeaderMap) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Some(decoded) = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
    else {
        return false;
    };
    decoded.split_once(':') == Some((state.account_sid.as_str(), state.auth_token.as_str()))
        && sid == state.account_sid
}

/// `+` then 9 to 15 digits: the shape Twilio accepts for `To` (E.164 allows at most 15).
fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (9..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// SMS segments Twilio would bill: 160 characters in one, 153 per part when concatenated
/// (GSM-7; close enough for a sandbox that does not model UCS-2).
fn segments(body: &str) -> usize {
    match body.chars().count() {
        0..=160 => 1,
        n => n.div_ceil(153),
    }
}

/// Twilio's error body.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body: Value = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, axum::Json(body)).into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource {} was not found", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC00000000000000000000000000000009";

    async fn post(twilio: &Twilio, auth: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!(
                "{}2010-04-01/Accounts/{SID}/Messages.json",
                twilio.url()
            ))
            .basic_auth(auth.0, Some(auth.1))
            .form(form)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    #[test]
    fn e164_needs_a_plus_and_9_to_15_digits() {
        assert!(is_e164("+14155552671"));
        assert!(is_e164("+123456789"));
        assert!(!is_e164("14155552671"));
        assert!(!is_e164("+12345678"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+1 415 555 2671"));
    }

    #[tokio::test]
    async fn wrong_credentials_get_twilios_20003() {
        let twilio = Twilio::start(SID, "token").await.unwrap();
        let (status, body) = post(
            &twilio,
            (SID, "nope"),
            &[
                ("To", "+14155552671"),
                ("From", "+15005550006"),
                ("Body", "hi"),
            ],
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(body["code"], 20003);
        assert!(twilio.messages().is_empty());
        assert_eq!(twilio.requests().len(), 1);
    }

    #[tokio::test]
    async fn missing_fields_and_bad_numbers_get_twilios_codes() {
        let twilio = Twilio::start(SID, "token").await.unwrap();
        let auth = (SID, "token");
        let (status, body) = post(&twilio, auth, &[("From", "+15005550006"), ("Body", "x")]).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(21604)));
        let (status, body) =
            post(&twilio, auth, &[("To", "+14155552671"), ("From", "+1500")]).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(21602)));
        let (status, body) = post(
            &twilio,
            auth,
            &[("To", "555-2671"), ("From", "+15005550006"), ("Body", "x")],
        )
        .await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(21211)));
        assert!(body["message"].as_str().unwrap().contains("555-2671"));
    }

    #[tokio::test]
    async fn accepted_messages_look_like_twilios_resource() {
        let twilio = Twilio::start(SID, "token").await.unwrap();
        let (status, body) = post(
            &twilio,
            (SID, "token"),
            &[
                ("To", "+14155552671"),
                ("From", "+15005550006"),
                ("Body", "hello"),
            ],
        )
        .await;
        assert_eq!(status, 201);
        let sid = body["sid"].as_str().unwrap();
        assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
        assert_eq!(body["status"], "queued");
        assert_eq!(body["to"], "+14155552671");
        assert_eq!(twilio.messages()[0].sid, sid);
    }

    #[tokio::test]
    async fn faults_are_consumed_one_per_request() {
        let twilio = Twilio::start(SID, "token").await.unwrap();
        twilio.fail_next(Fault::Unsubscribed);
        twilio.fail_next(Fault::RateLimited {
            retry_after_secs: 3,
        });
        let form = [
            ("To", "+14155552671"),
            ("From", "+15005550006"),
            ("Body", "x"),
        ];
        assert_eq!(post(&twilio, (SID, "token"), &form).await.1["code"], 21610);
        assert_eq!(post(&twilio, (SID, "token"), &form).await.1["code"], 20429);
        assert_eq!(post(&twilio, (SID, "token"), &form).await.0, 201);
    }
}
