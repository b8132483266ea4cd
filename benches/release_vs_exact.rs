//! Benchmark: a DP release of persons per program and quarter (k = 4) through the whole path
//! (analyser, bounding, OpenDP noise, ledger, store) against the exact
//! `COUNT(DISTINCT person_key)` per (program, quarter) in DataFusion on the same Parquet.
//!
//! `cargo bench --bench release_vs_exact` synthesises 1,000,000 persons into
//! `bench-data/release/` on its first run (kept for later runs), then times both paths in
//! turn, `RUNS` times each, and reports medians. Peak memory is measured per path in a child
//! process (`--only release|exact`), as VmHWM from `/proc/self/status`.
//! Environment: `BENCH_PERSONS` (default 1,000,000), `BENCH_RUNS` (default 5).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{child_peak_mib, median, peak_rss_mib};

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

async fn run_exact(wh: &Path) -> usize {
    let w = Warehouse::open(wh).unwrap();
    let ctx = open_session(&w).await.unwrap();
    outreach_warehouse::privacy::functions::register(&ctx);
    let batches = ctx
        .sql(&exact_sql())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
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
    // Warm the page cache and both code paths once.
    rt.block_on(run_exact(&wh));
    rt.block_on(run_release(&wh, rho_for(0), first, last));
    let (mut exact, mut dp) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let n = rt.block_on(run_exact(&wh));
        exact.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let cells = rt.block_on(run_release(&wh, rho_for(i + 1), first, last));
        dp.push(t.elapsed().as_secs_f64());
        println!(
            "run {i}: exact {:.3} s ({n} groups), release {:.3} s ({cells} cells)",
            exact[i], dp[i]
        );
    }
    let (e, d) = (median(&mut exact), median(&mut dp));
    println!(
        "median of {runs}: exact COUNT(DISTINCT) {e:.3} s, DP release {d:.3} s, ratio {:.2} (target <= 1.5)",
        d / e
    );
    println!(
        "peak memory: exact {} MiB, release {} MiB",
        child_peak_mib("exact", persons),
        child_peak_mib("release", persons)
    );
}
