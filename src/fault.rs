//! Who has to act to fix an error: the classification every layer's error maps to, so that
//! a CLI exit code ([`Fault::exit_code`]) and an HTTP status (`api::error`) are one `match`
//! each. A leaf module: it imports nothing of the crate, so each layer can use it without
//! depending on [`crate::error`], which imports every layer.

/// Who has to act to fix an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The command line is wrong: a flag's value, or flags that do not go together. The user
    /// fixes the command. Exit 2, as clap's own usage errors.
    Usage,
    /// The input, a file or an argument, is wrong: the user fixes it.
    BadInput,
    /// Another writer holds the warehouse: try again later.
    Busy,
    /// The privacy budget (or its period) does not cover the request: the steward decides.
    BudgetExhausted,
    /// A defect or an environment failure (disk, permissions): the operator looks.
    Internal,
}

impl Fault {
    /// The exit code of `outreach` (README, "Exit codes"): 2 for usage and bad input (clap
    /// exits 2 on its own usage errors), 3 busy, 4 budget exhausted, 1 internal.
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Usage | Fault::BadInput => 2,
            Fault::Busy => 3,
            Fault::BudgetExhausted => 4,
            Fault::Internal => 1,
        }
    }
}
