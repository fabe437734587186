//! Terms to deadlines: the legal counting rules of DESIGN §4 on top of the calendars.

use chrono::{Datelike, Days, Months, NaiveDate};
use chrono_tz::Tz;

use super::{Env, Ts};
use crate::calendar::CalendarError;
use crate::model::{Term, TimeBasis};
use crate::timer::IsoDuration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TermError {
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("calendar `{0}` is not loaded; add definitions/calendars/{0}.json")]
    UnknownCalendar(String),
    #[error("{0}")]
    Unsupported(String),
}

/// The deadline of `term` counted from `start`, in zone `tz`, with `default_calendar` unless
/// the term names its own.
pub fn compute_term(term: &Term, start: Ts, tz: Tz, env: &Env, default_calendar: &str) -> Result<Ts, TermError> {
    compute(&term.duration, term.time, term.calendar.as_deref().unwrap_or(default_calendar), start, tz, env)
}

pub(crate) fn compute(
    d: &IsoDuration,
    basis: TimeBasis,
    calendar: &str,
    start: Ts,
    tz: Tz,
    env: &Env,
) -> Result<Ts, TermError> {
    let local = start.with_timezone(&tz);
    let time_minutes = u64::from(d.hours) * 60 + u64::from(d.minutes) + u64::from(d.seconds.div_ceil(60));
    let has_time = d.hours > 0 || d.minutes > 0 || d.seconds > 0 || d.millis > 0;
    let clock = |d: &IsoDuration| {
        d.add_to(local)
            .map(|t| t.to_utc())
            .ok_or_else(|| TermError::Unsupported(format!("{d} overflows the date range")))
    };
    match basis {
        TimeBasis::Clock => clock(d),
        TimeBasis::Calendar if !d.has_calendar_part() => clock(d),
        TimeBasis::Calendar => {
            if has_time {
                return Err(TermError::Unsupported(format!(
                    "{d}: a legal term is counted in days or in hours, not both; split it or use time=\"clock\""
                )));
            }
            let cal = env.calendars.get(calendar).ok_or_else(|| TermError::UnknownCalendar(calendar.to_string()))?;
            let last_day = add_date(local.date_naive(), d)
                .ok_or_else(|| TermError::Unsupported(format!("{d} overflows the date range")))?;
            Ok(cal.on_or_next_working_day_close(last_day, tz)?.to_utc())
        }
        TimeBasis::Working => {
            let cal = env.calendars.get(calendar).ok_or_else(|| TermError::UnknownCalendar(calendar.to_string()))?;
            if d.years > 0 || d.months > 0 {
                return Err(TermError::Unsupported(format!(
                    "{d}: working time is counted in days (PnD, PnW) or hours (PTnH), not months or years"
                )));
            }
            // A working week is five working days.
            let days = d
                .weeks
                .checked_mul(5)
                .and_then(|w| w.checked_add(d.days))
                .ok_or_else(|| TermError::Unsupported(format!("{d} is too long a working-days term")))?;
            if days > 0 && has_time {
                return Err(TermError::Unsupported(format!(
                    "{d}: a working term is counted in days or in hours, not both"
                )));
            }
            if days > 0 {
                Ok(cal.add_working_days(local, days)?.to_utc())
            } else {
                let minutes = u32::try_from(time_minutes)
                    .map_err(|_| TermError::Unsupported(format!("{d} is too long a working-hours term")))?;
                Ok(cal.add_working_hours(local, minutes)?.to_utc())
            }
        }
    }
}

/// Whether a term of `d` in `basis` is counted in calendar days: it then has a last day
/// (Civil Code art. 191) that art. 193 may move to the next working day.
pub(crate) fn counts_days(d: &IsoDuration, basis: TimeBasis) -> bool {
    let has_time = d.hours > 0 || d.minutes > 0 || d.seconds > 0 || d.millis > 0;
    basis == TimeBasis::Calendar && d.has_calendar_part() && !has_time
}

/// The last day of a term in calendar days started at `start`, before the legal move; `None`
/// for terms counted otherwise.
pub fn term_last_day(term: &Term, start: Ts, tz: Tz) -> Option<NaiveDate> {
    counts_days(&term.duration, term.time).then(|| add_date(start.with_timezone(&tz).date_naive(), &term.duration))?
}

/// The calendar date `d` after `date` (years, months clamp to the month's end; then weeks, days).
pub(crate) fn add_date(date: NaiveDate, d: &IsoDuration) -> Option<NaiveDate> {
    let months = d.years.checked_mul(12)?.checked_add(d.months)?;
    let date = date.checked_add_months(Months::new(months))?;
    let days = u64::from(d.weeks) * 7 + u64::from(d.days);
    let out = date.checked_add_days(Days::new(days))?;
    // Keep the year sane for the calendar lookups that follow.
    (out.year() < 10_000).then_some(out)
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDateTime, TimeZone};

    use super::*;
    use crate::calendar::WorkCalendar;

    const ASTRAKHAN: Tz = chrono_tz::Europe::Astrakhan;

    fn env() -> Env {
        let ru = WorkCalendar::from_json("ru", include_str!("../../../definitions/calendars/ru.json")).unwrap();
        Env { calendars: [("ru".to_string(), ru)].into_iter().collect(), ..Env::default() }
    }

    /// A local time in Astrakhan, "YYYY-MM-DD HH:MM", as an instant.
    fn at(text: &str) -> Ts {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        ASTRAKHAN.from_local_datetime(&naive).single().unwrap().to_utc()
    }

    fn term(duration: &str, time: TimeBasis) -> Term {
        Term { duration: IsoDuration::parse(duration).unwrap(), time, calendar: None, pos: Default::default() }
    }

    fn deadline(duration: &str, time: TimeBasis, start: &str) -> Result<Ts, TermError> {
        compute_term(&term(duration, time), at(start), ASTRAKHAN, &env(), "ru")
    }

    #[test]
    fn each_basis_counts_its_own_way() {
        use TimeBasis::*;
        // Friday 25.12.2026 22:30: clock hours run through the night and the weekend.
        assert_eq!(deadline("PT3H", Clock, "2026-12-25 22:30"), Ok(at("2026-12-26 01:30")));
        // Hours of a calendar-basis term are clock hours too.
        assert_eq!(deadline("PT3H", Calendar, "2026-12-25 22:30"), Ok(at("2026-12-26 01:30")));
        // Working hours wait for Monday's opening.
        assert_eq!(deadline("PT3H", Working, "2026-12-25 22:30"), Ok(at("2026-12-28 12:00")));
        // Days: clock days keep the time of day; calendar days end at close of business of a
        // working day; working days skip the New Year holidays.
        assert_eq!(deadline("P7D", Clock, "2026-12-28 10:00"), Ok(at("2027-01-04 10:00")));
        assert_eq!(deadline("P7D", Calendar, "2026-12-28 10:00"), Ok(at("2027-01-11 18:00")));
        assert_eq!(deadline("P7D", Working, "2026-12-28 10:00"), Ok(at("2027-01-15 18:00")));
        // A working week is five working days.
        assert_eq!(deadline("P2W", Working, "2026-12-28 10:00"), deadline("P10D", Working, "2026-12-28 10:00"));
        // Months in calendar time: 31 January + 1 month is the last day of February.
        assert_eq!(deadline("P1M", Calendar, "2025-01-31 10:00"), Ok(at("2025-02-28 18:00")));
        // … and moves to Monday when that is a Saturday.
        assert_eq!(deadline("P1M", Calendar, "2026-01-31 10:00"), Ok(at("2026-03-02 18:00")));
    }

    #[test]
    fn mixed_or_unsupported_terms_are_refused() {
        use TimeBasis::*;
        let refused = |duration: &str, time: TimeBasis| {
            matches!(deadline(duration, time, "2026-12-28 10:00"), Err(TermError::Unsupported(_)))
        };
        assert!(refused("P1DT2H", Calendar));
        assert!(refused("P1DT2H", Working));
        assert!(refused("P1M", Working));
        assert!(refused("P1Y", Working));
        // Too long to count, not a panic or a wrapped-around number.
        assert!(refused("P4294967295W", Working));
        assert!(refused("P1W4294967295D", Working));
        assert!(refused("PT4294967295H", Working));
        let unknown = compute_term(&term("P1D", Working), at("2026-12-28 10:00"), ASTRAKHAN, &env(), "by");
        assert_eq!(unknown, Err(TermError::UnknownCalendar("by".into())));
    }

    #[test]
    fn terms_past_the_calendar_are_errors() {
        let error = deadline("P10D", TimeBasis::Working, "2027-12-20 10:00").unwrap_err();
        assert!(error.to_string().contains("covers only years 2024–2027"), "{error}");
        assert!(matches!(deadline("P30D", TimeBasis::Calendar, "2027-12-10 10:00"), Err(TermError::Calendar(_))));
        // Clock time needs no calendar.
        assert_eq!(deadline("P30D", TimeBasis::Clock, "2027-12-10 10:00"), Ok(at("2028-01-09 10:00")));
    }
}
