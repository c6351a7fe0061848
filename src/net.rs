//! Endpoint helpers: the transport limits of a bound socket, binding with a clear
//! error, and clearing a stale `ipc://` socket file (zmq.rs refuses to bind over
//! one that a crashed process left).

use std::time::Duration;

use zeromq::{Socket, SocketOptions};

/// Room for the envelope frames (identity, delimiter) on top of
/// `max_message_bytes`, so that a body just over it still reaches the protocol and
/// gets a `too_large` reply; a peer claiming more is dropped by the transport.
pub const ENVELOPE_ALLOWANCE: usize = 64 * 1024;

/// The transport limits of a bound socket (`[broker]` in bus.toml).
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    pub max_message_bytes: usize,
    pub max_frames_per_message: usize,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_queued_per_peer: usize,
}

/// The options of a socket the broker binds: `limits`, each enforced by the
/// transport while it reads (the offending peer is dropped and logged by the
/// `zeromq` target, naming the peer and the limit).
pub fn socket_options(limits: &TransportLimits) -> SocketOptions {
    let mut options = SocketOptions::default();
    options
        .max_message_size(limits.max_message_bytes.saturating_add(ENVELOPE_ALLOWANCE))
        .max_frames_per_message(limits.max_frames_per_message)
        .handshake_timeout(limits.handshake_timeout)
        .max_connections(limits.max_connections)
        .send_queue_limit(limits.max_queued_per_peer);
    options
}

/// An endpoint that could not be bound.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot bind {role} endpoint {endpoint}: {message}")]
pub struct BindError {
    /// The socket's role (`client`, `worker`, `events`).
    pub role: &'static str,
    pub endpoint: String,
    pub message: String,
}

/// Binds `socket` to `endpoint` and returns the endpoint actually bound (port 0
/// resolved).
pub async fn bind<S: Socket>(
    socket: &mut S,
    role: &'static str,
    endpoint: &str,
) -> Result<String, BindError> {
    let error = |message: String| BindError {
        role,
        endpoint: endpoint.to_owned(),
        message,
    };
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        clear_stale_ipc(std::path::Path::new(path)).map_err(error)?;
    }
    socket
        .bind(endpoint)
        .await
        .map(|bound| bound.to_string())
        .map_err(|e| error(e.to_string()))
}

/// Removes `path` if it is a socket file nobody listens on.
fn clear_stale_ipc(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(format!("{} exists and is not a socket", path.display()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(format!("{} is in use by a live process", path.display())),
        Err(_) => {
            log::info!("removing stale ipc socket {}", path.display());
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))
        }
    }
}
