//! The outbox and the directory that email recipient rules read.
//!
//! An outbox row is written by the driver in the same transaction as the state change that
//! queued the email (`state = 'pending'`, id `INSTANCE.KEY`). The dispatcher
//! (the server's email dispatcher) then moves it along:
//!
//! ```text
//! pending ──SMTP accepted──► accepted ──instance told (CompleteJob)──► sent
//!    │  ▲                                                              
//!    │  └── temporary failure: attempts + 1, due = now + backoff       
//!    └────permanent failure──► rejected ──instance told (FailJob)────► failed
//! ```
//!
//! `accepted` and `rejected` mean "the outcome is recorded, the instance has not heard it yet":
//! the dispatcher leases them like due rows and reports again, so a crash between recording and
//! reporting loses nothing (a repeated report is refused by the instance and ignored). A
//! rejected row is renamed (`INSTANCE.KEY!failed-MS`) so that when the incident is resolved and
//! the email task runs again, the driver's new row can take the id `INSTANCE.KEY`.
//!
//! Rows are taken with a lease, as timers are (`FOR UPDATE SKIP LOCKED` on PostgreSQL).

use super::{Pool, Result, Store, TASK_COLUMNS, TaskRecord, TaskRow, Ts, Tx, from_ms, ms};

/// One outbox row as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: String,
    pub instance_id: String,
    pub job_key: u32,
    pub message_id: String,
    /// The engine's `Email`, as JSON.
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub due: Ts,
    pub last_error: Option<String>,
    pub created_at: Ts,
    pub sent_at: Option<Ts>,
}

/// An `outbox` row as stored (times in milliseconds).
#[derive(Debug, sqlx::FromRow)]
struct OutboxRecord {
    id: String,
    instance_id: String,
    job_key: i64,
    message_id: String,
    payload: String,
    state: String,
    attempts: i64,
    due: i64,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
}

const OUTBOX_COLUMNS: &str =
    "id, instance_id, job_key, message_id, payload, state, attempts, due, last_error, created_at, sent_at";

impl OutboxRow {
    fn from_record(r: OutboxRecord) -> OutboxRow {
        OutboxRow {
            id: r.id,
            instance_id: r.instance_id,
            job_key: r.job_key as u32,
            message_id: r.message_id,
            payload: r.payload,
            state: r.state,
            attempts: r.attempts,
            due: from_ms(r.due),
            last_error: r.last_error,
            created_at: from_ms(r.created_at),
            sent_at: r.sent_at.map(from_ms),
        }
    }
}

/// An outcome the dispatcher records for a row it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxMark {
    /// The SMTP server accepted the message (or it was written to the mail folder).
    Accepted { id: String, at: Ts },
    /// The instance was told the email went out.
    Sent { id: String },
    /// A temporary failure: try again at `due`.
    Retry { id: String, due: Ts, error: String },
    /// A permanent failure; the row is renamed to `new_id` to free its id for a new attempt.
    Rejected { id: String, new_id: String, error: String },
    /// The instance was told the email failed (an incident is raised).
    Failed { id: String },
    /// Give the row back untouched (e.g. its lease ran too short to start sending safely).
    Release { id: String },
}

impl OutboxMark {
    fn statement(&self) -> &'static str {
        match self {
            OutboxMark::Accepted { .. } => {
                "UPDATE outbox SET state = CASE WHEN state = 'pending' THEN 'accepted' ELSE state END, \
                 sent_at = $2, attempts = attempts + 1 WHERE id = $1"
            }
            OutboxMark::Sent { .. } => {
                "UPDATE outbox SET state = CASE WHEN state = 'accepted' THEN 'sent' ELSE state END, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1"
            }
            OutboxMark::Retry { .. } => {
                "UPDATE outbox SET attempts = attempts + 1, due = $2, last_error = $3, lease_owner = NULL, \
                 lease_until = NULL WHERE id = $1 AND state = 'pending'"
            }
            OutboxMark::Rejected { .. } => {
                "UPDATE outbox SET id = $2, state = 'rejected', last_error = $3, attempts = attempts + 1 \
                 WHERE id = $1 AND state = 'pending'"
            }
            OutboxMark::Failed { .. } => {
                "UPDATE outbox SET state = CASE WHEN state = 'rejected' THEN 'failed' ELSE state END, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1"
            }
            OutboxMark::Release { .. } => "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE id = $1",
        }
    }
}

/// A person an email can go to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Contact {
    pub login: String,
    pub name: Option<String>,
    pub email: String,
    pub disabled: bool,
}

type ContactTuple = (String, Option<String>, String, i64);

fn contacts(rows: Vec<ContactTuple>) -> Vec<Contact> {
    rows.into_iter()
        .map(|(login, name, email, disabled)| Contact { login, name, email, disabled: disabled != 0 })
        .collect()
}

impl Store {
    /// Takes up to `limit` outbox rows that need work — due pending emails, and outcomes not
    /// yet reported to their instance — not leased by a live node, leasing them to `owner`
    /// until `until`. Oldest first.
    pub async fn lease_outbox(&self, owner: &str, now: Ts, until: Ts, limit: i64) -> Result<Vec<OutboxRow>> {
        let skip = if self.is_postgres() { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE id IN ( \
             SELECT id FROM outbox WHERE state IN ('pending', 'accepted', 'rejected') AND due <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY due LIMIT $4 {skip}) RETURNING {OUTBOX_COLUMNS}"
        );
        let rows: Vec<OutboxRecord> = on_pool!(&self.pool, |c| sqlx::query_as(&sql)
            .bind(owner)
            .bind(ms(until))
            .bind(ms(now))
            .bind(limit)
            .fetch_all(c)
            .await?);
        let mut rows: Vec<OutboxRow> = rows.into_iter().map(OutboxRow::from_record).collect();
        rows.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        Ok(rows)
    }

    /// When the next outbox row can be taken: its due time, or the expiry of its lease.
    pub async fn next_outbox_due(&self) -> Result<Option<Ts>> {
        let row: (Option<i64>,) = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > due THEN lease_until ELSE due END) \
             FROM outbox WHERE state IN ('pending', 'accepted', 'rejected')"
        )
        .fetch_one(c)
        .await?);
        Ok(row.0.map(from_ms))
    }

    /// Records outcomes, all in one transaction (one commit for many emails).
    pub async fn record_outbox(&self, marks: &[OutboxMark]) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for mark in marks {
            let sql = mark.statement();
            on!(&mut tx, |c| {
                let q = sqlx::query(sql);
                let q = match mark {
                    OutboxMark::Accepted { id, at } => q.bind(id).bind(ms(*at)),
                    OutboxMark::Retry { id, due, error } => q.bind(id).bind(ms(*due)).bind(error),
                    OutboxMark::Rejected { id, new_id, error } => q.bind(id).bind(new_id).bind(error),
                    OutboxMark::Sent { id } | OutboxMark::Failed { id } | OutboxMark::Release { id } => q.bind(id),
                };
                q.execute(c).await?.rows_affected()
            });
        }
        tx.commit().await
    }

    pub async fn outbox_row(&self, id: &str) -> Result<Option<OutboxRow>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        let row: Option<OutboxRecord> =
            on_pool!(&self.pool, |c| sqlx::query_as(&sql).bind(id).fetch_optional(c).await?);
        Ok(row.map(OutboxRow::from_record))
    }

    /// The emails of an instance, oldest first.
    pub async fn outbox_of_instance(&self, instance: &str) -> Result<Vec<OutboxRow>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE instance_id = $1 ORDER BY created_at, id");
        let rows: Vec<OutboxRecord> =
            on_pool!(&self.pool, |c| sqlx::query_as(&sql).bind(instance).fetch_all(c).await?);
        Ok(rows.into_iter().map(OutboxRow::from_record).collect())
    }

    /// Outbox rows per state (`pending`, `sent`, `failed`, …), for /metrics.
    pub async fn count_outbox_by_state(&self) -> Result<Vec<(String, i64)>> {
        Ok(on_pool!(&self.pool, |c| sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state ORDER BY state")
            .fetch_all(c)
            .await?))
    }

    /// Active instances stopped by at least one incident.
    pub async fn count_open_incidents(&self) -> Result<i64> {
        let row: (i64,) = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT COUNT(*) FROM instances WHERE incident = 1 AND status = 'active'"
        )
        .fetch_one(c)
        .await?);
        Ok(row.0)
    }

    /// Emails delivered and reported (`sent`), for the benchmark.
    pub async fn count_sent_emails(&self) -> Result<i64> {
        let row: (i64,) = on_pool!(&self.pool, |c| sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE state = 'sent'")
            .fetch_one(c)
            .await?);
        Ok(row.0)
    }

    /// The definition key and business key of an instance (what email templates show).
    pub async fn instance_keys(&self, id: &str) -> Result<Option<(String, Option<String>)>> {
        Ok(on_pool!(&self.pool, |c| sqlx::query_as("SELECT definition_key, business_key FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(c)
            .await?))
    }

    /// The newest task of an element in an instance (open or not).
    pub async fn task_of_element(&self, instance: &str, element: &str) -> Result<Option<TaskRow>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = $1 AND element_id = $2 \
             ORDER BY CASE WHEN state = 'open' THEN 0 ELSE 1 END, created_at DESC, task_key DESC LIMIT 1"
        );
        let row: Option<TaskRecord> =
            on_pool!(&self.pool, |c| sqlx::query_as(&sql).bind(instance).bind(element).fetch_optional(c).await?);
        Ok(row.map(TaskRow::from_record))
    }

    /// The most recently created open task of an instance.
    pub async fn newest_open_task(&self, instance: &str) -> Result<Option<TaskRow>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = $1 AND state = 'open' \
             ORDER BY created_at DESC, task_key DESC LIMIT 1"
        );
        let row: Option<TaskRecord> =
            on_pool!(&self.pool, |c| sqlx::query_as(&sql).bind(instance).fetch_optional(c).await?);
        Ok(row.map(TaskRow::from_record))
    }

    // ---- the directory ----------------------------------------------------------------------

    pub async fn contact(&self, login: &str) -> Result<Option<Contact>> {
        let row: Option<ContactTuple> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT login, name, email, disabled FROM users WHERE login = $1")
                .bind(login)
                .fetch_optional(c)
                .await?);
        Ok(contacts(row.into_iter().collect()).pop())
    }

    /// Enabled members of a group (`user_groups`), by login.
    pub async fn group_contacts(&self, group: &str) -> Result<Vec<Contact>> {
        let rows: Vec<ContactTuple> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT u.login, u.name, u.email, u.disabled FROM user_groups g JOIN users u ON u.login = g.login \
             WHERE g.group_name = $1 AND u.disabled = 0 ORDER BY u.login"
        )
        .bind(group)
        .fetch_all(c)
        .await?);
        Ok(contacts(rows))
    }

    /// Enabled holders of a role, by login.
    pub async fn role_contacts(&self, role: &str) -> Result<Vec<Contact>> {
        let rows: Vec<ContactTuple> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT u.login, u.name, u.email, u.disabled FROM roles r JOIN users u ON u.login = r.login \
             WHERE r.role = $1 AND u.disabled = 0 ORDER BY u.login"
        )
        .bind(role)
        .fetch_all(c)
        .await?);
        Ok(contacts(rows))
    }

    /// Enabled members of a unit, by login.
    pub async fn unit_contacts(&self, unit: &str) -> Result<Vec<Contact>> {
        let rows: Vec<ContactTuple> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT u.login, u.name, u.email, u.disabled FROM unit_members m JOIN users u ON u.login = m.login \
             WHERE m.unit_id = $1 AND u.disabled = 0 ORDER BY u.login"
        )
        .bind(unit)
        .fetch_all(c)
        .await?);
        Ok(contacts(rows))
    }

    /// A unit: (name, head login, parent id).
    pub async fn unit(&self, id: &str) -> Result<Option<(String, Option<String>, Option<String>)>> {
        Ok(on_pool!(&self.pool, |c| sqlx::query_as("SELECT name, head_login, parent_id FROM units WHERE id = $1")
            .bind(id)
            .fetch_optional(c)
            .await?))
    }

    /// The units a person belongs to (as a member or as the head), by id.
    pub async fn units_of(&self, login: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT unit_id FROM unit_members WHERE login = $1 UNION SELECT id FROM units WHERE head_login = $1 \
             ORDER BY 1"
        )
        .bind(login)
        .fetch_all(c)
        .await?);
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}
