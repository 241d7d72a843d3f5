//! DID syntax and the URL each supported DID method resolves through.
//!
//! Everything here is pure: a DID that fails these checks never causes a network request.

use url::Url;

use super::ResolveError;
use crate::model::is_did;

/// A `did:plc` identifier is always 24 characters of lowercase base32 (RFC 4648 alphabet).
const PLC_ID_LEN: usize = 24;

/// Path of a `did:web` document on its host (the only `did:web` form ATProto supports).
const DID_WEB_DOCUMENT_PATH: &str = "/.well-known/did.json";

/// The URL whose body is `did`'s document: `{plc_url}/{did}` for `did:plc`,
/// `https://host[:port]/.well-known/did.json` for `did:web` (plain `http` for `localhost` and
/// `127.0.0.1`, as the reference implementation does for local development).
///
/// Rejects malformed DIDs, unsupported methods and `did:web` paths with
/// [`ResolveError::InvalidDid`].
pub(crate) fn document_url(did: &str, plc_url: &Url) -> Result<Url, ResolveError> {
    if !is_did(did) {
        return Err(invalid(did, "malformed DID"));
    }
    if let Some(id) = did.strip_prefix("did:plc:") {
        let well_formed = id.len() == PLC_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        if !well_formed {
            return Err(invalid(
                did,
                "did:plc identifier is not 24 base32 characters",
            ));
        }
        // The identifier's alphabet is URL-safe, so plain concatenation cannot escape the path.
        let base = plc_url.as_str().trim_end_matches('/');
        return Url::parse(&format!("{base}/{did}"))
            .map_err(|e| invalid(did, &format!("bad PLC directory URL: {e}")));
    }
    if let Some(id) = did.strip_prefix("did:web:") {
        let authority = web_authority(did, id)?;
        let host = authority.split(':').next().unwrap_or_default();
        let scheme = if host == "localhost" || host == "127.0.0.1" {
            "http"
        } else {
            "https"
        };
        return Url::parse(&format!("{scheme}://{authority}{DID_WEB_DOCUMENT_PATH}"))
            .map_err(|e| invalid(did, &format!("not a usable host: {e}")));
    }
    Err(invalid(did, "unsupported DID method"))
}

/// Decodes and checks the `host[%3Aport]` part of a `did:web`, returning `host[:port]` with the
/// host lowercased.
fn web_authority(did: &str, id: &str) -> Result<String, ResolveError> {
    if id.contains(':') {
        return Err(invalid(did, "did:web with a path is not supported"));
    }
    // The only escape a host-only did:web may carry is the port separator.
    let decoded = id.replace("%3A", ":").replace("%3a", ":");
    if decoded.contains('%') {
        return Err(invalid(did, "unexpected percent-escape in did:web"));
    }
    let (host, port) = match decoded.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (decoded.as_str(), None),
    };
    let host_ok = !host.is_empty() && host.split('.').all(crate::model::is_ldh_label);
    if !host_ok {
        return Err(invalid(did, "did:web host is not a hostname"));
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Ok(host),
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(format!("{host}:{p}"))
            }
            _ => Err(invalid(did, "did:web port is not a port number")),
        },
    }
}

fn invalid(did: &str, why: &str) -> ResolveError {
    // Bound what we echo back: the DID may be attacker-supplied and up to 2 KiB (or more).
    let shown: String = did.chars().take(128).collect();
    ResolveError::InvalidDid(format!("{shown}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plc() -> Url {
        Url::parse("https://plc.example.com").unwrap()
    }

    #[test]
    fn valid_did_syntax_is_accepted() {
        let long = format!("did:method:{}", "v".repeat(2000));
        for did in [
            "did:method:val",
            "did:method:VAL",
            "did:method:val123",
            "did:method:123",
            "did:method:val-two",
            "did:method:val_two",
            "did:method:val.two",
            "did:method:val:two",
            "did:method:val%BB",
            "did:m:v",
            "did:method::::val",
            "did:method:-",
            "did:method:-:_:.:%ab",
            "did:method:.",
            "did:method:_",
            "did:method::.",
            "did:plc:7iza6de2dwap2sbkpav7c6c6",
            "did:web:example.com",
            "did:web:localhost%3A1234",
            "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
            long.as_str(),
        ] {
            assert!(is_did(did), "{did} should be valid");
        }
    }

    #[test]
    fn invalid_did_syntax_is_rejected() {
        let too_long = format!("did:method:{}", "v".repeat(2100));
        for did in [
            "did",
            "didmethodval",
            "method:did:val",
            "did:method:",
            "didmethod:val",
            "did:methodval)",
            ":did:method:val",
            "did.method.val",
            "did:method:val:",
            "did:method:val%",
            "DID:method:val",
            "did:METHOD:val",
            "did:m123:val",
            "did:method:val/two",
            "did:method:val?two",
            "did:method:val#two",
            too_long.as_str(),
        ] {
            assert!(!is_did(did), "{did} should be invalid");
        }
    }

    #[test]
    fn did_plc_resolves_under_the_plc_directory() {
        let url = document_url("did:plc:7iza6de2dwap2sbkpav7c6c6", &plc()).unwrap();
        assert_eq!(
            url.as_str(),
            "https://plc.example.com/did:plc:7iza6de2dwap2sbkpav7c6c6"
        );
        let with_path = Url::parse("http://127.0.0.1:9/plc/").unwrap();
        let url = document_url("did:plc:7iza6de2dwap2sbkpav7c6c6", &with_path).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/plc/did:plc:7iza6de2dwap2sbkpav7c6c6"
        );
    }

    #[test]
    fn malformed_did_plc_identifiers_are_rejected() {
        for did in [
            "did:plc:short",
            "did:plc:7iza6de2dwap2sbkpav7c6c61", // '1' is not base32
            "did:plc:7IZA6DE2DWAP2SBKPAV7C6C6",  // uppercase
            "did:plc:7iza6de2dwap2sbkpav7c6c6aa", // too long
        ] {
            assert!(
                matches!(document_url(did, &plc()), Err(ResolveError::InvalidDid(_))),
                "{did}"
            );
        }
    }

    #[test]
    fn did_web_resolves_to_the_well_known_document_over_https() {
        let url = document_url("did:web:Example.COM", &plc()).unwrap();
        assert_eq!(url.as_str(), "https://example.com/.well-known/did.json");
        let url = document_url("did:web:example.com%3A8443", &plc()).unwrap();
        assert_eq!(
            url.as_str(),
            "https://example.com:8443/.well-known/did.json"
        );
    }

    #[test]
    fn did_web_on_loopback_resolves_over_plain_http() {
        let url = document_url("did:web:localhost%3A2470", &plc()).unwrap();
        assert_eq!(url.as_str(), "http://localhost:2470/.well-known/did.json");
        let url = document_url("did:web:127.0.0.1%3a2470", &plc()).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:2470/.well-known/did.json");
    }

    #[test]
    fn did_web_paths_bad_hosts_and_bad_ports_are_rejected() {
        for did in [
            "did:web:example.com:user:alice",
            "did:web:example.com%2Fpath",
            "did:web:exa_mple.com",
            "did:web:.example.com",
            "did:web:example..com",
            "did:web:-example.com",
            "did:web:example.com%3A",
            "did:web:example.com%3A0",
            "did:web:example.com%3A99999",
            "did:web:example.com%3A80%3A81",
            "did:web:example.com%3A+80",
        ] {
            assert!(
                matches!(document_url(did, &plc()), Err(ResolveError::InvalidDid(_))),
                "{did}"
            );
        }
    }

    #[test]
    fn other_did_methods_are_rejected() {
        for did in [
            "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
            "did:example:123456789abcdefghi",
            "not a did",
        ] {
            assert!(
                matches!(document_url(did, &plc()), Err(ResolveError::InvalidDid(_))),
                "{did}"
            );
        }
    }
}
