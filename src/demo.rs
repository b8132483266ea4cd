//! `outreach demo`: the main job on built-in synthetic data. It synthesises the default data
//! set, ingests it into a warehouse, prints the status, sets a privacy budget and publishes
//! one DP release (`queries/persons_seen.*`). Later stages (standard metrics, the API)
//! extend it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;

use crate::error::Result;
use crate::ingest::{IngestOptions, IngestReport, ingest};
use crate::ledger::{BudgetInit, Ledger, PrivacyConfig};
use crate::privacy::release::PublicRelease;
use crate::privacy::spec::DomainSpec;
use crate::privacy::{ReleaseRequest, ReleaseSpec, release};
use crate::synth::{SynthConfig, SynthSummary, synth};
use crate::warehouse::{Status, Warehouse, status};

/// What the demo did.
#[derive(Debug)]
pub struct DemoReport {
    pub dir: PathBuf,
    pub synth: SynthSummary,
    pub ingest: IngestReport,
    pub status: Status,
    pub release: PublicRelease,
    pub seconds: f64,
}

/// The demo's release: `queries/persons_seen.*`, embedded, over the demo's quarters.
pub fn demo_spec(cfg: &SynthConfig) -> ReleaseSpec {
    let mut spec: ReleaseSpec = toml::from_str(include_str!("../queries/persons_seen.toml"))
        .expect("queries/persons_seen.toml is a valid spec");
    spec.queries[0].file = None;
    spec.queries[0].sql = Some(include_str!("../queries/persons_seen.sql").to_string());
    let last = cfg
        .start
        .range(cfg.quarters)
        .last()
        .copied()
        .unwrap_or(cfg.start);
    for c in &mut spec.cells {
        if let DomainSpec::Quarters { .. } = c.domain {
            c.domain = DomainSpec::Quarters {
                from: cfg.start.to_string(),
                to: last.to_string(),
            };
        }
    }
    spec
}

/// Runs the demo in `dir` (which must not hold an earlier demo's warehouse, so the run is
/// reproducible): synthesise into `dir/exports`, ingest into `dir/warehouse` declaring every
/// table complete through the end of the synthetic period, then read the status.
pub async fn run_demo(dir: &Path, cfg: &SynthConfig, progress: bool) -> Result<DemoReport> {
    let started = Instant::now();
    let exports = dir.join("exports");
    let warehouse = dir.join("warehouse");
    let synth = synth(&exports, cfg, progress)?;
    let through: NaiveDate = cfg.last_day();
    let opts = IngestOptions {
        complete_through: Some(through),
        progress,
        ..IngestOptions::default()
    };
    let ingest = ingest(&warehouse, &[exports], &opts)?;
    let wh = Warehouse::open(&warehouse)?;
    let status = status(&wh).await?;
    if !Ledger::path_in(&warehouse).exists() {
        let mut ledger = Ledger::init(
            &warehouse,
            &BudgetInit {
                total_rho: 1.0,
                total_delta: 0.0,
                horizon_days: 365,
                config: PrivacyConfig::default(),
            },
        )?;
        ledger.allocate("standard-releases", 0.5)?;
    }
    let outcome = release(
        &warehouse,
        &ReleaseRequest {
            spec: demo_spec(cfg),
            approver: "demo".into(),
        },
    )
    .await?;
    Ok(DemoReport {
        dir: dir.to_path_buf(),
        synth,
        ingest,
        status,
        release: outcome.public,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Synthesised {} rows of program exports into {}.",
            self.synth.total_rows(),
            self.dir.join("exports").display()
        )?;
        writeln!(f)?;
        write!(f, "{}", self.ingest)?;
        writeln!(f)?;
        write!(f, "{}", self.status)?;
        writeln!(f)?;
        writeln!(
            f,
            "Privacy budget: rho = 1 for 365 days, 0.5 allocated to standard-releases. The first DP release:"
        )?;
        write!(f, "{}", crate::report::release_table(&self.release))?;
        writeln!(f)?;
        writeln!(
            f,
            "Warehouse: {}  ({:.1} s). Try: outreach budget show --warehouse {w}; outreach releases list --warehouse {w}",
            self.dir.join("warehouse").display(),
            self.seconds,
            w = self.dir.join("warehouse").display()
        )
    }
}
