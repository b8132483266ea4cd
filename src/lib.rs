//! # Outreach Warehouse
//!
//! A warehouse that evaluates post-overdose outreach programs from their de-identified
//! records and publishes only differentially private figures about them.
//!
//! The modules follow the pipeline, top to bottom, in the order listed here. A module may use
//! only the modules listed before it (the integration test `architecture` reads this list and
//! every `crate::` path in `src/` and fails on an arrow back up):
//!
//! - [`fault`]: who is at fault when something fails ([`Fault`]), a leaf every layer's error
//!   maps to, so that the exit code and the HTTP status are one `match`.
//! - [`failpoint`]: named crash points for the crash-safety tests; they exist only with the
//!   `failpoints` cargo feature, which the tests turn on and production builds never have.
//! - [`quarter`]: calendar quarters, the public time key.
//! - [`dictionary`]: the data dictionary (`data-dictionary/*.toml`), the single source of
//!   truth for tables, columns, types, allowed values and privacy classes.
//! - [`csv_out`]: CSV as the warehouse writes it (quarantine reports, API bodies, listings),
//!   with the guard against spreadsheet formulas.
//! - [`sqlite`]: what the ledger and the requests file share about SQLite: opening a file
//!   with the same settings, IMMEDIATE write transactions and numbered schema migrations.
//! - [`pseudonymize`]: runs at each program, before the warehouse sees a file: normalises
//!   the linkage fields of a raw export and keys each survivor by HMAC-SHA-256 under the
//!   state's shared key, so one human has one `person_key` in every program; it writes the
//!   export without any identifier column.
//! - [`warehouse`]: the warehouse folder, its manifest and dataset versions, the DataFusion
//!   session over it, the programs table as the dictionary declares it, and `status`.
//! - [`ingest`]: validates program CSV exports against the dictionary, refuses files with
//!   direct identifiers, quarantines bad rows, and commits Parquet atomically.
//! - [`synth`]: synthetic program exports that behave like real programs, for the demo, the
//!   tests and the benchmarks.
//! - [`ledger`]: the privacy-budget ledger and release store (SQLite): privacy spend as a
//!   type ([`ledger::Spend`]), debit before noise, append-only, idempotent releases.
//! - [`privacy`]: the privacy engine. A release spec's person-level SQL passes the
//!   person-locality analyser, the engine bounds each survivor's contribution, OpenDP adds
//!   the noise, and every number carries its 95% interval.
//! - [`metrics`]: the standard evaluation metrics (`queries/standard/*.sql`), their catalog,
//!   the steward's exact mode and the generated `queries/README.md`.
//! - [`publication`]: publishing the metrics each quarter: the release specs built from
//!   them, `plan` and `publish`, the figures funders read, and the publication document,
//!   stored in the ledger with the programs table it was made from.
//! - [`requests`]: researchers' requests, their tokens and the steward's decisions.
//! - [`backup`]: `outreach backup` and `outreach restore`: a consistent copy of the
//!   warehouse while releases run (the ledger and requests through SQLite's online backup),
//!   with a checksum list, and its restore, checked whole before it replaces anything.
//! - [`error`]: the crate's error, one variant per layer's error, classified by who is at
//!   fault; only the stages after it use it.
//! - [`present`]: what the public is shown, from the ledger alone: the snapshot of what is
//!   published, the view model, text tables and CSV, the dashboard page and the quarterly
//!   report (HTML with SVG charts).
//! - [`api`]: the read-only HTTP API (`outreach serve`) over what [`present`] shows; it
//!   reads no data, only what was published.
//! - [`verify`]: anyone's check of the public record (the API or a static copy of it) against
//!   the warehouse's public key: the signed head, the hash chain, every total, and every
//!   served release and publication against its entry. A client: it reads public routes
//!   only, never the ledger's file.
//! - [`site`]: the public record as files: the static mirror of every public route
//!   (`outreach export-site`), reading it back from a folder or a URL for `outreach verify`,
//!   and the deployment's entry for the OpenDP Deployments Registry.
//! - [`demo`]: the main job on built-in synthetic data.
//! - [`cli`]: the `outreach` command line, which `src/main.rs` hands over to.
//!
//! Every number that leaves the warehouse, through the CLI or the API, passes through
//! [`privacy`].

pub mod api;
pub mod backup;
pub mod cli;
pub mod csv_out;
pub mod demo;
pub mod dictionary;
pub mod error;
pub mod failpoint;
pub mod fault;
pub mod ingest;
pub mod ledger;
pub mod metrics;
pub mod present;
pub mod privacy;
pub mod pseudonymize;
pub mod publication;
pub mod quarter;
pub mod requests;
pub mod site;
pub mod sqlite;
pub mod synth;
pub mod verify;
pub mod warehouse;

pub use error::{Error, Result};
pub use fault::Fault;
