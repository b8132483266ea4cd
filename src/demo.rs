//! `outreach demo`: the main job on built-in synthetic data. It synthesises the default data
//! set, ingests it into a warehouse and prints the status. Later stages (releases, the API)
//! extend it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;

use crate::error::Result;
use crate::ingest::{IngestOptions, IngestReport, ingest};
use crate::synth::{SynthConfig, SynthSummary, synth};
use crate::warehouse::{Status, Warehouse, status};

/// What the demo did.
#[derive(Debug)]
pub struct DemoReport {
    pub dir: PathBuf,
    pub synth: SynthSummary,
    pub ingest: IngestReport,
    pub status: Status,
    pub seconds: f64,
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
    Ok(DemoReport {
        dir: dir.to_path_buf(),
        synth,
        ingest,
        status,
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
            "Warehouse: {}  ({:.1} s). Try: outreach status --warehouse {}",
            self.dir.join("warehouse").display(),
            self.seconds,
            self.dir.join("warehouse").display()
        )
    }
}
