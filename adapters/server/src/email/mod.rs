//! Email: the outbox dispatcher.
//!
//! An email task's `SendEmail` effect is written to the `outbox` table in the same transaction
//! as the state change that caused it (the driver does that). This module sends it after
//! commit and reports back to the instance:
//!
//! 1. take due rows with a lease (several nodes share the work; `FOR UPDATE SKIP LOCKED` on
//!    PostgreSQL; a dead node's leases expire and others take the rows);
//! 2. compose: recipients from the rules and the directory, the template, links
//!    ([`compose`], [`recipients`], [`templates`]);
//! 3. deliver through a pooled SMTP transport, or into `.eml` files ([`transport`]);
//! 4. record the outcome (`accepted`, group-committed), then tell the instance:
//!    `CompleteJob` — a send task waits for the server's acceptance — and mark the row `sent`.
//!    A temporary failure (4xx, refused connection, timeout) is retried with exponential backoff
//!    and never given up; a permanent one (5xx, a bad address, a broken template, a rule that
//!    finds nobody) marks the row `failed` and sends `FailJob { retryable: false }`, which raises
//!    an incident on the element. Resolving the incident runs the email task again, which
//!    re-evaluates its headers and queues a new row.
//!
//! **Guarantee.** Every email queued by a committed state change is delivered at least once,
//! and exactly once unless the process dies in the few milliseconds between the SMTP server's
//! acceptance and the commit recording it — then it is sent again with the same `Message-ID`
//! (`<INSTANCE.KEY@reglament>`), which mail systems and readers can recognise as a duplicate.
//! A crash between the state change's commit and the send (the common window) sends exactly
//! once: the row is still `pending`. The folder transport names files by row, so a repeat there
//! overwrites. An outcome recorded but not yet reported is reported again after a crash.

pub mod compose;
pub mod recipients;
pub mod templates;
pub mod transport;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox;
use reglament_engine::runtime::Command;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, error, info, info_span, warn};

use self::compose::{ComposeError, Composer};
use self::templates::Templates;
pub use self::transport::{Mailer, SendError, Transport};
use crate::driver::{DriverError, Op, Runtime};
use crate::settings::Settings;
pub use crate::settings::VariableDomains;
use reglament_store::outbox::{OutboxMark, OutboxRow};
use reglament_store::{Store, StoreError, Ts};

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub transport: Transport,
    /// Where addresses from variables may receive email.
    pub variable_domains: VariableDomains,
    /// The `From` mailbox, e.g. `Регламент <reglament@example.org>`.
    pub from: String,
    /// The folder of `NAME.txt` / `NAME.html` templates.
    pub templates: PathBuf,
    /// The public base URL for links in emails.
    pub base_url: String,
    /// The zone dates are shown in (`date` filter).
    pub time_zone: chrono_tz::Tz,
    /// How long a node owns the rows it took. Sends start only in the first half of it.
    pub lease: Duration,
    /// Rows taken per round.
    pub batch: i64,
    /// SMTP connections kept open and used at once (also the number of sends in flight).
    pub connections: u32,
    /// The first retry delay after a temporary failure; it doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// For each SMTP command.
    pub timeout: Duration,
    /// The longest sleep, so rows committed by other nodes are seen.
    pub max_sleep: Duration,
}

impl EmailConfig {
    /// The dispatcher's part of the settings.
    pub fn from_settings(settings: &Settings) -> EmailConfig {
        let transport = match &settings.smtp_url {
            Some(url) => Transport::Smtp { url: url.clone() },
            None => Transport::Files { dir: settings.mail_dir.clone() },
        };
        EmailConfig {
            transport,
            from: settings.mail_from.clone(),
            variable_domains: settings.mail_variable_domains.clone(),
            templates: settings.definitions.join("templates"),
            base_url: settings.base_url.clone(),
            time_zone: settings.time_zone,
            lease: settings.lease,
            batch: ROWS_PER_ROUND,
            connections: settings.mail_connections,
            retry_min: settings.mail_retry,
            retry_max: RETRY_MAX,
            // A send must finish well inside the lease, or another node could take the row.
            timeout: SMTP_TIMEOUT.min(settings.lease / 2),
            max_sleep: MAX_SLEEP,
        }
    }
}

/// Rows taken per round.
const ROWS_PER_ROUND: i64 = 256;
/// The longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30 * 60);
/// The longest wait for each SMTP command.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest sleep, so rows committed by other nodes are seen.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// What this node's dispatcher did (for /metrics).
#[derive(Debug, Default)]
pub struct EmailCounters {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
}

static COUNTERS: EmailCounters =
    EmailCounters { sent: AtomicU64::new(0), retried: AtomicU64::new(0), failed: AtomicU64::new(0) };

pub fn counters() -> &'static EmailCounters {
    &COUNTERS
}

/// Prometheus lines about email and incidents, for `/metrics`.
pub async fn metrics(store: &Store) -> Result<String, StoreError> {
    let by_state = store.count_outbox_by_state().await?;
    let incidents = store.count_open_incidents().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP reglament_incidents_open Active process instances stopped by an incident.\n\
         # TYPE reglament_incidents_open gauge\nreglament_incidents_open {incidents}"
    );
    let _ = writeln!(
        out,
        "# HELP reglament_outbox_emails Outbox rows waiting for work (pending: to send; accepted, rejected: \
         outcome not yet reported) and failed for good.\n# TYPE reglament_outbox_emails gauge"
    );
    for state in ["pending", "accepted", "rejected", "failed"] {
        let n = by_state.iter().find(|(s, _)| s == state).map(|(_, n)| *n).unwrap_or(0);
        let _ = writeln!(out, "reglament_outbox_emails{{state=\"{state}\"}} {n}");
    }
    for (name, help, counter) in [
        (
            "reglament_emails_sent_total",
            "Emails this node delivered to the SMTP server or the mail folder.",
            &COUNTERS.sent,
        ),
        ("reglament_email_retries_total", "Temporary delivery failures this node will retry.", &COUNTERS.retried),
        (
            "reglament_emails_failed_total",
            "Emails this node gave up on (permanent failures; incidents raised).",
            &COUNTERS.failed,
        ),
    ] {
        let _ =
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", counter.load(Ordering::Relaxed));
    }
    Ok(out)
}

/// Runs the dispatcher until `shutdown` turns true. Rows in flight are finished first.
pub async fn run(rt: Runtime, config: EmailConfig, mut shutdown: watch::Receiver<bool>) {
    let mailer = match Mailer::new(&config.transport, config.connections, config.timeout) {
        Ok(m) => m,
        Err(e) => {
            error!(error = %e, "email cannot be sent: the SMTP configuration is wrong; emails stay in the outbox");
            return;
        }
    };
    let from: Mailbox = match config.from.parse() {
        Ok(m) => m,
        Err(e) => {
            error!(from = %config.from, error = %e, "email cannot be sent: the From address is wrong");
            return;
        }
    };
    info!(node = rt.node(), transport = %config.transport.describe(), templates = %config.templates.display(), "email dispatcher started");
    let (marks, marker) = Marker::start(rt.store().clone());
    let d = Arc::new(Dispatcher {
        composer: Composer {
            store: rt.store().clone(),
            templates: Templates::new(&config.templates, config.time_zone),
            from,
            base_url: config.base_url.clone(),
            variable_domains: config.variable_domains.clone(),
        },
        rt,
        mailer,
        smtp_slots: Semaphore::new(config.connections.max(1) as usize),
        config,
        marks,
        server_down: Mutex::new(None),
    });
    loop {
        if *shutdown.borrow() {
            break;
        }
        let taken = match d.clone().round(&shutdown).await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "email round failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let down = *d.server_down.lock().expect("server state");
        if let Some((until, _)) = down
            && until > d.rt.now()
        {
            let pause = (until - d.rt.now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        if taken > 0 {
            continue;
        }
        let sleep = match d.rt.store().next_outbox_due().await {
            Ok(Some(next)) => (next - d.rt.now()).to_std().unwrap_or(Duration::ZERO).min(d.config.max_sleep),
            Ok(None) => d.config.max_sleep,
            Err(e) => {
                warn!(error = %e, "cannot read the next email due time");
                Duration::from_millis(500)
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = d.rt.wakers().outbox.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    d.mailer.shutdown().await;
    drop(d);
    let _ = marker.await;
    info!("email dispatcher stopped");
}

struct Dispatcher {
    rt: Runtime,
    mailer: Mailer,
    composer: Composer,
    config: EmailConfig,
    marks: Marks,
    /// Set while the SMTP server cannot be reached: (retry at, current pause).
    server_down: Mutex<Option<(Ts, Duration)>>,
    /// SMTP exchanges in flight, at most `connections`.
    smtp_slots: Semaphore,
}

impl Dispatcher {
    /// Takes the due rows and works them off. Returns how many.
    async fn round(self: Arc<Self>, shutdown: &watch::Receiver<bool>) -> Result<usize, StoreError> {
        let now = self.rt.now();
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(60));
        let rows = self.rt.store().lease_outbox(self.rt.node(), now, now + lease, self.config.batch).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        debug!(rows = rows.len(), "emails taken");
        let count = rows.len();
        let taken = tokio::time::Instant::now();
        let mut set = JoinSet::new();
        // Every row of the round is worked on at once: composing reads the database, and after
        // the send each email waits for group commits (its outcome, its instance's report).
        // Only the SMTP exchange itself is limited, to `connections` at a time.
        for row in rows {
            let d = self.clone();
            let stop = shutdown.clone();
            let span = info_span!("email", email = %row.id, instance = %row.instance_id, attempt = row.attempts + 1);
            set.spawn(async move { d.work(row, taken, stop).await }.instrument(span));
        }
        while let Some(result) = set.join_next().await {
            if let Err(e) = result {
                warn!(error = %e, "email task panicked");
            }
        }
        Ok(count)
    }

    fn server_is_down(&self) -> bool {
        self.server_down.lock().expect("server state").is_some_and(|(until, _)| until > self.rt.now())
    }

    async fn work(&self, row: OutboxRow, taken: tokio::time::Instant, stop: watch::Receiver<bool>) {
        match row.state.as_str() {
            "accepted" => self.report_sent(&row).await,
            "rejected" => {
                let message = row.last_error.clone().unwrap_or_else(|| "the email was not delivered".into());
                self.report_failed(&row.instance_id, row.job_key, &row.id, &message).await
            }
            _ => self.deliver(row, taken, stop).await,
        }
    }

    async fn deliver(&self, row: OutboxRow, taken: tokio::time::Instant, stop: watch::Receiver<bool>) {
        let message = match self.composer.compose(&row).await {
            Ok(m) => m,
            Err(ComposeError::Permanent(reason)) => return self.reject(&row, &reason).await,
            Err(ComposeError::Store(e)) => {
                warn!(email = %row.id, error = %e, "cannot read what the email needs; retrying");
                let due = self.rt.now() + chrono::Duration::seconds(1);
                return self.record(OutboxMark::Retry { id: row.id, due, error: e.to_string() }).await;
            }
        };
        let slot = self.smtp_slots.acquire().await.expect("the semaphore is never closed");
        // Not started yet: give it back for a later round (or another node) when stopping, when
        // the server is known to be down, or when too little of the lease is left to finish.
        if *stop.borrow() || self.server_is_down() || taken.elapsed() > self.config.lease / 2 {
            return self.record(OutboxMark::Release { id: row.id }).await;
        }
        let sent = self.mailer.send(&row.id, &message).await;
        drop(slot);
        match sent {
            Ok(()) => {
                *self.server_down.lock().expect("server state") = None;
                COUNTERS.sent.fetch_add(1, Ordering::Relaxed);
                if !self.record_durably(OutboxMark::Accepted { id: row.id.clone(), at: self.rt.now() }).await {
                    error!(email = %row.id, "sent, but the database did not record it; it may be sent again after the lease");
                    return;
                }
                debug!(email = %row.id, message_id = %row.message_id, "email sent");
                self.report_sent(&row).await;
            }
            Err(SendError::Temporary { message, connection }) => {
                COUNTERS.retried.fetch_add(1, Ordering::Relaxed);
                let delay = backoff(self.config.retry_min, self.config.retry_max, row.attempts);
                if connection {
                    self.note_server_down();
                }
                warn!(email = %row.id, attempt = row.attempts + 1, retry_in = ?delay, error = %message, "email not sent; will retry");
                let due = self.rt.now() + chrono::Duration::from_std(delay).unwrap_or_default();
                self.record(OutboxMark::Retry { id: row.id, due, error: message }).await;
            }
            Err(SendError::Permanent(reason)) => {
                self.reject(&row, &format!("the SMTP server refused it: {reason}")).await
            }
        }
    }

    /// The server could not be reached: pause sending (doubling up to `retry_max`) rather than
    /// fail every email of the round one by one.
    fn note_server_down(&self) {
        let mut down = self.server_down.lock().expect("server state");
        let pause = match *down {
            Some((_, pause)) => (pause * 2).min(self.config.retry_max),
            None => self.config.retry_min,
        };
        let until = self.rt.now() + chrono::Duration::from_std(pause).unwrap_or_default();
        if down.is_none_or(|(u, _)| u < until) {
            *down = Some((until, pause));
        }
    }

    async fn reject(&self, row: &OutboxRow, reason: &str) {
        COUNTERS.failed.fetch_add(1, Ordering::Relaxed);
        warn!(email = %row.id, instance = %row.instance_id, error = %reason, "email failed permanently; raising an incident");
        let new_id = format!("{}!failed-{}", row.id, self.rt.now().timestamp_millis());
        let mark = OutboxMark::Rejected { id: row.id.clone(), new_id: new_id.clone(), error: reason.to_string() };
        if self.record_durably(mark).await {
            self.report_failed(&row.instance_id, row.job_key, &new_id, reason).await;
        }
    }

    /// Tells the instance its email went out; a send task moves on.
    async fn report_sent(&self, row: &OutboxRow) {
        let command = Command::CompleteJob { job: row.job_key, variables: Default::default() };
        if self.report(&row.instance_id, command).await {
            // Not waited for: if it is lost, the row is reported again and then marked.
            self.marks.record_later(OutboxMark::Sent { id: row.id.clone() });
        }
    }

    /// Tells the instance its email failed for good: an incident on the element.
    async fn report_failed(&self, instance: &str, job: u32, id: &str, reason: &str) {
        let message = format!("the email was not delivered: {reason}");
        let command = Command::FailJob { job, message, retryable: false };
        if self.report(instance, command).await {
            self.marks.record_later(OutboxMark::Failed { id: id.to_string() });
        }
    }

    /// True when the instance has the outcome: it took it, or no longer waits for it.
    async fn report(&self, instance: &str, command: Command) -> bool {
        match self.rt.submit(Op::Instance { id: instance.to_string(), command }).await {
            Ok(_) => true,
            Err(DriverError::Rejected(r)) => {
                debug!(instance, rejection = %r, "the instance no longer waits for this email");
                true
            }
            Err(DriverError::NotFound(_)) => true,
            Err(e) => {
                // The row stays leased; after the lease it is taken and reported again.
                warn!(instance, error = %e, "cannot report the email's outcome yet; will retry");
                false
            }
        }
    }

    async fn record(&self, mark: OutboxMark) {
        if let Err(e) = self.marks.record(mark).await {
            warn!(error = %e, "cannot record an email's state; its lease will expire and it is taken again");
        }
    }

    /// Records a delivery outcome, retrying a failing database for a while: losing this record
    /// means sending twice.
    async fn record_durably(&self, mark: OutboxMark) -> bool {
        let mut pause = Duration::from_millis(50);
        for _ in 0..10 {
            match self.marks.record(mark.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    warn!(error = %e, "cannot record an email's outcome; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        false
    }
}

/// `min · 2^attempts`, at most `max`.
pub fn backoff(min: Duration, max: Duration, attempts: i64) -> Duration {
    let factor = 2u32.saturating_pow(attempts.clamp(0, 30) as u32);
    min.saturating_mul(factor).min(max)
}

type MarkReply = oneshot::Sender<Result<(), String>>;

/// Group commit for outbox marks: everything queued while one transaction commits goes into
/// the next one, so many sends cost one commit.
#[derive(Debug, Clone)]
struct Marks {
    tx: mpsc::Sender<(OutboxMark, MarkReply)>,
}

impl Marks {
    async fn record(&self, mark: OutboxMark) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((mark, reply)).await.map_err(|_| "the email marker stopped".to_string())?;
        answer.await.map_err(|_| "the email marker stopped".to_string())?
    }

    /// Queues a mark for the next group commit without waiting for it.
    fn record_later(&self, mark: OutboxMark) {
        let (reply, _) = oneshot::channel();
        if self.tx.try_send((mark, reply)).is_err() {
            debug!("the email marker is busy; a mark is left for the next round");
        }
    }
}

struct Marker;

impl Marker {
    fn start(store: Store) -> (Marks, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<(OutboxMark, MarkReply)>(4096);
        let handle = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 1024 {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let marks: Vec<OutboxMark> = batch.iter().map(|(m, _)| m.clone()).collect();
                let result = store.record_outbox(&marks).await.map_err(|e| e.to_string());
                for (_, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        });
        (Marks { tx }, handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (min, max) = (Duration::from_secs(5), Duration::from_secs(60));
        let delays: Vec<u64> = (0..6).map(|a| backoff(min, max, a).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(min, max, 1_000_000), max);
    }

    #[test]
    fn config_from_the_settings() {
        let settings = Settings {
            smtp_url: Some("smtp://127.0.0.1:2525?tls=none".into()),
            base_url: "https://reglament.example.org".into(),
            definitions: PathBuf::from("defs"),
            lease: Duration::from_secs(4),
            ..Settings::defaults()
        };
        let e = EmailConfig::from_settings(&settings);
        assert_eq!(e.transport, Transport::Smtp { url: "smtp://127.0.0.1:2525?tls=none".into() });
        assert_eq!(e.base_url, "https://reglament.example.org");
        assert_eq!(e.templates, PathBuf::from("defs/templates"));
        assert_eq!(e.timeout, Duration::from_secs(2));
        let files = EmailConfig::from_settings(&Settings::defaults());
        assert_eq!(files.transport, Transport::Files { dir: PathBuf::from("mail-out") });
        assert_eq!(files.base_url, "http://127.0.0.1:8080");
    }
}
