//! `outreach status`: the steward's exact view of their own warehouse. Never published.
//! Rows and files are the live ones, what queries read; the corrected and retracted counts
//! are the stored rows that loads replaced, kept on disk as history.

use std::fmt;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Date32Type, Int64Type};

use super::session::session_for;
use super::{DatasetVersion, Result, Warehouse, dictionary};
use crate::dictionary::from_epoch_days;

/// What the warehouse holds, with exact figures: for the steward's eyes only.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub version: DatasetVersion,
    pub loads: usize,
    /// Steward-only: a function of private data.
    pub content_hash: String,
    pub tables: Vec<TableStatus>,
}

/// One table's exact figures.
#[derive(Debug, Clone, PartialEq)]
pub struct TableStatus {
    pub table: String,
    pub rows: u64,
    pub files: usize,
    pub first_date: Option<NaiveDate>,
    pub last_date: Option<NaiveDate>,
    pub complete_through: Option<NaiveDate>,
    /// Stored rows replaced by corrections, over every load.
    pub corrected: u64,
    /// Stored rows retracted by snapshots, over every load.
    pub retracted: u64,
}

/// Reads the warehouse's status through the same DataFusion session the queries use.
pub async fn status(wh: &Warehouse) -> Result<Status> {
    let manifest = wh.manifest()?;
    let ctx = session_for(wh, &manifest)?;
    let dict = dictionary()?;
    let mut tables = Vec::new();
    for t in dict.tables() {
        let sql = match &t.date_column {
            Some(d) => format!(
                "SELECT count(*), min({d}) AS first, max({d}) AS last FROM {}",
                t.name
            ),
            None => format!(
                "SELECT count(*), NULL::date AS first, NULL::date AS last FROM {}",
                t.name
            ),
        };
        let batches = ctx.sql(&sql).await?.collect().await?;
        let b = &batches[0];
        let date = |i: usize| {
            let a = b.column(i).as_primitive::<Date32Type>();
            (!a.is_null(0)).then(|| from_epoch_days(a.value(0)))
        };
        let (corrected, retracted) = manifest.revised_rows(&t.name);
        tables.push(TableStatus {
            table: t.name.clone(),
            rows: b.column(0).as_primitive::<Int64Type>().value(0) as u64,
            files: manifest.data_files(&t.name).count(),
            first_date: date(1),
            last_date: date(2),
            complete_through: manifest.complete_through(&t.name),
            corrected,
            retracted,
        });
    }
    Ok(Status {
        version: manifest.version(),
        loads: manifest.loads.len(),
        content_hash: manifest.content_hash(),
        tables,
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Dataset version {} ({} load{}). Exact figures: steward only, never publish them.",
            self.version,
            self.loads,
            if self.loads == 1 { "" } else { "s" }
        )?;
        writeln!(f, "Content hash (steward only): {}", self.content_hash)?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<18} {:>10} {:>6}  {:<10}  {:<10}  {:<16}  {:>9} {:>9}",
            "table",
            "rows",
            "files",
            "first date",
            "last date",
            "complete through",
            "corrected",
            "retracted"
        )?;
        let d = |x: Option<NaiveDate>| x.map_or("-".to_string(), |d| d.to_string());
        for t in &self.tables {
            writeln!(
                f,
                "{:<18} {:>10} {:>6}  {:<10}  {:<10}  {:<16}  {:>9} {:>9}",
                t.table,
                t.rows,
                t.files,
                d(t.first_date),
                d(t.last_date),
                t.complete_through
                    .map_or("not declared".to_string(), |d| d.to_string()),
                t.corrected,
                t.retracted
            )?;
        }
        Ok(())
    }
}
