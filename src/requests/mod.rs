//! Researchers' requests: the queue that a researcher submits release specs to over the API,
//! the bearer tokens that identify researchers, and the steward's decisions.
//!
//! Everything here lives in its own SQLite file, [`REQUESTS_FILE`], beside the ledger: the
//! API server opens the ledger and the release store read-only, and this file is the only
//! thing it writes. A request moves from `pending` to a decision: `rejected` with the
//! steward's words, `released` with the release id, or `failed` when the release failed after
//! its debit. A failed one is the steward's to handle: they reject it or run it again (a new
//! debit); the other decisions are final. Decisions are appended, never changed, and the
//! latest is the request's state. A researcher never sees `failed`; to them the request stays
//! pending (privacy model §5).
//!
//! A request belongs to the token that submitted it (its id is stored with the request), not
//! to the researcher's name: after `tokens revoke` and a new token for the same name, the new
//! holder sees none of the old holder's requests, nor through them their releases.
//!
//! A researcher's release is debited from the allocation `researcher:<name>`, which the
//! steward creates with `outreach budget allocate`; a spec naming any other allocation is
//! refused. A request is checked when it is submitted ([`quote`]): the person-locality
//! analyser and the budget check run on the plan over a session of empty tables, never on
//! data, and the researcher gets the cost and the accuracy of every statistic from the same
//! noise plan that the release will use.

mod quote;
mod store;

pub use quote::{Quote, StatisticAccuracy, Submission, affordable, quote};
pub use store::{
    Decision, Holder, MAX_PENDING_PER_RESEARCHER, Queue, REQUEST_ID_PATTERN, REQUESTS_FILE,
    RequestState, RequestSummary, ResearcherView, Role, SCHEMA_VERSION, StoredRequest, TokenInfo,
    approve, constant_time_eq, is_request_id, reject,
};

use std::path::PathBuf;

use crate::fault::Fault;

/// The allocation a researcher's releases are debited from.
pub fn allocation_of(researcher: &str) -> String {
    format!("researcher:{researcher}")
}

/// The researcher an allocation belongs to, if it is a researcher's.
pub fn researcher_of(allocation: &str) -> Option<&str> {
    allocation.strip_prefix("researcher:")
}

/// Errors of the request queue.
#[derive(Debug, thiserror::Error)]
pub enum RequestsError {
    #[error("requests store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the requests store is busy with another writer; try again")]
    Busy,
    #[error(
        "requests store {path} has schema version {found}, newer than this program's {SCHEMA_VERSION}: use a newer outreach"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("no request {0}")]
    NoSuchRequest(String),
    #[error("no active token named '{0}'")]
    NoSuchToken(String),
    #[error("an active token named '{0}' already exists; revoke it first")]
    TokenExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "request {id} is {state}: only a pending request, or one whose run failed, can be approved or rejected"
    )]
    NotPending { id: String, state: String },
    /// The submission cannot be planned as asked; the reason is for the researcher.
    #[error("refused: {0}")]
    Refused(String),
    /// The plan is valid but the researcher's allocation cannot pay for it now.
    #[error("over budget: {0}")]
    OverBudget(String),
    /// The researcher already has `limit` requests waiting for the steward.
    #[error(
        "you have {limit} requests waiting for the steward's decision, the most allowed; submit again once one is decided"
    )]
    TooManyPending { limit: usize },
    #[error("the OS random generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The release of an approved request was refused before its debit (over budget, a
    /// spec that no longer plans) or failed after it; the privacy engine's words.
    #[error(transparent)]
    Release(#[from] crate::privacy::PrivacyError),
    /// A defect or an environment failure while checking a request.
    #[error("internal: {0}")]
    Internal(String),
}

impl RequestsError {
    pub fn fault(&self) -> Fault {
        match self {
            RequestsError::NoSuchRequest(_)
            | RequestsError::NoSuchToken(_)
            | RequestsError::TokenExists(_)
            | RequestsError::Invalid(_)
            | RequestsError::NotPending { .. }
            | RequestsError::TooManyPending { .. }
            | RequestsError::Refused(_) => Fault::BadInput,
            RequestsError::OverBudget(_) => Fault::BudgetExhausted,
            RequestsError::Busy => Fault::Busy,
            RequestsError::Ledger(e) => e.fault(),
            RequestsError::Release(e) => e.fault(),
            RequestsError::Sqlite { .. }
            | RequestsError::NewerSchema { .. }
            | RequestsError::Random(_)
            | RequestsError::Internal(_) => Fault::Internal,
        }
    }
}

pub type Result<T, E = RequestsError> = std::result::Result<T, E>;
