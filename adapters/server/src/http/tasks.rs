//! The task inbox and the actions on a task. Who may see and act: DESIGN §6 — the assignee,
//! and members of the task's candidate groups (or its candidate users); 403 for anyone else.

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use serde_json::json;

use super::audit::Actor;
use super::auth::CurrentUser;
use super::error::{ApiError, FieldError, Problem, Resource};
use super::extract::{ApiJson, ApiQuery};
use super::views::TaskView;
use super::{TaskList, parse_instant};
use crate::driver::Op;
use reglament_store::auth::{TaskOrder, TaskQuery, Viewer};
use reglament_store::{InboxQuery, InboxSort, TaskRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    Open,
    Completed,
    Cancelled,
}

impl TaskState {
    fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Completed => "completed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskSort {
    #[default]
    Due,
    Created,
    Priority,
}

impl TaskSort {
    fn order(self) -> TaskOrder {
        match self {
            TaskSort::Due => TaskOrder::Due,
            TaskSort::Created => TaskOrder::Created,
            TaskSort::Priority => TaskOrder::Priority,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct InboxParams {
    /// `me`: only tasks assigned to the caller.
    pub assignee: Option<String>,
    /// Only tasks offered to this group (the caller must belong to it).
    pub candidate_group: Option<String>,
    /// `open` (default), `completed`, `cancelled`.
    #[param(inline)]
    pub state: Option<TaskState>,
    /// `true`: only tasks whose due time has passed.
    pub overdue: Option<bool>,
    /// Only tasks due before this instant (RFC 3339, or a date YYYY-MM-DD).
    pub due_before: Option<String>,
    /// `due` (default; tasks without a due date last), `created`, `priority` (highest first).
    #[param(inline)]
    pub sort: Option<TaskSort>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The keyset of the last row of a page, opaque to clients (base64url of this JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    sort: TaskSort,
    key: i64,
    id: String,
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).expect("cursor serialises"))
}

fn decode_cursor(text: &str, sort: TaskSort) -> Result<(i64, String), ApiError> {
    let bad =
        || ApiError::BadRequest("Некорректный cursor: передайте nextCursor предыдущей страницы без изменений".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    // A forged id no task can have (NUL, which PostgreSQL refuses) is as bad as a broken one.
    if !super::hygiene::plausible_id(&c.id) {
        return Err(bad());
    }
    if c.sort != sort {
        return Err(ApiError::BadRequest("cursor относится к другой сортировке (sort)".into()));
    }
    Ok((c.key, c.id))
}

/// The inbox: tasks the caller may see, filtered, sorted, a page at a time.
#[utoipa::path(
    get, path = "/api/tasks", operation_id = "listTasks", summary = "Задачи (входящие)", tag = "tasks",
    params(InboxParams),
    responses(
        (status = 200, body = TaskList),
        (status = 400, description = "Некорректный параметр или cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Запрошена группа, в которой пользователь не состоит", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn inbox(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(p): ApiQuery<InboxParams>,
) -> Result<Json<TaskList>, ApiError> {
    let assigned_to_me = match p.assignee.as_deref() {
        None => false,
        Some("me") => true,
        Some(login) if login == user.login() => true,
        Some(other) => {
            return Err(ApiError::Forbidden(format!("Чужие задачи ({other}) недоступны; используйте assignee=me")));
        }
    };
    if let Some(group) = &p.candidate_group
        && !user.0.in_group(group)
    {
        return Err(ApiError::Forbidden(format!("Вы не состоите в группе `{group}`")));
    }
    let sort = p.sort.unwrap_or_default();
    let task_state = p.state.unwrap_or_default();
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit должен быть от 1 до 500".into()));
    }
    let mut due_before =
        p.due_before.as_deref().map(|t| parse_instant(t, "dueBefore", state.runtime.default_tz())).transpose()?;
    if p.overdue == Some(true) {
        let now = state.runtime.now();
        due_before = Some(due_before.map_or(now, |d| d.min(now)));
    }
    let after = p.cursor.as_deref().map(|c| decode_cursor(c, sort)).transpose()?;
    let store = state.runtime.store();
    let rows: Vec<TaskRow> = match (&p.candidate_group, sort) {
        // A group's inbox in due or creation order walks the (group, state, sort, id) index.
        (Some(group), TaskSort::Due | TaskSort::Created) => {
            let query = InboxQuery {
                group: Some(group.clone()),
                assignee: assigned_to_me.then(|| user.login().to_string()),
                state: task_state.as_str().into(),
                sort: if sort == TaskSort::Due { InboxSort::Due } else { InboxSort::Created },
                due_before: due_before.map(|d| d.timestamp_millis()),
                cursor: after,
                limit,
            };
            store.inbox(&query).await?
        }
        _ => {
            let query = TaskQuery {
                viewer: Viewer { login: user.login().to_string(), groups: user.0.groups.clone() },
                state: task_state.as_str().into(),
                group: p.candidate_group.clone(),
                assigned_to_me,
                due_before,
                order: sort.order(),
                after,
                limit,
            };
            store.visible_tasks(&query).await?
        }
    };
    let next_cursor = (rows.len() == limit as usize).then(|| {
        let last = rows.last().expect("a full page");
        encode_cursor(&Cursor { sort, key: sort.order().key_of(last), id: last.id.clone() })
    });
    let tz = state.runtime.default_tz();
    let facts = super::task_facts::facts(&state, &rows, state.runtime.now()).await?;
    let items = rows.iter().zip(facts).map(|(t, f)| TaskView::build(t, tz).with_facts(f)).collect();
    Ok(Json(TaskList { items, next_cursor }))
}

/// A task `user` may see (see [`crate::access`]): one offered to them or done by them, or one of
/// an instance they may see. Any other answers as a task that does not exist.
pub(crate) async fn load_visible(state: &AppState, user: &CurrentUser, id: &str) -> Result<TaskRow, ApiError> {
    let task = load(state, id).await?;
    if user.may_see(&task) {
        return Ok(task);
    }
    let instance = super::instances::load(state, &task.instance_id).await?;
    let def = state.runtime.definition(&instance.definition_key, instance.version).await?;
    if crate::access::may_see_instance(state.runtime.store(), &user.0, &instance, &def).await? {
        Ok(task)
    } else {
        Err(ApiError::NotFound(Resource::Task, format!("Задачи `{id}` нет")))
    }
}

/// Whether `user` oversees the work of `task`'s process: an admin, or an owner of the process.
/// They may hand a task to someone or take it back from its assignee (someone is ill, on
/// leave, gone), though it is not offered to them; completing stays with the assignee.
async fn supervises(state: &AppState, user: &CurrentUser, task: &TaskRow) -> Result<bool, ApiError> {
    if user.0.in_group(super::auth::ADMINS) {
        return Ok(true);
    }
    let instance = super::instances::load(state, &task.instance_id).await?;
    let def = state.runtime.definition(&instance.definition_key, instance.version).await?;
    Ok(crate::access::owns(&user.0, &def))
}

async fn load(state: &AppState, id: &str) -> Result<TaskRow, ApiError> {
    // An id with a control character cannot exist (and PostgreSQL refuses NUL in a query).
    if !super::hygiene::plausible_id(id) {
        return Err(ApiError::NotFound(Resource::Task, format!("Задачи `{id}` нет", id = id.escape_debug())));
    }
    state
        .runtime
        .store()
        .task(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(Resource::Task, format!("Задачи `{id}` нет")))
}

fn require_open(task: &TaskRow) -> Result<(), ApiError> {
    if task.state == "open" {
        Ok(())
    } else {
        Err(ApiError::Conflict(format!("Задача `{}` уже не открыта (состояние: {})", task.id, task.state)))
    }
}

/// One task, with the fields of its form.
#[utoipa::path(
    get, path = "/api/tasks/{id}", operation_id = "getTask", summary = "Задача", tag = "tasks",
    params(("id" = String, Path, description = "Идентификатор задачи")),
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/task-not-found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    // Those who may see the instance read its tasks; acting on one needs it offered to them.
    let task = load_visible(&state, &user, &id).await?;
    let instance = super::instances::load(&state, &task.instance_id).await?;
    let def = state.runtime.definition(&instance.definition_key, instance.version).await?;
    let facts = super::task_facts::facts(&state, std::slice::from_ref(&task), state.runtime.now()).await?;
    let view = TaskView::build(&task, state.runtime.default_tz()).with_form(&def);
    Ok(Json(view.with_facts(facts.into_iter().next().unwrap_or_default())))
}

/// Takes a task into work: it becomes assigned to the caller.
#[utoipa::path(
    post, path = "/api/tasks/{id}/claim", operation_id = "claimTask", summary = "Взять задачу в работу", tag = "tasks",
    params(("id" = String, Path, description = "Идентификатор задачи")),
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Задача закрыта или её уже взял другой сотрудник", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn claim(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let task = load_visible(&state, &user, &id).await?;
    if !user.0.in_group(super::auth::ADMINS) {
        user.require_task(&task)?;
    }
    require_open(&task)?;
    if !state.runtime.store().claim_task(&id, user.login()).await? {
        let now = load(&state, &id).await?;
        require_open(&now)?;
        return Err(ApiError::Conflict(format!(
            "Задачу `{id}` уже взял в работу другой сотрудник ({})",
            now.assignee.unwrap_or_default()
        )));
    }
    actor.record_on(&state, "task.claim", Some(&id), Some(&task.instance_id), json!({})).await;
    Ok(Json(TaskView::build(&load(&state, &id).await?, state.runtime.default_tz())))
}

/// Returns a claimed task to its groups.
#[utoipa::path(
    post, path = "/api/tasks/{id}/unclaim", operation_id = "unclaimTask", summary = "Вернуть задачу в группу", tag = "tasks",
    params(("id" = String, Path, description = "Идентификатор задачи")),
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Задача назначена другому сотруднику", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn unclaim(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let task = load_visible(&state, &user, &id).await?;
    if !supervises(&state, &user, &task).await? {
        user.require_task_action(&task)?;
    }
    require_open(&task)?;
    if task.assignee.is_some() && !state.runtime.store().reassign_task(&id, task.assignee.as_deref(), None).await? {
        return Err(ApiError::Conflict(format!("Задача `{id}` изменилась во время запроса; повторите его")));
    }
    actor.record_on(&state, "task.unclaim", Some(&id), Some(&task.instance_id), json!({"was": task.assignee})).await;
    Ok(Json(TaskView::build(&load(&state, &id).await?, state.runtime.default_tz())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// The login of the new assignee.
    pub user: String,
}

/// Assigns a task to a user (the caller must be able to act on the task).
#[utoipa::path(
    post, path = "/api/tasks/{id}/assign", operation_id = "assignTask", summary = "Назначить задачу", tag = "tasks",
    params(("id" = String, Path, description = "Идентификатор задачи")),
    request_body = AssignRequest,
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Нет такого пользователя, или логин с управляющими символами", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn assign(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> Result<Json<TaskView>, ApiError> {
    let task = load_visible(&state, &user, &id).await?;
    if !supervises(&state, &user, &task).await? {
        user.require_task_action(&task)?;
    }
    require_open(&task)?;
    super::hygiene::Check::default().key("user", &req.user, true).done()?;
    if state.runtime.store().user(&req.user).await?.is_none() {
        return Err(ApiError::Validation {
            detail: format!("Пользователя `{}` нет", req.user),
            errors: vec![FieldError {
                field: Some("user".into()), message: "нет такого пользователя".into()
            }],
        });
    }
    if !state.runtime.store().reassign_task(&id, task.assignee.as_deref(), Some(&req.user)).await? {
        return Err(ApiError::Conflict(format!("Задача `{id}` изменилась во время запроса; повторите его")));
    }
    let details = json!({"was": task.assignee, "to": req.user});
    actor.record_on(&state, "task.assign", Some(&id), Some(&task.instance_id), details).await;
    Ok(Json(TaskView::build(&load(&state, &id).await?, state.runtime.default_tz())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The form's values; they become process variables.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// Completes a task with the form's values. 409 when it is already completed, 422 when the
/// form is not filled in correctly (messages per field, in Russian).
#[utoipa::path(
    post, path = "/api/tasks/{id}/complete", operation_id = "completeTask", summary = "Выполнить задачу", tag = "tasks",
    params(
        ("id" = String, Path, description = "Идентификатор задачи"),
        ("Idempotency-Key" = Option<String>, Header, description = "Повтор с тем же ключом вернёт тот же ответ"),
    ),
    request_body = CompleteRequest,
    responses(
        (status = 200, body = TaskView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Задача не ваша или её взял другой сотрудник", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Задача уже выполнена или отменена", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Форма заполнена неверно", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: Actor,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<TaskView>, ApiError> {
    let task = load_visible(&state, &user, &id).await?;
    user.require_task_action(&task)?;
    require_open(&task)?;
    super::hygiene::Check::default().variable_names("variables", &req.variables).done()?;
    let details = json!({"element": task.element_id, "variables": req.variables});
    let op = Op::CompleteTask { task_id: id.clone(), variables: req.variables, by: Some(user.login().to_string()) };
    state.runtime.submit(actor.audited(op, "task.complete", Some(&id), Some(&task.instance_id), details)).await?;
    Ok(Json(TaskView::build(&load(&state, &id).await?, state.runtime.default_tz())))
}
