//! `[auth]` of bus.toml: who may talk to the ZeroMQ endpoints, and protected mode.
//! A leaf: the broker hands in the endpoints it is about to bind.

use serde::{Deserialize, Deserializer};

use crate::net::BindError;

/// The shortest worker secret accepted: a guessable secret is no secret.
pub const MIN_SECRET_CHARS: usize = 16;

/// `[auth]`: tokens on the client and worker endpoints.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Every client request and every worker READY must carry a token (an API token
    /// of the accounts, or the worker secret for worker verbs).
    pub required: bool,
    /// A secret shared by the workers, accepted in READY and for the worker verbs
    /// (`get_task`, `ack`, `nack`) in place of an API token. Also
    /// `TASKBUS__AUTH__WORKER_SECRET`. Empty: workers need an API token.
    #[serde(deserialize_with = "text_or_number")]
    pub worker_secret: String,
    /// Lets a broker without `required` bind a non-loopback TCP address (protected
    /// mode off). Anyone who reaches the port may then do anything.
    pub allow_unauthenticated_public: bool,
    /// The API token this process's own clients and workers send (the `taskbus` CLI,
    /// `taskbus-worker`, the stages of `taskbus run`). Also `TASKBUS__AUTH__TOKEN`.
    /// Empty: workers send `worker_secret`, and the CLI sends nothing.
    pub token: String,
}

impl AuthConfig {
    /// What a worker of this configuration sends in READY.
    pub fn worker_token(&self) -> Option<String> {
        [&self.token, &self.worker_secret]
            .into_iter()
            .find(|t| !t.is_empty())
            .cloned()
    }

    /// What a client of this configuration sends with each request.
    pub fn client_token(&self) -> Option<String> {
        (!self.token.is_empty()).then(|| self.token.clone())
    }
}

/// The secret never reaches a log through `{:?}`.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("required", &self.required)
            .field("worker_secret", &"(hidden)")
            .field("token", &"(hidden)")
            .field(
                "allow_unauthenticated_public",
                &self.allow_unauthenticated_public,
            )
            .finish()
    }
}

impl AuthConfig {
    /// Checks the worker secret.
    pub fn validate(&self) -> Result<(), String> {
        let secret = self.worker_secret.trim();
        if !secret.is_empty() && secret.chars().count() < MIN_SECRET_CHARS {
            return Err(format!(
                "auth.worker_secret is too short: at least {MIN_SECRET_CHARS} characters"
            ));
        }
        Ok(())
    }

    /// Protected mode: without `required`, refuses any of the broker's `endpoints`
    /// (`(role, endpoint)` pairs) that another machine could reach, unless
    /// `allow_unauthenticated_public`.
    pub fn protect(&self, endpoints: &[(&'static str, &str)]) -> Result<(), BindError> {
        if self.required || self.allow_unauthenticated_public {
            return Ok(());
        }
        match endpoints
            .iter()
            .find(|(_, endpoint)| !is_private_endpoint(endpoint))
        {
            None => Ok(()),
            Some((role, endpoint)) => Err(BindError {
                role,
                endpoint: (*endpoint).to_owned(),
                message: "protected mode: not a loopback or ipc:// address and [auth] \
                          required is false; set [auth] required = true (clients and workers \
                          then need tokens), or set [auth] allow_unauthenticated_public = true \
                          to let anyone who reaches the port use the bus"
                    .into(),
            }),
        }
    }
}

/// Whether only this machine can reach `endpoint`: `ipc://`, `inproc://`, or TCP on
/// a loopback address (127.0.0.0/8, ::1, `localhost`).
pub fn is_private_endpoint(endpoint: &str) -> bool {
    let endpoint = endpoint.trim();
    if endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://") {
        return true;
    }
    let Some(address) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A secret given through the environment may read as a number; it is text anyway.
fn text_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Integer(i64),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::Text(text) => text,
        Raw::Integer(number) => number.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_ipc_are_private() {
        for endpoint in [
            "ipc:///tmp/bus.sock",
            "tcp://127.0.0.1:5555",
            "tcp://127.1.2.3:0",
            "tcp://[::1]:5555",
            "tcp://localhost:5555",
        ] {
            assert!(is_private_endpoint(endpoint), "{endpoint}");
        }
        for endpoint in [
            "tcp://0.0.0.0:5555",
            "tcp://*:5555",
            "tcp://[::]:5555",
            "tcp://10.0.0.5:5555",
            "tcp://eth0:5555",
        ] {
            assert!(!is_private_endpoint(endpoint), "{endpoint}");
        }
    }

    #[test]
    fn protected_mode_names_the_endpoint_and_both_ways_out() {
        let config = AuthConfig::default();
        let endpoints = [
            ("client", "tcp://127.0.0.1:0"),
            ("worker", "tcp://0.0.0.0:5556"),
        ];
        let error = config.protect(&endpoints).unwrap_err().to_string();
        assert!(
            error.contains("worker endpoint tcp://0.0.0.0:5556"),
            "{error}"
        );
        assert!(error.contains("required = true"), "{error}");
        assert!(
            error.contains("allow_unauthenticated_public = true"),
            "{error}"
        );
        let open = AuthConfig {
            allow_unauthenticated_public: true,
            ..AuthConfig::default()
        };
        assert!(open.protect(&endpoints).is_ok());
        let guarded = AuthConfig {
            required: true,
            ..AuthConfig::default()
        };
        assert!(guarded.protect(&endpoints).is_ok());
        assert!(config.protect(&endpoints[..1]).is_ok());
    }

    #[test]
    fn short_secrets_are_refused() {
        let config = AuthConfig {
            worker_secret: "short".into(),
            ..AuthConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("worker_secret"));
    }
}
