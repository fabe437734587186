//! The process registry (реестр процессов): the deployed definitions with the columns of the
//! official form (order 1367-r), as JSON or as CSV for a spreadsheet.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use reglament_store::auth::RegistryEntry;

/// The columns of the form, in its order: (field of `reglament:registry`, Russian header).
/// `name` is the process name (from the model); the process id closes the row.
pub const COLUMNS: [(&str, &str); 14] = [
    ("service", "Название услуги, функции, сервиса"),
    ("act", "Регулирующий акт"),
    ("group", "Группа процессов"),
    ("name", "Название процесса"),
    ("owner", "Ответственный за процесс"),
    ("reengineering", "Статус процесса (статус реинжиниринга)"),
    ("client", "Клиент"),
    ("value", "Ценность для клиента"),
    ("inputs", "Данные на входе"),
    ("outputs", "Результат на выходе"),
    ("links", "Связь с другими процессами"),
    ("digital", "Вид процесса (цифровой/не цифровой)"),
    ("placement", "Точка размещения в цифровом виде (ЕПГУ, РПГУ, сайт ведомства)"),
    ("id", "Идентификатор процесса"),
];

/// One process of the registry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryItem {
    pub definition_key: String,
    pub version: i64,
    pub name: String,
    pub service: Option<String>,
    pub act: Option<String>,
    pub group: Option<String>,
    pub owner: Option<String>,
    pub reengineering: Option<String>,
    pub client: Option<String>,
    pub value: Option<String>,
    pub inputs: Option<String>,
    pub outputs: Option<String>,
    pub links: Option<String>,
    pub digital: Option<String>,
    pub placement: Option<String>,
    /// When a registry change or the last actualization touched this entry (UTC); null when
    /// only the model's own metadata describes it.
    pub updated_at: Option<String>,
}

impl RegistryItem {
    pub fn build(e: &RegistryEntry) -> RegistryItem {
        let f = |k: &str| e.fields.get(k).cloned();
        RegistryItem {
            definition_key: e.key.clone(),
            version: e.version,
            name: e.name.clone().unwrap_or_else(|| e.key.clone()),
            service: f("service"),
            act: f("act"),
            group: f("group"),
            owner: f("owner"),
            reengineering: f("reengineering"),
            client: f("client"),
            value: f("value"),
            inputs: f("inputs"),
            outputs: f("outputs"),
            links: f("links"),
            digital: f("digital"),
            placement: f("placement"),
            updated_at: (e.updated_at.timestamp_millis() > 0).then(|| e.updated_at.to_rfc3339()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryList {
    pub items: Vec<RegistryItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RegistryFormat {
    Json,
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistryParams {
    /// `json` (default) or `csv`.
    #[param(inline)]
    pub format: Option<RegistryFormat>,
}

/// The registry as CSV (RFC 4180, UTF-8 with a byte-order mark so spreadsheet programs read
/// the Cyrillic correctly): a header row with the form's Russian column names, then one row per
/// process in key order.
pub fn to_csv(entries: &[RegistryEntry]) -> String {
    let mut out = String::from('\u{feff}');
    out.push_str(&COLUMNS.iter().map(|(_, h)| crate::csv::cell(h)).collect::<Vec<_>>().join(","));
    out.push_str("\r\n");
    for e in entries {
        let row: Vec<String> = COLUMNS
            .iter()
            .map(|(field, _)| match *field {
                "name" => crate::csv::cell(e.name.as_deref().unwrap_or(&e.key)),
                "id" => crate::csv::cell(&e.key),
                other => crate::csv::cell(e.fields.get(other).map(String::as_str).unwrap_or("")),
            })
            .collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The process registry.
#[utoipa::path(
    get, path = "/api/registry", operation_id = "getRegistry", summary = "Реестр процессов", tag = "registry",
    params(RegistryParams),
    responses(
        (status = 200, description = "JSON, или CSV с русскими заголовками граф формы реестра", content(
            (RegistryList = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn registry(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(p): ApiQuery<RegistryParams>,
) -> Result<Response, ApiError> {
    let entries = state.runtime.store().registry_entries().await?;
    Ok(match p.format.unwrap_or(RegistryFormat::Json) {
        RegistryFormat::Json => {
            Json(RegistryList { items: entries.iter().map(RegistryItem::build).collect(), next_cursor: None })
                .into_response()
        }
        RegistryFormat::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"registry.csv\""),
            ],
            to_csv(&entries),
        )
            .into_response(),
    })
}
