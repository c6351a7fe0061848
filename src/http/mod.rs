//! The HTTP face of the broker: `POST /api` (the client endpoint's JSON verbs over
//! HTTP), resource routes, the OpenAPI document, Prometheus metrics, accounts and
//! the audit log. It is one more transport over the typed protocol: every verb goes
//! through [`Caller`] into the broker's loop and is answered by the same handler as
//! on ZeroMQ.
//!
//! Not here: the web pages (`web/`), which are routes of this same server.

mod admin;
pub mod api;
pub mod auth;
pub mod config;
mod login;
mod metrics;
pub mod openapi;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::broker::Caller;
use crate::protocol::code;
pub use config::HttpConfig;

/// Everything a request handler needs: the broker, the accounts, the settings.
pub struct Site {
    pub caller: Caller,
    pub accounts: Accounts,
    pub config: HttpConfig,
    pub limits: Limits,
    pub throttle: auth::Throttle,
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
            throttle: auth::Throttle::default(),
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

/// The whole router: public routes, then everything behind the auth guard.
pub fn app(site: SiteRef) -> Router {
    let guarded = Router::new()
        .merge(api::routes())
        .merge(routes::routes())
        .merge(admin::routes())
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            site.clone(),
            auth::guard,
        ));
    Router::new()
        .merge(guarded)
        .merge(login::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(site.config.max_body_bytes))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .with_state(site)
}

/// Why the HTTP face could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on http address {listen}: {cause}")]
    Bind {
        listen: String,
        cause: std::io::Error,
    },
    #[error("accounts file {path}: {cause}")]
    Accounts {
        path: std::path::PathBuf,
        cause: crate::accounts::AccountsError,
    },
}

/// The HTTP face, listening.
pub struct Running {
    pub address: SocketAddr,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Opens the accounts and starts serving `[http] listen` for the broker behind
/// `caller`, until `shutdown`; `None` when `listen` is empty.
pub async fn start(
    config: &HttpConfig,
    data_dir: &std::path::Path,
    limits: Limits,
    caller: Caller,
    shutdown: CancellationToken,
) -> Result<Option<Running>, HttpError> {
    if !config.enabled() {
        return Ok(None);
    }
    let path = config.accounts_file(data_dir);
    let accounts =
        Accounts::open(&path).map_err(|cause| HttpError::Accounts { path: path.clone(), cause })?;
    let listener = tokio::net::TcpListener::bind(config.listen.trim())
        .await
        .map_err(|cause| HttpError::Bind {
            listen: config.listen.clone(),
            cause,
        })?;
    let address = listener.local_addr().map_err(|cause| HttpError::Bind {
        listen: config.listen.clone(),
        cause,
    })?;
    if config.auth && accounts.n_users().unwrap_or(0) == 0 {
        log::warn!(
            "http: no user exists yet; create the first admin with `taskbus user add NAME --role admin --password-stdin`"
        );
    }
    let site = Site::new(caller, accounts, config.clone(), limits);
    log::info!("http serving http://{address}/ (auth {})", if config.auth { "on" } else { "off" });
    let task = tokio::spawn(serve(listener, app(site), shutdown));
    Ok(Some(Running { address, task }))
}

/// Serves `app` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
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
