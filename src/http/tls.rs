//! HTTPS: the same router served over TLS (rustls) when `[http] tls_cert` and
//! `tls_key` are set. Certificates are read once at start; a renewed certificate
//! needs a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;

/// How long open HTTPS connections get to finish when the broker stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Reads the PEM certificate chain and key, then serves `app` over TLS on
/// `listener` until `shutdown` is cancelled. The files are read before this returns,
/// so a wrong path or key fails the start, not the first connection.
pub async fn spawn(
    listener: tokio::net::TcpListener,
    app: Router,
    cert: &Path,
    key: &Path,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let tls = RustlsConfig::from_pem_file(cert, key).await?;
    let server = axum_server::from_tcp_rustls(listener.into_std()?, tls)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    Ok(tokio::spawn(server.handle(handle).serve(
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )))
}
