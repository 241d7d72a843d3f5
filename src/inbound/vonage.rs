//! Vonage's inbound-SMS webhook: the signed-request (`sig`) check.
//!
//! With signed webhooks on (Vonage's "Signing Messages"), each inbound SMS carries `sig`,
//! `timestamp` (unix seconds) and `nonce` beside `msisdn` (the sender, digits without `+`),
//! `to`, `text`, `messageId`, `message-timestamp`… The signature, for the HMAC-SHA256 method
//! Herald requires: every parameter but `sig`, sorted by name, written `&name=value` with any
//! `&` or `=` in a value replaced by `_`, concatenated; HMAC-SHA256 of that under the
//! account's signature secret; hex (Vonage sends it upper-case; compared without case, in
//! constant time). The signed `timestamp` must be within five minutes of Herald's clock, so
//! a captured request cannot be replayed later.
//!
//! Configure the number's inbound webhook as `POST` (form-encoded) and the account's
//! signature method as SHA-256 HMAC; the MD5 methods are not accepted.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far the signed `timestamp` may be from Herald's clock, either way.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a Vonage request's signature does not hold. Nothing of the request is in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no {0} parameter")]
    Missing(&'static str),
    #[error("the request's timestamp is not a unix time")]
    BadTimestamp,
    #[error("the request's timestamp is further than five minutes from now")]
    Stale,
    #[error("the request's signature does not match")]
    Mismatch,
}

/// The `sig` of `params` (any `sig` among them is left out) under `secret`: upper-case hex.
pub fn signature(secret: &[u8], params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for (name, value) in sorted {
        mac.update(b"&");
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(value.replace(['&', '='], "_").as_bytes());
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Check a request's `sig` and `timestamp` at `now` (unix seconds).
pub fn verify(secret: &[u8], params: &[(String, String)], now: i64) -> Result<(), SignatureError> {
    let get = |name: &'static str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(SignatureError::Missing(name))
    };
    let given = get("sig")?;
    let timestamp: i64 = get("timestamp")?
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let tolerance = i64::try_from(TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(timestamp).abs() > tolerance {
        return Err(SignatureError::Stale);
    }
    let expected = signature(secret, params);
    let given = given.trim().to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"vonage-signature-secret";

    fn inbound(sig: Option<&str>, timestamp: &str) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("msisdn", "447700900001"),
            ("to", "447700900000"),
            ("messageId", "0A0000000123ABCD1"),
            ("text", "Hello world & more = fun"),
            ("type", "text"),
            ("keyword", "HELLO"),
            ("message-timestamp", "2020-01-01 12:00:00"),
            ("timestamp", timestamp),
            ("nonce", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(sig) = sig {
            params.push(("sig".into(), sig.into()));
        }
        params
    }

    /// Derived by hand from the documented algorithm (and checked with Python's `hmac` over
    /// `&keyword=HELLO&message-timestamp=2020-01-01 12:00:00&messageId=…&text=Hello world _
    /// more _ fun&timestamp=1578787200&to=447700900000&type=text`): Vonage publishes no
    /// vector of its own.
    const EXPECTED: &str = "6701B9293921947723BF08573B95EE19D7B0EA4FA498D4963F0FEA016E4C24C1";

    #[test]
    fn the_signature_sorts_replaces_and_hmacs_as_documented() {
        assert_eq!(signature(SECRET, &inbound(None, "1578787200")), EXPECTED);
        // `sig` itself is not signed.
        assert_eq!(
            signature(SECRET, &inbound(Some("anything"), "1578787200")),
            EXPECTED
        );
    }

    #[test]
    fn a_signed_fresh_request_verifies_in_either_case() {
        let now = 1_578_787_200 + 299;
        assert_eq!(
            verify(SECRET, &inbound(Some(EXPECTED), "1578787200"), now),
            Ok(())
        );
        let lower = EXPECTED.to_ascii_lowercase();
        assert_eq!(
            verify(SECRET, &inbound(Some(&lower), "1578787200"), now),
            Ok(())
        );
    }

    #[test]
    fn forged_stale_and_unsigned_requests_are_refused() {
        let now = 1_578_787_200;
        assert_eq!(
            verify(b"other", &inbound(Some(EXPECTED), "1578787200"), now),
            Err(SignatureError::Mismatch)
        );
        let mut changed = inbound(Some(EXPECTED), "1578787200");
        changed[3].1 = "STOP".into();
        assert_eq!(verify(SECRET, &changed, now), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(SECRET, &inbound(Some(EXPECTED), "1578787200"), now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &inbound(None, "1578787200"), now),
            Err(SignatureError::Missing("sig"))
        );
        assert_eq!(
            verify(SECRET, &inbound(Some(EXPECTED), "soon"), now),
            Err(SignatureError::BadTimestamp)
        );
    }
}
