//! Which repositories hold Herald records: `com.atproto.sync.listReposByCollection` on the
//! relay for each Herald collection, or — where the relay (or a plain PDS) does not implement
//! it — every repository from `com.atproto.sync.listRepos`, minus inactive ones.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::BackfillError;
use super::reader::rate_limit_wait;
use crate::model::COLLECTIONS;

const PAGE: &str = "1000";
const ATTEMPTS: usize = 6;

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

async fn page(http: &reqwest::Client, url: &Url, method: &str) -> Result<Page, Listing> {
    let failed = |detail: String| {
        Listing::Failed(BackfillError::Http {
            what: method.into(),
            detail,
        })
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let wait = match http.get(url.clone()).send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return response
                        .json::<Page>()
                        .await
                        .map_err(|e| failed(format!("unreadable page: {}", e.without_url())));
                }
                if status == StatusCode::TOO_MANY_REQUESTS {
                    rate_limit_wait(response.headers())
                } else if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
                    Duration::from_millis(250 << attempt.min(6))
                } else {
                    let body = response.text().await.unwrap_or_default();
                    let error = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    // The reference PDS passes methods it lacks to its proxy, which asks for
                    // auth first: `401 AuthMissing` means "not here" as much as a 404 does.
                    if status == StatusCode::NOT_FOUND
                        || status == StatusCode::NOT_IMPLEMENTED
                        || status == StatusCode::UNAUTHORIZED
                        || error == "MethodNotImplemented"
                        || error == "XRPCNotSupported"
                    {
                        return Err(Listing::NotImplemented);
                    }
                    return Err(failed(format!("answered {status} {error}")));
                }
            }
            Err(e) => {
                if attempt >= ATTEMPTS {
                    return Err(failed(e.without_url().to_string()));
                }
                Duration::from_millis(250 << attempt.min(6))
            }
        };
        if attempt >= ATTEMPTS {
            return Err(failed(format!("still failing after {ATTEMPTS} attempts")));
        }
        tokio::time::sleep(wait).await;
    }
}
