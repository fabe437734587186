//! Users, groups, API tokens, idempotency keys and the process registry; and the read queries the
//! HTTP API needs beyond the driver's (the inbox of what a user may see, claims, reports, gauges).
//!
//! Tokens are stored only as SHA-256 hashes (hex); whoever reads the database cannot sign in.

use std::collections::BTreeMap;

use super::{Arg, InboxSort, Pool, Result, Store, TASK_COLUMNS_T, TaskRecord, TaskRow, Ts, Tx, from_ms, ms};

/// An API token as admins see it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub label: Option<String>,
    pub created_at: Ts,
    /// When it stops working; `None`: never.
    pub expires_at: Option<Ts>,
}

/// A user and the groups they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub login: String,
    pub name: Option<String>,
    pub email: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub created_at: Ts,
}

impl UserRecord {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// What a write with an `Idempotency-Key` finds when it begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// The key is new (or its earlier attempt was abandoned): run the request.
    Fresh,
    /// An earlier request with this key is still running.
    InProgress,
    /// An earlier request finished: replay its stored response.
    Done { status: u16, body: String },
}

/// Sort orders of the general task query: the sort key is ascending, ties by task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOrder {
    Due,
    Created,
    /// Highest priority first (Zeebe's default priority 50 when none is set).
    Priority,
}

impl TaskOrder {
    /// The keyset value of a row in this order.
    pub fn key_of(self, task: &TaskRow) -> i64 {
        match self {
            TaskOrder::Due => task.sort_key(InboxSort::Due),
            TaskOrder::Created => task.sort_key(InboxSort::Created),
            TaskOrder::Priority => -task.priority.unwrap_or(DEFAULT_PRIORITY),
        }
    }

    fn sql(self) -> &'static str {
        match self {
            TaskOrder::Due => "COALESCE(t.due, 9223372036854775807)",
            TaskOrder::Created => "t.created_at",
            TaskOrder::Priority => "(0 - COALESCE(t.priority, 50))",
        }
    }
}

pub const DEFAULT_PRIORITY: i64 = 50;

/// The tasks a user may see: assigned to them, offered to one of their groups or to them by name.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub login: String,
    pub groups: Vec<String>,
}

/// A task query with the visibility rule applied in SQL.
#[derive(Debug, Clone)]
pub struct TaskQuery {
    pub viewer: Viewer,
    pub state: String,
    /// Only tasks offered to this group.
    pub group: Option<String>,
    /// Only tasks assigned to the viewer.
    pub assigned_to_me: bool,
    /// Only tasks due strictly before this instant.
    pub due_before: Option<Ts>,
    pub order: TaskOrder,
    /// Keyset: (sort key, task id) of the last row of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// One row of the process registry: a deployed definition key with its registry fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub key: String,
    pub version: i64,
    pub name: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub updated_at: Ts,
}

/// Deadline keeping of one group of instances or tasks in a period.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaRow {
    pub key: String,
    pub total: i64,
    pub completed: i64,
    pub on_time: i64,
    pub overdue: i64,
    /// Mean duration of the completed ones, in milliseconds.
    pub average_ms: Option<f64>,
}

/// A `users` row as stored.
#[derive(Debug, sqlx::FromRow)]
struct UserRow {
    login: String,
    name: Option<String>,
    email: String,
    disabled: i64,
    created_at: i64,
}
type RegistryTuple = (String, i64, Option<String>, Option<String>, Option<i64>);
type SlaTuple = (String, i64, i64, i64, i64, Option<f64>);

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

impl Store {
    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        let _: (i64,) = on_pool!(&self.pool, |c| sqlx::query_as("SELECT CAST(1 AS BIGINT)").fetch_one(c).await?);
        Ok(())
    }

    // ---- users and groups -----------------------------------------------------------------

    /// Adds a user with their groups. False (and nothing written) when the login exists.
    pub async fn create_user(&self, user: &UserRecord) -> Result<bool> {
        let mut tx = self.begin().await?;
        if !tx.write_user(user, false).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Changes a user's name, email and groups. False when there is no such user.
    pub async fn update_user(&self, user: &UserRecord) -> Result<bool> {
        let mut tx = self.begin().await?;
        let updated = on!(&mut tx, |c| sqlx::query("UPDATE users SET name = $2, email = $3 WHERE login = $1")
            .bind(&user.login)
            .bind(&user.name)
            .bind(&user.email)
            .execute(c)
            .await?
            .rows_affected());
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.replace_groups(&user.login, &user.groups).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn user(&self, login: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT login, name, email, disabled, created_at FROM users WHERE login = $1"
        )
        .bind(login)
        .fetch_optional(c)
        .await?);
        match row {
            Some(row) => Ok(Some(self.with_groups(row).await?)),
            None => Ok(None),
        }
    }

    /// All users, by login, with their groups (two queries, not one per user).
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT login, name, email, disabled, created_at FROM users ORDER BY login"
        )
        .fetch_all(c)
        .await?);
        let memberships: Vec<(String, String)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT login, group_name FROM user_groups ORDER BY login, group_name"
        )
        .fetch_all(c)
        .await?);
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (login, group) in memberships {
            groups.entry(login).or_default().push(group);
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let g = groups.remove(&row.login).unwrap_or_default();
                user_from(row, g)
            })
            .collect())
    }

    /// Groups with their member counts, by name.
    pub async fn groups(&self) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT group_name, COUNT(*) FROM user_groups GROUP BY group_name ORDER BY group_name"
        )
        .fetch_all(c)
        .await?);
        Ok(rows)
    }

    async fn with_groups(&self, row: UserRow) -> Result<UserRecord> {
        let groups: Vec<(String,)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT group_name FROM user_groups WHERE login = $1 ORDER BY group_name"
        )
        .bind(&row.login)
        .fetch_all(c)
        .await?);
        Ok(user_from(row, groups.into_iter().map(|g| g.0).collect()))
    }

    // ---- tokens ---------------------------------------------------------------------------

    /// Stores a token's hash for a user; from `expires` on (if given) it is refused.
    pub async fn insert_token(
        &self,
        hash: &str,
        login: &str,
        label: Option<&str>,
        now: Ts,
        expires: Option<Ts>,
    ) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO tokens (hash, login, label, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(hash)
        .bind(login)
        .bind(label)
        .bind(ms(now))
        .bind(expires.map(ms))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The tokens of a user, oldest first: the token's id (the first 16 hex digits of its
    /// hash: enough to name it, useless to sign in with), its label, when it was issued and
    /// when it expires.
    pub async fn tokens_of(&self, login: &str) -> Result<Vec<TokenInfo>> {
        let rows: Vec<(String, Option<String>, i64, Option<i64>)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT substr(hash, 1, 16), label, created_at, expires_at FROM tokens WHERE login = $1 \
             ORDER BY created_at, hash"
        )
        .bind(login)
        .fetch_all(c)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(id, label, created, expires)| TokenInfo {
                id,
                label,
                created_at: from_ms(created),
                expires_at: expires.map(from_ms),
            })
            .collect())
    }

    /// Revokes a user's token by its id (see [`Store::tokens_of`]); false when there is none.
    pub async fn revoke_token(&self, login: &str, id: &str) -> Result<bool> {
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let n =
            on_pool!(&self.pool, |c| sqlx::query("DELETE FROM tokens WHERE login = $1 AND substr(hash, 1, 16) = $2")
                .bind(login)
                .bind(id)
                .execute(c)
                .await?
                .rows_affected());
        Ok(n > 0)
    }

    /// Disables or enables a user; false when there is no such login. A disabled user's tokens
    /// and sessions are refused by every lookup (they stay stored, and work again on enable),
    /// and rules no longer send them email.
    pub async fn set_disabled(&self, login: &str, disabled: bool) -> Result<bool> {
        let n = on_pool!(&self.pool, |c| sqlx::query("UPDATE users SET disabled = $2 WHERE login = $1")
            .bind(login)
            .bind(i64::from(disabled))
            .execute(c)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// The enabled user a token hash belongs to, unless the token has expired by `now`.
    pub async fn user_by_token_hash(&self, hash: &str, now: Ts) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
            "SELECT u.login, u.name, u.email, u.disabled, u.created_at FROM tokens t JOIN users u ON u.login = t.login \
             WHERE t.hash = $1 AND u.disabled = 0 AND (t.expires_at IS NULL OR t.expires_at > $2)"
        )
        .bind(hash)
        .bind(ms(now))
        .fetch_optional(c)
        .await?
        });
        match row {
            Some(row) => Ok(Some(self.with_groups(row).await?)),
            None => Ok(None),
        }
    }

    // ---- idempotency keys -----------------------------------------------------------------

    /// Claims `(login, key)` for a request. An attempt still marked running but older than
    /// `abandoned_before` (its server died or it timed out) is taken over.
    pub async fn idempotency_begin(
        &self,
        login: &str,
        key: &str,
        now: Ts,
        abandoned_before: Ts,
    ) -> Result<IdempotencyStart> {
        let inserted = on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO idempotency (login, key, status, body, created_at) VALUES ($1, $2, 0, '', $3) \
             ON CONFLICT (login, key) DO NOTHING"
        )
        .bind(login)
        .bind(key)
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        if inserted == 1 {
            return Ok(IdempotencyStart::Fresh);
        }
        let row: Option<(i64, String, i64)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT status, body, created_at FROM idempotency WHERE login = $1 AND key = $2"
        )
        .bind(login)
        .bind(key)
        .fetch_optional(c)
        .await?);
        let Some((status, body, created_at)) = row else {
            // Abandoned and removed between our two statements: try once more.
            return Box::pin(self.idempotency_begin(login, key, now, abandoned_before)).await;
        };
        if status != 0 {
            return Ok(IdempotencyStart::Done { status: status as u16, body });
        }
        if created_at >= ms(abandoned_before) {
            return Ok(IdempotencyStart::InProgress);
        }
        let taken = on_pool!(&self.pool, |c| {
            sqlx::query(
            "UPDATE idempotency SET created_at = $3 WHERE login = $1 AND key = $2 AND status = 0 AND created_at = $4"
        )
        .bind(login)
        .bind(key)
        .bind(ms(now))
        .bind(created_at)
        .execute(c)
        .await?
        .rows_affected()
        });
        Ok(if taken == 1 { IdempotencyStart::Fresh } else { IdempotencyStart::InProgress })
    }

    /// Records the response of a request begun with [`Store::idempotency_begin`].
    pub async fn idempotency_finish(&self, login: &str, key: &str, status: u16, body: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query(
            "UPDATE idempotency SET status = $3, body = $4 WHERE login = $1 AND key = $2"
        )
        .bind(login)
        .bind(key)
        .bind(i64::from(status))
        .bind(body)
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Forgets a running attempt (it failed on the server's side), so a retry runs again.
    pub async fn idempotency_abandon(&self, login: &str, key: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM idempotency WHERE login = $1 AND key = $2 AND status = 0")
            .bind(login)
            .bind(key)
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---- tasks ----------------------------------------------------------------------------

    /// Assigns an open task to `login` if nobody else holds it. False: not open, or claimed by
    /// someone else.
    pub async fn claim_task(&self, id: &str, login: &str) -> Result<bool> {
        let n = on_pool!(&self.pool, |c| {
            sqlx::query(
            "UPDATE tasks SET assignee = $2 WHERE id = $1 AND state = 'open' AND (assignee IS NULL OR assignee = $2)"
        )
        .bind(id)
        .bind(login)
        .execute(c)
        .await?
        .rows_affected()
        });
        Ok(n == 1)
    }

    /// Sets (or clears) the assignee of an open task if it is still held by `expected`.
    /// False: not open, or the assignee changed meanwhile.
    pub async fn reassign_task(&self, id: &str, expected: Option<&str>, assignee: Option<&str>) -> Result<bool> {
        let n = on_pool!(&self.pool, |c| sqlx::query(
            "UPDATE tasks SET assignee = $2 WHERE id = $1 AND state = 'open' \
             AND (($3 = '' AND assignee IS NULL) OR assignee = $3)"
        )
        .bind(id)
        .bind(assignee)
        .bind(expected.unwrap_or(""))
        .execute(c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Tasks a viewer may see, filtered and ordered, after a keyset cursor.
    pub async fn visible_tasks(&self, q: &TaskQuery) -> Result<Vec<TaskRow>> {
        let sort = q.order.sql();
        let mut args: Vec<Arg> = Vec::new();
        let mut arg = |a: Arg| {
            args.push(a);
            format!("${}", args.len())
        };
        let mut sql =
            format!("SELECT {TASK_COLUMNS_T} FROM tasks t WHERE t.state = {}", arg(Arg::Text(q.state.clone())));
        let login = arg(Arg::Text(q.viewer.login.clone()));
        let mut visible = vec![
            format!("t.assignee = {login}"),
            "(t.assignee IS NULL AND t.candidate_groups = '' AND t.candidate_users = '')".to_string(),
        ];
        if !q.viewer.groups.is_empty() {
            let list: Vec<String> = q.viewer.groups.iter().map(|g| arg(Arg::Text(g.clone()))).collect();
            visible.push(format!(
                "EXISTS (SELECT 1 FROM task_groups g WHERE g.task_id = t.id AND g.group_name IN ({}))",
                list.join(", ")
            ));
        }
        let like = arg(Arg::Text(format!("%,{},%", escape_like(&q.viewer.login))));
        visible.push(format!("(',' || t.candidate_users || ',') LIKE {like} ESCAPE '\\'"));
        sql.push_str(&format!(" AND ({})", visible.join(" OR ")));
        if q.assigned_to_me {
            sql.push_str(&format!(" AND t.assignee = {login}"));
        }
        if let Some(group) = &q.group {
            let g = arg(Arg::Text(group.clone()));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM task_groups x WHERE x.task_id = t.id AND x.group_name = {g})"
            ));
        }
        if let Some(before) = q.due_before {
            sql.push_str(&format!(" AND t.due IS NOT NULL AND t.due < {}", arg(Arg::Int(ms(before)))));
        }
        if let Some((key, id)) = &q.after {
            let k = arg(Arg::Int(*key));
            let i = arg(Arg::Text(id.clone()));
            sql.push_str(&format!(" AND ({sort} > {k} OR ({sort} = {k} AND t.id > {i}))"));
        }
        let limit = arg(Arg::Int(i64::from(q.limit.clamp(1, 500))));
        sql.push_str(&format!(" ORDER BY {sort}, t.id LIMIT {limit}"));
        let rows: Vec<TaskRecord> = fetch_all_args!(&self.pool, &sql, &args);
        Ok(rows.into_iter().map(TaskRow::from_record).collect())
    }

    /// Open tasks whose due time has passed.
    pub async fn count_overdue_tasks(&self, now: Ts) -> Result<i64> {
        let row: (i64,) = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT COUNT(*) FROM tasks WHERE state = 'open' AND due IS NOT NULL AND due < $1"
        )
        .bind(ms(now))
        .fetch_one(c)
        .await?);
        Ok(row.0)
    }

    /// Emails written to the outbox and not yet sent.
    pub async fn count_pending_outbox(&self) -> Result<i64> {
        let row: (i64,) =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
                .fetch_one(c)
                .await?);
        Ok(row.0)
    }

    /// The oldest due time among instance timers (the scheduler's backlog starts there).
    pub async fn oldest_timer_due(&self) -> Result<Option<Ts>> {
        let row: (Option<i64>,) =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT MIN(due) FROM timers").fetch_one(c).await?);
        Ok(row.0.map(from_ms))
    }

    // ---- registry and reports -------------------------------------------------------------

    /// The process registry: one entry per deployed key (latest version), by key.
    pub async fn registry_entries(&self) -> Result<Vec<RegistryEntry>> {
        let rows: Vec<RegistryTuple> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
                "SELECT d.key, d.version, d.name, r.fields, r.updated_at FROM definitions d \
                 LEFT JOIN registry r ON r.definition_key = d.key \
                 WHERE d.version = (SELECT MAX(version) FROM definitions x WHERE x.key = d.key) \
                 UNION ALL \
                 SELECT r.definition_key, 0, NULL, r.fields, r.updated_at FROM registry r \
                 WHERE NOT EXISTS (SELECT 1 FROM definitions d WHERE d.key = r.definition_key) \
                 ORDER BY 1",
            )
            .fetch_all(c)
            .await?
        });
        rows.into_iter()
            .map(|(key, version, name, fields, updated_at)| {
                let fields: BTreeMap<String, String> = match fields {
                    Some(f) => serde_json::from_str(&f)
                        .map_err(|e| super::StoreError::Corrupt(format!("registry of `{key}`: {e}")))?,
                    None => BTreeMap::new(),
                };
                // A process entered in the registry but not deployed as a model carries its name
                // among the fields.
                let name = name.or_else(|| fields.get("name").cloned());
                Ok(RegistryEntry { key, version, name, fields, updated_at: from_ms(updated_at.unwrap_or(0)) })
            })
            .collect()
    }

    /// Deadline keeping of top-level instances started in `[from, to)`, per definition key.
    pub async fn sla_by_definition(&self, from: Ts, to: Ts, now: Ts) -> Result<Vec<SlaRow>> {
        let rows: Vec<SlaTuple> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
                "SELECT definition_key, COUNT(*), \
                 CAST(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN deadline IS NOT NULL AND status = 'completed' AND ended_at <= deadline THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN deadline IS NOT NULL AND ((status = 'completed' AND ended_at > deadline) \
                      OR (status = 'active' AND deadline < $3)) THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(AVG(CASE WHEN status = 'completed' THEN CAST(ended_at - started_at AS DOUBLE PRECISION) END) AS DOUBLE PRECISION) \
                 FROM instances WHERE started_at >= $1 AND started_at < $2 AND parent_id IS NULL \
                 GROUP BY definition_key ORDER BY definition_key",
            )
            .bind(ms(from))
            .bind(ms(to))
            .bind(ms(now))
            .fetch_all(c)
            .await?
        });
        Ok(rows.into_iter().map(sla_from).collect())
    }

    /// Deadline keeping of user tasks created in `[from, to)`, per candidate group.
    pub async fn sla_by_group(&self, from: Ts, to: Ts, now: Ts) -> Result<Vec<SlaRow>> {
        let rows: Vec<SlaTuple> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
                "SELECT g.group_name, COUNT(*), \
                 CAST(SUM(CASE WHEN t.state = 'completed' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN t.due IS NOT NULL AND t.state = 'completed' AND t.completed_at <= t.due THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN t.due IS NOT NULL AND ((t.state = 'completed' AND t.completed_at > t.due) \
                      OR (t.state = 'open' AND t.due < $3)) THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(AVG(CASE WHEN t.state = 'completed' THEN CAST(t.completed_at - t.created_at AS DOUBLE PRECISION) END) AS DOUBLE PRECISION) \
                 FROM task_groups g JOIN tasks t ON t.id = g.task_id \
                 WHERE t.created_at >= $1 AND t.created_at < $2 \
                 GROUP BY g.group_name ORDER BY g.group_name",
            )
            .bind(ms(from))
            .bind(ms(to))
            .bind(ms(now))
            .fetch_all(c)
            .await?
        });
        Ok(rows.into_iter().map(sla_from).collect())
    }
}

fn user_from(row: UserRow, groups: Vec<String>) -> UserRecord {
    UserRecord {
        login: row.login,
        name: row.name,
        email: row.email,
        groups,
        disabled: row.disabled != 0,
        created_at: from_ms(row.created_at),
    }
}

fn sla_from(t: SlaTuple) -> SlaRow {
    SlaRow { key: t.0, total: t.1, completed: t.2, on_time: t.3, overdue: t.4, average_ms: t.5 }
}

impl Tx {
    /// Inserts a user with their groups. An existing login is left alone (false), or with
    /// `update_existing` gets the new name, email and groups (its tokens and state stay).
    pub(super) async fn write_user(&mut self, user: &UserRecord, update_existing: bool) -> Result<bool> {
        let on_conflict =
            if update_existing { "DO UPDATE SET name = excluded.name, email = excluded.email" } else { "DO NOTHING" };
        let sql = format!(
            "INSERT INTO users (login, name, email, disabled, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (login) {on_conflict}"
        );
        let written = on!(self, |c| sqlx::query(&sql)
            .bind(&user.login)
            .bind(&user.name)
            .bind(&user.email)
            .bind(i64::from(user.disabled))
            .bind(ms(user.created_at))
            .execute(c)
            .await?
            .rows_affected());
        if written == 0 {
            return Ok(false);
        }
        self.replace_groups(&user.login, &user.groups).await?;
        Ok(true)
    }

    pub(super) async fn replace_groups(&mut self, login: &str, groups: &[String]) -> Result<()> {
        on!(self, |c| sqlx::query("DELETE FROM user_groups WHERE login = $1")
            .bind(login)
            .execute(c)
            .await?
            .rows_affected());
        for group in groups {
            on!(self, |c| sqlx::query(
                "INSERT INTO user_groups (login, group_name) VALUES ($1, $2) ON CONFLICT (login, group_name) DO NOTHING"
            )
            .bind(login)
            .bind(group)
            .execute(c)
            .await?
            .rows_affected());
        }
        Ok(())
    }
}
