//! Working-day calendars (производственный календарь) and the legal rules for counting terms
//! in days and hours (DESIGN §4; Civil Code art. 190–194; Labour Code art. 95, 112).
//!
//! A calendar is data: `definitions/calendars/<name>.json` lists, per year, the non-working
//! weekdays, the worked weekend days and the shortened pre-holiday days, plus the office hours.
//! The adapters read the file and pass its text here; this module does no I/O and reads no
//! clock. A computation that needs a day outside the years the file covers fails with
//! [`CalendarError::OutOfRange`] instead of guessing, because a guessed holiday would move a
//! legal deadline.
//!
//! All dates and times are local to the zone of the `DateTime<Tz>` passed in: the zone of the
//! body whose deadline it is.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Weekday,
};
use chrono_tz::Tz;
use serde_json::Value;

/// Why a calendar could not be loaded or could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalendarError {
    /// The calendar file is malformed; the message names the calendar and the offending entry.
    #[error("{0}")]
    Format(String),
    /// The computation needs a day of a year the calendar does not cover.
    #[error(
        "calendar \"{calendar}\" covers only years {first_year}–{last_year}, but the computation needs {date}; \
         add the production calendar for {year} to definitions/calendars/{calendar}.json",
        year = .date.year()
    )]
    OutOfRange { calendar: String, date: NaiveDate, first_year: i32, last_year: i32 },
}

/// The office hours of a working day, in local time.
///
/// A working day runs from `start` to `end` with an unpaid lunch break from `lunch_start` to
/// `lunch_end` that is not working time. A shortened pre-holiday day (Labour Code art. 95) ends
/// `short_day_minus_minutes` earlier, so the shortening comes off the afternoon. A lunch break
/// with `lunch_start == lunch_end` means no break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub lunch_start: NaiveTime,
    pub lunch_end: NaiveTime,
    pub short_day_minus_minutes: u32,
}

impl Default for WorkingHours {
    /// 09:00–18:00 with lunch 13:00–14:00: the 8-hour day of the 40-hour week, 7 hours on a
    /// short day.
    fn default() -> Self {
        WorkingHours {
            start: hm(9, 0),
            end: hm(18, 0),
            lunch_start: hm(13, 0),
            lunch_end: hm(14, 0),
            short_day_minus_minutes: 60,
        }
    }
}

fn hm(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).expect("hours and minutes of the default working day are valid")
}

impl WorkingHours {
    /// Close of business: `end`, or earlier on a short day.
    fn close(&self, short: bool) -> NaiveTime {
        if short { self.end - TimeDelta::minutes(self.short_day_minus_minutes.into()) } else { self.end }
    }

    /// The working periods of a day, in order: before and after lunch.
    fn periods(&self, short: bool) -> [(NaiveTime, NaiveTime); 2] {
        [(self.start, self.lunch_start), (self.lunch_end, self.close(short))]
    }

    fn validate(&self) -> Result<(), String> {
        let WorkingHours { start, end, lunch_start, lunch_end, short_day_minus_minutes } = *self;
        if !(start <= lunch_start && lunch_start <= lunch_end && lunch_end <= end && start < end) {
            return Err(format!(
                "working_hours must satisfy start ≤ lunch_start ≤ lunch_end ≤ end, \
                 but they are {start}, {lunch_start}, {lunch_end}, {end}"
            ));
        }
        let afternoon = (end - lunch_end).num_minutes();
        if i64::from(short_day_minus_minutes) >= afternoon {
            return Err(format!(
                "short_day_minus_minutes is {short_day_minus_minutes}, but a short day is shortened from the \
                 afternoon, which is only {afternoon} minutes long"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayKind {
    Off,
    Full,
    Short,
}

/// A working-day calendar for a contiguous range of years.
#[derive(Debug, Clone)]
pub struct WorkCalendar {
    name: String,
    first_year: i32,
    last_year: i32,
    /// Monday–Friday days that are not worked.
    holidays: BTreeSet<NaiveDate>,
    /// Saturdays and Sundays that are worked.
    working_weekends: BTreeSet<NaiveDate>,
    /// Working days one `short_day_minus_minutes` shorter.
    short_days: BTreeSet<NaiveDate>,
    hours: WorkingHours,
}

impl WorkCalendar {
    /// Loads a calendar file. `name` is the name definitions use for it (the file stem); a
    /// `"name"` inside the file, if present, must agree. The file is checked as a whole: dates
    /// parse and sit under their own year, `holidays` are Monday–Friday and `working_weekends`
    /// Saturday–Sunday (as the file format defines them), short days are working days, and the
    /// years are contiguous, so a missing year cannot be mistaken for a year without holidays.
    pub fn from_json(name: &str, text: &str) -> Result<WorkCalendar, CalendarError> {
        parse_calendar(name, text).map_err(|message| CalendarError::Format(format!("calendar \"{name}\": {message}")))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first year the calendar covers.
    pub fn first_year(&self) -> i32 {
        self.first_year
    }

    /// The last year the calendar covers.
    pub fn last_year(&self) -> i32 {
        self.last_year
    }

    pub fn working_hours(&self) -> &WorkingHours {
        &self.hours
    }

    /// Whether `date` is a working day: a weekday that is not a holiday, or a worked weekend day.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        Ok(self.kind(date)? != DayKind::Off)
    }

    /// Whether `date` is a shortened pre-holiday working day.
    pub fn is_short_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        Ok(self.kind(date)? == DayKind::Short)
    }

    /// Working minutes of `date`: 0 on a day off, 480 on a full day and 420 on a short day with
    /// the default hours.
    pub fn working_minutes(&self, date: NaiveDate) -> Result<u32, CalendarError> {
        let minutes: i64 = self.periods(date)?.iter().map(|(from, to)| (*to - *from).num_minutes()).sum();
        Ok(u32::try_from(minutes).expect("validated working hours make a day of 0 to 1440 minutes"))
    }

    /// When work begins on `date`, or `None` on a day off.
    pub fn opening(&self, date: NaiveDate) -> Result<Option<NaiveTime>, CalendarError> {
        Ok(match self.kind(date)? {
            DayKind::Off => None,
            DayKind::Full | DayKind::Short => Some(self.hours.start),
        })
    }

    /// When work ends on `date` (earlier on a short day), or `None` on a day off.
    pub fn close_of_business(&self, date: NaiveDate) -> Result<Option<NaiveTime>, CalendarError> {
        Ok(match self.kind(date)? {
            DayKind::Off => None,
            DayKind::Full => Some(self.hours.close(false)),
            DayKind::Short => Some(self.hours.close(true)),
        })
    }

    /// The first working day strictly after `date`.
    pub fn next_working_day(&self, date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        self.working_day_on_or_after(self.step(date, 1)?)
    }

    /// `date` if it is a working day, otherwise the first working day after it.
    pub fn working_day_on_or_after(&self, date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        let mut day = date;
        while !self.is_working_day(day)? {
            day = self.step(day, 1)?;
        }
        Ok(day)
    }

    /// `date` if it is a working day, otherwise the last working day before it.
    pub fn previous_working_day_on_or_before(&self, date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        let mut day = date;
        while !self.is_working_day(day)? {
            day = self.step(day, -1)?;
        }
        Ok(day)
    }

    /// A term of `n` working days («в течение N рабочих дней») from the event at `start`.
    ///
    /// Counting starts on the day after the event (Civil Code art. 191) and counts only working
    /// days, so the deadline is the close of business of the n-th working day after the local
    /// date of `start`, whatever the time of day of the event. A document received on Tuesday
    /// 6 January 2026 (a holiday) with a 3-working-day term: day 1 is Monday 12 January, the
    /// deadline is Wednesday 14 January at 18:00. `n = 0` means "the same day": the close of
    /// business of the start date, or of the next working day if the event fell on a day off.
    pub fn add_working_days(&self, start: DateTime<Tz>, n: u32) -> Result<DateTime<Tz>, CalendarError> {
        let tz = start.timezone();
        let mut day = start.date_naive();
        if n == 0 {
            return self.on_or_next_working_day_close(day, tz);
        }
        for _ in 0..n {
            day = self.next_working_day(day)?;
        }
        self.close_at(tz, day)
    }

    /// A term of `n` calendar days («в течение N дней») from the event at `start`: the legal
    /// deadline.
    ///
    /// The day after the event is day 1 (art. 191), so the last day is the start date plus `n`;
    /// the term ends at the close of business of that day (art. 194), and if it is not a working
    /// day, at the close of business of the next working day (art. 193). 30 days from
    /// registration on 1 April 2026 end on 1 May, a holiday, so the deadline is Monday 4 May
    /// at 18:00.
    pub fn add_calendar_days(&self, start: DateTime<Tz>, n: u32) -> Result<DateTime<Tz>, CalendarError> {
        let last_day = self.step(start.date_naive(), i64::from(n))?;
        self.on_or_next_working_day_close(last_day, start.timezone())
    }

    /// The same count as [`WorkCalendar::add_calendar_days`], but a last day that is not a
    /// working day moves back to the preceding working day: the internal control date of office
    /// practice (делопроизводство), used for reminders and escalation so that work is done
    /// before the legal deadline. 30 days from 1 April 2026: Thursday 30 April (a short day) at
    /// 17:00.
    pub fn add_calendar_days_control(&self, start: DateTime<Tz>, n: u32) -> Result<DateTime<Tz>, CalendarError> {
        let last_day = self.step(start.date_naive(), i64::from(n))?;
        let day = self.previous_working_day_on_or_before(last_day)?;
        self.close_at(start.timezone(), day)
    }

    /// A term of `minutes` working minutes («в течение N рабочих часов») from `start`.
    ///
    /// Only time inside working hours of working days counts: not the lunch break, not days off,
    /// and a short day ends early. If `start` is outside working time, counting begins at the
    /// next opening. A term that uses up a period exactly ends at that period's end (60 minutes
    /// from 12:00 end at 13:00, not at 14:00 after lunch).
    pub fn add_working_hours(&self, start: DateTime<Tz>, minutes: u32) -> Result<DateTime<Tz>, CalendarError> {
        let tz = start.timezone();
        let local = start.naive_local();
        let mut remaining = TimeDelta::minutes(minutes.into());
        let mut day = local.date();
        let mut from = local.time();
        loop {
            for (open, close) in self.periods(day)? {
                if close <= from {
                    continue;
                }
                let begin = open.max(from);
                let available = close - begin;
                if remaining <= available {
                    return self.instant(tz, day.and_time(begin) + remaining, day);
                }
                remaining -= available;
            }
            day = self.step(day, 1)?;
            from = NaiveTime::MIN;
        }
    }

    /// Working minutes from `a` to `b` (negative when `b` is before `a`), whole minutes rounded
    /// toward zero: the "working time left" of an SLA.
    pub fn working_minutes_between(&self, a: DateTime<Tz>, b: DateTime<Tz>) -> Result<i64, CalendarError> {
        if b < a {
            return self.working_minutes_between(b, a).map(|minutes| -minutes);
        }
        let tz = a.timezone();
        let (from, to) = (a.naive_local(), b.with_timezone(&tz).naive_local());
        let mut total = TimeDelta::zero();
        let mut day = from.date();
        loop {
            for (open, close) in self.periods(day)? {
                let lo = day.and_time(open).max(from);
                let hi = day.and_time(close).min(to);
                if hi > lo {
                    total += hi - lo;
                }
            }
            if day >= to.date() {
                return Ok(total.num_minutes());
            }
            day = self.step(day, 1)?;
        }
    }

    /// The close of business of `date`, or of the next working day if `date` is a day off: a
    /// deadline fixed to a date, such as "by the 5th of the month after the quarter".
    pub fn on_or_next_working_day_close(&self, date: NaiveDate, tz: Tz) -> Result<DateTime<Tz>, CalendarError> {
        let day = self.working_day_on_or_after(date)?;
        self.close_at(tz, day)
    }

    fn out_of_range(&self, date: NaiveDate) -> CalendarError {
        CalendarError::OutOfRange {
            calendar: self.name.clone(),
            date,
            first_year: self.first_year,
            last_year: self.last_year,
        }
    }

    fn kind(&self, date: NaiveDate) -> Result<DayKind, CalendarError> {
        if !(self.first_year..=self.last_year).contains(&date.year()) {
            return Err(self.out_of_range(date));
        }
        let working = if self.holidays.contains(&date) {
            false
        } else {
            self.working_weekends.contains(&date) || !is_weekend(date)
        };
        Ok(match (working, self.short_days.contains(&date)) {
            (false, _) => DayKind::Off,
            (true, false) => DayKind::Full,
            (true, true) => DayKind::Short,
        })
    }

    /// The working periods of `date`; none on a day off.
    fn periods(&self, date: NaiveDate) -> Result<Vec<(NaiveTime, NaiveTime)>, CalendarError> {
        Ok(match self.kind(date)? {
            DayKind::Off => Vec::new(),
            DayKind::Full => self.hours.periods(false).to_vec(),
            DayKind::Short => self.hours.periods(true).to_vec(),
        })
    }

    /// `date` moved by `days`; a date beyond chrono's range is out of any calendar's range too.
    fn step(&self, date: NaiveDate, days: i64) -> Result<NaiveDate, CalendarError> {
        let moved = if days >= 0 {
            date.checked_add_days(Days::new(days.unsigned_abs()))
        } else {
            date.checked_sub_days(Days::new(days.unsigned_abs()))
        };
        moved.ok_or_else(|| self.out_of_range(if days >= 0 { NaiveDate::MAX } else { NaiveDate::MIN }))
    }

    /// The close of business of a working day `date` as an instant of `tz`.
    fn close_at(&self, tz: Tz, date: NaiveDate) -> Result<DateTime<Tz>, CalendarError> {
        let close = self.close_of_business(date)?.expect("deadlines are placed on working days only");
        self.instant(tz, date.and_time(close), date)
    }

    /// A local time of `tz` as an instant. Russian zones have no clock changes since 2014; for
    /// other zones an ambiguous time takes the earlier instant and a skipped one moves forward
    /// by the gap.
    fn instant(&self, tz: Tz, local: NaiveDateTime, date: NaiveDate) -> Result<DateTime<Tz>, CalendarError> {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t),
            LocalResult::None => {
                let before = local
                    .checked_sub_signed(TimeDelta::days(1))
                    .map(|earlier| tz.offset_from_utc_datetime(&earlier).fix());
                before
                    .and_then(|offset| local.checked_sub_signed(TimeDelta::seconds(offset.local_minus_utc().into())))
                    .map(|utc| tz.from_utc_datetime(&utc))
                    .ok_or_else(|| self.out_of_range(date))
            }
        }
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

fn weekday_name(date: NaiveDate) -> &'static str {
    match date.weekday() {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// The lists of one year, as in the file.
#[derive(Default)]
struct YearLists {
    holidays: BTreeSet<NaiveDate>,
    working_weekends: BTreeSet<NaiveDate>,
    short_days: BTreeSet<NaiveDate>,
}

fn parse_calendar(name: &str, text: &str) -> Result<WorkCalendar, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(root) = root else {
        return Err("the file must be a JSON object with one key per year, such as \"2026\"".to_string());
    };
    let mut hours = WorkingHours::default();
    let mut years: BTreeMap<i32, YearLists> = BTreeMap::new();
    for (key, value) in &root {
        match key.as_str() {
            "sources" => {}
            "name" => match value.as_str() {
                Some(own) if own == name => {}
                Some(own) => return Err(format!("the file calls itself \"{own}\" but is loaded as \"{name}\"")),
                None => return Err("\"name\" must be a string".to_string()),
            },
            "working_hours" => hours = parse_working_hours(value)?,
            _ => {
                let year = key.parse::<i32>().ok().filter(|y| (1900..=9999).contains(y)).ok_or_else(|| {
                    format!(
                        "unknown key \"{key}\": expected a year such as \"2027\", \"name\", \"working_hours\" \
                             or \"sources\""
                    )
                })?;
                years.insert(year, parse_year(year, value)?);
            }
        }
    }
    let (Some(&first_year), Some(&last_year)) = (years.keys().next(), years.keys().next_back()) else {
        return Err("no years: expected keys such as \"2026\" with holidays, working_weekends and short_days".into());
    };
    for (previous, next) in years.keys().zip(years.keys().skip(1)) {
        if next - previous != 1 {
            return Err(format!("years must be contiguous, but {previous} is followed by {next}"));
        }
    }
    let mut calendar = WorkCalendar {
        name: name.to_string(),
        first_year,
        last_year,
        holidays: BTreeSet::new(),
        working_weekends: BTreeSet::new(),
        short_days: BTreeSet::new(),
        hours,
    };
    for lists in years.into_values() {
        calendar.holidays.extend(lists.holidays);
        calendar.working_weekends.extend(lists.working_weekends);
        calendar.short_days.extend(lists.short_days);
    }
    Ok(calendar)
}

fn parse_year(year: i32, value: &Value) -> Result<YearLists, String> {
    let Value::Object(lists) = value else {
        return Err(format!("\"{year}\" must be an object with holidays, working_weekends and short_days"));
    };
    let mut out = YearLists::default();
    if !lists.contains_key("holidays") {
        return Err(format!("\"{year}\" has no \"holidays\" list"));
    }
    for (key, value) in lists {
        let target = match key.as_str() {
            "holidays" => &mut out.holidays,
            "working_weekends" => &mut out.working_weekends,
            "short_days" => &mut out.short_days,
            _ => {
                return Err(format!(
                    "\"{year}\" has an unknown key \"{key}\": expected holidays, working_weekends and short_days"
                ));
            }
        };
        *target = parse_dates(year, key, value)?;
    }
    for date in &out.holidays {
        if is_weekend(*date) {
            return Err(format!(
                "{year} holidays: {date} is a {}; list only Monday–Friday days off (weekends are off anyway)",
                weekday_name(*date)
            ));
        }
    }
    for date in &out.working_weekends {
        if !is_weekend(*date) {
            return Err(format!(
                "{year} working_weekends: {date} is a {}, not a Saturday or Sunday",
                weekday_name(*date)
            ));
        }
    }
    for date in &out.short_days {
        let working = out.working_weekends.contains(date) || !(is_weekend(*date) || out.holidays.contains(date));
        if !working {
            return Err(format!("{year} short_days: {date} is not a working day, so it cannot be shortened"));
        }
    }
    Ok(out)
}

fn parse_dates(year: i32, key: &str, value: &Value) -> Result<BTreeSet<NaiveDate>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{year} {key}: expected a list of dates such as \"{year}-01-01\""));
    };
    let mut dates = BTreeSet::new();
    for item in items {
        let text = item.as_str().ok_or_else(|| format!("{year} {key}: {item} is not a string date"))?;
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|e| format!("{year} {key}: \"{text}\" is not a date YYYY-MM-DD ({e})"))?;
        if date.year() != year {
            return Err(format!("{year} {key}: {date} belongs to another year"));
        }
        if !dates.insert(date) {
            return Err(format!("{year} {key}: {date} is listed twice"));
        }
    }
    Ok(dates)
}

fn parse_working_hours(value: &Value) -> Result<WorkingHours, String> {
    let Value::Object(fields) = value else {
        return Err("working_hours must be an object such as {\"start\": \"09:00\", \"end\": \"18:00\"}".to_string());
    };
    let mut hours = WorkingHours::default();
    for (key, value) in fields {
        match key.as_str() {
            "start" => hours.start = parse_time(key, value)?,
            "end" => hours.end = parse_time(key, value)?,
            "lunch_start" => hours.lunch_start = parse_time(key, value)?,
            "lunch_end" => hours.lunch_end = parse_time(key, value)?,
            "short_day_minus_minutes" => {
                hours.short_day_minus_minutes = value
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .ok_or_else(|| format!("working_hours.{key} must be a whole number of minutes, not {value}"))?;
            }
            _ => {
                return Err(format!(
                    "working_hours has an unknown key \"{key}\": expected start, end, lunch_start, lunch_end, \
                     short_day_minus_minutes"
                ));
            }
        }
    }
    hours.validate()?;
    Ok(hours)
}

fn parse_time(key: &str, value: &Value) -> Result<NaiveTime, String> {
    value
        .as_str()
        .and_then(|text| NaiveTime::parse_from_str(text, "%H:%M").ok())
        .ok_or_else(|| format!("working_hours.{key} must be a time \"HH:MM\", not {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASTRAKHAN: Tz = chrono_tz::Europe::Astrakhan;
    const RU: &str = include_str!("../../definitions/calendars/ru.json");

    fn ru() -> WorkCalendar {
        WorkCalendar::from_json("ru", RU).unwrap()
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// A local time in Astrakhan, "YYYY-MM-DD HH:MM[:SS]".
    fn at(text: &str) -> DateTime<Tz> {
        at_in(ASTRAKHAN, text)
    }

    fn at_in(tz: Tz, text: &str) -> DateTime<Tz> {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
            .unwrap();
        tz.from_local_datetime(&naive).single().unwrap()
    }

    fn days_of(year: i32) -> impl Iterator<Item = NaiveDate> {
        NaiveDate::from_ymd_opt(year, 1, 1).unwrap().iter_days().take_while(move |d| d.year() == year)
    }

    fn minimal(year_body: &str) -> String {
        format!(r#"{{"2026": {year_body}}}"#)
    }

    fn format_error(text: &str) -> String {
        match WorkCalendar::from_json("x", text) {
            Err(CalendarError::Format(message)) => message,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn loads_the_shipped_calendar() {
        let calendar = ru();
        assert_eq!(calendar.name(), "ru");
        assert_eq!((calendar.first_year(), calendar.last_year()), (2024, 2027));
        assert_eq!(*calendar.working_hours(), WorkingHours::default());
    }

    #[test]
    fn yearly_working_days_and_hour_norms_match_the_production_calendar() {
        let calendar = ru();
        for (year, working_days, norm_hours) in
            [(2024, 248, 1979), (2025, 247, 1972), (2026, 247, 1972), (2027, 247, 1972)]
        {
            let mut days = 0;
            let mut minutes = 0;
            for day in days_of(year) {
                if calendar.is_working_day(day).unwrap() {
                    days += 1;
                }
                minutes += calendar.working_minutes(day).unwrap();
            }
            assert_eq!(days, working_days, "{year}");
            assert_eq!(minutes, norm_hours * 60, "{year}");
            assert_eq!(days_of(year).count() - days, 118, "{year}: days off");
        }
    }

    #[test]
    fn yearly_counts_of_holidays_transfers_and_short_days() {
        let calendar = ru();
        for (year, weekdays_off, weekends_worked, short) in
            [(2024, 17, 3, 5), (2025, 15, 1, 4), (2026, 14, 0, 4), (2027, 15, 1, 4)]
        {
            let off = days_of(year).filter(|d| !is_weekend(*d) && !calendar.is_working_day(*d).unwrap()).count();
            let worked = days_of(year).filter(|d| is_weekend(*d) && calendar.is_working_day(*d).unwrap()).count();
            let shortened = days_of(year).filter(|d| calendar.is_short_day(*d).unwrap()).count();
            assert_eq!((off, worked, shortened), (weekdays_off, weekends_worked, short), "{year}");
        }
    }

    #[test]
    fn day_kinds_and_hours() {
        let calendar = ru();
        // The working Saturday of 2027 replaces a pre-holiday Friday, so it is short.
        let saturday = date("2027-02-20");
        assert!(calendar.is_working_day(saturday).unwrap());
        assert!(calendar.is_short_day(saturday).unwrap());
        assert_eq!(calendar.working_minutes(saturday).unwrap(), 420);
        assert_eq!(calendar.opening(saturday).unwrap(), Some(hm(9, 0)));
        assert_eq!(calendar.close_of_business(saturday).unwrap(), Some(hm(17, 0)));
        // 28.12.2024 was a full working Saturday.
        assert_eq!(calendar.working_minutes(date("2024-12-28")).unwrap(), 480);
        assert_eq!(calendar.close_of_business(date("2024-12-28")).unwrap(), Some(hm(18, 0)));
        assert!(calendar.is_short_day(date("2024-11-02")).unwrap());
        // Days off moved by decree or automatically.
        for off in ["2025-05-08", "2025-06-13", "2026-03-09", "2026-05-11", "2027-06-14", "2027-11-05", "2026-01-10"] {
            assert!(!calendar.is_working_day(date(off)).unwrap(), "{off}");
            assert_eq!(calendar.working_minutes(date(off)).unwrap(), 0, "{off}");
            assert_eq!(calendar.opening(date(off)).unwrap(), None, "{off}");
            assert_eq!(calendar.close_of_business(date(off)).unwrap(), None, "{off}");
        }
        assert!(calendar.is_working_day(date("2026-01-12")).unwrap());
        assert_eq!(calendar.working_minutes(date("2026-01-12")).unwrap(), 480);
    }

    #[test]
    fn stepping_between_working_days() {
        let calendar = ru();
        assert_eq!(calendar.next_working_day(date("2025-12-30")).unwrap(), date("2026-01-12"));
        assert_eq!(calendar.next_working_day(date("2026-01-12")).unwrap(), date("2026-01-13"));
        assert_eq!(calendar.next_working_day(date("2027-02-19")).unwrap(), date("2027-02-20"));
        assert_eq!(calendar.working_day_on_or_after(date("2026-01-12")).unwrap(), date("2026-01-12"));
        assert_eq!(calendar.working_day_on_or_after(date("2026-05-01")).unwrap(), date("2026-05-04"));
        assert_eq!(calendar.previous_working_day_on_or_before(date("2026-01-11")).unwrap(), date("2025-12-30"));
        assert_eq!(calendar.previous_working_day_on_or_before(date("2026-05-04")).unwrap(), date("2026-05-04"));
    }

    #[test]
    fn working_days_after_new_year_2026() {
        let calendar = ru();
        // Received on Tuesday 6 January 2026, a holiday: day 1 is Monday 12 January.
        assert_eq!(calendar.add_working_days(at("2026-01-06 10:00"), 1).unwrap(), at("2026-01-12 18:00"));
        assert_eq!(calendar.add_working_days(at("2026-01-06 10:00"), 3).unwrap(), at("2026-01-14 18:00"));
        // Received on the last working day of 2025.
        assert_eq!(calendar.add_working_days(at("2025-12-30 17:59"), 1).unwrap(), at("2026-01-12 18:00"));
    }

    #[test]
    fn working_days_across_new_year_2025_and_2027() {
        let calendar = ru();
        // The full working Saturday 28.12.2024 counts; 30.12.2024–08.01.2025 do not.
        assert_eq!(calendar.add_working_days(at("2024-12-27 15:00"), 1).unwrap(), at("2024-12-28 18:00"));
        assert_eq!(calendar.add_working_days(at("2024-12-27 15:00"), 3).unwrap(), at("2025-01-10 18:00"));
        assert_eq!(calendar.add_working_days(at("2026-12-30 11:00"), 1).unwrap(), at("2027-01-11 18:00"));
    }

    #[test]
    fn working_days_around_may_holidays() {
        let calendar = ru();
        assert_eq!(calendar.add_working_days(at("2026-04-30 12:00"), 1).unwrap(), at("2026-05-04 18:00"));
        assert_eq!(calendar.add_working_days(at("2026-04-30 12:00"), 4).unwrap(), at("2026-05-07 18:00"));
        // 8 May 2026 is a short pre-holiday Friday.
        assert_eq!(calendar.add_working_days(at("2026-04-30 12:00"), 5).unwrap(), at("2026-05-08 17:00"));
        assert_eq!(calendar.add_working_days(at("2026-04-30 12:00"), 6).unwrap(), at("2026-05-12 18:00"));
        // 30 April 2025 is short (day 1); 1, 2, 8 and 9 May 2025 are off, so day 5 is 12 May.
        assert_eq!(calendar.add_working_days(at("2025-04-29 09:00"), 1).unwrap(), at("2025-04-30 17:00"));
        assert_eq!(calendar.add_working_days(at("2025-04-29 09:00"), 2).unwrap(), at("2025-05-05 18:00"));
        assert_eq!(calendar.add_working_days(at("2025-04-29 09:00"), 5).unwrap(), at("2025-05-12 18:00"));
    }

    #[test]
    fn working_days_over_the_working_saturday_of_2027() {
        let calendar = ru();
        assert_eq!(calendar.add_working_days(at("2027-02-19 10:00"), 1).unwrap(), at("2027-02-20 17:00"));
        assert_eq!(calendar.add_working_days(at("2027-02-19 10:00"), 2).unwrap(), at("2027-02-24 18:00"));
    }

    // The legal terms of DESIGN §4 across the New Year and May holidays, the transferred
    // working Saturdays and the shortened pre-holiday days of 2024–2027 (issue 3). Every expected
    // date was counted by hand from the decrees listed in definitions/calendars/ru.json.

    #[test]
    fn ten_working_days_across_holidays_saturdays_and_short_days() {
        let calendar = ru();
        let ten = |start: &str| calendar.add_working_days(at(start), 10).unwrap();
        let one = |start: &str| calendar.add_working_days(at(start), 1).unwrap();
        // New Year 2025: day 1 is the full working Saturday 28.12.2024, day 2 is 09.01.2025.
        assert_eq!(one("2024-12-27 15:00"), at("2024-12-28 18:00"));
        assert_eq!(ten("2024-12-27 15:00"), at("2025-01-21 18:00"));
        // New Year 2026: 31.12.2025 and 01.01–11.01.2026 are off.
        assert_eq!(ten("2025-12-30 11:00"), at("2026-01-23 18:00"));
        // New Year 2027: 29.12 and 30.12.2026 count, then 11.01.2027.
        assert_eq!(ten("2026-12-28 10:00"), at("2027-01-20 18:00"));
        // May 2025: 30.04 (short) counts; 1, 2, 8, 9 May are off.
        assert_eq!(one("2025-04-29 09:00"), at("2025-04-30 17:00"));
        assert_eq!(ten("2025-04-29 09:00"), at("2025-05-19 18:00"));
        // May 2026: 1 May and 11 May (for Saturday 9 May) are off; 8 May is short.
        assert_eq!(ten("2026-04-30 12:00"), at("2026-05-18 18:00"));
        // May 2027: 3 May (for Saturday 1 May) and 10 May (for Sunday 9 May) are off.
        assert_eq!(one("2027-04-29 16:00"), at("2027-04-30 17:00"));
        assert_eq!(ten("2027-04-29 16:00"), at("2027-05-17 18:00"));
        // Transferred working Saturdays: 27.04.2024 (full), 02.11.2024 (short), 01.11.2025
        // (short), 20.02.2027 (short).
        assert_eq!(one("2024-04-26 10:00"), at("2024-04-27 18:00"));
        assert_eq!(ten("2024-04-26 10:00"), at("2024-05-16 18:00"));
        assert_eq!(one("2024-11-01 10:00"), at("2024-11-02 17:00"));
        assert_eq!(ten("2024-11-01 10:00"), at("2024-11-15 18:00"));
        assert_eq!(one("2025-10-31 14:00"), at("2025-11-01 17:00"));
        assert_eq!(ten("2025-10-31 14:00"), at("2025-11-17 18:00"));
        assert_eq!(one("2027-02-19 17:30"), at("2027-02-20 17:00"));
        assert_eq!(ten("2027-02-19 17:30"), at("2027-03-09 18:00"));
        // Terms ending on shortened pre-holiday days close at 17:00.
        assert_eq!(one("2024-02-21 10:00"), at("2024-02-22 17:00"));
        assert_eq!(ten("2024-02-21 10:00"), at("2024-03-07 17:00"));
        assert_eq!(ten("2027-04-16 11:00"), at("2027-04-30 17:00"));
        // An event on a day off: Saturday 9 May 2026, and Monday 11 May is off too.
        assert_eq!(ten("2026-05-09 12:00"), at("2026-05-25 18:00"));
    }

    #[test]
    fn thirty_calendar_days_across_holidays_saturdays_and_short_days() {
        let calendar = ru();
        let thirty = |start: &str| calendar.add_calendar_days(at(start), 30).unwrap();
        // New Year: the 30th day is 1 January, the next working day is after the holidays.
        assert_eq!(thirty("2024-12-02 10:00"), at("2025-01-09 18:00"));
        assert_eq!(thirty("2026-12-02 10:00"), at("2027-01-11 18:00"));
        // May: 01.05.2027 is a Saturday and Monday 3 May is off.
        assert_eq!(thirty("2027-04-01 10:00"), at("2027-05-04 18:00"));
        // A weekend followed by a holiday moved from Sunday 8 March 2026.
        assert_eq!(thirty("2026-02-05 10:00"), at("2026-03-10 18:00"));
        // A last day that is a working Saturday or a short day is kept, closing at 17:00.
        assert_eq!(thirty("2025-10-02 10:00"), at("2025-11-01 17:00"));
        assert_eq!(thirty("2025-03-31 10:00"), at("2025-04-30 17:00"));
        assert_eq!(thirty("2024-11-28 10:00"), at("2024-12-28 18:00"));
        // A plain working day.
        assert_eq!(thirty("2026-03-02 10:00"), at("2026-04-01 18:00"));
    }

    #[test]
    fn seven_calendar_days_across_holidays_saturdays_and_short_days() {
        let calendar = ru();
        let seven = |start: &str| calendar.add_calendar_days(at(start), 7).unwrap();
        // National Unity Day 04.11.2026; 03.11 (short) is only the office control date.
        assert_eq!(seven("2026-10-28 10:00"), at("2026-11-05 18:00"));
        assert_eq!(calendar.add_calendar_days_control(at("2026-10-28 10:00"), 7).unwrap(), at("2026-11-03 17:00"));
        // 8 March 2026 is a Sunday, so Monday 9 March is off.
        assert_eq!(seven("2026-03-02 10:00"), at("2026-03-10 18:00"));
        // New Year 2026 and the May holidays of 2025.
        assert_eq!(seven("2025-12-29 10:00"), at("2026-01-12 18:00"));
        assert_eq!(seven("2025-04-26 10:00"), at("2025-05-05 18:00"));
        // Working Saturdays: 27.04.2024 is full, 20.02.2027 is short.
        assert_eq!(seven("2024-04-20 10:00"), at("2024-04-27 18:00"));
        assert_eq!(seven("2027-02-13 10:00"), at("2027-02-20 17:00"));
    }

    #[test]
    fn three_clock_hours_ignore_the_calendar() {
        // ЦУР: «в течение трёх часов» are clock hours (DESIGN §4): no working day, no close of
        // business, no holiday stops them.
        let three = crate::timer::IsoDuration::parse("PT3H").unwrap();
        let plus_three = |start: &str| three.add_to(at(start)).unwrap();
        let calendar = ru();
        assert_eq!(plus_three("2026-12-25 22:30"), at("2026-12-26 01:30"));
        assert!(!calendar.is_working_day(date("2026-12-26")).unwrap());
        assert_eq!(plus_three("2026-12-31 23:00"), at("2027-01-01 02:00"));
        assert!(!calendar.is_working_day(date("2027-01-01")).unwrap());
        // Past the 17:00 close of a short day, and on a working Saturday.
        assert_eq!(plus_three("2026-04-30 16:30"), at("2026-04-30 19:30"));
        assert_eq!(plus_three("2027-02-20 16:00"), at("2027-02-20 19:00"));
        // Working hours, by contrast, stop at 17:00 on the short day and resume after the
        // May holidays.
        assert_eq!(calendar.add_working_hours(at("2026-04-30 16:30"), 180).unwrap(), at("2026-05-04 11:30"));
    }

    #[test]
    fn by_the_fifth_of_the_next_month_across_holidays() {
        let calendar = ru();
        let fifth = |date_text: &str| calendar.on_or_next_working_day_close(date(date_text), ASTRAKHAN).unwrap();
        // New Year: 05.01.2025 (Sunday), 05.01.2026 and 05.01.2027 (holidays).
        assert_eq!(fifth("2025-01-05"), at("2025-01-09 18:00"));
        assert_eq!(fifth("2026-01-05"), at("2026-01-12 18:00"));
        assert_eq!(fifth("2027-01-05"), at("2027-01-11 18:00"));
        // May: Sunday 05.05.2024 (Monday 6 May works), Wednesday 05.05.2027 works.
        assert_eq!(fifth("2024-05-05"), at("2024-05-06 18:00"));
        assert_eq!(fifth("2027-05-05"), at("2027-05-05 18:00"));
        // 05.11.2027 is a day off moved from Saturday 2 January.
        assert_eq!(fifth("2027-11-05"), at("2027-11-08 18:00"));
        // Weekends.
        assert_eq!(fifth("2026-04-05"), at("2026-04-06 18:00"));
        assert_eq!(fifth("2026-09-05"), at("2026-09-07 18:00"));
        assert_eq!(fifth("2026-06-05"), at("2026-06-05 18:00"));
        // Past the calendar: refused, not guessed.
        assert!(matches!(
            calendar.on_or_next_working_day_close(date("2028-01-05"), ASTRAKHAN),
            Err(CalendarError::OutOfRange { .. })
        ));
    }

    #[test]
    fn working_days_ignore_the_time_of_the_event() {
        let calendar = ru();
        // Registry change request: 10 working days; 23 February 2026 is a holiday.
        assert_eq!(calendar.add_working_days(at("2026-02-16 08:00"), 10).unwrap(), at("2026-03-03 18:00"));
        assert_eq!(calendar.add_working_days(at("2026-02-16 23:59"), 10).unwrap(), at("2026-03-03 18:00"));
        // An event on a day off: day 1 is the next working day.
        assert_eq!(calendar.add_working_days(at("2026-01-10 12:00"), 1).unwrap(), at("2026-01-12 18:00"));
        // n = 0: the same day, or the next working day.
        assert_eq!(calendar.add_working_days(at("2026-01-13 10:00"), 0).unwrap(), at("2026-01-13 18:00"));
        assert_eq!(calendar.add_working_days(at("2026-01-10 10:00"), 0).unwrap(), at("2026-01-12 18:00"));
    }

    #[test]
    fn working_days_use_the_local_date_of_the_zone() {
        let calendar = ru();
        let instant = DateTime::parse_from_rfc3339("2026-12-28T20:30:00Z").unwrap();
        // Tuesday 00:30 in Astrakhan, still Monday 23:30 in Moscow.
        let in_astrakhan = instant.with_timezone(&ASTRAKHAN);
        let in_moscow = instant.with_timezone(&chrono_tz::Europe::Moscow);
        assert_eq!(calendar.add_working_days(in_astrakhan, 1).unwrap(), at("2026-12-30 18:00"));
        assert_eq!(
            calendar.add_working_days(in_moscow, 1).unwrap(),
            at_in(chrono_tz::Europe::Moscow, "2026-12-29 18:00")
        );
        let yekaterinburg = chrono_tz::Asia::Yekaterinburg;
        let deadline = calendar.add_working_days(at_in(yekaterinburg, "2026-01-06 10:00"), 3).unwrap();
        assert_eq!(deadline.to_rfc3339(), "2026-01-14T18:00:00+05:00");
    }

    #[test]
    fn calendar_days_start_the_day_after() {
        let calendar = ru();
        // 30 days from registration on 1 March end on 31 March.
        assert_eq!(calendar.add_calendar_days(at("2026-03-01 10:00"), 30).unwrap(), at("2026-03-31 18:00"));
        assert_eq!(calendar.add_calendar_days_control(at("2026-03-01 10:00"), 30).unwrap(), at("2026-03-31 18:00"));
        assert_eq!(calendar.add_calendar_days(at("2027-02-12 10:00"), 7).unwrap(), at("2027-02-19 18:00"));
        // The last day is the working Saturday, a short day.
        assert_eq!(calendar.add_calendar_days(at("2027-02-12 10:00"), 8).unwrap(), at("2027-02-20 17:00"));
        assert_eq!(calendar.add_calendar_days(at("2026-01-13 10:00"), 0).unwrap(), at("2026-01-13 18:00"));
    }

    #[test]
    fn calendar_days_ending_on_a_day_off_move_forward_and_the_control_date_back() {
        let calendar = ru();
        // 59-FZ: 30 days from 1 April 2026 end on 1 May, a holiday.
        assert_eq!(calendar.add_calendar_days(at("2026-04-01 11:00"), 30).unwrap(), at("2026-05-04 18:00"));
        assert_eq!(calendar.add_calendar_days_control(at("2026-04-01 11:00"), 30).unwrap(), at("2026-04-30 17:00"));
        // Over New Year: the last day is 1 January 2026.
        assert_eq!(calendar.add_calendar_days(at("2025-12-02 11:00"), 30).unwrap(), at("2026-01-12 18:00"));
        assert_eq!(calendar.add_calendar_days_control(at("2025-12-02 11:00"), 30).unwrap(), at("2025-12-30 18:00"));
        // 8-FZ: 30 days from 5 October 2026 end on 4 November; 3 November is short.
        assert_eq!(calendar.add_calendar_days(at("2026-10-05 11:00"), 30).unwrap(), at("2026-11-05 18:00"));
        assert_eq!(calendar.add_calendar_days_control(at("2026-10-05 11:00"), 30).unwrap(), at("2026-11-03 17:00"));
        // 8-FZ extension: at most 45 days.
        assert_eq!(calendar.add_calendar_days(at("2026-10-05 11:00"), 45).unwrap(), at("2026-11-19 18:00"));
    }

    #[test]
    fn fixed_dates_move_to_the_next_working_day() {
        let calendar = ru();
        // ЦУР quarterly report, due by the 5th of the month after the quarter.
        assert_eq!(
            calendar.on_or_next_working_day_close(date("2027-01-05"), ASTRAKHAN).unwrap(),
            at("2027-01-11 18:00")
        );
        assert_eq!(
            calendar.on_or_next_working_day_close(date("2026-04-05"), ASTRAKHAN).unwrap(),
            at("2026-04-06 18:00")
        );
        assert_eq!(
            calendar.on_or_next_working_day_close(date("2025-07-05"), ASTRAKHAN).unwrap(),
            at("2025-07-07 18:00")
        );
        assert_eq!(
            calendar.on_or_next_working_day_close(date("2027-10-05"), ASTRAKHAN).unwrap(),
            at("2027-10-05 18:00")
        );
    }

    #[test]
    fn working_hours_skip_evenings_lunch_and_days_off() {
        let calendar = ru();
        assert_eq!(calendar.add_working_hours(at("2026-12-28 10:00"), 60).unwrap(), at("2026-12-28 11:00"));
        assert_eq!(calendar.add_working_hours(at("2026-12-28 17:30"), 60).unwrap(), at("2026-12-29 09:30"));
        assert_eq!(calendar.add_working_hours(at("2026-12-28 12:30"), 60).unwrap(), at("2026-12-28 14:30"));
        // Using up the morning exactly ends at the lunch break, not after it.
        assert_eq!(calendar.add_working_hours(at("2026-12-28 12:00"), 60).unwrap(), at("2026-12-28 13:00"));
        assert_eq!(calendar.add_working_hours(at("2026-12-28 13:20"), 30).unwrap(), at("2026-12-28 14:30"));
        assert_eq!(calendar.add_working_hours(at("2026-12-28 10:00:30"), 60).unwrap(), at("2026-12-28 11:00:30"));
        // Three full days end at close of business on the third.
        assert_eq!(calendar.add_working_hours(at("2026-12-21 09:00"), 3 * 480).unwrap(), at("2026-12-23 18:00"));
    }

    #[test]
    fn working_hours_start_at_the_next_opening_when_outside_working_time() {
        let calendar = ru();
        assert_eq!(calendar.add_working_hours(at("2026-12-28 07:00"), 30).unwrap(), at("2026-12-28 09:30"));
        assert_eq!(calendar.add_working_hours(at("2026-12-26 10:00"), 60).unwrap(), at("2026-12-28 10:00"));
        assert_eq!(calendar.add_working_hours(at("2026-12-25 23:00"), 60).unwrap(), at("2026-12-28 10:00"));
        assert_eq!(calendar.add_working_hours(at("2026-12-28 13:30"), 0).unwrap(), at("2026-12-28 14:00"));
        assert_eq!(calendar.add_working_hours(at("2026-12-28 10:00"), 0).unwrap(), at("2026-12-28 10:00"));
    }

    #[test]
    fn working_hours_on_short_days_and_holidays() {
        let calendar = ru();
        // 3 November 2026 is short (closes at 17:00) and 4 November is a holiday.
        assert_eq!(calendar.add_working_hours(at("2026-11-03 16:30"), 60).unwrap(), at("2026-11-05 09:30"));
        assert_eq!(calendar.add_working_hours(at("2026-11-03 16:00"), 60).unwrap(), at("2026-11-03 17:00"));
        // Sevastopol-style 9 working hours from Friday afternoon.
        assert_eq!(calendar.add_working_hours(at("2026-12-25 15:00"), 9 * 60).unwrap(), at("2026-12-28 16:00"));
        // Over New Year 2027.
        assert_eq!(calendar.add_working_hours(at("2026-12-30 17:00"), 120).unwrap(), at("2027-01-11 10:00"));
    }

    #[test]
    fn working_minutes_between_instants() {
        let calendar = ru();
        let between = |a: &str, b: &str| calendar.working_minutes_between(at(a), at(b)).unwrap();
        assert_eq!(between("2026-12-28 10:00", "2026-12-28 12:00"), 120);
        assert_eq!(between("2026-12-28 12:00", "2026-12-28 15:00"), 120);
        assert_eq!(between("2026-12-28 17:00", "2026-12-29 10:00"), 120);
        assert_eq!(between("2026-12-29 10:00", "2026-12-28 17:00"), -120);
        assert_eq!(between("2026-12-28 10:00", "2026-12-28 10:00"), 0);
        assert_eq!(between("2026-12-28 10:00", "2026-12-28 10:00:59"), 0);
        assert_eq!(between("2026-12-28 09:00", "2027-01-04 09:00"), 3 * 480);
        assert_eq!(between("2026-02-02 00:00", "2026-02-09 00:00"), 5 * 480);
        assert_eq!(between("2026-11-03 00:00", "2026-11-05 00:00"), 420);
        assert_eq!(between("2026-12-26 00:00", "2026-12-27 23:59"), 0);
        // The second instant may be in another zone.
        let b = at("2026-12-28 12:00").with_timezone(&chrono_tz::UTC);
        assert_eq!(calendar.working_minutes_between(at("2026-12-28 10:00"), b).unwrap(), 120);
    }

    #[test]
    fn adding_working_minutes_and_measuring_them_agree() {
        let calendar = ru();
        let starts = [
            "2026-12-28 09:00",
            "2026-12-28 12:59",
            "2026-12-28 13:30",
            "2026-12-28 17:59:30",
            "2026-12-26 11:00",
            "2026-04-30 16:45",
            "2027-02-19 17:10",
            "2024-12-27 20:00",
        ];
        for start in starts {
            for minutes in [0, 1, 59, 60, 61, 240, 419, 480, 481, 1000, 5000, 20_000] {
                let end = calendar.add_working_hours(at(start), minutes).unwrap();
                assert_eq!(
                    calendar.working_minutes_between(at(start), end).unwrap(),
                    i64::from(minutes),
                    "{start} + {minutes}"
                );
            }
        }
    }

    #[test]
    fn dates_outside_the_calendar_are_refused() {
        let calendar = ru();
        let expected = CalendarError::OutOfRange {
            calendar: "ru".to_string(),
            date: date("2023-12-31"),
            first_year: 2024,
            last_year: 2027,
        };
        assert_eq!(calendar.is_working_day(date("2023-12-31")), Err(expected.clone()));
        let message = expected.to_string();
        assert!(message.contains("covers only years 2024–2027"), "{message}");
        assert!(message.contains("add the production calendar for 2023 to definitions/calendars/ru.json"), "{message}");

        let next_year = calendar.add_working_days(at("2027-12-30 10:00"), 5).unwrap_err();
        assert!(
            matches!(&next_year, CalendarError::OutOfRange { date: d, .. } if *d == date("2028-01-01")),
            "{next_year:?}"
        );
        assert!(next_year.to_string().contains("for 2028"));
        assert!(matches!(
            calendar.add_calendar_days(at("2027-12-20 10:00"), 30),
            Err(CalendarError::OutOfRange { .. })
        ));
        assert!(matches!(
            calendar.add_calendar_days(at("2027-12-20 10:00"), u32::MAX),
            Err(CalendarError::OutOfRange { .. })
        ));
        assert!(matches!(
            calendar.add_calendar_days_control(at("2024-01-01 10:00"), 0),
            Err(CalendarError::OutOfRange { .. })
        ));
        assert!(matches!(
            calendar.add_working_hours(at("2027-12-30 17:00"), 120),
            Err(CalendarError::OutOfRange { .. })
        ));
        assert!(matches!(calendar.add_working_hours(at("2023-12-29 17:00"), 1), Err(CalendarError::OutOfRange { .. })));
        assert!(matches!(
            calendar.working_minutes_between(at("2027-12-30 10:00"), at("2028-01-10 10:00")),
            Err(CalendarError::OutOfRange { .. })
        ));
        assert!(matches!(
            calendar.previous_working_day_on_or_before(date("2024-01-01")),
            Err(CalendarError::OutOfRange { .. })
        ));
        assert!(matches!(calendar.working_minutes(date("2028-03-01")), Err(CalendarError::OutOfRange { .. })));
        // The last working day of the range still answers.
        assert_eq!(calendar.add_working_days(at("2027-12-29 10:00"), 1).unwrap(), at("2027-12-30 18:00"));
    }

    #[test]
    fn minimal_calendar_uses_default_hours() {
        let text = minimal(r#"{"holidays": ["2026-01-01"]}"#);
        let calendar = WorkCalendar::from_json("tiny", &text).unwrap();
        assert_eq!((calendar.first_year(), calendar.last_year()), (2026, 2026));
        assert!(!calendar.is_working_day(date("2026-01-01")).unwrap());
        assert!(calendar.is_working_day(date("2026-01-02")).unwrap());
        assert_eq!(calendar.working_minutes(date("2026-01-02")).unwrap(), 480);
    }

    #[test]
    fn custom_working_hours() {
        let text = r#"{"name": "office", "working_hours": {"start": "08:00", "end": "17:00", "lunch_start": "12:00",
            "lunch_end": "12:45", "short_day_minus_minutes": 60},
            "2026": {"holidays": [], "working_weekends": [], "short_days": ["2026-04-30"]}}"#;
        let calendar = WorkCalendar::from_json("office", text).unwrap();
        assert_eq!(calendar.working_minutes(date("2026-04-29")).unwrap(), 495);
        assert_eq!(calendar.working_minutes(date("2026-04-30")).unwrap(), 435);
        assert_eq!(calendar.close_of_business(date("2026-04-30")).unwrap(), Some(hm(16, 0)));
        assert_eq!(calendar.add_working_hours(at("2026-04-29 11:30"), 60).unwrap(), at("2026-04-29 13:15"));
        let no_lunch = r#"{"working_hours": {"start": "09:00", "end": "17:00", "lunch_start": "13:00",
            "lunch_end": "13:00"}, "2026": {"holidays": []}}"#;
        let calendar = WorkCalendar::from_json("x", no_lunch).unwrap();
        assert_eq!(calendar.working_minutes(date("2026-04-29")).unwrap(), 480);
        assert_eq!(calendar.add_working_hours(at("2026-04-29 12:30"), 60).unwrap(), at("2026-04-29 13:30"));
    }

    #[test]
    fn rejects_malformed_calendars() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[]", "JSON object"),
            ("{}", "no years"),
            (r#"{"sources": {}}"#, "no years"),
            (&minimal(r#"{"holidays": ["2026-01-03"]}"#), "2026-01-03 is a Saturday"),
            (&minimal(r#"{"holidays": [], "working_weekends": ["2026-01-05"]}"#), "2026-01-05 is a Monday"),
            (&minimal(r#"{"holidays": ["2026-01-02"], "short_days": ["2026-01-02"]}"#), "not a working day"),
            (&minimal(r#"{"holidays": [], "short_days": ["2026-01-04"]}"#), "not a working day"),
            (&minimal(r#"{"holidays": ["2026-02-30"]}"#), "not a date"),
            (&minimal(r#"{"holidays": ["2025-12-31"]}"#), "belongs to another year"),
            (&minimal(r#"{"holidays": ["2026-01-01", "2026-01-01"]}"#), "listed twice"),
            (&minimal(r#"{"holidays": [20260101]}"#), "not a string date"),
            (&minimal(r#"{"holidays": "2026-01-01"}"#), "list of dates"),
            (&minimal(r#"{"holiday": []}"#), "no \"holidays\" list"),
            (&minimal(r#"{"holidays": [], "shortdays": []}"#), "unknown key \"shortdays\""),
            (&minimal("[]"), "must be an object"),
            (r#"{"2024": {"holidays": []}, "2026": {"holidays": []}}"#, "contiguous"),
            (r#"{"twenty": {"holidays": []}}"#, "unknown key \"twenty\""),
            (r#"{"name": "ru", "2026": {"holidays": []}}"#, "calls itself \"ru\""),
            (r#"{"name": 7, "2026": {"holidays": []}}"#, "must be a string"),
            (r#"{"working_hours": {"start": "9am"}, "2026": {"holidays": []}}"#, "HH:MM"),
            (r#"{"working_hours": {"end": "12:00"}, "2026": {"holidays": []}}"#, "start ≤ lunch_start"),
            (r#"{"working_hours": {"lunch_start": "14:30"}, "2026": {"holidays": []}}"#, "start ≤ lunch_start"),
            (r#"{"working_hours": {"short_day_minus_minutes": 240}, "2026": {"holidays": []}}"#, "afternoon"),
            (r#"{"working_hours": {"short_day_minus_minutes": -1}, "2026": {"holidays": []}}"#, "whole number"),
            (r#"{"working_hours": {"begin": "09:00"}, "2026": {"holidays": []}}"#, "unknown key \"begin\""),
            (r#"{"working_hours": "9-18", "2026": {"holidays": []}}"#, "must be an object"),
        ];
        for (text, expected) in cases {
            let message = format_error(text);
            assert!(message.starts_with("calendar \"x\": "), "{message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
    }
}
