//! Distribution: turns one publication into deliveries, following DESIGN.md §3.
//!
//! ```text
//! publish(community, pipe, item) ──▶ authorise caller ──▶ Store::publish
//!                                                         │ pages of members (MemberFacts)
//!                                                         ▼
//!                                              resolve_channels (pure, below)
//!                                                         │
//!                                     inbox rows  ◀───────┴──────▶ outbox rows (pending)
//! ```
//! Owns the preference rules and the publish use case. Must not touch SQL (the store does) or
//! any channel adapter (delivery does): routing happens here, sending happens elsewhere.

use chrono::{DateTime, Utc};

use crate::model::{Channel, MemberFacts, Visibility, route_for};
use crate::schedule::Urgency;
use crate::settings::ScheduleSettings;
use crate::storage::{NewPublication, PublicationOutcome, StorageError, Store, VaultStore};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("community {0} is not known to this Herald (no community.herald.community record)")]
    UnknownCommunity(String),
    #[error("{caller} may not publish to {community}: not the community nor one of its publishers")]
    NotPublisher { caller: String, community: String },
    #[error("pipe {pipe:?} is not one of the pipes {community} declares")]
    UnknownPipe { pipe: String, community: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Item<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub text: Option<&'a str>,
    pub url: Option<&'a str>,
    pub urgency: Urgency,
    /// Microseconds; after it the item is no longer sent.
    pub expires_at: Option<i64>,
}

/// Publish `item` on `pipe` to `community` on behalf of `caller`. The outcome carries
/// warnings about limits the publication runs into (the community's daily SMS cap).
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    store: &Store,
    vault: &VaultStore,
    caller: &str,
    community: &str,
    pipe: &str,
    item: Item<'_>,
    schedule: &ScheduleSettings,
    now: DateTime<Utc>,
) -> Result<PublicationOutcome, PublishError> {
    let info = store
        .community(community)
        .await?
        .ok_or_else(|| PublishError::UnknownCommunity(community.to_string()))?;
    if !store.may_publish(community, caller).await? {
        return Err(PublishError::NotPublisher {
            caller: caller.to_string(),
            community: community.to_string(),
        });
    }
    // A community that declares its pipes accepts only those; one that declares none accepts
    // any pipe name (its members' routes decide what reaches them).
    if !info.pipes.is_empty() && !info.pipes.iter().any(|p| p.id == pipe) {
        return Err(PublishError::UnknownPipe {
            pipe: pipe.to_string(),
            community: community.to_string(),
        });
    }
    let publication = NewPublication {
        community,
        pipe,
        item_id: item.id,
        title: item.title,
        text: item.text,
        url: item.url,
        publisher: caller,
        urgency: item.urgency.as_str(),
        expires_at: item.expires_at,
    };
    let visibility = info.visibility;
    let mut outcome = store
        .publish(
            publication,
            vault,
            |member| resolve_channels(member, visibility, pipe),
            |pipes| standalone_receives(pipes, visibility, pipe),
        )
        .await?;
    if let Some(warning) = sms_cap_warning(store, community, schedule, now).await? {
        outcome.warnings.push(warning);
    }
    Ok(outcome)
}

/// What a publisher should know about the community's SMS cap today: nothing below 80%.
async fn sms_cap_warning(
    store: &Store,
    community: &str,
    schedule: &ScheduleSettings,
    now: DateTime<Utc>,
) -> Result<Option<String>, StorageError> {
    let cap = schedule.sms_community_daily;
    if cap == 0 {
        return Ok(None);
    }
    let day = utc_day(now);
    let used = store.community_usage(community, Channel::Sms, &day).await?;
    Ok(if used >= cap {
        Some(format!(
            "the community's SMS cap for {day} (UTC) is reached ({used} of {cap}): SMS deliveries \
             are refused until the next day; other channels are unaffected"
        ))
    } else if used * 5 >= cap * 4 {
        Some(format!(
            "{used} of the community's {cap} SMS for {day} (UTC) are used; SMS beyond the cap \
             will be refused"
        ))
    } else {
        None
    })
}

/// The UTC calendar day the community SMS cap counts in, `YYYY-MM-DD`.
pub fn utc_day(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%d").to_string()
}

/// The channels `member` receives `pipe` on, in a community of `visibility`.
///
/// 1. none if the account is not active, the member paused everything, or muted the community;
/// 2. none if the community is private and the member is not admitted (fails closed);
/// 3. else the routes of the member's subscription(s) for the pipe, else their default routes
///    for it, else `inbox` only — no external channel is on until the member turns it on;
///    an explicit empty channel list means "nothing for this pipe".
///
/// 4. minus every external channel without a verified, deliverable contact
///    (`member.reachable`, from the vault); inbox and feed need none.
pub fn resolve_channels(member: &MemberFacts, visibility: Visibility, pipe: &str) -> Vec<Channel> {
    let mut channels = route_channels(member, visibility, pipe);
    channels
        .retain(|c| matches!(c, Channel::Inbox | Channel::Feed) || member.reachable.contains(c));
    channels
}

/// Steps 1–3 only: the channels the member's records ask for. `getSubscribers` reports these,
/// so a community never learns which contacts a member has verified.
pub fn route_channels(member: &MemberFacts, visibility: Visibility, pipe: &str) -> Vec<Channel> {
    if !member.active || member.paused_all || member.muted {
        return Vec::new();
    }
    if visibility == Visibility::Private && !member.admitted {
        return Vec::new();
    }
    let from_subscriptions: Vec<&[String]> = member
        .subscription_routes
        .iter()
        .filter_map(|routes| route_for(routes, pipe))
        .collect();
    let names: Vec<&String> = if !from_subscriptions.is_empty() {
        from_subscriptions.into_iter().flatten().collect()
    } else if let Some(defaults) = route_for(&member.default_routes, pipe) {
        defaults.iter().collect()
    } else {
        return vec![Channel::Inbox];
    };
    let mut channels: Vec<Channel> = names
        .into_iter()
        .filter_map(|n| Channel::parse(n))
        .collect();
    channels.sort();
    channels.dedup();
    channels
}

/// Step 5: an email-only subscriber receives `pipe` when their subscription names it (or names
/// no pipe: everything). Private communities deliver only to admitted members, and an address
/// without an account cannot be admitted, so it gets nothing there (fails closed).
pub fn standalone_receives(pipes: &[String], visibility: Visibility, pipe: &str) -> bool {
    visibility == Visibility::Public && (pipes.is_empty() || pipes.iter().any(|p| p == pipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Route;

    fn member() -> MemberFacts {
        MemberFacts {
            did: "did:plc:m".into(),
            active: true,
            subscription_routes: vec![vec![]],
            reachable: Channel::ALL.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn channels_without_a_deliverable_contact_are_dropped_but_inbox_stays() {
        let mut m = member();
        m.subscription_routes = vec![vec![route("digest", &["inbox", "email", "sms", "feed"])]];
        m.reachable = vec![Channel::Sms];
        assert_eq!(
            resolve_channels(&m, Visibility::Public, "digest"),
            vec![Channel::Inbox, Channel::Sms, Channel::Feed]
        );
    }

    #[test]
    fn email_only_subscribers_get_their_pipes_in_public_communities_only() {
        let digest = vec!["digest".to_string()];
        assert!(standalone_receives(&digest, Visibility::Public, "digest"));
        assert!(!standalone_receives(
            &digest,
            Visibility::Public,
            "opportunity"
        ));
        assert!(standalone_receives(&[], Visibility::Public, "opportunity"));
        assert!(!standalone_receives(&[], Visibility::Private, "digest"));
    }

    fn route(pipe: &str, channels: &[&str]) -> Route {
        Route {
            pipe: pipe.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_member_with_no_routes_gets_the_inbox_only() {
        assert_eq!(
            resolve_channels(&member(), Visibility::Public, "digest"),
            vec![Channel::Inbox]
        );
    }

    #[test]
    fn subscription_routes_win_over_defaults() {
        let mut m = member();
        m.subscription_routes = vec![vec![route("digest", &["email", "telegram"])]];
        m.default_routes = vec![route("digest", &["sms"])];
        assert_eq!(
            resolve_channels(&m, Visibility::Public, "digest"),
            vec![Channel::Email, Channel::Telegram]
        );
    }

    #[test]
    fn defaults_apply_when_the_subscription_has_no_route_for_the_pipe() {
        let mut m = member();
        m.subscription_routes = vec![vec![route("digest", &["email"])]];
        m.default_routes = vec![route("opportunity", &["sms"])];
        assert_eq!(
            resolve_channels(&m, Visibility::Public, "opportunity"),
            vec![Channel::Sms]
        );
    }

    #[test]
    fn an_empty_channel_list_means_nothing_for_that_pipe() {
        let mut m = member();
        m.subscription_routes = vec![vec![route("digest", &[])]];
        assert!(resolve_channels(&m, Visibility::Public, "digest").is_empty());
        let mut m = member();
        m.default_routes = vec![route("digest", &[])];
        assert!(resolve_channels(&m, Visibility::Public, "digest").is_empty());
    }

    #[test]
    fn muted_paused_and_inactive_members_get_nothing() {
        for tweak in [
            |m: &mut MemberFacts| m.muted = true,
            |m: &mut MemberFacts| m.paused_all = true,
            |m: &mut MemberFacts| m.active = false,
        ] {
            let mut m = member();
            tweak(&mut m);
            assert!(resolve_channels(&m, Visibility::Public, "digest").is_empty());
        }
    }

    #[test]
    fn a_private_community_reaches_only_admitted_members() {
        let mut m = member();
        assert!(resolve_channels(&m, Visibility::Private, "digest").is_empty());
        m.admitted = true;
        assert_eq!(
            resolve_channels(&m, Visibility::Private, "digest"),
            vec![Channel::Inbox]
        );
    }

    #[test]
    fn unknown_channel_names_are_ignored_and_duplicates_merged() {
        let mut m = member();
        m.subscription_routes = vec![
            vec![route("digest", &["email", "carrier-pigeon"])],
            vec![route("digest", &["email", "inbox"])],
        ];
        assert_eq!(
            resolve_channels(&m, Visibility::Public, "digest"),
            vec![Channel::Inbox, Channel::Email]
        );
    }
}
