//! The publication document: everything a quarter's publication shows, stored with it in
//! the ledger (per program and per group of programs, the equity breakdowns, which figures
//! are complete, the noise and the note every reader sees), and its versions: a document is
//! written once and read by every later build, which reads each version it knows.

use serde::{Deserialize, Serialize};

use super::figures::{CountFigure, DifferenceFigure, RateFigure};
use super::publish::ProgramInfo;

/// Whether one statistic's follow-up is complete for a quarter (privacy model §6): every
/// table it reads is declared complete through the quarter's last day plus its window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completeness {
    pub statistic: String,
    pub complete: bool,
    /// The date every table must be complete through (`YYYY-MM-DD`).
    pub needs_complete_through: String,
    /// The tables that are not, with the date they are declared complete through, if any.
    pub incomplete_tables: Vec<IncompleteTable>,
}

/// A table whose declared completeness does not cover a statistic's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncompleteTable {
    pub table: String,
    pub declared_through: Option<String>,
}

/// One program's published figures for a quarter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramFigures {
    pub program: ProgramInfo,
    pub counts: Vec<CountFigure>,
    pub rates: Vec<RateFigure>,
    pub differences: Vec<DifferenceFigure>,
}

/// Figures summed over a group of programs (post-processing; counts are person-cells).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupFigures {
    /// `team_model`, `police_on_visits`, `warrant_check`, `region` or `statewide`.
    pub by: String,
    pub group: String,
    pub programs: Vec<String>,
    pub counts: Vec<CountFigure>,
    pub rates: Vec<RateFigure>,
    pub differences: Vec<DifferenceFigure>,
}

/// A breakdown's figures: one (dimension, value) of one program, or statewide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakdownFigures {
    /// A program id, or `statewide` (the sum over programs).
    pub scope: String,
    pub dimension: String,
    pub value: String,
    pub counts: Vec<CountFigure>,
    pub rates: Vec<RateFigure>,
}

/// The format of the publication document that `publish` writes now. A document is stored
/// once and read by every later build, so a change to [`Publication`] that older documents
/// do not fit is a new version, and [`Publication::from_document`] keeps reading the older
/// ones. `tests/fixtures/publication-v1.json` is a version 1 document as the ledger stores it.
pub const PUBLICATION_VERSION: u32 = 1;

/// A document without a `version` field is version 1.
fn version_1() -> u32 {
    1
}

/// Why a stored publication document cannot be read: the steward's to see in the log (and
/// `/healthz` says how many), never a reason to skip the document silently.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DocumentError {
    /// Not a JSON object; the ledger reads stored text that is not JSON as `null`.
    #[error("the document is not a JSON object (or not JSON at all)")]
    NotAnObject,
    /// A version this build does not know: written by a newer build, or damaged.
    #[error(
        "the document's version {0} is not one this build reads (it reads 1 to {max})",
        max = PUBLICATION_VERSION
    )]
    UnknownVersion(String),
    /// A known version whose content does not fit it.
    #[error("the version {version} document does not parse: {message}")]
    Malformed { version: u32, message: String },
}

/// Everything a quarter's publication shows, stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    /// The document's format, [`PUBLICATION_VERSION`] when written; a document without it is
    /// version 1.
    #[serde(default = "version_1")]
    pub version: u32,
    pub quarter: String,
    pub release_id: i64,
    pub dataset_version: String,
    pub approver: String,
    /// The noise of every count: `discrete_gaussian` or `discrete_laplace`, and its scale.
    pub distribution: String,
    pub scale: f64,
    pub k: u32,
    /// ρ of the standard release.
    pub rho: f64,
    /// ε of the standard release at the display δ.
    pub epsilon: f64,
    pub display_delta: f64,
    pub completeness: Vec<Completeness>,
    pub programs: Vec<ProgramFigures>,
    pub groups: Vec<GroupFigures>,
    /// The equity release: its id, ρ, noise scale and `k`.
    pub equity_release_id: Option<i64>,
    pub equity_rho: f64,
    pub equity_scale: f64,
    pub equity_k: u32,
    /// Identified, attempted and engaged by age band, sex, and race and ethnicity.
    pub equity: Vec<BreakdownFigures>,
    pub note: String,
}

impl Publication {
    /// A stored document, of any version this build reads: a missing `version` is 1.
    pub fn from_document(
        doc: &serde_json::Value,
    ) -> std::result::Result<Publication, DocumentError> {
        let object = doc.as_object().ok_or(DocumentError::NotAnObject)?;
        let version = match object.get("version") {
            None => 1,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=PUBLICATION_VERSION).contains(n))
                .ok_or_else(|| DocumentError::UnknownVersion(v.to_string()))?,
        };
        match version {
            // Today's format. A version 2 adds its arm here and turns a version 1 document
            // into its own struct.
            1 => serde_json::from_value::<Publication>(doc.clone()).map_err(|e| {
                DocumentError::Malformed {
                    version,
                    message: e.to_string(),
                }
            }),
            other => Err(DocumentError::UnknownVersion(other.to_string())),
        }
    }
}

/// What the publication's note says, for every reader.
pub const PUBLICATION_NOTE: &str = "Counts are survivors in each program's cohort of the \
     quarter, with differentially private noise; shown counts are clamped at zero and rates \
     to [0, 1], while `raw` keeps the noisy value for sums. Intervals cover the privacy noise \
     with probability at least 95%, not sampling error; they are clamped likewise, but never \
     narrower than the noise's half-width. Group and statewide figures are sums \
     over programs (post-processing): a survivor in two programs' cohorts counts in both.";
