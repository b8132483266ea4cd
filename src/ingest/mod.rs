//! Ingest: checks program exports against the data dictionary and commits them to the
//! warehouse as Parquet, atomically.
//!
//! One `outreach ingest` is one transaction and, if it loads anything, one new dataset version:
//! 1. every file is hashed; a file already loaded (same SHA-256) is skipped and said so;
//! 2. file-level checks (encoding, delimiter, header, direct identifiers, quoted values that
//!    run past their line) refuse a file whole; every line is scanned for direct identifiers
//!    before any other check;
//! 3. rows are validated in parallel; bad rows go to a quarantine CSV with line, column, rule
//!    and redacted value, unless they exceed `--max-reject-rate`, which refuses the file;
//! 4. valid rows are staged as Parquet; if any file was refused, the staging is dropped and
//!    nothing is loaded;
//! 5. staged files are renamed into place, every new folder is flushed into its parent, and
//!    the manifest is written last, by atomic rename: that write is the commit. A crash
//!    before it leaves only files no manifest names, which the next write moves to `trash/`.
//!
//! A row whose key is stored is skipped when unchanged, and corrects the stored row when the
//! load says so; a snapshot retracts the stored rows it no longer holds ([`revision`]).

mod identifiers;
mod keys;
mod mapping;
mod pipeline;
mod revision;
mod rows;
mod source;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Date32Type;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use indicatif::{ProgressBar, ProgressStyle};

pub use crate::dictionary::{epoch_days, from_epoch_days};
pub use identifiers::{IdentifierKind, identifier_column, identifier_value};
pub use mapping::{CheckReport, Mapping, MappingError, check as check_mapping};
pub use revision::{DEFAULT_MAX_RETRACT_RATE, RevisedTable, RevisionError};
pub use rows::{Reject, redacted};

use crate::dictionary::{Dictionary, DictionaryError, Table};
use crate::fault::Fault;
use crate::warehouse::{
    DataFile, DatasetVersion, Load, LoadedFile, QUARANTINE_DIR, Revision, Warehouse,
    WarehouseError, WriteLock, check_complete_through, data_file_path, now_rfc3339,
    quarantine_path, sync_dir, write_atomic,
};
use keys::SeenKeys;
use pipeline::{KeyChecks, StagedFile, stage_file};
use revision::{StagedRevision, TableRevision};
use rows::{FileProblem, Referenced, RowRules, key_hash};

/// Default share of rows that may fail validation before a file is refused.
pub const DEFAULT_MAX_REJECT_RATE: f64 = 0.01;

/// Environment variable that makes ingest abort the process at a named point, to test that a
/// crash there leaves the warehouse as it was. Points: `after-staging`, `after-data-rename`,
/// and `dir-synced:<folder>` after each new folder is flushed (see `Warehouse::create_dir`).
pub const FAIL_POINT_ENV: &str = crate::failpoint::ENV;

/// Errors of ingest. Each says what is wrong and where; none leaves data half-written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{0}: no .csv files to load")]
    NoFiles(PathBuf),
    #[error(
        "{file}: cannot tell which table this file holds; name it after its table ({known}), for example overdose_events.csv, or pass --table"
    )]
    UnknownTable { file: PathBuf, known: String },
    #[error("--table {name}: no such table; the tables are {known}")]
    UnknownForcedTable { name: String, known: String },
    #[error("{file}: the file is empty")]
    Empty { file: PathBuf },
    #[error("{file}: the file has a header but no data rows")]
    HeaderOnly { file: PathBuf },
    #[error("{file}: the file is UTF-16 encoded; export it as UTF-8")]
    Utf16 { file: PathBuf },
    #[error("{file}, line {line}: not valid UTF-8 (byte 0x{byte:02X}); export the file as UTF-8")]
    Encoding { file: PathBuf, line: u64, byte: u8 },
    #[error("{file}: the header is separated by '{}', not by commas; export comma-separated CSV", found.escape_default())]
    Delimiter { file: PathBuf, found: char },
    #[error(
        "{file}: the header does not match table {table}: {details}. Expected the columns {expected}"
    )]
    Header {
        file: PathBuf,
        table: String,
        details: String,
        expected: String,
    },
    #[error(
        "{file}: refused whole, nothing was loaded: {place} looks like {kind}. Direct identifiers must never reach the warehouse: de-identify the export (drop names, dates of birth, SSNs, addresses, phone numbers, emails, medical record numbers and raw person ids; key each person only by person_key) and load it again"
    )]
    DirectIdentifier {
        file: PathBuf,
        place: String,
        kind: &'static str,
    },
    #[error(
        "{file}, line {line}: a quoted value is not closed on its line; nothing was loaded. Values with line breaks are not supported (and an open quote would swallow the next line): remove line breaks from the values, or close the quote, and export the file again"
    )]
    MultilineField { file: PathBuf, line: u64 },
    #[error(
        "{file}, line {line}: the file ends inside a row ({fields} of {expected} fields); it looks cut off, so export it again"
    )]
    Truncated {
        file: PathBuf,
        line: u64,
        fields: usize,
        expected: usize,
    },
    #[error(
        "{file}, line {line}: the line is {bytes} bytes long, over the limit of {max}; the file probably lacks line breaks or has an unclosed quote"
    )]
    OverlongLine {
        file: PathBuf,
        line: u64,
        bytes: usize,
        max: usize,
    },
    #[error(
        "{file}: {rejected} of {read} rows ({:.2}%) failed validation, over the --max-reject-rate of {:.2}%; nothing was loaded. Line-by-line reasons: {quarantine}", 100.0 * *rejected as f64 / *read as f64, 100.0 * max_rate
    )]
    TooManyRejects {
        file: PathBuf,
        rejected: u64,
        read: u64,
        max_rate: f64,
        quarantine: PathBuf,
    },
    #[error("--max-reject-rate must be a share between 0 and 1, not {0}")]
    BadRejectRate(f64),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: Parquet: {source}")]
    Parquet {
        path: PathBuf,
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("the data dictionary built into outreach is invalid, a defect of this build: {0}")]
    Dictionary(&'static DictionaryError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Revision(#[from] RevisionError),
}

impl IngestError {
    pub fn fault(&self) -> Fault {
        match self {
            IngestError::Io { .. } | IngestError::Parquet { .. } | IngestError::Dictionary(_) => {
                Fault::Internal
            }
            IngestError::Warehouse(e) => e.fault(),
            IngestError::Mapping(e) => e.fault(),
            IngestError::Revision(e) => e.fault(),
            _ => Fault::BadInput,
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError {
        let path = path.to_path_buf();
        move |source| IngestError::Io { path, source }
    }

    fn parquet(
        path: &Path,
    ) -> impl FnOnce(datafusion::parquet::errors::ParquetError) -> IngestError {
        let path = path.to_path_buf();
        move |source| IngestError::Parquet { path, source }
    }

    fn from_problem(path: &Path, p: FileProblem) -> IngestError {
        let file = path.to_path_buf();
        match p {
            FileProblem::Identifier { line, column, kind } => IngestError::DirectIdentifier {
                file,
                place: match column {
                    Some(column) => format!("a value in column '{column}' on line {line}"),
                    None => format!("a value on line {line}"),
                },
                kind: kind.describe(),
            },
            FileProblem::OpenQuote { line } => IngestError::MultilineField { file, line },
            FileProblem::Encoding { line, byte } => IngestError::Encoding { file, line, byte },
            FileProblem::OverlongLine { line, bytes } => IngestError::OverlongLine {
                file,
                line,
                bytes,
                max: rows::MAX_LINE_BYTES,
            },
            FileProblem::Truncated {
                line,
                fields,
                expected,
            } => IngestError::Truncated {
                file,
                line,
                fields,
                expected,
            },
        }
    }
}

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Load every file into this table instead of telling the table from the file name.
    pub table: Option<String>,
    /// Share of rows (0 to 1) that may be rejected before a file is refused.
    pub max_reject_rate: f64,
    /// Declare every table loaded here complete through this date.
    pub complete_through: Option<NaiveDate>,
    /// Earliest plausible date in any date column.
    pub min_date: NaiveDate,
    /// Latest plausible date in any date column: today, unless set.
    pub max_date: NaiveDate,
    /// Show progress bars on the terminal.
    pub progress: bool,
    /// A source mapping file: files it recognises are loaded through it.
    pub mapping: Option<PathBuf>,
    /// A row that changes the stored row under its key corrects it (instead of being
    /// rejected): the load declares itself a correction.
    pub corrections: bool,
    /// Each table's files are each of their programs' whole table: stored rows of those
    /// programs that they do not hold are retracted.
    pub snapshot: bool,
    /// Share of a program's stored rows in a table (0 to 1) that a snapshot may retract
    /// before the load is refused.
    pub max_retract_rate: f64,
    /// Retract whatever share a snapshot would retract.
    pub force_retract: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            table: None,
            max_reject_rate: DEFAULT_MAX_REJECT_RATE,
            complete_through: None,
            min_date: NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid"),
            max_date: chrono::Utc::now().date_naive(),
            progress: false,
            mapping: None,
            corrections: false,
            snapshot: false,
            max_retract_rate: DEFAULT_MAX_RETRACT_RATE,
            force_retract: false,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    Loaded {
        rows_read: u64,
        /// New rows and corrections.
        rows_loaded: u64,
        rows_rejected: u64,
        quarantine: Option<PathBuf>,
        /// Rows identical to the stored row under their key: skipped, not rejected.
        rows_unchanged: u64,
        /// Rows that corrected the stored row under their key; among `rows_loaded`.
        rows_corrected: u64,
    },
    /// The same bytes were loaded before, in this version.
    AlreadyLoaded(DatasetVersion),
    /// The same bytes appear earlier in this command.
    RepeatedInCommand,
}

/// One file's line of the ingest summary.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    pub source: PathBuf,
    pub table: String,
    pub sha256: String,
    pub bytes: u64,
    pub outcome: FileOutcome,
    /// SHA-256 of the mapping the file was read through, if any.
    pub mapping: Option<String>,
}

/// The result of one `outreach ingest`.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestReport {
    pub files: Vec<FileReport>,
    /// The new dataset version, or `None` when nothing new was loaded.
    pub version: Option<DatasetVersion>,
    /// Files that an interrupted earlier write had left, moved out of the way.
    pub recovered_files: usize,
    /// The folder under `trash/` they were moved to.
    pub trash: Option<PathBuf>,
    /// The stored rows the load corrected or retracted, per table.
    pub revisions: Vec<RevisedTable>,
}

impl IngestReport {
    /// Rows loaded over all files.
    pub fn rows_loaded(&self) -> u64 {
        self.files
            .iter()
            .map(|f| match f.outcome {
                FileOutcome::Loaded { rows_loaded, .. } => rows_loaded,
                _ => 0,
            })
            .sum()
    }
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(trash) = &self.trash {
            writeln!(
                f,
                "Moved {} files left by an interrupted earlier load to {}; nothing the manifest names was touched. Delete that folder when you no longer need it.",
                self.recovered_files,
                trash.display()
            )?;
        }
        writeln!(
            f,
            "{:<40} {:<18} {:>10} {:>10} {:>9} {:>10} {:>9}  result",
            "file", "table", "read", "loaded", "rejected", "unchanged", "corrected"
        )?;
        for r in &self.files {
            let name = r.source.display().to_string();
            let name = if name.chars().count() > 40 {
                format!(
                    "…{}",
                    name.chars()
                        .rev()
                        .take(39)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<String>()
                )
            } else {
                name
            };
            match &r.outcome {
                FileOutcome::Loaded {
                    rows_read,
                    rows_loaded,
                    rows_rejected,
                    quarantine,
                    rows_unchanged,
                    rows_corrected,
                } => writeln!(
                    f,
                    "{name:<40} {:<18} {rows_read:>10} {rows_loaded:>10} {rows_rejected:>9} {rows_unchanged:>10} {rows_corrected:>9}  {}",
                    r.table,
                    quarantine
                        .as_ref()
                        .map_or("loaded".to_string(), |q| format!(
                            "loaded; rejects in {}",
                            q.display()
                        ))
                )?,
                FileOutcome::AlreadyLoaded(v) => writeln!(
                    f,
                    "{name:<40} {:<18} {:>10} {:>10} {:>9} {:>10} {:>9}  already loaded in {v}; nothing added",
                    r.table, "-", "-", "-", "-", "-"
                )?,
                FileOutcome::RepeatedInCommand => writeln!(
                    f,
                    "{name:<40} {:<18} {:>10} {:>10} {:>9} {:>10} {:>9}  same bytes as an earlier file here; skipped",
                    r.table, "-", "-", "-", "-", "-"
                )?,
            }
        }
        for r in &self.revisions {
            let quarters = if r.quarters.is_empty() {
                String::new()
            } else {
                format!(" (quarters {})", r.quarters.join(", "))
            };
            writeln!(
                f,
                "{}: {} stored rows superseded by corrections and {} retracted{quarters}; they are kept as history and no longer read. `outreach publish` names the published quarters this touches.",
                r.table, r.corrected, r.retracted
            )?;
        }
        match self.version {
            Some(v) => writeln!(f, "Committed dataset version {v}.")?,
            None => writeln!(f, "Nothing new to load; the dataset version is unchanged.")?,
        }
        Ok(())
    }
}

/// Loads program exports (files, or folders of `.csv` files) into the warehouse at `root`,
/// creating it if needed. Either everything new is committed as one dataset version, or
/// nothing is and the error says why.
pub fn ingest(
    root: &Path,
    inputs: &[PathBuf],
    opts: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    if !(0.0..=1.0).contains(&opts.max_reject_rate) {
        return Err(IngestError::BadRejectRate(opts.max_reject_rate));
    }
    if !(0.0..=1.0).contains(&opts.max_retract_rate) {
        return Err(RevisionError::BadRetractRate(opts.max_retract_rate).into());
    }
    if let Some(d) = opts.complete_through {
        check_complete_through(d)?;
    }
    let dict = Dictionary::builtin().map_err(IngestError::Dictionary)?;
    // A bad mapping is refused before the warehouse is opened or created.
    let mapping = opts.mapping.as_deref().map(Mapping::load).transpose()?;
    let files = expand_inputs(inputs)?;
    let mut planned: Vec<Planned> = Vec::new();
    for p in files {
        match mapping.as_ref().and_then(|m| m.source_of(&p)) {
            // One planned load per table the source feeds.
            Some(src) => planned.extend(src.feeds.iter().map(|f| (f.table, p.clone(), Some(f)))),
            None => planned.push((
                source::detect_table(dict, &p, opts.table.as_deref())?,
                p,
                None,
            )),
        }
    }
    // programs first: person rows are checked against the programs they name.
    let order = |t: &Table| dict.tables().iter().position(|x| x.name == t.name);
    planned.sort_by_key(|(t, _, _)| order(t));

    let wh = Warehouse::open_or_create(root)?;
    let lock = wh.lock()?;
    let recovery = wh.recover(&lock)?;
    let (recovered_files, trash) = (recovery.moved, recovery.trash);
    let mut manifest = wh.manifest()?;
    // The unique keys are checked against the stored files: each must be there, whole.
    wh.check_data_files(&manifest)?;
    let staging = wh.staging_dir(&lock)?;

    let result = stage_all(dict, &wh, &lock, &manifest, &planned, &staging, opts);
    let (reports, staged, revisions) = match result {
        Ok(x) => x,
        Err(e) => {
            wh.drop_staging(&staging)?;
            return Err(e);
        }
    };
    fail_point("after-staging");

    // A load whose rows are all unchanged re-sends (a re-export with nothing new) changes
    // nothing: it makes no new dataset version.
    let changes = revisions.iter().any(|r| !r.replaced.is_empty())
        || staged
            .iter()
            .any(|(_, sf)| sf.rows_loaded > 0 || sf.rows_rejected > 0);
    if staged.is_empty() || !changes {
        let mut reports = reports;
        for (report_idx, sf) in &staged {
            reports[*report_idx].outcome = loaded_outcome(sf, None);
        }
        wh.drop_staging(&staging)?;
        // Nothing new, but a completeness declaration still counts.
        if let Some(through) = opts.complete_through {
            declare_complete(&mut manifest, &reports, through, &now_rfc3339());
            wh.commit_manifest(&lock, &manifest)?;
        }
        return Ok(IngestReport {
            files: reports,
            version: None,
            recovered_files,
            trash,
            revisions: Vec::new(),
        });
    }

    // Commit: move data into place, then write the manifest (the commit point).
    let version = DatasetVersion(manifest.version().0 + 1);
    let mut loaded = Vec::new();
    let mut reports = reports;
    for (file_no, (report_idx, sf)) in staged.into_iter().enumerate() {
        let report = &mut reports[report_idx];
        let mut data_files = Vec::new();
        for d in &sf.data {
            let rel = data_file_path(&report.table, d.quarter, version, file_no);
            let (rel_dir, _) = rel.rsplit_once('/').expect("a data file has a folder");
            // New folders are flushed into their parents before the manifest names them.
            wh.create_dir(rel_dir)?;
            let dest = wh.path(&rel);
            let dir = dest.parent().expect("a data file has a folder");
            std::fs::rename(&d.path, &dest).map_err(IngestError::io(&dest))?;
            sync_dir(dir)?;
            data_files.push(DataFile {
                path: rel,
                rows: d.rows,
                bytes: d.bytes,
                sha256: d.sha256.clone(),
                replaced_in: None,
            });
        }
        let quarantine = if sf.rejects.is_empty() {
            None
        } else {
            let rel = quarantine_path(version, file_no, &report.source);
            wh.create_dir(QUARANTINE_DIR)?;
            write_atomic(&wh.path(&rel), &quarantine_csv(&sf.rejects))?;
            Some(rel)
        };
        report.outcome = loaded_outcome(&sf, quarantine.as_ref().map(|q| wh.path(q)));
        loaded.push(LoadedFile {
            source: report.source.display().to_string(),
            sha256: report.sha256.clone(),
            bytes: report.bytes,
            table: report.table.clone(),
            rows_read: sf.rows_read,
            rows_loaded: sf.rows_loaded,
            rows_rejected: sf.rows_rejected,
            quarantine,
            data_files,
            mapping_sha256: report.mapping.clone(),
            rows_unchanged: sf.rows_unchanged,
            rows_corrected: sf.rows_corrected,
        });
    }
    let next_file_no = loaded.len();
    let (load_revisions, summaries) =
        commit_revisions(&wh, &mut manifest, revisions, version, next_file_no)?;
    fail_point("after-data-rename");
    let now = now_rfc3339();
    if let Some(through) = opts.complete_through {
        declare_complete(&mut manifest, &reports, through, &now);
    }
    manifest.loads.push(Load {
        version,
        loaded_at: now,
        files: loaded,
        revisions: load_revisions,
    });
    wh.commit_manifest(&lock, &manifest)?;
    wh.drop_staging(&staging)?;
    Ok(IngestReport {
        files: reports,
        version: Some(version),
        recovered_files,
        trash,
        revisions: summaries,
    })
}

/// A staged file's outcome.
fn loaded_outcome(sf: &StagedFile, quarantine: Option<PathBuf>) -> FileOutcome {
    FileOutcome::Loaded {
        rows_read: sf.rows_read,
        rows_loaded: sf.rows_loaded,
        rows_rejected: sf.rows_rejected,
        quarantine,
        rows_unchanged: sf.rows_unchanged,
        rows_corrected: sf.rows_corrected,
    }
}

/// Moves each staged revision's files into place as data files of `version`, numbered from
/// `file_no` on (after the load's source files), every new folder flushed, and marks the
/// files they replace in `manifest`. The manifest is not written here: until the commit,
/// the replaced files are what every reader reads.
fn commit_revisions(
    wh: &Warehouse,
    manifest: &mut crate::warehouse::Manifest,
    revisions: Vec<StagedRevision>,
    version: DatasetVersion,
    mut file_no: usize,
) -> Result<(Vec<Revision>, Vec<RevisedTable>), IngestError> {
    let mut out = Vec::new();
    let mut summaries = Vec::new();
    for r in revisions {
        let mut data_files = Vec::new();
        for d in &r.written {
            let rel = data_file_path(&r.summary.table, d.quarter, version, file_no);
            file_no += 1;
            let (rel_dir, _) = rel.rsplit_once('/').expect("a data file has a folder");
            wh.create_dir(rel_dir)?;
            let dest = wh.path(&rel);
            let dir = dest.parent().expect("a data file has a folder");
            std::fs::rename(&d.path, &dest).map_err(IngestError::io(&dest))?;
            sync_dir(dir)?;
            data_files.push(DataFile {
                path: rel,
                rows: d.rows,
                bytes: d.bytes,
                sha256: d.sha256.clone(),
                replaced_in: None,
            });
        }
        manifest.replace_files(&r.replaced, version);
        out.push(Revision {
            table: r.summary.table.clone(),
            corrected: r.summary.corrected,
            retracted: r.summary.retracted,
            quarters: r.summary.quarters.clone(),
            data_files,
        });
        summaries.push(r.summary);
    }
    Ok((out, summaries))
}

/// Records `--complete-through` for every table the command's files belong to.
fn declare_complete(
    manifest: &mut crate::warehouse::Manifest,
    reports: &[FileReport],
    through: NaiveDate,
    now: &str,
) {
    let mut tables: Vec<&str> = reports.iter().map(|r| r.table.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    for t in tables {
        manifest.declare_complete_through(t, through, now.to_string());
    }
}

type Staged = (
    Vec<FileReport>,
    Vec<(usize, StagedFile)>,
    Vec<StagedRevision>,
);

/// A file to load into a table, with the mapping feed it is read through, if any.
type Planned<'d> = (&'d Table, PathBuf, Option<&'d mapping::Feed>);

/// Checks and stages every planned file. Returns each file's report and the staged files
/// (with the index of their report).
fn stage_all(
    dict: &Dictionary,
    wh: &Warehouse,
    lock: &WriteLock,
    manifest: &crate::warehouse::Manifest,
    planned: &[Planned],
    staging: &Path,
    opts: &IngestOptions,
) -> Result<Staged, IngestError> {
    // For each table that others reference (programs): its rows' keys and start dates, stored
    // and staged so far.
    let mut starts: HashMap<String, HashMap<String, i32>> = HashMap::new();
    let mut seen_by_table: HashMap<String, SeenKeys> = HashMap::new();
    // Each table's revision of its stored rows, in the order its first file came.
    let mut revisions: Vec<TableRevision<'_>> = Vec::new();
    let mut reports = Vec::new();
    let mut staged = Vec::new();
    let mut sizes_here: Vec<u64> = Vec::new();
    for (table, path, feed) in planned {
        let size = std::fs::metadata(path)
            .map_err(IngestError::io(path))?
            .len();
        let mut report = FileReport {
            source: path.clone(),
            table: table.name.clone(),
            sha256: String::new(),
            bytes: size,
            outcome: FileOutcome::RepeatedInCommand,
            mapping: feed.map(|f| f.mapping_sha256.clone()),
        };
        // Only a file of the same size can repeat one: hash those first, and hash the others
        // while reading them. A repeat is the same bytes loaded into the same table.
        if manifest.may_hold_file_of_size(size) || sizes_here.contains(&size) {
            report.sha256 = source::sha256_file(path)?;
            if let Some((load, _)) =
                manifest.load_of(&table.name, &report.sha256, report.mapping.as_deref())
            {
                report.outcome = FileOutcome::AlreadyLoaded(load.version);
                reports.push(report);
                continue;
            }
            if reports.iter().any(|r: &FileReport| {
                r.sha256 == report.sha256 && r.table == report.table && r.mapping == report.mapping
            }) {
                reports.push(report);
                continue;
            }
        }
        sizes_here.push(size);
        let header = source::read_header(path)?;
        let bound = match feed {
            Some(f) => Some(f.bind(&f.mapping_path, path, &header)?),
            None => None,
        };
        // A mapped file's lines reach the row rules in the table's own column order.
        let (positions, n_fields): (Vec<usize>, usize) = match &bound {
            Some(_) => ((0..table.columns.len()).collect(), table.columns.len()),
            None => (
                source::map_columns(path, table, &header)?,
                header.fields.len(),
            ),
        };
        if !seen_by_table.contains_key(&table.name) {
            let keys = stored_keys(wh, manifest, table)?;
            seen_by_table.insert(table.name.clone(), keys);
        }
        let seen = seen_by_table.get_mut(&table.name).expect("inserted above");
        let revision = match revisions.iter().position(|r| r.table_name() == table.name) {
            Some(i) => &mut revisions[i],
            None => {
                let referenced = dict.is_referenced(&table.name);
                revisions.push(TableRevision::new(wh, manifest, table, referenced, opts));
                revisions.last_mut().expect("pushed above")
            }
        };
        // The table this one's rows reference, and this one when others reference it.
        let reference = table.reference().map(|(_, r)| r);
        let keep_starts = dict.is_referenced(&table.name);
        for name in reference
            .into_iter()
            .chain(keep_starts.then_some(table.name.as_str()))
        {
            if !starts.contains_key(name) {
                let t = dict.table(name).expect("the dictionary checks references");
                starts.insert(name.to_string(), stored_starts(wh, manifest, t)?);
            }
        }
        let progress = progress_bar(opts.progress, size.saturating_sub(header.body_offset), path);
        let file_staging = staging.join(format!("{:02}", staged.len()));
        let sf = {
            let referenced = reference.map(|r| Referenced {
                table: dict.table(r).expect("the dictionary checks references"),
                starts: &starts[r],
            });
            let rules = RowRules::new(
                table,
                positions,
                n_fields,
                referenced,
                keep_starts,
                opts.min_date,
                opts.max_date,
            );
            stage_file(
                path,
                header.body_offset,
                &rules,
                &file_staging,
                KeyChecks { seen, revision },
                &progress,
                bound.as_ref(),
            )?
        };
        progress.finish_and_clear();
        let mut sf = sf;
        if let Some(b) = &bound {
            b.describe_rejects(&mut sf.rejects);
        }
        if sf.rows_read == 0 {
            return Err(IngestError::HeaderOnly { file: path.clone() });
        }
        // Unchanged rows are neither rejects nor part of the share's base: a re-export of
        // every stored row does not dilute the rejects of its new ones.
        let judged = sf.rows_read - sf.rows_unchanged;
        if sf.rows_rejected as f64 > opts.max_reject_rate * judged as f64 {
            let q = refused_quarantine(wh, lock, path, &sf)?;
            return Err(IngestError::TooManyRejects {
                file: path.clone(),
                rejected: sf.rows_rejected,
                read: judged,
                max_rate: opts.max_reject_rate,
                quarantine: q,
            });
        }
        if opts.snapshot && sf.rows_invalid > 0 {
            let q = refused_quarantine(wh, lock, path, &sf)?;
            return Err(RevisionError::InvalidRowsInSnapshot {
                file: path.clone(),
                invalid: sf.rows_invalid,
                read: sf.rows_read,
                quarantine: q,
            }
            .into());
        }
        seen.end_file();
        if keep_starts {
            starts
                .get_mut(&table.name)
                .expect("loaded above")
                .extend(sf.starts.iter().cloned());
        }
        report.sha256 = sf.sha256.clone();
        staged.push((reports.len(), sf));
        reports.push(report);
    }
    // Retractions are known once every file of a table is read; each table's replaced
    // files are rewritten into the staging folder.
    let mut staged_revisions = Vec::new();
    for r in revisions {
        staged_revisions.extend(r.finish(staging)?);
    }
    Ok((reports, staged, staged_revisions))
}

/// Writes the reasons of a refused file where the steward can read them, under a name no
/// other report has. The folder is a report, not data: no dataset version or reader depends
/// on it.
fn refused_quarantine(
    wh: &Warehouse,
    lock: &WriteLock,
    path: &Path,
    sf: &StagedFile,
) -> Result<PathBuf, IngestError> {
    let dest = wh.refused_report_path(lock, path)?;
    write_atomic(&dest, &quarantine_csv(&sf.rejects))?;
    Ok(dest)
}

/// The quarantine report: one line per rejected field, the steward's own, written as it is
/// (no formula guard).
fn quarantine_csv(rejects: &[Reject]) -> Vec<u8> {
    let mut out = crate::csv_out::Writer::new();
    out.line(["line", "column", "reason"]);
    for r in rejects {
        out.line([r.line.to_string(), r.column.clone(), r.reason.clone()]);
    }
    out.finish().into_bytes()
}

/// Calls `each` with every stored batch of `table`, projected to `columns` (by name). A
/// stored file without one of them is damaged, and is an error rather than skipped: skipping
/// it would let keys it holds be loaded again.
fn for_each_stored_batch(
    wh: &Warehouse,
    manifest: &crate::warehouse::Manifest,
    table: &str,
    columns: &[&str],
    mut each: impl FnMut(&RecordBatch),
) -> Result<(), IngestError> {
    for f in manifest.data_files(table) {
        let path = wh.path(&f.path);
        let file = File::open(&path).map_err(IngestError::io(&path))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(IngestError::parquet(&path))?;
        let indices = columns
            .iter()
            .map(|c| builder.schema().index_of(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IngestError::Parquet {
                path: path.clone(),
                source: e.into(),
            })?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(IngestError::parquet(&path))?;
        for batch in reader {
            let batch = batch.map_err(|e| IngestError::Parquet {
                path: path.clone(),
                source: e.into(),
            })?;
            each(&batch);
        }
    }
    Ok(())
}

/// A column that [`for_each_stored_batch`] projected.
fn named<'b>(batch: &'b RecordBatch, column: &str) -> &'b datafusion::arrow::array::ArrayRef {
    batch
        .column_by_name(column)
        .expect("for_each_stored_batch projects every requested column")
}

/// The keys of `table`'s stored rows (programs, which other tables reference), with their
/// start dates (`i32::MIN` for a table without a start column).
fn stored_starts(
    wh: &Warehouse,
    manifest: &crate::warehouse::Manifest,
    table: &Table,
) -> Result<HashMap<String, i32>, IngestError> {
    let mut out = HashMap::new();
    let mut columns = vec![table.primary_key.as_str()];
    columns.extend(table.start_column.as_deref());
    for_each_stored_batch(wh, manifest, &table.name, &columns, |b| {
        let ids = named(b, &table.primary_key).as_string::<i32>();
        let starts = table
            .start_column
            .as_deref()
            .map(|sc| named(b, sc).as_primitive::<Date32Type>());
        for i in 0..b.num_rows() {
            let start = starts.map_or(i32::MIN, |s| s.value(i));
            out.insert(ids.value(i).to_string(), start);
        }
    })?;
    Ok(out)
}

/// Hashes of the primary keys already stored for `table`.
fn stored_keys(
    wh: &Warehouse,
    manifest: &crate::warehouse::Manifest,
    table: &Table,
) -> Result<SeenKeys, IngestError> {
    let mut seen = SeenKeys::with_capacity(
        manifest
            .data_files(&table.name)
            .map(|f| f.rows as usize)
            .sum(),
    );
    for_each_stored_batch(wh, manifest, &table.name, &[&table.primary_key], |b| {
        let stored: Vec<(u128, u64)> = named(b, &table.primary_key)
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(|id| (key_hash(id.as_bytes()), 0))
            .collect();
        seen.admit_all(&stored);
    })?;
    Ok(seen)
}

/// Files named directly, and the `.csv` files of named folders, in name order.
fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, IngestError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(IngestError::io(input))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv"))
                })
                .collect();
            if found.is_empty() {
                return Err(IngestError::NoFiles(input.clone()));
            }
            found.sort();
            out.extend(found);
        } else if input.is_file() {
            out.push(input.clone());
        } else {
            return Err(IngestError::Missing(input.clone()));
        }
    }
    if out.is_empty() {
        return Err(IngestError::NoFiles(PathBuf::from(".")));
    }
    Ok(out)
}

fn progress_bar(show: bool, bytes: u64, path: &Path) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(bytes);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    pb
}

fn fail_point(name: &str) {
    crate::failpoint::hit(name);
}
