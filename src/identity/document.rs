//! The DID document shape ATProto uses, and how its signing key and PDS are found in it.
//!
//! Parsing is lenient where the reference implementation is (unknown fields ignored; a
//! malformed entry in `verificationMethod` or `service` is skipped rather than failing the
//! whole document) and strict where it matters: the `#atproto` key must parse, and the
//! resolver checks that `id` equals the DID that was asked for.

use serde::{Deserialize, Deserializer, Serialize};

use super::{KeyError, PublicKey, ResolveError};

/// Fragment of the verification method that holds an account's signing key.
const ATPROTO_KEY_FRAGMENT: &str = "#atproto";
/// Fragment and type of the service entry naming an account's PDS.
const PDS_SERVICE_FRAGMENT: &str = "#atproto_pds";
const PDS_SERVICE_TYPE: &str = "AtprotoPersonalDataServer";

/// A DID document, with the fields ATProto reads. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    pub id: String,
    /// `at://handle` aliases; the first one is the account's claimed handle.
    #[serde(default)]
    pub also_known_as: Vec<String>,
    #[serde(default, deserialize_with = "skip_malformed_entries")]
    pub verification_method: Vec<VerificationMethod>,
    #[serde(default, deserialize_with = "skip_malformed_entries")]
    pub service: Vec<Service>,
    /// The parsed `#atproto` key, worked out on first use: a cached document serves every
    /// commit and token of its account, and decompressing the point each time was several
    /// percent of firehose verification.
    #[serde(skip)]
    signing: KeyCache,
}

/// A lazily parsed signing key. Not part of a document's identity: two documents with the
/// same fields are equal whether or not either has parsed its key yet.
#[derive(Debug, Clone, Default)]
struct KeyCache(std::sync::OnceLock<Result<PublicKey, ResolveError>>);

impl PartialEq for KeyCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for KeyCache {}

/// One entry of `verificationMethod`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    /// `#atproto` or `did:…#atproto`.
    pub id: String,
    /// `Multikey`, or a legacy `EcdsaSecp256k1VerificationKey2019` /
    /// `EcdsaSecp256r1VerificationKey2019`.
    pub r#type: String,
    #[serde(default)]
    pub controller: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_multibase: Option<String>,
}

/// One entry of `service`. Entries whose `serviceEndpoint` is not a string (the DID spec
/// allows maps) are skipped when parsing: ATProto only uses string endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `#atproto_pds` or `did:…#atproto_pds`, etc.
    pub id: String,
    pub r#type: String,
    pub service_endpoint: String,
}

impl DidDocument {
    /// The account's signing key: the `#atproto` verification method, in `Multikey` form or one
    /// of the two legacy forms (raw SEC1 point in any multibase, no multicodec prefix).
    ///
    /// [`ResolveError::NoSigningKey`] when there is no usable `#atproto` method (absent, no
    /// `publicKeyMultibase`, unsupported type); [`ResolveError::BadDocument`] when it is there
    /// but its key bytes do not parse.
    pub fn signing_key(&self) -> Result<PublicKey, ResolveError> {
        self.signing
            .0
            .get_or_init(|| self.parse_signing_key())
            .clone()
    }

    fn parse_signing_key(&self) -> Result<PublicKey, ResolveError> {
        let no_key = |why: &str| ResolveError::NoSigningKey(format!("{}: {why}", self.id));
        let method = self
            .verification_method
            .iter()
            .find(|m| self.is_own_fragment(&m.id, ATPROTO_KEY_FRAGMENT))
            .ok_or_else(|| no_key("no #atproto verification method"))?;
        let encoded = method
            .public_key_multibase
            .as_deref()
            .ok_or_else(|| no_key("#atproto method has no publicKeyMultibase"))?;
        let parsed = match method.r#type.as_str() {
            "Multikey" => PublicKey::from_multikey(encoded),
            "EcdsaSecp256k1VerificationKey2019" => {
                legacy_point(encoded).and_then(|point| PublicKey::from_sec1_k256(&point))
            }
            "EcdsaSecp256r1VerificationKey2019" => {
                legacy_point(encoded).and_then(|point| PublicKey::from_sec1_p256(&point))
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(no_key(&format!(
                    "unsupported #atproto method type {shown:?}"
                )));
            }
        };
        parsed.map_err(|e| ResolveError::BadDocument(format!("{}: #atproto key: {e}", self.id)))
    }

    /// The account's PDS: the `#atproto_pds` service of type `AtprotoPersonalDataServer`,
    /// if its endpoint is an `http(s)` URL.
    pub fn pds_endpoint(&self) -> Option<&str> {
        let service = self
            .service
            .iter()
            .find(|s| self.is_own_fragment(&s.id, PDS_SERVICE_FRAGMENT))?;
        if service.r#type != PDS_SERVICE_TYPE {
            return None;
        }
        let endpoint = service.service_endpoint.as_str();
        let parsed = url::Url::parse(endpoint).ok()?;
        matches!(parsed.scheme(), "http" | "https").then_some(endpoint)
    }

    /// The handle the document claims (first `at://` alias), unverified.
    pub fn handle(&self) -> Option<&str> {
        self.also_known_as
            .iter()
            .find_map(|aka| aka.strip_prefix("at://"))
    }

    /// Whether `id` names `fragment` of this document: either `#frag` or `{self.id}#frag`.
    fn is_own_fragment(&self, id: &str, fragment: &str) -> bool {
        id == fragment
            || id
                .strip_prefix(self.id.as_str())
                .is_some_and(|rest| rest == fragment)
    }
}

/// Decodes a legacy `publicKeyMultibase` (raw SEC1 point, any multibase).
fn legacy_point(encoded: &str) -> Result<Vec<u8>, KeyError> {
    multibase::decode(encoded)
        .map(|(_, bytes)| bytes)
        .map_err(|_| KeyError::Multibase)
}

/// Deserializes an array, dropping entries that do not fit `T` instead of failing.
fn skip_malformed_entries<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let raw = Vec::<serde_json::Value>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .filter_map(|value| serde_json::from_value(value).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> DidDocument {
        serde_json::from_str(json).unwrap()
    }

    /// A did:plc document in the legacy format the PLC directory served before the Multikey
    /// migration (from the reference implementation's identity tests): secp256k1 key as an
    /// uncompressed SEC1 point, base58btc, no multicodec prefix.
    const LEGACY_PLC_DOC: &str = r##"{
      "@context": [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/suites/secp256k1-2019/v1"
      ],
      "id": "did:plc:yk4dd2qkboz2yv6tpubpc6co",
      "alsoKnownAs": ["at://dholms.xyz"],
      "verificationMethod": [
        {
          "id": "#atproto",
          "type": "EcdsaSecp256k1VerificationKey2019",
          "controller": "did:plc:yk4dd2qkboz2yv6tpubpc6co",
          "publicKeyMultibase": "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR"
        }
      ],
      "service": [
        {
          "id": "#atproto_pds",
          "type": "AtprotoPersonalDataServer",
          "serviceEndpoint": "https://bsky.social"
        }
      ]
    }"##;

    /// The same account's key as a current PLC document writes it.
    const MULTIKEY_PLC_DOC: &str = r##"{
      "@context": [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/multikey/v1",
        "https://w3id.org/security/suites/secp256k1-2019/v1"
      ],
      "id": "did:plc:yk4dd2qkboz2yv6tpubpc6co",
      "alsoKnownAs": ["at://dholms.xyz"],
      "verificationMethod": [
        {
          "id": "did:plc:yk4dd2qkboz2yv6tpubpc6co#atproto",
          "type": "Multikey",
          "controller": "did:plc:yk4dd2qkboz2yv6tpubpc6co",
          "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
        }
      ],
      "service": [
        {
          "id": "did:plc:yk4dd2qkboz2yv6tpubpc6co#atproto_pds",
          "type": "AtprotoPersonalDataServer",
          "serviceEndpoint": "https://bsky.social"
        }
      ]
    }"##;

    const DHOLMS_DID_KEY: &str = "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF";

    #[test]
    fn legacy_plc_document_with_uncompressed_secp256k1_key_yields_its_signing_key() {
        let doc = parse(LEGACY_PLC_DOC);
        assert_eq!(doc.signing_key().unwrap().did_key(), DHOLMS_DID_KEY);
        assert_eq!(doc.pds_endpoint(), Some("https://bsky.social"));
        assert_eq!(doc.handle(), Some("dholms.xyz"));
    }

    #[test]
    fn multikey_plc_document_with_full_did_ids_yields_the_same_key() {
        let doc = parse(MULTIKEY_PLC_DOC);
        assert_eq!(doc.signing_key().unwrap().did_key(), DHOLMS_DID_KEY);
        assert_eq!(doc.pds_endpoint(), Some("https://bsky.social"));
    }

    fn doc_with_method(r#type: &str, multibase: &str) -> DidDocument {
        parse(&format!(
            r##"{{"id": "did:web:example.com",
                 "verificationMethod": [{{"id": "#atproto", "type": "{type}",
                   "controller": "did:web:example.com", "publicKeyMultibase": "{multibase}"}}]}}"##
        ))
    }

    #[test]
    fn multikey_p256_method_yields_a_p256_key() {
        let did_key = "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo";
        let doc = doc_with_method("Multikey", did_key.trim_start_matches("did:key:"));
        let key = doc.signing_key().unwrap();
        assert_eq!(key.jwt_alg(), "ES256");
        assert_eq!(key.did_key(), did_key);
    }

    #[test]
    fn legacy_secp256r1_method_with_compressed_point_yields_a_p256_key() {
        // Interop fixture: the same key as did:key:zDnaembgSGUh… in legacy form.
        let doc = doc_with_method(
            "EcdsaSecp256r1VerificationKey2019",
            "zxdM8dSstjrpZaRUwBmDvjGXweKuEMVN95A9oJBFjkWMh",
        );
        assert_eq!(
            doc.signing_key().unwrap().did_key(),
            "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo"
        );
    }

    #[test]
    fn legacy_secp256r1_method_with_uncompressed_point_yields_a_p256_key() {
        let key = crate::identity::parse_did_key(
            "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo",
        )
        .unwrap();
        let PublicKey::P256(vk) = &key else {
            panic!("expected P-256")
        };
        let uncompressed = multibase::encode(
            multibase::Base::Base58Btc,
            vk.to_encoded_point(false).as_bytes(),
        );
        let doc = doc_with_method("EcdsaSecp256r1VerificationKey2019", &uncompressed);
        assert_eq!(doc.signing_key().unwrap(), key);
    }

    #[test]
    fn legacy_secp256k1_method_with_compressed_point_yields_a_k256_key() {
        let doc = doc_with_method(
            "EcdsaSecp256k1VerificationKey2019",
            "z25z9DTpsiYYJKGsWmSPJK2NFN8PcJtZig12K59UgW7q5t",
        );
        assert_eq!(
            doc.signing_key().unwrap().did_key(),
            "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc"
        );
    }

    #[test]
    fn legacy_method_with_a_key_of_the_wrong_curve_is_a_bad_document() {
        // A secp256k1 point declared as P-256: the bytes are not a P-256 point.
        let doc = doc_with_method(
            "EcdsaSecp256r1VerificationKey2019",
            "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR",
        );
        assert!(matches!(
            doc.signing_key(),
            Err(ResolveError::BadDocument(_))
        ));
    }

    #[test]
    fn a_document_without_an_atproto_method_has_no_signing_key() {
        let doc = parse(
            r##"{"id": "did:web:example.com", "verificationMethod": [
                 {"id": "#other", "type": "Multikey", "controller": "did:web:example.com",
                  "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"}]}"##,
        );
        assert!(matches!(
            doc.signing_key(),
            Err(ResolveError::NoSigningKey(_))
        ));
        let bare = parse(r#"{"id": "did:web:example.com"}"#);
        assert!(matches!(
            bare.signing_key(),
            Err(ResolveError::NoSigningKey(_))
        ));
    }

    #[test]
    fn an_atproto_method_for_another_did_is_not_this_documents_key() {
        let doc = parse(
            r##"{"id": "did:web:example.com", "verificationMethod": [
                 {"id": "did:web:evil.example#atproto", "type": "Multikey", "controller": "did:web:evil.example",
                  "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"}]}"##,
        );
        assert!(matches!(
            doc.signing_key(),
            Err(ResolveError::NoSigningKey(_))
        ));
    }

    #[test]
    fn unsupported_method_types_and_missing_key_material_mean_no_signing_key() {
        let doc = doc_with_method(
            "Ed25519VerificationKey2020",
            "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        );
        assert!(matches!(
            doc.signing_key(),
            Err(ResolveError::NoSigningKey(_))
        ));
        let jwk_only = parse(
            r##"{"id": "did:web:example.com", "verificationMethod": [
                 {"id": "#atproto", "type": "JsonWebKey2020", "controller": "did:web:example.com",
                  "publicKeyJwk": {"kty": "EC"}}]}"##,
        );
        assert!(matches!(
            jwk_only.signing_key(),
            Err(ResolveError::NoSigningKey(_))
        ));
    }

    #[test]
    fn malformed_entries_and_unknown_fields_do_not_spoil_the_document() {
        let doc = parse(
            r##"{"id": "did:web:example.com", "somethingNew": {"x": 1},
                 "verificationMethod": [{"id": 7}, {"id": "#atproto", "type": "Multikey",
                   "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"}],
                 "service": [{"id": "#map", "type": "X", "serviceEndpoint": {"origins": []}},
                   {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                    "serviceEndpoint": "https://pds.example.com"}]}"##,
        );
        assert_eq!(doc.verification_method.len(), 1);
        assert_eq!(doc.service.len(), 1);
        assert!(doc.signing_key().is_ok());
        assert_eq!(doc.pds_endpoint(), Some("https://pds.example.com"));
    }

    #[test]
    fn pds_endpoint_requires_the_pds_type_and_an_http_url() {
        let wrong_type = parse(
            r##"{"id": "did:web:example.com", "service": [{"id": "#atproto_pds",
                 "type": "Something", "serviceEndpoint": "https://pds.example.com"}]}"##,
        );
        assert_eq!(wrong_type.pds_endpoint(), None);
        let not_http = parse(
            r##"{"id": "did:web:example.com", "service": [{"id": "#atproto_pds",
                 "type": "AtprotoPersonalDataServer", "serviceEndpoint": "file:///etc/passwd"}]}"##,
        );
        assert_eq!(not_http.pds_endpoint(), None);
    }

    #[test]
    fn documents_serialize_in_camel_case() {
        let doc = parse(MULTIKEY_PLC_DOC);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["alsoKnownAs"][0], "at://dholms.xyz");
        assert_eq!(
            json["verificationMethod"][0]["publicKeyMultibase"],
            "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
        );
        assert_eq!(json["service"][0]["serviceEndpoint"], "https://bsky.social");
        assert_eq!(serde_json::from_value::<DidDocument>(json).unwrap(), doc);
    }
}
