//! Browser sessions: a random id in an HttpOnly cookie, stored as its SHA-256, with
//! the CSRF token of the forms the session may post.

use rusqlite::{params, OptionalExtension};

use super::{now_ms, random_secret, secret_hash, Accounts, AccountsError, Identity};

/// A session just opened: the cookie value and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: Identity,
    pub csrf: String,
}

impl Accounts {
    /// Opens a session for `user`, valid for `hours`.
    pub fn open_session(&self, user: &str, hours: f64) -> Result<NewSession, AccountsError> {
        let id = random_secret();
        let csrf = random_secret();
        let expires = now_ms() + (hours * 3_600_000.0) as i64;
        let db = self.db();
        db.execute(
            "DELETE FROM sessions WHERE expires_ms < ?1",
            params![now_ms()],
        )?;
        let opened = db.execute(
            "INSERT INTO sessions (id_hash, user, csrf, expires_ms) \
             SELECT ?1, name, ?3, ?4 FROM users WHERE name = ?2",
            params![secret_hash(&id), user, csrf, expires],
        )?;
        if opened == 0 {
            return Err(AccountsError::NoSuchUser(user.to_owned()));
        }
        Ok(NewSession { id, csrf })
    }

    /// The session a cookie names, if it is live and its user still exists.
    pub fn session(&self, id: &str) -> Option<Session> {
        let found: Option<(String, String, String)> = self
            .db()
            .query_row(
                "SELECT s.user, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user \
                 WHERE s.id_hash = ?1 AND s.expires_ms >= ?2",
                params![secret_hash(id), now_ms()],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .ok()
            .flatten();
        let (name, role, csrf) = found?;
        Some(Session {
            identity: Identity {
                name,
                role: role.parse().ok()?,
            },
            csrf,
        })
    }

    /// Ends a session (logout).
    pub fn close_session(&self, id: &str) -> Result<(), AccountsError> {
        self.db().execute(
            "DELETE FROM sessions WHERE id_hash = ?1",
            params![secret_hash(id)],
        )?;
        Ok(())
    }
}
