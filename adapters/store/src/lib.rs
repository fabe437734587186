//! Storage on SQLite (embedded default, WAL) or PostgreSQL (several nodes), through sqlx.
//!
//! One schema, one set of SQL statements: both backends accept `$n` placeholders, `ON CONFLICT`
//! and `RETURNING`; the only statement that differs is the lease query, which adds
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL. Each method is written once and expanded for both
//! backends by the `on!` macro. Migrations live in `migrations/{sqlite,postgres}` with the same
//! numbering and are applied on connect.
//!
//! Times are stored as milliseconds since the epoch; JSON documents as text. The encoding of the
//! instance state and history is in [`codec`] (versioned, snapshot-tested).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// Runs `$body` with `$c` bound to the backend's connection (transaction or pool); the body is
/// written once and type-checked for each backend.
macro_rules! on {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite(tx) => {
                let $c = &mut **tx;
                $body
            }
            Tx::Postgres(tx) => {
                let $c = &mut **tx;
                $body
            }
        }
    };
}

macro_rules! on_pool {
    ($pool:expr, |$c:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite(p) => {
                let $c = p;
                $body
            }
            Pool::Postgres(p) => {
                let $c = p;
                $body
            }
        }
    };
}

/// Binds the arguments of a query built at run time ([`Arg`]), in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for a in $args {
            query = match a {
                $crate::Arg::Text(s) => query.bind(s.clone()),
                $crate::Arg::Int(i) => query.bind(*i),
            };
        }
        query
    }};
}

/// Runs a query built at run time, its arguments bound in order, and fetches all its rows.
macro_rules! fetch_all_args {
    ($pool:expr, $sql:expr, $args:expr) => {
        on_pool!($pool, |c| bind_args!(sqlx::query_as($sql), $args).fetch_all(c).await?)
    };
}

/// An argument of a query built at run time.
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

// Submodules see the macros above (declared after them on purpose).
pub mod audit;
pub mod auth;
pub mod codec;
pub mod directory;
pub mod jobs;
pub mod outbox;
pub mod web;
pub mod writes;

pub type Ts = DateTime<Utc>;

/// Milliseconds since the epoch, the stored form of an instant.
pub fn ms(t: Ts) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> Ts {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("`{0}` is not a database URL; use sqlite://FILE or postgres://…")]
    BadUrl(String),
}

impl StoreError {
    /// Errors worth retrying: lost connections, busy databases, serialization failures.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
                sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    // SQLite BUSY/LOCKED; PostgreSQL serialization, deadlock, admin shutdown, connection.
                    matches!(code.as_ref(), "5" | "6" | "517" | "40001" | "40P01" | "57P01" | "57P02" | "57P03")
                        || code.starts_with("08")
                }
                _ => false,
            },
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool to one backend.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

/// One transaction.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tx::Sqlite(_) => "Tx(sqlite)",
            Tx::Postgres(_) => "Tx(postgres)",
        })
    }
}

impl Store {
    /// Connects and applies the migrations. `sqlite://FILE` opens (creating) a WAL database
    /// with `synchronous=FULL`; `postgres://…` a pool of `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::BadUrl(url.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(false);
            let pool = SqlitePoolOptions::new().max_connections(max_connections.max(2)).connect_with(options).await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(|_| StoreError::BadUrl(url.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Pool::Postgres(pool)
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        Ok(Store { pool })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        on_pool!(&self.pool, |p| p.close().await)
    }

    // ---- reads outside transactions -------------------------------------------------------

    pub async fn instance(&self, id: &str) -> Result<Option<InstanceRow>> {
        let row: Option<InstanceRecord> =
            on_pool!(&self.pool, |c| sqlx::query_as(INSTANCE_SELECT).bind(id).fetch_optional(c).await?);
        row.map(InstanceRow::from_record).transpose()
    }

    pub async fn history(&self, id: &str) -> Result<Vec<(i64, Ts, String)>> {
        let rows: Vec<(i64, i64, String)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT seq, at, events FROM history WHERE instance_id = $1 ORDER BY seq"
        )
        .bind(id)
        .fetch_all(c)
        .await?);
        Ok(rows.into_iter().map(|(seq, at, events)| (seq, from_ms(at), events)).collect())
    }

    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let row: Option<TaskRecord> =
            on_pool!(&self.pool, |c| sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
                .bind(id)
                .fetch_optional(c)
                .await?);
        Ok(row.map(TaskRow::from_record))
    }

    /// The inbox: open/completed tasks of a candidate group or an assignee, in due or creation
    /// order, after `cursor` (keyset pagination: (sort value, id)).
    pub async fn inbox(&self, q: &InboxQuery) -> Result<Vec<TaskRow>> {
        let (sort_col_groups, sort_col_tasks) = match q.sort {
            InboxSort::Due => ("g.due_sort", "COALESCE(t.due, 9223372036854775807)"),
            InboxSort::Created => ("g.created_at", "t.created_at"),
        };
        let after = q.cursor.clone().unwrap_or((i64::MIN, String::new()));
        let limit = i64::from(q.limit.clamp(1, 500));
        let cols = TASK_COLUMNS_T;
        let rows: Vec<TaskRecord> = if let Some(group) = &q.group {
            let sql = format!(
                "SELECT {cols} FROM task_groups g JOIN tasks t ON t.id = g.task_id \
                 WHERE g.group_name = $1 AND g.state = $2 AND ({sort_col_groups} > $3 OR ({sort_col_groups} = $3 AND g.task_id > $4)) \
                 AND ($5 = '' OR t.assignee = $5) AND t.due_lt_placeholder \
                 ORDER BY {sort_col_groups}, g.task_id LIMIT $6"
            );
            let sql = sql.replace(" AND t.due_lt_placeholder", &due_before_clause(q.due_before, "t"));
            on_pool!(&self.pool, |c| sqlx::query_as(&sql)
                .bind(group)
                .bind(&q.state)
                .bind(after.0)
                .bind(&after.1)
                .bind(q.assignee.clone().unwrap_or_default())
                .bind(limit)
                .fetch_all(c)
                .await?)
        } else {
            let sql = format!(
                "SELECT {cols} FROM tasks t WHERE t.state = $1 AND ($2 = '' OR t.assignee = $2) \
                 AND ({sort_col_tasks} > $3 OR ({sort_col_tasks} = $3 AND t.id > $4)) AND t.due_lt_placeholder \
                 ORDER BY {sort_col_tasks}, t.id LIMIT $5"
            );
            let sql = sql.replace(" AND t.due_lt_placeholder", &due_before_clause(q.due_before, "t"));
            on_pool!(&self.pool, |c| sqlx::query_as(&sql)
                .bind(&q.state)
                .bind(q.assignee.clone().unwrap_or_default())
                .bind(after.0)
                .bind(&after.1)
                .bind(limit)
                .fetch_all(c)
                .await?)
        };
        Ok(rows.into_iter().map(TaskRow::from_record).collect())
    }

    /// Active instances standing on an incident, in id order after `after`, at most `limit`,
    /// of one definition key when given.
    pub async fn instances_with_incidents(
        &self,
        definition_key: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InstanceRow>> {
        let sql = INSTANCE_SELECT.replace(
            "WHERE id = $1",
            "WHERE incident = 1 AND status = 'active' AND id > $1 AND ($2 = '' OR definition_key = $2) \
             ORDER BY id LIMIT $3",
        );
        let rows: Vec<InstanceRecord> = on_pool!(&self.pool, |c| sqlx::query_as(&sql)
            .bind(after.unwrap_or(""))
            .bind(definition_key.unwrap_or(""))
            .bind(limit)
            .fetch_all(c)
            .await?);
        rows.into_iter().map(InstanceRow::from_record).collect()
    }

    /// Instances for the search (`GET /api/process-instances`), newest first by start time and
    /// then by id, strictly after the keyset `after` (start millis, id), at most `limit`. Only
    /// the filters given become conditions, so each query can use its index (migration 0015).
    pub async fn search_instances(
        &self,
        f: &InstanceSearch,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<InstanceRow>> {
        let mut args: Vec<Arg> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        let mut arg = |a: Arg| {
            args.push(a);
            format!("${}", args.len())
        };
        if let Some((at, id)) = after {
            // A row value: both backends seek the index to it rather than filter up to it.
            let (a, b) = (arg(Arg::Int(at)), arg(Arg::Text(id)));
            conds.push(format!("(started_at, id) < ({a}, {b})"));
        }
        if let Some(key) = &f.definition_key {
            conds.push(format!("definition_key = {}", arg(Arg::Text(key.clone()))));
        }
        if let Some(version) = f.version {
            conds.push(format!("version = {}", arg(Arg::Int(version))));
        }
        if let Some(status) = &f.status {
            conds.push(format!("status = {}", arg(Arg::Text(status.clone()))));
        }
        if let Some(incident) = f.incident {
            conds.push(format!("incident = {}", arg(Arg::Int(i64::from(incident)))));
        }
        if let Some(bk) = &f.business_key {
            conds.push(format!("business_key = {}", arg(Arg::Text(bk.clone()))));
        }
        if let Some(t) = f.started_after {
            conds.push(format!("started_at >= {}", arg(Arg::Int(t.timestamp_millis()))));
        }
        if let Some(t) = f.started_before {
            conds.push(format!("started_at < {}", arg(Arg::Int(t.timestamp_millis()))));
        }
        if let Some(t) = f.overdue_at {
            conds.push(format!("status = 'active' AND deadline < {}", arg(Arg::Int(t.timestamp_millis()))));
        }
        let limit_arg = arg(Arg::Int(limit));
        let filter = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
        let sql = INSTANCE_SELECT
            .replace("WHERE id = $1", &format!("{filter} ORDER BY started_at DESC, id DESC LIMIT {limit_arg}"));
        let rows: Vec<InstanceRecord> = fetch_all_args!(&self.pool, &sql, &args);
        rows.into_iter().map(InstanceRow::from_record).collect()
    }

    /// The latest deployed version of a definition key.
    pub async fn latest_version(&self, key: &str) -> Result<Option<i64>> {
        let row: (Option<i64>,) =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT MAX(version) FROM definitions WHERE key = $1")
                .bind(key)
                .fetch_one(c)
                .await?);
        Ok(row.0)
    }

    pub async fn definitions(&self) -> Result<Vec<DefinitionRow>> {
        let rows: Vec<DefinitionRecord> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT d.key, d.version, d.hash, d.name, d.deployed_at, d.deployed_by FROM definitions d \
             WHERE d.version = (SELECT MAX(version) FROM definitions x WHERE x.key = d.key) ORDER BY d.key"
        )
        .fetch_all(c)
        .await?);
        Ok(rows.into_iter().map(DefinitionRow::from_record).collect())
    }

    pub async fn definition_versions(&self, key: &str) -> Result<Vec<DefinitionRow>> {
        let rows: Vec<DefinitionRecord> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
            "SELECT key, version, hash, name, deployed_at, deployed_by FROM definitions WHERE key = $1 ORDER BY version"
        )
        .bind(key)
        .fetch_all(c)
        .await?
        });
        Ok(rows.into_iter().map(DefinitionRow::from_record).collect())
    }

    /// The XML of a definition version (`None`: the latest).
    pub async fn definition_xml(&self, key: &str, version: Option<i64>) -> Result<Option<(i64, String)>> {
        let row: Option<(i64, String)> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
            // No version: the latest. A version (even 0 or negative) names exactly that one.
            "SELECT version, xml FROM definitions WHERE key = $1 AND ($2 = 1 OR version = $3) ORDER BY version DESC LIMIT 1"
        )
        .bind(key)
        .bind(i64::from(version.is_none()))
        .bind(version.unwrap_or(0))
        .fetch_optional(c)
        .await?
        });
        Ok(row)
    }

    /// The Camunda Forms deployed with a definition version, by form id.
    pub async fn definition_forms(&self, key: &str, version: i64) -> Result<Vec<DefinitionForm>> {
        let rows: Vec<DefinitionForm> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
                "SELECT form_id, file_name, content FROM definition_forms WHERE definition_key = $1 AND version = $2 ORDER BY form_id",
            )
            .bind(key)
            .bind(version)
            .fetch_all(c)
            .await?
        });
        Ok(rows)
    }

    /// The next instant a timer or start timer can be taken: its due time, or the expiry of
    /// the lease another node holds on it.
    pub async fn next_due(&self) -> Result<Option<Ts>> {
        let row: (Option<i64>,) = on_pool!(&self.pool, |c| {
            sqlx::query_as(
            "SELECT MIN(d) FROM ( \
             SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > due THEN lease_until ELSE due END) AS d FROM timers \
             UNION ALL \
             SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > due THEN lease_until ELSE due END) FROM start_timers) x"
        )
        .fetch_one(c)
        .await?
        });
        Ok(row.0.map(from_ms))
    }

    pub async fn count(&self, sql_table: CountOf) -> Result<i64> {
        let sql = match sql_table {
            CountOf::Timers => "SELECT COUNT(*) FROM timers",
            CountOf::OpenTasks => "SELECT COUNT(*) FROM tasks WHERE state = 'open'",
            CountOf::ActiveInstances => "SELECT COUNT(*) FROM instances WHERE status = 'active'",
            CountOf::Instances => "SELECT COUNT(*) FROM instances",
        };
        let row: (i64,) = on_pool!(&self.pool, |c| sqlx::query_as(sql).fetch_one(c).await?);
        Ok(row.0)
    }

    /// Takes up to `limit` due timers not leased by a live node, leasing them to `owner`
    /// until `until`. On PostgreSQL, concurrent nodes skip each other's rows.
    pub async fn lease_due_timers(&self, owner: &str, now: Ts, until: Ts, limit: i64) -> Result<Vec<(String, u32)>> {
        let skip = if self.is_postgres() { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE timers SET lease_owner = $1, lease_until = $2 WHERE (instance_id, timer_key) IN ( \
             SELECT instance_id, timer_key FROM timers WHERE due <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY due LIMIT $4 {skip}) RETURNING instance_id, timer_key"
        );
        let rows: Vec<(String, i64)> = on_pool!(&self.pool, |c| sqlx::query_as(&sql)
            .bind(owner)
            .bind(ms(until))
            .bind(ms(now))
            .bind(limit)
            .fetch_all(c)
            .await?);
        Ok(rows.into_iter().map(|(i, k)| (i, k as u32)).collect())
    }

    pub async fn lease_due_start_timers(&self, owner: &str, now: Ts, until: Ts) -> Result<Vec<(String, String)>> {
        let skip = if self.is_postgres() { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE start_timers SET lease_owner = $1, lease_until = $2 WHERE (definition_key, element_id) IN ( \
             SELECT definition_key, element_id FROM start_timers WHERE due <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY due LIMIT 100 {skip}) RETURNING definition_key, element_id"
        );
        let rows: Vec<(String, String)> = on_pool!(&self.pool, |c| sqlx::query_as(&sql)
            .bind(owner)
            .bind(ms(until))
            .bind(ms(now))
            .fetch_all(c)
            .await?);
        Ok(rows)
    }

    /// Drops the leases a node holds (graceful shutdown), so others take the work at once.
    pub async fn release_leases(&self, owner: &str) -> Result<()> {
        for table in ["timers", "start_timers", "jobs", "outbox"] {
            let sql = format!("UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1");
            on_pool!(&self.pool, |c| sqlx::query(&sql).bind(owner).execute(c).await?.rows_affected());
        }
        Ok(())
    }
}

fn due_before_clause(due_before: Option<i64>, alias: &str) -> String {
    match due_before {
        Some(t) => format!(" AND {alias}.due IS NOT NULL AND {alias}.due < {t}"),
        None => String::new(),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum CountOf {
    Timers,
    OpenTasks,
    ActiveInstances,
    Instances,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxSort {
    Due,
    Created,
}

#[derive(Debug, Clone)]
pub struct InboxQuery {
    pub group: Option<String>,
    pub assignee: Option<String>,
    pub state: String,
    pub sort: InboxSort,
    pub due_before: Option<i64>,
    pub cursor: Option<(i64, String)>,
    pub limit: u32,
}

// ---- rows ---------------------------------------------------------------------------------

const INSTANCE_SELECT: &str = "SELECT id, definition_key, version, business_key, status, incident, rev, state, \
     parent_id, started_at, ended_at, deadline, history_len, started_by FROM instances WHERE id = $1";

/// The filters of the instance search; `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct InstanceSearch {
    pub definition_key: Option<String>,
    pub version: Option<i64>,
    /// The stored status: `active`, `completed` or `cancelled`.
    pub status: Option<String>,
    /// Only instances standing on an incident (`Some(true)`) or not (`Some(false)`).
    pub incident: Option<bool>,
    pub business_key: Option<String>,
    /// Started at or after.
    pub started_after: Option<Ts>,
    /// Started strictly before.
    pub started_before: Option<Ts>,
    /// Only active instances whose deadline is before this moment (now, for `overdue=true`).
    pub overdue_at: Option<Ts>,
}

/// An `instances` row as stored (times in milliseconds, the state as its document).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct InstanceRecord {
    id: String,
    definition_key: String,
    version: i64,
    business_key: Option<String>,
    status: String,
    incident: i64,
    rev: i64,
    state: String,
    parent_id: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
    deadline: Option<i64>,
    history_len: i64,
    started_by: Option<String>,
}

/// A stored instance: its state document and bookkeeping columns.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: String,
    pub definition_key: String,
    pub version: i64,
    pub business_key: Option<String>,
    pub status: String,
    pub incident: bool,
    pub rev: i64,
    pub state: reglament_engine::runtime::Instance,
    pub parent_id: Option<String>,
    pub started_at: Ts,
    pub ended_at: Option<Ts>,
    pub deadline: Option<Ts>,
    pub history_len: i64,
    /// The login that started it over the API or a page (`None` for timers, messages, calls).
    pub started_by: Option<String>,
}

impl InstanceRow {
    fn from_record(r: InstanceRecord) -> Result<InstanceRow> {
        let state = codec::decode_state(&r.state)?;
        Ok(InstanceRow {
            id: r.id,
            definition_key: r.definition_key,
            version: r.version,
            business_key: r.business_key,
            status: r.status,
            incident: r.incident != 0,
            rev: r.rev,
            state,
            parent_id: r.parent_id,
            started_at: from_ms(r.started_at),
            ended_at: r.ended_at.map(from_ms),
            deadline: r.deadline.map(from_ms),
            history_len: r.history_len,
            started_by: r.started_by,
        })
    }
}

const TASK_COLUMNS: &str = "id, instance_id, task_key, definition_key, element_id, name, state, assignee, \
     candidate_groups, candidate_users, due, priority, created_at, completed_at, completed_by";
const TASK_COLUMNS_T: &str = "t.id, t.instance_id, t.task_key, t.definition_key, t.element_id, t.name, t.state, \
     t.assignee, t.candidate_groups, t.candidate_users, t.due, t.priority, t.created_at, t.completed_at, t.completed_by";

/// A `tasks` row as stored (times in milliseconds, candidates comma-separated).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TaskRecord {
    id: String,
    instance_id: String,
    task_key: i64,
    definition_key: String,
    element_id: String,
    name: Option<String>,
    state: String,
    assignee: Option<String>,
    candidate_groups: String,
    candidate_users: String,
    due: Option<i64>,
    priority: Option<i64>,
    created_at: i64,
    completed_at: Option<i64>,
    completed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub instance_id: String,
    pub task_key: u32,
    pub definition_key: String,
    pub element_id: String,
    pub name: Option<String>,
    pub state: String,
    pub assignee: Option<String>,
    pub candidate_groups: Vec<String>,
    pub candidate_users: Vec<String>,
    pub due: Option<Ts>,
    pub priority: Option<i64>,
    pub created_at: Ts,
    pub completed_at: Option<Ts>,
    pub completed_by: Option<String>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect()
}

impl TaskRow {
    fn from_record(r: TaskRecord) -> TaskRow {
        TaskRow {
            id: r.id,
            instance_id: r.instance_id,
            task_key: r.task_key as u32,
            definition_key: r.definition_key,
            element_id: r.element_id,
            name: r.name,
            state: r.state,
            assignee: r.assignee,
            candidate_groups: split_list(&r.candidate_groups),
            candidate_users: split_list(&r.candidate_users),
            due: r.due.map(from_ms),
            priority: r.priority,
            created_at: from_ms(r.created_at),
            completed_at: r.completed_at.map(from_ms),
            completed_by: r.completed_by,
        }
    }

    /// The keyset cursor value of this row for a sort order.
    pub fn sort_key(&self, sort: InboxSort) -> i64 {
        match sort {
            InboxSort::Due => self.due.map(ms).unwrap_or(i64::MAX),
            InboxSort::Created => ms(self.created_at),
        }
    }
}

/// A `definition_forms` row: a Camunda Form deployed with a definition version.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DefinitionForm {
    pub form_id: String,
    pub file_name: String,
    /// The form's JSON, as deployed.
    pub content: String,
}

/// A `definitions` row without its XML.
#[derive(Debug, sqlx::FromRow)]
struct DefinitionRecord {
    key: String,
    version: i64,
    hash: String,
    name: Option<String>,
    deployed_at: i64,
    deployed_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DefinitionRow {
    pub key: String,
    pub version: i64,
    pub hash: String,
    pub name: Option<String>,
    pub deployed_at: Ts,
    pub deployed_by: Option<String>,
}

impl DefinitionRow {
    fn from_record(r: DefinitionRecord) -> DefinitionRow {
        DefinitionRow {
            key: r.key,
            version: r.version,
            hash: r.hash,
            name: r.name,
            deployed_at: from_ms(r.deployed_at),
            deployed_by: r.deployed_by,
        }
    }
}

// ---- writes inside transactions -----------------------------------------------------------

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// Runs a statement as given: for tooling and benchmarks, never with user input.
    pub async fn execute_sql(&mut self, sql: &str) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(sql).execute(c).await?.rows_affected()))
    }

    pub async fn instance(&mut self, id: &str) -> Result<Option<InstanceRow>> {
        let row: Option<InstanceRecord> =
            on!(self, |c| sqlx::query_as(INSTANCE_SELECT).bind(id).fetch_optional(c).await?);
        row.map(InstanceRow::from_record).transpose()
    }

    /// Updates an instance if it is still at `expected_rev`; false means another writer won.
    pub async fn update_instance(&mut self, row: &InstanceWrite<'_>, expected_rev: i64) -> Result<bool> {
        let done = on!(self, |c| {
            sqlx::query(
            "UPDATE instances SET status = $2, incident = $3, rev = rev + 1, state = $4, ended_at = $5, deadline = $6, \
             history_len = $7 WHERE id = $1 AND rev = $8"
        )
        .bind(row.id)
        .bind(row.status)
        .bind(i64::from(row.incident))
        .bind(&row.state)
        .bind(row.ended_at.map(ms))
        .bind(row.deadline.map(ms))
        .bind(row.history_len)
        .bind(expected_rev)
        .execute(c)
        .await?
        .rows_affected()
        });
        Ok(done == 1)
    }

    pub async fn cancel_open_tasks(&mut self, instance: &str, at: Ts) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE task_groups SET state = 'cancelled' WHERE state = 'open' AND task_id IN \
             (SELECT id FROM tasks WHERE instance_id = $1 AND state = 'open')"
        )
        .bind(instance)
        .execute(c)
        .await?
        .rows_affected());
        on!(self, |c| sqlx::query(
            "UPDATE tasks SET state = 'cancelled', completed_at = $2 WHERE instance_id = $1 AND state = 'open'"
        )
        .bind(instance)
        .bind(ms(at))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn delete_timer(&mut self, instance: &str, key: u32) -> Result<()> {
        on!(self, |c| sqlx::query("DELETE FROM timers WHERE instance_id = $1 AND timer_key = $2")
            .bind(instance)
            .bind(i64::from(key))
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Removes everything an ended instance was waiting for.
    pub async fn clear_waits(&mut self, instance: &str) -> Result<()> {
        for sql in [
            "DELETE FROM timers WHERE instance_id = $1",
            "DELETE FROM subscriptions WHERE instance_id = $1",
            "UPDATE jobs SET state = 'cancelled' WHERE instance_id = $1 AND state = 'pending'",
            "UPDATE outbox SET state = 'cancelled' WHERE instance_id = $1 AND state = 'pending'",
        ] {
            on!(self, |c| sqlx::query(sql).bind(instance).execute(c).await?.rows_affected());
        }
        Ok(())
    }

    /// The oldest instance subscribed to a message.
    pub async fn find_subscriber(&mut self, name: &str, correlation_key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on!(self, |c| sqlx::query_as(
            "SELECT instance_id FROM subscriptions WHERE name = $1 AND correlation_key = $2 \
             ORDER BY created_at, instance_id LIMIT 1"
        )
        .bind(name)
        .bind(correlation_key)
        .fetch_optional(c)
        .await?);
        Ok(row.map(|r| r.0))
    }

    /// Takes a business key for an instance of a process with unique keys; answers the instance
    /// that holds it already, if another one does (then nothing is written). Concurrent takers
    /// on other nodes wait for each other on the primary key, and the later one sees the first.
    pub async fn take_business_key(&mut self, definition: &str, key: &str, instance: &str) -> Result<Option<String>> {
        on!(self, |c| sqlx::query(
            "INSERT INTO unique_business_keys (definition_key, business_key, instance_id) VALUES ($1, $2, $3) \
             ON CONFLICT (definition_key, business_key) DO NOTHING"
        )
        .bind(definition)
        .bind(key)
        .bind(instance)
        .execute(c)
        .await?
        .rows_affected());
        let (holder,): (String,) = on!(self, |c| sqlx::query_as(
            "SELECT instance_id FROM unique_business_keys WHERE definition_key = $1 AND business_key = $2"
        )
        .bind(definition)
        .bind(key)
        .fetch_one(c)
        .await?);
        Ok((holder != instance).then_some(holder))
    }

    pub async fn buffer_message(
        &mut self,
        id: &str,
        name: &str,
        key: &str,
        variables: &str,
        expires: Ts,
        now: Ts,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "INSERT INTO messages (id, name, correlation_key, variables, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(id)
        .bind(name)
        .bind(key)
        .bind(variables)
        .bind(ms(expires))
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// Takes (deletes and returns) the oldest live buffered message for a subscription.
    pub async fn take_buffered_message(&mut self, name: &str, key: &str, now: Ts) -> Result<Option<String>> {
        let row: Option<(String, String)> = on!(self, |c| sqlx::query_as(
            "SELECT id, variables FROM messages WHERE name = $1 AND correlation_key = $2 AND expires_at >= $3 \
             ORDER BY created_at, id LIMIT 1"
        )
        .bind(name)
        .bind(key)
        .bind(ms(now))
        .fetch_optional(c)
        .await?);
        let Some((id, variables)) = row else { return Ok(None) };
        on!(self, |c| sqlx::query("DELETE FROM messages WHERE id = $1").bind(&id).execute(c).await?.rows_affected());
        Ok(Some(variables))
    }

    /// Every instance as (id, business key, status), for consistency checks.
    pub async fn instances_summary(&mut self) -> Result<Vec<(String, Option<String>, String)>> {
        Ok(on!(self, |c| sqlx::query_as("SELECT id, business_key, status FROM instances ORDER BY id")
            .fetch_all(c)
            .await?))
    }

    /// The active child instance that call activity `call` of `parent` started.
    pub async fn child_instance(&mut self, parent: &str, call: u32) -> Result<Option<String>> {
        let rows: Vec<(String, String)> =
            on!(self, |c| sqlx::query_as("SELECT id, state FROM instances WHERE parent_id = $1 AND status = 'active'")
                .bind(parent)
                .fetch_all(c)
                .await?);
        for (id, state) in rows {
            let state = codec::decode_state(&state)?;
            if state.parent.as_ref().is_some_and(|p| p.call == call) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The latest deployed version of a definition key.
    pub async fn latest_version(&mut self, key: &str) -> Result<Option<i64>> {
        let row: (Option<i64>,) = on!(self, |c| sqlx::query_as("SELECT MAX(version) FROM definitions WHERE key = $1")
            .bind(key)
            .fetch_one(c)
            .await?);
        Ok(row.0)
    }

    /// Several instances at once (missing ids are simply absent).
    pub async fn instances(&mut self, ids: &[&str]) -> Result<Vec<InstanceRow>> {
        let mut out = Vec::with_capacity(ids.len());
        if let Tx::Postgres(tx) = self {
            // One array parameter: the same statement text for every batch size, prepared once.
            let sql = INSTANCE_SELECT.replace("WHERE id = $1", "WHERE id = ANY($1)");
            let ids: Vec<&str> = ids.to_vec();
            let rows: Vec<InstanceRecord> = sqlx::query_as(&sql).bind(ids).fetch_all(&mut **tx).await?;
            for row in rows {
                out.push(InstanceRow::from_record(row)?);
            }
            return Ok(out);
        }
        for chunk in ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()];
            let sql = INSTANCE_SELECT.replace("WHERE id = $1", &format!("WHERE id IN ({})", placeholders.join(", ")));
            let rows: Vec<InstanceRecord> = on!(self, |c| {
                let mut q = sqlx::query_as(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(c).await?
            });
            for row in rows {
                out.push(InstanceRow::from_record(row)?);
            }
        }
        Ok(out)
    }

    /// The latest version of a definition, with its XML.
    pub async fn latest_definition(&mut self, key: &str) -> Result<Option<(i64, String, String)>> {
        let row: Option<(i64, String, String)> = on!(self, |c| sqlx::query_as(
            "SELECT version, hash, xml FROM definitions WHERE key = $1 ORDER BY version DESC LIMIT 1"
        )
        .bind(key)
        .fetch_optional(c)
        .await?);
        Ok(row)
    }

    pub async fn insert_definition(&mut self, d: &NewDefinition<'_>) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "INSERT INTO definitions (key, version, hash, name, xml, deployed_at, deployed_by) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(d.key)
        .bind(d.version)
        .bind(d.hash)
        .bind(d.name)
        .bind(d.xml)
        .bind(ms(d.deployed_at))
        .bind(d.deployed_by)
        .execute(c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// Stores the Camunda Forms of a new definition version.
    pub async fn insert_definition_forms(&mut self, key: &str, version: i64, forms: &[DefinitionForm]) -> Result<()> {
        for f in forms {
            on!(self, |c| {
                sqlx::query(
                    "INSERT INTO definition_forms (definition_key, version, form_id, file_name, content) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(key)
                .bind(version)
                .bind(&f.form_id)
                .bind(&f.file_name)
                .bind(&f.content)
                .execute(c)
                .await?
                .rows_affected()
            });
        }
        Ok(())
    }

    pub async fn upsert_registry(&mut self, key: &str, fields: &str, now: Ts) -> Result<()> {
        on!(self, |c| sqlx::query(
            "INSERT INTO registry (definition_key, fields, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (definition_key) DO UPDATE SET fields = $2, updated_at = $3"
        )
        .bind(key)
        .bind(fields)
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Replaces the start timers of a definition key.
    pub async fn replace_start_timers(&mut self, key: &str, version: i64, timers: &[(String, Ts)]) -> Result<()> {
        on!(self, |c| sqlx::query("DELETE FROM start_timers WHERE definition_key = $1")
            .bind(key)
            .execute(c)
            .await?
            .rows_affected());
        for (element, due) in timers {
            on!(self, |c| sqlx::query(
                "INSERT INTO start_timers (definition_key, element_id, version, due) VALUES ($1, $2, $3, $4)"
            )
            .bind(key)
            .bind(element)
            .bind(version)
            .bind(ms(*due))
            .execute(c)
            .await?
            .rows_affected());
        }
        Ok(())
    }

    pub async fn start_timer(&mut self, key: &str, element: &str) -> Result<Option<(i64, Ts, i64)>> {
        let row: Option<(i64, i64, i64)> = on!(self, |c| sqlx::query_as(
            "SELECT version, due, fired FROM start_timers WHERE definition_key = $1 AND element_id = $2"
        )
        .bind(key)
        .bind(element)
        .fetch_optional(c)
        .await?);
        Ok(row.map(|(v, d, f)| (v, from_ms(d), f)))
    }

    /// Moves a start timer to its next due time (or removes it when the cycle is over).
    pub async fn advance_start_timer(&mut self, key: &str, element: &str, next: Option<Ts>, missed: i64) -> Result<()> {
        match next {
            Some(next) => on!(self, |c| {
                sqlx::query(
                "UPDATE start_timers SET due = $3, fired = fired + 1, missed = missed + $4, lease_owner = NULL, lease_until = NULL \
                 WHERE definition_key = $1 AND element_id = $2"
            )
            .bind(key)
            .bind(element)
            .bind(ms(next))
            .bind(missed)
            .execute(c)
            .await?
            .rows_affected()
            }),
            None => {
                on!(self, |c| sqlx::query("DELETE FROM start_timers WHERE definition_key = $1 AND element_id = $2")
                    .bind(key)
                    .bind(element)
                    .execute(c)
                    .await?
                    .rows_affected())
            }
        };
        Ok(())
    }
}

/// A definition version to store.
#[derive(Debug)]
pub struct NewDefinition<'a> {
    pub key: &'a str,
    pub version: i64,
    pub hash: &'a str,
    pub name: Option<&'a str>,
    pub xml: &'a str,
    pub deployed_at: Ts,
    pub deployed_by: Option<&'a str>,
}

/// The columns written for an instance.
#[derive(Debug)]
pub struct InstanceWrite<'a> {
    pub id: &'a str,
    pub definition_key: &'a str,
    pub version: i64,
    pub business_key: Option<&'a str>,
    pub status: &'a str,
    pub incident: bool,
    pub state: String,
    pub parent_id: Option<&'a str>,
    pub started_at: Ts,
    pub ended_at: Option<Ts>,
    pub deadline: Option<Ts>,
    pub history_len: i64,
}
