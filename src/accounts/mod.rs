//! Accounts: users with roles, API tokens, browser sessions and the audit log, kept in
//! one SQLite file beside the broker's store (`accounts.sqlite3`). Passwords are
//! hashed with argon2; tokens and session ids are random and stored as SHA-256
//! hashes, so a copy of the file gives no way in.
//!
//! Not here: who may call which verb (`roles.rs`), and the HTTP face (`http/`).

mod audit;
pub mod roles;
mod sessions;
mod tokens;
mod users;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use audit::AuditLine;
pub use roles::Role;
pub use tokens::TokenInfo;
pub use users::UserInfo;

/// The file name of the accounts database in the store's folder.
pub const FILE_NAME: &str = "accounts.sqlite3";

/// Why an accounts operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("accounts database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no user named \"{0}\"")]
    NoSuchUser(String),
    #[error("user \"{0}\" exists already")]
    UserExists(String),
    #[error("no token named \"{0}\"")]
    NoSuchToken(String),
    #[error("token \"{0}\" exists already")]
    TokenExists(String),
    #[error("invalid name \"{0}\": use 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    #[error("password too short: at least 8 characters")]
    ShortPassword,
    #[error("password hashing: {0}")]
    Hash(String),
}

/// Who is calling, once a password, token or session proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name, or `token:NAME` for an API token.
    pub name: String,
    pub role: Role,
}

/// The accounts database. Cheap to clone; calls block briefly on SQLite (password
/// checks for tens of milliseconds on argon2: call them off the async threads).
#[derive(Clone)]
pub struct Accounts {
    db: Arc<Mutex<Connection>>,
}

impl Accounts {
    /// Opens (or creates) the accounts file at `path`.
    pub fn open(path: &Path) -> Result<Accounts, AccountsError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Connection::open(path)?;
        Self::init(db)
    }

    /// An accounts database that lives in memory only (tests, demos).
    pub fn in_memory() -> Result<Accounts, AccountsError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Accounts, AccountsError> {
        // A rollback journal, not WAL: no shared-memory file to map, and the CLI and
        // the broker may both open the file.
        db.pragma_update(None, "journal_mode", "delete")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Accounts {
            db: Arc::new(Mutex::new(db)),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    last_used_ms INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A random secret: 32 bytes as 64 hex digits.
fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The SHA-256 of a secret, as stored.
fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_name(name: &str) -> Result<(), AccountsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AccountsError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests;
