//! Rate limits for unauthenticated methods (`subscribeEmail`), in memory per process:
//! per client address and per email address, so neither one client nor many clients can use
//! Herald to flood one mailbox.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};

use super::XrpcError;

/// Subscriptions one client may request per minute.
const PER_CLIENT_PER_MINUTE: u32 = 10;
/// Subscription emails one address may be sent per hour.
const PER_ADDRESS_PER_HOUR: u32 = 5;

pub struct Limits {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    /// Keyed by a hash of the address, so no address sits in this map.
    per_address: DefaultKeyedRateLimiter<[u8; 32]>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

impl Limits {
    pub fn new() -> Self {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            per_client: DefaultKeyedRateLimiter::keyed(Quota::per_minute(nz(
                PER_CLIENT_PER_MINUTE,
            ))),
            per_address: DefaultKeyedRateLimiter::keyed(Quota::per_hour(nz(PER_ADDRESS_PER_HOUR))),
        }
    }

    pub fn check_subscribe(&self, client: IpAddr, email: &str) -> Result<(), XrpcError> {
        let limited = || {
            XrpcError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "too many subscription requests: try again later",
            )
        };
        self.per_client.check_key(&client).map_err(|_| limited())?;
        let key: [u8; 32] = Sha256::digest(email.as_bytes()).into();
        self.per_address.check_key(&key).map_err(|_| limited())?;
        // Keep the maps from growing without bound under a spray of distinct keys.
        self.per_client.retain_recent();
        self.per_address.retain_recent();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_limited_whatever_the_client() {
        let limits = Limits::new();
        for i in 0..PER_ADDRESS_PER_HOUR {
            let client = IpAddr::from([10, 0, 0, i as u8]);
            limits.check_subscribe(client, "a@example.org").unwrap();
        }
        assert!(
            limits
                .check_subscribe(IpAddr::from([10, 0, 1, 1]), "a@example.org")
                .is_err()
        );
        assert!(
            limits
                .check_subscribe(IpAddr::from([10, 0, 1, 1]), "b@example.org")
                .is_ok()
        );
    }

    #[test]
    fn one_client_is_limited_whatever_the_address() {
        let limits = Limits::new();
        let client = IpAddr::from([10, 0, 0, 1]);
        for i in 0..PER_CLIENT_PER_MINUTE {
            limits
                .check_subscribe(client, &format!("m{i}@example.org"))
                .unwrap();
        }
        assert!(limits.check_subscribe(client, "x@example.org").is_err());
    }
}
