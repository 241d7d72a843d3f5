//! Which repositories hold Herald records: `com.atproto.sync.listReposByCollection` on the
//! relay for each Herald collection, or — where the relay (or a plain PDS) does not implement
//! it — every repository from `com.atproto.sync.listRepos`, minus inactive ones.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::BackfillError;
use super::retry::{Attempt, rate_limit_wait, with_retries, xrpc_error};
use crate::model::COLLECTIONS;

const PAGE: &str = "1000";

#[derive(Deserialize)]
struct Page {
    repos: Vec<Repo>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct Repo {
    did: String,
    #[serde(default)]
    active: Option<bool>,
}

/// Every DID that may hold Herald records, sorted and without repeats.
pub async fn list_repos(http: &reqwest::Client, relay: &Url) -> Result<Vec<String>, BackfillError> {
    let mut dids = BTreeSet::new();
    for collection in COLLECTIONS {
        match pages(
            http,
            relay,
            "com.atproto.sync.listReposByCollection",
            Some(collection),
            &mut dids,
        )
        .await
        {
            Ok(()) => {}
            Err(Listing::NotImplemented) => {
                tracing::info!("the relay has no listReposByCollection; listing every repository");
                dids.clear();
                match pages(http, relay, "com.atproto.sync.listRepos", None, &mut dids).await {
                    Ok(()) => break,
                    Err(Listing::NotImplemented) => {
                        return Err(BackfillError::Http {
                            what: "listRepos".into(),
                            detail: "the relay implements neither listing method".into(),
                        });
                    }
                    Err(Listing::Failed(e)) => return Err(e),
                }
            }
            Err(Listing::Failed(e)) => return Err(e),
        }
    }
    Ok(dids.into_iter().collect())
}

enum Listing {
    NotImplemented,
    Failed(BackfillError),
}

async fn pages(
    http: &reqwest::Client,
    relay: &Url,
    method: &str,
    collection: Option<&str>,
    dids: &mut BTreeSet<String>,
) -> Result<(), Listing> {
    let mut cursor: Option<String> = None;
    loop {
        let mut url = relay.join(&format!("xrpc/{method}")).map_err(|e| {
            Listing::Failed(BackfillError::Http {
                what: method.into(),
                detail: e.to_string(),
            })
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(c) = collection {
                q.append_pair("collection", c);
            }
            q.append_pair("limit", PAGE);
            if let Some(c) = &cursor {
                q.append_pair("cursor", c);
            }
        }
        let page = page(http, &url, method).await?;
        let empty = page.repos.is_empty();
        dids.extend(
            page.repos
                .into_iter()
                .filter(|r| r.active != Some(false))
                .map(|r| r.did)
                .filter(|d| crate::model::is_did(d)),
        );
        match page.cursor {
            Some(next) if !empty && cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
            _ => return Ok(()),
        }
    }
}

/// One page, or `None` when the server does not implement `method`.
async fn page(http: &reqwest::Client, url: &Url, method: &str) -> Result<Page, Listing> {
    match with_retries(method, || page_attempt(http, url, method)).await {
        Ok(Some(page)) => Ok(page),
        Ok(None) => Err(Listing::NotImplemented),
        Err(e) => Err(Listing::Failed(e)),
    }
}

async fn page_attempt(
    http: &reqwest::Client,
    url: &Url,
    method: &str,
) -> Result<Option<Page>, Attempt> {
    let failed = |detail: String| BackfillError::Http {
        what: method.into(),
        detail,
    };
    let response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| Attempt::Transient(failed(e.without_url().to_string())))?;
    let status = response.status();
    if status.is_success() {
        return response
            .json::<Page>()
            .await
            .map(Some)
            .map_err(|e| Attempt::Final(failed(format!("unreadable page: {}", e.without_url()))));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = rate_limit_wait(response.headers());
        return Err(Attempt::RateLimited(failed("rate limited".into()), wait));
    }
    if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
        return Err(Attempt::Transient(failed(format!("answered {status}"))));
    }
    let error = xrpc_error(&response.text().await.unwrap_or_default()).unwrap_or_default();
    // The reference PDS passes methods it lacks to its proxy, which asks for auth first:
    // `401 AuthMissing` means "not here" as much as a 404 does.
    if status == StatusCode::NOT_FOUND
        || status == StatusCode::NOT_IMPLEMENTED
        || status == StatusCode::UNAUTHORIZED
        || error == "MethodNotImplemented"
        || error == "XRPCNotSupported"
    {
        return Ok(None);
    }
    Err(Attempt::Final(failed(format!("answered {status} {error}"))))
}
