//! Standard five-field cron schedules (minute hour day-of-month month day-of-week), with
//! ranges, steps, lists, month and weekday names, and the `@hourly`-style macros, evaluated in
//! UTC or in an IANA time zone (a CronJob's `spec.timeZone`, or a `CRON_TZ=`/`TZ=` prefix),
//! looked up in the system's tz database. Day-of-month and day-of-week combine with OR when both
//! are restricted, as in cron.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    days_any: bool,
    weekdays_any: bool,
    tz: TimeZone,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid schedule {0:?}")]
pub struct ParseError(String);

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], offset: u32) -> Option<u32> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return u32::try_from(i).ok().map(|i| i + offset);
    }
    s.parse().ok()
}

fn field(
    spec: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_offset: u32,
) -> Option<(Vec<bool>, bool)> {
    let size = usize::try_from(max + 1).ok()?;
    let mut set = vec![false; size];
    let any = spec == "*" || spec == "?";
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, name_offset)?, value(b, names, name_offset)?)
        } else {
            let v = value(range, names, name_offset)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return None;
        }
        let mut v = lo;
        while v <= hi {
            set[usize::try_from(v).ok()?] = true;
            v += step;
        }
    }
    Some((set, any))
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError(s.to_string());
        let mut tz = TimeZone::UTC;
        let mut rest = s.trim();
        if let Some(prefixed) = rest
            .strip_prefix("CRON_TZ=")
            .or_else(|| rest.strip_prefix("TZ="))
        {
            let (zone, schedule) = prefixed.split_once(char::is_whitespace).ok_or_else(err)?;
            tz = TimeZone::get(zone).map_err(|_| err())?;
            rest = schedule.trim();
        }
        let expanded = match rest {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, dom, mo, dow] = f.as_slice() else {
            return Err(err());
        };
        let (minutes, _) = field(mi, 0, 59, &[], 0).ok_or_else(err)?;
        let (hours, _) = field(h, 0, 23, &[], 0).ok_or_else(err)?;
        let (days, days_any) = field(dom, 1, 31, &[], 0).ok_or_else(err)?;
        let (months, _) = field(mo, 1, 12, &MONTHS, 1).ok_or_else(err)?;
        let (mut weekdays, weekdays_any) = field(dow, 0, 7, &DAYS, 0).ok_or_else(err)?;
        if weekdays[7] {
            weekdays[0] = true; // 7 is Sunday too
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
            tz,
        })
    }

    /// Evaluate the schedule in the IANA time zone `name` (e.g. `Europe/Berlin`).
    pub fn in_time_zone(mut self, name: &str) -> Result<Self, jiff::Error> {
        self.tz = TimeZone::get(name)?;
        Ok(self)
    }

    /// `t` as RFC 3339 in the schedule's time zone (`Z` for UTC), as CronJobs annotate their
    /// Jobs' scheduled time.
    pub fn format(&self, t: Timestamp) -> String {
        let zoned = t.to_zoned(self.tz.clone());
        if zoned.offset().seconds() == 0 {
            return t.to_string();
        }
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }

    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = self.days[usize::try_from(dt.day()).unwrap_or(0)];
        let dow = self.weekdays[usize::try_from(dt.weekday().to_sunday_zero_offset()).unwrap_or(0)];
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let tz = self.tz.clone();
        let start = t.to_zoned(tz.clone()).datetime();
        let mut dt = start
            .checked_add(1.minute())
            .ok()?
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?;
        // Five years covers every valid schedule (Feb 29 on a given weekday included).
        let limit = start.checked_add(5.years()).ok()?;
        while dt <= limit {
            if !self.months[usize::try_from(dt.month()).ok()?] {
                dt = dt
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if !self.day_matches(dt) {
                dt = dt
                    .checked_add(1.day())
                    .ok()?
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if !self.hours[usize::try_from(dt.hour()).ok()?] {
                dt = dt
                    .checked_add(1.hour())
                    .ok()?
                    .with()
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if !self.minutes[usize::try_from(dt.minute()).ok()?] {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            return dt.to_zoned(tz).ok().map(|z| z.timestamp());
        }
        None
    }

    /// The latest scheduled time in `(after, now]`, and how many were missed before it.
    pub fn last_due(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut t = self.next_after(after)?;
        if t > now {
            return None;
        }
        // Skip ahead cheaply over long gaps: start from one minute before `now` if far behind.
        if now.as_second() - t.as_second() > 3600
            && let Some(recent) = self.previous_or_at(now)
        {
            return Some(recent);
        }
        while let Some(n) = self.next_after(t) {
            if n > now {
                break;
            }
            t = n;
        }
        Some(t)
    }

    fn previous_or_at(&self, now: Timestamp) -> Option<Timestamp> {
        // Walk back day by day to find a day with a match, then take its last match <= now.
        let mut probe = now.checked_sub(jiff::SignedDuration::from_hours(24)).ok()?;
        for _ in 0..(366 * 5) {
            if let Some(first) = self.next_after(probe)
                && first <= now
            {
                let mut t = first;
                while let Some(n) = self.next_after(t) {
                    if n > now {
                        break;
                    }
                    t = n;
                }
                return Some(t);
            }
            probe = probe
                .checked_sub(jiff::SignedDuration::from_hours(24))
                .ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_minute_and_steps() {
        let s = Schedule::parse("*/1 * * * *").unwrap();
        assert_eq!(
            s.next_after(ts("2024-01-01T10:00:30Z")),
            Some(ts("2024-01-01T10:01:00Z"))
        );
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            s.next_after(ts("2024-01-01T10:01:00Z")),
            Some(ts("2024-01-01T10:15:00Z"))
        );
    }

    #[test]
    fn names_ranges_and_macros() {
        let s = Schedule::parse("30 9 * * MON-FRI").unwrap();
        // 2024-01-06 is a Saturday: next run is Monday 09:30.
        assert_eq!(
            s.next_after(ts("2024-01-06T12:00:00Z")),
            Some(ts("2024-01-08T09:30:00Z"))
        );
        let s = Schedule::parse("@monthly").unwrap();
        assert_eq!(
            s.next_after(ts("2024-01-15T00:00:00Z")),
            Some(ts("2024-02-01T00:00:00Z"))
        );
        let s = Schedule::parse("0 0 29 FEB *").unwrap();
        assert_eq!(
            s.next_after(ts("2024-03-01T00:00:00Z")),
            Some(ts("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 13th, or any Friday.
        let s = Schedule::parse("0 0 13 * 5").unwrap();
        assert_eq!(
            s.next_after(ts("2024-01-01T00:00:00Z")),
            Some(ts("2024-01-05T00:00:00Z"))
        );
    }

    #[test]
    fn time_zones_move_the_schedule_with_daylight_saving() {
        let s = Schedule::parse("0 9 * * *")
            .unwrap()
            .in_time_zone("America/New_York")
            .unwrap();
        // 09:00 EST is 14:00 UTC in November, 09:00 EDT is 13:00 UTC in July.
        let nov = s.next_after(ts("2026-11-23T00:00:00Z")).unwrap();
        assert_eq!(nov, ts("2026-11-23T14:00:00Z"));
        assert_eq!(s.format(nov), "2026-11-23T09:00:00-05:00");
        assert_eq!(
            s.next_after(ts("2026-07-01T00:00:00Z")),
            Some(ts("2026-07-01T13:00:00Z"))
        );
        let prefixed = Schedule::parse("CRON_TZ=Asia/Tokyo 30 8 * * *").unwrap();
        assert_eq!(
            prefixed.next_after(ts("2026-11-23T00:00:00Z")),
            Some(ts("2026-11-23T23:30:00Z"))
        );
        assert!(
            Schedule::parse("0 9 * * *")
                .unwrap()
                .in_time_zone("Mars/Olympus")
                .is_err()
        );
        assert_eq!(
            Schedule::parse("* * * * *")
                .unwrap()
                .format(ts("2026-11-23T00:00:00Z")),
            "2026-11-23T00:00:00Z"
        );
    }

    #[test]
    fn rejects_bad_schedules() {
        assert!(Schedule::parse("* * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("*/0 * * * *").is_err());
    }

    #[test]
    fn last_due_finds_the_most_recent_missed_time() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            s.last_due(ts("2024-01-01T10:00:00Z"), ts("2024-01-01T10:12:00Z")),
            Some(ts("2024-01-01T10:10:00Z"))
        );
        assert_eq!(
            s.last_due(ts("2024-01-01T10:00:00Z"), ts("2024-01-01T10:04:00Z")),
            None
        );
        assert_eq!(
            s.last_due(ts("2024-01-01T10:00:00Z"), ts("2024-03-01T10:12:00Z")),
            Some(ts("2024-03-01T10:10:00Z"))
        );
    }
}
