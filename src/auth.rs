//! ATProto inter-service authentication: verifying the service-auth JWT a caller (a member's
//! PDS proxying for them, or a community app) presents, and minting such tokens for the demo,
//! tests and benchmarks.
//!
//! # Invariants
//! [`ServiceAuth::verify`] runs these checks in this order and stops at the first failure.
//! Everything up to step 7 is local, so malformed, expired or misaddressed tokens never cause a
//! network request; only a well-formed, in-date token for this service reaches DID resolution.
//!
//! | step | check | error name |
//! | --- | --- | --- |
//! | 1 | an `Authorization` header of the form `Bearer <token>` | `AuthenticationRequired` |
//! | 2 | ≤ 8 KiB, three base64url segments; header JSON with `alg` `ES256K` or `ES256` | `BadJwt` |
//! | 3 | header `typ`, if present, is `JWT` (refuses `at+jwt`, `refresh+jwt`, `dpop+jwt`, …) | `BadJwtType` |
//! | 4 | payload JSON: `iss`, `aud` strings, `exp` number; `iat` number and `lxm` string if present | `BadJwt` |
//! | 5 | `exp` > now − leeway | `JwtExpired` |
//! | 5 | `iat`, if present, ≤ now + leeway | `BadJwt` |
//! | 6 | `aud` is the service DID (bare, or with Herald's `#herald_appview` service fragment) | `BadJwtAudience` |
//! | 7 | `lxm` equals the called method's NSID (absent counts as wrong, as in the reference) | `BadJwtLexiconMethod` |
//! | 8 | `iss` is a DID, optionally with one non-empty `#fragment` | `BadJwtIss` |
//! | 9 | signature is 64 bytes (base64url, no padding) of compact `r‖s` in low-S form | `BadJwtSignature` |
//! | 10 | the issuer's `#atproto` key resolves (cached; bare DID, fragment dropped) | `BadJwt` |
//! | 11 | the key's curve matches `alg` and the signature over `header.payload` verifies; if not, the DID document is fetched fresh once (the key may have rotated) and checked again | `BadJwtSignature` |
//!
//! - Leeway is [`CLOCK_SKEW_LEEWAY_SECS`] both ways.
//! - Signatures are checked by `k256` / `p256` through [`PublicKey::verify`] (SHA-256, low-S
//!   enforced on both curves); the only hand-written code is splitting and decoding the JWT.
//! - Nothing here compares secrets, so constant-time comparison is not needed: the token is
//!   verified against a public key, and `aud` / `lxm` are public values.
//! - Error messages (shown to callers) never contain the token or any part of it other than the
//!   issuer DID; resolution details are kept as the error's `source` for logs.
//! - Names follow `@atproto/xrpc-server` (`verifyJwt`) so ATProto clients recognise them; every
//!   error maps to HTTP 401 at the XRPC edge.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ecdsa::signature::Signer;
use serde::Deserialize;

use crate::identity::{PublicKey, ResolveError, Resolver};
use crate::model::is_did;

/// Allowed clock difference between the issuer and us, applied to `exp` and `iat`. 30 s
/// absorbs ordinary NTP drift while keeping a one-minute token (the reference default) from
/// living much past its intended end.
pub const CLOCK_SKEW_LEEWAY_SECS: i64 = 30;

/// Fragment of Herald's service entry in its own DID document (`#herald_appview`). Tokens whose
/// `aud` is `{service_did}#herald_appview` are accepted as well as the bare service DID.
pub const SERVICE_ID_FRAGMENT: &str = "#herald_appview";

/// Longest token we look at. Real service-auth tokens are ~500 bytes; the cap bounds the work
/// an unauthenticated request can cause.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The verified caller of an XRPC method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The issuer's DID, without any `#service` fragment the token's `iss` carried.
    pub did: String,
}

/// Why a request was not authenticated. Every variant is an HTTP 401; [`error_name`] gives the
/// ATProto error name and `Display` a message safe to show the caller.
///
/// [`error_name`]: AuthError::error_name
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or not a `Bearer` one.
    #[error("{0}")]
    AuthenticationRequired(&'static str),
    /// The token is not a well-formed ES256K/ES256 JWT with the required claims, or was issued
    /// in the future.
    #[error("{0}")]
    BadJwt(&'static str),
    /// The header's `typ` says this is some other kind of token (access, refresh, DPoP).
    #[error("jwt typ is not JWT")]
    BadJwtType,
    /// `exp` is past (beyond the leeway).
    #[error("jwt expired")]
    JwtExpired,
    /// `aud` is not this service.
    #[error("jwt audience does not match service did")]
    BadJwtAudience,
    /// `lxm` is absent or names another method; carries the method that was called.
    #[error("{problem} jwt lexicon method (\"lxm\"). must match: {expected}")]
    BadJwtLexiconMethod {
        problem: &'static str,
        expected: String,
    },
    /// `iss` is not a DID (with at most one fragment).
    #[error("jwt iss is not a valid did")]
    BadJwtIss,
    /// The signature is malformed, high-S, for another curve, or does not match the issuer's
    /// key even after re-resolving it.
    #[error("{0}")]
    BadJwtSignature(&'static str),
    /// The issuer's signing key could not be found (unknown DID, resolution failure, no
    /// `#atproto` key). Reported as `BadJwt`, like the reference.
    #[error("could not resolve the signing key of jwt issuer {did}")]
    IssuerUnresolved {
        did: String,
        #[source]
        source: ResolveError,
    },
}

impl AuthError {
    /// The ATProto error name for the `{"error": …}` envelope.
    pub fn error_name(&self) -> &'static str {
        match self {
            Self::AuthenticationRequired(_) => "AuthenticationRequired",
            Self::BadJwt(_) | Self::IssuerUnresolved { .. } => "BadJwt",
            Self::BadJwtType => "BadJwtType",
            Self::JwtExpired => "JwtExpired",
            Self::BadJwtAudience => "BadJwtAudience",
            Self::BadJwtLexiconMethod { .. } => "BadJwtLexiconMethod",
            Self::BadJwtIss => "BadJwtIss",
            Self::BadJwtSignature(_) => "BadJwtSignature",
        }
    }
}

const POORLY_FORMATTED: AuthError = AuthError::BadJwt("poorly formatted jwt");
const SIGNATURE_MISMATCH: AuthError =
    AuthError::BadJwtSignature("jwt signature does not match jwt issuer");

/// Verifies service-auth JWTs addressed to one service DID.
#[derive(Debug, Clone)]
pub struct ServiceAuth {
    resolver: Arc<Resolver>,
    /// Herald's own DID: the only audience accepted (see [`SERVICE_ID_FRAGMENT`]).
    service_did: String,
    /// `service_did` + [`SERVICE_ID_FRAGMENT`], precomputed for the audience check.
    service_did_with_fragment: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    exp: f64,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    lxm: Option<String>,
}

impl ServiceAuth {
    pub fn new(resolver: Arc<Resolver>, service_did: String) -> Self {
        let service_did_with_fragment = format!("{service_did}{SERVICE_ID_FRAGMENT}");
        Self {
            resolver,
            service_did,
            service_did_with_fragment,
        }
    }

    /// Verifies the `Authorization` header value of a call to method `lxm`, at the current time.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        lxm: &str,
    ) -> Result<Caller, AuthError> {
        self.verify_at(authorization, lxm, unix_now()).await
    }

    /// [`verify`](Self::verify) with the clock supplied, for tests.
    pub async fn verify_at(
        &self,
        authorization: Option<&str>,
        lxm: &str,
        now_unix: i64,
    ) -> Result<Caller, AuthError> {
        let result = self.check(authorization, lxm, now_unix).await;
        if let Err(e) = &result {
            // Auth failures are caller-controlled, so they are logged quietly; the source of a
            // resolution failure is only visible here.
            let source = std::error::Error::source(e).map(ToString::to_string);
            tracing::debug!(error = %e, name = e.error_name(), source, "service auth rejected");
        }
        result
    }

    async fn check(
        &self,
        authorization: Option<&str>,
        lxm: &str,
        now: i64,
    ) -> Result<Caller, AuthError> {
        // 1. Bearer token.
        let token = bearer_token(authorization)?;

        // 2–4. Shape, header, claims.
        let (header, [_, claims_b64, signature_b64]) = split_jwt(token)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(AuthError::BadJwtType);
        }
        let claims: Claims = decode_json(claims_b64)?;

        // 5. Time.
        if claims.exp <= (now - CLOCK_SKEW_LEEWAY_SECS) as f64 {
            return Err(AuthError::JwtExpired);
        }
        if claims
            .iat
            .is_some_and(|iat| iat > (now + CLOCK_SKEW_LEEWAY_SECS) as f64)
        {
            return Err(AuthError::BadJwt("jwt issued in the future"));
        }

        // 6. Audience.
        if claims.aud != self.service_did && claims.aud != self.service_did_with_fragment {
            return Err(AuthError::BadJwtAudience);
        }

        // 7. Method.
        match claims.lxm.as_deref() {
            Some(claimed) if claimed == lxm => {}
            claimed => {
                return Err(AuthError::BadJwtLexiconMethod {
                    problem: if claimed.is_some() { "bad" } else { "missing" },
                    expected: lxm.to_owned(),
                });
            }
        }

        // 8. Issuer.
        let did = issuer_did(&claims.iss).ok_or(AuthError::BadJwtIss)?;

        // 9–11. Signature form, then key and verification, re-resolving once on failure.
        self.check_jwt_signature(did, &header.alg, token, claims_b64, signature_b64)
            .await?;
        Ok(Caller {
            did: did.to_owned(),
        })
    }

    /// Verifies a JWT signed by its issuer's DID key (the same shape, time and signature
    /// checks as a service-auth token, steps 2–5 and 8–11) and returns the issuer's DID and the
    /// claims, for the caller to check what they assert. Audience and `lxm` are the caller's
    /// business: a pre-validation assertion (seed 002) is such a token.
    pub async fn verify_signed_claims(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(String, serde_json::Value), AuthError> {
        let (header, [_, claims_b64, signature_b64]) = split_jwt(token)?;
        let claims: serde_json::Value = decode_json(claims_b64)?;
        let exp = claims["exp"].as_f64().ok_or(POORLY_FORMATTED)?;
        if exp <= (now - CLOCK_SKEW_LEEWAY_SECS) as f64 {
            return Err(AuthError::JwtExpired);
        }
        let iss = claims["iss"].as_str().ok_or(POORLY_FORMATTED)?;
        let did = issuer_did(iss).ok_or(AuthError::BadJwtIss)?.to_owned();
        self.check_jwt_signature(&did, &header.alg, token, claims_b64, signature_b64)
            .await?;
        Ok((did, claims))
    }

    /// The signature of `token` (whose last two segments are `claims_b64` and
    /// `signature_b64`): its form first, since no key could make a malformed one valid, then
    /// against the issuer's key.
    async fn check_jwt_signature(
        &self,
        did: &str,
        alg: &str,
        token: &str,
        claims_b64: &str,
        signature_b64: &str,
    ) -> Result<(), AuthError> {
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::BadJwtSignature("jwt signature is not base64url"))?;
        check_signature_form(alg, &signature)?;
        let signing_input_len = token.len() - signature_b64.len() - 1;
        debug_assert!(token[..signing_input_len].ends_with(claims_b64));
        self.check_signature(did, alg, &token.as_bytes()[..signing_input_len], &signature)
            .await
    }

    async fn check_signature(
        &self,
        did: &str,
        alg: &str,
        msg: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        let cached = self
            .resolver
            .signing_key(did, false)
            .await
            .map_err(|source| AuthError::IssuerUnresolved {
                did: did.to_owned(),
                source,
            })?;
        if verifies(&cached, alg, msg, signature) {
            return Ok(());
        }
        // The key may have rotated since we cached the document: look once more, fresh.
        match self.resolver.signing_key(did, true).await {
            Ok(fresh) if fresh != cached && verifies(&fresh, alg, msg, signature) => Ok(()),
            Ok(_) => Err(SIGNATURE_MISMATCH),
            Err(e) => {
                tracing::debug!(%did, error = %e, "re-resolving jwt issuer after a signature mismatch failed");
                Err(SIGNATURE_MISMATCH)
            }
        }
    }
}

/// A JWT's three segments and its decoded header, refused unless it is a well-formed ES256K
/// or ES256 token of acceptable size.
fn split_jwt(token: &str) -> Result<(Header, [&str; 3]), AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(POORLY_FORMATTED);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(POORLY_FORMATTED);
    };
    let header: Header = decode_json(header_b64)?;
    if header.alg != "ES256K" && header.alg != "ES256" {
        return Err(AuthError::BadJwt("jwt alg must be ES256K or ES256"));
    }
    Ok((header, [header_b64, claims_b64, signature_b64]))
}

fn verifies(key: &PublicKey, alg: &str, msg: &[u8], signature: &[u8]) -> bool {
    key.jwt_alg() == alg && key.verify(msg, signature).is_ok()
}

/// Rejects signatures that no key could make valid: wrong length, out-of-range scalars, high S.
fn check_signature_form(alg: &str, signature: &[u8]) -> Result<(), AuthError> {
    const MALFORMED: AuthError =
        AuthError::BadJwtSignature("jwt signature is not a 64-byte r||s pair");
    const HIGH_S: AuthError = AuthError::BadJwtSignature("jwt signature is not in low-S form");
    let high_s = if alg == "ES256K" {
        let sig = k256::ecdsa::Signature::from_slice(signature).map_err(|_| MALFORMED)?;
        sig.normalize_s().is_some()
    } else {
        let sig = p256::ecdsa::Signature::from_slice(signature).map_err(|_| MALFORMED)?;
        sig.normalize_s().is_some()
    };
    if high_s { Err(HIGH_S) } else { Ok(()) }
}

/// The token of a `Bearer` authorization value (scheme matched case-insensitively).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::AuthenticationRequired("authentication required"))?;
    let bearer = AuthError::AuthenticationRequired("expected a Bearer service-auth token");
    let (scheme, token) = value.split_once(' ').ok_or(bearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::AuthenticationRequired(
            "expected a Bearer service-auth token",
        ));
    }
    Ok(token)
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| POORLY_FORMATTED)?;
    serde_json::from_slice(&bytes).map_err(|_| POORLY_FORMATTED)
}

/// The DID part of `iss`, which may carry one non-empty `#fragment` naming a service of the
/// issuer (e.g. `did:web:feed.example#bsky_fg`). `None` if it is not a DID.
fn issuer_did(iss: &str) -> Option<&str> {
    let did = match iss.split_once('#') {
        None => iss,
        Some((did, fragment)) => {
            let fragment_ok =
                !fragment.is_empty() && fragment.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
            if !fragment_ok {
                return None;
            }
            did
        }
    };
    is_did(did).then_some(did)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A private signing key on one of ATProto's two curves, for minting service-auth tokens (and
/// signing anything else the demo and tests need). Signatures are SHA-256 ECDSA, compact and
/// low-S, exactly what [`PublicKey::verify`] accepts.
#[derive(Clone)]
pub enum SigningKey {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret: identify the key by its public half.
        f.debug_tuple("SigningKey")
            .field(&self.public_key().did_key())
            .finish()
    }
}

impl SigningKey {
    /// A fresh random secp256k1 key (the curve PDSes use for account signing keys).
    pub fn generate_k256() -> Self {
        Self::K256(k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// A fresh random P-256 key.
    pub fn generate_p256() -> Self {
        Self::P256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            Self::K256(key) => PublicKey::K256(*key.verifying_key()),
            Self::P256(key) => PublicKey::P256(*key.verifying_key()),
        }
    }

    /// `ES256K` or `ES256`.
    pub fn jwt_alg(&self) -> &'static str {
        match self {
            Self::K256(_) => "ES256K",
            Self::P256(_) => "ES256",
        }
    }

    /// Signs SHA-256(`msg`); returns the compact 64-byte `r‖s`, normalised to low-S.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let bytes = match self {
            // k256 already produces low-S signatures.
            Self::K256(key) => Signer::<k256::ecdsa::Signature>::sign(key, msg).to_bytes(),
            Self::P256(key) => {
                let sig: p256::ecdsa::Signature = key.sign(msg);
                sig.normalize_s().unwrap_or(sig).to_bytes()
            }
        };
        let mut out = [0u8; 64];
        out.copy_from_slice(&bytes);
        out
    }
}

/// A service-auth JWT from `iss` for `aud`, optionally bound to method `lxm`, expiring at
/// `exp_unix`. Carries a random `jti`; no `iat`, so tokens minted for an injected clock stay
/// valid against it.
pub fn mint_service_jwt(
    key: &SigningKey,
    iss: &str,
    aud: &str,
    lxm: Option<&str>,
    exp_unix: i64,
) -> String {
    let header = serde_json::json!({ "typ": "JWT", "alg": key.jwt_alg() });
    let jti: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut claims = serde_json::json!({ "iss": iss, "aud": aud, "exp": exp_unix, "jti": jti });
    if let Some(lxm) = lxm {
        claims["lxm"] = lxm.into();
    }
    sign_jwt(key, &header, &claims)
}

/// A JWT carrying `claims`, signed by `key` (for pre-validation assertions in tests and demos).
pub fn mint_jwt(key: &SigningKey, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({ "typ": "JWT", "alg": key.jwt_alg() });
    sign_jwt(key, &header, claims)
}

fn sign_jwt(key: &SigningKey, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::identity::test_plc::{TestPlc, plc_did, plc_doc};

    const SERVICE_DID: &str = "did:web:herald.test";
    const METHOD: &str = "community.herald.publish";
    const NOW: i64 = 1_750_000_000;

    struct Setup {
        plc: TestPlc,
        auth: ServiceAuth,
        key: SigningKey,
        did: String,
    }

    impl Setup {
        async fn new(key: SigningKey) -> Self {
            let plc = TestPlc::start().await;
            let did = plc_did("issuer");
            plc.put(&did, plc_doc(&did, &key.public_key()));
            let auth = ServiceAuth::new(Arc::new(plc.resolver()), SERVICE_DID.to_owned());
            Self {
                plc,
                auth,
                key,
                did,
            }
        }

        fn token(&self) -> String {
            mint_service_jwt(&self.key, &self.did, SERVICE_DID, Some(METHOD), NOW + 60)
        }

        fn claims(&self) -> Value {
            json!({ "iss": self.did, "aud": SERVICE_DID, "exp": NOW + 60, "iat": NOW, "lxm": METHOD })
        }

        fn header(&self) -> Value {
            json!({ "typ": "JWT", "alg": self.key.jwt_alg() })
        }

        async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
            self.auth
                .verify_at(Some(&format!("Bearer {token}")), METHOD, NOW)
                .await
        }
    }

    fn name<T: fmt::Debug>(result: Result<T, AuthError>) -> &'static str {
        result.expect_err("expected rejection").error_name()
    }

    /// Replaces a token's signature with its high-S twin: s' = n − s.
    fn with_high_s(key: &SigningKey, token: &str) -> String {
        let (input, sig_b64) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
        let high: Vec<u8> = match key {
            SigningKey::K256(_) => {
                let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
                let (r, s) = sig.split_scalars();
                k256::ecdsa::Signature::from_scalars(r, -s)
                    .unwrap()
                    .to_vec()
            }
            SigningKey::P256(_) => {
                let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                let (r, s) = sig.split_scalars();
                p256::ecdsa::Signature::from_scalars(r, -s)
                    .unwrap()
                    .to_vec()
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(high))
    }

    #[tokio::test]
    async fn a_valid_es256k_token_passes() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let caller = setup.verify(&setup.token()).await.unwrap();
        assert_eq!(
            caller,
            Caller {
                did: setup.did.clone()
            }
        );
    }

    #[tokio::test]
    async fn a_valid_es256_token_passes() {
        let setup = Setup::new(SigningKey::generate_p256()).await;
        let caller = setup.verify(&setup.token()).await.unwrap();
        assert_eq!(caller.did, setup.did);
    }

    #[tokio::test]
    async fn verify_uses_the_real_clock() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let fresh = mint_service_jwt(
            &setup.key,
            &setup.did,
            SERVICE_DID,
            Some(METHOD),
            unix_now() + 60,
        );
        let header = format!("Bearer {fresh}");
        assert!(setup.auth.verify(Some(&header), METHOD).await.is_ok());
        let header = format!("Bearer {}", setup.token());
        assert_eq!(
            name(setup.auth.verify(Some(&header), METHOD).await),
            "JwtExpired"
        );
    }

    #[tokio::test]
    async fn a_request_without_an_authorization_header_requires_authentication() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        for header in [None, Some(""), Some("   ")] {
            assert_eq!(
                name(setup.auth.verify_at(header, METHOD, NOW).await),
                "AuthenticationRequired"
            );
        }
    }

    #[tokio::test]
    async fn a_non_bearer_authorization_requires_authentication() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let token = setup.token();
        for header in [
            format!("Basic {token}"),
            token.clone(),
            "Bearer".to_owned(),
            "Bearer    ".to_owned(),
            "Basic YWRtaW46aHVudGVyMg==".to_owned(),
        ] {
            assert_eq!(
                name(setup.auth.verify_at(Some(&header), METHOD, NOW).await),
                "AuthenticationRequired",
                "{header}"
            );
        }
        // The scheme is case-insensitive (RFC 9110).
        let lower = format!("bearer {token}");
        assert!(
            setup
                .auth
                .verify_at(Some(&lower), METHOD, NOW)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_garbage_token_is_a_bad_jwt() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let valid = setup.token();
        let (header, rest) = valid.split_once('.').unwrap();
        let (claims, _) = rest.split_once('.').unwrap();
        let not_json = URL_SAFE_NO_PAD.encode("not json");
        for token in [
            "garbage".to_owned(),
            "a.b".to_owned(),
            format!("{valid}.extra"),
            format!("!!!.{claims}.AAAA"),
            format!("{header}.!!!.AAAA"),
            format!("{not_json}.{claims}.AAAA"),
            format!("{header}.{not_json}.AAAA"),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(name(setup.verify(&token).await), "BadJwt", "{token:.40}");
        }
        assert_eq!(setup.plc.hits(), 0, "garbage never reaches the network");
    }

    #[tokio::test]
    async fn a_token_missing_a_required_claim_is_a_bad_jwt() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        for missing in ["iss", "aud", "exp"] {
            let mut claims = setup.claims();
            claims.as_object_mut().unwrap().remove(missing);
            let token = sign_jwt(&setup.key, &setup.header(), &claims);
            assert_eq!(
                name(setup.verify(&token).await),
                "BadJwt",
                "without {missing}"
            );
        }
        let mut claims = setup.claims();
        claims["exp"] = json!("tomorrow");
        let token = sign_jwt(&setup.key, &setup.header(), &claims);
        assert_eq!(name(setup.verify(&token).await), "BadJwt");
    }

    #[tokio::test]
    async fn tokens_with_alg_none_or_another_algorithm_are_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        for alg in ["none", "HS256", "RS256", "EdDSA", "es256k"] {
            let header = json!({ "typ": "JWT", "alg": alg });
            let token = sign_jwt(&setup.key, &header, &setup.claims());
            assert_eq!(name(setup.verify(&token).await), "BadJwt", "{alg}");
        }
        let no_alg = sign_jwt(&setup.key, &json!({ "typ": "JWT" }), &setup.claims());
        assert_eq!(name(setup.verify(&no_alg).await), "BadJwt");
        // alg "none" with an empty signature segment, the classic forgery.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({ "alg": "none" }).to_string()),
            URL_SAFE_NO_PAD.encode(setup.claims().to_string())
        );
        assert_eq!(name(setup.verify(&unsigned).await), "BadJwt");
    }

    #[tokio::test]
    async fn an_alg_that_does_not_match_the_issuers_key_curve_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        // Header claims ES256 but the issuer's key (and the signature) is secp256k1.
        let header = json!({ "typ": "JWT", "alg": "ES256" });
        let token = sign_jwt(&setup.key, &header, &setup.claims());
        assert_eq!(name(setup.verify(&token).await), "BadJwtSignature");
    }

    #[tokio::test]
    async fn other_token_types_are_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        for typ in ["at+jwt", "refresh+jwt", "dpop+jwt"] {
            let header = json!({ "typ": typ, "alg": "ES256K" });
            let token = sign_jwt(&setup.key, &header, &setup.claims());
            assert_eq!(name(setup.verify(&token).await), "BadJwtType", "{typ}");
        }
        let untyped = sign_jwt(&setup.key, &json!({ "alg": "ES256K" }), &setup.claims());
        assert!(setup.verify(&untyped).await.is_ok(), "typ is optional");
    }

    #[tokio::test]
    async fn a_token_signed_by_another_key_is_rejected_on_both_curves() {
        for (key, impostor) in [
            (SigningKey::generate_k256(), SigningKey::generate_k256()),
            (SigningKey::generate_p256(), SigningKey::generate_p256()),
        ] {
            let setup = Setup::new(key).await;
            let forged =
                mint_service_jwt(&impostor, &setup.did, SERVICE_DID, Some(METHOD), NOW + 60);
            assert_eq!(name(setup.verify(&forged).await), "BadJwtSignature");
            assert_eq!(
                setup.plc.hits(),
                2,
                "one cached lookup, one fresh re-resolution, no more"
            );
        }
    }

    #[tokio::test]
    async fn a_tampered_payload_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let token = setup.token();
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let mut claims = setup.claims();
        claims["iss"] = json!(plc_did("someoneelse"));
        let other = plc_did("someoneelse");
        setup.plc.put(
            &other,
            plc_doc(&other, &SigningKey::generate_k256().public_key()),
        );
        let tampered = format!(
            "{header}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        assert_eq!(name(setup.verify(&tampered).await), "BadJwtSignature");
    }

    #[tokio::test]
    async fn malformed_signatures_are_rejected_without_resolving_the_issuer() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let token = setup.token();
        let (input, _) = token.rsplit_once('.').unwrap();
        for signature in [
            "",
            "!!!!",
            "AAAA",
            &URL_SAFE_NO_PAD.encode([0u8; 64]),
            &URL_SAFE_NO_PAD.encode([1u8; 65]),
        ] {
            let token = format!("{input}.{signature}");
            assert_eq!(
                name(setup.verify(&token).await),
                "BadJwtSignature",
                "{signature}"
            );
        }
        assert_eq!(setup.plc.hits(), 0);
    }

    #[tokio::test]
    async fn a_high_s_signature_is_rejected_on_both_curves() {
        for key in [SigningKey::generate_k256(), SigningKey::generate_p256()] {
            let setup = Setup::new(key).await;
            let token = setup.token();
            let high_s = with_high_s(&setup.key, &token);
            assert_ne!(high_s, token);
            // The twin is mathematically valid, so only the low-S rule stops it.
            let (input, sig) = high_s.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            if let PublicKey::P256(vk) = setup.key.public_key() {
                use ecdsa::signature::Verifier;
                let raw = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                assert!(vk.verify(input.as_bytes(), &raw).is_ok());
            }
            assert_eq!(
                name(setup.verify(&high_s).await),
                "BadJwtSignature",
                "{}",
                setup.key.jwt_alg()
            );
            assert!(
                setup.verify(&token).await.is_ok(),
                "the low-S original still passes"
            );
        }
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        for aud in [
            "did:web:other.test",
            "did:web:herald.test#other_service",
            "did:web:herald.test:x",
        ] {
            let token = mint_service_jwt(&setup.key, &setup.did, aud, Some(METHOD), NOW + 60);
            assert_eq!(name(setup.verify(&token).await), "BadJwtAudience", "{aud}");
        }
    }

    #[tokio::test]
    async fn an_audience_naming_heralds_service_entry_is_accepted() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let aud = format!("{SERVICE_DID}#herald_appview");
        let token = mint_service_jwt(&setup.key, &setup.did, &aud, Some(METHOD), NOW + 60);
        assert!(setup.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_for_another_method_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let token = mint_service_jwt(
            &setup.key,
            &setup.did,
            SERVICE_DID,
            Some("community.herald.getSubscribers"),
            NOW + 60,
        );
        let err = setup.verify(&token).await.unwrap_err();
        assert_eq!(err.error_name(), "BadJwtLexiconMethod");
        assert_eq!(
            err.to_string(),
            "bad jwt lexicon method (\"lxm\"). must match: community.herald.publish"
        );
    }

    #[tokio::test]
    async fn a_token_without_lxm_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let token = mint_service_jwt(&setup.key, &setup.did, SERVICE_DID, None, NOW + 60);
        let err = setup.verify(&token).await.unwrap_err();
        assert_eq!(err.error_name(), "BadJwtLexiconMethod");
        assert!(err.to_string().starts_with("missing"));
    }

    #[tokio::test]
    async fn an_expired_token_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let expired = mint_service_jwt(
            &setup.key,
            &setup.did,
            SERVICE_DID,
            Some(METHOD),
            NOW - CLOCK_SKEW_LEEWAY_SECS,
        );
        assert_eq!(name(setup.verify(&expired).await), "JwtExpired");
        assert_eq!(setup.plc.hits(), 0);
    }

    #[tokio::test]
    async fn a_token_expired_within_the_clock_skew_leeway_passes() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let token = mint_service_jwt(
            &setup.key,
            &setup.did,
            SERVICE_DID,
            Some(METHOD),
            NOW - CLOCK_SKEW_LEEWAY_SECS + 1,
        );
        assert!(setup.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_issued_in_the_future_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let mut claims = setup.claims();
        claims["iat"] = json!(NOW + CLOCK_SKEW_LEEWAY_SECS + 1);
        let token = sign_jwt(&setup.key, &setup.header(), &claims);
        assert_eq!(name(setup.verify(&token).await), "BadJwt");
        claims["iat"] = json!(NOW + CLOCK_SKEW_LEEWAY_SECS);
        let token = sign_jwt(&setup.key, &setup.header(), &claims);
        assert!(
            setup.verify(&token).await.is_ok(),
            "skew within the leeway is tolerated"
        );
    }

    #[tokio::test]
    async fn an_iss_with_a_service_fragment_is_accepted_and_stripped() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let iss = format!("{}#atproto_labeler", setup.did);
        let token = mint_service_jwt(&setup.key, &iss, SERVICE_DID, Some(METHOD), NOW + 60);
        assert_eq!(
            setup.verify(&token).await.unwrap(),
            Caller {
                did: setup.did.clone()
            }
        );
    }

    #[tokio::test]
    async fn an_iss_that_is_not_a_did_is_rejected() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let did = setup.did.clone();
        for iss in [
            "alice.test".to_owned(),
            format!("{did}#"),
            format!("{did}#a#b"),
            format!("{did}#a b"),
            "did:plc:".to_owned(),
        ] {
            let token = mint_service_jwt(&setup.key, &iss, SERVICE_DID, Some(METHOD), NOW + 60);
            assert_eq!(name(setup.verify(&token).await), "BadJwtIss", "{iss}");
        }
    }

    #[tokio::test]
    async fn an_unknown_or_unsupported_issuer_is_a_bad_jwt() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        for iss in [
            plc_did("stranger"),
            "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme".to_owned(),
            "did:example:123".to_owned(),
        ] {
            let token = mint_service_jwt(&setup.key, &iss, SERVICE_DID, Some(METHOD), NOW + 60);
            let err = setup.verify(&token).await.unwrap_err();
            assert_eq!(err.error_name(), "BadJwt", "{iss}");
            assert!(matches!(err, AuthError::IssuerUnresolved { .. }));
        }
    }

    #[tokio::test]
    async fn an_issuer_whose_directory_is_down_is_a_bad_jwt() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        setup.plc.fail_with(&setup.did, 503);
        let err = setup.verify(&setup.token()).await.unwrap_err();
        assert_eq!(err.error_name(), "BadJwt");
        assert!(matches!(
            err,
            AuthError::IssuerUnresolved {
                source: ResolveError::Http(_),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_by_re_resolving_the_issuer_once() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        assert!(
            setup.verify(&setup.token()).await.is_ok(),
            "caches the old key"
        );

        // The account rotates to a new key (even a new curve); the cached document is stale.
        let rotated = SigningKey::generate_p256();
        setup
            .plc
            .put(&setup.did, plc_doc(&setup.did, &rotated.public_key()));
        let token = mint_service_jwt(&rotated, &setup.did, SERVICE_DID, Some(METHOD), NOW + 60);
        assert_eq!(setup.verify(&token).await.unwrap().did, setup.did);
        assert_eq!(setup.plc.hits(), 2);

        // The refreshed document is cached: the next call needs no lookup.
        assert!(setup.verify(&token).await.is_ok());
        assert_eq!(setup.plc.hits(), 2);
        // And the old key no longer works.
        assert_eq!(name(setup.verify(&setup.token()).await), "BadJwtSignature");
    }

    #[tokio::test]
    async fn error_messages_never_contain_the_token() {
        let setup = Setup::new(SigningKey::generate_k256()).await;
        let token = setup.token();
        let (input, _) = token.rsplit_once('.').unwrap();
        let wrong_aud = mint_service_jwt(
            &setup.key,
            &setup.did,
            "did:web:x.test",
            Some(METHOD),
            NOW + 60,
        );
        let forged = mint_service_jwt(
            &SigningKey::generate_k256(),
            &setup.did,
            SERVICE_DID,
            Some(METHOD),
            NOW + 60,
        );
        for bad in [
            format!("{input}.AAAA"),
            wrong_aud,
            forged,
            format!("{token}.x"),
            with_high_s(&setup.key, &token),
        ] {
            let message = setup.verify(&bad).await.unwrap_err().to_string();
            for part in bad.split('.').filter(|p| p.len() > 8) {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    #[test]
    fn error_names_match_the_reference_implementation() {
        let cases: [(AuthError, &str); 9] = [
            (
                AuthError::AuthenticationRequired("x"),
                "AuthenticationRequired",
            ),
            (AuthError::BadJwt("x"), "BadJwt"),
            (
                AuthError::IssuerUnresolved {
                    did: "did:plc:x".into(),
                    source: ResolveError::NotFound("did:plc:x".into()),
                },
                "BadJwt",
            ),
            (AuthError::BadJwtType, "BadJwtType"),
            (AuthError::JwtExpired, "JwtExpired"),
            (AuthError::BadJwtAudience, "BadJwtAudience"),
            (
                AuthError::BadJwtLexiconMethod {
                    problem: "bad",
                    expected: METHOD.into(),
                },
                "BadJwtLexiconMethod",
            ),
            (AuthError::BadJwtIss, "BadJwtIss"),
            (AuthError::BadJwtSignature("x"), "BadJwtSignature"),
        ];
        for (error, expected) in cases {
            assert_eq!(error.error_name(), expected);
        }
    }

    #[test]
    fn minted_signatures_verify_and_are_low_s_on_both_curves() {
        for key in [SigningKey::generate_k256(), SigningKey::generate_p256()] {
            for i in 0..32u8 {
                let msg = [i; 7];
                let sig = key.sign(&msg);
                key.public_key().verify(&msg, &sig).unwrap();
            }
        }
    }

    #[test]
    fn signing_key_debug_shows_only_the_public_key() {
        let key = SigningKey::generate_k256();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_key().did_key()));
        let SigningKey::K256(secret) = &key else {
            unreachable!()
        };
        let secret_hex: String = secret
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!shown.contains(&secret_hex));
    }
}
