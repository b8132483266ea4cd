//! What the Rust benchmarks share: medians, peak memory measured in a child process, and
//! the DuckDB reference (the same SQL over the same Parquet in a `python3` child) with the
//! check that its figures equal DataFusion's exact ones.

/// Peak resident memory of this process so far (VmHWM of `/proc/self/status`), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The median of the timings (sorts them).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs this benchmark binary again with `--only WHICH` and returns the peak memory it
/// printed (`peak_mib N`), so each path's peak is measured alone.
pub fn child_peak_mib(which: &str, persons: usize) -> String {
    let me = std::env::args().next().expect("the benchmark's own path");
    let out = std::process::Command::new(me)
        .args(["--only", which])
        .env("BENCH_PERSONS", persons.to_string())
        .output()
        .expect("child");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("peak_mib "))
        .unwrap_or("?")
        .to_string()
}

/// The reference of the release and publish benchmarks: DuckDB, from PyPI, running the same
/// SQL over the same live Parquet files, in a `python3` child started once per run.
///
/// Our SQL calls two functions DuckDB lacks; the child defines them as DuckDB macros, so the
/// query text DuckDB runs is byte for byte the one DataFusion runs. Each is exact on every
/// date of the benchmarks' data (years 2024 to 2025), and every run's figures are checked
/// against DataFusion's exact ones:
/// - `quarter_of(d)`: `year(d) || 'Q' || quarter(d)`, text such as `2025Q1`, the form of
///   `privacy::functions::QuarterOf` (`{year}Q{q}`, the year unpadded);
/// - `add_days(d, n)`: `d + n`, a date `n` days later (ours is NULL outside the calendar,
///   DuckDB's raises there; no benchmark date is near either end).
pub const DUCKDB_MACROS: [&str; 2] = [
    "CREATE MACRO quarter_of(d) AS year(d) || 'Q' || quarter(d)",
    "CREATE MACRO add_days(d, n) AS d + n",
];

/// DuckDB's threads: the machine's two cores, as `benches/ingest_vs_duckdb.sh` gives it.
pub const DUCKDB_THREADS: usize = 2;

/// The child's program. It reads its job (JSON) on stdin, registers each table as a view
/// over its Parquet files (no hive columns: the columns DataFusion reads), runs the setup
/// statements, then times the queries alone, each result fetched in full, and prints one
/// JSON line: the seconds, its own peak memory (`ru_maxrss`, KiB, the import included) and
/// the rows.
const DUCKDB_CHILD: &str = r#"
import json, resource, sys, time
job = json.load(sys.stdin)
import duckdb
con = duckdb.connect()
con.execute(f"SET threads={int(job['threads'])}")
def quoted(s):
    return "'" + s.replace("'", "''") + "'"
for table, files in job["tables"].items():
    listed = ", ".join(quoted(f) for f in files)
    con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet([{listed}], hive_partitioning = false)')
for statement in job["setup"]:
    con.execute(statement)
results = []
start = time.perf_counter()
for sql in job["queries"]:
    results.append(con.execute(sql).fetchall())
seconds = time.perf_counter() - start
def cell(v):
    return v if v is None or isinstance(v, (bool, int, str)) else str(v)
print(json.dumps({
    "seconds": seconds,
    "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "results": [[[cell(v) for v in row] for row in rows] for rows in results],
}))
"#;

/// The DuckDB version `python3` imports. When `import duckdb` fails, installs it from PyPI
/// as `benches/ingest_vs_duckdb.sh` does (`python3 -m pip install --quiet duckdb`) and tries
/// again; `Err` says why DuckDB cannot be the reference, for the benchmark to print.
pub fn duckdb_version() -> Result<String, String> {
    let probe = || {
        std::process::Command::new("python3")
            .args(["-c", "import duckdb; print(duckdb.__version__)"])
            .stderr(std::process::Stdio::null())
            .output()
    };
    match probe() {
        Ok(out) if out.status.success() => {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        Ok(_) => {}
        Err(e) => return Err(format!("python3 cannot be started: {e}")),
    }
    eprintln!(
        "python3 cannot import duckdb: installing it from PyPI (python3 -m pip install --quiet duckdb)"
    );
    match std::process::Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "duckdb"])
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("`python3 -m pip install duckdb` failed ({s})")),
        Err(e) => return Err(format!("`python3 -m pip` cannot be started: {e}")),
    }
    match probe() {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        _ => Err("python3 still cannot import duckdb after `pip install duckdb`".into()),
    }
}

/// Every live Parquet file of every table, by table, as absolute paths: exactly the files
/// the warehouse's sessions read (`Manifest::data_files`), never a replaced one.
pub fn live_parquet(wh: &std::path::Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let w = outreach_warehouse::warehouse::Warehouse::open(wh).expect("the bench warehouse");
    let root = std::path::absolute(w.root()).expect("the bench warehouse's absolute path");
    let mut tables = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (table, file) in w.manifest().expect("the bench manifest").every_data_file() {
        if file.is_live() {
            tables
                .entry(table.to_string())
                .or_default()
                .push(root.join(&file.path).to_string_lossy().into_owned());
        }
    }
    tables
}

/// What one DuckDB child measured and returned.
pub struct DuckRun {
    /// The queries' time alone (connect, import, views and macros are outside it).
    pub seconds: f64,
    /// The child's peak resident memory, in MiB.
    pub peak_mib: f64,
    /// Each query's rows, its values as JSON (text, integers, booleans, null).
    pub results: Vec<Vec<Vec<serde_json::Value>>>,
}

/// Runs `queries` in a fresh DuckDB child over `tables` (see [`live_parquet`]), after the
/// macros of [`DUCKDB_MACROS`] and then `setup`. Panics, with DuckDB's own message on the
/// terminal, when the child fails: a reference that did not run is no reference.
pub fn run_duckdb(
    tables: &std::collections::BTreeMap<String, Vec<String>>,
    setup: &[String],
    queries: &[String],
) -> DuckRun {
    use std::io::Write as _;
    let statements: Vec<String> = DUCKDB_MACROS
        .iter()
        .map(|m| m.to_string())
        .chain(setup.iter().cloned())
        .collect();
    let job = serde_json::json!({
        "threads": DUCKDB_THREADS,
        "tables": tables,
        "setup": statements,
        "queries": queries,
    });
    let mut child = std::process::Command::new("python3")
        .args(["-c", DUCKDB_CHILD])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3 for DuckDB");
    child
        .stdin
        .take()
        .expect("the child's stdin")
        .write_all(job.to_string().as_bytes())
        .expect("the DuckDB job written to the child");
    let out = child.wait_with_output().expect("the DuckDB child");
    assert!(
        out.status.success(),
        "the DuckDB child failed ({}); its message is above",
        out.status
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the DuckDB child's JSON line");
    let results = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|rows| {
            rows.as_array()
                .expect("a query's rows")
                .iter()
                .map(|row| row.as_array().expect("a row").clone())
                .collect()
        })
        .collect();
    DuckRun {
        seconds: v["seconds"].as_f64().expect("seconds"),
        peak_mib: v["peak_kib"].as_f64().expect("peak_kib") / 1024.0,
        results,
    }
}

/// A text value DuckDB returned (`None` for NULL).
pub fn duck_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => panic!("DuckDB returned {other} where text was expected"),
    }
}

/// An integer DuckDB returned (`None` for NULL).
pub fn duck_int(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Null => None,
        other => Some(
            other
                .as_i64()
                .unwrap_or_else(|| panic!("DuckDB returned {other} where an integer was expected")),
        ),
    }
}

/// A column of a DataFusion result as text (dictionary and view types cast), NULL as `None`.
pub fn text_column(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    i: usize,
) -> Vec<Option<String>> {
    use datafusion::arrow::array::AsArray as _;
    let a = datafusion::arrow::compute::cast(
        batch.column(i),
        &datafusion::arrow::datatypes::DataType::Utf8,
    )
    .expect("a text column");
    a.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

/// A column of a DataFusion result as 64-bit integers, NULL as `None`.
pub fn int_column(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    i: usize,
) -> Vec<Option<i64>> {
    use datafusion::arrow::array::AsArray as _;
    let a = datafusion::arrow::compute::cast(
        batch.column(i),
        &datafusion::arrow::datatypes::DataType::Int64,
    )
    .expect("an integer column");
    a.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .iter()
        .collect()
}

/// Panics, naming up to five differing cells, unless DuckDB's figures equal DataFusion's
/// exact ones: the same cells, the same values. `what` names the query.
pub fn check_same<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    duck: &std::collections::BTreeMap<K, V>,
    exact: &std::collections::BTreeMap<K, V>,
) {
    let mut differing: Vec<String> = Vec::new();
    for (cell, value) in exact {
        match duck.get(cell) {
            Some(d) if d == value => {}
            d => differing.push(format!("{cell:?}: exact {value:?}, DuckDB {d:?}")),
        }
    }
    for (cell, value) in duck {
        if !exact.contains_key(cell) {
            differing.push(format!("{cell:?}: exact none, DuckDB {value:?}"));
        }
    }
    assert!(
        duck.len() == exact.len() && differing.is_empty(),
        "{what}: DuckDB returned {} groups, DataFusion's exact path {}; differing: {:?}",
        duck.len(),
        exact.len(),
        &differing[..differing.len().min(5)]
    );
}
