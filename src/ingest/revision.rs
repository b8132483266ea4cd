//! Full re-exports, corrections and retractions: what a load does with rows the warehouse
//! already stores.
//!
//! Case-management systems export the whole table to date, every month, with last month's
//! mistakes corrected. A row whose key is stored is compared with the stored row, column by
//! column (a 128-bit hash of every value, read by name, so a stored file and a staged batch
//! agree whatever their encoding):
//! - identical: the row is skipped and counted *unchanged*, never a reject;
//! - changed, in a load that declares corrections (`--corrections`): the row is loaded, and
//!   the stored row it corrects is superseded;
//! - changed otherwise: rejected, with a reason that says to pass `--corrections`.
//!
//! A snapshot (`--snapshot`) declares that a load's files of a table are each of their
//! programs' whole table: stored rows of those programs that the files do not hold are
//! retracted. A table without a program (arrests) is one whole; the programs table is never
//! retracted (each program is its own scope, and it is in the file). When more than
//! `--max-retract-rate` of a program's stored rows in a table would go, the load is refused
//! unless `--force-retract`.
//!
//! Stored Parquet files are immutable: the load writes, for each stored file holding a
//! superseded or retracted row, a new file of the same table and quarter with the rest of its
//! rows, and the manifest marks the old file replaced in the new dataset version
//! ([`crate::warehouse::DataFile::replaced_in`]): history, kept on disk and named, never read.
//! A corrected row whose date moves goes to its new quarter with the load's other rows. All of
//! it is committed by the one manifest rename, like every load.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Date32Type, SchemaRef};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::pipeline::{StagedData, write_parquet, writer_properties};
use super::rows::{Bucket, key_hash};
use super::{IngestError, IngestOptions};
use crate::dictionary::Table;
use crate::fault::Fault;
use crate::quarter::Quarter;
use crate::warehouse::{DataFile, Manifest, Warehouse};

/// Default share of a program's stored rows in a table that a snapshot may retract without
/// `--force-retract`. A monthly export of a case-management system retracts the odd row sent
/// by mistake; a file that lacks more than one row in twenty of what the program sent before
/// is far more likely cut short, filtered or from the wrong program than a true retraction.
pub const DEFAULT_MAX_RETRACT_RATE: f64 = 0.05;

/// Refusals of a load that revises stored rows. Each says what is wrong and where, with
/// counts only (the steward's own figures), never a key or a value.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error("--max-retract-rate must be a share between 0 and 1, not {0}")]
    BadRetractRate(f64),
    #[error(
        "{file}: --snapshot retracts the stored rows its files no longer hold, so every row must load, but {invalid} of {read} rows failed validation and their keys cannot be trusted; nothing was loaded. Fix those rows (line-by-line reasons: {quarantine}) or load the file without --snapshot"
    )]
    InvalidRowsInSnapshot {
        file: PathBuf,
        invalid: u64,
        read: u64,
        quarantine: PathBuf,
    },
    #[error(
        "{table}: the snapshot would retract {retracted} of the {stored} stored rows of {scope} ({:.2}%), over the --max-retract-rate of {:.2}%; nothing was loaded. If the files really hold the whole table, load them again with --force-retract", 100.0 * *retracted as f64 / *stored as f64, 100.0 * max_rate
    )]
    TooManyRetractions {
        table: String,
        scope: String,
        retracted: u64,
        stored: u64,
        max_rate: f64,
    },
    #[error(
        "{place}: column {column} is missing or not of the type the dictionary declares; restore the file from a backup"
    )]
    Columns { place: String, column: String },
}

impl RevisionError {
    pub fn fault(&self) -> Fault {
        match self {
            RevisionError::Columns { .. } => Fault::Internal,
            RevisionError::BadRetractRate(_)
            | RevisionError::InvalidRowsInSnapshot { .. }
            | RevisionError::TooManyRetractions { .. } => Fault::BadInput,
        }
    }
}

/// What became of a row that re-sends a stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resent {
    /// The same values as the stored row: skipped.
    Unchanged,
    /// Other values, in a load that declares corrections: loaded, the stored row superseded.
    Corrected,
    /// Other values, refused for this reason (the key itself is never in it).
    Refused(String),
}

/// What a load revised in one table, for its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisedTable {
    pub table: String,
    /// Stored rows superseded by corrected rows.
    pub corrected: u64,
    /// Stored rows a snapshot retracted.
    pub retracted: u64,
    /// The quarters whose rows changed (`2025Q1`).
    pub quarters: Vec<String>,
}

/// A revision staged for commit: the files written in place of the replaced ones.
#[derive(Debug)]
pub(super) struct StagedRevision {
    pub summary: RevisedTable,
    /// Warehouse-relative paths of the stored files this revision replaces.
    pub replaced: Vec<String>,
    /// Their rows without the superseded ones, staged.
    pub written: Vec<StagedData>,
}

/// Every stored row of a table by the hash of its key.
type StoredRows = HashMap<u128, StoredRow, ahash::RandomState>;

/// A stored row, as a revision needs it.
#[derive(Debug, Clone, Copy)]
struct StoredRow {
    /// [`row_contents`] of the row.
    content: u128,
    /// Index of its file in [`TableRevision::files`].
    file: u32,
    /// Index of its program in [`TableRevision::scopes`].
    scope: u32,
}

/// One table's revision over one load: which stored rows its files re-send, correct or no
/// longer hold.
pub(super) struct TableRevision<'a> {
    wh: &'a Warehouse,
    table: &'a Table,
    corrections: bool,
    snapshot: bool,
    max_retract_rate: f64,
    force_retract: bool,
    /// The table's live files as the load found them; a stored row's file is its index here.
    files: Vec<DataFile>,
    /// The column that names a row's program (the key itself for a table others reference),
    /// or `None` when the table is one whole.
    program_column: Option<usize>,
    /// Every stored row by key hash, read once, at the first re-sent row or for a snapshot.
    stored: Option<StoredRows>,
    /// The programs of the stored rows ("" for a table that is one whole).
    scopes: Vec<String>,
    /// Stored rows to drop, per file: superseded by a correction, or retracted.
    drop: BTreeMap<u32, HashSet<u128>>,
    corrected: u64,
    quarters: BTreeSet<Quarter>,
    /// For a snapshot: every key of the load's files of this table, and their programs.
    present: HashSet<u128>,
    programs: HashSet<String>,
}

impl<'a> TableRevision<'a> {
    /// The revision of `table` as of `manifest`. `referenced`: other tables reference it.
    pub fn new(
        wh: &'a Warehouse,
        manifest: &Manifest,
        table: &'a Table,
        referenced: bool,
        opts: &IngestOptions,
    ) -> Self {
        let pk = table
            .column_index(&table.primary_key)
            .expect("the dictionary checks the primary key");
        let program_column = if referenced {
            Some(pk)
        } else {
            table.reference().map(|(ci, _)| ci)
        };
        Self {
            wh,
            table,
            corrections: opts.corrections,
            snapshot: opts.snapshot,
            max_retract_rate: opts.max_retract_rate,
            force_retract: opts.force_retract,
            files: manifest.data_files(&table.name).cloned().collect(),
            program_column,
            stored: None,
            scopes: Vec::new(),
            drop: BTreeMap::new(),
            corrected: 0,
            quarters: BTreeSet::new(),
            present: HashSet::new(),
            programs: HashSet::new(),
        }
    }

    /// The table this revises.
    pub fn table_name(&self) -> &str {
        &self.table.name
    }

    /// Each row's content hash, for rows a file re-sends.
    pub fn contents(&self, batch: &RecordBatch) -> Result<Vec<u128>, IngestError> {
        row_contents(self.table, batch).map_err(|column| {
            RevisionError::Columns {
                place: format!("the staged rows of {}", self.table.name),
                column,
            }
            .into()
        })
    }

    /// Notes the keys and programs of a chunk's valid rows, for a snapshot.
    pub fn note_rows(&mut self, keys: &[(u128, u64)], buckets: &[Bucket]) {
        if !self.snapshot {
            return;
        }
        self.present.extend(keys.iter().map(|(k, _)| *k));
        let Some(pc) = self.program_column else {
            return;
        };
        for b in buckets {
            for p in b.batch.column(pc).as_string::<i32>().iter().flatten() {
                if !self.programs.contains(p) {
                    self.programs.insert(p.to_string());
                }
            }
        }
    }

    /// Decides a row that re-sends the stored key `key`: `content` is its [`row_contents`],
    /// `quarter` the quarter it would be filed under, `referenced` whether other tables
    /// reference this one (their rows were checked against the stored row, which is
    /// therefore never corrected by a load).
    pub fn resent(
        &mut self,
        key: u128,
        content: u128,
        quarter: Option<Quarter>,
        referenced: bool,
    ) -> Result<Resent, IngestError> {
        let table: &'a Table = self.table;
        let key_name = &table.primary_key;
        let row = self.stored_rows()?.get(&key).copied();
        // Only a live row's key is in the key list, so this is never: refuse rather than guess.
        let row = row.ok_or_else(|| {
            IngestError::from(RevisionError::Columns {
                place: format!("the stored files of {}", table.name),
                column: key_name.clone(),
            })
        })?;
        if row.content == content {
            return Ok(Resent::Unchanged);
        }
        if referenced {
            return Ok(Resent::Refused(format!(
                "{key_name} is already in the warehouse with other values, and a row of {} is never corrected by a load: the rows of other tables were checked against it",
                table.name
            )));
        }
        if !self.corrections {
            return Ok(Resent::Refused(format!(
                "{key_name} is already in the warehouse with other values; if this row corrects the stored one, load the file with --corrections"
            )));
        }
        self.drop.entry(row.file).or_default().insert(key);
        self.corrected += 1;
        self.quarters
            .extend(self.files[row.file as usize].quarter());
        self.quarters.extend(quarter);
        Ok(Resent::Corrected)
    }

    /// Every stored row of the table, read at the first call.
    fn stored_rows(&mut self) -> Result<&StoredRows, IngestError> {
        if self.stored.is_none() {
            let mut rows: StoredRows = HashMap::with_capacity_and_hasher(
                self.files.iter().map(|f| f.rows as usize).sum(),
                ahash::RandomState::new(),
            );
            let mut scope_of: HashMap<String, u32> = HashMap::new();
            let table = self.table;
            let pk = &table.primary_key;
            let program = self
                .program_column
                .map(|pc| table.columns[pc].name.as_str());
            for (fi, f) in self.files.iter().enumerate() {
                let place = f.path.clone();
                let missing = |column: &str| {
                    IngestError::from(RevisionError::Columns {
                        place: place.clone(),
                        column: column.to_string(),
                    })
                };
                for_each_batch(self.wh, f, |b| {
                    let contents = row_contents(table, b).map_err(|c| missing(c.as_str()))?;
                    let ids = b.column_by_name(pk).ok_or_else(|| missing(pk.as_str()))?;
                    let ids = ids
                        .as_string_opt::<i32>()
                        .ok_or_else(|| missing(pk.as_str()))?;
                    let programs = match program {
                        Some(p) => Some(
                            b.column_by_name(p)
                                .and_then(|c| c.as_string_opt::<i32>())
                                .ok_or_else(|| missing(p))?,
                        ),
                        None => None,
                    };
                    for (i, content) in contents.into_iter().enumerate() {
                        let name = programs.map_or("", |p| p.value(i));
                        let scope = match scope_of.get(name) {
                            Some(s) => *s,
                            None => {
                                let s = self.scopes.len() as u32;
                                self.scopes.push(name.to_string());
                                scope_of.insert(name.to_string(), s);
                                s
                            }
                        };
                        rows.insert(
                            key_hash(ids.value(i).as_bytes()),
                            StoredRow {
                                content,
                                file: fi as u32,
                                scope,
                            },
                        );
                    }
                    Ok(())
                })?;
            }
            self.stored = Some(rows);
        }
        Ok(self.stored.as_ref().expect("read above"))
    }

    /// Ends the table's part of the load: for a snapshot, retracts the stored rows of its
    /// programs that its files did not hold (refused over the threshold), then writes the
    /// replacement of every stored file that loses rows into `staging`. `None` when no stored
    /// row changes.
    pub fn finish(mut self, staging: &Path) -> Result<Option<StagedRevision>, IngestError> {
        let mut retracted = 0u64;
        if self.snapshot {
            self.stored_rows()?;
            let stored = self.stored.as_ref().expect("read above");
            let whole = self.program_column.is_none();
            let in_snapshot: Vec<bool> = self
                .scopes
                .iter()
                .map(|s| whole || self.programs.contains(s))
                .collect();
            let mut held = vec![0u64; self.scopes.len()];
            let mut gone = vec![0u64; self.scopes.len()];
            let mut retract: Vec<(u32, u128)> = Vec::new();
            for (key, row) in stored {
                let s = row.scope as usize;
                if !in_snapshot[s] {
                    continue;
                }
                held[s] += 1;
                if !self.present.contains(key) {
                    gone[s] += 1;
                    retract.push((row.file, *key));
                }
            }
            if !self.force_retract {
                let mut order: Vec<usize> = (0..self.scopes.len()).collect();
                order.sort_by_key(|s| self.scopes[*s].as_str());
                for s in order {
                    if gone[s] as f64 > self.max_retract_rate * held[s] as f64 {
                        return Err(RevisionError::TooManyRetractions {
                            table: self.table.name.clone(),
                            scope: if whole {
                                "the table".to_string()
                            } else {
                                // A program's id is public (the programs table is).
                                format!("program '{}'", self.scopes[s])
                            },
                            retracted: gone[s],
                            stored: held[s],
                            max_rate: self.max_retract_rate,
                        }
                        .into());
                    }
                }
            }
            for (file, key) in retract {
                self.drop.entry(file).or_default().insert(key);
                self.quarters.extend(self.files[file as usize].quarter());
                retracted += 1;
            }
        }
        if self.drop.is_empty() {
            return Ok(None);
        }
        let dir = staging.join(format!("revised-{}", self.table.name));
        std::fs::create_dir_all(&dir).map_err(IngestError::io(&dir))?;
        let props = writer_properties(self.table);
        let pk = &self.table.primary_key;
        let mut replaced = Vec::new();
        let mut written = Vec::new();
        for (n, (fi, keys)) in self.drop.iter().enumerate() {
            let f = &self.files[*fi as usize];
            let mut kept: Vec<RecordBatch> = Vec::new();
            let schema: SchemaRef = for_each_batch(self.wh, f, |b| {
                let ids = b
                    .column_by_name(pk)
                    .and_then(|c| c.as_string_opt::<i32>())
                    .ok_or_else(|| {
                        IngestError::from(RevisionError::Columns {
                            place: f.path.clone(),
                            column: pk.clone(),
                        })
                    })?;
                let keep: BooleanArray = ids
                    .iter()
                    .map(|id| Some(id.is_none_or(|id| !keys.contains(&key_hash(id.as_bytes())))))
                    .collect();
                let rows = filter_record_batch(b, &keep).map_err(|e| IngestError::Parquet {
                    path: PathBuf::from(&f.path),
                    source: e.into(),
                })?;
                if rows.num_rows() > 0 {
                    kept.push(rows);
                }
                Ok(())
            })?;
            replaced.push(f.path.clone());
            if !kept.is_empty() {
                written.push(write_parquet(
                    dir.join(format!("{n:04}.parquet")),
                    f.quarter(),
                    schema,
                    props.clone(),
                    kept,
                )?);
            }
        }
        Ok(Some(StagedRevision {
            summary: RevisedTable {
                table: self.table.name.clone(),
                corrected: self.corrected,
                retracted,
                quarters: self.quarters.iter().map(|q| q.to_string()).collect(),
            },
            replaced,
            written,
        }))
    }
}

/// Calls `each` with every batch of a stored data file, all its columns; returns the file's
/// Arrow schema.
fn for_each_batch(
    wh: &Warehouse,
    file: &DataFile,
    mut each: impl FnMut(&RecordBatch) -> Result<(), IngestError>,
) -> Result<SchemaRef, IngestError> {
    let path = wh.path(&file.path);
    let f = File::open(&path).map_err(IngestError::io(&path))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(IngestError::parquet(&path))?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(IngestError::parquet(&path))?;
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::Parquet {
            path: path.clone(),
            source: e.into(),
        })?;
        each(&batch)?;
    }
    Ok(schema)
}

/// Each row's content: a 128-bit hash of its value in every column of `table`, in the
/// dictionary's order, each read by name and by its logical value (an enum's text, not its
/// dictionary code), so a staged batch and a stored file of the same rows agree. `Err` names
/// a column that is missing or of another type.
pub(super) fn row_contents(table: &Table, batch: &RecordBatch) -> Result<Vec<u128>, String> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    for c in &table.columns {
        let a = batch
            .column_by_name(&c.name)
            .ok_or_else(|| c.name.clone())?;
        let a = match a.data_type() {
            DataType::Utf8 | DataType::Date32 | DataType::Boolean => Arc::clone(a),
            DataType::Dictionary(_, _) | DataType::LargeUtf8 | DataType::Utf8View => {
                cast(a.as_ref(), &DataType::Utf8).map_err(|_| c.name.clone())?
            }
            _ => return Err(c.name.clone()),
        };
        columns.push(a);
    }
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut buf: Vec<u8> = Vec::new();
    for i in 0..batch.num_rows() {
        buf.clear();
        for a in &columns {
            if a.is_null(i) {
                buf.push(0);
                continue;
            }
            match a.data_type() {
                DataType::Utf8 => {
                    let v = a.as_string::<i32>().value(i).as_bytes();
                    buf.push(1);
                    buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    buf.extend_from_slice(v);
                }
                DataType::Date32 => {
                    buf.push(2);
                    buf.extend_from_slice(&a.as_primitive::<Date32Type>().value(i).to_le_bytes());
                }
                DataType::Boolean => {
                    buf.push(3);
                    buf.push(u8::from(a.as_boolean().value(i)));
                }
                _ => unreachable!("every column was cast to text, a date or a boolean above"),
            }
        }
        out.push(key_hash(&buf));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::Dictionary;
    use datafusion::arrow::array::{Date32Array, DictionaryArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;

    /// An `arrests` batch (arrest_id, person_key, arrest_date, agency, charge) with both
    /// enums as dictionary arrays over `codes`, in that order, and every charge `charge`.
    fn arrests(rows: &[(&str, &str, i32, &str)], codes: &[&str], charge: &str) -> RecordBatch {
        let table = Dictionary::builtin().unwrap().table("arrests").unwrap();
        let dictionary = |values: Vec<&str>| -> ArrayRef {
            let keys: Vec<Option<i32>> = values
                .iter()
                .map(|v| codes.iter().position(|c| c == v).map(|p| p as i32))
                .collect();
            let values: ArrayRef = Arc::new(StringArray::from_iter_values(codes.iter().copied()));
            Arc::new(DictionaryArray::<Int32Type>::try_new(keys.into(), values).unwrap())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))) as ArrayRef,
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.2))) as ArrayRef,
            dictionary(rows.iter().map(|r| r.3).collect()),
            dictionary(rows.iter().map(|_| charge).collect()),
        ];
        RecordBatch::try_new(table.schema(), columns).unwrap()
    }

    #[test]
    fn row_contents_compare_values_not_their_encoding() {
        let table = Dictionary::builtin().unwrap().table("arrests").unwrap();
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["arrest_id", "person_key", "arrest_date", "agency", "charge"]
        );
        let codes = ["municipal_police", "state_police", "drug_sale", "property"];
        let rows = [
            ("A1", "pk1", 20_000, "state_police"),
            ("A2", "pk2", 20_001, "municipal_police"),
        ];
        let a = row_contents(table, &arrests(&rows, &codes, "drug_sale")).unwrap();
        // The same values under other dictionary codes are the same rows.
        let reordered = ["property", "drug_sale", "state_police", "municipal_police"];
        let b = row_contents(table, &arrests(&rows, &reordered, "drug_sale")).unwrap();
        assert_eq!(a, b);
        // Any changed value, the date included, is another row.
        let moved = [("A1", "pk1", 20_100, "state_police"), rows[1]];
        let c = row_contents(table, &arrests(&moved, &codes, "drug_sale")).unwrap();
        assert_ne!(a[0], c[0]);
        assert_eq!(a[1], c[1]);
        let agency = [("A1", "pk1", 20_000, "municipal_police"), rows[1]];
        let d = row_contents(table, &arrests(&agency, &codes, "drug_sale")).unwrap();
        assert_ne!(a[0], d[0]);
        let e = row_contents(table, &arrests(&rows, &codes, "property")).unwrap();
        assert_ne!(a[0], e[0]);
        // Values do not run into each other across columns.
        let split = [("A1p", "k1", 20_000, "state_police"), rows[1]];
        let f = row_contents(table, &arrests(&split, &codes, "drug_sale")).unwrap();
        assert_ne!(a[0], f[0]);
        // A batch without a column of the table names it.
        let narrow = arrests(&rows, &codes, "drug_sale")
            .project(&[0, 1])
            .unwrap();
        assert_eq!(row_contents(table, &narrow), Err("arrest_date".to_string()));
    }
}
