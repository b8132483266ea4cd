//! The crate's top-level error, classified by who is at fault ([`Fault`], from the
//! leaf module [`crate::fault`]) so that a CLI exit code ([`Fault::exit_code`]) and an HTTP
//! status (`api::error`) are one `match` each.
//!
//! It wraps one error per stage, each with its own fault, and is used only by the stages
//! that face a person (presentation, the API, the demo and the command line): the stages
//! of the pipeline before them return their own errors and never this one.

pub use crate::fault::Fault;

use crate::backup::BackupError;
use crate::dictionary::DictionaryError;
use crate::ingest::IngestError;
use crate::ledger::LedgerError;
use crate::metrics::QueriesError;
use crate::privacy::PrivacyError;
use crate::pseudonymize::PseudonymizeError;
use crate::publication::PublicationError;
use crate::requests::RequestsError;
use crate::synth::SynthError;
use crate::warehouse::WarehouseError;

/// Any error of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dictionary(#[from] &'static DictionaryError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Synth(#[from] SynthError),
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queries(#[from] QueriesError),
    #[error(transparent)]
    Publication(#[from] PublicationError),
    #[error(transparent)]
    Requests(#[from] RequestsError),
    #[error(transparent)]
    Pseudonymize(#[from] PseudonymizeError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The API server cannot listen (address in use, no permission) or its socket failed.
    #[error("cannot serve on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The command line is wrong (a flag's value or form); the message names the flag.
    #[error("{0}")]
    Usage(String),
    /// A defect: an invariant of the code does not hold (a template that does not render,
    /// a state that cannot happen). Exit 1, HTTP 500; never the user's to fix.
    #[error("internal: {0}")]
    Internal(String),
    /// `outreach verify` found that the public record does not hold: exit 1, naming what.
    #[error("{0}")]
    Unverified(String),
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Dictionary(_) => Fault::Internal,
            Error::Warehouse(e) => e.fault(),
            Error::Ingest(e) => e.fault(),
            Error::Synth(e) => e.fault(),
            Error::Privacy(e) => e.fault(),
            Error::Ledger(e) => e.fault(),
            Error::Queries(e) => e.fault(),
            Error::Publication(e) => e.fault(),
            Error::Requests(e) => e.fault(),
            Error::Pseudonymize(e) => e.fault(),
            Error::Backup(e) => e.fault(),
            Error::Listen { .. } => Fault::BadInput,
            Error::Usage(_) => Fault::Usage,
            Error::Internal(_) => Fault::Internal,
            Error::Unverified(_) => Fault::Internal,
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
