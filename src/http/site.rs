//! The state every handler shares ([`Site`]) and the error replies of the HTTP face.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::config::HttpConfig;
use super::throttle::Throttle;
use crate::accounts::Accounts;
use crate::broker::Caller;
use crate::protocol::code;

/// Everything a request handler needs: the broker, the accounts, the settings.
pub struct Site {
    pub caller: Caller,
    pub accounts: Accounts,
    pub config: HttpConfig,
    pub limits: Limits,
    pub throttle: Throttle,
}

/// The broker's request limits, applied to HTTP bodies the same way.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_get_count: usize,
}

pub type SiteRef = Arc<Site>;

impl Site {
    pub fn new(caller: Caller, accounts: Accounts, config: HttpConfig, limits: Limits) -> SiteRef {
        Arc::new(Site {
            caller,
            accounts,
            config,
            limits,
            throttle: Throttle::default(),
        })
    }

    /// Appends to the audit log; a failure is logged, never fatal to the request.
    pub fn audit(&self, who: &str, action: &str, detail: &str) {
        log::info!("audit who={who} action={action} {detail}");
        if let Err(error) = self
            .accounts
            .audit(who, action, detail, self.config.audit_keep)
        {
            log::error!("audit line not written (who={who} action={action}): {error}");
        }
    }
}

/// The HTTP status of a stable error code.
pub fn status_of(error_code: &str) -> StatusCode {
    match error_code {
        code::MALFORMED | code::BAD_FRAMES | code::UNKNOWN_TYPE | code::BAD_REQUEST => {
            StatusCode::BAD_REQUEST
        }
        code::TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        code::UNKNOWN_TOPIC | code::NOT_FOUND => StatusCode::NOT_FOUND,
        code::NOT_LEASED => StatusCode::CONFLICT,
        code::STORE_UNAVAILABLE | code::SHUTTING_DOWN => StatusCode::SERVICE_UNAVAILABLE,
        code::UNROUTABLE => StatusCode::UNPROCESSABLE_ENTITY,
        UNAUTHORIZED => StatusCode::UNAUTHORIZED,
        FORBIDDEN => StatusCode::FORBIDDEN,
        CONFLICT => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// No identity, or a wrong one.
pub const UNAUTHORIZED: &str = "unauthorized";
/// An identity whose role does not allow the call.
pub const FORBIDDEN: &str = "forbidden";
/// A name that exists already.
pub const CONFLICT: &str = "conflict";

/// An error reply: `{"error": message, "code": code}` with the status of its code.
pub fn error_reply(error_code: &'static str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "code": error_code });
    (status_of(error_code), Json(body)).into_response()
}

/// An error reply: a message for people, a stable code for programs.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorReply {
    pub error: String,
    /// malformed, bad_frames, too_large, unknown_type, bad_request, unknown_topic,
    /// not_found, not_leased, store_unavailable, shutting_down, unroutable,
    /// unauthorized, forbidden, conflict
    pub code: String,
}
