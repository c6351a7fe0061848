//! Users: names, roles and argon2 password hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};

use super::{check_name, now_ms, Accounts, AccountsError, Identity, Role};

/// A user as listed (never with the hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: String,
    pub created_ms: i64,
}

/// A hash that a missing user's check is run against, so that the time of a failed
/// login does not tell whether the name exists.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ";

fn hash_password(password: &str) -> Result<String, AccountsError> {
    if password.chars().count() < 8 {
        return Err(AccountsError::ShortPassword);
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountsError::Hash(e.to_string()))
}

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Accounts {
    /// Adds a user.
    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<(), AccountsError> {
        check_name(name)?;
        let hash = hash_password(password)?;
        let inserted = self.db().execute(
            "INSERT OR IGNORE INTO users (name, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash, now_ms()],
        )?;
        if inserted == 0 {
            return Err(AccountsError::UserExists(name.to_owned()));
        }
        Ok(())
    }

    /// Sets a user's password; their sessions end.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AccountsError> {
        let hash = hash_password(password)?;
        let db = self.db();
        let changed = db.execute(
            "UPDATE users SET password_hash = ?2 WHERE name = ?1",
            params![name, hash],
        )?;
        if changed == 0 {
            return Err(AccountsError::NoSuchUser(name.to_owned()));
        }
        db.execute("DELETE FROM sessions WHERE user = ?1", params![name])?;
        Ok(())
    }

    /// Sets a user's role.
    pub fn set_role(&self, name: &str, role: Role) -> Result<(), AccountsError> {
        let changed = self.db().execute(
            "UPDATE users SET role = ?2 WHERE name = ?1",
            params![name, role.as_str()],
        )?;
        if changed == 0 {
            return Err(AccountsError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    /// Removes a user and their sessions.
    pub fn remove_user(&self, name: &str) -> Result<(), AccountsError> {
        let db = self.db();
        db.execute("DELETE FROM sessions WHERE user = ?1", params![name])?;
        if db.execute("DELETE FROM users WHERE name = ?1", params![name])? == 0 {
            return Err(AccountsError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    pub fn list_users(&self) -> Result<Vec<UserInfo>, AccountsError> {
        let db = self.db();
        let mut statement = db.prepare("SELECT name, role, created_ms FROM users ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok(UserInfo {
                name: row.get(0)?,
                role: row.get(1)?,
                created_ms: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn n_users(&self) -> Result<u64, AccountsError> {
        let n: i64 = self
            .db()
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
        Ok(n as u64)
    }

    /// Checks a password; slow on purpose (argon2), whether or not the user exists.
    pub fn check_password(&self, name: &str, password: &str) -> Option<Identity> {
        let found: Option<(String, String)> = self
            .db()
            .query_row(
                "SELECT role, password_hash FROM users WHERE name = ?1",
                params![name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .ok()
            .flatten();
        match found {
            Some((role, hash)) if verify(password, &hash) => Some(Identity {
                name: name.to_owned(),
                role: role.parse().ok()?,
            }),
            Some(_) => None,
            None => {
                verify(password, DUMMY_HASH);
                None
            }
        }
    }
}
