//! The scheduler: fires due timers (instance timers and timer start events).
//!
//! Due rows are taken with a lease (`lease_owner`, `lease_until`); on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so several nodes share the work without handing one timer to two
//! of them. A node that dies leaves leases that expire, and another node takes the timers over.
//! Firing goes through the driver: the timer row is deleted in the same transaction as the
//! instance moves on, so a timer fires exactly once even if two nodes race after a lease expiry
//! (the loser finds the timer gone from the instance state and drops the row).
//!
//! The loop sleeps until the next due time — or until the driver commits a new timer, or at most
//! `max_sleep` (timers committed by other nodes) — never polls in a busy loop.
//!
//! Misfire policy: instance timers that fell due while the engine was down fire once each, in
//! due order, at start-up. A timer start event with a cycle fires once for all the firings it
//! missed, and the count of missed firings is logged and stored (`start_timers.missed`).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, warn};

use crate::driver::{Op, Outcome, Runtime};
use crate::settings::Settings;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long a node owns the timers it took.
    pub lease: Duration,
    /// Timers taken per round.
    pub batch: i64,
    /// The longest sleep, so timers committed by other nodes are seen.
    pub max_sleep: Duration,
}

impl SchedulerConfig {
    /// The scheduler's part of the settings. On PostgreSQL other nodes commit timers this node
    /// is not woken for, so it looks every second; on SQLite this node is the only writer and
    /// is woken on every commit.
    pub fn from_settings(settings: &Settings, postgres: bool) -> SchedulerConfig {
        SchedulerConfig {
            lease: settings.lease,
            batch: TIMERS_PER_ROUND,
            max_sleep: if postgres { Duration::from_secs(1) } else { Duration::from_secs(30) },
        }
    }
}

/// Timers taken per round.
const TIMERS_PER_ROUND: i64 = 2000;

/// Runs until `shutdown` turns true.
pub async fn run(rt: Runtime, config: SchedulerConfig, mut shutdown: watch::Receiver<bool>) {
    info!(node = rt.node(), "scheduler started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let fired = match round(&rt, &config).instrument(tracing::debug_span!("timers")).await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "scheduler round failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if fired > 0 {
            continue;
        }
        let sleep = match rt.store().next_due().await {
            Ok(Some(next)) => (next - rt.now()).to_std().unwrap_or(Duration::ZERO).min(config.max_sleep),
            Ok(None) => config.max_sleep,
            Err(e) => {
                warn!(error = %e, "cannot read the next due time");
                Duration::from_millis(500)
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = rt.wakers().scheduler.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    info!(node = rt.node(), "scheduler stopped");
}

/// One round: take and fire everything due now. Returns how many were fired.
async fn round(rt: &Runtime, config: &SchedulerConfig) -> Result<usize, reglament_store::StoreError> {
    let now = rt.now();
    let lease = chrono::Duration::from_std(config.lease).unwrap_or(chrono::Duration::seconds(30));
    let timers = rt.store().lease_due_timers(rt.node(), now, now + lease, config.batch).await?;
    let starts = rt.store().lease_due_start_timers(rt.node(), now, now + lease).await?;
    let count = timers.len() + starts.len();
    if count == 0 {
        return Ok(0);
    }
    debug!(timers = timers.len(), start_timers = starts.len(), "firing");
    let mut set = JoinSet::new();
    for (instance, key) in timers {
        let rt = rt.clone();
        set.spawn(async move { rt.submit(Op::FireTimer { instance, key }).await });
    }
    for (definition, element) in starts {
        let rt = rt.clone();
        set.spawn(async move { rt.submit(Op::FireStartTimer { definition, element }).await });
    }
    while let Some(result) = set.join_next().await {
        match result {
            Ok(Ok(Outcome::Stale)) => debug!("stale timer dropped"),
            Ok(Ok(_)) => {}
            // The lease expires and the timer is taken again.
            Ok(Err(e)) => warn!(error = %e, "timer could not fire; it will be retried after its lease"),
            Err(e) => warn!(error = %e, "timer task panicked"),
        }
    }
    Ok(count)
}
