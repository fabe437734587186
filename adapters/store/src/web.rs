//! What the web pages keep: sign-in passwords (argon2id hashes), browser sessions (by the
//! SHA-256 of the cookie), counts of failed sign-ins; and the inbox query of the pages.

use super::auth::UserRecord;
use super::{Pool, Result, Store, Ts, from_ms, ms};

/// A live browser session and the person it belongs to.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: UserRecord,
    pub provider: String,
    pub csrf: String,
    pub expires_at: Ts,
}

/// Failed sign-ins counted under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: i64,
    pub last_at: Ts,
}

impl Store {
    /// Sets a user's sign-in password hash. False when there is no such user.
    pub async fn set_password_hash(&self, login: &str, hash: &str, now: Ts) -> Result<bool> {
        if self.user(login).await?.is_none() {
            return Ok(false);
        }
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO user_passwords (login, hash, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (login) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at"
        )
        .bind(login)
        .bind(hash)
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        Ok(true)
    }

    /// The password hash of an enabled user, if one is set.
    pub async fn password_hash(&self, login: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT p.hash FROM user_passwords p JOIN users u ON u.login = p.login \
             WHERE p.login = $1 AND u.disabled = 0"
        )
        .bind(login)
        .fetch_optional(c)
        .await?);
        Ok(row.map(|r| r.0))
    }

    /// Stores a new session (and forgets every expired one).
    pub async fn create_session(
        &self,
        token_hash: &str,
        login: &str,
        provider: &str,
        csrf: &str,
        now: Ts,
        expires_at: Ts,
    ) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(c)
            .await?
            .rows_affected());
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO web_sessions (token_hash, login, provider, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(token_hash)
        .bind(login)
        .bind(provider)
        .bind(csrf)
        .bind(ms(now))
        .bind(ms(expires_at))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The session of a cookie: not expired, its user enabled.
    pub async fn session(&self, token_hash: &str, now: Ts) -> Result<Option<SessionRecord>> {
        let row: Option<(String, String, String, i64)> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
            "SELECT s.login, s.provider, s.csrf, s.expires_at FROM web_sessions s JOIN users u ON u.login = s.login \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0"
        )
        .bind(token_hash)
        .bind(ms(now))
        .fetch_optional(c)
        .await?
        });
        let Some((login, provider, csrf, expires_at)) = row else { return Ok(None) };
        let Some(user) = self.user(&login).await? else { return Ok(None) };
        Ok(Some(SessionRecord { user, provider, csrf, expires_at: from_ms(expires_at) }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Ends every session of a user (password changed, user disabled).
    pub async fn delete_sessions_of(&self, login: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM web_sessions WHERE login = $1")
            .bind(login)
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Failed sign-ins counted under `key`.
    pub async fn sign_in_failures(&self, key: &str) -> Result<Option<Failures>> {
        let row: Option<(i64, i64)> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT failures, last_at FROM sign_in_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(c)
                .await?);
        Ok(row.map(|(count, last_at)| Failures { count, last_at: from_ms(last_at) }))
    }

    /// Counts one more failed sign-in under `key`.
    pub async fn record_sign_in_failure(&self, key: &str, now: Ts) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO sign_in_failures (key, failures, last_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET failures = sign_in_failures.failures + 1, last_at = excluded.last_at"
        )
        .bind(key)
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn clear_sign_in_failures(&self, key: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
            .bind(key)
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }
}

/// The two views of the inbox page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxView {
    /// Open tasks assigned to the person.
    Mine,
    /// Open unassigned tasks offered to one of the person's groups or to them by name, and
    /// unassigned tasks with no candidates at all (anyone may take those).
    Groups,
}

/// The inbox page's query: a view, filters, due order (no due date last), a keyset cursor.
#[derive(Debug, Clone)]
pub struct PageInboxQuery {
    pub login: String,
    pub groups: Vec<String>,
    pub view: InboxView,
    pub definition_key: Option<String>,
    /// Only tasks due strictly before this instant (overdue: now).
    pub due_before: Option<Ts>,
    /// A part of the business key (request number): as typed, or in lower case.
    pub search: Option<String>,
    /// (due in ms or i64::MAX, task id) of the last row of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

enum Arg {
    Text(String),
    Int(i64),
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

const DUE_KEY: &str = "COALESCE(t.due, 9223372036854775807)";

impl PageInboxQuery {
    /// The WHERE clause of the view and filters (the cursor only with `paged`), and its args.
    fn filter(&self, paged: bool) -> (String, Vec<Arg>) {
        let mut args: Vec<Arg> = Vec::new();
        let mut arg = |a: Arg| {
            args.push(a);
            format!("${}", args.len())
        };
        let login = arg(Arg::Text(self.login.clone()));
        let mut sql = String::from("t.state = 'open'");
        match self.view {
            InboxView::Mine => sql.push_str(&format!(" AND t.assignee = {login}")),
            InboxView::Groups => {
                let mut offered = vec!["(t.candidate_groups = '' AND t.candidate_users = '')".to_string()];
                if !self.groups.is_empty() {
                    let list: Vec<String> = self.groups.iter().map(|g| arg(Arg::Text(g.clone()))).collect();
                    offered.push(format!(
                        "EXISTS (SELECT 1 FROM task_groups g WHERE g.task_id = t.id AND g.group_name IN ({}))",
                        list.join(", ")
                    ));
                }
                let like = arg(Arg::Text(format!("%,{},%", escape_like(&self.login))));
                offered.push(format!("(',' || t.candidate_users || ',') LIKE {like} ESCAPE '\\'"));
                sql.push_str(&format!(" AND t.assignee IS NULL AND ({})", offered.join(" OR ")));
            }
        }
        if let Some(key) = &self.definition_key {
            sql.push_str(&format!(" AND t.definition_key = {}", arg(Arg::Text(key.clone()))));
        }
        if let Some(before) = self.due_before {
            sql.push_str(&format!(" AND t.due IS NOT NULL AND t.due < {}", arg(Arg::Int(ms(before)))));
        }
        if let Some(search) = &self.search {
            // As typed, or lower-cased (SQLite's LOWER and LIKE fold ASCII letters only).
            let typed = arg(Arg::Text(format!("%{}%", escape_like(search))));
            let lower = arg(Arg::Text(format!("%{}%", escape_like(&search.to_lowercase()))));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM instances i WHERE i.id = t.instance_id \
                 AND (i.business_key LIKE {typed} ESCAPE '\\' OR LOWER(i.business_key) LIKE {lower} ESCAPE '\\'))"
            ));
        }
        if paged && let Some((key, id)) = &self.after {
            let k = arg(Arg::Int(*key));
            let i = arg(Arg::Text(id.clone()));
            sql.push_str(&format!(" AND ({DUE_KEY} > {k} OR ({DUE_KEY} = {k} AND t.id > {i}))"));
        }
        (sql, args)
    }
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for a in $args {
            query = match a {
                Arg::Text(s) => query.bind(s.clone()),
                Arg::Int(i) => query.bind(*i),
            };
        }
        query
    }};
}

impl Store {
    /// A page of the inbox page's view, by due date.
    pub async fn page_inbox(&self, q: &PageInboxQuery) -> Result<Vec<super::TaskRow>> {
        let (filter, args) = q.filter(true);
        let sql = format!(
            "SELECT {} FROM tasks t WHERE {filter} ORDER BY {DUE_KEY}, t.id LIMIT {}",
            super::TASK_COLUMNS_T,
            q.limit.clamp(1, 500)
        );
        let rows: Vec<super::TaskRecord> =
            on_pool!(&self.pool, |c| bind_all!(sqlx::query_as(&sql), &args).fetch_all(c).await?);
        Ok(rows.into_iter().map(super::TaskRow::from_record).collect())
    }

    /// How many tasks the view holds with these filters (cursor ignored).
    pub async fn page_inbox_count(&self, q: &PageInboxQuery) -> Result<i64> {
        let (filter, args) = q.filter(false);
        let sql = format!("SELECT COUNT(*) FROM tasks t WHERE {filter}");
        let row: (i64,) = on_pool!(&self.pool, |c| bind_all!(sqlx::query_as(&sql), &args).fetch_one(c).await?);
        Ok(row.0)
    }

    /// The business keys of instances, by id (ids without one are left out).
    pub async fn business_keys(&self, ids: &[&str]) -> Result<std::collections::HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, business_key FROM instances WHERE business_key IS NOT NULL AND id IN ({})",
            list.join(", ")
        );
        let rows: Vec<(String, String)> = on_pool!(&self.pool, |c| {
            let mut query = sqlx::query_as(&sql);
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(c).await?
        });
        Ok(rows.into_iter().collect())
    }
}

impl Store {
    /// Every task of an instance, oldest first.
    pub async fn tasks_of_instance(&self, instance: &str) -> Result<Vec<super::TaskRow>> {
        let sql = format!("SELECT {} FROM tasks WHERE instance_id = $1 ORDER BY created_at, id", super::TASK_COLUMNS);
        let rows: Vec<super::TaskRecord> =
            on_pool!(&self.pool, |c| sqlx::query_as(&sql).bind(instance).fetch_all(c).await?);
        Ok(rows.into_iter().map(super::TaskRow::from_record).collect())
    }
}
