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
        self.tz_name == other.tz_name
            && self.days == other.days
            && self.from == other.from
            && self.to == other.to
    }
}

/// All seven days.
pub const EVERY_DAY: u8 = 0x7f;

fn seconds_of_day(t: Time) -> u32 {
    t.hour() as u32 * 3600 + t.minute() as u32 * 60 + t.second() as u32
}

fn time_of(secs: u32) -> Time {
    // INVARIANT: `secs < 86400`, checked when the document loads.
    Time::new(
        (secs / 3600) as i8,
        (secs / 60 % 60) as i8,
        (secs % 60) as i8,
        0,
    )
    .unwrap_or(Time::MIN)
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
                let end_day = if self.overnight() {
                    day.tomorrow().ok()?
                } else {
                    day
                };
                for edge in [day.to_datetime(from), end_day.to_datetime(to)] {
                    if let Some(ts) = self.instant(edge).filter(|ts| *ts > now) {
                        best = Some(best.map_or(ts, |b| b.min(ts)));
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        best
    }

    fn instant(&self, local: DateTime) -> Option<Timestamp> {
        self.tz.to_ambiguous_timestamp(local).compatible().ok()
    }
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
        assert_eq!(
            s.next_edge(ts("2026-11-26T02:00:00Z")),
            Some(ts("2026-11-26T10:00:00Z"))
        );
        // Friday 20:00 local -> Monday 09:00 local.
        assert_eq!(
            s.next_edge(ts("2026-11-27T12:00:00Z")),
            Some(ts("2026-11-30T01:00:00Z"))
        );
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
        assert_eq!(
            s.next_edge(ts("2026-11-27T23:00:00Z")),
            Some(ts("2026-11-28T06:00:00Z"))
        );
    }
}
