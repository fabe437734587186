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

/// Builds a row from values of mixed types.
#[macro_export]
macro_rules! row {
    ($($v:expr),* $(,)?) => { vec![$($crate::writes::Val::from($v)),*] };
}

/// Everything one batch writes.
#[derive(Debug, Default)]
pub struct Writes {
    /// (row, expected revision) for instances that existed before the batch.
    pub instance_updates: Vec<(Vec<Val>, i64)>,
    pub instance_inserts: Vec<Vec<Val>>,
    pub history: Vec<Vec<Val>>,
    pub tasks: Vec<Vec<Val>>,
    pub task_groups: Vec<Vec<Val>>,
    /// (task id, new state, at, by)
    pub task_closes: Vec<Vec<Val>>,
    pub timer_inserts: Vec<Vec<Val>>,
    pub timer_deletes: Vec<Vec<Val>>,
    pub subscription_inserts: Vec<Vec<Val>>,
    pub subscription_deletes: Vec<Vec<Val>>,
    pub outbox: Vec<Vec<Val>>,
    pub jobs: Vec<Vec<Val>>,
    /// (instance, job key, state)
    pub job_finishes: Vec<Vec<Val>>,
    /// Instances cancelled in this batch: their leftovers are swept.
    pub cancelled: Vec<String>,
    /// The batch's time (for the tasks a cancellation closes).
    pub now: Ts,
}

/// Columns of an instance row, in the order `instance_updates`/`instance_inserts` use.
pub const INSTANCE_COLUMNS: &str = "id, definition_key, version, business_key, status, incident, state, parent_id, \
     started_at, ended_at, deadline, history_len";
const INSTANCE_WIDTH: usize = 12;

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
                        r[0].clone(),
                        r[4].clone(),
                        r[5].clone(),
                        r[6].clone(),
                        r[9].clone(),
                        r[10].clone(),
                        r[11].clone(),
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
                .map(|r| r.iter().cloned().chain(std::iter::once(Val::Int(1))).collect())
                .collect();
            self.insert("instances", &format!("{INSTANCE_COLUMNS}, rev"), INSTANCE_WIDTH + 1, &rows, "").await?;
        }
        self.insert("history", "instance_id, seq, at, events", 4, &w.history, "").await?;
        self.insert(
            "tasks",
            "id, instance_id, task_key, definition_key, element_id, name, state, assignee, candidate_groups, \
             candidate_users, due, priority, created_at",
            13,
            &w.tasks,
            "",
        )
        .await?;
        self.insert("task_groups", "group_name, task_id, state, due_sort, created_at", 5, &w.task_groups, "").await?;
        self.insert(
            "timers",
            "instance_id, timer_key, due",
            3,
            &w.timer_inserts,
            " ON CONFLICT (instance_id, timer_key) DO UPDATE SET due = excluded.due, lease_owner = NULL, lease_until = NULL",
        )
        .await?;
        self.insert(
            "subscriptions",
            "instance_id, sub_key, name, correlation_key, created_at",
            5,
            &w.subscription_inserts,
            " ON CONFLICT (instance_id, sub_key) DO NOTHING",
        )
        .await?;
        self.insert(
            "outbox",
            "id, instance_id, job_key, message_id, payload, state, due, created_at",
            8,
            &w.outbox,
            " ON CONFLICT (id) DO NOTHING",
        )
        .await?;
        self.insert(
            "jobs",
            "id, instance_id, job_key, job_type, payload, state, due, created_at",
            8,
            &w.jobs,
            // The same element run again (an incident resolved) queues its job afresh.
            " ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, state = 'pending', attempts = 0, \
             due = excluded.due, lease_owner = NULL, lease_until = NULL, last_error = NULL",
        )
        .await?;
        if !w.task_closes.is_empty() {
            self.many(
                "UPDATE tasks SET state = v.column2, completed_at = v.column3, completed_by = v.column4 FROM (",
                &w.task_closes,
                ") AS v WHERE tasks.id = v.column1 AND tasks.state = 'open'",
            )
            .await?;
            let ids: Vec<Vec<Val>> = w.task_closes.iter().map(|r| vec![r[0].clone(), r[1].clone()]).collect();
            self.many(
                "UPDATE task_groups SET state = v.column2 FROM (",
                &ids,
                ") AS v WHERE task_groups.task_id = v.column1",
            )
            .await?;
        }
        self.many(
            "DELETE FROM timers WHERE (instance_id, timer_key) IN (SELECT column1, column2 FROM (",
            &w.timer_deletes,
            ") AS v)",
        )
        .await?;
        self.many(
            "DELETE FROM subscriptions WHERE (instance_id, sub_key) IN (SELECT column1, column2 FROM (",
            &w.subscription_deletes,
            ") AS v)",
        )
        .await?;
        for table in ["jobs", "outbox"] {
            self.many(
                &format!("UPDATE {table} SET state = v.column3 FROM ("),
                &w.job_finishes,
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
