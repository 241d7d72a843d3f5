//! Twilio's inbound-SMS webhook: the `X-Twilio-Signature` check and the TwiML answer.
//!
//! Twilio signs every webhook request (twilio.com/docs/usage/security): take the full URL
//! Twilio requested (scheme, host, path and query, exactly as configured on the number), then
//! every POST parameter sorted by name, each name immediately followed by its value, no
//! separators; HMAC-SHA1 that string with the account's auth token; base64 the digest. Herald
//! rebuilds the URL from `HERALD_PUBLIC_URL` and the request's path and query, since behind a
//! proxy the request it sees is not the one Twilio sent, and compares in constant time.
//!
//! The answer is TwiML, `<Response><Message>…</Message></Response>`, which Twilio sends back
//! to the sender as an SMS; an empty `<Response/>` sends nothing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The request header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The `X-Twilio-Signature` of a POST to `url` with form `params`, under `auth_token`.
pub fn signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Twilio's helpers sort by name, and a repeated name's values among themselves.
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `given` is the signature of this request.
pub fn verify(auth_token: &[u8], url: &str, params: &[(String, String)], given: &str) -> bool {
    let expected = signature(auth_token, url, params);
    bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes()))
}

/// The TwiML answer: `reply` sent back to the sender, or nothing.
pub fn twiml(reply: Option<&str>) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#);
    if let Some(text) = reply {
        out.push_str("<Message>");
        out.push_str(&xml_escape(text));
        out.push_str("</Message>");
    }
    out.push_str("</Response>");
    out
}

/// Text as XML character data (attribute-safe too).
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example of Twilio's request-validation documentation (twilio-php's "Validate
    /// Incoming Requests"): auth token `12345`, this URL and these parameters sign to
    /// `RSOYDt4T1cUTdK1PDd93/VVr8B8=`.
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn documented() -> Vec<(String, String)> {
        // Given out of order on purpose: the signature sorts them.
        params(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn twilios_documented_example_signs_as_documented() {
        assert_eq!(
            signature(b"12345", URL, &documented()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(verify(
            b"12345",
            URL,
            &documented(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify(b"12346", URL, &documented(), good));
        assert!(!verify(
            b"12345",
            "https://mycompany.com/myapp.php",
            &documented(),
            good
        ));
        let mut changed = documented();
        changed[2].1 = "1235".into();
        assert!(!verify(b"12345", URL, &changed, good));
        assert!(!verify(b"12345", URL, &documented(), ""));
    }

    #[test]
    fn twiml_escapes_the_reply_and_an_empty_answer_sends_nothing() {
        assert_eq!(
            twiml(Some("Reply STOP & <go> \"now\"")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Reply STOP &amp; \
             &lt;go&gt; &quot;now&quot;</Message></Response>"
        );
        assert_eq!(
            twiml(None),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>"
        );
    }
}
