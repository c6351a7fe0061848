//! The statements the storer sends, in each backend's dialect. Every name in them is
//! quoted by [`Dialect::quote`] after being validated by `ident`.

use super::ident::{quote_mysql, quote_sqlite, RESERVED_COLUMNS};
use super::schema::Column;

/// Which SQL the statements are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Mysql,
    Sqlite,
}

impl Dialect {
    /// Quotes a table or column name.
    pub fn quote(self, name: &str) -> String {
        match self {
            Dialect::Mysql => quote_mysql(name),
            Dialect::Sqlite => quote_sqlite(name),
        }
    }

    fn column_sql(self, column: &Column) -> String {
        let kind = match self {
            Dialect::Mysql => column.kind.mysql_type(),
            Dialect::Sqlite => column.kind.sqlite_type(),
        };
        format!("{} {kind}", self.quote(&column.name))
    }

    /// `CREATE TABLE IF NOT EXISTS` with the storer's columns, then `fields`.
    pub fn create_table(self, table: &str, fields: &[Column]) -> String {
        let base = match self {
            // utf8mb4_bin on the key: the default collation would make "A" and "a" one key.
            Dialect::Mysql => {
                "`_key` VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
                 `_guid` TEXT, `url` TEXT, `_stored_at` DATETIME(3) NOT NULL"
            }
            Dialect::Sqlite => {
                "\"_key\" TEXT NOT NULL PRIMARY KEY, \"_guid\" TEXT, \"url\" TEXT, \
                 \"_stored_at\" TEXT NOT NULL"
            }
        };
        let mut sql = format!("CREATE TABLE IF NOT EXISTS {} ({base}", self.quote(table));
        for column in fields {
            sql.push_str(", ");
            sql.push_str(&self.column_sql(column));
        }
        match self {
            Dialect::Mysql => {
                sql.push_str(", PRIMARY KEY (`_key`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
            }
            Dialect::Sqlite => sql.push(')'),
        }
        sql
    }

    /// `ALTER TABLE ... ADD COLUMN` for each column (SQLite takes one per statement).
    pub fn add_columns(self, table: &str, columns: &[Column]) -> String {
        let adds: Vec<String> = columns
            .iter()
            .map(|c| format!("ADD COLUMN {}", self.column_sql(c)))
            .collect();
        format!("ALTER TABLE {} {}", self.quote(table), adds.join(", "))
    }

    /// The upsert of `n_rows` rows of one shape: `_key`, `_guid`, `url`, `_stored_at`,
    /// then the shape's columns; on a known `_key` every listed column is replaced.
    pub fn upsert(self, table: &str, shape: &[Column], n_rows: usize) -> String {
        let names: Vec<String> = RESERVED_COLUMNS
            .iter()
            .copied()
            .chain(shape.iter().map(|c| c.name.as_str()))
            .map(|name| self.quote(name))
            .collect();
        let one_row = format!("({})", vec!["?"; names.len()].join(","));
        let rows = vec![one_row; n_rows].join(",");
        let (table, names_sql) = (self.quote(table), names.join(","));
        match self {
            Dialect::Mysql => {
                let updates: Vec<String> = names[1..]
                    .iter()
                    .map(|n| format!("{n}=VALUES({n})"))
                    .collect();
                format!(
                    "INSERT INTO {table} ({names_sql}) VALUES {rows} ON DUPLICATE KEY UPDATE {}",
                    updates.join(",")
                )
            }
            Dialect::Sqlite => {
                let updates: Vec<String> = names[1..]
                    .iter()
                    .map(|n| format!("{n}=excluded.{n}"))
                    .collect();
                format!(
                    "INSERT INTO {table} ({names_sql}) VALUES {rows} \
                     ON CONFLICT(\"_key\") DO UPDATE SET {}",
                    updates.join(",")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::prepare::Kind;
    use super::*;

    fn shape() -> Vec<Column> {
        vec![Column {
            name: "price".into(),
            kind: Kind::Float,
        }]
    }

    #[test]
    fn upserts_list_every_column_once_per_row() {
        let mysql = Dialect::Mysql.upsert("jd", &shape(), 2);
        assert_eq!(
            mysql,
            "INSERT INTO `jd` (`_key`,`_guid`,`url`,`_stored_at`,`price`) VALUES \
             (?,?,?,?,?),(?,?,?,?,?) ON DUPLICATE KEY UPDATE `_guid`=VALUES(`_guid`),\
             `url`=VALUES(`url`),`_stored_at`=VALUES(`_stored_at`),`price`=VALUES(`price`)"
        );
        let sqlite = Dialect::Sqlite.upsert("jd", &shape(), 1);
        assert!(sqlite.ends_with("ON CONFLICT(\"_key\") DO UPDATE SET \"_guid\"=excluded.\"_guid\",\
             \"url\"=excluded.\"url\",\"_stored_at\"=excluded.\"_stored_at\",\"price\"=excluded.\"price\""), "{sqlite}");
    }

    #[test]
    fn ddl_types_fields_by_kind() {
        let create = Dialect::Mysql.create_table("jd", &shape());
        assert!(
            create.contains("`price` DOUBLE, PRIMARY KEY (`_key`)"),
            "{create}"
        );
        let alter = Dialect::Sqlite.add_columns("jd", &shape());
        assert_eq!(alter, "ALTER TABLE \"jd\" ADD COLUMN \"price\" REAL");
    }
}
