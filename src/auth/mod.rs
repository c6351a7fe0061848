//! Who may talk to the ZeroMQ endpoints: the `token` a client request or a worker's
//! READY carries, checked against the accounts' API tokens (or the workers' shared
//! secret) and the role each verb needs (`accounts/roles.rs`, the same table as
//! HTTP). The token is read off the raw body in a pass of its own, so the protocol's
//! types do not know about it; with `[auth] required = false` nothing is read and
//! replies are exactly as without this module.
//!
//! Not here: the HTTP side's tokens and sessions (`http/auth.rs`).

pub mod config;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::accounts::roles::{role_for, verb};
use crate::accounts::{Accounts, Role};
use crate::protocol::client::ClientRequest;
use crate::protocol::{Format, ProtocolError};
pub use config::AuthConfig;

/// Error code: no token, or one that is not (or no longer) valid.
pub const UNAUTHORIZED: &str = "unauthorized";
/// Error code: a valid token whose role does not allow the verb.
pub const FORBIDDEN: &str = "forbidden";

/// How long a token's lookup is trusted: a revoked token is refused at most this
/// long after the revocation.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// Lookups remembered at most; past it the cache starts over.
const CACHE_MAX: usize = 10_000;

static REFUSED_UNAUTHORIZED: AtomicU64 = AtomicU64::new(0);
static REFUSED_FORBIDDEN: AtomicU64 = AtomicU64::new(0);

/// Requests and READYs refused on the ZeroMQ endpoints since the process started,
/// per error code (`/metrics` shows them).
pub fn refusals() -> [(&'static str, u64); 2] {
    [
        (UNAUTHORIZED, REFUSED_UNAUTHORIZED.load(Ordering::Relaxed)),
        (FORBIDDEN, REFUSED_FORBIDDEN.load(Ordering::Relaxed)),
    ]
}

/// The broker's gate: decides each client request and each READY.
pub struct Guard {
    required: bool,
    secret_hash: Option<[u8; 32]>,
    accounts: Result<Accounts, String>,
    cache: HashMap<[u8; 32], (Option<Caller>, Instant)>,
}

/// Who a token proved the caller to be.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    role: Role,
}

impl Guard {
    /// A gate for `config`; opens the accounts at `accounts_file` when tokens are
    /// required (a file that cannot be opened refuses every API token, with a log
    /// line, while the worker secret still works).
    pub fn new(config: &AuthConfig, accounts_file: &Path) -> Guard {
        let secret = config.worker_secret.trim();
        let accounts = if config.required {
            Accounts::open(accounts_file).map_err(|error| {
                let message = format!("accounts file {}: {error}", accounts_file.display());
                log::error!("auth: {message}; API tokens are refused on ZeroMQ");
                message
            })
        } else {
            Err("auth is off".to_owned())
        };
        Guard {
            required: config.required,
            secret_hash: (!secret.is_empty()).then(|| hash(secret)),
            accounts,
            cache: HashMap::new(),
        }
    }

    /// A gate that lets everything through (`[auth] required = false`).
    pub fn open() -> Guard {
        Guard::new(&AuthConfig::default(), Path::new(""))
    }

    /// Whether `request` (whose raw `body` came in `format`) may be served.
    pub fn check_request(
        &mut self,
        body: &[u8],
        format: Format,
        request: &ClientRequest,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        if !self.required {
            return Ok(());
        }
        let needed = role_for(request);
        self.check(body, format, verb(request), needed, now)
    }

    /// Whether a worker's READY (its raw MessagePack `body`) may register it.
    pub fn check_ready(&mut self, body: &[u8], now: Instant) -> Result<(), ProtocolError> {
        if !self.required {
            return Ok(());
        }
        self.check(body, Format::MsgPack, "ready", Role::Worker, now)
    }

    /// Whether a DONE or FAIL from a worker that has not registered may be served:
    /// with tokens required it may not, since only READY carries the token.
    pub fn check_unregistered(&mut self) -> Result<(), ProtocolError> {
        if !self.required {
            return Ok(());
        }
        REFUSED_UNAUTHORIZED.fetch_add(1, Ordering::Relaxed);
        Err(ProtocolError::new(
            UNAUTHORIZED,
            "done and fail are taken only from a worker registered by a READY with a token",
        ))
    }

    fn check(
        &mut self,
        body: &[u8],
        format: Format,
        verb: &str,
        needed: Role,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        let outcome = match carried_token(body, format) {
            Ok(Some(token)) => self.decide(&token, verb, needed, now),
            Ok(None) => Err(ProtocolError::new(
                UNAUTHORIZED,
                format!("{verb} needs a token: add \"token\" next to \"type\""),
            )),
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            let counter = if error.code == FORBIDDEN {
                &REFUSED_FORBIDDEN
            } else {
                &REFUSED_UNAUTHORIZED
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    fn decide(
        &mut self,
        token: &str,
        verb: &str,
        needed: Role,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        let Some(caller) = self.identify(token, now) else {
            return Err(ProtocolError::new(
                UNAUTHORIZED,
                format!("{verb}: token not valid (unknown, revoked or mistyped)"),
            ));
        };
        if caller.role.allows(needed) {
            return Ok(());
        }
        Err(ProtocolError::new(
            FORBIDDEN,
            format!(
                "{verb} needs role {needed} or higher; {} has role {}",
                caller.name, caller.role
            ),
        ))
    }

    /// The caller a token names: the worker secret, or an API token (looked up at
    /// most once per [`CACHE_FOR`]).
    fn identify(&mut self, token: &str, now: Instant) -> Option<Caller> {
        let token_hash = hash(token);
        if self
            .secret_hash
            .is_some_and(|secret| same(&secret, &token_hash))
        {
            return Some(Caller {
                name: "worker-secret".into(),
                role: Role::Worker,
            });
        }
        if let Some((caller, at)) = self.cache.get(&token_hash) {
            if now.saturating_duration_since(*at) < CACHE_FOR {
                return caller.clone();
            }
        }
        let accounts = self.accounts.as_ref().ok()?;
        let caller = accounts.check_token(token).map(|identity| Caller {
            name: identity.name,
            role: identity.role,
        });
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(token_hash, (caller.clone(), now));
        caller
    }
}

/// The `token` field of a request or message body, if it has one; the other fields
/// are skipped unread.
pub fn carried_token(body: &[u8], format: Format) -> Result<Option<String>, ProtocolError> {
    #[derive(Deserialize)]
    struct Carried {
        #[serde(default)]
        token: Option<String>,
    }
    let refused = |error: String| {
        ProtocolError::new(
            UNAUTHORIZED,
            format!("\"token\" must be one string: {error}"),
        )
    };
    let carried: Carried = match format {
        Format::Json => serde_json::from_slice(body).map_err(|e| refused(e.to_string()))?,
        Format::MsgPack => rmp_serde::from_slice(body).map_err(|e| refused(e.to_string()))?,
    };
    Ok(carried.token)
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares two digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
