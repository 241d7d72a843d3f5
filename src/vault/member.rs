//! A member's contacts (seed 000): add, verify (code, link, Telegram pairing, first push),
//! list, remove. Verifying a contact turns no delivery on: routes in the member's records do.

use serde::Serialize;

use super::address::{
    mask, parse_email, parse_phone, parse_push_subscription, parse_telegram_chat,
};
use super::compliance::ComplianceReply;
use super::crypto::{random_code, random_token};
use super::delivery::SealedWebhook;
use super::{
    CODE_DIGITS, CODE_TTL_SECS, MAX_CODE_ATTEMPTS, PAIRING_TTL_SECS, RESEND_COOLDOWN_SECS, Vault,
    VaultError, contact_aad, now_micros, secs,
};
use crate::channels::telegram::{self, Update};
use crate::channels::webhook::{self, WebhookSecret};
use crate::model::{Channel, PushSubscription};
use crate::storage::{ContactRow, NewContact, format_micros};

/// Purposes of hashed secrets, so a code for one use never matches another.
pub(super) const CODE: &str = "contact-code";
pub(super) const LINK: &str = "contact-link";
pub(super) const PAIRING: &str = "telegram-pairing";
/// Purpose of a private feed's token.
pub(super) const FEED: &str = "feed-token";
/// A member has one feed; it is listed and removed under this id.
pub const FEED_CONTACT_ID: &str = "feed";

/// `community.herald.contact.add` input, already authenticated as `owner`.
pub struct AddContact {
    pub channel: String,
    pub address: Option<String>,
    pub subscription: Option<PushSubscription>,
    pub prevalidation: Option<String>,
    /// For a webhook: the signing secret to use (`whsec_…`), when the member's endpoint
    /// already has one; Herald makes one otherwise.
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddedContact {
    pub id: String,
    pub status: &'static str,
    pub verification: Verification,
    /// For a webhook: its signing secret, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// For a feed: its private URL, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactView {
    pub id: String,
    pub channel: String,
    /// Masked: `a•••@example.org`.
    pub address: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedContact {
    pub id: String,
    pub status: &'static str,
    pub verified_at: String,
}

/// Channels where a member holds one address at a time: a newly verified one replaces the old.
fn single_address(channel: Channel) -> bool {
    matches!(channel, Channel::Email | Channel::Sms | Channel::Telegram)
}

impl Vault {
    pub async fn add_contact(
        &self,
        owner: &str,
        input: AddContact,
    ) -> Result<AddedContact, VaultError> {
        let channel = Channel::parse(&input.channel)
            .filter(|c| *c != Channel::Inbox)
            .ok_or_else(|| {
                VaultError::InvalidRequest(
                    "channel must be one of email, sms, telegram, webpush, webhook, feed".into(),
                )
            })?;
        let address = input.address.as_deref().map(str::trim);
        match channel {
            Channel::Email => {
                let email = parse_email(address.unwrap_or_default())?;
                self.add_email(owner, &email, input.prevalidation.as_deref())
                    .await
            }
            Channel::Sms => {
                let sms = self
                    .channels
                    .sms
                    .as_ref()
                    .ok_or(VaultError::ChannelUnavailable("sms"))?;
                let phone = parse_phone(address.unwrap_or_default())?;
                // A number that replied STOP gets nothing, a code included (carriers require
                // it); the member learns why instead of waiting for a code.
                if self.sms_opted_out(&phone).await? {
                    return Err(VaultError::NumberOptedOut);
                }
                let (contact, expires_at) = self
                    .claim_address(owner, Channel::Sms, &phone, CODE_TTL_SECS)
                    .await?;
                let code = self.open_code_challenge(&contact.id, expires_at).await?;
                let body = self.messages.sms_code(&code, CODE_TTL_SECS / 60);
                sms.send(&phone, &body, Some(&contact.id)).await?;
                Ok(pending(&contact.id, "sms", expires_at, None))
            }
            Channel::Telegram => {
                let bot = self
                    .channels
                    .telegram
                    .as_ref()
                    .ok_or(VaultError::ChannelUnavailable("telegram"))?;
                if address.is_some_and(|a| !a.is_empty()) {
                    return Err(VaultError::InvalidRequest(
                        "a Telegram contact takes no address: open the pairing link instead".into(),
                    ));
                }
                let token = random_token();
                let link = bot
                    .pairing_link(&token)
                    .ok_or(VaultError::ChannelUnavailable("telegram"))?;
                let id = uuid::Uuid::now_v7().to_string();
                self.store
                    .insert_contact(NewContact {
                        id: &id,
                        owner,
                        channel: "telegram",
                        address: None,
                        address_index: None,
                        key_version: None,
                        transfer_from: None,
                    })
                    .await?;
                let expires_at = now_micros() + secs(PAIRING_TTL_SECS);
                self.store
                    .put_challenge(
                        &id,
                        None,
                        Some(&self.hash_secret(PAIRING, &token)),
                        expires_at,
                    )
                    .await?;
                Ok(pending(&id, "telegram", expires_at, Some(link)))
            }
            Channel::Webpush => {
                let push = self
                    .channels
                    .webpush
                    .as_ref()
                    .ok_or(VaultError::ChannelUnavailable("webpush"))?;
                let subscription = input.subscription.as_ref().ok_or_else(|| {
                    VaultError::InvalidRequest(
                        "a webpush contact needs the browser's push subscription".into(),
                    )
                })?;
                let subscription = parse_push_subscription(subscription)?;
                let serialized = serde_json::to_string(&subscription)
                    .map_err(|e| VaultError::InvalidRequest(e.to_string()))?;
                let (contact, expires_at) = self
                    .claim_address_keyed(
                        owner,
                        Channel::Webpush,
                        &subscription.endpoint,
                        &serialized,
                        CODE_TTL_SECS,
                    )
                    .await?;
                let code = self.open_code_challenge(&contact.id, expires_at).await?;
                let payload = serde_json::json!({
                    "type": "community.herald.contact.verify",
                    "contact": contact.id,
                    "code": code,
                });
                push.send(
                    &subscription,
                    payload.to_string().as_bytes(),
                    std::time::Duration::from_secs(CODE_TTL_SECS as u64),
                )
                .await?;
                Ok(pending(&contact.id, "webpush", expires_at, None))
            }
            Channel::Webhook => {
                let raw = address.unwrap_or_default();
                let url = webhook::parse_endpoint(raw, self.config.webhook_allow_private)
                    .map_err(|e| VaultError::InvalidRequest(e.to_string()))?;
                let chosen = match input.secret.as_deref() {
                    Some(text) => WebhookSecret::parse(text).map_err(|_| {
                        VaultError::InvalidRequest(
                            "secret must be whsec_ followed by 24 to 64 base64 bytes".into(),
                        )
                    })?,
                    None => WebhookSecret::generate(),
                };
                let fresh = SealedWebhook {
                    url: url.to_string(),
                    secret: chosen.expose(),
                };
                let stored = serde_json::to_string(&fresh)
                    .map_err(|e| VaultError::InvalidRequest(e.to_string()))?;
                // The blind index covers the owner: two members may use one endpoint (a
                // shared automation), and neither learns of the other.
                let (contact, expires_at) = self
                    .claim_address_keyed(
                        owner,
                        Channel::Webhook,
                        &format!("{owner} {url}"),
                        &stored,
                        CODE_TTL_SECS,
                    )
                    .await?;
                // A resend keeps the secret given the first time.
                let hook: SealedWebhook = match &contact.address {
                    Some(sealed) => serde_json::from_str(&self.open_string(
                        &contact_aad(&contact.id, &contact.owner, &contact.channel),
                        sealed,
                    )?)
                    .map_err(|_| VaultError::InvalidRequest("stored webhook is corrupt".into()))?,
                    None => fresh,
                };
                let secret = WebhookSecret::parse(&hook.secret)
                    .map_err(|_| VaultError::InvalidRequest("stored webhook is corrupt".into()))?;
                let code = self.open_code_challenge(&contact.id, expires_at).await?;
                let payload = serde_json::json!({
                    "type": "community.herald.contact.verify",
                    "contact": contact.id,
                    "code": code,
                });
                self.channels
                    .webhook
                    .send(&url, &secret, &format!("verify-{}", contact.id), &payload)
                    .await?;
                let mut added = pending(&contact.id, "webhook", expires_at, None);
                added.secret = Some(hook.secret);
                Ok(added)
            }
            Channel::Feed => {
                let token = random_token();
                self.store
                    .put_feed(owner, &self.hash_secret(FEED, &token))
                    .await?;
                Ok(AddedContact {
                    id: FEED_CONTACT_ID.into(),
                    status: "verified",
                    verification: Verification {
                        method: "feed",
                        expires_at: None,
                        pairing_url: None,
                    },
                    secret: None,
                    feed_url: Some(self.feed_url(&token)),
                })
            }
            Channel::Inbox => unreachable!("refused above"),
        }
    }

    /// Store an address already verified elsewhere as `owner`'s verified contact, with no
    /// message sent: for an operator migrating members from another system that verified
    /// them, and for benchmarks and crash tests that need thousands of contacts. Never
    /// reachable from the network. The address is checked and normalised as `add_contact`
    /// does; a webhook gets a fresh signing secret, returned in `secret`.
    pub async fn import_verified_contact(
        &self,
        owner: &str,
        channel: Channel,
        address: &str,
    ) -> Result<AddedContact, VaultError> {
        let mut secret = None;
        let (identity, stored) = match channel {
            Channel::Email => {
                let email = parse_email(address)?;
                self.email_address_for(&email).await?;
                (email.clone(), email)
            }
            Channel::Sms => {
                let phone = parse_phone(address)?;
                (phone.clone(), phone)
            }
            Channel::Telegram => {
                let chat = parse_telegram_chat(address)?.to_string();
                (chat.clone(), chat)
            }
            Channel::Webhook => {
                let url = webhook::parse_endpoint(address, self.config.webhook_allow_private)
                    .map_err(|e| VaultError::InvalidRequest(e.to_string()))?;
                let hook = SealedWebhook {
                    url: url.to_string(),
                    secret: WebhookSecret::generate().expose(),
                };
                secret = Some(hook.secret.clone());
                let stored = serde_json::to_string(&hook)
                    .map_err(|e| VaultError::InvalidRequest(e.to_string()))?;
                (format!("{owner} {url}"), stored)
            }
            Channel::Inbox | Channel::Feed | Channel::Webpush => {
                return Err(VaultError::InvalidRequest(
                    "only email, sms, telegram and webhook contacts can be imported".into(),
                ));
            }
        };
        let (contact, _) = self
            .claim_address_keyed(owner, channel, &identity, &stored, CODE_TTL_SECS)
            .await?;
        self.complete_verification(&contact, false).await?;
        Ok(AddedContact {
            id: contact.id,
            status: "verified",
            verification: Verification {
                method: "imported",
                expires_at: None,
                pairing_url: None,
            },
            secret,
            feed_url: None,
        })
    }

    /// A fresh code-only challenge for a contact (SMS, push); returns the code to send.
    async fn open_code_challenge(
        &self,
        contact_id: &str,
        expires_at: i64,
    ) -> Result<String, VaultError> {
        let code = random_code(CODE_DIGITS);
        self.store
            .put_challenge(
                contact_id,
                Some(&self.hash_secret(CODE, &code)),
                None,
                expires_at,
            )
            .await?;
        Ok(code)
    }

    /// Find or create `owner`'s pending contact for `address` on `channel`, respecting the
    /// resend cooldown. Returns the contact and when its new challenge should expire.
    pub(super) async fn claim_address(
        &self,
        owner: &str,
        channel: Channel,
        address: &str,
        ttl_secs: i64,
    ) -> Result<(ContactRow, i64), VaultError> {
        self.claim_address_keyed(owner, channel, address, address, ttl_secs)
            .await
    }

    /// As [`claim_address`](Self::claim_address), where the blind index is taken over
    /// `identity` (a push endpoint) and the sealed value is `stored` (the whole subscription).
    async fn claim_address_keyed(
        &self,
        owner: &str,
        channel: Channel,
        identity: &str,
        stored: &str,
        ttl_secs: i64,
    ) -> Result<(ContactRow, i64), VaultError> {
        let index = self.blind_index(channel, identity);
        let claims = self
            .store
            .contacts_by_index(channel.as_str(), &index)
            .await?;
        let now = now_micros();
        if let Some(mine) = claims.iter().find(|c| c.owner == owner) {
            if mine.status == "verified" {
                return Err(VaultError::AlreadyVerified);
            }
            if let Some(challenge) = self.store.challenge(&mine.id).await?
                && challenge.sent_at + secs(RESEND_COOLDOWN_SECS) > now
            {
                return Err(VaultError::RateLimited(format!(
                    "a verification message was sent less than {RESEND_COOLDOWN_SECS} s ago"
                )));
            }
            return Ok((mine.clone(), now + secs(ttl_secs)));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let (sealed, version) = self.seal(
            &contact_aad(&id, owner, channel.as_str()),
            stored.as_bytes(),
        );
        let holder = claims
            .iter()
            .find(|c| c.status == "verified")
            .map(|c| c.owner.clone());
        self.store
            .insert_contact(NewContact {
                id: &id,
                owner,
                channel: channel.as_str(),
                address: Some(&sealed),
                address_index: Some(&index),
                key_version: Some(version),
                transfer_from: holder.as_deref(),
            })
            .await?;
        let contact = self
            .store
            .contact(&id)
            .await?
            .ok_or(VaultError::ContactNotFound)?;
        Ok((contact, now + secs(ttl_secs)))
    }

    /// `community.herald.contact.verify`: a code sent by email, SMS or push.
    pub async fn verify_code(
        &self,
        owner: &str,
        id: &str,
        code: &str,
    ) -> Result<VerifiedContact, VaultError> {
        let contact = self
            .store
            .contact(id)
            .await?
            .filter(|c| c.owner == owner)
            .ok_or(VaultError::ContactNotFound)?;
        if contact.status == "verified" {
            return Err(VaultError::AlreadyVerified);
        }
        let challenge = self
            .store
            .challenge(id)
            .await?
            .ok_or(VaultError::ExpiredCode)?;
        let Some(code_hash) = challenge.code_hash.as_deref() else {
            // A Telegram contact verifies by pairing, not by code.
            return Err(VaultError::InvalidCode);
        };
        if challenge.expires_at <= now_micros() {
            return Err(VaultError::ExpiredCode);
        }
        if challenge.attempts >= MAX_CODE_ATTEMPTS {
            return Err(VaultError::TooManyAttempts);
        }
        // Count the attempt before comparing, so parallel guesses cannot exceed the limit.
        let attempts = self.store.count_attempt(id).await?;
        if attempts > MAX_CODE_ATTEMPTS {
            return Err(VaultError::TooManyAttempts);
        }
        let code = code.trim();
        if !self.secret_matches(CODE, code, code_hash) {
            return Err(VaultError::InvalidCode);
        }
        let verified_at = self.complete_verification(&contact, false).await?;
        Ok(VerifiedContact {
            id: contact.id,
            status: "verified",
            verified_at: format_micros(verified_at),
        })
    }

    /// Mark verified and apply what follows from it: one address per account on single-address
    /// channels, a transfer completed, standalone email subscriptions converted.
    pub(super) async fn complete_verification(
        &self,
        contact: &ContactRow,
        clear_other_claims: bool,
    ) -> Result<i64, VaultError> {
        let channel = Channel::parse(&contact.channel).unwrap_or(Channel::Email);
        let at = self
            .store
            .mark_verified(contact, single_address(channel), clear_other_claims)
            .await?;
        if channel == Channel::Email
            && let Some(index) = &contact.address_index
        {
            self.convert_standalone(&contact.owner, index).await?;
        }
        tracing::info!(contact = %contact.id, channel = %contact.channel, "contact verified");
        Ok(at)
    }

    /// Herald's Telegram webhook: `/start <token>` in a private chat pairs that chat with the
    /// member who asked for the link; `/stop` disables the chat's contacts and a bare `/start`
    /// re-enables them. Every command gets a reply (except a bare `/start` from a chat with
    /// nothing to resume); nothing here fails the webhook (Telegram would only retry it).
    pub async fn telegram_update(&self, update: &Update) -> Result<TelegramOutcome, VaultError> {
        let Some(bot) = self.channels.telegram.as_ref() else {
            return Err(VaultError::ChannelUnavailable("telegram"));
        };
        let Some(message) = &update.message else {
            return Ok(TelegramOutcome::Ignored);
        };
        let Some(text) = message.text.as_deref() else {
            return Ok(TelegramOutcome::Ignored);
        };
        let chat = message.chat.id;
        let lang = message
            .from
            .as_ref()
            .and_then(|user| user.language_code.as_deref())
            .and_then(|tag| tag.split(['-', '_']).next())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let command = telegram::command(text).filter(|c| bot.is_addressed_to_me(c));
        let (outcome, reply) = match command {
            Some(c) if c.is("stop") => {
                self.telegram_stop(chat).await?;
                let reply = self.compliance_reply(ComplianceReply::TelegramStopped, &lang);
                (TelegramOutcome::Stopped, reply)
            }
            Some(c) if c.is("start") && c.args.is_empty() => {
                if self.telegram_resume(chat).await? == 0 {
                    return Ok(TelegramOutcome::Ignored);
                }
                let reply = self.compliance_reply(ComplianceReply::TelegramResumed, &lang);
                (TelegramOutcome::Resumed, reply)
            }
            _ => {
                let Some(token) = telegram::start_payload(text) else {
                    return Ok(TelegramOutcome::Ignored);
                };
                if message.chat.kind != "private" {
                    (
                        TelegramOutcome::Refused,
                        self.messages.telegram_group_refused(),
                    )
                } else {
                    match self.pair_telegram(token, chat).await? {
                        Pairing::Done => (TelegramOutcome::Paired, self.messages.telegram_paired()),
                        Pairing::Unknown => (
                            TelegramOutcome::Refused,
                            self.messages.telegram_unknown_link(),
                        ),
                        Pairing::Expired => (
                            TelegramOutcome::Refused,
                            self.messages.telegram_expired_link(),
                        ),
                    }
                }
            }
        };
        if let Err(e) = bot.send_message(chat, &reply).await {
            tracing::warn!(error = %e, outcome = outcome.as_str(), "could not reply to a Telegram command");
        }
        Ok(outcome)
    }

    async fn pair_telegram(&self, token: &str, chat: i64) -> Result<Pairing, VaultError> {
        let hash = self.hash_secret(PAIRING, token);
        let Some(challenge) = self.store.challenge_by_token(&hash).await? else {
            return Ok(Pairing::Unknown);
        };
        if challenge.expires_at <= now_micros() {
            self.store.delete_challenge(&challenge.contact_id).await?;
            return Ok(Pairing::Expired);
        }
        let Some(contact) = self.store.contact(&challenge.contact_id).await? else {
            return Ok(Pairing::Unknown);
        };
        let chat = chat.to_string();
        let chat_id = parse_telegram_chat(&chat)?.to_string();
        let (sealed, version) = self.seal(
            &contact_aad(&contact.id, &contact.owner, "telegram"),
            chat_id.as_bytes(),
        );
        let index = self.blind_index(Channel::Telegram, &chat_id);
        self.store
            .set_contact_address(&contact.id, &sealed, &index, version)
            .await?;
        let contact = ContactRow {
            address_index: Some(index),
            ..contact
        };
        self.complete_verification(&contact, false).await?;
        Ok(Pairing::Done)
    }

    /// `community.herald.contact.list`: the member's contacts, masked.
    pub async fn list_contacts(&self, owner: &str) -> Result<Vec<ContactView>, VaultError> {
        let mut out = Vec::new();
        for contact in self.store.contacts_of(owner).await? {
            let channel = Channel::parse(&contact.channel).unwrap_or(Channel::Email);
            let address = match &contact.address {
                None => "(waiting for pairing)".to_string(),
                Some(sealed) => {
                    let plain = self.open_string(
                        &contact_aad(&contact.id, &contact.owner, &contact.channel),
                        sealed,
                    )?;
                    let shown = if channel == Channel::Webpush {
                        serde_json::from_str::<PushSubscription>(&plain)
                            .map(|s| s.endpoint)
                            .unwrap_or_default()
                    } else {
                        plain
                    };
                    mask(channel, &shown)
                }
            };
            out.push(ContactView {
                id: contact.id,
                channel: contact.channel,
                address,
                // A provider reported it gone: shown so the member knows why it went quiet.
                status: if contact.disabled_at.is_some() {
                    "disabled".to_string()
                } else {
                    contact.status
                },
                verified_at: contact.verified_at.map(format_micros),
                created_at: format_micros(contact.created_at),
            });
        }
        if let Some(created) = self.store.feed_created(owner).await? {
            out.push(ContactView {
                id: FEED_CONTACT_ID.into(),
                channel: Channel::Feed.as_str().into(),
                // The URL is a secret shown once; the list only says there is one.
                address: "private Atom feed".into(),
                status: "verified".into(),
                verified_at: Some(format_micros(created)),
                created_at: format_micros(created),
            });
        }
        Ok(out)
    }

    /// The private feed whose URL carries `token`: its owner, if the token is current.
    pub async fn feed_owner(&self, token: &str) -> Result<Option<String>, VaultError> {
        Ok(self
            .store
            .feed_owner(&self.hash_secret(FEED, token))
            .await?)
    }

    fn feed_url(&self, token: &str) -> String {
        let mut url = self.config.public_url.clone();
        url.set_path(&format!("/feed/{token}"));
        url.set_query(None);
        url.to_string()
    }

    /// `community.herald.contact.remove`. The feed's id revokes the feed URL.
    pub async fn remove_contact(&self, owner: &str, id: &str) -> Result<(), VaultError> {
        let removed = if id == FEED_CONTACT_ID {
            self.store.delete_feed(owner).await?
        } else {
            self.store.delete_contact(owner, id).await?
        };
        if removed {
            Ok(())
        } else {
            Err(VaultError::ContactNotFound)
        }
    }

    /// The plaintext address of a verified contact, for delivery.
    pub async fn open_contact(&self, contact: &ContactRow) -> Result<Option<String>, VaultError> {
        contact
            .address
            .as_ref()
            .map(|sealed| {
                self.open_string(
                    &contact_aad(&contact.id, &contact.owner, &contact.channel),
                    sealed,
                )
            })
            .transpose()
    }
}

enum Pairing {
    Done,
    Unknown,
    Expired,
}

/// What a Telegram update did (for metrics; nothing about the chat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelegramOutcome {
    /// `/start <token>` paired the chat.
    Paired,
    /// `/start <token>` was refused (a group, an unknown or expired link).
    Refused,
    /// `/stop`: the chat's contacts are disabled.
    Stopped,
    /// A bare `/start` re-enabled a stopped chat.
    Resumed,
    /// Anything else: not a command Herald answers.
    Ignored,
}

impl TelegramOutcome {
    /// What the chat asked for: `pairing`, `stop`, `start` or `other`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Paired | Self::Refused => "pairing",
            Self::Stopped => "stop",
            Self::Resumed => "start",
            Self::Ignored => "other",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paired => "paired",
            Self::Refused => "refused",
            Self::Stopped => "stopped",
            Self::Resumed => "resumed",
            Self::Ignored => "ignored",
        }
    }
}

pub(super) fn pending(
    id: &str,
    method: &'static str,
    expires_at: i64,
    pairing_url: Option<String>,
) -> AddedContact {
    AddedContact {
        id: id.to_string(),
        status: "pending",
        verification: Verification {
            method,
            expires_at: Some(format_micros(expires_at)),
            pairing_url,
        },
        secret: None,
        feed_url: None,
    }
}
