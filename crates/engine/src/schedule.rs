//! Weekly time windows in an IANA time zone: `{tz: Asia/Shanghai, days: [mon..fri], from: "09:00",
//! to: "18:00"}`. A window whose `to` is not after `from` runs past midnight and belongs to the
//! day it started.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// A compiled weekly schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The zone's name as written, for display.
    pub tz_name: String,
    /// The zone the local times are read in.
    pub tz: TimeZone,
    /// Bit `i` set when day `i` (Monday = 0) is listed.
    pub days: u8,
    /// Start of the window, seconds after local midnight.
    pub from: u32,
    /// End of the window, seconds after local midnight; `to <= from` runs past midnight.
    pub to: u32,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.tz_name == other.tz_name && self.days == other.days && self.from == other.from && self.to == other.to
    }
}

/// All seven days.
pub const EVERY_DAY: u8 = 0x7f;

fn seconds_of_day(t: Time) -> u32 {
    let part = |v: i8| u32::from(v.unsigned_abs());
    part(t.hour()) * 3600 + part(t.minute()) * 60 + part(t.second())
}

fn time_of(secs: u32) -> Time {
    // INVARIANT: `secs < 86400`, checked when the document loads.
    let part = |v: u32| i8::try_from(v).unwrap_or(i8::MAX);
    Time::new(part(secs / 3600), part(secs / 60 % 60), part(secs % 60), 0).unwrap_or(Time::MIN)
}

impl Schedule {
    fn overnight(&self) -> bool {
        self.to <= self.from
    }

    fn listed(&self, date: Date) -> bool {
        self.days & (1 << date.weekday().to_monday_zero_offset()) != 0
    }

    /// True when `now` falls inside a window.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = self.tz.to_datetime(now);
        let t = seconds_of_day(local.time());
        let today = self.listed(local.date());
        if !self.overnight() {
            return today && self.from <= t && t < self.to;
        }
        let yesterday = local.date().yesterday().is_ok_and(|d| self.listed(d));
        (today && t >= self.from) || (yesterday && t < self.to)
    }

    /// The first start or end of a window strictly after `now`.
    pub fn next_edge(&self, now: Timestamp) -> Option<Timestamp> {
        let today = self.tz.to_datetime(now).date();
        let (from, to) = (time_of(self.from), time_of(self.to));
        let mut best: Option<Timestamp> = None;
        // A window that started yesterday may still end today; a listed day comes within a week.
        let mut day = today.yesterday().ok()?;
        for _ in 0..9 {
            if self.listed(day) {
                let end_day = if self.overnight() { day.tomorrow().ok()? } else { day };
                for edge in [day.to_datetime(from), end_day.to_datetime(to)] {
                    for ts in self.instants(edge) {
                        best = earliest_after(best, ts, now);
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        // A local time skipped by a clock change has no instant of its own: the window flips at
        // the transition itself. A transition can also replay a window, so it is an edge too.
        let horizon = now.checked_add(jiff::SignedDuration::from_hours(24 * 9)).ok()?;
        if let Some(t) = self.tz.following(now).next().map(|t| t.timestamp()).filter(|t| *t < horizon) {
            best = earliest_after(best, t, now);
        }
        best
    }

    /// Every instant a local time maps to: two in a repeated hour, the neighbours of a gap.
    fn instants(&self, local: DateTime) -> impl Iterator<Item = Timestamp> {
        let amb = self.tz.to_ambiguous_timestamp(local);
        [amb.earlier().ok(), amb.later().ok()].into_iter().flatten()
    }
}

fn earliest_after(best: Option<Timestamp>, ts: Timestamp, now: Timestamp) -> Option<Timestamp> {
    if ts <= now {
        return best;
    }
    Some(best.map_or(ts, |b| b.min(ts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai_office_hours() -> Schedule {
        Schedule {
            tz_name: "Asia/Shanghai".into(),
            tz: TimeZone::get("Asia/Shanghai").unwrap(),
            days: 0b1_1111,
            from: 9 * 3600,
            to: 18 * 3600,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn office_hours_hold_on_a_weekday_in_the_zone() {
        let s = shanghai_office_hours();
        // Thursday 2026-11-26 10:00 in Shanghai.
        assert!(s.contains(ts("2026-11-26T02:00:00Z")));
        // 18:00 is the end, exclusive.
        assert!(!s.contains(ts("2026-11-26T10:00:00Z")));
        // Saturday.
        assert!(!s.contains(ts("2026-11-28T02:00:00Z")));
    }

    #[test]
    fn next_edge_is_the_end_inside_and_the_next_start_outside() {
        let s = shanghai_office_hours();
        assert_eq!(s.next_edge(ts("2026-11-26T02:00:00Z")), Some(ts("2026-11-26T10:00:00Z")));
        // Friday 20:00 local -> Monday 09:00 local.
        assert_eq!(s.next_edge(ts("2026-11-27T12:00:00Z")), Some(ts("2026-11-30T01:00:00Z")));
    }

    #[test]
    fn a_window_ending_in_a_skipped_hour_ends_at_the_clock_change() {
        // 2030-03-10: Toronto skips 02:00-03:00 (07:00Z). A 17:00-02:30 shift ends at 07:00Z.
        let s = Schedule {
            tz_name: "America/Toronto".into(),
            tz: TimeZone::get("America/Toronto").unwrap(),
            days: EVERY_DAY,
            from: 17 * 3600,
            to: 2 * 3600 + 1800,
        };
        assert!(s.contains(ts("2030-03-10T06:45:00Z")));
        assert!(!s.contains(ts("2030-03-10T07:00:00Z")));
        assert_eq!(s.next_edge(ts("2030-03-10T06:45:00Z")), Some(ts("2030-03-10T07:00:00Z")));
    }

    #[test]
    fn a_window_inside_a_repeated_hour_is_bounded_by_its_second_start() {
        // 2030-11-03: Toronto repeats 01:00-02:00. A 01:10-01:40 window happens twice.
        let s = Schedule {
            tz_name: "America/Toronto".into(),
            tz: TimeZone::get("America/Toronto").unwrap(),
            days: EVERY_DAY,
            from: 3600 + 600,
            to: 3600 + 2400,
        };
        let after_first = ts("2030-11-03T05:45:00Z"); // 01:45 EDT
        assert!(!s.contains(after_first));
        let edge = s.next_edge(after_first).unwrap();
        assert!(edge <= ts("2030-11-03T06:10:00Z"), "{edge}"); // 01:10 EST at the latest
        assert!(s.contains(ts("2030-11-03T06:15:00Z")));
    }

    #[test]
    fn overnight_window_belongs_to_the_day_it_started() {
        let s = Schedule {
            tz_name: "UTC".into(),
            tz: TimeZone::UTC,
            days: 1 << 4, // Friday
            from: 22 * 3600,
            to: 6 * 3600,
        };
        assert!(s.contains(ts("2026-11-27T23:00:00Z"))); // Friday night
        assert!(s.contains(ts("2026-11-28T05:00:00Z"))); // Saturday early, started Friday
        assert!(!s.contains(ts("2026-11-27T05:00:00Z"))); // Friday early, Thursday not listed
        assert_eq!(s.next_edge(ts("2026-11-27T23:00:00Z")), Some(ts("2026-11-28T06:00:00Z")));
    }
}
