//! Definitions: deploy (BPMN XML, or a BPMN model with its Camunda Forms as
//! `multipart/form-data`), list, one, its XML, its versions.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::DefinitionList;
use super::auth::{CurrentUser, PROCESS_OWNERS};
use super::error::{ApiError, Problem, Resource, from_rejection};
use super::extract::{ApiQuery, RawBody};
use super::views::DefinitionView;
use reglament_store::DefinitionRow;
use reglament_store::auth::RegistryEntry;

/// The outcome of a deployment: the first process of the file, and all of them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployResponse {
    pub key: String,
    pub version: i64,
    /// False when the same XML was deployed before (no new version).
    pub created: bool,
    pub definitions: Vec<DeployedView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeployedView {
    pub key: String,
    pub version: i64,
    pub created: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A version number; the latest when absent.
    pub version: Option<i64>,
}

/// The parts of a multipart deployment, as OpenAPI shows them.
#[derive(Debug, ToSchema)]
pub struct DeployParts {
    /// The BPMN 2.0 model: one part whose file name ends in `.bpmn` (or `.xml`).
    #[schema(value_type = String, format = Binary)]
    pub model: Vec<u8>,
    /// Camunda Forms: parts whose file names end in `.form`, any number; a user task links
    /// one by `zeebe:formDefinition formId` = the form's `id`.
    #[schema(value_type = Vec<String>, format = Binary)]
    pub forms: Vec<Vec<u8>>,
}

/// Deploys a BPMN 2.0 document: each executable process becomes a new version of its key when
/// its XML (or one of its forms) changed. Needs the `process-owners` group. A model whose user
/// tasks link Camunda Forms is deployed as `multipart/form-data` with its `.form` files
/// (`curl -F model=@order.bpmn -F form=@decision.form`); findings in a form name its `file`.
#[utoipa::path(
    post, path = "/api/definitions", operation_id = "deployDefinition", summary = "Развернуть определение процесса (BPMN, формы Camunda)", tag = "definitions",
    request_body(
        description = "BPMN 2.0 XML, до 16 МиБ; или multipart/form-data: файл .bpmn и файлы форм .form",
        content(
            (String = "application/xml"),
            (DeployParts = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 201, description = "Развёрнута новая версия", body = DeployResponse),
        (status = 200, description = "Такая версия уже развёрнута", body = DeployResponse),
        (status = 400, description = "Составное тело без файла .bpmn, с двумя моделями или с файлом другого типа", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Нет токена", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Нужна группа process-owners", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Слишком большой файл", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Модель или форма с ошибками: `errors` с file (для формы), line, column, element, message", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deploy(State(state): State<AppState>, user: CurrentUser, request: Request) -> Result<Response, ApiError> {
    user.require_group(PROCESS_OWNERS, "Развёртывать определения процессов")?;
    let actor = super::audit::Actor::of(user.login(), request.extensions());
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    let deployed = if multipart {
        let parts = Multipart::from_request(request, &state)
            .await
            .map_err(|e| from_rejection(e.status(), format!("Составное тело не читается: {}", e.body_text())))?;
        let (xml, forms) = model_and_forms(parts).await?;
        state.runtime.deploy_as(&xml, forms, &user.0).await?
    } else {
        let RawBody(xml) = RawBody::from_request(request, &state).await?;
        state.runtime.deploy_as(&xml, Vec::new(), &user.0).await?
    };
    let first = deployed.first().ok_or_else(|| ApiError::internal("a valid model deployed no process"))?;
    let created = deployed.iter().any(|d| d.created);
    let body = DeployResponse {
        key: first.key.clone(),
        version: first.version,
        created,
        definitions: deployed
            .iter()
            .map(|d| DeployedView { key: d.key.clone(), version: d.version, created: d.created })
            .collect(),
    };
    if created {
        let versions: Vec<_> = body.definitions.iter().filter(|d| d.created).map(|d| (&d.key, d.version)).collect();
        actor.record(&state, "definition.deploy", Some(&first.key), serde_json::json!({"versions": versions})).await;
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("{}/api/definitions/{}", state.base_url, first.key);
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
}

/// The one `.bpmn` part and the `.form` parts (file name, bytes) of a multipart deployment.
async fn model_and_forms(mut parts: Multipart) -> Result<(Vec<u8>, Vec<(String, Vec<u8>)>), ApiError> {
    let mut model: Option<(String, Vec<u8>)> = None;
    let mut forms = Vec::new();
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        from_rejection(e.status(), format!("Составное тело не читается: {}", e.body_text()))
    };
    while let Some(part) = parts.next_field().await.map_err(unreadable)? {
        let name = part.file_name().or(part.name()).unwrap_or("").to_string();
        let lower = name.to_lowercase();
        let bytes = part.bytes().await.map_err(unreadable)?.to_vec();
        if lower.ends_with(".form") {
            forms.push((name, bytes));
        } else if lower.ends_with(".bpmn") || lower.ends_with(".xml") {
            if let Some((first, _)) = &model {
                return Err(ApiError::BadRequest(format!(
                    "В развёртывании две модели: `{first}` и `{name}`; разверните их по одной"
                )));
            }
            model = Some((name, bytes));
        } else {
            return Err(ApiError::BadRequest(format!(
                "Часть `{name}` — не модель .bpmn и не форма .form; имя файла должно оканчиваться на .bpmn или .form"
            )));
        }
    }
    let (_, xml) = model.ok_or_else(|| {
        ApiError::BadRequest("В составном теле нет модели: добавьте файл .bpmn (curl -F model=@process.bpmn)".into())
    })?;
    Ok((xml, forms))
}

async fn registry_by_key(state: &AppState) -> Result<BTreeMap<String, RegistryEntry>, ApiError> {
    Ok(state.runtime.store().registry_entries().await?.into_iter().map(|e| (e.key.clone(), e)).collect())
}

/// The latest version of every deployed definition, with its registry fields.
#[utoipa::path(
    get, path = "/api/definitions", operation_id = "listDefinitions", summary = "Развёрнутые определения процессов", tag = "definitions",
    responses(
        (status = 200, body = DefinitionList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<AppState>, _user: CurrentUser) -> Result<Json<DefinitionList>, ApiError> {
    let registry = registry_by_key(&state).await?;
    let tz = state.runtime.default_tz();
    let items = state
        .runtime
        .store()
        .definitions()
        .await?
        .iter()
        .map(|d| DefinitionView::build(d, registry.get(&d.key), tz, &state.base_url))
        .collect();
    Ok(Json(DefinitionList { items, next_cursor: None }))
}

fn not_deployed(key: &str) -> ApiError {
    ApiError::NotFound(Resource::Definition, format!("Определение `{}` не развёрнуто", key.escape_debug()))
}

/// A key that no model can have (control characters, too long) is not looked up: it is not
/// deployed, on PostgreSQL too (which refuses NUL in text).
fn plausible_key(key: &str) -> Result<(), ApiError> {
    if super::hygiene::plausible_id(key) { Ok(()) } else { Err(not_deployed(key)) }
}

async fn versions_of(state: &AppState, key: &str) -> Result<Vec<DefinitionRow>, ApiError> {
    plausible_key(key)?;
    let versions = state.runtime.store().definition_versions(key).await?;
    if versions.is_empty() {
        return Err(not_deployed(key));
    }
    Ok(versions)
}

fn pick(versions: &[DefinitionRow], key: &str, version: Option<i64>) -> Result<DefinitionRow, ApiError> {
    match version {
        None => Ok(versions.last().expect("not empty").clone()),
        Some(v) => {
            versions.iter().find(|d| d.version == v).cloned().ok_or_else(|| {
                ApiError::NotFound(Resource::Definition, format!("У определения `{key}` нет версии {v}"))
            })
        }
    }
}

/// One definition version (the latest unless `version` is given).
#[utoipa::path(
    get, path = "/api/definitions/{key}", operation_id = "getDefinition", summary = "Определение процесса", tag = "definitions",
    params(("key" = String, Path, description = "Идентификатор процесса (BPMN process id)"), VersionQuery),
    responses(
        (status = 200, body = DefinitionView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/definition-not-found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Json<DefinitionView>, ApiError> {
    let versions = versions_of(&state, &key).await?;
    let row = pick(&versions, &key, q.version)?;
    let registry = registry_by_key(&state).await?;
    Ok(Json(DefinitionView::build(&row, registry.get(&key), state.runtime.default_tz(), &state.base_url)))
}

/// The BPMN XML of a definition version, as deployed.
#[utoipa::path(
    get, path = "/api/definitions/{key}/xml", operation_id = "getDefinitionXml", summary = "BPMN XML определения", tag = "definitions",
    params(("key" = String, Path, description = "Идентификатор процесса"), VersionQuery),
    responses(
        (status = 200, description = "BPMN 2.0 XML", body = String, content_type = "application/xml"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn xml(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Response, ApiError> {
    plausible_key(&key)?;
    let (_, xml) = state.runtime.store().definition_xml(&key, q.version).await?.ok_or_else(|| match q.version {
        Some(v) => ApiError::NotFound(Resource::Definition, format!("У определения `{key}` нет версии {v}")),
        None => not_deployed(&key),
    })?;
    Ok(([(header::CONTENT_TYPE, "application/xml; charset=utf-8")], xml).into_response())
}

/// A Camunda Form deployed with a definition version (the latest unless `version` is given),
/// as deployed: the `.form` JSON a user task's `zeebe:formDefinition formId` names.
#[utoipa::path(
    get, path = "/api/definitions/{key}/forms/{formId}", operation_id = "getDefinitionForm", summary = "Форма Camunda, развёрнутая с определением", tag = "definitions",
    params(
        ("key" = String, Path, description = "Идентификатор процесса"),
        ("formId" = String, Path, description = "Идентификатор формы (id файла .form)"),
        VersionQuery,
    ),
    responses(
        (status = 200, description = "JSON формы, как развёрнут", body = Object, content_type = "application/json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn form(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((key, form_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Response, ApiError> {
    let versions = versions_of(&state, &key).await?;
    let row = pick(&versions, &key, q.version)?;
    let forms = state.runtime.store().definition_forms(&key, row.version).await?;
    let found = forms.into_iter().find(|f| f.form_id == form_id).ok_or_else(|| {
        ApiError::NotFound(
            Resource::Definition,
            format!("У версии {} определения `{key}` нет формы `{form_id}`", row.version),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], found.content).into_response())
}

/// Every deployed version of a definition, oldest first.
#[utoipa::path(
    get, path = "/api/definitions/{key}/versions", operation_id = "listDefinitionVersions", summary = "Версии определения", tag = "definitions",
    params(("key" = String, Path, description = "Идентификатор процесса")),
    responses(
        (status = 200, body = DefinitionList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn versions(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
) -> Result<Json<DefinitionList>, ApiError> {
    let tz = state.runtime.default_tz();
    let items =
        versions_of(&state, &key).await?.iter().map(|d| DefinitionView::build(d, None, tz, &state.base_url)).collect();
    Ok(Json(DefinitionList { items, next_cursor: None }))
}
