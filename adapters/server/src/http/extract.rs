//! Extractors whose rejections are [`ApiError`]s, so malformed input gets a problem document
//! with the exact status (400 syntax, 413 size, 415 content type, 422 shape).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, from_rejection};

/// A JSON body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(from_rejection(rejection.status(), rejection.body_text())),
        }
    }
}

/// A JSON body that may be left out (an empty body is `T::default()`), as Camunda's clients
/// send some job calls without one.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| from_rejection(rejection.status(), rejection.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(OptionalJson(value)),
            Err(rejection) => Err(from_rejection(rejection.status(), rejection.body_text())),
        }
    }
}

/// A query string.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::BadRequest(query_problem(&rejection.body_text()))),
        }
    }
}

/// The reason a query string was refused, in Russian: serde's text ("Failed to deserialize query
/// string: version: invalid digit found in string") names the parameter and, in English, the
/// fault; the parameter is kept and the fault is said in words.
fn query_problem(text: &str) -> String {
    let text = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(text);
    match text.split_once(": ") {
        Some((field, reason)) if !field.contains(' ') => {
            format!("Параметр запроса `{field}` задан неверно: {}", crate::http::error::serde_reason_ru(reason))
        }
        _ => format!("Некорректные параметры запроса: {}", crate::http::error::serde_reason_ru(text)),
    }
}

/// A raw body (BPMN XML), within the route's size limit.
#[derive(Debug, Clone, Default)]
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) => Err(from_rejection(rejection.status(), rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::query_problem;

    #[test]
    fn query_and_json_faults_are_said_in_russian() {
        use crate::http::error::serde_reason_ru;
        assert_eq!(
            serde_reason_ru("invalid type: integer `5`, expected a string at line 1 column 19"),
            "неверный тип значения: целое число `5`, а ожидается строка (строка 1, позиция 19)"
        );
        assert_eq!(
            serde_reason_ru("EOF while parsing a value at line 1 column 22"),
            "JSON обрывается (строка 1, позиция 22)"
        );
        assert_eq!(
            serde_reason_ru("unknown field `x`, expected one of `a`, `b`"),
            "неизвестное поле `x`; допустимы: `a`, `b`"
        );
        assert_eq!(serde_reason_ru("something new"), "something new");
        for (raw, said) in [
            (
                "Failed to deserialize query string: version: invalid digit found in string",
                "Параметр запроса `version` задан неверно: ожидается целое число",
            ),
            (
                "Failed to deserialize query string: version: number too large to fit in target type",
                "Параметр запроса `version` задан неверно: число вне допустимых пределов",
            ),
            (
                "Failed to deserialize query string: state: unknown variant `x`, expected one of `active`, `completed`",
                "Параметр запроса `state` задан неверно: недопустимое значение `x`; допустимы: `active`, `completed`",
            ),
            (
                "Failed to deserialize query string: missing field `key`",
                "Некорректные параметры запроса: нет обязательного поля `key`",
            ),
        ] {
            assert_eq!(query_problem(raw), said);
        }
    }
}
