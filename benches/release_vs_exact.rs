//! Benchmark: a DP release of persons per program and quarter (k = 4) through the whole path
//! (analyser, bounding, OpenDP noise, ledger, store) against the exact
//! `COUNT(DISTINCT person_key)` per (program, quarter) on the same Parquet, counted by DuckDB
//! (the reference: the best peer on the same work) and by DataFusion (our own exact path, a
//! second figure).
//!
//! `cargo bench --bench release_vs_exact` synthesises 1,000,000 persons into
//! `bench-data/release/` on its first run (kept for later runs), then times the three paths
//! in turn (exact, DuckDB, release), `BENCH_RUNS` times each, and reports medians. DuckDB,
//! from PyPI (installed with pip when `import duckdb` fails; left out, with the reason
//! printed, when it cannot be), runs the exact path's SQL text over the warehouse's live
//! Parquet files in a `python3` child per run, with 2 threads; only its query is timed, and
//! its counts must equal DataFusion's in every run (`common::run_duckdb`). Peak memory is
//! measured per path in a child process (`--only release|exact`), as VmHWM from
//! `/proc/self/status`; DuckDB's is the python child's `ru_maxrss`.
//! Environment: `BENCH_PERSONS` (default 1,000,000), `BENCH_RUNS` (default 5).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{
    DUCKDB_THREADS, check_same, child_peak_mib, duck_int, duck_text, duckdb_version, int_column,
    live_parquet, median, peak_rss_mib, run_duckdb, text_column,
};
use datafusion::arrow::record_batch::RecordBatch;

use outreach_warehouse::ingest::{IngestOptions, ingest};
use outreach_warehouse::ledger::{BudgetInit, Ledger, PrivacyConfig};
use outreach_warehouse::privacy::{ReleaseRequest, ReleaseSpec, release};
use outreach_warehouse::quarter::Quarter;
use outreach_warehouse::synth::{SynthConfig, synth};
use outreach_warehouse::warehouse::{Warehouse, open_session};

const TABLES: [(&str, &str); 4] = [
    ("overdose_events", "event_date"),
    ("outreach_attempts", "attempt_date"),
    ("referrals", "referral_date"),
    ("service_linkages", "linkage_date"),
];

fn person_rows_sql() -> String {
    TABLES
        .iter()
        .map(|(t, d)| {
            format!("SELECT person_key, program_id, quarter_of({d}) AS quarter, true AS persons FROM {t}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn exact_sql() -> String {
    let rows = TABLES
        .iter()
        .map(|(t, d)| format!("SELECT person_key, program_id, quarter_of({d}) AS quarter FROM {t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!(
        "SELECT program_id, quarter, count(DISTINCT person_key) AS persons FROM ({rows}) GROUP BY program_id, quarter"
    )
}

fn spec(rho: f64, first: Quarter, last: Quarter) -> ReleaseSpec {
    toml::from_str(&format!(
        r#"
name = "persons per program and quarter"
k = 4
rho = {rho}
allocation = "bench"

[[queries]]
sql = "{sql}"

[[cells]]
column = "program_id"
domain = "programs"

[[cells]]
column = "quarter"
domain = {{ quarters = {{ from = "{first}", to = "{last}" }} }}

[[statistics]]
name = "persons"
kind = "count"
"#,
        sql = person_rows_sql()
    ))
    .expect("bench spec")
}

fn prepare_data(root: &Path, persons: usize) -> (PathBuf, SynthConfig) {
    let cfg = SynthConfig {
        persons,
        start: "2024Q1".parse().unwrap(),
        quarters: 8,
        as_of: Some(chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()),
        ..SynthConfig::default()
    };
    let wh = root.join(format!("wh-{persons}"));
    if !wh.join("manifest.json").exists() {
        let csv = root.join(format!("csv-{persons}"));
        eprintln!("synthesising {persons} persons into {}", csv.display());
        let s = synth(&csv, &cfg, true).expect("synth");
        eprintln!("{} rows; ingesting", s.total_rows());
        let opts = IngestOptions {
            progress: true,
            complete_through: None,
            max_date: chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
            ..IngestOptions::default()
        };
        ingest(&wh, std::slice::from_ref(&csv), &opts).expect("ingest");
        std::fs::remove_dir_all(&csv).ok();
    }
    if !Ledger::path_in(&wh).exists() {
        let mut l = Ledger::init(
            &wh,
            &BudgetInit {
                total_rho: 1e6,
                total_delta: 0.0,
                horizon_days: 3650,
                config: PrivacyConfig::default(),
            },
        )
        .expect("ledger");
        l.allocate("bench", 1e6).expect("allocation");
    }
    (wh, cfg)
}

async fn run_exact(wh: &Path) -> Vec<RecordBatch> {
    let w = Warehouse::open(wh).unwrap();
    let ctx = open_session(&w).await.unwrap();
    outreach_warehouse::privacy::functions::register(&ctx);
    ctx.sql(&exact_sql())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

/// Persons per (program, quarter), a cell NULL where its key is.
type Counts = BTreeMap<(Option<String>, Option<String>), Option<i64>>;

/// The exact path's counts, read after its timer stops.
fn exact_counts(batches: &[RecordBatch]) -> Counts {
    let mut counts = Counts::new();
    for b in batches {
        let cells = text_column(b, 0).into_iter().zip(text_column(b, 1));
        for (cell, n) in cells.zip(int_column(b, 2)) {
            assert!(
                counts.insert(cell.clone(), n).is_none(),
                "DataFusion returned the cell {cell:?} twice"
            );
        }
    }
    counts
}

/// DuckDB's exact count of the same cells: the exact path's SQL text, timed in the child.
fn run_duck(tables: &BTreeMap<String, Vec<String>>) -> (f64, f64, Counts) {
    let run = run_duckdb(tables, &[], &[exact_sql()]);
    let mut counts = Counts::new();
    for row in &run.results[0] {
        let cell = (duck_text(&row[0]), duck_text(&row[1]));
        assert!(
            counts.insert(cell.clone(), duck_int(&row[2])).is_none(),
            "DuckDB returned the cell {cell:?} twice"
        );
    }
    (run.seconds, run.peak_mib, counts)
}

async fn run_release(wh: &Path, rho: f64, first: Quarter, last: Quarter) -> usize {
    let out = release(
        wh,
        &ReleaseRequest {
            spec: spec(rho, first, last),
            approver: "bench".into(),
        },
    )
    .await
    .expect("release");
    assert!(out.fresh, "every timed release must draw afresh");
    out.public.result.cells.len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let persons: usize = std::env::var("BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data/release");
    std::fs::create_dir_all(&root).unwrap();
    let (wh, cfg) = prepare_data(&root, persons);
    let first = cfg.start;
    let last = cfg.start.range(cfg.quarters).last().copied().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // A fresh ρ per run keeps every release fresh (a repeated key would be served stored).
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as f64;
    let rho_for = |i: usize| 0.01 + (stamp % 1e6) * 1e-12 + i as f64 * 1e-7;

    if let Some(pos) = args.iter().position(|a| a == "--only") {
        match args.get(pos + 1).map(String::as_str) {
            Some("exact") => {
                rt.block_on(run_exact(&wh));
            }
            Some("release") => {
                rt.block_on(run_release(&wh, rho_for(999), first, last));
            }
            other => panic!("--only exact|release, not {other:?}"),
        }
        println!("peak_mib {:.0}", peak_rss_mib());
        return;
    }

    let rows: u64 = Warehouse::open(&wh)
        .unwrap()
        .manifest()
        .unwrap()
        .loads
        .iter()
        .flat_map(|l| &l.files)
        .map(|f| f.rows_loaded)
        .sum();
    println!(
        "data: {persons} persons, {rows} rows in all tables, {}",
        wh.display()
    );
    let duck = match duckdb_version() {
        Ok(version) => {
            println!(
                "reference: DuckDB {version} (python3), {DUCKDB_THREADS} threads, the same SQL over the same live Parquet files"
            );
            Some((version, live_parquet(&wh)))
        }
        Err(why) => {
            println!("reference: DuckDB left out: {why}");
            None
        }
    };
    // Warm the page cache and every code path once; DuckDB's counts are checked from here on.
    let warm = exact_counts(&rt.block_on(run_exact(&wh)));
    if let Some((_, tables)) = &duck {
        check_same("warm-up", &run_duck(tables).2, &warm);
    }
    rt.block_on(run_release(&wh, rho_for(0), first, last));
    let (mut exact, mut dp) = (Vec::new(), Vec::new());
    let (mut ducks, mut duck_peaks) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // In turn, exact, DuckDB, release, so that the machine's drift hits all three alike.
        let t = Instant::now();
        let batches = rt.block_on(run_exact(&wh));
        exact.push(t.elapsed().as_secs_f64());
        let counts = exact_counts(&batches);
        let n = counts.len();
        if let Some((_, tables)) = &duck {
            let (seconds, peak, duck_counts) = run_duck(tables);
            check_same(&format!("run {i}"), &duck_counts, &counts);
            ducks.push(seconds);
            duck_peaks.push(peak);
        }
        let t = Instant::now();
        let cells = rt.block_on(run_release(&wh, rho_for(i + 1), first, last));
        dp.push(t.elapsed().as_secs_f64());
        println!(
            "run {i}: exact {:.3} s ({n} groups), release {:.3} s ({cells} cells)",
            exact[i], dp[i]
        );
        if let Some(seconds) = ducks.last() {
            println!(
                "duckdb run {i}: {seconds:.3} s ({n} groups, every count equal to the exact path's)"
            );
        }
    }
    let (e, d) = (median(&mut exact), median(&mut dp));
    println!(
        "median of {runs}: exact COUNT(DISTINCT) {e:.3} s, DP release {d:.3} s, ratio {:.2} (target <= 1.5)",
        d / e
    );
    if let Some((version, _)) = &duck {
        let k = median(&mut ducks);
        println!(
            "against DuckDB {version}, medians of {runs}: DuckDB COUNT(DISTINCT) {k:.3} s, release/duckdb {:.2} (goal <= 0.5), release/exact {:.2}",
            d / k,
            d / e
        );
    }
    println!(
        "peak memory: exact {} MiB, release {} MiB",
        child_peak_mib("exact", persons),
        child_peak_mib("release", persons)
    );
    if !duck_peaks.is_empty() {
        let top = duck_peaks.iter().copied().fold(0.0, f64::max);
        println!(
            "DuckDB child's peak: {top:.0} MiB (python3's ru_maxrss, import included; largest of {runs} runs)"
        );
    }
}
