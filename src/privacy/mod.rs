//! The privacy engine: every published number passes through it (`../shared/privacy-model.md`).
//!
//! - [`spec`]: [`ReleaseSpec`], the one schema of a release, and its checks.
//! - [`functions`]: the allow-list of functions and the safe forms (`safe_div`, `quarter_of`).
//! - [`analyser`]: the person-locality analyser over DataFusion's optimized logical plan.
//! - [`bounding`]: the engine's contribution bounding (collapse, clamp, `k` cells by keyed
//!   hash, public domains, exclusive groups).
//! - [`mechanism`]: sensitivity, scales, privacy loss, noise and intervals, through OpenDP.
//! - [`release`]: the whole path: plan, analyse, debit, bound, noise, store; and the public
//!   view of a release. A release that fails after its debit reports only that it failed
//!   (one bit, which may itself depend on one person), never why; the why is the steward's.
//!   Its files follow a release's life:
//!   - `release/plan.rs`: the checks and the planning before any spend (queries analysed,
//!     spec checked, noise priced, the idempotency key);
//!   - `release/rows.rs`: after the debit, the person-level rows and the bounding driver;
//!   - `release/result.rs`: the published numbers, ratios and the public view of a release;
//!   - `release/panic_guard.rs`: keeps panic messages off stderr after the debit;
//!   - `release/mod.rs`: the request, the orchestration and the post-debit guard, in one
//!     place.
//!
//! [`NoiseKind`] is defined in the ledger (the warehouse's config), below this module, and
//! re-exported here; the ledger never imports the engine.

pub mod analyser;
pub mod bounding;
pub mod functions;
pub mod mechanism;
pub mod release;
pub mod spec;

pub use analyser::{Refusal, Rule};
pub use mechanism::{Loss, NoiseKind, NoisePlan, Sensitivity};
pub use release::{PublicRelease, ReleaseOutcome, ReleaseRequest, release, release_all};
pub use spec::{CheckedSpec, ReleaseSpec};

use crate::fault::Fault;
use crate::ledger::LedgerError;
use crate::warehouse::WarehouseError;

/// Errors of the privacy engine. Every refusal says why.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("release spec: {message}")]
    Spec { message: String },
    #[error("{query}: cannot plan the SQL: {message}")]
    Plan { query: String, message: String },
    #[error("{query}: refused, {refusal}")]
    Refused { query: String, refusal: Refusal },
    #[error("{query}: {message}")]
    Output { query: String, message: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("OpenDP: {0}")]
    OpenDp(String),
    /// A defect: an invariant of the engine does not hold. Never the spec's fault.
    #[error("internal: {0}")]
    Internal(String),
    /// A release failed after its debit. The message is fixed and holds only the release id:
    /// the error's own text may depend on the data, so it is stored for the steward alone
    /// (`releases show ID --steward`). That the release failed is itself one bit that may
    /// depend on one person's rows; the budget stays spent, and a retry is a new debit.
    #[error(
        "release {id} failed after its debit (the budget stays spent; see `outreach releases show {id} --steward`)"
    )]
    FailedAfterDebit { id: i64 },
}

impl PrivacyError {
    pub fn fault(&self) -> Fault {
        match self {
            PrivacyError::Spec { .. }
            | PrivacyError::Plan { .. }
            | PrivacyError::Refused { .. }
            | PrivacyError::Output { .. } => Fault::BadInput,
            PrivacyError::Ledger(e) => e.fault(),
            PrivacyError::Warehouse(e) => e.fault(),
            PrivacyError::OpenDp(_)
            | PrivacyError::Internal(_)
            | PrivacyError::FailedAfterDebit { .. } => Fault::Internal,
        }
    }
}

pub type Result<T, E = PrivacyError> = std::result::Result<T, E>;
