//! API tokens: a random secret shown once, stored as its SHA-256, with a role.

use rusqlite::{params, OptionalExtension};

use super::Role;
use super::{check_name, now_ms, random_secret, secret_hash, Accounts, AccountsError, Identity};

/// Every token starts with this, so that a leaked one is easy to search for.
pub const TOKEN_PREFIX: &str = "tbk_";

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

impl Accounts {
    /// Creates a token and returns its secret: the only time it is seen.
    pub fn create_token(&self, name: &str, role: Role) -> Result<String, AccountsError> {
        check_name(name)?;
        let secret = format!("{TOKEN_PREFIX}{}", random_secret());
        let inserted = self.db().execute(
            "INSERT OR IGNORE INTO tokens (name, role, token_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), secret_hash(&secret), now_ms()],
        )?;
        if inserted == 0 {
            return Err(AccountsError::TokenExists(name.to_owned()));
        }
        Ok(secret)
    }

    /// Revokes a token: it stops working at once.
    pub fn revoke_token(&self, name: &str) -> Result<(), AccountsError> {
        if self
            .db()
            .execute("DELETE FROM tokens WHERE name = ?1", params![name])?
            == 0
        {
            return Err(AccountsError::NoSuchToken(name.to_owned()));
        }
        Ok(())
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, AccountsError> {
        let db = self.db();
        let mut statement =
            db.prepare("SELECT name, role, created_ms, last_used_ms FROM tokens ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok(TokenInfo {
                name: row.get(0)?,
                role: row.get(1)?,
                created_ms: row.get(2)?,
                last_used_ms: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who a token secret belongs to, if it is valid.
    pub fn check_token(&self, secret: &str) -> Option<Identity> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let hash = secret_hash(secret);
        let db = self.db();
        let found: Option<(String, String)> = db
            .query_row(
                "SELECT name, role FROM tokens WHERE token_hash = ?1",
                params![hash],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .ok()
            .flatten();
        let (name, role) = found?;
        let _ = db.execute(
            "UPDATE tokens SET last_used_ms = ?2 WHERE token_hash = ?1",
            params![hash, now_ms()],
        );
        Some(Identity {
            name: format!("token:{name}"),
            role: role.parse().ok()?,
        })
    }
}
