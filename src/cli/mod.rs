//! The `outreach` command line: the top-level arguments, the dispatch to one file per
//! command family, and the exit code of each error. It lives in the library so that the
//! binary (`src/main.rs`) only hands over to [`main`], and its code is compiled once.
//!
//! - `values`: the privacy budget's numbers, the server's limits and the release's flag form,
//!   checked as clap parses them (a bad one is a usage error that names the flag).
//! - `demo`, `synth`: the demo job and synthetic exports.
//! - `ingest`: `ingest`, `complete-through`, `status` and `dictionary`.
//! - `mapping`: `mapping check`, what a source mapping makes of source exports.
//! - `metrics`: the standard metrics and their exact counts.
//! - `publish`: `publish` and `plan`, the quarterly publication.
//! - `budget`: the privacy budget.
//! - `key`: the public key of the ledger chain's signing key.
//! - `release`: `release` and `releases`.
//! - `serve`: the HTTP server and its limits.
//! - `report`: the funders' quarterly report.
//! - `site`: the static mirror (`export-site`), `verify` and the registry `disclosure`.
//! - `requests`: researchers' requests and tokens.
//! - `pseudonymize`: the program's pseudonymisation of a raw export, and the state's key file.
//! - `backup`: `backup` and `restore`, a warehouse's consistent copy and its checked restore.
//! - `generated`: shell completions and manual pages, generated from these definitions.
//!
//! Flags that cannot apply together are refused by the parser, naming both, before anything
//! is read or spent; every command's help ends with examples.
//!
//! Everything a command prints goes through `out` (standard output) or `note` (standard
//! error): a reader that closes the pipe early ends the command quietly, never with a panic.

mod backup;
mod budget;
mod demo;
mod generated;
mod ingest;
mod key;
mod mapping;
mod metrics;
mod pseudonymize;
mod publish;
mod release;
mod report;
mod requests;
mod serve;
mod site;
mod synth;
mod values;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::present::tables::terminal_safe;

pub use values::{MAX_REQUEST_RATE, MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS};

/// The environment variable that gives `--warehouse` when the flag is absent.
pub const WAREHOUSE_ENV: &str = "OUTREACH_WAREHOUSE";

/// The `outreach` command line as clap reads it: every command, flag and help text. Its
/// tree (`clap::CommandFactory::command`) is what the README's command table, the tests of
/// every flag, the completions and the manual pages are made from or checked against.
#[derive(Parser)]
#[command(
    name = "outreach",
    version,
    about = "Evaluate post-overdose outreach programs and publish only differentially private figures",
    after_help = concat!(
        "Examples:\n",
        "  outreach demo --dir /tmp/outreach-demo\n",
        "  outreach ingest --warehouse wh exports/\n",
        "  outreach publish --warehouse wh --quarter 2025Q3 --approver \"J. Steward\"\n",
        "  outreach releases list --warehouse wh",
    )
)]
pub struct Cli {
    /// Hide progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job on built-in synthetic data: synthesise, ingest, show the status.
    Demo(demo::DemoArgs),
    /// Write synthetic program exports, one CSV per table.
    Synth(synth::SynthArgs),
    /// Validate program exports and load them into a warehouse as Parquet.
    Ingest(ingest::IngestArgs),
    /// Declare a table's data complete through a date (public metadata).
    CompleteThrough(ingest::CompleteThroughArgs),
    /// Show tables, row counts, date ranges and the dataset version (steward only: exact figures).
    Status(ingest::StatusArgs),
    /// Source mappings: check one against the dictionary and source files, loading nothing.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach mapping check --mapping police_incidents.toml police_incidents-2025-09.csv",
    ))]
    Mapping {
        #[command(subcommand)]
        command: mapping::MappingCommand,
    },
    /// Print the data dictionary as Markdown.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach dictionary\n",
        "  outreach dictionary > data-dictionary.md",
    ))]
    Dictionary,
    /// Publish the standard metrics of one quarter for every program, with DP.
    Publish(publish::PublishArgs),
    /// What publishing a quarter would cost and how precise it would be; spends nothing.
    Plan(publish::PlanArgs),
    /// List the standard metrics; with --exact, count them without noise (steward only).
    Metrics(metrics::MetricsArgs),
    /// The privacy budget: set it, split it into allocations, show it, renew it.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach budget init --warehouse wh --total 5 --horizon 730\n",
        "  outreach budget allocate --warehouse wh standard-releases 4.7\n",
        "  outreach budget show --warehouse wh",
    ))]
    Budget {
        #[command(subcommand)]
        command: budget::BudgetCommand,
    },
    /// The signing key of the public ledger chain: show its public key, to publish elsewhere.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach key show --warehouse wh\n",
        "  outreach key show --warehouse wh > ledger-key.txt",
    ))]
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// Release differentially private statistics: debit the budget, bound, add noise, store.
    Release(Box<release::ReleaseArgs>),
    /// Published releases (the steward's view adds failed ones, errors and diagnostics).
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach releases list --warehouse wh\n",
        "  outreach releases show --warehouse wh 3",
    ))]
    Releases {
        #[command(subcommand)]
        command: release::ReleasesCommand,
    },
    /// Serve the published releases over HTTP, read-only, until Ctrl-C.
    Serve(serve::ServeArgs),
    /// Write the quarterly report: a self-contained HTML file and the CSV of every figure.
    Report(report::ReportArgs),
    /// Write every public route as files, for any static host: the API, dashboard, reports.
    ExportSite(site::ExportSiteArgs),
    /// Check a public record (a mirror's folder or URL): signature, chain, totals, releases.
    Verify(site::VerifyArgs),
    /// Write this deployment's entry for the OpenDP Deployments Registry, as YAML.
    Disclosure(site::DisclosureArgs),
    /// Researchers' requests: list, show, approve (runs the release) or reject.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach requests list --warehouse wh\n",
        "  outreach requests approve --warehouse wh 5f0c1a7e9b2d4c6e8f1a3b5c7d9e0f21 --public",
    ))]
    Requests {
        #[command(subcommand)]
        command: requests::RequestsCommand,
    },
    /// Researchers' bearer tokens for the API.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach tokens create --warehouse wh --role researcher --name rosa\n",
        "  outreach tokens list --warehouse wh",
    ))]
    Tokens {
        #[command(subcommand)]
        command: requests::TokensCommand,
    },
    /// At a program: replace a raw export's identifiers by the state's keyed person_key.
    Pseudonymize(pseudonymize::PseudonymizeArgs),
    /// Write a consistent copy of a warehouse (ledger, requests, manifest, data files) with checksums, while releases run.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new or empty folder, or over its warehouse, after checking every file.
    Restore(backup::RestoreArgs),
    /// Print a shell's completion script for outreach (bash, zsh or fish).
    Completions(generated::CompletionsArgs),
    /// Write a manual page per command into a folder.
    Man(generated::ManArgs),
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
    let serving = match &cli.command {
        Command::Serve(_) => true,
        Command::Demo(args) => !args.no_serve,
        _ => false,
    };
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
            let lines: Vec<_> = text.lines().map(terminal_safe).collect();
            note(&format!("error: {}", lines.join("\n")));
            ExitCode::from(e.fault().exit_code())
        }
    }
}

/// Writes `text` to standard output, whole, and flushes it: the one way a command prints.
///
/// A reader that closes the pipe before everything is written (`outreach releases list |
/// head`) ends the process at once, quietly, with exit status 0, as `head`-friendly tools
/// such as ripgrep do, rather than 141 (128 + SIGPIPE) as a tool killed by the signal would
/// show: under `set -o pipefail` a script's `outreach … | head` then does not fail because
/// the reader had read enough. Status 0 is also the truth about the command's work: what
/// it commits (a debit, a release, a publication, a decision) is committed before it prints,
/// so nothing is lost or half-done when the output is cut. Any other failure to write is an
/// error, exit 1.
fn out(text: &str) -> Result<(), Error> {
    let written = {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
    };
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::Internal(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Writes `line` and a line break to standard error, for the person at the terminal (a
/// note, a warning, the error that ends a command). A standard error that cannot be written
/// (closed, full) is ignored: the command's outcome and its exit status do not depend on it.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// Runs one command: each family's file holds its arguments and its run function.
fn run(cli: Cli) -> Result<(), Error> {
    let progress = !cli.quiet;
    match cli.command {
        Command::Demo(args) => demo::run_demo(args, progress),
        Command::Synth(args) => synth::run_synth(args, progress),
        Command::Ingest(args) => ingest::run_ingest(args, progress),
        Command::CompleteThrough(args) => ingest::run_complete_through(args),
        Command::Status(args) => ingest::run_status(args),
        Command::Dictionary => ingest::run_dictionary(),
        Command::Mapping { command } => mapping::run_mapping(command),
        Command::Publish(args) => publish::run_publish(args),
        Command::Plan(args) => publish::run_plan(args),
        Command::Metrics(args) => metrics::run_metrics(args),
        Command::Budget { command } => budget::run_budget(command),
        Command::Key { command } => key::run_key(command),
        Command::Release(args) => release::run_release(*args),
        Command::Releases { command } => release::run_releases(command),
        Command::Serve(args) => serve::run_serve(args),
        Command::Report(args) => report::run_report(args),
        Command::ExportSite(args) => site::run_export_site(args),
        Command::Verify(args) => site::run_verify(args),
        Command::Disclosure(args) => site::run_disclosure(args),
        Command::Requests { command } => requests::run_requests(command),
        Command::Tokens { command } => requests::run_tokens(command),
        Command::Pseudonymize(args) => pseudonymize::run_pseudonymize(args),
        Command::Backup(args) => backup::run_backup(args),
        Command::Restore(args) => backup::run_restore(args),
        Command::Completions(args) => generated::run_completions(args),
        Command::Man(args) => generated::run_man(args),
    }
}
