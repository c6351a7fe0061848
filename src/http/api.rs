//! `POST /api`: exactly the JSON the ZeroMQ client endpoint takes, answered with
//! exactly its JSON. And [`call`], the one path every HTTP route takes into the
//! broker: role check, the broker's own handler, the audit line.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::Value;

use super::auth::{show, Visitor};
use super::site::{error_reply, status_of, SiteRef, FORBIDDEN};
use crate::accounts::roles::{changes_state, role_for, verb};
use crate::broker::CallError;
use crate::protocol::client::ClientRequest;
use crate::protocol::decode::peek;
use crate::protocol::{code, Format, ProtocolError};

pub fn routes() -> Router<SiteRef> {
    Router::new().route("/api", post(post_api))
}

/// `POST /api`: one client request as JSON.
#[utoipa::path(
    post,
    path = "/api",
    tag = "verbs",
    request_body(content = crate::protocol::client::ClientRequest, description = "a client request: {\"type\": VERB, fields}", content_type = "application/json"),
    responses(
        (status = 200, description = "the verb's reply, as on the ZeroMQ client endpoint", body = Value),
        (status = 400, description = "malformed JSON, unknown type or bad fields", body = super::site::ErrorReply),
        (status = 401, description = "no valid session or token", body = super::site::ErrorReply),
        (status = 403, description = "the caller's role does not allow the verb", body = super::site::ErrorReply),
        (status = 404, description = "no such task or topic", body = super::site::ErrorReply),
        (status = 409, description = "the task is not leased", body = super::site::ErrorReply),
        (status = 413, description = "body too large", body = super::site::ErrorReply),
        (status = 503, description = "store unavailable or broker stopping", body = super::site::ErrorReply),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn post_api(
    State(site): State<SiteRef>,
    Extension(visitor): Extension<Visitor>,
    body: Bytes,
) -> Response {
    match parse_request(&site, &body) {
        Ok(request) => call(&site, &visitor, request).await,
        Err(error) => {
            log::warn!(
                "http client={} bad request: {}",
                show(visitor.address),
                error.message
            );
            error_reply(error.code, error.message)
        }
    }
}

/// Reads a JSON client request as the ZeroMQ client endpoint does.
pub fn parse_request(site: &SiteRef, body: &[u8]) -> Result<ClientRequest, ProtocolError> {
    if Format::detect(body) != Format::Json {
        return Err(ProtocolError::new(
            code::MALFORMED,
            "POST /api takes a JSON object: {\"type\": VERB, ...}",
        ));
    }
    let typed = peek(body, Format::Json, site.limits.max_message_bytes)?;
    ClientRequest::parse(&typed, site.limits.max_get_count)
}

/// Serves one typed request for `visitor`: refused if the role does not allow it,
/// else answered by the broker; state changes go to the audit log.
pub async fn call(site: &SiteRef, visitor: &Visitor, request: ClientRequest) -> Response {
    match call_raw(site, visitor, request).await {
        Ok((status, body)) => json_response(status, body),
        Err(response) => response,
    }
}

/// [`call`], returning the status and JSON body for routes that reshape it.
pub async fn call_raw(
    site: &SiteRef,
    visitor: &Visitor,
    mut request: ClientRequest,
) -> Result<(StatusCode, Bytes), Response> {
    let needed = role_for(&request);
    let name = verb(&request);
    if !visitor.may(needed) {
        log::warn!(
            "http refused: user={} role={} may not {} (needs {}) from {}",
            visitor.identity.name,
            visitor.identity.role,
            name,
            needed,
            show(visitor.address)
        );
        return Err(error_reply(
            FORBIDDEN,
            format!(
                "{name} needs the {needed} role; {} is {}",
                visitor.identity.name, visitor.identity.role
            ),
        ));
    }
    if let ClientRequest::DeleteTask { by, .. } = &mut request {
        if by.is_none() {
            *by = Some(visitor.identity.name.clone());
        }
    }
    let audited = changes_state(&request).then(|| audit_detail(&request));
    let body = match site.caller.call(request).await {
        Ok(body) => body,
        Err(CallError::Busy) => {
            return Err(error_reply(
                code::SHUTTING_DOWN,
                "the broker is overloaded; try again",
            ))
        }
        Err(CallError::Stopped) => {
            return Err(error_reply(code::SHUTTING_DOWN, "the broker is stopping"))
        }
    };
    let status = error_code_of(&body).map_or(StatusCode::OK, |c| status_of(&c));
    if let Some(detail) = audited {
        if status.is_success() {
            site.audit(&visitor.identity.name, name, &detail);
        }
    }
    Ok((status, body))
}

/// The `code` of an error reply body, if the body is one.
pub fn error_code_of(body: &[u8]) -> Option<String> {
    // Error replies are small objects; a large body is a task list, not an error.
    if body.first() != Some(&b'{') || body.len() > 64 * 1024 {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    if object.len() == 2 && object.contains_key("error") {
        return object.get("code")?.as_str().map(str::to_owned);
    }
    None
}

pub fn json_response(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// What the audit log says of a request: its target, not its bodies.
fn audit_detail(request: &ClientRequest) -> String {
    use ClientRequest as R;
    match request {
        R::PutTask { tasks } => {
            let mut topics: Vec<&str> = tasks
                .iter()
                .map(|t| t.topic.as_deref().unwrap_or("?"))
                .collect();
            topics.sort_unstable();
            topics.dedup();
            format!("tasks={} topics={}", tasks.len(), topics.join(","))
        }
        R::DeadRetry { topic, guids } | R::DeadPurge { topic, guids } => format!(
            "topic={} guids={}",
            topic.as_deref().unwrap_or("*"),
            if guids.is_empty() {
                "all".to_owned()
            } else {
                guids.len().to_string()
            }
        ),
        R::AddTask { spec } => format!(
            "id={}",
            spec.get("id").and_then(Value::as_str).unwrap_or("?")
        ),
        R::ModifyTask { id, .. } | R::PauseTask { id } | R::ResumeTask { id } => {
            format!("id={id}")
        }
        R::DeleteTask { id, .. } => format!("id={id}"),
        other => verb(other).to_owned(),
    }
}
