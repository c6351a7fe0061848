//! The audit log: who changed what, when. Bounded: the oldest lines go past `keep`.

use rusqlite::params;

use super::{now_ms, Accounts, AccountsError};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditLine {
    pub id: i64,
    pub at_ms: i64,
    pub who: String,
    pub action: String,
    pub detail: String,
}

impl Accounts {
    /// Appends a line and keeps at most `keep` lines.
    pub fn audit(
        &self,
        who: &str,
        action: &str,
        detail: &str,
        keep: u64,
    ) -> Result<(), AccountsError> {
        let db = self.db();
        db.execute(
            "INSERT INTO audit (at_ms, who, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms(), who, action, detail],
        )?;
        let last = db.last_insert_rowid();
        db.execute(
            "DELETE FROM audit WHERE id <= ?1",
            params![last - keep as i64],
        )?;
        Ok(())
    }

    /// The newest lines first; `before` pages back from an id.
    pub fn audit_lines(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Vec<AuditLine>, AccountsError> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT id, at_ms, who, action, detail FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows =
            statement.query_map(params![before.unwrap_or(i64::MAX), limit as i64], |row| {
                Ok(AuditLine {
                    id: row.get(0)?,
                    at_ms: row.get(1)?,
                    who: row.get(2)?,
                    action: row.get(3)?,
                    detail: row.get(4)?,
                })
            })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
