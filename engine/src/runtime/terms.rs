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
            let days = d.days + d.weeks * 5;
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

/// The calendar date `d` after `date` (years, months clamp to the month's end; then weeks, days).
fn add_date(date: NaiveDate, d: &IsoDuration) -> Option<NaiveDate> {
    let months = d.years.checked_mul(12)?.checked_add(d.months)?;
    let date = date.checked_add_months(Months::new(months))?;
    let days = u64::from(d.weeks) * 7 + u64::from(d.days);
    let out = date.checked_add_days(Days::new(days))?;
    // Keep the year sane for the calendar lookups that follow.
    (out.year() < 10_000).then_some(out)
}
