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
mod rejections;
mod routes;
pub mod site;
mod throttle;
mod tls;

use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::broker::Caller;
pub use config::HttpConfig;
pub use site::{error_reply, status_of, Limits, Site, SiteRef};

/// Routes served beside the API by the same server (the web site's pages), given by
/// the layer above so that this module does not depend on them.
#[derive(Default)]
pub struct Pages {
    /// Behind the auth guard.
    pub guarded: Router<SiteRef>,
    /// Open to all (assets).
    pub public: Router<SiteRef>,
}

/// The whole router: public routes, then everything behind the auth guard.
pub fn app(site: SiteRef, pages: Pages) -> Router {
    let guarded = Router::new()
        .merge(api::routes())
        .merge(routes::routes())
        .merge(admin::routes())
        .merge(pages.guarded)
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            site.clone(),
            auth::guard,
        ));
    Router::new()
        .merge(guarded)
        .merge(login::routes())
        .merge(pages.public)
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(site.config.max_body_bytes))
        .layer(axum::middleware::from_fn(rejections::json_errors))
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
    #[error("https with certificate {cert}: {cause}")]
    Tls {
        cert: std::path::PathBuf,
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
    pages: Pages,
    shutdown: CancellationToken,
) -> Result<Option<Running>, HttpError> {
    if !config.enabled() {
        return Ok(None);
    }
    let path = config.accounts_file(data_dir);
    let accounts = Accounts::open(&path).map_err(|cause| HttpError::Accounts {
        path: path.clone(),
        cause,
    })?;
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
    let scheme = if config.tls().is_some() {
        "https"
    } else {
        "http"
    };
    log::info!(
        "http serving {scheme}://{address}/ (auth {})",
        if config.auth { "on" } else { "off" }
    );
    let task = match config.tls() {
        Some((cert, key)) => tls::spawn(listener, app(site, pages), cert, key, shutdown)
            .await
            .map_err(|cause| HttpError::Tls {
                cert: cert.to_owned(),
                cause,
            })?,
        None => tokio::spawn(serve(listener, app(site, pages), shutdown)),
    };
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
