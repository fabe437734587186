//! What the web pages keep: sign-in passwords (argon2id hashes), browser sessions (by the
//! SHA-256 of the cookie), counts of failed sign-ins; and the inbox query of the pages.

use super::auth::UserRecord;
use super::{Arg, Pool, Result, Store, Ts, from_ms, ms};

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

/// The most a view's count counts: a million open tasks are not counted on every page.
pub const COUNT_CAP: i64 = 1000;

/// A search matching at most this many request numbers narrows the views to their instances;
/// a broader one (a few characters most numbers share), or one without three letters or digits
/// in a row for the trigram index, walks the view in due order instead, checking each task's
/// number, and stops as soon as the page is full.
const SEARCH_LISTED: i64 = 1000;

/// A broad search checks at most this many tasks of a view, in due order, to count its
/// matches: beyond them the count is shown as "at least" (`more`), so a number most tasks
/// share costs a page no more than a bounded walk.
pub const BROAD_SCAN: i64 = 2000;

/// Before asking the trigram index, this many instances (in storage order) are checked: when
/// more than [`SEARCH_LISTED`] of them match, the search is broad for certain, and the index —
/// whose posting lists for a number's common parts span every instance — is not asked at all.
const BROAD_SAMPLE: i64 = 20_000;

/// How many tasks a view holds with the filters, counted up to [`COUNT_CAP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewCount {
    /// Every task of the view, or [`COUNT_CAP`] when there are more.
    pub counted: i64,
    /// There are more than `counted`.
    pub more: bool,
    /// A broad search: `counted` is what the first [`BROAD_SCAN`] tasks of the view hold;
    /// the rest of the view was not checked.
    pub partial: bool,
}

/// A page of the asked view and the counts of both views with the same filters.
#[derive(Debug, Clone)]
pub struct InboxPage {
    pub rows: Vec<super::TaskRow>,
    pub mine: ViewCount,
    pub groups: ViewCount,
}

/// The instances a search leaves in the views.
enum Found {
    /// No search.
    Any,
    /// The instances of every matching request number.
    Listed(Vec<String>),
    /// Too many to list: the number of each task is checked as the view is walked.
    Broad,
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

const DUE_KEY: &str = "COALESCE(t.due, 9223372036854775807)";

impl PageInboxQuery {
    /// The search's LIKE patterns (escaped): the text as typed, upper-cased and lower-cased,
    /// because SQLite's LOWER and LIKE fold ASCII letters only (so «зи-2026» finds «ЗИ-2026-17»).
    fn patterns(search: &str) -> [String; 3] {
        [search.to_string(), search.to_uppercase(), search.to_lowercase()].map(|s| format!("%{}%", escape_like(&s)))
    }

    /// The SQL that a business key `column` matches the patterns `typed`, `upper`, `lower` in.
    fn matches(column: &str, [typed, upper, lower]: [&str; 3]) -> String {
        format!(
            "({column} LIKE {typed} ESCAPE '\\' OR {column} LIKE {upper} ESCAPE '\\' \
             OR LOWER({column}) LIKE {lower} ESCAPE '\\')"
        )
    }

    /// The WHERE clause of a view with the filters (the cursor only with `paged`), and its args.
    /// `postgres` picks the name of the substring function.
    fn filter(&self, view: InboxView, found: &Found, paged: bool, postgres: bool) -> (String, Vec<Arg>) {
        let mut args: Vec<Arg> = Vec::new();
        let mut arg = |a: Arg| {
            args.push(a);
            format!("${}", args.len())
        };
        let login = arg(Arg::Text(self.login.clone()));
        // `t.state = 'open'` and `t.assignee IS NULL` written as the partial indexes of
        // migration 0007 are, so both backends use them.
        let mut sql = String::from("t.state = 'open'");
        match view {
            InboxView::Mine => sql.push_str(&format!(" AND t.assignee = {login}")),
            InboxView::Groups => {
                // The groups are read from the task's own row (joined with commas), not from
                // `task_groups`: an EXISTS inside this OR becomes a hashed subplan of every open
                // task on PostgreSQL, where a test of the row lets the walk stop after a page.
                // `instr`/`strpos` compare exactly, as the join did (SQLite's LIKE ignores case).
                let find = if postgres { "strpos" } else { "instr" };
                let mut offered = vec!["(t.candidate_groups = '' AND t.candidate_users = '')".to_string()];
                for group in &self.groups {
                    let needle = arg(Arg::Text(format!(",{group},")));
                    offered.push(format!("{find}(',' || t.candidate_groups || ',', {needle}) > 0"));
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
            // The sort key, so the range is one of the index; no due date sorts as the largest.
            sql.push_str(&format!(" AND {DUE_KEY} < {}", arg(Arg::Int(ms(before)))));
        }
        match found {
            Found::Any => {}
            Found::Listed(ids) => {
                let list: Vec<String> = ids.iter().map(|id| arg(Arg::Text(id.clone()))).collect();
                sql.push_str(&format!(" AND t.instance_id IN ({})", list.join(", ")));
            }
            Found::Broad => {
                let [typed, upper, lower] =
                    Self::patterns(self.search.as_deref().unwrap_or_default()).map(|p| arg(Arg::Text(p)));
                let matches = Self::matches("i.business_key", [&typed, &upper, &lower]);
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM instances i WHERE i.id = t.instance_id AND {matches})"
                ));
            }
        }
        if paged && let Some((key, id)) = &self.after {
            let k = arg(Arg::Int(*key));
            let i = arg(Arg::Text(id.clone()));
            // A range on the sort key, where the index walk starts (SQLite does not start it
            // at a row-value comparison over an expression), then the tie on id.
            sql.push_str(&format!(" AND {DUE_KEY} >= {k} AND ({DUE_KEY} > {k} OR t.id > {i})"));
        }
        (sql, args)
    }
}

impl Store {
    /// A page of the query's view, by due date, and the counts of both views.
    pub async fn inbox_page(&self, q: &PageInboxQuery) -> Result<InboxPage> {
        let found = match &q.search {
            None => Found::Any,
            // Trigrams are made of letters and digits: a shorter part has none to look up.
            Some(search) if !search.split(|c: char| !c.is_alphanumeric()).any(|w| w.chars().count() >= 3) => {
                Found::Broad
            }
            Some(search) => self.search_numbers(search).await?,
        };
        if matches!(&found, Found::Listed(ids) if ids.is_empty()) {
            let none = ViewCount { counted: 0, more: false, partial: false };
            return Ok(InboxPage { rows: Vec::new(), mine: none, groups: none });
        }
        let (filter, args) = q.filter(q.view, &found, true, self.is_postgres());
        let sql = format!(
            "SELECT {} FROM tasks t WHERE {filter} ORDER BY {DUE_KEY}, t.id LIMIT {}",
            super::TASK_COLUMNS_T,
            q.limit.clamp(1, 500)
        );
        let rows: Vec<super::TaskRecord> =
            on_pool!(&self.pool, |c| bind_args!(sqlx::query_as(&sql), &args).fetch_all(c).await?);
        Ok(InboxPage {
            rows: rows.into_iter().map(super::TaskRow::from_record).collect(),
            mine: self.view_count(q, InboxView::Mine, &found).await?,
            groups: self.view_count(q, InboxView::Groups, &found).await?,
        })
    }

    /// How many tasks a view holds with the query's filters (cursor ignored), up to the cap.
    /// With a broad search, only the first [`BROAD_SCAN`] tasks of the view (in due order) are
    /// checked; when the view has more, the count is a lower bound (`more`).
    async fn view_count(&self, q: &PageInboxQuery, view: InboxView, found: &Found) -> Result<ViewCount> {
        if matches!(found, Found::Broad) {
            let (filter, mut args) = q.filter(view, &Found::Any, false, self.is_postgres());
            let [typed, upper, lower] = PageInboxQuery::patterns(q.search.as_deref().unwrap_or_default());
            let mut next = |a: String| {
                args.push(Arg::Text(a));
                format!("${}", args.len())
            };
            let (typed, upper, lower) = (next(typed), next(upper), next(lower));
            let matches = PageInboxQuery::matches("i.business_key", [&typed, &upper, &lower]);
            let sql = format!(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM instances i \
                 WHERE i.id = s.instance_id AND {matches}) THEN 1 ELSE 0 END), 0) FROM ( \
                 SELECT t.instance_id FROM tasks t WHERE {filter} ORDER BY {DUE_KEY}, t.id LIMIT {BROAD_SCAN}) s"
            );
            let (scanned, matched): (i64, i64) =
                on_pool!(&self.pool, |c| bind_args!(sqlx::query_as(&sql), &args).fetch_one(c).await?);
            return Ok(ViewCount {
                counted: matched.min(COUNT_CAP),
                more: matched > COUNT_CAP || scanned >= BROAD_SCAN,
                partial: matched <= COUNT_CAP && scanned >= BROAD_SCAN,
            });
        }
        let (filter, args) = q.filter(view, found, false, self.is_postgres());
        let sql = format!("SELECT COUNT(*) FROM (SELECT 1 FROM tasks t WHERE {filter} LIMIT {}) x", COUNT_CAP + 1);
        let row: (i64,) = on_pool!(&self.pool, |c| bind_args!(sqlx::query_as(&sql), &args).fetch_one(c).await?);
        Ok(ViewCount { counted: row.0.min(COUNT_CAP), more: row.0 > COUNT_CAP, partial: false })
    }

    /// True when more than [`SEARCH_LISTED`] of the first [`BROAD_SAMPLE`] instances have a
    /// request number containing `search`: the search is broad whatever the index would say.
    async fn surely_broad(&self, search: &str) -> Result<bool> {
        let [typed, upper, lower] = PageInboxQuery::patterns(search);
        let matches = PageInboxQuery::matches("s.business_key", ["$1", "$2", "$3"]);
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM (SELECT business_key FROM instances LIMIT {BROAD_SAMPLE}) s \
             WHERE {matches} LIMIT {}) x",
            SEARCH_LISTED + 1
        );
        let row: (i64,) =
            on_pool!(&self.pool, |c| sqlx::query_as(&sql).bind(&typed).bind(&upper).bind(&lower).fetch_one(c).await?);
        Ok(row.0 > SEARCH_LISTED)
    }

    /// The instances whose request number contains `search` (as typed, upper- or lower-cased),
    /// through the trigram index of migration 0007: on SQLite the FTS5 table `instance_numbers`
    /// (its phrase query finds every number containing the text in any case), on PostgreSQL the
    /// pg_trgm index on the lower-cased key; the LIKEs beside them keep the matches. More than
    /// [`SEARCH_LISTED`]: [`Found::Broad`].
    async fn search_numbers(&self, search: &str) -> Result<Found> {
        if self.surely_broad(search).await? {
            return Ok(Found::Broad);
        }
        let [typed, upper, lower] = PageInboxQuery::patterns(search);
        let limit = SEARCH_LISTED + 1;
        let rows: Vec<(String,)> = match &self.pool {
            Pool::Sqlite(p) => {
                let matches = PageInboxQuery::matches("business_key", ["$2", "$3", "$4"]);
                let phrase = format!("\"{}\"", search.replace('"', "\"\""));
                sqlx::query_as(&format!(
                    "SELECT instance_id FROM instance_numbers WHERE instance_numbers MATCH $1 AND {matches} LIMIT {limit}"
                ))
                .bind(phrase)
                .bind(typed)
                .bind(upper)
                .bind(lower)
                .fetch_all(p)
                .await?
            }
            Pool::Postgres(p) => {
                // The index is asked for the longest word of the text only: the other words of a
                // number («ЗИ», «2026») are in nearly every key, and their trigrams cost the GIN
                // scan a pass over every instance. The LIKEs then keep the exact matches.
                let word = search.split(|c: char| !c.is_alphanumeric()).max_by_key(|w| w.chars().count());
                let candidates = format!("%{}%", word.unwrap_or_default().to_lowercase());
                let matches = PageInboxQuery::matches("business_key", ["$2", "$3", "$4"]);
                sqlx::query_as(&format!(
                    "SELECT id FROM instances WHERE LOWER(business_key) LIKE $1 AND {matches} LIMIT {limit}"
                ))
                .bind(candidates)
                .bind(typed)
                .bind(upper)
                .bind(lower)
                .fetch_all(p)
                .await?
            }
        };
        Ok(if rows.len() as i64 > SEARCH_LISTED {
            Found::Broad
        } else {
            Found::Listed(rows.into_iter().map(|r| r.0).collect())
        })
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
