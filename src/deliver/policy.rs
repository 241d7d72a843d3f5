//! The timing and volume policy for one member on one channel, from their preferences (read
//! leniently: a bad field falls back, it never blocks a delivery) and the operator's
//! settings. Pure: the dispatcher asks, the schedule module computes instants.

use chrono::{DateTime, Utc};

use crate::model::{Channel, ChannelCadence, ChannelLimit};
use crate::schedule::{Cadence, MemberClock, Urgency};
use crate::settings::ScheduleSettings;
use crate::storage::MemberTiming;

/// How one member hears on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelPolicy {
    pub clock: MemberClock,
    pub cadence: Cadence,
    /// Most messages per local day; `None` for no cap.
    pub daily_limit: Option<u64>,
}

impl ChannelPolicy {
    pub fn of(
        timing: Option<&MemberTiming>,
        channel: Channel,
        schedule: &ScheduleSettings,
    ) -> Self {
        let t = timing.cloned().unwrap_or_default();
        // Quiet hours are for people; a member's feed reader and webhook endpoint take items
        // whenever they come.
        let human = matches!(
            channel,
            Channel::Email | Channel::Sms | Channel::Telegram | Channel::Webpush
        );
        let quiet = match (&t.quiet_start, &t.quiet_end) {
            (Some(start), Some(end)) if human => Some((start.as_str(), end.as_str())),
            _ => None,
        };
        let clock = MemberClock::lenient(t.timezone.as_deref(), t.digest_hour, quiet);
        let cadences: Vec<ChannelCadence> = parse_list(t.channel_cadences.as_deref());
        let cadence = cadences
            .iter()
            .find(|c| c.channel == channel.as_str())
            .and_then(|c| c.cadence.parse().ok())
            .unwrap_or(if schedule.digest_channels.contains(&channel) {
                Cadence::Daily
            } else {
                Cadence::Immediate
            });
        let cadence = if channel == Channel::Feed {
            Cadence::Immediate
        } else {
            cadence
        };
        let limits: Vec<ChannelLimit> = parse_list(t.channel_limits.as_deref());
        // A limit of 0 would hold items for ever; folding needs at least one message a day.
        let member = limits
            .iter()
            .find(|l| l.channel == channel.as_str())
            .map(|l| l.max_per_day.max(1) as u64);
        let operator = match channel {
            Channel::Sms if schedule.sms_member_daily > 0 => {
                Some(u64::from(schedule.sms_member_daily))
            }
            _ => None,
        };
        let daily_limit = match (member, operator) {
            (Some(m), Some(o)) => Some(m.min(o)),
            (m, o) => m.or(o),
        };
        Self {
            clock,
            cadence,
            daily_limit: if channel == Channel::Feed {
                None
            } else {
                daily_limit
            },
        }
    }

    /// Whether items on this channel go out folded together (a digest, or a cap that holds
    /// items back for the next allowed message).
    pub fn folds(&self) -> bool {
        self.cadence == Cadence::Daily || self.daily_limit.is_some()
    }

    /// When an item first seen at `now` may go: `now` when it may go at once.
    pub fn release_at(&self, now: DateTime<Utc>, urgency: Urgency) -> DateTime<Utc> {
        self.clock.release_at(now, self.cadence, urgency)
    }
}

fn parse_list<T: serde::de::DeserializeOwned>(json: Option<&str>) -> Vec<T> {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(limits: &str, cadences: &str) -> MemberTiming {
        MemberTiming {
            timezone: Some("Europe/Paris".into()),
            digest_hour: Some(18),
            quiet_start: Some("22:00".into()),
            quiet_end: Some("07:00".into()),
            channel_limits: Some(limits.into()),
            channel_cadences: Some(cadences.into()),
            ..Default::default()
        }
    }

    #[test]
    fn sms_defaults_to_a_daily_digest_capped_by_the_operator() {
        let s = ScheduleSettings::default();
        let p = ChannelPolicy::of(None, Channel::Sms, &s);
        assert_eq!((p.cadence, p.daily_limit), (Cadence::Daily, Some(1)));
        let p = ChannelPolicy::of(None, Channel::Telegram, &s);
        assert_eq!((p.cadence, p.daily_limit), (Cadence::Immediate, None));
        assert!(!p.folds());
    }

    #[test]
    fn members_choose_cadence_and_limits_but_cannot_raise_the_sms_cap() {
        let s = ScheduleSettings::default();
        let t = timing(
            r#"[{"channel":"sms","maxPerDay":5},{"channel":"telegram","maxPerDay":3},{"channel":"email","maxPerDay":0}]"#,
            r#"[{"channel":"sms","cadence":"immediate"},{"channel":"email","cadence":"daily"}]"#,
        );
        let sms = ChannelPolicy::of(Some(&t), Channel::Sms, &s);
        assert_eq!(
            (sms.cadence, sms.daily_limit),
            (Cadence::Immediate, Some(1))
        );
        let tg = ChannelPolicy::of(Some(&t), Channel::Telegram, &s);
        assert_eq!((tg.cadence, tg.daily_limit), (Cadence::Immediate, Some(3)));
        let email = ChannelPolicy::of(Some(&t), Channel::Email, &s);
        assert_eq!(
            (email.cadence, email.daily_limit),
            (Cadence::Daily, Some(1))
        );
        let no_cap = ScheduleSettings {
            sms_member_daily: 0,
            ..s
        };
        assert_eq!(
            ChannelPolicy::of(Some(&t), Channel::Sms, &no_cap).daily_limit,
            Some(5)
        );
    }

    #[test]
    fn quiet_hours_hold_people_not_machines_and_bad_fields_fall_back() {
        let s = ScheduleSettings::default();
        let t = timing("not json", r#"[{"channel":"telegram","cadence":"weekly"}]"#);
        // 23:30 in Paris (winter, UTC+1).
        let now = DateTime::parse_from_rfc3339("2026-01-10T22:30:00Z")
            .unwrap()
            .to_utc();
        let morning = DateTime::parse_from_rfc3339("2026-01-11T06:00:00Z")
            .unwrap()
            .to_utc();
        let tg = ChannelPolicy::of(Some(&t), Channel::Telegram, &s);
        assert_eq!(tg.cadence, Cadence::Immediate, "unknown cadence falls back");
        assert_eq!(tg.release_at(now, Urgency::Normal), morning);
        assert_eq!(tg.release_at(now, Urgency::Urgent), now);
        let hook = ChannelPolicy::of(Some(&t), Channel::Webhook, &s);
        assert_eq!(hook.release_at(now, Urgency::Normal), now);
    }
}
