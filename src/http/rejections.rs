//! The API answers every error as JSON: what axum's extractors and router answer in
//! plain text (a body of the wrong shape, a wrong method, no such route) is rewritten
//! as `{"error": message, "code": code}` with its status kept.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::protocol::code;

/// The largest plain-text rejection read back (axum's are one line).
const MAX_REJECTION_BYTES: usize = 16 * 1024;

/// Middleware over the API routes.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api");
    let response = next.run(request).await;
    let status = response.status();
    if !api || !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match to_bytes(body, MAX_REJECTION_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase()
    } else {
        text
    };
    let reply = serde_json::json!({"error": message, "code": code_of(status)});
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(reply.to_string()))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The stable code of a rejection's status.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => code::NOT_FOUND,
        StatusCode::PAYLOAD_TOO_LARGE => code::TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => code::MALFORMED,
        StatusCode::SERVICE_UNAVAILABLE => code::SHUTTING_DOWN,
        _ => code::BAD_REQUEST,
    }
}
