//! Exact tests of the standard metric queries (`queries/standard/*.sql`) on a hand-made fixture.
//!
//! The harness builds a warehouse from `tests/fixtures/metrics/*.csv` in a temporary folder,
//! opens it as a DataFusion session with the privacy engine's functions, registers every
//! standard query file as a view named after its file stem (`outreach.sql` → `outreach`), and
//! runs every `tests/slt/*.slt` file against that session with `sqllogictest`. The expected
//! values in the `.slt` files are worked out by hand; `tests/fixtures/metrics/CASES.md` says
//! which person covers which edge case and why each value is what it is.
//!
//! `cargo test --release --test slt [-- NAME...]` runs the files whose name contains one of
//! the NAMEs (all of them without one). Every record of a file runs, even after a failure, so
//! one run reports every mismatch. The process exits non-zero when a file fails.
//! `OUTREACH_SLT_QUERIES=DIR` reads the query files from DIR instead of `queries/standard`.
//! The cross-program queries (`queries/cross_program/*.sql`) are registered the same way.

use std::error::Error;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use outreach_warehouse::ingest::{FileOutcome, IngestOptions, ingest};
use sqllogictest::{AsyncDB, ColumnType, DBOutput, Record, Runner, strict_column_validator};

type BoxError = Box<dyn Error + Send + Sync>;

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slt: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&filters)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("slt: setup failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files of `dir` with extension `ext`, sorted by name.
fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, BoxError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = entry?.path();
        if p.is_file() && p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

async fn run(filters: &[String]) -> Result<bool, BoxError> {
    let root = manifest_dir();
    let slt_files: Vec<PathBuf> = files_with_ext(&root.join("tests/slt"), "slt")?
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    if slt_files.is_empty() {
        println!("slt: no .slt file matches {filters:?}");
        println!("0 passed, 0 failed");
        return Ok(true);
    }

    let tmp = tempfile::tempdir()?;
    let wh = build_warehouse(tmp.path())?;
    let ctx = session(&wh).await?;
    // `OUTREACH_SLT_QUERIES=DIR` runs the files against other query files (say, a mutated copy,
    // to check that the fixture catches a wrong window).
    let queries = std::env::var_os("OUTREACH_SLT_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("queries/standard"));
    let views_ok = register_standard_queries(&ctx, &queries).await?;
    // The statistics that follow survivors across programs (`queries/cross_program`).
    let views_ok =
        register_standard_queries(&ctx, &root.join("queries/cross_program")).await? && views_ok;

    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &slt_files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let (records, errors) = run_file(&ctx, file).await?;
        if errors.is_empty() {
            passed += 1;
            println!("ok     {name} ({records} records)");
        } else {
            failed += 1;
            println!(
                "FAILED {name}: {} of {records} records failed",
                errors.len()
            );
            for e in &errors {
                println!("\n{e}\n");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0 && views_ok)
}

/// Loads the fixture into a new warehouse under `tmp`, refusing any rejected row: every
/// fixture row is meant to be valid, so a rejection is a broken fixture.
fn build_warehouse(tmp: &Path) -> Result<PathBuf, BoxError> {
    let fixture = manifest_dir().join("tests/fixtures/metrics");
    let wh = tmp.join("wh");
    let files = files_with_ext(&fixture, "csv")?;
    let opts = IngestOptions {
        max_reject_rate: 0.0,
        // The fixture's follow-up ends in 2025Q3: declare every table complete through the
        // end of 2025, a date that has passed, so no window counts as incomplete.
        complete_through: Some(NaiveDate::from_ymd_opt(2025, 12, 31).expect("valid")),
        // A fixed latest date, so the run does not depend on today.
        max_date: NaiveDate::from_ymd_opt(2026, 6, 30).expect("valid"),
        ..IngestOptions::default()
    };
    let report = ingest(&wh, &files, &opts)?;
    for f in &report.files {
        match &f.outcome {
            FileOutcome::Loaded {
                rows_rejected: 0, ..
            } => {}
            other => {
                return Err(format!(
                    "fixture {} did not load cleanly: {other:?}\n{report}",
                    f.source.display()
                )
                .into());
            }
        }
    }
    if files.len() != report.files.len() {
        return Err(format!(
            "fixture: {} files, {} loaded",
            files.len(),
            report.files.len()
        )
        .into());
    }
    Ok(wh)
}

async fn session(wh: &Path) -> Result<SessionContext, BoxError> {
    let w = outreach_warehouse::warehouse::Warehouse::open(wh)?;
    let ctx = outreach_warehouse::warehouse::open_session(&w).await?;
    outreach_warehouse::privacy::functions::register(&ctx);
    Ok(ctx)
}

/// Registers every `*.sql` of `dir` as a view named after its stem. A file that does not plan
/// is reported and makes the run fail; the `.slt` records that use its view fail as well.
async fn register_standard_queries(ctx: &SessionContext, dir: &Path) -> Result<bool, BoxError> {
    let files = files_with_ext(dir, "sql")?;
    if files.is_empty() {
        return Err(format!("no query file in {}", dir.display()).into());
    }
    let mut ok = true;
    for file in files {
        let stem = file
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let sql = std::fs::read_to_string(&file)?;
        match ctx.sql(&sql).await {
            Ok(df) => {
                ctx.register_table(stem.as_str(), df.into_view())?;
                println!("view   {stem} <- {}", file.display());
            }
            Err(e) => {
                ok = false;
                println!("FAILED view {stem} <- {}: {e}", file.display());
            }
        }
    }
    Ok(ok)
}

/// Runs every record of one file, collecting the failures instead of stopping at the first.
async fn run_file(ctx: &SessionContext, file: &Path) -> Result<(usize, Vec<String>), BoxError> {
    let records = sqllogictest::parse_file::<SltType>(file)?;
    let ctx = ctx.clone();
    let mut runner = Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok::<_, DataFusionError>(DataFusionDb { ctx }) }
    });
    runner.with_column_validator(strict_column_validator);
    let mut count = 0;
    let mut errors = Vec::new();
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        let is_test = matches!(
            record,
            Record::Query { .. } | Record::Statement { .. } | Record::System { .. }
        );
        count += usize::from(is_test);
        if let Err(e) = runner.run_async(record).await {
            errors.push(e.display(false).to_string());
        }
    }
    Ok((count, errors))
}

/// Column types of the `.slt` files: `T` text, `I` integer, `R` float or decimal, `B` boolean,
/// `D` date, `?` anything else. The harness checks them strictly, so a statistic that comes
/// back as an integer instead of a boolean fails.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SltType {
    Text,
    Integer,
    Float,
    Boolean,
    Date,
    Any,
}

impl ColumnType for SltType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'T' => Self::Text,
            'I' => Self::Integer,
            'R' => Self::Float,
            'B' => Self::Boolean,
            'D' => Self::Date,
            '?' => Self::Any,
            _ => return None,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Text => 'T',
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Boolean => 'B',
            Self::Date => 'D',
            Self::Any => '?',
        }
    }
}

fn slt_type(t: &DataType) -> SltType {
    match t {
        DataType::Boolean => SltType::Boolean,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => SltType::Integer,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => SltType::Float,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SltType::Text,
        DataType::Date32 | DataType::Date64 => SltType::Date,
        DataType::Dictionary(_, v) => slt_type(v),
        _ => SltType::Any,
    }
}

/// One connection: the shared session (views and tables are the same for every connection).
struct DataFusionDb {
    ctx: SessionContext,
}

impl DataFusionDb {
    async fn query(&self, sql: &str) -> Result<DBOutput<SltType>, DataFusionError> {
        let df = self.ctx.sql(sql).await?;
        let schema = Arc::clone(df.schema().inner());
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| slt_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for batch in &batches {
            render_batch(batch, &mut rows)?;
        }
        Ok(DBOutput::Rows { types, rows })
    }
}

/// Renders a batch as sqllogictest cells: NULL as `NULL`, booleans as `true`/`false`, integers
/// plainly, dates as `YYYY-MM-DD`, the empty string as `(empty)` (as DataFusion's own `.slt`
/// files do, since an empty cell cannot be written in a result line).
fn render_batch(batch: &RecordBatch, rows: &mut Vec<Vec<String>>) -> Result<(), DataFusionError> {
    let options = FormatOptions::new().with_null("NULL");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..batch.num_rows() {
        let mut cells = Vec::with_capacity(formatters.len());
        for (col, f) in batch.columns().iter().zip(&formatters) {
            let text = f.value(row).to_string();
            let is_text = matches!(slt_type(col.data_type()), SltType::Text);
            if is_text && !col.is_null(row) && text.is_empty() {
                cells.push("(empty)".to_string());
            } else {
                cells.push(text);
            }
        }
        rows.push(cells);
    }
    Ok(())
}

// The trait is declared with `#[async_trait]`; these are the signatures that macro expands
// to, written out so the tests need no other dependency.
impl AsyncDB for DataFusionDb {
    type Error = DataFusionError;
    type ColumnType = SltType;

    fn run<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        sql: &'life1 str,
    ) -> Pin<
        Box<dyn Future<Output = Result<DBOutput<SltType>, DataFusionError>> + Send + 'async_trait>,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.query(sql).await })
    }

    fn shutdown<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async {})
    }

    fn engine_name(&self) -> &str {
        "datafusion"
    }
}
