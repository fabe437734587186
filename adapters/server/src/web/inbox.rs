//! `GET /`: the inbox page. Two views — «Мои задачи» (assigned to me) and «Задачи моих групп»
//! (unassigned, offered to my groups or to me, or to nobody) — with a count each, filters
//! (process, overdue, due on or before a date, a part of the request number), due order, and
//! keyset paging (`after=`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{NaiveDate, TimeZone};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::format;
use super::pages::{render, server_error};
use super::session::WebUser;
use crate::http::AppState;
use crate::http::task_facts::{TaskFacts, facts};
use reglament_store::web::{InboxPage, InboxView, PageInboxQuery, ViewCount};
use reglament_store::{TaskRow, Ts};

/// Rows per page.
pub const PAGE_SIZE: u32 = 25;

#[derive(Debug, Default, Deserialize)]
pub struct InboxParams {
    pub view: Option<String>,
    pub process: Option<String>,
    pub overdue: Option<String>,
    pub due_before: Option<String>,
    pub q: Option<String>,
    pub after: Option<String>,
    /// A notice to show once (after an action on a task).
    pub done: Option<String>,
}

/// One row as the template shows it.
#[derive(Debug, Serialize)]
pub struct Row {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub process: String,
    pub business_key: Option<String>,
    pub due: Option<String>,
    pub left: Option<String>,
    pub overdue: bool,
    pub assignee: Option<String>,
}

impl Row {
    pub fn build(t: &TaskRow, f: &TaskFacts, tz: chrono_tz::Tz) -> Row {
        Row {
            id: t.id.clone(),
            instance_id: t.instance_id.clone(),
            name: t.name.clone().unwrap_or_else(|| t.element_id.clone()),
            process: f.process_name.clone().unwrap_or_else(|| t.definition_key.clone()),
            business_key: f.business_key.clone(),
            due: t.due.map(|d| format!("до {}", format::date_time(d, tz))),
            left: if f.overdue { None } else { f.working_days_left.and_then(format::working_days_left) },
            overdue: f.overdue,
            assignee: t.assignee.clone(),
        }
    }
}

fn cursor_of(t: &TaskRow) -> String {
    format!("{}~{}", t.due.map(reglament_store::ms).unwrap_or(i64::MAX), t.id)
}

fn parse_cursor(text: &str) -> Option<(i64, String)> {
    let (key, id) = text.split_once('~')?;
    // An id no task can have (NUL, which PostgreSQL refuses) is ignored like a broken cursor.
    crate::http::hygiene::plausible_id(id).then_some(())?;
    Some((key.parse().ok()?, id.to_string()))
}

/// The end of a date in the zone (tasks due on it are included).
fn end_of(date: NaiveDate, tz: chrono_tz::Tz) -> Option<Ts> {
    let next = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&next).earliest().map(|t| t.to_utc())
}

/// A view's count for its tab: past the cap, «1000+» with a title that says so; for a broad
/// search counted among the first tasks of the view only, «N+» with a title saying how many
/// were checked.
fn count_text(c: ViewCount) -> minijinja::Value {
    let text = if c.more { format!("{}+", c.counted) } else { c.counted.to_string() };
    let title = if c.partial {
        Some(format!(
            "Найдено среди первых {} задач по сроку; остальные не проверялись — уточните отбор",
            reglament_store::web::BROAD_SCAN
        ))
    } else if c.more {
        Some(format!("Задач больше {}; уточните отбор", c.counted))
    } else {
        None
    };
    context! { text, more => c.more, counted => c.counted, title }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

pub async fn page(State(state): State<AppState>, user: WebUser, Query(p): Query<InboxParams>) -> Response {
    let tz = state.runtime.default_tz();
    let now = state.runtime.now();
    let view = if p.view.as_deref() == Some("groups") { InboxView::Groups } else { InboxView::Mine };
    let process = non_empty(&p.process);
    let search = non_empty(&p.q).map(|s| s.chars().take(100).collect::<String>());
    let overdue = p.overdue.as_deref().is_some_and(|v| v == "1" || v == "on");
    let due_date = non_empty(&p.due_before);
    let mut errors = Vec::new();
    let mut due_before = match &due_date {
        Some(text) => match NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| end_of(d, tz)) {
            Some(t) => Some(t),
            None => {
                errors.push("Дата «Срок до» должна быть в виде ГГГГ-ММ-ДД.");
                None
            }
        },
        None => None,
    };
    if overdue {
        due_before = Some(due_before.map_or(now, |d| d.min(now)));
    }
    let query = PageInboxQuery {
        login: user.user.login.clone(),
        groups: user.user.groups.clone(),
        view,
        definition_key: process.clone(),
        due_before,
        search: search.clone(),
        after: p.after.as_deref().and_then(parse_cursor),
        limit: PAGE_SIZE,
    };
    let store = state.runtime.store();
    let loaded = async {
        let InboxPage { rows, mine, groups } = store.inbox_page(&query).await?;
        let facts = facts(&state, &rows, now).await?;
        let processes = store.definitions().await?;
        Ok::<_, reglament_store::StoreError>((rows, count_text(mine), count_text(groups), facts, processes))
    };
    let (rows, mine, groups, facts, processes) = match loaded.await {
        Ok(loaded) => loaded,
        Err(e) => return server_error(&e.to_string()),
    };
    let next = (rows.len() == PAGE_SIZE as usize).then(|| cursor_of(rows.last().expect("a full page")));
    let items: Vec<Row> = rows.iter().zip(&facts).map(|(t, f)| Row::build(t, f, tz)).collect();
    let processes: Vec<(String, String)> =
        processes.into_iter().map(|d| (d.key.clone(), d.name.unwrap_or(d.key))).collect();
    // The filters as a query string, to carry them to the other view and the next page.
    let mut filters = url::form_urlencoded::Serializer::new(String::new());
    if let Some(v) = &process {
        filters.append_pair("process", v);
    }
    if overdue {
        filters.append_pair("overdue", "1");
    }
    if let Some(v) = &due_date {
        filters.append_pair("due_before", v);
    }
    if let Some(v) = &search {
        filters.append_pair("q", v);
    }
    let filters = filters.finish();
    let notice = match p.done.as_deref() {
        Some("completed") => Some("Задача выполнена."),
        Some("unclaimed") => Some("Задача возвращена в группу."),
        _ => None,
    };
    render(
        if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY },
        "inbox.html",
        context! {
            title => if view == InboxView::Mine { "Мои задачи" } else { "Задачи моих групп" },
            user_name => user.display_name(),
            csrf => &user.csrf,
            view => if view == InboxView::Mine { "mine" } else { "groups" },
            counts => context! { mine, groups },
            items => minijinja::value::Serde(&items),
            next,
            first_page => p.after.is_none(),
            filters,
            processes,
            process,
            overdue,
            due_before => due_date,
            q => search,
            errors,
            notice,
        },
    )
}
