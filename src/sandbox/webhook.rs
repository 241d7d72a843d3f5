//! A local webhook receiver, as a member would run one: it accepts Standard Webhooks
//! deliveries (`POST` with `webhook-id`, `webhook-timestamp` and `webhook-signature`), checks
//! each signature with [`crate::channels::webhook::verify`] against the secret it was started
//! with, and answers 204 when it verifies and 401 when it does not.
//!
//! Owns nothing of Herald's: it records every request it gets (verified or not, with the
//! status it answered) so tests can assert on the wire and count duplicates by `webhook-id`,
//! and injects faults (one per request, in order) so tests can drive every failure the
//! webhook adapter classifies. Binds loopback only. Must not be used by the serving path.
//!
//! It answers on any path and method (so a client that wrongly followed a redirect would be
//! seen arriving at `/moved`), and it is built for volume: state is one `Mutex<Vec>` appended
//! to per request, with no sleeps except an injected [`Fault::Hang`], so it takes tens of
//! thousands of deliveries in seconds (crash tests count duplicates over that many).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::watch;
use url::Url;

use crate::channels::webhook::{DEFAULT_TOLERANCE, WebhookSecret, verify};

/// A failure the next request gets instead of the normal answer. The request is still
/// recorded, with its signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an empty body. A 3xx carries `Location: /moved` (on this same
    /// receiver), so following it would show up as a second request.
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then answer normally (a client with a shorter timeout has given up).
    Hang(Duration),
    /// 410 Gone: the receiver asks the sender to stop.
    Gone,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `webhook-id` (empty when absent).
    pub id: String,
    /// `webhook-timestamp` (0 when absent or not a number).
    pub timestamp: i64,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body exactly as received: what the signature covers.
    pub raw: Bytes,
    pub headers: HeaderMap,
    /// Whether the signature verified (secret, and timestamp within five minutes).
    pub verified: bool,
    /// The path it was sent to (`/hook` normally).
    pub path: String,
    /// The status it was answered with.
    pub status: u16,
}

struct ReceiverState {
    secret: WebhookSecret,
    faults: Mutex<VecDeque<Fault>>,
    deliveries: Mutex<Vec<Delivery>>,
    /// How many deliveries are recorded, for [`WebhookReceiver::wait_for`].
    count: watch::Sender<usize>,
}

/// The local receiver. Clones share the same server.
#[derive(Clone)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl WebhookReceiver {
    /// Listen on a free loopback port, verifying deliveries against `secret`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a sandbox-only helper; nothing to recover).
    pub async fn start(secret: WebhookSecret) -> Self {
        let state = Arc::new(ReceiverState {
            secret,
            faults: Mutex::default(),
            deliveries: Mutex::default(),
            count: watch::channel(0).0,
        });
        let router = Router::new().fallback(receive).with_state(state.clone());
        let addr = super::serve(router)
            .await
            .expect("bind a loopback port for the webhook receiver");
        Self { addr, state }
    }

    /// The endpoint to register: `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/hook", self.addr)).expect("valid loopback URL")
    }

    /// The secret it verifies with.
    pub fn secret(&self) -> &WebhookSecret {
        &self.state.secret
    }

    /// Queue a fault for the next request that has none yet.
    pub fn fail_next(&self, fault: Fault) {
        self.state
            .faults
            .lock()
            .expect("webhook faults lock")
            .push_back(fault);
    }

    /// Every request received, in the order they were answered.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state
            .deliveries
            .lock()
            .expect("webhook deliveries lock")
            .clone()
    }

    /// The deliveries it accepted (verified and answered 2xx), in order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.verified && (200..300).contains(&d.status))
            .collect()
    }

    /// How many requests were received.
    pub fn len(&self) -> usize {
        *self.state.count.borrow()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until at least `n` requests were received or `timeout` passed, then return them
    /// all (fewer than `n` on timeout: the caller asserts).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let mut count = self.state.count.subscribe();
        let _ = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await;
        self.deliveries()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let verified = verify(
        &state.secret,
        &headers,
        &raw,
        chrono::Utc::now().timestamp(),
        DEFAULT_TOLERANCE,
    )
    .is_ok();
    let fault = state
        .faults
        .lock()
        .expect("webhook faults lock")
        .pop_front();
    if let Some(Fault::Hang(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let response = answer(fault, verified);
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        id: text("webhook-id").unwrap_or_default().to_string(),
        timestamp: text("webhook-timestamp")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
        verified,
        path: uri.path().to_string(),
        status: response.status().as_u16(),
        headers,
    };
    let mut deliveries = state.deliveries.lock().expect("webhook deliveries lock");
    deliveries.push(delivery);
    // Under the lock, so the count never goes backwards.
    state.count.send_replace(deliveries.len());
    drop(deliveries);
    response
}

fn answer(fault: Option<Fault>, verified: bool) -> Response {
    match fault {
        Some(Fault::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = status.into_response();
            if status.is_redirection() {
                response
                    .headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/moved"));
            }
            response
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            response
        }
        Some(Fault::Gone) => StatusCode::GONE.into_response(),
        Some(Fault::Hang(_)) | None if verified => StatusCode::NO_CONTENT.into_response(),
        Some(Fault::Hang(_)) | None => {
            (StatusCode::UNAUTHORIZED, "signature did not verify").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::webhook::sign;

    async fn post(receiver: &WebhookReceiver, id: &str, signature: Option<&str>) -> u16 {
        let body = br#"{"n":1}"#;
        let now = chrono::Utc::now().timestamp();
        let signature = signature
            .map(str::to_string)
            .unwrap_or_else(|| sign(receiver.secret(), id, now, body));
        reqwest::Client::new()
            .post(receiver.url())
            .header("webhook-id", id)
            .header("webhook-timestamp", now)
            .header("webhook-signature", signature)
            .body(&body[..])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn signed_deliveries_are_accepted_and_unsigned_ones_refused_but_recorded() {
        let receiver = WebhookReceiver::start(WebhookSecret::generate()).await;
        assert_eq!(post(&receiver, "a", None).await, 204);
        let forged = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(post(&receiver, "b", Some(forged)).await, 401);
        let all = receiver.wait_for(2, Duration::from_secs(5)).await;
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].id.as_str(), all[0].verified, all[0].status),
            ("a", true, 204)
        );
        assert_eq!(
            (all[1].id.as_str(), all[1].verified, all[1].status),
            ("b", false, 401)
        );
        assert_eq!(all[0].body, serde_json::json!({"n": 1}));
        assert_eq!(all[0].path, "/hook");
        assert_eq!(receiver.accepted().len(), 1);
    }

    #[tokio::test]
    async fn faults_are_consumed_one_per_request() {
        let receiver = WebhookReceiver::start(WebhookSecret::generate()).await;
        receiver.fail_next(Fault::Gone);
        receiver.fail_next(Fault::RateLimited {
            retry_after_secs: 3,
        });
        receiver.fail_next(Fault::Status(503));
        assert_eq!(post(&receiver, "a", None).await, 410);
        assert_eq!(post(&receiver, "a", None).await, 429);
        assert_eq!(post(&receiver, "a", None).await, 503);
        assert_eq!(post(&receiver, "a", None).await, 204);
        let all = receiver.deliveries();
        assert!(all.iter().all(|d| d.verified));
        assert_eq!(all.len(), 4);
        assert_eq!(receiver.accepted().len(), 1);
    }

    #[test]
    fn redirects_point_back_at_the_receiver() {
        let response = answer(Some(Fault::Status(307)), true);
        assert_eq!(response.status(), 307);
        assert_eq!(response.headers()[header::LOCATION], "/moved");
        let response = answer(
            Some(Fault::RateLimited {
                retry_after_secs: 9,
            }),
            true,
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "9");
    }
}
