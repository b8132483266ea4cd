//! Benchmark: `outreach publish` of one full quarter (the standard metrics of every program:
//! analyser, debit, bounding, OpenDP noise, rates, group sums, the stored publication) against
//! the same metric SQL counted exactly (grouped counts, no privacy) on the same Parquet, by
//! DuckDB (the reference: the best peer on the same work) and by DataFusion (`outreach
//! metrics --exact` plus the equity file's grouped counts: our own exact path, a second
//! figure).
//!
//! `cargo bench --bench publish_vs_exact` synthesises 1,000,000 persons over 8 quarters into
//! `bench-data/publish/` on its first run (kept for later runs), then times the three paths
//! in turn (exact, DuckDB, publish), `BENCH_RUNS` times each, and reports medians. DuckDB runs
//! the metric files' own SQL, grouped as the exact path groups it, over the warehouse's live
//! Parquet files in a `python3` child per run, with 2 threads (`quarter_of` and `add_days` as
//! DuckDB macros: `common::DUCKDB_MACROS`); only its queries are timed, and its counts must
//! equal DataFusion's in every run. Every timed publication is a fresh debit: σ differs by
//! 1e-9 between runs, so the idempotency key does too. Peak memory is measured per path in a
//! child process (`--only publish|exact`), as VmHWM; DuckDB's is the python child's
//! `ru_maxrss`.
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
use outreach_warehouse::metrics::exact::{ExactValue, exact};
use outreach_warehouse::metrics::{Catalog, MetricFile};
use outreach_warehouse::publication::{
    EQUITY_NOISE, PublishOptions, STANDARD_ALLOCATION, StandardNoise, publish,
};
use outreach_warehouse::quarter::Quarter;
use outreach_warehouse::synth::{SynthConfig, synth};
use outreach_warehouse::warehouse::{Warehouse, open_session};

/// The quarter published: one in the middle of the data, with complete follow-up.
const QUARTER: &str = "2025Q2";

fn prepare_data(root: &Path, persons: usize) -> PathBuf {
    let last = chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
    let cfg = SynthConfig {
        persons,
        start: "2024Q1".parse().unwrap(),
        quarters: 8,
        as_of: Some(last),
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
            complete_through: Some(last),
            max_date: last,
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
        l.allocate(STANDARD_ALLOCATION, 1e6).expect("allocation");
    }
    wh
}

/// The equity file's grouped counts of [`QUARTER`], over its rows registered as
/// `equity_rows`: the one SQL text both DataFusion and DuckDB run.
fn equity_sql(f: &MetricFile) -> String {
    let sums = f
        .statistics
        .iter()
        .map(|s| format!("SUM(CAST({0} AS BIGINT)) AS {0}", s.name))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT program_id, dimension, value, {sums} FROM equity_rows WHERE quarter = '{QUARTER}' GROUP BY 1, 2, 3"
    )
}

/// What the exact path counted: every per-program statistic (`metrics --exact`) and the
/// equity file's grouped counts.
struct ExactFigures {
    values: Vec<ExactValue>,
    equity: Vec<RecordBatch>,
}

impl ExactFigures {
    fn len(&self) -> usize {
        self.values.len() + self.equity.iter().map(|b| b.num_rows()).sum::<usize>()
    }
}

async fn run_exact(wh: &Path) -> ExactFigures {
    let w = Warehouse::open(wh).unwrap();
    let ctx = open_session(&w).await.unwrap();
    outreach_warehouse::privacy::functions::register(&ctx);
    let q: Quarter = QUARTER.parse().unwrap();
    let catalog = Catalog::standard().unwrap();
    let values = exact(&ctx, &catalog, q).await.expect("exact");
    // The equity file too, counted exactly per (program, dimension, value).
    let f = catalog.files.iter().find(|f| f.is_breakdown()).unwrap();
    let df = ctx.sql(&f.sql).await.unwrap();
    ctx.register_table("equity_rows", df.into_view()).unwrap();
    let equity = ctx
        .sql(&equity_sql(f))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    ExactFigures { values, equity }
}

/// A per-program statistic of a program; a count of 0 is left out, so that a program with no
/// rows (which DuckDB's grouping does not return) and one counted 0 compare equal.
type ProgramCounts = BTreeMap<(String, String), i64>;

/// An equity cell (program, dimension, value) and its statistics' sums.
type EquityCounts = BTreeMap<(Option<String>, Option<String>, Option<String>), Vec<Option<i64>>>;

/// The exact path's figures as maps, read after its timer stops.
fn exact_maps(x: &ExactFigures) -> (ProgramCounts, EquityCounts) {
    let programs: ProgramCounts = x
        .values
        .iter()
        .filter(|v| v.value != 0)
        .map(|v| ((v.program_id.clone(), v.statistic.clone()), v.value))
        .collect();
    let mut equity = EquityCounts::new();
    for b in &x.equity {
        let keys = text_column(b, 0)
            .into_iter()
            .zip(text_column(b, 1))
            .zip(text_column(b, 2))
            .map(|((p, d), v)| (p, d, v));
        let sums: Vec<Vec<Option<i64>>> = (3..b.num_columns()).map(|i| int_column(b, i)).collect();
        for (row, key) in keys.enumerate() {
            let values = sums.iter().map(|column| column[row]).collect();
            assert!(
                equity.insert(key.clone(), values).is_none(),
                "DataFusion returned the equity cell {key:?} twice"
            );
        }
    }
    (programs, equity)
}

/// The exact path's work in DuckDB: each per-program file's statistics summed per program for
/// [`QUARTER`] over the file's own SQL, as `metrics --exact` does it, then the equity file's
/// grouped counts ([`equity_sql`]). Returns the seconds, the child's peak and the figures.
fn run_duck(tables: &BTreeMap<String, Vec<String>>) -> (f64, f64, ProgramCounts, EquityCounts) {
    let catalog = Catalog::standard().unwrap();
    let files = catalog.per_program_files();
    let mut queries: Vec<String> = files
        .iter()
        .map(|(f, stats)| {
            let sums = stats
                .iter()
                .map(|s| format!("SUM(CAST({s} AS BIGINT)) AS {s}"))
                .collect::<Vec<_>>()
                .join(", ");
            // The file's text ends in SQL or a comment: the newlines keep the outer query whole.
            format!(
                "SELECT CAST(program_id AS VARCHAR) AS program_id, {sums} FROM (\n{}\n) AS metric_rows WHERE quarter = '{QUARTER}' GROUP BY 1",
                f.sql
            )
        })
        .collect();
    let equity_file = catalog.files.iter().find(|f| f.is_breakdown()).unwrap();
    queries.push(equity_sql(equity_file));
    let setup = [format!("CREATE VIEW equity_rows AS\n{}\n", equity_file.sql)];
    let run = run_duckdb(tables, &setup, &queries);
    let mut programs = ProgramCounts::new();
    for ((_, stats), rows) in files.iter().zip(&run.results) {
        for row in rows {
            let program = duck_text(&row[0]).expect("a program id");
            for (j, s) in stats.iter().enumerate() {
                let n = duck_int(&row[j + 1]).unwrap_or(0);
                if n != 0 {
                    assert!(
                        programs.insert((program.clone(), s.clone()), n).is_none(),
                        "DuckDB returned {s} of a program twice"
                    );
                }
            }
        }
    }
    let mut equity = EquityCounts::new();
    for row in run.results.last().expect("the equity query's rows") {
        let key = (duck_text(&row[0]), duck_text(&row[1]), duck_text(&row[2]));
        let values = row[3..].iter().map(duck_int).collect();
        assert!(
            equity.insert(key.clone(), values).is_none(),
            "DuckDB returned the equity cell {key:?} twice"
        );
    }
    (run.seconds, run.peak_mib, programs, equity)
}

async fn run_publish(wh: &Path, run: usize) -> usize {
    let before = Ledger::open(wh).unwrap().releases().unwrap().len();
    let out = publish(
        wh,
        &PublishOptions {
            quarter: QUARTER.parse().unwrap(),
            approver: "bench".into(),
            republish: false,
            allow_incomplete: false,
            noise: StandardNoise {
                k: 2,
                sigma: 5.5 + run as f64 * 1e-9,
            },
            equity_noise: StandardNoise {
                k: EQUITY_NOISE.k,
                sigma: EQUITY_NOISE.sigma + run as f64 * 1e-9,
            },
        },
    )
    .await
    .expect("publish");
    let after = Ledger::open(wh).unwrap().releases().unwrap().len();
    assert_eq!(
        after - before,
        2,
        "both releases of every timed publication draw afresh"
    );
    out.publication.programs.len()
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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data/publish");
    std::fs::create_dir_all(&root).unwrap();
    let wh = prepare_data(&root, persons);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Runs of earlier invocations used other σ: start past them.
    let base = Ledger::open(&wh).unwrap().releases().unwrap().len() + 1;
    if let Some(pos) = args.iter().position(|a| a == "--only") {
        match args.get(pos + 1).map(String::as_str) {
            Some("exact") => {
                rt.block_on(run_exact(&wh));
            }
            Some("publish") => {
                rt.block_on(run_publish(&wh, base));
            }
            other => panic!("--only exact|publish, not {other:?}"),
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
    println!("data: {persons} persons, {rows} rows in all tables, quarter {QUARTER}");
    let duck = match duckdb_version() {
        Ok(version) => {
            println!(
                "reference: DuckDB {version} (python3), {DUCKDB_THREADS} threads, the same metric SQL over the same live Parquet files"
            );
            Some((version, live_parquet(&wh)))
        }
        Err(why) => {
            println!("reference: DuckDB left out: {why}");
            None
        }
    };
    let check = |what: &str, x: &ExactFigures, tables: &BTreeMap<String, Vec<String>>| {
        let (programs, equity) = exact_maps(x);
        let (seconds, peak, duck_programs, duck_equity) = run_duck(tables);
        check_same(
            &format!("{what}, per-program statistics"),
            &duck_programs,
            &programs,
        );
        check_same(&format!("{what}, equity cells"), &duck_equity, &equity);
        (seconds, peak)
    };
    // Warm-up: the page cache and DataFusion's first plans; DuckDB's figures are checked from
    // here on.
    let warm = rt.block_on(run_exact(&wh));
    if let Some((_, tables)) = &duck {
        check("warm-up", &warm, tables);
    }
    rt.block_on(run_publish(&wh, base));
    let (mut ex, mut pb) = (Vec::new(), Vec::new());
    let (mut ducks, mut duck_peaks) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // In turn, exact, DuckDB, publish, so that the machine's drift hits all three alike.
        let t = Instant::now();
        let figures = rt.block_on(run_exact(&wh));
        ex.push(t.elapsed().as_secs_f64());
        let n = figures.len();
        if let Some((_, tables)) = &duck {
            let (seconds, peak) = check(&format!("run {i}"), &figures, tables);
            ducks.push(seconds);
            duck_peaks.push(peak);
        }
        let t = Instant::now();
        let programs = rt.block_on(run_publish(&wh, base + 1 + i));
        pb.push(t.elapsed().as_secs_f64());
        println!(
            "run {i}: exact {:.3} s ({n} counts), publish {:.3} s ({programs} programs)",
            ex[i], pb[i]
        );
        if let Some(seconds) = ducks.last() {
            println!("duckdb run {i}: {seconds:.3} s (every count equal to the exact path's)");
        }
    }
    let (e, p) = (median(&mut ex), median(&mut pb));
    println!(
        "median of {runs}: exact metric SQL {e:.3} s, publish {p:.3} s (target < 5 s), ratio {:.2} (target <= 1.5)",
        p / e
    );
    if let Some((version, _)) = &duck {
        let k = median(&mut ducks);
        println!(
            "against DuckDB {version}, medians of {runs}: DuckDB metric SQL {k:.3} s, publish/duckdb {:.2} (goal <= 1.2), publish/exact {:.2}",
            p / k,
            p / e
        );
    }
    println!(
        "peak memory: exact {} MiB, publish {} MiB (target < 1536 MiB)",
        child_peak_mib("exact", persons),
        child_peak_mib("publish", persons)
    );
    if !duck_peaks.is_empty() {
        let top = duck_peaks.iter().copied().fold(0.0, f64::max);
        println!(
            "DuckDB child's peak: {top:.0} MiB (python3's ru_maxrss, import included; largest of {runs} runs)"
        );
    }
}
