//! The crate's top-level error, classified by who is at fault so that a CLI exit code (and,
//! later, an HTTP status) is one `match` on [`Fault`].

use crate::dictionary::DictionaryError;
use crate::ingest::IngestError;
use crate::ledger::LedgerError;
use crate::privacy::PrivacyError;
use crate::synth::SynthError;
use crate::warehouse::WarehouseError;

/// Who has to act to fix an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The input, a file or an argument, is wrong: the user fixes it.
    BadInput,
    /// Another writer holds the warehouse: try again later.
    Busy,
    /// The privacy budget (or its period) does not cover the request: the steward decides.
    BudgetExhausted,
    /// A defect or an environment failure (disk, permissions): the operator looks.
    Internal,
}

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
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
