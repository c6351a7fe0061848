//! Feeds: rows appended to a JSON lines (`.jsonl`) or CSV (`.csv`) file instead of a
//! table, like Scrapy's feed exports. A CSV file gets its header when it is empty;
//! its columns are the feed's `columns` (else the first row's fields).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Row;

/// `[storer.feeds.TASK_TYPE]`: where a task type's rows go instead of its table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// The file; `.jsonl` for JSON lines, `.csv` for CSV. Rows are appended.
    pub path: PathBuf,
    /// CSV columns in order; empty: `url` and the first row's fields.
    pub columns: Vec<String>,
}

enum Writer {
    Lines(BufWriter<File>),
    Csv {
        writer: Box<csv::Writer<File>>,
        columns: Vec<String>,
        fresh: bool,
    },
}

/// The open feed files, by task type.
#[derive(Default)]
pub struct Feeds {
    configs: HashMap<String, FeedConfig>,
    open: Mutex<HashMap<String, Writer>>,
}

impl Feeds {
    /// Feeds for the configured task types; files are opened at the first row.
    pub fn new(configs: impl IntoIterator<Item = (String, FeedConfig)>) -> Self {
        Feeds {
            configs: configs.into_iter().collect(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// True when `task_type`'s rows go to a feed.
    pub fn has(&self, task_type: &str) -> bool {
        self.configs.contains_key(task_type)
    }

    /// Appends `rows` to `task_type`'s feed and flushes it.
    pub fn write(&self, task_type: &str, rows: &[Row]) -> Result<(), String> {
        let config = self
            .configs
            .get(task_type)
            .ok_or_else(|| format!("no feed for {task_type}"))?;
        let mut open = self.open.lock().expect("feeds lock");
        if !open.contains_key(task_type) {
            open.insert(task_type.to_string(), Writer::open(config)?);
        }
        let writer = open.get_mut(task_type).expect("feed just opened");
        let path = config.path.display();
        writer.write(rows).map_err(|e| format!("feed {path}: {e}"))
    }
}

impl Writer {
    fn open(config: &FeedConfig) -> Result<Writer, String> {
        let path = &config.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create folder {}: {e}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open feed {}: {e}", path.display()))?;
        if !is_csv(path) {
            return Ok(Writer::Lines(BufWriter::new(file)));
        }
        let fresh = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
        Ok(Writer::Csv {
            writer: Box::new(csv::WriterBuilder::new().from_writer(file)),
            columns: config.columns.clone(),
            fresh,
        })
    }

    fn write(&mut self, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Writer::Lines(out) => {
                for row in rows {
                    serde_json::to_writer(&mut *out, &Value::Object(item(row)))?;
                    out.write_all(b"\n")?;
                }
                out.flush()?;
            }
            Writer::Csv {
                writer,
                columns,
                fresh,
            } => {
                if columns.is_empty() {
                    if let Some(first) = rows.first() {
                        *columns = item(first).keys().cloned().collect();
                    }
                }
                if *fresh && !columns.is_empty() {
                    writer.write_record(columns.iter())?;
                    *fresh = false;
                }
                for row in rows {
                    let item = item(row);
                    writer.write_record(columns.iter().map(|c| cell(item.get(c))))?;
                }
                writer.flush()?;
            }
        }
        Ok(())
    }
}

/// The row as an item: `url` first, then its fields.
fn item(row: &Row) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert("url".to_string(), Value::String(row.url.clone()));
    for (name, value) in &row.fields {
        item.insert(name.clone(), value.clone());
    }
    item
}

/// A CSV cell: strings as they are, other values as JSON, missing ones empty.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// True for a `.csv` path (any case).
pub fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}
