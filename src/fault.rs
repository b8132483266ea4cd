//! Who has to act to fix an error: the classification every layer's error maps to, so that
//! a CLI exit code (and, later, an HTTP status) is one `match`. A leaf module: it imports
//! nothing of the crate, so each layer can use it without depending on [`crate::error`],
//! which imports every layer.

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
