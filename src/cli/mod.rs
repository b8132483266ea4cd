//! The `outreach` command line: clap parsing and one function per command, each calling
//! into the library's stages. It lives in the library so that the binary (`src/main.rs`)
//! only hands over to [`main`], and its code is compiled once.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use crate::api::{self, Limits};
use crate::dictionary::Dictionary;
use crate::ingest::{DEFAULT_MAX_REJECT_RATE, IngestOptions, ingest};
use crate::ledger::{BudgetInit, Ledger, NoiseKind, PrivacyConfig};
use crate::privacy::release::PublicRelease;
use crate::privacy::spec::{
    CellSpec, DomainSpec, QuerySpec, RatioSpec, StatisticKind, StatisticSpec,
};
use crate::privacy::{ReleaseRequest, ReleaseSpec, release};
use crate::quarter::Quarter;
use crate::queries::publish::{
    EQUITY_NOISE, PublishOptions, StandardNoise, plan_for_target, plan_with, publish,
};
use crate::queries::{self, Catalog};
use crate::report::{self, Format};
use crate::requests::{self, Queue, Role};
use crate::synth::{SynthConfig, synth};
use crate::warehouse::{Warehouse, status};
use crate::{Error, demo};

/// The environment variable that gives `--warehouse` when the flag is absent.
pub const WAREHOUSE_ENV: &str = "OUTREACH_WAREHOUSE";

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
        /// Stop after publishing instead of serving the demo warehouse (for scripts and tests).
        #[arg(long)]
        no_serve: bool,
        #[command(flatten)]
        listen: ListenArgs,
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
        #[arg(long, env = WAREHOUSE_ENV)]
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
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        table: String,
        date: NaiveDate,
    },
    /// Show tables, row counts, date ranges and the dataset version (steward only: exact figures).
    Status {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
    },
    /// Print the data dictionary as Markdown.
    Dictionary,
    /// Publish the standard metrics of one quarter for every program, with DP.
    Publish {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// Quarter such as 2025Q3.
        #[arg(long)]
        quarter: Quarter,
        /// Who approves the publication (recorded with the release).
        #[arg(long)]
        approver: String,
        /// Publish a quarter again after new data: a new, debited release that supersedes
        /// the old one.
        #[arg(long)]
        republish: bool,
        /// Publish although some follow-up windows are not declared complete; those figures
        /// say so.
        #[arg(long)]
        allow_incomplete: bool,
        /// Noise scale σ of every count.
        #[arg(long, default_value_t = StandardNoise::default().sigma)]
        sigma: f64,
        /// Most cohorts of one quarter a survivor counts in.
        #[arg(long, default_value_t = StandardNoise::default().k)]
        k: u32,
        /// Noise scale σ of every count of the equity breakdowns.
        #[arg(long, default_value_t = EQUITY_NOISE.sigma)]
        equity_sigma: f64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// What publishing a quarter would cost and how precise it would be; spends nothing.
    Plan {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// Quarter such as 2025Q3.
        #[arg(long)]
        quarter: Quarter,
        /// Noise scale σ of every count.
        #[arg(long, default_value_t = StandardNoise::default().sigma)]
        sigma: f64,
        /// Most cohorts of one quarter a survivor counts in.
        #[arg(long, default_value_t = StandardNoise::default().k)]
        k: u32,
        /// Noise scale σ of every count of the equity breakdowns.
        #[arg(long, default_value_t = EQUITY_NOISE.sigma, conflicts_with = "target_halfwidth")]
        equity_sigma: f64,
        /// The denominator (survivors) at which rate half-widths are shown.
        #[arg(long, default_value_t = 200)]
        at: u64,
        /// Solve for the smallest budget whose every rate half-width at --at is within this,
        /// the equity rates' too (for --sigma and --equity-sigma).
        #[arg(long, conflicts_with = "sigma")]
        target_halfwidth: Option<f64>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the standard metrics; with --exact, count them without noise (steward only).
    Metrics {
        /// Print `queries/README.md`, the metrics explained for non-programmers.
        #[arg(long, conflicts_with = "exact")]
        markdown: bool,
        /// Exact counts per program for one quarter, to validate the queries on known data.
        /// Steward only: the figures carry no noise and are never published.
        #[arg(long, requires_all = ["warehouse", "quarter"])]
        exact: bool,
        /// Warehouse folder (with --exact).
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: Option<PathBuf>,
        /// Quarter such as 2025Q3 (with --exact).
        #[arg(long)]
        quarter: Option<Quarter>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The privacy budget: set it, split it into allocations, show it, renew it.
    Budget {
        #[command(subcommand)]
        command: BudgetCommand,
    },
    /// Release differentially private statistics: debit the budget, bound, add noise, store.
    Release(Box<ReleaseArgs>),
    /// Published releases (the steward's view adds failed ones, errors and diagnostics).
    Releases {
        #[command(subcommand)]
        command: ReleasesCommand,
    },
    /// Serve the published releases over HTTP, read-only, until Ctrl-C.
    Serve(ServeArgs),
    /// Write the quarterly report: a self-contained HTML file and the CSV of every figure.
    Report {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// A published quarter, such as 2025Q3.
        #[arg(long)]
        quarter: Quarter,
        /// The HTML file to write; the CSV goes beside it with the extension .csv.
        #[arg(long)]
        out: PathBuf,
    },
    /// Researchers' requests: list, show, approve (runs the release) or reject.
    Requests {
        #[command(subcommand)]
        command: RequestsCommand,
    },
    /// Researchers' bearer tokens for the API.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
}

/// Where and how `serve` listens.
#[derive(clap::Args)]
struct ServeArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    #[command(flatten)]
    listen: ListenArgs,
}

#[derive(clap::Args, Clone)]
struct ListenArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Requests per second each client IP may make, on average (more than 0, at most 1e9).
    #[arg(long, default_value_t = Limits::default().per_ip_per_second,
        value_parser = parse_request_rate, allow_negative_numbers = true)]
    per_ip_per_second: f64,
    /// Requests a client IP may make at once (at least 1).
    #[arg(long, default_value_t = Limits::default().per_ip_burst,
        value_parser = parse_burst, allow_negative_numbers = true)]
    per_ip_burst: u32,
    /// Requests per minute per researcher token on the request routes (more than 0, at most 1e9).
    #[arg(long, default_value_t = Limits::default().per_token_per_minute,
        value_parser = parse_request_rate, allow_negative_numbers = true)]
    per_token_per_minute: f64,
    /// Requests a token may make at once on the request routes (at least 1).
    #[arg(long, default_value_t = Limits::default().per_token_burst,
        value_parser = parse_burst, allow_negative_numbers = true)]
    per_token_burst: u32,
    /// Largest request body, in bytes (at least 1).
    #[arg(long, default_value_t = Limits::default().max_body_bytes,
        value_parser = parse_body_bytes, allow_negative_numbers = true)]
    max_body_bytes: usize,
    /// Seconds a request may take before it is answered 504 (0.001 to 3600).
    #[arg(long, default_value_t = Limits::default().timeout.as_secs_f64(),
        value_parser = parse_timeout_seconds, allow_negative_numbers = true)]
    timeout_seconds: f64,
    /// Seconds a client may take to send a request's header before its connection is closed
    /// (0.001 to 3600).
    #[arg(long, default_value_t = Limits::default().header_read_timeout.as_secs_f64(),
        value_parser = parse_timeout_seconds, allow_negative_numbers = true)]
    header_read_timeout_seconds: f64,
    /// Connections open at once; more wait until one closes (at least 1).
    #[arg(long, default_value_t = Limits::default().max_connections,
        value_parser = parse_connections, allow_negative_numbers = true)]
    max_connections: usize,
    /// Dashboard display rule: grey out figures resting on a noisy count below this (a number of at least 0) [default: off].
    #[arg(long, value_parser = parse_small_cell, allow_negative_numbers = true)]
    small_cell: Option<f64>,
    /// A reverse proxy, an address or a block such as 10.0.0.0/8, whose Forwarded or
    /// X-Forwarded-For header names the client; repeat for each [default: none, the TCP peer
    /// is the client].
    #[arg(long = "trusted-proxy", value_name = "ADDR_OR_CIDR")]
    trusted_proxies: Vec<api::IpNet>,
}

/// The shortest `--timeout-seconds`: a shorter one rounds to no time at all, and every
/// request would be answered 504.
pub const MIN_TIMEOUT_SECONDS: f64 = 0.001;
/// The longest `--timeout-seconds`: an hour. Far longer than any request takes; beyond it a
/// value only hides a mistake (and past about 1.8e19 it cannot be a duration at all).
pub const MAX_TIMEOUT_SECONDS: f64 = 3600.0;
/// The largest `--per-ip-per-second` and `--per-token-per-minute`: one request per
/// nanosecond, the rate limiter's finest period. A larger rate rounds to a period of zero,
/// which the limiter cannot take.
pub const MAX_REQUEST_RATE: f64 = 1e9;

/// A flag's value as a number; `NaN` and `inf` parse, and each check below refuses them.
fn parse_number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("{s:?} is not a number"))
}

/// A whole number of at least 1.
fn parse_positive_whole(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// `--timeout-seconds`: finite, from [`MIN_TIMEOUT_SECONDS`] to [`MAX_TIMEOUT_SECONDS`].
fn parse_timeout_seconds(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if v.is_finite() && (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "the timeout must be a number of seconds from {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}"
        ))
    }
}

/// `--per-ip-per-second`, `--per-token-per-minute`: finite, more than 0, at most
/// [`MAX_REQUEST_RATE`].
fn parse_request_rate(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if v.is_finite() && v > 0.0 && v <= MAX_REQUEST_RATE {
        Ok(v)
    } else {
        Err(format!(
            "a request rate must be a number more than 0 and at most {MAX_REQUEST_RATE:e}"
        ))
    }
}

/// `--per-ip-burst`, `--per-token-burst`: a whole number of at least 1.
fn parse_burst(s: &str) -> Result<u32, String> {
    u32::try_from(parse_positive_whole(s)?).map_err(|_| format!("a burst is at most {}", u32::MAX))
}

/// `--max-body-bytes`: a whole number of at least 1.
fn parse_body_bytes(s: &str) -> Result<usize, String> {
    usize::try_from(parse_positive_whole(s)?)
        .map_err(|_| format!("the body limit is at most {}", usize::MAX))
}

/// `--max-connections`: a whole number of at least 1.
fn parse_connections(s: &str) -> Result<usize, String> {
    usize::try_from(parse_positive_whole(s)?)
        .map_err(|_| format!("the connection limit is at most {}", usize::MAX))
}

/// `--small-cell`: a finite number of at least 0.
fn parse_small_cell(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err("the small-cell threshold must be a number of at least 0".into())
    }
}

impl ListenArgs {
    /// The server's limits. Every value was checked as the flags were parsed (the value
    /// parsers above), so a bad one is clap's usage error, exit 2, naming the flag.
    fn limits(&self) -> Limits {
        Limits {
            per_ip_per_second: self.per_ip_per_second,
            per_ip_burst: self.per_ip_burst,
            per_token_per_minute: self.per_token_per_minute,
            per_token_burst: self.per_token_burst,
            max_body_bytes: self.max_body_bytes,
            small_cell: self.small_cell,
            timeout: std::time::Duration::from_secs_f64(self.timeout_seconds),
            header_read_timeout: std::time::Duration::from_secs_f64(
                self.header_read_timeout_seconds,
            ),
            max_connections: self.max_connections,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

#[derive(Subcommand)]
enum RequestsCommand {
    /// List every request with its state.
    List {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one request: purpose, spec, cost and accuracy, decision.
    Show {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// The request's id, as `requests list` shows it.
        id: String,
    },
    /// Approve a pending request: run its release, debited from `researcher:<name>`.
    Approve {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        id: String,
        /// Who approves (recorded with the release).
        #[arg(long, default_value = "steward")]
        approver: String,
        /// Publish the release to everyone, not only the researcher.
        #[arg(long)]
        public: bool,
    },
    /// Reject a pending request; the researcher sees your words.
    Reject {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        id: String,
        /// Why, for the researcher.
        #[arg(long)]
        why: String,
        /// Who rejects.
        #[arg(long, default_value = "steward")]
        approver: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token; it is printed once and only its hash is kept.
    Create {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The researcher's name: letters, digits, '-', '_', '.'.
        #[arg(long)]
        name: String,
    },
    /// Revoke a researcher's token: it gets 401 from then on.
    Revoke {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        name: String,
    },
    /// List tokens (names, ids and dates, never the tokens). A request belongs to the token
    /// that submitted it.
    List {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TokenRole {
    Researcher,
}

#[derive(Subcommand)]
enum BudgetCommand {
    /// Set the warehouse's privacy budget, its horizon and noise; creates the ledger and the secret.
    Init {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// Total zCDP budget rho for the period.
        #[arg(long)]
        total: f64,
        /// Length of the budget period in days.
        #[arg(long)]
        horizon: u32,
        /// Total delta for approximate releases (private partition selection).
        #[arg(long, default_value_t = 0.0)]
        delta: f64,
        /// Noise for every release: gaussian (zCDP) or laplace (pure DP, debited as rho = eps^2/2).
        #[arg(long, default_value = "gaussian")]
        noise: NoiseKind,
        /// Delta at which rho is displayed as (epsilon, delta).
        #[arg(long, default_value_t = PrivacyConfig::default().display_delta)]
        display_delta: f64,
        /// The smallest noise scale any release may use.
        #[arg(long, default_value_t = PrivacyConfig::default().min_scale)]
        min_scale: f64,
    },
    /// Add rho (and delta) to a named allocation, such as standard-releases or researcher:ID.
    Allocate {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// The allocation's name.
        name: String,
        /// Rho to add; 0 adds only delta to an existing allocation.
        rho: f64,
        /// Delta to add, for private partition selection (an allocation without delta spends none).
        #[arg(long, default_value_t = 0.0)]
        delta: f64,
    },
    /// Show the budget, what is spent and what is left, with epsilon at the configured delta.
    Show {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Start a new budget period (a recorded steward action; lifetime loss grows with it).
    Renew {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// Why the budget is renewed; recorded in the ledger.
        #[arg(long)]
        why: String,
        /// New total rho [default: the current one].
        #[arg(long)]
        total: Option<f64>,
        /// New total delta [default: the current one].
        #[arg(long)]
        delta: Option<f64>,
        /// New horizon in days [default: the current one].
        #[arg(long)]
        horizon: Option<u32>,
    },
}

#[derive(clap::Args)]
struct ReleaseArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// A release spec (TOML or JSON). Or give the flags below.
    #[arg(long, conflicts_with_all = ["query", "cell", "stat"])]
    spec: Option<PathBuf>,
    /// Person-level SQL file (repeat for several queries in one release).
    #[arg(long)]
    query: Vec<PathBuf>,
    /// Cell key and its domain: COLUMN=programs, COLUMN=quarters:2024Q3..2026Q2, COLUMN=dictionary:TABLE.COLUMN,
    /// or COLUMN=private (no public domain: private partition selection, needs --delta).
    #[arg(long)]
    cell: Vec<String>,
    /// Statistic: NAME:count or NAME:sum:LOWER:UPPER.
    #[arg(long)]
    stat: Vec<String>,
    /// Exclusive group of count statistics, comma-separated.
    #[arg(long)]
    exclusive: Vec<String>,
    /// Ratio NAME=NUMERATOR/DENOMINATOR of two statistics.
    #[arg(long)]
    ratio: Vec<String>,
    /// Most cells one person may touch in the release.
    #[arg(long)]
    k: Option<u32>,
    /// Budget of the release (zCDP rho).
    #[arg(long)]
    rho: Option<f64>,
    /// Delta that private partition selection may spend (with a COLUMN=private cell).
    #[arg(long)]
    delta: Option<f64>,
    /// Noise scale of a statistic, NAME=SCALE (instead of, or agreeing with, --rho).
    #[arg(long)]
    scale: Vec<String>,
    /// Allocation to debit.
    #[arg(long)]
    allocation: Option<String>,
    /// Name of the release.
    #[arg(long)]
    name: Option<String>,
    /// Who approved the release.
    #[arg(long, default_value = "steward")]
    approver: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Subcommand)]
enum ReleasesCommand {
    /// List releases.
    List {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Include failed and interrupted releases (steward only).
        #[arg(long)]
        steward: bool,
    },
    /// Show one release.
    Show {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Show the steward's record: status, error text and diagnostics (exact figures).
        #[arg(long)]
        steward: bool,
    },
}

/// Parses the arguments, runs the command and maps its error to an exit code.
///
/// Logs (`RUST_LOG`) are the steward's, on the warehouse host, and off unless asked for:
/// a library's log line could quote what a query read. A release that fails after its
/// debit prints only a fixed message with its id (`PrivacyError::FailedAfterDebit`).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server's internal errors are logged by default (its access log is written apart,
    // as JSON lines on stderr); everything else is off unless asked for.
    let serving = matches!(
        &cli.command,
        Command::Serve(_)
            | Command::Demo {
                no_serve: false,
                ..
            }
    );
    let default = if serving {
        "off,outreach::api=info"
    } else {
        "off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error may quote a researcher's spec (a name, a column): each of its lines
            // passes `terminal_safe`.
            let text = e.to_string();
            let lines: Vec<_> = text.lines().map(report::terminal_safe).collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::from(e.fault().exit_code())
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
            no_serve,
            listen,
        } => {
            let limits = listen.limits();
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
            let rt = runtime();
            let report = rt.block_on(demo::run_demo(&dir, &cfg, progress))?;
            print!("{report}");
            if !no_serve {
                let warehouse = report.dir.join("warehouse");
                rt.block_on(serve_until_ctrl_c(&warehouse, listen.addr, limits))?;
            }
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
        Command::Publish {
            warehouse,
            quarter,
            approver,
            republish,
            allow_incomplete,
            sigma,
            k,
            equity_sigma,
            format,
        } => {
            let opts = PublishOptions {
                quarter,
                approver,
                republish,
                allow_incomplete,
                noise: StandardNoise { k, sigma },
                equity_noise: StandardNoise {
                    k: EQUITY_NOISE.k,
                    sigma: equity_sigma,
                },
            };
            let published = runtime().block_on(publish(&warehouse, &opts))?;
            print!("{}", report::publication(&published, format));
        }
        Command::Plan {
            warehouse,
            quarter,
            sigma,
            k,
            equity_sigma,
            at,
            target_halfwidth,
            format,
        } => {
            let plan = runtime().block_on(async {
                match target_halfwidth {
                    Some(t) => plan_for_target(&warehouse, quarter, k, t, at).await,
                    None => {
                        plan_with(
                            &warehouse,
                            quarter,
                            StandardNoise { k, sigma },
                            StandardNoise {
                                k: EQUITY_NOISE.k,
                                sigma: equity_sigma,
                            },
                            at,
                        )
                        .await
                    }
                }
            })?;
            print!("{}", report::plan(&plan, format));
        }
        Command::Metrics {
            markdown,
            exact,
            warehouse,
            quarter,
            format,
        } => {
            let catalog = Catalog::standard()?;
            if markdown {
                print!("{}", queries::docs::to_markdown(&catalog));
            } else if exact {
                let (Some(warehouse), Some(quarter)) = (warehouse, quarter) else {
                    unreachable!("clap requires --warehouse and --quarter with --exact");
                };
                let wh = Warehouse::open(&warehouse)?;
                let values = runtime().block_on(async {
                    let ctx = crate::warehouse::open_session(&wh).await?;
                    crate::privacy::functions::register(&ctx);
                    queries::exact::exact(&ctx, &catalog, quarter)
                        .await
                        .map_err(Error::from)
                })?;
                eprintln!("{}", queries::exact::BANNER);
                print!("{}", report::exact_values(&values, format));
            } else {
                print!("{}", report::metric_catalog(&catalog, format));
            }
        }
        Command::Budget { command } => budget(command)?,
        Command::Release(args) => {
            let format = args.format;
            let warehouse = args.warehouse.clone();
            let spec = release_spec(args.spec.clone(), &args)?;
            let req = ReleaseRequest {
                spec,
                approver: args.approver.clone(),
            };
            let outcome = runtime().block_on(release(&warehouse, &req))?;
            if !outcome.fresh {
                eprintln!(
                    "release {} already holds these numbers (same queries, declarations, rho and dataset version): nothing spent",
                    outcome.id
                );
            }
            print_release(&outcome.public, format);
        }
        Command::Serve(args) => {
            let limits = args.listen.limits();
            runtime().block_on(serve_until_ctrl_c(
                &args.warehouse,
                args.listen.addr,
                limits,
            ))?;
        }
        Command::Report {
            warehouse,
            quarter,
            out,
        } => {
            let written =
                runtime().block_on(crate::dashboard::report::write(&warehouse, quarter, &out))?;
            println!(
                "Wrote {} and {}.",
                written.html.display(),
                written.csv.display()
            );
        }
        Command::Requests { command } => requests_command(command)?,
        Command::Tokens { command } => tokens_command(command)?,
        Command::Releases { command } => match command {
            ReleasesCommand::List {
                warehouse,
                format,
                steward,
            } => {
                let mut all = Ledger::open(&warehouse)?.releases()?;
                if !steward {
                    let shown = made_public(&warehouse)?;
                    all.retain(|r| is_public(r, &shown));
                }
                match format {
                    Format::Table => print!("{}", report::releases_table(&all, steward)),
                    Format::Csv => print!("{}", report::releases_csv(&all, steward)),
                    Format::Json => {
                        // Names and specs are researchers' text: `json_for_terminal`.
                        let v: Vec<serde_json::Value> = if steward {
                            all.iter()
                                .map(|r| serde_json::to_value(r).expect("json"))
                                .collect()
                        } else {
                            all.iter()
                                .filter_map(PublicRelease::from_stored)
                                .map(crate::api::views::to_the_day)
                                .map(|r| serde_json::to_value(r).expect("json"))
                                .collect()
                        };
                        println!("{}", report::json_for_terminal(&v));
                    }
                }
            }
            ReleasesCommand::Show {
                warehouse,
                id,
                format,
                steward,
            } => {
                let stored = Ledger::open(&warehouse)?.release(id)?;
                if steward {
                    println!("{}", report::json_for_terminal(&stored));
                } else {
                    // A researcher's release not made public is answered like a missing one.
                    let shown = made_public(&warehouse)?;
                    let public =
                        PublicRelease::from_stored(&stored).filter(|_| is_public(&stored, &shown));
                    match public {
                        Some(p) => print_release(&p, format),
                        None => {
                            return Err(Error::Ledger(crate::ledger::LedgerError::NoSuchRelease(
                                id,
                            )));
                        }
                    }
                }
            }
        },
    }
    Ok(())
}

/// The researchers' releases that the steward made public (`requests approve --public`).
/// A warehouse without a requests file has none.
fn made_public(warehouse: &std::path::Path) -> Result<Vec<i64>, Error> {
    if !Queue::path_in(warehouse).exists() {
        return Ok(Vec::new());
    }
    Ok(Queue::open(warehouse)?.public_release_ids()?)
}

/// Whether anyone may see a release, as the API decides: every release but a researcher's
/// that the steward did not make public, which is public as spend only (in the budget),
/// never by its name, its requester or its numbers (privacy model §10).
fn is_public(r: &crate::ledger::StoredRelease, made_public: &[i64]) -> bool {
    requests::researcher_of(&r.allocation).is_none() || made_public.contains(&r.id)
}

/// A release's public view, with its time cut to the day like every public time (the
/// steward's full record is `releases show --steward`).
fn print_release(p: &PublicRelease, format: Format) {
    let p = &crate::api::views::to_the_day(p.clone());
    // Names and cell values come from specs that researchers write: every printer passes
    // them through `report::terminal_safe`.
    match format {
        Format::Table => print!("{}", report::release_table(p)),
        Format::Csv => print!("{}", report::release_csv_for_terminal(p)),
        Format::Json => println!("{}", report::json_for_terminal(p)),
    }
}

fn budget(command: BudgetCommand) -> Result<(), Error> {
    match command {
        BudgetCommand::Init {
            warehouse,
            total,
            horizon,
            delta,
            noise,
            display_delta,
            min_scale,
        } => {
            Warehouse::open(&warehouse)?;
            let init = BudgetInit {
                total_rho: total,
                total_delta: delta,
                horizon_days: horizon,
                config: PrivacyConfig {
                    noise,
                    display_delta,
                    min_scale,
                },
            };
            let ledger = Ledger::init(&warehouse, &init)?;
            print!("{}", report::budget_table(&ledger.show()?));
        }
        BudgetCommand::Allocate {
            warehouse,
            name,
            rho,
            delta,
        } => {
            let mut ledger = Ledger::open(&warehouse)?;
            ledger.allocate_with_delta(&name, rho, delta)?;
            print!("{}", report::budget_table(&ledger.show()?));
        }
        BudgetCommand::Show { warehouse, format } => {
            let view = Ledger::open(&warehouse)?.show()?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&view).expect("json")),
                _ => print!("{}", report::budget_table(&view)),
            }
        }
        BudgetCommand::Renew {
            warehouse,
            why,
            total,
            delta,
            horizon,
        } => {
            let mut ledger = Ledger::open(&warehouse)?;
            ledger.renew(&why, total, delta, horizon)?;
            print!("{}", report::budget_table(&ledger.show()?));
        }
    }
    Ok(())
}

/// A flag of the release's flag form that cannot be read: the command line's fault, not a
/// release spec's.
fn bad_flag(message: String) -> Error {
    Error::Usage(message)
}

/// The release spec from `--spec`, or built from the flag form.
fn release_spec(path: Option<PathBuf>, a: &ReleaseArgs) -> Result<ReleaseSpec, Error> {
    if let Some(path) = path {
        return Ok(ReleaseSpec::from_file(&path)?);
    }
    if a.query.is_empty() {
        return Err(bad_flag(
            "give --spec FILE, or --query FILE with --cell, --stat, --k and --allocation".into(),
        ));
    }
    let cells = a
        .cell
        .iter()
        .map(|c| {
            let (column, domain) = c
                .split_once('=')
                .ok_or_else(|| bad_flag(format!("--cell {c}: write COLUMN=DOMAIN")))?;
            let domain = match domain.split_once(':') {
                None if domain == "programs" => DomainSpec::Programs,
                None if domain == "private" => DomainSpec::Private,
                Some(("dictionary", d)) => DomainSpec::Dictionary(d.into()),
                Some(("values", list)) => {
                    DomainSpec::Values(list.split(',').map(String::from).collect())
                }
                Some(("quarters", range)) => {
                    let (from, to) = range.split_once("..").ok_or_else(|| {
                        bad_flag(format!("--cell {c}: write quarters:FROM..TO"))
                    })?;
                    DomainSpec::Quarters {
                        from: from.into(),
                        to: to.into(),
                    }
                }
                _ => {
                    return Err(bad_flag(format!(
                        "--cell {c}: unknown cell domain; use programs, quarters:FROM..TO, dictionary:TABLE.COLUMN, values:A,B,C or private"
                    )));
                }
            };
            Ok(CellSpec {
                column: column.into(),
                domain,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let statistics = a
        .stat
        .iter()
        .map(|s| {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [name, "count"] => Ok(StatisticSpec {
                    name: (*name).into(),
                    column: None,
                    kind: StatisticKind::Count,
                    lower: None,
                    upper: None,
                }),
                [name, "sum", lower, upper] => {
                    let num = |x: &str| {
                        x.parse::<i64>()
                            .map_err(|_| bad_flag(format!("--stat {s}: bounds must be integers")))
                    };
                    Ok(StatisticSpec {
                        name: (*name).into(),
                        column: None,
                        kind: StatisticKind::Sum,
                        lower: Some(num(lower)?),
                        upper: Some(num(upper)?),
                    })
                }
                [_, "sum", ..] => Err(bad_flag(format!(
                    "--stat {s}: missing bounds; write NAME:sum:LOWER:UPPER"
                ))),
                _ => Err(bad_flag(format!(
                    "--stat {s}: write NAME:count or NAME:sum:LOWER:UPPER"
                ))),
            }
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let scales = a
        .scale
        .iter()
        .map(|s| {
            let (name, v) = s
                .split_once('=')
                .ok_or_else(|| bad_flag(format!("--scale {s}: write NAME=SCALE")))?;
            let v: f64 = v
                .parse()
                .map_err(|_| bad_flag(format!("--scale {s}: the scale must be a number")))?;
            Ok((name.to_string(), v))
        })
        .collect::<Result<_, Error>>()?;
    let ratios = a
        .ratio
        .iter()
        .map(|r| {
            let (name, rest) = r.split_once('=').ok_or_else(|| {
                bad_flag(format!("--ratio {r}: write NAME=NUMERATOR/DENOMINATOR"))
            })?;
            let (num, den) = rest.split_once('/').ok_or_else(|| {
                bad_flag(format!("--ratio {r}: write NAME=NUMERATOR/DENOMINATOR"))
            })?;
            Ok(RatioSpec {
                name: name.into(),
                numerator: num.into(),
                denominator: den.into(),
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(ReleaseSpec {
        name: a.name.clone().unwrap_or_else(|| {
            a.query
                .iter()
                .map(|q| q.display().to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        }),
        queries: a
            .query
            .iter()
            .map(|q| QuerySpec {
                file: Some(q.clone()),
                sql: None,
            })
            .collect(),
        cells,
        statistics,
        exclusive: a
            .exclusive
            .iter()
            .map(|g| g.split(',').map(str::to_string).collect())
            .collect(),
        k: a.k.ok_or_else(|| {
            bad_flag("--k is required: the most cells one person may touch".into())
        })?,
        rho: a.rho,
        delta: a.delta,
        scales,
        allocation: a.allocation.clone().ok_or_else(|| {
            bad_flag("--allocation is required: the budget allocation to debit".into())
        })?,
        ratios,
    })
}

/// Serves a warehouse and prints its URL until the process is stopped (Ctrl-C). The server
/// writes only the request queue, in SQLite transactions, so stopping it at any moment
/// loses nothing.
async fn serve_until_ctrl_c(
    warehouse: &std::path::Path,
    addr: std::net::SocketAddr,
    limits: Limits,
) -> Result<(), Error> {
    let shutdown = std::future::pending::<()>();
    api::serve(
        warehouse,
        addr,
        limits,
        |bound| {
            println!("Serving {} at http://{bound}/ (OpenAPI: http://{bound}/openapi.json). Ctrl-C stops.", warehouse.display());
        },
        shutdown,
    )
    .await
}

fn requests_command(command: RequestsCommand) -> Result<(), Error> {
    match command {
        RequestsCommand::List { warehouse, format } => {
            let list = Queue::open(&warehouse)?.list()?;
            print!("{}", report::requests(&list, format));
        }
        RequestsCommand::Show { warehouse, id } => {
            let r = Queue::open(&warehouse)?.get(&id)?;
            // The purpose and the spec are the researcher's text.
            println!("{}", report::json_for_terminal(&r));
        }
        RequestsCommand::Approve {
            warehouse,
            id,
            approver,
            public,
        } => {
            let (r, outcome) =
                runtime().block_on(requests::approve(&warehouse, &id, &approver, public))?;
            let release = outcome.map(|o| o.id).unwrap_or_default();
            let researcher = report::terminal_safe(&r.researcher);
            println!(
                "Request {} of {researcher} is released as release {release} ({}); it was debited from researcher:{researcher}.",
                report::terminal_safe(&id),
                if r.public {
                    "public"
                } else {
                    "visible to the researcher only"
                },
            );
        }
        RequestsCommand::Reject {
            warehouse,
            id,
            why,
            approver,
        } => {
            let r = requests::reject(&warehouse, &id, &approver, &why)?;
            println!(
                "Request {} of {} is rejected.",
                report::terminal_safe(&id),
                report::terminal_safe(&r.researcher)
            );
        }
    }
    Ok(())
}

fn tokens_command(command: TokensCommand) -> Result<(), Error> {
    match command {
        TokensCommand::Create {
            warehouse,
            role,
            name,
        } => {
            let role = match role {
                TokenRole::Researcher => Role::Researcher,
            };
            let token = Queue::open(&warehouse)?.create_token(&name, role)?;
            println!("{token}");
            eprintln!(
                "This is {name}'s token; it is shown once and only its hash is kept. Give it to them over a safe channel; they send it as `Authorization: Bearer <token>`. Their releases are debited from the allocation researcher:{name} (`outreach budget allocate researcher:{name} RHO`)."
            );
        }
        TokensCommand::Revoke { warehouse, name } => {
            Queue::open(&warehouse)?.revoke_token(&name)?;
            println!("{name}'s token is revoked.");
        }
        TokensCommand::List { warehouse } => {
            for t in Queue::open(&warehouse)?.tokens()? {
                println!(
                    "{}\ttoken {}\tcreated {}\t{}",
                    t.name,
                    t.id,
                    t.created_at,
                    t.revoked_at
                        .map(|r| format!("revoked {r}"))
                        .unwrap_or_else(|| "active".into())
                );
            }
        }
    }
    Ok(())
}
