//! Mailman's bounce scoring, as a pure function of the last score, the bounce and its day.
//!
//! GNU Mailman scores a member's bounces instead of dropping them at the first one, because a
//! mailbox that is full today may take mail tomorrow: a hard bounce adds 1.0, a soft one 0.5,
//! only one bounce a day counts, a score whose last bounce is more than
//! `bounce_info_stale_after` (7 days) old starts again from the new bounce, and delivery stops
//! when the score reaches `bounce_score_threshold` (5.0). Herald uses the same figures (Mailman
//! 2.1's `Bouncer.registerBounce` and its defaults), with days counted in UTC.
//!
//! Herald suppresses an address at once on a hard bounce or a complaint; this score is what
//! soft bounces build up. A bounce dated on or before the day of the last one that counted
//! changes nothing (Mailman's "one a day"; an out-of-order delivery of an older event cannot
//! count as a new day either).

use chrono::NaiveDate;

/// What a hard bounce adds (Mailman's weight for a permanent failure).
pub const HARD_WEIGHT: f64 = 1.0;
/// What a soft bounce adds (Mailman's weight for a temporary one).
pub const SOFT_WEIGHT: f64 = 0.5;
/// Score at which the address is suppressed (Mailman's `bounce_score_threshold`).
pub const THRESHOLD: f64 = 5.0;
/// A last bounce more than this many days before the new one resets the score (Mailman's
/// `bounce_info_stale_after`).
pub const STALE_AFTER_DAYS: i64 = 7;

/// How the mail bounced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounce {
    /// Permanent: the address does not exist or refuses mail for good.
    Hard,
    /// Transient or undetermined: a full mailbox, a server down, a message refused this once.
    Soft,
}

impl Bounce {
    pub fn weight(self) -> f64 {
        match self {
            Bounce::Hard => HARD_WEIGHT,
            Bounce::Soft => SOFT_WEIGHT,
        }
    }
}

/// An address's score and the day of the last bounce that counted (`None`: never bounced).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub score: f64,
    pub last: Option<NaiveDate>,
}

/// What one more bounce does to a score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Registered {
    /// Not counted: a bounce was already counted that day (or later).
    Unchanged,
    /// Counted: the new score, dated `day`; `suppress` once it reached the threshold.
    Counted {
        score: f64,
        day: NaiveDate,
        suppress: bool,
    },
}

/// Register `bounce`, which happened on `day`, against `previous`.
pub fn register(previous: Score, bounce: Bounce, day: NaiveDate) -> Registered {
    let weight = bounce.weight();
    let score = match previous.last {
        None => weight,
        Some(last) if day <= last => return Registered::Unchanged,
        Some(last) if (day - last).num_days() > STALE_AFTER_DAYS => weight,
        Some(_) => previous.score + weight,
    };
    Registered::Counted {
        score,
        day,
        suppress: score >= THRESHOLD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    const NEVER: Score = Score {
        score: 0.0,
        last: None,
    };

    /// Register each `(day, bounce)` in turn and return the final score.
    fn run(bounces: &[(u32, Bounce)]) -> (Score, bool) {
        let mut score = NEVER;
        let mut suppressed = false;
        for (d, bounce) in bounces {
            if let Registered::Counted {
                score: s,
                day,
                suppress,
            } = register(score, *bounce, day(*d))
            {
                score = Score {
                    score: s,
                    last: Some(day),
                };
                suppressed |= suppress;
            }
        }
        (score, suppressed)
    }

    #[test]
    fn the_first_bounce_scores_its_weight() {
        assert_eq!(
            register(NEVER, Bounce::Soft, day(1)),
            Registered::Counted {
                score: 0.5,
                day: day(1),
                suppress: false
            }
        );
        assert_eq!(run(&[(1, Bounce::Hard)]).0.score, 1.0);
    }

    #[test]
    fn two_soft_bounces_on_one_day_count_once() {
        let after_one = Score {
            score: 0.5,
            last: Some(day(1)),
        };
        assert_eq!(
            register(after_one, Bounce::Soft, day(1)),
            Registered::Unchanged
        );
        assert_eq!(
            run(&[(1, Bounce::Soft), (1, Bounce::Soft), (1, Bounce::Hard)]).0,
            Score {
                score: 0.5,
                last: Some(day(1))
            }
        );
    }

    #[test]
    fn an_older_bounce_than_the_last_counted_changes_nothing() {
        let score = Score {
            score: 1.5,
            last: Some(day(5)),
        };
        assert_eq!(register(score, Bounce::Soft, day(4)), Registered::Unchanged);
    }

    #[test]
    fn bounces_on_separate_days_add_up() {
        let (score, suppressed) = run(&[(1, Bounce::Soft), (2, Bounce::Soft), (3, Bounce::Hard)]);
        assert_eq!(score.score, 2.0);
        assert_eq!(score.last, Some(day(3)));
        assert!(!suppressed);
    }

    #[test]
    fn a_score_older_than_seven_days_starts_again() {
        // Seven days after the last bounce the score still stands (Mailman: last + 7 < now
        // resets, last + 7 == now does not)...
        let (score, _) = run(&[(1, Bounce::Soft), (2, Bounce::Soft), (9, Bounce::Soft)]);
        assert_eq!(score.score, 1.5);
        // ...eight days after, it starts from the new bounce.
        let (score, _) = run(&[(1, Bounce::Soft), (2, Bounce::Soft), (10, Bounce::Soft)]);
        assert_eq!(score.score, 0.5);
        assert_eq!(score.last, Some(day(10)));
    }

    #[test]
    fn ten_soft_bounce_days_reach_the_threshold_and_suppress() {
        let days: Vec<(u32, Bounce)> = (1..=10).map(|d| (d, Bounce::Soft)).collect();
        let (score, suppressed) = run(&days[..9]);
        assert_eq!(score.score, 4.5);
        assert!(!suppressed);
        let (score, suppressed) = run(&days);
        assert_eq!(score.score, THRESHOLD);
        assert!(suppressed, "5.0 reaches the threshold");
    }

    #[test]
    fn five_hard_bounce_days_reach_the_threshold() {
        let days: Vec<(u32, Bounce)> = (1..=5).map(|d| (d * 2, Bounce::Hard)).collect();
        assert!(run(&days).1);
        assert!(!run(&days[..4]).1);
    }
}
