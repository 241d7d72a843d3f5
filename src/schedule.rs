//! Timing policy: when an item may go out on a channel to a member.
//!
//! Owns the member's clock — their local calendar day (the unit of daily caps), the digest hour,
//! quiet hours — and the release time that follows from them. Pure: every function takes `now`,
//! nothing reads the system clock, stores, sends or counts. Callers keep the counts and the
//! queue; this module only answers "not before when".
//!
//! Local times are turned into instants by one rule: a local time stands for the first instant
//! at which the member's wall clock reads it or later. So a time skipped by a spring-forward gap
//! maps to the instant the gap ends (02:30 on a 02:00→03:00 night is 03:00 new time), and a time
//! repeated by a fall-back fold maps to its first occurrence. Each local day has exactly one
//! digest instant: a digest hour inside a fold fires on the first pass only, not again an hour
//! later.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone,
    Utc,
};
use chrono_tz::Tz;

/// Local 08:00 when the member set no digest hour: a morning summary, early enough to be read
/// before the working day.
pub const DEFAULT_DIGEST_HOUR: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/Paris")]
    UnknownTimezone(String),
    #[error("invalid time {0:?}: expected HH:MM between 00:00 and 23:59")]
    InvalidTime(String),
    #[error("invalid digest hour {0}: expected 0 to 23")]
    InvalidDigestHour(i64),
    #[error("unknown cadence {0:?}: expected \"immediate\" or \"daily\"")]
    UnknownCadence(String),
    #[error("unknown urgency {0:?}: expected \"normal\" or \"urgent\"")]
    UnknownUrgency(String),
}

/// How a member wants one channel fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cadence {
    /// Each item as it arrives (outside quiet hours).
    Immediate,
    /// Batched into one digest a day, at the digest hour.
    Daily,
}

impl Cadence {
    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::Immediate => "immediate",
            Cadence::Daily => "daily",
        }
    }
}

impl FromStr for Cadence {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "immediate" => Ok(Cadence::Immediate),
            "daily" => Ok(Cadence::Daily),
            _ => Err(ScheduleError::UnknownCadence(s.to_owned())),
        }
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Set by the publisher; urgent items pass quiet hours and skip the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Urgency {
    Normal,
    Urgent,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Urgent => "urgent",
        }
    }
}

impl FromStr for Urgency {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "normal" => Ok(Urgency::Normal),
            "urgent" => Ok(Urgency::Urgent),
            _ => Err(ScheduleError::UnknownUrgency(s.to_owned())),
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A daily local window `[start, end)` in which normal items are held. `end` before `start`
/// spans midnight; `start == end` is an empty window (the lexicon allows it, it holds nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    /// Parses the lexicon's strict `"HH:MM"` strings.
    pub fn parse(start: &str, end: &str) -> Result<Self, ScheduleError> {
        Ok(Self {
            start: parse_hh_mm(start)?,
            end: parse_hh_mm(end)?,
        })
    }

    pub fn start(&self) -> NaiveTime {
        self.start
    }

    pub fn end(&self) -> NaiveTime {
        self.end
    }
}

/// Exactly two digits, a colon, two digits: chrono's `%H:%M` also takes "7:00", which the
/// lexicon (length 5) does not.
fn parse_hh_mm(s: &str) -> Result<NaiveTime, ScheduleError> {
    let invalid = || ScheduleError::InvalidTime(s.to_owned());
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![b[0], b[1], b[3], b[4]].iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let hour = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    let minute = u32::from(b[3] - b'0') * 10 + u32::from(b[4] - b'0');
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(invalid)
}

fn parse_digest_hour(hour: i64) -> Result<u32, ScheduleError> {
    u32::try_from(hour)
        .ok()
        .filter(|h| *h < 24)
        .ok_or(ScheduleError::InvalidDigestHour(hour))
}

/// One member's timing preferences, resolved against their time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberClock {
    tz: Tz,
    digest_hour: u32,
    quiet: Option<QuietHours>,
}

impl MemberClock {
    /// Strict: for validating records at ingest.
    pub fn parse(
        timezone: Option<&str>,
        digest_hour: Option<i64>,
        quiet: Option<(&str, &str)>,
    ) -> Result<Self, ScheduleError> {
        let tz = match timezone {
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::UnknownTimezone(name.to_owned()))?,
            None => Tz::UTC,
        };
        let digest_hour = digest_hour
            .map(parse_digest_hour)
            .transpose()?
            .unwrap_or(DEFAULT_DIGEST_HOUR);
        let quiet = quiet
            .map(|(start, end)| QuietHours::parse(start, end))
            .transpose()?;
        Ok(Self {
            tz,
            digest_hour,
            quiet,
        })
    }

    /// Lenient, for delivery time: each invalid part falls back on its own (UTC,
    /// [`DEFAULT_DIGEST_HOUR`], no quiet hours), so a bad field never blocks delivery.
    pub fn lenient(
        timezone: Option<&str>,
        digest_hour: Option<i64>,
        quiet: Option<(&str, &str)>,
    ) -> Self {
        Self {
            tz: timezone
                .and_then(|name| name.parse().ok())
                .unwrap_or(Tz::UTC),
            digest_hour: digest_hour
                .and_then(|h| parse_digest_hour(h).ok())
                .unwrap_or(DEFAULT_DIGEST_HOUR),
            quiet: quiet.and_then(|(start, end)| QuietHours::parse(start, end).ok()),
        }
    }

    /// A member who set nothing.
    pub fn utc() -> Self {
        Self {
            tz: Tz::UTC,
            digest_hour: DEFAULT_DIGEST_HOUR,
            quiet: None,
        }
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn digest_hour(&self) -> u32 {
        self.digest_hour
    }

    pub fn quiet_hours(&self) -> Option<QuietHours> {
        self.quiet
    }

    /// The member's calendar day at `now`: the day daily caps count against.
    pub fn local_date(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }

    /// The start of the member's next local day: local midnight, or where a DST gap skips
    /// midnight (Santiago, Havana, Beirut) the first instant of that day.
    pub fn next_day_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.daily_at(self.local_date(now) + Days::new(1), NaiveTime::MIN, now)
    }

    /// The first digest instant at or after `now` (exactly `now` at the digest hour).
    pub fn next_digest_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        // digest_hour < 24 by construction; the fallback is unreachable.
        let at = NaiveTime::from_hms_opt(self.digest_hour, 0, 0).unwrap_or(NaiveTime::MIN);
        self.daily_at(self.local_date(now), at, now)
    }

    /// When `now` is inside quiet hours, the instant they end (the end is exclusive).
    /// Windows are measured in real time, so a 22:00–07:00 window lasts 8 h on a
    /// spring-forward night and 10 h on a fall-back one.
    pub fn quiet_end(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let q = self.quiet.filter(|q| q.start != q.end)?;
        let today = self.local_date(now);
        // The window containing `now` may have started yesterday (spanning midnight); tomorrow
        // is checked too in case a fold sends the clock back across midnight.
        [today - Days::new(1), today, today + Days::new(1)]
            .into_iter()
            .find_map(|day| {
                let start = self.instant(day.and_time(q.start));
                let end_day = if q.end < q.start {
                    day + Days::new(1)
                } else {
                    day
                };
                let end = self.instant(end_day.and_time(q.end));
                (start <= now && now < end).then_some(end)
            })
    }

    /// When an item published at `now` may go out on a channel with this cadence. Urgent items
    /// go at once whatever the cadence (daily caps are enforced by the caller); normal items wait
    /// for the end of quiet hours, and daily ones also for the digest — which itself waits if
    /// the digest hour falls inside quiet hours.
    pub fn release_at(
        &self,
        now: DateTime<Utc>,
        cadence: Cadence,
        urgency: Urgency,
    ) -> DateTime<Utc> {
        let earliest = match (urgency, cadence) {
            (Urgency::Urgent, _) => return now,
            (Urgency::Normal, Cadence::Immediate) => now,
            (Urgency::Normal, Cadence::Daily) => self.next_digest_at(now),
        };
        self.quiet_end(earliest).unwrap_or(earliest)
    }

    /// After a daily cap was reached at `now`: the next local day, and for normal items not
    /// before quiet hours end on that day.
    pub fn next_allowed_after_cap(&self, now: DateTime<Utc>, urgency: Urgency) -> DateTime<Utc> {
        let day_start = self.next_day_start(now);
        match urgency {
            Urgency::Urgent => day_start,
            Urgency::Normal => self.quiet_end(day_start).unwrap_or(day_start),
        }
    }

    /// The first instant at which the wall clock reads `local` or later; see the module doc.
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(at) => at.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            LocalResult::None => self.gap_end(local),
        }
    }

    /// `local` falls in a gap: find the transition by bisection, since chrono-tz does not
    /// expose its transition table.
    fn gap_end(&self, local: NaiveDateTime) -> DateTime<Utc> {
        // Offsets are under a day, so the instants a day either side of `local` read as UTC
        // fall before and after the gap.
        let offset = |naive: NaiveDateTime| {
            i64::from(
                self.tz
                    .offset_from_utc_datetime(&naive)
                    .fix()
                    .local_minus_utc(),
            )
        };
        let before = offset(local - Days::new(1));
        let after = offset(local + Days::new(1));
        let as_utc = local.and_utc();
        // The clock reads earlier than `local` at `lo` and at least `local` at `hi`.
        let mut lo = as_utc - TimeDelta::seconds(before.max(after));
        let mut hi = as_utc - TimeDelta::seconds(before.min(after));
        while hi - lo > TimeDelta::seconds(1) {
            let mid = lo + (hi - lo) / 2;
            if mid.with_timezone(&self.tz).naive_local() >= local {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// `time` on `day`, or on the first later day where that instant is not before `not_before`.
    fn daily_at(
        &self,
        mut day: NaiveDate,
        time: NaiveTime,
        not_before: DateTime<Utc>,
    ) -> DateTime<Utc> {
        loop {
            let at = self.instant(day.and_time(time));
            if at >= not_before {
                return at;
            }
            day = day + Days::new(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("RFC 3339 instant")
    }

    fn clock(tz: &str, digest_hour: i64, quiet: Option<(&str, &str)>) -> MemberClock {
        MemberClock::parse(Some(tz), Some(digest_hour), quiet).expect("valid preferences")
    }

    fn paris() -> MemberClock {
        clock("Europe/Paris", 8, Some(("22:00", "07:00")))
    }

    #[test]
    fn paris_digest_at_eight_is_seven_utc_in_winter_and_six_utc_from_spring_forward_day() {
        let c = clock("Europe/Paris", 8, None);
        assert_eq!(
            c.next_digest_at(at("2026-03-28T00:00:00Z")),
            at("2026-03-28T07:00:00Z")
        );
        assert_eq!(
            c.next_digest_at(at("2026-03-29T00:00:00Z")),
            at("2026-03-29T06:00:00Z")
        );
        assert_eq!(
            c.next_digest_at(at("2026-03-30T00:00:00Z")),
            at("2026-03-30T06:00:00Z")
        );
        assert_eq!(
            c.next_digest_at(at("2026-10-25T00:00:00Z")),
            at("2026-10-25T07:00:00Z")
        );
    }

    #[test]
    fn digest_hour_in_a_spring_forward_gap_goes_out_when_the_gap_ends() {
        let c = clock("Europe/Paris", 2, None);
        // 00:00 CET on 2026-03-29; 02:00 never happens, 03:00 CEST is 01:00Z.
        assert_eq!(
            c.next_digest_at(at("2026-03-28T23:00:00Z")),
            at("2026-03-29T01:00:00Z")
        );
        let ny = clock("America/New_York", 2, None);
        assert_eq!(
            ny.next_digest_at(at("2026-03-08T05:00:00Z")),
            at("2026-03-08T07:00:00Z")
        );
        let sydney = clock("Australia/Sydney", 2, None);
        // 02:00 AEST on 2026-10-04 jumps to 03:00 AEDT (+11) = 2026-10-03T16:00Z.
        assert_eq!(
            sydney.next_digest_at(at("2026-10-03T14:00:00Z")),
            at("2026-10-03T16:00:00Z")
        );
    }

    #[test]
    fn digest_hour_in_a_fall_back_fold_goes_out_once_at_its_first_occurrence() {
        let c = clock("Europe/Paris", 2, None);
        // 02:00 CEST = 00:00Z is the first occurrence; 02:00 CET = 01:00Z is not a second digest.
        assert_eq!(
            c.next_digest_at(at("2026-10-24T22:00:00Z")),
            at("2026-10-25T00:00:00Z")
        );
        assert_eq!(
            c.next_digest_at(at("2026-10-25T00:30:00Z")),
            at("2026-10-26T01:00:00Z")
        );
        let ny = clock("America/New_York", 1, None);
        assert_eq!(
            ny.next_digest_at(at("2026-11-01T04:00:00Z")),
            at("2026-11-01T05:00:00Z")
        );
        let sydney = clock("Australia/Sydney", 2, None);
        // 02:00 AEDT (+11) on 2026-04-05 = 2026-04-04T15:00Z.
        assert_eq!(
            sydney.next_digest_at(at("2026-04-04T13:00:00Z")),
            at("2026-04-04T15:00:00Z")
        );
    }

    #[test]
    fn digest_follows_the_offset_across_new_york_and_sydney_changes() {
        let ny = clock("America/New_York", 8, None);
        assert_eq!(
            ny.next_digest_at(at("2026-03-07T00:00:00Z")),
            at("2026-03-07T13:00:00Z")
        );
        assert_eq!(
            ny.next_digest_at(at("2026-03-08T00:00:00Z")),
            at("2026-03-08T12:00:00Z")
        );
        assert_eq!(
            ny.next_digest_at(at("2026-10-31T00:00:00Z")),
            at("2026-10-31T12:00:00Z")
        );
        assert_eq!(
            ny.next_digest_at(at("2026-11-01T10:00:00Z")),
            at("2026-11-01T13:00:00Z")
        );
        let sydney = clock("Australia/Sydney", 8, None);
        // Southern hemisphere: summer time ends in April and starts in October.
        assert_eq!(
            sydney.next_digest_at(at("2026-04-03T12:00:00Z")),
            at("2026-04-03T21:00:00Z")
        );
        assert_eq!(
            sydney.next_digest_at(at("2026-04-04T12:00:00Z")),
            at("2026-04-04T22:00:00Z")
        );
        assert_eq!(
            sydney.next_digest_at(at("2026-10-03T12:00:00Z")),
            at("2026-10-03T21:00:00Z")
        );
    }

    #[test]
    fn next_digest_is_never_before_now_and_is_now_exactly_at_the_hour() {
        let c = clock("Asia/Kolkata", 8, None);
        assert_eq!(
            c.next_digest_at(at("2026-06-01T02:30:00Z")),
            at("2026-06-01T02:30:00Z")
        );
        assert_eq!(
            c.next_digest_at(at("2026-06-01T02:30:01Z")),
            at("2026-06-02T02:30:00Z")
        );
        assert_eq!(
            c.next_digest_at(at("2026-06-01T20:00:00Z")),
            at("2026-06-02T02:30:00Z")
        );
    }

    #[test]
    fn kolkata_local_day_starts_at_half_past_six_utc_the_evening_before() {
        let c = clock("Asia/Kolkata", 8, None);
        let date = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(c.local_date(at("2026-01-01T18:29:59Z")), date("2026-01-01"));
        assert_eq!(c.local_date(at("2026-01-01T18:30:00Z")), date("2026-01-02"));
        assert_eq!(
            c.next_day_start(at("2026-01-01T10:00:00Z")),
            at("2026-01-01T18:30:00Z")
        );
        assert_eq!(
            c.next_day_start(at("2026-01-01T18:30:00Z")),
            at("2026-01-02T18:30:00Z")
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_when_the_gap_ends() {
        // Chile springs forward at 00:00 -04 on 2026-09-06, straight to 01:00 -03.
        let santiago = clock("America/Santiago", 8, None);
        let start = santiago.next_day_start(at("2026-09-05T12:00:00Z"));
        assert_eq!(start, at("2026-09-06T04:00:00Z"));
        assert_eq!(santiago.local_date(start).to_string(), "2026-09-06");
        assert_eq!(
            santiago
                .local_date(start - TimeDelta::seconds(1))
                .to_string(),
            "2026-09-05"
        );
        // Havana and Beirut skip midnight too (2026-03-08 and 2026-03-29).
        let havana = clock("America/Havana", 8, None);
        assert_eq!(
            havana.next_day_start(at("2026-03-07T12:00:00Z")),
            at("2026-03-08T05:00:00Z")
        );
        let beirut = clock("Asia/Beirut", 8, None);
        assert_eq!(
            beirut.next_day_start(at("2026-03-28T12:00:00Z")),
            at("2026-03-28T22:00:00Z")
        );
    }

    #[test]
    fn a_day_whose_midnight_repeats_starts_at_the_first_midnight() {
        // Havana falls back at 01:00 -04 on 2026-11-01 to 00:00 -05: midnight happens twice.
        let havana = clock("America/Havana", 8, None);
        assert_eq!(
            havana.next_day_start(at("2026-10-31T12:00:00Z")),
            at("2026-11-01T04:00:00Z")
        );
        // Santiago repeats 23:00–24:00 on 2026-04-04, so that day lasts 25 hours.
        let santiago = clock("America/Santiago", 8, None);
        assert_eq!(
            santiago.next_day_start(at("2026-04-04T12:00:00Z")),
            at("2026-04-05T04:00:00Z")
        );
        assert_eq!(
            santiago.next_day_start(at("2026-04-04T03:30:00Z")),
            at("2026-04-05T04:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_spanning_a_spring_forward_night_last_eight_hours() {
        let c = paris();
        // 22:00 CET = 21:00Z, 07:00 CEST = 05:00Z.
        assert_eq!(c.quiet_end(at("2026-03-28T20:59:59Z")), None);
        assert_eq!(
            c.quiet_end(at("2026-03-28T21:00:00Z")),
            Some(at("2026-03-29T05:00:00Z"))
        );
        assert_eq!(
            c.quiet_end(at("2026-03-29T01:00:00Z")),
            Some(at("2026-03-29T05:00:00Z"))
        );
        assert_eq!(c.quiet_end(at("2026-03-29T05:00:00Z")), None);
        let sydney = clock("Australia/Sydney", 8, Some(("22:00", "07:00")));
        // 22:00 AEST (+10) = 12:00Z, 07:00 AEDT (+11) = 20:00Z.
        assert_eq!(
            sydney.quiet_end(at("2026-10-03T12:00:00Z")),
            Some(at("2026-10-03T20:00:00Z"))
        );
    }

    #[test]
    fn quiet_hours_spanning_a_fall_back_night_last_ten_hours() {
        let c = paris();
        // 22:00 CEST = 20:00Z, 07:00 CET = 06:00Z.
        assert_eq!(
            c.quiet_end(at("2026-10-24T20:00:00Z")),
            Some(at("2026-10-25T06:00:00Z"))
        );
        assert_eq!(
            c.quiet_end(at("2026-10-25T05:59:59Z")),
            Some(at("2026-10-25T06:00:00Z"))
        );
        assert_eq!(c.quiet_end(at("2026-10-25T06:00:00Z")), None);
        let ny = clock("America/New_York", 8, Some(("22:00", "07:00")));
        // 22:00 EDT = 02:00Z, 07:00 EST = 12:00Z.
        assert_eq!(
            ny.quiet_end(at("2026-11-01T02:00:00Z")),
            Some(at("2026-11-01T12:00:00Z"))
        );
        let sydney = clock("Australia/Sydney", 8, Some(("22:00", "07:00")));
        // 22:00 AEDT (+11) = 11:00Z, 07:00 AEST (+10) = 21:00Z.
        assert_eq!(
            sydney.quiet_end(at("2026-04-04T11:00:00Z")),
            Some(at("2026-04-04T21:00:00Z"))
        );
    }

    #[test]
    fn a_quiet_end_skipped_by_the_gap_is_the_end_of_the_gap() {
        let c = clock("Europe/Paris", 8, Some(("01:00", "02:30")));
        assert_eq!(
            c.quiet_end(at("2026-03-29T00:30:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        // 02:30 never happens that night: the window ends at 03:00 CEST, one real hour after it began.
        assert_eq!(
            c.quiet_end(at("2026-03-29T00:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        assert_eq!(c.quiet_end(at("2026-03-29T01:00:00Z")), None);
        // The next night it ends at 02:30 CEST as usual.
        assert_eq!(
            c.quiet_end(at("2026-03-30T00:00:00Z")),
            Some(at("2026-03-30T00:30:00Z"))
        );
    }

    #[test]
    fn quiet_hours_within_a_day_and_empty_windows() {
        let c = clock("Asia/Kolkata", 8, Some(("13:00", "14:00")));
        assert_eq!(c.quiet_end(at("2026-06-01T07:29:59Z")), None);
        assert_eq!(
            c.quiet_end(at("2026-06-01T07:30:00Z")),
            Some(at("2026-06-01T08:30:00Z"))
        );
        assert_eq!(c.quiet_end(at("2026-06-01T08:30:00Z")), None);
        let empty = clock("Asia/Kolkata", 8, Some(("07:00", "07:00")));
        assert_eq!(empty.quiet_end(at("2026-06-01T01:30:00Z")), None);
    }

    #[test]
    fn urgent_items_pass_quiet_hours_and_skip_the_digest() {
        let c = paris();
        let night = at("2026-06-01T23:00:00Z");
        assert_eq!(
            c.release_at(night, Cadence::Immediate, Urgency::Urgent),
            night
        );
        assert_eq!(c.release_at(night, Cadence::Daily, Urgency::Urgent), night);
    }

    #[test]
    fn normal_items_wait_for_quiet_hours_to_end() {
        let c = paris();
        let night = at("2026-06-01T23:00:00Z");
        assert_eq!(
            c.release_at(night, Cadence::Immediate, Urgency::Normal),
            at("2026-06-02T05:00:00Z")
        );
        let noon = at("2026-06-01T10:00:00Z");
        assert_eq!(
            c.release_at(noon, Cadence::Immediate, Urgency::Normal),
            noon
        );
    }

    #[test]
    fn daily_items_wait_for_the_digest_and_a_digest_inside_quiet_hours_waits_for_their_end() {
        assert_eq!(
            paris().release_at(at("2026-06-01T10:00:00Z"), Cadence::Daily, Urgency::Normal),
            at("2026-06-02T06:00:00Z")
        );
        let late = clock("Europe/Paris", 23, Some(("22:00", "07:00")));
        // The 23:00 CEST digest falls in quiet hours: it goes at 07:00 CEST the next morning.
        assert_eq!(
            late.release_at(at("2026-06-01T10:00:00Z"), Cadence::Daily, Urgency::Normal),
            at("2026-06-02T05:00:00Z")
        );
    }

    #[test]
    fn after_a_cap_normal_items_wait_for_the_next_day_and_its_quiet_hours_to_end() {
        let c = paris();
        let capped = at("2026-03-28T15:00:00Z");
        // Midnight CET on the spring-forward day, then 07:00 CEST.
        assert_eq!(
            c.next_allowed_after_cap(capped, Urgency::Urgent),
            at("2026-03-28T23:00:00Z")
        );
        assert_eq!(
            c.next_allowed_after_cap(capped, Urgency::Normal),
            at("2026-03-29T05:00:00Z")
        );
        let no_quiet = clock("Europe/Paris", 8, None);
        assert_eq!(
            no_quiet.next_allowed_after_cap(capped, Urgency::Normal),
            at("2026-03-28T23:00:00Z")
        );
    }

    #[test]
    fn lenient_falls_back_field_by_field() {
        let c = MemberClock::lenient(Some("Mars/Olympus"), Some(9), Some(("22:00", "07:00")));
        assert_eq!(c.timezone(), Tz::UTC);
        assert_eq!(c.digest_hour(), 9);
        assert!(c.quiet_hours().is_some());
        let c = MemberClock::lenient(Some("Europe/Paris"), Some(24), Some(("7:00", "22:00")));
        assert_eq!(c.timezone(), chrono_tz::Europe::Paris);
        assert_eq!(c.digest_hour(), DEFAULT_DIGEST_HOUR);
        assert_eq!(c.quiet_hours(), None);
        assert_eq!(
            MemberClock::lenient(None, Some(-1), None),
            MemberClock::utc()
        );
    }

    #[test]
    fn strict_parse_names_the_bad_field() {
        let err = |tz, hour, quiet| MemberClock::parse(tz, hour, quiet).unwrap_err().to_string();
        assert_eq!(
            err(Some("Europe/Pariss"), None, None),
            "unknown time zone \"Europe/Pariss\": expected an IANA name such as Europe/Paris"
        );
        assert_eq!(
            err(Some(""), None, None),
            "unknown time zone \"\": expected an IANA name such as Europe/Paris"
        );
        assert_eq!(
            err(None, Some(24), None),
            "invalid digest hour 24: expected 0 to 23"
        );
        assert_eq!(
            err(None, Some(-1), None),
            "invalid digest hour -1: expected 0 to 23"
        );
        assert_eq!(
            err(None, None, Some(("22:00", "24:00"))),
            "invalid time \"24:00\": expected HH:MM between 00:00 and 23:59"
        );
        assert_eq!(MemberClock::parse(None, None, None), Ok(MemberClock::utc()));
    }

    #[test]
    fn quiet_hours_accept_only_two_digit_hours_and_minutes() {
        for ok in ["00:00", "23:59", "07:05"] {
            assert!(QuietHours::parse(ok, "12:00").is_ok(), "{ok}");
        }
        for bad in [
            "24:00",
            "07:60",
            "7:00",
            "07:0",
            "07:00 ",
            " 7:00",
            "0a:00",
            "+1:00",
            "07-00",
            "",
            "٠٧:٠٠",
        ] {
            assert_eq!(
                QuietHours::parse("12:00", bad),
                Err(ScheduleError::InvalidTime(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn cadence_and_urgency_round_trip_through_their_names() {
        for c in [Cadence::Immediate, Cadence::Daily] {
            assert_eq!(c.as_str().parse(), Ok(c));
        }
        for u in [Urgency::Normal, Urgency::Urgent] {
            assert_eq!(u.as_str().parse(), Ok(u));
        }
        assert_eq!(
            "Daily".parse::<Cadence>().unwrap_err().to_string(),
            "unknown cadence \"Daily\": expected \"immediate\" or \"daily\""
        );
        assert_eq!(
            "high".parse::<Urgency>().unwrap_err().to_string(),
            "unknown urgency \"high\": expected \"normal\" or \"urgent\""
        );
    }
}
