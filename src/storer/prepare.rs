//! From a parsed row to what is written: its `_key`, its checked cells, their kinds.
//!
//! Everything here is pure and backend-neutral, and runs in the caller's task so that
//! the single writer only does database work.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ident;

/// One row to store: one item of a task's `parsing_data`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// The guid of the task the row came from (`_guid` column).
    pub guid: String,
    /// The page the row was parsed from (`url` column).
    pub url: String,
    /// The row's position among its task's items; with `guid` and `url` it makes the
    /// row's hash key, so the same item of a redelivered task lands on the same row.
    pub index: usize,
    /// Field name -> value; each field is a column (strings TEXT, integers BIGINT,
    /// floats DOUBLE, booleans BOOLEAN, objects and arrays JSON text). Null = no value.
    pub fields: Map<String, Value>,
}

/// A natural key longer than this (in characters) is replaced by `sha256:<hex>` of it,
/// so that it fits the `_key` column (VARCHAR(191): the widest utf8mb4 key InnoDB
/// indexes in every row format).
pub const KEY_MAX_CHARS: usize = 191;

/// The SQL type family of a column, chosen by the first non-null value it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Float,
    Bool,
    Json,
}

impl Kind {
    /// The kind a value asks for; `None` for null, which fits any column.
    pub fn of(value: &Value) -> Option<Kind> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(Kind::Bool),
            Value::Number(n) if n.is_f64() => Some(Kind::Float),
            Value::Number(_) => Some(Kind::Int),
            Value::String(_) => Some(Kind::Text),
            Value::Array(_) | Value::Object(_) => Some(Kind::Json),
        }
    }

    /// The kind of an existing column from its declared type (MySQL `COLUMN_TYPE` or
    /// SQLite's declared type) and, for MySQL, its comment (`json` marks JSON columns,
    /// which MariaDB reports as `longtext`).
    pub fn from_sql_type(declared: &str, comment: &str) -> Kind {
        let declared = declared.to_ascii_lowercase();
        if comment.eq_ignore_ascii_case("json") || declared.starts_with("json") {
            Kind::Json
        } else if declared.starts_with("tinyint(1)") || declared.contains("bool") {
            Kind::Bool
        } else if declared.contains("int") {
            Kind::Int
        } else if ["real", "floa", "doub", "dec", "numeric"]
            .iter()
            .any(|t| declared.contains(t))
        {
            Kind::Float
        } else {
            Kind::Text
        }
    }

    /// Column type in MySQL/MariaDB. Strings are MEDIUMTEXT (16 MiB): TEXT's 64 KiB is
    /// too small for the page bodies and descriptions crawls store.
    pub fn mysql_type(self) -> &'static str {
        match self {
            Kind::Text => "MEDIUMTEXT",
            Kind::Int => "BIGINT",
            Kind::Float => "DOUBLE",
            Kind::Bool => "BOOLEAN",
            Kind::Json => "JSON COMMENT 'json'",
        }
    }

    /// Column type in SQLite (declared types; SQLite's affinity rules apply).
    pub fn sqlite_type(self) -> &'static str {
        match self {
            Kind::Text => "TEXT",
            Kind::Int => "INTEGER",
            Kind::Float => "REAL",
            Kind::Bool => "BOOLEAN",
            Kind::Json => "JSON",
        }
    }
}

/// One field of a prepared row.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub name: String,
    pub value: Value,
}

/// A row ready for the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRow {
    /// Position in the `rows` given to `store` (what `StoreReport::refused` names).
    pub position: usize,
    pub key: String,
    pub guid: String,
    pub url: String,
    /// Sorted by column identity, so rows with the same fields share one statement.
    pub cells: Vec<Cell>,
    /// Rough size of the row's values, to bound one statement's size.
    pub approx_bytes: usize,
}

/// A value as bound to a statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    Float(f64),
}

/// How `value` is bound into a column of kind `column`. A JSON column always gets JSON
/// text (so a string stays a string when read back); objects and arrays always become
/// JSON text; booleans become 0/1.
pub fn bind(value: &Value, column: Kind) -> Bound<'_> {
    match (value, column) {
        (Value::Null, _) => Bound::Null,
        (v, Kind::Json) => Bound::Text(Cow::Owned(v.to_string())),
        (Value::String(s), _) => Bound::Text(Cow::Borrowed(s)),
        (Value::Bool(b), _) => Bound::Int(i64::from(*b)),
        // u64 values beyond i64 were refused by `prepare_rows`.
        (Value::Number(n), _) => match n.as_i64() {
            Some(i) => Bound::Int(i),
            None => Bound::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        (v, _) => Bound::Text(Cow::Owned(v.to_string())),
    }
}

/// Reads back a stored text: JSON columns are parsed (what is not JSON stays text).
pub fn text_value(text: String, column: Kind) -> Value {
    if column == Kind::Json {
        if let Ok(value) = serde_json::from_str(&text) {
            return value;
        }
    }
    Value::String(text)
}

/// Reads back a stored integer: 0 and 1 in a BOOLEAN column are booleans.
pub fn int_value(int: i64, column: Kind) -> Value {
    match (column, int) {
        (Kind::Bool, 0) => Value::Bool(false),
        (Kind::Bool, 1) => Value::Bool(true),
        _ => Value::from(int),
    }
}

/// Reads back a stored float (NaN and infinities, which JSON lacks, become null).
pub fn float_value(float: f64) -> Value {
    serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)
}

/// Prepares rows for the writer. Rows that cannot be written whatever the database
/// says come back as `(position, reason)`, each logged on the `scripts` target.
pub fn prepare_rows(
    table: &str,
    rows: Vec<Row>,
    key_fields: Option<&[String]>,
) -> (Vec<PreparedRow>, Vec<(usize, String)>) {
    let mut ready = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for (position, row) in rows.into_iter().enumerate() {
        let (guid, url) = (row.guid.clone(), row.url.clone());
        match prepare_row(position, row, key_fields) {
            Ok(prepared) => ready.push(prepared),
            Err(reason) => {
                log::warn!(
                    target: "scripts",
                    "table={table} guid={guid} url={url} row={position} refused: {reason}"
                );
                refused.push((position, reason));
            }
        }
    }
    (ready, refused)
}

fn prepare_row(
    position: usize,
    row: Row,
    key_fields: Option<&[String]>,
) -> Result<PreparedRow, String> {
    let key = match key_fields {
        Some(names) => natural_key(&row.fields, names)?,
        None => hash_key(&row),
    };
    let mut seen = HashSet::with_capacity(row.fields.len());
    let mut approx_bytes = key.len() + row.guid.len() + row.url.len() + 32;
    let mut cells = Vec::with_capacity(row.fields.len());
    for (name, value) in row.fields {
        ident::check_column(&name)?;
        if !seen.insert(ident::column_id(&name)) {
            return Err(format!(
                "field {name:?} appears twice (column names ignore case)"
            ));
        }
        if let Value::Number(n) = &value {
            if n.as_i64().is_none() && n.as_u64().is_some() {
                return Err(format!(
                    "field {name:?}: integer {n} is out of range for BIGINT"
                ));
            }
        }
        approx_bytes += name.len() + value_bytes(&value);
        cells.push(Cell { name, value });
    }
    cells.sort_by_cached_key(|cell| ident::column_id(&cell.name));
    Ok(PreparedRow {
        position,
        key,
        guid: row.guid,
        url: row.url,
        cells,
        approx_bytes,
    })
}

fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 8,
        Value::Array(_) | Value::Object(_) => value.to_string().len() + 8,
        _ => 16,
    }
}

/// The configured key fields' values joined with `|` (`\` and `|` inside a value are
/// escaped when there are several fields, so different tuples never join alike).
pub fn natural_key(fields: &Map<String, Value>, names: &[String]) -> Result<String, String> {
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        match fields.get(name) {
            None | Some(Value::Null) => return Err(format!("missing key field {name:?}")),
            Some(Value::String(s)) => parts.push(s.clone()),
            Some(other) => parts.push(other.to_string()),
        }
    }
    let joined = if parts.len() == 1 {
        parts.pop().unwrap_or_default()
    } else {
        let escaped: Vec<String> = parts
            .iter()
            .map(|p| p.replace('\\', "\\\\").replace('|', "\\|"))
            .collect();
        escaped.join("|")
    };
    if joined.chars().count() > KEY_MAX_CHARS {
        return Ok(format!("sha256:{}", sha256_hex(joined.as_bytes())));
    }
    Ok(joined)
}

/// sha256 (hex) of guid, url and item index. When a row has neither guid nor url, its
/// fields are hashed too, so rows of unrelated tasks cannot share a key.
pub fn hash_key(row: &Row) -> String {
    let mut text = format!("{}\n{}\n{}", row.guid, row.url, row.index);
    if row.guid.is_empty() && row.url.is_empty() {
        text.push('\n');
        text.push_str(&Value::Object(row.fields.clone()).to_string());
    }
    sha256_hex(text.as_bytes())
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(fields: Value) -> Row {
        Row {
            guid: "g1".into(),
            url: "http://x/1".into(),
            index: 0,
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn hash_key_depends_on_guid_url_and_index() {
        let a = hash_key(&row(json!({"t": 1})));
        assert_eq!(a.len(), 64);
        assert_eq!(a, hash_key(&row(json!({"t": 2}))));
        let mut other = row(json!({}));
        other.index = 1;
        assert_ne!(a, hash_key(&other));
    }

    #[test]
    fn natural_keys_join_and_escape() {
        let names = vec!["a".to_string(), "b".to_string()];
        let fields = json!({"a": "x|y", "b": 7}).as_object().cloned().unwrap();
        assert_eq!(natural_key(&fields, &names).unwrap(), "x\\|y|7");
        let one = vec!["a".to_string()];
        assert_eq!(natural_key(&fields, &one).unwrap(), "x|y");
        let missing = vec!["zz".to_string()];
        assert!(natural_key(&fields, &missing)
            .unwrap_err()
            .contains("\"zz\""));
        let long = json!({"a": "é".repeat(300)}).as_object().cloned().unwrap();
        assert!(natural_key(&long, &one).unwrap().starts_with("sha256:"));
    }

    #[test]
    fn bad_rows_are_refused_with_reasons() {
        let rows = vec![
            row(json!({"ok": 1})),
            row(json!({"a.b": 1})),
            row(json!({"_key": 1})),
            row(json!({"Name": 1, "name": 2})),
            row(json!({"n": u64::MAX})),
        ];
        let (ready, refused) = prepare_rows("t", rows, None);
        assert_eq!(ready.len(), 1);
        let positions: Vec<usize> = refused.iter().map(|r| r.0).collect();
        assert_eq!(positions, vec![1, 2, 3, 4]);
        assert!(refused[3].1.contains("out of range"), "{:?}", refused[3]);
    }

    #[test]
    fn kinds_round_trip_through_declared_types() {
        for kind in [Kind::Text, Kind::Int, Kind::Float, Kind::Bool, Kind::Json] {
            assert_eq!(Kind::from_sql_type(kind.sqlite_type(), ""), kind);
        }
        assert_eq!(Kind::from_sql_type("tinyint(1)", ""), Kind::Bool);
        assert_eq!(Kind::from_sql_type("bigint(20)", ""), Kind::Int);
        assert_eq!(Kind::from_sql_type("longtext", "json"), Kind::Json);
        assert_eq!(Kind::from_sql_type("datetime(3)", ""), Kind::Text);
    }

    #[test]
    fn json_columns_get_json_text() {
        let s = json!("007");
        assert_eq!(bind(&s, Kind::Json), Bound::Text(Cow::Borrowed("\"007\"")));
        assert_eq!(bind(&s, Kind::Text), Bound::Text(Cow::Borrowed("007")));
        assert_eq!(bind(&json!(true), Kind::Bool), Bound::Int(1));
        assert_eq!(
            bind(&json!([1]), Kind::Text),
            Bound::Text(Cow::Borrowed("[1]"))
        );
    }
}
