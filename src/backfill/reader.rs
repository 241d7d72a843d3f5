//! Fetching and verifying one repository: DID document → PDS → `com.atproto.sync.getRepo`.
//!
//! Rate limits are honoured (`429` waits for `Retry-After` or `RateLimit-Reset`, capped), other
//! transient failures (5xx, timeouts, refused connections) are retried with jittered backoff,
//! and a repository the PDS says it cannot serve (`RepoNotFound`, `RepoDeactivated`,
//! `RepoTakendown`, `RepoSuspended`) is reported as unavailable without retrying.

use std::time::Duration;

use reqwest::StatusCode;
use url::Url;

use super::BackfillError;
use super::retry::{Attempt, rate_limit_wait, with_retries, xrpc_error};
use crate::ingest::verify::Verifier;
use crate::storage::{IndexOp, Store};

/// Largest repository read. Herald needs only its own records, but `getRepo` serves the whole
/// repository; the largest real ones are some hundreds of MB.
const MAX_REPO_BYTES: usize = 512 * 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What one repository holds for Herald.
#[derive(Debug)]
pub struct RepoOutcome {
    /// A `Put` for each record, and a `Delete` for each indexed record it no longer holds.
    pub ops: Vec<IndexOp>,
    pub rev: String,
    pub records: usize,
}

/// Reads repositories from their PDSes. Cheap to clone.
#[derive(Clone)]
pub struct RepoReader {
    http: reqwest::Client,
    verifier: Verifier,
    store: Store,
}

impl RepoReader {
    pub fn new(verifier: Verifier, store: Store) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            verifier,
            store,
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The PDS that hosts `did`, from its DID document.
    pub async fn pds_of(&self, did: &str) -> Result<Url, BackfillError> {
        let doc = self
            .verifier
            .resolver
            .resolve(did)
            .await
            .map_err(|source| BackfillError::Resolve {
                did: did.to_owned(),
                source,
            })?;
        doc.pds_endpoint()
            .and_then(|e| Url::parse(e).ok())
            .ok_or_else(|| BackfillError::NoPds(did.to_owned()))
    }

    /// Whether the index holds any live record of `did`'s.
    pub async fn holds_records(&self, did: &str) -> Result<bool, BackfillError> {
        Ok(!self.store.record_keys_of(did).await?.is_empty())
    }

    /// Reads `did`'s repository from its own PDS.
    pub async fn read(&self, did: &str) -> Result<RepoOutcome, BackfillError> {
        let pds = self.pds_of(did).await?;
        self.read_from(did, &pds).await
    }

    /// Reads `did`'s repository from `pds`, verifies it, and works out the index changes.
    pub async fn read_from(&self, did: &str, pds: &Url) -> Result<RepoOutcome, BackfillError> {
        let mut url =
            pds.join("xrpc/com.atproto.sync.getRepo")
                .map_err(|e| BackfillError::Http {
                    what: "getRepo URL".into(),
                    detail: e.to_string(),
                })?;
        url.query_pairs_mut().append_pair("did", did);
        let car = fetch(&self.http, &url, did).await?;
        let (commit, verified) =
            self.verifier
                .repo(did, &car)
                .await
                .map_err(|source| BackfillError::Rejected {
                    did: did.to_owned(),
                    source,
                })?;
        for skip in &verified.skipped {
            tracing::warn!(reason = skip.reason, detail = %skip.detail, "skipped record");
        }
        let mut ops = verified.ops;
        let records = ops.len();
        let held: std::collections::HashSet<(String, String)> = ops
            .iter()
            .filter_map(|op| match op {
                IndexOp::Put {
                    collection, rkey, ..
                } => Some((collection.clone(), rkey.clone())),
                _ => None,
            })
            .collect();
        // Records indexed earlier but gone from the repository were deleted while Herald was
        // not looking. The delete carries the repository's rev, so a record written after it
        // (seen on the firehose meanwhile) is left alone.
        for (collection, rkey) in self.store.record_keys_of(did).await? {
            if !held.contains(&(collection.clone(), rkey.clone())) {
                ops.push(IndexOp::Delete {
                    did: did.to_owned(),
                    collection,
                    rkey,
                    rev: commit.rev.clone(),
                });
            }
        }
        Ok(RepoOutcome {
            ops,
            rev: commit.rev,
            records,
        })
    }
}

/// GETs a repository CAR, with retries.
async fn fetch(http: &reqwest::Client, url: &Url, did: &str) -> Result<Vec<u8>, BackfillError> {
    with_retries(&format!("getRepo for {did}"), || attempt(http, url, did)).await
}

async fn attempt(http: &reqwest::Client, url: &Url, did: &str) -> Result<Vec<u8>, Attempt> {
    let http_error = |detail: String| BackfillError::Http {
        what: format!("getRepo for {did}"),
        detail,
    };
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/vnd.ipld.car")
        .send()
        .await
        .map_err(|e| Attempt::Transient(http_error(e.without_url().to_string())))?;
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = rate_limit_wait(response.headers());
        return Err(Attempt::RateLimited(
            http_error(format!("rate limited; asked to wait {wait:?}")),
            wait,
        ));
    }
    if status.is_server_error() {
        return Err(Attempt::Transient(http_error(format!("answered {status}"))));
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let error = xrpc_error(&body).unwrap_or_else(|| status.to_string());
        return Err(Attempt::Final(match error.as_str() {
            "RepoNotFound" | "RepoDeactivated" | "RepoTakendown" | "RepoSuspended" => {
                BackfillError::Unavailable {
                    did: did.to_owned(),
                    error,
                }
            }
            _ => http_error(format!("answered {status} {error}")),
        }));
    }
    let too_large = || Attempt::Final(http_error(format!("larger than {MAX_REPO_BYTES} bytes")));
    if response
        .content_length()
        .is_some_and(|len| len > MAX_REPO_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Attempt::Transient(http_error(e.without_url().to_string())))?
    {
        if body.len() + chunk.len() > MAX_REPO_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
