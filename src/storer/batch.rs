//! Group commit: concurrent `store` calls gathered into one transaction, and each
//! caller's answer put back together from the per-row outcomes.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use super::error::{Result, StorerError};
use super::ident::column_id;
use super::prepare::PreparedRow;
use super::schema::{first_unplaced, TableSchema};
use super::StoreReport;

/// One `store` call on its way to the writer.
#[derive(Debug)]
pub struct StoreRequest {
    /// The full table name (prefix included), already validated.
    pub table: String,
    pub rows: Vec<PreparedRow>,
    /// Pre-filled with the rows refused before any database work.
    pub report: StoreReport,
    /// How many of `report.refused` were already logged by the caller.
    pub n_logged: usize,
    pub reply: oneshot::Sender<Result<StoreReport>>,
}

/// Which row of which request: `(request index, row index in that request)`.
pub type RowRef = (usize, usize);

/// The outcomes of a cycle at one moment, to start a failed attempt over.
#[derive(Debug, Clone)]
pub struct Snapshot {
    reports: Vec<StoreReport>,
    errors: Vec<Option<StorerError>>,
    refused: HashSet<RowRef>,
}

/// The requests written in one transaction, and their outcomes so far.
#[derive(Debug)]
pub struct Cycle {
    pub requests: Vec<StoreRequest>,
    errors: Vec<Option<StorerError>>,
    refused: HashSet<RowRef>,
}

impl Cycle {
    /// Starts with `first` and takes further waiting requests from `next` while the
    /// cycle holds fewer than `max_rows` rows. Requests pile up while a write is in
    /// flight, so under load each transaction carries many of them.
    pub fn gather(
        first: StoreRequest,
        max_rows: usize,
        mut next: impl FnMut() -> Option<StoreRequest>,
    ) -> Cycle {
        let mut n_rows = first.rows.len();
        let mut requests = vec![first];
        while n_rows < max_rows {
            match next() {
                Some(request) => {
                    n_rows += request.rows.len();
                    requests.push(request);
                }
                None => break,
            }
        }
        let errors = vec![None; requests.len()];
        Cycle {
            requests,
            errors,
            refused: HashSet::new(),
        }
    }

    /// Remembers the outcomes so far.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            reports: self.requests.iter().map(|r| r.report.clone()).collect(),
            errors: self.errors.clone(),
            refused: self.refused.clone(),
        }
    }

    /// Forgets what happened since `snapshot` (the attempt's transaction was lost).
    pub fn restore(&mut self, snapshot: Snapshot) {
        for (request, report) in self.requests.iter_mut().zip(snapshot.reports) {
            request.report = report;
        }
        self.errors = snapshot.errors;
        self.refused = snapshot.refused;
    }

    /// The distinct tables of the cycle, in order of first request.
    pub fn tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for request in &self.requests {
            if !tables.contains(&request.table) {
                tables.push(request.table.clone());
            }
        }
        tables
    }

    /// The rows of `table` still to write (not refused, request not failed), in order.
    pub fn rows_of(&self, table: &str) -> Vec<(RowRef, &PreparedRow)> {
        let mut out = Vec::new();
        for (i, request) in self.requests.iter().enumerate() {
            if request.table != table || self.errors[i].is_some() {
                continue;
            }
            for (j, row) in request.rows.iter().enumerate() {
                if !self.refused.contains(&(i, j)) {
                    out.push(((i, j), row));
                }
            }
        }
        out
    }

    /// The row behind a reference.
    pub fn row(&self, at: RowRef) -> &PreparedRow {
        &self.requests[at.0].rows[at.1]
    }

    /// Records a row the database refused, with the database's reason.
    pub fn refuse(&mut self, at: RowRef, reason: String) {
        self.refused.insert(at);
        let request = &mut self.requests[at.0];
        let position = request.rows[at.1].position;
        request.report.refused.push((position, reason));
    }

    /// Refuses rows that carry a value for a field that has no column; `failed` says
    /// why a column could not be added (by column identity).
    pub fn refuse_unplaced(
        &mut self,
        table: &str,
        schema: &TableSchema,
        failed: &HashMap<String, String>,
    ) {
        let unplaced: Vec<(RowRef, String)> = self
            .rows_of(table)
            .into_iter()
            .filter_map(|(at, row)| {
                let name = first_unplaced(schema, row)?;
                let reason = failed
                    .get(&column_id(name))
                    .cloned()
                    .unwrap_or_else(|| format!("field {name:?} has no column"));
                Some((at, reason))
            })
            .collect();
        for (at, reason) in unplaced {
            self.refuse(at, reason);
        }
    }

    /// Records rows written (inserted or updated) for one request.
    pub fn add_stored(&mut self, request: usize, n_rows: usize) {
        self.requests[request].report.stored += n_rows;
    }

    /// Fails every request of `table` (e.g. its table could not be created).
    pub fn fail_table(&mut self, table: &str, error: StorerError) {
        for (i, request) in self.requests.iter().enumerate() {
            if request.table == table && self.errors[i].is_none() {
                self.errors[i] = Some(error.clone());
            }
        }
    }

    /// Fails every request still standing (the transaction was lost).
    pub fn fail_all(&mut self, error: StorerError) {
        for slot in self.errors.iter_mut().filter(|e| e.is_none()) {
            *slot = Some(error.clone());
        }
    }

    /// Answers every caller and logs each refused row on the `scripts` target.
    pub fn finish(self) {
        for (request, error) in self.requests.into_iter().zip(self.errors) {
            let answer = match error {
                Some(error) => {
                    log::error!(
                        "table={} rows={} not stored: {error}",
                        request.table,
                        request.rows.len()
                    );
                    Err(error)
                }
                None => Ok(finish_report(&request)),
            };
            // A caller that stopped waiting does not stop the others.
            let _ = request.reply.send(answer);
        }
    }
}

fn finish_report(request: &StoreRequest) -> StoreReport {
    let mut report = request.report.clone();
    for (position, reason) in &report.refused[request.n_logged..] {
        let row = request.rows.iter().find(|r| r.position == *position);
        log::warn!(
            target: "scripts",
            "table={} guid={} url={} row={} refused: {}",
            request.table,
            row.map_or("", |r| r.guid.as_str()),
            row.map_or("", |r| r.url.as_str()),
            position,
            reason
        );
    }
    report.refused.sort_by_key(|(position, _)| *position);
    report
}
