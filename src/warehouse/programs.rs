//! The public programs table, read as the data dictionary declares it: the table that person
//! rows reference (`programs`), its primary key and its columns, in the dictionary's order.
//!
//! `publish` reads it to group the figures by program and stores a copy with the
//! publication; the release engine and the steward's exact mode read its keys, the `programs`
//! domain of a spec. The API server never reads it: it serves the copy stored with the latest
//! publication.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use super::{Result, WarehouseError, dictionary};
use crate::dictionary::Table;

/// The public table that person rows reference, as the dictionary declares it.
pub fn programs_table() -> Result<&'static Table> {
    let dict = dictionary()?;
    dict.tables()
        .iter()
        .find_map(|t| t.reference())
        .and_then(|(_, name)| dict.table(name))
        .ok_or_else(|| {
            WarehouseError::Query(DataFusionError::Internal(
                "the data dictionary names no table that person rows reference".into(),
            ))
        })
}

/// The public programs table: every column the dictionary declares, in its order, and one
/// row per program, ordered by the primary key; each value as text, `None` where it is empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Programs {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// The index of the primary key in `columns`.
    key: usize,
}

impl Programs {
    /// The index of the column called `name`, if the table has it.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Every program's primary key, in order, each once.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| r[self.key].clone())
            .collect();
        ids.dedup();
        ids
    }
}

/// Reads the public programs table from a session over the warehouse.
pub async fn read(ctx: &SessionContext) -> Result<Programs> {
    let table = programs_table()?;
    let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    let key = columns
        .iter()
        .position(|c| *c == table.primary_key)
        .ok_or_else(|| {
            WarehouseError::Query(DataFusionError::Internal(format!(
                "the data dictionary declares no column {} in {}",
                table.primary_key, table.name
            )))
        })?;
    let select = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let batches = ctx
        .sql(&format!(
            "SELECT {select} FROM \"{}\" ORDER BY \"{}\"",
            table.name, table.primary_key
        ))
        .await?
        .collect()
        .await?;
    let mut rows = Vec::new();
    for b in &batches {
        let text = b
            .columns()
            .iter()
            .map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WarehouseError::Query(e.into()))?;
        for i in 0..b.num_rows() {
            rows.push(
                text.iter()
                    .map(|a| {
                        let a = a.as_string::<i32>();
                        a.is_valid(i).then(|| a.value(i).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(Programs { columns, rows, key })
}
