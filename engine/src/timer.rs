//! BPMN timer definitions: `timeDate`, `timeDuration` and `timeCycle` (DESIGN §4).
//!
//! The texts are the ones Camunda Modeler writes: ISO 8601 date-times (with an offset or a zone),
//! ISO 8601 durations, ISO 8601 repeating intervals and Spring-style cron expressions. FEEL
//! expressions (`=...`) are evaluated by the caller first; this module only sees their result.
//!
//! Everything here is pure: instants are arguments and no clock is read, so the engine and its
//! simulator compute the same due dates.

use std::fmt;

use chrono::{DateTime, Days, FixedOffset, LocalResult, Months, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use serde::{Deserialize, Serialize};

const DURATION_FORM: &str = "expected an ISO 8601 duration such as P30D, PT3H, P2W, PT0.5S or P1Y2M10DT2H30M";
const DATE_TIME_FORM: &str = "expected an ISO 8601 date-time such as 2026-12-28T10:00:00+04:00, \
     2026-12-28T06:00:00Z or 2026-12-28T10:00:00@Europe/Astrakhan";
const CYCLE_FORM: &str = "expected an ISO 8601 repeating interval such as R5/PT10M, R/P1D or \
     R3/2026-01-01T09:00:00+04:00/P1D, or a cron expression such as 0 0 9 * * MON-FRI";

/// An ISO 8601 duration, kept by component rather than as a number of seconds, because `P1M`
/// and `P1D` are calendar amounts: a month is 28 to 31 days and a day in local time need not be
/// 24 hours. Only seconds may carry a fraction, held to millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IsoDuration {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
    pub minutes: u32,
    pub seconds: u32,
    pub millis: u32,
}

impl IsoDuration {
    /// Parses `PnYnMnWnDTnHnMnS`. Weeks may be combined with other components (as
    /// `java.time.Period` allows); letters are case-insensitive; the decimal sign of the seconds
    /// may be `.` or `,`. Negative durations are refused: a timer cannot fire in the past.
    pub fn parse(text: &str) -> Result<IsoDuration, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err(format!("empty duration: {DURATION_FORM}"));
        }
        if s.contains('-') {
            return Err(format!("negative duration '{s}' is not allowed: {DURATION_FORM}"));
        }
        let upper = s.to_ascii_uppercase();
        let Some(body) = upper.strip_prefix('P') else {
            return Err(format!("'{s}' is not a duration: it must start with P; {DURATION_FORM}"));
        };
        let (date_part, time_part) = match body.split_once('T') {
            Some((date, time)) => (date, Some(time)),
            None => (body, None),
        };
        if date_part.is_empty() && time_part.is_none() {
            return Err(format!("'{s}' has no components after P; {DURATION_FORM}"));
        }
        let mut duration = IsoDuration::default();
        parse_components(s, date_part, false, &mut duration)?;
        if let Some(time) = time_part {
            if time.is_empty() {
                return Err(format!("'{s}' has nothing after T: put hours, minutes or seconds there; {DURATION_FORM}"));
            }
            parse_components(s, time, true, &mut duration)?;
        }
        Ok(duration)
    }

    /// True when every component is zero (`PT0S`): such a timer is due at once.
    pub fn is_zero(&self) -> bool {
        *self == IsoDuration::default()
    }

    /// True when the duration has years, months, weeks or days, whose length depends on the
    /// calendar and the time zone, so it cannot be turned into a fixed number of seconds.
    pub fn has_calendar_part(&self) -> bool {
        self.years != 0 || self.months != 0 || self.weeks != 0 || self.days != 0
    }

    /// Adds the duration to `t` the way people read it in the zone of `t`: years and months
    /// move the local date and clamp to the end of a shorter month (31 Jan + P1M = 28/29 Feb),
    /// weeks and days move the local date keeping the wall-clock time (so P1D across a DST change
    /// is 23 or 25 hours), and then hours, minutes and seconds are added as elapsed time.
    /// `None` when the result does not fit in a `DateTime`.
    pub fn add_to<Tz: TimeZone>(&self, t: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        let days = u64::from(self.weeks) * 7 + u64::from(self.days);
        let base = if months == 0 && days == 0 {
            t
        } else {
            let local = t.naive_local();
            let date = local.date().checked_add_months(Months::new(months))?.checked_add_days(Days::new(days))?;
            resolve_local(&t.timezone(), date.and_time(local.time()))?
        };
        base.checked_add_signed(self.time_delta()?)
    }

    /// The time part (hours, minutes, seconds, millis) as elapsed time.
    fn time_delta(&self) -> Option<TimeDelta> {
        let seconds = i64::from(self.hours) * 3600 + i64::from(self.minutes) * 60 + i64::from(self.seconds);
        TimeDelta::try_milliseconds(seconds.checked_mul(1000)?.checked_add(i64::from(self.millis))?)
    }

    /// Every component multiplied by `k`: the k-th occurrence of a repeating interval is
    /// computed from its start, not by adding the interval k times, so that a monthly cycle
    /// starting on the 31st returns to the 31st after a short month.
    fn times(&self, k: u32) -> Option<IsoDuration> {
        Some(IsoDuration {
            years: self.years.checked_mul(k)?,
            months: self.months.checked_mul(k)?,
            weeks: self.weeks.checked_mul(k)?,
            days: self.days.checked_mul(k)?,
            hours: self.hours.checked_mul(k)?,
            minutes: self.minutes.checked_mul(k)?,
            seconds: self.seconds.checked_mul(k)?,
            millis: self.millis.checked_mul(k)?,
        })
    }

    /// A rough length in seconds (average month and year), used only to guess where to start
    /// searching for the next occurrence of a long-running cycle.
    fn approx_seconds(&self) -> f64 {
        const DAY: f64 = 86_400.0;
        f64::from(self.years) * 365.2425 * DAY
            + f64::from(self.months) * 30.436875 * DAY
            + f64::from(self.weeks) * 7.0 * DAY
            + f64::from(self.days) * DAY
            + f64::from(self.hours) * 3600.0
            + f64::from(self.minutes) * 60.0
            + f64::from(self.seconds)
            + f64::from(self.millis) / 1000.0
    }
}

/// Reads the components of one part of a duration (before or after `T`) into `out`.
fn parse_components(original: &str, part: &str, in_time: bool, out: &mut IsoDuration) -> Result<(), String> {
    let units: &[char] = if in_time { &['H', 'M', 'S'] } else { &['Y', 'M', 'W', 'D'] };
    let mut rest = part;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let Some(unit) = tail.chars().next() else {
            return Err(format!("'{original}': the number {number} has no unit letter after it; {DURATION_FORM}"));
        };
        if number.is_empty() {
            return Err(format!("'{original}': expected a number before '{unit}'; {DURATION_FORM}"));
        }
        let Some(position) = units.iter().position(|u| *u == unit) else {
            let hint = match (in_time, unit) {
                (false, 'H' | 'S') => "hours and seconds go after T (PT3H)".to_string(),
                (true, 'Y' | 'W' | 'D') => "years, weeks and days go before T (P1DT2H)".to_string(),
                _ => format!("'{unit}' is not a duration unit"),
            };
            return Err(format!("'{original}': {hint}; {DURATION_FORM}"));
        };
        if position < next_unit {
            return Err(format!(
                "'{original}': '{unit}' is repeated or out of order; components go in the order Y M W D T H M S"
            ));
        }
        next_unit = position + 1;
        let (whole, fraction) = match number.split_once(['.', ',']) {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (number, None),
        };
        let value = whole.parse::<u32>().map_err(|_| {
            if whole.is_empty() {
                format!("'{original}': expected digits before the decimal sign in {number}{unit}")
            } else {
                format!("'{original}': {whole} is too large")
            }
        })?;
        let millis = match fraction {
            None => 0,
            Some(_) if !(in_time && unit == 'S') => {
                return Err(format!("'{original}': only seconds may have a fraction (PT0.5S); {DURATION_FORM}"));
            }
            Some(fraction) => parse_millis(original, fraction)?,
        };
        match (in_time, unit) {
            (false, 'Y') => out.years = value,
            (false, 'M') => out.months = value,
            (false, 'W') => out.weeks = value,
            (false, _) => out.days = value,
            (true, 'H') => out.hours = value,
            (true, 'M') => out.minutes = value,
            (true, _) => {
                out.seconds = value;
                out.millis = millis;
            }
        }
        rest = &tail[unit.len_utf8()..];
    }
    Ok(())
}

/// The digits after the decimal sign of the seconds, as milliseconds. Finer precision is
/// refused rather than silently dropped.
fn parse_millis(original: &str, fraction: &str) -> Result<u32, String> {
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{original}': expected digits after the decimal sign of the seconds; {DURATION_FORM}"));
    }
    let (significant, finer) = fraction.split_at(fraction.len().min(3));
    if finer.bytes().any(|b| b != b'0') {
        return Err(format!("'{original}': fractions of a second finer than a millisecond are not supported"));
    }
    let scale = match significant.len() {
        1 => 100,
        2 => 10,
        _ => 1,
    };
    significant.parse::<u32>().map(|v| v * scale).map_err(|_| format!("'{original}': bad fraction of a second"))
}

impl fmt::Display for IsoDuration {
    /// The canonical form: components in the order Y M W D T H M S, zero components left out,
    /// the zero duration as `PT0S`. Parsing the output gives back an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("PT0S");
        }
        f.write_str("P")?;
        for (value, unit) in [(self.years, 'Y'), (self.months, 'M'), (self.weeks, 'W'), (self.days, 'D')] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        if self.hours != 0 || self.minutes != 0 || self.seconds != 0 || self.millis != 0 {
            f.write_str("T")?;
            if self.hours != 0 {
                write!(f, "{}H", self.hours)?;
            }
            if self.minutes != 0 {
                write!(f, "{}M", self.minutes)?;
            }
            if self.seconds != 0 || self.millis != 0 {
                let seconds = u64::from(self.seconds) + u64::from(self.millis / 1000);
                let millis = self.millis % 1000;
                if millis == 0 {
                    write!(f, "{seconds}S")?;
                } else {
                    let fraction = format!("{millis:03}");
                    write!(f, "{seconds}.{}S", fraction.trim_end_matches('0'))?;
                }
            }
        }
        Ok(())
    }
}

/// Turns a local wall-clock time into an instant of `tz`. An ambiguous time (clocks moved back)
/// takes the earlier instant; a time in a gap (clocks moved forward) is moved forward by the
/// length of the gap, as `java.time` does, so a daily timer at 02:30 still fires that day.
fn resolve_local<Tz: TimeZone>(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(earliest, _) => Some(earliest),
        LocalResult::None => {
            // The offset a day earlier is the one in force before the gap.
            let before = tz.offset_from_utc_datetime(&local.checked_sub_signed(TimeDelta::days(1))?).fix();
            let utc = local.checked_sub_signed(TimeDelta::seconds(before.local_minus_utc().into()))?;
            Some(tz.from_utc_datetime(&utc))
        }
    }
}

/// Parses a `timeDate`: an ISO 8601 / RFC 3339 date-time that says which instant it means,
/// either by an offset (`+04:00`, `Z`) or by an IANA zone in Camunda's forms
/// (`2026-12-28T10:00:00@Europe/Moscow`, `2026-12-28T10:00:00[Europe/Moscow]`). A local time
/// without either is refused: guessing the zone would move deadlines by hours.
pub fn parse_date_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("empty date-time: {DATE_TIME_FORM}"));
    }
    let (body, zone) = split_zone(s)?;
    let (local_text, offset) = split_offset(s, body)?;
    let local = parse_local(local_text).ok_or_else(|| format!("'{s}' is not a date-time: {DATE_TIME_FORM}"))?;
    match (offset, zone) {
        (Some(offset), None) => fixed(s, offset, local),
        (None, Some(zone)) => match zone.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.fixed_offset()),
            LocalResult::None => Err(format!("'{s}': {local} does not exist in {zone} (the clocks skip it)")),
        },
        (Some(offset), Some(zone)) => {
            let t = fixed(s, offset, local)?;
            let zone_offset = t.with_timezone(&zone).offset().fix();
            if zone_offset == offset {
                Ok(t)
            } else {
                Err(format!("'{s}': the offset {offset} does not match {zone}, which is at {zone_offset} then"))
            }
        }
        (None, None) => Err(format!(
            "'{s}' has no UTC offset or time zone, so it does not say which moment it means: \
             add an offset or a zone, e.g. {local_text}+04:00, or {local_text}@Europe/Astrakhan"
        )),
    }
}

/// `local` read at a fixed `offset`; fails only at the very ends of the representable range.
fn fixed(original: &str, offset: FixedOffset, local: NaiveDateTime) -> Result<DateTime<FixedOffset>, String> {
    offset.from_local_datetime(&local).single().ok_or_else(|| format!("'{original}' is out of range"))
}

/// Splits off a zone written as `[Zone/Name]` or `@Zone/Name`.
fn split_zone(s: &str) -> Result<(&str, Option<chrono_tz::Tz>), String> {
    let (body, name) = if let Some(inner) = s.strip_suffix(']') {
        match inner.rsplit_once('[') {
            Some((body, name)) => (body, name),
            None => return Err(format!("'{s}': a ']' without '[': {DATE_TIME_FORM}")),
        }
    } else if let Some((body, name)) = s.split_once('@') {
        (body, name)
    } else {
        return Ok((s, None));
    };
    let zone = name
        .trim()
        .parse::<chrono_tz::Tz>()
        .map_err(|_| format!("'{s}': unknown time zone '{name}': expected an IANA name such as Europe/Astrakhan"))?;
    Ok((body.trim(), Some(zone)))
}

/// Splits off a trailing `Z`, `±HH:MM`, `±HHMM` or `±HH` offset that follows the time.
fn split_offset<'a>(original: &str, body: &'a str) -> Result<(&'a str, Option<FixedOffset>), String> {
    if let Some(local) = body.strip_suffix(['Z', 'z']) {
        return Ok((local, Some(Utc.fix())));
    }
    // The date has '-' in it, so look for a sign only after the date and time separator.
    let Some(time_start) = body.find(['T', 't', ' ']) else {
        return Ok((body, None));
    };
    let Some(sign_at) = body[time_start..].rfind(['+', '-']).map(|i| i + time_start) else {
        return Ok((body, None));
    };
    let (local, offset_text) = body.split_at(sign_at);
    let digits: String = offset_text[1..].chars().filter(|c| *c != ':').collect();
    let bad = || format!("'{original}': bad UTC offset '{offset_text}': expected +HH:MM, e.g. +04:00");
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Err(bad());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i32 = if digits.len() == 4 { digits[2..].parse().map_err(|_| bad())? } else { 0 };
    if minutes >= 60 {
        return Err(bad());
    }
    let seconds = (hours * 3600 + minutes * 60) * if offset_text.starts_with('-') { -1 } else { 1 };
    let offset = FixedOffset::east_opt(seconds).ok_or_else(bad)?;
    Ok((local, Some(offset)))
}

/// A local date-time with seconds (and an optional fraction) or with minutes only.
fn parse_local(text: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
}

/// A `timeCycle`: when a recurring timer (a timer start event, a non-interrupting boundary
/// reminder) fires.
#[derive(Debug, Clone)]
pub enum Cycle {
    /// An ISO 8601 repeating interval. With a `start` the occurrences are `start`,
    /// `start + interval`, `start + 2 × interval`, … (`repetitions` of them, or without end);
    /// without one, each firing is one interval after the previous one.
    Repeat { repetitions: Option<u32>, start: Option<DateTime<FixedOffset>>, interval: IsoDuration },
    /// A cron expression, kept in the `source` form the model had, evaluated in the
    /// definition's time zone. `last_days`, when set, holds the days of month the `cron`
    /// crate cannot express (`L`, `L-n`): `schedule` then matches a superset of days and the
    /// occurrences are filtered.
    Cron { source: String, schedule: Box<cron::Schedule>, last_days: Option<Box<DaysOfMonth>> },
}

/// A day-of-month field with `L` (the last day) or `L-n` (n days before it) in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaysOfMonth {
    /// Days given by number, ranges or steps.
    days: Vec<u32>,
    /// `L` is 0, `L-3` is 3.
    from_end: Vec<u32>,
}

impl DaysOfMonth {
    fn matches(&self, date: chrono::NaiveDate) -> bool {
        use chrono::Datelike;
        let last = last_day_of_month(date);
        self.days.contains(&date.day()) || self.from_end.iter().any(|n| last.checked_sub(*n) == Some(date.day()))
    }
}

fn last_day_of_month(date: chrono::NaiveDate) -> u32 {
    use chrono::Datelike;
    let first = date.with_day(1).expect("day 1 exists");
    first.checked_add_months(Months::new(1)).and_then(|next| next.pred_opt()).map_or(31, |d| d.day())
}

/// How many missed occurrences of a late cycle are counted at most (a cycle of seconds left
/// for a year would otherwise take long to count).
pub const MISSED_COUNT_LIMIT: u32 = 100_000;

impl Cycle {
    /// The next firing strictly after `after`, or `None` when the cycle is exhausted.
    ///
    /// `fired_so_far` counts the firings already made, which bounds an `Rn/` cycle. For a
    /// repeating interval without a start, `after` is the anchor: the activation time before the
    /// first firing, then the due time of the previous firing (pass the due time, not the time
    /// it was processed, so the cycle does not drift). Calendar parts of the interval (`P1D`,
    /// `P1M`) and cron fields are read in `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, fired_so_far: u32, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        match self {
            Cycle::Repeat { repetitions, start, interval } => {
                if interval.is_zero() || repetitions.is_some_and(|r| fired_so_far >= r) {
                    return None;
                }
                match start {
                    None => interval.add_to(after.with_timezone(&tz)).map(|t| t.with_timezone(&Utc)),
                    Some(start) => next_occurrence(start.with_timezone(&tz), interval, *repetitions, after),
                }
            }
            Cycle::Cron { schedule, last_days, .. } => {
                let mut from = after.with_timezone(&tz);
                loop {
                    let next = schedule.after(&from).next()?;
                    match last_days {
                        Some(days) if !days.matches(next.date_naive()) => {
                            // Not one of the days: go on from the end of that day.
                            let end_of_day = next.date_naive().and_hms_opt(23, 59, 59).expect("valid time");
                            from = resolve_local(&tz, end_of_day).filter(|t| *t > next).unwrap_or(next);
                        }
                        _ => return Some(next.with_timezone(&Utc)),
                    }
                }
            }
        }
    }

    /// The next firing after the occurrence due at `due` fired at `now`, which may be long
    /// after it (the engine was down): the misfire policy of DESIGN §4. The cycle fires once for
    /// all the occurrences it missed and goes on with its first occurrence strictly after `now`;
    /// the occurrences in between are skipped and counted (up to [`MISSED_COUNT_LIMIT`]). They
    /// count as used up: an `Rn/` cycle does not make them up later.
    ///
    /// `fired_so_far` includes the firing at `due`. Returns the next firing (`None` when the
    /// cycle is exhausted) and how many occurrences were missed. When the firing is on time
    /// (the next occurrence is after `now`), this is [`Cycle::next_after`]`(due, …)` and 0.
    pub fn next_after_late(
        &self,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        fired_so_far: u32,
        tz: chrono_tz::Tz,
    ) -> (Option<DateTime<Utc>>, u32) {
        let on_time = self.next_after(due, fired_so_far, tz);
        if on_time.is_none_or(|next| next > now) {
            return (on_time, 0);
        }
        match self {
            Cycle::Repeat { repetitions, start: None, interval } => {
                // Occurrence k (k ≥ 1) is `due + k × interval`, firing number fired_so_far + k.
                let anchor = due.with_timezone(&tz);
                let Some(k) = first_index_after(anchor, interval, now) else { return (None, 0) };
                let missed = k.saturating_sub(1);
                match repetitions {
                    Some(r) if fired_so_far.saturating_add(k) > *r => {
                        (None, missed.min(r.saturating_sub(fired_so_far)))
                    }
                    _ => (occurrence(anchor, interval, k), missed),
                }
            }
            Cycle::Repeat { repetitions, start: Some(start), interval } => {
                let start = start.with_timezone(&tz);
                let (Some(after_due), Some(after_now)) =
                    (first_index_after(start, interval, due), first_index_after(start, interval, now))
                else {
                    return (None, 0);
                };
                let limit = repetitions.unwrap_or(u32::MAX);
                let missed = after_now.min(limit).saturating_sub(after_due);
                let next = if after_now >= limit { None } else { occurrence(start, interval, after_now) };
                (next, missed)
            }
            Cycle::Cron { .. } => {
                let mut missed = 0;
                let mut at = due;
                while missed < MISSED_COUNT_LIMIT {
                    match self.next_after(at, 0, tz) {
                        Some(next) if next <= now => {
                            missed += 1;
                            at = next;
                        }
                        _ => break,
                    }
                }
                (self.next_after(now.max(at), 0, tz), missed)
            }
        }
    }

    /// How many times the cycle fires in all: `Some(n)` for `Rn/…`, `None` for `R/…` and cron.
    pub fn repetitions(&self) -> Option<u32> {
        match self {
            Cycle::Repeat { repetitions, .. } => *repetitions,
            Cycle::Cron { .. } => None,
        }
    }
}

/// Occurrence `k` of a repeating interval: `start + k × interval`.
fn occurrence(start: DateTime<chrono_tz::Tz>, interval: &IsoDuration, k: u32) -> Option<DateTime<Utc>> {
    interval.times(k).and_then(|d| d.add_to(start)).map(|t| t.with_timezone(&Utc))
}

/// The smallest `k` with `start + k × interval` strictly after `after`.
fn first_index_after(start: DateTime<chrono_tz::Tz>, interval: &IsoDuration, after: DateTime<Utc>) -> Option<u32> {
    let elapsed = (after - start.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
    // Jump close to the answer, then step: a cycle may have started long ago.
    let mut k =
        if elapsed <= 0.0 { 0 } else { (elapsed / interval.approx_seconds()).floor().min(f64::from(u32::MAX)) as u32 };
    while k > 0 && occurrence(start, interval, k - 1)? > after {
        k -= 1;
    }
    while occurrence(start, interval, k)? <= after {
        k = k.checked_add(1)?;
    }
    Some(k)
}

/// The first occurrence `start + k × interval` (k < repetitions) that is strictly after `after`.
fn next_occurrence(
    start: DateTime<chrono_tz::Tz>,
    interval: &IsoDuration,
    repetitions: Option<u32>,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let k = first_index_after(start, interval, after)?;
    if repetitions.is_some_and(|r| k >= r) {
        return None;
    }
    occurrence(start, interval, k)
}

/// Parses a `timeCycle`: an ISO 8601 repeating interval (`R5/PT10M`, `R/P1D`,
/// `R3/2026-01-01T09:00:00+04:00/P1D`) or else a cron expression.
///
/// Cron follows Camunda 8 (Spring): six fields `second minute hour day-of-month month
/// day-of-week`. Classic five-field cron gets a `0` seconds field in front; a seventh field is a
/// year. Numeric days of the week are read the Spring and Unix way (0 or 7 = Sunday,
/// 1 = Monday) and rewritten as names, because the `cron` crate numbers them from Sunday = 1
/// and `1-5` would otherwise silently mean Sunday to Thursday.
pub fn parse_cycle(text: &str) -> Result<Cycle, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("empty timer cycle: {CYCLE_FORM}"));
    }
    if s.starts_with(['R', 'r']) && s.contains('/') { parse_repeat(s) } else { parse_cron(s) }
}

fn parse_repeat(s: &str) -> Result<Cycle, String> {
    let Some((head, rest)) = s.split_once('/') else {
        return Err(format!("'{s}': {CYCLE_FORM}"));
    };
    let count = &head[1..];
    let repetitions = if count.is_empty() {
        None
    } else {
        let n = count
            .parse::<u32>()
            .map_err(|_| format!("'{s}': the repetition count '{count}' is not a whole number; {CYCLE_FORM}"))?;
        if n == 0 {
            return Err(format!("'{s}': R0 never fires; use R<n> with n ≥ 1, or R/ to repeat without end"));
        }
        Some(n)
    };
    // A zone name has a '/' in it, so the interval is what follows the last '/'.
    let (start_text, interval_text) = match rest.rsplit_once('/') {
        Some((start, interval)) => (Some(start), interval),
        None => (None, rest),
    };
    let is_duration = |t: &str| t.trim_start().starts_with(['P', 'p']);
    if !is_duration(interval_text) || start_text.is_some_and(is_duration) {
        return Err(format!(
            "'{s}': only R<n>/<duration> and R<n>/<start>/<duration> are supported, not an end date; {CYCLE_FORM}"
        ));
    }
    let start = start_text.map(parse_date_time).transpose().map_err(|e| format!("'{s}': bad start: {e}"))?;
    let interval = IsoDuration::parse(interval_text).map_err(|e| format!("'{s}': bad interval: {e}"))?;
    if interval.is_zero() {
        return Err(format!("'{s}': the interval is zero, so the timer would fire endlessly at once"));
    }
    Ok(Cycle::Repeat { repetitions, start, interval })
}

fn parse_cron(s: &str) -> Result<Cycle, String> {
    let bad = |why: String| format!("'{s}' is not a valid cron expression: {why}");
    let fields: Vec<&str> = s.split_whitespace().collect();
    let mut last_days = None;
    let mut has_year = false;
    let normalized = match fields.len() {
        1 if fields[0].starts_with('@') => {
            let macro_name = fields[0].to_ascii_lowercase();
            if !["@yearly", "@monthly", "@weekly", "@daily", "@hourly"].contains(&macro_name.as_str()) {
                return Err(bad(format!("`{}` is not one of @yearly, @monthly, @weekly, @daily, @hourly", fields[0])));
            }
            macro_name
        }
        5..=7 => {
            let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_string()).collect();
            if fields.len() == 5 {
                fields.insert(0, "0".to_string());
            }
            check_field(&fields[0], &SECOND).map_err(bad)?;
            check_field(&fields[1], &MINUTE).map_err(bad)?;
            check_field(&fields[2], &HOUR).map_err(bad)?;
            let (day_of_month, days) = days_of_month(&fields[3]).map_err(bad)?;
            fields[3] = day_of_month;
            last_days = days;
            check_field(&fields[4], &MONTH).map_err(bad)?;
            fields[5] = days_of_week(&fields[5]).map_err(bad)?;
            if let Some(year) = fields.get(6) {
                check_field(year, &YEAR).map_err(bad)?;
                has_year = true;
            }
            fields.join(" ")
        }
        n => {
            return Err(format!(
                "'{s}' is neither a repeating interval nor a cron expression: cron needs 6 fields \
                 (second minute hour day-of-month month day-of-week, e.g. 0 0 9 * * MON-FRI), \
                 5 classic fields or 7 with a year, but this has {n}; {CYCLE_FORM}"
            ));
        }
    };
    // The checks above should leave nothing for the crate to refuse; if it does, keep its
    // message to one line.
    let schedule = normalized.parse::<cron::Schedule>().map_err(|e| {
        let text = e.to_string();
        bad(text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unreadable").to_string())
    })?;
    let cycle = Cycle::Cron { source: s.to_string(), schedule: Box::new(schedule), last_days };
    check_fires(s, &cycle, has_year)?;
    Ok(cycle)
}

/// How far ahead a cron expression must have an occurrence, or it is refused as never firing.
pub const CRON_HORIZON_YEARS: i32 = 5;

/// Refuses a cron expression that never fires, such as `0 0 9 31 2 *` (31 February). Parsing
/// reads no clock, so an expression without a year must fire within [`CRON_HORIZON_YEARS`]
/// of a fixed reference (1 January 2024); one with a year must fire at all. The runtime checks
/// the horizon again from the time the timer is opened.
fn check_fires(s: &str, cycle: &Cycle, has_year: bool) -> Result<(), String> {
    let reference = if has_year { utc_date(1970, 1, 1) } else { utc_date(2024, 1, 1) };
    let horizon = utc_date(2024 + CRON_HORIZON_YEARS, 1, 1);
    match cycle.next_after(reference, 0, chrono_tz::UTC) {
        Some(t) if has_year || t < horizon => Ok(()),
        _ if has_year => Err(format!("'{s}' never fires: no date matches it")),
        _ => Err(format!(
            "'{s}' never fires: it has no occurrence in {CRON_HORIZON_YEARS} years \
             (does the day of the month exist in the months given?)"
        )),
    }
}

fn utc_date(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 0, 0, 0).single().expect("a valid date")
}

/// One field of a cron expression: what it is called in messages, its range, and the names
/// it accepts instead of numbers (`names[0]` is `min`).
struct CronField {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    question_mark: bool,
}

const SECOND: CronField = CronField { what: "second", min: 0, max: 59, names: &[], question_mark: false };
const MINUTE: CronField = CronField { what: "minute", min: 0, max: 59, names: &[], question_mark: false };
const HOUR: CronField = CronField { what: "hour", min: 0, max: 23, names: &[], question_mark: false };
const DAY_OF_MONTH: CronField = CronField { what: "day of month", min: 1, max: 31, names: &[], question_mark: true };
const MONTH: CronField = CronField {
    what: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    question_mark: false,
};
/// Days of the week in Spring's numbering: 0 and 7 are Sunday, 1 is Monday.
const DAY_OF_WEEK: CronField = CronField {
    what: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    question_mark: true,
};
const YEAR: CronField = CronField { what: "year", min: 1970, max: 2100, names: &[], question_mark: false };

impl CronField {
    fn range_text(&self) -> String {
        match (self.names.first(), self.names.last()) {
            (Some(first), Some(last)) => format!("{}-{} or {first}-{last}", self.min, self.max),
            _ => format!("{}-{}", self.min, self.max),
        }
    }

    /// One value of the field: a number in range or a name.
    fn value(&self, text: &str) -> Result<u32, String> {
        if text.is_empty() {
            return Err(format!("a value is missing in the {} field", self.what));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u32>() {
                Ok(n) if (self.min..=self.max).contains(&n) => Ok(n),
                _ => Err(format!("{} {text} is out of range {}", self.what, self.range_text())),
            };
        }
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(self.min + i as u32);
        }
        Err(format!("`{text}` in the {} field is not a number in {}", self.what, self.range_text()))
    }

    /// The values one item (`*`, `n`, `a-b`, with an optional `/step`) stands for.
    fn expand(&self, item: &str) -> Result<Vec<u32>, String> {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = match step.parse::<u32>() {
                    Ok(0) => return Err(format!("the step in `{item}` ({}) must be at least 1", self.what)),
                    Ok(n) if n > self.max => {
                        return Err(format!("the step in `{item}` ({}) must be at most {}", self.what, self.max));
                    }
                    Ok(n) => n,
                    Err(_) => return Err(format!("the step in `{item}` ({}) is not a whole number", self.what)),
                };
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = match range {
            "*" => (self.min, self.max),
            "?" if self.question_mark => (self.min, self.max),
            "?" => return Err("`?` is allowed only in the day-of-month and day-of-week fields".to_string()),
            _ => match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (self.value(a)?, self.value(b)?);
                    if a > b {
                        return Err(format!("the {} range `{range}` runs backwards", self.what));
                    }
                    (a, b)
                }
                None => {
                    let a = self.value(range)?;
                    (a, if step.is_some() { self.max } else { a })
                }
            },
        };
        Ok((lo..=hi).step_by(step.unwrap_or(1) as usize).collect())
    }
}

/// Checks a plain field item by item.
fn check_field(field: &str, spec: &CronField) -> Result<(), String> {
    for item in field.split(',') {
        if item.is_empty() {
            return Err(format!("the {} field `{field}` has an empty item", spec.what));
        }
        spec.expand(item)?;
    }
    Ok(())
}

/// The day-of-month field, with `L` (last day of the month) and `L-n` (n days before it),
/// which Camunda accepts and the `cron` crate does not: they become the range of days they can
/// fall on, and the filter that picks the right one.
fn days_of_month(field: &str) -> Result<(String, Option<Box<DaysOfMonth>>), String> {
    let mut items = Vec::new();
    let mut days = Vec::new();
    let mut from_end = Vec::new();
    for item in field.split(',') {
        let upper = item.to_ascii_uppercase();
        if item.is_empty() {
            return Err(format!("the day of month field `{field}` has an empty item"));
        }
        if upper.contains('W') {
            return Err(format!("`{item}` (the nearest weekday) in the day of month field is not supported"));
        }
        if let Some(rest) = upper.strip_prefix('L') {
            let n = match rest {
                "" => 0,
                _ => match rest.strip_prefix('-').and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) if (1..=30).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "`{item}` in the day of month field: write L (the last day) or L-n with n from 1 to 30"
                        ));
                    }
                },
            };
            from_end.push(n);
            items.push(format!("{}-{}", 28u32.saturating_sub(n).max(1), 31 - n));
            continue;
        }
        days.extend(DAY_OF_MONTH.expand(item)?);
        items.push(item.to_string());
    }
    if from_end.is_empty() {
        return Ok((field.to_string(), None));
    }
    Ok((items.join(","), Some(Box::new(DaysOfMonth { days, from_end }))))
}

/// Checks the day-of-week field and rewrites it for the `cron` crate. Numbers are read the
/// Spring and Unix way (0 or 7 = Sunday, 1 = Monday) and written as names, because the crate
/// numbers days from Sunday = 1 and `1-5` would otherwise silently mean Sunday to Thursday; a
/// range ending on Sunday (`5-7`, `FRI-SUN`) is split in two, as Sunday comes first for it.
fn days_of_week(field: &str) -> Result<String, String> {
    let names = DAY_OF_WEEK.names;
    let mut items = Vec::new();
    for item in field.split(',') {
        if item.is_empty() {
            return Err(format!("the day of week field `{field}` has an empty item"));
        }
        let upper = item.to_ascii_uppercase();
        if upper.contains(['L', '#']) {
            return Err(format!(
                "`{item}` (a last or n-th weekday of the month) in the day of week field is not supported"
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            // Only the step is checked here; the range is read below.
            DAY_OF_WEEK.expand(&format!("*/{step}"))?;
        }
        let rewritten = match range {
            "*" | "?" => range.to_string(),
            _ => match range.split_once('-') {
                Some((from, to)) => {
                    let a = DAY_OF_WEEK.value(from)?;
                    // Sunday ends a range as day 7, after Saturday (`FRI-SUN`, `5-0`).
                    let b = match DAY_OF_WEEK.value(to)? {
                        0 => 7,
                        b => b,
                    };
                    match (a, b) {
                        (7, 7) => "SUN".to_string(),
                        (a, b) if a > b => {
                            return Err(format!("the day of week range `{range}` runs backwards"));
                        }
                        (0, 7) => "SUN-SAT".to_string(),
                        (a, 7) if step.is_none() => format!("{}-SAT,SUN", names[a as usize]),
                        (_, 7) => {
                            return Err(format!("write the stepped range `{item}` ending on Sunday as a list"));
                        }
                        (a, b) => format!("{}-{}", names[a as usize], names[b as usize]),
                    }
                }
                None => names[DAY_OF_WEEK.value(range)? as usize % 7].to_string(),
            },
        };
        items.push(match step {
            Some(step) => format!("{rewritten}/{step}"),
            None => rewritten,
        });
    }
    Ok(items.join(","))
}

/// Which of the three BPMN timer definitions a text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Date,
    Duration,
    Cycle,
}

/// A parsed BPMN timer definition.
#[derive(Debug, Clone)]
pub enum TimerSpec {
    /// `timeDate`: fires once at this instant.
    Date(DateTime<FixedOffset>),
    /// `timeDuration`: fires once, this long after the timer is opened.
    Duration(IsoDuration),
    /// `timeCycle`: fires repeatedly.
    Cycle(Cycle),
}

impl TimerSpec {
    /// Parses the text of a `timeDate`, `timeDuration` or `timeCycle` element.
    pub fn parse(kind: TimerKind, text: &str) -> Result<TimerSpec, String> {
        match kind {
            TimerKind::Date => parse_date_time(text).map(TimerSpec::Date),
            TimerKind::Duration => IsoDuration::parse(text).map(TimerSpec::Duration),
            TimerKind::Cycle => parse_cycle(text).map(TimerSpec::Cycle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    const ASTRAKHAN: Tz = chrono_tz::Europe::Astrakhan;

    fn d(text: &str) -> IsoDuration {
        IsoDuration::parse(text).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn local(tz: Tz, text: &str) -> DateTime<Tz> {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").unwrap();
        tz.from_local_datetime(&naive).single().unwrap()
    }

    #[test]
    fn parses_common_durations() {
        assert_eq!(d("P30D"), IsoDuration { days: 30, ..Default::default() });
        assert_eq!(d("PT3H"), IsoDuration { hours: 3, ..Default::default() });
        assert_eq!(d("P2W"), IsoDuration { weeks: 2, ..Default::default() });
        assert_eq!(
            d("P1Y2M10DT2H30M"),
            IsoDuration { years: 1, months: 2, days: 10, hours: 2, minutes: 30, ..Default::default() }
        );
        assert_eq!(d("PT1M"), IsoDuration { minutes: 1, ..Default::default() });
        assert_eq!(d("P1M"), IsoDuration { months: 1, ..Default::default() });
        assert_eq!(d(" p1dt12h "), IsoDuration { days: 1, hours: 12, ..Default::default() });
        assert_eq!(d("P1W2D"), IsoDuration { weeks: 1, days: 2, ..Default::default() });
    }

    #[test]
    fn parses_fractional_seconds_to_millis() {
        assert_eq!(d("PT0.5S"), IsoDuration { millis: 500, ..Default::default() });
        assert_eq!(d("PT1,25S"), IsoDuration { seconds: 1, millis: 250, ..Default::default() });
        assert_eq!(d("PT2.007S"), IsoDuration { seconds: 2, millis: 7, ..Default::default() });
        assert_eq!(d("PT2.500000S"), IsoDuration { seconds: 2, millis: 500, ..Default::default() });
        assert!(IsoDuration::parse("PT0.0001S").unwrap_err().contains("millisecond"));
    }

    #[test]
    fn rejects_bad_durations_with_the_expected_form() {
        for bad in [
            "",
            "P",
            "PT",
            "P1DT",
            "-P1D",
            "P-1D",
            "30D",
            "P1H",
            "PT1D",
            "P1.5D",
            "PT1.5H",
            "P1M1Y",
            "P1D1D",
            "P1",
            "PD",
            "garbage",
            "P99999999999D",
            "PT.5S",
            "PT1.S",
            "P1X",
        ] {
            let err = IsoDuration::parse(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(IsoDuration::parse("").unwrap_err().contains("P30D"));
        assert!(IsoDuration::parse("P").unwrap_err().contains("no components"));
        assert!(IsoDuration::parse("PT").unwrap_err().contains("nothing after T"));
        assert!(IsoDuration::parse("-P1D").unwrap_err().contains("negative"));
        assert!(IsoDuration::parse("P1H").unwrap_err().contains("after T"));
        assert!(IsoDuration::parse("PT1D").unwrap_err().contains("before T"));
        assert!(IsoDuration::parse("P1.5D").unwrap_err().contains("only seconds"));
        assert!(IsoDuration::parse("P1M1Y").unwrap_err().contains("order"));
        assert!(IsoDuration::parse("P99999999999D").unwrap_err().contains("too large"));
        assert!(IsoDuration::parse("garbage").unwrap_err().contains("must start with P"));
    }

    #[test]
    fn displays_canonical_form_and_round_trips() {
        for (input, canonical) in [
            ("P1Y2M10DT2H30M", "P1Y2M10DT2H30M"),
            ("PT0.5S", "PT0.5S"),
            ("PT1,250S", "PT1.25S"),
            ("PT0S", "PT0S"),
            ("P0D", "PT0S"),
            ("P2W", "P2W"),
            ("pt3h", "PT3H"),
            ("P1DT0H", "P1D"),
            ("PT2.007S", "PT2.007S"),
        ] {
            let parsed = d(input);
            assert_eq!(parsed.to_string(), canonical, "{input}");
            assert_eq!(d(canonical), parsed, "{input}");
        }
        assert_eq!(IsoDuration { seconds: 1, millis: 1500, ..Default::default() }.to_string(), "PT2.5S");
    }

    #[test]
    fn zero_and_calendar_part() {
        assert!(d("PT0S").is_zero());
        assert!(d("P0Y0M0DT0H0M0.000S").is_zero());
        assert!(!d("PT0.001S").is_zero());
        assert!(d("P1D").has_calendar_part());
        assert!(d("P1W").has_calendar_part());
        assert!(d("P1M").has_calendar_part());
        assert!(d("P1Y").has_calendar_part());
        assert!(!d("PT48H").has_calendar_part());
        assert!(!d("PT0S").has_calendar_part());
    }

    #[test]
    fn months_clamp_to_month_end() {
        let t = local(ASTRAKHAN, "2026-01-31T10:00:00");
        assert_eq!(d("P1M").add_to(t).unwrap(), local(ASTRAKHAN, "2026-02-28T10:00:00"));
        let leap = local(ASTRAKHAN, "2024-01-31T10:00:00");
        assert_eq!(d("P1M").add_to(leap).unwrap(), local(ASTRAKHAN, "2024-02-29T10:00:00"));
        let feb29 = local(ASTRAKHAN, "2024-02-29T10:00:00");
        assert_eq!(d("P1Y").add_to(feb29).unwrap(), local(ASTRAKHAN, "2025-02-28T10:00:00"));
        assert_eq!(d("P4Y").add_to(feb29).unwrap(), local(ASTRAKHAN, "2028-02-29T10:00:00"));
        // Months first, then days: 31 Jan + P1M1D = 28 Feb + 1 day.
        assert_eq!(d("P1M1D").add_to(t).unwrap(), local(ASTRAKHAN, "2026-03-01T10:00:00"));
        assert_eq!(
            d("P6M").add_to(local(ASTRAKHAN, "2026-08-31T09:00:00")).unwrap(),
            local(ASTRAKHAN, "2027-02-28T09:00:00")
        );
    }

    #[test]
    fn adds_in_astrakhan_time() {
        let t = local(ASTRAKHAN, "2026-12-28T10:00:00");
        assert_eq!(t.offset().fix(), FixedOffset::east_opt(4 * 3600).unwrap());
        assert_eq!(d("P3D").add_to(t).unwrap(), local(ASTRAKHAN, "2026-12-31T10:00:00"));
        assert_eq!(d("PT3H").add_to(t).unwrap(), local(ASTRAKHAN, "2026-12-28T13:00:00"));
        assert_eq!(d("P1DT15H").add_to(t).unwrap(), local(ASTRAKHAN, "2026-12-30T01:00:00"));
        assert_eq!(d("P2W").add_to(t).unwrap(), local(ASTRAKHAN, "2027-01-11T10:00:00"));
        assert_eq!(d("PT0.5S").add_to(t).unwrap(), t + TimeDelta::milliseconds(500));
        // The same instant seen in UTC: calendar days are counted in the zone given.
        let in_utc = t.with_timezone(&Utc);
        assert_eq!(d("P3D").add_to(in_utc).unwrap(), utc("2026-12-31T06:00:00Z"));
    }

    #[test]
    fn days_keep_wall_clock_time_across_dst_and_hours_do_not() {
        let berlin = chrono_tz::Europe::Berlin;
        let t = local(berlin, "2026-03-28T12:00:00");
        assert_eq!(d("P1D").add_to(t).unwrap(), local(berlin, "2026-03-29T12:00:00"));
        assert_eq!(d("PT24H").add_to(t).unwrap(), local(berlin, "2026-03-29T13:00:00"));
        // 02:30 does not exist on 29 March 2026 in Berlin: moved forward by the gap.
        let night = local(berlin, "2026-03-28T02:30:00");
        assert_eq!(d("P1D").add_to(night).unwrap(), local(berlin, "2026-03-29T03:30:00"));
    }

    #[test]
    fn add_to_overflow_is_none() {
        let t = local(ASTRAKHAN, "2026-12-28T10:00:00");
        assert!(IsoDuration { years: u32::MAX, ..Default::default() }.add_to(t).is_none());
        assert!(IsoDuration { days: u32::MAX, ..Default::default() }.add_to(t).is_none());
    }

    #[test]
    fn parses_date_times_with_offsets_and_zones() {
        let expected = utc("2026-12-28T06:00:00Z");
        assert_eq!(parse_date_time("2026-12-28T10:00:00+04:00").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T10:00:00+04:00").unwrap().offset().local_minus_utc(), 4 * 3600);
        assert_eq!(parse_date_time("2026-12-28T06:00:00Z").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T10:00:00+0400").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T10:00+04").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T09:00:00@Europe/Moscow").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T09:00:00@Europe/Moscow").unwrap().offset().local_minus_utc(), 3 * 3600);
        assert_eq!(parse_date_time("2026-12-28T09:00:00[Europe/Moscow]").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T10:00:00[Europe/Astrakhan]").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T10:00:00+04:00[Europe/Astrakhan]").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T02:00:00-04:00").unwrap(), expected);
        assert_eq!(parse_date_time("2026-12-28T06:00:00.250Z").unwrap(), expected + TimeDelta::milliseconds(250));
    }

    #[test]
    fn rejects_date_times_without_offset_or_with_bad_parts() {
        let err = parse_date_time("2026-12-28T10:00:00").unwrap_err();
        assert!(err.contains("no UTC offset or time zone"), "{err}");
        assert!(err.contains("2026-12-28T10:00:00+04:00"), "{err}");
        assert!(parse_date_time("2026-12-28").is_err());
        assert!(parse_date_time("").is_err());
        assert!(parse_date_time("tomorrow").is_err());
        assert!(parse_date_time("2026-13-28T10:00:00Z").is_err());
        assert!(parse_date_time("2026-12-28T10:00:00+4:00").is_err());
        assert!(parse_date_time("2026-12-28T10:00:00+04:75").is_err());
        assert!(parse_date_time("2026-12-28T10:00:00@Mars/Olympus").unwrap_err().contains("unknown time zone"));
        assert!(parse_date_time("2026-12-28T10:00:00+03:00[Europe/Astrakhan]").unwrap_err().contains("does not match"));
        assert!(parse_date_time("2026-03-29T02:30:00@Europe/Berlin").unwrap_err().contains("does not exist"));
    }

    #[test]
    fn parses_repeating_intervals() {
        let Cycle::Repeat { repetitions, start, interval } = parse_cycle("R5/PT10M").unwrap() else { panic!() };
        assert_eq!((repetitions, start, interval), (Some(5), None, d("PT10M")));
        let Cycle::Repeat { repetitions, start, interval } = parse_cycle("R/P1D").unwrap() else { panic!() };
        assert_eq!((repetitions, start, interval), (None, None, d("P1D")));
        let Cycle::Repeat { repetitions, start, interval } = parse_cycle("R3/2026-01-01T09:00:00+04:00/P1D").unwrap()
        else {
            panic!()
        };
        assert_eq!(repetitions, Some(3));
        assert_eq!(start, Some(parse_date_time("2026-01-01T09:00:00+04:00").unwrap()));
        assert_eq!(interval, d("P1D"));
        let Cycle::Repeat { start, .. } = parse_cycle("R/2026-01-01T09:00:00[Europe/Astrakhan]/P6M").unwrap() else {
            panic!()
        };
        assert_eq!(start.unwrap(), utc("2026-01-01T05:00:00Z"));
        assert_eq!(parse_cycle("R5/PT10M").unwrap().repetitions(), Some(5));
        assert_eq!(parse_cycle("R/PT10M").unwrap().repetitions(), None);
    }

    #[test]
    fn rejects_bad_repeating_intervals() {
        assert!(parse_cycle("R0/PT1M").unwrap_err().contains("R0"));
        assert!(parse_cycle("R5/PT0S").unwrap_err().contains("zero"));
        assert!(parse_cycle("Rx/PT1M").unwrap_err().contains("whole number"));
        assert!(parse_cycle("R-1/PT1M").is_err());
        assert!(parse_cycle("R3/PT1H/2026-01-01T09:00:00Z").unwrap_err().contains("end date"));
        assert!(parse_cycle("R3/2026-01-01T09:00:00Z/2026-01-02T09:00:00Z").is_err());
        assert!(parse_cycle("R3/2026-01-01T09:00:00/P1D").unwrap_err().contains("no UTC offset"));
        assert!(parse_cycle("R3/P1Q").is_err());
        assert!(parse_cycle("").unwrap_err().contains("R5/PT10M"));
    }

    #[test]
    fn parses_cron_in_spring_classic_and_year_forms() {
        let Cycle::Cron { source, .. } = parse_cycle("0 0 9 * * MON-FRI").unwrap() else { panic!() };
        assert_eq!(source, "0 0 9 * * MON-FRI");
        assert_eq!(parse_cycle("0 9 * * MON-FRI").unwrap().repetitions(), None);
        assert!(matches!(parse_cycle("0 0 9 1 1/3 ? 2027").unwrap(), Cycle::Cron { .. }));
        assert!(matches!(parse_cycle("@daily").unwrap(), Cycle::Cron { .. }));
    }

    #[test]
    fn rejects_bad_cron_with_one_line_messages_and_true_ranges() {
        let err = |expr: &str| parse_cycle(expr).unwrap_err();
        assert_eq!(
            err("0 0 9 * * MON-FRY"),
            "'0 0 9 * * MON-FRY' is not a valid cron expression: `FRY` in the day of week field is not a number \
             in 0-7 or SUN-SAT"
        );
        assert_eq!(err("0 0 24 * * *"), "'0 0 24 * * *' is not a valid cron expression: hour 24 is out of range 0-23");
        assert_eq!(
            err("0 0 9 1 13 *"),
            "'0 0 9 1 13 *' is not a valid cron expression: month 13 is out of range 1-12 or JAN-DEC"
        );
        assert_eq!(
            err("60 0 9 * * *"),
            "'60 0 9 * * *' is not a valid cron expression: second 60 is out of range 0-59"
        );
        assert_eq!(
            err("0 60 9 * * *"),
            "'0 60 9 * * *' is not a valid cron expression: minute 60 is out of range 0-59"
        );
        assert_eq!(
            err("0 0 9 32 * *"),
            "'0 0 9 32 * *' is not a valid cron expression: day of month 32 is out of range 1-31"
        );
        assert_eq!(
            err("0 0 9 0 * *"),
            "'0 0 9 0 * *' is not a valid cron expression: day of month 0 is out of range 1-31"
        );
        assert_eq!(
            err("0 0 9 * * 8"),
            "'0 0 9 * * 8' is not a valid cron expression: day of week 8 is out of range 0-7 or SUN-SAT"
        );
        assert_eq!(
            err("0 0 18-9 * * *"),
            "'0 0 18-9 * * *' is not a valid cron expression: the hour range `18-9` runs backwards"
        );
        assert_eq!(
            err("0 */0 * * * *"),
            "'0 */0 * * * *' is not a valid cron expression: the step in `*/0` (minute) must be at least 1"
        );
        assert_eq!(
            err("0 0 9 15W * *"),
            "'0 0 9 15W * *' is not a valid cron expression: `15W` (the nearest weekday) in the day of month field is not supported"
        );
        assert!(
            err("0 0 9 ? * FRI#3")
                .contains("`FRI#3` (a last or n-th weekday of the month) in the day of week field is not supported")
        );
        assert!(err("0 0 9 ? * 5L").contains("not supported"));
        assert!(err("0 0 9 L-31 * *").contains("L-n with n from 1 to 30"));
        assert!(err("0 0 9 * * * 1969").contains("year 1969 is out of range 1970-2100"));
        assert!(err("0 */75 * * * *").ends_with("the step in `*/75` (minute) must be at most 59"));
        assert!(err("0 0 9 * * */8").ends_with("the step in `*/8` (day of week) must be at most 7"));
        assert!(err("0 ? 9 * * *").contains("`?` is allowed only in the day-of-month and day-of-week fields"));
        assert!(err("@fortnightly").contains("is not one of @yearly"));
        assert!(err("* *").contains("6 fields"));
        assert!(parse_cycle("every day").is_err());
        for expr in ["0 0 24 * * *", "0 0 9 1 13 *", "0 0 9 * * MON-FRY", "0 0 9 31 2 *", "0 0 9 30 2 *"] {
            assert!(!err(expr).contains('\n'), "{expr}: {}", err(expr));
        }
    }

    #[test]
    fn cron_that_never_fires_is_refused() {
        assert_eq!(
            parse_cycle("0 0 9 31 2 *").unwrap_err(),
            "'0 0 9 31 2 *' never fires: it has no occurrence in 5 years (does the day of the month exist in the \
             months given?)"
        );
        assert!(parse_cycle("0 0 9 30 2 ?").unwrap_err().contains("never fires"));
        assert!(parse_cycle("0 0 9 31 4,6,9,11 *").unwrap_err().contains("never fires"));
        assert_eq!(
            parse_cycle("0 0 9 31 2 * 2027").unwrap_err(),
            "'0 0 9 31 2 * 2027' never fires: no date matches it"
        );
        // 29 February fires in leap years; 31 in a list with other days fires on those.
        assert!(parse_cycle("0 0 9 29 2 *").is_ok());
        assert!(parse_cycle("0 0 9 30,31 2,3 *").is_ok());
        assert!(parse_cycle("0 0 9 1 1 ? 2027").is_ok());
    }

    #[test]
    fn cron_last_day_of_month() {
        let cycle = parse_cycle("0 0 9 L * *").unwrap();
        let next = |after: &str| cycle.next_after(utc(after), 0, ASTRAKHAN).unwrap();
        assert_eq!(next("2027-01-15T00:00:00Z"), utc("2027-01-31T05:00:00Z"));
        assert_eq!(next("2027-01-31T05:00:00Z"), utc("2027-02-28T05:00:00Z"));
        assert_eq!(next("2028-02-01T00:00:00Z"), utc("2028-02-29T05:00:00Z"));
        assert_eq!(next("2027-04-01T00:00:00Z"), utc("2027-04-30T05:00:00Z"));
        // Three days before the end, and a list mixing days with L.
        let before_end = parse_cycle("0 0 9 L-3 * *").unwrap();
        assert_eq!(
            before_end.next_after(utc("2027-02-01T00:00:00Z"), 0, ASTRAKHAN).unwrap(),
            utc("2027-02-25T05:00:00Z")
        );
        let mid_and_end = parse_cycle("0 0 9 15,L * *").unwrap();
        let first = mid_and_end.next_after(utc("2027-06-01T00:00:00Z"), 0, ASTRAKHAN).unwrap();
        assert_eq!(first, utc("2027-06-15T05:00:00Z"));
        assert_eq!(mid_and_end.next_after(first, 1, ASTRAKHAN).unwrap(), utc("2027-06-30T05:00:00Z"));
        // The last working Friday style: the last day that is also a weekday.
        let quarterly = parse_cycle("0 0 9 L 3,6,9,12 *").unwrap();
        assert_eq!(
            quarterly.next_after(utc("2027-01-01T00:00:00Z"), 0, ASTRAKHAN).unwrap(),
            utc("2027-03-31T05:00:00Z")
        );
        assert!(parse_cycle("0 0 9 l * *").is_ok());
    }

    #[test]
    fn days_of_week_ranges_ending_on_sunday() {
        let after = utc("2026-12-25T10:00:00Z"); // Friday, 14:00 in Astrakhan
        let next = |expr: &str| parse_cycle(expr).unwrap().next_after(after, 0, ASTRAKHAN).unwrap();
        let saturday = utc("2026-12-26T05:00:00Z");
        assert_eq!(next("0 0 9 * * FRI-SUN"), saturday);
        assert_eq!(next("0 0 9 * * 6-0"), saturday);
        assert_eq!(next("0 0 9 * * SUN"), utc("2026-12-27T05:00:00Z"));
        assert_eq!(next("0 0 9 * * 0-7"), saturday);
        assert!(parse_cycle("0 0 9 * * TUE-MON").unwrap_err().contains("runs backwards"));
    }

    #[test]
    fn late_cycles_fire_once_and_skip_to_after_now() {
        let t = |s: &str| utc(s);
        // Hourly without a start: due 10:00, fired at 13:30 after downtime: 11:00, 12:00 and
        // 13:00 were missed; the next is 14:00, on the cycle's grid.
        let hourly = parse_cycle("R/PT1H").unwrap();
        assert_eq!(
            hourly.next_after_late(t("2026-12-28T10:00:00Z"), t("2026-12-28T13:30:00Z"), 1, ASTRAKHAN),
            (Some(t("2026-12-28T14:00:00Z")), 3)
        );
        // On time, or late by less than one interval: nothing missed, the next after the due time.
        assert_eq!(
            hourly.next_after_late(t("2026-12-28T10:00:00Z"), t("2026-12-28T10:59:00Z"), 1, ASTRAKHAN),
            (Some(t("2026-12-28T11:00:00Z")), 0)
        );
        // Missed occurrences use up an Rn cycle: R5, the first due 10:00 fired at 12:30: the
        // 2nd and 3rd were missed, the 4th is at 13:00.
        let five = parse_cycle("R5/PT1H").unwrap();
        assert_eq!(
            five.next_after_late(t("2026-12-28T10:00:00Z"), t("2026-12-28T12:30:00Z"), 1, ASTRAKHAN),
            (Some(t("2026-12-28T13:00:00Z")), 2)
        );
        assert_eq!(five.next_after_late(t("2026-12-28T10:00:00Z"), t("2026-12-29T10:00:00Z"), 1, ASTRAKHAN), (None, 4));
        // With a start: occurrences stay on the start's grid.
        let daily = parse_cycle("R/2026-12-01T09:00:00+04:00/P1D").unwrap();
        assert_eq!(
            daily.next_after_late(t("2026-12-10T05:00:00Z"), t("2026-12-14T06:00:00Z"), 10, ASTRAKHAN),
            (Some(t("2026-12-15T05:00:00Z")), 4)
        );
        let three = parse_cycle("R3/2026-12-01T09:00:00+04:00/P1D").unwrap();
        assert_eq!(
            three.next_after_late(t("2026-12-01T05:00:00Z"), t("2026-12-14T06:00:00Z"), 1, ASTRAKHAN),
            (None, 2)
        );
        // Cron: weekdays at 09:00; due Thursday 24.12, fired Monday 28.12 at 10:00 (Astrakhan):
        // Friday 25.12 and Monday 28.12 09:00 were missed; the next is Tuesday 29.12.
        let weekdays = parse_cycle("0 0 9 * * MON-FRI").unwrap();
        assert_eq!(
            weekdays.next_after_late(t("2026-12-24T05:00:00Z"), t("2026-12-28T06:00:00Z"), 1, ASTRAKHAN),
            (Some(t("2026-12-29T05:00:00Z")), 2)
        );
    }

    #[test]
    fn numeric_days_of_week_follow_spring() {
        let after = utc("2026-12-25T10:00:00Z"); // Friday, 14:00 in Astrakhan
        let next = |expr: &str| parse_cycle(expr).unwrap().next_after(after, 0, ASTRAKHAN).unwrap();
        let weekdays = next("0 0 9 * * MON-FRI");
        assert_eq!(weekdays, utc("2026-12-28T05:00:00Z"));
        assert_eq!(next("0 0 9 * * 1-5"), weekdays);
        assert_eq!(next("0 9 * * 1-5"), weekdays);
        let sunday = utc("2026-12-27T05:00:00Z");
        assert_eq!(next("0 0 9 * * 0"), sunday);
        assert_eq!(next("0 0 9 * * 7"), sunday);
        assert_eq!(next("0 0 9 * * 6-7"), utc("2026-12-26T05:00:00Z"));
        assert_eq!(next("0 0 9 * * 0,1"), sunday);
    }

    #[test]
    fn cron_fires_strictly_after_in_the_given_zone() {
        let cycle = parse_cycle("0 0 9 * * MON-FRI").unwrap();
        let monday_nine = utc("2026-12-28T05:00:00Z");
        assert_eq!(cycle.next_after(monday_nine, 7, ASTRAKHAN).unwrap(), utc("2026-12-29T05:00:00Z"));
        let yekaterinburg = chrono_tz::Asia::Yekaterinburg;
        assert_eq!(
            cycle.next_after(utc("2026-12-28T00:00:00Z"), 0, yekaterinburg).unwrap(),
            utc("2026-12-28T04:00:00Z")
        );
        // Quarterly report: 09:00 on the 1st of January, April, July and October.
        let quarterly = parse_cycle("0 0 9 1 1,4,7,10 *").unwrap();
        assert_eq!(
            quarterly.next_after(utc("2027-01-01T05:00:00Z"), 1, ASTRAKHAN).unwrap(),
            utc("2027-04-01T05:00:00Z")
        );
    }

    #[test]
    fn repeat_without_start_counts_from_after() {
        let cycle = parse_cycle("R3/PT10M").unwrap();
        let t0 = utc("2026-12-28T06:00:00Z");
        assert_eq!(cycle.next_after(t0, 0, ASTRAKHAN).unwrap(), utc("2026-12-28T06:10:00Z"));
        assert_eq!(cycle.next_after(utc("2026-12-28T06:10:00Z"), 1, ASTRAKHAN).unwrap(), utc("2026-12-28T06:20:00Z"));
        assert_eq!(cycle.next_after(utc("2026-12-28T06:20:00Z"), 2, ASTRAKHAN).unwrap(), utc("2026-12-28T06:30:00Z"));
        assert_eq!(cycle.next_after(utc("2026-12-28T06:30:00Z"), 3, ASTRAKHAN), None);
        let forever = parse_cycle("R/P1D").unwrap();
        assert_eq!(forever.next_after(t0, 1000, ASTRAKHAN).unwrap(), utc("2026-12-29T06:00:00Z"));
    }

    #[test]
    fn repeat_with_start_fires_at_start_then_every_interval() {
        let cycle = parse_cycle("R3/2026-01-01T09:00:00+04:00/P1D").unwrap();
        let before = utc("2025-12-31T00:00:00Z");
        assert_eq!(cycle.next_after(before, 0, ASTRAKHAN).unwrap(), utc("2026-01-01T05:00:00Z"));
        assert_eq!(cycle.next_after(utc("2026-01-01T05:00:00Z"), 1, ASTRAKHAN).unwrap(), utc("2026-01-02T05:00:00Z"));
        assert_eq!(cycle.next_after(utc("2026-01-02T12:00:00Z"), 2, ASTRAKHAN).unwrap(), utc("2026-01-03T05:00:00Z"));
        // Only three occurrences exist, however few were fired.
        assert_eq!(cycle.next_after(utc("2026-01-03T05:00:00Z"), 2, ASTRAKHAN), None);
        assert_eq!(cycle.next_after(before, 3, ASTRAKHAN), None);
    }

    #[test]
    fn monthly_repeat_is_anchored_at_its_start() {
        let cycle = parse_cycle("R/2026-01-31T09:00:00+04:00/P1M").unwrap();
        let feb = cycle.next_after(utc("2026-02-01T00:00:00Z"), 1, ASTRAKHAN).unwrap();
        assert_eq!(feb, utc("2026-02-28T05:00:00Z"));
        assert_eq!(cycle.next_after(feb, 2, ASTRAKHAN).unwrap(), utc("2026-03-31T05:00:00Z"));
        // Half-yearly registry actualization, years after the start.
        let half_yearly = parse_cycle("R/2024-01-15T10:00:00[Europe/Astrakhan]/P6M").unwrap();
        assert_eq!(
            half_yearly.next_after(utc("2027-03-01T00:00:00Z"), 6, ASTRAKHAN).unwrap(),
            utc("2027-07-15T06:00:00Z")
        );
        assert_eq!(
            half_yearly.next_after(utc("2027-07-15T06:00:00Z"), 7, ASTRAKHAN).unwrap(),
            utc("2028-01-15T06:00:00Z")
        );
        let seconds = parse_cycle("R/2020-01-01T00:00:00Z/PT1S").unwrap();
        assert_eq!(
            seconds.next_after(utc("2026-12-28T06:00:00.5Z"), 0, ASTRAKHAN).unwrap(),
            utc("2026-12-28T06:00:01Z")
        );
    }

    #[test]
    fn daily_repeat_keeps_local_time_in_its_zone() {
        let cycle = parse_cycle("R/2026-03-27T09:00:00+01:00/P1D").unwrap();
        let berlin = chrono_tz::Europe::Berlin;
        let next = cycle.next_after(utc("2026-03-28T10:00:00Z"), 0, berlin).unwrap();
        assert_eq!(next, local(berlin, "2026-03-29T09:00:00").with_timezone(&Utc));
        assert_eq!(next, utc("2026-03-29T07:00:00Z"));
    }

    #[test]
    fn timer_spec_parses_each_kind() {
        assert!(matches!(TimerSpec::parse(TimerKind::Date, "2026-12-28T10:00:00+04:00"), Ok(TimerSpec::Date(_))));
        assert!(matches!(TimerSpec::parse(TimerKind::Duration, "PT3H"), Ok(TimerSpec::Duration(_))));
        assert!(matches!(TimerSpec::parse(TimerKind::Cycle, "R/P1D"), Ok(TimerSpec::Cycle(Cycle::Repeat { .. }))));
        assert!(matches!(TimerSpec::parse(TimerKind::Cycle, "0 0 9 * * *"), Ok(TimerSpec::Cycle(Cycle::Cron { .. }))));
        assert!(TimerSpec::parse(TimerKind::Duration, "2026-12-28T10:00:00+04:00").is_err());
        assert!(TimerSpec::parse(TimerKind::Date, "PT3H").is_err());
    }

    #[test]
    fn duration_serializes_as_components() {
        let json = serde_json::to_string(&d("P1DT2H")).unwrap();
        assert_eq!(serde_json::from_str::<IsoDuration>(&json).unwrap(), d("P1DT2H"));
    }
}
