//! The known columns of each table (cached, so a column is added once) and the split
//! of a table's rows into statements of one shape.

use std::collections::HashMap;

use serde_json::Value;

use super::ident::column_id;
use super::prepare::{Kind, PreparedRow};

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The name as the database spells it.
    pub name: String,
    pub kind: Kind,
}

/// The columns of one table as last read or made by this process.
#[derive(Debug, Clone, Default)]
pub struct TableSchema {
    columns: Vec<Column>,
    by_id: HashMap<String, usize>,
}

impl TableSchema {
    /// A schema from the database's column list (empty = the table does not exist).
    pub fn from_columns(columns: Vec<Column>) -> Self {
        let mut schema = TableSchema::default();
        for column in columns {
            schema.push(column);
        }
        schema
    }

    /// True when the table has no column, i.e. does not exist yet.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The column a field lands in (ASCII case ignored, as the databases do).
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.by_id.get(&column_id(name)).map(|i| &self.columns[*i])
    }

    /// Records a column the database now has.
    pub fn push(&mut self, column: Column) {
        let id = column_id(&column.name);
        if !self.by_id.contains_key(&id) {
            self.by_id.insert(id, self.columns.len());
            self.columns.push(column);
        }
    }
}

/// Columns the rows need that the table lacks, in order of first appearance, each
/// typed by its first non-null value (an all-null field makes no column yet).
pub fn missing_columns<'a>(
    schema: &TableSchema,
    rows: impl IntoIterator<Item = &'a PreparedRow>,
) -> Vec<Column> {
    let mut wanted = TableSchema::default();
    for row in rows {
        for cell in &row.cells {
            if schema.get(&cell.name).is_some() || wanted.get(&cell.name).is_some() {
                continue;
            }
            if let Some(kind) = Kind::of(&cell.value) {
                wanted.push(Column {
                    name: cell.name.clone(),
                    kind,
                });
            }
        }
    }
    wanted.columns
}

/// A row's field columns and values, in cell order, skipping null fields that have no
/// column (null is the same as absent there).
pub fn row_values<'s, 'r>(
    schema: &'s TableSchema,
    row: &'r PreparedRow,
) -> impl Iterator<Item = (&'s Column, &'r Value)> {
    row.cells
        .iter()
        .filter_map(move |cell| schema.get(&cell.name).map(|col| (col, &cell.value)))
}

/// The first non-null field of `row` that has no column, if any.
pub fn first_unplaced<'r>(schema: &TableSchema, row: &'r PreparedRow) -> Option<&'r str> {
    row.cells
        .iter()
        .find(|cell| !cell.value.is_null() && schema.get(&cell.name).is_none())
        .map(|cell| cell.name.as_str())
}

/// Bounds of one statement.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub rows: usize,
    /// Most bound parameters (MySQL's prepared statements take at most 65 535).
    pub params: usize,
    pub bytes: usize,
}

/// One statement's worth of rows sharing the same field columns.
#[derive(Debug, Clone)]
pub struct Chunk<T> {
    pub shape: Vec<Column>,
    pub members: Vec<T>,
}

/// Splits rows, in order, into runs of one shape within `limits`. Order is kept so that
/// two writes of the same key in one transaction end as the later one.
pub fn chunks<T: Copy>(
    schema: &TableSchema,
    rows: &[(T, &PreparedRow)],
    n_base_columns: usize,
    limits: Limits,
) -> Vec<Chunk<T>> {
    let mut out: Vec<Chunk<T>> = Vec::new();
    let mut bytes = 0usize;
    for (member, row) in rows {
        let shape: Vec<Column> = row_values(schema, row).map(|(c, _)| c.clone()).collect();
        let per_row = (shape.len() + n_base_columns).max(1);
        let max_rows = limits.rows.min(limits.params / per_row).max(1);
        let fits = out.last().is_some_and(|last| {
            last.shape == shape
                && last.members.len() < max_rows
                && bytes + row.approx_bytes <= limits.bytes
        });
        if fits {
            bytes += row.approx_bytes;
            if let Some(last) = out.last_mut() {
                last.members.push(*member);
            }
        } else {
            bytes = row.approx_bytes;
            out.push(Chunk {
                shape,
                members: vec![*member],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::prepare::{prepare_rows, Row};
    use super::*;
    use serde_json::json;

    fn rows(values: Vec<Value>) -> Vec<PreparedRow> {
        let rows = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| Row {
                guid: "g".into(),
                url: "u".into(),
                index: i,
                fields: v.as_object().cloned().unwrap(),
            })
            .collect();
        prepare_rows("t", rows, None).0
    }

    #[test]
    fn missing_columns_are_typed_by_first_non_null_value() {
        let schema = TableSchema::from_columns(vec![Column {
            name: "Title".into(),
            kind: Kind::Text,
        }]);
        let rows = rows(vec![
            json!({"title": "a", "n": null, "tags": [1]}),
            json!({"n": 2.5, "ok": true}),
        ]);
        let missing = missing_columns(&schema, &rows);
        let got: Vec<(&str, Kind)> = missing.iter().map(|c| (c.name.as_str(), c.kind)).collect();
        assert_eq!(
            got,
            vec![("tags", Kind::Json), ("n", Kind::Float), ("ok", Kind::Bool)]
        );
    }

    #[test]
    fn chunks_split_on_shape_and_limits() {
        let schema = TableSchema::from_columns(vec![
            Column {
                name: "a".into(),
                kind: Kind::Int,
            },
            Column {
                name: "b".into(),
                kind: Kind::Int,
            },
        ]);
        let rows = rows(vec![
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"a": 3}),
            json!({"a": 4, "b": 1}),
            json!({"a": 5}),
        ]);
        let members: Vec<(usize, &PreparedRow)> = rows.iter().enumerate().collect();
        let limits = Limits {
            rows: 2,
            params: 65_535,
            bytes: 1 << 20,
        };
        let got: Vec<Vec<usize>> = chunks(&schema, &members, 4, limits)
            .into_iter()
            .map(|c| c.members)
            .collect();
        assert_eq!(got, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        let by_params = Limits {
            rows: 100,
            params: 10,
            bytes: 1 << 20,
        };
        assert_eq!(chunks(&schema, &members[..3], 4, by_params).len(), 2);
    }
}
