//! Resend's webhooks: the signature check and the events Herald acts on.
//!
//! Resend delivers webhooks through Svix, which signs them the Standard Webhooks way under
//! other header names: `svix-id`, `svix-timestamp`, `svix-signature` (`v1,<base64>` of
//! HMAC-SHA256 over `{id}.{timestamp}.{body}`) with a `whsec_…` secret. Herald's own webhook
//! code already verifies that scheme ([`crate::channels::webhook::verify`]); this file only
//! maps the `svix-*` names onto the `webhook-*` ones (both are accepted, `webhook-*` first)
//! and reads the event.
//!
//! Events (resend.com/docs, "Event Types"): `{"type": "email.bounced" | "email.complained" |
//! …, "created_at": "<RFC 3339>", "data": {"to": ["<address>", …], "bounce": {"type":
//! "Permanent" | "Transient" | "Undetermined", "subType": …, "message": …}, …}}`. A
//! `Permanent` bounce is hard, anything else soft. The recipient is `data.to[0]`: Herald sends
//! every email to one address. Other event types are acknowledged and ignored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::bounces::Bounce;
use crate::channels::webhook::{self, WebhookError, WebhookSecret};

/// How far `svix-timestamp` may be from Herald's clock (Svix's own libraries use 5 minutes).
pub const TOLERANCE: Duration = webhook::DEFAULT_TOLERANCE;

/// The three headers, each as Standard Webhooks names it and as Svix does.
const HEADERS: [(&str, &str); 3] = [
    ("webhook-id", "svix-id"),
    ("webhook-timestamp", "svix-timestamp"),
    ("webhook-signature", "svix-signature"),
];

/// Check a Resend delivery: its signature headers (`svix-*` or `webhook-*`) and raw body, at
/// `now` (unix seconds).
pub fn verify(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), WebhookError> {
    let mut standard = HeaderMap::new();
    for (name, svix) in HEADERS {
        if let Some(value) = headers.get(name).or_else(|| headers.get(svix)) {
            standard.insert(HeaderName::from_static(name), value.clone());
        }
    }
    webhook::verify(secret, &standard, body, now, TOLERANCE)
}

/// What a Resend event tells Herald about an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// The recipient marked the email as spam.
    Complaint,
    Bounced(Bounce),
    /// Any other event type (sent, delivered, opened…): nothing to do.
    Other,
}

impl Feedback {
    /// For metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Feedback::Complaint => "complaint",
            Feedback::Bounced(Bounce::Hard) => "hard_bounce",
            Feedback::Bounced(Bounce::Soft) => "soft_bounce",
            Feedback::Other => "other",
        }
    }
}

/// One Resend event, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub feedback: Feedback,
    /// `data.to[0]`, when there is one.
    pub recipient: Option<String>,
    /// When it happened (`created_at`), when given and readable.
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the webhook body is not a Resend event (line {line}, column {column})")]
pub struct ParseError {
    line: usize,
    column: usize,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    created_at: Option<String>,
    #[serde(default)]
    data: Data,
}

#[derive(Default, Deserialize)]
struct Data {
    #[serde(default)]
    to: Vec<String>,
    bounce: Option<BounceInfo>,
}

#[derive(Deserialize)]
struct BounceInfo {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Read a (verified) body. The error gives the position only: the body holds addresses.
pub fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| ParseError {
        line: e.line(),
        column: e.column(),
    })?;
    let feedback = match payload.kind.as_str() {
        "email.complained" => Feedback::Complaint,
        "email.bounced" => {
            let permanent = payload
                .data
                .bounce
                .and_then(|b| b.kind)
                .is_some_and(|kind| kind.eq_ignore_ascii_case("Permanent"));
            Feedback::Bounced(if permanent {
                Bounce::Hard
            } else {
                Bounce::Soft
            })
        }
        _ => Feedback::Other,
    };
    Ok(Event {
        feedback,
        recipient: payload
            .data
            .to
            .into_iter()
            .next()
            .map(|to| bare_address(&to)),
        at: payload
            .created_at
            .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
            .map(|at| at.with_timezone(&Utc)),
    })
}

/// `Name <a@example.org>` → `a@example.org`; a bare address as it is.
fn bare_address(to: &str) -> String {
    match (to.rfind('<'), to.rfind('>')) {
        (Some(open), Some(close)) if open < close => to[open + 1..close].to_string(),
        _ => to.to_string(),
    }
}

/// Headers for a delivery signed with `secret` as Resend (Svix) signs it: for tests and the
/// sandbox.
pub fn svix_headers(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let signature = webhook::sign(secret, id, timestamp, body);
    for (name, value) in [
        ("svix-id", id.to_string()),
        ("svix-timestamp", timestamp.to_string()),
        ("svix-signature", signature),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resend's documented `email.bounced` example.
    const BOUNCED: &str = r#"{
      "type": "email.bounced",
      "created_at": "2024-11-22T23:41:12.126Z",
      "data": {
        "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
        "created_at": "2024-11-22T23:41:11.894719+00:00",
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Acme <onboarding@resend.dev>",
        "to": ["delivered@resend.dev"],
        "subject": "Sending this example",
        "template_id": "43f68331-0622-4e15-8202-246a0388854b",
        "bounce": {
          "message": "The recipient's email address is on the suppression list because it has a recent history of producing hard bounces.",
          "subType": "Suppressed",
          "type": "Permanent"
        },
        "tags": {"category": "confirm_email"}
      }
    }"#;

    fn secret() -> WebhookSecret {
        // The example secret of Svix's documentation (24 bytes, as Svix issues them).
        WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    #[test]
    fn resends_documented_bounce_is_a_hard_bounce_for_its_first_recipient() {
        let event = parse(BOUNCED.as_bytes()).unwrap();
        assert_eq!(event.feedback, Feedback::Bounced(Bounce::Hard));
        assert_eq!(event.recipient.as_deref(), Some("delivered@resend.dev"));
        assert_eq!(
            event.at.unwrap().to_rfc3339(),
            "2024-11-22T23:41:12.126+00:00"
        );
    }

    #[test]
    fn transient_and_undetermined_bounces_are_soft_and_complaints_are_complaints() {
        for kind in ["Transient", "Undetermined"] {
            let body = BOUNCED.replace("\"Permanent\"", &format!("\"{kind}\""));
            assert_eq!(
                parse(body.as_bytes()).unwrap().feedback,
                Feedback::Bounced(Bounce::Soft)
            );
        }
        let body = r#"{"type":"email.complained","created_at":"2024-02-22T23:41:12.126Z",
            "data":{"to":["Someone <s@example.org>"]}}"#;
        let event = parse(body.as_bytes()).unwrap();
        assert_eq!(event.feedback, Feedback::Complaint);
        assert_eq!(event.recipient.as_deref(), Some("s@example.org"));
        let body = r#"{"type":"email.delivered","data":{"to":[]}}"#;
        let event = parse(body.as_bytes()).unwrap();
        assert_eq!((event.feedback, event.recipient), (Feedback::Other, None));
    }

    #[test]
    fn a_body_that_is_not_an_event_says_where_not_what() {
        let err = parse(b"{\"data\": \"secret@example.org\"").unwrap_err();
        assert!(!err.to_string().contains("secret@"), "{err}");
    }

    #[test]
    fn svixs_documented_example_verifies() {
        // The values of Svix's manual-verification example; the expected signature was also
        // recomputed independently (Python's `hmac`) over `{id}.{timestamp}.{body}`.
        let body = br#"{"test": 2432232314}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            "svix-id",
            HeaderValue::from_static("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        );
        headers.insert("svix-timestamp", HeaderValue::from_static("1614265330"));
        headers.insert(
            "svix-signature",
            HeaderValue::from_static("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        );
        assert!(verify(&secret(), &headers, body, 1_614_265_330).is_ok());
    }

    #[test]
    fn svix_headers_verify_and_so_do_standard_webhooks_ones() {
        let body = BOUNCED.as_bytes();
        let headers = svix_headers(
            &secret(),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_700_000_000,
            body,
        );
        assert!(verify(&secret(), &headers, body, 1_700_000_010).is_ok());

        let mut standard = HeaderMap::new();
        for (name, svix) in HEADERS {
            standard.insert(
                HeaderName::from_static(name),
                headers.get(svix).unwrap().clone(),
            );
        }
        assert!(verify(&secret(), &standard, body, 1_700_000_010).is_ok());
    }

    #[test]
    fn a_forged_stale_or_unsigned_delivery_is_refused() {
        let body = BOUNCED.as_bytes();
        let now = 1_700_000_000;
        let headers = svix_headers(&secret(), "msg_1", now, body);
        let other = WebhookSecret::parse("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0").unwrap();
        assert!(matches!(
            verify(&other, &headers, body, now),
            Err(WebhookError::InvalidSignature)
        ));
        assert!(matches!(
            verify(&secret(), &headers, b"{}", now),
            Err(WebhookError::InvalidSignature)
        ));
        assert!(matches!(
            verify(&secret(), &headers, body, now + 301),
            Err(WebhookError::TimestampTooOld)
        ));
        assert!(matches!(
            verify(&secret(), &headers, body, now - 301),
            Err(WebhookError::TimestampInFuture)
        ));
        assert!(matches!(
            verify(&secret(), &HeaderMap::new(), body, now),
            Err(WebhookError::MissingHeader(_))
        ));
    }
}
