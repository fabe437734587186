//! Definitions: deploy (BPMN XML), list, one, its XML, its versions.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::DefinitionList;
use super::auth::{CurrentUser, PROCESS_OWNERS};
use super::error::{ApiError, Problem, Resource};
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

/// Deploys a BPMN 2.0 document: each executable process becomes a new version of its key when
/// its XML changed. Needs the `process-owners` group.
#[utoipa::path(
    post, path = "/api/definitions", operation_id = "deployDefinition", summary = "Развернуть определение процесса (BPMN)", tag = "definitions",
    request_body(content = String, content_type = "application/xml", description = "BPMN 2.0 XML, до 16 МиБ"),
    responses(
        (status = 201, description = "Развёрнута новая версия", body = DeployResponse),
        (status = 200, description = "Такая версия уже развёрнута", body = DeployResponse),
        (status = 401, description = "Нет токена", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Нужна группа process-owners", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Слишком большой файл", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Модель с ошибками: `errors` с line, column, element, message", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deploy(
    State(state): State<AppState>,
    user: CurrentUser,
    RawBody(xml): RawBody,
) -> Result<Response, ApiError> {
    user.require_group(PROCESS_OWNERS, "Развёртывать определения процессов")?;
    let deployed = state.runtime.deploy(&xml, Some(user.login())).await?;
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
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("{}/api/definitions/{}", state.base_url, first.key);
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
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

async fn versions_of(state: &AppState, key: &str) -> Result<Vec<DefinitionRow>, ApiError> {
    let versions = state.runtime.store().definition_versions(key).await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(Resource::Definition, format!("Определение `{key}` не развёрнуто")));
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
    let (_, xml) = state.runtime.store().definition_xml(&key, q.version).await?.ok_or_else(|| {
        ApiError::NotFound(
            Resource::Definition,
            match q.version {
                Some(v) => format!("У определения `{key}` нет версии {v}"),
                None => format!("Определение `{key}` не развёрнуто"),
            },
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/xml; charset=utf-8")], xml).into_response())
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
