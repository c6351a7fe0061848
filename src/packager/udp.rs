//! UDP log lines in the seed's format: `%Y-%m-%d %H:%M:%S` + 3 spaces + level + 3
//! spaces + info (the separators of the Chinese original), local time.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Local};
use tokio::net::UdpSocket;

use super::config::PackagerConfig;

/// The seed's UDP log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpLevel {
    /// SIGHUP seen, exiting.
    Notice,
    /// The package was missing when its notice was sent (the seed's spelling).
    Waring,
    /// Packaging failed.
    Error,
}

impl UdpLevel {
    /// The level as the seed writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notice => "notice",
            Self::Waring => "waring",
            Self::Error => "error",
        }
    }
}

/// Formats one line: `2024-01-02 03:04:05   error   <info>`.
pub fn format_udp_line(time: &DateTime<Local>, level: UdpLevel, info: &str) -> String {
    format!(
        "{}   {}   {}",
        time.format("%Y-%m-%d %H:%M:%S"),
        level.as_str(),
        info
    )
}

/// Sends log lines to `udp_host:udp_port`; does nothing but local logging when unset.
/// Clones share one socket.
#[derive(Debug, Clone)]
pub struct UdpLogger {
    target: Option<Arc<(UdpSocket, SocketAddr)>>,
}

/// The UDP target cannot be resolved or bound.
#[derive(Debug, thiserror::Error)]
#[error("udp log target {target}: {cause}")]
pub struct UdpSetupError {
    target: String,
    cause: std::io::Error,
}

impl UdpLogger {
    /// A logger that only logs locally.
    pub fn disabled() -> Self {
        Self { target: None }
    }

    /// Resolves `udp_host:udp_port` once and binds a socket of the same family.
    pub async fn from_config(cfg: &PackagerConfig) -> Result<Self, UdpSetupError> {
        let (Some(host), Some(port)) = (&cfg.udp_host, cfg.udp_port) else {
            return Ok(Self::disabled());
        };
        let target = format!("{host}:{port}");
        let setup = |cause| UdpSetupError {
            target: target.clone(),
            cause,
        };
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(setup)?
            .next()
            .ok_or_else(|| setup(std::io::ErrorKind::NotFound.into()))?;
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal address")
        } else {
            "[::]:0".parse().expect("literal address")
        };
        let socket = UdpSocket::bind(local).await.map_err(setup)?;
        Ok(Self {
            target: Some(Arc::new((socket, addr))),
        })
    }

    /// Logs `info` locally and sends the line; a send failure is only logged, since
    /// the remote log must never stop packaging.
    pub async fn send(&self, level: UdpLevel, info: &str) {
        match level {
            UdpLevel::Notice => log::info!("udp {}: {info}", level.as_str()),
            UdpLevel::Waring => log::warn!("udp {}: {info}", level.as_str()),
            UdpLevel::Error => log::error!("udp {}: {info}", level.as_str()),
        }
        let Some(target) = &self.target else {
            return;
        };
        let (socket, addr) = target.as_ref();
        let line = format_udp_line(&Local::now(), level, info);
        if let Err(e) = socket.send_to(line.as_bytes(), addr).await {
            log::warn!("udp log to {addr} failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn line_has_seed_layout() {
        let time = Local.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            format_udp_line(&time, UdpLevel::Waring, "apk missing"),
            "2024-01-02 03:04:05   waring   apk missing"
        );
    }
}
