//! Opening-hours calendars for `hours` nodes: a weekly schedule, holiday
//! dates and one-off overrides, in an IANA time zone (jiff's tz database, so
//! wall-clock ranges stay right across DST changes).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Minutes since local midnight, `[start, end)`; `end` may be 1440 (24:00).
pub(crate) type Range = (u16, u16);

/// What a calendar says about one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Closed,
    Holiday,
}

#[derive(Debug, Clone)]
pub(crate) struct Calendar {
    pub(crate) name: String,
    tz: TimeZone,
    /// Indexed by `Weekday::to_monday_zero_offset`.
    weekly: [Vec<Range>; 7],
    holidays: HashSet<Date>,
    overrides: HashMap<Date, Vec<Range>>,
}

impl Calendar {
    pub(crate) fn new(name: &str, tz: TimeZone) -> Calendar {
        Calendar {
            name: name.to_string(),
            tz,
            weekly: Default::default(),
            holidays: HashSet::new(),
            overrides: HashMap::new(),
        }
    }

    pub(crate) fn set_day(&mut self, day: Weekday, ranges: Vec<Range>) {
        self.weekly[day.to_monday_zero_offset() as usize] = ranges;
    }

    pub(crate) fn add_holiday(&mut self, date: Date) {
        self.holidays.insert(date);
    }

    pub(crate) fn set_override(&mut self, date: Date, ranges: Vec<Range>) {
        self.overrides.insert(date, ranges);
    }

    /// Status at a wall-clock instant. An override for the local date beats a
    /// holiday, which beats the weekly schedule.
    pub(crate) fn status(&self, at: SystemTime) -> Status {
        let Ok(ts) = Timestamp::try_from(at) else {
            return Status::Closed;
        };
        let z: Zoned = ts.to_zoned(self.tz.clone());
        let date = z.date();
        let minute = z.hour() as u16 * 60 + z.minute() as u16;
        let inside = |ranges: &[Range]| ranges.iter().any(|(s, e)| *s <= minute && minute < *e);
        if let Some(r) = self.overrides.get(&date) {
            return if inside(r) {
                Status::Open
            } else {
                Status::Closed
            };
        }
        if self.holidays.contains(&date) {
            return Status::Holiday;
        }
        if inside(&self.weekly[z.weekday().to_monday_zero_offset() as usize]) {
            Status::Open
        } else {
            Status::Closed
        }
    }
}

/// `mon`, `mon-fri`, `sat,sun`, `daily` → the weekdays named.
pub(crate) fn parse_days(s: &str) -> Result<Vec<Weekday>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part == "daily" || part == "every day" {
            out.extend((0..7).map(|i| Weekday::Monday.wrapping_add(i)));
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a.trim())?, day(b.trim())?);
                let mut d = a;
                loop {
                    out.push(d);
                    if d == b {
                        break;
                    }
                    d = d.next();
                }
            }
            None => out.push(day(part)?),
        }
    }
    Ok(out)
}

fn day(s: &str) -> Result<Weekday, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "unknown day `{s}` (use mon, tue, ... sun, `mon-fri`, `daily`)"
            ));
        }
    })
}

/// `09:00-17:30` → minutes; `closed` → none. End may be `24:00`.
pub(crate) fn parse_range(s: &str) -> Result<Option<Range>, String> {
    let s = s.trim();
    if s == "closed" {
        return Ok(None);
    }
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected `HH:MM-HH:MM`, found `{s}`"))?;
    let (a, b) = (hm(a.trim())?, hm(b.trim())?);
    if a >= b {
        return Err(format!(
            "`{s}` ends before it starts; split a range that crosses midnight into two days"
        ));
    }
    Ok(Some((a, b)))
}

fn hm(s: &str) -> Result<u16, String> {
    let bad = || format!("bad time `{s}` (use HH:MM, 00:00 to 24:00)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

pub(crate) fn parse_date(s: &str) -> Result<Date, String> {
    s.trim()
        .parse::<Date>()
        .map_err(|_| format!("bad date `{s}` (use YYYY-MM-DD)"))
}

pub(crate) fn time_zone(s: &str) -> Result<TimeZone, String> {
    TimeZone::get(s.trim())
        .map_err(|_| format!("unknown time zone `{s}` (use an IANA name such as `Europe/Berlin`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        SystemTime::from(s.parse::<Timestamp>().unwrap())
    }

    fn office(tz: &str) -> Calendar {
        let mut c = Calendar::new("office", time_zone(tz).unwrap());
        for d in parse_days("mon-fri").unwrap() {
            c.set_day(d, vec![(9 * 60, 17 * 60)]);
        }
        c.set_day(Weekday::Sunday, vec![(9 * 60, 17 * 60)]);
        c.add_holiday(parse_date("2026-12-25").unwrap());
        c.set_override(parse_date("2026-12-24").unwrap(), vec![(9 * 60, 12 * 60)]);
        c
    }

    #[test]
    fn weekly_holiday_override() {
        let c = office("Europe/Berlin");
        // Thu 2026-12-24 is an override: 09:00-12:00 only (CET = UTC+1).
        assert_eq!(c.status(at("2026-12-24T10:00:00Z")), Status::Open);
        assert_eq!(c.status(at("2026-12-24T12:00:00Z")), Status::Closed);
        assert_eq!(c.status(at("2026-12-25T10:00:00Z")), Status::Holiday);
        assert_eq!(c.status(at("2026-12-28T07:59:00Z")), Status::Closed);
        assert_eq!(c.status(at("2026-12-28T08:00:00Z")), Status::Open);
        assert_eq!(c.status(at("2026-12-26T10:00:00Z")), Status::Closed); // Saturday
    }

    #[test]
    fn spring_forward_in_berlin() {
        // Sun 2026-03-29 02:00 CET -> 03:00 CEST. 09:30 local is 08:30 UTC
        // the day before and 07:30 UTC that day.
        let c = office("Europe/Berlin");
        assert_eq!(c.status(at("2026-03-28T07:30:00Z")), Status::Closed); // Saturday
        assert_eq!(c.status(at("2026-03-29T07:30:00Z")), Status::Open); // 09:30 CEST
        assert_eq!(c.status(at("2026-03-29T06:30:00Z")), Status::Closed); // 08:30 CEST
        assert_eq!(c.status(at("2026-03-29T14:59:00Z")), Status::Open); // 16:59 CEST
        assert_eq!(c.status(at("2026-03-29T15:00:00Z")), Status::Closed); // 17:00 CEST
        assert_eq!(c.status(at("2026-03-27T15:30:00Z")), Status::Open); // Fri 16:30 CET
    }

    #[test]
    fn fall_back_in_new_york() {
        // Sun 2026-11-01 02:00 EDT -> 01:00 EST.
        let c = office("America/New_York");
        assert_eq!(c.status(at("2026-10-31T13:30:00Z")), Status::Closed); // Sat
        assert_eq!(c.status(at("2026-11-01T13:30:00Z")), Status::Closed); // 08:30 EST
        assert_eq!(c.status(at("2026-11-01T14:00:00Z")), Status::Open); // 09:00 EST
        assert_eq!(c.status(at("2026-11-01T21:59:00Z")), Status::Open); // 16:59 EST
        assert_eq!(c.status(at("2026-11-01T22:00:00Z")), Status::Closed); // 17:00 EST
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse_days("sat,sun").unwrap(),
            [Weekday::Saturday, Weekday::Sunday]
        );
        assert_eq!(parse_days("fri-mon").unwrap().len(), 4);
        assert_eq!(parse_days("daily").unwrap().len(), 7);
        assert!(parse_days("mon-fry").is_err());
        assert_eq!(parse_range("09:00-24:00").unwrap(), Some((540, 1440)));
        assert_eq!(parse_range("closed").unwrap(), None);
        assert!(parse_range("17:00-09:00").is_err());
        assert!(parse_range("9-17").is_err());
        assert!(parse_range("09:60-10:00").is_err());
        assert!(parse_date("2026-02-30").is_err());
        assert!(time_zone("Mars/Olympus").is_err());
    }
}
