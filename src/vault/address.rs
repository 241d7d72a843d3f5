//! Contact addresses as members type them: parsing, normalising and masking. Every address
//! that reaches the vault passes through here first, and the normal form returned is what
//! gets sealed and blind-indexed, so two spellings of one address collide as they should.
//!
//! Owns the rules for what an address may look like. Must not touch storage, keys or the
//! network; and errors never echo the input (they are shown to callers and may be logged).
//!
//! # Decisions
//! - **Email**: ASCII only, a dot-atom local part (no quoted local parts, no comments), a
//!   domain of at least two letter-digit-hyphen labels whose last label is not all digits; no
//!   IP-address domains, no display names, at most 254 characters. Internationalised domains
//!   are accepted in their `xn--` form only, and internationalised local parts not at all: not
//!   every provider speaks SMTPUTF8, and mixed scripts would let look-alike addresses collide
//!   with nothing. `localhost` and other single-label domains are refused: a member's address
//!   must be deliverable from anywhere. The whole address is lower-cased (Herald's decision,
//!   following its sources), so `Alice@Example.org` and `alice@example.org` are one contact.
//! - **Phone**: E.164 only (a leading `+` and the country code). Spaces and `- . ( ) /` are
//!   dropped as formatting; any other character (a letter, a second `+`) is refused rather
//!   than dropped, so `+1 800 FLOWERS` never becomes some other, shorter number. Then 9 to 15
//!   digits, and the number must be valid for its country in libphonenumber's metadata.
//! - **Push**: the endpoint must be `https` on a host name; `http` (and an IP-literal host) only
//!   on loopback, for local test servers. Keys are accepted as padded or unpadded base64url
//!   and returned unpadded.
//!
//! # Phone numbers for tests
//! Fictional `555` numbers such as `+1 555 555 4444` are *invalid* in libphonenumber's metadata
//! and are refused. Valid examples to use elsewhere in Herald's tests:
//! - `+14155552671` (US, San Francisco area code; masked `+1•••••2671`)
//! - `+447911123456` (UK mobile; masked `+44•••••3456`)
//! - `+4915123456789` (DE mobile)
//! - `+33612345678` (FR mobile)
//! - `+61412345678` (AU mobile)

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use email_address::EmailAddress;

use crate::model::{Channel, PushKeys, PushSubscription};

/// RFC 5321's limit on a forward path, less the angle brackets.
const EMAIL_MAX_LEN: usize = 254;
/// Browsers' push endpoints are a few hundred characters; 2 KiB leaves room and bounds what
/// we store and send to.
const PUSH_ENDPOINT_MAX_LEN: usize = 2048;
/// An uncompressed SEC1 P-256 point: 0x04 ‖ x (32) ‖ y (32).
const P256DH_LEN: usize = 65;
/// The Web Push authentication secret (RFC 8291).
const PUSH_AUTH_LEN: usize = 16;
/// Bullets stand for the hidden part; a fixed count hides its length too.
const BULLETS: &str = "•••";

/// Why an address was refused. Messages give the reason and never the address.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("email address is empty")]
    EmailEmpty,
    #[error("email address is longer than 254 characters")]
    EmailTooLong,
    #[error("give the bare email address, without a name or angle brackets")]
    EmailDisplayName,
    #[error("email address must not contain spaces or control characters")]
    EmailWhitespace,
    #[error("email address must be ASCII (write an international domain in its xn-- form)")]
    EmailNotAscii,
    #[error("email address has no @")]
    EmailNoAt,
    #[error("email address has nothing before the @")]
    EmailNoLocalPart,
    #[error("email address has no domain")]
    EmailNoDomain,
    #[error("email address must have a domain name with a dot, like example.org")]
    EmailDomainNoDot,
    #[error("email address domain must be a name, not an IP address")]
    EmailDomainLiteral,
    #[error(
        "email address domain must be dot-separated labels of 1 to 63 letters, digits or hyphens"
    )]
    EmailDomainInvalid,
    #[error("email address has a character that is not allowed before the @")]
    EmailLocalPartInvalid,
    #[error("email address part before the @ is longer than 64 characters")]
    EmailLocalPartTooLong,
    #[error("email address is not valid")]
    EmailInvalid,
    #[error("phone number is empty")]
    PhoneEmpty,
    #[error("phone number must start with + and the country code")]
    PhoneNoPlus,
    #[error("phone number may contain only digits, spaces and - . ( ) /")]
    PhoneCharacters,
    #[error("phone number must have 9 to 15 digits after +")]
    PhoneLength,
    #[error("phone number is not a valid number for its country")]
    PhoneInvalid,
    #[error("Telegram chat id must be an integer")]
    TelegramNotInteger,
    #[error("Telegram chat id is out of range")]
    TelegramOutOfRange,
    #[error("push endpoint is longer than 2048 characters")]
    PushEndpointTooLong,
    #[error("push endpoint is not a valid URL")]
    PushEndpointInvalid,
    #[error("push endpoint must be an https URL on a host name")]
    PushEndpointNotHttps,
    #[error("push endpoint must not carry a user name, password or fragment")]
    PushEndpointCredentials,
    #[error("push key p256dh is not valid base64url")]
    PushP256dhBase64,
    #[error("push key p256dh must be a 65-byte uncompressed P-256 public key")]
    PushP256dhLength,
    #[error("push key p256dh is not a point on the P-256 curve")]
    PushP256dhNotOnCurve,
    #[error("push auth secret is not valid base64url")]
    PushAuthBase64,
    #[error("push auth secret must be 16 bytes")]
    PushAuthLength,
}

/// Check an email address and return its normal form (trimmed, lower case).
pub fn parse_email(raw: &str) -> Result<String, AddressError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(AddressError::EmailEmpty);
    }
    if raw.len() > EMAIL_MAX_LEN {
        return Err(AddressError::EmailTooLong);
    }
    if raw.contains(['<', '>']) {
        return Err(AddressError::EmailDisplayName);
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AddressError::EmailWhitespace);
    }
    if !raw.is_ascii() {
        return Err(AddressError::EmailNotAscii);
    }
    let (local, domain) = raw.rsplit_once('@').ok_or(AddressError::EmailNoAt)?;
    if local.is_empty() {
        return Err(AddressError::EmailNoLocalPart);
    }
    if domain.is_empty() {
        return Err(AddressError::EmailNoDomain);
    }
    if domain.starts_with('[') {
        return Err(AddressError::EmailDomainLiteral);
    }
    // Quoted local parts are the only place an `@`, a quote or a backslash may appear; we take
    // dot-atoms only.
    if local.contains(['@', '"', '\\', '(', ')']) {
        return Err(AddressError::EmailLocalPartInvalid);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(AddressError::EmailDomainNoDot);
    }
    if !labels.iter().all(|label| crate::model::is_ldh_label(label)) {
        return Err(AddressError::EmailDomainInvalid);
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(AddressError::EmailDomainLiteral);
    }
    let options = email_address::Options::default()
        .without_display_text()
        .without_domain_literal()
        .with_required_tld();
    EmailAddress::parse_with_options(raw, options).map_err(|e| match e {
        email_address::Error::LocalPartTooLong => AddressError::EmailLocalPartTooLong,
        email_address::Error::InvalidCharacter => AddressError::EmailLocalPartInvalid,
        _ => AddressError::EmailInvalid,
    })?;
    Ok(raw.to_ascii_lowercase())
}

/// Check a phone number and return it in E.164 (`+14155552671`).
pub fn parse_phone(raw: &str) -> Result<String, AddressError> {
    let raw = raw.trim();
    let mut chars = raw.chars();
    let first = chars.next().ok_or(AddressError::PhoneEmpty)?;
    if first != '+' {
        return Err(AddressError::PhoneNoPlus);
    }
    let mut e164 = String::from('+');
    for c in chars {
        match c {
            '0'..='9' => e164.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            c if c.is_whitespace() => {}
            _ => return Err(AddressError::PhoneCharacters),
        }
    }
    if !(9..=15).contains(&(e164.len() - 1)) {
        return Err(AddressError::PhoneLength);
    }
    let number = phonenumber::parse(None, &e164).map_err(|_| AddressError::PhoneInvalid)?;
    if !phonenumber::is_valid(&number) {
        return Err(AddressError::PhoneInvalid);
    }
    // libphonenumber's own E.164 rendering is the canonical form (it is the same string for
    // every number accepted above, but we store what the validator vouched for).
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Check a Telegram chat id. Negative ids (groups and channels) parse; whether they are
/// accepted is the caller's decision.
pub fn parse_telegram_chat(raw: &str) -> Result<i64, AddressError> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::TelegramNotInteger);
    }
    match raw.parse::<i64>() {
        Ok(0) => Err(AddressError::TelegramOutOfRange),
        Ok(id) => Ok(id),
        Err(_) => Err(AddressError::TelegramOutOfRange),
    }
}

/// Check a browser's push subscription and return it normalised: the endpoint as the URL
/// parser writes it, the keys as unpadded base64url.
pub fn parse_push_subscription(sub: &PushSubscription) -> Result<PushSubscription, AddressError> {
    let endpoint = parse_push_endpoint(&sub.endpoint)?;

    let p256dh = decode_base64url(&sub.keys.p256dh).ok_or(AddressError::PushP256dhBase64)?;
    if p256dh.len() != P256DH_LEN || p256dh.first() != Some(&0x04) {
        return Err(AddressError::PushP256dhLength);
    }
    p256::PublicKey::from_sec1_bytes(&p256dh).map_err(|_| AddressError::PushP256dhNotOnCurve)?;

    let auth = decode_base64url(&sub.keys.auth).ok_or(AddressError::PushAuthBase64)?;
    if auth.len() != PUSH_AUTH_LEN {
        return Err(AddressError::PushAuthLength);
    }

    Ok(PushSubscription {
        endpoint,
        keys: PushKeys {
            p256dh: URL_SAFE_NO_PAD.encode(&p256dh),
            auth: URL_SAFE_NO_PAD.encode(&auth),
        },
    })
}

fn parse_push_endpoint(raw: &str) -> Result<String, AddressError> {
    let raw = raw.trim();
    if raw.len() > PUSH_ENDPOINT_MAX_LEN {
        return Err(AddressError::PushEndpointTooLong);
    }
    // The URL parser silently drops tabs and newlines; an endpoint with any is not genuine.
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AddressError::PushEndpointInvalid);
    }
    let url = url::Url::parse(raw).map_err(|_| AddressError::PushEndpointInvalid)?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(AddressError::PushEndpointCredentials);
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(AddressError::PushEndpointNotHttps),
    };
    let ip_literal = !matches!(url.host(), Some(url::Host::Domain(_)));
    // Real push services live on host names; an IP literal (other than loopback, for local
    // test servers) would only point Herald's requests somewhere it should not go.
    let allowed = match url.scheme() {
        "https" => loopback || !ip_literal,
        "http" => loopback,
        _ => false,
    };
    if !allowed {
        return Err(AddressError::PushEndpointNotHttps);
    }
    let endpoint = url.to_string();
    if endpoint.len() > PUSH_ENDPOINT_MAX_LEN {
        return Err(AddressError::PushEndpointTooLong);
    }
    Ok(endpoint)
}

/// Base64url, padded or not, as browsers and libraries variously give push keys.
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text.trim()).ok()
}

/// How an address is shown to anyone but the moment it is typed: enough to recognise it, not
/// enough to learn it. `normalized` is the address as this module returned it (for web push,
/// the endpoint). Never panics on odd input; what it cannot read it hides entirely.
pub fn mask(channel: Channel, normalized: &str) -> String {
    match channel {
        Channel::Email => match normalized.rsplit_once('@') {
            Some((local, domain)) => {
                let first = local.chars().next().map(String::from).unwrap_or_default();
                format!("{first}{BULLETS}@{domain}")
            }
            None => BULLETS.to_owned(),
        },
        Channel::Sms => mask_phone(normalized),
        Channel::Telegram => {
            let digits: Vec<char> = normalized.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits[digits.len().saturating_sub(3)..].iter().collect();
            format!("{BULLETS}{tail}")
        }
        Channel::Webpush => match url_host(normalized) {
            Some(host) => format!("push: {host}"),
            None => format!("push: {BULLETS}"),
        },
        Channel::Webhook => url_host(normalized).unwrap_or_else(|| BULLETS.to_owned()),
        // These carry no address of the member's.
        Channel::Inbox | Channel::Feed => channel.as_str().to_owned(),
    }
}

/// `+<country code>•••••<last four>`.
fn mask_phone(normalized: &str) -> String {
    let digits: String = normalized.chars().filter(char::is_ascii_digit).collect();
    let code = phonenumber::parse(None, normalized)
        .ok()
        .map(|number| number.code().value().to_string());
    match code {
        Some(code) if digits.len() >= code.len() + 4 => {
            format!("+{code}•••••{}", &digits[digits.len() - 4..])
        }
        _ => format!("+{BULLETS}"),
    }
}

fn url_host(text: &str) -> Option<String> {
    url::Url::parse(text.trim())
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which error a refused input must give.
    type Expect = fn(&AddressError) -> bool;

    /// A real P-256 public key (the generator point), uncompressed.
    fn p256_generator() -> Vec<u8> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        p256::PublicKey::from_affine(p256::AffinePoint::GENERATOR)
            .unwrap()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn subscription(endpoint: &str, p256dh: &str, auth: &str) -> PushSubscription {
        PushSubscription {
            endpoint: endpoint.into(),
            keys: PushKeys {
                p256dh: p256dh.into(),
                auth: auth.into(),
            },
        }
    }

    fn good_subscription() -> PushSubscription {
        subscription(
            "https://fcm.googleapis.com/fcm/send/abc:def",
            &URL_SAFE_NO_PAD.encode(p256_generator()),
            &URL_SAFE_NO_PAD.encode([7u8; 16]),
        )
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            parse_email("  Member@Example.ORG \n").unwrap(),
            "member@example.org"
        );
        assert_eq!(
            parse_email("first.last+tag@mail.example.co.uk").unwrap(),
            "first.last+tag@mail.example.co.uk"
        );
        assert_eq!(
            parse_email("a@xn--bcher-kva.example").unwrap(),
            "a@xn--bcher-kva.example"
        );
        assert_eq!(
            parse_email("o'neil@example.org").unwrap(),
            "o'neil@example.org"
        );
    }

    #[test]
    fn email_forms_that_are_refused() {
        let cases: &[(&str, Expect)] = &[
            ("", |e| matches!(e, AddressError::EmailEmpty)),
            ("   ", |e| matches!(e, AddressError::EmailEmpty)),
            ("Alice <alice@example.org>", |e| {
                matches!(e, AddressError::EmailDisplayName)
            }),
            ("<alice@example.org>", |e| {
                matches!(e, AddressError::EmailDisplayName)
            }),
            ("ali ce@example.org", |e| {
                matches!(e, AddressError::EmailWhitespace)
            }),
            ("alice@exa\tmple.org", |e| {
                matches!(e, AddressError::EmailWhitespace)
            }),
            ("alice.example.org", |e| {
                matches!(e, AddressError::EmailNoAt)
            }),
            ("@example.org", |e| {
                matches!(e, AddressError::EmailNoLocalPart)
            }),
            ("alice@", |e| matches!(e, AddressError::EmailNoDomain)),
            ("alice@localhost", |e| {
                matches!(e, AddressError::EmailDomainNoDot)
            }),
            ("alice@[192.0.2.1]", |e| {
                matches!(e, AddressError::EmailDomainLiteral)
            }),
            ("alice@192.0.2.1", |e| {
                matches!(e, AddressError::EmailDomainLiteral)
            }),
            ("alice@example..org", |e| {
                matches!(e, AddressError::EmailDomainInvalid)
            }),
            ("alice@-example.org", |e| {
                matches!(e, AddressError::EmailDomainInvalid)
            }),
            ("alice@exam_ple.org", |e| {
                matches!(e, AddressError::EmailDomainInvalid)
            }),
            ("alice@example.org.", |e| {
                matches!(e, AddressError::EmailDomainInvalid)
            }),
            ("\"al ice\"@example.org", |e| {
                matches!(e, AddressError::EmailWhitespace)
            }),
            ("\"alice\"@example.org", |e| {
                matches!(e, AddressError::EmailLocalPartInvalid)
            }),
            ("al@ice@example.org", |e| {
                matches!(e, AddressError::EmailLocalPartInvalid)
            }),
            (".alice@example.org", |e| {
                matches!(e, AddressError::EmailLocalPartInvalid)
            }),
            ("al..ice@example.org", |e| {
                matches!(e, AddressError::EmailLocalPartInvalid)
            }),
            ("alice,bob@example.org", |e| {
                matches!(e, AddressError::EmailLocalPartInvalid)
            }),
            ("jörg@example.org", |e| {
                matches!(e, AddressError::EmailNotAscii)
            }),
            ("alice@bücher.example", |e| {
                matches!(e, AddressError::EmailNotAscii)
            }),
        ];
        for (raw, expected) in cases {
            let err = parse_email(raw).unwrap_err();
            assert!(expected(&err), "{raw:?} gave {err:?}");
        }
    }

    #[test]
    fn email_length_limits_hold() {
        let local = "a".repeat(64);
        assert!(parse_email(&format!("{local}@example.org")).is_ok());
        assert!(matches!(
            parse_email(&format!("{local}a@example.org")),
            Err(AddressError::EmailLocalPartTooLong)
        ));
        let label = "b".repeat(63);
        let long = format!("{local}@{label}.{label}.{}.org", "c".repeat(57));
        assert_eq!(long.len(), 254);
        assert!(parse_email(&long).is_ok());
        assert!(matches!(
            parse_email(&format!("a{long}")),
            Err(AddressError::EmailTooLong)
        ));
        assert!(matches!(
            parse_email(&format!("a@{}.org", "b".repeat(64))),
            Err(AddressError::EmailDomainInvalid)
        ));
    }

    #[test]
    fn email_errors_do_not_echo_the_address() {
        for raw in [
            "Secret Name <secret@example.org>",
            "secret@",
            "secret @x.org",
        ] {
            let message = parse_email(raw).unwrap_err().to_string();
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn phone_formatting_is_stripped_to_e164() {
        assert_eq!(parse_phone("+1 (415) 555-2671").unwrap(), "+14155552671");
        assert_eq!(parse_phone(" +1.415.555.2671 ").unwrap(), "+14155552671");
        assert_eq!(parse_phone("+44 7911 123456").unwrap(), "+447911123456");
        assert_eq!(parse_phone("+49 151 23456789").unwrap(), "+4915123456789");
        assert_eq!(parse_phone("+33 6 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(parse_phone("+61 412 345 678").unwrap(), "+61412345678");
    }

    #[test]
    fn phone_forms_that_are_refused() {
        let cases: &[(&str, Expect)] = &[
            ("", |e| matches!(e, AddressError::PhoneEmpty)),
            ("14155552671", |e| matches!(e, AddressError::PhoneNoPlus)),
            ("(415) 555-2671", |e| matches!(e, AddressError::PhoneNoPlus)),
            ("+1 800 FLOWERS", |e| {
                matches!(e, AddressError::PhoneCharacters)
            }),
            ("+1415555267a", |e| {
                matches!(e, AddressError::PhoneCharacters)
            }),
            ("++14155552671", |e| {
                matches!(e, AddressError::PhoneCharacters)
            }),
            ("+1 415 555 2671 ext 5", |e| {
                matches!(e, AddressError::PhoneCharacters)
            }),
            ("+١٤١٥٥٥٥٢٦٧١", |e| {
                matches!(e, AddressError::PhoneCharacters)
            }),
            ("+", |e| matches!(e, AddressError::PhoneLength)),
            ("+12345678", |e| matches!(e, AddressError::PhoneLength)),
            ("+1234567890123456", |e| {
                matches!(e, AddressError::PhoneLength)
            }),
            // Fictional 555 exchange-and-area numbers are not valid in the metadata.
            ("+1 555 555 4444", |e| {
                matches!(e, AddressError::PhoneInvalid)
            }),
            // No country has calling code 999.
            ("+999123456789", |e| matches!(e, AddressError::PhoneInvalid)),
            // A UK number one digit short.
            ("+44791112345", |e| matches!(e, AddressError::PhoneInvalid)),
        ];
        for (raw, expected) in cases {
            let err = parse_phone(raw).unwrap_err();
            assert!(expected(&err), "{raw:?} gave {err:?}");
            assert!(!err.to_string().contains("2671"));
        }
    }

    /// Property check over many random strings built from the characters that matter to
    /// the phone rule: never a panic, and whatever is accepted is E.164 and a fixed point.
    #[test]
    fn any_accepted_phone_number_is_e164_and_parses_to_itself() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let alphabet: Vec<char> = "0123456789+ -.()/a\u{a0}٣".chars().collect();
        let mut accepted = 0;
        for _ in 0..3000 {
            let len = rng.gen_range(0..20);
            let mut raw: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if rng.gen_bool(0.8) {
                raw.insert(0, '+');
            }
            if let Ok(e164) = parse_phone(&raw) {
                accepted += 1;
                assert!(e164.starts_with('+'), "{raw:?}");
                assert!((10..=16).contains(&e164.len()), "{raw:?}");
                assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()), "{raw:?}");
                assert_eq!(parse_phone(&e164).unwrap(), e164);
                let masked = mask(Channel::Sms, &e164);
                assert!(masked.ends_with(&e164[e164.len() - 4..]));
            }
        }
        assert!(accepted > 0, "the generator should hit some valid numbers");
    }

    /// Property check: random near-addresses never panic, and whatever is accepted is lower
    /// case, ASCII, a fixed point, and masks without its local part.
    #[test]
    fn any_accepted_email_is_normal_and_parses_to_itself() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "aaaaBBB999..--_+@\"<> [],é".chars().collect();
        let mut accepted = 0;
        for _ in 0..5000 {
            let mut part = |max: usize| -> String {
                let len = rng.gen_range(0..max);
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect()
            };
            let raw = format!("{}@{}.{}", part(10), part(10), part(5));
            if let Ok(email) = parse_email(&raw) {
                accepted += 1;
                assert!(email.is_ascii(), "{raw:?}");
                assert_eq!(email, email.to_ascii_lowercase(), "{raw:?}");
                assert_eq!(parse_email(&email).unwrap(), email);
                let (local, domain) = email.rsplit_once('@').unwrap();
                let masked = mask(Channel::Email, &email);
                assert!(masked.ends_with(&format!("@{domain}")));
                if local.len() > 1 {
                    assert!(!masked.contains(local), "{raw:?}");
                }
            }
        }
        assert!(
            accepted > 0,
            "the generator should hit some valid addresses"
        );
    }

    #[test]
    fn telegram_chat_ids_are_integers() {
        assert_eq!(parse_telegram_chat("123456789").unwrap(), 123_456_789);
        assert_eq!(parse_telegram_chat(" 42 ").unwrap(), 42);
        assert_eq!(
            parse_telegram_chat("-1001234567890").unwrap(),
            -1_001_234_567_890
        );
        for raw in ["", "-", "abc", "12a", "1.5", "+42", "1 2", "0x10"] {
            assert!(
                matches!(
                    parse_telegram_chat(raw),
                    Err(AddressError::TelegramNotInteger)
                ),
                "{raw:?}"
            );
        }
        for raw in ["0", "99999999999999999999"] {
            assert!(
                matches!(
                    parse_telegram_chat(raw),
                    Err(AddressError::TelegramOutOfRange)
                ),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn a_browser_push_subscription_is_accepted_and_normalised() {
        let sub = good_subscription();
        assert_eq!(parse_push_subscription(&sub).unwrap(), sub);
        let padded = subscription(
            &sub.endpoint,
            &base64::engine::general_purpose::URL_SAFE.encode(p256_generator()),
            &base64::engine::general_purpose::URL_SAFE.encode([7u8; 16]),
        );
        assert_eq!(parse_push_subscription(&padded).unwrap(), sub);
        let local = subscription(
            "http://127.0.0.1:8080/push/1",
            &sub.keys.p256dh,
            &sub.keys.auth,
        );
        assert!(parse_push_subscription(&local).is_ok());
        let local = subscription("http://localhost:9/push", &sub.keys.p256dh, &sub.keys.auth);
        assert!(parse_push_subscription(&local).is_ok());
        let local = subscription("http://[::1]:9/push", &sub.keys.p256dh, &sub.keys.auth);
        assert!(parse_push_subscription(&local).is_ok());
    }

    #[test]
    fn push_endpoints_that_are_refused() {
        let good = good_subscription();
        let long = format!("https://push.example.org/{}", "a".repeat(2048));
        let cases: &[(&str, Expect)] = &[
            ("not a url", |e| {
                matches!(e, AddressError::PushEndpointInvalid)
            }),
            ("https://push.example.org/a\tb", |e| {
                matches!(e, AddressError::PushEndpointInvalid)
            }),
            ("http://push.example.org/x", |e| {
                matches!(e, AddressError::PushEndpointNotHttps)
            }),
            ("ftp://push.example.org/x", |e| {
                matches!(e, AddressError::PushEndpointNotHttps)
            }),
            ("https://10.0.0.1/x", |e| {
                matches!(e, AddressError::PushEndpointNotHttps)
            }),
            ("http://192.168.1.1/x", |e| {
                matches!(e, AddressError::PushEndpointNotHttps)
            }),
            ("data:text/plain,hi", |e| {
                matches!(e, AddressError::PushEndpointNotHttps)
            }),
            ("https://user:pw@push.example.org/x", |e| {
                matches!(e, AddressError::PushEndpointCredentials)
            }),
            ("https://push.example.org/x#frag", |e| {
                matches!(e, AddressError::PushEndpointCredentials)
            }),
            (&long, |e| matches!(e, AddressError::PushEndpointTooLong)),
        ];
        for (endpoint, expected) in cases {
            let sub = subscription(endpoint, &good.keys.p256dh, &good.keys.auth);
            let err = parse_push_subscription(&sub).unwrap_err();
            assert!(expected(&err), "{endpoint:?} gave {err:?}");
        }
    }

    #[test]
    fn push_keys_that_are_refused() {
        let good = good_subscription();
        let mut compressed = p256_generator()[..33].to_vec();
        compressed[0] = 0x02;
        let mut off_curve = p256_generator();
        off_curve[64] ^= 0x01;
        let mut wrong_prefix = p256_generator();
        wrong_prefix[0] = 0x05;
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let cases: Vec<(String, String, Expect)> = vec![
            ("not base64!".into(), good.keys.auth.clone(), |e| {
                matches!(e, AddressError::PushP256dhBase64)
            }),
            (
                base64::engine::general_purpose::STANDARD.encode([0xfbu8; 65]),
                good.keys.auth.clone(),
                |e| matches!(e, AddressError::PushP256dhBase64),
            ),
            (b64(&compressed), good.keys.auth.clone(), |e| {
                matches!(e, AddressError::PushP256dhLength)
            }),
            (b64(&[4u8; 64]), good.keys.auth.clone(), |e| {
                matches!(e, AddressError::PushP256dhLength)
            }),
            (b64(&wrong_prefix), good.keys.auth.clone(), |e| {
                matches!(e, AddressError::PushP256dhLength)
            }),
            (b64(&off_curve), good.keys.auth.clone(), |e| {
                matches!(e, AddressError::PushP256dhNotOnCurve)
            }),
            (good.keys.p256dh.clone(), "%%".into(), |e| {
                matches!(e, AddressError::PushAuthBase64)
            }),
            (good.keys.p256dh.clone(), b64(&[1u8; 15]), |e| {
                matches!(e, AddressError::PushAuthLength)
            }),
            (good.keys.p256dh.clone(), b64(&[1u8; 32]), |e| {
                matches!(e, AddressError::PushAuthLength)
            }),
            (good.keys.p256dh.clone(), String::new(), |e| {
                matches!(e, AddressError::PushAuthLength)
            }),
        ];
        for (p256dh, auth, expected) in cases {
            let sub = subscription(&good.endpoint, &p256dh, &auth);
            let err = parse_push_subscription(&sub).unwrap_err();
            assert!(expected(&err), "{p256dh:?}/{auth:?} gave {err:?}");
        }
    }

    #[test]
    fn masks_show_enough_to_recognise_and_no_more() {
        assert_eq!(
            mask(Channel::Email, "alice@example.org"),
            "a•••@example.org"
        );
        assert_eq!(mask(Channel::Email, "a@example.org"), "a•••@example.org");
        assert_eq!(mask(Channel::Email, "garbage"), "•••");
        assert_eq!(mask(Channel::Sms, "+14155552671"), "+1•••••2671");
        assert_eq!(mask(Channel::Sms, "+447911123456"), "+44•••••3456");
        assert_eq!(mask(Channel::Sms, "+4915123456789"), "+49•••••6789");
        assert_eq!(mask(Channel::Sms, "nonsense"), "+•••");
        assert_eq!(mask(Channel::Telegram, "123456789"), "•••789");
        assert_eq!(mask(Channel::Telegram, "-1001234567890"), "•••890");
        assert_eq!(mask(Channel::Telegram, ""), "•••");
        assert_eq!(
            mask(
                Channel::Webpush,
                "https://fcm.googleapis.com/fcm/send/abc:def"
            ),
            "push: fcm.googleapis.com"
        );
        assert_eq!(mask(Channel::Webpush, "nonsense"), "push: •••");
        assert_eq!(
            mask(
                Channel::Webhook,
                "https://hooks.example.org/secret/path?k=v"
            ),
            "hooks.example.org"
        );
        assert_eq!(mask(Channel::Inbox, ""), "inbox");
    }
}
