//! The rows one driver batch changes, collected and then written with one multi-row statement
//! per kind — a few statements per batch instead of several per command, which is what lets
//! throughput approach the disk's commit ceiling.
//!
//! Order inside `flush` matters and is fixed: instance revision checks first (a concurrent
//! writer makes us fail before writing anything else), then inserts, then updates and deletes
//! (a task created and completed in the same batch is inserted before it is closed).

use super::{Result, Ts, Tx, ms};

/// A value bound into a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
}

impl Val {
    fn is_int(&self) -> bool {
        matches!(self, Val::Int(_) | Val::OptInt(_))
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::OptInt(i) => *i,
            Val::Text(_) | Val::OptText(_) => None,
        }
    }

    fn as_text(&self) -> Option<String> {
        match self {
            Val::Text(s) => Some(s.clone()),
            Val::OptText(s) => s.clone(),
            Val::Int(_) | Val::OptInt(_) => None,
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_string())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}

impl From<Option<&str>> for Val {
    fn from(s: Option<&str>) -> Val {
        Val::OptText(s.map(str::to_owned))
    }
}

impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Val {
        Val::OptText(s)
    }
}

impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}

impl From<u32> for Val {
    fn from(i: u32) -> Val {
        Val::Int(i64::from(i))
    }
}

impl From<Option<i64>> for Val {
    fn from(i: Option<i64>) -> Val {
        Val::OptInt(i)
    }
}

impl From<Ts> for Val {
    fn from(t: Ts) -> Val {
        Val::Int(ms(t))
    }
}

impl From<Option<Ts>> for Val {
    fn from(t: Option<Ts>) -> Val {
        Val::OptInt(t.map(ms))
    }
}

/// A typed row a batch writes: its values in the order of the columns its statement names.
pub trait WriteRow {
    fn values(&self) -> Vec<Val>;
}

fn values_of<R: WriteRow>(rows: &[R]) -> Vec<Vec<Val>> {
    rows.iter().map(WriteRow::values).collect()
}

/// An instance as a batch leaves it (inserted or updated).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceWrite {
    pub id: String,
    pub definition_key: String,
    pub version: i64,
    pub business_key: Option<String>,
    pub status: String,
    pub incident: bool,
    /// The state document (`codec::encode_state`).
    pub state: String,
    pub parent_id: Option<String>,
    pub started_at: Ts,
    pub ended_at: Option<Ts>,
    pub deadline: Option<Ts>,
    pub history_len: i64,
    /// Who started it (inserts only; updates leave the column as it is).
    pub started_by: Option<String>,
}

impl WriteRow for InstanceWrite {
    fn values(&self) -> Vec<Val> {
        vec![
            self.id.clone().into(),
            self.definition_key.clone().into(),
            self.version.into(),
            self.business_key.clone().into(),
            self.status.clone().into(),
            i64::from(self.incident).into(),
            self.state.clone().into(),
            self.parent_id.clone().into(),
            self.started_at.into(),
            self.ended_at.into(),
            self.deadline.into(),
            self.history_len.into(),
            self.started_by.clone().into(),
        ]
    }
}

/// One command's events appended to an instance's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryWrite {
    pub instance_id: String,
    pub seq: i64,
    pub at: Ts,
    /// The events (`codec::encode_events`).
    pub events: String,
}

impl WriteRow for HistoryWrite {
    fn values(&self) -> Vec<Val> {
        vec![self.instance_id.clone().into(), self.seq.into(), self.at.into(), self.events.clone().into()]
    }
}

/// A user task opened.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWrite {
    pub id: String,
    pub instance_id: String,
    pub task_key: u32,
    pub definition_key: String,
    pub element_id: String,
    pub name: Option<String>,
    pub assignee: Option<String>,
    pub candidate_groups: Vec<String>,
    pub candidate_users: Vec<String>,
    pub due: Option<Ts>,
    pub priority: Option<i64>,
    pub created_at: Ts,
}

impl WriteRow for TaskWrite {
    fn values(&self) -> Vec<Val> {
        vec![
            self.id.clone().into(),
            self.instance_id.clone().into(),
            self.task_key.into(),
            self.definition_key.clone().into(),
            self.element_id.clone().into(),
            self.name.clone().into(),
            "open".into(),
            self.assignee.clone().into(),
            self.candidate_groups.join(",").into(),
            self.candidate_users.join(",").into(),
            self.due.into(),
            self.priority.into(),
            self.created_at.into(),
        ]
    }
}

/// A task's entry in the inbox index of one candidate group.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskGroupWrite {
    pub group: String,
    pub task_id: String,
    /// The due instant in milliseconds, `i64::MAX` without one (sorts last).
    pub due_sort: i64,
    pub created_at: Ts,
}

impl WriteRow for TaskGroupWrite {
    fn values(&self) -> Vec<Val> {
        vec![
            self.group.clone().into(),
            self.task_id.clone().into(),
            "open".into(),
            self.due_sort.into(),
            self.created_at.into(),
        ]
    }
}

/// How an open task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    Completed,
    Cancelled,
}

impl TaskEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEnd::Completed => "completed",
            TaskEnd::Cancelled => "cancelled",
        }
    }
}

/// An open task closed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskClose {
    pub task_id: String,
    pub end: TaskEnd,
    pub at: Ts,
    pub by: Option<String>,
}

impl WriteRow for TaskClose {
    fn values(&self) -> Vec<Val> {
        vec![self.task_id.clone().into(), self.end.as_str().into(), self.at.into(), self.by.clone().into()]
    }
}

/// A timer (re)scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerWrite {
    pub instance_id: String,
    pub timer_key: u32,
    pub due: Ts,
}

impl WriteRow for TimerWrite {
    fn values(&self) -> Vec<Val> {
        vec![self.instance_id.clone().into(), self.timer_key.into(), self.due.into()]
    }
}

/// A row of an instance's timers or subscriptions named by its key (for deletes).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceKey {
    pub instance_id: String,
    pub key: u32,
}

impl WriteRow for InstanceKey {
    fn values(&self) -> Vec<Val> {
        vec![self.instance_id.clone().into(), self.key.into()]
    }
}

/// A message subscription opened.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionWrite {
    pub instance_id: String,
    pub sub_key: u32,
    pub name: String,
    pub correlation_key: String,
    pub created_at: Ts,
}

impl WriteRow for SubscriptionWrite {
    fn values(&self) -> Vec<Val> {
        vec![
            self.instance_id.clone().into(),
            self.sub_key.into(),
            self.name.clone().into(),
            self.correlation_key.clone().into(),
            self.created_at.into(),
        ]
    }
}

/// Work for a worker queued: an email of the outbox or a job (same columns).
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedWrite {
    pub id: String,
    pub instance_id: String,
    pub job_key: u32,
    /// The email's `Message-ID`, or the job's type.
    pub kind: String,
    pub payload: String,
    pub due: Ts,
    pub created_at: Ts,
}

impl WriteRow for QueuedWrite {
    fn values(&self) -> Vec<Val> {
        vec![
            self.id.clone().into(),
            self.instance_id.clone().into(),
            self.job_key.into(),
            self.kind.clone().into(),
            self.payload.clone().into(),
            "pending".into(),
            self.due.into(),
            self.created_at.into(),
        ]
    }
}

/// A job queued for its worker (built-in or external).
#[derive(Debug, Clone, PartialEq)]
pub struct JobWrite {
    pub id: String,
    pub instance_id: String,
    pub job_key: u32,
    pub job_type: String,
    pub payload: String,
    pub due: Ts,
    pub created_at: Ts,
    /// Failures a worker may report before the job becomes an incident.
    pub retries: u32,
}

impl WriteRow for JobWrite {
    fn values(&self) -> Vec<Val> {
        vec![
            self.id.clone().into(),
            self.instance_id.clone().into(),
            self.job_key.into(),
            self.job_type.clone().into(),
            self.payload.clone().into(),
            "pending".into(),
            self.due.into(),
            self.created_at.into(),
            self.retries.into(),
        ]
    }
}

/// A pending job or email of an instance finished (`done`) or withdrawn (`cancelled`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobFinish {
    pub instance_id: String,
    pub job_key: u32,
    pub state: &'static str,
}

impl WriteRow for JobFinish {
    fn values(&self) -> Vec<Val> {
        vec![self.instance_id.clone().into(), self.job_key.into(), self.state.into()]
    }
}

/// Everything one batch writes.
#[derive(Debug, Default)]
pub struct Writes {
    /// (row, expected revision) for instances that existed before the batch.
    pub instance_updates: Vec<(InstanceWrite, i64)>,
    pub instance_inserts: Vec<InstanceWrite>,
    pub history: Vec<HistoryWrite>,
    pub tasks: Vec<TaskWrite>,
    pub task_groups: Vec<TaskGroupWrite>,
    pub task_closes: Vec<TaskClose>,
    pub timer_inserts: Vec<TimerWrite>,
    pub timer_deletes: Vec<InstanceKey>,
    pub subscription_inserts: Vec<SubscriptionWrite>,
    pub subscription_deletes: Vec<InstanceKey>,
    pub outbox: Vec<QueuedWrite>,
    pub jobs: Vec<JobWrite>,
    pub job_finishes: Vec<JobFinish>,
    /// Acts of people done by the batch's commands (`Op::Audited`), in its transaction.
    pub audit: Vec<crate::audit::AuditEntry>,
    /// Instances cancelled in this batch: their leftovers are swept.
    pub cancelled: Vec<String>,
    /// The batch's time (for the tasks a cancellation closes).
    pub now: Ts,
}

impl WriteRow for crate::audit::AuditEntry {
    fn values(&self) -> Vec<Val> {
        vec![
            self.at.into(),
            self.actor.clone().into(),
            self.address.clone().into(),
            self.action.clone().into(),
            self.target.clone().into(),
            self.instance_id.clone().into(),
            self.details.to_string().into(),
        ]
    }
}

impl Tx {
    /// Records acts inside this transaction: they commit, or vanish, with the act itself.
    pub async fn record_audit(&mut self, entries: &[crate::audit::AuditEntry]) -> Result<()> {
        self.insert_rows("audit_log", crate::audit::AUDIT_COLUMNS, crate::audit::AUDIT_WIDTH, entries).await.map(|_| ())
    }
}

/// Columns of an instance row, in the order `instance_updates`/`instance_inserts` use.
pub const INSTANCE_COLUMNS: &str = "id, definition_key, version, business_key, status, incident, state, parent_id, \
     started_at, ended_at, deadline, history_len, started_by";
const INSTANCE_WIDTH: usize = 13;

/// Most parameters one statement binds (SQLite allows 32,766; PostgreSQL 65,535).
const MAX_PARAMS: usize = 30_000;

impl Tx {
    /// Writes a batch. `Ok(false)`: an instance changed under us (conflict); nothing useful
    /// was written and the caller rolls back.
    pub async fn flush(&mut self, w: &Writes) -> Result<bool> {
        if !w.instance_updates.is_empty() {
            // id, status, incident, state, ended_at, deadline, history_len, expected rev
            let rows: Vec<Vec<Val>> = w
                .instance_updates
                .iter()
                .map(|(r, rev)| {
                    vec![
                        r.id.clone().into(),
                        r.status.clone().into(),
                        i64::from(r.incident).into(),
                        r.state.clone().into(),
                        r.ended_at.into(),
                        r.deadline.into(),
                        r.history_len.into(),
                        Val::Int(*rev),
                    ]
                })
                .collect();
            let updated = self
                .many(
                    "UPDATE instances SET status = v.column2, incident = v.column3, rev = instances.rev + 1, \
                     state = v.column4, ended_at = v.column5, deadline = v.column6, history_len = v.column7 FROM (",
                    &rows,
                    ") AS v WHERE instances.id = v.column1 AND instances.rev = v.column8",
                )
                .await?;
            if updated != rows.len() as u64 {
                return Ok(false);
            }
        }
        if !w.instance_inserts.is_empty() {
            let rows: Vec<Vec<Val>> = w
                .instance_inserts
                .iter()
                .map(|r| r.values().into_iter().chain(std::iter::once(Val::Int(1))).collect())
                .collect();
            self.insert("instances", &format!("{INSTANCE_COLUMNS}, rev"), INSTANCE_WIDTH + 1, &rows, "").await?;
        }
        self.insert("history", "instance_id, seq, at, events", 4, &values_of(&w.history), "").await?;
        self.insert_rows("audit_log", crate::audit::AUDIT_COLUMNS, crate::audit::AUDIT_WIDTH, &w.audit).await?;
        self.insert(
            "tasks",
            "id, instance_id, task_key, definition_key, element_id, name, state, assignee, candidate_groups, \
             candidate_users, due, priority, created_at",
            13,
            &values_of(&w.tasks),
            "",
        )
        .await?;
        self.insert(
            "task_groups",
            "group_name, task_id, state, due_sort, created_at",
            5,
            &values_of(&w.task_groups),
            "",
        )
        .await?;
        self.insert(
            "timers",
            "instance_id, timer_key, due",
            3,
            &values_of(&w.timer_inserts),
            " ON CONFLICT (instance_id, timer_key) DO UPDATE SET due = excluded.due, lease_owner = NULL, lease_until = NULL",
        )
        .await?;
        self.insert(
            "subscriptions",
            "instance_id, sub_key, name, correlation_key, created_at",
            5,
            &values_of(&w.subscription_inserts),
            " ON CONFLICT (instance_id, sub_key) DO NOTHING",
        )
        .await?;
        self.insert(
            "outbox",
            "id, instance_id, job_key, message_id, payload, state, due, created_at",
            8,
            &values_of(&w.outbox),
            " ON CONFLICT (id) DO NOTHING",
        )
        .await?;
        self.insert(
            "jobs",
            "id, instance_id, job_key, job_type, payload, state, due, created_at, retries",
            9,
            &values_of(&w.jobs),
            // The same element run again (an incident resolved) queues its job afresh.
            " ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, state = 'pending', attempts = 0, \
             due = excluded.due, lease_owner = NULL, lease_until = NULL, last_error = NULL, \
             retries = excluded.retries, activation_key = NULL",
        )
        .await?;
        if !w.task_closes.is_empty() {
            self.many(
                "UPDATE tasks SET state = v.column2, completed_at = v.column3, completed_by = v.column4 FROM (",
                &values_of(&w.task_closes),
                ") AS v WHERE tasks.id = v.column1 AND tasks.state = 'open'",
            )
            .await?;
            let ids: Vec<Vec<Val>> =
                w.task_closes.iter().map(|c| vec![c.task_id.clone().into(), c.end.as_str().into()]).collect();
            self.many(
                "UPDATE task_groups SET state = v.column2 FROM (",
                &ids,
                ") AS v WHERE task_groups.task_id = v.column1",
            )
            .await?;
        }
        self.many(
            "DELETE FROM timers WHERE (instance_id, timer_key) IN (SELECT column1, column2 FROM (",
            &values_of(&w.timer_deletes),
            ") AS v)",
        )
        .await?;
        self.many(
            "DELETE FROM subscriptions WHERE (instance_id, sub_key) IN (SELECT column1, column2 FROM (",
            &values_of(&w.subscription_deletes),
            ") AS v)",
        )
        .await?;
        for table in ["jobs", "outbox"] {
            self.many(
                &format!("UPDATE {table} SET state = v.column3 FROM ("),
                &values_of(&w.job_finishes),
                &format!(
                    ") AS v WHERE {table}.instance_id = v.column1 AND {table}.job_key = v.column2 AND {table}.state = 'pending'"
                ),
            )
            .await?;
        }
        for id in &w.cancelled {
            self.cancel_open_tasks(id, w.now).await?;
            self.clear_waits(id).await?;
        }
        Ok(true)
    }

    /// `INSERT INTO table (columns) VALUES (…), (…) tail`, in chunks.
    /// Inserts `rows` of a [`WriteRow`] type.
    pub(crate) async fn insert_rows<R: WriteRow>(
        &mut self,
        table: &str,
        columns: &str,
        width: usize,
        rows: &[R],
    ) -> Result<u64> {
        self.insert(table, columns, width, &values_of(rows), "").await
    }

    async fn insert(&mut self, table: &str, columns: &str, width: usize, rows: &[Vec<Val>], tail: &str) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if let Some(sql_rows) = self.unnest(rows) {
            return self.bind_columns(&format!("INSERT INTO {table} ({columns}) {sql_rows}{tail}"), rows).await;
        }
        let mut total = 0;
        for chunk in rows.chunks((MAX_PARAMS / width).max(1)) {
            let sql =
                format!("INSERT INTO {table} ({columns}) {}{tail}", values_clause(chunk.len(), width, self.numbered()));
            total += self.bind_all(&sql, chunk).await?;
        }
        Ok(total)
    }

    /// `head VALUES (…), (…) tail`, in chunks (for UPDATE … FROM and DELETE … IN).
    async fn many(&mut self, head: &str, rows: &[Vec<Val>], tail: &str) -> Result<u64> {
        let Some(width) = rows.first().map(Vec::len) else { return Ok(0) };
        if let Some(sql_rows) = self.unnest(rows) {
            return self.bind_columns(&format!("{head}{sql_rows}{tail}"), rows).await;
        }
        let mut total = 0;
        for chunk in rows.chunks((MAX_PARAMS / width).max(1)) {
            let sql = format!("{head}{}{tail}", values_clause(chunk.len(), width, self.numbered()));
            total += self.bind_all(&sql, chunk).await?;
        }
        Ok(total)
    }

    /// On PostgreSQL, rows go as one array per column: `SELECT * FROM UNNEST($1::text[],
    /// $2::int8[]) AS u(column1, column2)`, a row source usable wherever `VALUES` is. The text
    /// depends only on the column types, never on the row count, so each statement is prepared
    /// once per connection and its plan reused — with `VALUES` every batch size was a new
    /// statement to parse, plan and prepare.
    fn unnest(&self, rows: &[Vec<Val>]) -> Option<String> {
        if !matches!(self, Tx::Postgres(_)) {
            return None;
        }
        let first = rows.first()?;
        let mut sql = String::from("SELECT * FROM UNNEST(");
        for (i, v) in first.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let ty = if v.is_int() { "int8" } else { "text" };
            sql.push_str(&format!("${}::{ty}[]", i + 1));
        }
        sql.push_str(") AS u(");
        for i in 0..first.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("column{}", i + 1));
        }
        sql.push(')');
        Some(sql)
    }

    /// Binds `rows` column by column, as arrays (see [`Tx::unnest`]).
    async fn bind_columns(&mut self, sql: &str, rows: &[Vec<Val>]) -> Result<u64> {
        let Tx::Postgres(tx) = self else { unreachable!("column arrays are for PostgreSQL") };
        let width = rows.first().map_or(0, Vec::len);
        let mut q = sqlx::query(sql);
        for c in 0..width {
            if rows[0][c].is_int() {
                let column: Vec<Option<i64>> = rows.iter().map(|r| r[c].as_int()).collect();
                q = q.bind(column);
            } else {
                let column: Vec<Option<String>> = rows.iter().map(|r| r[c].as_text()).collect();
                q = q.bind(column);
            }
        }
        Ok(q.execute(&mut **tx).await?.rows_affected())
    }

    /// PostgreSQL needs numbered parameters (`$1`); SQLite gets plain `?`, because sqlx looks
    /// numbered SQLite parameters up by name, which is quadratic in their count.
    fn numbered(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    async fn bind_all(&mut self, sql: &str, rows: &[Vec<Val>]) -> Result<u64> {
        Ok(on!(self, |c| {
            let mut q = sqlx::query(sql);
            for row in rows {
                for v in row {
                    q = match v {
                        Val::Text(s) => q.bind(s.clone()),
                        Val::OptText(s) => q.bind(s.clone()),
                        Val::Int(i) => q.bind(*i),
                        Val::OptInt(i) => q.bind(*i),
                    };
                }
            }
            q.execute(c).await?.rows_affected()
        }))
    }
}

/// `VALUES ($1, $2), ($3, $4)` (or with `?`) for `rows` rows of `width` columns.
fn values_clause(rows: usize, width: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(rows * width * 5 + 8);
    sql.push_str("VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if numbered {
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_clause_numbers_parameters_in_order() {
        assert_eq!(super::values_clause(2, 3, true), "VALUES ($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values_clause(1, 2, false), "VALUES (?, ?)");
    }
}
