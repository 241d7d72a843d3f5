//! The caching DID resolver.
//!
//! ```text
//!  resolve(did) ──syntax check──▶ cache hit? ──yes──▶ Arc<DidDocument>
//!                     │ (invalid: no network)  │ no (concurrent misses share one fetch)
//!                     ▼                        ▼
//!              InvalidDid            GET {plc_url}/{did}  |  GET https://host/.well-known/did.json
//!                                              │ 404/410 → NotFound, other non-2xx / IO → Http
//!                                              ▼
//!                              parse (≤ 64 KiB), id == did ─▶ cached for cache_ttl
//! ```
//! Failures are never cached: the next call tries again. `refresh` skips the cache read and
//! replaces the entry (a `NotFound` also evicts it). `invalidate` is synchronous (the firehose
//! loop calls it inline on identity events) while moka's future cache only evicts
//! asynchronously, so it marks the cached DID stale instead; the next `resolve` of a stale DID
//! refetches. Only DIDs that are cached get marked, which bounds the stale set by the cache.
//!
//! Redirects are not followed (as the reference implementation does): a DID document must be
//! served at its own URL.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use moka::future::Cache;
use reqwest::StatusCode;
use url::Url;

use super::did::document_url;
use super::{DidDocument, PublicKey};

/// Upper bound on cached documents. A parsed document is around 1 KiB, so this caps the cache
/// near 20 MiB while comfortably holding every active member of a large hub.
const CACHE_MAX_ENTRIES: usize = 20_000;

/// Largest document body we read. Real documents are well under 4 KiB; the cap keeps a
/// hostile `did:web` host from streaming us an unbounded body.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Where and how to resolve DIDs.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Base URL of the PLC directory (`HERALD_PLC_URL`); `did:plc` documents live at `{plc_url}/{did}`.
    pub plc_url: Url,
    /// How long a resolved document is trusted before it is fetched again. Key rotation is
    /// still picked up sooner: a signature that fails against a cached key triggers a refresh.
    pub cache_ttl: Duration,
    /// Per-request budget for fetching one document (connect through body).
    pub http_timeout: Duration,
}

/// Why a DID could not be resolved to a usable document or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Malformed DID, unsupported method or unsupported `did:web` form; no request was made.
    #[error("invalid DID {0}")]
    InvalidDid(String),
    /// The directory or host positively said there is no such DID (404, or 410 for a
    /// tombstoned `did:plc`).
    #[error("DID not found: {0}")]
    NotFound(String),
    /// Network failure, timeout, redirect or an unexpected status: possibly transient.
    #[error("DID resolution failed for {0}")]
    Http(String),
    /// A document came back but is not acceptable (not JSON, wrong shape, wrong `id`,
    /// unparseable `#atproto` key, too large).
    #[error("bad DID document for {0}")]
    BadDocument(String),
    /// The document has no usable `#atproto` signing key.
    #[error("no usable #atproto signing key for {0}")]
    NoSigningKey(String),
}

/// Resolves DIDs to documents over HTTP, with a TTL cache. Cheap to clone (shared cache and
/// connection pool); also fine behind an `Arc`.
#[derive(Clone)]
pub struct Resolver {
    http: reqwest::Client,
    /// Resolved documents keyed by DID; expiry is the configured TTL.
    cache: Cache<String, Arc<DidDocument>>,
    /// Cached DIDs invalidated since they were fetched; `resolve` refetches these.
    stale: Arc<Mutex<HashSet<String>>>,
    plc_url: Url,
    http_timeout: Duration,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("plc_url", &self.plc_url.as_str())
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(cfg: ResolverConfig) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.http_timeout)
            .build()
            .unwrap_or_else(|e| {
                // Only fails if the TLS backend cannot initialise. The per-request timeout set in
                // `fetch` still applies; redirects are then refused by the status check.
                tracing::error!(error = %e, "building the DID resolver's HTTP client failed; using defaults");
                reqwest::Client::new()
            });
        let cache = Cache::builder()
            .max_capacity(CACHE_MAX_ENTRIES as u64)
            .time_to_live(cfg.cache_ttl)
            .build();
        Self {
            http,
            cache,
            stale: Arc::default(),
            plc_url: cfg.plc_url,
            http_timeout: cfg.http_timeout,
        }
    }

    /// The document for `did`, from the cache when fresh. Concurrent misses for the same DID
    /// share one fetch.
    pub async fn resolve(&self, did: &str) -> Result<Arc<DidDocument>, ResolveError> {
        let url = document_url(did, &self.plc_url)?;
        if self.stale().remove(did) {
            let refreshed = self.refresh_from(did, url).await;
            if matches!(refreshed, Err(ResolveError::Http(_))) {
                // Still stale: try again next time rather than serve the old document forever.
                self.stale().insert(did.to_owned());
            }
            return refreshed;
        }
        self.cache
            .try_get_with_by_ref(did, self.fetch(did, url))
            .await
            .map_err(Arc::unwrap_or_clone)
    }

    /// Fetches `did`'s document now, bypassing the cache, and replaces the cached entry.
    /// A `NotFound` evicts the entry; other failures leave it alone.
    pub async fn refresh(&self, did: &str) -> Result<Arc<DidDocument>, ResolveError> {
        let url = document_url(did, &self.plc_url)?;
        self.refresh_from(did, url).await
    }

    async fn refresh_from(&self, did: &str, url: Url) -> Result<Arc<DidDocument>, ResolveError> {
        match self.fetch(did, url).await {
            Ok(doc) => {
                self.cache.insert(did.to_owned(), doc.clone()).await;
                self.stale().remove(did);
                Ok(doc)
            }
            Err(e) => {
                if matches!(e, ResolveError::NotFound(_)) {
                    self.cache.invalidate(did).await;
                }
                Err(e)
            }
        }
    }

    /// Forgets the cached document for `did` (e.g. on an identity event from the firehose):
    /// the next [`resolve`](Self::resolve) fetches it again. Does nothing for uncached DIDs.
    pub fn invalidate(&self, did: &str) {
        if !self.cache.contains_key(did) {
            return;
        }
        let mut stale = self.stale();
        if stale.len() >= CACHE_MAX_ENTRIES {
            // Marks are only set on cached DIDs and cleared on refetch, but a marked entry that
            // expires or is evicted leaves its mark behind; if those ever add up to a full
            // cache's worth, start over rather than grow.
            stale.clear();
            self.cache.invalidate_all();
        } else {
            stale.insert(did.to_owned());
        }
    }

    fn stale(&self) -> MutexGuard<'_, HashSet<String>> {
        // The set has no invariant a panicking holder could break, so poisoning is ignorable.
        self.stale
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `did`'s `#atproto` signing key; `fresh` refetches the document first (used after a
    /// signature failed against the cached key, in case the key rotated).
    pub async fn signing_key(&self, did: &str, fresh: bool) -> Result<PublicKey, ResolveError> {
        let doc = if fresh {
            self.refresh(did).await?
        } else {
            self.resolve(did).await?
        };
        doc.signing_key()
    }

    async fn fetch(&self, did: &str, url: Url) -> Result<Arc<DidDocument>, ResolveError> {
        tracing::debug!(%did, %url, "fetching DID document");
        let http_error =
            |e: reqwest::Error| ResolveError::Http(format!("{did}: {}", e.without_url()));
        let mut response = self
            .http
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/did+ld+json, application/json",
            )
            .timeout(self.http_timeout)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(ResolveError::NotFound(did.to_owned()));
        }
        if !status.is_success() {
            return Err(ResolveError::Http(format!(
                "{did}: document server answered {status}"
            )));
        }
        let too_large = || {
            ResolveError::BadDocument(format!(
                "{did}: document larger than {MAX_DOCUMENT_BYTES} bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let doc: DidDocument = serde_json::from_slice(&body)
            .map_err(|e| ResolveError::BadDocument(format!("{did}: {e}")))?;
        if doc.id != did {
            return Err(ResolveError::BadDocument(format!(
                "{did}: document id does not match the DID"
            )));
        }
        Ok(Arc::new(doc))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::test_plc::{TestPlc, plc_did, plc_doc};

    fn k256_key() -> PublicKey {
        crate::identity::parse_did_key("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme")
            .unwrap()
    }

    fn p256_key() -> PublicKey {
        crate::identity::parse_did_key("did:key:zDnaeTiq1PdzvZXUaMdezchcMJQpBdH2VN4pgrrEhMCCbmwSb")
            .unwrap()
    }

    #[tokio::test]
    async fn did_plc_documents_are_fetched_from_the_directory_and_cached() {
        let plc = TestPlc::start().await;
        let did = plc_did("alice");
        plc.put(&did, plc_doc(&did, &k256_key()));
        let resolver = plc.resolver();

        let doc = resolver.resolve(&did).await.unwrap();
        assert_eq!(doc.id, did);
        assert_eq!(resolver.signing_key(&did, false).await.unwrap(), k256_key());
        resolver.resolve(&did).await.unwrap();
        assert_eq!(
            plc.hits(),
            1,
            "second and third lookups come from the cache"
        );
    }

    #[tokio::test]
    async fn refresh_bypasses_and_replaces_the_cached_document() {
        let plc = TestPlc::start().await;
        let did = plc_did("rotator");
        plc.put(&did, plc_doc(&did, &k256_key()));
        let resolver = plc.resolver();
        assert_eq!(resolver.signing_key(&did, false).await.unwrap(), k256_key());

        plc.put(&did, plc_doc(&did, &p256_key()));
        assert_eq!(
            resolver.signing_key(&did, false).await.unwrap(),
            k256_key(),
            "still cached"
        );
        assert_eq!(resolver.signing_key(&did, true).await.unwrap(), p256_key());
        assert_eq!(
            resolver.signing_key(&did, false).await.unwrap(),
            p256_key(),
            "cache replaced"
        );
        assert_eq!(plc.hits(), 2);
    }

    #[tokio::test]
    async fn invalidate_forgets_the_cached_document() {
        let plc = TestPlc::start().await;
        let did = plc_did("forgotten");
        plc.put(&did, plc_doc(&did, &k256_key()));
        let resolver = plc.resolver();
        resolver.resolve(&did).await.unwrap();
        plc.put(&did, plc_doc(&did, &p256_key()));
        resolver.invalidate(&did);
        assert_eq!(resolver.signing_key(&did, false).await.unwrap(), p256_key());
        assert_eq!(resolver.signing_key(&did, false).await.unwrap(), p256_key());
        assert_eq!(plc.hits(), 2, "refetched once, then cached again");
        resolver.invalidate(&plc_did("nevercached"));
        assert_eq!(plc.hits(), 2);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let plc = TestPlc::start().await;
        let did = plc_did("latecomer");
        let resolver = plc.resolver();
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::NotFound(_))
        ));
        plc.put(&did, plc_doc(&did, &k256_key()));
        assert_eq!(resolver.resolve(&did).await.unwrap().id, did);
    }

    #[tokio::test]
    async fn a_refresh_that_finds_nothing_evicts_the_cached_document() {
        let plc = TestPlc::start().await;
        let did = plc_did("deleted");
        plc.put(&did, plc_doc(&did, &k256_key()));
        let resolver = plc.resolver();
        resolver.resolve(&did).await.unwrap();
        plc.remove(&did);
        assert!(matches!(
            resolver.refresh(&did).await,
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_document_whose_id_is_another_did_is_rejected() {
        let plc = TestPlc::start().await;
        let did = plc_did("impostor");
        plc.put(&did, plc_doc(&plc_did("victim"), &k256_key()));
        let resolver = plc.resolver();
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::BadDocument(_))
        ));
    }

    #[tokio::test]
    async fn non_json_and_oversized_documents_are_rejected() {
        let plc = TestPlc::start().await;
        let resolver = plc.resolver();
        let did = plc_did("garbage");
        plc.put(&did, json!("not a document"));
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::BadDocument(_))
        ));
        let did = plc_did("huge");
        let mut doc = plc_doc(&did, &k256_key());
        doc["padding"] = json!("x".repeat(MAX_DOCUMENT_BYTES));
        plc.put(&did, doc);
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::BadDocument(_))
        ));
    }

    #[tokio::test]
    async fn server_errors_are_http_failures() {
        let plc = TestPlc::start().await;
        let resolver = plc.resolver();
        let did = plc_did("broken");
        plc.fail_with(&did, 503);
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::Http(_))
        ));
        plc.fail_with(&did, 410);
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_directory_is_an_http_failure() {
        // Bind and drop a listener so the port is (almost certainly) closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let resolver = Resolver::new(ResolverConfig {
            plc_url: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            cache_ttl: Duration::from_secs(60),
            http_timeout: Duration::from_secs(5),
        });
        assert!(matches!(
            resolver.resolve(&plc_did("nobody")).await,
            Err(ResolveError::Http(_))
        ));
    }

    #[tokio::test]
    async fn invalid_dids_and_other_methods_fail_without_a_request() {
        let plc = TestPlc::start().await;
        let resolver = plc.resolver();
        for did in [
            "did:plc:nope",
            "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
            "alice",
        ] {
            assert!(
                matches!(
                    resolver.resolve(did).await,
                    Err(ResolveError::InvalidDid(_))
                ),
                "{did}"
            );
        }
        assert_eq!(plc.hits(), 0);
    }

    #[tokio::test]
    async fn did_web_documents_are_fetched_from_the_host_over_http_on_loopback() {
        let plc = TestPlc::start().await;
        let resolver = plc.resolver();
        let port = plc.url().port().unwrap();
        for host in ["localhost", "127.0.0.1"] {
            let did = format!("did:web:{host}%3A{port}");
            plc.put(&did, plc_doc(&did, &p256_key()));
            assert_eq!(
                resolver.signing_key(&did, false).await.unwrap(),
                p256_key(),
                "{did}"
            );
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let plc = TestPlc::start().await;
        let resolver = plc.resolver();
        let did = plc_did("redirected");
        plc.fail_with(&did, 302);
        assert!(matches!(
            resolver.resolve(&did).await,
            Err(ResolveError::Http(_))
        ));
    }
}
