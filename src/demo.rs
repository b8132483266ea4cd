//! `outreach demo`: the main job on built-in synthetic data. It synthesises the default data
//! set, ingests it into a warehouse, prints the status, sets a privacy budget, publishes
//! one DP release (`queries/persons_seen.*`) and then the standard metrics of every quarter
//! (`outreach publish`), and writes the static mirror of the public record (`outreach
//! export-site`) into `dir/site`. The command line then serves the warehouse (`outreach
//! serve`) unless `--no-serve` is given.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;

use crate::error::Result;
use crate::ingest::{IngestOptions, IngestReport, ingest};
use crate::ledger::{BudgetInit, Ledger, PrivacyConfig};
use crate::privacy::release::PublicRelease;
use crate::privacy::spec::DomainSpec;
use crate::privacy::{ReleaseRequest, ReleaseSpec, release};
use crate::publication::{
    DEFAULT_ANNUAL_RHO, DEFAULT_STANDARD_RHO, EQUITY_NOISE, PublishOptions, Published,
    STANDARD_ALLOCATION, StandardNoise, publish,
};
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
    /// The standard publication of every quarter, oldest first.
    pub publications: Vec<Published>,
    /// The static mirror of the public record, written to `dir/site`.
    pub site: crate::site::Exported,
    pub seconds: f64,
}

/// The demo's budget: its eight quarters span two years, so it sets two years' worth of the
/// default annual budget, most of it for the standard publications.
pub const DEMO_TOTAL_RHO: f64 = 2.0 * DEFAULT_ANNUAL_RHO;
/// The demo's `standard-releases` allocation.
pub const DEMO_STANDARD_RHO: f64 = 2.0 * DEFAULT_STANDARD_RHO;

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
                total_rho: DEMO_TOTAL_RHO,
                total_delta: 0.0,
                horizon_days: 730,
                config: PrivacyConfig::default(),
            },
        )?;
        ledger.allocate(STANDARD_ALLOCATION, DEMO_STANDARD_RHO)?;
    }
    let outcome = release(
        &warehouse,
        &ReleaseRequest {
            spec: demo_spec(cfg),
            approver: "demo".into(),
        },
    )
    .await?;
    // Every quarter of the demo: the last ones' longest windows reach past the data, so they
    // are published with their figures marked incomplete.
    let mut publications = Vec::new();
    for quarter in cfg.start.range(cfg.quarters) {
        publications.push(
            publish(
                &warehouse,
                &PublishOptions {
                    quarter,
                    approver: "demo".into(),
                    republish: false,
                    allow_incomplete: true,
                    noise: StandardNoise::default(),
                    equity_noise: EQUITY_NOISE,
                },
            )
            .await?,
        );
    }
    // The public record as files that any static host serves, for anyone to verify.
    let site = crate::site::export_site(
        &warehouse,
        &dir.join("site"),
        &crate::site::Curation::default(),
    )
    .await
    .map_err(|e| match e {
        crate::site::SiteError::Warehouse(e) => e,
        other => crate::Error::Internal(other.to_string()),
    })?;
    Ok(DemoReport {
        dir: dir.to_path_buf(),
        site,
        synth,
        ingest,
        status,
        release: outcome.public,
        publications,
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
            "Privacy budget: rho = {DEMO_TOTAL_RHO} for 730 days, {DEMO_STANDARD_RHO} allocated to {STANDARD_ALLOCATION}. The first DP release:"
        )?;
        write!(
            f,
            "{}",
            crate::present::tables::release_table(&self.release)
        )?;
        writeln!(f)?;
        writeln!(f, "The standard metrics, published for every quarter:")?;
        for p in &self.publications {
            let incomplete = p
                .publication
                .completeness
                .iter()
                .filter(|c| !c.complete)
                .count();
            writeln!(
                f,
                "  {}: releases {} (standard, rho = {:.4}) and {} (equity, rho = {:.4}){}",
                p.publication.quarter,
                p.publication.release_id,
                p.publication.rho,
                p.publication
                    .equity_release_id
                    .map_or("-".to_string(), |id| id.to_string()),
                p.publication.equity_rho,
                if incomplete > 0 {
                    format!(", {incomplete} statistics with incomplete follow-up")
                } else {
                    String::new()
                }
            )?;
        }
        // The latest quarter whose every window is complete: what a funder reads.
        if let Some(p) = self
            .publications
            .iter()
            .rev()
            .find(|p| p.publication.completeness.iter().all(|c| c.complete))
        {
            writeln!(f)?;
            write!(
                f,
                "{}",
                crate::present::tables::publication(p, crate::present::tables::Format::Table)
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "The public record as files ({} of them) that any static host serves: {}. Anyone can check it:\n  outreach key show --warehouse {w}\n  outreach verify {site} --public-key KEY   (KEY: the public key it prints, or a file holding it)",
            self.site.files,
            self.dir.join("site").display(),
            w = self.dir.join("warehouse").display(),
            site = self.dir.join("site").display()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "Warehouse: {}  ({:.1} s). Try: outreach budget show --warehouse {w}; outreach publish --warehouse {w} --quarter 2025Q4 --approver you --format csv",
            self.dir.join("warehouse").display(),
            self.seconds,
            w = self.dir.join("warehouse").display()
        )
    }
}
