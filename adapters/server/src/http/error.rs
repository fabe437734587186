//! The one error type of the API: every failure leaves as `application/problem+json` (RFC 9457)
//! with a stable `type`, a Russian `title`, a `detail` and the `status`.
//!
//! Rejections of the engine map to 404/409/422; storage failures and broken invariants become a
//! 500 whose body says nothing about the cause (the cause is logged).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reglament_engine::Diagnostic;
use reglament_engine::runtime::Rejection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::driver::{DeployError, DriverError, Missing};
use reglament_store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// What went wrong, as the API reports it.
#[derive(Debug)]
pub enum ApiError {
    /// No `Authorization: Bearer` token, or one that belongs to nobody.
    Unauthorized(String),
    /// Signed in, but not allowed to do this.
    Forbidden(String),
    /// A resource named in the path does not exist.
    NotFound(Resource, String),
    /// No route has this path.
    RouteNotFound,
    MethodNotAllowed,
    /// Malformed syntax: bad JSON, a bad query string, a bad cursor.
    BadRequest(String),
    /// Well-formed input that does not fit: wrong types, missing fields, an invalid form.
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// A BPMN model with errors, with every diagnostic.
    InvalidModel(Vec<Diagnostic>),
    /// The request does not fit the resource's current state (a task completed twice, claimed
    /// by someone else, an idempotency key in flight or reused for another request).
    Conflict(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    Timeout,
    /// The server is shutting down or the database is unreachable.
    Unavailable(String),
    /// Anything else: logged, never shown.
    Internal(String),
}

/// Resources whose absence has its own problem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Definition,
    Instance,
    Task,
    User,
    /// A message nobody waits for.
    Subscription,
    /// A job of the /v2 job API.
    Job,
}

/// One problem with one field of the input.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field (form field id or JSON path), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// A diagnostic of a BPMN model refused at deployment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelError {
    /// The `.form` file the finding is in; absent when it is in the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub line: u32,
    pub column: u32,
    pub element: Option<String>,
    pub message: String,
    /// `error` or `warning`.
    pub severity: String,
    /// The diagnostic's stable code (`gateway-without-conditions`, `bad-expression`, …).
    pub code: String,
}

/// The body of every error response (RFC 9457 problem details).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `/problems/task-not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short Russian summary of the kind of problem.
    pub title: String,
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Field problems (`/problems/validation`) or model diagnostics (`/problems/invalid-model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<serde_json::Value>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(..) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } | ApiError::InvalidModel(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `type` and the Russian `title`.
    pub fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Unauthorized(_) => ("/problems/unauthorized", "Требуется вход: передайте действующий API-токен"),
            ApiError::Forbidden(_) => ("/problems/forbidden", "Недостаточно прав"),
            ApiError::NotFound(Resource::Definition, _) => {
                ("/problems/definition-not-found", "Определение процесса не найдено")
            }
            ApiError::NotFound(Resource::Instance, _) => {
                ("/problems/instance-not-found", "Экземпляр процесса не найден")
            }
            ApiError::NotFound(Resource::Task, _) => ("/problems/task-not-found", "Задача не найдена"),
            ApiError::NotFound(Resource::User, _) => ("/problems/user-not-found", "Пользователь не найден"),
            ApiError::NotFound(Resource::Subscription, _) => ("/problems/no-receiver", "Сообщение некому принять"),
            ApiError::NotFound(Resource::Job, _) => ("/problems/job-not-found", "Задание не найдено"),
            ApiError::RouteNotFound => ("/problems/route-not-found", "Адрес не найден"),
            ApiError::MethodNotAllowed => ("/problems/method-not-allowed", "Метод не поддерживается для этого адреса"),
            ApiError::BadRequest(_) => ("/problems/bad-request", "Некорректный запрос"),
            ApiError::Validation { .. } => ("/problems/validation", "Данные не прошли проверку"),
            ApiError::InvalidModel(_) => ("/problems/invalid-model", "Модель процесса содержит ошибки"),
            ApiError::Conflict(_) => ("/problems/conflict", "Действие противоречит текущему состоянию"),
            ApiError::PayloadTooLarge(_) => ("/problems/payload-too-large", "Слишком большой запрос"),
            ApiError::UnsupportedMediaType(_) => {
                ("/problems/unsupported-media-type", "Неподдерживаемый тип содержимого")
            }
            ApiError::Timeout => ("/problems/timeout", "Превышено время обработки запроса"),
            ApiError::Unavailable(_) => ("/problems/unavailable", "Сервис временно недоступен"),
            ApiError::Internal(_) => ("/problems/internal", "Внутренняя ошибка сервера"),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(_, d)
            | ApiError::BadRequest(d)
            | ApiError::Conflict(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::UnsupportedMediaType(d)
            | ApiError::Unavailable(d) => d.clone(),
            ApiError::Validation { detail, .. } => detail.clone(),
            ApiError::RouteNotFound => "Такого адреса в API нет; список адресов — /openapi.json и /docs".into(),
            ApiError::MethodNotAllowed => "Этот адрес не принимает такой метод; см. /docs".into(),
            ApiError::InvalidModel(d) => {
                let errors = d.iter().filter(|d| d.is_error()).count();
                format!("Модель не развёрнута: ошибок — {errors}; все замечания перечислены в `errors`")
            }
            ApiError::Timeout => "Запрос не обработан за отведённое время; повторите его позже".into(),
            ApiError::Internal(_) => "Запрос не выполнен из-за внутренней ошибки; она записана в журнал сервера".into(),
        }
    }

    pub fn problem(&self) -> Problem {
        let (kind, title) = self.kind();
        let errors = match self {
            ApiError::Validation { errors, .. } if !errors.is_empty() => {
                Some(serde_json::to_value(errors).expect("field errors serialise"))
            }
            ApiError::InvalidModel(diags) => {
                let items: Vec<ModelError> = diags.iter().map(model_error).collect();
                Some(serde_json::to_value(items).expect("model errors serialise"))
            }
            _ => None,
        };
        Problem {
            kind: kind.to_string(),
            title: title.to_string(),
            status: self.status().as_u16(),
            detail: self.detail(),
            errors,
        }
    }

    pub fn validation(detail: impl Into<String>) -> ApiError {
        ApiError::Validation { detail: detail.into(), errors: Vec::new() }
    }

    /// Wraps an unexpected failure; the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(cause.to_string())
    }
}

fn model_error(d: &Diagnostic) -> ModelError {
    ModelError {
        file: d.file.clone(),
        line: d.pos.line,
        column: d.pos.col,
        element: d.element.clone(),
        message: d.message.clone(),
        severity: d.severity.to_string(),
        code: d.code.as_str().to_string(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).expect("problems serialise");
        let mut response = (self.status(), body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::InvalidForm(problems) => ApiError::Validation {
                detail: format!("Форма задачи заполнена неверно: {problems}"),
                errors: problems
                    .0
                    .into_iter()
                    .map(|p| FieldError { field: Some(p.field), message: p.message })
                    .collect(),
            },
            Rejection::NoSuchTask(_) => {
                ApiError::Conflict("Задача уже завершена или отменена; повторно её выполнить нельзя".into())
            }
            Rejection::NotActive(status) => {
                ApiError::Conflict(format!("Экземпляр процесса уже не активен (состояние: {status:?})"))
            }
            Rejection::NoSuchStartEvent(_) | Rejection::NoNoneStart | Rejection::Invalid(_) => {
                ApiError::validation(r.to_string())
            }
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

impl From<DriverError> for ApiError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Rejected(r) => r.into(),
            DriverError::NotFound(missing) => {
                let resource = match &missing {
                    Missing::Instance(_) => Resource::Instance,
                    Missing::Task(_) => Resource::Task,
                    Missing::Definition { .. } | Missing::DefinitionVersion { .. } => Resource::Definition,
                    Missing::Receiver { .. } => Resource::Subscription,
                };
                ApiError::NotFound(resource, missing.to_string())
            }
            DriverError::Corrupt(detail) => ApiError::internal(detail),
            DriverError::Store(e) => e.into(),
            DriverError::Conflict => {
                ApiError::Conflict("Экземпляр процесса одновременно изменяется другим узлом; повторите запрос".into())
            }
            DriverError::Duplicate { business_key, existing } => ApiError::Conflict(format!(
                "Запрос с номером «{business_key}» уже зарегистрирован: экземпляр {existing} \
                 (GET /api/process-instances/{existing}); номер процесса должен быть единственным"
            )),
            DriverError::ShuttingDown => ApiError::Unavailable("Сервер останавливается; повторите запрос позже".into()),
            DriverError::Busy => ApiError::Unavailable(
                "Сервер перегружен: команда не выполнена и выполнена не будет; повторите запрос".into(),
            ),
            DriverError::Engine(cause) => ApiError::internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::Unavailable("База данных временно недоступна; повторите запрос позже".into());
        }
        ApiError::internal(e)
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Invalid(diags) => ApiError::InvalidModel(diags),
            DeployError::Store(e) => e.into(),
            DeployError::Engine(cause) => ApiError::internal(cause),
            DeployError::NotOwner(key) => ApiError::Forbidden(format!(
                "Процессом `{key}` владеют другие: новую версию развёртывают владельцы, названные в его модели \
                 (reglament:settings owners), или администратор"
            )),
        }
    }
}

/// Rejections of axum's extractors, with the status axum chose (400, 413, 415, 422).
pub fn from_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
            "Тело запроса больше допустимого для этого адреса; уменьшите его или разделите на части".into(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("Ожидается тело JSON с заголовком `Content-Type: application/json`".into())
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            let field = json_path(&text);
            let reason = text.split_once("target type: ").map_or(text.as_str(), |(_, rest)| rest);
            let reason = match &field {
                Some(path) => reason.strip_prefix(path.as_str()).and_then(|r| r.strip_prefix(": ")).unwrap_or(reason),
                None => reason,
            };
            let message = serde_reason_ru(reason);
            let detail = match &field {
                Some(path) => format!("Поля запроса не соответствуют схеме: поле `{path}`: {message}"),
                None => format!("Поля запроса не соответствуют схеме: {message}"),
            };
            ApiError::Validation { detail, errors: vec![FieldError { field, message }] }
        }
        _ => match text.strip_prefix("Failed to parse the request body as JSON: ") {
            Some(reason) => {
                // A syntax error may come with the path it was met at (`definitionKey: EOF …`).
                let reason = match reason.split_once(": ") {
                    Some((path, rest)) if !path.contains(' ') => rest,
                    _ => reason,
                };
                ApiError::BadRequest(format!("Тело запроса — не корректный JSON: {}", serde_reason_ru(reason)))
            }
            None => ApiError::BadRequest(format!("Некорректный запрос: {}", serde_reason_ru(&text))),
        },
    }
}

/// serde's (and serde_json's) English reason for refusing a value, said in Russian; a reason
/// it does not know is kept as it is, so nothing is lost.
pub fn serde_reason_ru(reason: &str) -> String {
    let (reason, place) = match reason.rsplit_once(" at line ") {
        Some((r, at)) => match at.split_once(" column ") {
            Some((line, column)) => (r, format!(" (строка {line}, позиция {column})")),
            None => (reason, String::new()),
        },
        None => (reason, String::new()),
    };
    let kind = |k: &str| -> String {
        let k = k.trim();
        let bare = k.strip_prefix("a ").or_else(|| k.strip_prefix("an ")).unwrap_or(k);
        let (word, shown) = match bare.split_once(' ') {
            Some((w, v)) if v.starts_with('`') => (w, Some(v)),
            _ => (bare, None),
        };
        let ru = match word {
            "integer" | "i64" | "u64" | "i32" | "u32" | "u16" => "целое число",
            "floating" | "f64" | "number" => "число",
            "string" | "str" => "строка",
            "boolean" | "bool" => "true или false",
            "map" | "struct" | "object" => "объект",
            "sequence" | "array" | "tuple" => "массив",
            "null" | "unit" => "null",
            "char" => "символ",
            _ => return k.to_string(),
        };
        match shown {
            Some(v) => format!("{ru} {v}"),
            None => ru.to_string(),
        }
    };
    let said = if let Some(rest) = reason.strip_prefix("invalid type: ") {
        match rest.split_once(", expected ") {
            Some((got, want)) => format!("неверный тип значения: {}, а ожидается {}", kind(got), kind(want)),
            None => format!("неверный тип значения: {rest}"),
        }
    } else if let Some(rest) = reason.strip_prefix("invalid value: ") {
        match rest.split_once(", expected ") {
            Some((got, want)) => format!("недопустимое значение {}; ожидается {want}", kind(got)),
            None => format!("недопустимое значение: {rest}"),
        }
    } else if let Some(name) = reason.strip_prefix("missing field ") {
        format!("нет обязательного поля {name}")
    } else if let Some(name) = reason.strip_prefix("duplicate field ") {
        format!("поле {name} указано дважды")
    } else if let Some(rest) = reason.strip_prefix("unknown field ") {
        rest.split_once(", expected one of ").map_or_else(
            || format!("неизвестное поле {}", rest.split(", expected").next().unwrap_or(rest)),
            |(name, allowed)| format!("неизвестное поле {name}; допустимы: {allowed}"),
        )
    } else if let Some(rest) = reason.strip_prefix("unknown variant ") {
        match rest.split_once(", expected one of ").or_else(|| rest.split_once(", expected ")) {
            Some((value, allowed)) => format!("недопустимое значение {value}; допустимы: {allowed}"),
            None => format!("недопустимое значение {rest}"),
        }
    } else if let Some(rest) = reason.strip_prefix("invalid length ") {
        format!("неверная длина {}", rest.replace(", expected ", "; ожидается "))
    } else {
        match reason {
            "EOF while parsing a value"
            | "EOF while parsing an object"
            | "EOF while parsing a list"
            | "EOF while parsing a string" => "JSON обрывается".into(),
            "expected value" => "ожидается значение JSON".into(),
            "trailing characters" => "после JSON есть лишние символы".into(),
            "key must be a string" => "ключ объекта должен быть строкой в кавычках".into(),
            "expected `,` or `}`" => "ожидается `,` или `}`".into(),
            "expected `,` or `]`" => "ожидается `,` или `]`".into(),
            "expected `:`" => "ожидается `:`".into(),
            "invalid number" | "number out of range" => "неверное число".into(),
            "invalid escape" => "неверная escape-последовательность в строке".into(),
            "recursion limit exceeded" => "JSON вложен слишком глубоко".into(),
            "invalid unicode code point" | "lone leading surrogate in hex escape" => {
                "неверный символ Unicode в строке".into()
            }
            r if r.starts_with("control character") => {
                "управляющий символ внутри строки; запишите его как \\uXXXX".into()
            }
            r if r.starts_with("invalid digit") || r.starts_with("cannot parse integer") => {
                "ожидается целое число".into()
            }
            r if r.contains("too large") || r.contains("too small") => "число вне допустимых пределов".into(),
            r if r.starts_with("invalid float literal") => "ожидается число".into(),
            r if r.starts_with("provided string was not `true` or `false`") => "ожидается true или false".into(),
            r => r.to_string(),
        }
    };
    format!("{said}{place}")
}

/// serde_path_to_error's path in axum's message (`Failed to deserialize the JSON body into the
/// target type: variables: invalid type…`).
fn json_path(text: &str) -> Option<String> {
    let rest = text.split_once("target type: ")?.1;
    let (path, _) = rest.split_once(": ")?;
    (!path.contains(' ')).then(|| path.to_string())
}
