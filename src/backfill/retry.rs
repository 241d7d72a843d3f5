//! Retries for backfill's HTTP calls: rate limits waited out as the server asks, other
//! transient failures retried with jittered exponential backoff, the rest final.

use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;

use super::BackfillError;

/// Attempts per call for transient failures (rate limits count too).
const ATTEMPTS: usize = 6;
/// Longest wait a rate limit can ask for before the call gives up (the next run retries).
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(300);

/// How one attempt failed.
pub(super) enum Attempt {
    Final(BackfillError),
    Transient(BackfillError),
    RateLimited(BackfillError, Duration),
}

/// Runs `attempt` until it succeeds, fails for good, or runs out of attempts.
pub(super) async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, BackfillError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .with_max_times(ATTEMPTS)
        .build();
    loop {
        let wait = match attempt().await {
            Ok(value) => return Ok(value),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::RateLimited(e, wait)) => match delays.next() {
                Some(_) if wait <= MAX_RATE_LIMIT_WAIT => wait,
                _ => return Err(e),
            },
            Err(Attempt::Transient(e)) => match delays.next() {
                Some(delay) => delay,
                None => return Err(e),
            },
        };
        tracing::debug!(what, ?wait, "retrying");
        tokio::time::sleep(wait).await;
    }
}

/// The `error` name of an XRPC error body, if it is one.
pub(super) fn xrpc_error(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_owned)
}

/// How long a `429` asks us to wait: `Retry-After` (seconds), else `RateLimit-Reset` (the
/// reference PDS's header: a Unix time in seconds), else a second.
pub(crate) fn rate_limit_wait(headers: &reqwest::header::HeaderMap) -> Duration {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(seconds) = number("retry-after") {
        return Duration::from_secs(seconds);
    }
    if let Some(reset) = number("ratelimit-reset") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        return Duration::from_secs(reset.saturating_sub(now).max(1));
    }
    Duration::from_secs(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn rate_limit_hints_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_wait(&h), Duration::from_secs(1));
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_wait(&h), Duration::from_secs(7));
        let mut h = HeaderMap::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        h.insert(
            "ratelimit-reset",
            HeaderValue::from_str(&(now + 30).to_string()).unwrap(),
        );
        let wait = rate_limit_wait(&h);
        assert!((29..=30).contains(&wait.as_secs()), "{wait:?}");
    }
}
