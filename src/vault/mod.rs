//! The contact vault: members' private addresses (email, phone, Telegram chat, push
//! subscription), their verification, the email identity of seeds 001 and 002 (one email
//! per account, transfer, the manage page, standalone email subscriptions, pre-validation),
//! and what recipients told Herald (suppressed addresses, bounce scores, numbers that replied
//! STOP, Telegram chats that sent /stop).
//!
//! ```text
//! contact.add ─▶ parse + normalise ─▶ seal (AEAD, AAD = owner|id) ─▶ challenge (hashed) ─▶ send
//! contact.verify / link / Telegram /start ─▶ constant-time check ─▶ verified (+ conversions)
//! ```
//! Owns every rule about contacts and the only code that sees a plaintext address: it seals
//! before storing, opens only to send or to show the address to its verified owner, and masks
//! everything else. Errors and logs never carry an address.
//! Must not touch: SQL (the store does), provider wire formats (the channel adapters do), or
//! preference resolution (distribute asks [`Vault::reachable`]).

pub mod address;
mod compliance;
pub mod crypto;
mod delivery;
mod email_identity;
pub mod forget;
mod member;
mod messages;
mod rotation;

use std::sync::{Arc, RwLock};

pub use compliance::{BounceState, ComplianceReply};
pub use delivery::Target;
pub use email_identity::{ManageAction, ManageView, SubscribeOutcome};
pub use member::FEED_CONTACT_ID;
pub use member::{AddContact, AddedContact, ContactView, TelegramOutcome, VerifiedContact};
pub use rotation::RotationReport;

use crate::auth::ServiceAuth;
use crate::channels::{Channels, SendError};
use crate::model::Channel;
use crate::settings::{Settings, VaultSettings};
use crate::storage::{StorageError, Store, VaultStore};
use address::AddressError;
use crypto::{KeyError, KeyRing};

/// How long an email link or code stays good (seed 001's implementation: two hours).
pub const EMAIL_CHALLENGE_TTL_SECS: i64 = 2 * 60 * 60;
/// How long an SMS or push code stays good.
pub const CODE_TTL_SECS: i64 = 10 * 60;
/// How long a Telegram pairing link stays good.
pub const PAIRING_TTL_SECS: i64 = 15 * 60;
/// Wrong codes allowed before the challenge is spent.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Minimum time between two verification messages for the same contact.
pub const RESEND_COOLDOWN_SECS: i64 = 60;
/// Digits in a verification code.
pub const CODE_DIGITS: u32 = 6;

/// Why a vault operation was refused. `Display` is safe to show callers: no address, no
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    InvalidAddress(#[from] AddressError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("channel {0} has no provider configured on this Herald")]
    ChannelUnavailable(&'static str),
    #[error("{0}")]
    RateLimited(String),
    #[error("no such contact")]
    ContactNotFound,
    #[error("the code is not right")]
    InvalidCode,
    #[error("the code has expired: ask for a new one")]
    ExpiredCode,
    #[error("too many wrong codes: ask for a new one")]
    TooManyAttempts,
    #[error("the contact is already verified")]
    AlreadyVerified,
    /// The number replied STOP to Herald: nothing, not even a code, is sent to it until it
    /// replies START.
    #[error(
        "this number has opted out of messages from Herald: text START to Herald's number to opt in again, then add it"
    )]
    NumberOptedOut,
    #[error("the community is not known to this Herald")]
    UnknownCommunity,
    #[error("the message could not be sent: {0}")]
    Send(#[from] SendError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("vault keys: {0}")]
    Keys(#[from] KeyError),
}

impl VaultError {
    /// The ATProto error name for the XRPC envelope.
    pub fn error_name(&self) -> &'static str {
        match self {
            Self::InvalidAddress(_) | Self::InvalidRequest(_) => "InvalidRequest",
            Self::ChannelUnavailable(_) => "ChannelUnavailable",
            Self::RateLimited(_) => "RateLimitExceeded",
            Self::ContactNotFound => "ContactNotFound",
            Self::InvalidCode => "InvalidCode",
            Self::ExpiredCode => "ExpiredCode",
            Self::TooManyAttempts => "TooManyAttempts",
            Self::AlreadyVerified => "AlreadyVerified",
            Self::NumberOptedOut => "NumberOptedOut",
            Self::UnknownCommunity => "UnknownCommunity",
            Self::Send(_) => "UpstreamFailure",
            Self::Storage(_) | Self::Keys(_) => "InternalServerError",
        }
    }
}

/// What the vault needs from the rest of Herald.
pub struct VaultConfig {
    pub public_url: url::Url,
    pub service_did: String,
    pub trusted_prevalidators: Vec<String>,
    pub double_opt_in: bool,
    pub keys: VaultSettings,
    /// Webhook endpoints may be loopback or private addresses (`HERALD_WEBHOOK_ALLOW_PRIVATE`).
    pub webhook_allow_private: bool,
}

impl VaultConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            public_url: settings.public_url.clone(),
            service_did: settings.service_did.clone(),
            trusted_prevalidators: settings.trusted_prevalidators.clone(),
            double_opt_in: settings.email_double_opt_in,
            keys: settings.vault.clone(),
            webhook_allow_private: settings.providers.webhook_allow_private,
        }
    }
}

/// The vault service. Cheap to share behind an `Arc`.
pub struct Vault {
    store: VaultStore,
    index: Store,
    keys: RwLock<Arc<KeyRing>>,
    config: VaultConfig,
    channels: Arc<Channels>,
    auth: Arc<ServiceAuth>,
    messages: messages::Messages,
}

impl Vault {
    pub fn new(
        store: VaultStore,
        index: Store,
        keys: KeyRing,
        config: VaultConfig,
        channels: Arc<Channels>,
        auth: Arc<ServiceAuth>,
    ) -> Self {
        Self {
            store,
            index,
            keys: RwLock::new(Arc::new(keys)),
            config,
            channels,
            auth,
            messages: messages::Messages::new(),
        }
    }

    pub fn store(&self) -> &VaultStore {
        &self.store
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-read the key ring (another process may have rotated it).
    fn reload_keys(&self) -> Result<Arc<KeyRing>, KeyError> {
        let ring = Arc::new(KeyRing::load(&self.config.keys)?);
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ring.clone();
        Ok(ring)
    }

    /// Seal under the current key; returns the sealed bytes and the key version.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, i64) {
        let ring = self.ring();
        (ring.seal(aad, plaintext), i64::from(ring.current_version()))
    }

    /// Open a sealed value; a version this process does not know yet (a rotation started
    /// elsewhere) reloads the key ring once.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self.ring().open(aad, sealed) {
            Err(KeyError::UnknownVersion(_)) => self.reload_keys()?.open(aad, sealed),
            other => other,
        }
    }

    fn open_string(&self, aad: &[u8], sealed: &[u8]) -> Result<String, VaultError> {
        let bytes = self.open(aad, sealed)?;
        String::from_utf8(bytes)
            .map_err(|_| VaultError::Storage(StorageError::Corrupt("sealed text".into())))
    }

    fn blind_index(&self, channel: Channel, normalized: &str) -> Vec<u8> {
        self.ring().blind_index(channel.as_str(), normalized)
    }

    fn hash_secret(&self, purpose: &str, secret: &str) -> Vec<u8> {
        self.ring().secret_hash(purpose, secret)
    }

    fn secret_matches(&self, purpose: &str, secret: &str, stored: &[u8]) -> bool {
        self.ring().secret_matches(purpose, secret, stored)
    }

    /// `(owner, channel)` pairs of `owners` with a verified, deliverable contact: DESIGN.md
    /// §3 step 4.
    pub async fn reachable(&self, owners: &[String]) -> Result<Vec<(String, Channel)>, VaultError> {
        Ok(self
            .store
            .reachable(owners)
            .await?
            .into_iter()
            .filter_map(|(owner, channel)| Channel::parse(&channel).map(|c| (owner, c)))
            .collect())
    }

    fn link(&self, path: &str, token: &str) -> String {
        let mut url = self.config.public_url.clone();
        url.set_path(path);
        url.query_pairs_mut().clear().append_pair("token", token);
        url.to_string()
    }
}

/// Associated data of a contact's sealed address: the row it belongs to.
fn contact_aad(id: &str, owner: &str, channel: &str) -> Vec<u8> {
    format!("contact|{id}|{owner}|{channel}").into_bytes()
}

/// Associated data of an email address row.
fn email_aad(id: &str) -> Vec<u8> {
    format!("email-address|{id}").into_bytes()
}

fn now_micros() -> i64 {
    crate::storage::now_micros()
}

fn secs(s: i64) -> i64 {
    s * 1_000_000
}
