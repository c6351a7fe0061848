//! Table and column names: what may be one, and how each backend quotes it.
//!
//! Names come from task types and parsed field names, i.e. from outside. They are
//! validated (letters, digits and `_` only, at most 64 characters) AND quoted, so no
//! name can ever change the meaning of a statement.

/// The longest name MySQL accepts for a table or a column.
pub const MAX_NAME_CHARS: usize = 64;

/// What the page column was called in tables made by earlier versions; such a
/// column is renamed `url` when the table is first written or read.
pub const LEGACY_URL_COLUMN: &str = "_url";

/// The storer's own columns, which no field may take.
pub const RESERVED_COLUMNS: [&str; 4] = ["_key", "_guid", "url", "_stored_at"];

/// Checks a name for a table or column: 1 to 64 characters, each a letter, a digit or
/// `_`. The error says why, without repeating the name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let n_chars = name.chars().count();
    if n_chars > MAX_NAME_CHARS {
        return Err(format!(
            "{n_chars} characters, at most {MAX_NAME_CHARS} are allowed"
        ));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_alphanumeric() || *c == '_')) {
        return Err(format!(
            "character {bad:?} is not allowed (only letters, digits and _)"
        ));
    }
    Ok(())
}

/// Checks a full table name (prefix included).
pub fn check_table(name: &str) -> Result<(), String> {
    check_name(name)?;
    // SQLite keeps its own objects under this prefix and refuses to create more.
    if name.to_ascii_lowercase().starts_with("sqlite_") {
        return Err("names starting with sqlite_ are reserved".into());
    }
    Ok(())
}

/// Checks a field name that becomes a column.
pub fn check_column(name: &str) -> Result<(), String> {
    check_name(name).map_err(|why| format!("invalid field name {name:?}: {why}"))?;
    if RESERVED_COLUMNS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
    {
        return Err(format!("field name {name:?} is reserved by the storer"));
    }
    Ok(())
}

/// Column identity as both databases see it: ASCII case does not matter.
pub fn column_id(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Quotes a name for MySQL/MariaDB.
pub fn quote_mysql(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a name for SQLite.
pub fn quote_sqlite(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_unicode_names() {
        for name in ["jm_crawl", "jd_app2", "_x", "价格", "Price"] {
            assert_eq!(check_table(name), Ok(()), "{name}");
        }
        assert_eq!(check_name(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn rejects_what_cannot_be_a_name() {
        let long = "a".repeat(65);
        for name in [
            "", "a.b", "a b", "a`b", "a\"b", "x;drop", "a-b", &long, "t\0",
        ] {
            assert!(check_table(name).is_err(), "{name:?} accepted");
        }
        assert!(check_table("sqlite_master").is_err());
        assert!(check_table("SQLite_x").is_err());
    }

    #[test]
    fn reserved_columns_are_refused_in_any_case() {
        assert!(check_column("_key").is_err());
        assert!(check_column("URL").is_err());
        assert_eq!(check_column("_id"), Ok(()));
        let why = check_column("a.b").unwrap_err();
        assert!(why.contains("\"a.b\""), "{why}");
    }

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_mysql("a`b"), "`a``b`");
        assert_eq!(quote_sqlite("a\"b"), "\"a\"\"b\"");
    }
}
