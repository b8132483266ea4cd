//! What can stop a quarter's publication or its plan: the refusals that are publishing's
//! own (follow-up not yet complete, a quarter already published from older data, a pure
//! ε-DP budget that the standard noise is not calibrated for), and the failures of the
//! stages a publication runs through (the metric catalog, the warehouse, the privacy
//! engine, the ledger), each wrapped with its message unchanged.
//!
//! Each failure says who is at fault ([`PublicationError::fault`]): a wrapped stage's error
//! answers for itself, so a refusal reaches the command line's exit code and the API's
//! status exactly as the stage classified it.

use crate::fault::Fault;
use crate::ledger::LedgerError;
use crate::metrics::QueriesError;
use crate::privacy::PrivacyError;
use crate::warehouse::WarehouseError;

/// Errors of publishing the standard metrics (`publish`) and of planning a publication
/// (`plan`).
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    /// Some statistic's follow-up window reaches past what the tables are declared complete
    /// through, and incomplete figures were not allowed.
    #[error(
        "{quarter}: follow-up is not complete for {statistics}; declare the tables complete \
         (`outreach complete-through`) once their data are in, or publish with \
         --allow-incomplete, which marks those figures incomplete"
    )]
    Incomplete { quarter: String, statistics: String },
    /// The quarter is published from an older dataset version, and a republication was not
    /// asked for.
    #[error(
        "{quarter} was published from dataset version {version} (release {release}); the \
         warehouse is now {now}.{corrected} Publish it again with --republish: a new, debited \
         release that supersedes the old one"
    )]
    AlreadyPublished {
        quarter: String,
        version: String,
        release: i64,
        now: String,
        /// Empty, or a sentence saying that the quarter's rows were corrected or retracted
        /// after the publication (never which rows or how many).
        corrected: String,
    },
    /// `publish` and `plan` under a pure ε-DP (Laplace) budget: their noise is calibrated
    /// for zCDP only, so they refuse before anything is prepared or spent.
    #[error(
        "publish's calibration is for zCDP: every standard count gets discrete Gaussian noise \
         of scale sigma, debited as rho = k * sum of B^2 / (2 sigma^2). This warehouse's budget \
         uses pure epsilon-DP discrete Laplace noise (`budget init --noise laplace`), under \
         which sigma would be taken as the Laplace scale and every statistic would compose its \
         own epsilon (at the default sigma the standard release alone would ask for about \
         rho = 11), so a Laplace budget is not supported for publish or plan. Use `outreach \
         release --spec FILE` with `rho`, which calibrates Laplace noise itself (scale b = \
         k * sum of B / epsilon, epsilon = sqrt(2 rho)), or a warehouse whose budget uses \
         Gaussian noise"
    )]
    LaplaceNotSupported,
    /// The rate half-width a plan is asked to meet is not a share strictly between 0 and 1.
    #[error("plan: --target-halfwidth {target} must be in (0, 1)")]
    TargetHalfWidth { target: f64 },
    /// The public `programs` table cannot be read, or lacks a column the figures group by.
    #[error("programs: {0}")]
    Programs(String),
    /// The released numbers cannot be turned into the publication's figures.
    #[error("publish: {0}")]
    Figures(String),
    #[error(transparent)]
    Metrics(#[from] QueriesError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl PublicationError {
    /// Who is at fault: the steward for a refusal of publishing's own, the operator when the
    /// programs table or the figures fail, and a wrapped stage's error says for itself.
    pub fn fault(&self) -> Fault {
        match self {
            PublicationError::Incomplete { .. }
            | PublicationError::AlreadyPublished { .. }
            | PublicationError::LaplaceNotSupported
            | PublicationError::TargetHalfWidth { .. } => Fault::BadInput,
            PublicationError::Programs(_) | PublicationError::Figures(_) => Fault::Internal,
            PublicationError::Metrics(e) => e.fault(),
            PublicationError::Warehouse(e) => e.fault(),
            PublicationError::Privacy(e) => e.fault(),
            PublicationError::Ledger(e) => e.fault(),
        }
    }
}

/// Result with the publication's [`PublicationError`].
pub type Result<T, E = PublicationError> = std::result::Result<T, E>;
