//! `outreach`: the command line. It parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use outreach_warehouse::dictionary::Dictionary;
use outreach_warehouse::ingest::{DEFAULT_MAX_REJECT_RATE, IngestOptions, ingest};
use outreach_warehouse::quarter::Quarter;
use outreach_warehouse::synth::{SynthConfig, synth};
use outreach_warehouse::warehouse::{Warehouse, status};
use outreach_warehouse::{Error, Fault, demo};

#[derive(Parser)]
#[command(
    name = "outreach",
    version,
    about = "Evaluate post-overdose outreach programs and publish only differentially private figures"
)]
struct Cli {
    /// Hide progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job on built-in synthetic data: synthesise, ingest, show the status.
    Demo {
        /// Folder for the demo's exports and warehouse [default: a new folder under the system's temporary folder].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Survivors to synthesise.
        #[arg(long, default_value_t = SynthConfig::default().persons)]
        persons: usize,
        /// Programs to synthesise.
        #[arg(long, default_value_t = SynthConfig::default().programs)]
        programs: usize,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = SynthConfig::default().seed)]
        seed: u64,
    },
    /// Write synthetic program exports, one CSV per table.
    Synth {
        /// Folder to write the CSV files into.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = SynthConfig::default().programs)]
        programs: usize,
        #[arg(long, default_value_t = SynthConfig::default().persons)]
        persons: usize,
        /// First quarter, such as 2025Q1.
        #[arg(long, default_value_t = SynthConfig::default().start)]
        start: Quarter,
        #[arg(long, default_value_t = SynthConfig::default().quarters)]
        quarters: u32,
        #[arg(long, default_value_t = SynthConfig::default().seed)]
        seed: u64,
        /// Export date: nothing after it is generated [default: today, if the period reaches past it].
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Validate program exports and load them into a warehouse as Parquet.
    Ingest {
        /// Warehouse folder; created if missing.
        #[arg(long)]
        warehouse: PathBuf,
        /// Load every file into this table instead of telling it from the file name.
        #[arg(long)]
        table: Option<String>,
        /// Share of rows (0 to 1) that may fail validation before a file is refused.
        #[arg(long, default_value_t = DEFAULT_MAX_REJECT_RATE)]
        max_reject_rate: f64,
        /// Declare the loaded tables complete through this date (YYYY-MM-DD).
        #[arg(long)]
        complete_through: Option<NaiveDate>,
        /// Latest plausible date in the data [default: today].
        #[arg(long)]
        max_date: Option<NaiveDate>,
        /// CSV files, or folders of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Declare a table's data complete through a date (public metadata).
    CompleteThrough {
        #[arg(long)]
        warehouse: PathBuf,
        table: String,
        date: NaiveDate,
    },
    /// Show tables, row counts, date ranges and the dataset version (steward only: exact figures).
    Status {
        #[arg(long)]
        warehouse: PathBuf,
    },
    /// Print the data dictionary as Markdown.
    Dictionary,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e.fault() {
                Fault::BadInput => 2,
                Fault::Busy => 3,
                Fault::Internal => 1,
            })
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

fn run(cli: Cli) -> Result<(), Error> {
    let progress = !cli.quiet;
    match cli.command {
        Command::Demo {
            dir,
            persons,
            programs,
            seed,
        } => {
            let dir = dir.unwrap_or_else(|| {
                let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
                std::env::temp_dir().join(format!("outreach-demo-{stamp}-{}", std::process::id()))
            });
            let cfg = SynthConfig {
                persons,
                programs,
                seed,
                ..SynthConfig::default()
            };
            let report = runtime().block_on(demo::run_demo(&dir, &cfg, progress))?;
            print!("{report}");
        }
        Command::Synth {
            out,
            programs,
            persons,
            start,
            quarters,
            seed,
            as_of,
        } => {
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
                eprintln!(
                    "note: the period runs past today; generating an export as of {today} (pass --as-of for a fixed date)"
                );
                cfg.as_of = Some(today);
            }
            let started = std::time::Instant::now();
            let summary = synth(&out, &cfg, progress)?;
            for (table, path, rows) in &summary.files {
                println!("{table:<18} {rows:>10} rows  {}", path.display());
            }
            println!(
                "{} rows in {:.1} s",
                summary.total_rows(),
                started.elapsed().as_secs_f64()
            );
        }
        Command::Ingest {
            warehouse,
            table,
            max_reject_rate,
            complete_through,
            max_date,
            files,
        } => {
            let mut opts = IngestOptions {
                table,
                max_reject_rate,
                complete_through,
                progress,
                ..IngestOptions::default()
            };
            if let Some(d) = max_date {
                opts.max_date = d;
            }
            let report = ingest(&warehouse, &files, &opts)?;
            print!("{report}");
        }
        Command::CompleteThrough {
            warehouse,
            table,
            date,
        } => {
            let wh = Warehouse::open(&warehouse)?;
            wh.declare_complete_through(&table, date)?;
            println!("{table} is declared complete through {date}.");
        }
        Command::Status { warehouse } => {
            let wh = Warehouse::open(&warehouse)?;
            let s = runtime().block_on(status(&wh))?;
            print!("{s}");
        }
        Command::Dictionary => {
            print!("{}", Dictionary::builtin()?.to_markdown());
        }
    }
    Ok(())
}
