//! `[http]` of bus.toml: the HTTP API and the web site. A leaf.

use std::path::PathBuf;

use serde::Deserialize;

/// `[http]`: where the HTTP face listens and how callers prove who they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` to listen on; `""` turns the HTTP face off.
    pub listen: String,
    /// Every route but the login page and `/healthz` needs a session or a token.
    /// `false` is for loopback demos only: refused on any other address.
    pub auth: bool,
    /// How long a browser session lasts.
    pub session_hours: f64,
    /// The accounts file; empty: `accounts.sqlite3` in `[store] data_dir`.
    pub accounts_path: PathBuf,
    /// Lines the audit log keeps (the oldest go first).
    pub audit_keep: u64,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Failed logins per account and address before further tries are refused for
    /// `login_lockout_secs`.
    pub login_attempts: u32,
    pub login_lockout_secs: u64,
    /// PEM certificate chain and private key: both set serves HTTPS (rustls).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            auth: true,
            session_hours: 12.0,
            accounts_path: PathBuf::new(),
            audit_keep: 100_000,
            max_body_bytes: 16 * 1024 * 1024,
            login_attempts: 5,
            login_lockout_secs: 60,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

impl HttpConfig {
    /// The accounts file: `accounts_path`, else `accounts.sqlite3` in `data_dir`.
    pub fn accounts_file(&self, data_dir: &std::path::Path) -> PathBuf {
        if self.accounts_path.as_os_str().is_empty() {
            data_dir.join("accounts.sqlite3")
        } else {
            self.accounts_path.clone()
        }
    }

    /// The certificate and key files when HTTPS is on.
    pub fn tls(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        let set = !self.tls_cert.as_os_str().is_empty();
        set.then_some((self.tls_cert.as_path(), self.tls_key.as_path()))
    }

    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.session_hours <= 0.0 || !self.session_hours.is_finite() {
            return Err("http.session_hours must be a positive number".into());
        }
        if self.tls_cert.as_os_str().is_empty() != self.tls_key.as_os_str().is_empty() {
            return Err("http.tls_cert and http.tls_key go together: set both or neither".into());
        }
        if self.enabled() && !self.auth {
            let host = self.listen.rsplit_once(':').map_or("", |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "http.auth = false is allowed only on a loopback address, not on \"{}\"",
                    self.listen
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_off_is_refused_off_loopback() {
        let mut config = HttpConfig {
            auth: false,
            ..HttpConfig::default()
        };
        assert!(config.validate().is_ok());
        config.listen = "[::1]:8080".into();
        assert!(config.validate().is_ok());
        config.listen = "0.0.0.0:8080".into();
        let error = config.validate().unwrap_err();
        assert!(error.contains("0.0.0.0:8080"), "{error}");
        config.auth = true;
        assert!(config.validate().is_ok());
    }
}
