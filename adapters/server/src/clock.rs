//! The server's clock.
//!
//! Normally the system clock. A test or training stand started with
//! `REGLAMENT_CLOCK_CONTROLLED=true` runs on the system clock moved forward by an offset that an
//! admin sets with `POST /api/admin/clock` — the same idea as Zeebe's controlled clock — so a
//! three-hour escalation or a timer start on 15 January can be seen now, through the real
//! server, instead of waiting for it. The clock only moves forward: timers, leases and the
//! history stay in order. Everything that asks "what time is it" for process purposes (commands,
//! the scheduler, the outbox, jobs, due and overdue in the API) reads this clock; the engine
//! itself never reads a clock, it is given `now`.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

pub type Ts = DateTime<Utc>;

#[derive(Debug, Default)]
pub struct Clock {
    controlled: bool,
    /// Milliseconds added to the system clock.
    offset_ms: AtomicI64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    #[error("the clock is not controlled; start the server with REGLAMENT_CLOCK_CONTROLLED=true to move it")]
    NotControlled,
    #[error("the clock only moves forward: it is {now} now, {requested} is in the past")]
    Backwards { now: String, requested: String },
}

impl Clock {
    /// The system clock; cannot be moved.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock an admin can move forward.
    pub fn controlled() -> Clock {
        Clock { controlled: true, offset_ms: AtomicI64::new(0) }
    }

    /// A clock that reads `start` now and then runs at the system clock's pace; `controlled`
    /// says whether admins may move it forward. Tests start every server and runtime at one
    /// fixed instant this way, so no test depends on the date or the time of day it runs at.
    pub fn starting_at(start: Ts, controlled: bool) -> Clock {
        Clock { controlled, offset_ms: AtomicI64::new((start - Utc::now()).num_milliseconds()) }
    }

    pub fn is_controlled(&self) -> bool {
        self.controlled
    }

    pub fn now(&self) -> Ts {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// How far ahead of the system clock this clock is.
    pub fn offset(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock forward so that it reads `target` now. Returns the new time.
    pub fn set(&self, target: Ts) -> Result<Ts, ClockError> {
        if !self.controlled {
            return Err(ClockError::NotControlled);
        }
        let now = self.now();
        if target < now {
            return Err(ClockError::Backwards { now: now.to_rfc3339(), requested: target.to_rfc3339() });
        }
        self.offset_ms.fetch_add((target - now).num_milliseconds(), Ordering::Relaxed);
        Ok(self.now())
    }

    /// Moves the clock forward by `by`. Returns the new time.
    pub fn advance(&self, by: chrono::Duration) -> Result<Ts, ClockError> {
        if !self.controlled {
            return Err(ClockError::NotControlled);
        }
        if by < chrono::Duration::zero() {
            let now = self.now();
            return Err(ClockError::Backwards { now: now.to_rfc3339(), requested: (now + by).to_rfc3339() });
        }
        self.offset_ms.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
        Ok(self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_clock_cannot_be_moved() {
        let c = Clock::system();
        assert_eq!(c.advance(chrono::Duration::hours(1)), Err(ClockError::NotControlled));
        assert_eq!(c.offset(), chrono::Duration::zero());
    }

    #[test]
    fn a_started_clock_reads_its_start_and_runs_on() {
        let start: Ts = "2026-12-02T06:30:00Z".parse().expect("instant");
        let c = Clock::starting_at(start, false);
        let read = c.now();
        assert!(read >= start && read - start < chrono::Duration::seconds(5), "{read}");
        assert_eq!(c.advance(chrono::Duration::hours(1)), Err(ClockError::NotControlled));
        let moved = Clock::starting_at(start, true);
        let later = moved.advance(chrono::Duration::days(1)).expect("forward");
        assert!(later - start >= chrono::Duration::days(1));
    }

    #[test]
    fn a_controlled_clock_moves_forward_only() {
        let c = Clock::controlled();
        let before = c.now();
        let after = c.advance(chrono::Duration::hours(3)).expect("forward");
        assert!(after - before >= chrono::Duration::hours(3));
        let target = after + chrono::Duration::days(40);
        let set = c.set(target).expect("forward");
        assert!((set - target).num_milliseconds().abs() < 1000);
        assert!(matches!(c.set(before), Err(ClockError::Backwards { .. })));
        assert!(matches!(c.advance(chrono::Duration::seconds(-1)), Err(ClockError::Backwards { .. })));
    }
}
