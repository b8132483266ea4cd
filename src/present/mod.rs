//! The presentation stage: every way a published figure is shown, from the ledger and the
//! release store alone. It reads no data, and it serves no HTTP: the API server and the
//! command line, later stages, build on it.
//!
//! - [`snapshot`]: what is published, read once from the ledger: each quarter's current
//!   publication with the quarter's privacy loss, the public releases, the public budget, and
//!   the programs table stored with the latest publication.
//! - [`views`]: the public view model: the shapes the API serves (their OpenAPI schemas), and
//!   their CSV lines.
//! - [`tables`]: releases, publications, plans, the budget and the steward's lists as text
//!   tables, JSON and CSV for the terminal, with [`tables::terminal_safe`] for text that
//!   others wrote and [`tables::day`] for public times.
//! - [`dashboard`]: the dashboard page (`GET /`) and the page parts it shares with the
//!   report: figures as text, tables, chart blocks, the quarter's privacy parameters.
//! - [`quarterly`]: the funders' quarterly report (`outreach report`), one HTML file with the
//!   CSV of its figures beside it.
//! - [`charts`]: the SVG charts of both (`plotters`).

pub mod charts;
pub mod dashboard;
pub mod quarterly;
pub mod snapshot;
pub mod tables;
pub mod views;
