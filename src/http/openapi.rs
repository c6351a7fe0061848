//! The OpenAPI 3 document of the HTTP API, generated from the handlers' annotations
//! and the request and reply types (utoipa), served at `GET /api/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use super::site::ErrorReply;

#[derive(OpenApi)]
#[openapi(
    info(title = "taskbus", description = "The taskbus broker over HTTP: the client verbs of the ZeroMQ endpoint (POST /api), resource routes, accounts."),
    paths(
        super::api::post_api,
        super::routes::stats,
        super::routes::size,
        super::routes::put_tasks,
        super::routes::topic_tasks,
        super::routes::task,
        super::routes::total_tasks,
        super::routes::add_total_task,
        super::routes::modify_total_task,
        super::routes::delete_total_task,
        super::routes::pause_total_task,
        super::routes::resume_total_task,
        super::routes::dead,
        super::routes::dead_retry,
        super::routes::dead_purge,
        super::admin::list_users,
        super::admin::add_user,
        super::admin::remove_user,
        super::admin::list_tokens,
        super::admin::create_token,
        super::admin::revoke_token,
        super::admin::audit,
    ),
    components(schemas(ErrorReply, crate::protocol::client::ClientRequest, crate::task::NewTask, crate::protocol::client::ListFilter)),
    modifiers(&Security, &ErrorResponses)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                super::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The error replies every operation may give (the guard, the body and query
/// readers and the broker's codes answer them all), each an [`ErrorReply`].
struct ErrorResponses;

/// The statuses of [`ErrorResponses`] and what each means.
const ERROR_STATUSES: [(&str, &str); 10] = [
    ("400", "malformed or invalid input"),
    ("401", "no session or token, or a revoked one"),
    (
        "403",
        "the caller's role does not allow this, or a missing CSRF token",
    ),
    ("404", "no such task, topic, total task, user or token"),
    ("405", "the route does not take this method"),
    ("409", "the name exists already, or the task is not leased"),
    ("413", "the body is larger than the limit"),
    ("415", "the body is not JSON"),
    ("422", "the body is JSON of the wrong shape"),
    (
        "503",
        "the store refuses commits, or the broker is stopping or overloaded",
    ),
];

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let reply = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorReply")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, description) in ERROR_STATUSES {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| reply(description).into());
                }
            }
        }
    }
}

/// `GET /api/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
