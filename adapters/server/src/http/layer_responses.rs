//! The answers the layers give, added to the OpenAPI document in one place: a handler's
//! `#[utoipa::path]` names what the handler answers, and this module what the layers around it
//! answer, so the document lists every status a client can get (the fuzzer test checks it).
//!
//! - every route: 503 (the request timeout, an overloaded server, the database down);
//! - under `/api` and `/v2`: 401 (the authentication layer);
//! - a JSON body: 400 (not JSON), 413 (over the size limit), 415 (not `application/json`),
//!   422 (JSON of the wrong shape);
//! - query parameters: 400 (a parameter that does not parse);
//! - writes under `/api` and `/v2`: the `Idempotency-Key` header (DESIGN §6: "writes accept an
//!   Idempotency-Key") and its answers 400 (a malformed key), 409 (the first request with the
//!   key still runs), 413 (the body over the limit), 422 (the key used for another request).
//!
//! A status the handler already documents keeps the handler's description.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Required, ResponseBuilder};

use super::error::PROBLEM_JSON;
use super::idempotency;

/// Adds the layers' answers (and the `Idempotency-Key` header of writes) to every operation.
pub fn add(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let api = path.starts_with("/api/") || path.starts_with("/v2/");
        let operations = [
            (false, &mut item.get),
            (true, &mut item.put),
            (true, &mut item.post),
            (true, &mut item.delete),
            (true, &mut item.patch),
        ];
        for (write, operation) in operations {
            if let Some(operation) = operation {
                add_to(operation, api, api && write);
            }
        }
    }
}

fn add_to(operation: &mut Operation, api: bool, write: bool) {
    let json_body = operation.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json"));
    let has_query = operation.parameters.iter().flatten().any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let mut added: Vec<(u16, &str)> =
        vec![(503, "Сервер перегружен, база данных недоступна или запрос не обработан вовремя; можно повторить")];
    if api {
        added.push((401, "Нет API-токена, он недействителен или пользователь отключён"));
    }
    if json_body {
        added.extend([
            (400, "Тело запроса — не корректный JSON"),
            (413, "Тело запроса больше допустимого"),
            (415, "Тело запроса без `Content-Type: application/json`"),
            (422, "Поля запроса не соответствуют схеме"),
        ]);
    }
    if has_query {
        added.push((400, "Параметр запроса задан неверно"));
    }
    if write {
        add_idempotency_key(operation);
        added.extend([
            (400, "Idempotency-Key — не строка ASCII от 1 до 255 символов"),
            (409, "Запрос с этим Idempotency-Key ещё выполняется"),
            (413, "Тело запроса больше допустимого"),
            (422, "Этот Idempotency-Key уже использован для другого запроса"),
        ]);
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in added {
        responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(PROBLEM_JSON, Content::new(Some(Ref::from_schema_name("Problem"))))
                    .build(),
            )
        });
    }
}

/// Declares the `Idempotency-Key` header with the keys the layer takes; a handler that
/// declares it keeps its description.
fn add_idempotency_key(operation: &mut Operation) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    match parameters.iter_mut().find(|p| p.name.eq_ignore_ascii_case(idempotency::HEADER)) {
        Some(declared) => declared.schema = Some(idempotency::key_schema()),
        None => parameters.push(idempotency_key()),
    }
}

fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some("Повтор с тем же ключом вернёт тот же ответ и ничего не изменит"))
        .schema(Some(idempotency::key_schema()))
        .build()
}
