//! `outreach synth`: synthetic program exports, one CSV per table, exactly as programs send
//! them.

use std::path::PathBuf;

use chrono::NaiveDate;

use super::values::{parse_seed, parse_synth_persons, parse_synth_programs, parse_synth_quarters};
use crate::Error;
use crate::quarter::Quarter;
use crate::synth::{SynthConfig, synth};

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach synth --out exports\n",
    "  outreach synth --out exports --persons 2000 --programs 5 --seed 7\n",
    "  outreach synth --out exports --start 2025Q1 --quarters 4 --as-of 2025-12-31",
))]
pub(super) struct SynthArgs {
    /// Folder to write the CSV files into.
    #[arg(long)]
    out: PathBuf,
    /// Programs to synthesise (1 to 999).
    #[arg(long, default_value_t = SynthConfig::default().programs,
        value_parser = parse_synth_programs, allow_negative_numbers = true)]
    programs: usize,
    /// Survivors to synthesise (1 to 9999999).
    #[arg(long, default_value_t = SynthConfig::default().persons,
        value_parser = parse_synth_persons, allow_negative_numbers = true)]
    persons: usize,
    /// First quarter, such as 2025Q1.
    #[arg(long, default_value_t = SynthConfig::default().start)]
    start: Quarter,
    /// Quarters the exports span, from --start (1 to 80).
    #[arg(long, default_value_t = SynthConfig::default().quarters,
        value_parser = parse_synth_quarters, allow_negative_numbers = true)]
    quarters: u32,
    /// Seed of the synthetic data: the same settings give byte-identical files.
    #[arg(long, default_value_t = SynthConfig::default().seed,
        value_parser = parse_seed, allow_negative_numbers = true)]
    seed: u64,
    /// Export date: nothing after it is generated [default: today, if the period reaches past it].
    #[arg(long)]
    as_of: Option<NaiveDate>,
}

/// `outreach synth`.
pub(super) fn run_synth(args: SynthArgs, progress: bool) -> Result<(), Error> {
    let SynthArgs {
        out,
        programs,
        persons,
        start,
        quarters,
        seed,
        as_of,
    } = args;
    let mut cfg = SynthConfig {
        programs,
        persons,
        start,
        quarters,
        seed,
        as_of,
        ..SynthConfig::default()
    };
    let today = chrono::Utc::now().date_naive();
    if cfg.as_of.is_none() && cfg.last_day() > today {
        super::note(&format!(
            "note: the period runs past today; generating an export as of {today} (pass --as-of for a fixed date)"
        ));
        cfg.as_of = Some(today);
    }
    let started = std::time::Instant::now();
    let summary = synth(&out, &cfg, progress)?;
    for (table, path, rows) in &summary.files {
        super::out(&format!(
            "{table:<18} {rows:>10} rows  {}\n",
            path.display()
        ))?;
    }
    super::out(&format!(
        "{} rows in {:.1} s\n",
        summary.total_rows(),
        started.elapsed().as_secs_f64()
    ))
}
