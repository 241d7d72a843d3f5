//! Email identity (seeds 001 and 002): one email per account, the transfer of an address
//! between accounts, the manage page reached by a long-lived token in every email,
//! unsubscribe-from-all and "this is not me", standalone (account-less) subscriptions and their
//! conversion, and pre-validated addresses.
//!
//! Unsubscribe-from-all and suppression belong to the *address* (its `email_addresses` row),
//! so they hold whichever account or subscription the mail is for; only the manage page (and
//! one-click unsubscribe) can set them, and only the manage page can undo unsubscribe-all.

use serde::Serialize;

use super::address::parse_email;
use super::crypto::{random_code, random_token};
use super::member::{AddedContact, CODE, LINK, Verification, pending};
use super::{Vault, VaultError, email_aad, now_micros};
use crate::channels::email::OutgoingEmail;
use crate::model::{Channel, Route};
use crate::storage::{ContactRow, EmailAddressRow, parse_datetime};

/// Purpose of the manage-page token (signed, stateless, long-lived).
const MANAGE: &str = "manage";
/// Purpose of a double opt-in confirmation token.
const CONFIRM_SUBSCRIPTION: &str = "confirm-subscription";

/// What the manage page shows for one address. Only its token holder sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ManageView {
    pub address: String,
    pub unsubscribed: bool,
    pub suppressed: bool,
    /// The account this address is verified on, if any.
    pub account: Option<String>,
    /// Accounts waiting for this address to be validated: `(contact id, account)`.
    pub pending: Vec<(String, String)>,
    /// Standalone subscriptions: `(community, pipes, active)`.
    pub subscriptions: Vec<(String, Vec<String>, bool)>,
}

/// A change the manage page can make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageAction {
    UnsubscribeAll,
    ResubscribeAll,
    NotMe,
    /// Validate this pending claim (a contact id) and clear the others.
    ChooseAccount(String),
    /// End the standalone subscription to this community.
    Leave(String),
}

/// What `subscribeEmail` did; the caller answers the same in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    Subscribed,
    AwaitingConfirmation,
    OwnedByAccount,
    Suppressed,
}

impl Vault {
    /// The email branch of `contact.add`: a new address for the account, a transfer when
    /// another account holds it, or an immediate verification from a trusted pre-validation.
    pub(super) async fn add_email(
        &self,
        owner: &str,
        email: &str,
        prevalidation: Option<&str>,
    ) -> Result<AddedContact, VaultError> {
        let address = self.email_address_for(email).await?;
        let (contact, expires_at) = self
            .claim_address(
                owner,
                Channel::Email,
                email,
                super::EMAIL_CHALLENGE_TTL_SECS,
            )
            .await?;
        let transfer_from = contact.transfer_from.clone();

        if transfer_from.is_none()
            && let Some(token) = prevalidation
            && self.prevalidation_holds(token, owner, email).await
        {
            self.complete_verification(&contact, false).await?;
            return Ok(AddedContact {
                id: contact.id,
                status: "verified",
                verification: Verification {
                    method: "prevalidated",
                    expires_at: None,
                    pairing_url: None,
                },
                secret: None,
                feed_url: None,
            });
        }
        if transfer_from.is_none() {
            // Seed 001 #14: a new email replaces the old one and its pending validations.
            self.store
                .delete_other_contacts(owner, Channel::Email.as_str(), &contact.id)
                .await?;
        }

        let code = random_code(super::CODE_DIGITS);
        let token = random_token();
        self.store
            .put_challenge(
                &contact.id,
                Some(&self.hash_secret(CODE, &code)),
                Some(&self.hash_secret(LINK, &token)),
                expires_at,
            )
            .await?;
        let link = self.link("/verify", &token);
        let manage = self.manage_link(&address.id);
        let message = match &transfer_from {
            Some(holder) => self
                .messages
                .transfer_email(holder, owner, &link, &code, &manage),
            None => self.messages.verify_email(owner, &link, &code, &manage),
        };
        self.send_email(&address, email, message).await?;
        Ok(pending(
            &contact.id,
            if transfer_from.is_some() {
                "transfer"
            } else {
                "email"
            },
            expires_at,
            None,
        ))
    }

    /// Whether a pre-validation token (seed 002) vouches for `email` on `owner`: a JWT signed by
    /// a trusted validator's DID key, for this Herald, about this member and address, in date.
    /// Any failure falls back to normal verification, so it is only logged.
    async fn prevalidation_holds(&self, token: &str, owner: &str, email: &str) -> bool {
        let now = crate::auth::unix_now();
        let (issuer, claims) = match self.auth.verify_signed_claims(token, now).await {
            Ok(found) => found,
            Err(e) => {
                tracing::info!(error = %e, "pre-validation refused: signature or shape");
                return false;
            }
        };
        let refuse = |why: &str| {
            tracing::info!(%issuer, why, "pre-validation refused");
            false
        };
        if !self.config.trusted_prevalidators.contains(&issuer) {
            return refuse("issuer is not a trusted pre-validator");
        }
        let aud = claims["aud"].as_str().unwrap_or_default();
        if aud != self.config.service_did
            && aud
                != format!(
                    "{}{}",
                    self.config.service_did,
                    crate::auth::SERVICE_ID_FRAGMENT
                )
        {
            return refuse("audience is not this Herald");
        }
        if claims["sub"].as_str() != Some(owner) {
            return refuse("subject is not the caller");
        }
        let claimed = claims["email"].as_str().and_then(|e| parse_email(e).ok());
        if claimed.as_deref() != Some(email) {
            return refuse("email does not match");
        }
        let validated_at = claims["validatedAt"].as_str().and_then(parse_datetime);
        let skew = super::secs(crate::auth::CLOCK_SKEW_LEEWAY_SECS);
        if validated_at.is_none_or(|at| at > now_micros() + skew) {
            return refuse("validatedAt is missing or in the future");
        }
        true
    }

    /// The verification link from an email (POST from the confirmation page). Returns the
    /// account the address now belongs to.
    pub async fn verify_link(&self, token: &str) -> Result<String, VaultError> {
        let challenge = self
            .store
            .challenge_by_token(&self.hash_secret(LINK, token))
            .await?
            .ok_or(VaultError::InvalidCode)?;
        if challenge.expires_at <= now_micros() {
            return Err(VaultError::ExpiredCode);
        }
        let contact = self
            .store
            .contact(&challenge.contact_id)
            .await?
            .ok_or(VaultError::InvalidCode)?;
        self.complete_verification(&contact, false).await?;
        Ok(contact.owner)
    }

    /// Whether a verification link token is one that would verify now (for the GET page,
    /// which must not act).
    pub async fn link_is_live(&self, token: &str) -> Result<bool, VaultError> {
        Ok(self
            .store
            .challenge_by_token(&self.hash_secret(LINK, token))
            .await?
            .is_some_and(|c| c.expires_at > now_micros()))
    }

    /// Standalone subscriptions of the address with blind index `index` become subscriptions
    /// Herald keeps for `owner`, with email on (seed 002 #4).
    pub(super) async fn convert_standalone(
        &self,
        owner: &str,
        index: &[u8],
    ) -> Result<(), VaultError> {
        let Some(address) = self.store.email_address_by_index(index).await? else {
            return Ok(());
        };
        for sub in self.store.standalone_of(&address.id).await? {
            let pipes = if sub.pipes.is_empty() {
                self.community_pipes(&sub.community).await?
            } else {
                sub.pipes.clone()
            };
            let routes: Vec<Route> = pipes
                .into_iter()
                .map(|pipe| Route {
                    pipe,
                    channels: vec!["inbox".into(), "email".into()],
                })
                .collect();
            self.index
                .keep_subscription(owner, &sub.community, &routes)
                .await?;
        }
        let converted = self.store.delete_standalone(&address.id, None).await?;
        if converted > 0 {
            tracing::info!(
                converted,
                "standalone subscriptions converted to an account"
            );
        }
        Ok(())
    }

    /// The pipes a community declares, or DESIGN.md's known pipes if it declares none.
    async fn community_pipes(&self, community: &str) -> Result<Vec<String>, VaultError> {
        let declared = self
            .index
            .community(community)
            .await?
            .map(|c| c.pipes.into_iter().map(|p| p.id).collect::<Vec<_>>())
            .unwrap_or_default();
        Ok(if declared.is_empty() {
            crate::model::KNOWN_PIPES
                .iter()
                .map(|p| p.to_string())
                .collect()
        } else {
            declared
        })
    }

    /// `community.herald.subscribeEmail`: an email-only subscription. Zero friction unless
    /// the operator asks for double opt-in; never reveals whether an account owns the address.
    pub async fn subscribe_email(
        &self,
        community: &str,
        email: &str,
        pipes: &[String],
    ) -> Result<SubscribeOutcome, VaultError> {
        let email = parse_email(email)?;
        let info = self
            .index
            .community(community)
            .await?
            .ok_or(VaultError::UnknownCommunity)?;
        let address = self.email_address_for(&email).await?;
        let index = self.blind_index(Channel::Email, &email);
        let owned = self
            .store
            .contacts_by_index(Channel::Email.as_str(), &index)
            .await?
            .into_iter()
            .any(|c| c.status == "verified");
        let manage = self.manage_link(&address.id);
        if owned {
            let message = self.messages.sign_in_instead(&info.name, &manage);
            self.send_email(&address, &email, message).await?;
            return Ok(SubscribeOutcome::OwnedByAccount);
        }
        let status = if self.config.double_opt_in {
            "pending"
        } else {
            "active"
        };
        self.store
            .upsert_standalone(&address.id, community, pipes, status)
            .await?;
        if address.suppressed_at.is_some() || address.unsubscribed_at.is_some() {
            return Ok(SubscribeOutcome::Suppressed);
        }
        let current = self
            .store
            .standalone_of(&address.id)
            .await?
            .into_iter()
            .find(|s| s.community == community);
        if current.is_some_and(|s| s.status == "pending") {
            let token = self
                .ring()
                .sign_token(CONFIRM_SUBSCRIPTION, &format!("{}~{community}", address.id));
            let confirm = self.link("/subscribe/confirm", &token);
            let message = self
                .messages
                .confirm_subscription(&info.name, &confirm, &manage);
            self.send_email(&address, &email, message).await?;
            return Ok(SubscribeOutcome::AwaitingConfirmation);
        }
        let message = self.messages.welcome(&info.name, &manage);
        self.send_email(&address, &email, message).await?;
        Ok(SubscribeOutcome::Subscribed)
    }

    /// The double opt-in link: activates the standalone subscription it names.
    pub async fn confirm_subscription(&self, token: &str) -> Result<String, VaultError> {
        let payload = self
            .ring()
            .verify_token(CONFIRM_SUBSCRIPTION, token)
            .ok_or(VaultError::InvalidCode)?;
        let (address_id, community) = payload.split_once('~').ok_or(VaultError::InvalidCode)?;
        if self
            .store
            .activate_standalone(address_id, community)
            .await?
        {
            Ok(community.to_string())
        } else {
            Err(VaultError::InvalidCode)
        }
    }

    /// The address id a manage token stands for, if the token is genuine.
    pub fn manage_token_address(&self, token: &str) -> Option<String> {
        self.ring().verify_token(MANAGE, token)
    }

    pub fn manage_link(&self, address_id: &str) -> String {
        self.link("/manage", &self.ring().sign_token(MANAGE, address_id))
    }

    /// The manage page's content for the address a token stands for.
    pub async fn manage_view(&self, token: &str) -> Result<ManageView, VaultError> {
        let id = self
            .manage_token_address(token)
            .ok_or(VaultError::InvalidCode)?;
        let row = self
            .store
            .email_address(&id)
            .await?
            .ok_or(VaultError::InvalidCode)?;
        let address = self.open_string(&email_aad(&row.id), &row.address)?;
        let claims = self.claims_on(&row.id).await?;
        let account = claims
            .iter()
            .find(|c| c.status == "verified")
            .map(|c| c.owner.clone());
        let pending = claims
            .iter()
            .filter(|c| c.status == "pending")
            .map(|c| (c.id.clone(), c.owner.clone()))
            .collect();
        let subscriptions = self
            .store
            .standalone_of(&row.id)
            .await?
            .into_iter()
            .map(|s| (s.community, s.pipes, s.status == "active"))
            .collect();
        Ok(ManageView {
            address,
            unsubscribed: row.unsubscribed_at.is_some(),
            suppressed: row.suppressed_at.is_some(),
            account,
            pending,
            subscriptions,
        })
    }

    /// Apply a manage-page action for the address a token stands for.
    pub async fn manage(&self, token: &str, action: ManageAction) -> Result<(), VaultError> {
        let id = self
            .manage_token_address(token)
            .ok_or(VaultError::InvalidCode)?;
        match action {
            ManageAction::UnsubscribeAll => {
                self.store.set_unsubscribed(&id, Some(now_micros())).await?
            }
            ManageAction::ResubscribeAll => self.store.set_unsubscribed(&id, None).await?,
            ManageAction::NotMe => {
                if let Some(index) = self.store.email_address_index(&id).await? {
                    self.store
                        .delete_contacts_by_index(Channel::Email.as_str(), &index)
                        .await?;
                }
                self.store.delete_standalone(&id, None).await?;
                self.store.suppress(&id, "not-me").await?;
                tracing::info!("an address was detached and suppressed by its owner");
            }
            ManageAction::ChooseAccount(contact_id) => {
                let claim = self
                    .claims_on(&id)
                    .await?
                    .into_iter()
                    .find(|c| c.id == contact_id && c.status == "pending")
                    .ok_or(VaultError::ContactNotFound)?;
                self.complete_verification(&claim, true).await?;
            }
            ManageAction::Leave(community) => {
                self.store.delete_standalone(&id, Some(&community)).await?;
            }
        }
        Ok(())
    }

    /// One-click unsubscribe (RFC 8058): the same state as the manage page's
    /// unsubscribe-from-all.
    pub async fn unsubscribe_all(&self, token: &str) -> Result<(), VaultError> {
        self.manage(token, ManageAction::UnsubscribeAll).await
    }

    /// Contacts (on any account) that claim the email address with row id `address_id`.
    async fn claims_on(&self, address_id: &str) -> Result<Vec<ContactRow>, VaultError> {
        let Some(index) = self.store.email_address_index(address_id).await? else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .contacts_by_index(Channel::Email.as_str(), &index)
            .await?)
    }

    /// The state row of an email address, created on first use.
    pub(super) async fn email_address_for(
        &self,
        email: &str,
    ) -> Result<EmailAddressRow, VaultError> {
        let index = self.blind_index(Channel::Email, email);
        if let Some(row) = self.store.email_address_by_index(&index).await? {
            return Ok(row);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let (sealed, version) = self.seal(&email_aad(&id), email.as_bytes());
        Ok(self
            .store
            .ensure_email_address(&id, &index, &sealed, version)
            .await?)
    }

    /// The plaintext of an email address row (for delivery to email-only subscribers).
    pub async fn open_email_address(&self, row: &EmailAddressRow) -> Result<String, VaultError> {
        self.open_string(&email_aad(&row.id), &row.address)
    }

    /// Send one email to an address, unless the address has unsubscribed from all email or
    /// is suppressed (seed 001 #11: then no email of any kind goes to it).
    async fn send_email(
        &self,
        address: &EmailAddressRow,
        to: &str,
        message: super::messages::Email,
    ) -> Result<(), VaultError> {
        if address.unsubscribed_at.is_some() || address.suppressed_at.is_some() {
            tracing::info!("email not sent: the address unsubscribed or is suppressed");
            return Ok(());
        }
        let sender = self
            .channels
            .email
            .as_ref()
            .ok_or(VaultError::ChannelUnavailable("email"))?;
        // RFC 8058 one-click unsubscribe: the same signed token as the manage page.
        let unsubscribe = self
            .manage_link(&address.id)
            .replacen("/manage?", "/unsubscribe?", 1);
        sender
            .send(&OutgoingEmail {
                to: to.to_string(),
                subject: message.subject,
                text: message.text,
                html: None,
                headers: vec![
                    ("List-Unsubscribe".into(), format!("<{unsubscribe}>")),
                    (
                        "List-Unsubscribe-Post".into(),
                        "List-Unsubscribe=One-Click".into(),
                    ),
                ],
                idempotency_key: None,
            })
            .await?;
        Ok(())
    }
}
