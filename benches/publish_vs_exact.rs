//! Benchmark: `outreach publish` of one full quarter (the standard metrics of every program:
//! analyser, debit, bounding, OpenDP noise, rates, group sums, the stored publication) against
//! the same metric SQL counted exactly in DataFusion (`outreach metrics --exact`: grouped
//! counts, no privacy), on the same Parquet.
//!
//! `cargo bench --bench publish_vs_exact` synthesises 1,000,000 persons over 8 quarters into
//! `bench-data/publish/` on its first run (kept for later runs), then times both paths in
//! turn, `BENCH_RUNS` times each, and reports medians. Every timed publication is a fresh
//! debit: σ differs by 1e-9 between runs, so the idempotency key does too. Peak memory is
//! measured per path in a child process (`--only publish|exact`), as VmHWM.
//! Environment: `BENCH_PERSONS` (default 1,000,000), `BENCH_RUNS` (default 5).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{child_peak_mib, median, peak_rss_mib};

use outreach_warehouse::ingest::{IngestOptions, ingest};
use outreach_warehouse::ledger::{BudgetInit, Ledger, PrivacyConfig};
use outreach_warehouse::metrics::Catalog;
use outreach_warehouse::metrics::exact::exact;
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

async fn run_exact(wh: &Path) -> usize {
    let w = Warehouse::open(wh).unwrap();
    let ctx = open_session(&w).await.unwrap();
    outreach_warehouse::privacy::functions::register(&ctx);
    let q: Quarter = QUARTER.parse().unwrap();
    let catalog = Catalog::standard().unwrap();
    let n = exact(&ctx, &catalog, q).await.expect("exact").len();
    // The equity file too, counted exactly per (program, dimension, value).
    let f = catalog.files.iter().find(|f| f.is_breakdown()).unwrap();
    let sums = f
        .statistics
        .iter()
        .map(|s| format!("SUM(CAST({0} AS BIGINT)) AS {0}", s.name))
        .collect::<Vec<_>>()
        .join(", ");
    let df = ctx.sql(&f.sql).await.unwrap();
    ctx.register_table("equity_rows", df.into_view()).unwrap();
    let batches = ctx
        .sql(&format!(
            "SELECT program_id, dimension, value, {sums} FROM equity_rows WHERE quarter = '{QUARTER}' GROUP BY 1, 2, 3"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    n + batches.iter().map(|b| b.num_rows()).sum::<usize>()
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
    // Warm-up: the page cache and DataFusion's first plans.
    rt.block_on(run_exact(&wh));
    rt.block_on(run_publish(&wh, base));
    let (mut ex, mut pb) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let n = rt.block_on(run_exact(&wh));
        ex.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let programs = rt.block_on(run_publish(&wh, base + 1 + i));
        pb.push(t.elapsed().as_secs_f64());
        println!(
            "run {i}: exact {:.3} s ({n} counts), publish {:.3} s ({programs} programs)",
            ex[i], pb[i]
        );
    }
    let (e, p) = (median(&mut ex), median(&mut pb));
    println!(
        "median of {runs}: exact metric SQL {e:.3} s, publish {p:.3} s (target < 5 s), ratio {:.2} (target <= 1.5)",
        p / e
    );
    println!(
        "peak memory: exact {} MiB, publish {} MiB (target < 1536 MiB)",
        child_peak_mib("exact", persons),
        child_peak_mib("publish", persons)
    );
}
